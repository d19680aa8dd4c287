"""The life of a node process, shared by detect_node and track_node: start, spin, stop cleanly."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from slimyolo_ros.errors import SlimyoloError
from slimyolo_ros.ros.startup import rcl_error_line, ros_args_problem

SPIN_WAKE_S = 0.5  # the longest the executor waits before looking at the context again


def run_node(make_node: Callable[[], Node], name: str, argv: list[str] | None = None) -> int:
    """Build the node and spin it until Ctrl-C or shutdown. A startup failure (a bad parameter) is one
    error line under the node's name and exit status 2; a clean stop is 0 (130 when Ctrl-C came while
    the node was being built). The node's ``close()``, if it has one, runs before it is destroyed."""
    # Ctrl-C must not raise KeyboardInterrupt: raised while rclpy's C++ code is calling back into
    # Python, pybind11 turns it into std::terminate ("terminate called after throwing an instance of
    # 'pybind11::error_already_set' ... KeyboardInterrupt", status -6). rclpy's own handler, installed
    # by init and chained to this one, shuts the context down instead: a node still being built fails
    # its next rcl call, a spinning one leaves spin(); both end here as a clean stop.
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, lambda signum, frame: None)
    argv = sys.argv if argv is None else argv
    try:
        problem = ros_args_problem(argv)
        if problem is None:
            rclpy.init(args=argv)
    except Exception as exc:  # rcl's own argument errors
        problem = rcl_error_line(exc)
        if problem is None:
            raise
    if problem is not None:
        print(f"{name}: error: {problem}", file=sys.stderr)
        return 2
    try:
        # The executor first: its constructor is quick, while a Ctrl-C that lands inside it (context
        # shut down halfway) makes rclpy's Executor.__del__ print a traceback on the way out.
        executor = SingleThreadedExecutor()
        node = make_node()
        executor.add_node(node)
    except Exception as exc:
        if not rclpy.ok():  # Ctrl-C while building: the context was shut down under the constructor
            return 130
        line = str(exc) if isinstance(exc, SlimyoloError) else rcl_error_line(exc)
        if line is None:
            raise
        rclpy.logging.get_logger(name).error(line)
        rclpy.try_shutdown()
        return 2
    try:
        # Not executor.spin(): it waits with no timeout, and rclpy's handler can wake that wait before
        # the context reads as shut down; a node without a timer of its own (track_node) would then
        # wait forever (docs/node.md: Ctrl-C). Half-second waits bound the time to notice.
        while rclpy.ok():
            executor.spin_once(timeout_sec=SPIN_WAKE_S)
    except ExternalShutdownException:
        pass
    except Exception:
        if rclpy.ok():
            raise
        # The context was shut down between the check and the next wait: rclpy's wait set creation
        # then fails with "context is not valid". A stop, as during construction.
    finally:
        # Ctrl-C in a terminal reaches the node twice: from the terminal (the whole foreground process
        # group) and forwarded by ros2 launch. Once stopping, rclpy's handler must not shut the context
        # down again while the node is being destroyed.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        close = getattr(node, "close", None)
        if close is not None:
            close()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
