"""Training/validation tensors from VisDrone samples: letterbox, augmentation, collate.

An item is ``(img, targets, path, (h0, w0), ignore)``:
- ``img``: float32 3×S×S, RGB in [0, 1] (what the network takes);
- ``targets``: float32 n×6 ``[0, cls, cx, cy, w, h]`` normalised to S (``collate`` fills column 0);
- ``ignore``: float32 m×5 ``[0, x1, y1, x2, y2]`` normalised to S — VisDrone's ignored regions, plus
  objects an augmentation cut down to a sliver (they are still partly visible, so the loss must not call
  them background either); the loss zeroes the objectness loss there.

Boxes go through exactly the same scale/translate/flip as the pixels (tested). Multi-scale training is the
trainer's job (it resizes whole batches).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from slimyolo_ros.darknet.input_size import check_img_size
from slimyolo_ros.data.visdrone import Sample, read_image
from slimyolo_ros.detect.letterbox import letterbox, letterbox_boxes

PAD_VALUE = 114  # grey padding, as the Darknet ports use


def _item_rng() -> np.random.Generator:
    # Drawn from torch's RNG: the DataLoader seeds torch per worker (base_seed + worker id) and the trainer
    # checkpoints torch's RNG state, so augmentation is reproducible and never repeats across workers.
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))


def augment_hsv(img: np.ndarray, rng: np.random.Generator, gains: tuple[float, float, float]) -> np.ndarray:
    """Random hue/saturation/value gains on a BGR uint8 image (in place through lookup tables)."""
    if not any(gains):
        return img
    r = rng.uniform(-1, 1, 3) * np.asarray(gains) + 1
    hue, sat, val = cv2.split(cv2.cvtColor(img, cv2.COLOR_BGR2HSV))
    x = np.arange(256, dtype=np.float32)
    lut_h = ((x * r[0]) % 180).astype(np.uint8)
    lut_s = np.clip(x * r[1], 0, 255).astype(np.uint8)
    lut_v = np.clip(x * r[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_h), cv2.LUT(sat, lut_s), cv2.LUT(val, lut_v)))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def _paste(canvas: np.ndarray, img: np.ndarray, x0: int, y0: int) -> tuple[int, int]:
    """Copy ``img`` onto ``canvas`` with its top-left at (x0, y0), cutting off what falls outside."""
    H, W = canvas.shape[:2]
    h, w = img.shape[:2]
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0:sy1, sx0:sx1] = img[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0]
    return x0, y0


def _clip_boxes(
    boxes: np.ndarray, classes: np.ndarray, ignore: np.ndarray, rect: tuple[float, float, float, float],
    min_size: float, min_visible: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clip to ``rect`` (x1, y1, x2, y2, the pixels that are shown). Boxes left smaller than ``min_size``
    px or with less than ``min_visible`` of their area shown become ignore regions (if anything is left of
    them) rather than background."""
    lo = np.array(rect[:2] * 2, np.float32)
    hi = np.array(rect[2:] * 2, np.float32)
    boxes = boxes.reshape(-1, 4)
    clipped = np.clip(boxes, lo, hi)
    area0 = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    wh = clipped[:, 2:] - clipped[:, :2]
    keep = (wh.min(axis=1) >= min_size) & (np.prod(wh, axis=1) >= min_visible * np.maximum(area0, 1e-6))
    remnants = clipped[~keep & (wh.min(axis=1) > 0)]
    ig = np.clip(ignore.reshape(-1, 4), lo, hi)
    ig = ig[((ig[:, 2:] - ig[:, :2]) > 0).all(axis=1)]
    return clipped[keep], classes[keep], np.concatenate([ig, remnants]).reshape(-1, 4)


class YoloDataset(torch.utils.data.Dataset):
    """``samples`` → letterboxed, optionally augmented network inputs with normalised targets.

    Augmentation (``augment=True``): random scale in ``[1 - scale, 1 + scale]`` of the letterbox size and a
    translation of up to ``translate`` × S (pixels and boxes together), left-right flip with probability
    ``flip_lr``, up-down flip with ``flip_ud`` (0 by default: VisDrone has oblique views; top-down synthetic
    scenes can use 0.5), HSV gains ``hsv``, and with probability ``mosaic`` (``True`` = 1) a 4-image mosaic.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        img_size: int,
        augment: bool = False,
        hsv: tuple[float, float, float] = (0.015, 0.7, 0.4),
        flip_lr: float = 0.5,
        flip_ud: float = 0.0,
        scale: float = 0.25,
        translate: float = 0.1,
        mosaic: bool | float = False,
        min_box: float = 2.0,
        min_visible: float = 0.25,
    ):
        check_img_size(img_size)
        if not 0 <= scale < 1:
            raise ValueError(f"scale jitter {scale} must be in [0, 1)")
        self.samples = list(samples)
        self.img_size = int(img_size)
        self.augment = augment
        self.hsv = tuple(hsv)
        self.flip_lr, self.flip_ud = float(flip_lr), float(flip_ud)
        self.scale, self.translate = float(scale), float(translate)
        self.mosaic = float(mosaic) if augment else 0.0
        self.min_box, self.min_visible = float(min_box), float(min_visible)

    def __len__(self) -> int:
        return len(self.samples)

    # -------------------------------------------------------------------------------------------- items
    def __getitem__(self, index: int):
        s = self.samples[index]
        S = self.img_size
        if not self.augment:
            img0 = read_image(s.image_path)
            img, ratio, pad = letterbox(img0, S, PAD_VALUE)
            boxes = letterbox_boxes(s.boxes, ratio, pad, img0.shape[:2]).reshape(-1, 4)
            ignore = letterbox_boxes(s.ignore, ratio, pad, img0.shape[:2]).reshape(-1, 4)
            classes = s.classes
            shape0 = img0.shape[:2]
        else:
            rng = _item_rng()
            if self.mosaic > 0 and rng.random() < self.mosaic:
                others = rng.integers(0, len(self.samples), 3).tolist()
                img, boxes, classes, ignore, shape0 = self._mosaic([index] + others, rng)
            else:
                img, boxes, classes, ignore, shape0 = self._jittered(s, rng)
            rect = (0, 0, S, S)
            boxes, classes, ignore = _clip_boxes(boxes, classes, ignore, rect, self.min_box, self.min_visible)
            if rng.random() < self.flip_lr:
                img = img[:, ::-1]
                boxes[:, [0, 2]] = S - boxes[:, [2, 0]]
                ignore[:, [0, 2]] = S - ignore[:, [2, 0]]
            if rng.random() < self.flip_ud:
                img = img[::-1]
                boxes[:, [1, 3]] = S - boxes[:, [3, 1]]
                ignore[:, [1, 3]] = S - ignore[:, [3, 1]]
            img = augment_hsv(np.ascontiguousarray(img), rng, self.hsv)
        return self._to_tensors(img, boxes, classes, ignore, str(s.image_path), shape0)

    def _to_tensors(self, img, boxes, classes, ignore, path, shape0):
        S = float(self.img_size)
        n = len(boxes)
        targets = np.zeros((n, 6), np.float32)
        if n:
            targets[:, 1] = classes
            targets[:, 2] = (boxes[:, 0] + boxes[:, 2]) / 2 / S
            targets[:, 3] = (boxes[:, 1] + boxes[:, 3]) / 2 / S
            targets[:, 4] = (boxes[:, 2] - boxes[:, 0]) / S
            targets[:, 5] = (boxes[:, 3] - boxes[:, 1]) / S
        ig = np.zeros((len(ignore), 5), np.float32)
        ig[:, 1:] = ignore / S
        chw = np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1))  # BGR HWC -> RGB CHW
        tensor = torch.from_numpy(chw).float().div_(255.0)
        return tensor, torch.from_numpy(targets), path, (int(shape0[0]), int(shape0[1])), torch.from_numpy(ig)

    def _jittered(self, s: Sample, rng: np.random.Generator):
        """Letterbox-size image scaled by a random factor, placed at a random offset on an S×S canvas."""
        S = self.img_size
        img0 = read_image(s.image_path)
        h0, w0 = img0.shape[:2]
        r = min(S / h0, S / w0) * rng.uniform(1 - self.scale, 1 + self.scale)
        nw, nh = max(1, int(round(w0 * r))), max(1, int(round(h0 * r)))
        img = cv2.resize(img0, (nw, nh), interpolation=cv2.INTER_LINEAR)
        x0 = int(round((S - nw) / 2 + rng.uniform(-self.translate, self.translate) * S))
        y0 = int(round((S - nh) / 2 + rng.uniform(-self.translate, self.translate) * S))
        canvas = np.full((S, S, 3), PAD_VALUE, np.uint8)
        _paste(canvas, img, x0, y0)
        sx, sy = nw / w0, nh / h0  # exact per-axis factors after rounding the size
        return (canvas, _affine(s.boxes, sx, sy, x0, y0), s.classes.copy(), _affine(s.ignore, sx, sy, x0, y0),
                (h0, w0))

    def _mosaic(self, indices: list[int], rng: np.random.Generator):
        """Four images around a random centre on a 2S canvas; the S×S window around the centre is kept."""
        S = self.img_size
        xc, yc = (int(v) for v in rng.uniform(0.5 * S, 1.5 * S, 2))
        wx, wy = xc - S // 2, yc - S // 2  # the window that is kept
        canvas = np.full((2 * S, 2 * S, 3), PAD_VALUE, np.uint8)
        all_boxes, all_cls, all_ign = [], [], []
        shape0 = (0, 0)
        for k, idx in enumerate(indices):
            s = self.samples[idx]
            img0 = read_image(s.image_path)
            h0, w0 = img0.shape[:2]
            if k == 0:
                shape0 = (h0, w0)
            r = min(S / h0, S / w0) * rng.uniform(1 - self.scale, 1 + self.scale)
            nw, nh = max(1, int(round(w0 * r))), max(1, int(round(h0 * r)))
            img = cv2.resize(img0, (nw, nh), interpolation=cv2.INTER_LINEAR)
            # tiles 0..3 = top-left, top-right, bottom-left, bottom-right of the centre, each touching it
            qx0, qx1 = (0, xc) if k in (0, 2) else (xc, 2 * S)
            qy0, qy1 = (0, yc) if k in (0, 1) else (yc, 2 * S)
            x0 = xc - nw if k in (0, 2) else xc
            y0 = yc - nh if k in (0, 1) else yc
            _paste(canvas[qy0:qy1, qx0:qx1], img, x0 - qx0, y0 - qy0)
            shown = (max(qx0, wx), max(qy0, wy), min(qx1, wx + S), min(qy1, wy + S))
            sx, sy = nw / w0, nh / h0
            b, c, ig = _clip_boxes(_affine(s.boxes, sx, sy, x0, y0), s.classes,
                                   _affine(s.ignore, sx, sy, x0, y0), shown, self.min_box, self.min_visible)
            all_boxes.append(b)
            all_cls.append(c)
            all_ign.append(ig)
        shift = np.array([wx, wy, wx, wy], np.float32)
        img = canvas[wy : wy + S, wx : wx + S]
        return (img, np.concatenate(all_boxes) - shift, np.concatenate(all_cls),
                np.concatenate(all_ign) - shift, shape0)


def _affine(boxes: np.ndarray, sx: float, sy: float, tx: float, ty: float) -> np.ndarray:
    out = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    out[:, [0, 2]] = out[:, [0, 2]] * sx + tx
    out[:, [1, 3]] = out[:, [1, 3]] * sy + ty
    return out


def collate(batch):
    """Stack images; concatenate targets and ignore regions with column 0 set to the image's batch index."""
    imgs, targets, paths, shapes, ignores = zip(*batch, strict=True)
    for i, (t, g) in enumerate(zip(targets, ignores, strict=True)):
        t[:, 0] = i
        g[:, 0] = i
    return torch.stack(imgs, 0), torch.cat(targets, 0), paths, shapes, torch.cat(ignores, 0)
