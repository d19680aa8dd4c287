"""VisDrone2018/2019-DET reader and writer.

Layout: ``<root>/images/<name>.jpg`` and ``<root>/annotations/<name>.txt``; each annotation line is
``bbox_left,bbox_top,bbox_width,bbox_height,score,object_category,truncation,occlusion``
(the real files end some lines with a trailing comma and some files with blank lines).

Categories: 0 = ignored region (kept in ``Sample.ignore``), 1..10 = the 10 classes (index = category - 1),
11 = "others" (dropped, as the VisDrone toolkit does).

Decisions:
- An image without an annotation file is a background image (no objects, no ignore regions). That is how
  YOLO-style loaders treat label-less images; the count is logged (``SampleList.unannotated``).
- An annotation file without its image is an error (the dataset is incomplete), as is a line with the wrong
  field count, a non-number, a zero/negative width or height, a box entirely outside the image or a category
  outside 0..11. Boxes partly outside the image are clipped to it (the real files have a few).
- With ``skip_bad=True`` a bad line is dropped (the rest of its file is kept), an orphan annotation file is
  dropped, and each problem is logged as a warning and collected in ``SampleList.problems``.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from slimyolo_ros.errors import DatasetError
from slimyolo_ros.io_utils import atomic_write_text

log = logging.getLogger(__name__)

VISDRONE_CLASSES: tuple[str, ...] = (
    "pedestrian",
    "people",
    "bicycle",
    "car",
    "van",
    "truck",
    "tricycle",
    "awning-tricycle",
    "bus",
    "motor",
)
IGNORED_CATEGORY = 0
OTHERS_CATEGORY = 11
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_FIELDS = ("bbox_left", "bbox_top", "bbox_width", "bbox_height", "score", "object_category",
           "truncation", "occlusion")
_MAX_WARNINGS = 20  # a badly broken dataset should not flood the log; the count is always reported


@dataclass
class Sample:
    """One image and its ground truth, boxes in original-image pixels."""

    image_path: Path
    boxes: np.ndarray  # float32 N×4 x1, y1, x2, y2
    classes: np.ndarray  # int64 N, index into the class names of the dataset (VISDRONE_CLASSES here)
    ignore: np.ndarray  # float32 M×4 x1, y1, x2, y2 (category-0 regions)
    width: int
    height: int
    truncation: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # N, 0..1
    occlusion: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # N, 0..2


class SampleList(list):
    """``list[Sample]`` plus what the reader had to skip or assume."""

    problems: list[str]
    unannotated: int

    def __init__(self, items=(), problems=None, unannotated=0):
        super().__init__(items)
        self.problems = list(problems or [])
        self.unannotated = unannotated

    @property
    def n_skipped(self) -> int:
        return len(self.problems)


# --------------------------------------------------------------------------------------------- image size
def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    # Hand-written because OpenCV has no header-only API and decoding every training JPEG only to learn
    # its size would add minutes to loading VisDrone; the SOF marker has it.
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            if i + 9 > n:
                return None
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return (w, h) if w > 0 and h > 0 else None
        if marker == 0xDA:  # start of scan before any SOF: broken file
            return None
        i += 2 + length
    return None


def _png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    w, h = struct.unpack(">II", data[16:24])
    return (w, h) if w > 0 and h > 0 else None


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header; falls back to a full OpenCV decode for other formats."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
            size = _png_size(head) or _jpeg_size(head)
            if size is None and head[:2] == b"\xff\xd8":  # big EXIF/ICC blocks before SOF
                f.seek(0)
                size = _jpeg_size(f.read())
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read image: {exc.strerror or exc}") from exc
    if size is None:
        import cv2

        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise DatasetError(f"{path}: unreadable image (not a JPEG/PNG OpenCV can decode)")
        size = (int(img.shape[1]), int(img.shape[0]))
    return size


def read_image(path: str | Path) -> np.ndarray:
    """BGR uint8 pixels as stored: EXIF orientation is ignored, because VisDrone boxes (and the header
    sizes above) are in stored-pixel coordinates. Raises ``DatasetError`` naming the file."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        raise DatasetError(f"{path}: unreadable image (missing, truncated or not an image OpenCV can decode)")
    return img


# ---------------------------------------------------------------------------------------------- parsing
def _parse_annotation(ann: Path, width: int, height: int, problems: list[str] | None) -> dict:
    """Parse one file; ``problems`` None means raise on the first bad line."""
    try:
        text = ann.read_text(encoding="utf-8-sig")  # tolerate a byte-order mark from Windows editors
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{ann}: cannot read annotation file: {exc}") from exc
    boxes, classes, ignore, trunc, occl = [], [], [], [], []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        try:
            parts = [p.strip() for p in line.rstrip(",").split(",")]
            if len(parts) != len(_FIELDS):
                raise ValueError(f"expected {len(_FIELDS)} comma-separated fields "
                                 f"({','.join(_FIELDS)}), found {len(parts)}: {line!r}")
            values = []
            for name, p in zip(_FIELDS, parts, strict=True):
                try:
                    v = float(p)
                except ValueError:
                    raise ValueError(f"field {name} is not a number: {p!r}") from None
                if not np.isfinite(v):
                    raise ValueError(f"field {name} is not finite: {p!r}")
                values.append(v)
            left, top, w, h, _score, cat_f, tr_f, oc_f = values
            if cat_f != int(cat_f) or not 0 <= cat_f <= OTHERS_CATEGORY:
                raise ValueError(f"object_category {parts[5]!r} is not an integer in 0..{OTHERS_CATEGORY}")
            cat = int(cat_f)
            if w <= 0 or h <= 0:
                raise ValueError(f"bbox_width/bbox_height must be > 0, got {parts[2]}x{parts[3]}")
            x1, y1 = max(left, 0.0), max(top, 0.0)
            x2, y2 = min(left + w, float(width)), min(top + h, float(height))
            if x2 <= x1 or y2 <= y1:
                raise ValueError(f"box {parts[0]},{parts[1]},{parts[2]},{parts[3]} lies outside the "
                                 f"{width}x{height} image")
        except ValueError as exc:
            msg = f"{ann}:{lineno}: {exc}"
            if problems is None:
                raise DatasetError(msg) from None
            problems.append(msg)
            if len(problems) <= _MAX_WARNINGS:
                log.warning("skipping bad line: %s", msg)
            continue
        if cat == IGNORED_CATEGORY:
            ignore.append((x1, y1, x2, y2))
        elif cat == OTHERS_CATEGORY:
            continue
        else:
            boxes.append((x1, y1, x2, y2))
            classes.append(cat - 1)
            trunc.append(int(tr_f))
            occl.append(int(oc_f))
    return {
        "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
        "classes": np.asarray(classes, np.int64),
        "ignore": np.asarray(ignore, np.float32).reshape(-1, 4),
        "truncation": np.asarray(trunc, np.int64),
        "occlusion": np.asarray(occl, np.int64),
    }


def read_visdrone(root: str | Path, skip_bad: bool = False) -> SampleList:
    """All samples under ``root`` (sorted by file name). Raises ``DatasetError`` naming file and line."""
    root = Path(root)
    img_dir, ann_dir = root / "images", root / "annotations"
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root does not exist or is not a directory")
    for d in (img_dir, ann_dir):
        if not d.is_dir():
            raise DatasetError(f"{d}: missing (a VisDrone-DET root holds images/ and annotations/)")
    images: dict[str, Path] = {}
    for p in sorted(img_dir.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            if p.stem in images:  # a.jpg and a.png would share annotations/a.txt
                raise DatasetError(f"{p}: same name as {images[p.stem].name}; one annotation file cannot "
                                   f"describe both")
            images[p.stem] = p
    anns = {p.stem: p for p in sorted(ann_dir.glob("*.txt"))}
    if not images:
        raise DatasetError(f"{img_dir}: no images (*.jpg, *.jpeg, *.png)")

    problems: list[str] | None = [] if skip_bad else None
    for stem in sorted(set(anns) - set(images)):
        msg = f"{anns[stem]}: no matching image {img_dir / stem}.jpg"
        if problems is None:
            raise DatasetError(msg)
        problems.append(msg)
        log.warning("skipping annotation: %s", msg)

    samples: list[Sample] = []
    unannotated = 0
    for stem, img_path in images.items():
        width, height = image_size(img_path)
        ann = anns.get(stem)
        if ann is None:
            unannotated += 1
            parsed = _parse_annotation_empty()
        else:
            parsed = _parse_annotation(ann, width, height, problems)
        samples.append(Sample(image_path=img_path, width=width, height=height, **parsed))
    if unannotated:
        log.info("%s: %d of %d images have no annotation file (used as background images)",
                 root, unannotated, len(images))
    if problems:
        log.warning("%s: skipped %d bad annotation line(s)/file(s)", root, len(problems))
    return SampleList(samples, problems=problems, unannotated=unannotated)


def _parse_annotation_empty() -> dict:
    return {
        "boxes": np.zeros((0, 4), np.float32),
        "classes": np.zeros(0, np.int64),
        "ignore": np.zeros((0, 4), np.float32),
        "truncation": np.zeros(0, np.int64),
        "occlusion": np.zeros(0, np.int64),
    }


# ---------------------------------------------------------------------------------------------- writing
def format_annotation(
    boxes_xywh: np.ndarray | Sequence,
    categories: np.ndarray | Sequence[int],
    truncation: np.ndarray | Sequence[int] | None = None,
    occlusion: np.ndarray | Sequence[int] | None = None,
    scores: np.ndarray | Sequence[float] | None = None,
) -> str:
    """VisDrone annotation text. Boxes are rounded to integer pixels (the format's own convention);
    ``categories`` are VisDrone categories (0 = ignored region, 1..10 = classes, 11 = others).
    Score defaults to 1 for objects and 0 for ignored regions, as in the ground-truth files."""
    b = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    c = np.asarray(categories, dtype=np.int64).reshape(-1)
    n = len(b)
    if len(c) != n:
        raise ValueError(f"{n} boxes but {len(c)} categories")
    tr = np.zeros(n, np.int64) if truncation is None else np.asarray(truncation, np.int64).reshape(-1)
    oc = np.zeros(n, np.int64) if occlusion is None else np.asarray(occlusion, np.int64).reshape(-1)
    sc = (c != IGNORED_CATEGORY).astype(np.int64) if scores is None else np.asarray(scores).reshape(-1)
    xywh = np.rint(b).astype(np.int64)
    lines = [
        f"{x},{y},{max(w, 1)},{max(h, 1)},{s},{k},{t},{o}"
        for (x, y, w, h), s, k, t, o in zip(xywh.tolist(), sc.tolist(), c.tolist(), tr.tolist(), oc.tolist(),
                                            strict=True)
    ]
    return "".join(line + "\n" for line in lines)


def write_annotation(
    path: str | Path,
    boxes_xywh: np.ndarray | Sequence,
    categories: np.ndarray | Sequence[int],
    truncation: np.ndarray | Sequence[int] | None = None,
    occlusion: np.ndarray | Sequence[int] | None = None,
    scores: np.ndarray | Sequence[float] | None = None,
) -> Path:
    """Write one VisDrone annotation file atomically (see ``format_annotation``)."""
    return atomic_write_text(path, format_annotation(boxes_xywh, categories, truncation, occlusion, scores))
