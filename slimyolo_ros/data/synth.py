"""Synthetic top-down UAV scenes written in the VisDrone-DET format.

No VisDrone here, so this is what tests, the demo and the CPU benchmarks train on. Each scene: grass/field
ground, axis-aligned roads with lane markings and sidewalks, roof blocks with shadows, then many small
objects of the 10 VisDrone classes, trees partly covering some of them, sometimes a crowded car park or
crowd marked as an ignored region (category 0) whose clutter is left unannotated, then global lighting
gradients, blur, sensor noise and JPEG compression.

Every class has its own shape, colour and size (relative to a car's length, the scene's scale unit) so a
tiny model can learn them: pedestrian = dark body with a light head, people = a pair of colourful figures,
bicycle = thin frame between two wheels, car = rounded box with windows, van = bigger light box, truck = cab +
long cargo box, tricycle = small open box with a front wheel, awning-tricycle = the same with a striped
awning, bus = long yellow/red box with roof units, motor = short dark body with a helmeted rider.

Deterministic: image ``i`` of seed ``s`` is drawn from ``np.random.default_rng([s, i])`` only, so the same
seed gives byte-identical files whatever ``n_images`` is.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from slimyolo_ros.data.visdrone import VISDRONE_CLASSES, format_annotation
from slimyolo_ros.errors import DatasetError
from slimyolo_ros.io_utils import atomic_write_bytes, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

SS = 4  # sprites are drawn SS× larger, then area-downsampled: antialiased edges without LINE_AA guesswork

# Per class (index = VisDrone category - 1): length relative to the scene's car length, width relative to
# its own length, and how often it appears (roughly VisDrone's skew — cars, pedestrians and motors dominate —
# flattened so that the rare classes still get enough examples in a few hundred images).
CLASS_LENGTH = np.array([0.36, 0.62, 0.55, 1.0, 1.3, 2.0, 0.68, 0.72, 2.6, 0.52])
CLASS_WIDTH = np.array([1.0, 0.55, 0.24, 0.48, 0.48, 0.32, 0.6, 0.6, 0.3, 0.36])
CLASS_WEIGHT = np.array([0.14, 0.09, 0.08, 0.2, 0.1, 0.07, 0.07, 0.06, 0.06, 0.13])
VEHICLES = (2, 3, 4, 5, 6, 7, 8, 9)  # go on roads (mostly)

CAR_COLOURS = [(235, 235, 235), (190, 192, 195), (35, 35, 40), (40, 40, 170), (150, 70, 30),
               (110, 110, 115), (60, 90, 60), (200, 200, 210)]  # BGR
ROOF_COLOURS = [(60, 80, 160), (120, 120, 125), (85, 85, 90), (130, 110, 95), (70, 100, 140)]


@dataclass
class SynthConfig:
    size: tuple[int, int] = (640, 640)  # width, height
    objects: tuple[int, int] = (15, 40)  # annotated objects per image, inclusive range
    min_size: float | None = None  # car length in px; None: 4 % of the short image side (>= 4 px)
    max_size: float | None = None  # None: 9 % of the short image side
    ignore_prob: float = 0.35  # chance of a car park / crowd ignored region per image
    trees: bool = True  # tree crowns over the scene: the occlusion examples
    jpeg_quality: int = 92

    def car_length_range(self) -> tuple[float, float]:
        short = min(self.size)
        lo = self.min_size if self.min_size is not None else max(4.0, 0.04 * short)
        hi = self.max_size if self.max_size is not None else max(lo, 0.09 * short)
        return float(lo), float(hi)

    def check(self) -> None:
        w, h = self.size
        if w < 64 or h < 64:
            raise DatasetError(f"synth: image size {w}x{h} is too small (at least 64x64)")
        lo, hi = self.objects
        if lo < 0 or hi < lo:
            raise DatasetError(f"synth: objects range {lo}-{hi} is invalid (need 0 <= MIN <= MAX)")
        a, b = self.car_length_range()
        if not 4 <= a <= b:
            raise DatasetError(f"synth: object size range {a:g}-{b:g} px is invalid (need 4 <= MIN <= MAX)")
        if b > 0.5 * min(w, h):
            raise DatasetError(f"synth: max object size {b:g} px is too large for a {w}x{h} image")
        if not 0.0 <= self.ignore_prob <= 1.0:
            raise DatasetError(f"synth: ignore probability {self.ignore_prob} is not in [0, 1]")


# --------------------------------------------------------------------------------------------- sprites
class _Sprite:
    """Draws one object in its own frame (x along its length, facing +x; y across), in final pixels."""

    def __init__(self, length: float, width: float):
        self.length, self.width = length, width
        m = 2.0
        self.w = int(math.ceil(length + 2 * m)) * SS
        self.h = int(math.ceil(width + 2 * m)) * SS
        self.cx, self.cy = self.w / 2, self.h / 2
        self.bgr = np.zeros((self.h, self.w, 3), np.uint8)
        self.alpha = np.zeros((self.h, self.w), np.uint8)

    def _p(self, x: float, y: float) -> tuple[int, int]:
        return int(round(self.cx + x * SS)), int(round(self.cy + y * SS))

    def rect(self, x: float, y: float, lx: float, ly: float, colour, radius: float = 0.0) -> None:
        """Filled rectangle centred at (x, y) with size lx × ly, optionally with rounded corners."""
        r = min(radius, lx / 2, ly / 2)
        for img, c in ((self.bgr, colour), (self.alpha, 255)):
            if r * SS < 1:
                cv2.rectangle(img, self._p(x - lx / 2, y - ly / 2), self._p(x + lx / 2, y + ly / 2), c, -1)
                continue
            hx, hy = lx / 2, ly / 2
            cv2.rectangle(img, self._p(x - hx + r, y - hy), self._p(x + hx - r, y + hy), c, -1)
            cv2.rectangle(img, self._p(x - hx, y - hy + r), self._p(x + hx, y + hy - r), c, -1)
            for sx in (-1, 1):
                for sy in (-1, 1):
                    cv2.circle(img, self._p(x + sx * (lx / 2 - r), y + sy * (ly / 2 - r)), int(r * SS), c, -1)

    def ellipse(self, x: float, y: float, rx: float, ry: float, colour) -> None:
        axes = (max(1, int(rx * SS)), max(1, int(ry * SS)))
        cv2.ellipse(self.bgr, self._p(x, y), axes, 0, 0, 360, colour, -1)
        cv2.ellipse(self.alpha, self._p(x, y), axes, 0, 0, 360, 255, -1)

    def line(self, x1: float, y1: float, x2: float, y2: float, colour, thickness: float) -> None:
        t = max(1, int(thickness * SS))
        cv2.line(self.bgr, self._p(x1, y1), self._p(x2, y2), colour, t)
        cv2.line(self.alpha, self._p(x1, y1), self._p(x2, y2), 255, t)

    def finish(self) -> np.ndarray:
        """BGRA float32 patch in final pixels, alpha in [0, 1]."""
        size = (self.w // SS, self.h // SS)
        bgr = cv2.resize(self.bgr, size, interpolation=cv2.INTER_AREA).astype(np.float32)
        a = cv2.resize(self.alpha, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        return np.dstack([bgr, a])


def _jitter(rng: np.random.Generator, colour, amount: float = 12.0) -> tuple[int, ...]:
    c = np.asarray(colour, np.float64) + rng.normal(0, amount, 3)
    return tuple(int(v) for v in np.clip(c, 0, 255))


def _draw_person(s: _Sprite, rng, x: float, y: float, r: float, body, head) -> None:
    s.ellipse(x, y, r * 0.75, r, body)  # shoulders, wider across
    s.ellipse(x, y, r * 0.5, r * 0.5, head)


def render_object(cls: int, length: float, rng: np.random.Generator) -> np.ndarray:
    """The BGRA patch of one object of class ``cls`` with its long axis horizontal."""
    w = length * CLASS_WIDTH[cls]
    s = _Sprite(length, w)
    L, W = length, w
    if cls == 0:  # pedestrian: dark clothes, light head
        _draw_person(s, rng, 0, 0, W / 2, _jitter(rng, (40, 35, 30), 10), _jitter(rng, (170, 195, 225), 10))
    elif cls == 1:  # people: two colourful figures side by side, dark hair
        for x in (-L / 4, L / 4):
            body = _jitter(rng, [(40, 40, 200), (200, 90, 30), (40, 170, 60)][rng.integers(3)], 20)
            _draw_person(s, rng, x, 0, min(W / 2, L / 4), body, _jitter(rng, (25, 25, 30), 6))
    elif cls == 2:  # bicycle: thin bright frame, two dark wheels, handlebar
        frame = _jitter(rng, (200, 200, 90), 20)
        s.line(-L * 0.35, 0, L * 0.35, 0, frame, max(W * 0.35, 0.8))
        for x in (-L * 0.36, L * 0.36):
            s.rect(x, 0, L * 0.26, W * 0.55, (25, 25, 25), radius=W * 0.2)
        s.line(L * 0.25, -W / 2, L * 0.25, W / 2, frame, max(W * 0.25, 0.6))
    elif cls == 3:  # car: rounded body, dark windscreen and rear window, lighter roof
        body = _jitter(rng, CAR_COLOURS[rng.integers(len(CAR_COLOURS))], 10)
        s.rect(0, 0, L, W, body, radius=W * 0.3)
        s.rect(L * 0.17, 0, L * 0.14, W * 0.8, (30, 30, 35))
        s.rect(-L * 0.27, 0, L * 0.1, W * 0.76, (45, 45, 50))
        s.rect(-L * 0.05, 0, L * 0.3, W * 0.72, tuple(min(255, c + 18) for c in body))
    elif cls == 4:  # van: bigger light box, short bonnet, ribbed roof
        body = _jitter(rng, [(230, 230, 230), (210, 200, 180), (200, 215, 225)][rng.integers(3)], 8)
        s.rect(0, 0, L, W, body, radius=W * 0.12)
        s.rect(L * 0.36, 0, L * 0.08, W * 0.84, (35, 35, 40))
        for x in (-0.25, -0.05, 0.15):
            s.line(L * x, -W * 0.38, L * x, W * 0.38, tuple(c - 40 for c in body), max(W * 0.06, 0.5))
    elif cls == 5:  # truck: coloured cab, dark gap, long ribbed cargo box
        cab = _jitter(rng, [(40, 40, 190), (170, 80, 30), (40, 140, 40), (30, 120, 220)][rng.integers(4)], 15)
        cargo = _jitter(rng, [(150, 150, 150), (70, 110, 140), (120, 90, 50)][rng.integers(3)], 12)
        s.rect(L * 0.4, 0, L * 0.18, W * 0.9, cab, radius=W * 0.1)
        s.rect(-L * 0.1, 0, L * 0.78, W, cargo)
        for i in range(5):
            x = -L * 0.45 + i * L * 0.17
            s.line(x, -W * 0.45, x, W * 0.45, tuple(c - 35 for c in cargo), max(W * 0.05, 0.5))
    elif cls in (6, 7):  # tricycle / awning-tricycle: front wheel + fork, box behind
        s.rect(L * 0.38, 0, L * 0.16, W * 0.22, (25, 25, 25))
        s.line(L * 0.15, 0, L * 0.38, 0, (60, 60, 60), max(W * 0.12, 0.6))
        if cls == 6:  # open metal box, rider's head in front of it
            box = _jitter(rng, [(150, 120, 40), (60, 140, 60)][rng.integers(2)], 15)
            s.rect(-L * 0.15, 0, L * 0.62, W, box)
            s.rect(-L * 0.15, 0, L * 0.46, W * 0.7, tuple(c - 45 for c in box))
            s.ellipse(L * 0.2, 0, W * 0.17, W * 0.17, (20, 20, 25))
        else:  # striped awning across the box
            stripe = [(40, 40, 210), (190, 110, 30)][rng.integers(2)]
            s.rect(-L * 0.12, 0, L * 0.68, W, (235, 235, 235))
            n = 4
            for i in range(n):
                x = -L * 0.12 - L * 0.34 + (i + 0.5) * L * 0.68 / n
                s.rect(x, 0, L * 0.68 / (2 * n), W, _jitter(rng, stripe, 8))
    elif cls == 8:  # bus: long yellow or red box, dark windscreen, pale roof units
        body = _jitter(rng, [(20, 200, 235), (35, 35, 200)][rng.integers(2)], 10)
        s.rect(0, 0, L, W, body, radius=W * 0.1)
        s.rect(L * 0.46, 0, L * 0.05, W * 0.85, (30, 30, 35))
        for x in (-0.25, 0.1):
            s.rect(L * x, 0, L * 0.16, W * 0.55, (200, 200, 200))
    elif cls == 9:  # motor: short dark body, bright helmet on the rider
        s.rect(0, 0, L, W * 0.55, _jitter(rng, (30, 30, 45), 8), radius=W * 0.2)
        s.ellipse(-L * 0.05, 0, W * 0.45, W * 0.5, _jitter(rng, (60, 60, 70), 8))
        s.ellipse(-L * 0.05, 0, W * 0.3, W * 0.3, _jitter(rng, [(30, 200, 230), (230, 230, 230),
                                                                  (40, 40, 220)][rng.integers(3)], 10))
    else:
        raise ValueError(f"class index {cls} out of range 0..9")
    return s.finish()


def rotate_patch(patch: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotate a BGRA patch about its centre onto a canvas that holds all of it."""
    h, w = patch.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle_deg, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(math.ceil(w * cos + h * sin)) + 2, int(math.ceil(w * sin + h * cos)) + 2
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    return cv2.warpAffine(patch, m, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0, 0))


# ------------------------------------------------------------------------------------------------ scene
@dataclass
class _Placed:
    x0: int  # top-left of the (unclipped) patch in the scene
    y0: int
    alpha: np.ndarray  # patch alpha
    cls: int
    box: np.ndarray  # x1, y1, x2, y2 clipped to the image
    truncated: bool


def _overlap(a: np.ndarray, boxes: list[np.ndarray]) -> float:
    """Largest fraction of ``a``'s area covered by any of ``boxes``."""
    if not boxes:
        return 0.0
    b = np.asarray(boxes)
    iw = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    area = max((a[2] - a[0]) * (a[3] - a[1]), 1e-6)
    return float((iw * ih).max() / area)


def _alpha_box(alpha: np.ndarray, thresh: float = 0.35) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(alpha > thresh)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _window(scene: np.ndarray, patch: np.ndarray, x0: int, y0: int):
    """(scene, patch) window slices of a patch placed at (x0, y0), cut to the scene; None if outside."""
    H, W = scene.shape[:2]
    h, w = patch.shape[:2]
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + w, W), min(y0 + h, H)
    if sx1 <= sx0 or sy1 <= sy0:
        return None
    return (slice(sy0, sy1), slice(sx0, sx1)), (slice(sy0 - y0, sy1 - y0), slice(sx0 - x0, sx1 - x0))


def _blend(scene: np.ndarray, patch: np.ndarray, x0: int, y0: int, alpha_scale: float = 1.0) -> None:
    """Alpha-composite a BGRA patch at (x0, y0); parts outside the scene are cut off."""
    win = _window(scene, patch, x0, y0)
    if win is None:
        return
    p = patch[win[1]]
    a = p[..., 3:4] * alpha_scale
    region = scene[win[0]]
    region *= 1.0 - a
    region += a * p[..., :3]


def _darken(scene: np.ndarray, alpha: np.ndarray, x0: int, y0: int, strength: float) -> None:
    win = _window(scene, alpha, x0, y0)
    if win is None:
        return
    a = alpha[win[1]][..., None]
    scene[win[0]] *= 1.0 - strength * a


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int, channels: int = 1) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: random values on a coarse grid, cubic-upsampled."""
    gh, gw = h // cell + 3, w // cell + 3
    small = rng.normal(0, 0.5, (gh, gw, channels)).astype(np.float32)
    big = cv2.resize(small, (gw * cell, gh * cell), interpolation=cv2.INTER_CUBIC)
    big = big.reshape(gh * cell, gw * cell, channels)
    oy, ox = rng.integers(0, cell, 2)
    return big[oy : oy + h, ox : ox + w]


class _Window:
    """The part of a w×h patch placed at (x0, y0) that lies inside a W×H image."""

    def __init__(self, x0: int, y0: int, w: int, h: int, W: int, H: int):
        self.x0, self.y0 = x0, y0
        self.sx0, self.sy0 = max(x0, 0), max(y0, 0)
        self.sx1, self.sy1 = min(x0 + w, W), min(y0 + h, H)
        self.empty = self.sx1 <= self.sx0 or self.sy1 <= self.sy0

    def of(self, img: np.ndarray) -> np.ndarray:
        return img[self.sy0 : self.sy1, self.sx0 : self.sx1]

    def patch(self, p: np.ndarray) -> np.ndarray:
        return p[self.sy0 - self.y0 : self.sy1 - self.y0, self.sx0 - self.x0 : self.sx1 - self.x0]

    def intersects(self, box: np.ndarray) -> bool:
        return box[0] < self.sx1 and box[2] > self.sx0 and box[1] < self.sy1 and box[3] > self.sy0


class _Scene:
    def __init__(self, cfg: SynthConfig, rng: np.random.Generator):
        self.cfg, self.rng = cfg, rng
        self.W, self.H = cfg.size
        lo, hi = cfg.car_length_range()
        self.unit = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))  # car length in px
        self.img = np.zeros((self.H, self.W, 3), np.float32)
        self.roads: list[dict] = []
        self.blocked: list[np.ndarray] = []  # buildings and ignored regions: no objects there
        self.ignore: list[np.ndarray] = []
        self.objects: list[_Placed] = []
        ang = rng.uniform(0, 2 * math.pi)
        self.shadow = (math.cos(ang) * 0.12 * self.unit, math.sin(ang) * 0.12 * self.unit)

    # ground --------------------------------------------------------------------------------------
    def ground(self) -> None:
        rng, H, W = self.rng, self.H, self.W
        base = np.array(_jitter(rng, [(60, 125, 80), (70, 115, 95), (55, 100, 110)][rng.integers(3)], 8),
                        np.float32)
        self.img[:] = base
        self.img += _smooth_noise(rng, H, W, max(8, int(self.unit)), 3) * 14
        self.img += _smooth_noise(rng, H, W, max(16, int(self.unit * 4)), 1) * 18
        for _ in range(rng.integers(0, 4)):  # fields: rotated patches of crop rows
            crop = [(70, 140, 150), (50, 110, 60), (90, 130, 120)][rng.integers(3)]
            colour = np.array(_jitter(rng, crop, 10), np.float32)
            c = (float(rng.uniform(0, W)), float(rng.uniform(0, H)))
            size = (float(rng.uniform(0.2, 0.6) * W), float(rng.uniform(0.2, 0.6) * H))
            pts = cv2.boxPoints((c, size, float(rng.uniform(0, 90)))).astype(np.int32)
            step = max(3, int(self.unit * rng.uniform(0.15, 0.35)))
            diagonal = int(rng.integers(2))
            x0, y0 = np.clip(pts.min(0), 0, [W, H])
            x1, y1 = np.clip(pts.max(0) + 1, 0, [W, H])
            if x1 <= x0 or y1 <= y0:
                continue
            mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
            cv2.fillPoly(mask, [pts - [x0, y0]], 1)
            rows = ((np.arange(y0, y1)[:, None] + np.arange(x0, x1)[None, :] * diagonal) // step) % 2
            m = mask.astype(bool)
            self.img[y0:y1, x0:x1][m] = colour + (rows[m, None] * 10 - 5)

    def roads_and_buildings(self) -> None:
        rng, u = self.rng, self.unit
        for _ in range(rng.integers(1, 4)):
            horizontal = bool(rng.integers(2))
            lanes = int(rng.integers(2, 5))
            lane_w = 0.85 * u
            width = lanes * lane_w
            span = self.H if horizontal else self.W
            # away from the borders when there is room; objects large for the image get a centred band
            if span >= 2 * width:
                c = float(rng.uniform(width, span - width))
            else:
                c = float(rng.uniform(0.4, 0.6) * span)
            walk = 0.45 * u
            lo, hi = c - width / 2, c + width / 2
            grey = float(rng.uniform(70, 110))
            if horizontal:
                self._fill_rect(0, lo - walk, self.W, hi + walk, (175, 175, 170))
                self._fill_rect(0, lo, self.W, hi, (grey, grey, grey + 3))
            else:
                self._fill_rect(lo - walk, 0, hi + walk, self.H, (175, 175, 170))
                self._fill_rect(lo, 0, hi, self.H, (grey, grey, grey + 3))
            self._markings(horizontal, lo, hi, lanes, lane_w)
            centres = [lo + (i + 0.5) * lane_w for i in range(lanes)]
            self.roads.append({"horizontal": horizontal, "lanes": centres, "lo": lo, "hi": hi,
                               "walk": (lo - walk / 2, hi + walk / 2)})
        for _ in range(rng.integers(1, 6)):
            for _try in range(10):
                bw, bh = rng.uniform(1.5, 4.0, 2) * u
                x0, y0 = rng.uniform(-0.5 * bw, self.W - 0.5 * bw), rng.uniform(-0.5 * bh, self.H - 0.5 * bh)
                box = np.array([x0, y0, x0 + bw, y0 + bh])
                pad = np.array([-0.3, -0.3, 0.3, 0.3]) * u
                if any(self._road_hits(box + pad)):
                    continue
                self._building(box)
                break

    def _road_hits(self, box: np.ndarray):
        for r in self.roads:
            lo, hi = r["lo"] - 0.5 * self.unit, r["hi"] + 0.5 * self.unit
            a, b = (box[1], box[3]) if r["horizontal"] else (box[0], box[2])
            yield b > lo and a < hi

    def _fill_rect(self, x0, y0, x1, y1, colour) -> None:
        x0, y0 = max(int(round(x0)), 0), max(int(round(y0)), 0)
        x1, y1 = min(int(round(x1)), self.W), min(int(round(y1)), self.H)
        if x1 > x0 and y1 > y0:
            region = self.img[y0:y1, x0:x1]
            texture = self.rng.standard_normal(region.shape[:2] + (1,), dtype=np.float32) * 4
            region[:] = np.asarray(colour, np.float32) + texture

    def _markings(self, horizontal: bool, lo: float, hi: float, lanes: int, lane_w: float) -> None:
        u, white = self.unit, (225, 225, 225)
        t = max(1, int(round(0.06 * u)))
        length = self.W if horizontal else self.H
        for edge in (lo + 0.1 * u, hi - 0.1 * u):
            self._line_along(horizontal, edge, 0, length, white, t)
        dash, gap = 0.8 * u, 0.8 * u
        for i in range(1, lanes):
            pos = lo + i * lane_w
            start = -self.rng.uniform(0, dash + gap)
            while start < length:
                self._line_along(horizontal, pos, start, start + dash, white, t)
                start += dash + gap

    def _line_along(self, horizontal: bool, pos: float, a: float, b: float, colour, t: int) -> None:
        p = int(round(pos))
        if horizontal:
            cv2.line(self.img, (int(a), p), (int(b), p), colour, t)
        else:
            cv2.line(self.img, (p, int(a)), (p, int(b)), colour, t)

    def _building(self, box: np.ndarray) -> None:
        x0, y0, x1, y1 = box
        sx, sy = self.shadow
        k = 2.5  # buildings are taller than cars: longer shadows
        win = _Window(int(x0 + k * sx), int(y0 + k * sy), int(x1 - x0), int(y1 - y0), self.W, self.H)
        if not win.empty:
            win.of(self.img)[:] *= 0.55
        roof = np.array(_jitter(self.rng, ROOF_COLOURS[self.rng.integers(len(ROOF_COLOURS))], 10), np.float32)
        along_x = (x1 - x0) >= (y1 - y0)
        if along_x:  # gabled roof: two halves of different brightness split along the ridge
            ym = (y0 + y1) / 2
            self._fill_rect(x0, y0, x1, ym, roof * 1.1)
            self._fill_rect(x0, ym, x1, y1, roof * 0.85)
        else:
            xm = (x0 + x1) / 2
            self._fill_rect(x0, y0, xm, y1, roof * 1.1)
            self._fill_rect(xm, y0, x1, y1, roof * 0.85)
        self.blocked.append(box.astype(np.float64))

    # objects -------------------------------------------------------------------------------------
    def _try_place(self, cls: int, cx: float, cy: float, angle: float, scale: float = 1.0,
                   annotate: bool = True, max_overlap: float = 0.1) -> bool:
        rng = self.rng
        length = self.unit * CLASS_LENGTH[cls] * scale * rng.uniform(0.88, 1.12)
        patch = rotate_patch(render_object(cls, length, rng), angle)
        h, w = patch.shape[:2]
        x0, y0 = int(round(cx - w / 2)), int(round(cy - h / 2))
        box = _alpha_box(patch[..., 3])
        if box is None:
            return False
        full = np.array([box[0] + x0, box[1] + y0, box[2] + x0, box[3] + y0], np.float64)
        clipped = np.clip(full, 0, [self.W, self.H, self.W, self.H])
        if clipped[2] - clipped[0] < 2 or clipped[3] - clipped[1] < 2:
            return False
        truncated = False
        if annotate:
            a = patch[..., 3]
            total = float(a.sum())
            ys, xs = np.mgrid[0:h, 0:w]
            inside = (xs + x0 >= 0) & (xs + x0 < self.W) & (ys + y0 >= 0) & (ys + y0 < self.H)
            outside = 1.0 - float(a[inside].sum()) / max(total, 1e-6)
            if outside > 0.5:  # VisDrone only annotates truncation up to 50 %
                return False
            truncated = outside > 0.01
            if _overlap(clipped, self.blocked) > 0.0:
                return False
            if _overlap(clipped, [o.box for o in self.objects]) > max_overlap:
                return False
            if any(_overlap(o.box, [clipped]) > max_overlap for o in self.objects):
                return False
        sx, sy = int(round(self.shadow[0])), int(round(self.shadow[1]))
        _darken(self.img, patch[..., 3], x0 + sx, y0 + sy, 0.35)
        _blend(self.img, patch, x0, y0)
        if annotate:
            self.objects.append(_Placed(x0, y0, patch[..., 3], cls, clipped, truncated))
        return True

    def ignored_region(self) -> None:
        """A crowded car park or crowd whose clutter is not annotated: VisDrone's category 0."""
        rng, u = self.rng, self.unit
        car_park = bool(rng.random() < 0.6)
        if car_park:
            rw, rh = rng.uniform(2.5, 5.0) * u, rng.uniform(2.0, 4.0) * u
        else:
            rw, rh = rng.uniform(1.5, 3.0, 2) * u
        rw, rh = min(rw, 0.6 * self.W), min(rh, 0.6 * self.H)  # objects large for the image
        for _try in range(10):
            x0, y0 = rng.uniform(0, self.W - rw), rng.uniform(0, self.H - rh)
            box = np.array([x0, y0, x0 + rw, y0 + rh])
            if not any(self._road_hits(box)) and _overlap(box, self.blocked) == 0.0:
                break
        else:
            return
        outside = self.img.copy()  # clutter (and its shadows) must not spill out of the declared region
        if car_park:
            self._fill_rect(x0, y0, x0 + rw, y0 + rh, (95, 95, 98))
            step_y = 0.6 * u
            y = y0 + step_y / 2
            while y < y0 + rh - step_y / 4:
                x = x0 + 0.55 * u
                while x < x0 + rw - 0.4 * u:
                    if rng.random() < 0.85:
                        cls = int(rng.choice([3, 3, 3, 4, 9]))
                        self._try_place(cls, x + rng.normal(0, 0.05 * u), y, 180.0 * rng.integers(2)
                                        + rng.normal(0, 3), scale=0.8, annotate=False)
                    x += 1.05 * u
                y += step_y
        else:
            for _ in range(int(rw * rh / (0.2 * u) ** 2 * 0.5)):
                m = 0.2 * u  # keep the clutter inside the region it is declared in
                self._try_place(int(rng.choice([0, 1])), rng.uniform(x0 + m, x0 + rw - m),
                                rng.uniform(y0 + m, y0 + rh - m), rng.uniform(0, 360), annotate=False)
        xa, ya = max(int(math.floor(x0)), 0), max(int(math.floor(y0)), 0)
        xb, yb = min(int(math.ceil(x0 + rw)), self.W), min(int(math.ceil(y0 + rh)), self.H)
        outside[ya:yb, xa:xb] = self.img[ya:yb, xa:xb]
        self.img = outside
        self.ignore.append(np.array([xa, ya, xb, yb], np.float64))
        self.blocked.append(box)

    def objects_pass(self) -> None:
        rng = self.rng
        lo, hi = self.cfg.objects
        target = int(rng.integers(lo, hi + 1))
        weights = CLASS_WEIGHT / CLASS_WEIGHT.sum()
        attempts = 0
        while len(self.objects) < target and attempts < 8 * target + 20:
            attempts += 1
            cls = int(rng.choice(10, p=weights))
            small_angle = float(rng.normal(0, 4))
            if cls in VEHICLES and self.roads and rng.random() < 0.75:
                road = self.roads[rng.integers(len(self.roads))]
                li = int(rng.integers(len(road["lanes"])))
                lane = road["lanes"][li] + rng.normal(0, 0.05 * self.unit)
                forward = li >= len(road["lanes"]) / 2
                along = rng.uniform(0, self.W if road["horizontal"] else self.H)
                if road["horizontal"]:
                    cx, cy, base = along, lane, 0.0 if forward else 180.0
                else:
                    cx, cy, base = lane, along, 90.0 if forward else 270.0
            elif cls in (0, 1) and self.roads and rng.random() < 0.5:  # on a sidewalk
                road = self.roads[rng.integers(len(self.roads))]
                side = road["walk"][rng.integers(2)]
                along = rng.uniform(0, self.W if road["horizontal"] else self.H)
                cx, cy = (along, side) if road["horizontal"] else (side, along)
                base = 90.0 * rng.integers(4)
            else:
                cx, cy = rng.uniform(0, self.W), rng.uniform(0, self.H)
                base = 90.0 * rng.integers(4)
            self._try_place(cls, cx, cy, base + small_angle)

    def trees(self) -> None:
        """Tree crowns drawn over everything, covering at most ~60 % of any annotated object."""
        rng, u = self.rng, self.unit
        self.cover = np.zeros((self.H, self.W), np.float32)
        for _ in range(rng.integers(2, 10)):
            for _try in range(6):
                r = rng.uniform(0.3, 0.8) * u
                cx, cy = rng.uniform(0, self.W), rng.uniform(0, self.H)
                if rng.random() < 0.5 and self.objects:  # aim some crowns at objects: occlusion examples
                    o = self.objects[rng.integers(len(self.objects))]
                    cx = (o.box[0] + o.box[2]) / 2 + rng.normal(0, r)
                    cy = (o.box[1] + o.box[3]) / 2 + rng.normal(0, r)
                blobs = [(cx + rng.normal(0, r * 0.4), cy + rng.normal(0, r * 0.4), r * rng.uniform(0.5, 0.9))
                         for _ in range(rng.integers(3, 6))]
                # Everything below works in the crown's own window (plus its shadow), not the whole image.
                m = int(2 * r + 3 * max(abs(self.shadow[0]), abs(self.shadow[1])) + 4)
                x0, y0 = int(cx) - m, int(cy) - m
                crown = np.zeros((2 * m, 2 * m), np.float32)
                for bx, by, br in blobs:
                    cv2.circle(crown, (int(bx) - x0, int(by) - y0), max(1, int(br)), 1.0, -1,
                               lineType=cv2.LINE_AA)
                window = _Window(x0, y0, 2 * m, 2 * m, self.W, self.H)
                if window.empty:
                    continue
                trial = np.maximum(window.of(self.cover), window.patch(crown))
                touched = [o for o in self.objects if window.intersects(o.box)]
                before = [self._occlusion(o, self.cover) for o in touched]
                saved = window.of(self.cover).copy()
                window.of(self.cover)[:] = trial
                after = [self._occlusion(o, self.cover) for o in touched]
                if all(a <= max(0.6, b) for a, b in zip(after, before, strict=True)):
                    self._paint_tree(crown, blobs, x0, y0)
                    break
                window.of(self.cover)[:] = saved

    def _paint_tree(self, crown: np.ndarray, blobs, x0: int, y0: int) -> None:
        rng = self.rng
        _darken(self.img, crown, x0 + int(self.shadow[0] * 3), y0 + int(self.shadow[1] * 3), 0.4)
        green = np.array(_jitter(rng, (40, 85, 45), 8), np.float32)
        texture = np.zeros_like(crown)
        for bx, by, br in blobs:  # a lit side per blob gives crowns their lumpy look
            centre = (int(bx - br * 0.25) - x0, int(by - br * 0.25) - y0)
            cv2.circle(texture, centre, max(1, int(br * 0.5)), 1.0, -1)
        colour = green[None, None, :] * (1.0 + 0.35 * texture[..., None])
        _blend(self.img, np.dstack([colour, crown]), x0, y0)

    def _occlusion(self, o: _Placed, cover: np.ndarray) -> float:
        h, w = o.alpha.shape
        sx0, sy0 = max(o.x0, 0), max(o.y0, 0)
        sx1, sy1 = min(o.x0 + w, self.W), min(o.y0 + h, self.H)
        a = o.alpha[sy0 - o.y0 : sy1 - o.y0, sx0 - o.x0 : sx1 - o.x0]
        total = float(a.sum())
        if total <= 0:
            return 0.0
        return float((a * cover[sy0:sy1, sx0:sx1]).sum()) / total

    # finishing ----------------------------------------------------------------------------------
    def camera(self) -> np.ndarray:
        rng, H, W = self.rng, self.H, self.W
        t = rng.uniform(0, 2 * math.pi)
        xs = np.arange(W, dtype=np.float32)[None, :]
        ys = np.arange(H, dtype=np.float32)[:, None]
        ramp = (xs / W - 0.5) * math.cos(t) + (ys / H - 0.5) * math.sin(t)
        gain = rng.uniform(0.75, 1.2) * (1.0 + rng.uniform(0.0, 0.5) * ramp)
        if rng.random() < 0.5:  # cloud shadows
            gain = gain * (1.0 + 0.15 * _smooth_noise(rng, H, W, max(32, W // 4))[..., 0])
        img = self.img * gain[..., None] * rng.uniform(0.93, 1.07, 3).astype(np.float32)
        if rng.random() < 0.6:
            img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.3, 1.0)))
        img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(1.0, 5.0))
        return np.clip(img + 0.5, 0, 255).astype(np.uint8)

    def annotations(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        boxes, cats, trunc, occl = [], [], [], []
        cover = getattr(self, "cover", None)
        for o in self.objects:
            boxes.append([o.box[0], o.box[1], o.box[2] - o.box[0], o.box[3] - o.box[1]])
            cats.append(o.cls + 1)
            trunc.append(int(o.truncated))
            occ = self._occlusion(o, cover) if cover is not None else 0.0
            occl.append(0 if occ < 0.01 else 1 if occ <= 0.5 else 2)
        for b in self.ignore:
            bb = np.clip(b, 0, [self.W, self.H, self.W, self.H])
            boxes.append([bb[0], bb[1], bb[2] - bb[0], bb[3] - bb[1]])
            cats.append(0)
            trunc.append(0)
            occl.append(0)
        return (np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(cats, np.int64),
                np.asarray(trunc, np.int64), np.asarray(occl, np.int64))


def render_scene(cfg: SynthConfig, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """One synthetic image (BGR uint8) and its VisDrone annotation text."""
    # One random stream per stage: changing how many objects (or whether trees) are drawn leaves the
    # ground, the ignored regions and the camera of a scene as they were (the tests rely on it).
    ground, ignored, objects, trees, camera = rng.spawn(5)
    scene = _Scene(cfg, ground)
    scene.ground()
    scene.roads_and_buildings()
    scene.rng = ignored
    if ignored.random() < cfg.ignore_prob:
        scene.ignored_region()
    scene.rng = objects
    scene.objects_pass()
    scene.rng = trees
    if cfg.trees:
        scene.trees()
    scene.rng = camera
    img = scene.camera()
    boxes, cats, trunc, occl = scene.annotations()
    return img, format_annotation(boxes, cats, trunc, occl)


def generate(
    out_dir: str | Path,
    n_images: int,
    size: tuple[int, int] = (640, 640),
    seed: int = 0,
    progress: bool = True,
    **kw,
) -> Path:
    """Write ``n_images`` scenes to ``out_dir/images/*.jpg`` + ``out_dir/annotations/*.txt``.

    ``kw`` are ``SynthConfig`` fields (``objects=(min, max)``, ``min_size``, ``max_size``, ``ignore_prob``,
    ``jpeg_quality``). Also writes ``out_dir/synth.json`` (the parameters and per-class counts).
    """
    from tqdm import tqdm

    cfg = SynthConfig(size=(int(size[0]), int(size[1])), **kw)
    cfg.check()
    if n_images < 1:
        raise DatasetError(f"synth: number of images must be >= 1, got {n_images}")
    out = Path(out_dir)
    img_dir, ann_dir = out / "images", out / "annotations"
    names = [f"{i:07d}" for i in range(n_images)]
    planned = {f"{n}.jpg" for n in names} | {f"{n}.txt" for n in names}
    for d in (img_dir, ann_dir):
        if d.is_dir():
            stale = sorted(p.name for p in d.iterdir() if p.name not in planned)
            if stale:
                raise DatasetError(f"{d}: already holds {len(stale)} file(s) this run would not write "
                                   f"(e.g. {stale[0]}); choose an empty --out so datasets do not mix")
    img_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    counts = np.zeros(len(VISDRONE_CLASSES), np.int64)
    n_ignore = 0
    for i, name in enumerate(tqdm(names, desc="synth", unit="img", disable=not progress)):
        rng = np.random.default_rng([seed, i])
        img, ann = render_scene(cfg, rng)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
        if not ok:
            raise DatasetError(f"{img_dir / name}.jpg: JPEG encoding failed")
        atomic_write_bytes(img_dir / f"{name}.jpg", buf.tobytes())
        atomic_write_text(ann_dir / f"{name}.txt", ann)
        for line in ann.splitlines():
            cat = int(line.split(",")[5])
            if cat == 0:
                n_ignore += 1
            else:
                counts[cat - 1] += 1
    meta = {
        "generator": "slimyolo synth",
        "seed": seed,
        "images": n_images,
        "config": asdict(cfg),
        "car_length_px": list(cfg.car_length_range()),
        "objects_per_class": dict(zip(VISDRONE_CLASSES, counts.tolist(), strict=True)),
        "ignored_regions": n_ignore,
    }
    atomic_write_json(out / "synth.json", meta)
    log.info("synth: wrote %d images, %d objects to %s", n_images, int(counts.sum()), out)
    return out


def load_meta(out_dir: str | Path) -> dict:
    return json.loads((Path(out_dir) / "synth.json").read_text())
