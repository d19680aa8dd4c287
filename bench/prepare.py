"""The models under test: synthetic sparse YOLOv3-SPP3 and its pruned versions from ``slimyolo prune``.

Preparation is not timed. Each pruned model is produced by the project's own CLI (a subprocess
running ``slimyolo prune``), exactly as a user would, so the benchmark measures the networks the
pruner really emits (shortcut unions, per-layer keep floor).
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import REPO

LAYER_KEEP = 0.1  # the SlimYOLOv3 authors' released prune_0.x cfgs keep >= 10% of every layer
PERCENTS = {"slim-50": 0.5, "slim-90": 0.9, "slim-95": 0.95}


@dataclass
class ModelFiles:
    """One network under test: Darknet cfg + .weights (OpenCV), .pt (torch / ONNX export)."""

    name: str  # yolov3-spp3, slim-50, slim-90, slim-95
    cfg: Path
    weights: Path
    pt: Path
    gflops: dict[int, float] = field(default_factory=dict)
    params: int = 0


def _complexity(mf: ModelFiles, sizes: tuple[int, ...]) -> None:
    from slimyolo_ros.darknet.checkpoint import load_model
    from slimyolo_ros.darknet.complexity import count_gflops, count_params

    model, _, _ = load_model(mf.pt)
    mf.params = count_params(model)
    mf.gflops = {s: round(count_gflops(model, s), 3) for s in sizes}


def _recalibrate(mf: ModelFiles) -> None:
    """Objectness biases only (bench/sparse_model.recalibrate_objectness); rewrites .pt and .weights."""
    from bench.sparse_model import recalibrate_objectness
    from slimyolo_ros.darknet.checkpoint import load_checkpoint, load_model, save_checkpoint
    from slimyolo_ros.darknet.weights import save_darknet_weights

    ckpt = load_checkpoint(mf.pt)
    model, names, img_size = load_model(mf.pt)
    recalibrate_objectness(model)
    extra = {
        k: v for k, v in ckpt.items() if k not in ("format", "cfg", "class_names", "img_size", "state_dict")
    }
    save_checkpoint(mf.pt, model, names, img_size, **extra)
    save_darknet_weights(model, mf.weights)


def make_base(
    work: Path, cfg: Path, seed: int, sizes: tuple[int, ...], name: str = "yolov3-spp3"
) -> ModelFiles:
    """The unpruned network with synthetic sparse gammas, saved as .pt and as cfg + .weights."""
    from bench.sparse_model import class_names, make_sparse_model
    from slimyolo_ros.darknet.checkpoint import save_checkpoint
    from slimyolo_ros.darknet.weights import save_darknet_weights

    out = work / name
    out.mkdir(parents=True, exist_ok=True)
    model = make_sparse_model(cfg, seed=seed)
    names = class_names(REPO)
    mf = ModelFiles(name, out / "sparse.cfg", out / "sparse.weights", out / "sparse.pt")
    model.save_cfg(mf.cfg)
    save_darknet_weights(model, mf.weights)
    save_checkpoint(mf.pt, model, names, model.img_size)
    _complexity(mf, sizes)
    return mf


def prune_command(base: ModelFiles, percent: float, out: Path) -> list[str]:
    return [sys.executable, "-m", "slimyolo_ros.cli", "prune", "--weights", str(base.pt), "--global-percent",
            str(percent), "--layer-keep", str(LAYER_KEEP), "--out", str(out), "--json"]


def latency_name(target_ms: float) -> str:
    return f"latency-{target_ms:g}ms"


def latency_command(base: ModelFiles, target_ms: float, out: Path, threads: int, size: int) -> list[str]:
    """``slimyolo prune --target-ms``: ONNX Runtime on this CPU with the bench's thread count."""
    return [sys.executable, "-m", "slimyolo_ros.cli", "prune", "--weights", str(base.pt), "--target-ms",
            f"{target_ms:g}", "--latency-backend", "onnxruntime", "--device", "cpu",
            "--threads", str(threads), "--img-size", str(size), "--layer-keep", str(LAYER_KEEP),
            "--out", str(out), "--json"]


def _run_prune(base: ModelFiles, name: str, work: Path, sizes: tuple[int, ...],
               latency: dict[str, list[str]] | None = None) -> ModelFiles:
    out = work / name
    cmd = (latency or {}).get(name) or prune_command(base, PERCENTS[name], out)
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[2:])} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    json.loads(proc.stdout)  # exactly one JSON object: the CLI contract
    mf = ModelFiles(name, out / "pruned.cfg", out / "pruned.weights", out / "pruned.pt")
    _recalibrate(mf)
    _complexity(mf, sizes)
    return mf


def make_pruned(base: ModelFiles, work: Path, names: list[str], sizes: tuple[int, ...],
                jobs: int = 2) -> list[ModelFiles]:
    """Run ``slimyolo prune`` for every pruned model; ``jobs`` CLI processes at a time."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(lambda n: _run_prune(base, n, work, sizes), names))


def make_latency_pruned(base: ModelFiles, work: Path, targets_ms: list[float], sizes: tuple[int, ...],
                        threads: int) -> list[ModelFiles]:
    """``slimyolo prune --target-ms`` per budget, one at a time (each measures on the CPU)."""
    cmds = {latency_name(t): latency_command(base, t, work / latency_name(t), threads, sizes[0])
            for t in targets_ms}
    return [_run_prune(base, name, work, sizes, cmds) for name in cmds]
