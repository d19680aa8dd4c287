"""sensor_msgs Image / CompressedImage <-> BGR ndarray (the core's image type).

Hand-written instead of cv_bridge on purpose: ROS 2's cv_bridge is not installable here (it is
a C++ package, not on PyPI), and the PyPI ``cv-bridge`` is an unofficial copy of the ROS 1
bridge whose ``cv2_to_imgmsg`` calls ``ndarray.tostring`` (removed in numpy 2.3). The subset
the node needs is small: a strided view over ``msg.data`` and one ``cv2.cvtColor``. The
semantics follow cv_bridge (``step`` is the row stride in bytes, ``is_bigendian`` only matters for
16-bit data, 16-bit → 8-bit scales the full range 0..65535 onto 0..255).

Every problem raises :class:`ImageDecodeError` whose ``kind`` is a short stable key (the node
throttles warnings per kind) and whose message names the field and value that is wrong.
"""

from __future__ import annotations

import array
import sys
from typing import Any

import cv2
import numpy as np

from slimyolo_ros.errors import SlimyoloError

# encoding -> (channels, bytes per channel, cv2 conversion to BGR or None when already BGR)
ENCODINGS: dict[str, tuple[int, int, int | None]] = {
    "bgr8": (3, 1, None),
    "rgb8": (3, 1, cv2.COLOR_RGB2BGR),
    "bgra8": (4, 1, cv2.COLOR_BGRA2BGR),
    "rgba8": (4, 1, cv2.COLOR_RGBA2BGR),
    "mono8": (1, 1, cv2.COLOR_GRAY2BGR),
    "mono16": (1, 2, cv2.COLOR_GRAY2BGR),
}

COMPRESSED_FORMATS = ("jpeg", "jpg", "png")
_JPEG_MAGIC = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class ImageDecodeError(SlimyoloError):
    """An image message cannot be turned into a BGR array; ``kind`` names the problem class."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _buffer(data: Any) -> np.ndarray:
    """A uint8 view of ``msg.data`` without copying (rclpy stores uint8[] as array.array('B'))."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


def image_to_bgr(msg: Any) -> np.ndarray:
    """sensor_msgs/Image -> H×W×3 uint8 BGR.

    For ``bgr8`` the result is a view into ``msg.data`` (no copy; rows may be strided when the
    message has row padding); other encodings cost one ``cvtColor``. Raises ImageDecodeError.
    """
    enc = msg.encoding
    spec = ENCODINGS.get(enc)
    if spec is None:
        raise ImageDecodeError(
            "encoding",
            f"unsupported encoding {enc!r} (supported: {', '.join(ENCODINGS)})",
        )
    ch, depth, conversion = spec
    width, height, step = int(msg.width), int(msg.height), int(msg.step)
    if width <= 0 or height <= 0:
        raise ImageDecodeError("size", f"empty image: width={width} height={height} ({enc})")
    row_bytes = width * ch * depth
    if step < row_bytes:
        raise ImageDecodeError(
            "step",
            f"step {step} < width*channels*bytes = {width}*{ch}*{depth} = {row_bytes} ({enc})",
        )
    buf = _buffer(msg.data)
    if buf.size < step * height:
        raise ImageDecodeError(
            "short_data",
            f"data has {buf.size} bytes, shorter than step*height = {step}*{height} = {step * height}"
            f" ({enc})",
        )
    if depth == 1:
        # Strided view: rows `step` bytes apart, padding at the row ends is skipped, not copied.
        img = np.ndarray((height, width, ch), dtype=np.uint8, buffer=buf, strides=(step, ch, 1))
    else:
        dtype = np.dtype(">u2" if msg.is_bigendian else "<u2")
        if step % 2:
            # An odd stride would misalign every other row; copy the rows out first.
            rows = buf[: step * height].reshape(height, step)[:, :row_bytes]
            img = np.ascontiguousarray(rows).view(dtype).reshape(height, width)
        else:
            img = np.ndarray((height, width), dtype=dtype, buffer=buf, strides=(step, 2))
        # Full-range 16 -> 8 bit (cv_bridge's scaling, up to rounding): frame-independent, so a
        # detector sees the same brightness for the same scene whatever else is in the frame.
        img = (img >> 8).astype(np.uint8)
    if conversion is None:
        return img
    return cv2.cvtColor(img, conversion)


def compressed_to_bgr(msg: Any) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg or png) -> H×W×3 uint8 BGR. Raises ImageDecodeError."""
    fmt = (msg.format or "").lower()
    # image_transport writes e.g. "rgb8; jpeg compressed bgr8"; compressedDepth is a different
    # payload (a header before the PNG) that this node does not read.
    if "compresseddepth" in fmt or (fmt and not any(f in fmt for f in COMPRESSED_FORMATS)):
        raise ImageDecodeError(
            "format", f"unsupported compressed format {msg.format!r} (supported: jpeg, png)"
        )
    buf = _buffer(msg.data)
    if buf.size == 0:
        raise ImageDecodeError("short_data", f"compressed image ({msg.format or 'no format'}) has no data")
    head = buf[:8].tobytes()
    if head.startswith(_JPEG_MAGIC):
        kind = "JPEG"
        # libjpeg decodes a truncated file into a half-grey image with only a warning on stderr;
        # a missing end-of-image marker is the reliable sign of truncation.
        tail = buf[-64:].tobytes()
        if _JPEG_EOI not in tail:
            raise ImageDecodeError(
                "truncated", f"corrupt JPEG: truncated ({buf.size} bytes, no end-of-image marker)"
            )
    elif head == _PNG_MAGIC:
        kind = "PNG"
    else:
        raise ImageDecodeError(
            "corrupt",
            f"corrupt {msg.format or 'compressed'} image: data starts with {head[:4].hex()}, "
            "neither a JPEG nor a PNG signature",
        )
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        raise ImageDecodeError("corrupt", f"corrupt {kind}: OpenCV could not decode {buf.size} bytes")
    return img


def bgr_to_image(img: np.ndarray, encoding: str = "bgr8", header: Any = None) -> Any:
    """H×W×3 uint8 BGR -> sensor_msgs/Image in ``encoding`` (cv_bridge's cv2_to_imgmsg semantics:
    dense rows, ``step = width * bytes per pixel``, native byte order for mono16)."""
    from sensor_msgs.msg import Image

    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ImageDecodeError("shape", f"expected H×W×3 uint8 BGR, got {img.shape} {img.dtype}")
    spec = ENCODINGS.get(encoding)
    if spec is None:
        raise ImageDecodeError(
            "encoding", f"unsupported encoding {encoding!r} (supported: {', '.join(ENCODINGS)})"
        )
    if encoding == "bgr8":
        out = img
    elif encoding == "rgb8":
        out = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif encoding == "bgra8":
        out = cv2.cvtColor(img, cv2.COLOR_BGR2BGRA)
    elif encoding == "rgba8":
        out = cv2.cvtColor(img, cv2.COLOR_BGR2RGBA)
    else:
        out = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        if encoding == "mono16":
            out = out.astype(np.uint16) * 257  # 0..255 -> 0..65535, inverse of the >> 8 above
    out = np.ascontiguousarray(out)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(out.shape[0]), int(out.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = sys.byteorder == "big" and out.dtype.itemsize > 1
    msg.step = int(out.strides[0])
    # array.array from bytes is one memcpy; assigning bytes/lists would be validated per element.
    msg.data = array.array("B", out.tobytes())
    return msg
