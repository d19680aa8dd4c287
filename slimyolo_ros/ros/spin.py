"""The life of a node process, shared by detect_node and track_node: start, spin, stop cleanly."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from slimyolo_ros.errors import SlimyoloError


def run_node(make_node: Callable[[], Node], name: str, argv: list[str] | None = None) -> int:
    """Build the node and spin it until Ctrl-C or shutdown. A startup failure (a bad parameter) is one
    error line under the node's name and exit status 2; a clean stop is 0. The node's ``close()``, if it
    has one, runs before it is destroyed."""
    rclpy.init(args=sys.argv if argv is None else argv)
    try:
        node = make_node()
    except SlimyoloError as exc:
        rclpy.logging.get_logger(name).error(str(exc))
        rclpy.try_shutdown()
        return 2
    except KeyboardInterrupt:
        rclpy.try_shutdown()
        return 130
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # Ctrl-C in a terminal reaches the node twice: from the terminal (the whole foreground process
        # group) and forwarded by ros2 launch. The second must not interrupt the orderly shutdown.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        close = getattr(node, "close", None)
        if close is not None:
            close()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
