"""The YOLOv3 family as a torch module built from a Darknet cfg.

One loop turns cfg sections into modules (``module_list`` aligned with ``module_defs``), so a
pruned network is nothing more than the same cfg with fewer filters. The numerics follow what
Darknet and OpenCV DNN compute, so the same cfg + .weights give the same outputs in all three.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from slimyolo_ros.darknet.cfg import Section, load_cfg, parse_cfg, write_cfg
from slimyolo_ros.errors import CfgError

# Darknet normalises with sqrt(var + 1e-6) at inference (OpenCV's importer uses the same eps);
# using torch's default 1e-5 would shift outputs of channels with small variance.
BN_EPS = 1e-6
ACTIVATIONS = ("leaky", "linear", "mish", "relu", "logistic")


class _Values:
    """Typed reads of one section's options; errors carry ``file:line: key``."""

    def __init__(self, section: Section, source: str):
        self.section, self.source = section, source

    def error(self, key: str | None, message: str) -> CfgError:
        line = self.section.key_line(key) if key else self.section.line
        where = f"key {key!r}: " if key else ""
        return CfgError(f"{self.source}:{line}: [{self.section.type}] {where}{message}")

    def _raw(self, key: str, default: object) -> str | None:
        value = self.section.options.get(key)
        if value is None:
            if default is _REQUIRED:
                raise self.error(None, f"missing required key {key!r}")
            return None
        return value

    def int(self, key: str, default: object = None, minimum: int | None = None) -> int:
        raw = self._raw(key, default)
        if raw is None:
            return default  # type: ignore[return-value]
        try:
            value = int(raw)
        except ValueError:
            raise self.error(key, f"expected an integer, found {raw!r}") from None
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be >= {minimum}, found {value}")
        return value

    def float(self, key: str, default: object = None) -> float:
        raw = self._raw(key, default)
        if raw is None:
            return default  # type: ignore[return-value]
        try:
            return float(raw)
        except ValueError:
            raise self.error(key, f"expected a number, found {raw!r}") from None

    def ints(self, key: str, default: object = None) -> list[int]:
        raw = self._raw(key, default)
        if raw is None:
            return default  # type: ignore[return-value]
        try:
            return [int(v) for v in raw.split(",") if v.strip()]
        except ValueError:
            raise self.error(key, f"expected comma-separated integers, found {raw!r}") from None

    def floats(self, key: str, default: object = None) -> list[float]:
        raw = self._raw(key, default)
        if raw is None:
            return default  # type: ignore[return-value]
        try:
            return [float(v) for v in raw.split(",") if v.strip()]
        except ValueError:
            raise self.error(key, f"expected comma-separated numbers, found {raw!r}") from None

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.section.options.get(key, default).strip().lower()
        if value not in choices:
            raise self.error(key, f"unsupported value {value!r} (supported: {', '.join(choices)})")
        return value


_REQUIRED = object()


class MaxPool(nn.Module):
    """Darknet's maxpool: total padding ``size - 1`` (or ``padding``), split left/top = p // 2.

    Padding never wins the max (Darknet and OpenCV skip it), so it is -inf, not zero: after a
    leaky ReLU the activations can be negative. With size=2 stride=1 (yolov3-tiny) this is a
    one-pixel pad on the right/bottom only, which keeps the 13x13 grid.
    """

    def __init__(self, size: int, stride: int, padding: int | None = None):
        super().__init__()
        self.size, self.stride = size, stride
        total = size - 1 if padding is None else padding
        self.pad = (total // 2, total - total // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = self.pad
        if (self.stride == 1 and self.size > 2 and x.device.type == "cpu" and not x.requires_grad
                and not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export()):
            return _max_filter(x, self.size, lo, hi)
        if lo == hi:
            if self.size == 1 and self.stride == 1:
                return x
            return F.max_pool2d(x, self.size, self.stride, padding=lo)
        x = F.pad(x, (lo, hi, lo, hi), value=float("-inf"))
        return F.max_pool2d(x, self.size, self.stride)

    def extra_repr(self) -> str:
        return f"size={self.size}, stride={self.stride}, pad={self.pad}"


def _max_filter(x: torch.Tensor, size: int, lo: int, hi: int) -> torch.Tensor:
    """Stride-1 max pool as two separable running maxima over shifted views: exactly
    ``max_pool2d``'s result, but 2(k-1) vectorised ops instead of torch's k*k scan per output on the
    CPU, which made the SPP blocks a large share of a pruned SPP3's forward time (measurements in
    docs/benchmarks.md). Inference on CPU only (MaxPool.forward): training keeps max_pool2d's
    gradient, exports keep the MaxPool op."""
    x = F.pad(x, (lo, hi, lo, hi), value=float("-inf"))
    h, w = x.shape[-2] - size + 1, x.shape[-1] - size + 1
    rows = x[..., :, :w]
    for i in range(1, size):
        rows = torch.maximum(rows, x[..., :, i:i + w])
    out = rows[..., :h, :]
    for i in range(1, size):
        out = torch.maximum(out, rows[..., i:i + h, :])
    return out


class Route(nn.Module):
    """Concatenation of earlier outputs along channels; ``layers`` are absolute indices."""

    def __init__(self, layers: list[int]):
        super().__init__()
        self.layers = layers

    def extra_repr(self) -> str:
        return f"layers={self.layers}"


class Shortcut(nn.Module):
    """Residual sum of the previous output and the output of layer ``source`` (absolute)."""

    def __init__(self, source: int):
        super().__init__()
        self.source = source

    def extra_repr(self) -> str:
        return f"from={self.source}"


class Upsample(nn.Module):
    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.stride, mode="nearest")

    def extra_repr(self) -> str:
        return f"stride={self.stride}"


def decode_head(raw: torch.Tensor, anchors: torch.Tensor, in_h: int, in_w: int) -> torch.Tensor:
    """One head's raw B×A×H×W×(5+C) output → B×(A·H·W)×(5+C) boxes: cx, cy, w, h in input pixels,
    sigmoid objectness, sigmoid class probabilities; always float32.

    The one decode, used by the model in eval mode and by the ONNX export: an fp16 network's head is
    decoded in fp32, because fp16 pixel coordinates lose whole pixels past 512 (its spacing there is
    0.5 px, 1 px past 1024) and ONNX Runtime has no fp16 ``Range`` for the grid."""
    raw = raw.float()
    b, a, h, w, n = raw.shape
    gy = torch.arange(h, dtype=torch.float32, device=raw.device).view(1, 1, h, 1)
    gx = torch.arange(w, dtype=torch.float32, device=raw.device).view(1, 1, 1, w)
    cx = (raw[..., 0].sigmoid() + gx) * (in_w / w)
    cy = (raw[..., 1].sigmoid() + gy) * (in_h / h)
    wh = raw[..., 2:4].exp() * anchors.to(device=raw.device, dtype=torch.float32).view(1, a, 1, 1, 2)
    out = torch.cat((cx.unsqueeze(-1), cy.unsqueeze(-1), wh, raw[..., 4:].sigmoid()), -1)
    return out.view(b, -1, n)


class YOLOLayer(nn.Module):
    """Decodes one detection head. Anchors are in input pixels (cfg units)."""

    def __init__(self, anchors: torch.Tensor, num_classes: int, ignore_thresh: float = 0.7):
        super().__init__()
        # Not persistent: the cfg defines anchors, so checkpoints only hold learned tensors.
        self.register_buffer("anchors", anchors.float(), persistent=False)
        self.num_classes = num_classes
        self.num_anchors = anchors.shape[0]
        self.ignore_thresh = ignore_thresh
        self.stride = 0.0

    def forward(self, x: torch.Tensor, img_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, _, h, w = x.shape
        a, n = self.num_anchors, 5 + self.num_classes
        self.stride = img_size[1] / w
        raw = x.view(b, a, n, h, w).permute(0, 1, 3, 4, 2).contiguous()
        if self.training:
            return raw, None
        return raw, decode_head(raw, self.anchors, img_size[0], img_size[1])

    def extra_repr(self) -> str:
        return f"anchors={self.anchors.tolist()}, classes={self.num_classes}"


def _activation(name: str) -> nn.Module:
    if name == "leaky":
        return nn.LeakyReLU(0.1)
    if name == "mish":
        return nn.Mish()
    if name == "relu":
        return nn.ReLU()
    if name == "logistic":
        return nn.Sigmoid()
    return nn.Identity()


class Darknet(nn.Module):
    """A YOLOv3-family network built from cfg sections, one module per section (``module_list`` is
    aligned with ``module_defs``, the sections after ``[net]``).

    A ``[convolutional]`` is an ``nn.Sequential`` of ``conv``, ``bn`` (only with batch_normalize=1; the
    conv then has no bias) and ``act``; ``[route]``/``[shortcut]`` hold resolved absolute indices and no
    tensors (``forward`` concatenates/sums); ``[yolo]`` is a ``YOLOLayer`` whose anchors are a
    non-persistent buffer. ``forward(x)``: in training mode one raw B×A×H×W×(5+C) tensor per [yolo]
    layer; in eval mode ``(pred, raw)`` with ``pred`` B×N×(5+C) float32 (whatever the network's dtype:
    :func:`decode_head`) = cx, cy, w, h in input pixels,
    sigmoid(objectness), sigmoid(class) (not multiplied), ordered by yolo layer, anchor, row, column.
    ``cfg_text()`` writes the current architecture, so a pruned model writes its own cfg.
    """

    def __init__(self, sections: list[Section], source: str = "<cfg>"):
        super().__init__()
        if not sections or sections[0].type != "net":
            raise CfgError(f"{source}:1: the first section must be [net]")
        self.source = source
        self.net_def = sections[0].copy()
        self.module_defs = [s.copy() for s in sections[1:]]
        if not self.module_defs:
            raise CfgError(f"{source}:{sections[0].line}: no layers after [net]")
        net = _Values(self.net_def, source)
        width = net.int("width", 416, minimum=32)
        height = net.int("height", width, minimum=32)
        self.img_size = width
        self.img_height = height
        self.in_channels = net.int("channels", 3, minimum=1)
        # Darknet header fields, kept so a .weights file round-trips bit for bit.
        self.header = (0, 2, 0)
        self.seen = 0
        self.module_list = nn.ModuleList()
        self.out_channels: list[int] = []
        self.yolo_layers: list[int] = []
        self._build()
        classes = {self.module_list[i].num_classes for i in self.yolo_layers}
        if len(classes) > 1:
            first = self.module_defs[self.yolo_layers[0]]
            raise CfgError(f"{source}:{first.line}: [yolo] layers disagree on classes: {sorted(classes)}")
        self.num_classes = classes.pop() if classes else 0
        # Outputs that a later route/shortcut reads; everything else is dropped during forward.
        self._keep = {j for m in self.module_list if isinstance(m, Route) for j in m.layers}
        self._keep |= {m.source for m in self.module_list if isinstance(m, Shortcut)}

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Darknet:
        return cls(load_cfg(path), source=str(path))

    @classmethod
    def from_text(cls, text: str, source: str = "<cfg>") -> Darknet:
        return cls(parse_cfg(text, source), source=source)

    def _layer_index(self, v: _Values, key: str, i: int, ref: int) -> int:
        j = i + ref if ref < 0 else ref
        if not 0 <= j < i:
            raise v.error(key, f"layer {ref} resolves to index {j}, outside 0..{i - 1} "
                               f"(this is layer {i}; only earlier layers can be referenced)")
        return j

    def _build(self) -> None:
        channels = self.in_channels
        for i, section in enumerate(self.module_defs):
            v = _Values(section, self.source)
            kind = section.type
            if kind == "convolutional":
                bn = v.int("batch_normalize", 0, minimum=0) > 0
                filters = v.int("filters", _REQUIRED, minimum=1)
                size = v.int("size", 1, minimum=1)
                stride = v.int("stride", 1, minimum=1)
                if v.int("pad", 0, minimum=0):
                    padding = size // 2
                else:
                    padding = v.int("padding", 0, minimum=0)
                # Darknet's default activation is logistic.
                act = v.choice("activation", ACTIVATIONS, "logistic")
                module = nn.Sequential()
                module.add_module("conv", nn.Conv2d(channels, filters, size, stride, padding, bias=not bn))
                if bn:
                    module.add_module("bn", nn.BatchNorm2d(filters, eps=BN_EPS, momentum=0.03))
                module.add_module("act", _activation(act))
                channels = filters
            elif kind == "maxpool":
                size = v.int("size", 1, minimum=1)
                stride = v.int("stride", 1, minimum=1)
                padding = v.int("padding", None, minimum=0) if "padding" in section.options else None
                module = MaxPool(size, stride, padding)
            elif kind == "upsample":
                module = Upsample(v.int("stride", 2, minimum=1))
            elif kind == "route":
                refs = v.ints("layers", _REQUIRED)
                if not refs:
                    raise v.error("layers", "needs at least one layer")
                layers = [self._layer_index(v, "layers", i, r) for r in refs]
                module = Route(layers)
                channels = sum(self.out_channels[j] for j in layers)
            elif kind == "shortcut":
                ref = v.int("from", _REQUIRED)
                source = self._layer_index(v, "from", i, ref)
                if i == 0:
                    raise v.error("from", "a shortcut cannot be the first layer")
                v.choice("activation", ("linear",), "linear")
                if self.out_channels[source] != channels:
                    raise v.error("from", f"layer {source} has {self.out_channels[source]} channels but "
                                          f"layer {i - 1} has {channels}; a shortcut adds equal shapes")
                module = Shortcut(source)
            elif kind == "yolo":
                module = self._build_yolo(v, i, channels)
                self.yolo_layers.append(i)
            else:  # parse_cfg only lets known sections through
                raise v.error(None, "unsupported section")
            self.module_list.append(module)
            self.out_channels.append(channels)

    def _build_yolo(self, v: _Values, i: int, channels: int) -> YOLOLayer:
        classes = v.int("classes", _REQUIRED, minimum=1)
        anchors = v.floats("anchors", _REQUIRED)
        if len(anchors) % 2:
            raise v.error("anchors", f"needs w,h pairs; found {len(anchors)} numbers")
        pairs = [anchors[k:k + 2] for k in range(0, len(anchors), 2)]
        num = v.int("num", len(pairs), minimum=1)
        if num != len(pairs):
            raise v.error("num", f"is {num} but 'anchors' has {len(pairs)} pairs")
        mask = v.ints("mask", list(range(num)))
        for m in mask:
            if not 0 <= m < num:
                raise v.error("mask", f"index {m} outside 0..{num - 1}")
        for key in ("jitter", "ignore_thresh", "truth_thresh"):
            v.float(key, 0.0)
        v.int("random", 0)
        expected = len(mask) * (5 + classes)
        prev = self.module_defs[i - 1] if i else None
        if prev is None or prev.type != "convolutional":
            raise v.error(None, "must follow a [convolutional] layer")
        if channels != expected:
            pv = _Values(prev, self.source)
            raise pv.error("filters", f"is {channels} but the [yolo] on line {v.section.line} needs len(mask)"
                                      f" * (5 + classes) = {len(mask)} * (5 + {classes}) = {expected}")
        return YOLOLayer(torch.tensor([pairs[m] for m in mask]), classes, v.float("ignore_thresh", 0.7))

    def forward(self, x: torch.Tensor):
        img_size = (x.shape[-2], x.shape[-1])
        outputs: list[torch.Tensor | None] = []
        raws: list[torch.Tensor] = []
        preds: list[torch.Tensor] = []
        for i, module in enumerate(self.module_list):
            if isinstance(module, Route):
                parts = [outputs[j] for j in module.layers]
                x = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
            elif isinstance(module, Shortcut):
                x = x + outputs[module.source]
            elif isinstance(module, YOLOLayer):
                raw, pred = module(x, img_size)
                raws.append(raw)
                if pred is not None:
                    preds.append(pred)
            else:
                x = module(x)
            outputs.append(x if i in self._keep else None)
        if self.training:
            return raws
        return torch.cat(preds, 1), raws

    def cfg_text(self) -> str:
        """The current architecture as cfg text (a pruned model writes its own filter counts)."""
        sections = [self.net_def.copy()]
        sections[0].options["width"] = str(self.img_size)
        sections[0].options["height"] = str(self.img_height)
        for section, module in zip(self.module_defs, self.module_list, strict=True):
            section = section.copy()
            if section.type == "convolutional":
                section.options["filters"] = str(module.conv.out_channels)
            sections.append(section)
        return write_cfg(sections)

    def save_cfg(self, path: str | os.PathLike) -> Path:
        from slimyolo_ros.io_utils import atomic_write_text

        return atomic_write_text(path, self.cfg_text())
