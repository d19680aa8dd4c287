"""Multi-object tracking on detections (no ROS): a library's tracker behind a small interface."""

from slimyolo_ros.tracking.config import ALGORITHMS, TrackConfigError, TrackerConfig, load_track_config
from slimyolo_ros.tracking.tracker import MultiObjectTracker, Tracks

__all__ = ["ALGORITHMS", "MultiObjectTracker", "TrackConfigError", "TrackerConfig", "Tracks",
           "load_track_config"]
