"""track_node's parameters: each one's default, range and description (what ``ros2 param describe``
shows). The tracker's defaults come from :class:`slimyolo_ros.tracking.TrackerConfig`, which also
validates every value (the node refuses what it refuses, with its reason); config/track.yaml documents
the same set.

The tracker's settings can be changed while the node runs (the tracker then starts over: new ids from
there, none reused); topics and QoS are fixed at start-up. Numbers are declared with dynamic typing so
``track_buffer_s: 2`` (an integer in a YAML file or on the command line) means 2.0 s, and a value of the
wrong type reaches TrackerConfig's check (one line naming it) instead of rclpy's type error.
"""

from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from slimyolo_ros.tracking import ALGORITHMS, TrackerConfig

TOPIC_PARAMETERS = ("detections_topic", "tracks_topic", "reliability")


def _desc(description: str, read_only: bool = False, **kw: Any) -> ParameterDescriptor:
    return ParameterDescriptor(description=description, read_only=read_only, dynamic_typing=True, **kw)


def _range(lo: float, hi: float) -> dict[str, list[FloatingPointRange]]:
    return {"floating_point_range": [FloatingPointRange(from_value=lo, to_value=hi)]}


_DESCRIPTORS: dict[str, ParameterDescriptor] = {
    "algorithm": _desc(f"tracker: {' | '.join(ALGORITHMS)}"),
    "track_activation_threshold": _desc("a detection needs this score to start a track, in [0, 1]",
                                        **_range(0.0, 1.0)),
    "high_conf_det_threshold": _desc("first-stage (confident) detections; lower ones only extend tracks, "
                                     "in [0, 1]", **_range(0.0, 1.0)),
    "minimum_iou_threshold": _desc("IoU gate between a track's prediction and a detection, in [0, 1]",
                                   **_range(0.0, 1.0)),
    "minimum_consecutive_frames": _desc("matched frames before a track is published (>= 1)",
                                        integer_range=[IntegerRange(from_value=1, to_value=1000, step=1)]),
    "track_buffer_s": _desc("a lost track can be re-found for this long, in seconds of stamp time",
                            **_range(0.0, 3600.0)),
    "frame_rate": _desc("nominal input rate in Hz (> 0); only sizes the first prediction step",
                        **_range(0.0, 1000.0)),
    "class_agnostic": _desc("false: each class tracked on its own; true: one tracker for all classes"),
    "min_score": _desc("detections below this score are ignored, in [0, 1]", **_range(0.0, 1.0)),
    "detections_topic": _desc("vision_msgs/Detection2DArray input topic", read_only=True),
    "tracks_topic": _desc("vision_msgs/Detection2DArray output topic, one message per input",
                          read_only=True),
    "reliability": _desc("detections subscription QoS: reliable | best_effort", read_only=True),
}

_TOPIC_DEFAULTS = {"detections_topic": "detections", "tracks_topic": "tracks", "reliability": "reliable"}

# name -> (default, descriptor). config/track.yaml documents the same set (a test checks the running node).
PARAMETERS: dict[str, tuple[Any, ParameterDescriptor]] = {
    name: (default, _DESCRIPTORS[name])
    for name, default in {**TrackerConfig().to_dict(), **_TOPIC_DEFAULTS}.items()
}
