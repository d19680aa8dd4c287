"""A 3-class dataset in YOLO format and COCO json, made from synthetic VisDrone scenes: VisDrone's ten
classes folded into ``person``, ``vehicle``, ``two-wheeler`` so that nothing about it is VisDrone's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from slimyolo_ros.data.synth import generate
from slimyolo_ros.data.visdrone import read_visdrone

NAMES = ["person", "vehicle", "two-wheeler"]
# VisDrone class index -> index into NAMES
FOLD = np.array([0, 0, 2, 1, 1, 1, 2, 2, 1, 2])


def synth_scenes(out: Path, n: int = 8, size: int = 96, seed: int = 3) -> list:
    generate(out, n, size=(size, size), seed=seed, progress=False, objects=(3, 6), ignore_prob=0.0)
    return read_visdrone(out)


def write_yolo(out: Path, samples: list, names_file: str | None = "data.yaml") -> Path:
    """images/ + labels/ (+ data.yaml, or a .names file); returns ``out``."""
    (out / "images").mkdir(parents=True)
    (out / "labels").mkdir()
    for s in samples:
        shutil.copy(s.image_path, out / "images" / s.image_path.name)
        lines = []
        for (x1, y1, x2, y2), c in zip(s.boxes.tolist(), s.classes.tolist(), strict=True):
            cx, cy = (x1 + x2) / 2 / s.width, (y1 + y2) / 2 / s.height
            lines.append(f"{FOLD[c]} {cx:.6f} {cy:.6f} {(x2 - x1) / s.width:.6f} {(y2 - y1) / s.height:.6f}")
        (out / "labels" / f"{s.image_path.stem}.txt").write_text("".join(ln + "\n" for ln in lines))
    if names_file == "data.yaml":
        (out / "data.yaml").write_text("path: .\ntrain: images\nval: images\nnames:\n" +
                                       "".join(f"  {i}: {n}\n" for i, n in enumerate(NAMES)))
    elif names_file:
        (out / names_file).write_text("\n".join(NAMES) + "\n")
    return out


def write_coco(out: Path, samples: list, crowd_first: bool = False) -> Path:
    """out/images/ + out/annotations/instances_train.json with category ids 5, 7, 9 (not 0..2)."""
    (out / "images").mkdir(parents=True)
    (out / "annotations").mkdir()
    images, anns = [], []
    for k, s in enumerate(samples):
        shutil.copy(s.image_path, out / "images" / s.image_path.name)
        images.append({"id": 100 + k, "file_name": s.image_path.name, "width": s.width, "height": s.height})
        for j, ((x1, y1, x2, y2), c) in enumerate(zip(s.boxes.tolist(), s.classes.tolist(), strict=True)):
            anns.append({"id": len(anns) + 1, "image_id": 100 + k, "category_id": int(5 + 2 * FOLD[c]),
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                         "iscrowd": int(crowd_first and j == 0)})
    cats = [{"id": 5 + 2 * i, "name": n} for i, n in enumerate(NAMES)]
    path = out / "annotations" / "instances_train.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return out
