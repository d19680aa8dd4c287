"""Synthetic UAV flights: temporally coherent sequences written in the VisDrone-VID/MOT format.

One large world per sequence (the still scenes' ground, roads and buildings from ``terrain``, drawn
once), then per frame: vehicles drive along their lanes, pedestrians walk the sidewalks or cross the
roads, parked cars and standing people stay put, new traffic enters at the world's edges and leaves at
the other side. Tree crowns (some over the roads) are drawn above the objects, and objects overlap each
other at the crossings, so the ``occlusion`` field is measured from what actually covers each object's
pixels. The camera pans, yaws and changes altitude (zoom) smoothly, so every object moves in the image
even when it stands still. Every object keeps one target id for its life; ids are never reused.

Output layout (what ``slimyolo_ros.bag.vid.read_vid`` and ``slimyolo bag make`` read):
``<out>/sequences/<name>/<frame:07d>.jpg`` (frames from 1) and ``<out>/annotations/<name>.txt`` with
``frame,target_id,left,top,width,height,score,category,truncation,occlusion`` lines.

Deterministic: sequence ``k`` of seed ``s`` comes from ``np.random.default_rng([s, k])`` only.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from slimyolo_ros.data.compositing import Window, alpha_box, blend, darken
from slimyolo_ros.data.sprites import CLASS_LENGTH, jitter, render_object
from slimyolo_ros.data.terrain import (
    Road,
    box_overlap,
    draw_building,
    draw_ground,
    draw_road,
    on_road,
    scale_and_shadow,
)
from slimyolo_ros.data.visdrone import VISDRONE_CLASSES
from slimyolo_ros.errors import DatasetError
from slimyolo_ros.io_utils import atomic_write_bytes, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

VEHICLE_MIX = (3, 3, 3, 3, 4, 5, 8, 9, 9, 6, 7, 2)  # car-heavy, like VisDrone's roads
PEDESTRIAN_MIX = (0, 0, 0, 1)


REFERENCE_CAR_LENGTH = 26.0  # the car length the densities below are given for


@dataclass
class FlightConfig:
    size: tuple[int, int] = (640, 480)  # image width, height
    frames: int = 100  # frames per sequence
    fps: float = 10.0
    car_length: float = REFERENCE_CAR_LENGTH  # px at the nominal altitude (zoom 1)
    world: int | None = None  # the square world's side in px at zoom 1; None: max(1600, 2 x view diagonal)
    # Densities, given for a 1600 px world of 26 px cars and scaled with the world's length (traffic) or
    # area (the rest) in car lengths:
    vehicles_per_lane: float = 6.0  # on each lane at any time
    parked: int = 40  # parked vehicles and standing people
    walkers: int = 90  # pedestrians on sidewalks and crossing roads
    trees: int = 60
    jpeg_quality: int = 92

    def world_size(self) -> int:
        if self.world is not None:
            return int(self.world)
        return max(1600, math.ceil(2.0 * math.hypot(*self.size)))

    def check(self) -> None:
        w, h = self.size
        if w < 64 or h < 64:
            raise DatasetError(f"synth --video: image size {w}x{h} is too small (at least 64x64)")
        if self.frames < 1:
            raise DatasetError(f"synth --video: frames per sequence must be >= 1, got {self.frames}")
        if not self.fps > 0:
            raise DatasetError(f"synth --video: fps must be > 0, got {self.fps}")
        if not 6 <= self.car_length <= 0.25 * min(w, h):
            raise DatasetError(f"synth --video: car length {self.car_length:g} px is not in "
                               f"6..{0.25 * min(w, h):g}")
        if self.world_size() < 1.6 * math.hypot(w, h):
            raise DatasetError(f"synth --video: world {self.world_size()} px is too small for a {w}x{h} view "
                               f"(at least {math.ceil(1.6 * math.hypot(w, h))})")


@dataclass
class _Object:
    tid: int
    cls: int
    pos: np.ndarray  # world px, float64 (2,)
    vel: np.ndarray  # world px per second
    heading: float  # degrees, the direction of the sprite's long axis
    patch: np.ndarray  # BGRA float32 sprite at world scale, long axis along +x


@dataclass
class _Camera:
    centre0: np.ndarray
    amp: np.ndarray
    freq: np.ndarray
    phase: np.ndarray
    yaw0: float
    yaw_rate: float  # degrees per second
    zoom_amp: float
    zoom_freq: float
    gain: np.ndarray = field(default_factory=lambda: np.ones(3, np.float32))

    def matrix(self, t: float, size: tuple[int, int]) -> tuple[np.ndarray, float, float]:
        """World → image 2×3 affine at time ``t``, with the yaw (degrees) and zoom used."""
        c = self.centre0 + self.amp * np.sin(2 * math.pi * self.freq * t + self.phase)
        yaw = self.yaw0 + self.yaw_rate * t + 6.0 * math.sin(2 * math.pi * 0.05 * t)
        s = 1.0 + self.zoom_amp * math.sin(2 * math.pi * self.zoom_freq * t)
        r = math.radians(yaw)
        rot = s * np.array([[math.cos(r), math.sin(r)], [-math.sin(r), math.cos(r)]])
        m = np.zeros((2, 3))
        m[:, :2] = rot
        m[:, 2] = np.array([size[0] / 2, size[1] / 2]) - rot @ c
        return m, yaw, s


class Flight:
    """One sequence: the world, its objects and the camera; ``step()`` renders the next frame."""

    def __init__(self, cfg: FlightConfig, rng: np.random.Generator):
        self.cfg = cfg
        world_rng, self.obj_rng, cam_rng, self.noise_seed = rng.spawn(4)
        self.dt = 1.0 / cfg.fps
        self.t = 0.0
        self.next_id = 1
        # Densities are per ground area, so they scale with the world measured in car lengths: a lower
        # flight (longer cars in pixels) sees fewer trees and people per frame, not a denser world.
        self.length_scale = (cfg.world_size() / cfg.car_length) / (1600.0 / REFERENCE_CAR_LENGTH)
        self.area_scale = self.length_scale**2
        self._world(world_rng)
        self._camera(cam_rng)
        self.objects: list[_Object] = []
        self._populate()

    # world --------------------------------------------------------------------------------------
    def _world(self, rng: np.random.Generator) -> None:
        n = self.cfg.world_size()
        u = self.unit = self.cfg.car_length
        # The car length is the configured one; the draw keeps the still scenes' random stream, and with
        # it the sun (the shadows' direction) of every seed.
        _, shadow = scale_and_shadow(rng, u, u)
        self.ground = np.zeros((n, n, 3), np.float32)  # BGR
        self.roads: list[Road] = []
        self.blocked: list[np.ndarray] = []  # buildings: no parked objects there
        draw_ground(self.ground, rng, u)
        # Two or three roads: one horizontal and one vertical through the middle third, so that every
        # flight has a crossing where traffic overlaps.
        kinds = [True, False] + ([bool(rng.integers(2))] if rng.random() < 0.6 else [])
        for horizontal in kinds:
            lanes = int(rng.integers(2, 5))
            c = float(rng.uniform(0.3, 0.7) * n)
            self.roads.append(draw_road(self.ground, rng, horizontal, c, lanes, u))
        for _ in range(int(n * n / (12 * u) ** 2)):
            bw, bh = rng.uniform(1.5, 4.0, 2) * u
            x0, y0 = rng.uniform(0, n - bw), rng.uniform(0, n - bh)
            box = np.array([x0, y0, x0 + bw, y0 + bh])
            if not on_road(self.roads, box + np.array([-0.3, -0.3, 0.3, 0.3]) * u, u):
                draw_building(self.ground, rng, box, shadow)
                self.blocked.append(box.astype(np.float64))
        self._trees(rng)

    def _trees(self, rng: np.random.Generator) -> None:
        """Crowns in a BGRA uint8 layer over the world (a third over a road); their shadows on the ground."""
        n, u = self.cfg.world_size(), self.unit
        self.tree_layer = np.zeros((n, n, 4), np.uint8)
        for _ in range(round(self.cfg.trees * self.area_scale)):
            r = rng.uniform(0.5, 1.4) * u
            if rng.random() < 0.35:
                road = self.roads[rng.integers(len(self.roads))]
                across = rng.uniform(road.lo, road.hi)
                along = rng.uniform(0, n)
                cx, cy = (along, across) if road.horizontal else (across, along)
            else:
                cx, cy = rng.uniform(0, n, 2)
            m = int(2.5 * r) + 4
            x0, y0 = int(cx) - m, int(cy) - m
            mask = np.zeros((2 * m, 2 * m), np.uint8)
            for _b in range(int(rng.integers(3, 6))):
                bx, by = m + rng.normal(0, r * 0.4, 2)
                radius = max(1, int(r * rng.uniform(0.5, 0.9)))
                cv2.circle(mask, (int(bx), int(by)), radius, 255, -1, cv2.LINE_AA)
            win = Window(x0, y0, 2 * m, 2 * m, n, n)
            if win.empty:
                continue
            a = win.patch(mask)
            sh = int(0.36 * u)  # the shadow (of the crown's part inside the world) falls south-east of it
            darken(self.ground, a.astype(np.float32) / 255.0, win.sx0 + sh, win.sy0 + sh, 0.4)
            green = np.array(jitter(rng, (40, 85, 45), 8), np.float32)
            layer = win.of(self.tree_layer)
            keep = a > layer[..., 3]
            shade = (1.0 + 0.25 * rng.standard_normal(a.shape).clip(-1, 1))[..., None]
            layer[..., :3][keep] = np.clip(green * shade, 0, 255).astype(np.uint8)[keep]
            layer[..., 3][keep] = a[keep]

    def _camera(self, rng: np.random.Generator) -> None:
        """A smooth loop around the first road crossing; the widest view (zoom 0.8) stays in the world."""
        cfg = self.cfg
        half_view = 0.5 * math.hypot(*cfg.size) / 0.8
        lo, hi = half_view + 8, cfg.world_size() - half_view - 8
        roads = self.roads
        crossing = np.array([roads[1].lanes[0], roads[0].lanes[0]])  # vertical road x, horizontal y
        c0 = np.clip(crossing, lo + 0.25 * (hi - lo), hi - 0.25 * (hi - lo))  # room to pan around it
        room = np.minimum(c0 - lo, hi - c0)
        self.camera = _Camera(
            centre0=c0, amp=rng.uniform(0.6, 1.0, 2) * room,
            freq=rng.uniform(0.01, 0.02, 2) * rng.choice([-1, 1], 2), phase=rng.uniform(0, 2 * math.pi, 2),
            yaw0=float(rng.uniform(0, 360)), yaw_rate=float(rng.uniform(1.0, 4.0) * rng.choice([-1, 1])),
            zoom_amp=float(rng.uniform(0.08, 0.2)), zoom_freq=float(rng.uniform(0.02, 0.05)),
            gain=rng.uniform(0.85, 1.1, 3).astype(np.float32))

    # objects -------------------------------------------------------------------------------------
    def _spawn(self, cls: int, pos, vel, heading: float) -> None:
        rng = self.obj_rng
        length = self.unit * CLASS_LENGTH[cls] * rng.uniform(0.9, 1.1)
        self.objects.append(_Object(self.next_id, cls, np.asarray(pos, np.float64),
                                    np.asarray(vel, np.float64), float(heading),
                                    render_object(cls, length, rng)))
        self.next_id += 1

    def _lanes(self):
        for road in self.roads:
            k = len(road.lanes)
            for i, c in enumerate(road.lanes):
                yield road, c, 1.0 if i >= k / 2 else -1.0

    def _vehicle(self, road: dict, lane: float, sign: float, along: float, speed: float) -> None:
        cls = int(self.obj_rng.choice(VEHICLE_MIX))
        if road.horizontal:
            pos, vel, heading = (along, lane), (sign * speed, 0.0), 0.0 if sign > 0 else 180.0
        else:
            pos, vel, heading = (lane, along), (0.0, sign * speed), 90.0 if sign > 0 else 270.0
        self._spawn(cls, pos, vel, heading)

    def _populate(self) -> None:
        rng, u, n = self.obj_rng, self.unit, self.cfg.world_size()
        self.lane_speed = []
        for road, lane, sign in self._lanes():
            speed = rng.uniform(1.2, 2.5) * u  # one speed per lane: no overtaking inside a lane
            self.lane_speed.append(speed)
            count = rng.poisson(self.cfg.vehicles_per_lane * self.length_scale)
            n_slots = int(n / (2.5 * u))
            slots = np.sort(rng.choice(n_slots, size=min(count, n_slots), replace=False))
            for s in slots:
                self._vehicle(road, lane, sign, (s + 0.5) * 2.5 * u, speed)
        for _ in range(round(self.cfg.walkers * self.area_scale)):
            self._walker(rng.uniform(0, n))
        for _ in range(round(self.cfg.parked * self.area_scale)):
            for _try in range(10):
                p = rng.uniform(0.05 * n, 0.95 * n, 2)
                box = np.concatenate([p - u, p + u])
                if not on_road(self.roads, box, u) and box_overlap(box, self.blocked) == 0.0:
                    cls = int(rng.choice((3, 3, 4, 9, 0, 1)))
                    self._spawn(cls, p, (0.0, 0.0), 90.0 * rng.integers(4) + rng.normal(0, 4))
                    break

    def _walker(self, along: float) -> None:
        """A pedestrian on a sidewalk, or (one in four) crossing the road."""
        rng, u = self.obj_rng, self.unit
        road = self.roads[rng.integers(len(self.roads))]
        speed = rng.uniform(0.25, 0.45) * u * rng.choice([-1, 1])
        cls = int(rng.choice(PEDESTRIAN_MIX))
        if rng.random() < 0.25:
            across = road.walk[rng.integers(2)]
            speed = abs(speed) * (1 if across < road.lo else -1)
            horizontal = road.horizontal
            pos, vel = ((along, across), (0.0, speed)) if horizontal else ((across, along), (speed, 0.0))
        else:
            side = road.walk[rng.integers(2)]
            pos, vel = ((along, side), (speed, 0.0)) if road.horizontal else ((side, along), (0.0, speed))
        heading = math.degrees(math.atan2(vel[1], vel[0]))
        self._spawn(cls, pos, vel, heading)

    def _move(self) -> None:
        """Advance every object one frame; retire those that left the world; traffic enters at the edges."""
        rng, u, n = self.obj_rng, self.unit, self.cfg.world_size()
        for o in self.objects:
            o.pos += o.vel * self.dt
        self.objects = [o for o in self.objects if (-2 * u < o.pos).all() and (o.pos < n + 2 * u).all()]
        for (road, lane, sign), speed in zip(self._lanes(), self.lane_speed, strict=True):
            rate = self.cfg.vehicles_per_lane * self.length_scale * speed / n  # keeps the lane's density
            if rng.random() < rate * self.dt:
                self._vehicle(road, lane, sign, -1.5 * u if sign > 0 else n + 1.5 * u, speed)
        if rng.random() < 0.05 * self.cfg.walkers * self.area_scale * self.dt / 10:
            self._walker(float(rng.choice([0.0, float(n)])))

    # rendering -----------------------------------------------------------------------------------
    def _place(self, o: _Object, m: np.ndarray, size: tuple[int, int]):
        """(window x0, y0, warped BGRA patch) of an object in the image, or None when off screen."""
        h, w = o.patch.shape[:2]
        r = math.radians(o.heading)
        rh = np.array([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]])
        a = m[:, :2] @ rh
        b = m[:, :2] @ o.pos + m[:, 2] - a @ np.array([w / 2, h / 2])
        corners = (a @ np.array([[0, w, w, 0], [0, 0, h, h]], np.float64)).T + b
        x0, y0 = np.floor(corners.min(0)).astype(int)
        x1, y1 = np.ceil(corners.max(0)).astype(int) + 1
        if x1 <= 0 or y1 <= 0 or x0 >= size[0] or y0 >= size[1]:
            return None
        aff = np.hstack([a, (b - [x0, y0])[:, None]])
        warped = cv2.warpAffine(o.patch, aff, (int(x1 - x0), int(y1 - y0)), flags=cv2.INTER_LINEAR,
                                borderValue=(0, 0, 0, 0))
        return int(x0), int(y0), warped

    def render(self) -> tuple[np.ndarray, list[tuple]]:
        """The current frame (BGR uint8) and its annotation rows (id, box xywh, category, trunc, occl)."""
        W, H = self.cfg.size
        m, _yaw, _zoom = self.camera.matrix(self.t, (W, H))
        img = cv2.warpAffine(self.ground, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        # Pedestrians under vehicles: at a crossing the car covers the walker, not the other way round.
        order = sorted(self.objects, key=lambda o: (o.cls not in (0, 1), o.tid))
        placed = []
        for o in order:
            p = self._place(o, m, (W, H))
            if p is not None:
                placed.append((o, *p))
                blend(img, p[2], p[0], p[1])
        trees = cv2.warpAffine(self.tree_layer, m, (W, H), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0, 0))
        cover = trees[..., 3].astype(np.float32) / 255.0
        blend(img, np.dstack([trees[..., :3].astype(np.float32), cover]), 0, 0)
        rows = []
        for o, x0, y0, patch in reversed(placed):  # top-most first: cover accumulates downwards
            row = _annotate(o, x0, y0, patch[..., 3], cover)
            if row is not None:
                rows.append(row)
        rows.sort()
        return self._finish(img), rows

    def _finish(self, img: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng([int(self.noise_seed.integers(2**31)), int(round(self.t * 1000))])
        img = img * self.camera.gain
        img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(2.5)
        return np.clip(img + 0.5, 0, 255).astype(np.uint8)

    def step(self) -> None:
        self.t += self.dt
        self._move()


def _annotate(o: _Object, x0: int, y0: int, alpha: np.ndarray, cover: np.ndarray):
    """The object's ground-truth row, updating ``cover`` with its own pixels; None when not annotated.

    Dropped like VisDrone does: more than half outside the image, or (beyond VisDrone, which cannot see
    it either) less than 10 % of it visible.
    """
    H, W = cover.shape
    total = float(alpha.sum())
    box = alpha_box(alpha)
    if total <= 0 or box is None:
        return None
    window = Window.placed(cover, alpha, x0, y0)
    if window.empty:
        return None
    a = window.patch(alpha)
    win = window.of(cover)
    inside = float(a.sum())
    covered = float((a * win).sum())
    np.maximum(win, a, out=win)
    outside = 1.0 - inside / total
    occluded = covered / max(inside, 1e-6)
    if outside > 0.5 or (1.0 - outside) * (1.0 - occluded) < 0.1:
        return None
    x1, y1 = max(box[0] + x0, 0), max(box[1] + y0, 0)
    x2, y2 = min(box[2] + x0, W), min(box[3] + y0, H)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return None
    occl = 0 if occluded < 0.01 else 1 if occluded <= 0.5 else 2
    return (o.tid, x1, y1, x2 - x1, y2 - y1, o.cls + 1, int(outside > 0.01), occl)


def render_sequence(cfg: FlightConfig, rng: np.random.Generator):
    """Yield ``(frame_number, BGR image, rows)`` for frames 1..cfg.frames of one flight."""
    flight = Flight(cfg, rng)
    for k in range(1, cfg.frames + 1):
        img, rows = flight.render()
        yield k, img, rows
        flight.step()


def format_rows(frame: int, rows: list[tuple]) -> str:
    return "".join(f"{frame},{tid},{x},{y},{w},{h},1,{cat},{tr},{oc}\n"
                   for tid, x, y, w, h, cat, tr, oc in rows)


def generate_flights(out_dir: str | Path, sequences: int = 1, seed: int = 0, progress: bool = True,
                     **kw) -> Path:
    """Write ``sequences`` flights under ``out_dir`` (VisDrone-VID layout) plus ``flight.json``.

    ``kw`` are ``FlightConfig`` fields (``size``, ``frames``, ``fps``, ``car_length``, ...).
    """
    from tqdm import tqdm

    cfg = FlightConfig(**kw)
    cfg.check()
    if sequences < 1:
        raise DatasetError(f"synth --video: number of sequences must be >= 1, got {sequences}")
    out = Path(out_dir)
    if (out / "sequences").is_dir() and any((out / "sequences").iterdir()):
        raise DatasetError(f"{out / 'sequences'}: not empty; choose an empty --out so flights do not mix")
    counts = np.zeros(len(VISDRONE_CLASSES), np.int64)
    ids = 0
    bar = tqdm(total=sequences * cfg.frames, desc="synth --video", unit="frame", disable=not progress)
    names = []
    for k in range(sequences):
        name = f"flight_{seed:04d}_{k:03d}"
        names.append(name)
        seq_dir = out / "sequences" / name
        seq_dir.mkdir(parents=True, exist_ok=True)
        lines, seen = [], set()
        for frame, img, rows in render_sequence(cfg, np.random.default_rng([seed, k])):
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
            if not ok:
                raise DatasetError(f"{seq_dir}/{frame:07d}.jpg: JPEG encoding failed")
            atomic_write_bytes(seq_dir / f"{frame:07d}.jpg", buf.tobytes())
            lines.append(format_rows(frame, rows))
            for r in rows:
                counts[r[5] - 1] += 1
                seen.add(r[0])
            bar.update(1)
        ids += len(seen)
        atomic_write_text(out / "annotations" / f"{name}.txt", "".join(lines))
    bar.close()
    meta = {"generator": "slimyolo synth --video", "seed": seed, "sequences": names, "config": asdict(cfg),
            "boxes_per_class": dict(zip(VISDRONE_CLASSES, counts.tolist(), strict=True)), "target_ids": ids}
    atomic_write_json(out / "flight.json", meta)
    log.info("synth --video: wrote %d sequences x %d frames to %s", sequences, cfg.frames, out)
    return out
