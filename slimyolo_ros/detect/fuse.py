"""Fold BatchNorm into the preceding convolution for inference.

At inference a BN layer is a per-channel affine map, so ``bn(conv(x))`` equals one convolution with
scaled weights and a bias. Folding removes a full pass over every activation map (a large share of
the time of narrow, pruned layers) and is exact up to float rounding (~1e-6 relative).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def fold_bn_into_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new ``Conv2d`` (with bias) computing ``bn(conv(x))`` with BN's running statistics."""
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode)
    with torch.no_grad():
        # Fold in float64 so the only rounding is the final cast back to the conv's dtype.
        w = conv.weight.double()
        gamma = bn.weight.double() if bn.affine else torch.ones_like(bn.running_var, dtype=torch.float64)
        beta = bn.bias.double() if bn.affine else torch.zeros_like(bn.running_var, dtype=torch.float64)
        factor = gamma / torch.sqrt(bn.running_var.double() + bn.eps)
        bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(factor)
        fused.weight.copy_((w * factor.view(-1, 1, 1, 1)).to(conv.weight.dtype))
        fused.bias.copy_((beta + (bias - bn.running_mean.double()) * factor).to(conv.weight.dtype))
    return fused.to(conv.weight.device)


def fuse_model(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode with every ``Sequential(conv, bn, ...)`` folded.

    The Darknet convolutional block keeps its children names: ``bn`` becomes ``nn.Identity`` so
    code that walks ``module_list`` still finds ``conv`` and ``act`` where it expects them.
    """
    fused = copy.deepcopy(model).eval()
    for module in fused.modules():
        if isinstance(module, nn.Sequential):
            conv = getattr(module, "conv", None)
            bn = getattr(module, "bn", None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                module.conv = fold_bn_into_conv(conv, bn)
                module.bn = nn.Identity()
    return fused

