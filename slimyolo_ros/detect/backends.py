"""Where the network runs: torch (CPU or CUDA) or ONNX Runtime, behind one call.

A backend takes a uint8 N×H×W×3 BGR batch (letterboxed) and returns the decoded predictions
B×N×(5+C) as a float32 torch tensor, which the Detector post-processes the same way for both.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from slimyolo_ros.detect.errors import DetectorError
from slimyolo_ros.detect.options import device_name
from slimyolo_ros.detect.providers import GPU, choose_providers, provider_options
from slimyolo_ros.devices import DeviceError, check_device

log = logging.getLogger(__name__)
_logged_cpu_fallback = False


class Backend(Protocol):
    device: torch.device
    half: bool
    model: nn.Module | None
    onnx_path: Path | None
    providers: tuple[str, ...]

    def __call__(self, batch: np.ndarray) -> torch.Tensor: ...

    def sync(self) -> None: ...

    def postprocess_threads(self) -> contextlib.AbstractContextManager[None]: ...


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``auto`` → first GPU if torch sees one, else CPU (logged once per process as a warning);
    ``cpu``, ``cuda``, ``cuda:N`` are checked against what torch can actually use."""
    global _logged_cpu_fallback
    try:
        name = check_device(device or "auto", flag="device")
    except DeviceError as exc:
        raise DetectorError(str(exc)) from None
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda:0")
        if not _logged_cpu_fallback:
            _logged_cpu_fallback = True
            log.warning("device 'auto': no CUDA GPU visible to torch, the Detector runs on the CPU")
        return torch.device("cpu")
    return torch.device(name)


class TorchBackend:
    """The torch model; fp16 only on CUDA (``half`` is then False on the CPU)."""

    onnx_path = None
    providers: tuple[str, ...] = ()

    def __init__(self, model: nn.Module, device: torch.device, half: bool, channels_last: bool):
        self.device, self.half, self.channels_last = device, half and device.type == "cuda", channels_last
        self.model = model.to(device).eval()
        if self.half:
            self.model.half()
        if channels_last:
            # oneDNN (CPU) and cuDNN (tensor cores) run NHWC convolutions faster (docs/benchmarks.md).
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

    def postprocess_threads(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


class OnnxRuntimeBackend:
    """A decoded ONNX graph (``slimyolo export --decoded``) in ONNX Runtime, on the execution
    providers :func:`~slimyolo_ros.detect.providers.choose_providers` picks from ``providers`` and
    ``device``; ``providers`` then holds what the session really registered, best first. ``half``:
    TensorRT builds its engine in fp16 (the graph itself is fp32)."""

    def __init__(self, path: Path, device: str = "auto", providers: Any = "auto",
                 trt_cache_dir: str | None = None, model: nn.Module | None = None):
        self.session = ort_session(path, device, providers, trt_cache_dir)
        self.providers: tuple[str, ...] = tuple(self.session.get_providers())
        self.input_name = self.session.get_inputs()[0].name
        self.onnx_path, self.model = path, model
        self.half = self.providers[0] == "TensorrtExecutionProvider"
        name = device_name(device)
        gpu_index = int(name.split(":")[1]) if name.startswith("cuda:") else 0
        self.device = torch.device(f"cuda:{gpu_index}" if self.providers[0] in GPU else "cpu")

    def __call__(self, batch: np.ndarray) -> torch.Tensor:
        x = np.ascontiguousarray(batch[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32)
        x *= np.float32(1 / 255)
        (pred,) = self.session.run(None, {self.input_name: x})
        return torch.from_numpy(pred)

    def sync(self) -> None:
        pass

    def postprocess_threads(self) -> contextlib.AbstractContextManager[None]:
        """torch on one intra-op thread for the post-processing next to a CPU forward.

        torch only post-processes a few hundred candidates here; its OpenMP workers have slept
        through the ORT forward (OMP_WAIT_POLICY=PASSIVE) and waking them for each small op costs
        more than the op (docs/benchmarks.md). Switching the thread count costs well under a microsecond.
        """
        return _one_torch_thread() if self.device.type == "cpu" else contextlib.nullcontext()


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def ort_session(path: str | os.PathLike, device: str = "cpu", providers: Any = "auto",
                trt_cache_dir: str | None = None) -> Any:
    """An ONNX Runtime session for ``path`` on the providers chosen from ``providers`` (auto or a
    list) and ``device`` (auto | cpu | cuda:N); ProviderError when one asked for is missing."""
    import onnxruntime as ort

    name = device_name(device)
    chosen = choose_providers(providers, ort.get_available_providers(), name)
    index = int(name.split(":")[1]) if name.startswith("cuda:") else 0
    with_options = provider_options(chosen, index, trt_cache_dir)
    for _, provider_opts in with_options:
        if "trt_engine_cache_path" in provider_opts:
            Path(provider_opts["trt_engine_cache_path"]).mkdir(parents=True, exist_ok=True)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.log_severity_level = 3
    if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":
        # Same choice as torch's OpenMP pool: idle workers sleep instead of spinning, which on a
        # shared CPU steals the cores from everything else (docs/benchmarks.md).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=with_options)
    except Exception as exc:  # ORT's own exception types (InvalidGraph, NoSuchFile, ...)
        raise DetectorError(f"{path}: ONNX Runtime cannot load it on {', '.join(chosen)}: "
                            f"{' '.join(str(exc).split())}") from None
