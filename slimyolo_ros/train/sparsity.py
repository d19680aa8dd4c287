"""SlimYOLOv3 sparsity training: an L1 penalty on the BN scale factors (gamma) of prunable convs.

The objective is ``loss + alpha * sum |gamma|``; its subgradient ``alpha * sign(gamma)`` is added to
each gamma's gradient after backward (network slimming, Liu et al. 2017; SlimYOLOv3 used alpha=1e-3).

When the trainer calls :func:`add_l1_subgradient` (our choices, the same effective penalty as the
authors' ultralytics-based code, which added it after every backward):

- AMP: after ``scaler.unscale_(optimizer)``, so the penalty is added to true gradients, not to
  gradients multiplied by the loss scale (and a step the scaler skips for inf/NaN skips it too).
- Gradient accumulation over K micro-batches: once per optimizer step with ``alpha * K``. The data
  gradient at that point is the sum over K micro-batches, so ``K * alpha`` keeps the penalty's ratio to
  it the same as without accumulation (equivalently: alpha * sum|gamma| added to each micro-batch's loss).
- DDP: after the all-reduce (inside backward); every rank adds the same term to the same gammas.

Weighting (:func:`channel_cost_weights`, ``--sparsity-weighting flops``; beyond the paper): the
paper's penalty is the same for every channel, but one channel of the 256x256 stem costs ~50x the
FLOPs of one channel of the 8x8 stage, so uniform L1 thins the cheap deep layers and leaves the
expensive stem whole (docs/results.md). With ``flops``, layer l's gammas get ``alpha * w_l``, w_l
proportional to the FLOPs that removing one of its channels saves (:func:`channel_removal_gflops`),
normalised to a channel-weighted mean of 1 (the resource-weighted gamma penalty of MorphNet, Gordon et
al. 2018, in its simplest form). That saving counts the channel's own output *and* the input side of
every conv that reads it (a 1x1 bottleneck channel of a residual block is cheap itself but feeds a 3x3
conv with 9x its cost), summed over its shortcut group (a trunk channel goes only when every member lets
it go). The pruning rule (one global |gamma| percentile) is unchanged.

Schedules (:func:`alpha_at`): ``constant``; ``decay`` keeps alpha for the first 70% of the epochs,
then lowers it along a half cosine to 0.1 * alpha at the last epoch, so the network recovers
accuracy while the small gammas stay small.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from slimyolo_ros.darknet.channel_graph import Group, channel_graph
from slimyolo_ros.io_utils import atomic_write
from slimyolo_ros.train.options import SCHEDULES, WEIGHTINGS

# log10 |gamma| histogram bins: 1e-6 .. 1e1 in 0.1-decade steps; values below 1e-6 go into the first bin
HIST_EDGES = np.round(np.arange(-6.0, 1.0001, 0.1), 4)
SMALL_GAMMA = 1e-2  # the share of |gamma| below this is reported per epoch


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def prunable_bn(model: nn.Module) -> list[int]:
    """Indices (into ``module_list``) of the convs whose BN gammas are penalised: the channel graph's
    prunable convs (layers joined by a [shortcut] are pruned with one merged mask, so they are prunable
    too; the convs feeding a [yolo] layer keep all outputs)."""
    return list(channel_graph(_unwrap(model)).prunable)


def bn_gammas(model: nn.Module, indices: list[int]) -> list[torch.Tensor]:
    model = _unwrap(model)
    return [model.module_list[i].bn.weight for i in indices]


def channel_removal_gflops(model: nn.Module, img_size: int = 416) -> dict[int, float]:
    """For every conv, the GFLOPs at ``img_size`` that removing one output channel of its shortcut group
    saves: its members' own outputs plus the matching input channel of every conv that reads them
    (through routes, upsample, maxpool and shortcuts; a conv reading the channel twice, as SPP's route
    does, saves it twice). Arithmetic over the cfg graph, no forward pass."""
    from slimyolo_ros.darknet.complexity import layer_table

    model = _unwrap(model)
    rows = [r for r in layer_table(model, img_size) if r["type"] == "convolutional"]
    graph = channel_graph(model)
    saved: dict[Group, float] = {}
    for row in rows:
        i = row["index"]
        own = graph.group_of[i]
        saved[own] = saved.get(own, 0.0) + row["gflops"] / max(row["filters"], 1)
        per_input = row["gflops"] / max(row["input"][0], 1)
        for node, _ in graph.input_layout(i):
            group = graph.group_of[node]
            saved[group] = saved.get(group, 0.0) + per_input
    return {row["index"]: saved[graph.group_of[row["index"]]] for row in rows}


def channel_cost_weights(model: nn.Module, indices: list[int], weighting: str = "uniform",
                         img_size: int = 416) -> list[float]:
    """Per-layer multipliers of alpha for the listed BN layers (see the module docstring).

    ``uniform``: all 1 (the paper). ``flops``: w_l = :func:`channel_removal_gflops` of layer l, scaled so
    that the mean over all listed channels is 1; the ratios do not depend on ``img_size``.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown sparsity weighting {weighting!r} ({', '.join(WEIGHTINGS)})")
    if weighting == "uniform" or not indices:
        return [1.0] * len(indices)
    saved = channel_removal_gflops(model, img_size)
    modules = _unwrap(model).module_list
    per_channel = np.array([saved[i] for i in indices], np.float64)
    channels = np.array([modules[i].bn.weight.numel() for i in indices], np.float64)
    mean = float((per_channel * channels).sum() / channels.sum())
    if mean <= 0:
        return [1.0] * len(indices)
    return (per_channel / mean).tolist()


@torch.no_grad()
def add_l1_subgradient(model: nn.Module, alpha: float, indices: list[int],
                       weights: list[float] | None = None) -> None:
    """Add ``alpha * w_l * sign(gamma)`` to the gradient of each listed BN's gamma (call after backward);
    ``weights`` (one per index, default all 1) from :func:`channel_cost_weights`."""
    if alpha == 0:
        return
    if weights is not None and len(weights) != len(indices):
        raise ValueError(f"{len(weights)} sparsity weights for {len(indices)} BN layers")
    for k, gamma in enumerate(bn_gammas(model, indices)):
        if gamma.grad is None:
            gamma.grad = torch.zeros_like(gamma)
        w = 1.0 if weights is None else float(weights[k])
        gamma.grad.add_(torch.sign(gamma.detach()).to(gamma.grad.dtype), alpha=alpha * w)


def alpha_at(epoch: int, epochs: int, alpha: float, schedule: str = "constant") -> float:
    """The sparsity coefficient for ``epoch`` (0-based) of ``epochs``."""
    if schedule == "constant" or alpha == 0:
        return alpha
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown sparsity schedule {schedule!r} ({', '.join(SCHEDULES)})")
    start = 0.7 * epochs
    if epoch < start or epochs <= 1:
        return alpha
    t = min(1.0, (epoch - start) / max(epochs - 1 - start, 1e-9))
    return alpha * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def gamma_abs(model: nn.Module, indices: list[int]) -> np.ndarray:
    """All listed |gamma| as one float64 array."""
    gammas = bn_gammas(model, indices)
    if not gammas:
        return np.zeros(0)
    return torch.cat([g.detach().abs().flatten().double().cpu() for g in gammas]).numpy()


def gamma_histogram(values: np.ndarray) -> np.ndarray:
    """Counts of log10|gamma| over HIST_EDGES (values outside the range are clipped into the end bins)."""
    logs = np.log10(np.clip(values, 10.0 ** HIST_EDGES[0], 10.0 ** HIST_EDGES[-1] * 0.999))
    counts, _ = np.histogram(logs, bins=HIST_EDGES)
    return counts.astype(np.int64)


class GammaLog:
    """Per-epoch |gamma| histograms of a run, kept in ``<run>/gamma_hist.npz`` and drawn as a heat map."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / "gamma_hist.npz"
        self.png = Path(run_dir) / "gamma_hist.png"
        self.epochs: list[int] = []
        self.counts: list[np.ndarray] = []
        self.small_share: list[float] = []

    def load(self, upto_epoch: int) -> None:
        """Resume: keep the rows of epochs < ``upto_epoch`` from an earlier run."""
        if not self.path.is_file():
            return
        with np.load(self.path) as z:
            keep = z["epochs"] < upto_epoch
            self.epochs = [int(e) for e in z["epochs"][keep]]
            self.counts = list(z["counts"][keep])
            self.small_share = [float(s) for s in z["small_share"][keep]]

    def add(self, epoch: int, values: np.ndarray) -> float:
        share = float((values < SMALL_GAMMA).mean()) if values.size else 0.0
        self.epochs.append(epoch)
        self.counts.append(gamma_histogram(values))
        self.small_share.append(share)
        self._save()
        return share

    def _save(self) -> None:
        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, epochs=np.array(self.epochs, np.int64), counts=np.stack(self.counts),
                         edges=HIST_EDGES, small_share=np.array(self.small_share))

        atomic_write(self.path, write)

    def plot(self, title: str = "") -> Path:
        """The paper's figure: log10|gamma| distribution (colour = share of channels) against epoch."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        counts = np.stack(self.counts).astype(float)
        share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
        fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 2]})
        extent = (self.epochs[0] - 0.5, self.epochs[-1] + 0.5, HIST_EDGES[0], HIST_EDGES[-1])
        im = ax0.imshow(share.T, origin="lower", aspect="auto", extent=extent, cmap="viridis",
                        interpolation="nearest")
        ax0.axhline(np.log10(SMALL_GAMMA), color="w", lw=0.8, ls="--")
        ax0.set_xlabel("epoch")
        ax0.set_ylabel("log10 |gamma|")
        ax0.set_title("BN scale factors over training")
        fig.colorbar(im, ax=ax0, label="share of channels")
        centres = (HIST_EDGES[:-1] + HIST_EDGES[1:]) / 2
        picks = sorted({0, len(self.epochs) // 2, len(self.epochs) - 1})
        for k in picks:
            ax1.plot(centres, share[k], label=f"epoch {self.epochs[k]}")
        ax1.set_xlabel("log10 |gamma|")
        ax1.set_ylabel("share of channels")
        ax1.set_title(f"|gamma| < {SMALL_GAMMA:g}: {self.small_share[-1]:.1%} at the last epoch")
        ax1.legend()
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        atomic_write(self.png, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
        plt.close(fig)
        return self.png
