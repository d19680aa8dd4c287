"""Prune a model and write its files: pruned.cfg, pruned.weights, pruned.pt, prune_report.json/.md.

Shared by ``slimyolo prune`` and the ``slimyolo slim`` pipeline so both write the same set.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from slimyolo_ros.darknet.checkpoint import save_checkpoint
from slimyolo_ros.darknet.model import Darknet
from slimyolo_ros.darknet.weights import save_darknet_weights
from slimyolo_ros.errors import PruneError
from slimyolo_ros.evaluate.run import evaluate_model
from slimyolo_ros.io_utils import atomic_write_json, atomic_write_text
from slimyolo_ros.prune.latency_prune import LatencyTarget, prune_to_latency
from slimyolo_ros.prune.layers import prune_layers as drop_residual_blocks
from slimyolo_ros.prune.report import build_report, complexity_rows, to_markdown
from slimyolo_ros.prune.slimming import plan_pruning
from slimyolo_ros.prune.surgery import apply_plan

log = logging.getLogger(__name__)


def prune_to_dir(model: Darknet, class_names: list[str], img_size: int, out: str | os.PathLike,
                 global_percent: float | None, layer_keep: float, round_to: int = 1, fold: bool = True,
                 eval_samples: list | None = None, sizes: tuple[int, ...] = (416, 608, 832),
                 title: str | None = None, prune_layers: int = 0,
                 latency: LatencyTarget | None = None) -> tuple[Darknet, dict]:
    """Prune ``model`` and write the five files under ``out``; returns (pruned model, report).

    ``latency``: prune to a latency budget measured on a target instead of the global percent.
    ``prune_layers`` > 0 first drops that many residual blocks (lowest mean |gamma|), then prunes
    channels of what is left; complexity is then reported against the original ``model``.

    With ``eval_samples`` the report also holds the mAP right after pruning (before any
    fine-tuning) with and without beta folding, and the unpruned model's for reference.
    """
    out = Path(out)
    original = model
    layer_info = None
    if prune_layers:
        model, layer_info = drop_residual_blocks(model, prune_layers)
    if latency is not None:
        pruned, plan, info = prune_to_latency(model, latency, layer_keep=layer_keep, round_to=round_to,
                                              fold=fold)
    else:
        if global_percent is None:
            raise PruneError("give a global percent (--global-percent) or a latency target (--target-ms)")
        plan, info = plan_pruning(model, global_percent, layer_keep, round_to)
        pruned = apply_plan(model, plan, fold=fold)
        info["fold"] = fold
    report = build_report(model, pruned, plan, info, sizes)
    if layer_info is not None:
        report["layer_pruning"] = layer_info
        report["complexity"] = complexity_rows(original, pruned, sizes)
    if eval_samples is not None:
        other = apply_plan(model, plan, fold=not fold)
        folded, unfolded = (pruned, other) if fold else (other, pruned)
        report["map"] = {}
        for name, m in (("unpruned", original), ("pruned, beta folded", folded),
                        ("pruned, beta dropped", unfolded)):
            metrics = evaluate_model(m, class_names, img_size, eval_samples, device="cpu", progress=True)
            report["map"][name] = {k: metrics[k] for k in ("map50", "map", "precision", "recall", "f1")}
            log.info("%s: mAP@0.5 %.4f", name, metrics["map50"])
    out.mkdir(parents=True, exist_ok=True)
    pruned.save_cfg(out / "pruned.cfg")
    save_darknet_weights(pruned, out / "pruned.weights")
    save_checkpoint(out / "pruned.pt", pruned, class_names, img_size,
                    prune={"global_percent": None if global_percent is None else float(global_percent),
                           "target_ms": None if latency is None else latency.target_ms,
                           "layer_keep": float(layer_keep), "round_to": int(round_to), "fold": bool(fold)})
    report["files"] = {k: str(out / f) for k, f in (("cfg", "pruned.cfg"), ("weights", "pruned.weights"),
                                                     ("pt", "pruned.pt"), ("json", "prune_report.json"),
                                                     ("md", "prune_report.md"))}
    atomic_write_json(out / "prune_report.json", report)
    atomic_write_text(out / "prune_report.md", to_markdown(report, title or f"Prune report: {out}"))
    return pruned, report
