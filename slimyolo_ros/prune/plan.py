"""From per-conv candidate keep masks to what every layer keeps, over the channel graph's groups.

A group (convs tied by shortcuts, see :mod:`slimyolo_ros.darknet.channel_graph`) keeps the union of
its members' masks; a member without a candidate mask (the image, a head conv, a conv without BN)
keeps everything, so its whole group does. A layer's mask is the concatenation of its layout's group
masks, and the input mask of each conv is the mask of the layout that feeds it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from slimyolo_ros.darknet.channel_graph import INPUT, ChannelGraph, Group, Layout
from slimyolo_ros.errors import PruneError


@dataclass
class ChannelPlan:
    """Result of mask propagation: what every layer keeps."""

    out_masks: list[np.ndarray]  # per layer, over its output channels
    in_masks: dict[int, np.ndarray]  # per conv, over its input channels
    groups: list[list[int]]  # conv indices that share one mask (shortcut-joined), each sorted
    conv_masks: dict[int, np.ndarray] = field(default_factory=dict)  # per conv, its output mask

    def kept(self, i: int) -> int:
        return int(self.out_masks[i].sum())


def group_importance(group: Group, scores: Mapping[int, np.ndarray]) -> np.ndarray:
    """Per channel of ``group``: the largest |score| (|gamma|) over its members that have one."""
    score = np.zeros(group.channels)
    for node in group.nodes:
        if node in scores:
            score = np.maximum(score, np.abs(np.asarray(scores[node], dtype=np.float64)))
    return score


def _check_masks(graph: ChannelGraph, masks: Mapping[int, np.ndarray]) -> None:
    for i, m in masks.items():
        if i == INPUT or i not in graph.group_of:
            raise PruneError(f"mask given for layer {i}, which is not a [convolutional]")
        if i in graph.heads:
            raise PruneError(f"layer {i} feeds a [yolo] layer and cannot be pruned")
        if len(m) != graph.group_of[i].channels:
            raise PruneError(f"mask of layer {i} has {len(m)} entries, the layer has "
                             f"{graph.group_of[i].channels} filters")


def propagate(graph: ChannelGraph, masks: Mapping[int, np.ndarray],
              scores: Mapping[int, np.ndarray] | None = None, round_to: int = 1) -> ChannelPlan:
    """Merge per-conv keep masks over the graph and derive every layer's in/out masks.

    ``masks``: candidate keep masks of the prunable convs (others keep everything).
    ``scores``: |gamma| per conv, used to add channels back to a multiple of ``round_to``.
    """
    if round_to < 1:
        raise PruneError(f"--round-to N={round_to} must be >= 1")
    _check_masks(graph, masks)
    group_mask: dict[Group, np.ndarray] = {}
    for group in graph.groups:
        keep = np.zeros(group.channels, dtype=bool)
        for node in group.nodes:
            keep |= np.asarray(masks[node], dtype=bool) if node in masks else True
        if round_to > 1:
            keep = _round_up(keep, group_importance(group, scores or {}), round_to)
        if not keep.any():
            raise PruneError(f"pruning would remove every channel of layer(s) {list(group.convs)}; raise K")
        group_mask[group] = keep

    def mask_of(layout: Layout) -> np.ndarray:
        return np.concatenate([group_mask[graph.group_of[node]] for node, _ in layout])

    out_masks = [mask_of(lay) for lay in graph.layouts]
    convs = sorted(n for n in graph.group_of if n != INPUT)
    in_masks = {i: mask_of(graph.input_layout(i)) for i in convs}
    groups = sorted(list(g.convs) for g in graph.groups if g.convs)
    return ChannelPlan(out_masks, in_masks, groups, {i: out_masks[i] for i in convs})


def _round_up(keep: np.ndarray, importance: np.ndarray, n: int) -> np.ndarray:
    """Keep a multiple of ``n`` channels by adding back the removed ones of highest importance."""
    target = min(keep.size, math.ceil(keep.sum() / n) * n)
    missing = target - int(keep.sum())
    if missing <= 0:
        return keep
    order = [c for c in np.argsort(-importance, kind="stable") if not keep[c]]
    keep = keep.copy()
    keep[order[:missing]] = True
    return keep
