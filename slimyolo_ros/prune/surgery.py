"""Build the pruned network from a :class:`ChannelPlan`: a cfg with fewer filters, kept weights copied.

Beta folding: once a channel's gamma is treated as 0 its BN output is the constant ``beta``, so the
channel emits the constant ``act(beta)`` everywhere. Dropping the channel would lose that constant;
instead it is pushed into the layer(s) that read it. Constants pass unchanged through [maxpool]
(padding is -inf there), [upsample] and [route], and add up across a [shortcut]. A conv reading a
constant ``k`` on removed input channels gets ``sum_spatial(W[:, removed]) @ k`` added to its output,
which a BN conv absorbs into its running mean (BN subtracts the mean) and a plain conv into its bias.
This is exact wherever the kernel sees no zero padding, i.e. away from the image borders.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from slimyolo_ros.darknet.cfg import parse_cfg
from slimyolo_ros.darknet.model import Darknet, Route, Shortcut
from slimyolo_ros.errors import PruneError
from slimyolo_ros.prune.plan import ChannelPlan


def pruned_sections(model: Darknet, plan: ChannelPlan):
    """The model's cfg sections with each conv's ``filters`` set to what the plan keeps."""
    sections = parse_cfg(model.cfg_text(), source="<pruned>")
    for i, section in enumerate(sections[1:]):
        if section.type == "convolutional":
            section.options["filters"] = str(plan.kept(i))
    return sections


def _idx(mask: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.flatnonzero(mask), dtype=torch.long, device=device)


def removed_constants(model: Darknet, plan: ChannelPlan) -> list[torch.Tensor]:
    """Per layer, over its original output channels: the constant each removed channel emits (0 if kept)."""
    consts: list[torch.Tensor] = []
    in_ch = model.in_channels
    for i, (section, module) in enumerate(zip(model.module_defs, model.module_list, strict=True)):
        prev = consts[i - 1] if i else torch.zeros(in_ch)
        if section.type == "convolutional":
            c = torch.zeros(module.conv.out_channels)
            removed = ~torch.as_tensor(plan.out_masks[i])
            if removed.any():
                if not hasattr(module, "bn"):
                    raise PruneError(f"layer {i} has no batch norm but the plan removes its channels")
                beta = module.bn.bias.detach().float().cpu()
                c[removed] = module.act(beta[removed])
            consts.append(c)
        elif isinstance(module, Shortcut):
            consts.append(prev + consts[module.source])
        elif isinstance(module, Route):
            consts.append(torch.cat([consts[j] for j in module.layers]))
        else:  # maxpool, upsample: a constant map stays the same constant; yolo: nothing reads it
            consts.append(prev)
    return consts


@torch.no_grad()
def apply_plan(model: Darknet, plan: ChannelPlan, fold: bool = True) -> Darknet:
    """A new Darknet with the kept channels of ``model`` (which is left untouched)."""
    src_device = next(model.parameters()).device
    new = Darknet(pruned_sections(model, plan), source="<pruned>")
    new.header, new.seen = getattr(model, "header", new.header), getattr(model, "seen", 0)
    consts = removed_constants(model, plan) if fold else None
    for i, section in enumerate(model.module_defs):
        if section.type != "convolutional":
            continue
        old_m, new_m = model.module_list[i], new.module_list[i]
        out_idx = _idx(plan.out_masks[i], torch.device("cpu"))
        in_idx = _idx(plan.in_masks[i], torch.device("cpu"))
        w = old_m.conv.weight.detach().float().cpu()
        new_m.conv.weight.copy_(w[out_idx][:, in_idx])
        if old_m.conv.bias is not None:
            new_m.conv.bias.copy_(old_m.conv.bias.detach().float().cpu()[out_idx])
        if hasattr(old_m, "bn"):
            _copy_bn(old_m.bn, new_m.bn, out_idx)
        if consts is not None:
            k = consts[i - 1] if i else torch.zeros(model.in_channels)
            removed_in = ~torch.as_tensor(plan.in_masks[i])
            if removed_in.any() and k[removed_in].abs().max() > 0:
                # Constant input on removed channels -> constant per output channel.
                contrib = w[:, removed_in].sum(dim=(2, 3)) @ k[removed_in]
                contrib = contrib[out_idx]
                if hasattr(new_m, "bn"):
                    new_m.bn.running_mean.sub_(contrib)
                else:
                    new_m.conv.bias.add_(contrib)
    new.train(model.training)
    return new.to(src_device)


def _copy_bn(old: nn.BatchNorm2d, new: nn.BatchNorm2d, idx: torch.Tensor) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(new, name).copy_(getattr(old, name).detach().float().cpu()[idx])
    new.num_batches_tracked.copy_(old.num_batches_tracked)
    new.eps, new.momentum = old.eps, old.momentum
