"""The Detector: the one place where BGR images become detections.

The ROS node, ``slimyolo eval``, ``slimyolo detect`` and the bag replay all call it, so they can never
disagree. Pipeline: letterbox → backend forward (detect/backends.py; the network decodes its boxes) →
class-aware NMS → boxes back to original pixels; optionally per tile (detect/tiling.py). Build one
with :func:`slimyolo_ros.detect.load_detector` (a model file) or :meth:`Detector.from_model` (a model
in memory, e.g. evaluation during training).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from slimyolo_ros.darknet.input_size import check_img_size
from slimyolo_ros.detect.backends import Backend, OnnxRuntimeBackend, TorchBackend, resolve_device
from slimyolo_ros.detect.errors import DetectorError
from slimyolo_ros.detect.letterbox import letterbox, unletterbox_boxes
from slimyolo_ros.detect.nms import postprocess
from slimyolo_ros.detect.options import DetectorOptions, check_max_detections, unit_interval
from slimyolo_ros.detect.tiling import TileSpec, add_timings, check_overlap, detect_tiled, parse_tile


def as_bgr(img: Any) -> np.ndarray:
    """Check an input image and bring it to H×W×3 uint8 BGR (grayscale and BGRA are converted)."""
    if not isinstance(img, np.ndarray):
        raise DetectorError(f"image must be a numpy array (H×W×3 uint8 BGR), got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise DetectorError(f"image dtype must be uint8 (8-bit BGR), got {img.dtype} with shape {img.shape}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        if img.size == 0:
            raise DetectorError(f"image is empty (shape {img.shape})")
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise DetectorError(f"image must be H×W×3 (BGR), H×W×4 (BGRA) or H×W (gray), got shape {img.shape}")
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise DetectorError(f"image is empty (shape {img.shape})")
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img


def class_indices(class_names: Sequence[str], classes: Sequence[str | int] | str | None) -> list[int] | None:
    """Sorted indices of ``classes`` (names or indices; a string is comma-separated); blank names
    are skipped and nothing left means every class (None). Unknown names raise DetectorError."""
    if classes is None:
        return None
    if isinstance(classes, str):
        classes = classes.split(",")
    lookup = {n: i for i, n in enumerate(class_names)}
    idx: list[int] = []
    for c in classes:
        if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
            if not 0 <= c < len(class_names):
                raise DetectorError(f"class index {c} out of range 0..{len(class_names) - 1}")
            idx.append(int(c))
        elif isinstance(c, str) and not c.strip():
            continue
        elif isinstance(c, str) and c.strip() in lookup:
            idx.append(lookup[c.strip()])
        else:
            raise DetectorError(f"unknown class {c!r}; valid names: {', '.join(class_names)}")
    return sorted(set(idx)) or None


class Detector:
    """Images in (H×W×3 uint8 BGR), N×6 float32 detections out: x1, y1, x2, y2 (original pixels),
    score = objectness × class probability, class index.

    Made by :func:`~slimyolo_ros.detect.load_detector` or :meth:`from_model`, which document the
    options. The thresholds, class filter and tiling can be changed between calls (validated).
    ``device``, ``half`` (fp16 in use), ``rect``, ``img_size``, ``backend`` say how it actually runs.
    """

    def __init__(self, runner: Backend, class_names: Sequence[str], img_size: int, options: DetectorOptions,
                 *, weights: Path | None = None):
        # ``options`` were checked when they were made; only what needs the model is checked here.
        self._runner = runner
        self.options = options
        self.backend = "onnxruntime" if isinstance(runner, OnnxRuntimeBackend) else "torch"
        self.device: torch.device = runner.device
        self.half: bool = runner.half
        self.providers: tuple[str, ...] = runner.providers
        self.model: nn.Module | None = runner.model
        self.onnx_path: Path | None = runner.onnx_path
        self.img_size = check_img_size(img_size, "img_size", DetectorError)
        self.class_names: list[str] = list(class_names)
        self.fused = options.fuse and self.model is not None
        self.weights = weights
        self._conf, self._nms = options.conf_threshold, options.nms_threshold
        self._max_det = options.max_detections
        self._class_idx = class_indices(self.class_names, options.classes)
        self._tile_overlap, self._tile_full_frame = options.tile_overlap, options.tile_full_frame
        self._tile: TileSpec | None = options.tile
        self.rect, self.multi_label = options.rect, options.multi_label
        self.last_timings: dict[str, float] = {}
        self.last_input_shape: tuple[int, int] | None = None  # (H, W) of the last network input
        if self.device.type == "cuda":
            self.warmup()

    @property
    def provider(self) -> str:
        """Where the network runs: the ONNX Runtime execution provider in use (the first the session
        registered), or ``torch-cpu``/``torch-cuda`` for the torch backend."""
        return self.providers[0] if self.providers else f"torch-{self.device.type}"

    @classmethod
    def from_model(cls, model: nn.Module, class_names: Sequence[str], img_size: int | None = None,
                   options: DetectorOptions | None = None, **changes: Any) -> Detector:
        """A Detector around a model already in memory (e.g. evaluation during training), with
        ``options`` (default DetectorOptions()) and ``changes`` to them (``conf_threshold=0.001``);
        ``device`` defaults to the model's. With ``fuse`` (default) it works on a folded copy, so
        the caller's model is left untouched."""
        changes.setdefault("device", str(next(model.parameters()).device))
        if img_size is not None:
            changes["img_size"] = img_size
        opts = (options or DetectorOptions()).replace(**changes)
        return detector_for_model(model, class_names, opts, owned=False)

    # ----- settable parameters, validated -----
    @property
    def conf_threshold(self) -> float:
        return self._conf

    @conf_threshold.setter
    def conf_threshold(self, value: float) -> None:
        self._conf = unit_interval("conf_threshold", value)

    @property
    def nms_threshold(self) -> float:
        return self._nms

    @nms_threshold.setter
    def nms_threshold(self, value: float) -> None:
        self._nms = unit_interval("nms_threshold", value)

    @property
    def max_detections(self) -> int:
        return self._max_det

    @max_detections.setter
    def max_detections(self, value: int) -> None:
        self._max_det = check_max_detections(value)

    @property
    def class_filter(self) -> list[str] | None:
        """Names of the classes reported, or None for all."""
        return None if self._class_idx is None else [self.class_names[i] for i in self._class_idx]

    @class_filter.setter
    def class_filter(self, classes: Sequence[str | int] | str | None) -> None:
        self._class_idx = class_indices(self.class_names, classes)

    def check_classes(self, classes: Sequence[str | int] | str | None) -> None:
        """Raise DetectorError if ``classes`` is not a valid class filter (changes nothing)."""
        class_indices(self.class_names, classes)

    @property
    def tile(self) -> TileSpec | None:
        return self._tile

    @tile.setter
    def tile(self, value: Any) -> None:
        self._tile = parse_tile(value, self._tile_overlap, self._tile_full_frame)

    @property
    def tile_overlap(self) -> float:
        return self._tile.overlap if self._tile else self._tile_overlap

    @tile_overlap.setter
    def tile_overlap(self, value: float) -> None:
        self._tile_overlap = check_overlap(value)
        if self._tile is not None:
            self._tile = replace(self._tile, overlap=self._tile_overlap)

    # ----- inference -----
    def warmup(self, runs: int = 2) -> None:
        """Run the network on blank input (CUDA kernels selected and memory pooled before real frames)."""
        blank = np.zeros((1, self.img_size, self.img_size, 3), np.uint8)
        for _ in range(runs):
            self._runner(blank)
        self._runner.sync()

    def __call__(self, img_bgr: np.ndarray) -> np.ndarray:
        img = as_bgr(img_bgr)
        if self._tile is None:
            (dets,), self.last_timings = self._batch([img])
            return dets
        dets, self.last_timings = detect_tiled(img, self._tile, self.img_size, self._batch,
                                               self._nms, self._max_det)
        return dets

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """One N×6 array per image (H×W×3 uint8 BGR each), the same boxes each would get on its own:
        images of one letterbox shape share a forward pass. With ``tile`` set each image is tiled on
        its own. ``last_timings`` sums the stages over the batch."""
        imgs = [as_bgr(img) for img in images]
        if not imgs:
            self.last_timings = {}
            return []
        if self._tile is None:
            out, self.last_timings = self._batch(imgs)
            return out
        out, timings = [], {}
        for img in imgs:
            out.append(self(img))
            add_timings(timings, self.last_timings)
        self.last_timings = timings
        return out

    def _batch(self, images: list[np.ndarray]) -> tuple[list[np.ndarray], dict[str, float]]:
        """Detections per image and the summed stage timings (ms). With ``rect``, images of different
        shapes go through the network one shape at a time: their inputs do not stack, and an image
        then gets the same input (and detections) in any batch as on its own."""
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault(img.shape[:2] if self.rect else (), []).append(i)
        out: list[np.ndarray] = [np.zeros((0, 6), np.float32)] * len(images)
        timings: dict[str, float] = {}
        for idx in groups.values():
            dets, t = self._forward([images[i] for i in idx])
            for i, d in zip(idx, dets, strict=True):
                out[i] = d
            add_timings(timings, t)
        return out, timings

    def _forward(self, images: list[np.ndarray]) -> tuple[list[np.ndarray], dict[str, float]]:
        t0 = time.perf_counter()
        padded, metas = [], []
        for img in images:
            p, scale, pad = letterbox(img, self.img_size, rect=self.rect)
            padded.append(p)
            metas.append((scale, pad, img.shape[:2]))
        batch = padded[0][None] if len(padded) == 1 else np.stack(padded)
        self.last_input_shape = batch.shape[1:3]
        t1 = time.perf_counter()
        pred = self._runner(batch)
        self._runner.sync()
        t2 = time.perf_counter()
        with self._runner.postprocess_threads():
            dets = postprocess(pred, self._conf, self._nms, self._max_det, self._class_idx, self.multi_label)
        results = [unletterbox_boxes(d.cpu().numpy(), *m) for d, m in zip(dets, metas, strict=True)]
        t3 = time.perf_counter()
        return results, {"preprocess": (t1 - t0) * 1e3, "forward": (t2 - t1) * 1e3,
                         "postprocess": (t3 - t2) * 1e3, "total": (t3 - t0) * 1e3}

    def __repr__(self) -> str:
        return (f"Detector(backend={self.backend!r}, device={str(self.device)!r}, "
                f"provider={self.provider!r}, img_size={self.img_size}, classes={len(self.class_names)}, "
                f"conf={self._conf}, nms={self._nms}, half={self.half}, fused={self.fused}, "
                f"rect={self.rect}, "
                f"tile={self._tile})")


def detector_for_model(model: nn.Module, class_names: Sequence[str], options: DetectorOptions, *,
                       owned: bool, weights: Path | None = None) -> Detector:
    """A Detector running ``model`` (``owned``: nobody else holds it, so its memory layout may change).

    ``options.fuse`` folds BatchNorm into the convolutions of a copy of the model; ``channels_last``
    runs the torch model in NHWC layout, on a model the Detector owns (its own copy or one it loaded).
    With backend onnxruntime the model is exported once to a cached ONNX file (``onnx_cache``)."""
    names = list(class_names)
    n = getattr(model, "num_classes", 0)
    if not names:
        names = [str(i) for i in range(n)]
    elif n and len(names) != n:
        raise DetectorError(f"{len(names)} class names for a model with {n} classes")
    size = options.img_size or check_img_size(getattr(model, "img_size", None) or 416, "the model's img_size",
                                              DetectorError)
    if options.fuse:
        from slimyolo_ros.detect.fuse import fuse_model

        model, owned = fuse_model(model), True
    else:
        model = model.eval()
    runner: Backend
    if options.backend == "torch":
        device = resolve_device(options.device)
        runner = TorchBackend(model, device, options.half, options.channels_last and owned)
    else:
        from slimyolo_ros.export.onnx import cached_onnx

        onnx_path = cached_onnx(model, size, names, cache_dir=options.onnx_cache)
        runner = OnnxRuntimeBackend(onnx_path, options.device, options.providers, options.trt_cache_dir,
                                    model)
    return Detector(runner, names, size, options, weights=weights)
