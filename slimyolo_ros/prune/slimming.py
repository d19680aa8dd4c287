"""``prune(model, P, K)``: SlimYOLOv3 channel pruning of a Darknet model in memory.

thresholds (which channels) -> plan over the channel graph (what the dependencies force) -> surgery
(the new network).
"""

from __future__ import annotations

import numpy as np

from slimyolo_ros.darknet.channel_graph import channel_graph
from slimyolo_ros.darknet.model import Darknet
from slimyolo_ros.prune.plan import ChannelPlan, propagate
from slimyolo_ros.prune.surgery import apply_plan
from slimyolo_ros.prune.thresholds import check_ratios, keep_masks


def bn_gammas(model: Darknet, layers: list[int] | None = None) -> dict[int, np.ndarray]:
    """|gamma| of the prunable BN convs (all of them when ``layers`` is None)."""
    layers = list(channel_graph(model).prunable) if layers is None else layers
    return {i: model.module_list[i].bn.weight.detach().float().abs().cpu().numpy() for i in layers}


def plan_pruning(model: Darknet, global_percent: float, layer_keep: float,
                 round_to: int = 1) -> tuple[ChannelPlan, dict]:
    """The channel plan for ratio P and layer keep K, and the thresholds used."""
    check_ratios(global_percent, layer_keep)
    gammas = bn_gammas(model)
    masks, info = keep_masks(gammas, global_percent, layer_keep)
    plan = propagate(channel_graph(model), masks, scores=gammas, round_to=round_to)
    info["round_to"] = round_to
    info["prunable_layers"] = sorted(gammas)
    info["removed_by_threshold"] = int(sum((~m).sum() for m in masks.values()))
    info["removed_after_graph"] = int(sum((~plan.conv_masks[i]).sum() for i in gammas))
    return plan, info


def prune(model: Darknet, global_percent: float, layer_keep: float, round_to: int = 1,
          fold: bool = True, sizes: tuple[int, ...] = (416, 608, 832)) -> tuple[Darknet, dict]:
    """Prune ``model`` (left untouched) and return the pruned model and its report (see report.py)."""
    from slimyolo_ros.prune.report import build_report

    plan, info = plan_pruning(model, global_percent, layer_keep, round_to)
    pruned = apply_plan(model, plan, fold=fold)
    info["fold"] = fold
    return pruned, build_report(model, pruned, plan, info, sizes)
