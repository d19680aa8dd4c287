"""Images in, detections out: :func:`load_detector` is the one way to build a Detector from a model
file and its :class:`DetectorOptions` (:meth:`Detector.from_model` wraps a model already in memory)."""

from __future__ import annotations

from slimyolo_ros.detect.detector import Detector
from slimyolo_ros.detect.errors import DetectorError
from slimyolo_ros.detect.load import load_detector
from slimyolo_ros.detect.options import DetectorOptions
from slimyolo_ros.detect.providers import ProviderError

__all__ = ["Detector", "DetectorError", "DetectorOptions", "ProviderError", "load_detector"]
