"""The SlimYOLOv3 pipeline: baseline -> (sparsity train -> prune -> fine-tune) per ratio, iterated.

Every stage's model is evaluated the same way (the project's Detector + COCO evaluator on --val,
params, GFLOPs and CPU latency at the input size), and the run ends with the paper-style table:
``OUT/slim_report.md``, ``OUT/slim_report.json`` and ``OUT/slim_map_vs_gflops.png``.

Layout of OUT:
    baseline/                  trainer run (skipped when --weights is given)
    iter1_p50/sparsity/        trainer run with --sparsity; its last.pt is what gets pruned
    iter1_p50/prune/           pruned.cfg, pruned.weights, pruned.pt, prune_report.json/.md
    iter1_p50/finetune/        trainer run on pruned.cfg from pruned.pt; its best.pt feeds the next ratio
With ``independent=True`` (a sweep): OUT/sparsity/ once, then OUT/p50/prune, OUT/p50/finetune, ... per ratio.
Each finished step writes ``step.json``; a rerun with ``resume=True`` reuses finished steps, so a long run
killed halfway loses at most the step in progress.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from slimyolo_ros.darknet.checkpoint import load_checkpoint, load_model
from slimyolo_ros.darknet.complexity import count_gflops, count_params
from slimyolo_ros.darknet.model import Darknet
from slimyolo_ros.data.datasets import read_dataset
from slimyolo_ros.errors import PruneError
from slimyolo_ros.evaluate.run import METRICS, evaluate_model
from slimyolo_ros.io_utils import atomic_write_json
from slimyolo_ros.prune.latency_prune import LatencyTarget
from slimyolo_ros.prune.thresholds import check_ratios
from slimyolo_ros.slim.prune_dir import prune_to_dir
from slimyolo_ros.slim.report import write_slim_report
from slimyolo_ros.train.trainer import train

log = logging.getLogger(__name__)


def cpu_latency_ms(model: Darknet, img_size: int, repeats: int = 5, warmup: int = 2) -> float:
    """Median forward time of one image on the CPU (batch 1, eval mode, current torch threads)."""
    warmup = min(warmup, repeats)
    m = copy.deepcopy(model).cpu().float().eval()
    x = torch.rand(1, m.in_channels, img_size, img_size)
    times = []
    with torch.inference_mode():
        for k in range(warmup + repeats):
            t0 = time.perf_counter()
            m(x)
            if k >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def stage_row(name: str, kind: str, model: Darknet, class_names: list[str], img_size: int,
              samples: list, weights: str | os.PathLike, latency_repeats: int = 5,
              metrics: dict | None = None) -> dict:
    """One table row. ``metrics`` (P, R, F1, mAP) are computed here unless the trainer already scored
    this very checkpoint with the same evaluator, input size and validation set."""
    scored_by = "trainer" if metrics is not None else "pipeline"
    if metrics is None:
        metrics = evaluate_model(model, class_names, img_size, samples, device="cpu", progress=True)
    row = {"model": name, "stage": kind, "img_size": img_size, "weights": str(weights),
           "scored_by": scored_by}
    row.update({k: float(metrics[k]) for k in METRICS})
    row.update(gflops=count_gflops(model, img_size), params=count_params(model),
               latency_ms=cpu_latency_ms(model, img_size, repeats=latency_repeats))
    log.info("%-28s mAP@0.5 %.4f  GFLOPs %.3f  params %d  %.1f ms", name, row["map50"], row["gflops"],
             row["params"], row["latency_ms"])
    return row


def trainer_metrics(weights: str | os.PathLike, img_size: int, val: str | os.PathLike) -> dict | None:
    """The metrics the trainer stored in a checkpoint, if they were taken at ``img_size`` on ``val``."""
    ckpt = load_checkpoint(weights)
    metrics, opts = ckpt.get("metrics") or {}, ckpt.get("train_options") or {}
    if all(k in metrics for k in METRICS) and opts.get("img_size") == img_size and \
            Path(str(opts.get("val", ""))).resolve() == Path(val).resolve():
        return metrics
    return None


@dataclass
class SlimConfig:
    """What ``slim()`` was asked for (also the report's ``config``)."""

    cfg: Path
    data: str
    val: str
    out: Path
    ratios: list[float]
    img_size: int
    batch: int
    layer_keep: float = 0.1
    sparsity: float = 1e-3
    sparsity_epochs: int = 10
    finetune_epochs: int = 10
    baseline_epochs: int = 0
    round_to: int = 1
    sparsity_schedule: str = "constant"
    device: str = "auto"
    resume: bool = False
    latency_repeats: int = 5
    independent: bool = False
    distill: float = 0.0
    train_options: dict[str, Any] = field(default_factory=dict)
    targets_ms: list[float] = field(default_factory=list)  # latency budgets, in place of ratios
    latency: dict[str, Any] = field(default_factory=dict)  # LatencyTarget's other fields

    def steps(self) -> list[tuple[str, float]]:
        """(tag, ratio or budget) per prune: ``90`` for ratio 0.9, ``40ms`` for a 40 ms budget."""
        if self.targets_ms:
            return [(f"{t:g}ms", t) for t in self.targets_ms]
        return [(f"{round(r * 100):d}", r) for r in self.ratios]


class _Pipeline:
    """The steps of one run. Each finished step writes ``step.json`` (trainings, prunes) or ``row.json``
    (scores) in its directory; with ``resume`` a rerun reuses them."""

    def __init__(self, c: SlimConfig, base_name: str):
        self.c = c
        self.base_name = base_name
        self.samples = read_dataset(c.val, split="val").samples
        self.weights: str | os.PathLike | None = None  # the baseline's, once known
        self.rows: list[dict] = []

    def _done(self, path: Path, marker: str = "step.json") -> dict | None:
        f = path / marker
        return json.loads(f.read_text()) if self.c.resume and f.is_file() else None

    def train_step(self, path: Path, **args: Any) -> dict:
        prior = self._done(path)
        if prior is not None:
            log.info("reusing finished step %s", path)
            return prior
        c = self.c
        result = train(data=c.data, val=c.val, img_size=c.img_size, batch=c.batch, out=path, device=c.device,
                       **args, **c.train_options)
        return _finish(path, {k: result[k] for k in ("best", "last") if k in result})

    def score(self, step: Path, name: str, kind: str, weights: str | os.PathLike, trained: bool) -> None:
        row = self._done(step, "row.json")
        if row is None:
            model, names, _ = load_model(weights)
            metrics = trainer_metrics(weights, self.c.img_size, self.c.val) if trained else None
            row = stage_row(name, kind, model, names, self.c.img_size, self.samples, weights,
                            self.c.latency_repeats, metrics)
            atomic_write_json(step / "row.json", row)
        self.rows.append(row)

    def baseline(self, weights: str | os.PathLike | None) -> tuple[Path, Path]:
        """Train or load the unpruned model and score it; returns its (cfg, weights)."""
        c = self.c
        if weights is None:
            weights = self.train_step(c.out / "baseline", cfg=c.cfg, epochs=c.baseline_epochs)["best"]
        self.weights = weights
        is_pt = str(weights).endswith(".pt")
        model, class_names, _ = load_model(weights, cfg=None if is_pt else c.cfg)
        if not is_pt:
            self.rows.append(stage_row(self.base_name, "baseline", model, class_names, c.img_size,
                                       self.samples, weights, c.latency_repeats))
            return c.cfg, Path(weights)
        # the checkpoint's own architecture (it may be a pruned one already)
        cfg = c.out / "baseline.cfg"
        model.save_cfg(cfg)
        self.score(c.out / "baseline", self.base_name, "baseline", weights, trained=c.baseline_epochs > 0)
        return cfg, Path(weights)

    def sparsity_step(self, path: Path, tag: str, cfg: Path, weights: Path) -> str:
        # Its last epoch is pruned: best-by-mAP could be an early epoch whose gammas are not sparse yet.
        c = self.c
        res = self.train_step(path, cfg=cfg, weights=weights, epochs=c.sparsity_epochs, sparsity=c.sparsity,
                              sparsity_schedule=c.sparsity_schedule)
        self.score(path, f"{tag} sparse", "sparsity", res["last"], trained=True)
        return res["last"]

    def prune_and_finetune(self, it: Path, tag: str, ratio: float, sparse_w: str) -> tuple[Path, Path]:
        """``ratio``: the global percent, or the latency budget in ms when the run has budgets."""
        c = self.c
        prune_dir = it / "prune"
        if self._done(prune_dir) is None:
            sparse, names, _ = load_model(sparse_w)
            latency = LatencyTarget(ratio, img_size=c.img_size, **c.latency) if c.targets_ms else None
            _, report = prune_to_dir(sparse, names, c.img_size, prune_dir, None if latency else ratio,
                                     c.layer_keep, round_to=c.round_to, title=f"Prune report: {tag}",
                                     latency=latency)
            _finish(prune_dir, {"pt": str(prune_dir / "pruned.pt"),
                                "gflops_reduction_pct": report["complexity"][0]["gflops_reduction_pct"]})
        self.score(prune_dir, f"{tag} pruned", "pruned", prune_dir / "pruned.pt", trained=False)
        # fine-tuning is plain training of the pruned cfg from the pruned weights
        teacher = {"teacher_weights": str(sparse_w), "distill": c.distill} if c.distill > 0 else {}
        res = self.train_step(it / "finetune", cfg=prune_dir / "pruned.cfg", weights=prune_dir / "pruned.pt",
                              epochs=c.finetune_epochs, **teacher)
        self.score(it / "finetune", tag, "finetuned", res["best"], trained=True)
        return prune_dir / "pruned.cfg", Path(res["best"])

    def run(self, weights: str | os.PathLike | None) -> None:
        c = self.c
        cur_cfg, cur_weights = self.baseline(weights)
        if c.independent:
            # One sparsity run, then each ratio pruned from it and fine-tuned on its own (the paper's
            # SlimYOLOv3-SPP3-90 and -95 are such single-step prunes of one sparse model).
            sparse_w = self.sparsity_step(c.out / "sparsity", self.base_name, cur_cfg, cur_weights)
            for pct, ratio in c.steps():
                self.prune_and_finetune(c.out / f"p{pct}", f"{self.base_name}-slim-{pct}", ratio, sparse_w)
            return
        tags: list[str] = []
        for k, (step_tag, ratio) in enumerate(c.steps(), start=1):
            tags.append(step_tag)
            tag = f"{self.base_name}-slim-{'-'.join(tags)}"
            it = c.out / f"iter{k}_p{tags[-1]}"
            sparse_w = self.sparsity_step(it / "sparsity", tag, cur_cfg, cur_weights)
            cur_cfg, cur_weights = self.prune_and_finetune(it, tag, ratio, sparse_w)


def _finish(path: Path, result: dict) -> dict:
    atomic_write_json(path / "step.json", result)
    return result


def slim(cfg: str | os.PathLike, data: str | os.PathLike, val: str | os.PathLike, out: str | os.PathLike,
         ratios: Sequence[float], img_size: int, batch: int, weights: str | os.PathLike | None = None,
         baseline_epochs: int = 0, layer_keep: float = 0.1, sparsity: float = 1e-3,
         sparsity_epochs: int = 10, finetune_epochs: int = 10, round_to: int = 1,
         sparsity_schedule: str = "constant", device: str = "auto", resume: bool = False,
         name: str | None = None, train_options: dict[str, Any] | None = None,
         latency_repeats: int = 5, independent: bool = False, distill: float = 0.0,
         targets_ms: Sequence[float] | None = None, latency: dict[str, Any] | None = None) -> dict:
    """Run the pipeline; returns the report (also written as OUT/slim_report.json/.md + PNG).

    ``independent``: instead of iterating (each ratio applied to the previous fine-tuned model), sparsity
    train once and prune + fine-tune each ratio from that one sparse model (a sweep of ratios).
    ``distill`` > 0: fine-tuning also distils from the unpruned sparse model the prune came from
    (its weight next to the ground-truth loss; see ``YoloLoss.distill``).
    ``targets_ms``: latency budgets (ms), one prune each, in place of ``ratios``; ``latency``: where
    they are measured (:class:`LatencyTarget`'s backend, device, threads, ...).
    """
    targets_ms = list(targets_ms or [])
    if not ratios and not targets_ms:
        raise PruneError("--ratios: give at least one global ratio, e.g. 0.5,0.5 (or --target-ms)")
    for t in targets_ms:
        if not t > 0:
            raise PruneError(f"--target-ms {t!r}: budgets must be positive milliseconds")
    for r in ([] if targets_ms else ratios):
        check_ratios(r, layer_keep)
    if weights is None and baseline_epochs <= 0:
        raise PruneError("give --weights (a trained baseline) or --baseline-epochs > 0")
    c = SlimConfig(Path(cfg), str(data), str(val), Path(out), list(ratios), img_size, batch, layer_keep,
                   sparsity, sparsity_epochs, finetune_epochs, baseline_epochs, round_to,
                   sparsity_schedule, device, resume, latency_repeats, independent, distill,
                   dict(train_options or {}), targets_ms, dict(latency or {}))
    c.out.mkdir(parents=True, exist_ok=True)
    pipeline = _Pipeline(c, name or Path(cfg).stem)
    pipeline.run(weights)
    report = {"config": {"cfg": str(cfg), "data": str(data), "val": str(val),
                         "weights": str(pipeline.weights),
                         "ratios": [] if targets_ms else list(ratios), "targets_ms": targets_ms,
                         "latency": c.latency, "layer_keep": layer_keep, "sparsity": sparsity,
                         "sparsity_schedule": sparsity_schedule,
                         "sparsity_weighting": c.train_options.get("sparsity_weighting", "uniform"),
                         "sparsity_epochs": sparsity_epochs,
                         "finetune_epochs": finetune_epochs, "baseline_epochs": baseline_epochs,
                         "distill": distill,
                         "img_size": img_size, "batch": batch, "round_to": round_to,
                         "mode": "independent" if independent else "iterative",
                         "val_images": len(pipeline.samples), "torch_threads": torch.get_num_threads()},
              "rows": pipeline.rows}
    write_slim_report(c.out, report)
    return report
