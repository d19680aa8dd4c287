"""Detections (N×6 ndarray, original pixels) -> a serialised vision_msgs/Detection2DArray.

The node publishes these bytes (``Publisher.publish(bytes)``). Hand-written instead of building the
message objects and letting rclpy convert them: that generic path builds ~8 Python objects per
detection and converts each into its C struct on the node's critical path, and a paired end-to-end
measurement at 1920x1080 showed it costs more than 5% of the node's latency (docs/benchmarks.md,
"Fast paths"). test/test_ros_convert.py holds the bytes to rclpy's own serialisation of the message.

Field choices follow vision_msgs 4.x conventions so trackers and RViz plugins read them as-is:
``results[0].hypothesis.class_id`` is the class *name* (LabelInfo maps the integer ids),
``score`` is in [0, 1], ``id`` stays empty (it belongs to trackers), and every Detection2D carries
the source image's header so a consumer can match it to the frame. ``header`` is any object with
``stamp.sec``, ``stamp.nanosec`` and ``frame_id`` (a std_msgs/Header).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np


def center_rows(dets: np.ndarray) -> list[list[float]]:
    """N×6 ``x1, y1, x2, y2, score, class_index`` -> rows ``cx, cy, w, h, score in [0, 1], class`` as
    Python floats (the arithmetic once for the whole array, none per detection)."""
    d = np.asarray(dets, dtype=np.float64).reshape(-1, 6)
    if not len(d):
        return []
    x1, y1, x2, y2, score, cls = d.T
    return np.stack(
        [(x1 + x2) * 0.5, (y1 + y2) * 0.5, x2 - x1, y2 - y1, np.clip(score, 0.0, 1.0), cls], axis=1
    ).tolist()


# PoseWithCovariance() as CDR: position (0, 0, 0), orientation (0, 0, 0, 1), covariance 36 zeros.
_NO_POSE_CDR = struct.pack("<7d", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0) + bytes(36 * 8)
_CDR_LE = b"\x00\x01\x00\x00"  # encapsulation header: plain CDR, little endian (what rmw_fastrtps writes)
_EMPTY_ID = b"\x01\x00\x00\x00\x00"  # Detection2D.id = "": length 1 (the NUL), then the NUL


def serialize_detection2d_array(dets: np.ndarray, header: Any, class_names: Sequence[str]) -> bytes:
    """N×6 ``x1, y1, x2, y2, score, class_index`` -> Detection2DArray CDR bytes with ``header`` on
    the array and on every detection; an out-of-range class index is named by its number. The same
    layout and length as ``rclpy.serialization.serialize_message`` of that message; alignment padding
    is zero here, uninitialised there. CDR rules used: primitives aligned to their size relative to
    the end of the 4-byte encapsulation header; strings = uint32 length incl. NUL + UTF-8 + NUL;
    sequences = uint32 count + elements.
    """
    fid = str(header.frame_id).encode() + b"\0"
    hdr = struct.pack("<iII", int(header.stamp.sec), int(header.stamp.nanosec), len(fid)) + fid
    buf = bytearray(_CDR_LE)

    def pad(n: int) -> None:
        r = (len(buf) - 4) % n
        if r:
            buf.extend(bytes(n - r))

    rows = center_rows(dets)
    buf += hdr
    pad(4)
    buf += struct.pack("<I", len(rows))
    if not rows:
        return bytes(buf)
    names = [str(n).encode() + b"\0" for n in class_names]
    for cx, cy, w, h, sc, c in rows:
        ci = int(c)
        cid = names[ci] if 0 <= ci < len(names) else str(ci).encode() + b"\0"
        pad(4)
        buf += hdr  # Detection2D.header
        pad(4)
        buf += struct.pack("<II", 1, len(cid))  # results: one hypothesis; its class_id
        buf += cid
        pad(8)
        buf += struct.pack("<d", sc)  # hypothesis.score
        buf += _NO_POSE_CDR
        buf += struct.pack("<5d", cx, cy, 0.0, w, h)  # bbox: center x, y, theta; size_x, size_y
        buf += _EMPTY_ID
    return bytes(buf)
