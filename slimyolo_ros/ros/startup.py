"""A node's command line checked before rclpy sees it, and rclpy's start-up errors as one line: a
missing or broken ``--params-file`` or an unknown ``--ros-args`` flag otherwise ends in a traceback
(``RCLError``, ``UnknownROSArgsError``) with C source locations in it."""

from __future__ import annotations

import re
from pathlib import Path

_SOURCE_LOCATION = re.compile(r",? at [^,]+?:\d+")


def _params_loader() -> type:
    import yaml

    class Loader(yaml.SafeLoader):
        """SafeLoader plus ``!!python/tuple`` as a list: launch_ros writes list parameters that way
        (rcl reads them), so a launched node's own params file must not be refused here."""

    Loader.add_constructor("tag:yaml.org,2002:python/tuple",
                           lambda loader, node: loader.construct_sequence(node))
    return Loader


def ros_args_problem(argv: list[str]) -> str | None:
    """What is wrong with a ``--params-file`` in ``argv`` (missing, a directory, not YAML), or None.
    Checked here because rcl reports it as "Couldn't parse params file" for all three."""
    import yaml

    in_ros_args = False
    for i, arg in enumerate(argv):
        if arg == "--ros-args":
            in_ros_args = True
        elif arg == "--":
            in_ros_args = False
        elif in_ros_args and arg == "--params-file":
            if i + 1 >= len(argv):
                return "--params-file needs a file name"
            path = Path(argv[i + 1])
            if path.is_dir():
                return f"--params-file {path}: is a directory, expected a YAML file"
            if not path.is_file():
                return f"--params-file {path}: no such file"
            try:
                content = yaml.load(path.read_text(), Loader=_params_loader())  # noqa: S506 (a SafeLoader)
            except (OSError, UnicodeDecodeError) as exc:
                return f"--params-file {path}: cannot read it: {exc}"
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                where = f":{mark.line + 1}" if mark is not None else ""
                problem = getattr(exc, "problem", None) or exc
                return f"--params-file {path}{where}: not valid YAML ({problem})"
            if not isinstance(content, dict):
                return (f"--params-file {path}: expected a mapping of node names to ros__parameters, "
                        f"found {type(content).__name__}")
    return None


def rcl_error_line(exc: BaseException) -> str | None:
    """rclpy's start-up error as one line without C source locations; None for other exceptions."""
    kind = type(exc).__name__
    text = " ".join(str(exc).split())
    if kind == "UnknownROSArgsError":
        flags = re.findall(r"'([^']*)'", text) or [text]
        return f"unknown ROS argument(s): {' '.join(flags)} (ros2 run --help / --ros-args --help lists them)"
    if kind in ("RCLError", "RCLInvalidROSArgsError", "InvalidParameterValueException",
                "ParameterAlreadyDeclaredException"):
        return _SOURCE_LOCATION.sub("", text)
    return None
