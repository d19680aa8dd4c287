"""``DetectorOptions``: every choice that shapes a Detector, checked once, when it is made.

The node (ros/parameters.py), ``slimyolo detect``/``eval`` (commands/detector_args.py) and the
benchmarks each build one with a single function and hand it to :func:`~slimyolo_ros.detect.load_detector`;
a bad value raises DetectorError naming it before any model is loaded. What depends on the model (the
class names behind ``classes``) or the machine (whether a CUDA device or an execution provider exists)
is checked when the Detector is built.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from slimyolo_ros.darknet.input_size import check_img_size
from slimyolo_ros.detect.errors import DetectorError
from slimyolo_ros.detect.providers import AUTO, parse_providers
from slimyolo_ros.detect.tiling import TileSpec, check_overlap, parse_tile
from slimyolo_ros.devices import DeviceError, device_spelling

BACKENDS = ("torch", "onnxruntime")


def unit_interval(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DetectorError(f"{name} {value!r}: must be a number in [0, 1]") from None
    if not 0.0 <= v <= 1.0 or math.isnan(v):
        raise DetectorError(f"{name} {value!r}: must be in [0, 1]")
    return v


def check_max_detections(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise DetectorError(f"max_detections {value!r}: must be an integer >= 1")
    return int(value)


def device_name(device: Any) -> str:
    """``device`` spelled the one way (auto, cpu, cuda:N); whether that device exists is
    :func:`~slimyolo_ros.detect.backends.resolve_device`'s question (both use slimyolo_ros.devices)."""
    try:
        return device_spelling("auto" if device is None else device, flag="device")
    except DeviceError as exc:
        raise DetectorError(str(exc)) from None


def _classes(value: Any) -> tuple[str | int, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.split(",")
    if isinstance(value, (bytes, Mapping)) or not isinstance(value, (Sequence, np.ndarray)):
        raise DetectorError(f"classes {value!r}: expected class names or indices (a list or 'a,b')")
    names = tuple(v.strip() if isinstance(v, str) else v for v in value)
    bad = [v for v in names if not isinstance(v, (str, int, np.integer)) or isinstance(v, bool)]
    if bad:
        raise DetectorError(f"classes {list(value)!r}: {bad[0]!r} is neither a class name nor an index")
    return tuple(v for v in names if v != "") or None


def _path(name: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise DetectorError(f"{name} {value!r}: expected a file or folder path")
    return os.fspath(value)


@dataclass(frozen=True)
class DetectorOptions:
    """How a Detector is built and runs. Checked in ``__post_init__`` (DetectorError names the bad
    value) and stored normalised: ``device`` as auto/cpu/cuda:N, ``tile`` as a TileSpec or None,
    ``classes`` as a tuple or None, ``providers`` as ``"auto"`` or a tuple of provider names.

    ``cfg``/``names``: a Darknet cfg (needed with ``.weights``) and a class names file.
    ``backend``: torch | onnxruntime. ``device``: auto (the first GPU, else the CPU, with a warning) |
    cpu | cuda | cuda:N. ``half``: fp16 where it runs (torch on CUDA). ``img_size``: network input
    side (a multiple of 32), None: the model's. ``rect``: letterbox each side to the smallest multiple
    of 32 that holds the resized image instead of img_size² (a 1920x1080 frame at 416 runs at
    416x256). ``tile`` (see :func:`~slimyolo_ros.detect.tiling.parse_tile`: n, (rows, cols), "RxC",
    {"size": px, ...}) runs overlapping crops (``tile_overlap`` of a side) plus, with
    ``tile_full_frame``, the whole frame, merged by NMS. ``conf_threshold``/``nms_threshold`` in
    [0, 1]; ``max_detections`` per image; ``classes``: names or indices reported (None: all);
    ``multi_label``: a box per class above the threshold. ``onnx_cache``: where a ``.pt`` is
    exported for ONNX Runtime. ``fuse`` folds BatchNorm into the convolutions; ``channels_last``
    runs torch in NHWC. ``providers`` (ONNX Runtime): ``"auto"`` (TensorRT, CUDA, CPU, whichever
    this onnxruntime has) or a list such as ``["CUDAExecutionProvider", "CPUExecutionProvider"]``
    (short names tensorrt, cuda, cpu too); ``trt_cache_dir``: TensorRT's engine cache
    (None: ``~/.cache/slimyolo_ros/trt``).
    """

    cfg: str | None = None
    names: str | None = None
    backend: str = "torch"
    device: str = "auto"
    half: bool = False
    img_size: int | None = None
    rect: bool = True
    tile: Any = None
    tile_overlap: float = 0.2
    tile_full_frame: bool = True
    conf_threshold: float = 0.25
    nms_threshold: float = 0.45
    max_detections: int = 300
    classes: Any = None
    multi_label: bool = False
    onnx_cache: str | None = None
    fuse: bool = True
    channels_last: bool = True
    providers: Any = AUTO
    trt_cache_dir: str | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalised values are stored once, here
        if self.backend not in BACKENDS:
            raise DetectorError(f"backend {self.backend!r}: expected one of {', '.join(BACKENDS)}")
        set_(self, "device", device_name(self.device))
        for name in ("half", "rect", "tile_full_frame", "multi_label", "fuse", "channels_last"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise DetectorError(f"{name} {getattr(self, name)!r}: expected true or false")
            set_(self, name, bool(getattr(self, name)))
        if self.img_size is not None:
            set_(self, "img_size", check_img_size(self.img_size, "img_size", DetectorError))
        set_(self, "conf_threshold", unit_interval("conf_threshold", self.conf_threshold))
        set_(self, "nms_threshold", unit_interval("nms_threshold", self.nms_threshold))
        set_(self, "max_detections", check_max_detections(self.max_detections))
        set_(self, "tile_overlap", check_overlap(self.tile_overlap))
        if not isinstance(self.tile, TileSpec):
            set_(self, "tile", parse_tile(self.tile, self.tile_overlap, self.tile_full_frame))
        set_(self, "classes", _classes(self.classes))
        for name in ("cfg", "names", "onnx_cache", "trt_cache_dir"):
            set_(self, name, _path(name, getattr(self, name)))
        set_(self, "providers", parse_providers(self.providers))
        if self.providers != AUTO and self.backend != "onnxruntime":
            raise DetectorError(f"providers {list(self.providers)!r}: execution providers belong to "
                                f"backend 'onnxruntime' (backend is {self.backend!r})")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> DetectorOptions:
        """Options from a dict of field names (a params file, a JSON row); an unknown key is an
        error naming it, not silently ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise DetectorError(f"unknown detector option(s) {', '.join(map(repr, unknown))}; "
                                f"known: {', '.join(sorted(known))}")
        return cls(**values)

    def replace(self, **changes: Any) -> DetectorOptions:
        """A copy with ``changes`` (checked like the original)."""
        return dataclasses.replace(self, **changes)
