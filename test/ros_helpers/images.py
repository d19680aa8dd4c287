"""Encoding a BGR frame as sensor_msgs/CompressedImage: what a camera driver does, needed only by the
tests (the node decodes; it never encodes)."""

from __future__ import annotations

import array
from typing import Any

import cv2
import numpy as np

from slimyolo_ros.ros.convert import ImageDecodeError


def bgr_to_compressed(img: np.ndarray, fmt: str = "jpeg", header: Any = None, quality: int = 90) -> Any:
    """H×W×3 uint8 BGR -> sensor_msgs/CompressedImage (jpeg or png)."""
    from sensor_msgs.msg import CompressedImage

    ext = {"jpeg": ".jpg", "jpg": ".jpg", "png": ".png"}.get(fmt)
    if ext is None:
        raise ImageDecodeError("format", f"unsupported compressed format {fmt!r} (supported: jpeg, png)")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if ext == ".jpg" else []
    ok, enc = cv2.imencode(ext, img, params)
    if not ok:
        raise ImageDecodeError("corrupt", f"OpenCV could not encode a {img.shape} image as {fmt}")
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = "jpeg" if ext == ".jpg" else "png"
    msg.data = array.array("B", enc.tobytes())
    return msg
