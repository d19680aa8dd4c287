"""Darknet ``.weights`` files: read and write, bit for bit.

Layout (little-endian): int32 major, minor, revision; ``seen`` (images trained on) as int64 when
``major*10 + minor >= 2``, else int32; then float32 tensors, conv layer after conv layer in cfg order:
with batch_normalize: BN beta, gamma, running mean, running variance, conv weights;
without: conv bias, conv weights. No library reads this into a torch module, hence this file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from slimyolo_ros.errors import WeightsError
from slimyolo_ros.io_utils import atomic_write_bytes

DEFAULT_HEADER = (0, 2, 0)


def _conv_tensors(module: torch.nn.Module) -> list[torch.Tensor]:
    """The tensors of one [convolutional] in file order."""
    conv = module.conv
    if hasattr(module, "bn"):
        bn = module.bn
        return [bn.bias, bn.weight, bn.running_mean, bn.running_var, conv.weight]
    return [conv.bias, conv.weight]


def _conv_layers(model, cutoff: int | None) -> list[int]:
    n = len(model.module_defs) if cutoff is None else min(cutoff, len(model.module_defs))
    return [i for i in range(n) if model.module_defs[i].type == "convolutional"]


def expected_floats(model, cutoff: int | None = None) -> int:
    """How many float32 values the file holds for the conv layers before ``cutoff``."""
    return sum(t.numel() for i in _conv_layers(model, cutoff) for t in _conv_tensors(model.module_list[i]))


def _seen_is_int64(major: int, minor: int) -> bool:
    return major * 10 + minor >= 2 and major < 1000 and minor < 1000


def load_darknet_weights(model, path: str | os.PathLike, cutoff: int | None = None) -> dict:
    """Load ``path`` into ``model`` (a Darknet). With ``cutoff``, only layers ``0..cutoff-1`` are read
    (a backbone file such as darknet53.conv.74) and extra floats are allowed; without it the file must
    hold exactly the model's count. Returns the header: ``{major, minor, revision, seen}``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise WeightsError(f"{path}: weights file not found") from None
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read weights: {exc}") from None
    if len(data) < 16:
        raise WeightsError(f"{path}: {len(data)} bytes is too short for a Darknet weights header")
    major, minor, revision = (int(v) for v in np.frombuffer(data, "<i4", 3))
    if _seen_is_int64(major, minor):
        seen, offset = int(np.frombuffer(data, "<i8", 1, 12)[0]), 20
    else:
        seen, offset = int(np.frombuffer(data, "<i4", 1, 12)[0]), 16
    body = len(data) - offset
    found = body // 4
    expected = expected_floats(model, cutoff)
    convs = _conv_layers(model, cutoff)
    scope = f"layers 0..{cutoff - 1}" if cutoff is not None else "the cfg"
    if body % 4:
        raise WeightsError(f"{path}: {body} bytes after the header is not a whole number of float32 "
                           f"(expected {expected} floats for {scope})")
    if found < expected:
        raise WeightsError(f"{path}: truncated: expected {expected} floats for {len(convs)} conv layers of "
                           f"{scope} ({getattr(model, 'source', '<cfg>')}), found {found}: "
                           f"{_ran_out(model, convs, found)}")
    if cutoff is None and found != expected:
        raise WeightsError(f"{path}: oversized: expected {expected} floats for {len(convs)} conv layers of "
                           f"{scope} ({getattr(model, 'source', '<cfg>')}), found {found} (a backbone file "
                           f"such as darknet53.conv.74 needs --cutoff)")
    floats = np.frombuffer(data, "<f4", found, offset)
    pos = 0
    with torch.no_grad():
        for i in convs:
            for t in _conv_tensors(model.module_list[i]):
                n = t.numel()
                t.copy_(torch.from_numpy(floats[pos:pos + n].copy()).view_as(t))
                pos += n
    model.header = (major, minor, revision)
    model.seen = seen
    return {"major": major, "minor": minor, "revision": revision, "seen": seen, "floats": pos}


def _ran_out(model, convs: list[int], found: int) -> str:
    """Which layer the file ends in, e.g. 'the file ends inside layer 73 ([convolutional] on cfg line 560,
    floats 40000000..40620640)'."""
    pos = 0
    for k, i in enumerate(convs):
        n = sum(t.numel() for t in _conv_tensors(model.module_list[i]))
        if pos + n > found:
            where = "ends inside" if found > pos else "ends before"
            return (f"the file {where} layer {i} ([convolutional] on cfg line {model.module_defs[i].line}, "
                    f"conv {k + 1} of {len(convs)}, floats {pos}..{pos + n})")
        pos += n
    return "the file ends early"


def darknet_weights_bytes(model, cutoff: int | None = None, seen: int | None = None) -> bytes:
    major, minor, revision = getattr(model, "header", DEFAULT_HEADER)
    seen = getattr(model, "seen", 0) if seen is None else seen
    parts = [np.array([major, minor, revision], "<i4").tobytes(),
             np.array([seen], "<i8" if _seen_is_int64(major, minor) else "<i4").tobytes()]
    for i in _conv_layers(model, cutoff):
        for t in _conv_tensors(model.module_list[i]):
            parts.append(t.detach().to("cpu", torch.float32).numpy().astype("<f4", copy=False).tobytes())
    return b"".join(parts)


def save_darknet_weights(model, path: str | os.PathLike, cutoff: int | None = None,
                         seen: int | None = None) -> Path:
    """Write ``model`` (layers before ``cutoff`` only, if given) as Darknet weights, atomically.
    The header is the one the model was loaded with (default 0.2.0); ``seen`` overrides its count."""
    return atomic_write_bytes(path, darknet_weights_bytes(model, cutoff, seen))
