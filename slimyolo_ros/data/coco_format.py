"""COCO-format datasets: one instances json (``images``, ``annotations``, ``categories``) + the images.

The json is ``--data`` itself, or the one ``*.json`` in the folder or its ``annotations/`` (with several,
the one whose name holds the split, e.g. ``instances_val2017.json``). Image files are looked up by
``file_name`` under the json's folder, the root, ``root/images`` or ``root/<json stem without
instances_>`` (COCO's own ``train2017/``), the first that holds the first image.

Categories become class indices in the order of their ``id``; names are their ``name``. ``iscrowd``
boxes are ignored regions (as pycocotools' evaluation treats them). Boxes are ``[x, y, w, h]`` pixels.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from slimyolo_ros.data.label_problems import Problems, arrays
from slimyolo_ros.data.visdrone import Sample, SampleList
from slimyolo_ros.errors import DatasetError

_KEYS = ("images", "annotations", "categories")


def _jsons(root: Path) -> list[Path]:
    if root.is_file():
        return [root] if root.suffix == ".json" else []
    return sorted(root.glob("*.json")) + sorted((root / "annotations").glob("*.json"))


def is_coco_root(root: Path) -> bool:
    return bool(_jsons(root))


def _choose_json(root: Path, split: str | None) -> Path:
    found = _jsons(root)
    if len(found) == 1:
        return found[0]
    if split:
        matching = [p for p in found if split in p.stem]
        if len(matching) == 1:
            return matching[0]
    raise DatasetError(f"{root}: {len(found)} json files ({', '.join(p.name for p in found)}); "
                       f"give the one to use as --data/--val")


def _load(path: Path):
    from pycocotools.coco import COCO

    coco = COCO()
    try:
        import json

        coco.dataset = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable COCO json: {exc}") from None
    missing = [k for k in _KEYS if not isinstance(coco.dataset, dict) or k not in coco.dataset]
    if missing:
        raise DatasetError(f"{path}: not a COCO instances file (lacks {', '.join(missing)})")
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco.createIndex()
    return coco


def load_instances(path: str | Path):
    """A COCO instances json as a pycocotools ``COCO`` (indexed), without looking for its images: for
    annotations of images that live elsewhere (the frames of a bag)."""
    return _load(Path(path))


def _image_root(path: Path, root: Path, first: str) -> Path:
    base = root if root.is_dir() else path.parent
    stem = path.stem[len("instances_"):] if path.stem.startswith("instances_") else path.stem
    candidates = [path.parent, base, base / "images", base / stem, path.parent.parent / "images",
                  path.parent.parent / stem]
    for c in candidates:
        if (c / first).is_file():
            return c
    raise DatasetError(f"{path}: image {first!r} found in none of {', '.join(map(str, candidates))}")


def _sample(coco, img: dict, folder: Path, index: dict[int, int], path: Path, problems: Problems):
    width, height = int(img.get("width", 0)), int(img.get("height", 0))
    file = folder / str(img.get("file_name", ""))
    if width <= 0 or height <= 0:
        from slimyolo_ros.data.visdrone import image_size

        width, height = image_size(file)
    boxes, classes, ignore = [], [], []
    for ann in coco.imgToAnns.get(img["id"], []):
        where = f"{path}: annotation id {ann.get('id')} (image {img.get('file_name')})"
        cat = ann.get("category_id")
        if cat not in index:
            problems.bad(f"{where}: category_id {cat} is not in categories")
            continue
        try:
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError):
            problems.bad(f"{where}: bbox {ann.get('bbox')!r} is not [x, y, w, h]")
            continue
        box = problems.clip((x, y, x + w, y + h), width, height, where)
        if box is None:
            continue
        if ann.get("iscrowd"):
            ignore.append(box)
        else:
            boxes.append(box)
            classes.append(index[cat])
    if not coco.imgToAnns.get(img["id"]):
        problems.background += 1
    return Sample(image_path=file, width=width, height=height, **arrays(boxes, classes, ignore))


def read_coco(root: str | Path, split: str | None = None,
              skip_bad: bool = False) -> tuple[SampleList, list[str], str]:
    """(samples in file-name order, class names, the json read)."""
    root = Path(root)
    path = _choose_json(root, split)
    coco = _load(path)
    cats = sorted(coco.dataset["categories"], key=lambda c: c["id"])
    if not cats:
        raise DatasetError(f"{path}: categories is empty (the class names come from it)")
    index = {c["id"]: i for i, c in enumerate(cats)}
    images = sorted(coco.dataset["images"], key=lambda im: str(im.get("file_name", "")))
    if not images:
        raise DatasetError(f"{path}: images is empty")
    folder = _image_root(path, root, str(images[0].get("file_name", "")))
    problems = Problems(skip_bad)
    samples = []
    for img in images:
        if not (folder / str(img.get("file_name", ""))).is_file():
            problems.bad(f"{path}: image id {img.get('id')}: {folder / str(img.get('file_name'))} not found")
            continue
        samples.append(_sample(coco, img, folder, index, path, problems))
    problems.report(path, len(images))
    return SampleList(samples, problems.items, problems.background), [str(c["name"]) for c in cats], str(path)
