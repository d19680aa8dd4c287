"""YOLO-format datasets (Darknet / ultralytics): ``images/`` + ``labels/``, one ``.txt`` per image.

A label line is ``class cx cy w h`` normalised to 0..1 (or ``class x1 y1 x2 y2 ...``, a polygon, whose
bounding box is taken). The label of ``.../images/<rel>.jpg`` is ``.../labels/<rel>.txt``.

Class names come from ``data.yaml`` (``names:`` as a list or an ``{index: name}`` map; ``train:``/``val:``
name image folders, relative to ``path:`` or the yaml's folder) or, without a yaml, from a ``*.names`` or
``classes.txt`` file in the root or in ``labels/``. With a split (``train``/``val``) and no yaml,
``images/<split>/`` is read when it exists, else all of ``images/``.
"""

from __future__ import annotations

from pathlib import Path

from slimyolo_ros.data.label_problems import Problems, arrays
from slimyolo_ros.data.visdrone import IMAGE_SUFFIXES, Sample, SampleList, image_size
from slimyolo_ros.errors import DatasetError

YAML_NAMES = ("data.yaml", "dataset.yaml")


def find_yaml(root: Path) -> Path | None:
    if root.is_file() and root.suffix in (".yaml", ".yml"):
        return root
    if root.is_dir():
        for name in YAML_NAMES:
            if (root / name).is_file():
                return root / name
    return None


def is_yolo_root(root: Path) -> bool:
    return find_yaml(root) is not None or (root / "labels").is_dir()


def _yaml(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise DatasetError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a mapping with names: (and train:/val:), found "
                           f"{type(data).__name__}")
    return data


def _names_from_yaml(path: Path, data: dict) -> list[str]:
    names = data.get("names")
    if isinstance(names, dict):
        try:
            keys = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            raise DatasetError(f"{path}: names: the keys of a names map must be class indices") from None
        if keys != list(range(len(keys))):
            raise DatasetError(f"{path}: names: class indices must be 0..{len(keys) - 1}, found {keys}")
        names = [names[k] if k in names else names[str(k)] for k in keys]
    if not isinstance(names, list) or not names:
        raise DatasetError(f"{path}: no class names (expected names: as a list or an index: name map)")
    if "nc" in data and data["nc"] != len(names):
        raise DatasetError(f"{path}: nc: {data['nc']} but names: lists {len(names)} classes")
    return [str(n) for n in names]


def _names_file(root: Path) -> Path:
    for folder in (root, root / "labels"):
        candidates = sorted(folder.glob("*.names")) + ([folder / "classes.txt"]
                                                       if (folder / "classes.txt").is_file() else [])
        if candidates:
            return candidates[0]
    raise DatasetError(f"{root}: YOLO-format dataset without class names: add data.yaml with names:, or a "
                       f".names / classes.txt file (one name per line) in {root} or {root / 'labels'}")


def _image_dirs(root: Path, split: str | None) -> tuple[list[Path], list[str], str]:
    """(image folders, class names, where the names came from)."""
    ypath = find_yaml(root)
    if ypath is None:
        names_path = _names_file(root)
        names = [ln.strip() for ln in names_path.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
        if not names:
            raise DatasetError(f"{names_path}: names file holds no class names")
        images = root / "images"
        if split and (images / split).is_dir():
            images = images / split
        if not images.is_dir():
            raise DatasetError(f"{images}: missing (a YOLO-format root holds images/ and labels/)")
        return [images], names, str(names_path)
    data = _yaml(ypath)
    names = _names_from_yaml(ypath, data)
    base = ypath.parent / str(data.get("path") or ".")
    key = split or "train"
    entry = data.get(key)
    if entry is None:
        if (base / "images").is_dir() and key == "train":
            return [base / "images"], names, str(ypath)
        raise DatasetError(f"{ypath}: no {key}: entry (the {key} image folder)")
    dirs = [base / str(e) for e in (entry if isinstance(entry, list) else [entry])]
    for d in dirs:
        if not d.is_dir():
            raise DatasetError(f"{ypath}: {key}: {d} is not a folder")
    return dirs, names, str(ypath)


def _label_path(image: Path) -> Path:
    parts = list(image.parts)
    if "images" in parts:
        i = len(parts) - 1 - parts[::-1].index("images")
        parts[i] = "labels"
    return Path(*parts).with_suffix(".txt")


def _parse_line(line: str, where: str, nc: int, width: int, height: int, problems: Problems):
    parts = line.split()
    if len(parts) < 5 or len(parts) % 2 == 0:
        problems.bad(f"{where}: expected 'class cx cy w h' (or 'class x1 y1 x2 y2 ...'), found {line!r}")
        return None
    try:
        cls_f, *vals = (float(p) for p in parts)
    except ValueError:
        problems.bad(f"{where}: not a number in {line!r}")
        return None
    if cls_f != int(cls_f) or not 0 <= cls_f < nc:
        problems.bad(f"{where}: class index {parts[0]} out of range 0..{nc - 1} ({nc} class names)")
        return None
    if len(vals) == 4:
        cx, cy, w, h = vals
        box = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
    else:
        xs, ys = vals[0::2], vals[1::2]
        box = (min(xs) * width, min(ys) * height, max(xs) * width, max(ys) * height)
    box = problems.clip(box, width, height, where)
    return None if box is None else (int(cls_f), box)


def _read_labels(label: Path, nc: int, width: int, height: int, problems: Problems) -> dict:
    try:
        text = label.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        problems.bad(f"{label}: cannot read label file: {exc}")
        text = ""
    boxes, classes = [], []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if raw.strip():
            parsed = _parse_line(raw.strip(), f"{label}:{lineno}", nc, width, height, problems)
            if parsed is not None:
                classes.append(parsed[0])
                boxes.append(parsed[1])
    return arrays(boxes, classes)


def read_yolo(root: str | Path, split: str | None = None,
              skip_bad: bool = False) -> tuple[SampleList, list[str], str]:
    """(samples sorted by path, class names, where the names came from)."""
    root = Path(root)
    dirs, names, names_from = _image_dirs(root, split)
    images = sorted(p for d in dirs for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DatasetError(f"{', '.join(map(str, dirs))}: no images (*.jpg, *.jpeg, *.png)")
    problems = Problems(skip_bad)
    samples = []
    for img in images:
        width, height = image_size(img)
        label = _label_path(img)
        if label.is_file():
            parsed = _read_labels(label, len(names), width, height, problems)
        else:
            problems.background += 1
            parsed = arrays([], [])
        samples.append(Sample(image_path=img, width=width, height=height, **parsed))
    problems.report(root, len(images))
    return SampleList(samples, problems.items, problems.background), names, names_from
