"""rosbags message objects for the bag tools: headers and images, built and read back (Detection2DArray:
ros/detections.py with the typestore's types).

These are rosbags' own message classes (pure Python, CDR via the typestore), not rclpy's:
writing and reading bags needs no ROS install.
"""

from __future__ import annotations

import cv2
import numpy as np

from slimyolo_ros.bag.types import COMPRESSED_IMAGE, IMAGE, typestore

# encoding -> (channels, conversion from BGR); what `bag make` writes and the node decodes.
RAW_ENCODINGS: dict[str, tuple[int, int | None]] = {
    "bgr8": (3, None),
    "rgb8": (3, cv2.COLOR_BGR2RGB),
    "mono8": (1, cv2.COLOR_BGR2GRAY),
}
ENCODINGS = (*RAW_ENCODINGS, "jpeg")


def stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def header(ns: int, frame_id: str):
    t = typestore().types
    return t["std_msgs/msg/Header"](
        stamp=t["builtin_interfaces/msg/Time"](sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000),
        frame_id=frame_id,
    )


def image_message(img_bgr: np.ndarray | None, encoding: str, ns: int, frame_id: str,
                  jpeg_bytes: bytes | None = None):
    """(typename, message) for one frame: sensor_msgs/Image, or CompressedImage for ``jpeg``."""
    t = typestore().types
    if encoding == "jpeg":
        if jpeg_bytes is None:
            ok, buf = cv2.imencode(".jpg", img_bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
            if not ok:
                raise ValueError("OpenCV could not JPEG-encode the frame")
            jpeg_bytes = buf.tobytes()
        msg = t[COMPRESSED_IMAGE](header=header(ns, frame_id), format="jpeg",
                                  data=np.frombuffer(jpeg_bytes, np.uint8))
        return COMPRESSED_IMAGE, msg
    channels, code = RAW_ENCODINGS[encoding]
    pixels = img_bgr if code is None else cv2.cvtColor(img_bgr, code)
    pixels = np.ascontiguousarray(pixels)
    h, w = pixels.shape[:2]
    msg = t[IMAGE](header=header(ns, frame_id), height=h, width=w, encoding=encoding, is_bigendian=0,
                   step=w * channels, data=pixels.reshape(-1))
    return IMAGE, msg


def decode_image(msg, typename: str) -> np.ndarray:
    """A bag image message as H×W×3 BGR uint8, decoded exactly as the node decodes it
    (``slimyolo_ros.ros.convert`` reads rosbags messages too: same field names, numpy data).
    Raises ``ImageDecodeError`` naming what is unsupported."""
    from slimyolo_ros.ros.convert import compressed_to_bgr, image_to_bgr

    img = compressed_to_bgr(msg) if typename == COMPRESSED_IMAGE else image_to_bgr(msg)
    # A bgr8 result is a read-only view of the message buffer; callers draw on it.
    return img if img.flags.writeable and img.flags.c_contiguous else np.array(img, order="C")


def is_image_type(typename: str) -> bool:
    return typename in (IMAGE, COMPRESSED_IMAGE)
