"""Rewrite the build machine's Python paths baked into the ROS wheels' exported CMake files.

The PyPI ROS 2 wheels were built in a manylinux image; their CMake config files name
``/opt/python/cp3XX-cp3XX/...`` include directories of the Python each wheel was built for (cp310,
cp311, cp312), and CMake refuses a target whose INTERFACE_INCLUDE_DIRECTORIES "includes non-existent
path". We point them at this interpreter. No library does this; it is a one-off text substitution,
so it is written here.
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

import numpy

# numpy 2 keeps its headers in numpy/_core/include, numpy 1 in numpy/core/include.
OLD_NUMPY = re.compile(r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/_?core/include")
OLD_PYINC = re.compile(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+")


def rewrite(text: str, new_numpy: str, new_pyinc: str) -> str:
    """``text`` with every build-machine numpy and Python include path replaced (numpy's first: the
    Python include pattern does not match it, but the order keeps that obvious)."""
    text = OLD_NUMPY.sub(lambda _: new_numpy, text)
    return OLD_PYINC.sub(lambda _: new_pyinc, text)


def main(prefix: str) -> int:
    new_numpy = numpy.get_include()
    new_pyinc = sysconfig.get_paths()["include"]
    changed = 0
    for path in Path(prefix, "share").rglob("*.cmake"):
        text = path.read_text(errors="surrogateescape")
        fixed = rewrite(text, new_numpy, new_pyinc)
        if fixed == text:
            continue
        path.write_text(fixed, errors="surrogateescape")
        changed += 1
    print(f"fix_ros_cmake_paths: {changed} CMake files now point at {new_pyinc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
