"""Ground truth for a recorded bag from annotation files: VisDrone-VID, MOT Challenge and COCO.

Each reader returns :class:`TruthFile`: the frames in their dataset order (the order a camera recorded
them), each with boxes, class names, target ids and ignored regions, and for COCO the file name (a
timestamp may live in it). The parsing itself is the existing readers': ``bag/vid.py`` for VisDrone-VID,
``trackers.load_mot_file`` for MOT Challenge, pycocotools (``data/coco_format.load_instances``) for COCO.

- VisDrone-VID: one ``<seq>.txt``, a folder of them, or a VID root (``sequences/`` + ``annotations/``).
  A sequence has as many frames as its ``sequences/<seq>/`` folder has images, else as its highest
  annotated frame number; frames without a line have no objects.
- MOT Challenge ``gt.txt``: ``frame,id,x,y,w,h,consider,class,visibility``. As TrackEval scores MOT17,
  rows with ``consider`` 1 and class 1 are pedestrians, the distractor classes (2, 7, 8, 12) are ignored
  regions, the rest is dropped; a file without a class column (MOT15) is all pedestrians.
- COCO json: images in ``file_name`` order; ``iscrowd`` boxes are ignored regions; the target id is an
  annotation's ``track_id`` or ``instance_id`` when it has one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from slimyolo_ros.data.visdrone import IMAGE_SUFFIXES, VISDRONE_CLASSES
from slimyolo_ros.errors import DatasetError

MOT_PEDESTRIAN = 1
MOT_DISTRACTORS = (2, 7, 8, 12)  # person on vehicle, static person, distractor, reflection (TrackEval)


@dataclass
class TruthFrame:
    sequence: str
    number: int  # the frame's number in its sequence (1-based) or its position in the COCO file
    boxes: np.ndarray  # N×4 x1, y1, x2, y2 pixels
    names: list[str]
    ids: list[str]
    ignore: np.ndarray  # M×4
    file_name: str = ""


@dataclass
class TruthFile:
    path: Path
    kind: str  # "visdrone-vid", "mot" or "coco"
    class_names: list[str]
    frames: list[TruthFrame] = field(default_factory=list)  # dataset order
    sequences: list[tuple[str, int]] = field(default_factory=list)  # (name, frames) in order


def _boxes(rows) -> np.ndarray:
    return np.asarray(rows, np.float32).reshape(-1, 4)


def read_truth(path: Path) -> TruthFile:
    """The annotation file or folder at ``path``, its format told by its content."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"--gt {path}: no such file or folder")
    if path.suffix.lower() == ".json":
        return read_coco_truth(path)
    if path.is_dir():
        if (path / "annotations").is_dir():
            return read_vid_truth(path / "annotations", path / "sequences")
        if (path / "gt" / "gt.txt").is_file():  # a MOT Challenge sequence folder
            return read_mot_truth(path / "gt" / "gt.txt")
        return read_vid_truth(path, None)
    fields = _first_fields(path)
    if fields == 10:
        return read_vid_truth(path, None)
    if 6 <= fields <= 9:
        return read_mot_truth(path)
    raise DatasetError(f"--gt {path}: {fields} comma-separated fields on the first line; "
                       "VisDrone-VID has 10, MOT Challenge gt.txt 6 to 9 (or give a COCO .json)")


def _first_fields(path: Path) -> int:
    try:
        with open(path, encoding="utf-8-sig") as f:
            line = next((ln.strip().rstrip(",") for ln in f if ln.strip()), "")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"--gt {path}: not a readable annotation file ({exc})") from None
    if not line:
        raise DatasetError(f"--gt {path}: empty annotation file")
    return len(line.split(","))


def read_vid_truth(ann: Path, sequences: Path | None) -> TruthFile:
    """One VisDrone-VID annotation file or a folder of them (sequences sorted by name)."""
    from slimyolo_ros.bag.vid import parse_annotation

    files = sorted(ann.glob("*.txt")) if ann.is_dir() else [ann]
    if not files:
        raise DatasetError(f"--gt {ann}: no VisDrone-VID annotation files (*.txt) in the folder")
    out = TruthFile(ann, "visdrone-vid", list(VISDRONE_CLASSES))
    for f in files:
        per_frame = parse_annotation(f)
        seq_dir = sequences / f.stem if sequences is not None else None
        n_images = sum(1 for p in seq_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) \
            if seq_dir is not None and seq_dir.is_dir() else 0
        length = max(n_images, max(per_frame, default=0))
        for number in range(1, length + 1):
            boxes, names, ids, ignore = [], [], [], []
            for tid, cat, box in per_frame.get(number, []):
                if cat == 0:
                    ignore.append(box)
                elif cat <= len(VISDRONE_CLASSES):  # 11 "others" is not scored
                    boxes.append(box)
                    names.append(VISDRONE_CLASSES[cat - 1])
                    ids.append(tid)
            out.frames.append(TruthFrame(f.stem, number, _boxes(boxes), names, ids, _boxes(ignore)))
        out.sequences.append((f.stem, length))
    return out


def read_mot_truth(path: Path) -> TruthFile:
    """A MOT Challenge gt.txt as one sequence (frames 1..the last numbered)."""
    from trackers import load_mot_file

    try:
        data = load_mot_file(path)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"--gt {path}: not a MOT Challenge gt.txt: {exc}") from None
    if min(data) < 1:
        raise DatasetError(f"--gt {path}: frame number {min(data)}; MOT Challenge frames start at 1")
    all_classes = np.concatenate([d.classes for d in data.values()])
    no_class = bool(np.all(all_classes == -1))  # MOT15: the class column holds -1
    out = TruthFile(path, "mot", ["pedestrian"])
    seq = path.parent.parent.name if path.parent.name == "gt" else path.stem
    last = max(data)
    for number in range(1, last + 1):
        d = data.get(number)
        if d is None:
            out.frames.append(TruthFrame(seq, number, _boxes([]), [], [], _boxes([])))
            continue
        xyxy = np.column_stack([d.boxes[:, :2], d.boxes[:, :2] + d.boxes[:, 2:4]])
        person = (d.confidences != 0) & ((d.classes == MOT_PEDESTRIAN) | no_class)
        distractor = np.isin(d.classes, MOT_DISTRACTORS)
        out.frames.append(TruthFrame(seq, number, _boxes(xyxy[person]), ["pedestrian"] * int(person.sum()),
                                     [str(i) for i in d.ids[person]], _boxes(xyxy[distractor])))
    out.sequences.append((seq, last))
    return out


def read_coco_truth(path: Path) -> TruthFile:
    """A COCO instances json; class names from ``categories`` in ``id`` order."""
    from slimyolo_ros.data.coco_format import load_instances

    coco = load_instances(path)
    cats = sorted(coco.dataset["categories"], key=lambda c: c["id"])
    names = {c["id"]: str(c["name"]) for c in cats}
    images = sorted(coco.dataset["images"], key=lambda im: str(im.get("file_name", "")))
    if not images:
        raise DatasetError(f"--gt {path}: images is empty")
    out = TruthFile(path, "coco", [names[c["id"]] for c in cats])
    for number, img in enumerate(images, start=1):
        boxes, cls, ids, ignore = [], [], [], []
        for ann in coco.imgToAnns.get(img["id"], []):
            where = f"{path}: annotation id {ann.get('id')} (image {img.get('file_name')})"
            if ann.get("category_id") not in names:
                raise DatasetError(f"{where}: category_id {ann.get('category_id')} is not in categories")
            try:
                x, y, w, h = (float(v) for v in ann["bbox"])
            except (KeyError, TypeError, ValueError):
                raise DatasetError(f"{where}: bbox {ann.get('bbox')!r} is not [x, y, w, h]") from None
            if ann.get("iscrowd"):
                ignore.append((x, y, x + w, y + h))
                continue
            boxes.append((x, y, x + w, y + h))
            cls.append(names[ann["category_id"]])
            ids.append(str(ann.get("track_id", ann.get("instance_id", ""))))
        out.frames.append(TruthFrame(path.stem, number, _boxes(boxes), cls, ids, _boxes(ignore),
                                     str(img.get("file_name", ""))))
    out.sequences.append((path.stem, len(images)))
    return out
