"""``load_detector``: a model file and inference options in, a ready Detector out.

The node, ``slimyolo eval``, ``slimyolo detect``, the bag replay and the benchmarks only map their
parameters onto this call; every option is checked here (or by the Detector it builds), once, and
a bad one raises DetectorError naming the value.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from slimyolo_ros.detect.backends import OnnxRuntimeBackend, check_backend, resolve_device
from slimyolo_ros.detect.detector import (
    Detector,
    check_img_size,
    check_max_detections,
    detector_for_model,
    unit_interval,
)
from slimyolo_ros.detect.errors import DetectorError
from slimyolo_ros.detect.tiling import check_overlap, parse_tile


def load_detector(
    weights: str | os.PathLike,
    *,
    cfg: str | os.PathLike | None = None,
    names: str | os.PathLike | None = None,
    backend: str = "torch",
    device: str | torch.device = "auto",
    half: bool = False,
    img_size: int | None = None,
    rect: bool = True,
    tile: Any = None,
    tile_overlap: float = 0.2,
    tile_full_frame: bool = True,
    conf_threshold: float = 0.25,
    nms_threshold: float = 0.45,
    max_detections: int = 300,
    classes: Sequence[str | int] | str | None = None,
    multi_label: bool = False,
    onnx_cache: str | os.PathLike | None = None,
    fuse: bool = True,
    channels_last: bool = True,
) -> Detector:
    """Load ``weights`` into a Detector.

    ``weights``: a ``.pt`` checkpoint, Darknet ``.weights`` (with ``cfg``) or, for
    ``backend="onnxruntime"``, an ``.onnx`` written by ``slimyolo export --decoded``. With the
    onnxruntime backend and ``.pt``/``.weights``, the model is exported once to a cache file
    (``onnx_cache`` folder, default ``$SLIMYOLO_CACHE`` or ``~/.cache/slimyolo_ros``).

    ``device``: auto | cpu | cuda | cuda:N (auto: the first GPU, else the CPU, logged as a warning).
    ``half``: fp16 where it runs (torch on CUDA); ``Detector.half`` says whether it is used.
    ``img_size``: network input side (a multiple of 32), default the model's. ``rect`` (default)
    letterboxes to the smallest multiple of 32 per side that holds the resized image instead of
    ``img_size``² (a 1920x1080 frame at 416 runs at 416x256); a fixed-shape ``.onnx`` (exported
    without ``--dynamic``) runs square (``Detector.rect`` is then False).
    ``tile`` (see :func:`~slimyolo_ros.detect.tiling.parse_tile`: n, (rows, cols), "RxC" or
    {"size": px, "overlap": f}) runs overlapping crops (``tile_overlap`` of a crop's side) plus, if
    ``tile_full_frame``, the whole frame, and merges their detections with class-aware NMS.
    ``conf_threshold``/``nms_threshold`` in [0, 1], ``max_detections`` per image, ``classes``: the
    class names (or indices) reported, default all; ``multi_label``: a box per class above the
    threshold instead of its best class only.
    ``fuse`` folds BatchNorm into the convolutions (exact to ~1e-6, faster); ``channels_last`` runs
    the torch model in NHWC memory layout (faster convolutions).
    """
    # The cheap checks first, so a typo fails before the (slow) model load.
    check_backend(backend)
    dev = resolve_device(device)
    if img_size is not None:
        check_img_size(img_size)
    unit_interval("conf_threshold", conf_threshold)
    unit_interval("nms_threshold", nms_threshold)
    check_max_detections(max_detections)
    parse_tile(tile, check_overlap(tile_overlap), tile_full_frame)
    settings: dict[str, Any] = dict(
        conf_threshold=conf_threshold, nms_threshold=nms_threshold, max_detections=max_detections,
        classes=classes, rect=rect, tile=tile, tile_overlap=tile_overlap, tile_full_frame=tile_full_frame,
        multi_label=multi_label)
    path = Path(weights)
    if path.suffix == ".onnx":
        if backend != "onnxruntime":
            raise DetectorError(f"{path}: an .onnx model needs backend='onnxruntime'")
        return _load_onnx(path, dev, names, img_size, settings)

    from slimyolo_ros.darknet.checkpoint import load_model

    model, class_names, size = load_model(path, cfg=cfg, names=names, device="cpu")
    return detector_for_model(model, class_names, img_size or size, owned=True, backend=backend, device=dev,
                              half=half, fuse=fuse, channels_last=channels_last, onnx_cache=onnx_cache,
                              weights=path, **settings)


def _load_onnx(path: Path, device: torch.device, names: str | os.PathLike | None, img_size: int | None,
               settings: dict[str, Any]) -> Detector:
    from slimyolo_ros.export.onnx import read_metadata

    meta = read_metadata(path)
    if meta.get("outputs") != "decoded":
        raise DetectorError(f"{path}: the Detector needs an ONNX exported with decoded boxes "
                            f"(slimyolo export --decoded); this one has outputs={meta.get('outputs')!r}")
    size = int(meta["img_size"])
    if img_size is not None and int(img_size) != size:
        raise DetectorError(f"{path}: exported for img_size {size}, img_size={img_size} asked; "
                            f"export again with --img-size {img_size}")
    if names is not None:
        from slimyolo_ros.darknet.checkpoint import load_names

        class_names = load_names(names)
    else:
        class_names = list(meta.get("class_names") or [])
    if not meta.get("dynamic"):
        settings = {**settings, "rect": False}  # a fixed-shape graph takes square inputs only
    return Detector(OnnxRuntimeBackend(path, device), class_names, size, weights=path, **settings)
