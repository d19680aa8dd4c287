"""YoloDataset: letterbox targets, augmentation keeps boxes on their objects, ignore regions, collate."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from slimyolo_ros.data.dataset import YoloDataset, collate
from slimyolo_ros.data.visdrone import read_visdrone, write_annotation
from slimyolo_ros.errors import DatasetError

# BGR colours, one per class; the background and the padding (114) are greys, far from all of them
COLOURS = {0: (0, 0, 255), 1: (0, 255, 0), 2: (255, 0, 0), 3: (0, 255, 255), 4: (255, 255, 0),
           5: (255, 0, 255)}
IGNORE_COLOUR = (255, 255, 255)


def _make(root: Path, images: list[tuple[tuple[int, int], list[tuple[int, tuple[int, int, int, int]]]]],
          ignores: dict[int, list[tuple[int, int, int, int]]] | None = None) -> list:
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    for i, ((w, h), objs) in enumerate(images):
        img = np.full((h, w, 3), 40, np.uint8)
        boxes, cats = [], []
        for cls, (x, y, bw, bh) in objs:
            img[y : y + bh, x : x + bw] = COLOURS[cls]
            boxes.append((x, y, bw, bh))
            cats.append(cls + 1)
        for x, y, bw, bh in (ignores or {}).get(i, []):
            img[y : y + bh, x : x + bw] = IGNORE_COLOUR
            boxes.append((x, y, bw, bh))
            cats.append(0)
        cv2.imwrite(str(root / "images" / f"{i:03d}.png"), img)
        write_annotation(root / "annotations" / f"{i:03d}.txt", boxes, cats)
    return read_visdrone(root)


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    return _make(root, [
        ((200, 120), [(0, (10, 10, 30, 20)), (1, (150, 60, 24, 40)), (2, (90, 95, 16, 14))]),
        ((120, 160), [(3, (20, 30, 40, 12)), (4, (70, 120, 30, 30))]),
        ((160, 160), [(5, (60, 60, 40, 40)), (0, (0, 140, 20, 20))]),
    ], ignores={0: [(100, 5, 40, 30)]})


def _to_bgr(img: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray((img.permute(1, 2, 0).numpy()[:, :, ::-1] * 255).round().astype(np.uint8))


def _mask(img: np.ndarray, colour) -> np.ndarray:
    return (np.abs(img.astype(int) - np.asarray(colour)).sum(axis=2) < 90)


def test_letterbox_targets_exact(samples):
    S = 64
    img, targets, path, shape0, ignore = YoloDataset(samples, S)[0]
    assert img.shape == (3, S, S) and img.dtype == torch.float32
    assert 0.0 <= img.min() and img.max() <= 1.0
    assert shape0 == (120, 200) and path.endswith("000.png")
    # 200x120 -> scale 0.32, 64x38 image padded by 13 px top
    scale, pad_y = 64 / 200, (64 - round(120 * 64 / 200)) // 2
    x1, y1, w, h = 10, 10, 30, 20
    sy = 38 / 120
    expect = [(x1 + w / 2) * scale / S, ((y1 + h / 2) * sy + pad_y) / S, w * scale / S, h * sy / S]
    np.testing.assert_allclose(targets[0, 2:].numpy(), expect, atol=1e-5)
    assert targets[:, 1].tolist() == [0, 1, 2]
    assert ignore.shape == (1, 5)
    np.testing.assert_allclose(ignore[0, 1:].numpy() * S, [100 * scale, 5 * 38 / 120 + pad_y,
                                                            140 * scale, 35 * 38 / 120 + pad_y], atol=1e-4)
    # the image is RGB: the class-0 (BGR red) rectangle is red in channel 0
    cx, cy = int(expect[0] * S), int(expect[1] * S)
    assert img[0, cy, cx] > 0.9 and img[2, cy, cx] < 0.1


@pytest.mark.parametrize("mosaic", [False, True])
def test_augmented_boxes_stay_on_their_objects(samples, mosaic):
    S = 96
    ds = YoloDataset(samples, S, augment=True, hsv=(0, 0, 0), flip_lr=0.5, flip_ud=0.5, scale=0.4,
                     translate=0.2, mosaic=mosaic)
    torch.manual_seed(3)
    checked = 0
    for _ in range(12):
        for i in range(len(samples)):
            img_t, targets, _, _, ignore = ds[i]
            img = _to_bgr(img_t)
            allowed = np.zeros((S, S), bool)
            for x1, y1, x2, y2 in (ignore[:, 1:].numpy() * S):
                allowed[int(np.floor(y1)) : int(np.ceil(y2)), int(np.floor(x1)) : int(np.ceil(x2))] = True
            for cls in COLOURS:
                colour_px = _mask(img, COLOURS[cls])
                in_boxes = allowed.copy()
                for t in targets[targets[:, 1] == cls]:
                    cx, cy, w, h = (t[2:].numpy() * S).tolist()
                    x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
                    assert 0 <= x1 < x2 <= S and 0 <= y1 < y2 <= S
                    ix1, iy1 = int(np.ceil(x1)), int(np.ceil(y1))
                    ix2, iy2 = int(np.floor(x2)), int(np.floor(y2))
                    ox1, oy1 = int(np.floor(x1)), int(np.floor(y1))
                    ox2, oy2 = int(np.ceil(x2)), int(np.ceil(y2))
                    inner = colour_px[iy1:iy2, ix1:ix2]
                    if inner.size:  # the box is filled with its object's colour ...
                        assert inner.mean() > 0.8, (cls, inner.mean())
                    in_boxes[oy1 : oy2 + 1, ox1 : ox2 + 1] = True
                    checked += 1
                # ... and every pixel of that colour is inside one of its boxes (or an ignore region)
                stray = colour_px & ~in_boxes
                assert stray.sum() <= 2, (cls, int(stray.sum()))
    assert checked > 50


def test_augmentation_varies_and_is_seeded(samples):
    ds = YoloDataset(samples, 64, augment=True)
    torch.manual_seed(0)
    a = [ds[0][1] for _ in range(4)]
    torch.manual_seed(0)
    b = [ds[0][1] for _ in range(4)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(a[0], x) for x in a[1:])


def test_collate_sets_batch_index(samples):
    ds = YoloDataset(samples, 64)
    imgs, targets, paths, shapes, ignore = collate([ds[0], ds[1], ds[2]])
    assert imgs.shape == (3, 3, 64, 64)
    assert targets[:, 0].tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert ignore[:, 0].tolist() == [0]
    assert len(paths) == 3 and shapes[1] == (160, 120)


def test_unreadable_image_named_at_load(tmp_path):
    samples = _make(tmp_path / "x", [((64, 64), [(0, (5, 5, 10, 10))])])
    samples[0].image_path.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DatasetError, match="000.png"):
        YoloDataset(samples, 64)[0]
