"""Which width each channel group keeps under a latency budget (pure: no model, no timing).

The network's latency is modelled as the sum over its convolutions of ``t_l(c_in, c_out)`` (a
per-layer latency table). A conv's output width is its group's width; its input width is the sum of
the widths of the groups in the layout it reads (routes concatenate groups). A group of width ``k``
keeps its ``k`` most important channels, so it holds the sum of its top-``k`` importances.

Because a conv's time depends on two groups at once, the choice is made as HALP does: linearise the
total around the current widths (each group's cost as if only it changed), solve the multiple-choice
knapsack (:mod:`slimyolo_ros.prune.knapsack`), move to the solution and repeat; the best solution
whose exact predicted latency is within the budget wins. If none is, a greedy pass removes, one step
of ``round_to`` channels at a time, the channels that cost the least importance per millisecond
saved until the exact prediction fits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from slimyolo_ros.errors import PruneError
from slimyolo_ros.prune.knapsack import multiple_choice_knapsack

Latency = Callable[..., Any]  # (c_in, c_out) -> ms, on scalars or numpy arrays alike


@dataclass(frozen=True)
class ConvTerm:
    """One convolution in the latency model."""

    latency: Latency
    in_groups: tuple[int, ...]  # free groups it reads, with multiplicity (a route may repeat one)
    in_fixed: int  # input channels that never change (the image, fixed groups)
    out_group: int | None  # the free group it writes, None when its output width is fixed
    out_fixed: int = 0  # its output width when out_group is None


@dataclass(frozen=True)
class WidthProblem:
    """Free groups (index g) with their allowed widths and per-channel importance, and the convs."""

    widths: Sequence[np.ndarray]  # per group, the allowed widths, ascending; the last is full width
    importance: Sequence[np.ndarray]  # per group, one importance per channel
    convs: Sequence[ConvTerm]

    def kept_importance(self, g: int, k: int) -> float:
        return float(np.sort(np.asarray(self.importance[g], dtype=np.float64))[::-1][:k].sum())

    def conv_time(self, c: ConvTerm, w: Sequence[int]) -> float:
        cin = c.in_fixed + sum(int(w[g]) for g in c.in_groups)
        cout = int(w[c.out_group]) if c.out_group is not None else c.out_fixed
        return float(c.latency(cin, cout))

    def conv_times(self, c: ConvTerm, w: Sequence[int], g: int, options: np.ndarray) -> np.ndarray:
        """Times of conv ``c`` when group ``g`` takes each width of ``options`` (others as in ``w``)."""
        m = c.in_groups.count(g)
        cin = c.in_fixed + sum(int(w[h]) for h in c.in_groups) + m * (options - int(w[g]))
        cout = options if c.out_group == g else np.full(options.shape, self.conv_time_out(c, w))
        return np.asarray(c.latency(cin, cout), dtype=np.float64) * np.ones(options.shape)

    def conv_time_out(self, c: ConvTerm, w: Sequence[int]) -> int:
        return int(w[c.out_group]) if c.out_group is not None else c.out_fixed

    def total(self, w: Sequence[int]) -> float:
        """Predicted latency (ms) of widths ``w``."""
        return sum(self.conv_time(c, w) for c in self.convs)


def allowed_widths(channels: int, round_to: int, layer_keep: float) -> np.ndarray:
    """Multiples of ``round_to`` from the layer's floor ``ceil(K * C)`` up to C, and C itself."""
    if round_to < 1:
        raise PruneError(f"--round-to {round_to}: must be >= 1")
    floor = max(1, math.ceil(layer_keep * channels - 1e-9))
    low = min(channels, math.ceil(floor / round_to) * round_to)
    return np.array(sorted(set(range(low, channels + 1, round_to)) | {channels}), dtype=np.int64)


def _touching(problem: WidthProblem) -> list[list[ConvTerm]]:
    touch: list[list[ConvTerm]] = [[] for _ in problem.widths]
    for c in problem.convs:
        for g in set(c.in_groups) | ({c.out_group} if c.out_group is not None else set()):
            touch[g].append(c)
    return touch


def _linear_costs(problem: WidthProblem, w: list[int], touch: list[list[ConvTerm]]) -> list[np.ndarray]:
    """Per group and allowed width: the change of the total if only that group moved there."""
    costs = []
    for g, options in enumerate(problem.widths):
        options = np.asarray(options, dtype=np.int64)
        base = sum(problem.conv_time(c, w) for c in touch[g])
        moved = sum((problem.conv_times(c, w, g, options) for c in touch[g]), np.zeros(options.shape))
        costs.append(moved - base)
    return costs


def _values(problem: WidthProblem) -> list[np.ndarray]:
    out = []
    for imp, options in zip(problem.importance, problem.widths, strict=True):
        csum = np.concatenate([[0.0], np.cumsum(np.sort(np.asarray(imp, dtype=np.float64))[::-1])])
        out.append(csum[np.asarray(options)])
    return out


def greedy_shrink(problem: WidthProblem, w: list[int], budget: float) -> list[int]:
    """Step down the group that loses the least importance per ms saved until ``total <= budget``."""
    touch = _touching(problem)
    values = _values(problem)
    pos = [int(np.searchsorted(problem.widths[g], k)) for g, k in enumerate(w)]
    w = list(w)
    total = problem.total(w)
    while total > budget:
        best, best_rate, best_saving = None, math.inf, 0.0
        for g in range(len(w)):
            if pos[g] == 0:
                continue
            moved = list(w)
            moved[g] = int(problem.widths[g][pos[g] - 1])
            saving = sum(problem.conv_time(c, w) - problem.conv_time(c, moved) for c in touch[g])
            if saving <= 0:
                continue
            rate = (values[g][pos[g]] - values[g][pos[g] - 1]) / saving
            if rate < best_rate:
                best, best_rate, best_saving = g, rate, saving
        if best is None:
            raise PruneError(f"latency budget {budget:.4g} ms: {total:.4g} ms predicted at the per-layer "
                             "floor (lower --layer-keep or raise --target-ms)")
        pos[best] -= 1
        w[best] = int(problem.widths[best][pos[best]])
        total -= best_saving
    return w


def select_widths(problem: WidthProblem, budget: float, iterations: int = 8,
                  resolution: int = 2000) -> tuple[list[int], dict]:
    """Widths (one per group) with the most kept importance whose predicted latency is <= budget."""
    floor = [int(o[0]) for o in problem.widths]
    if problem.total(floor) > budget:
        raise PruneError(f"latency budget {budget:.4g} ms: {problem.total(floor):.4g} ms predicted at the "
                         "per-layer floor (lower --layer-keep or raise --target-ms)")
    touch = _touching(problem)
    values = _values(problem)
    w = [int(o[-1]) for o in problem.widths]
    best: list[int] | None = None
    best_value = -math.inf
    history = []
    for _ in range(iterations):
        costs = _linear_costs(problem, w, touch)
        room = budget - problem.total(w)
        try:
            pick = multiple_choice_knapsack(values, costs, room, resolution)
        except PruneError:  # the linearisation is too optimistic here; repair from the floor
            pick = [0] * len(w)
        w_new = [int(problem.widths[g][j]) for g, j in enumerate(pick)]
        t = problem.total(w_new)
        value = sum(float(values[g][j]) for g, j in enumerate(pick))
        history.append({"predicted_ms": round(t, 3), "importance": value})
        if t <= budget and value > best_value:
            best, best_value = w_new, value
        if w_new == w:
            break
        w = w_new
    method = "knapsack"
    if best is None:
        best, method = greedy_shrink(problem, w, budget), "knapsack + greedy"
    return best, {"method": method, "iterations": history, "predicted_ms": problem.total(best)}
