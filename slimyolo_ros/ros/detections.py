"""vision_msgs Detection2DArray / LabelInfo <-> the core's N×6 detections and class names: the one codec.

Served to rclpy and rosbags messages alike, as ``ros/convert.py`` serves images: reading needs only the
field names both share; building takes ``types``, a mapping from a message type name
(``vision_msgs/msg/Detection2D``) to its class: :data:`RCLPY_TYPES` for the nodes, a rosbags
typestore's ``types`` for the bag tools. Every field is passed to the constructor, which both kinds accept.

Field choices follow vision_msgs 4.x conventions so trackers and RViz plugins read them as-is:
``results[0].hypothesis.class_id`` is the class *name* (LabelInfo maps the integer ids), ``score`` is in
[0, 1], ``id`` stays empty unless a tracker sets it, and every Detection2D carries the source image's
header so a consumer can match it to the frame. ``header`` is any object with ``stamp.sec``,
``stamp.nanosec`` and ``frame_id`` (a std_msgs/Header of either kind).

:func:`to_cdr` writes the same message straight as CDR bytes for detect_node's ``publish(bytes)``: the
generic path builds ~8 Python objects per detection and converts each into its C struct on the node's
critical path, and a paired end-to-end measurement at 1920x1080 showed that costs more than 5% of the
node's latency (docs/benchmarks.md, "Fast paths"). test/test_ros_convert.py holds the bytes to rclpy's
own serialisation of :func:`to_message`.
"""

from __future__ import annotations

import importlib
import math
import struct
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any, NamedTuple

import numpy as np

DETECTION2D_ARRAY = "vision_msgs/msg/Detection2DArray"
LABEL_INFO = "vision_msgs/msg/LabelInfo"


class BadDetections(ValueError):
    """A Detection2DArray whose boxes or scores cannot be used (the text names the detection and field)."""


class ClassIndex:
    """Class name <-> index, in a given order (a model's or a dataset's names); a name not seen before gets
    the next index (``index("tree")``), so no box is lost to an unknown name."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self.names: list[str] = []
        self._index: dict[str, int] = {}
        for n in names:
            self.index(str(n))

    def index(self, name: str) -> int:
        i = self._index.get(name)
        if i is None:
            i = self._index[name] = len(self.names)
            self.names.append(name)
        return i

    def indices(self, names: Iterable[str]) -> np.ndarray:
        return np.asarray([self.index(str(n)) for n in names], np.int64)

    def __len__(self) -> int:
        return len(self.names)


def class_name(class_names: Sequence[str], index: float) -> str:
    """The name of class ``index``; an index outside the list is named by its number."""
    i = int(index)
    return str(class_names[i]) if 0 <= i < len(class_names) else str(i)


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


# ------------------------------------------------------------------------------------------ building
@cache
def _rclpy_type(name: str) -> Any:
    package, kind, cls = name.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), cls)


class _RclpyTypes:
    """``"vision_msgs/msg/Detection2D"`` -> the rclpy message class (imported on first use)."""

    def __getitem__(self, name: str) -> Any:
        return _rclpy_type(name)


RCLPY_TYPES = _RclpyTypes()


def to_message(dets: np.ndarray, header: Any, class_names: Sequence[str], ids: Sequence[str] | None = None,
               types: Any = RCLPY_TYPES) -> Any:
    """N×6 ``x1, y1, x2, y2, score, class_index`` -> Detection2DArray of ``types``, ``header`` on the array
    and on every detection, the class name as ``class_id``, ``ids[i]`` as detection i's ``id`` (default
    empty): with no ids, the message :func:`to_cdr` writes."""
    t = types
    dets_out = []
    for i, (cx, cy, w, h, score, c) in enumerate(center_rows(dets)):
        hyp = t["vision_msgs/msg/ObjectHypothesisWithPose"](
            hypothesis=t["vision_msgs/msg/ObjectHypothesis"](class_id=class_name(class_names, c),
                                                           score=score),
            pose=t["geometry_msgs/msg/PoseWithCovariance"](
                pose=t["geometry_msgs/msg/Pose"](
                    position=t["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
                    orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)),
                covariance=np.zeros(36, np.float64)))
        bbox = t["vision_msgs/msg/BoundingBox2D"](
            center=t["vision_msgs/msg/Pose2D"](position=t["vision_msgs/msg/Point2D"](x=cx, y=cy), theta=0.0),
            size_x=w, size_y=h)
        dets_out.append(t["vision_msgs/msg/Detection2D"](
            header=header, results=[hyp], bbox=bbox, id="" if ids is None else str(ids[i])))
    return t[DETECTION2D_ARRAY](header=header, detections=dets_out)


def label_info(class_names: Sequence[str], threshold: float, header: Any = None,
               types: Any = RCLPY_TYPES) -> Any:
    """LabelInfo: class index -> name (the ids the model uses), and the score threshold."""
    classes = [types["vision_msgs/msg/VisionClass"](class_id=i, class_name=str(n))
               for i, n in enumerate(class_names)]
    if header is None:
        header = types["std_msgs/msg/Header"]()
    return types[LABEL_INFO](header=header, class_map=classes, threshold=float(threshold))


# ------------------------------------------------------------------------------------------ reading
class Detections(NamedTuple):
    """One Detection2DArray read back: boxes N×4 ``x1, y1, x2, y2`` float32, the best hypothesis's class
    name and score per detection ("" and 0 without one), and each detection's ``id``."""

    boxes: np.ndarray
    names: list[str]
    scores: np.ndarray
    ids: list[str]


def read(msg: Any) -> Detections:
    """Any Detection2DArray (rclpy or rosbags) -> :class:`Detections`."""
    boxes, names, scores, ids = [], [], [], []
    for d in msg.detections:
        cx, cy = float(d.bbox.center.position.x), float(d.bbox.center.position.y)
        w, h = float(d.bbox.size_x), float(d.bbox.size_y)
        boxes.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
        if d.results:
            best = max(d.results, key=lambda r: r.hypothesis.score)
            names.append(str(best.hypothesis.class_id))
            scores.append(float(best.hypothesis.score))
        else:
            names.append("")
            scores.append(0.0)
        ids.append(str(d.id))
    return Detections(np.asarray(boxes, np.float32).reshape(-1, 4), names, np.asarray(scores, np.float32),
                      ids)


def to_array(msg: Any, classes: ClassIndex) -> np.ndarray:
    """Any Detection2DArray -> N×6 float32 ``x1, y1, x2, y2, score, class_index`` with the class names
    numbered by ``classes`` (new names are added). Raises BadDetections for a box that is not finite
    and non-negative or a score that is not finite, naming the detection."""
    for i, d in enumerate(msg.detections):
        cx, cy = float(d.bbox.center.position.x), float(d.bbox.center.position.y)
        w, h = float(d.bbox.size_x), float(d.bbox.size_y)
        if not all(math.isfinite(v) for v in (w, h, cx, cy)) or w < 0 or h < 0:
            raise BadDetections(f"detections[{i}].bbox is not finite and non-negative "
                                f"(center {cx}, {cy}, size {w} x {h})")
        if any(not math.isfinite(float(r.hypothesis.score)) for r in d.results):
            raise BadDetections(f"detections[{i}].results score is not finite")
    got = read(msg)
    cls = classes.indices(got.names).astype(np.float32)
    return np.concatenate([got.boxes, got.scores[:, None], cls[:, None]], axis=1).astype(np.float32)


def label_names(msg: Any) -> list[str]:
    """The class names of a LabelInfo, in class id order."""
    return [str(c.class_name) for c in sorted(msg.class_map, key=lambda c: c.class_id)]


# ------------------------------------------------------------------------------------------ CDR
# PoseWithCovariance() as CDR: position (0, 0, 0), orientation (0, 0, 0, 1), covariance 36 zeros.
_NO_POSE_CDR = struct.pack("<7d", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0) + bytes(36 * 8)
_CDR_LE = b"\x00\x01\x00\x00"  # encapsulation header: plain CDR, little endian (what rmw_fastrtps writes)
_EMPTY_ID = b"\x01\x00\x00\x00\x00"  # Detection2D.id = "": length 1 (the NUL), then the NUL


def to_cdr(dets: np.ndarray, header: Any, class_names: Sequence[str]) -> bytes:
    """:func:`to_message` without ids, as CDR bytes: the same layout and length as
    ``rclpy.serialization.serialize_message`` of that message; alignment padding is zero here,
    uninitialised there. CDR rules used: primitives aligned to their size relative to the end of the
    4-byte encapsulation header; strings = uint32 length incl. NUL + UTF-8 + NUL; sequences = uint32
    count + elements.
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
