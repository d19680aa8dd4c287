"""Install metadata follows the code: every third-party module the package imports is declared where a
user installs it from: package.xml (rosdep keys, for a ROS install), setup.py's install_requires or its
extras (pip, lower bounds only), or README's pip lines (what rosdep cannot provide)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
from catkin_pkg.package import parse_package

REPO = Path(__file__).resolve().parents[1]

# Top-level module -> where it comes from. "key:" a rosdep key (a ROS package name, or a key of
# rosdistro's rosdep/python.yaml: python3-numpy, python3-opencv, python3-yaml, python3-tqdm and
# python3-matplotlib and python3-pil are there for Ubuntu 22.04 and 24.04); "pip:" a PyPI distribution that
# rosdep has no key for (or only a pip key that would fight a Jetson build).
SOURCES = {
    "rclpy": "key:rclpy",
    "rcl_interfaces": "key:rcl_interfaces",
    "ament_index_python": "key:ament_index_python",
    "sensor_msgs": "key:sensor_msgs",
    "std_msgs": "key:std_msgs",
    "vision_msgs": "key:vision_msgs",
    "diagnostic_msgs": "key:diagnostic_msgs",
    "diagnostic_updater": "key:diagnostic_updater",
    "lifecycle_msgs": "key:lifecycle_msgs",
    "launch": "key:launch",
    "launch_ros": "key:launch_ros",
    "numpy": "key:python3-numpy",
    "cv2": "key:python3-opencv",
    "yaml": "key:python3-yaml",
    "tqdm": "key:python3-tqdm",
    "matplotlib": "key:python3-matplotlib",
    "PIL": "key:python3-pil",
    "torch": "pip:torch",
    "onnx": "pip:onnx",
    "onnxruntime": "pip:onnxruntime",
    "rosbags": "pip:rosbags",
    "pycocotools": "pip:pycocotools",
    "trackers": "pip:trackers",
    "supervision": "pip:supervision",
}
# rosdep keys package.xml may name beyond the imports: the `ros2 launch` verb the launch files need,
# the test runner, and the messages of /diagnostics and of managed nodes (used through
# diagnostic_updater and rclpy.lifecycle).
EXTRA_KEYS = {"ros2launch", "python3-pytest", "diagnostic_msgs", "lifecycle_msgs"}
# ROS modules: from the ROS install (package.xml) or the venv's ROS wheels, never from setup.py.
NOT_PIP = {"rclpy", "rcl_interfaces", "ament_index_python", "sensor_msgs", "std_msgs", "vision_msgs",
           "diagnostic_msgs", "diagnostic_updater", "lifecycle_msgs", "launch", "launch_ros"}
# PyPI distributions whose name is not the module's.
DISTRIBUTION = {"cv2": "opencv-python-headless", "yaml": "PyYAML", "PIL": "Pillow"}


def imported_modules() -> dict[str, str]:
    """Top-level third-party modules imported anywhere in the package or its launch files -> one file."""
    found: dict[str, str] = {}
    for path in sorted([*REPO.glob("slimyolo_ros/**/*.py"), *REPO.glob("launch/*.py")]):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "slimyolo_ros":
                    found.setdefault(top, str(path.relative_to(REPO)))
    return found


def setup_literals() -> dict[str, object]:
    """setup.py's module-level literal assignments (INSTALL_REQUIRES, EXTRAS_REQUIRE), without running it."""
    tree = ast.parse((REPO / "setup.py").read_text())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return out


def requirement_names(reqs: list[str]) -> dict[str, str]:
    return {re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0].lower(): r for r in reqs}


def test_every_import_has_a_source():
    unknown = {m: f for m, f in imported_modules().items() if m not in SOURCES}
    assert not unknown, (f"imported but not declared anywhere: {unknown}; add a rosdep key to package.xml "
                         "or a pip line to README (and SOURCES here)")


def test_package_xml_has_the_rosdep_keys_the_imports_need():
    pkg = parse_package(str(REPO / "package.xml"))  # catkin_pkg validates the format too
    keys = {d.name for d in pkg.exec_depends + pkg.test_depends}
    needed = {SOURCES[m][4:] for m in imported_modules() if SOURCES.get(m, "").startswith("key:")}
    assert needed <= keys, f"package.xml lacks {sorted(needed - keys)}"
    known = {s[4:] for s in SOURCES.values() if s.startswith("key:")} | EXTRA_KEYS
    assert keys <= known, f"package.xml names {sorted(keys - known)}: not a key this package needs"


def test_install_requires_has_lower_bounds_for_what_is_imported():
    lits = setup_literals()
    install = requirement_names(lits["INSTALL_REQUIRES"])
    extras = requirement_names([r for rs in lits["EXTRAS_REQUIRE"].values() for r in rs])
    for req in [*install.values(), *extras.values()]:
        assert "==" not in req and "<" not in req, f"{req}: lower bounds only (pins: requirements.txt)"
    # trackers/supervision are left out on purpose (they declare opencv-python): README installs them.
    for module in set(imported_modules()) - NOT_PIP - {"trackers", "supervision"}:
        dist = DISTRIBUTION.get(module, module).lower()
        assert dist in install or dist in extras, f"setup.py: {module} is imported but {dist} is not required"


@pytest.mark.parametrize("dist", sorted(s[4:] for s in SOURCES.values() if s.startswith("pip:")))
def test_readme_lists_the_pip_installs_rosdep_cannot_provide(dist):
    readme = (REPO / "README.md").read_text()
    pip_lines = [line for line in readme.splitlines() if re.search(r"\bpip3? install\b", line)]
    assert any(re.search(rf"(^|[\s'\"]){re.escape(dist)}([\s'\"<>=]|$)", line) for line in pip_lines), (
        f"README has no pip install line naming {dist}")
