"""The network input rule of the YOLOv3 family: each side a positive multiple of the largest stride.

Every [yolo] head sits at most 5 stride-2 downsamplings deep, so an input side that is not a multiple
of 32 leaves a fractional grid cell and the upsample + route of the next head no longer lines up.
"""

from __future__ import annotations

from typing import Any

from slimyolo_ros.errors import SlimyoloError

MAX_STRIDE = 32


class ImageSizeError(SlimyoloError, ValueError):
    """An input size that is not a positive multiple of :data:`MAX_STRIDE`."""


def check_img_size(value: Any, name: str = "img_size", error: type[Exception] = ImageSizeError) -> int:
    """``value`` as an int if it is a positive multiple of :data:`MAX_STRIDE`, else ``error`` whose
    message starts with ``name`` and the value (``--img-size 400: ...`` for a command's flag)."""
    try:
        ok = not isinstance(value, bool) and int(value) == value and value >= MAX_STRIDE \
            and value % MAX_STRIDE == 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise error(f"{name} {value!r}: must be a positive multiple of {MAX_STRIDE}")
    return int(value)
