"""Annotated images: detection boxes with class name and score, for people to look at.

Used by ``slimyolo detect --out``, the node's debug image and bag-replay frames.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from slimyolo_ros.io_utils import atomic_write_bytes

# Distinct, saturated BGR colours; class i uses PALETTE[i % len(PALETTE)].
PALETTE: tuple[tuple[int, int, int], ...] = (
    (56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72),
    (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0), (168, 153, 44), (255, 194, 0),
    (147, 69, 52), (255, 115, 100), (236, 24, 0), (255, 56, 132), (133, 0, 82), (255, 56, 203),
    (200, 149, 255), (199, 55, 255),
)


def class_color(cls: int) -> tuple[int, int, int]:
    return PALETTE[int(cls) % len(PALETTE)]


def _canvas(img: np.ndarray, thickness: int | None) -> tuple[np.ndarray, int, float]:
    """A BGR copy of ``img`` (gray and BGRA converted), and a line width and font scale that follow the
    image size, so boxes stay visible on 4K frames."""
    out = np.ascontiguousarray(img if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)).copy()
    if out.shape[2] == 4:
        out = cv2.cvtColor(out, cv2.COLOR_BGRA2BGR)
    h, w = out.shape[:2]
    lw = thickness or max(1, round((h + w) / 2 * 0.003))
    return out, lw, max(0.4, lw / 3)


def _labelled_box(out: np.ndarray, box: Sequence[float], label: str, color: tuple[int, int, int], lw: int,
                  font_scale: float) -> None:
    x1, y1, x2, y2 = box
    p1, p2 = (int(round(x1)), int(round(y1))), (int(round(x2)), int(round(y2)))
    cv2.rectangle(out, p1, p2, color, lw, cv2.LINE_AA)
    (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, max(1, lw // 2))
    # Label above the box, or inside it when the box touches the top edge.
    top = p1[1] - th - base - 2 >= 0
    y_text = p1[1] - base - 1 if top else p1[1] + th + 1
    bg_y1, bg_y2 = (p1[1] - th - base - 2, p1[1]) if top else (p1[1], p1[1] + th + base + 2)
    cv2.rectangle(out, (p1[0], bg_y1), (p1[0] + tw + 2, bg_y2), color, -1)
    cv2.putText(out, label, (p1[0] + 1, y_text), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255),
                max(1, lw // 2), cv2.LINE_AA)


def draw_detections(
    img: np.ndarray,
    dets: np.ndarray,
    class_names: Sequence[str] | None = None,
    thickness: int | None = None,
    show_score: bool = True,
) -> np.ndarray:
    """A copy of ``img`` (BGR, or gray which is converted) with the N×6 ``dets`` drawn on it.

    Line width and font scale follow the image size, so boxes stay visible on 4K frames.
    """
    out, lw, font_scale = _canvas(img, thickness)
    dets = np.asarray(dets, np.float32).reshape(-1, 6)
    # Lowest score first so the most confident boxes end up on top.
    for x1, y1, x2, y2, score, cls in dets[np.argsort(dets[:, 4])].tolist():
        c = int(cls)
        color = class_color(c)
        name = class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c)
        label = f"{name} {score:.2f}" if show_score else name
        _labelled_box(out, (x1, y1, x2, y2), label, color, lw, font_scale)
    return out


def write_png(path: str | os.PathLike, img: np.ndarray) -> Path:
    """Encode ``img`` as PNG and write it atomically."""
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise ValueError(f"{path}: OpenCV could not encode a {img.shape} {img.dtype} image as PNG")
    return atomic_write_bytes(path, buf.tobytes())


def track_color(track_id: str) -> tuple[int, int, int]:
    """A stable colour per track id (the same id keeps its colour across frames and runs)."""
    import zlib

    return PALETTE[zlib.crc32(str(track_id).encode()) % len(PALETTE)]


def draw_tracks(
    img: np.ndarray,
    boxes: np.ndarray,
    ids: Sequence[str],
    classes: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    trails: dict[str, Sequence[tuple[float, float]]] | None = None,
    thickness: int | None = None,
) -> np.ndarray:
    """A copy of ``img`` with tracked boxes labelled ``#id class`` and each track's recent path.

    ``trails`` maps a track id to its recent box centres, oldest first (see ``TrailHistory``); the
    polyline is drawn in the track's colour so identities can be followed by eye.
    """
    out, lw, font_scale = _canvas(img, thickness)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    for tid, pts in (trails or {}).items():
        if len(pts) >= 2:
            poly = np.round(np.asarray(pts, np.float32)).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(out, [poly], False, track_color(tid), max(1, lw), cv2.LINE_AA)
    for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        tid = str(ids[i])
        color = track_color(tid)
        label = f"#{tid}"
        if classes is not None:
            c = int(classes[i])
            known = class_names is not None and 0 <= c < len(class_names)
            label += " " + (class_names[c] if known else str(c))
        _labelled_box(out, (x1, y1, x2, y2), label, color, lw, font_scale)
    return out


class TrailHistory:
    """The last ``length`` box centres of every track, for ``draw_tracks``; ids not seen for ``length``
    frames are forgotten so memory stays bounded on long flights."""

    def __init__(self, length: int = 20):
        if length < 1:
            raise ValueError(f"trail length {length} must be >= 1")
        self.length = length
        self._pts: dict[str, list[tuple[float, float]]] = {}
        self._seen: dict[str, int] = {}
        self._frame = 0

    def update(self, boxes: np.ndarray, ids: Sequence[str]) -> dict[str, list[tuple[float, float]]]:
        """Add one frame's tracks; returns the trails of the tracks in this frame."""
        self._frame += 1
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        for (x1, y1, x2, y2), tid in zip(boxes.tolist(), ids, strict=True):
            pts = self._pts.setdefault(str(tid), [])
            pts.append(((x1 + x2) / 2, (y1 + y2) / 2))
            del pts[: -self.length]
            self._seen[str(tid)] = self._frame
        for tid in [t for t, f in self._seen.items() if self._frame - f >= self.length]:
            del self._pts[tid], self._seen[tid]
        return {str(t): self._pts[str(t)] for t in ids}
