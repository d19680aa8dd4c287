"""The SlimYOLOv3 paper's experiment as one resumable recipe (``slimyolo reproduce``).

    baseline    train the cfg on VisDrone-DET train (from Darknet's darknet53.conv.74 with cutoff 75)
    slim        sparsity training (alpha 0.001) -> prune at 0.5 / 0.9 / 0.95 (each layer keeps >= 10% of
                its channels) -> fine-tune each: the ``slim`` pipeline in its independent mode
    table       params, GFLOPs, mAP@0.5, F1 and latency at 416/608/832 on the device, the paper's columns

Before any training the device's training speed (images/s, forward + backward + step with AMP on CUDA)
is measured and the time of each stage printed. Every stage leaves its marker, written atomically:
``OUT/plan.json``, ``OUT/baseline/step.json``, the pipeline's own ``step.json``/``row.json`` under
``OUT/slim``, and ``OUT/reproduce_table.json``; a rerun skips what exists, and a baseline killed mid-way
continues from its ``last.pt``. So ``slimyolo reproduce`` after a kill resumes.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from slimyolo_ros.darknet.cfg import load_cfg
from slimyolo_ros.darknet.checkpoint import load_model
from slimyolo_ros.darknet.complexity import count_gflops, count_params
from slimyolo_ros.data.datasets import read_dataset
from slimyolo_ros.errors import DatasetError
from slimyolo_ros.io_utils import atomic_write_json, atomic_write_text
from slimyolo_ros.slim.pipeline import slim, stage_row, trainer_metrics
from slimyolo_ros.train.runtime import init_distributed
from slimyolo_ros.train.trainer import build_model, train

log = logging.getLogger(__name__)

RATIOS = (0.5, 0.9, 0.95)
SPARSITY = 1e-3
LAYER_KEEP = 0.1
SIZES = (416, 608, 832)
BACKBONE_CUTOFF = 75  # darknet53.conv.74 holds layers 0..74 of the YOLOv3 cfgs: Darknet-53's 52 convs
# Sparsity training and fine-tuning length: 100 epochs each (an assumption, not a number from the paper's
# text); the baseline follows the cfg's own Darknet schedule, max_batches x batch images.
STAGE_EPOCHS = 100


@dataclass
class Plan:
    """What the run will do; written once to OUT/plan.json and reused on resume."""

    train: str
    val: str
    train_images: int
    val_images: int
    class_names: list
    baseline_epochs: int
    sparsity_epochs: int
    finetune_epochs: int
    images_per_s: float
    device: str

    def stage_seconds(self) -> dict[str, float]:
        """Training time per stage at the measured rate (fine-tuning at the unpruned rate: an upper bound)."""
        per_epoch = self.train_images / self.images_per_s
        return {"baseline": self.baseline_epochs * per_epoch, "sparsity": self.sparsity_epochs * per_epoch,
                **{f"finetune {r:g}": self.finetune_epochs * per_epoch for r in RATIOS}}


def find_splits(root: str | Path) -> tuple[Path, Path]:
    """(train, val) folders of a VisDrone root: ``VisDrone2019-DET-train`` / ``-val`` as unpacked from the
    release zips, or ``train`` / ``val``."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"--data {root}: not a folder (expected the folder holding "
                           f"VisDrone2019-DET-train/ and VisDrone2019-DET-val/)")
    found = {}
    for split in ("train", "val"):
        hits = sorted(p for p in root.iterdir() if p.is_dir() and
                      (p.name == split or p.name.lower().endswith(f"-{split}")))
        if len(hits) != 1:
            raise DatasetError(f"--data {root}: expected one {split} folder (VisDrone2019-DET-{split} or "
                               f"{split}), found {', '.join(p.name for p in hits) or 'none'}")
        found[split] = hits[0]
    return found["train"], found["val"]


def baseline_epochs(cfg: Path, train_images: int) -> int:
    """The cfg's Darknet schedule (max_batches x batch images) in epochs; STAGE_EPOCHS without one."""
    net = load_cfg(cfg)[0].options
    try:
        images = int(net["max_batches"]) * int(net.get("batch", 64))
    except (KeyError, ValueError):
        return STAGE_EPOCHS
    return max(1, round(images / train_images))


def measure_rate(cfg: Path, n_classes: int, img_size: int, batch: int, device: torch.device,
                 seconds: float = 20.0) -> float:
    """Training images/s of the cfg on ``device``: forward, backward and an SGD step on random input, with
    AMP on CUDA as the trainer; the first two steps (allocation, cuDNN search) are not timed."""
    model = build_model(cfg, ["c"] * n_classes).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)
    cuda = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    x = torch.rand(batch, model.in_channels, img_size, img_size, device=device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        with torch.autocast(device_type="cuda", enabled=cuda):
            loss = sum(r.float().square().mean() for r in model(x))
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
        if len(times) >= 2 + 50:
            break
    return batch / statistics.median(times[2:])


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def make_plan(out: Path, cfg: Path, data: Path, img_size: int, batch: int, device: torch.device,
              epochs_scale: float, probe_seconds: float) -> Plan:
    """OUT/plan.json if a previous run wrote it, else read the data, measure the rate and write it."""
    path = out / "plan.json"
    if path.is_file():
        import json

        plan = Plan(**json.loads(path.read_text()))
        log.info("resuming: %s (measured %.1f images/s on %s)", path, plan.images_per_s, plan.device)
        return plan
    train_dir, val_dir = find_splits(data)
    train_set, val_set = read_dataset(train_dir, "train"), read_dataset(val_dir, "val")
    log.info("train: %s", train_set.describe())
    log.info("val: %s", val_set.describe())
    rate = measure_rate(cfg, len(train_set.class_names), img_size, batch, device, probe_seconds)

    def scaled(epochs: int) -> int:
        return max(1, math.ceil(epochs * epochs_scale))

    plan = Plan(str(train_dir), str(val_dir), len(train_set.samples), len(val_set.samples),
                list(train_set.class_names), scaled(baseline_epochs(cfg, len(train_set.samples))),
                scaled(STAGE_EPOCHS), scaled(STAGE_EPOCHS), rate, str(device))
    atomic_write_json(path, asdict(plan))
    return plan


def say_plan(plan: Plan, batch: int, img_size: int) -> None:
    log.info("training speed on %s: %.1f images/s (batch %d, %d px)", plan.device, plan.images_per_s, batch,
             img_size)
    stages = plan.stage_seconds()
    epochs = {"baseline": plan.baseline_epochs, "sparsity": plan.sparsity_epochs}
    for name, seconds in stages.items():
        n = epochs.get(name, plan.finetune_epochs)
        log.info("  %-14s %4d epochs x %d images: ~%s", name, n, plan.train_images, _hours(seconds))
    total = _hours(sum(stages.values()))
    log.info("  %-14s ~%s of training, plus evaluation after each epoch", "total", total)


def run_baseline(out: Path, cfg: Path, plan: Plan, img_size: int, batch: int, device: str,
                 backbone: str | None, train_options: dict[str, Any]) -> Path:
    """OUT/baseline/best.pt: skipped when step.json exists, continued from last.pt after a kill."""
    import json

    run = out / "baseline"
    marker = run / "step.json"
    if marker.is_file():
        log.info("baseline: done (%s), skipped", marker)
        return Path(json.loads(marker.read_text())["best"])
    if (run / "last.pt").is_file():
        log.info("baseline: continuing %s", run / "last.pt")
        result = train(None, None, None, plan.baseline_epochs, None, None, run, resume=True, device=device,
                       **{k: v for k, v in train_options.items() if k in ("workers", "progress")})
    else:
        start = {"weights": backbone, "cutoff": BACKBONE_CUTOFF} if backbone else {}
        log.info("baseline: from %s", f"{backbone} (layers 0..{BACKBONE_CUTOFF - 1})" if backbone else
                 "random weights (no --backbone)")
        result = train(cfg, plan.train, plan.val, plan.baseline_epochs, img_size, batch, run, device=device,
                       **start, **train_options)
    atomic_write_json(marker, {"best": result["best"], "last": result["last"]})
    return Path(result["best"])


def _prescore_baseline(slim_out: Path, best: Path, name: str, plan: Plan, img_size: int) -> None:
    """The pipeline scores a given baseline itself, on the CPU; the trainer already scored best.pt on the
    same val set at the same size on the device, so its row is written from those metrics."""
    row = slim_out / "baseline" / "row.json"
    metrics = trainer_metrics(best, img_size, plan.val)
    if row.is_file() or metrics is None:
        return
    model, names, _ = load_model(best)
    atomic_write_json(row, stage_row(name, "baseline", model, names, img_size, [], best, 1, metrics))


@torch.inference_mode()
def device_latency_ms(model, img_size: int, device: torch.device, repeats: int = 20) -> float:
    """Median batch-1 forward time on ``device`` (fp32; CUDA synchronised), after 3 warm-up forwards."""
    m = model.to(device).eval()
    x = torch.rand(1, m.in_channels, img_size, img_size, device=device)
    times = []
    for k in range(3 + repeats):
        t0 = time.perf_counter()
        m(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if k >= 3:
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def paper_table(rows: list[dict], device: torch.device, repeats: int) -> list[dict]:
    """The slim report's rows with params, GFLOPs and device latency at SIZES."""
    table = []
    for row in rows:
        model, _, _ = load_model(row["weights"])
        entry = {"model": row["model"], "stage": row["stage"], "params": count_params(model),
                 "map50": row["map50"], "f1": row["f1"], "weights": row["weights"]}
        for s in SIZES:
            entry[f"gflops_{s}"] = count_gflops(model, s)
            entry[f"latency_ms_{s}"] = device_latency_ms(model, s, device, repeats)
        table.append(entry)
        log.info("%-32s params %.2f M  mAP@0.5 %.4f  latency %s ms", entry["model"], entry["params"] / 1e6,
                 entry["map50"], " / ".join(f"{entry[f'latency_ms_{s}']:.1f}" for s in SIZES))
    return table


def table_markdown(table: list[dict], device: str) -> str:
    sizes = " | ".join(f"GFLOPs {s}" for s in SIZES)
    lat = " | ".join(f"ms {s}" for s in SIZES)
    lines = [f"| model | stage | params (M) | {sizes} | mAP@0.5 | F1 | {lat} |",
             "|---|---|---:|" + "---:|" * (len(SIZES) * 2 + 2)]
    for r in table:
        lines.append(f"| {r['model']} | {r['stage']} | {r['params'] / 1e6:.2f} | "
                     + " | ".join(f"{r[f'gflops_{s}']:.2f}" for s in SIZES)
                     + f" | {r['map50']:.4f} | {r['f1']:.4f} | "
                     + " | ".join(f"{r[f'latency_ms_{s}']:.1f}" for s in SIZES) + " |")
    return "\n".join(lines) + f"\n\nLatency: batch 1, fp32, median of timed forwards on {device}.\n"


def reproduce(data: str | Path, out: str | Path, cfg: str | Path, backbone: str | None = None,
              device: str = "auto", epochs_scale: float = 1.0, img_size: int = 416, batch: int = 32,
              probe_seconds: float = 20.0, latency_repeats: int = 20,
              train_options: dict[str, Any] | None = None) -> dict:
    """Run (or resume) every stage; returns ``{"plan", "table"}`` (also OUT/reproduce_table.json/.md)."""
    import json

    out, cfg = Path(out), Path(cfg)
    if not epochs_scale > 0:
        raise DatasetError(f"--epochs-scale must be > 0, found {epochs_scale}")
    if backbone and not Path(backbone).is_file():
        raise DatasetError(f"--backbone {backbone}: file not found (darknet53.conv.74: docs/reproduce.md)")
    out.mkdir(parents=True, exist_ok=True)
    dev = init_distributed(device)[1]
    plan = make_plan(out, cfg, Path(data), img_size, batch, dev, epochs_scale, probe_seconds)
    say_plan(plan, batch, img_size)
    # ~10 evaluations per 100 epochs (and always after the last): evaluating VisDrone-val after each of the
    # baseline's ~1200 epochs would add hours and only picks best.pt
    opts = {"eval_every": max(1, plan.sparsity_epochs // 10), **(train_options or {})}
    best = run_baseline(out, cfg, plan, img_size, batch, device, backbone, opts)
    name = cfg.stem
    _prescore_baseline(out / "slim", best, name, plan, img_size)
    report = slim(cfg, plan.train, plan.val, out / "slim", list(RATIOS), img_size, batch, weights=best,
                  layer_keep=LAYER_KEEP, sparsity=SPARSITY, sparsity_epochs=plan.sparsity_epochs,
                  finetune_epochs=plan.finetune_epochs, device=device, resume=True, name=name,
                  train_options=opts, latency_repeats=1, independent=True)
    marker = out / "reproduce_table.json"
    if marker.is_file():
        log.info("table: done (%s), skipped", marker)
        return json.loads(marker.read_text())
    result = {"plan": asdict(plan), "table": paper_table(report["rows"], dev, latency_repeats)}
    atomic_write_text(out / "reproduce_table.md", table_markdown(result["table"], plan.device))
    atomic_write_json(marker, result)
    return result
