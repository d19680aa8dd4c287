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

Parameters (ros/track_parameters.py) have descriptions and ranges; the tracker's settings can be changed
at runtime (``ros2 param set``), validated by TrackerConfig first: a bad value is refused with the reason,
a good one restarts the tracker with it. Startup failures (a bad parameter) are one error line and exit
status 2, like ``detect_node``.
"""

from __future__ import annotations

import sys
from dataclasses import fields
from typing import Any

from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from vision_msgs.msg import Detection2DArray

from slimyolo_ros.errors import SlimyoloError
from slimyolo_ros.ros.compat import on_parameter_update
from slimyolo_ros.ros.detections import ClassIndex, to_array, to_message
from slimyolo_ros.ros.diagnostics import MessageCounts, tracker_diagnostics
from slimyolo_ros.ros.lifecycle import node_class
from slimyolo_ros.ros.qos import BEST_EFFORT, RELIABLE, profile
from slimyolo_ros.ros.spin import run_node
from slimyolo_ros.ros.throttle import ThrottledWarnings
from slimyolo_ros.ros.track_parameters import PARAMETERS
from slimyolo_ros.tracking import MultiObjectTracker, TrackConfigError, TrackerConfig

NODE_NAME = "slimyolo_tracker"
WARN_PERIOD_S = 5.0
_TRACKER_FIELDS = {f.name: f for f in fields(TrackerConfig)}


def _stamp_s(header: Any) -> float:
    return int(header.stamp.sec) + int(header.stamp.nanosec) * 1e-9


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def tracker_config(values: dict[str, Any], source: str = "parameters") -> TrackerConfig:
    """The tracker's settings from parameter values (TrackerConfig validates them and names a bad one).
    A float written as an integer (``track_buffer_s: 2``) means the same number."""
    values = dict(values)
    for name, value in values.items():
        if _TRACKER_FIELDS[name].type == "float" and isinstance(value, int) and not isinstance(value, bool):
            values[name] = float(value)
    return TrackerConfig.from_dict(values, source=source)


class TrackerNode(Node):
    """``managed``: parameters and /diagnostics only; ros/lifecycle.py then drives ``setup``/``start``/
    ``stop``/``teardown``. Unmanaged, the node sets up and starts at once."""

    def __init__(self, managed: bool = False, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        for name, (default, descriptor) in PARAMETERS.items():
            try:
                self.declare_parameter(name, default, descriptor)
            except Exception as exc:  # out of range in a params file or on the command line
                raise SlimyoloError(f"parameter {name!r}: {_one_line(exc)}") from None
        self.tracker: MultiObjectTracker | None = None
        self.pub: Any = None
        self.sub: Any = None
        self.state = "unconfigured"
        self.counts = MessageCounts()
        self._warnings = ThrottledWarnings(self.get_logger().warning, WARN_PERIOD_S)
        on_parameter_update(self, self._validate_update, self._apply_update)
        self._diagnostics = tracker_diagnostics(self)
        if not managed:
            self.setup()
            self.start()

    def setup(self) -> None:
        """Build the tracker from the parameters and create the publisher (lifecycle: configure)."""
        try:
            tracker = MultiObjectTracker(tracker_config(self._parameter_values()))
        except TrackConfigError as exc:
            raise SlimyoloError(str(exc)) from None
        reliability = self.get_parameter("reliability").value
        for name in ("detections_topic", "tracks_topic"):
            topic = self.get_parameter(name).value
            if not isinstance(topic, str) or not topic:
                raise SlimyoloError(f"parameters: {name} {topic!r} is not a topic name")
        if reliability not in (RELIABLE, BEST_EFFORT):
            raise SlimyoloError(f"parameters: reliability {reliability!r} is not reliable or best_effort")
        tracker.warm_up()  # before subscribing: the first message must not wait for the imports
        self.tracker = tracker
        self.classes = ClassIndex()
        self.pub = self.create_publisher(Detection2DArray, self.get_parameter("tracks_topic").value,
                                         profile())
        self.state = "inactive"

    def start(self) -> None:
        """Subscribe the detections (lifecycle: activate)."""
        reliability = self.get_parameter("reliability").value
        self.sub = self.create_subscription(Detection2DArray, self.get_parameter("detections_topic").value,
                                            self._on_detections, profile(reliability))
        self.state = "active"
        self.get_logger().info(f"tracking with {self._describe()}: "
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

    def _parameter_values(self) -> dict[str, Any]:
        return {name: self.get_parameter(name).value for name in _TRACKER_FIELDS}

    def _describe(self) -> str:
        cfg = self.tracker.config
        mode = "class-agnostic" if cfg.class_agnostic else "per class"
        return f"{cfg.algorithm} ({mode}, buffer {cfg.track_buffer_s:g} s)"

    # ---- runtime parameters --------------------------------------------------------------
    def _updated_config(self, params: list[Parameter]) -> TrackerConfig:
        changes = {p.name: p.value for p in params if p.name in _TRACKER_FIELDS}
        # Unconfigured (managed mode) there is no tracker yet: the parameters are the settings.
        current = self._parameter_values() if self.tracker is None else self.tracker.config.to_dict()
        return tracker_config({**current, **changes})

    def _validate_update(self, params: list[Parameter]) -> SetParametersResult:
        try:
            self._updated_config(params)
        except TrackConfigError as exc:
            return SetParametersResult(successful=False, reason=_one_line(exc))
        return SetParametersResult(successful=True)

    def _apply_update(self, params: list[Parameter]) -> None:
        cfg = self._updated_config(params)
        if self.tracker is None or cfg == self.tracker.config:  # unconfigured: setup() reads them
            return
        # The library trackers are built from the settings, so new settings mean new trackers; reset()
        # keeps the ids handed out so far from being handed out again.
        self.tracker.config = cfg
        self.tracker.reset()
        changed = ", ".join(f"{p.name} = {p.value}" for p in params if p.name in _TRACKER_FIELDS)
        self.get_logger().info(f"parameter {changed}: tracking with {self._describe()}, tracks start over")

    # ---- data path -----------------------------------------------------------------------
    def _on_detections(self, msg: Detection2DArray) -> None:
        t0 = self.counts.received()
        try:
            dets = to_array(msg, self.classes)
            stamp = _stamp_s(msg.header)
            resets = self.tracker.resets
            tracks = self.tracker.update(dets, stamp)
            if self.tracker.resets != resets:
                self.get_logger().warning(f"stamp went backwards (to {stamp:.3f} s): tracker reset, new ids "
                                          "from here (a looping bag?)")
            out = to_message(tracks.as_array(), msg.header, self.classes.names, ids=tracks.ids)
        except Exception as exc:  # a node never dies on a bad message: warn, publish an empty result
            self._warnings.warn(type(exc).__name__, f"input message not tracked: {_one_line(exc)}")
            out = Detection2DArray()
            out.header = msg.header
        self.pub.publish(out)
        self.counts.answered(t0)


def main(argv: list[str] | None = None) -> int:
    return run_node(node_class(TrackerNode, argv), NODE_NAME, argv)


if __name__ == "__main__":
    sys.exit(main())
