"""What the dataset readers found wrong, one clear line each.

A bad label line or file raises ``DatasetError`` naming ``file:line``, or with ``skip_bad`` is dropped
with a warning. Conditions that are normal in real datasets are counted and said once per dataset:
images without labels (trained on as background) and boxes reaching past the image border (clipped).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from slimyolo_ros.errors import DatasetError

log = logging.getLogger(__name__)
_MAX_WARNINGS = 20  # a badly broken dataset should not flood the log; the count is always reported


class Problems:
    """Collects (``skip_bad``) or raises on bad lines; counts background images and clipped boxes."""

    def __init__(self, skip_bad: bool):
        self.skip_bad = skip_bad
        self.items: list[str] = []
        self.background = 0
        self.clipped = 0
        self.first_clipped = ""

    def bad(self, message: str) -> None:
        if not self.skip_bad:
            raise DatasetError(message)
        self.items.append(message)
        if len(self.items) <= _MAX_WARNINGS:
            log.warning("skipping: %s", message)

    def clip(self, box: tuple[float, float, float, float], width: int, height: int,
             where: str) -> tuple[float, float, float, float] | None:
        """``box`` (x1, y1, x2, y2 pixels) clipped to the image; None (and a bad line) when nothing of it is
        inside. Half a pixel of overshoot is rounding, not counted."""
        x1, y1, x2, y2 = box
        if not (x2 > x1 and y2 > y1 and all(np.isfinite(box))):
            self.bad(f"{where}: box {_fmt(box)} has no area (x2 <= x1 or y2 <= y1)")
            return None
        c = (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
        if c[2] <= c[0] or c[3] <= c[1]:
            self.bad(f"{where}: box {_fmt(box)} (x1,y1,x2,y2 px) lies outside the {width}x{height} image")
            return None
        if min(x1, y1) < -0.5 or x2 > width + 0.5 or y2 > height + 0.5:
            self.clipped += 1
            self.first_clipped = self.first_clipped or f"{where}: {_fmt(box)} in {width}x{height}"
        return c

    def report(self, source: str | Path, n_images: int) -> None:
        if self.background:
            log.info("%s: %d of %d images have no labels (trained on as background images)", source,
                     self.background, n_images)
        if self.clipped:
            log.warning("%s: %d box(es) reach outside their image and were clipped to it (first: %s)", source,
                        self.clipped, self.first_clipped)
        if self.items:
            log.warning("%s: skipped %d bad label line(s)/file(s)", source, len(self.items))


def _fmt(box) -> str:
    return ",".join(f"{v:.1f}" for v in box)


def arrays(boxes: list, classes: list, ignore: list | None = None) -> dict:
    """The array fields of a ``Sample`` from python lists."""
    return {"boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
            "classes": np.asarray(classes, np.int64),
            "ignore": np.asarray(ignore or [], np.float32).reshape(-1, 4)}
