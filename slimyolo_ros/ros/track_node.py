"""``track_node``: vision_msgs/Detection2DArray in (``detections``), tracked Detection2DArray out
(``tracks``).

A thin ROS shell over :class:`slimyolo_ros.tracking.MultiObjectTracker` (the tracking is there):

* exactly one ``tracks`` message per input message, with the input's header (empty when nothing is
  tracked, and empty for an input that cannot be read: a bad message is one throttled warning, never a
  crash);
* one Detection2D per track present in the frame: ``id`` = the track id (a string, stable for the
  track's life, never reused), the tracker's box, ``results[0]`` = class name and score;
* time is the input's header stamp, so dropped frames are gaps and a stamp going backwards (a bag
  looping) resets the tracker with one warning;
* class names travel as strings; the node numbers them in the order it first sees them.

Startup failures (a bad parameter) are one error line and exit status 2, like ``detect_node``.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import fields
from typing import Any

import numpy as np
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from vision_msgs.msg import Detection2DArray

from slimyolo_ros.errors import SlimyoloError
from slimyolo_ros.ros.diagnostics import MessageCounts, tracker_diagnostics
from slimyolo_ros.ros.lifecycle import node_class
from slimyolo_ros.ros.messages import to_detection2d_array
from slimyolo_ros.ros.spin import run_node
from slimyolo_ros.tracking import MultiObjectTracker, TrackConfigError, TrackerConfig

NODE_NAME = "slimyolo_tracker"
WARN_PERIOD_S = 5.0
_TOPIC_PARAMS = {"detections_topic": "detections", "tracks_topic": "tracks", "reliability": "reliable"}


class BadMessage(ValueError):
    """An input Detection2DArray the tracker cannot use (the text says which field)."""


def _stamp_s(header: Any) -> float:
    return int(header.stamp.sec) + int(header.stamp.nanosec) * 1e-9


class TrackerNode(Node):
    """``managed``: parameters and /diagnostics only; ros/lifecycle.py then drives ``setup``/``start``/
    ``stop``/``teardown``. Unmanaged, the node sets up and starts at once."""

    def __init__(self, managed: bool = False, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        defaults = {**TrackerConfig().to_dict(), **_TOPIC_PARAMS}
        # Dynamic typing: `track_buffer_s: 2` (an integer) must mean 2.0 s, and a wrong type must reach
        # TrackerConfig's validation (one line naming it), not rclpy's type-check traceback.
        any_type = ParameterDescriptor(dynamic_typing=True)
        for name, default in defaults.items():
            self.declare_parameter(name, default, any_type)
        self.tracker: MultiObjectTracker | None = None
        self.pub: Any = None
        self.sub: Any = None
        self.state = "unconfigured"
        self.counts = MessageCounts()
        self._diagnostics = tracker_diagnostics(self)
        if not managed:
            self.setup()
            self.start()

    def setup(self) -> None:
        """Build the tracker from the parameters and create the publisher (lifecycle: configure)."""
        values = {f.name: self.get_parameter(f.name).value for f in fields(TrackerConfig)}
        # A YAML float written as an integer (track_buffer_s: 2) arrives as int: same meaning.
        for f in fields(TrackerConfig):
            if f.type == "float" and isinstance(values[f.name], int) and not isinstance(values[f.name], bool):
                values[f.name] = float(values[f.name])
        try:
            self.tracker = MultiObjectTracker(TrackerConfig.from_dict(values, source="parameters"))
        except TrackConfigError as exc:
            raise SlimyoloError(str(exc)) from None
        reliability = self.get_parameter("reliability").value
        for name in ("detections_topic", "tracks_topic"):
            topic = self.get_parameter(name).value
            if not isinstance(topic, str) or not topic:
                raise SlimyoloError(f"parameters: {name} {topic!r} is not a topic name")
        if reliability not in ("reliable", "best_effort"):
            raise SlimyoloError(f"parameters: reliability {reliability!r} is not reliable or best_effort")
        qos_in = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST,
                            reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable"
                            else ReliabilityPolicy.BEST_EFFORT)
        self._qos_in = qos_in
        self.class_index: dict[str, int] = {}
        self.class_names: list[str] = []
        self._last_warn: dict[str, float] = {}
        self.pub = self.create_publisher(Detection2DArray, self.get_parameter("tracks_topic").value, 10)
        self.state = "inactive"

    def start(self) -> None:
        """Subscribe the detections (lifecycle: activate)."""
        self.sub = self.create_subscription(Detection2DArray, self.get_parameter("detections_topic").value,
                                            self._on_detections, self._qos_in)
        self.state = "active"
        cfg = self.tracker.config
        mode = "class-agnostic" if cfg.class_agnostic else "per class"
        self.get_logger().info(f"tracking with {cfg.algorithm} ({mode}, buffer {cfg.track_buffer_s:g} s): "
                               f"{self.sub.topic_name} -> {self.pub.topic_name}")

    def stop(self) -> None:
        """Release the detections subscription (lifecycle: deactivate)."""
        self.destroy_subscription(self.sub)
        self.sub = None
        self.state = "inactive"

    def teardown(self) -> None:
        """Drop the tracker and its tracks, destroy the publisher (lifecycle: cleanup)."""
        if self.pub is not None:
            self.destroy_publisher(self.pub)
        self.pub, self.tracker = None, None
        self.state = "unconfigured"

    def _to_numpy(self, msg: Detection2DArray) -> np.ndarray:
        rows = []
        for i, d in enumerate(msg.detections):
            w, h = float(d.bbox.size_x), float(d.bbox.size_y)
            cx, cy = float(d.bbox.center.position.x), float(d.bbox.center.position.y)
            if not all(math.isfinite(v) for v in (w, h, cx, cy)) or w < 0 or h < 0:
                raise BadMessage(f"detections[{i}].bbox is not finite and non-negative "
                                 f"(center {cx}, {cy}, size {w} x {h})")
            if d.results:
                best = max(d.results, key=lambda r: r.hypothesis.score)
                name, score = str(best.hypothesis.class_id), float(best.hypothesis.score)
            else:
                name, score = "", 0.0
            if not math.isfinite(score):
                raise BadMessage(f"detections[{i}].results score {score} is not finite")
            if name not in self.class_index:
                self.class_index[name] = len(self.class_names)
                self.class_names.append(name)
            rows.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, score, self.class_index[name]])
        return np.asarray(rows, np.float32).reshape(-1, 6)

    def _on_detections(self, msg: Detection2DArray) -> None:
        t0 = self.counts.received()
        try:
            dets = self._to_numpy(msg)
            stamp = _stamp_s(msg.header)
            resets = self.tracker.resets
            tracks = self.tracker.update(dets, stamp)
            if self.tracker.resets != resets:
                self.get_logger().warning(f"stamp went backwards (to {stamp:.3f} s): tracker reset, new ids "
                                          "from here (a looping bag?)")
            out = to_detection2d_array(tracks.as_array(), msg.header, self.class_names, ids=tracks.ids)
        except Exception as exc:  # a node never dies on a bad message: warn, publish an empty result
            self._warn(type(exc).__name__, f"input message not tracked: {' '.join(str(exc).split())}")
            out = Detection2DArray()
            out.header = msg.header
        self.pub.publish(out)
        self.counts.answered(t0)

    def _warn(self, kind: str, text: str) -> None:
        now = time.monotonic()
        if now - self._last_warn.get(kind, -math.inf) >= WARN_PERIOD_S:
            self._last_warn[kind] = now
            self.get_logger().warning(text)


def main(argv: list[str] | None = None) -> int:
    return run_node(node_class(TrackerNode, argv), NODE_NAME, argv)


if __name__ == "__main__":
    sys.exit(main())
