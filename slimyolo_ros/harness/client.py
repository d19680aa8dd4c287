"""The ROS client that drives a node under test: rclpy in this process (its own context, an executor
thread). It publishes frames as serialised bytes on one topic and collects the replies on any number of
output topics by header stamp, plus typed messages (``collect``), the nodes' ``~/stats`` JSON and
service calls."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from slimyolo_ros.harness.stamps import stamp_of
from slimyolo_ros.ros.qos import BEST_EFFORT, RELIABLE, profile


def qos(depth: int = 10, reliable: bool = True, latched: bool = False) -> Any:
    return profile(RELIABLE if reliable else BEST_EFFORT, depth, latched)


class Client:
    """rclpy in this process: its own context and node, spun by an executor thread.

    ``publisher``/``collect``/``call`` are plain rclpy; ``replies(topic)`` subscribes to serialised
    messages and files them by header stamp (``self.replies_on[topic][stamp] = (perf_counter, bytes)``,
    a repeated stamp counts in ``duplicates``); ``stats(node)`` keeps a node's ``~/stats`` JSON.
    """

    def __init__(self, name: str = "slimyolo_runner") -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self._rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(args=[], context=self.context)  # not sys.argv: a "k:=v" there is no remap of ours
        self.node = rclpy.create_node(name, context=self.context)
        self.lock = threading.Condition()
        self.replies_on: dict[str, dict[int, tuple[float, bytes]]] = {}
        self.duplicates = 0
        self.published: dict[int, float] = {}  # stamp -> perf_counter at first publish
        self.resent = 0
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # the context shut down under us: nothing left to do
                if not self.context.ok():
                    return
                raise

    # ---- plain rclpy ------------------------------------------------------------------------
    def publisher(self, msg_type: Any, topic: str, profile: Any = None) -> Any:
        return self.node.create_publisher(msg_type, topic, profile or qos(5))

    def collect(self, msg_type: Any, topic: str, profile: Any = None) -> list[tuple[float, Any]]:
        """Subscribe; returns the live list of (monotonic receive time, message)."""
        received: list[tuple[float, Any]] = []

        def on_msg(msg: Any) -> None:
            with self.lock:
                received.append((time.monotonic(), msg))

        self.node.create_subscription(msg_type, topic, on_msg, profile or qos(50))
        return received

    def call(self, client: Any, request: Any, timeout: float = 10.0) -> Any:
        wait_until(client.service_is_ready, timeout, f"service {client.srv_name}")
        future = client.call_async(request)
        wait_until(future.done, timeout, f"reply from {client.srv_name}")
        return future.result()

    # ---- frames and replies -----------------------------------------------------------------
    def replies(self, topic: str, msg_type: Any = None, depth: int = 100) -> dict[int, tuple[float, bytes]]:
        """Collect the serialised ``msg_type`` (default Detection2DArray) on ``topic`` by stamp."""
        if msg_type is None:
            from vision_msgs.msg import Detection2DArray as msg_type
        box: dict[int, tuple[float, bytes]] = self.replies_on.setdefault(topic, {})

        def on_raw(raw: bytes) -> None:
            t = time.perf_counter()
            stamp = stamp_of(raw)
            with self.lock:
                if stamp in box:
                    self.duplicates += 1
                else:
                    box[stamp] = (t, raw)
                self.lock.notify_all()

        self.node.create_subscription(msg_type, topic, on_raw, qos(depth), raw=True)
        return box

    def stats(self, node_name: str) -> list[tuple[float, dict]]:
        """The JSON of ``/<node_name>/stats`` as (perf_counter, dict), live."""
        from std_msgs.msg import String

        got: list[tuple[float, dict]] = []
        self.node.create_subscription(
            String, f"/{node_name.lstrip('/')}/stats",
            lambda m: got.append((time.perf_counter(), json.loads(m.data))), qos(10))
        return got

    def label_names(self, topic: str) -> list[tuple[float, list[str]]]:
        """Class names from a LabelInfo topic (latched), live."""
        from vision_msgs.msg import LabelInfo

        from slimyolo_ros.ros.detections import label_names

        got: list[tuple[float, list[str]]] = []
        self.node.create_subscription(LabelInfo, topic,
                                      lambda m: got.append((time.perf_counter(), label_names(m))),
                                      qos(1, latched=True))
        return got

    def send(self, pub: Any, stamp: int, raw: bytes) -> float:
        """Publish serialised ``raw`` (already carrying ``stamp``); the first send's time is kept."""
        t = time.perf_counter()
        self.published.setdefault(stamp, t)
        pub.publish(raw)
        return t

    def wait_reply(self, topic: str, stamp: int, timeout: float,
                   alive: Callable[[], bool] = lambda: True) -> bool:
        box = self.replies_on[topic]
        end = time.perf_counter() + timeout
        with self.lock:
            while stamp not in box:
                left = end - time.perf_counter()
                if left <= 0 or not alive():
                    return stamp in box
                self.lock.wait(min(left, 0.1))
        return True

    def answered(self, topic: str) -> int:
        with self.lock:
            return sum(1 for s in self.published if s in self.replies_on[topic])

    def latencies_s(self, topic: str) -> list[float]:
        with self.lock:
            box = self.replies_on[topic]
            return [box[s][0] - t for s, t in self.published.items() if s in box]

    def close(self) -> None:
        try:
            self.executor.shutdown(timeout_sec=1.0)
            self.node.destroy_node()
        finally:
            if self.context.ok():
                self._rclpy.shutdown(context=self.context)
        self._thread.join(2.0)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, poll: float = 0.02) -> Any:
    """The first truthy ``predicate()`` within ``timeout`` s; raises TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
