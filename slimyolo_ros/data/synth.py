"""Synthetic top-down UAV scenes written in the VisDrone-DET format.

The tests, the demo and the CPU benchmarks train on these, not on VisDrone, which the repository does not
ship. Each scene: grass/field ground, axis-aligned roads with lane markings and sidewalks, roof blocks with
shadows, then many small objects of the 10 VisDrone classes, trees partly covering some of them, sometimes a
crowded car park or crowd marked as an ignored region (category 0) whose clutter is left unannotated, then
global lighting gradients, blur, sensor noise and JPEG compression. The ground comes from ``terrain``, the
objects' drawings from ``sprites`` and the pixel work from ``compositing``; this module lays a scene out and
writes the dataset.

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

from slimyolo_ros.data.compositing import Window, alpha_box, blend, darken
from slimyolo_ros.data.sprites import CLASS_LENGTH, jitter, render_object, rotate_patch
from slimyolo_ros.data.terrain import (
    Road,
    box_overlap,
    draw_building,
    draw_ground,
    draw_road,
    fill_rect,
    on_road,
    road_width,
    scale_and_shadow,
    smooth_noise,
)
from slimyolo_ros.data.visdrone import VISDRONE_CLASSES, format_annotation
from slimyolo_ros.errors import DatasetError
from slimyolo_ros.io_utils import atomic_write_bytes, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

# How often each class (index = VisDrone category - 1) appears: roughly VisDrone's skew — cars, pedestrians
# and motors dominate — flattened so that the rare classes still get enough examples in a few hundred images.
CLASS_WEIGHT = np.array([0.14, 0.09, 0.08, 0.2, 0.1, 0.07, 0.07, 0.06, 0.06, 0.13])
VEHICLES = (2, 3, 4, 5, 6, 7, 8, 9)  # go on roads (mostly)


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


# ------------------------------------------------------------------------------------------------ scene
@dataclass
class _Placed:
    x0: int  # top-left of the (unclipped) patch in the scene
    y0: int
    alpha: np.ndarray  # patch alpha
    cls: int
    box: np.ndarray  # x1, y1, x2, y2 clipped to the image
    truncated: bool


class _Scene:
    def __init__(self, cfg: SynthConfig, rng: np.random.Generator):
        self.cfg, self.rng = cfg, rng
        self.W, self.H = cfg.size
        self.unit, self.shadow = scale_and_shadow(rng, *cfg.car_length_range())
        self.img = np.zeros((self.H, self.W, 3), np.float32)
        self.roads: list[Road] = []
        self.blocked: list[np.ndarray] = []  # buildings and ignored regions: no objects there
        self.ignore: list[np.ndarray] = []
        self.objects: list[_Placed] = []

    # ground --------------------------------------------------------------------------------------
    def ground(self) -> None:
        draw_ground(self.img, self.rng, self.unit)

    def roads_and_buildings(self) -> None:
        rng, u = self.rng, self.unit
        for _ in range(rng.integers(1, 4)):
            horizontal = bool(rng.integers(2))
            lanes = int(rng.integers(2, 5))
            width = road_width(lanes, u)
            span = self.H if horizontal else self.W
            # away from the borders when there is room; objects large for the image get a centred band
            if span >= 2 * width:
                c = float(rng.uniform(width, span - width))
            else:
                c = float(rng.uniform(0.4, 0.6) * span)
            self.roads.append(draw_road(self.img, rng, horizontal, c, lanes, u))
        for _ in range(rng.integers(1, 6)):
            for _try in range(10):
                bw, bh = rng.uniform(1.5, 4.0, 2) * u
                x0, y0 = rng.uniform(-0.5 * bw, self.W - 0.5 * bw), rng.uniform(-0.5 * bh, self.H - 0.5 * bh)
                box = np.array([x0, y0, x0 + bw, y0 + bh])
                pad = np.array([-0.3, -0.3, 0.3, 0.3]) * u
                if on_road(self.roads, box + pad, u):
                    continue
                draw_building(self.img, rng, box, self.shadow)
                self.blocked.append(box.astype(np.float64))
                break

    # objects -------------------------------------------------------------------------------------
    def _try_place(self, cls: int, cx: float, cy: float, angle: float, scale: float = 1.0,
                   annotate: bool = True, max_overlap: float = 0.1) -> bool:
        rng = self.rng
        length = self.unit * CLASS_LENGTH[cls] * scale * rng.uniform(0.88, 1.12)
        patch = rotate_patch(render_object(cls, length, rng), angle)
        h, w = patch.shape[:2]
        x0, y0 = int(round(cx - w / 2)), int(round(cy - h / 2))
        box = alpha_box(patch[..., 3])
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
            inside = np.zeros(a.shape, bool)
            window = Window.placed(self.img, a, x0, y0)
            if not window.empty:
                window.patch(inside)[:] = True
            outside = 1.0 - float(a[inside].sum()) / max(total, 1e-6)
            if outside > 0.5:  # VisDrone only annotates truncation up to 50 %
                return False
            truncated = outside > 0.01
            if box_overlap(clipped, self.blocked) > 0.0:
                return False
            if box_overlap(clipped, [o.box for o in self.objects]) > max_overlap:
                return False
            if any(box_overlap(o.box, [clipped]) > max_overlap for o in self.objects):
                return False
        sx, sy = int(round(self.shadow[0])), int(round(self.shadow[1]))
        darken(self.img, patch[..., 3], x0 + sx, y0 + sy, 0.35)
        blend(self.img, patch, x0, y0)
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
            if not on_road(self.roads, box, u) and box_overlap(box, self.blocked) == 0.0:
                break
        else:
            return
        outside = self.img.copy()  # clutter (and its shadows) must not spill out of the declared region
        if car_park:
            fill_rect(self.img, rng, x0, y0, x0 + rw, y0 + rh, (95, 95, 98))
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
        xa, ya = int(math.floor(x0)), int(math.floor(y0))
        region = Window(xa, ya, int(math.ceil(x0 + rw)) - xa, int(math.ceil(y0 + rh)) - ya, self.W, self.H)
        region.of(outside)[:] = region.of(self.img)
        self.img = outside
        self.ignore.append(np.array([region.sx0, region.sy0, region.sx1, region.sy1], np.float64))
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
                li = int(rng.integers(len(road.lanes)))
                lane = road.lanes[li] + rng.normal(0, 0.05 * self.unit)
                forward = li >= len(road.lanes) / 2
                along = rng.uniform(0, self.W if road.horizontal else self.H)
                if road.horizontal:
                    cx, cy, base = along, lane, 0.0 if forward else 180.0
                else:
                    cx, cy, base = lane, along, 90.0 if forward else 270.0
            elif cls in (0, 1) and self.roads and rng.random() < 0.5:  # on a sidewalk
                road = self.roads[rng.integers(len(self.roads))]
                side = road.walk[rng.integers(2)]
                along = rng.uniform(0, self.W if road.horizontal else self.H)
                cx, cy = (along, side) if road.horizontal else (side, along)
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
                window = Window(x0, y0, 2 * m, 2 * m, self.W, self.H)
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
        darken(self.img, crown, x0 + int(self.shadow[0] * 3), y0 + int(self.shadow[1] * 3), 0.4)
        green = np.array(jitter(rng, (40, 85, 45), 8), np.float32)
        texture = np.zeros_like(crown)
        for bx, by, br in blobs:  # a lit side per blob gives crowns their lumpy look
            centre = (int(bx - br * 0.25) - x0, int(by - br * 0.25) - y0)
            cv2.circle(texture, centre, max(1, int(br * 0.5)), 1.0, -1)
        colour = green[None, None, :] * (1.0 + 0.35 * texture[..., None])
        blend(self.img, np.dstack([colour, crown]), x0, y0)

    def _occlusion(self, o: _Placed, cover: np.ndarray) -> float:
        win = Window.placed(cover, o.alpha, o.x0, o.y0)
        a = win.patch(o.alpha)
        total = float(a.sum())
        if total <= 0:
            return 0.0
        return float((a * win.of(cover)).sum()) / total

    # finishing ----------------------------------------------------------------------------------
    def camera(self) -> np.ndarray:
        rng, H, W = self.rng, self.H, self.W
        t = rng.uniform(0, 2 * math.pi)
        xs = np.arange(W, dtype=np.float32)[None, :]
        ys = np.arange(H, dtype=np.float32)[:, None]
        ramp = (xs / W - 0.5) * math.cos(t) + (ys / H - 0.5) * math.sin(t)
        gain = rng.uniform(0.75, 1.2) * (1.0 + rng.uniform(0.0, 0.5) * ramp)
        if rng.random() < 0.5:  # cloud shadows
            gain = gain * (1.0 + 0.15 * smooth_noise(rng, H, W, max(32, W // 4))[..., 0])
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
