"""Letterbox: aspect-preserving resize into the network input, and the way back.

The input is ``size`` × ``size``, or with ``rect`` the smallest multiple of the network stride that
holds the resized image on each axis: a 16:9 frame at 416 becomes 416 × 256 instead of 416 × 416
(39% of the square's pixels were padding, and a forward pass costs in proportion to pixels).

The resized width and height are rounded to whole pixels, so the horizontal and vertical scale
differ very slightly from the nominal ``scale``; :func:`unletterbox_boxes` recomputes the exact
per-axis factors from the original shape, so a box goes out and comes back to the same pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

from slimyolo_ros.darknet.input_size import MAX_STRIDE


def resized_shape(height: int, width: int, scale: float) -> tuple[int, int]:
    """(new_h, new_w) of an image of ``height`` × ``width`` resized by ``scale`` (at least 1 px)."""
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def letterbox_shape(height: int, width: int, size: int, rect: bool = False,
                    stride: int = MAX_STRIDE) -> tuple[int, int]:
    """(H, W) of the letterboxed input for an image of ``height`` × ``width``: ``(size, size)``, or
    with ``rect`` the resized image's sides rounded up to multiples of ``stride`` (at most ``size``)."""
    if not rect:
        return size, size
    _, _, (new_h, new_w) = letterbox_params(height, width, size)
    return min(size, -(-new_h // stride) * stride), min(size, -(-new_w // stride) * stride)


def letterbox_params(height: int, width: int, size: int,
                     shape: tuple[int, int] | None = None) -> tuple[float, tuple[int, int], tuple[int, int]]:
    """``(scale, (pad_x, pad_y), (new_h, new_w))`` for fitting ``height`` × ``width`` into ``size``²,
    padded to ``shape`` = (H, W) (default ``size`` × ``size``)."""
    if height <= 0 or width <= 0:
        raise ValueError(f"cannot letterbox an empty image of {height}x{width} pixels")
    scale = min(size / height, size / width)
    new_h, new_w = resized_shape(height, width, scale)
    out_h, out_w = shape or (size, size)
    # Centre the image; an odd leftover pixel goes to the right/bottom.
    return scale, ((out_w - new_w) // 2, (out_h - new_h) // 2), (new_h, new_w)


def letterbox(
    img: np.ndarray, size: int, color: int | tuple[int, int, int] = 114, rect: bool = False
) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Resize ``img`` (H×W×C) keeping its aspect ratio and pad it to ``size`` × ``size`` (with
    ``rect``: to :func:`letterbox_shape`).

    Returns ``(padded, scale, (pad_x, pad_y))``: a network-input pixel ``(x, y)`` is the original
    pixel ``(x0 * scale + pad_x, y0 * scale + pad_y)``.
    """
    h, w = img.shape[:2]
    out_h, out_w = letterbox_shape(h, w, size, rect)
    scale, (pad_x, pad_y), (new_h, new_w) = letterbox_params(h, w, size, (out_h, out_w))
    # Bilinear both ways, as cv2.dnn.blobFromImage does, so a square image gives exactly OpenCV's input.
    if (new_h, new_w) == (h, w):
        resized = img
    else:
        resized = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    if (new_h, new_w) == (out_h, out_w):
        return np.ascontiguousarray(resized), scale, (0, 0)
    channels = 1 if img.ndim == 2 else img.shape[2]
    fill = (color,) * channels if isinstance(color, int) else tuple(color)
    if channels <= 4:  # OpenCV's border scalar has 4 slots
        # One C pass: a numpy broadcast fill of the padding costs most of the letterbox's time.
        padded = cv2.copyMakeBorder(resized, pad_y, out_h - new_h - pad_y, pad_x, out_w - new_w - pad_x,
                                    cv2.BORDER_CONSTANT, value=fill)
        return padded, scale, (pad_x, pad_y)
    padded = np.empty((out_h, out_w, channels), dtype=img.dtype)
    padded[...] = np.asarray(fill, dtype=img.dtype)
    padded[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
    return padded, scale, (pad_x, pad_y)


def unletterbox_boxes(
    boxes: np.ndarray,
    scale: float,
    pad: tuple[int, int],
    orig_shape: tuple[int, int],
    clip: bool = True,
) -> np.ndarray:
    """Map ``x1, y1, x2, y2`` (first four columns of ``boxes``) from network input back to original
    pixels of an image of ``orig_shape`` = (H, W), clipping to the image. Returns a new array."""
    out = np.array(boxes, dtype=np.float32, copy=True)
    if out.size == 0:
        return out.reshape(-1, boxes.shape[1] if boxes.ndim == 2 else 4)
    h, w = orig_shape[:2]
    new_h, new_w = resized_shape(h, w, scale)
    sx, sy = new_w / w, new_h / h
    out[:, [0, 2]] = (out[:, [0, 2]] - pad[0]) / sx
    out[:, [1, 3]] = (out[:, [1, 3]] - pad[1]) / sy
    if clip:
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
    return out


def letterbox_boxes(
    boxes: np.ndarray, scale: float, pad: tuple[int, int], orig_shape: tuple[int, int]
) -> np.ndarray:
    """The forward map of :func:`unletterbox_boxes`: original pixels → network-input pixels."""
    out = np.array(boxes, dtype=np.float32, copy=True)
    if out.size == 0:
        return out
    h, w = orig_shape[:2]
    new_h, new_w = resized_shape(h, w, scale)
    out[:, [0, 2]] = out[:, [0, 2]] * (new_w / w) + pad[0]
    out[:, [1, 3]] = out[:, [1, 3]] * (new_h / h) + pad[1]
    return out
