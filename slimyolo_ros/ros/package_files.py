"""Where the package's own files (config/, models/, launch/) are: the source checkout the code runs
from, else the installed share folder.

One lookup for the node (a relative ``weights`` path) and for the tools that start nodes (their
default parameters files), so both find the same files. The checkout comes first because the code
that runs is the checkout's (``pip install -e`` installs no share folder); an installed package has
no ``package.xml`` beside its modules and uses the share folder: the ament index's (``colcon
build``), else ``<prefix>/share/slimyolo_ros`` (a plain ``pip install``).
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = "slimyolo_ros"
REPO = Path(__file__).resolve().parents[2]


def search_dirs() -> list[Path]:
    """The folders that may hold the package's files, in the order they are tried."""
    dirs = []
    if (REPO / "package.xml").is_file():  # running from a source checkout
        dirs.append(REPO)
    try:
        from ament_index_python.packages import get_package_share_directory

        dirs.append(Path(get_package_share_directory(PACKAGE)))
    except Exception:  # not installed with colcon / no AMENT_PREFIX_PATH
        pass
    prefix_share = Path(sys.prefix) / "share" / PACKAGE
    if prefix_share.is_dir() and prefix_share not in dirs:
        dirs.append(prefix_share)
    return dirs


def resolve_path(value: str) -> Path:
    """A path as given when absolute or present, else the first of :func:`search_dirs` that has it.

    So ``models/x.pt`` means the package's shipped model both after ``colcon build`` and in a source
    checkout. When it exists nowhere, the first place looked is returned (for the error message).
    """
    path = Path(value).expanduser()
    if path.is_absolute() or path.exists():
        return path
    candidates = search_dirs()
    found = next((d / path for d in candidates if (d / path).exists()), None)
    return found or (candidates[0] / path if candidates else path)


def config_file(name: str) -> Path | None:
    """``config/<name>`` of the package (see :func:`search_dirs`); None when no folder has it."""
    return next((d / "config" / name for d in search_dirs() if (d / "config" / name).is_file()), None)
