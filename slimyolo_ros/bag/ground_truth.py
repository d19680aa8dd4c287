"""Ground truth from annotation files (``bag eval --gt``) matched to a bag's image frames.

- ``order`` (default): the k-th frame of the annotations (sequences in order) is the bag's k-th image on
  the image topic, as when the bag was recorded from the same camera stream the annotations were made of.
- ``stamp``: each annotated frame carries a time, from a mapping file (``--gt-stamps``: lines
  ``KEY,STAMP`` where KEY is a COCO ``file_name`` or a frame number and STAMP nanoseconds, or seconds
  with a decimal point) or from its COCO file name (``1694350000.123456789.jpg``, ``1694350000_123.png``
  or ``1694350000123456789.jpg``); it takes the bag image whose header stamp is nearest, within half the
  bag's median frame interval.

The result fills the ``Source`` the replay scores against (boxes by stamp, target ids, ignored regions,
class names, sequences) and says how many frames matched and why the others did not.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from pathlib import Path

import numpy as np

from slimyolo_ros.bag import msgs
from slimyolo_ros.bag.gt_files import TruthFile, TruthFrame, read_truth
from slimyolo_ros.bag.source import Source
from slimyolo_ros.bag.types import typestore
from slimyolo_ros.errors import DatasetError

MATCH_MODES = ("order", "stamp")
AFTER_TRUTH = "(after the ground truth)"  # the sequence of bag images past the annotations' last frame


def bag_images(reader, topic: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Header stamps and (width, height) of the images on ``topic`` in bag order; (0, 0) for a
    CompressedImage (its size is in its encoded bytes, not worth decoding every frame for)."""
    ts = typestore()
    conns = [c for c in reader.connections if c.topic == topic]
    stamps, sizes = [], []
    for c, _, raw in reader.messages(connections=conns):
        m = ts.deserialize_cdr(raw, c.msgtype)
        stamps.append(msgs.stamp_ns(m.header))
        sizes.append((int(getattr(m, "width", 0)), int(getattr(m, "height", 0))))
    return stamps, sizes


def _clip(boxes: np.ndarray, size: tuple[int, int], keep: list | None = None) -> np.ndarray:
    """Boxes clipped to the image (as bag make stores them); those left empty dropped (and their entries
    in ``keep``'s lists)."""
    w, h = size
    if not w or not h or not len(boxes):
        return boxes
    out = boxes.copy()
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
    ok = (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])
    for values in keep or []:
        values[:] = [v for v, k in zip(values, ok, strict=True) if k]
    return out[ok]


def attach(src: Source, reader, path: Path, match: str = "order", stamps_file: Path | None = None) -> dict:
    """Put the annotations at ``path`` into ``src`` (replacing a /ground_truth topic's); the matching
    summary for the report."""
    if match not in MATCH_MODES:
        raise DatasetError(f"--gt-match {match!r}: choose one of {', '.join(MATCH_MODES)}")
    if stamps_file and match != "stamp":
        raise DatasetError(f"--gt-stamps {stamps_file}: times are used only with --gt-match stamp")
    truth = read_truth(Path(path))
    stamps, sizes = bag_images(reader, src.image_topic)
    if match == "order":
        pairs, lost, extra = _by_order(truth, stamps, src.image_topic)
        tolerance = None
    else:
        keyed = _truth_stamps(truth, stamps_file)
        tolerance = _tolerance_ns(stamps)
        pairs, lost, extra = _by_stamp(keyed, stamps, tolerance)
    src.gt, src.ignore, src.gt_ids = {}, {}, {}
    for index, tf in pairs:
        s = stamps[index]
        names, ids = list(tf.names), list(tf.ids)
        src.gt[s] = (_clip(tf.boxes, sizes[index], [names, ids]), names)
        src.ignore[s] = _clip(tf.ignore, sizes[index])
        src.gt_ids[s] = ids
    src.has_gt = True
    src.truth_from = str(truth.path)
    src.class_names = truth.class_names
    src.sequences = _sequences(truth, len(stamps)) if match == "order" else [("bag", len(stamps))]
    return {"file": str(truth.path), "format": truth.kind, "match": match,
            "ground_truth_frames": len(truth.frames), "bag_frames": len(stamps), "matched": len(pairs),
            "ground_truth_unmatched": dict(lost), "bag_frames_without_ground_truth": dict(extra),
            "tolerance_ms": None if tolerance is None else round(tolerance / 1e6, 3)}


def _by_order(truth: TruthFile, stamps: list[int], topic: str):
    n = min(len(truth.frames), len(stamps))
    lost, extra = Counter(), Counter()
    if len(truth.frames) > n:
        lost[f"past the bag's last image (the bag has {len(stamps)} on {topic})"] = len(truth.frames) - n
    if len(stamps) > n:
        extra[f"after the ground truth's last frame ({len(truth.frames)} frames)"] = len(stamps) - n
    return list(enumerate(truth.frames[:n])), lost, extra


def _sequences(truth: TruthFile, n_bag: int) -> list[tuple[str, int]]:
    """The annotations' sequences over the bag's images in order (cut at the bag's end), then the rest."""
    out, used = [], 0
    for name, count in truth.sequences:
        take = min(count, n_bag - used)
        if take > 0:
            out.append((name, take))
            used += take
    if used < n_bag:
        out.append((AFTER_TRUTH, n_bag - used))
    return out


def _tolerance_ns(stamps: list[int]) -> int:
    """Half the median interval between the bag's images (1 ms for a single image)."""
    diffs = np.diff(np.unique(np.asarray(stamps, np.int64)))
    return int(np.median(diffs) // 2) if len(diffs) else 1_000_000


def _by_stamp(keyed: list[tuple[TruthFrame, int | None, str]], stamps: list[int], tolerance: int):
    order = sorted(range(len(stamps)), key=lambda i: stamps[i])
    sorted_stamps = [stamps[i] for i in order]
    lost, taken, pairs = Counter(), set(), []
    for tf, stamp, why in keyed:
        if stamp is None:
            lost[why] += 1
            continue
        j = bisect.bisect_left(sorted_stamps, stamp)
        near = [k for k in (j - 1, j) if 0 <= k < len(sorted_stamps)]
        best = min(near, key=lambda k: abs(sorted_stamps[k] - stamp), default=None)
        if best is None or abs(sorted_stamps[best] - stamp) > tolerance:
            lost[f"no bag image within {tolerance / 1e6:g} ms of its stamp"] += 1
        elif order[best] in taken:
            lost["nearest bag image already matched to another annotated frame"] += 1
        else:
            taken.add(order[best])
            pairs.append((order[best], tf))
    extra = Counter()
    if len(stamps) > len(taken):
        extra["no annotated frame with a stamp near it"] = len(stamps) - len(taken)
    return sorted(pairs, key=lambda p: p[0]), lost, extra


def _truth_stamps(truth: TruthFile, stamps_file: Path | None) -> list[tuple[TruthFrame, int | None, str]]:
    """(frame, stamp or None, why none) for every annotated frame."""
    mapping = read_stamps(stamps_file) if stamps_file else {}
    if not mapping and truth.kind != "coco":
        raise DatasetError(f"--gt-match stamp: {truth.path} ({truth.kind}) has no times; give "
                           "--gt-stamps FILE (lines FRAME_NUMBER,STAMP_NS) or match by order")
    out = []
    for tf in truth.frames:
        keys = [k for k in (tf.file_name, f"{tf.sequence}/{tf.number}", str(tf.number)) if k]
        stamp = next((mapping[k] for k in keys if k in mapping), None)
        if stamp is None and tf.file_name:
            stamp = stamp_from_name(tf.file_name)
        why = "not in --gt-stamps" if mapping else "no timestamp in its file name"
        out.append((tf, stamp, why))
    return out


_SEC_FRACTION = re.compile(r"(?<!\d)(\d{9,10})[._](\d{1,9})(?!\d)")
_NANOSECONDS = re.compile(r"(?<!\d)(\d{16,19})(?!\d)")


def stamp_from_name(name: str) -> int | None:
    """Nanoseconds from a file name holding seconds.fraction (``.`` or ``_``) or nanoseconds; None."""
    stem = Path(name).stem if Path(name).suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp") else name
    m = _SEC_FRACTION.search(stem)
    if m:
        return int(m.group(1)) * 1_000_000_000 + int(m.group(2).ljust(9, "0"))
    m = _NANOSECONDS.search(stem)
    return int(m.group(1)) if m else None


def read_stamps(path: Path) -> dict[str, int]:
    """``KEY,STAMP`` lines (``#`` comments): STAMP nanoseconds, or seconds with a decimal point."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"--gt-stamps {path}: not readable ({exc})") from None
    out: dict[str, int] = {}
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split(",")]
        stamp = _parse_stamp(parts[1]) if len(parts) == 2 else None
        if stamp is None:
            raise DatasetError(f"{path}:{lineno}: expected KEY,STAMP (STAMP in ns, or seconds with a "
                               f"decimal point), got {line!r}")
        out[parts[0]] = stamp
    if not out:
        raise DatasetError(f"--gt-stamps {path}: no KEY,STAMP lines")
    return out


def _parse_stamp(text: str) -> int | None:
    if re.fullmatch(r"\d+", text):
        return int(text)
    m = re.fullmatch(r"(\d+)\.(\d{1,9})", text)
    return int(m.group(1)) * 1_000_000_000 + int(m.group(2).ljust(9, "0")) if m else None
