"""ONNX export of a Darknet model and its parity check against torch (running models for the
Detector is detect/backends.py's job).

Exported with torch's TorchScript-based exporter (``dynamo=False``): it writes one self-contained
file (the dynamo exporter stores weights as external data, which OpenCV DNN cannot read) and its
graphs load in ONNX Runtime, OpenCV DNN and TensorRT's trtexec.

Outputs: ``pred`` B×N×(5+C) decoded boxes (cx, cy, w, h in input pixels, sigmoid objectness,
sigmoid class probabilities — what the Detector post-processes) with ``decoded=True``; otherwise one raw
head per [yolo] layer, ``head{i}`` B×A×H×W×(5+C) before any sigmoid/exp (decode with the
``anchors`` and ``strides`` stored in the file's metadata). The file's metadata_props carry
``class_names`` (JSON), ``img_size``, ``outputs`` (decoded|raw), ``anchors``, ``strides``.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slimyolo_ros.errors import SlimyoloError
from slimyolo_ros.io_utils import atomic_write

OPSET = 17
# Bump when the exported graph changes shape or meaning, so stale cache files are not reused.
EXPORT_VERSION = "2"
PARITY_TOL = 1e-4


class ExportError(SlimyoloError):
    """Export failed or the exported graph disagrees with torch."""


class ExportModel(nn.Module):
    """The network as exported: float input N×3×S×S RGB in [0, 1] → decoded ``pred`` (float32, the
    model's own decode, :func:`~slimyolo_ros.darknet.model.decode_head`, also for fp16 weights) or
    the raw heads."""

    def __init__(self, model: nn.Module, decoded: bool):
        super().__init__()
        self.model = model
        self.decoded = decoded

    def forward(self, x: torch.Tensor):
        pred, raws = self.model(x)
        return pred if self.decoded else tuple(raws)


def _yolo_info(model: nn.Module, img_size: int) -> tuple[list[list[list[float]]], list[float]]:
    layers = [model.module_list[i] for i in getattr(model, "yolo_layers", [])]
    anchors = [m.anchors.tolist() for m in layers]
    # Strides are fixed by the architecture (input / grid), so any input size gives the same ones.
    with torch.inference_mode():
        model(torch.zeros(1, 3, img_size, img_size, device=next(model.parameters()).device,
                          dtype=next(model.parameters()).dtype))
    strides = [float(m.stride) for m in layers]
    return anchors, strides


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    img_size: int,
    class_names: list[str] | None = None,
    *,
    decoded: bool = False,
    dynamic: bool = False,
    dynamic_batch: bool = True,
    half: bool = False,
    opset: int = OPSET,
    check: bool = True,
) -> dict[str, Any]:
    """Write ``model`` as one ONNX file (atomically) and, with ``check``, compare ONNX Runtime's
    outputs with torch's on a random input. Returns a report dict (path, outputs, parity numbers).

    ``dynamic``: batch, height and width are free (ONNX Runtime, TensorRT with profiles; OpenCV DNN
    cannot load such a graph). Otherwise only the batch is free (``dynamic_batch``), which every
    runtime here accepts. ``half`` exports fp16 weights and input (for GPU runtimes).
    """
    import onnx

    if opset < 13:
        raise ExportError(f"opset {opset}: must be >= 13")
    path = Path(path)
    src_device = next(model.parameters()).device
    net = ExportModel(_export_copy(model, half), decoded).eval()
    dtype = torch.float16 if half else torch.float32
    dummy = torch.rand(1, 3, img_size, img_size, generator=torch.Generator().manual_seed(0)).to(dtype)
    n_heads = len(getattr(model, "yolo_layers", []))
    output_names = ["pred"] if decoded else [f"head{i}" for i in range(n_heads)]
    axes: dict[str, dict[int, str]] = {}
    if dynamic or dynamic_batch:
        axes["images"] = {0: "batch"}
        for name in output_names:
            axes[name] = {0: "batch"}
        if dynamic:
            axes["images"].update({2: "height", 3: "width"})
            for name in output_names:
                axes[name].update({1: "boxes"} if decoded else {2: "grid_y", 3: "grid_x"})
    anchors, strides = _yolo_info(net.model, img_size)

    def write(tmp: str) -> None:
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated in favour of dynamo, which cannot write one file
            # OpenCV reads; its tracer warnings about python ints in the decode are expected.
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (dummy,), tmp, dynamo=False, opset_version=opset, input_names=["images"],
                              output_names=output_names, dynamic_axes=axes or None, do_constant_folding=True)
        proto = onnx.load(tmp)
        meta = {"producer": "slimyolo_ros", "export_version": EXPORT_VERSION,
                "outputs": "decoded" if decoded else "raw", "img_size": str(img_size),
                "class_names": json.dumps(list(class_names or [])), "anchors": json.dumps(anchors),
                "strides": json.dumps(strides), "dtype": "float16" if half else "float32"}
        for k, v in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v
        onnx.checker.check_model(proto)
        onnx.save_model(proto, tmp, save_as_external_data=False)

    try:
        atomic_write(path, write)
    except (RuntimeError, torch.onnx.errors.OnnxExporterError) as exc:  # type: ignore[attr-defined]
        raise ExportError(f"{path}: ONNX export failed: {exc}") from exc
    report: dict[str, Any] = {"path": str(path), "format": "onnx", "opset": opset, "img_size": img_size,
                              "outputs": "decoded" if decoded else "raw", "dynamic": dynamic, "half": half,
                              "bytes": path.stat().st_size}
    if check:
        report["onnxruntime"] = check_parity(path, model.to(src_device), img_size, decoded=decoded, half=half)
        if not report["onnxruntime"]["ok"]:
            diff = report["onnxruntime"]["max_abs_diff"]
            raise ExportError(f"{path}: ONNX Runtime disagrees with torch: max abs diff {diff:.3g} "
                              f"(tolerance {PARITY_TOL} x (1 + the column's largest |value|))")
    return report


def _export_copy(model: nn.Module, half: bool) -> nn.Module:
    import copy

    m = copy.deepcopy(model).cpu().eval()
    return m.half() if half else m.float()


def _random_input(img_size: int, batch: int = 1, seed: int = 0) -> np.ndarray:
    g = np.random.default_rng(seed)
    return g.random((batch, 3, img_size, img_size), dtype=np.float32)


def torch_reference(model: nn.Module, x: np.ndarray, decoded: bool) -> list[np.ndarray]:
    net = ExportModel(_export_copy(model, False), decoded).eval()
    with torch.inference_mode():
        out = net(torch.from_numpy(x))
    return [out.numpy()] if decoded else [o.numpy() for o in out]


def compare(
    outputs: list[np.ndarray], reference: list[np.ndarray], tol: float = PARITY_TOL
) -> dict[str, Any]:
    """Whether every output is within ``tol`` × (1 + scale) of the reference, where scale is the largest
    finite |value| of its column (last axis: x, y, w, h, objectness, classes, decoded or raw).

    Per column, not per value: a box's w/h are exp(raw) × anchor, so float32 rounding noise in the raw
    logit comes out scaled by the box size, while a score in [0, 1] next to it must still agree to
    ``tol``. Values equal on both sides (an inf from exp overflow in an untrained model's decode) match;
    ``max_abs_diff`` is inf or nan when one side is non-finite and the other differs, never a silent 0.
    """
    if len(outputs) != len(reference):
        return {"ok": False, "max_abs_diff": float("inf"), "error": f"{len(outputs)} outputs, expected "
                                                                    f"{len(reference)}"}
    worst, ok, nonfinite, nan = [0.0], True, 0, 0
    for a, b in zip(outputs, reference, strict=True):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if a.shape != b.shape:
            return {"ok": False, "max_abs_diff": float("inf"), "error": f"shape {a.shape} != {b.shape}"}
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        with np.errstate(invalid="ignore"):  # inf - inf where both are inf: masked by ``same``
            diff = np.where(same, 0.0, np.abs(a - b))  # nan where exactly one side is nan
        finite = np.abs(np.where(np.isfinite(b), b, 0.0))
        scale = finite.reshape(-1, b.shape[-1] if b.ndim else 1).max(axis=0, initial=0.0)
        ok &= bool(np.all(diff <= tol * (1.0 + scale)))  # False for nan
        worst.append(float(np.max(diff, initial=0.0)))  # np.max keeps a nan; Python's max() would drop it
        nonfinite += int(np.count_nonzero(~np.isfinite(b)))
        nan += int(np.count_nonzero(np.isnan(a) | np.isnan(b)))
    max_abs = float("nan") if any(np.isnan(worst)) else max(worst)
    report = {"ok": ok and not nan, "max_abs_diff": max_abs, "tolerance": tol}
    if nan:  # NaN on both sides "agrees", but a model that computes NaN has nothing to agree about
        report["error"] = f"{nan} NaN values in the outputs"
    if nonfinite:
        report["nonfinite_reference"] = nonfinite
    return report


def check_parity(path: str | os.PathLike, model: nn.Module, img_size: int, *, decoded: bool,
                 half: bool = False, batch: int = 1) -> dict[str, Any]:
    """ONNX Runtime (CPU) on ``path`` vs the torch model (fp32) on one seeded random input."""
    import onnxruntime as ort

    x = _random_input(img_size, batch)
    ref = torch_reference(model, x, decoded)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT's own exception types (InvalidGraph, NoSuchFile, ...)
        raise ExportError(f"{path}: ONNX Runtime cannot load it: {exc}") from None
    feed = x.astype(np.float16) if half else x
    try:
        outs = session.run(None, {session.get_inputs()[0].name: feed})
    except Exception as exc:  # ORT raises its own exception types; report, do not crash the export
        return {"ok": False, "max_abs_diff": float("nan"), "error": f"onnxruntime run failed: {exc}"}
    # fp16 carries ~3 decimal digits; the check then only guards against a broken graph.
    return compare(outs, ref, tol=2e-2 if half else PARITY_TOL)


def check_opencv(
    path: str | os.PathLike, model: nn.Module, img_size: int, *, decoded: bool
) -> dict[str, Any]:
    """Load ``path`` with OpenCV DNN and compare its outputs with torch's."""
    import cv2

    try:
        net = cv2.dnn.readNetFromONNX(str(path))
    except cv2.error as exc:
        lines = [ln.strip(" >") for ln in str(exc).splitlines() if ln.strip(" >")]
        return {"loads": False, "ok": False, "error": lines[-1] if lines else repr(exc)}
    x = _random_input(img_size)
    net.setInput(x)
    outs = net.forward(net.getUnconnectedOutLayersNames())
    ref = torch_reference(model, x, decoded)
    # OpenCV does not keep the output order of the graph; match heads by shape.
    outs = sorted(outs, key=lambda o: o.shape)
    ref_sorted = sorted(ref, key=lambda o: o.shape)
    return {"loads": True, **compare(list(outs), ref_sorted)}


def _check_finite_initializers(proto: Any, path: Path) -> None:
    """Refuse NaN or inf in a weight of the graph, naming the first (as load_model does for .pt)."""
    from onnx import numpy_helper

    for init in proto.graph.initializer:
        if init.data_location == 1:  # external data, not loaded here
            continue
        values = numpy_helper.to_array(init)
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise ExportError(f"{path}: initializer {init.name} holds {int((~np.isfinite(values)).sum())} "
                              f"non-finite values (NaN or inf) of {values.size}; the model cannot be used")


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata_props written by :func:`export_onnx` (``class_names``, ``img_size``, ...)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: ONNX file not found")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        raise ExportError(f"{path}: not a readable ONNX model: {exc}") from None
    _check_finite_initializers(proto, path)
    meta: dict[str, Any] = {p.key: p.value for p in proto.metadata_props}
    for key in ("class_names", "anchors", "strides"):
        if key in meta:
            meta[key] = json.loads(meta[key])
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    # Free height and width (export --dynamic): the Detector may feed it rectangular inputs.
    meta["dynamic"] = len(dims) == 4 and not dims[2].dim_value and not dims[3].dim_value
    if "img_size" not in meta:
        if len(dims) == 4 and dims[3].dim_value:
            meta["img_size"] = dims[3].dim_value
        else:
            raise ExportError(f"{path}: no img_size in metadata and the input width is not fixed")
    return meta


def model_digest(model: nn.Module, *parts: object) -> str:
    """A content hash of the architecture and weights (and ``parts``) naming a cache file."""
    h = hashlib.sha256()
    h.update(EXPORT_VERSION.encode())
    for p in parts:
        h.update(repr(p).encode())
    if hasattr(model, "cfg_text"):
        h.update(model.cfg_text().encode())
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


def default_cache_dir() -> Path:
    env = os.environ.get("SLIMYOLO_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "slimyolo_ros"


def cached_onnx(model: nn.Module, img_size: int, class_names: list[str],
                cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of a decoded ONNX of ``model`` with free batch, height and width (the Detector's
    rectangular inputs; ONNX Runtime runs it as fast as a fixed-shape graph); exported and
    parity-checked on first use."""
    folder = Path(cache_dir) if cache_dir else default_cache_dir() / "onnx"
    path = folder / f"{model_digest(model, img_size, list(class_names), 'dynamic')}.onnx"
    if not path.is_file():
        export_onnx(model, path, img_size, class_names, decoded=True, dynamic=True, check=True)
    return path
