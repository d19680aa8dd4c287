"""Tracker parameters: one dataclass, validated once, read from ``config/track.yaml`` or a node's parameters.

The YAML file is the ROS parameter file of the tracker node (``slimyolo_tracker: ros__parameters: {...}``);
the core reads the same file, so the node and offline evaluation never track with different settings.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from slimyolo_ros.errors import SlimyoloError

NODE_NAME = "slimyolo_tracker"
ALGORITHMS = ("bytetrack", "sort", "ocsort", "botsort")


class TrackConfigError(SlimyoloError):
    """A tracker parameter is missing, of the wrong type or out of range: the message names it."""


@dataclass(frozen=True)
class TrackerConfig:
    algorithm: str = "bytetrack"
    track_activation_threshold: float = 0.25  # a detection needs this score to start a track
    high_conf_det_threshold: float = 0.25  # bytetrack/ocsort/botsort: first-stage (confident) detections
    minimum_iou_threshold: float = 0.2  # association gate
    minimum_consecutive_frames: int = 2  # matched frames before a track gets an id
    track_buffer_s: float = 1.0  # how long a lost track may be re-found, in seconds of stamp time
    frame_rate: float = 10.0  # nominal input rate: scales the first Kalman step only
    class_agnostic: bool = False  # false: one tracker per class (a car never continues a pedestrian)
    min_score: float = 0.05  # detections below this are ignored entirely

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise TrackConfigError(f"algorithm {self.algorithm!r} is not one of {', '.join(ALGORITHMS)}")
        for name in ("track_activation_threshold", "high_conf_det_threshold", "minimum_iou_threshold",
                     "min_score"):
            _unit_interval(name, getattr(self, name))
        n = self.minimum_consecutive_frames
        if isinstance(n, bool) or not isinstance(n, int):
            raise TrackConfigError(f"minimum_consecutive_frames {n!r} is not an integer")
        if n < 1:
            raise TrackConfigError(f"minimum_consecutive_frames {n} must be >= 1")
        _positive("track_buffer_s", self.track_buffer_s, allow_zero=True)
        _positive("frame_rate", self.frame_rate)
        if not isinstance(self.class_agnostic, bool):
            raise TrackConfigError(f"class_agnostic {self.class_agnostic!r} is not true or false")

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "tracker parameters") -> TrackerConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TrackConfigError(f"{source}: unknown parameter(s) {unknown} (known: {sorted(known)})")
        try:
            return cls(**values)
        except TrackConfigError as exc:
            raise TrackConfigError(f"{source}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TrackConfigError(f"{name} {value!r} is not a finite number")
    return float(value)


def _unit_interval(name: str, value: Any) -> None:
    if not 0.0 <= _number(name, value) <= 1.0:
        raise TrackConfigError(f"{name} {value!r} is not in [0, 1]")


def _positive(name: str, value: Any, allow_zero: bool = False) -> None:
    v = _number(name, value)
    if v < 0 or (v == 0 and not allow_zero):
        raise TrackConfigError(f"{name} {value!r} must be {'>= 0' if allow_zero else '> 0'}")


def load_track_config(path: str | Path, node_name: str = NODE_NAME) -> TrackerConfig:
    """The tracker settings of ``node_name`` in a ROS parameter file; errors name the file and value."""
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise TrackConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise TrackConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    section = (doc or {}).get(node_name, {}) if isinstance(doc, dict) else None
    params = section.get("ros__parameters") if isinstance(section, dict) else None
    if not isinstance(params, dict):
        raise TrackConfigError(f"{path}: expected '{node_name}: ros__parameters: {{...}}' at the top level")
    tracker_keys = {f.name for f in fields(TrackerConfig)}
    # The node's topic/QoS parameters share the file; only the tracker's own keys go to the tracker.
    return TrackerConfig.from_dict({k: v for k, v in params.items() if k in tracker_keys}, source=str(path))
