"""A test-side rclpy node that spins in a background thread and collects what it receives."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, poll: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class Probe:
    """rclpy in the test process: its own context, one node, an executor thread."""

    def __init__(self, name: str = "test_probe") -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = Node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # shutdown races
                if not self.context.ok():
                    return
                raise

    def collect(self, msg_type: Any, topic: str, qos: QoSProfile = RELIABLE) -> list[tuple[float, Any]]:
        """Subscribe; returns the live list of (monotonic receive time, message)."""
        received: list[tuple[float, Any]] = []

        def on_msg(msg: Any) -> None:
            with self.lock:
                received.append((time.monotonic(), msg))

        self.node.create_subscription(msg_type, topic, on_msg, qos)
        return received

    def call(self, client: Any, request: Any, timeout: float = 10.0) -> Any:
        wait_for(lambda: client.service_is_ready(), timeout, f"service {client.srv_name}")
        future = client.call_async(request)
        wait_for(future.done, timeout, f"reply from {client.srv_name}")
        return future.result()

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=2.0)


class NodeProcess:
    """``detect_node`` (or any command) as a subprocess with its output in a log file."""

    def __init__(self, cmd: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._fh = open(log, "wb")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._fh, stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_log(self, needle: str, timeout: float) -> str:
        def seen() -> bool:
            if self.proc.poll() is not None and needle not in self.text():
                raise AssertionError(f"process exited ({self.proc.returncode}) before logging "
                                     f"{needle!r}:\n{self.text()[-3000:]}")
            return needle in self.text()

        wait_for(seen, timeout, f"{needle!r} in {self.log}", poll=0.1)
        return self.text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(2)  # SIGINT: the node's clean shutdown path
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()
        return self.proc.returncode


def node_env(base: dict[str, str]) -> dict[str, str]:
    env = dict(base)
    env["RCUTILS_LOGGING_BUFFERED_STREAM"] = "0"
    env["RCUTILS_COLORIZED_OUTPUT"] = "0"
    env.setdefault("OMP_NUM_THREADS", str(min(2, os.cpu_count() or 1)))
    return env
