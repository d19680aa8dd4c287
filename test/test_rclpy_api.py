"""Every rclpy name the package uses exists in ROS 2 Humble's rclpy, or is used behind a tested fallback.

test/data/rclpy-humble-api.json is rclpy's public API on its humble branch (module -> names, class ->
its own methods and properties; ``commit`` says which). The package's uses are found with ``ast``:

- ``from rclpy.x import Y`` and ``import rclpy.x``: the module and the name exist in Humble;
- attribute chains on an imported rclpy module (``rclpy.serialization.serialize_message``,
  ``rclpy.ok``): each step exists in Humble;
- methods and properties used on rclpy objects (``self.add_post_set_parameters_callback``,
  ``node.create_subscription``, ``pub.get_subscription_count``): any attribute whose name is a member
  of one of the installed rclpy's classes that no Humble class has is a use of a newer API.

Such a newer name is allowed only in ``slimyolo_ros/ros/compat.py``, inside ``if hasattr(obj, "name"):``
with an ``else:`` fallback (the guard). test_track_node.py runs the fallback path for real.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "slimyolo_ros"
HUMBLE_API = Path(__file__).resolve().parent / "data" / "rclpy-humble-api.json"
COMPAT = PACKAGE / "ros" / "compat.py"


def humble() -> dict:
    return json.loads(HUMBLE_API.read_text())


def humble_members(api: dict) -> set[str]:
    """Every method or property of any class in Humble's rclpy."""
    return {m for names in api["modules"].values() for members in names.values() if members for m in members}


def installed_members(api: dict) -> set[str]:
    """Public methods and properties of the installed rclpy's classes (those Humble's API lists)."""
    found: set[str] = set()
    for module, names in api["modules"].items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # modules deprecated since Humble still list their names
                mod = importlib.import_module(module)
        except ImportError:
            continue
        for name, members in names.items():
            cls = getattr(mod, name, None)
            if members is None or not inspect.isclass(cls):
                continue
            for klass in inspect.getmro(cls):
                if klass is object:
                    continue
                found |= {n for n, v in vars(klass).items() if not n.startswith("_") and
                          (inspect.isfunction(v) or isinstance(v, (property, staticmethod, classmethod)))}
    return found


def _guarded(stack: list[ast.AST], name: str) -> bool:
    """Inside the body of ``if hasattr(<x>, "name"):`` that has an ``else:`` fallback."""
    for parent, child in zip(stack, stack[1:], strict=False):
        if isinstance(parent, ast.If) and parent.orelse and child in parent.body:
            for call in ast.walk(parent.test):
                if (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                        and call.func.id == "hasattr" and len(call.args) == 2
                        and isinstance(call.args[1], ast.Constant) and call.args[1].value == name):
                    return True
    return False


def _walk(node: ast.AST, stack: list[ast.AST]) -> Iterator[tuple[ast.AST, list[ast.AST]]]:
    stack = [*stack, node]
    yield node, stack
    for child in ast.iter_child_nodes(node):
        yield from _walk(child, stack)


def rclpy_uses(source: str, api: dict, newer: set[str]) -> Iterator[tuple[int, str, bool]]:
    """(line, what, guarded) for every use in ``source`` of a name Humble's rclpy lacks."""
    modules = api["modules"]
    tree = ast.parse(source)
    aliases: dict[str, str] = {}  # local name -> rclpy module it stands for
    for node, stack in _walk(tree, []):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "rclpy":
                    if a.name not in modules:
                        yield node.lineno, f"import {a.name}", _guarded(stack, a.name.rpartition(".")[2])
                    aliases[a.asname or "rclpy"] = a.name if a.asname else "rclpy"
        elif (isinstance(node, ast.ImportFrom) and not node.level
              and (node.module or "").split(".")[0] == "rclpy"):
            for a in node.names:
                if f"{node.module}.{a.name}" in modules:
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
                elif node.module not in modules or a.name not in modules[node.module]:
                    yield node.lineno, f"from {node.module} import {a.name}", _guarded(stack, a.name)
    for node, stack in _walk(tree, []):
        if not isinstance(node, ast.Attribute):
            continue
        chain, base = [node.attr], node.value
        while isinstance(base, ast.Attribute):
            chain.insert(0, base.attr)
            base = base.value
        if isinstance(base, ast.Name) and base.id in aliases:
            path = aliases[base.id]
            for attr in chain:
                if f"{path}.{attr}" in modules:
                    path = f"{path}.{attr}"
                    continue
                if attr not in modules.get(path, {}):
                    yield node.lineno, f"{path}.{attr}", _guarded(stack, attr)
                break
        elif node.attr in newer:
            yield node.lineno, f".{node.attr}", _guarded(stack, node.attr)


def violations(path: Path, source: str, api: dict, newer: set[str]) -> list[str]:
    rel = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    return [f"{rel}:{line}: {what}" + ("" if path == COMPAT else " (guards belong in ros/compat.py)")
            for line, what, guarded in rclpy_uses(source, api, newer) if not (guarded and path == COMPAT)]


@pytest.fixture(scope="module")
def api():
    return humble()


@pytest.fixture(scope="module")
def newer(api):
    return installed_members(api) - humble_members(api)


def test_the_reference_says_where_it_comes_from():
    api = humble()
    assert api["branch"] == "humble" and len(api["commit"]) == 40 and "ros2/rclpy" in api["source"]
    assert "add_on_set_parameters_callback" in api["modules"]["rclpy.node"]["Node"]


def test_every_rclpy_name_the_package_uses_is_in_humble_or_guarded(api, newer):
    assert "add_post_set_parameters_callback" in newer  # the installed rclpy is newer than Humble's
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        bad += violations(path, path.read_text(), api, newer)
    assert not bad, "rclpy names Humble lacks, used without a guarded fallback:\n" + "\n".join(bad)


def test_the_check_finds_unguarded_newer_names_and_accepts_the_guard(api, newer):
    unguarded = (
        "import rclpy\nfrom rclpy.node import Node, NoSuchThing\nfrom rclpy.qos import QoSProfile\n"
        "class N(Node):\n"
        "    def __init__(self):\n"
        "        self.add_post_set_parameters_callback(print)\n"
        "        self.create_publisher(int, 't', 1)\n"
        "        rclpy.spin_all_the_things()\n"
        "        if hasattr(self, 'add_post_set_parameters_callback'):\n"
        "            self.add_post_set_parameters_callback(print)\n"  # no else: not a fallback
    )
    found = violations(COMPAT, unguarded, api, newer)
    assert [f.split(": ", 1)[1] for f in found] == [
        "from rclpy.node import NoSuchThing", ".add_post_set_parameters_callback",
        "rclpy.spin_all_the_things", ".add_post_set_parameters_callback"], found
    guarded = ("def f(node, a, b):\n"
               "    if hasattr(node, 'add_post_set_parameters_callback'):\n"
               "        node.add_post_set_parameters_callback(b)\n"
               "    else:\n"
               "        node.add_on_set_parameters_callback(a)\n")
    assert violations(COMPAT, guarded, api, newer) == []
    elsewhere = violations(PACKAGE / "ros" / "node.py", guarded, api, newer)
    assert len(elsewhere) == 1 and "guards belong in ros/compat.py" in elsewhere[0]
