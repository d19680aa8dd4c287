"""The tests' view of slimyolo_ros/harness/: the same node-under-test harness bag replay and the
benchmark use, with test-style failures (AssertionError naming what was awaited)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slimyolo_ros.harness import Client, NodeDiedError, NodeUnderTest, qos, wait_until

RELIABLE = qos(50)
LATCHED = qos(1, latched=True)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, poll: float = 0.02) -> Any:
    try:
        return wait_until(predicate, timeout, what, poll)
    except TimeoutError as exc:
        raise AssertionError(str(exc)) from None


class Probe(Client):
    """rclpy in the test process: its own context, one node, an executor thread."""

    def __init__(self, name: str = "test_probe") -> None:
        super().__init__(name)

    def collect(self, msg_type: Any, topic: str, profile: Any = RELIABLE) -> list[tuple[float, Any]]:
        return super().collect(msg_type, topic, profile)


class NodeProcess(NodeUnderTest):
    """``detect_node`` (or any command) as a subprocess with its output in a log file."""

    def __init__(self, cmd: list[str], env: dict[str, str], log: Path) -> None:
        super().__init__(cmd, env, log)

    def wait_log(self, needle: str, timeout: float) -> str:
        try:
            return super().wait_log(needle, timeout)
        except (TimeoutError, NodeDiedError) as exc:
            raise AssertionError(f"{exc}\n{self.text()[-3000:]}") from None


def node_env(base: dict[str, str]) -> dict[str, str]:
    env = dict(base)
    env["RCUTILS_LOGGING_BUFFERED_STREAM"] = "0"
    env["RCUTILS_COLORIZED_OUTPUT"] = "0"
    env.setdefault("OMP_NUM_THREADS", str(min(2, os.cpu_count() or 1)))
    return env
