"""The Detector: the one place where BGR images become detections.

The ROS node, ``slimyolo eval``, ``slimyolo detect`` and the bag replay all call it, so they can never
disagree. Pipeline: letterbox → forward (torch or ONNX Runtime) → decode (in the network) →
class-aware NMS → boxes back to original pixels. Optionally tiled: overlapping crops of a large frame
(plus the whole frame) go through the network as one batch and their detections are merged by NMS,
so small objects of a 4K UAV frame are not shrunk away to nothing at 416 px.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from slimyolo_ros.detect.letterbox import letterbox, unletterbox_boxes
from slimyolo_ros.detect.nms import batched_nms, postprocess
from slimyolo_ros.errors import SlimyoloError

BACKENDS = ("torch", "onnxruntime")
# Largest stride of every cfg in the family; the input side must be a multiple of it.
MAX_STRIDE = 32
TILE_BATCH = 8


class DetectorError(SlimyoloError, ValueError):
    """Bad Detector argument or input (device, threshold, class name, image); a ValueError too."""


_warned_cpu_fallback = False


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``auto`` → first GPU if torch sees one, else CPU (warned once per process);
    ``cpu``, ``cuda``, ``cuda:N`` are checked against what torch can actually use."""
    global _warned_cpu_fallback
    if isinstance(device, torch.device):
        device = str(device)
    name = (device or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda:0")
        if not _warned_cpu_fallback:
            _warned_cpu_fallback = True
            warnings.warn("device='auto': no CUDA GPU visible to torch, the Detector runs on the CPU",
                          RuntimeWarning, stacklevel=3)
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DetectorError(
                f"device {device!r}: torch {torch.__version__} sees no CUDA GPU (torch.cuda.is_available() "
                f"is False; a CPU-only torch build or no driver); use device='cpu' or 'auto' "
                f"(docs/deploy.md explains installing a CUDA build of torch)")
        index = 0
        if ":" in name:
            try:
                index = int(name.split(":", 1)[1])
            except ValueError:
                raise DetectorError(f"device {device!r}: expected cuda:N with an integer N") from None
        if not 0 <= index < torch.cuda.device_count():
            raise DetectorError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) visible "
                                f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
        return torch.device(f"cuda:{index}")
    raise DetectorError(f"device {device!r}: expected one of auto, cpu, cuda, cuda:N")


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


def tile_windows(
    height: int, width: int, rows: int, cols: int, overlap: float
) -> list[tuple[int, int, int, int]]:
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

    def windows(self, height: int, width: int, img_size: int) -> list[tuple[int, int, int, int]]:
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


def parse_tile(tile: Any, overlap: float = 0.2, full_frame: bool = True) -> TileSpec | None:
    """``None``/``False`` → no tiling; ``n`` → n×n; ``(rows, cols)`` or ``"ROWSxCOLS"`` → grid;
    ``{"size": px|None, "overlap": f, "rows": r, "cols": c, "full_frame": b}`` → as given."""
    if tile is None or tile is False:
        return None
    if isinstance(tile, TileSpec):
        spec = tile
    elif isinstance(tile, dict):
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
    else:
        if isinstance(tile, bool):
            rows = cols = 0  # tile=True: windows of the network input size
        elif isinstance(tile, (int, np.integer)):
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
                raise DetectorError(f"tile {tile!r}: expected an int n (n×n), (rows, cols) "
                                    f"or a dict") from None
        if not isinstance(tile, bool) and (rows < 1 or cols < 1):
            raise DetectorError(f"tile {tile!r}: rows and cols must be >= 1")
        spec = TileSpec(rows=rows, cols=cols, overlap=overlap, full_frame=full_frame)
    if bool(spec.rows) != bool(spec.cols) or spec.rows < 0 or spec.cols < 0:
        raise DetectorError(f"tile {tile!r}: give both rows and cols (>= 1) or neither")
    if not 0.0 <= spec.overlap < 1.0:
        raise DetectorError(f"tile overlap {spec.overlap}: must be in [0, 1)")
    if spec.rows == spec.cols == 1:
        return None
    return spec


class _TorchBackend:
    def __init__(self, model: nn.Module, device: torch.device, half: bool, channels_last: bool):
        self.model = model.to(device).eval()
        self.device, self.half, self.channels_last = device, half, channels_last
        if half:
            self.model.half()
        if channels_last:
            # oneDNN (CPU) and cuDNN (tensor cores) run NHWC convolutions faster: yolov3-tiny at 416
            # went from 97 to 68 ms on the 2-core dev CPU; YOLOv3-SPP3 unchanged.
            self.model.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> torch.Tensor:
        # uint8 crosses to the device (4x less than float), the channel flip and scaling run there.
        x = torch.from_numpy(batch).to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).flip(1).to(torch.float16 if self.half else torch.float32).mul_(1 / 255)
        x = x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
        pred, _ = self.model(x)
        return pred.float()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


class _OnnxRuntimeBackend:
    def __init__(self, path: Path, device: torch.device):
        from slimyolo_ros.export.onnx import ort_session

        self.session = ort_session(path, device)
        self.input_name = self.session.get_inputs()[0].name
        self.path = path

    def __call__(self, batch: np.ndarray) -> torch.Tensor:
        x = np.ascontiguousarray(batch[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32)
        x *= np.float32(1 / 255)
        (pred,) = self.session.run(None, {self.input_name: x})
        return torch.from_numpy(pred)

    def sync(self) -> None:
        pass


@contextmanager
def _single_threaded(enabled: bool) -> Iterator[None]:
    """torch on one intra-op thread inside the block, restored after.

    With ONNX Runtime doing the forward, torch only post-processes a few hundred candidates; its
    OpenMP workers have slept through the forward (OMP_WAIT_POLICY=PASSIVE) and waking them for each
    small op costs more than the op: decode+NMS of slim-95's 1080p frame, 3.3-4.3 ms on 2 threads vs
    2.4-3.4 ms on 1 (2-core dev CPU, measured right after an ORT forward). Switching is ~0.3 us.
    """
    if not enabled:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class Detector:
    """Images in (H×W×3 uint8 BGR), N×6 float32 detections out: x1, y1, x2, y2 (original pixels),
    score = objectness × class probability, class index.

    ``weights``: a ``.pt`` checkpoint, Darknet ``.weights`` (with ``cfg``) or, for
    ``backend="onnxruntime"``, an ``.onnx`` written by ``slimyolo export --decoded``. With the
    onnxruntime backend and ``.pt``/``.weights``, the model is exported once to a cache file
    (``onnx_cache`` folder, default ``$SLIMYOLO_CACHE`` or ``~/.cache/slimyolo_ros``).

    ``fuse`` folds BatchNorm into the convolutions of a private copy of the model (exact to ~1e-6,
    faster); ``channels_last`` runs the torch model in NHWC memory layout (faster convolutions).
    ``tile`` (see :func:`parse_tile`: n, (rows, cols), or {"size": px, "overlap": f}) runs
    overlapping crops (``tile_overlap`` of a crop's side) plus, if ``tile_full_frame``, the whole
    frame through the network as one batch, and merges their detections with class-aware NMS.
    ``rect`` (default) letterboxes to the smallest stride multiple that holds the resized image
    instead of ``img_size``², when the images of a batch share one shape: a 1920x1080 frame at 416
    runs at 416x256, a 1.3-1.6x faster forward (docs/benchmarks.md), the objects at the same scale.
    A fixed-shape ``.onnx`` (exported without ``--dynamic``) runs square.
    """

    def __init__(
        self,
        weights: str | os.PathLike | None,
        cfg: str | os.PathLike | None = None,
        names: str | os.PathLike | None = None,
        device: str | torch.device = "auto",
        half: bool = False,
        img_size: int | None = None,
        conf_threshold: float = 0.25,
        nms_threshold: float = 0.45,
        max_detections: int = 300,
        classes: Sequence[str | int] | None = None,
        backend: str = "torch",
        tile: int | tuple[int, int] | str | dict | None = None,
        *,
        fuse: bool = True,
        channels_last: bool = True,
        multi_label: bool = False,
        rect: bool = True,
        tile_overlap: float = 0.2,
        tile_full_frame: bool = True,
        onnx_cache: str | os.PathLike | None = None,
        _model: nn.Module | None = None,
        _class_names: Sequence[str] | None = None,
    ):
        if backend not in BACKENDS:
            raise DetectorError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
        self.backend = backend
        # Cheap argument checks before the (slow) model load.
        self.conf_threshold = conf_threshold
        self.nms_threshold = nms_threshold
        self.max_detections = max_detections
        self._tile = None
        self._tile_full_frame = bool(tile_full_frame)
        self.tile_overlap = tile_overlap
        self.tile = tile
        self.device = resolve_device(device)
        if half and self.device.type != "cuda":
            warnings.warn(f"half=True ignored on {self.device}: fp16 is only used on CUDA", RuntimeWarning,
                          stacklevel=2)
            half = False
        if half and backend != "torch":
            warnings.warn("half=True ignored with the onnxruntime backend (the fp32 graph is used)",
                          RuntimeWarning, stacklevel=2)
            half = False
        self.half = half
        self.fused = False
        self.weights = Path(weights) if weights is not None else None

        onnx_path: Path | None = None
        model = _model
        if model is not None:
            class_names = list(_class_names or [])
            size = img_size or getattr(model, "img_size", None)
        elif self.weights is not None and self.weights.suffix == ".onnx":
            if backend != "onnxruntime":
                raise DetectorError(f"{self.weights}: an .onnx model needs backend='onnxruntime'")
            from slimyolo_ros.export.onnx import read_metadata

            meta = read_metadata(self.weights)
            if meta.get("outputs") != "decoded":
                raise DetectorError(f"{self.weights}: the Detector needs an ONNX exported with decoded "
                                    f"boxes (slimyolo export --decoded); this one has "
                                    f"outputs={meta.get('outputs')!r}")
            onnx_path = self.weights
            if names is not None:
                from slimyolo_ros.darknet.checkpoint import load_names

                class_names = load_names(names)
            else:
                class_names = list(meta.get("class_names") or [])
            size = int(meta["img_size"])
            if rect and not meta.get("dynamic"):
                rect = False  # a fixed-shape graph: square inputs only (export --dynamic for rect)
            if img_size is not None and int(img_size) != size:
                raise DetectorError(f"{self.weights}: exported for img_size {size}, img_size={img_size} "
                                    f"asked; export again with --img-size {img_size}")
        elif self.weights is not None:
            from slimyolo_ros.darknet.checkpoint import load_model

            model, class_names, size = load_model(self.weights, cfg=cfg, names=names, device="cpu")
            size = img_size or size
        else:
            raise DetectorError("Detector needs weights (.pt, .weights or .onnx) or Detector.from_model(...)")

        self.img_size = int(img_size or size or 416)
        if self.img_size < MAX_STRIDE or self.img_size % MAX_STRIDE:
            raise DetectorError(f"img_size {self.img_size}: must be a positive multiple of {MAX_STRIDE}")
        self.class_names: list[str] = list(class_names)
        n = getattr(model, "num_classes", 0)
        if not self.class_names:
            self.class_names = [str(i) for i in range(n)]
        elif n and len(self.class_names) != n:
            raise DetectorError(f"{len(self.class_names)} class names for a model with {n} classes")

        if model is not None:
            if fuse:
                from slimyolo_ros.detect.fuse import fuse_model

                model = fuse_model(model)
                self.fused = True
            else:
                model = model.eval()
        if backend == "torch":
            # Only on a model the Detector owns: a caller's (training) model keeps its memory layout.
            owned = self.fused or _model is None
            self._backend: Any = _TorchBackend(model, self.device, self.half, channels_last and owned)
            self.model = self._backend.model
        else:
            if onnx_path is None:
                from slimyolo_ros.export.onnx import cached_onnx

                onnx_path = cached_onnx(model, self.img_size, self.class_names, cache_dir=onnx_cache)
            self._backend = _OnnxRuntimeBackend(onnx_path, self.device)
            self.model = model
        self.onnx_path = onnx_path
        # torch post-processing next to an ORT forward on the CPU: one thread (see _single_threaded)
        self._post_single_thread = backend == "onnxruntime" and self.device.type == "cpu"

        self.multi_label = bool(multi_label)
        self.rect = bool(rect)
        self.class_filter = classes
        self.last_timings: dict[str, float] = {}
        self.last_input_shape: tuple[int, int] | None = None  # (H, W) of the last network input
        if self.device.type == "cuda":
            self.warmup()

    @classmethod
    def from_model(cls, model: nn.Module, class_names: Sequence[str], img_size: int | None = None,
                   **kw: Any) -> Detector:
        """A Detector around a model already in memory (e.g. evaluation during training). With
        ``fuse=True`` (default) it works on a folded copy, so the caller's model is left untouched."""
        kw.setdefault("device", next(model.parameters()).device)
        return cls(None, img_size=img_size, _model=model, _class_names=list(class_names), **kw)

    # ----- settable parameters, validated -----
    @property
    def conf_threshold(self) -> float:
        return self._conf

    @conf_threshold.setter
    def conf_threshold(self, value: float) -> None:
        self._conf = _unit_interval("conf_threshold", value)

    @property
    def nms_threshold(self) -> float:
        return self._nms

    @nms_threshold.setter
    def nms_threshold(self, value: float) -> None:
        self._nms = _unit_interval("nms_threshold", value)

    @property
    def max_detections(self) -> int:
        return self._max_det

    @max_detections.setter
    def max_detections(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise DetectorError(f"max_detections {value!r}: must be an integer >= 1")
        self._max_det = int(value)

    @property
    def class_filter(self) -> list[str] | None:
        """Names of the classes reported, or None for all."""
        return None if self._class_idx is None else [self.class_names[i] for i in self._class_idx]

    @class_filter.setter
    def class_filter(self, classes: Sequence[str | int] | str | None) -> None:
        if classes is None:
            self._class_idx = None
            return
        if isinstance(classes, str):
            classes = [c for c in classes.split(",") if c.strip()]
        lookup = {n: i for i, n in enumerate(self.class_names)}
        idx: list[int] = []
        for c in classes:
            if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
                if not 0 <= c < len(self.class_names):
                    raise DetectorError(f"class index {c} out of range 0..{len(self.class_names) - 1}")
                idx.append(int(c))
            elif isinstance(c, str) and c.strip() in lookup:
                idx.append(lookup[c.strip()])
            else:
                raise DetectorError(f"unknown class {c!r}; valid names: {', '.join(self.class_names)}")
        self._class_idx = sorted(set(idx))

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
        value = float(value)
        if not 0.0 <= value < 1.0:
            raise DetectorError(f"tile_overlap {value}: must be in [0, 1)")
        self._tile_overlap = value
        if self._tile is not None:
            self._tile = replace(self._tile, overlap=value)

    # ----- inference -----
    def warmup(self, runs: int = 2) -> None:
        """Run the network on blank input (CUDA kernels selected and memory pooled before real frames)."""
        blank = np.zeros((1, self.img_size, self.img_size, 3), np.uint8)
        for _ in range(runs):
            self._backend(blank)
        self._backend.sync()

    def __call__(self, img_bgr: np.ndarray) -> np.ndarray:
        img = as_bgr(img_bgr)
        if self._tile is None:
            return self._detect([img])[0]
        return self._detect_tiled(img)

    def detect_many(self, images: Sequence[np.ndarray], batch_size: int = 8) -> list[np.ndarray]:
        """Detections for each image; images go through the network ``batch_size`` at a time."""
        out: list[np.ndarray] = []
        totals: dict[str, float] = {}
        for start in range(0, len(images), batch_size):
            chunk = [as_bgr(im) for im in images[start : start + batch_size]]
            if self._tile is None:
                out.extend(self._detect(chunk))
            else:
                out.extend(self._detect_tiled(im) for im in chunk)
            _add_timings(totals, self.last_timings)
        self.last_timings = totals
        return out

    def _detect(self, images: list[np.ndarray]) -> list[np.ndarray]:
        if self.rect and len({img.shape[:2] for img in images}) > 1:
            # Rectangular inputs of different shapes do not stack: one batch per shape, so an image
            # gets the same input (and detections) in any batch as on its own.
            return self._detect_by_shape(images)
        t0 = time.perf_counter()
        padded, metas = [], []
        for img in images:
            p, scale, pad = letterbox(img, self.img_size, rect=self.rect)
            padded.append(p)
            metas.append((scale, pad, img.shape[:2]))
        batch = padded[0][None] if len(padded) == 1 else np.stack(padded)
        self.last_input_shape = batch.shape[1:3]
        t1 = time.perf_counter()
        pred = self._backend(batch)
        self._backend.sync()
        t2 = time.perf_counter()
        with _single_threaded(self._post_single_thread):
            dets = postprocess(pred, self._conf, self._nms, self._max_det, self._class_idx, self.multi_label)
        results = [unletterbox_boxes(d.cpu().numpy(), *m) for d, m in zip(dets, metas, strict=True)]
        t3 = time.perf_counter()
        self.last_timings = {"preprocess": (t1 - t0) * 1e3, "forward": (t2 - t1) * 1e3,
                             "postprocess": (t3 - t2) * 1e3, "total": (t3 - t0) * 1e3}
        return results

    def _detect_by_shape(self, images: list[np.ndarray]) -> list[np.ndarray]:
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault(img.shape[:2], []).append(i)
        out: list[np.ndarray] = [np.zeros((0, 6), np.float32)] * len(images)
        timings: dict[str, float] = {}
        for idx in groups.values():
            for i, d in zip(idx, self._detect([images[i] for i in idx]), strict=True):
                out[i] = d
            _add_timings(timings, self.last_timings)
        self.last_timings = timings
        return out

    def _detect_tiled(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        windows = self._tile.windows(h, w, self.img_size)
        crops = [img[y0:y1, x0:x1] for (x0, y0, x1, y1) in windows]
        per_crop: list[np.ndarray] = []
        timings: dict[str, float] = {}
        # Bounded batches: 85 tiles of a 4K frame at once would need gigabytes of activations.
        for start in range(0, len(crops), TILE_BATCH):
            per_crop.extend(self._detect(crops[start : start + TILE_BATCH]))
            _add_timings(timings, self.last_timings)
        self.last_timings = timings
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
            keep = batched_nms(allb[:, :4], allb[:, 4], allb[:, 5].long(), self._nms, self._max_det)
            merged = allb[keep].numpy()
        self.last_timings["postprocess"] += (time.perf_counter() - t0) * 1e3
        self.last_timings["total"] += (time.perf_counter() - t0) * 1e3
        self.last_timings["tiles"] = float(len(windows))
        return merged

    def __repr__(self) -> str:
        return (f"Detector(backend={self.backend!r}, device={str(self.device)!r}, img_size={self.img_size}, "
                f"classes={len(self.class_names)}, conf={self._conf}, nms={self._nms}, half={self.half}, "
                f"fused={self.fused}, rect={self.rect}, tile={self._tile})")


def _add_timings(totals: dict[str, float], timings: dict[str, float]) -> None:
    """Add one call's stage timings (ms) into ``totals`` (batches, tiles and shape groups sum up)."""
    for k, v in timings.items():
        totals[k] = totals.get(k, 0.0) + v


def _unit_interval(name: str, value: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DetectorError(f"{name} {value!r}: must be a number in [0, 1]") from None
    if not 0.0 <= v <= 1.0 or math.isnan(v):
        raise DetectorError(f"{name} {value!r}: must be in [0, 1]")
    return v
