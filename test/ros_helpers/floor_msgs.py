"""The messages the floor test sends between two processes, derived from a token so that the
receiving side (and the test) can check them field by field."""

from __future__ import annotations

import array
import hashlib
import zlib

import numpy as np


def image_pixels(token: str) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(token.encode()))
    return rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)


def image_sha256(token: str) -> str:
    return hashlib.sha256(image_pixels(token).tobytes()).hexdigest()


def detections(token: str) -> list[tuple[float, float, float, float, str, float]]:
    seed = zlib.crc32(token.encode()) % 1000
    return [(10.5 + seed, 20.25, 30.0, 40.0, "car", 0.75), (1.0, 2.0, 3.0, 4.0, f"class-{seed}", 0.5)]


def build(token: str):
    """(Image, Detection2DArray) for ``token``; imports ROS messages only when called."""
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

    pixels = image_pixels(token)
    img = Image(height=pixels.shape[0], width=pixels.shape[1], encoding="bgr8", step=pixels.shape[1] * 3)
    img.header.frame_id = token
    img.header.stamp.sec = 1234
    img.data = array.array("B", pixels.tobytes())
    arr = Detection2DArray()
    arr.header = img.header
    for cx, cy, sx, sy, cls, score in detections(token):
        d = Detection2D()
        d.header = img.header
        d.bbox.center.position.x, d.bbox.center.position.y = cx, cy
        d.bbox.size_x, d.bbox.size_y = sx, sy
        h = ObjectHypothesisWithPose()
        h.hypothesis.class_id, h.hypothesis.score = cls, score
        d.results = [h]
        arr.detections.append(d)
    return img, arr
