"""VisDrone-VID as a training set: every frame of every sequence is a ``Sample``.

Layout: ``<root>/sequences/<seq>/<frame>.jpg`` and ``<root>/annotations/<seq>.txt`` with lines
``frame_index,target_id,bbox_left,bbox_top,bbox_width,bbox_height,score,object_category,truncation,
occlusion``; categories as in VisDrone-DET (0 ignored region, 1..10 the classes, 11 others, dropped).
A sequence without an annotation file, or a frame without a line, is background.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from slimyolo_ros.data.label_problems import Problems, arrays
from slimyolo_ros.data.visdrone import IMAGE_SUFFIXES, OTHERS_CATEGORY, Sample, SampleList, image_size
from slimyolo_ros.errors import DatasetError

_FIELDS = ("frame_index", "target_id", "bbox_left", "bbox_top", "bbox_width", "bbox_height", "score",
           "object_category", "truncation", "occlusion")


def is_vid_root(root: Path) -> bool:
    return (root / "sequences").is_dir() and (root / "annotations").is_dir()


def _frame_number(path: Path) -> int:
    digits = re.findall(r"\d+", path.stem)
    if not digits:
        raise DatasetError(f"{path}: a VisDrone-VID frame name must contain its frame number")
    return int(digits[-1])


def _parse(ann: Path, problems: Problems) -> dict[int, list[tuple[int, tuple, str]]]:
    per_frame: dict[int, list] = defaultdict(list)
    for lineno, raw in enumerate(ann.read_text(encoding="utf-8-sig").splitlines(), start=1):
        line = raw.strip().rstrip(",")
        if not line:
            continue
        where = f"{ann}:{lineno}"
        parts = [p.strip() for p in line.split(",")]
        try:
            v = [float(p) for p in parts]
        except ValueError:
            problems.bad(f"{where}: a field is not a number: {line!r}")
            continue
        if len(v) != len(_FIELDS):
            problems.bad(f"{where}: expected {len(_FIELDS)} fields ({','.join(_FIELDS)}), found {len(v)}")
        elif v[7] != int(v[7]) or not 0 <= v[7] <= OTHERS_CATEGORY:
            problems.bad(f"{where}: object_category {parts[7]!r} is not an integer in 0..{OTHERS_CATEGORY}")
        else:
            per_frame[int(v[0])].append((int(v[7]), (v[2], v[3], v[2] + v[4], v[3] + v[5]), where))
    return per_frame


def read_visdrone_vid(root: str | Path, skip_bad: bool = False) -> SampleList:
    """Every annotated frame, sequences by name, frames by number."""
    root = Path(root)
    seqs = sorted(p for p in (root / "sequences").iterdir() if p.is_dir())
    if not seqs:
        raise DatasetError(f"{root / 'sequences'}: no sequence folders")
    problems = Problems(skip_bad)
    samples = []
    for seq in seqs:
        ann = root / "annotations" / f"{seq.name}.txt"
        per_frame = _parse(ann, problems) if ann.is_file() else {}
        frames = sorted((p for p in seq.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_frame_number)
        for img in frames:
            w, h = image_size(img)
            boxes, classes, ignore = [], [], []
            lines = per_frame.get(_frame_number(img), [])
            problems.background += not lines
            for cat, box, where in lines:
                clipped = problems.clip(box, w, h, where)
                if clipped is None or cat == OTHERS_CATEGORY:
                    continue
                if cat == 0:
                    ignore.append(clipped)
                else:
                    boxes.append(clipped)
                    classes.append(cat - 1)
            samples.append(Sample(image_path=img, width=w, height=h, **arrays(boxes, classes, ignore)))
    problems.report(root, len(samples))
    return SampleList(samples, problems.items, problems.background)
