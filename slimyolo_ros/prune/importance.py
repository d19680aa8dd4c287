"""Channel importance of a shortcut group: a small function of the group and the |gamma| of its
members (Torch-Pruning's group importance: one score per channel shared by every member)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from slimyolo_ros.darknet.channel_graph import Group

Importance = Callable[[Group, Mapping[int, np.ndarray]], np.ndarray]


def gamma_sum(group: Group, gammas: Mapping[int, np.ndarray]) -> np.ndarray:
    """Per channel: the sum of |gamma| over the members (a channel feeds every member's output)."""
    score = np.zeros(group.channels)
    for node in group.nodes:
        if node in gammas:
            score += np.abs(np.asarray(gammas[node], dtype=np.float64))
    return score


def gamma_max(group: Group, gammas: Mapping[int, np.ndarray]) -> np.ndarray:
    """Per channel: the largest |gamma| over the members (what the percentile mode's union keeps)."""
    score = np.zeros(group.channels)
    for node in group.nodes:
        if node in gammas:
            score = np.maximum(score, np.abs(np.asarray(gammas[node], dtype=np.float64)))
    return score


IMPORTANCE: dict[str, Importance] = {"gamma-sum": gamma_sum, "gamma-max": gamma_max}
