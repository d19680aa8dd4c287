"""Rewrite the build machine's Python paths baked into the ROS wheels' exported CMake files.

The PyPI ROS 2 wheels were built in a manylinux image; their CMake config files name
``/opt/python/cp311-cp311/...`` include directories, and CMake refuses a target whose
INTERFACE_INCLUDE_DIRECTORIES "includes non-existent path". We point them at this interpreter.
No library does this; it is a one-off text substitution, so it is written here.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

import numpy

OLD_NUMPY = "/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include"
OLD_PYINC = "/opt/python/cp311-cp311/include/python3.11"


def main(prefix: str) -> int:
    new_numpy = numpy.get_include()
    new_pyinc = sysconfig.get_paths()["include"]
    changed = 0
    for path in Path(prefix, "share").rglob("*.cmake"):
        text = path.read_text(errors="surrogateescape")
        if OLD_NUMPY not in text and OLD_PYINC not in text:
            continue
        text = text.replace(OLD_NUMPY, new_numpy).replace(OLD_PYINC, new_pyinc)
        path.write_text(text, errors="surrogateescape")
        changed += 1
    print(f"fix_ros_cmake_paths: {changed} CMake files now point at {new_pyinc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
