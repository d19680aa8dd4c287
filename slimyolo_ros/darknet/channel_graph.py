"""Which output channels of a Darknet network are tied together: the one definition that pruning and
the sparsity regulariser share.

Built from a built :class:`Darknet` (its ``Route.layers`` and ``Shortcut.source`` are already resolved
to absolute indices), never from the cfg text. Every layer's output is described as a *layout*: a tuple
of segments ``(node, channels)`` where a node is a conv layer whose output channels appear there (or
``INPUT``, the image). Then

- ``[shortcut]`` adds two outputs channel by channel, so the nodes on both sides fall into one
  :class:`Group`: channel ``c`` of every member is kept or removed together, so the residual sum stays
  valid;
- ``[route]`` concatenates layouts (SPP blocks, the FPN merges);
- ``[maxpool]``, ``[upsample]`` and ``[yolo]`` pass the layout through.

A conv is *prunable* when it has batch norm (its gammas are what the pruner ranks) and does not feed a
``[yolo]`` layer (its channels are the head's encoding). A group with a member that is not prunable (the
image, a head conv, a conv without BN) keeps every channel.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from slimyolo_ros.darknet.model import Darknet, Route, Shortcut, YOLOLayer
from slimyolo_ros.errors import PruneError

INPUT = -1

Layout = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Group:
    """Nodes (conv indices, or INPUT) whose output channels are tied one to one by shortcuts."""

    nodes: tuple[int, ...]  # sorted; INPUT (-1) first when the image itself is tied in
    channels: int
    fixed: bool  # some member must keep every channel

    @property
    def convs(self) -> tuple[int, ...]:
        return tuple(n for n in self.nodes if n != INPUT)


@dataclass(frozen=True)
class ChannelGraph:
    layouts: tuple[Layout, ...]  # per layer, its output channels
    groups: tuple[Group, ...]  # every conv (and INPUT) in exactly one group, ordered by first node
    group_of: dict[int, Group]  # node -> its group
    heads: frozenset[int]  # convs feeding a [yolo] layer
    prunable: tuple[int, ...]  # convs whose BN gammas take part in the thresholds, ascending
    in_channels: int

    def input_layout(self, i: int) -> Layout:
        """What layer ``i`` reads: the previous layer's output (the image for layer 0)."""
        return self.layouts[i - 1] if i else ((INPUT, self.in_channels),)


def is_conv(module: nn.Module) -> bool:
    return isinstance(getattr(module, "conv", None), nn.Conv2d)


def has_bn(module: nn.Module) -> bool:
    return is_conv(module) and isinstance(getattr(module, "bn", None), nn.BatchNorm2d)


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, a: int) -> int:
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _layouts(model: Darknet, uf: _UnionFind) -> list[Layout]:
    out: list[Layout] = []
    for i, module in enumerate(model.module_list):
        prev = out[i - 1] if i else ((INPUT, model.in_channels),)
        if is_conv(module):
            lay: Layout = ((i, module.conv.out_channels),)
        elif isinstance(module, Route):
            lay = tuple(seg for j in module.layers for seg in out[j])
        elif isinstance(module, Shortcut):
            other = out[module.source]
            if [n for _, n in prev] != [n for _, n in other]:
                # Tying segments of different boundaries would need per-channel groups; no
                # YOLOv3-family cfg does that, so refuse it plainly rather than prune wrongly.
                raise PruneError(f"layer {i} [shortcut] (cfg line {model.module_defs[i].line}) adds layouts "
                                 f"with different segment boundaries ({list(prev)} vs {list(other)}); "
                                 "cannot prune this topology")
            for (a, _), (b, _) in zip(prev, other, strict=True):
                uf.union(a, b)
            lay = prev
        else:  # maxpool, upsample, yolo: the same channels
            lay = prev
        out.append(lay)
    return out


def channel_graph(model: Darknet) -> ChannelGraph:
    """The channel dependencies of ``model`` (a Darknet, or a DDP/DataParallel wrapper around one)."""
    model = getattr(model, "module", model)
    modules = model.module_list
    uf = _UnionFind()
    convs = [i for i, m in enumerate(modules) if is_conv(m)]
    for node in [INPUT, *convs]:
        uf.find(node)
    layouts = _layouts(model, uf)
    heads = frozenset(i - 1 for i, m in enumerate(modules)
                      if isinstance(m, YOLOLayer) and i and is_conv(modules[i - 1]))
    prunable = tuple(i for i in convs if has_bn(modules[i]) and i not in heads)
    sizes = {i: modules[i].conv.out_channels for i in convs}
    sizes[INPUT] = model.in_channels
    members: dict[int, list[int]] = {}
    for node in [INPUT, *convs]:
        members.setdefault(uf.find(node), []).append(node)
    keep_all = set(convs) - set(prunable) | {INPUT}
    groups = tuple(Group(tuple(nodes), sizes[nodes[0]], any(n in keep_all for n in nodes))
                   for _, nodes in sorted(members.items()))
    group_of = {n: g for g in groups for n in g.nodes}
    return ChannelGraph(tuple(layouts), groups, group_of, heads, prunable, model.in_channels)
