"""One camera of ``detect_node``: its image subscription (reliability ``auto`` per camera,
ros/qos.py), its starvation watch (ros/starvation.py), its counters (ros/node_stats.py) and its own
detections (and debug image) publisher.

The node has one of these per entry of ``image_topics`` (or one for ``input_topic``); they share the
model, the worker and the newest-frame slots (ros/frame_slot.py), where camera ``index`` owns slot
``index``.
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sensor_msgs.msg import CompressedImage, Image
from vision_msgs.msg import Detection2DArray

from slimyolo_ros.ros.input_checks import IMAGE_TYPES, wrong_type_publishers
from slimyolo_ros.ros.node_stats import Stats
from slimyolo_ros.ros.qos import AUTO, choose_reliability, describe_change, profile, reliability_name
from slimyolo_ros.ros.starvation import SILENT, StarvationWatch, starvation_message


@dataclass(frozen=True)
class CameraTopics:
    image: str  # as given (relative names resolve in the node's namespace); without /compressed
    detections: str
    debug_image: str


def _string_list(name: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, bytes, bytearray)) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"parameter {name!r}: a list of topic names, got {value!r}")
    return [v.strip() for v in value]


def camera_topics(p: dict[str, Any]) -> list[CameraTopics]:
    """The cameras the parameters ask for: ``image_topics`` when set, else the one ``input_topic``
    (with ``detections_topic`` and ``debug_image_topic``, exactly as a single-camera node). Several
    cameras publish on ``detections_topics`` or, by default, ``<image topic's namespace>/detections``.
    ValueError names the parameter."""
    images = _string_list("image_topics", p["image_topics"])
    outputs = _string_list("detections_topics", p["detections_topics"])
    if not images:
        if outputs:
            raise ValueError("parameter 'detections_topics' is set but 'image_topics' is empty "
                             "(one camera: use input_topic and detections_topic)")
        return [CameraTopics(p["input_topic"], p["detections_topic"], p["debug_image_topic"])]
    if outputs and len(outputs) != len(images):
        raise ValueError(f"parameter 'detections_topics': {len(outputs)} topics for {len(images)} "
                         f"image_topics (one per camera, in the same order)")
    if len(set(images)) != len(images):
        raise ValueError(f"parameter 'image_topics': a topic is listed twice in {images}")
    outputs = outputs or [posixpath.join(posixpath.dirname(t), "detections") for t in images]
    if len(set(outputs)) != len(outputs):
        raise ValueError(f"two cameras would publish on one topic ({outputs}): give image topics in "
                         f"different namespaces (/cam_front/image_raw) or set detections_topics")
    return [CameraTopics(i, o, posixpath.join(posixpath.dirname(o), "debug_image"))
            for i, o in zip(images, outputs, strict=True)]


class CameraInput:
    """A camera's subscription, watch, counters and publishers on ``node``; frames go to
    ``on_frame(camera, msg, info)`` (the node parks them in the camera's slot)."""

    def __init__(self, node: Any, index: int, topics: CameraTopics, p: dict[str, Any],
                 on_frame: Callable[[CameraInput, Any, Any], None]) -> None:
        self.node, self.index, self._p, self._on_frame = node, index, p, on_frame
        self.compressed = bool(p["compressed"])
        self.image_topic = node.resolve_topic_name(topics.image + ("/compressed" if self.compressed else ""))
        self.stats = Stats()
        self.starvation = StarvationWatch(float(p["starvation_timeout"]))
        self.starvation_warnings = 0
        self.starvation_text: str | None = None
        self.sub: Any = None
        self.reliability: str | None = None
        self.offered: list[str] = []
        self.wrong_types: set[str] = set()
        self.oversized = 0
        self.det_pub = node.create_publisher(Detection2DArray, topics.detections, 10)
        self.debug_pub = (node.create_publisher(Image, topics.debug_image, 1)
                          if p["publish_debug_image"] else None)
        self.last_logged: tuple[int, int, int] = (0, 0, 0)

    # ---- subscription: QoS and starvation ------------------------------------------------
    def _publisher_offers(self) -> list[str]:
        infos = self.node.get_publishers_info_by_topic(self.image_topic)
        for found in wrong_type_publishers(infos, self.compressed):
            if found not in self.wrong_types:  # once per type: it will not change its mind
                self.wrong_types.add(found)
                self.node.get_logger().warning(
                    f"{self.image_topic} is published as {found}, not {IMAGE_TYPES[self.compressed]}: "
                    f"this node cannot read it (check the remapping of the image topic)")
        return [reliability_name(i.qos_profile.reliability) for i in infos
                if str(i.topic_type) == IMAGE_TYPES[self.compressed]]

    def update_subscription(self) -> None:
        """(Re)create the image subscription when the reliability to use changed (auto mode)."""
        self.offered = self._publisher_offers()
        want = choose_reliability(self._p["reliability"], self.offered, self.reliability)
        if want == self.reliability:
            return
        if self.sub is not None:
            self.node.destroy_subscription(self.sub)
            self.stats.forget_publishers()  # frames missed while switching are no transport loss
        self.sub = self.node.create_subscription(CompressedImage if self.compressed else Image,
                                                 self.image_topic, self._on_image, profile(want, depth=1))
        if self._p["reliability"] == AUTO:
            self.node.get_logger().info(describe_change(self.image_topic, self.reliability, want,
                                                        self.offered))
        self.reliability = want

    def _on_image(self, msg: Any, info: Any) -> None:
        self._on_frame(self, msg, info)

    def watch(self) -> str | None:
        """The QoS re-decision and the starvation watch (the node's graph timer): the warning due now."""
        self.update_subscription()
        with self.stats.lock:
            received, lost, busy_s = self.stats.received, self.stats.dropped_middleware, self.stats.busy_s
        kind = self.starvation.update(time.monotonic(), len(self.offered), received, lost, busy_s)
        if kind is None:
            return None
        self.starvation_warnings += 1
        window = self.starvation.last_window
        self.starvation_text = starvation_message(
            kind, self.image_topic, self.reliability or "", self.offered,
            self.starvation.timeout_s if kind == SILENT else self.starvation.last_window_s,
            received=window[0], sent=window[0] + window[1])
        return self.starvation_text

    def unsubscribe(self) -> None:
        if self.sub is not None:
            self.node.destroy_subscription(self.sub)
        self.sub, self.reliability = None, None
        self.stats.forget_publishers()

    def destroy_publishers(self) -> None:
        for pub in (self.det_pub, self.debug_pub):
            if pub is not None:
                self.node.destroy_publisher(pub)
        self.det_pub = self.debug_pub = None

    # ---- counters ------------------------------------------------------------------------
    def add_busy(self, seconds: float) -> None:
        """The worker's time on frames, of any camera: while it works on another camera this one's
        frames are replaced by design, which the starvation watch must not call loss."""
        with self.stats.lock:
            self.stats.busy_s += seconds

    def record(self, t_recv: float, t_done: float, inference_ms: float, stage_ms: dict[str, float]) -> None:
        """One frame answered: ``t_*`` monotonic seconds (received, published)."""
        with self.stats.lock:
            s = self.stats
            s.processed += 1
            s.window_processed += 1
            s.latency_ms.append((t_done - t_recv) * 1e3)
            s.recent_latency.append((t_done, (t_done - t_recv) * 1e3))
            s.inference_ms.append(inference_ms)
            for k, v in stage_ms.items():
                s.stage_ms[k].append(v)

    def snapshot(self) -> dict[str, Any]:
        """``~/stats`` values of this camera (the counters' window restarts)."""
        s = self.stats.snapshot()
        s.update(reliability=self.reliability, publishers=len(self.offered),
                 starved=self.starvation.starved, starvation_warnings=self.starvation_warnings)
        return s
