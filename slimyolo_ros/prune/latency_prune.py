"""``prune_to_latency``: prune a sparsity-trained model so that it runs within ``target_ms`` on the
target (backend, device, threads, input size).

latency table (measured once per target, cached) -> widths with the most importance under the budget
(knapsack over the shortcut groups, per-layer floor) -> surgery -> the pruned network measured end to
end. The table sums conv times only (no routes, upsampling, decode, layout changes), so the end-to-end
time can be over the budget: then the budget given to the selection shrinks by the measured
overshoot and it tries again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from slimyolo_ros.darknet.channel_graph import ChannelGraph, channel_graph
from slimyolo_ros.darknet.model import Darknet
from slimyolo_ros.errors import PruneError
from slimyolo_ros.prune.importance import IMPORTANCE, Importance
from slimyolo_ros.prune.latency_backends import check_backend, interleaved_medians, model_runner
from slimyolo_ros.prune.latency_problem import latency_model
from slimyolo_ros.prune.latency_select import select_widths
from slimyolo_ros.prune.latency_table import LatencyTable, measure_missing, table_key
from slimyolo_ros.prune.plan import ChannelPlan
from slimyolo_ros.prune.slimming import bn_gammas
from slimyolo_ros.prune.surgery import apply_plan
from slimyolo_ros.prune.thresholds import check_ratios

log = logging.getLogger(__name__)


def importance_kept(graph: ChannelGraph, gammas: Mapping[int, np.ndarray], plan: ChannelPlan,
                    importance: Importance) -> float:
    """Share of the prunable groups' total importance that ``plan`` keeps (comparable across modes)."""
    kept = total = 0.0
    for group in graph.groups:
        if group.fixed or not group.convs:
            continue
        score = importance(group, gammas)
        kept += float(score[plan.conv_masks[group.convs[0]]].sum())
        total += float(score.sum())
    return kept / total if total else 1.0


def measure_model(model: Darknet, backend: str, device: str, threads: int, img_size: int,
                  repeats: int = 5) -> float:
    """Median end-to-end forward (ms) of ``model`` on the target."""
    return interleaved_medians({0: model_runner(backend, device, threads, model, img_size)},
                               warmup=1, repeats=repeats)[0]


@dataclass(frozen=True)
class LatencyTarget:
    """Where and how fast: the budget and the target it is measured on."""

    target_ms: float
    backend: str = "onnxruntime"
    device: str = "cpu"
    img_size: int = 416
    threads: int | None = None  # default: torch's current intra-op threads
    importance: str = "gamma-sum"
    cache_dir: str | os.PathLike | None = None
    repeats: int = 5  # timed runs per table entry and per end-to-end measurement (median)
    points: int = 5  # table grid points per width axis
    tries: int = 4


def prune_to_latency(model: Darknet, target: LatencyTarget, layer_keep: float = 0.1, round_to: int = 8,
                     fold: bool = True, measure: Callable[[Darknet], float] | None = None,
                     ) -> tuple[Darknet, ChannelPlan, dict]:
    """The pruned model, its plan and what happened (table, every try: budget, predicted, measured).

    ``measure``: how a pruned network's end-to-end ms are taken (default: :func:`measure_model` on
    the target).
    """
    t = target
    target_ms, backend, device, img_size = t.target_ms, t.backend, t.device, t.img_size
    importance = t.importance
    if not (isinstance(target_ms, (int, float)) and target_ms > 0):
        raise PruneError(f"--target-ms {target_ms!r}: must be a positive number of milliseconds")
    check_ratios(0.0, layer_keep)
    check_backend(backend, device)
    if importance not in IMPORTANCE:
        raise PruneError(f"importance {importance!r}: expected one of {', '.join(IMPORTANCE)}")
    if round_to < 1:
        raise PruneError(f"--round-to {round_to}: must be >= 1")
    threads = t.threads or torch.get_num_threads()
    graph = channel_graph(model)
    gammas = bn_gammas(model)
    lm = latency_model(model, graph, gammas, IMPORTANCE[importance], img_size, round_to, layer_keep,
                      t.points)
    table = LatencyTable.load(table_key(backend, device, threads, img_size), t.cache_dir)
    measured_now = measure_missing(table, lm.wanted(), backend, device, threads, t.repeats)
    problem = lm.problem(table)
    info = {"mode": "latency", "target_ms": float(target_ms), "backend": backend, "device": device,
            "threads": threads, "img_size": img_size, "round_to": round_to, "layer_keep": layer_keep,
            "importance": importance, "fold": fold, "prunable_layers": sorted(gammas),
            "table": {"path": str(table.path), "key": table.key, "entries": len(table.entries),
                      "measured_now": measured_now, "points_per_axis": t.points},
            "predicted_full_ms": round(problem.total([int(w[-1]) for w in lm.widths]), 3), "tries": []}
    floor_ms = problem.total([int(w[0]) for w in lm.widths])

    def attempt(budget: float) -> tuple[Darknet, ChannelPlan, dict]:
        # Below the table's floor only the floor is left to try: the table may be slower than now.
        budget = max(budget, floor_ms)
        widths, sel = select_widths(problem, budget)
        plan = lm.plan(widths)
        pruned = apply_plan(model, plan, fold=fold)
        ms = measure(pruned) if measure else measure_model(pruned, backend, device, threads, img_size,
                                                           t.repeats)
        kept = importance_kept(graph, gammas, plan, IMPORTANCE[importance])
        log.info("budget %.1f ms: table predicts %.1f ms, measured %.1f ms (target %.1f), importance kept "
                 "%.2f%%", budget, sel["predicted_ms"], ms, target_ms, 100 * kept)
        return pruned, plan, {"budget_ms": budget, "predicted_ms": round(sel["predicted_ms"], 3),
                              "measured_ms": round(ms, 3), "importance_kept": round(kept, 6),
                              "method": sel["method"], "at_floor": budget <= floor_ms}

    pruned, plan, best = _search(attempt, float(target_ms), t.tries, info["tries"])
    info.update(predicted_ms=best["predicted_ms"], measured_ms=best["measured_ms"],
                within_budget=best["measured_ms"] <= target_ms,
                prediction_error_pct=round(100 * (best["predicted_ms"] / best["measured_ms"] - 1), 1),
                importance_kept=best["importance_kept"])
    if not info["within_budget"]:
        log.warning("measured %.1f ms after %d tries, over the %.1f ms target", best["measured_ms"], t.tries,
                    target_ms)
    return pruned, plan, info


def _search(attempt: Callable[[float], tuple[Darknet, ChannelPlan, dict]], target_ms: float, tries: int,
            record: list[dict], slack: float = 0.1) -> tuple[Darknet, ChannelPlan, dict]:
    """Budget -> measured ms, corrected by the measured/target ratio: tightened when over the target
    (what the table does not see: routes, upsampling, the decode, layout changes), loosened when more
    than ``slack`` under it (the table measured in a busier minute). Returns the try within the target
    that keeps the most importance, else the last one."""
    budget, best, last = target_ms, None, None
    for _ in range(tries):
        last = attempt(budget)
        record.append(last[2])
        ms = last[2]["measured_ms"]
        if ms <= target_ms and (best is None or last[2]["importance_kept"] > best[2]["importance_kept"]):
            best = last
        if (1 - slack) * target_ms <= ms <= target_ms or (ms > target_ms and last[2]["at_floor"]):
            break
        # From the budget the try really used (never below the table's floor), with a margin for noise.
        budget = last[2]["budget_ms"] * 0.98 * target_ms / ms
    assert last is not None
    return best or last
