"""Which ONNX Runtime execution providers a session gets, and with which options.

:func:`choose_providers` is a pure function of what was asked and what this onnxruntime offers
(``onnxruntime.get_available_providers()``), so every case is tested without a GPU; the backend
asks ONNX Runtime and the node only reports the provider it got.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from slimyolo_ros.detect.errors import DetectorError

AUTO = "auto"
TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
# auto: the fastest this onnxruntime has first; ONNX Runtime gives each graph node to the first
# provider in the list that can run it, so the later ones take what TensorRT cannot.
AUTO_ORDER = (TENSORRT, CUDA, CPU)
GPU = (TENSORRT, CUDA)
SHORT_NAMES = {"tensorrt": TENSORRT, "trt": TENSORRT, "cuda": CUDA, "cpu": CPU}
DEFAULT_TRT_CACHE = "~/.cache/slimyolo_ros/trt"

_PACKAGE = ("the onnxruntime-gpu package (on a Jetson: NVIDIA's onnxruntime-gpu build for its JetPack, "
            "from the Jetson AI Lab / Jetson Zoo)")
WHERE_FROM = {
    CUDA: _PACKAGE + " with CUDA and cuDNN",
    TENSORRT: _PACKAGE + " plus the TensorRT libraries (libnvinfer; JetPack ships them)",
}


class ProviderError(DetectorError):
    """An execution provider asked for is not in this onnxruntime (or contradicts ``device``)."""


def parse_providers(value: Any) -> str | tuple[str, ...]:
    """``"auto"``, a comma-separated string or a sequence of names → ``"auto"`` or a tuple of ONNX
    Runtime provider names (``cuda`` → CUDAExecutionProvider; unknown short names are errors, full
    ``...ExecutionProvider`` names pass as given for ONNX Runtime to judge)."""
    if value is None:
        return AUTO
    # A launch argument or a -p value may arrive as the text of a list: "[cuda, cpu]".
    items = value.strip().strip("[]").replace("'", "").replace('"', "").split(",") \
        if isinstance(value, str) else value
    if isinstance(items, (bytes, dict)) or not isinstance(items, Sequence):
        raise DetectorError(f"providers {value!r}: expected 'auto' or a list of execution providers")
    names = [str(v).strip() for v in items if str(v).strip()]
    if not names or names == [AUTO]:
        return AUTO
    out: list[str] = []
    for name in names:
        full = SHORT_NAMES.get(name.lower(), name)
        if not full.endswith("ExecutionProvider"):
            raise DetectorError(f"providers {value!r}: {name!r} is not an execution provider; expected "
                                f"'auto' or names such as {', '.join(AUTO_ORDER)} "
                                f"(or {', '.join(SHORT_NAMES)})")
        if full not in out:
            out.append(full)
    return tuple(out)


def choose_providers(asked: str | Sequence[str], available: Sequence[str],
                     device: str = AUTO) -> tuple[str, ...]:
    """The providers a session gets, best first.

    ``asked``: ``"auto"`` (TensorRT, CUDA, CPU: those in ``available``, in that order) or provider
    names (each must be in ``available``). ``device`` (auto | cpu | cuda:N) narrows auto: ``cpu``
    takes the CPU only, ``cuda:N`` needs a GPU provider. Raises ProviderError naming what is
    missing, what this onnxruntime offers and the package that brings the missing one."""
    asked = parse_providers(asked)
    if asked == AUTO:
        if device == "cpu":
            return (CPU,)
        chosen = tuple(p for p in AUTO_ORDER if p in available)
        if device.startswith("cuda") and not any(p in GPU for p in chosen):
            raise ProviderError(_missing(CUDA, available, f"device {device!r} needs it"))
        if not chosen:
            raise ProviderError(_missing(CPU, available, "providers 'auto'"))
        return chosen
    for p in asked:
        if p not in available:
            raise ProviderError(_missing(p, available, f"providers {list(asked)!r}"))
    if device == "cpu" and any(p in GPU for p in asked):
        raise ProviderError(f"providers {list(asked)!r} run on a GPU but device is 'cpu'; "
                            f"use device auto or cuda:N, or providers cpu")
    return tuple(asked)


def _missing(provider: str, available: Sequence[str], context: str) -> str:
    where = WHERE_FROM.get(provider, "an onnxruntime build that includes it")
    return (f"{provider} is not available in this onnxruntime ({context}); it offers "
            f"{', '.join(available) or 'none'}. {provider} comes with {where}")


def provider_options(providers: Sequence[str], device_index: int = 0,
                     trt_cache_dir: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Each provider with its ONNX Runtime options: the GPU ones on ``device_index``; TensorRT in
    fp16 with its engine cache in ``trt_cache_dir`` (default ~/.cache/slimyolo_ros/trt), so only the
    first start builds the engine (minutes on a Jetson) and later starts load it."""
    out: list[tuple[str, dict[str, Any]]] = []
    for p in providers:
        opts: dict[str, Any] = {}
        if p in GPU:
            opts["device_id"] = device_index
        if p == TENSORRT:
            cache = Path(trt_cache_dir or DEFAULT_TRT_CACHE).expanduser()
            opts.update(trt_fp16_enable=True, trt_engine_cache_enable=True, trt_engine_cache_path=str(cache))
        out.append((p, opts))
    return out
