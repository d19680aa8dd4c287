"""Channel dependencies of a Darknet cfg graph: the one place that knows shortcut/route rules.

Every layer's output is described as a *layout*: a list of segments ``(node, channels)`` where a
node is a conv layer whose output channels appear there (or ``INPUT``, the image). Then

- ``[shortcut]`` adds two outputs channel by channel, so the nodes on both sides are merged into one
  group and must share one keep mask (the union of their masks): a residual sum stays valid and the
  shortcut-joined convs are pruned too;
- ``[route]`` concatenates layouts (SPP blocks, the FPN merges);
- ``[maxpool]``, ``[upsample]`` pass the layout through;
- a conv whose output feeds a ``[yolo]`` keeps every output (its channels are the head's encoding),
  and a conv without batch norm has no gamma, so it keeps everything as well.

The input-channel mask of each conv is the mask of the layout that feeds it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from slimyolo_ros.darknet.cfg import Section
from slimyolo_ros.errors import PruneError

INPUT = -1

Layout = list[tuple[int, int]]


def _is_conv(s: Section) -> bool:
    return s.type == "convolutional"


def _has_bn(s: Section) -> bool:
    return _is_conv(s) and int(s.options.get("batch_normalize", "0")) > 0


def _abs_index(i: int, ref: int) -> int:
    return i + ref if ref < 0 else ref


def route_sources(defs: Sequence[Section], i: int) -> list[int]:
    return [_abs_index(i, int(v)) for v in defs[i].options["layers"].split(",") if v.strip()]


def shortcut_source(defs: Sequence[Section], i: int) -> int:
    return _abs_index(i, int(defs[i].options["from"]))


def head_convs(defs: Sequence[Section]) -> set[int]:
    """Convs that feed a [yolo] layer directly: their outputs are never pruned."""
    return {i - 1 for i, s in enumerate(defs) if s.type == "yolo" and i > 0 and _is_conv(defs[i - 1])}


def prunable_convs(defs: Sequence[Section]) -> list[int]:
    """Convs whose BN gammas take part in the thresholds: batch-normalised, not a head conv."""
    heads = head_convs(defs)
    return [i for i, s in enumerate(defs) if _has_bn(s) and i not in heads]


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
            # The smaller index is the root, so a group is named by its first conv.
            lo, hi = min(ra, rb), max(ra, rb)
            self.parent[hi] = lo


def layouts(defs: Sequence[Section], in_channels: int = 3) -> tuple[list[Layout], _UnionFind]:
    """Per layer output layout, and the union-find of nodes merged by shortcuts."""
    uf = _UnionFind()
    out: list[Layout] = []
    for i, s in enumerate(defs):
        prev = out[i - 1] if i else [(INPUT, in_channels)]
        if s.type == "convolutional":
            lay = [(i, int(s.options["filters"]))]
            uf.find(i)
        elif s.type in ("maxpool", "upsample", "yolo"):
            lay = list(prev)
        elif s.type == "route":
            lay = [seg for j in route_sources(defs, i) for seg in out[j]]
        elif s.type == "shortcut":
            j = shortcut_source(defs, i)
            a, b = prev, out[j]
            if [n for _, n in a] != [n for _, n in b]:
                # Merging segments of different boundaries would need per-channel groups; no
                # YOLOv3-family cfg does that, so refuse it plainly rather than prune wrongly.
                raise PruneError(f"layer {i} [shortcut] (cfg line {s.line}) adds layouts with different "
                                 f"segment boundaries ({a} vs {b}); cannot prune this topology")
            for (na, _), (nb, _) in zip(a, b, strict=True):
                uf.union(na, nb)
            lay = list(prev)
        else:
            raise PruneError(f"layer {i} [{s.type}] (cfg line {s.line}): unsupported by the pruner")
        out.append(lay)
    return out, uf


@dataclass
class ChannelPlan:
    """Result of mask propagation: what every layer keeps."""

    out_masks: list[np.ndarray]  # per layer, over its output channels
    in_masks: dict[int, np.ndarray]  # per conv, over its input channels
    groups: list[list[int]]  # conv indices that share one mask (shortcut-joined), each sorted
    conv_masks: dict[int, np.ndarray] = field(default_factory=dict)  # per conv, its output mask

    def kept(self, i: int) -> int:
        return int(self.out_masks[i].sum())


def propagate(defs: Sequence[Section], masks: Mapping[int, np.ndarray],
              scores: Mapping[int, np.ndarray] | None = None, channel_multiple: int = 1,
              in_channels: int = 3) -> ChannelPlan:
    """Merge per-conv keep masks over the graph and derive every layer's in/out masks.

    ``masks``: candidate keep masks of the prunable convs (others keep everything).
    ``scores``: |gamma| per conv, used to add channels back for ``channel_multiple``.
    """
    if channel_multiple < 1:
        raise PruneError(f"channel multiple N={channel_multiple} must be >= 1")
    lays, uf = layouts(defs, in_channels)
    heads = head_convs(defs)
    conv_ids = [i for i, s in enumerate(defs) if _is_conv(s)]
    sizes = {i: int(defs[i].options["filters"]) for i in conv_ids}
    sizes[INPUT] = in_channels
    for i, m in masks.items():
        if i not in sizes or i == INPUT:
            raise PruneError(f"mask given for layer {i}, which is not a [convolutional]")
        if i in heads:
            raise PruneError(f"layer {i} feeds a [yolo] layer and cannot be pruned")
        if len(m) != sizes[i]:
            raise PruneError(f"mask of layer {i} has {len(m)} entries, the layer has {sizes[i]} filters")

    members: dict[int, list[int]] = {}
    for node in [INPUT, *conv_ids]:
        members.setdefault(uf.find(node), []).append(node)

    group_mask: dict[int, np.ndarray] = {}
    for root, nodes in members.items():
        n = sizes[nodes[0]]
        keep = np.zeros(n, dtype=bool)
        for node in nodes:
            # Anything without a candidate mask (input, head convs, no-BN convs) keeps all.
            keep |= np.asarray(masks[node], dtype=bool) if node in masks else True
        if channel_multiple > 1:
            keep = _round_up(keep, nodes, scores or {}, channel_multiple)
        if not keep.any():
            layers = [x for x in nodes if x >= 0]
            raise PruneError(f"pruning would remove every channel of layer(s) {layers}; raise K")
        group_mask[root] = keep

    def mask_of(layout: Layout) -> np.ndarray:
        return np.concatenate([group_mask[uf.find(node)] for node, _ in layout])

    out_masks = [mask_of(lay) for lay in lays]
    in_masks = {i: (mask_of(lays[i - 1]) if i else np.ones(in_channels, dtype=bool)) for i in conv_ids}
    groups = sorted(sorted(x for x in nodes if x >= 0) for nodes in members.values()
                    if any(x >= 0 for x in nodes))
    return ChannelPlan(out_masks, in_masks, groups, {i: out_masks[i] for i in conv_ids})


def _round_up(keep: np.ndarray, nodes: list[int], scores: Mapping[int, np.ndarray], n: int) -> np.ndarray:
    """Keep a multiple of ``n`` channels by adding back the removed ones with the highest |gamma|."""
    size = keep.size
    target = min(size, math.ceil(keep.sum() / n) * n)
    missing = target - int(keep.sum())
    if missing <= 0:
        return keep
    score = np.zeros(size)
    for node in nodes:
        if node in scores:
            score = np.maximum(score, np.abs(np.asarray(scores[node], dtype=np.float64)))
    order = [c for c in np.argsort(-score, kind="stable") if not keep[c]]
    keep = keep.copy()
    keep[order[:missing]] = True
    return keep
