"""``read_dataset``: any supported dataset folder → samples + the class names it defines.

Formats, detected from the folder (``Dataset.format`` says which was found):
- ``coco``: a COCO instances json (``--data`` is the json, or a folder holding one) — data/coco_format.py;
- ``visdrone-vid``: ``sequences/`` + ``annotations/`` — data/visdrone_vid.py;
- ``yolo``: ``data.yaml``, or ``images/`` + ``labels/`` + a names file — data/yolo_format.py;
- ``visdrone-det``: ``images/`` + ``annotations/*.txt`` — data/visdrone.py.
The VisDrone formats define VisDrone's ten classes; the others name their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from slimyolo_ros.data.coco_format import is_coco_root, read_coco
from slimyolo_ros.data.visdrone import VISDRONE_CLASSES, SampleList, read_visdrone
from slimyolo_ros.data.visdrone_vid import is_vid_root, read_visdrone_vid
from slimyolo_ros.data.yolo_format import is_yolo_root, read_yolo
from slimyolo_ros.errors import DatasetError

FORMATS = ("visdrone-det", "visdrone-vid", "yolo", "coco")


@dataclass
class Dataset:
    """What a dataset folder holds: ``samples`` with class indices into ``class_names``."""

    root: Path
    format: str
    class_names: list[str]
    samples: SampleList
    names_from: str  # the file (or format) the class names came from

    def describe(self) -> str:
        return (f"{self.root}: {self.format} format, {len(self.samples)} images, {len(self.class_names)} "
                f"classes from {self.names_from} ({', '.join(self.class_names)})")


def detect_format(root: str | Path) -> str:
    """The format of ``root`` (one of FORMATS); a DatasetError says what was looked for."""
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: dataset not found")
    visdrone = (root / "images").is_dir() and (root / "annotations").is_dir()
    if is_yolo_root(root):
        return "yolo"
    if is_vid_root(root):
        return "visdrone-vid"
    if visdrone and any((root / "annotations").glob("*.txt")):
        return "visdrone-det"
    if is_coco_root(root):
        return "coco"
    if visdrone:  # no annotation file at all: every image is background
        return "visdrone-det"
    if root.is_file():  # only data.yaml and a COCO .json are read as files
        raise DatasetError(f"{root}: is a file, not a directory: a dataset is a folder (VisDrone, YOLO "
                           f"images/ + labels/), a data.yaml or a COCO instances .json")
    raise DatasetError(f"{root}: not a dataset this reads: expected images/ + annotations/ (VisDrone-DET), "
                       f"sequences/ + annotations/ (VisDrone-VID), data.yaml or images/ + labels/ (YOLO), "
                       f"or a COCO instances .json")


def read_dataset(root: str | Path, split: str | None = None, skip_bad: bool = False) -> Dataset:
    """Read ``root`` in its detected format. ``split`` (``train``/``val``) picks the part of a dataset
    that holds both (data.yaml's ``train:``/``val:``, a COCO folder with one json per split)."""
    root = Path(root)
    fmt = detect_format(root)
    if fmt == "yolo":
        samples, names, names_from = read_yolo(root, split, skip_bad)
    elif fmt == "coco":
        samples, names, names_from = read_coco(root, split, skip_bad)
    else:
        reader = read_visdrone_vid if fmt == "visdrone-vid" else read_visdrone
        samples, names, names_from = reader(root, skip_bad=skip_bad), list(VISDRONE_CLASSES), "VisDrone"
    if not samples:
        raise DatasetError(f"{root}: the {fmt} dataset holds no images")
    return Dataset(root, fmt, list(names), samples, names_from)
