"""Synthetic UAV dataset: deterministic, VisDrone-readable, small objects of all classes, ignored regions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from slimyolo_ros.data.sprites import CLASS_LENGTH
from slimyolo_ros.data.synth import generate
from slimyolo_ros.data.visdrone import VISDRONE_CLASSES, read_visdrone
from slimyolo_ros.errors import DatasetError

N, SIZE = 6, (320, 256)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("synth") / "a", N, SIZE, seed=7, progress=False)


def _files(root: Path) -> dict[str, bytes]:
    return {f"{p.parent.name}/{p.name}": p.read_bytes() for p in sorted(root.glob("*/*"))}


def test_same_seed_identical_other_seed_differs(synth_root, tmp_path):
    again = generate(tmp_path / "b", N, SIZE, seed=7, progress=False)
    other = generate(tmp_path / "c", N, SIZE, seed=8, progress=False)
    a, b, c = _files(synth_root), _files(again), _files(other)
    assert len(a) == 2 * N
    assert a == b
    assert a.keys() == c.keys()
    assert all(a[k] != c[k] for k in a if k.startswith("images/"))
    # image i depends only on (seed, i): a shorter run is a prefix of a longer one
    short = _files(generate(tmp_path / "d", 2, SIZE, seed=7, progress=False))
    assert all(short[k] == a[k] for k in short)


def test_reader_reads_it_back(synth_root):
    samples = read_visdrone(synth_root)
    assert len(samples) == N and samples.n_skipped == 0 and samples.unannotated == 0
    for s in samples:
        img = cv2.imread(str(s.image_path))
        assert img.shape == (SIZE[1], SIZE[0], 3) and (s.width, s.height) == SIZE
        assert len(s.boxes) >= 15
        assert (s.boxes[:, 2] > s.boxes[:, 0]).all() and (s.boxes[:, 3] > s.boxes[:, 1]).all()
        assert (s.boxes >= 0).all() and (s.boxes[:, 2] <= SIZE[0]).all() and (s.boxes[:, 3] <= SIZE[1]).all()


def test_boxes_sit_on_the_drawn_objects(tmp_path):
    """Same scenes with and without objects (the stages draw from separate random streams): the pixels
    that changed lie in the annotated boxes, and every box covers changed pixels."""
    kw = {"ignore_prob": 0.0, "trees": False, "progress": False}
    with_obj = read_visdrone(generate(tmp_path / "with", 3, SIZE, seed=11, **kw))
    without = read_visdrone(generate(tmp_path / "without", 3, SIZE, seed=11, objects=(0, 0), **kw))
    outside_fraction, covered = [], []
    for s, bg in zip(with_obj, without, strict=True):
        assert len(bg.boxes) == 0
        a = cv2.imread(str(s.image_path)).astype(np.int32)
        b = cv2.imread(str(bg.image_path)).astype(np.int32)
        changed = np.abs(a - b).sum(axis=2) > 60
        in_box = np.zeros_like(changed)
        for x1, y1, x2, y2 in np.rint(s.boxes).astype(int):
            in_box[y1:y2, x1:x2] = True
            covered.append(changed[y1:y2, x1:x2].mean())
        # shadows (offset ~0.12 car lengths) and blur reach a little outside the boxes
        grown = cv2.dilate(in_box.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        outside_fraction.append((changed & ~grown).sum() / max(changed.sum(), 1))
    assert max(outside_fraction) < 0.05
    assert np.median(covered) > 0.4 and min(covered) > 0.1


def test_ignored_regions_hold_the_clutter(tmp_path):
    """Same scenes with and without the ignored-region stage: every changed pixel is inside a region."""
    kw = {"objects": (0, 0), "trees": False, "progress": False}
    with_ig = read_visdrone(generate(tmp_path / "with", 4, SIZE, seed=3, ignore_prob=1.0, **kw))
    without = read_visdrone(generate(tmp_path / "without", 4, SIZE, seed=3, ignore_prob=0.0, **kw))
    n_regions = 0
    for s, bg in zip(with_ig, without, strict=True):
        a = cv2.imread(str(s.image_path)).astype(np.int32)
        b = cv2.imread(str(bg.image_path)).astype(np.int32)
        changed = np.abs(a - b).sum(axis=2) > 60
        inside = np.zeros_like(changed)
        for x1, y1, x2, y2 in np.rint(s.ignore).astype(int):
            inside[max(y1 - 2, 0) : y2 + 2, max(x1 - 2, 0) : x2 + 2] = True  # blur + JPEG reach 2 px
            assert changed[y1:y2, x1:x2].mean() > 0.05  # the region does hold clutter
            n_regions += 1
        assert (changed & ~inside).sum() == 0
    assert n_regions >= 3


def test_sizes_mostly_small_all_classes_and_ignores(synth_root):
    samples = read_visdrone(synth_root)
    boxes = np.concatenate([s.boxes for s in samples])
    classes = np.concatenate([s.classes for s in samples])
    side = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    # VisDrone: most objects are "small" (area < 32², COCO's definition), here scaled to the image
    assert (side < 32 * min(SIZE) / 640).mean() > 0.5 or (side < 32).mean() > 0.5
    assert set(classes.tolist()) == set(range(len(VISDRONE_CLASSES)))
    assert sum(len(s.ignore) for s in samples) >= 1
    assert any(s.occlusion.max(initial=0) > 0 for s in samples)
    # the class sizes keep their order: a bus is longer than a car, a car than a pedestrian
    long_side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    med = {c: np.median(long_side[classes == c]) for c in range(10)}
    assert med[8] > med[3] > med[0]
    assert CLASS_LENGTH[8] > CLASS_LENGTH[3] > CLASS_LENGTH[0]


def test_size_options_scale_objects(tmp_path):
    small = read_visdrone(generate(tmp_path / "s", 1, (256, 256), seed=1, min_size=10, max_size=10,
                                   progress=False))[0]
    big = read_visdrone(generate(tmp_path / "b", 1, (256, 256), seed=1, min_size=30, max_size=30,
                                 progress=False))[0]
    cars_s = small.boxes[small.classes == 3]
    cars_b = big.boxes[big.classes == 3]
    ls = np.maximum(cars_s[:, 2] - cars_s[:, 0], cars_s[:, 3] - cars_s[:, 1])
    lb = np.maximum(cars_b[:, 2] - cars_b[:, 0], cars_b[:, 3] - cars_b[:, 1])
    assert 7 < np.median(ls) < 14 and 24 < np.median(lb) < 38


def test_extreme_sizes_still_render(tmp_path):
    """The smallest image with the largest allowed objects, and tiny objects, both give readable scenes."""
    for name, lo, hi in (("big", 64, 64), ("tiny", 4, 4)):
        samples = read_visdrone(generate(tmp_path / name, 3, (128, 128), seed=2, min_size=lo, max_size=hi,
                                         ignore_prob=1.0, progress=False))
        assert sum(len(s.boxes) for s in samples) > 0


def test_refuses_to_mix_datasets_and_bad_args(tmp_path):
    generate(tmp_path / "x", 2, (128, 128), seed=0, progress=False)
    with pytest.raises(DatasetError, match="choose an empty --out"):
        generate(tmp_path / "x", 1, (128, 128), seed=0, progress=False)
    with pytest.raises(DatasetError, match="too small"):
        generate(tmp_path / "y", 1, (16, 16), progress=False)
    with pytest.raises(DatasetError, match="objects range"):
        generate(tmp_path / "y", 1, (128, 128), objects=(5, 2), progress=False)


def test_cli_json(tmp_path):
    out = tmp_path / "cli"
    cli = [sys.executable, "-m", "slimyolo_ros.cli", "synth", "--out", str(out)]
    args = ["--images", "2", "--size", "160x128", "--seed", "4", "--objects", "3-5", "--json"]
    res = subprocess.run(cli + args,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["images"] == 2
    n = sum(len(s.boxes) for s in read_visdrone(out))
    assert sum(summary["objects_per_class"].values()) == n
    assert 6 <= n <= 10
    bad = subprocess.run(cli + ["--size", "big"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "WIDTHxHEIGHT" in bad.stderr
