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

import json
import logging
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from slimyolo_ros.darknet.checkpoint import load_model
from slimyolo_ros.darknet.complexity import count_gflops, count_params
from slimyolo_ros.darknet.model import Darknet
from slimyolo_ros.errors import PruneError
from slimyolo_ros.io_utils import atomic_write, atomic_write_json, atomic_write_text
from slimyolo_ros.prune.files import evaluate_map, prune_to_dir
from slimyolo_ros.prune.thresholds import check_ratios

log = logging.getLogger(__name__)

METRICS = ("precision", "recall", "f1", "map50", "map")


def cpu_latency_ms(model: Darknet, img_size: int, repeats: int = 5, warmup: int = 2) -> float:
    """Median forward time of one image on the CPU (batch 1, eval mode, current torch threads)."""
    import copy

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
        metrics = evaluate_map(model, class_names, img_size, samples)
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
    from slimyolo_ros.darknet.checkpoint import load_checkpoint

    ckpt = load_checkpoint(weights)
    metrics, opts = ckpt.get("metrics") or {}, ckpt.get("train_options") or {}
    if all(k in metrics for k in METRICS) and opts.get("img_size") == img_size and \
            Path(str(opts.get("val", ""))).resolve() == Path(val).resolve():
        return metrics
    return None


class _Steps:
    """Finished-step ledger: ``step.json`` in each step's directory holds its result."""

    def __init__(self, resume: bool):
        self.resume = resume

    def done(self, path: Path) -> dict | None:
        marker = path / "step.json"
        if self.resume and marker.is_file():
            return json.loads(marker.read_text())
        return None

    def finish(self, path: Path, result: dict) -> dict:
        atomic_write_json(path / "step.json", result)
        return result


def slim(cfg: str | os.PathLike, data: str | os.PathLike, val: str | os.PathLike, out: str | os.PathLike,
         ratios: Sequence[float], img_size: int, batch: int, weights: str | os.PathLike | None = None,
         baseline_epochs: int = 0, layer_keep: float = 0.1, sparsity: float = 1e-3,
         sparsity_epochs: int = 10, finetune_epochs: int = 10, channel_multiple: int = 1,
         sparsity_schedule: str = "constant", device: str = "auto", resume: bool = False,
         name: str | None = None, train_options: dict[str, Any] | None = None,
         latency_repeats: int = 5, independent: bool = False, distill: float = 0.0) -> dict:
    """Run the pipeline; returns the report (also written as OUT/slim_report.json/.md + PNG).

    ``independent``: instead of iterating (each ratio applied to the previous fine-tuned model), sparsity
    train once and prune + fine-tune each ratio from that one sparse model (a sweep of ratios).
    ``distill`` > 0: fine-tuning also distils from the unpruned sparse model the prune came from
    (its weight next to the ground-truth loss; see ``YoloLoss.distill``).
    """
    from slimyolo_ros.data.visdrone import read_visdrone
    from slimyolo_ros.train.trainer import train

    if not ratios:
        raise PruneError("--ratios: give at least one global ratio, e.g. 0.5,0.5")
    for r in ratios:
        check_ratios(r, layer_keep)
    if weights is None and baseline_epochs <= 0:
        raise PruneError("give --weights (a trained baseline) or --baseline-epochs > 0")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    steps = _Steps(resume)
    kw = dict(train_options or {})
    samples = read_visdrone(val)
    base_name = name or Path(cfg).stem
    rows: list[dict] = []

    def train_step(path: Path, **args: Any) -> dict:
        prior = steps.done(path)
        if prior is not None:
            log.info("reusing finished step %s", path)
            return prior
        result = train(data=data, val=val, img_size=img_size, batch=batch, out=path, device=device, **args,
                       **kw)
        return steps.finish(path, {k: result[k] for k in ("best", "last") if k in result})

    def score(step: Path, name: str, kind: str, weights_file: str | os.PathLike, trained: bool) -> dict:
        marker = step / "row.json"
        if resume and marker.is_file():
            return json.loads(marker.read_text())
        model, names, _ = load_model(weights_file)
        metrics = trainer_metrics(weights_file, img_size, val) if trained else None
        row = stage_row(name, kind, model, names, img_size, samples, weights_file, latency_repeats, metrics)
        atomic_write_json(marker, row)
        return row

    # 1. the unpruned baseline
    if weights is None:
        res = train_step(out / "baseline", cfg=cfg, epochs=baseline_epochs)
        weights = res["best"]
    model, class_names, _ = load_model(weights, cfg=None if str(weights).endswith(".pt") else cfg)
    cur_cfg, cur_weights = Path(cfg), Path(weights)
    if str(weights).endswith(".pt"):
        # the checkpoint's own architecture (it may be a pruned one already)
        cur_cfg = out / "baseline.cfg"
        model.save_cfg(cur_cfg)
        rows.append(score(out / "baseline", base_name, "baseline", weights, trained=baseline_epochs > 0))
    else:
        rows.append(stage_row(base_name, "baseline", model, class_names, img_size, samples, weights,
                              latency_repeats))

    def sparsity_step(path: Path, tag: str) -> str:
        # Sparsity training from the current model; its last epoch is pruned (best-by-mAP could be
        # an early epoch whose gammas are not sparse yet).
        res = train_step(path, cfg=cur_cfg, weights=cur_weights, epochs=sparsity_epochs,
                         sparsity=sparsity, sparsity_schedule=sparsity_schedule)
        rows.append(score(path, f"{tag} sparse", "sparsity", res["last"], trained=True))
        return res["last"]

    def prune_and_finetune(it: Path, tag: str, ratio: float, sparse_w: str) -> tuple[Path, Path]:
        prune_dir = it / "prune"
        if steps.done(prune_dir) is None:
            sparse, names, _ = load_model(sparse_w)
            _, report = prune_to_dir(sparse, names, img_size, prune_dir, ratio, layer_keep,
                                     channel_multiple=channel_multiple, title=f"Prune report: {tag}")
            steps.finish(prune_dir, {"pt": str(prune_dir / "pruned.pt"),
                                     "gflops_reduction_pct": report["complexity"][0]["gflops_reduction_pct"]})
        rows.append(score(prune_dir, f"{tag} pruned", "pruned", prune_dir / "pruned.pt", trained=False))
        # fine-tuning is plain training of the pruned cfg from the pruned weights
        teacher = {"teacher_weights": str(sparse_w), "distill": distill} if distill > 0 else {}
        res = train_step(it / "finetune", cfg=prune_dir / "pruned.cfg", weights=prune_dir / "pruned.pt",
                         epochs=finetune_epochs, **teacher)
        rows.append(score(it / "finetune", tag, "finetuned", res["best"], trained=True))
        return prune_dir / "pruned.cfg", Path(res["best"])

    if independent:
        # One sparsity run, then each ratio pruned from it and fine-tuned on its own (the paper's
        # SlimYOLOv3-SPP3-90 and -95 are such single-step prunes of one sparse model).
        sparse_w = sparsity_step(out / "sparsity", base_name)
        for ratio in ratios:
            pct = f"{round(ratio * 100):d}"
            prune_and_finetune(out / f"p{pct}", f"{base_name}-slim-{pct}", ratio, sparse_w)
    else:
        tags: list[str] = []
        for k, ratio in enumerate(ratios, start=1):
            tags.append(f"{round(ratio * 100):d}")
            tag = f"{base_name}-slim-{'-'.join(tags)}"
            it = out / f"iter{k}_p{tags[-1]}"
            sparse_w = sparsity_step(it / "sparsity", tag)
            cur_cfg, cur_weights = prune_and_finetune(it, tag, ratio, sparse_w)

    report = {"config": {"cfg": str(cfg), "data": str(data), "val": str(val), "weights": str(weights),
                         "ratios": list(ratios), "layer_keep": layer_keep, "sparsity": sparsity,
                         "sparsity_schedule": sparsity_schedule,
                         "sparsity_weighting": kw.get("sparsity_weighting", "uniform"),
                         "sparsity_epochs": sparsity_epochs,
                         "finetune_epochs": finetune_epochs, "baseline_epochs": baseline_epochs,
                         "distill": distill,
                         "img_size": img_size, "batch": batch, "channel_multiple": channel_multiple,
                         "mode": "independent" if independent else "iterative",
                         "val_images": len(samples), "torch_threads": torch.get_num_threads()},
              "rows": rows}
    write_slim_report(out, report)
    return report


def to_markdown(report: dict) -> str:
    c = report["config"]
    base = report["rows"][0]
    lines = ["# SlimYOLOv3 pipeline report", "",
             f"Global ratios {', '.join(f'{r:g}' for r in c['ratios'])} ({c.get('mode', 'iterative')}), "
             f"layer keep {c['layer_keep']:g}, sparsity alpha {c['sparsity']:g} ({c['sparsity_schedule']}, "
             f"{c.get('sparsity_weighting', 'uniform')} weighting) "
             f"for {c['sparsity_epochs']} epochs, fine-tuning {c['finetune_epochs']} epochs"
             + (f" (distilled from the sparse model, weight {c['distill']:g})" if c.get("distill") else "")
             + "; evaluated on "
             f"{c['val_images']} images of {c['val']}. Latency: CPU forward only, batch 1, median, "
             f"{c['torch_threads']} torch threads.", "",
             "| model | stage | input | P | R | F1 | mAP@0.5 | mAP@0.5:0.95 | GFLOPs | params | latency (ms) "
             "| GFLOPs cut | ΔmAP@0.5 |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        cut = 100 * (1 - r["gflops"] / base["gflops"])
        dmap = 100 * (r["map50"] - base["map50"])
        lines.append(f"| {r['model']} | {r['stage']} | {r['img_size']} | {r['precision']:.3f} | "
                     f"{r['recall']:.3f} | {r['f1']:.3f} | {r['map50']:.4f} | {r['map']:.4f} | "
                     f"{r['gflops']:.3f} | {r['params'] / 1e6:.3f} M | {r['latency_ms']:.1f} | "
                     f"{cut:.1f}% | {dmap:+.2f} |")
    return "\n".join(lines) + "\n"


def plot_map_vs_gflops(report: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers = {"baseline": "s", "sparsity": "x", "pruned": "v", "finetuned": "o"}
    for stage, marker in markers.items():
        rows = [r for r in report["rows"] if r["stage"] == stage]
        if rows:
            ax.scatter([r["gflops"] for r in rows], [r["map50"] for r in rows], marker=marker, label=stage)
    for r in report["rows"]:
        if r["stage"] in ("baseline", "finetuned"):
            ax.annotate(r["model"], (r["gflops"], r["map50"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    tuned = [r for r in report["rows"] if r["stage"] in ("baseline", "finetuned")]
    ax.plot([r["gflops"] for r in tuned], [r["map50"] for r in tuned], lw=0.8, color="gray")
    ax.set_xlabel(f"GFLOPs at {report['rows'][0]['img_size']}x{report['rows'][0]['img_size']}")
    ax.set_ylabel("mAP@0.5")
    ax.set_title("SlimYOLOv3: accuracy against compute")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return path


def write_slim_report(out: Path, report: dict) -> None:
    report["files"] = {"md": str(out / "slim_report.md"), "json": str(out / "slim_report.json"),
                       "png": str(out / "slim_map_vs_gflops.png")}
    atomic_write_json(out / "slim_report.json", report)
    atomic_write_text(out / "slim_report.md", to_markdown(report))
    plot_map_vs_gflops(report, out / "slim_map_vs_gflops.png")
