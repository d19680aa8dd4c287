"""Images in, detections out: :func:`load_detector` is the one way to build a Detector."""

from __future__ import annotations

import os
from typing import Any

from slimyolo_ros.detect.detector import Detector, DetectorError


def load_detector(weights: str | os.PathLike, **options: Any) -> Detector:
    """Load a model file into a ready Detector; ``options`` are the Detector's keyword arguments
    (cfg, names, backend, device, half, img_size, rect, tile, tile_overlap, conf_threshold,
    nms_threshold, max_detections, classes, onnx_cache). A bad value raises DetectorError naming it."""
    return Detector(weights, **options)


__all__ = ["Detector", "DetectorError", "load_detector"]
