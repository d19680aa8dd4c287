"""Rules read from the source with ``ast`` that ruff has no rule for (ruff's PLR0124/PLR0133, enabled in
pyproject.toml, catch ``x == x`` for names and constants only):

- a module's ``_private`` names are its own: no module of the package, bench/ or scripts/ imports one
  from another module (what two modules share is public, in a module whose name says what it is);
- every assertion in test/ can fail: none compares an expression with itself (``f(x) == f(x)``), and
  none only bounds a value to [0, 1] (``0 <= map50 <= 1`` holds for any score, right or wrong). Only
  what an ``assert`` states is read: its comparison, or those joined by its top-level ``and``;
- a test skips only where it can also fail: a function that calls ``pytest.skip`` checks ``in_ci()``
  (conftest.py) and fails instead when CI=true, and nothing skips by marker or ``importorskip``, which
  cannot; CI runs every test or says why not.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIRST_PARTY = {"slimyolo_ros", "bench", "gpu_run"}


def _files(*dirs: str) -> list[Path]:
    return sorted(p for d in dirs for p in (REPO / d).rglob("*.py")
                  if "__pycache__" not in p.parts and p.name != "rule_samples.py")


def _asserted_comparisons(path: Path) -> Iterator[ast.Compare]:
    """The comparisons an ``assert`` states: its test, or the operands of its top-level ``and``."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Assert):
            test = node.test
            parts = test.values if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And) else [test]
            yield from (p for p in parts if isinstance(p, ast.Compare))


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)}"


def _private_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level == 0 and (node.module or "").split(".")[0] not in FIRST_PARTY:
            continue
        names = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
        if names:
            found.append(f"{path.relative_to(REPO)}:{node.lineno}: {', '.join(names)}")
    return found


def _self_comparisons(path: Path) -> list[str]:
    found = []
    for cmp in _asserted_comparisons(path):
        sides = [cmp.left, *cmp.comparators]
        if any(ast.dump(a) == ast.dump(b) for a, b in zip(sides, sides[1:], strict=False)):
            found.append(_where(path, cmp))
    return found


def _unit_interval_bounds(path: Path) -> list[str]:
    def is_const(node: ast.AST, value: float) -> bool:
        return isinstance(node, ast.Constant) and not isinstance(node.value, bool) and node.value == value

    found = []
    for cmp in _asserted_comparisons(path):
        if (len(cmp.ops) == 2 and all(isinstance(op, ast.LtE) for op in cmp.ops)
                and is_const(cmp.left, 0) and is_const(cmp.comparators[-1], 1)):
            found.append(_where(path, cmp))
    return found


def _skips_without_ci(path: Path) -> list[str]:
    found = []
    tree = ast.parse(path.read_text(), str(path))

    def calls(node: ast.AST, name: str) -> list[ast.Call]:
        return [n for n in ast.walk(node) if isinstance(n, ast.Call)
                and (ast.unparse(n.func) == name or ast.unparse(n.func).endswith("." + name))]

    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and calls(fn, "skip") and \
                not calls(fn, "in_ci"):
            found.append(f"{path.relative_to(REPO)}:{fn.lineno}: {fn.name} skips without in_ci()")
    for call in calls(tree, "importorskip") + calls(tree, "skipif"):
        found.append(_where(path, call))
    for attr in ast.walk(tree):  # a bare @pytest.mark.skip
        if isinstance(attr, ast.Attribute) and ast.unparse(attr).endswith("mark.skip"):
            found.append(_where(path, attr))
    return found


def test_no_private_name_is_imported_from_another_module():
    bad = [hit for path in _files("slimyolo_ros", "bench", "scripts") for hit in _private_imports(path)]
    assert not bad, "private names imported across modules (make them public where they belong):\n" + \
        "\n".join(bad)


def test_no_assertion_compares_an_expression_with_itself():
    bad = [hit for path in _files("test") for hit in _self_comparisons(path)]
    assert not bad, "assertions that cannot fail (compare behaviour instead, e.g. across processes):\n" + \
        "\n".join(bad)


def test_no_assertion_only_bounds_a_value_to_the_unit_interval():
    bad = [hit for path in _files("test") for hit in _unit_interval_bounds(path)]
    assert not bad, "range-only checks (check the value against a known case instead):\n" + "\n".join(bad)


def test_skips_turn_into_failures_in_ci():
    bad = [hit for path in _files("test") for hit in _skips_without_ci(path)]
    assert not bad, "skips that CI=true would not turn into failures:\n" + "\n".join(bad)


def test_the_rules_catch_what_they_are_for():
    """Each rule on a file that breaks it, and on lines it must leave alone."""
    sample = REPO / "test" / "rule_samples.py"
    hits = {rule.__name__: sorted(h.split(": ", 1)[1] for h in rule(sample))
            for rule in (_private_imports, _self_comparisons, _unit_interval_bounds, _skips_without_ci)}
    assert hits == {
        "_private_imports": ["_Scene"],
        "_self_comparisons": ["track_color('7') == track_color('7')", "x.a == x.a"],
        "_unit_interval_bounds": ["0 <= r['f1'] <= 1", "0.0 <= r['map50'] <= 1.0"],
        "_skips_without_ci": ["pytest.importorskip('cupy')", "pytest.mark.skip",
                              "pytest.mark.skipif(True, reason='never')",
                              "skips_always skips without in_ci()"],
    }
