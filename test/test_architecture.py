"""The package's structure rules, read from the source with ``ast`` (docs/architecture.md):

- every subpackage imports only the layers below it in docs/architecture.md's table, and the table
  lists every subpackage there is (so the page cannot go stale);
- no import cycle between the subpackages of slimyolo_ros (imports inside functions count too: a lazy
  import is still a dependency);
- ROS is imported only by the ROS adapters (``ros/``, ``harness/``, ``bag/``); the command-line layer
  may import it lazily, inside a function, so the core stays usable without ROS;
- a Detector is built through ``load_detector`` (or ``Detector.from_model``), never its constructor,
  outside detect/;
- no function is longer than 100 lines.
"""

from __future__ import annotations

import ast
import graphlib
import re
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "slimyolo_ros"
ARCHITECTURE_DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
ROS_MODULES = {"rclpy", "sensor_msgs", "vision_msgs", "std_msgs", "launch", "rcl_interfaces",
               "diagnostic_updater", "diagnostic_msgs", "lifecycle_msgs"}
ROS_ADAPTERS = {"ros", "harness", "bag"}
LAZY_ROS_ALLOWED = {"commands", "cli", "demo"}
MAX_FUNCTION_LINES = 100


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _unit(path: Path) -> str:
    """The subpackage a file belongs to (a top-level module is its own unit)."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path) -> Iterator[tuple[str, bool, int]]:
    """(absolute module name, imported inside a function?, line) for every import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]

    def visit(node: ast.AST, in_function: bool) -> Iterator[tuple[str, bool, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, in_function, child.lineno
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[:len(base) - child.level + 1]
                    module = ".".join(base + ([child.module] if child.module else []))
                else:
                    module = child.module or ""
                yield module, in_function, child.lineno
                for alias in child.names:  # `from slimyolo_ros import train` names a subpackage
                    yield f"{module}.{alias.name}", in_function, child.lineno
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            yield from visit(child, inner)

    yield from visit(tree, False)


def _subpackage_graph() -> dict[str, set[str]]:
    known = {_unit(p) for p in _sources()}
    graph: dict[str, set[str]] = {u: set() for u in known}
    for path in _sources():
        unit = _unit(path)
        for module, _, _ in _imports(path):
            parts = module.split(".")
            if parts[0] == "slimyolo_ros" and len(parts) > 1 and parts[1] in known and parts[1] != unit:
                graph[unit].add(parts[1])
    return graph


def test_no_import_cycle_between_subpackages():
    graph = _subpackage_graph()
    assert {"darknet", "prune", "train", "slim"} <= set(graph)
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        raise AssertionError(f"import cycle between subpackages: {' -> '.join(exc.args[1])}") from None
    # orchestration sits above what it orchestrates
    assert order.index("prune") < order.index("slim") and order.index("train") < order.index("slim")
    assert order.index("darknet") < order.index("prune") and order.index("darknet") < order.index("train")


def documented_layers() -> dict[str, int]:
    """unit -> layer from the rows ``| N | `unit`, `unit` | ... |`` of the architecture page's table."""
    layers = {}
    for line in ARCHITECTURE_DOC.read_text().splitlines():
        row = re.match(r"\|\s*(\d+)\s*\|([^|]*)\|", line)
        if row:
            for unit in re.findall(r"`([a-z_]+)`", row.group(2)):
                layers[unit] = int(row.group(1))
    return layers


def test_imports_point_down_the_documented_layers():
    graph = _subpackage_graph()
    graph.pop("__init__", None)
    layers = documented_layers()
    assert set(graph) == set(layers), (f"docs/architecture.md's layer table lists {sorted(layers)}, "
                                       f"the package has {sorted(graph)}")
    upward = [f"{unit} (layer {layers[unit]}) imports {dep} (layer {layers[dep]})"
              for unit, deps in sorted(graph.items()) for dep in sorted(deps)
              if dep in layers and layers[dep] >= layers[unit]]
    assert not upward, "imports that do not point down the layers:\n" + "\n".join(upward)


def test_ros_is_imported_only_by_the_ros_adapters():
    bad = []
    for path in _sources():
        unit = _unit(path)
        if unit in ROS_ADAPTERS:
            continue
        for module, lazy, line in _imports(path):
            if module.split(".")[0] in ROS_MODULES and not (lazy and unit in LAZY_ROS_ALLOWED):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {module}"
                           + (" (inside a function)" if lazy else ""))
    assert not bad, "ROS imported outside ros/, harness/ and bag/:\n" + "\n".join(bad)


def test_detectors_are_built_only_through_the_factory():
    """Outside detect/, a Detector comes from load_detector() (files) or Detector.from_model() (a model
    in memory), never from its constructor, so options are validated in one place."""
    direct = []
    for path in _sources():
        if _unit(path) == "detect":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
                if name == "Detector":
                    direct.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not direct, "Detector(...) outside detect/ (use load_detector):\n" + "\n".join(direct)


def test_no_function_is_longer_than_100_lines():
    long = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {node.name} ({n} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)


def test_the_checks_see_a_cycle_an_upward_import_and_a_ros_import(tmp_path, monkeypatch):
    """The checks can fail: a fake package with these faults is caught."""
    fake = tmp_path / "slimyolo_ros"
    for sub, text in (("darknet", "from slimyolo_ros.train import x\nd = Detector(w)\n"),
                      ("train", "import slimyolo_ros.darknet.model\nimport rclpy\n"),
                      ("prune", ""), ("slim", "")):
        (fake / sub).mkdir(parents=True)
        (fake / sub / "__init__.py").write_text(text)
    monkeypatch.setattr(f"{__name__}.PACKAGE", fake)
    doc = tmp_path / "architecture.md"
    doc.write_text("| 1 | `darknet` | x |\n| 6 | `train`, `prune` | x |\n| 7 | `slim` | x |\n")
    monkeypatch.setattr(f"{__name__}.ARCHITECTURE_DOC", doc)
    for check, message in ((test_no_import_cycle_between_subpackages, "import cycle"),
                           (test_imports_point_down_the_documented_layers, "darknet (layer 1) imports train"),
                           (test_ros_is_imported_only_by_the_ros_adapters, "rclpy"),
                           (test_detectors_are_built_only_through_the_factory, "darknet/__init__.py:2")):
        try:
            check()
        except AssertionError as exc:
            assert message in str(exc)
        else:
            raise AssertionError(f"{check.__name__} passed on a faulty package")
