"""Parameters and FLOPs the way the SlimYOLOv3 paper counts them.

FLOPs are 2 * k*k * Cin/groups * Cout * Hout * Wout summed over conv layers (a multiply and an add
per MAC), in units of 1e9; BN, activations, pooling and the YOLO decode are not counted. Shapes are
propagated through the cfg graph arithmetically, so no forward pass is needed.
"""

from __future__ import annotations

from torch import nn

from slimyolo_ros.darknet.model import Darknet, MaxPool, Route, Shortcut, Upsample, YOLOLayer


def count_params(model: Darknet) -> int:
    """All conv weights and biases plus BN gamma and beta (BN running stats are not parameters)."""
    total = 0
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            total += module.weight.numel() + (module.bias.numel() if module.bias is not None else 0)
        elif isinstance(module, nn.BatchNorm2d):
            total += module.weight.numel() + module.bias.numel()
    return total


def _conv_gflops(conv: nn.Conv2d, h_out: int, w_out: int) -> float:
    k_h, k_w = conv.kernel_size
    return 2 * k_h * k_w * (conv.in_channels // conv.groups) * conv.out_channels * h_out * w_out / 1e9


def layer_table(model: Darknet, img_size: int | None = None) -> list[dict]:
    """One row per layer: index, type, filters (output channels), size, stride, input/output shape
    as [C, H, W], params, gflops, and the referenced layers of a route/shortcut."""
    size = img_size or model.img_size
    shapes: list[tuple[int, int, int]] = []
    shape = (model.in_channels, size, size)
    rows = []
    for i, (section, module) in enumerate(zip(model.module_defs, model.module_list, strict=True)):
        in_shape = shape
        row: dict = {"index": i, "type": section.type}
        params, gflops = 0, 0.0
        if section.type == "convolutional":
            conv = module.conv
            c, h, w = shape
            (k_h, k_w), (s_h, s_w), (p_h, p_w) = conv.kernel_size, conv.stride, conv.padding
            shape = (conv.out_channels, (h + 2 * p_h - k_h) // s_h + 1, (w + 2 * p_w - k_w) // s_w + 1)
            params = sum(p.numel() for p in module.parameters())
            gflops = _conv_gflops(conv, shape[1], shape[2])
            row.update(size=k_h, stride=s_h, bn=hasattr(module, "bn"))
        elif isinstance(module, MaxPool):
            c, h, w = shape
            lo, hi = module.pad
            shape = (c, (h + lo + hi - module.size) // module.stride + 1,
                     (w + lo + hi - module.size) // module.stride + 1)
            row.update(size=module.size, stride=module.stride)
        elif isinstance(module, Upsample):
            shape = (shape[0], shape[1] * module.stride, shape[2] * module.stride)
            row.update(stride=module.stride)
        elif isinstance(module, Route):
            first = shapes[module.layers[0]]
            shape = (sum(shapes[j][0] for j in module.layers), first[1], first[2])
            row.update(layers=list(module.layers))
        elif isinstance(module, Shortcut):
            row.update(layers=[module.source])
        elif isinstance(module, YOLOLayer):
            row.update(anchors=module.anchors.tolist(), classes=module.num_classes)
        shapes.append(shape)
        row.update(filters=shape[0], input=list(in_shape), output=list(shape), params=params, gflops=gflops)
        rows.append(row)
    return rows


def count_gflops(model: Darknet, img_size: int | None = None) -> float:
    """Conv GFLOPs (paper convention) for a square input of ``img_size`` (default: the cfg's width)."""
    return sum(row["gflops"] for row in layer_table(model, img_size))
