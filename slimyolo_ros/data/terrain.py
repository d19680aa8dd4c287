"""The ground of a synthetic top-down scene, drawn into a float32 BGR image: grass and fields, roads with
lane markings and sidewalks, buildings with their shadows, and the box tests that keep objects off them.

Sizes are in car lengths (``unit``, px), the scale of every scene. Every function draws from the random
generator it is given, in a fixed order, so a scene is a function of its seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from slimyolo_ros.data.compositing import Window
from slimyolo_ros.data.sprites import jitter

ROOF_COLOURS = [(60, 80, 160), (120, 120, 125), (85, 85, 90), (130, 110, 95), (70, 100, 140)]
LANE_WIDTH = 0.85  # car lengths
WALK_WIDTH = 0.45  # car lengths, each side of a road


@dataclass(frozen=True)
class Road:
    """A straight road across the whole image, in image pixels across it (y when horizontal)."""

    horizontal: bool
    lanes: tuple[float, ...]  # lane centres
    lo: float  # asphalt edges
    hi: float
    walk: tuple[float, float]  # sidewalk centres


def scale_and_shadow(rng: np.random.Generator, lo: float, hi: float) -> tuple[float, tuple[float, float]]:
    """A scene's car length in px, log-uniform in [lo, hi], and the offset of an object's shadow: 0.12 of
    that length, towards a random direction (one sun per scene)."""
    unit = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    ang = rng.uniform(0, 2 * math.pi)
    return unit, (math.cos(ang) * 0.12 * unit, math.sin(ang) * 0.12 * unit)


def road_width(lanes: int, unit: float) -> float:
    """The asphalt's width of a road with ``lanes`` lanes, px."""
    return lanes * (LANE_WIDTH * unit)


def smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int, channels: int = 1) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: random values on a coarse grid, cubic-upsampled."""
    gh, gw = h // cell + 3, w // cell + 3
    small = rng.normal(0, 0.5, (gh, gw, channels)).astype(np.float32)
    big = cv2.resize(small, (gw * cell, gh * cell), interpolation=cv2.INTER_CUBIC)
    big = big.reshape(gh * cell, gw * cell, channels)
    oy, ox = rng.integers(0, cell, 2)
    return big[oy : oy + h, ox : ox + w]


def fill_rect(img: np.ndarray, rng: np.random.Generator, x0, y0, x1, y1, colour) -> None:
    """A slightly textured rectangle (corners rounded to pixels), cut to the image."""
    xa, ya = int(round(x0)), int(round(y0))
    win = Window(xa, ya, int(round(x1)) - xa, int(round(y1)) - ya, img.shape[1], img.shape[0])
    if not win.empty:
        region = win.of(img)
        texture = rng.standard_normal(region.shape[:2] + (1,), dtype=np.float32) * 4
        region[:] = np.asarray(colour, np.float32) + texture


def draw_ground(img: np.ndarray, rng: np.random.Generator, unit: float) -> None:
    """Grass with two scales of colour noise, then up to three fields of crop rows."""
    H, W = img.shape[:2]
    base = np.array(jitter(rng, [(60, 125, 80), (70, 115, 95), (55, 100, 110)][rng.integers(3)], 8),
                    np.float32)
    img[:] = base
    img += smooth_noise(rng, H, W, max(8, int(unit)), 3) * 14
    img += smooth_noise(rng, H, W, max(16, int(unit * 4)), 1) * 18
    for _ in range(rng.integers(0, 4)):  # fields: rotated patches of crop rows
        crop = [(70, 140, 150), (50, 110, 60), (90, 130, 120)][rng.integers(3)]
        colour = np.array(jitter(rng, crop, 10), np.float32)
        c = (float(rng.uniform(0, W)), float(rng.uniform(0, H)))
        size = (float(rng.uniform(0.2, 0.6) * W), float(rng.uniform(0.2, 0.6) * H))
        pts = cv2.boxPoints((c, size, float(rng.uniform(0, 90)))).astype(np.int32)
        step = max(3, int(unit * rng.uniform(0.15, 0.35)))
        diagonal = int(rng.integers(2))
        x0, y0 = np.clip(pts.min(0), 0, [W, H])
        x1, y1 = np.clip(pts.max(0) + 1, 0, [W, H])
        if x1 <= x0 or y1 <= y0:
            continue
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(mask, [pts - [x0, y0]], 1)
        rows = ((np.arange(y0, y1)[:, None] + np.arange(x0, x1)[None, :] * diagonal) // step) % 2
        m = mask.astype(bool)
        img[y0:y1, x0:x1][m] = colour + (rows[m, None] * 10 - 5)


def draw_road(img: np.ndarray, rng: np.random.Generator, horizontal: bool, centre: float, lanes: int,
              unit: float) -> Road:
    """A road across the whole image centred at ``centre`` (y when horizontal): sidewalks, asphalt, white
    edge lines and dashed lane lines."""
    H, W = img.shape[:2]
    lane_w, walk = LANE_WIDTH * unit, WALK_WIDTH * unit
    width = road_width(lanes, unit)
    lo, hi = centre - width / 2, centre + width / 2
    grey = float(rng.uniform(70, 110))
    if horizontal:
        fill_rect(img, rng, 0, lo - walk, W, hi + walk, (175, 175, 170))
        fill_rect(img, rng, 0, lo, W, hi, (grey, grey, grey + 3))
    else:
        fill_rect(img, rng, lo - walk, 0, hi + walk, H, (175, 175, 170))
        fill_rect(img, rng, lo, 0, hi, H, (grey, grey, grey + 3))
    _markings(img, rng, horizontal, lo, hi, lanes, unit)
    return Road(horizontal, tuple(lo + (i + 0.5) * lane_w for i in range(lanes)), lo, hi,
                (lo - walk / 2, hi + walk / 2))


def _markings(img: np.ndarray, rng: np.random.Generator, horizontal: bool, lo: float, hi: float, lanes: int,
              unit: float) -> None:
    white = (225, 225, 225)
    t = max(1, int(round(0.06 * unit)))
    length = img.shape[1] if horizontal else img.shape[0]
    for edge in (lo + 0.1 * unit, hi - 0.1 * unit):
        _line_along(img, horizontal, edge, 0, length, white, t)
    dash, gap = 0.8 * unit, 0.8 * unit
    lane_w = LANE_WIDTH * unit
    for i in range(1, lanes):
        pos = lo + i * lane_w
        start = -rng.uniform(0, dash + gap)
        while start < length:
            _line_along(img, horizontal, pos, start, start + dash, white, t)
            start += dash + gap


def _line_along(img: np.ndarray, horizontal: bool, pos: float, a: float, b: float, colour, t: int) -> None:
    p = int(round(pos))
    if horizontal:
        cv2.line(img, (int(a), p), (int(b), p), colour, t)
    else:
        cv2.line(img, (p, int(a)), (p, int(b)), colour, t)


def draw_building(img: np.ndarray, rng: np.random.Generator, box: np.ndarray,
                  shadow: tuple[float, float]) -> None:
    """A gabled roof over ``box`` (x1, y1, x2, y2) and its shadow, 2.5 times an object's ``shadow`` offset."""
    x0, y0, x1, y1 = box
    sx, sy = shadow
    k = 2.5  # buildings are taller than cars: longer shadows
    win = Window(int(x0 + k * sx), int(y0 + k * sy), int(x1 - x0), int(y1 - y0), img.shape[1], img.shape[0])
    if not win.empty:
        win.of(img)[:] *= 0.55
    roof = np.array(jitter(rng, ROOF_COLOURS[rng.integers(len(ROOF_COLOURS))], 10), np.float32)
    if (x1 - x0) >= (y1 - y0):  # two halves of different brightness split along the ridge
        ym = (y0 + y1) / 2
        fill_rect(img, rng, x0, y0, x1, ym, roof * 1.1)
        fill_rect(img, rng, x0, ym, x1, y1, roof * 0.85)
    else:
        xm = (x0 + x1) / 2
        fill_rect(img, rng, x0, y0, xm, y1, roof * 1.1)
        fill_rect(img, rng, xm, y0, x1, y1, roof * 0.85)


def on_road(roads: list[Road], box: np.ndarray, unit: float) -> bool:
    """Whether an x1, y1, x2, y2 box reaches into a road or half a car length beside it."""
    for r in roads:
        lo, hi = r.lo - 0.5 * unit, r.hi + 0.5 * unit
        a, b = (box[1], box[3]) if r.horizontal else (box[0], box[2])
        if b > lo and a < hi:
            return True
    return False


def box_overlap(a: np.ndarray, boxes: list[np.ndarray]) -> float:
    """Largest fraction of box ``a``'s area covered by any of ``boxes`` (all x1, y1, x2, y2)."""
    if not boxes:
        return 0.0
    b = np.asarray(boxes)
    iw = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    area = max((a[2] - a[0]) * (a[3] - a[1]), 1e-6)
    return float((iw * ih).max() / area)
