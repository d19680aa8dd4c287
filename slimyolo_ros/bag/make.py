"""A VisDrone-format dataset written as a rosbag2 (mcap or sqlite3) with rosbags' Writer.

Topics (all messages of one frame carry the same header stamp, which is also the bag timestamp):
- ``/camera/image_raw`` sensor_msgs/Image (bgr8, rgb8, mono8), or ``/camera/image_raw/compressed``
  sensor_msgs/CompressedImage (``jpeg``: a JPEG source file is stored byte for byte, no re-encoding);
- ``/ground_truth`` vision_msgs/Detection2DArray: one detection per object, ``class_id`` = class name,
  score 1, ``id`` = the VisDrone-VID track id when there is one;
- ``/ground_truth/ignore_regions`` vision_msgs/Detection2DArray: the VisDrone "ignored region" boxes
  (``class_id`` "ignored"). A separate topic so that a consumer of ``/ground_truth`` (a tracker test,
  a visualiser) sees only real objects; the evaluator needs them because detections inside an ignored
  region are dropped before scoring, as in ``slimyolo eval``.
A frame without ground truth (a VID sequence with no annotation file) has an image and nothing else.

Stamps are ``start + i / fps`` (default start 2025-01-01T00:00:00Z) so a bag made twice is identical.
The class list is stored in the bag's metadata ``custom_data`` (``slimyolo_ros.class_names``, JSON), and
for a VID root the sequences in bag order (``slimyolo_ros.sequences``, JSON ``[[name, frames], ...]``):
target ids restart in every sequence, so a tracking evaluation must score each on its own.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from tqdm import tqdm

from slimyolo_ros.bag import msgs
from slimyolo_ros.bag.checks import UNANNOTATED_KEY, add_chunk_crcs, frames_without_annotation
from slimyolo_ros.bag.types import DETECTION2D_ARRAY, BagError, typestore
from slimyolo_ros.data.visdrone import VISDRONE_CLASSES, read_image, read_visdrone
from slimyolo_ros.ros.detections import to_message

log = logging.getLogger(__name__)

IMAGE_TOPIC = "/camera/image_raw"
COMPRESSED_TOPIC = "/camera/image_raw/compressed"
GT_TOPIC = "/ground_truth"
IGNORE_TOPIC = "/ground_truth/ignore_regions"
IGNORED_CLASS = "ignored"
CLASS_NAMES_KEY = "slimyolo_ros.class_names"
SEQUENCES_KEY = "slimyolo_ros.sequences"
DEFAULT_START_NS = 1_735_689_600 * 1_000_000_000
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


def ground_truth_rows(boxes: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Ground-truth boxes N×4 and class indices as the codec's N×6 rows, score 1."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.concatenate([boxes, np.ones((len(boxes), 1)), np.asarray(classes, np.float64).reshape(-1, 1)],
                          axis=1)


def _frames(root: Path):
    """(image_path, sample | None, track ids, sequence | None) for every frame of a DET or a VID root."""
    from slimyolo_ros.bag.vid import is_vid_root, read_vid

    if is_vid_root(root):
        return [(f.image_path, f.sample, f.track_ids, f.sequence) for f in read_vid(root)]
    return [(s.image_path, s, None, None) for s in read_visdrone(root)]


def _sequences(frames: list) -> list[list]:
    """[[sequence name, frame count], ...] in bag order; [] for a DET root."""
    runs: list[list] = []
    for *_, seq in frames:
        if seq is None:
            return []
        if runs and runs[-1][0] == seq:
            runs[-1][1] += 1
        else:
            runs.append([seq, 1])
    return runs


def make_bag(data: str | os.PathLike, out: str | os.PathLike, fps: float = 30.0, encoding: str = "bgr8",
             storage: str = "mcap", frame_id: str = "camera", start_ns: int = DEFAULT_START_NS,
             limit: int | None = None, progress: bool = True) -> dict:
    """Write the dataset at ``data`` as the bag directory ``out``; returns a summary dict.

    The bag is written in a temporary folder beside ``out`` and renamed into place at the end, so an
    interrupted run never leaves a half-written bag at ``out``.
    """
    data, out = Path(data), Path(out)
    if encoding not in msgs.ENCODINGS:
        raise BagError(f"--encoding {encoding!r}: unknown (choose one of {', '.join(msgs.ENCODINGS)})")
    if storage not in STORAGES:
        raise BagError(f"--storage {storage!r}: unknown (choose mcap or sqlite3)")
    if not fps > 0:
        raise BagError(f"--fps {fps}: must be > 0")
    if out.exists():
        raise BagError(f"{out}: exists already; remove it or choose another --out")
    frames = _frames(data)
    if limit is not None:
        frames = frames[:limit]
    ts = typestore()
    image_topic = COMPRESSED_TOPIC if encoding == "jpeg" else IMAGE_TOPIC
    period_ns = round(1e9 / fps)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_root = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp = tmp_root / out.name  # the storage file inside is named after the bag, as ros2 bag does
    counts = {image_topic: 0, GT_TOPIC: 0, IGNORE_TOPIC: 0}
    try:
        writer = Writer(tmp, version=Writer.VERSION_LATEST, storage_plugin=STORAGES[storage])
        writer.set_custom_data(CLASS_NAMES_KEY, json.dumps(list(VISDRONE_CLASSES)))
        writer.set_custom_data("slimyolo_ros.source", str(data))
        if sequences := _sequences(frames):
            writer.set_custom_data(SEQUENCES_KEY, json.dumps(sequences))
        writer.set_custom_data(UNANNOTATED_KEY, str(unannotated := frames_without_annotation(frames)))
        with writer:
            image_type = msgs.COMPRESSED_IMAGE if encoding == "jpeg" else msgs.IMAGE
            conns = {
                image_topic: writer.add_connection(image_topic, image_type, typestore=ts),
                GT_TOPIC: writer.add_connection(GT_TOPIC, DETECTION2D_ARRAY, typestore=ts),
                IGNORE_TOPIC: writer.add_connection(IGNORE_TOPIC, DETECTION2D_ARRAY, typestore=ts),
            }
            for i, (path, sample, track_ids, _) in enumerate(tqdm(frames, desc=f"bag make {out.name}",
                                                               unit="frame", disable=not progress)):
                ns = start_ns + i * period_ns
                jpeg = None
                img = None
                if encoding == "jpeg" and path.suffix.lower() in (".jpg", ".jpeg"):
                    jpeg = path.read_bytes()
                else:
                    img = read_image(path)  # the pixels `slimyolo eval` reads, so both score the same
                typename, msg = msgs.image_message(img, encoding, ns, frame_id, jpeg_bytes=jpeg)
                writer.write(conns[image_topic], ns, ts.serialize_cdr(msg, typename))
                counts[image_topic] += 1
                if sample is None:
                    continue
                hdr = msgs.header(ns, frame_id)
                gt = to_message(ground_truth_rows(sample.boxes, sample.classes), hdr, VISDRONE_CLASSES,
                                ids=track_ids, types=ts.types)
                writer.write(conns[GT_TOPIC], ns, ts.serialize_cdr(gt, DETECTION2D_ARRAY))
                ign = to_message(ground_truth_rows(sample.ignore, np.zeros(len(sample.ignore))), hdr,
                                 [IGNORED_CLASS], types=ts.types)
                writer.write(conns[IGNORE_TOPIC], ns, ts.serialize_cdr(ign, DETECTION2D_ARRAY))
                counts[GT_TOPIC] += 1
                counts[IGNORE_TOPIC] += 1
        for storage_file in tmp.glob("*.mcap"):
            add_chunk_crcs(storage_file)  # so that damage is found when the bag is read
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    return {
        "bag": str(out),
        "storage": storage,
        "encoding": encoding,
        "frames": counts[image_topic],
        "frames_with_ground_truth": counts[GT_TOPIC],
        "frames_without_annotation": unannotated,
        "topics": counts,
        "fps": fps,
        "duration_s": (max(len(frames) - 1, 0) * period_ns) / 1e9,
        "bytes": size,
    }
