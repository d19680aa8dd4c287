"""VisDrone-VID sequences as ``Sample`` lists, so a recorded flight becomes one bag in frame order.

Layout: ``<root>/sequences/<seq>/<frame>.jpg`` (frame numbers 1, 2, ... in the file names) and
``<root>/annotations/<seq>.txt`` with lines
``frame_index,target_id,bbox_left,bbox_top,bbox_width,bbox_height,score,object_category,truncation,occlusion``.
Categories follow VisDrone-DET (``slimyolo_ros.data.visdrone``): 0 = ignored region, 1..10 = classes,
11 = "others" (dropped). A sequence without an annotation file has frames without ground truth.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slimyolo_ros.data.visdrone import IMAGE_SUFFIXES, Sample, image_size
from slimyolo_ros.errors import DatasetError

_FIELDS = ("frame_index", "target_id", "bbox_left", "bbox_top", "bbox_width", "bbox_height", "score",
           "object_category", "truncation", "occlusion")


@dataclass
class Frame:
    """One frame of a sequence; ``sample`` is None when its sequence has no annotation file."""

    image_path: Path
    sample: Sample | None
    sequence: str
    track_ids: list[str]


def is_vid_root(root: Path) -> bool:
    return (Path(root) / "sequences").is_dir()


def _frame_number(path: Path) -> int:
    digits = re.findall(r"\d+", path.stem)
    if not digits:
        raise DatasetError(f"{path}: a VisDrone-VID frame name must contain its frame number")
    return int(digits[-1])


def parse_annotation(ann: Path) -> dict[int, list[tuple[str, int, tuple[float, float, float, float]]]]:
    per_frame: dict[int, list] = defaultdict(list)
    for lineno, raw in enumerate(ann.read_text().splitlines(), start=1):
        line = raw.strip().rstrip(",")
        if not line:
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != len(_FIELDS):
            raise DatasetError(f"{ann}:{lineno}: expected {len(_FIELDS)} fields ({','.join(_FIELDS)}), "
                               f"found {len(parts)}: {line!r}")
        try:
            v = [float(p) for p in parts]
        except ValueError:
            raise DatasetError(f"{ann}:{lineno}: a field is not a number: {line!r}") from None
        cat = int(v[7])
        if v[7] != cat or not 0 <= cat <= 11:
            raise DatasetError(f"{ann}:{lineno}: object_category {parts[7]!r} is not an integer in 0..11")
        if v[4] <= 0 or v[5] <= 0:
            raise DatasetError(f"{ann}:{lineno}: bbox_width/bbox_height must be > 0, "
                               f"got {parts[4]}x{parts[5]}")
        per_frame[int(v[0])].append((parts[1], cat, (v[2], v[3], v[2] + v[4], v[3] + v[5])))
    return per_frame


def read_vid(root: str | Path) -> list[Frame]:
    """Every frame of every sequence under ``root``, sequences sorted by name, frames by number."""
    root = Path(root)
    seq_dir, ann_dir = root / "sequences", root / "annotations"
    seqs = sorted(p for p in seq_dir.iterdir() if p.is_dir())
    if not seqs:
        raise DatasetError(f"{seq_dir}: no sequence folders")
    frames: list[Frame] = []
    for seq in seqs:
        images = sorted((p for p in seq.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_frame_number)
        ann = ann_dir / f"{seq.name}.txt"
        per_frame = parse_annotation(ann) if ann.is_file() else None
        for img in images:
            if per_frame is None:
                frames.append(Frame(img, None, seq.name, []))
                continue
            w, h = image_size(img)
            boxes, classes, ignore, ids = [], [], [], []
            for tid, cat, (x1, y1, x2, y2) in per_frame.get(_frame_number(img), []):
                x1, y1, x2, y2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(w)), min(y2, float(h))
                if x2 <= x1 or y2 <= y1 or cat == 11:
                    continue
                if cat == 0:
                    ignore.append((x1, y1, x2, y2))
                else:
                    boxes.append((x1, y1, x2, y2))
                    classes.append(cat - 1)
                    ids.append(tid)
            sample = Sample(image_path=img, boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
                            classes=np.asarray(classes, np.int64),
                            ignore=np.asarray(ignore, np.float32).reshape(-1, 4), width=w, height=h)
            frames.append(Frame(img, sample, seq.name, ids))
    return frames
