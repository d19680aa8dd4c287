"""TorchScript export (traced): for C++ libtorch deployments that do not take ONNX."""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimyolo_ros.export.onnx import ExportModel, compare
from slimyolo_ros.io_utils import atomic_write


def export_torchscript(model: nn.Module, path: str | os.PathLike, img_size: int, *, decoded: bool = True,
                       half: bool = False, check: bool = True) -> dict[str, Any]:
    """Trace ``model`` (input 1×3×S×S RGB in [0, 1]) and save it atomically; with ``check`` the
    saved file is loaded back and compared with the torch model."""
    path = Path(path)
    m = copy.deepcopy(model).cpu().eval()
    m = m.half() if half else m.float()
    net = ExportModel(m, decoded).eval()
    x = torch.rand(1, 3, img_size, img_size, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        # torch.jit is deprecated in favour of torch.export, but libtorch still loads only TorchScript.
        warnings.simplefilter("ignore")
        with torch.inference_mode(False), torch.no_grad():
            traced = torch.jit.trace(net, x.to(next(m.parameters()).dtype))
        atomic_write(path, lambda tmp: torch.jit.save(traced, tmp))
    report: dict[str, Any] = {"path": str(path), "format": "torchscript", "img_size": img_size,
                              "outputs": "decoded" if decoded else "raw", "half": half,
                              "bytes": path.stat().st_size}
    if check and not half:  # CPU fp16 convolutions are slow and not what fp16 is exported for
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = torch.jit.load(str(path), map_location="cpu")
        ref_net = ExportModel(copy.deepcopy(model).cpu().float().eval(), decoded).eval()
        with torch.no_grad():
            out, ref = loaded(x), ref_net(x)
        outs = [out] if decoded else list(out)
        refs = [ref] if decoded else list(ref)
        report["reload"] = compare([o.numpy() for o in outs], [r.numpy() for r in refs])
    return report
