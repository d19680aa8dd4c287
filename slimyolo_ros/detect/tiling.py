"""Tiled inference: overlapping crops of a large frame (plus, by default, the whole frame) go
through the network and their detections are merged by class-aware NMS, so the small objects of a
4K UAV frame are not shrunk away to nothing at 416 px."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from slimyolo_ros.detect.errors import DetectorError
from slimyolo_ros.detect.nms import batched_nms

# Crops per forward: 85 tiles of a 4K frame at once would need gigabytes of activations.
TILE_BATCH = 8

Window = tuple[int, int, int, int]


def _spans(
    length: int, overlap: float, n: int | None = None, side: int | None = None
) -> list[tuple[int, int]]:
    """``n`` windows (or as many windows of ``side`` as needed) covering ``0..length``, neighbours
    overlapping by ``overlap`` of a window."""
    if side is not None:
        side = min(side, length)
        n = 1 if side >= length else math.ceil((length - side) / (side * (1 - overlap))) + 1
    elif n is None or n <= 1:
        return [(0, length)]
    else:
        side = min(length, math.ceil(length / (n - (n - 1) * overlap)))
    starts = np.linspace(0, length - side, n).round().astype(int)
    return [(int(s), int(s) + side) for s in starts]


def tile_windows(height: int, width: int, rows: int, cols: int, overlap: float) -> list[Window]:
    """``rows × cols`` windows ``(x0, y0, x1, y1)`` covering the image, neighbours overlapping by
    ``overlap`` of a window's side."""
    return [(x0, y0, x1, y1) for (y0, y1) in _spans(height, overlap, n=rows)
            for (x0, x1) in _spans(width, overlap, n=cols)]


@dataclass(frozen=True)
class TileSpec:
    """How a frame is cut: a fixed ``rows × cols`` grid, or square windows of ``size`` pixels
    (0: the network input size, i.e. tiles seen at native resolution) as many as the frame needs."""

    rows: int = 0
    cols: int = 0
    size: int = 0
    overlap: float = 0.2
    full_frame: bool = True

    def windows(self, height: int, width: int, img_size: int) -> list[Window]:
        if self.rows and self.cols:
            tiles = tile_windows(height, width, self.rows, self.cols, self.overlap)
        else:
            side = self.size or img_size
            tiles = [(x0, y0, x1, y1) for (y0, y1) in _spans(height, self.overlap, side=side)
                     for (x0, x1) in _spans(width, self.overlap, side=side)]
        full = (0, 0, width, height)
        if self.full_frame and full not in tiles:
            tiles = [full, *tiles]
        return tiles


def check_overlap(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DetectorError(f"tile_overlap {value!r}: must be a number in [0, 1)") from None
    if not 0.0 <= v < 1.0:
        raise DetectorError(f"tile_overlap {value!r}: must be in [0, 1)")
    return v


def parse_tile(tile: Any, overlap: float = 0.2, full_frame: bool = True) -> TileSpec | None:
    """``None``/``False`` → no tiling; ``True`` → windows of the network input size; ``n`` → n×n;
    ``(rows, cols)`` or ``"ROWSxCOLS"`` → grid;
    ``{"size": px|None, "overlap": f, "rows": r, "cols": c, "full_frame": b}`` → as given."""
    if tile is None or tile is False:
        return None
    if isinstance(tile, TileSpec):
        spec = tile
    elif isinstance(tile, dict):
        spec = _spec_from_dict(tile, overlap, full_frame)
    else:
        rows, cols = _grid(tile)
        spec = TileSpec(rows=rows, cols=cols, overlap=overlap, full_frame=full_frame)
    if bool(spec.rows) != bool(spec.cols) or spec.rows < 0 or spec.cols < 0:
        raise DetectorError(f"tile {tile!r}: give both rows and cols (>= 1) or neither")
    if not 0.0 <= spec.overlap < 1.0:
        raise DetectorError(f"tile overlap {spec.overlap}: must be in [0, 1)")
    if spec.rows == spec.cols == 1:
        return None
    return spec


def _spec_from_dict(tile: dict, overlap: float, full_frame: bool) -> TileSpec:
    unknown = set(tile) - {"size", "overlap", "rows", "cols", "full_frame"}
    if unknown:
        raise DetectorError(f"tile {tile!r}: unknown keys {sorted(unknown)} "
                            f"(expected size, overlap, rows, cols, full_frame)")
    try:
        spec = TileSpec(rows=int(tile.get("rows") or 0), cols=int(tile.get("cols") or 0),
                        size=int(tile.get("size") or 0), overlap=float(tile.get("overlap", overlap)),
                        full_frame=bool(tile.get("full_frame", full_frame)))
    except (TypeError, ValueError):
        raise DetectorError(f"tile {tile!r}: size/rows/cols must be integers, overlap a number") from None
    if spec.size < 0:
        raise DetectorError(f"tile size {spec.size}: must be >= 0 (0: the network input size)")
    return spec


def _grid(tile: Any) -> tuple[int, int]:
    """(rows, cols) of a non-dict tile argument; (0, 0) for ``True`` (windows of the input size)."""
    if isinstance(tile, bool):
        return 0, 0
    if isinstance(tile, (int, np.integer)):
        rows = cols = int(tile)
    elif isinstance(tile, str):
        parts = tile.lower().replace("x", ",").split(",")
        try:
            rows, cols = int(parts[0]), int(parts[-1])
        except ValueError:
            raise DetectorError(f"tile {tile!r}: expected ROWSxCOLS such as 2x3") from None
    else:
        try:
            rows, cols = (int(v) for v in tile)
        except (TypeError, ValueError):
            raise DetectorError(f"tile {tile!r}: expected an int n (n×n), (rows, cols) or a dict") from None
    if rows < 1 or cols < 1:
        raise DetectorError(f"tile {tile!r}: rows and cols must be >= 1")
    return rows, cols


def add_timings(totals: dict[str, float], timings: dict[str, float]) -> None:
    """Add one call's stage timings (ms) into ``totals`` (batches of tiles sum up)."""
    for k, v in timings.items():
        totals[k] = totals.get(k, 0.0) + v


def detect_tiled(
    img: np.ndarray,
    spec: TileSpec,
    img_size: int,
    detect_batch: Callable[[list[np.ndarray]], tuple[list[np.ndarray], dict[str, float]]],
    nms_threshold: float,
    max_detections: int,
) -> tuple[np.ndarray, dict[str, float]]:
    """Detections of ``img`` from its tiles (``detect_batch``: crops → detections in crop pixels,
    stage timings), merged by class-aware NMS; and the summed stage timings (ms) plus ``tiles``."""
    windows = spec.windows(img.shape[0], img.shape[1], img_size)
    crops = [img[y0:y1, x0:x1] for (x0, y0, x1, y1) in windows]
    per_crop: list[np.ndarray] = []
    timings: dict[str, float] = {}
    for start in range(0, len(crops), TILE_BATCH):
        dets, t = detect_batch(crops[start : start + TILE_BATCH])
        per_crop.extend(dets)
        add_timings(timings, t)
    t0 = time.perf_counter()
    parts = []
    for d, (x0, y0, _, _) in zip(per_crop, windows, strict=True):
        if len(d):
            d = d.copy()
            d[:, [0, 2]] += x0
            d[:, [1, 3]] += y0
            parts.append(d)
    if not parts:
        merged = np.zeros((0, 6), np.float32)
    else:
        allb = torch.from_numpy(np.concatenate(parts))
        keep = batched_nms(allb[:, :4], allb[:, 4], allb[:, 5].long(), nms_threshold, max_detections)
        merged = allb[keep].numpy()
    merge_ms = (time.perf_counter() - t0) * 1e3
    add_timings(timings, {"postprocess": merge_ms, "total": merge_ms, "tiles": float(len(windows))})
    return merged, timings
