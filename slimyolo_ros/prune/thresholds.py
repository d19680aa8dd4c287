"""SlimYOLOv3's channel-selection rule as pure functions on arrays of |gamma|.

A channel of a prunable conv is removed iff ``|gamma| < gamma_hat`` (the global threshold, the
P-quantile of every prunable |gamma|) **and** it is not among its layer's top ``ceil(K * C)``
channels by |gamma| (the per-layer safety threshold: at least a share K of each layer survives).
Nothing here knows about models or graphs; :mod:`slimyolo_ros.prune.plan` merges these masks
across shortcuts and routes.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import numpy as np

from slimyolo_ros.errors import PruneError

# Weights fresh from sparsity training (alpha ~1e-3) have most |gamma| well below this; plain
# training leaves almost none there. Used only to warn, never to decide.
SPARSE_GAMMA = 1e-2
SPARSE_SHARE_MIN = 0.1


class NotSparseWarning(UserWarning):
    """The BN scale factors do not look sparsity-trained; pruning will cut informative channels."""


def check_ratios(global_percent: float, layer_keep: float) -> None:
    """P must be in [0, 1) and K in (0, 1]; percentages (e.g. 90) are a common slip, so say so."""
    if not (isinstance(global_percent, (int, float)) and 0.0 <= global_percent < 1.0):
        hint = " (a fraction, e.g. 0.9 for 90%)" if isinstance(global_percent, (int, float)) and \
            global_percent >= 1 else ""
        raise PruneError(f"global percent P={global_percent!r} is outside [0, 1){hint}")
    if not (isinstance(layer_keep, (int, float)) and 0.0 < layer_keep <= 1.0):
        raise PruneError(f"layer keep K={layer_keep!r} is outside (0, 1] "
                         "(the least share of each layer's channels that survives, e.g. 0.1)")


def global_threshold(gammas: Mapping[int, np.ndarray], global_percent: float) -> float:
    """gamma_hat: the ``global_percent`` quantile of all |gamma| of the prunable layers."""
    if not gammas:
        raise PruneError("no prunable layers (no [convolutional] with batch_normalize=1 outside the heads)")
    flat = np.concatenate([np.abs(np.asarray(g, dtype=np.float64)).ravel() for g in gammas.values()])
    return float(np.quantile(flat, global_percent))


def layer_floor_threshold(gamma: np.ndarray, layer_keep: float) -> float:
    """pi_l: the |gamma| of the layer's ``ceil(K*C)``-th largest channel (the layer's (1-K) quantile)."""
    a = np.sort(np.abs(np.asarray(gamma, dtype=np.float64)).ravel())[::-1]
    keep = max(1, math.ceil(layer_keep * a.size - 1e-9))
    return float(a[keep - 1])


def layer_keep_mask(gamma: np.ndarray, gamma_hat: float, layer_keep: float) -> np.ndarray:
    """Boolean keep mask of one layer: above gamma_hat, or among its top ceil(K*C) by |gamma|.

    The floor is taken by rank, not by comparing against pi_l, so ties at pi_l never keep fewer
    (or more) than ceil(K*C) channels.
    """
    a = np.abs(np.asarray(gamma, dtype=np.float64)).ravel()
    keep = a >= gamma_hat
    floor = max(1, math.ceil(layer_keep * a.size - 1e-9))
    top = np.argsort(-a, kind="stable")[:floor]
    keep[top] = True
    return keep


def keep_masks(gammas: Mapping[int, np.ndarray], global_percent: float,
               layer_keep: float) -> tuple[dict[int, np.ndarray], dict]:
    """Per-layer keep masks before any graph constraint, and the thresholds used (for the report)."""
    check_ratios(global_percent, layer_keep)
    gamma_hat = global_threshold(gammas, global_percent)
    masks = {i: layer_keep_mask(g, gamma_hat, layer_keep) for i, g in gammas.items()}
    info = {
        "global_percent": float(global_percent),
        "layer_keep": float(layer_keep),
        "gamma_hat": gamma_hat,
        "layer_thresholds": {i: min(gamma_hat, layer_floor_threshold(g, layer_keep))
                             for i, g in gammas.items()},
        "sparsity": sparsity_stats(gammas, gamma_hat),
    }
    warn_if_not_sparse(info["sparsity"], global_percent)
    return masks, info


def sparsity_stats(gammas: Mapping[int, np.ndarray], gamma_hat: float) -> dict:
    flat = np.concatenate([np.abs(np.asarray(g, dtype=np.float64)).ravel() for g in gammas.values()])
    return {
        "channels": int(flat.size),
        "share_below_1e-2": float(np.mean(flat < SPARSE_GAMMA)),
        "median_abs_gamma": float(np.median(flat)),
        "removed_abs_gamma_max": float(flat[flat < gamma_hat].max()) if np.any(flat < gamma_hat) else 0.0,
        "removed_abs_gamma_sum_share": float(flat[flat < gamma_hat].sum() / max(flat.sum(), 1e-12)),
    }


def warn_if_not_sparse(stats: dict, global_percent: float) -> None:
    """Warn when few |gamma| are near zero: the threshold then removes channels that carry signal."""
    share = stats["share_below_1e-2"]
    if share >= SPARSE_SHARE_MIN or global_percent == 0:
        return
    msg = (f"the weights do not look sparsity-trained: only {share:.1%} of the prunable |gamma| are "
           f"below {SPARSE_GAMMA:g} (expected >= {SPARSE_SHARE_MIN:.0%} after 'slimyolo train --sparsity'); "
           f"the global threshold at P={global_percent:g} removes channels with |gamma| up to "
           f"{stats['removed_abs_gamma_max']:.4g} ({stats['removed_abs_gamma_sum_share']:.1%} of the total "
           f"|gamma| mass), so expect a large accuracy drop before fine-tuning")
    warnings.warn(msg, NotSparseWarning, stacklevel=3)
