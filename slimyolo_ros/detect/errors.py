"""The Detector's error type, in its own module so the detector, its backends and tiling share it."""

from __future__ import annotations

from slimyolo_ros.errors import SlimyoloError


class DetectorError(SlimyoloError, ValueError):
    """Bad Detector argument or input (device, threshold, class name, image); a ValueError too."""
