"""The multiple-choice knapsack behind latency-aware pruning: one width per channel group, the most
importance under a latency budget.

Each group offers a few choices (its allowed widths), each with a value (the importance its kept
channels hold) and a cost (milliseconds, possibly negative against a reference). Exactly one choice
per group. Costs are put on a grid of ``resolution`` steps of the budget and rounded **up**, so a
solution the DP accepts is within the budget in real milliseconds too; the optimum is exact on that
grid (HALP, Shen et al. 2022, solves the same problem per channel with the same kind of DP).
No library here does a multiple-choice knapsack with float costs (OR-Tools' solver is 0/1 and
integer, and a dependency of its size for 30 lines); numpy vectorises the DP over the budget axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from slimyolo_ros.errors import PruneError


def multiple_choice_knapsack(values: Sequence[np.ndarray], costs: Sequence[np.ndarray], budget: float,
                             resolution: int = 2000) -> list[int]:
    """Index of the chosen option per group maximising the summed value with summed cost <= budget.

    ``values[g][j]`` and ``costs[g][j]``: option ``j`` of group ``g``. Raises PruneError when even
    the cheapest option of every group exceeds the budget.
    """
    if len(values) != len(costs):
        raise ValueError("values and costs must have one entry per group")
    vals = [np.asarray(v, dtype=np.float64) for v in values]
    cost = [np.asarray(c, dtype=np.float64) for c in costs]
    if not vals:
        return []
    floor = sum(float(c.min()) for c in cost)
    room = budget - floor
    if room < -1e-9 * max(1.0, abs(budget)):
        raise PruneError(f"latency budget {budget:.4g} ms is below the cheapest choice ({floor:.4g} ms)")
    room = max(room, 0.0)
    scale = room / resolution if room > 0 else 1.0
    # Cheapest option of a group costs 0 steps; others ceil(extra / step): never under-counted.
    steps = [np.ceil((c - c.min()) / scale - 1e-9).astype(np.int64) if room > 0
             else np.where(c - c.min() > 0, resolution + 1, 0) for c in cost]
    best = np.zeros(resolution + 1)  # best value with at most b steps spent
    picks = np.zeros((len(vals), resolution + 1), dtype=np.int32)
    for g, (v, s) in enumerate(zip(vals, steps, strict=True)):
        new = np.full(resolution + 1, -np.inf)
        for j in np.argsort(s, kind="stable"):
            if s[j] > resolution:
                continue
            cand = np.full(resolution + 1, -np.inf)
            cand[s[j]:] = best[:resolution + 1 - s[j]] + v[j]
            better = cand > new
            new[better] = cand[better]
            picks[g, better] = j
        best = new
    choice, b = [], resolution
    for g in range(len(vals) - 1, -1, -1):
        j = int(picks[g, b])
        choice.append(j)
        b -= int(steps[g][j])
    return choice[::-1]
