"""Compositing patches into a float32 scene: the window a placed patch covers, alpha blending, shadows.

A patch is placed by its top-left corner (x0, y0) in scene pixels and may hang over any border; only the
part inside the scene is drawn (:class:`Window`). Patches are float32, BGRA with alpha in [0, 1] (or a bare
alpha mask for shadows).
"""

from __future__ import annotations

import numpy as np


class Window:
    """The part of a w×h patch placed at (x0, y0) that lies inside a W×H image."""

    def __init__(self, x0: int, y0: int, w: int, h: int, W: int, H: int):
        self.x0, self.y0 = x0, y0
        self.sx0, self.sy0 = max(x0, 0), max(y0, 0)
        self.sx1, self.sy1 = min(x0 + w, W), min(y0 + h, H)
        self.empty = self.sx1 <= self.sx0 or self.sy1 <= self.sy0

    @classmethod
    def placed(cls, image: np.ndarray, patch: np.ndarray, x0: int, y0: int) -> Window:
        """The window of ``patch`` placed at (x0, y0) in ``image``."""
        return cls(x0, y0, patch.shape[1], patch.shape[0], image.shape[1], image.shape[0])

    def of(self, img: np.ndarray) -> np.ndarray:
        """The window's pixels of the image (a view)."""
        return img[self.sy0 : self.sy1, self.sx0 : self.sx1]

    def patch(self, p: np.ndarray) -> np.ndarray:
        """The part of the patch inside the image (a view)."""
        return p[self.sy0 - self.y0 : self.sy1 - self.y0, self.sx0 - self.x0 : self.sx1 - self.x0]

    def intersects(self, box: np.ndarray) -> bool:
        """Whether an x1, y1, x2, y2 box overlaps the window."""
        return box[0] < self.sx1 and box[2] > self.sx0 and box[1] < self.sy1 and box[3] > self.sy0


def blend(scene: np.ndarray, patch: np.ndarray, x0: int, y0: int) -> None:
    """Alpha-composite a BGRA patch at (x0, y0), in place; parts outside the scene are cut off."""
    win = Window.placed(scene, patch, x0, y0)
    if win.empty:
        return
    p = win.patch(patch)
    a = p[..., 3:4]
    region = win.of(scene)
    region *= 1.0 - a
    region += a * p[..., :3]


def darken(scene: np.ndarray, alpha: np.ndarray, x0: int, y0: int, strength: float) -> None:
    """A shadow: scale the scene by ``1 - strength * alpha`` under the mask placed at (x0, y0), in place."""
    win = Window.placed(scene, alpha, x0, y0)
    if win.empty:
        return
    a = win.patch(alpha)[..., None]
    win.of(scene)[:] *= 1.0 - strength * a


def alpha_box(alpha: np.ndarray, thresh: float = 0.35) -> tuple[int, int, int, int] | None:
    """The x1, y1, x2, y2 box (exclusive end) of the pixels with alpha above ``thresh``; None when none."""
    ys, xs = np.nonzero(alpha > thresh)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
