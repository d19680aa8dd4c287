"""From a model and its channel graph to the width problem of :mod:`latency_select`, and from the
chosen widths back to a :class:`ChannelPlan` the surgery applies.

The free groups are the channel graph's groups that may lose channels (no fixed member). Every conv
of the network is a term of the latency model: a head or a conv without BN has a fixed output width
but still gets cheaper when what it reads is pruned.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from slimyolo_ros.darknet.channel_graph import ChannelGraph, Group
from slimyolo_ros.darknet.model import Darknet
from slimyolo_ros.prune.importance import Importance
from slimyolo_ros.prune.latency_backends import ConvGeometry
from slimyolo_ros.prune.latency_select import ConvTerm, WidthProblem, allowed_widths
from slimyolo_ros.prune.latency_table import LatencyTable, grid
from slimyolo_ros.prune.plan import ChannelPlan, propagate


@torch.no_grad()
def conv_geometries(model: Darknet, img_size: int) -> dict[int, ConvGeometry]:
    """Per conv layer: kernel, stride, padding and the size of its input at a square ``img_size``."""
    sizes: dict[int, tuple[int, int]] = {}
    hooks = []
    for i, m in enumerate(model.module_list):
        conv = getattr(m, "conv", None)
        if isinstance(conv, torch.nn.Conv2d):
            hooks.append(conv.register_forward_hook(
                lambda mod, inp, out, i=i: sizes.__setitem__(i, tuple(inp[0].shape[2:]))))
    try:
        was = model.training
        model.eval()(torch.zeros(1, model.in_channels, img_size, img_size,
                                 device=next(model.parameters()).device))
        model.train(was)
    finally:
        for h in hooks:
            h.remove()
    out = {}
    for i, (h, w) in sizes.items():
        conv = model.module_list[i].conv
        act = model.module_defs[i].options.get("activation", "linear")
        out[i] = ConvGeometry(conv.kernel_size[0], conv.stride[0], conv.padding[0], int(h), int(w),
                              "linear" if act == "linear" else "leaky")
    return out


@dataclass
class LayerSpec:
    """One conv's place: its geometry, the free groups it reads/writes and its table grid."""

    index: int
    geometry: ConvGeometry
    in_groups: tuple[int, ...]
    in_fixed: int
    out_group: int | None
    out_fixed: int
    cins: list[int]
    couts: list[int]


@dataclass
class LatencyModel:
    graph: ChannelGraph
    free: list[Group]  # the free groups, index g
    widths: list[np.ndarray]  # allowed widths per free group
    importance: list[np.ndarray]  # per free group, per channel
    layers: list[LayerSpec]

    def wanted(self) -> dict[ConvGeometry, list[tuple[int, int]]]:
        """(c_in, c_out) grid points per geometry (the union over the convs that share it)."""
        out: dict[ConvGeometry, set[tuple[int, int]]] = {}
        for sp in self.layers:
            out.setdefault(sp.geometry, set()).update((i, o) for i in sp.cins for o in sp.couts)
        return {g: sorted(p) for g, p in out.items()}

    def problem(self, table: LatencyTable) -> WidthProblem:
        return WidthProblem(self.widths, self.importance, [
            ConvTerm(table.interpolator(sp.geometry, sp.cins, sp.couts), sp.in_groups, sp.in_fixed,
                     sp.out_group, sp.out_fixed) for sp in self.layers])

    def plan(self, widths: list[int]) -> ChannelPlan:
        """Each free group keeps its ``widths[g]`` most important channels."""
        masks = {}
        for g, (group, k) in enumerate(zip(self.free, widths, strict=True)):
            keep = np.zeros(group.channels, dtype=bool)
            keep[np.argsort(-self.importance[g], kind="stable")[:k]] = True
            masks.update({node: keep for node in group.convs if node in self.graph.prunable})
        return propagate(self.graph, masks)


def latency_model(model: Darknet, graph: ChannelGraph, gammas: Mapping[int, np.ndarray],
                  importance: Importance, img_size: int, round_to: int, layer_keep: float,
                  points: int = 5) -> LatencyModel:
    free = [g for g in graph.groups if not g.fixed and g.convs]
    index = {g: k for k, g in enumerate(free)}
    widths = [allowed_widths(g.channels, round_to, layer_keep) for g in free]
    geoms = conv_geometries(model, img_size)
    layers = []
    for i in sorted(geoms):
        in_groups, in_fixed = [], 0
        for node, n in graph.input_layout(i):
            g = graph.group_of[node]
            if g in index:
                in_groups.append(index[g])
            else:
                in_fixed += n
        og = graph.group_of[i]
        out_group = index.get(og)
        cin_low = in_fixed + sum(int(widths[g][0]) for g in in_groups)
        cin_high = in_fixed + sum(free[g].channels for g in in_groups)
        couts = grid(int(widths[out_group][0]), og.channels, round_to, points) if out_group is not None \
            else [og.channels]
        layers.append(LayerSpec(i, geoms[i], tuple(in_groups), in_fixed, out_group,
                                og.channels if out_group is None else 0,
                                grid(cin_low, cin_high, round_to, points), couts))
    return LatencyModel(graph, free, widths, [importance(g, gammas) for g in free], layers)
