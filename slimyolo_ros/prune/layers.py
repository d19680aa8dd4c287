"""Layer pruning (beyond the paper): drop whole residual blocks with the lowest mean |gamma|.

A Darknet residual block is ``conv 1x1 -> conv 3x3 -> [shortcut] from=-3``, i.e. ``y = x + f(x)``.
Removing it leaves ``y = x``: the three layers go, and every later reference to the shortcut points at
the block's input instead. When f's last conv has gamma = beta = 0, f(x) = leaky(0) = 0 and the removal
is exact. Fewer layers buys more real speed than narrower ones (per-layer overheads, better kernels).
"""

from __future__ import annotations

import numpy as np
import torch

from slimyolo_ros.darknet.cfg import parse_cfg
from slimyolo_ros.darknet.channel_graph import has_bn
from slimyolo_ros.darknet.model import Darknet, Route, Shortcut
from slimyolo_ros.errors import PruneError


def _read_by_reference(model: Darknet) -> set[int]:
    """Layers whose output a route or shortcut reads (resolved, absolute indices)."""
    read: set[int] = set()
    for m in model.module_list:
        if isinstance(m, Route):
            read.update(m.layers)
        elif isinstance(m, Shortcut):
            read.add(m.source)
    return read


def residual_blocks(model: Darknet) -> list[int]:
    """Indices of the [shortcut] layers that close a ``conv, conv, shortcut from=-3`` block."""
    # A conv read by anything other than its own block cannot go with the block.
    read = _read_by_reference(model)
    modules = model.module_list
    return [i for i, m in enumerate(modules)
            if isinstance(m, Shortcut) and i >= 3 and m.source == i - 3
            and has_bn(modules[i - 2]) and has_bn(modules[i - 1]) and not read & {i - 2, i - 1}]


def _relative(option: str) -> list[bool]:
    """Per reference in a route's ``layers`` / a shortcut's ``from``: written relative (negative)?
    Only the notation is read here, so the rewritten cfg keeps the author's style."""
    return [v.strip().startswith("-") for v in option.split(",") if v.strip()]


def block_scores(model: Darknet) -> dict[int, float]:
    """Mean |gamma| over both convs of each residual block, keyed by its shortcut index."""
    scores = {}
    for s in residual_blocks(model):
        g = torch.cat([model.module_list[j].bn.weight.detach().abs().flatten().float().cpu()
                       for j in (s - 2, s - 1)])
        scores[s] = float(g.mean())
    return scores


def choose_blocks(scores: dict[int, float], n: int) -> list[int]:
    if not 0 <= n <= len(scores):
        raise PruneError(f"--prune-layers {n}: the network has {len(scores)} residual blocks")
    return sorted(sorted(scores, key=lambda s: (scores[s], s))[:n])


@torch.no_grad()
def drop_blocks(model: Darknet, shortcuts: list[int]) -> Darknet:
    """A new Darknet without the residual blocks closed by ``shortcuts`` (model is left untouched)."""
    blocks = set(residual_blocks(model))
    bad = [s for s in shortcuts if s not in blocks]
    if bad:
        raise PruneError(f"layers {bad} do not close a 'conv, conv, shortcut from=-3' residual block")
    removed = {j for s in shortcuts for j in (s - 2, s - 1, s)}
    new_index: dict[int, int] = {}
    n = 0
    for i in range(len(model.module_list)):
        if i in removed:
            if i in shortcuts:  # y = x: the block's output is its input
                new_index[i] = new_index[i - 3]
            continue
        new_index[i] = n
        n += 1

    sections = parse_cfg(model.cfg_text(), source="<layer-pruned>")
    kept = []
    for i, s in enumerate(sections[1:]):
        if i in removed:
            continue
        s = s.copy()
        ni = new_index[i]
        module = model.module_list[i]
        if isinstance(module, Route):
            refs = [new_index[j] for j in module.layers]
            pairs = zip(_relative(s.options["layers"]), refs, strict=True)
            s.options["layers"] = ", ".join(str(r - ni if rel else r) for rel, r in pairs)
        elif isinstance(module, Shortcut):
            s.options["from"] = str(new_index[module.source] - ni)
        kept.append((i, s))
    new = Darknet([sections[0]] + [s for _, s in kept], source="<layer-pruned>")
    for ni, (i, _) in enumerate(kept):
        new.module_list[ni].load_state_dict(model.module_list[i].state_dict())
    new.header, new.seen = model.header, model.seen
    new.train(model.training)
    return new.to(next(model.parameters()).device)


def prune_layers(model: Darknet, n: int) -> tuple[Darknet, dict]:
    """Drop the ``n`` residual blocks with the lowest mean |gamma|; returns the model and what went."""
    scores = block_scores(model)
    chosen = choose_blocks(scores, n)
    info = {"blocks": len(scores), "dropped_shortcuts": chosen,
            "dropped_scores": [round(scores[s], 6) for s in chosen],
            "kept_score_min": float(np.min([v for s, v in scores.items() if s not in chosen]))
            if len(chosen) < len(scores) else None}
    return drop_blocks(model, chosen), info
