"""Speed, side by side: ``python bench/run.py [--quick] --json OUT.json``.

One run measures (median of repeated runs after warm-up, one fixed thread count for torch, OpenCV
and ONNX Runtime):
  1. forward latency of YOLOv3-SPP3 and its 50/90/95 % pruned versions (made by ``slimyolo prune``
     from a synthetic sparse model, see bench/sparse_model.py) at 416 (and 608 without --quick),
     batch 1, in torch, ONNX Runtime and OpenCV DNN, with GFLOPs/params and speed-up vs FLOPs ratio;
  2. the effect of ``--channel-multiple 8/16``, of BN folding and of the rectangular letterbox, and
     the best backend per model;
  3. the time split of one frame through the node's functions (bench/node_split.py);
  4. the real detect_node end to end vs the bare forward, 1280x720 and 1920x1080 bgr8, and its
     peak RSS with each model (bench/node_e2e.py);
  5. on CUDA (when torch sees a GPU) the latency table in fp32 and fp16.
and writes OUT.json (a list of latency rows), OUT with .details.json (everything else) and its
section of docs/benchmarks.md. Benchmarks, not tests: nothing here asserts on speed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shlex
import subprocess
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# Idle OpenMP threads sleep instead of spinning (read when torch loads, hence before any import of
# it). On a CPU shared with other work, spinning threads steal the cores the next op needs; the
# node subprocesses inherit the setting. Recorded in the report.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from bench.common import REPO, cpu_name, fix_threads, time_call  # noqa: E402
from bench.markdown import NO_REUSE, SQUARE_INPUT, TYPED_RECEIVE  # noqa: E402 - transport labels markdown.py reads back

MODELS = ("yolov3-spp3", "slim-50", "slim-90", "slim-95")
BACKENDS = ("torch", "onnxruntime", "opencv")
NODE_FRAMES = ((1280, 720), (1920, 1080))
FASTDDS_PROFILE = REPO / "config" / "fastdds_large_frames.xml"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="416 only, fewer repeats (< 5 min on 2 cores)")
    p.add_argument("--json", required=True, help="latency rows are written here (a JSON list)")
    p.add_argument(
        "--doc",
        default=str(REPO / "docs" / "benchmarks.md"),
        help="markdown file whose bench:run section is rewritten ('' to skip)",
    )
    p.add_argument("--threads", type=int, default=2, help="intra-op threads of every backend (default 2)")
    p.add_argument("--cfg", default=str(REPO / "models" / "yolov3-spp3.cfg"))
    p.add_argument("--work", default=str(REPO / "runs" / "bench"), help="models and ONNX files go here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--sizes", default=None, help="comma-separated input sizes (default 416,608; quick: 416)")
    p.add_argument("--no-node", action="store_true", help="skip the detect_node subprocess runs")
    p.add_argument(
        "--no-reference",
        action="store_true",
        help="skip the SlimYOLOv3 authors' prune_0.95 cfg from ../shared (run when present)",
    )
    p.add_argument("--models", default=",".join(MODELS), help=f"subset of {','.join(MODELS)}")
    p.add_argument("--multiples", default="8,16", help="channel multiples for the 8.5 effect ('' to skip)")
    return p.parse_args(argv)


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.quick = args.quick
        self.sizes = tuple(int(s) for s in (args.sizes or ("416" if args.quick else "416,608")).split(","))
        self.warmup = args.warmup if args.warmup is not None else (2 if args.quick else 3)
        self.repeats = args.repeats if args.repeats is not None else (5 if args.quick else 11)
        self.work = Path(args.work).resolve()
        self.names = [m for m in args.models.split(",") if m]
        self.multiples = tuple(int(m) for m in args.multiples.split(",") if m)
        self.rows: list[dict] = []
        self.details: dict = {"notes": []}
        self.models: dict[str, object] = {}  # key (name or name/cmN) -> ModelFiles
        self.device = "cpu"

    def multiples_for(self, name: str) -> tuple[int, ...]:
        """Channel multiples to prune ``name`` with besides 1; --quick keeps them for slim-95 only."""
        if self.quick and name != "slim-95":
            return ()
        return self.multiples

    # ---- preparation -----------------------------------------------------------------------
    def prepare(self) -> None:
        from bench.prepare import make_base, make_pruned, prune_command

        t0 = time.monotonic()
        base = make_base(self.work, Path(self.args.cfg), self.args.seed, self.sizes)
        self.models[base.key] = base
        wanted = {n: (1, *self.multiples_for(n)) for n in self.names if n != "yolov3-spp3"}
        for mf in make_pruned(base, self.work, wanted, self.sizes):
            self.models[mf.key] = mf
        example = prune_command(base, 0.95, 1, self.work / "slim-95")
        self.details["prune_command"] = (
            " ".join(shlex.quote(str(c)) for c in example[1:])
            .replace("-m slimyolo_ros.cli", "slimyolo", 1)
            .replace(str(REPO) + "/", "")
        )
        log(f"models ready in {time.monotonic() - t0:.0f} s: {', '.join(self.models)}")

    def reference_arch(self) -> None:
        """The SlimYOLOv3 authors' own prune_0.95 cfg (../shared, when present) with random weights:
        the speed-up their architecture allows (10.8x fewer FLOPs), next to our pruner's."""
        from bench.common import SHARED_REFERENCE
        from bench.prepare import make_base

        cfg = SHARED_REFERENCE / "cfg" / "1iter-pruned__prune_0.95.cfg"
        if getattr(self.args, "no_reference", False) or not cfg.is_file() or "yolov3-spp3" not in self.names:
            return
        from bench.backends import input_blob
        from bench.sparse_model import bench_frame

        mf = make_base(self.work, cfg, self.args.seed, self.sizes, name="authors-prune-0.95")
        out = []
        for size in self.sizes:
            blob = input_blob(bench_frame(1920, 1080, self.args.seed), size)
            fns = self._forwards({b: (mf, b, True) for b in BACKENDS}, size, blob)
            times = self.interleaved(fns, *self._reps(mf, size))
            del fns
            gc.collect()
            row = {"model": mf.name, "img_size": size, "gflops": mf.gflops[size], "params": mf.params}
            row.update({b: round(t.median, 3) for b, t in times.items()})
            out.append(row)
            log(f"{mf.name} {size}: " + ", ".join(f"{b} {t.median:.1f}" for b, t in times.items()) + " ms")
        self.details["reference_arch"] = {
            "cfg": "../shared/reference/slimyolov3/cfg/" + cfg.name,
            "rows": out,
        }

    # ---- latency table ---------------------------------------------------------------------
    def _forward(self, mf, backend: str, size: int, blob, fuse: bool = True, half: bool = False):
        from bench.backends import detector, onnxruntime_forward, opencv_forward, torch_forward

        if backend == "opencv":
            return opencv_forward(mf.cfg, mf.weights, blob, self.device, half)
        if backend == "torch":
            return torch_forward(detector(mf.pt, "torch", size, self.device, half, fuse), blob)
        det = detector(mf.pt, "onnxruntime", size, self.device, False, fuse, self.work / "cache" / "onnx")
        mf.onnx[size] = det.onnx_path
        return onnxruntime_forward(det.onnx_path, blob, self.device, half)

    def _reps(self, mf, size: int) -> tuple[int, int]:
        """(warm-up, timed runs) for one model: the unpruned net is ~20x slower than slim-95, so it
        gets fewer runs to keep its share of the budget sane."""
        if mf.gflops.get(size, max(mf.gflops.values())) < 20:
            return self.warmup, self.repeats
        return 1, max(3, self.repeats // 2)

    def interleaved(self, fns: dict, warmup: int, repeats: int, rounds: int = 2) -> dict:
        """Time several callables in alternating rounds (pooled samples), so a load change on the
        shared CPU hits all of them alike instead of favouring whichever ran in a quiet minute."""
        from bench.common import Timing

        out = {k: Timing() for k in fns}
        for fn in fns.values():
            for _ in range(warmup):
                fn()
        per_round = max(1, -(-repeats // rounds))
        for _ in range(rounds):
            for k, fn in fns.items():
                out[k].samples_ms += time_call(fn, 0, per_round).samples_ms
        return out

    def _forwards(self, variants: dict, size: int, blob, half: bool = False) -> dict:
        """key -> forward callable for (ModelFiles, backend, fuse) variants; failures are noted."""
        fns = {}
        for key, (mf, backend, fuse) in variants.items():
            try:
                fn = self._forward(mf, backend, size, blob, fuse, half)
                fn()  # some runtimes fail only on the first run (e.g. OpenCV without CUDA support)
                fns[key] = fn
            except Exception as exc:  # one runtime failing must not lose the others
                self.details["notes"].append(f"{mf.key} {backend} {size} fuse={fuse} half={half}: {exc!r}")
                log(f"FAILED {mf.key} {backend} {size}: {exc!r}")
        return fns

    def latency_table(self, precisions: tuple[str, ...] = ("fp32",)) -> None:
        from bench.backends import input_blob
        from bench.sparse_model import bench_frame

        frame = bench_frame(1920, 1080, self.args.seed)
        for size in self.sizes:
            blob = input_blob(frame, size)
            for name in self.names:
                mf = self.models[name]
                for precision in precisions:
                    # the Detector runs ORT in fp32 only
                    backends = [b for b in BACKENDS if not (precision == "fp16" and b == "onnxruntime")]
                    fns = self._forwards(
                        {b: (mf, b, True) for b in backends}, size, blob, precision == "fp16"
                    )
                    times = self.interleaved(fns, *self._reps(mf, size))
                    del fns
                    gc.collect()
                    for backend, t in times.items():
                        s = t.summary()
                        self.rows.append(
                            {
                                "model": name,
                                "backend": backend,
                                "img_size": size,
                                "gflops": mf.gflops[size],
                                "params": mf.params,
                                "latency_ms_median": s["median"],
                                "latency_ms_min": s["min"],
                                "runs": s["runs"],
                                "device": self.device,
                                "precision": precision,
                                "threads": self.args.threads,
                            }
                        )
                    log(
                        f"{name:12s} {size} {self.device} {precision}: "
                        + ", ".join(f"{b} {t.median:.1f}" for b, t in times.items())
                        + " ms"
                    )

    def effects(self) -> None:
        """8.5 at the first size: channel multiple (all backends, N=1 re-timed alongside) and BN
        folding (torch fused vs not, interleaved), then the SPP pool fast path."""
        from bench.backends import input_blob
        from bench.sparse_model import bench_frame

        size = self.sizes[0]
        blob = input_blob(bench_frame(1920, 1080, self.args.seed), size)
        cm_rows = []
        for name in self.names:
            if name == "yolov3-spp3" or not self.multiples_for(name):
                continue
            cms = (1, *self.multiples_for(name))
            mfs = {cm: self.models[name if cm == 1 else f"{name}/cm{cm}"] for cm in cms}
            fns = self._forwards({(cm, b): (mfs[cm], b, True) for cm in cms for b in BACKENDS}, size, blob)
            times = self.interleaved(fns, *self._reps(mfs[1], size))
            del fns
            gc.collect()
            for cm in cms:
                row = {
                    "model": name,
                    "channel_multiple": cm,
                    "img_size": size,
                    "gflops": mfs[cm].gflops[size],
                    "params": mfs[cm].params,
                }
                for b in BACKENDS:
                    row[b] = round(times[(cm, b)].median, 3) if (cm, b) in times else None
                cm_rows.append(row)
                log(f"{mfs[cm].key:14s} {size}: " + ", ".join(f"{b} {row[b]}" for b in BACKENDS))
        self.details["channel_multiple"] = cm_rows
        fold_rows = []
        for name in self.names:
            mf = self.models[name]
            fns = self._forwards({"fused": (mf, "torch", True), "unfused": (mf, "torch", False)}, size, blob)
            times = self.interleaved(fns, *self._reps(mf, size))
            del fns
            gc.collect()
            fused, unfused = times["fused"].median, times["unfused"].median
            fold_rows.append(
                {
                    "model": name,
                    "img_size": size,
                    "torch_unfused_ms": round(unfused, 3),
                    "torch_fused_ms": round(fused, 3),
                }
            )
            log(f"{name:12s} BN folding: unfused {unfused:.1f} ms, fused {fused:.1f} ms")
        self.details["bn_folding"] = fold_rows
        self.details["spp_maxpool"] = self.spp_maxpool(size, blob)
        self.details["rect_letterbox"] = self.rect_letterbox(size)

    def rect_letterbox(self, size: int) -> list[dict]:
        """Forward on the square letterbox of a 16:9 frame (the before) vs the Detector's default
        rectangular one, every backend, interleaved."""
        from bench.backends import input_blob
        from bench.sparse_model import bench_frame

        frame = bench_frame(1920, 1080, self.args.seed)
        blobs = {"square": input_blob(frame, size), "rect": input_blob(frame, size, rect=True)}
        out = []
        for name in self.names:
            if name == "yolov3-spp3":  # the pruned models are the ones the node runs
                continue
            mf = self.models[name]
            fns = {}
            for shape, blob in blobs.items():
                for key, fn in self._forwards({b: (mf, b, True) for b in BACKENDS}, size, blob).items():
                    fns[(shape, key)] = fn
            times = self.interleaved(fns, *self._reps(mf, size))
            del fns
            gc.collect()
            row = {"model": name, "img_size": size, "frame": "1920x1080",
                   "square_input": list(blobs["square"].shape[2:]),
                   "rect_input": list(blobs["rect"].shape[2:])}
            for b in BACKENDS:
                for shape in blobs:
                    t = times.get((shape, b))
                    row[f"{b}_{shape}_ms"] = round(t.median, 3) if t else None
            out.append(row)
            log(f"{name:12s} rect letterbox: " + ", ".join(
                f"{b} {row[f'{b}_square_ms']} -> {row[f'{b}_rect_ms']}" for b in BACKENDS))
        return out

    def spp_maxpool(self, size: int, blob) -> list[dict]:
        """torch forward with the SPP pools as plain ``max_pool2d`` (before) vs the separable fast
        path now in darknet/model.py (after): same model objects, interleaved rounds, both memory
        layouts (the Detector's default NHWC, and NCHW as for ``Detector.from_model``)."""
        import torch.nn.functional as F

        from bench.backends import detector, torch_forward
        from bench.common import Timing
        from slimyolo_ros.darknet import model as dm

        def plain(self, x):
            lo, hi = self.pad
            return F.max_pool2d(F.pad(x, (lo, hi, lo, hi), value=float("-inf")), self.size, self.stride)

        fast = dm.MaxPool.forward
        out = []
        for name in self.names:
            mf = self.models[name]
            big = mf.gflops[size] >= 20
            for layout in ("NHWC",) if big else ("NHWC", "NCHW"):
                det = detector(mf.pt, "torch", size, "cpu", channels_last=layout == "NHWC")
                fn = torch_forward(det, blob)
                reps = 2 if big else max(3, self.repeats // 2)
                t = {"before": Timing(), "after": Timing()}
                fn()
                for _ in range(2):
                    for key, impl in (("before", plain), ("after", fast)):
                        try:
                            dm.MaxPool.forward = impl
                            t[key].samples_ms += time_call(fn, 1, reps).samples_ms
                        finally:
                            dm.MaxPool.forward = fast
                row = {
                    "model": name,
                    "img_size": size,
                    "layout": layout,
                    "before_ms": round(t["before"].median, 3),
                    "after_ms": round(t["after"].median, 3),
                }
                out.append(row)
                log(
                    f"{name:12s} SPP max-pool {layout}: max_pool2d {row['before_ms']:.1f} ms, "
                    f"separable {row['after_ms']:.1f} ms"
                )
                del det, fn
                gc.collect()
        return out

    # ---- node ------------------------------------------------------------------------------
    def best_backend(self, name: str, size: int, ours_only: bool = True) -> tuple[str, float] | None:
        cands = [
            (r["latency_ms_median"], r["backend"])
            for r in self.rows
            if r["model"] == name
            and r["img_size"] == size
            and r["precision"] == "fp32"
            and r["device"] == "cpu"
            and (r["backend"] != "opencv" or not ours_only)
        ]
        if not cands:
            return None
        ms, backend = min(cands)
        return backend, ms

    def node_split(self) -> None:
        from bench.backends import detector
        from bench.node_split import split_frame
        from bench.sparse_model import bench_frame

        name = "slim-95" if "slim-95" in self.names else self.names[-1]
        size = self.sizes[0]
        splits = []
        for backend in ("torch", "onnxruntime"):
            det = detector(
                self.models[name].pt, backend, size, "cpu", False, True, self.work / "cache" / "onnx"
            )
            for w, h in NODE_FRAMES:
                s = split_frame(det, bench_frame(w, h, self.args.seed), self.warmup, max(self.repeats, 7))
                s.update({"model": name, "backend": backend, "img_size": size})
                splits.append(s)
                log(
                    f"split {name} {backend} {s['frame']}: "
                    + ", ".join(f"{k} {v:.2f}" for k, v in s["stages_ms"].items())
                )
            del det
            gc.collect()
        self.details["node_split"] = splits

    def node_runs(self) -> None:
        """detect_node e2e (slim model: default transport and the large-frame Fast DDS profile),
        the echo node's transport floor, and the node's peak RSS with every model."""
        from bench.node_e2e import ros_env, run_subprocess

        size = self.sizes[0]
        env = ros_env(int(os.environ["ROS_DOMAIN_ID"]), self.args.threads)
        env["SLIMYOLO_CACHE"] = str(self.work / "cache")  # the node reuses the ONNX exported above
        env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
        env.pop("FASTRTPS_DEFAULT_PROFILES_FILE", None)
        shm_env = dict(env, FASTDDS_DEFAULT_PROFILES_FILE=str(FASTDDS_PROFILE))
        slim = "slim-95" if "slim-95" in self.names else self.names[-1]
        best = self.best_backend(slim, size)
        backend = best[0] if best else "torch"
        all_frames = ",".join(f"{w}x{h}" for w, h in NODE_FRAMES)
        reps = max(self.repeats, 41)  # e2e frames are cheap next to node start-up: more runs, less noise
        no_reuse_env = dict(shm_env, SLIMYOLO_REUSE_FRAME_MEMORY="0")  # before ros/frame_memory.py
        typed_env = dict(shm_env, SLIMYOLO_RAW_IMAGE_RECEIVE="0")  # before convert.image_from_cdr
        square_env = dict(shm_env, SLIMYOLO_RECT="0")  # before the rectangular letterbox
        runs = [
            ("echo", None, env, all_frames, reps),
            ("echo", None, no_reuse_env, all_frames, reps),
            ("echo", None, typed_env, all_frames, reps),
            ("echo", None, shm_env, all_frames, reps),
            (slim, backend, env, all_frames, reps),
            (slim, backend, no_reuse_env, all_frames, reps),
            (slim, backend, typed_env, all_frames, reps),
            (slim, backend, square_env, all_frames, reps),
            (slim, backend, shm_env, all_frames, reps),
        ]
        runs += [(n, backend, env, "1920x1080", 3) for n in self.names if n != slim]
        e2e = []
        for name, be, run_env, frames, n in runs:
            transport = "shm-64MiB" if "FASTDDS_DEFAULT_PROFILES_FILE" in run_env else "default"
            if run_env.get("SLIMYOLO_REUSE_FRAME_MEMORY") == "0":
                transport += NO_REUSE
            if run_env.get("SLIMYOLO_RAW_IMAGE_RECEIVE") == "0":
                transport += TYPED_RECEIVE
            if run_env.get("SLIMYOLO_RECT") == "0":
                transport += SQUARE_INPUT
            weights = self.models[name].pt if name != "echo" else None
            try:
                r = run_subprocess(
                    run_env,
                    weights=weights,
                    backend=be,
                    frames=frames,
                    warmup=self.warmup if n > 3 else 1,
                    repeats=n,
                    img_size=size,
                    log_dir=self.work / "logs",
                    seed=self.args.seed,
                )
            except Exception as exc:
                self.details["notes"].append(f"node {name} {be} {transport}: {exc}")
                log(f"node {name} {be} {transport} FAILED: {exc}")
                continue
            fwd = [
                x
                for x in self.rows
                if (x["model"], x["backend"], x["img_size"], x["device"], x["precision"])
                == (name, be, size, "cpu", "fp32")
            ]
            r.update(
                {
                    "model": name,
                    "backend": be or "-",
                    "img_size": size,
                    "transport": transport,
                    # the latency table is of square inputs: a forward for the square-input node only
                    # (the others pair their own, on the node's rectangular input)
                    "forward_ms": fwd[0]["latency_ms_median"] if fwd and SQUARE_INPUT in transport else None,
                }
            )
            e2e.append(r)
            log(
                f"node {name} {be} {transport}: "
                + ", ".join(f"{k} {v['median']:.1f} ms" for k, v in r["frames"].items())
                + f", peak RSS {r['peak_rss_mib']:.0f} MiB"
            )
        self.details["node_e2e"] = e2e

    # ---- CUDA --------------------------------------------------------------------------------
    def cuda(self) -> None:
        import torch

        if not torch.cuda.is_available():
            self.details["cuda"] = "skipped: torch sees no CUDA device on this machine"
            log("CUDA: no device, fp32/fp16 GPU table skipped")
            return
        self.device = "cuda:0"
        self.details["cuda"] = torch.cuda.get_device_name(0)
        self.latency_table(precisions=("fp32", "fp16"))
        self.device = "cpu"


def versions() -> dict[str, str]:
    import cv2
    import numpy
    import onnxruntime
    import torch

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "opencv": cv2.__version__,
        "numpy": numpy.__version__,
    }


def git_head() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    from bench.sparse_model import frame_source

    args = parse_args(argv)
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 101)))
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    warnings.filterwarnings("ignore", category=UserWarning)
    threads = fix_threads(args.threads)
    command = "python bench/run.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    t_start = time.monotonic()
    b = Bench(args)
    b.details.update(
        {
            "command": command,
            "threads": threads,
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "versions": versions(),
            "git": git_head(),
            "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load_avg_start": os.getloadavg(),
            "warmup": b.warmup,
            "repeats": b.repeats,
            "sizes": list(b.sizes),
            "quick": b.quick,
            "frame": frame_source(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
        }
    )
    b.prepare()
    b.latency_table()
    b.reference_arch()
    if b.multiples or True:
        b.effects()
    b.node_split()
    if not args.no_node:
        b.node_runs()
    b.cuda()
    b.details["load_avg_end"] = os.getloadavg()
    b.details["wall_s"] = round(time.monotonic() - t_start, 1)
    b.details["models"] = {
        k: {
            "cfg": str(m.cfg.relative_to(REPO)) if m.cfg.is_relative_to(REPO) else str(m.cfg),
            "gflops": m.gflops,
            "params": m.params,
            "channel_multiple": m.channel_multiple,
        }
        for k, m in b.models.items()
    }
    for r in b.rows:
        r["command"] = command
    from slimyolo_ros.io_utils import atomic_write_json

    out = Path(args.json)
    atomic_write_json(out, b.rows)
    details_path = out.with_name(out.stem + ".details.json")
    atomic_write_json(details_path, b.details)
    if args.doc:
        from bench.markdown import render
        from bench.report import replace_section

        replace_section(Path(args.doc), render(b.rows, b.details))
    log(f"done in {b.details['wall_s']:.0f} s: {out}, {details_path}" + (f", {args.doc}" if args.doc else ""))
    print(json.dumps({"rows": len(b.rows), "json": str(out), "details": str(details_path)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
