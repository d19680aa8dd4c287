"""The nodes' console scripts. Ctrl-C in the first seconds, while torch and rclpy are still being
imported, ends the process at once and quietly with status 130; from rclpy.init on, ros/spin.py
handles it. Interrupting those imports instead would surface as unrelated errors from inside C
extensions ("ImportError: initialization failed", numpy's "PyCapsule_Import could not import module")."""

from __future__ import annotations

import importlib
import os
import signal


def detect_node() -> int:
    return _run("slimyolo_ros.ros.node")


def track_node() -> int:
    return _run("slimyolo_ros.ros.track_node")


def _run(module: str) -> int:
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # started in the background: keep ignoring
        signal.signal(signal.SIGINT, _leave_now)  # until run_node installs the node's handling
    return importlib.import_module(module).main()


def _leave_now(signum: int, frame: object) -> None:
    # Nothing has started yet (no DDS participant, no file written), so leaving without cleanup is clean.
    os._exit(130)
