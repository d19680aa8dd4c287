"""Speed, side by side: ``python bench/run.py [--quick] --json OUT.json``.

One run measures (median of repeated runs after warm-up, one fixed thread count for torch, OpenCV
and ONNX Runtime, runtimes interleaved):
  1. forward latency of YOLOv3-SPP3 and its 50/90/95 % pruned versions (``slimyolo prune`` on a
     synthetic sparse model, bench/sparse_model.py) and of the SlimYOLOv3 authors' prune_0.95
     architecture (../shared/reference, when present), in torch, ONNX Runtime and OpenCV DNN, on the
     square and the rectangular letterbox of a 1920x1080 frame, with GFLOPs and parameters;
  2. the real detect_node end to end at 1280x720 and 1920x1080 with its own stage timings (~/stats)
     and peak RSS; ``--node-variant "k:=v ..."`` adds A/B variants (paired, interleaved rounds);
  3. on CUDA (when torch sees a GPU) the forward table in fp32 and fp16;
  4. every model's speed-up over YOLOv3-SPP3 on the same backend and input shape (``speedup`` rows),
     with ``--latency-targets`` the models ``slimyolo prune --target-ms`` makes among them.
OUT.json is ``{"run": {...}, "rows": [...]}``: data only. bench/table.py lays rows out as markdown;
docs/benchmarks.md interprets a run by hand. Benchmarks, not tests: nothing here asserts on speed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shlex
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# Idle OpenMP threads sleep instead of spinning (read when torch loads, hence before any import of
# it): on a CPU shared with other work, spinning threads steal the cores the next op needs. The node
# subprocesses inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from bench.common import REPO, SHARED_REFERENCE, fix_threads, interleaved, run_facts  # noqa: E402

MODELS = ("yolov3-spp3", "slim-50", "slim-90", "slim-95")
BACKENDS = ("torch", "onnxruntime", "opencv")
NODE_FRAMES = "1280x720,1920x1080"
AUTHORS_CFG = SHARED_REFERENCE / "cfg" / "1iter-pruned__prune_0.95.cfg"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="416 only, fewer repeats, one node round")
    p.add_argument("--json", required=True, help="the run and its rows are written here")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads of every backend (default 2)")
    p.add_argument("--cfg", default=str(REPO / "models" / "yolov3-spp3.cfg"))
    p.add_argument("--work", default=str(REPO / "runs" / "bench"), help="models and ONNX files go here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--sizes", default=None, help="comma-separated input sizes (default 416,608; quick: 416)")
    p.add_argument("--models", default=",".join(MODELS), help=f"subset of {','.join(MODELS)}")
    p.add_argument("--no-reference", action="store_true", help="skip the authors' prune_0.95 cfg")
    p.add_argument("--latency-targets", default="", metavar="MS,...",
                   help="also prune to these latency budgets (slimyolo prune --target-ms, ONNX Runtime, "
                        "the bench's threads, the first size): rows latency-<MS>ms")
    p.add_argument("--no-node", action="store_true", help="skip the detect_node runs")
    p.add_argument("--node-frames", default=NODE_FRAMES, help=f"WxH list (default {NODE_FRAMES})")
    p.add_argument("--node-variant", action="append", default=[], metavar='"k:=v [k:=v ...]"',
                   help="node parameters of an A/B variant against the defaults; repeatable")
    p.add_argument("--node-rounds", type=int, default=None, help="interleaved rounds (default 3; quick: 1)")
    p.add_argument("--node-repeats", type=int, default=None, help="timed frames per run (default 21)")
    return p.parse_args(argv)


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.sizes = tuple(int(s) for s in (args.sizes or ("416" if args.quick else "416,608")).split(","))
        self.warmup = args.warmup if args.warmup is not None else (2 if args.quick else 3)
        self.repeats = args.repeats if args.repeats is not None else (5 if args.quick else 11)
        self.work = Path(args.work).resolve()
        self.names = [m for m in args.models.split(",") if m]
        self.models: dict[str, object] = {}
        self.rows: list[dict] = []
        self.notes: list[str] = []
        self._detectors: dict[tuple, object] = {}

    def prepare(self) -> None:
        from bench.prepare import make_base, make_pruned

        t0 = time.monotonic()
        base = make_base(self.work, Path(self.args.cfg), self.args.seed, self.sizes)
        self.models = {base.name: base} if "yolov3-spp3" in self.names else {}
        pruned = make_pruned(base, self.work, [n for n in self.names if n != "yolov3-spp3"], self.sizes)
        self.models.update({mf.name: mf for mf in pruned})
        targets = [float(t) for t in self.args.latency_targets.split(",") if t.strip()]
        if targets:
            from bench.prepare import make_latency_pruned

            lat = make_latency_pruned(base, self.work, targets, self.sizes, self.args.threads)
            self.models.update({mf.name: mf for mf in lat})
        if not self.args.no_reference and AUTHORS_CFG.is_file():
            mf = make_base(self.work, AUTHORS_CFG, self.args.seed, self.sizes, name="authors-prune-0.95")
            self.models[mf.name] = mf
        log(f"models ready in {time.monotonic() - t0:.0f} s: {', '.join(self.models)}")

    def _forward(self, mf, backend: str, size: int, blob, device: str, half: bool):
        from bench.backends import detector, onnxruntime_forward, opencv_forward, torch_forward

        if backend == "opencv":
            return opencv_forward(mf.cfg, mf.weights, blob, device, half)
        key = (mf.name, backend, size, device, half)
        if key not in self._detectors:  # one Detector (one ONNX export) for both input shapes
            self._detectors = {key: detector(mf.pt, backend, size, device, half and backend == "torch",
                                             self.work / "cache" / "onnx")}
        det = self._detectors[key]
        if backend == "torch":
            return torch_forward(det, blob)
        return onnxruntime_forward(det.onnx_path, blob, device, half)

    def _reps(self, mf, size: int) -> tuple[int, int]:
        """(warm-up, timed runs): the unpruned net is ~20x slower than slim-95, so it gets fewer runs."""
        return (self.warmup, self.repeats) if mf.gflops[size] < 20 else (1, max(3, self.repeats // 2))

    def forward_table(self, device: str = "cpu", precisions: tuple[str, ...] = ("fp32",)) -> None:
        """Every model x runtime x input shape (square, rect) x precision; runtimes interleaved."""
        from bench.backends import input_blob
        from bench.sparse_model import bench_frame

        frame = bench_frame(1920, 1080, self.args.seed)
        for size in self.sizes:
            blobs = {"square": input_blob(frame, size), "rect": input_blob(frame, size, rect=True)}
            for mf in self.models.values():
                for precision in precisions:
                    half = precision == "fp16"
                    fns = {}
                    for backend, (shape, blob) in ((be, b) for be in BACKENDS for b in blobs.items()):
                        if half and backend == "onnxruntime":
                            continue  # the Detector runs ONNX Runtime in fp32 only
                        try:
                            fn = self._forward(mf, backend, size, blob, device, half)
                            fn()  # some runtimes fail only on the first run (OpenCV without CUDA)
                            fns[(shape, backend)] = fn
                        except Exception as exc:  # one runtime failing must not lose the others
                            self.notes.append(f"{mf.name} {backend} {size} {shape} {precision}: {exc!r}")
                            log(f"FAILED {mf.name} {backend} {size} {shape}: {exc!r}")
                    times = interleaved(fns, *self._reps(mf, size))
                    del fns
                    gc.collect()
                    for (shape, backend), t in times.items():
                        s = t.summary()
                        self.rows.append({
                            "kind": "forward", "model": mf.name, "backend": backend, "img_size": size,
                            "input": "x".join(map(str, blobs[shape].shape[:1:-1])), "shape": shape,
                            "gflops": mf.gflops[size], "params": mf.params, "latency_ms_median": s["median"],
                            "latency_ms_min": s["min"], "runs": s["runs"], "device": device,
                            "precision": precision, "threads": self.args.threads})
                    log(f"{mf.name:18s} {size} {device} {precision}: " + ", ".join(
                        f"{b}/{sh} {t.median:.1f}" for (sh, b), t in times.items()) + " ms")

    def speedups(self) -> None:
        """Every model against YOLOv3-SPP3 on the same backend, size, input shape, device and
        precision (ONNX Runtime with ONNX Runtime, square with square): rows of kind ``speedup``."""
        fields = ("backend", "img_size", "shape", "device", "precision")
        base = {tuple(r[f] for f in fields): r for r in self.rows
                if r["kind"] == "forward" and r["model"] == "yolov3-spp3"}
        for r in [r for r in self.rows if r["kind"] == "forward" and r["model"] != "yolov3-spp3"]:
            b = base.get(tuple(r[f] for f in fields))
            if b is not None:
                self.rows.append({"kind": "speedup", "model": r["model"], **{f: r[f] for f in fields},
                                  "vs_spp3": round(b["latency_ms_median"] / r["latency_ms_median"], 4),
                                  "gflops_ratio": round(b["gflops"] / r["gflops"], 2)})

    def node(self) -> None:
        """The slimmest model on its fastest backend (ours: torch or ONNX Runtime, rect input) at each
        node frame size, base + variants in interleaved rounds; every other model once at 1080p."""
        from bench.node_e2e import E2E, ab_rounds, paired_ratios
        from bench.sparse_model import bench_frame

        a, size = self.args, self.sizes[0]
        slim = "slim-95" if "slim-95" in self.models else list(self.models)[-1]
        cands = [(r["latency_ms_median"], r["backend"]) for r in self.rows if r["kind"] == "forward"
                 and (r["model"], r["img_size"], r["shape"], r["device"]) == (slim, size, "rect", "cpu")
                 and r["backend"] != "opencv"]
        backend = min(cands)[1] if cands else "torch"
        frames = {f: bench_frame(*map(int, f.split("x")), a.seed) for f in a.node_frames.split(",")}
        variants = {"defaults": [], **{v: v.split() for v in a.node_variant}}
        rounds = a.node_rounds or (1 if a.quick else 3)
        os.environ["SLIMYOLO_CACHE"] = str(self.work / "cache")  # the node reuses the ONNX exported above
        e2e = E2E(frames, self.work / "logs")
        try:
            rows = ab_rounds(e2e, self.models[slim].pt, backend, size, variants, rounds, self.warmup,
                             a.node_repeats or 21, slim, log)
            e2e.frames = {k: v for k, v in e2e.frames.items() if k == "1920x1080"} or e2e.frames
            for name, mf in self.models.items():
                if name != slim:  # peak RSS and 1080p latency of every model
                    rows += ab_rounds(e2e, mf.pt, backend, size, {"defaults": []}, 1, 1, 3, name, log)
        finally:
            e2e.close()
        self.rows += rows + paired_ratios(rows, "defaults")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    warnings.filterwarnings("ignore", category=UserWarning)
    threads = fix_threads(args.threads)
    argv = sys.argv[1:] if argv is None else argv
    command = "python bench/run.py " + " ".join(shlex.quote(a) for a in argv)
    t0 = time.monotonic()
    b = Bench(args)
    facts = run_facts(command, threads)
    b.prepare()
    b.forward_table()
    if not args.no_node:
        b.node()
    import torch

    if torch.cuda.is_available():
        facts["cuda"] = torch.cuda.get_device_name(0)
        b.forward_table("cuda:0", ("fp32", "fp16"))
    b.speedups()
    from bench.sparse_model import frame_source
    from slimyolo_ros.io_utils import atomic_write_json

    facts.update({"load_avg_end": os.getloadavg(), "wall_s": round(time.monotonic() - t0, 1),
                  "warmup": b.warmup, "repeats": b.repeats, "sizes": list(b.sizes), "frame": frame_source(),
                  "notes": b.notes, "models": {k: {"cfg": str(m.cfg), "gflops": m.gflops, "params": m.params}
                                               for k, m in b.models.items()}})
    atomic_write_json(Path(args.json), {"run": facts, "rows": b.rows})
    log(f"done in {facts['wall_s']:.0f} s: {args.json}")
    print(json.dumps({"rows": len(b.rows), "json": str(args.json)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
