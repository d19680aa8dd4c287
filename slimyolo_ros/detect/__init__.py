"""Images in, detections out: :func:`load_detector` is the one way to build a Detector from a model
file (:meth:`Detector.from_model` wraps a model already in memory)."""

from __future__ import annotations

from slimyolo_ros.detect.detector import Detector
from slimyolo_ros.detect.errors import DetectorError
from slimyolo_ros.detect.load import load_detector

__all__ = ["Detector", "DetectorError", "load_detector"]
