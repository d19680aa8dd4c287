"""What a replay reads from a bag: its image frames in order, the ground truth (boxes, classes, target
ids, ignored regions) by stamp, the dataset's class names and sequences, and a warm-up frame. Pure
reading with rosbags; nothing here starts a node."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from slimyolo_ros.bag import msgs
from slimyolo_ros.bag.checks import check_bag, read_error
from slimyolo_ros.bag.layout import storage_path
from slimyolo_ros.bag.make import (
    CLASS_NAMES_KEY,
    COMPRESSED_TOPIC,
    GT_TOPIC,
    IGNORE_TOPIC,
    IMAGE_TOPIC,
    SEQUENCES_KEY,
)
from slimyolo_ros.bag.types import COMPRESSED_IMAGE, DETECTION2D_ARRAY, BagError, typestore
from slimyolo_ros.harness import restamp
from slimyolo_ros.ros import detections

_WARMUP_OFFSET_NS = 1_000_000_000  # the warm-up frame's stamp lies 1 s before the first frame


@dataclass
class Frame:
    index: int
    log_ns: int
    stamp: int
    typename: str
    width: int
    height: int


@dataclass
class Source:
    """What the replay needs from the bag besides its frames."""

    bag: Path
    image_topic: str
    image_type: str
    frames_in_bag: int
    gt: dict[int, tuple]
    ignore: dict[int, np.ndarray]
    has_gt: bool
    class_names: list[str] | None
    gt_ids: dict[int, list[str]] = field(default_factory=dict)
    sequences: list[tuple[str, int]] = field(default_factory=list)
    fps: float = 10.0  # of the image topic's stamps
    truth_from: str = ""  # the annotation file the ground truth came from (--gt); "": the bag's topic


def open_reader(bag: Path):
    from rosbags.rosbag2 import Reader

    if not bag.exists():
        raise BagError(f"{bag}: no such bag")
    path = storage_path(bag)  # a folder without metadata.yaml but with one storage file: that file
    check_bag(path)
    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:  # rosbags raises several unrelated types for unreadable bags
        if (named := read_error(bag, exc)) is not None:
            raise named from exc
        raise BagError(f"{bag}: not a readable rosbag2 ({type(exc).__name__}: {exc})") from exc
    return reader


def open_source(bag: Path, reader, image_topic: str | None = None) -> Source:
    """The bag's image topic (``image_topic``, else the usual names, else the only one) and its truth."""
    image_topic, image_type = _pick_image_topic(reader, bag, image_topic)
    n_in_bag = sum(c.msgcount for c in reader.connections if c.topic == image_topic)
    if n_in_bag == 0:
        raise BagError(f"{bag}: image topic {image_topic} has no messages")
    gt, ignore, has_gt, ids = _read_ground_truth(reader)
    span_s = (reader.end_time - reader.start_time) / 1e9
    fps = (n_in_bag - 1) / span_s if n_in_bag > 1 and span_s > 0 else 10.0
    return Source(bag, image_topic, image_type, n_in_bag, gt, ignore, has_gt, _custom_class_names(reader),
                   ids, _sequences(reader, n_in_bag), fps)


def _pick_image_topic(reader, bag: Path, wanted: str | None) -> tuple[str, str]:
    topics = {c.topic: c.msgtype for c in reader.connections}
    images = {t: ty for t, ty in topics.items() if msgs.is_image_type(ty)}
    listing = ", ".join(f"{t} ({ty})" for t, ty in sorted(topics.items())) or "none"
    if wanted:
        if wanted not in images:
            raise BagError(f"{bag}: no image topic {wanted!r} (sensor_msgs/msg/Image or CompressedImage); "
                           f"topics in the bag: {listing}")
        return wanted, images[wanted]
    for t in (IMAGE_TOPIC, COMPRESSED_TOPIC):
        if t in images:
            return t, images[t]
    if len(images) == 1:
        return next(iter(images.items()))
    if not images:
        raise BagError(f"{bag}: no image topic (sensor_msgs/msg/Image or CompressedImage); "
                       f"topics in the bag: {listing}")
    raise BagError(f"{bag}: several image topics: {', '.join(f'{t} ({images[t]})' for t in sorted(images))}; "
                   "choose one with --image-topic TOPIC")


def _custom_class_names(reader) -> list[str] | None:
    custom = getattr(getattr(reader.storage, "metadata", None), "custom", None) or {}
    try:
        names = json.loads(custom[CLASS_NAMES_KEY])
    except (KeyError, TypeError, ValueError):
        return None
    return [str(n) for n in names] if isinstance(names, list) else None


def _read_ground_truth(reader) -> tuple[dict[int, tuple], dict[int, np.ndarray], bool, dict[int, list[str]]]:
    """({stamp: (boxes, names)}, {stamp: ignore boxes}, bag has a ground-truth topic, {stamp: target ids})."""
    ts = typestore()
    gt_conns = [c for c in reader.connections if c.topic == GT_TOPIC and c.msgtype == DETECTION2D_ARRAY]
    ign_conns = [c for c in reader.connections if c.topic == IGNORE_TOPIC and c.msgtype == DETECTION2D_ARRAY]
    gt: dict[int, tuple] = {}
    ignore: dict[int, np.ndarray] = {}
    ids: dict[int, list[str]] = {}
    if gt_conns or ign_conns:
        for conn, _, raw in reader.messages(connections=gt_conns + ign_conns):
            m = ts.deserialize_cdr(raw, conn.msgtype)
            got = detections.read(m)
            if conn.topic == GT_TOPIC:
                gt[msgs.stamp_ns(m.header)] = (got.boxes, got.names)
                ids[msgs.stamp_ns(m.header)] = got.ids
            else:
                ignore[msgs.stamp_ns(m.header)] = got.boxes
    return gt, ignore, bool(gt_conns), ids


def _sequences(reader, n_frames: int) -> list[tuple[str, int]]:
    """The bag's sequences as (name, frames) in bag order (``bag make`` of a VID root stores them);
    one sequence when the bag does not say."""
    custom = getattr(getattr(reader.storage, "metadata", None), "custom", None) or {}
    try:
        seqs = [(str(name), int(count)) for name, count in json.loads(custom[SEQUENCES_KEY])]
    except (KeyError, TypeError, ValueError):
        return [("bag", n_frames)]
    return seqs if sum(c for _, c in seqs) == n_frames else [("bag", n_frames)]


def image_frames(reader, topic: str):
    """Yield (frame, raw bytes, message) for every image on ``topic``, in bag order."""
    ts = typestore()
    conns = [c for c in reader.connections if c.topic == topic]
    for i, (conn, log_ns, raw) in enumerate(reader.messages(connections=conns)):
        m = ts.deserialize_cdr(raw, conn.msgtype)
        if conn.msgtype == COMPRESSED_IMAGE:
            # The evaluator needs the frame size (ignored-region masks); a CompressedImage has none.
            img = cv2.imdecode(np.asarray(m.data, np.uint8), cv2.IMREAD_GRAYSCALE)
            h, w = img.shape[:2] if img is not None else (0, 0)
        else:
            w, h = int(m.width), int(m.height)
        yield Frame(i, log_ns, msgs.stamp_ns(m.header), conn.msgtype, w, h), raw, m


def check_image(m, typename: str) -> str | None:
    """Why the node could not decode this image (cheap checks only), or None."""
    from slimyolo_ros.ros.convert import COMPRESSED_FORMATS, ENCODINGS

    if typename == COMPRESSED_IMAGE:
        fmt = (m.format or "").lower()
        if fmt and not any(f in fmt for f in COMPRESSED_FORMATS):
            return f"unsupported compressed format {m.format!r} (supported: {', '.join(COMPRESSED_FORMATS)})"
        return None
    if m.encoding not in ENCODINGS:
        return f"unsupported encoding {m.encoding!r} (supported: {', '.join(ENCODINGS)})"
    return None


def warm_frame(reader, src: Source, blank: bool = False) -> tuple[int, bytes]:
    """The first decodable image, re-stamped 1 s before it (so its answer is never scored); ``blank``:
    its pixels black, so a tracker downstream starts no track from it."""
    first = next(((f, raw) for f, raw, m in image_frames(reader, src.image_topic)
                  if not check_image(m, f.typename)), None)
    if first is None:
        _, _, m = next(image_frames(reader, src.image_topic))
        raise BagError(f"{src.bag}: no frame on {src.image_topic} the node can decode: "
                       f"{check_image(m, src.image_type)}")
    stamp = first[0].stamp - _WARMUP_OFFSET_NS
    return stamp, restamp(_blank(first[1], src.image_type) if blank else first[1], stamp)


def _blank(raw: bytes, typename: str) -> bytes:
    ts = typestore()
    m = ts.deserialize_cdr(raw, typename)
    if typename == COMPRESSED_IMAGE:
        black = np.zeros_like(msgs.decode_image(m, typename))
        m.data = np.frombuffer(cv2.imencode(".jpg", black)[1].tobytes(), np.uint8)
    else:
        m.data = np.zeros_like(m.data)
    return bytes(ts.serialize_cdr(m, typename))


def by_sequence(frames: list[Frame], sequences: list[tuple[str, int]]) -> list[tuple[str, list[Frame]]]:
    """The replayed frames grouped by the bag's sequences (bag image index ranges), in order."""
    bounds, start = [], 0
    for name, count in sequences:
        bounds.append((name, start, start + count))
        start += count
    return [(name, [f for f in frames if lo <= f.index < hi]) for name, lo, hi in bounds]
