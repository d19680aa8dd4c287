"""Latency-aware against percentile pruning at equal measured latency:
``python bench/latency_prune.py --json OUT.json``.

On the bench's synthetic sparse YOLOv3-SPP3 (bench/sparse_model.py) at a square input, one backend
and a fixed thread count:
  1. percentile pruning (``slimyolo prune --global-percent P --layer-keep 0.1``) to slim-90 and slim-95
     and their end-to-end latency, measured interleaved with the unpruned network;
  2. latency-aware pruning (``slimyolo prune --target-ms T``) with T = each of those latencies, and
     with T = a tenth of the unpruned network's latency; every try of the pruner is timed interleaved
     with its reference model (the load of a shared CPU moves within minutes), so "within T" means
     "at most as slow as the reference" measured side by side;
  3. every model timed again, all interleaved in one run, with the share of the total |gamma| (summed
     over each shortcut group) it keeps and the latency table's prediction beside the measurement.
Data only; docs/results.md reads it. Benchmarks, not tests: nothing asserts on speed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from bench.common import REPO, fix_threads, run_facts  # noqa: E402

PERCENTS = {"slim-90": 0.9, "slim-95": 0.95}
LAYER_KEEP = 0.1


def log(msg: str) -> None:
    print(f"[latency {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--img-size", type=int, default=416)
    p.add_argument("--backend", choices=("onnxruntime", "torch"), default="onnxruntime")
    p.add_argument("--round-to", type=int, default=8)
    p.add_argument("--repeats", type=int, default=9, help="interleaved rounds of the final timing")
    p.add_argument("--table-repeats", type=int, default=5)
    p.add_argument("--speedup", type=float, default=10.0, help="also prune to 1/SPEEDUP of the unpruned net")
    p.add_argument("--speedup-layer-keep", type=lambda v: [float(x) for x in v.split(",")],
                   default=[0.1, 0.05], help="layer keep K of the 1/SPEEDUP prunes (one model each)")
    p.add_argument("--cfg", default=str(REPO / "models" / "yolov3-spp3.cfg"))
    p.add_argument("--latency-cache", default=None)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="[latency] %(message)s")
    threads = fix_threads(a.threads)
    argv = sys.argv[1:] if argv is None else argv
    facts = run_facts("python bench/latency_prune.py " + " ".join(shlex.quote(x) for x in argv), threads)
    facts["uptime_start"] = uptime()
    from bench.sparse_model import make_sparse_model
    from slimyolo_ros.darknet.channel_graph import channel_graph
    from slimyolo_ros.darknet.complexity import count_gflops
    from slimyolo_ros.io_utils import atomic_write_json
    from slimyolo_ros.prune.importance import gamma_sum
    from slimyolo_ros.prune.latency_backends import interleaved_medians, model_runner
    from slimyolo_ros.prune.latency_prune import LatencyTarget, importance_kept, prune_to_latency
    from slimyolo_ros.prune.slimming import bn_gammas, plan_pruning
    from slimyolo_ros.prune.surgery import apply_plan

    t0 = time.monotonic()
    base = make_sparse_model(a.cfg, seed=a.seed)
    graph, gammas = channel_graph(base), bn_gammas(base)
    models, plans, infos = {"yolov3-spp3": base}, {}, {}
    for name, p in PERCENTS.items():
        plan, _ = plan_pruning(base, p, LAYER_KEEP)
        models[name], plans[name] = apply_plan(base, plan), plan

    runners: dict = {}

    def timed(names: list[str], repeats: int) -> dict[str, float]:
        for n in names:
            if n == "_try" or n not in runners:
                runners[n] = model_runner(a.backend, "cpu", a.threads, models[n], a.img_size)
        return interleaved_medians({n: runners[n] for n in names}, warmup=1, repeats=repeats)

    first = timed(list(models), 5)
    log(f"percentile models: {first} ({uptime()})")
    # (reference model, budget as a share of its latency, layer keep)
    targets = {f"latency-{n[5:]}": (n, 1.0, LAYER_KEEP) for n in PERCENTS}
    for keep in a.speedup_layer_keep:
        targets[f"latency-{a.speedup:g}x-k{keep:g}"] = ("yolov3-spp3", 1 / a.speedup, keep)
    for name, (ref, share, keep) in targets.items():
        target = first[ref] * share

        def measure(pruned, ref=ref, share=share, target=target):
            # The load of the shared CPU changes by 2-3x within minutes: each try is timed against its
            # reference in the same interleaved rounds, and the ratio scales the reference's first time.
            models["_try"] = pruned
            ms = timed(["_try", ref], a.table_repeats)
            del models["_try"]
            return target * ms["_try"] / (ms[ref] * share)

        t = LatencyTarget(target, a.backend, "cpu", a.img_size, a.threads, "gamma-sum", a.latency_cache,
                          a.table_repeats)
        try:
            models[name], plans[name], infos[name] = prune_to_latency(base, t, keep, a.round_to,
                                                                      measure=measure)
        except Exception as exc:  # one unreachable target must not lose the others
            log(f"{name}: {exc!r}")
            infos[name] = {"error": repr(exc), "target_ms": target}
        log(f"{name}: {infos[name].get('tries')} ({uptime()})")
    facts["uptime_before_final"] = uptime()
    final = timed(list(models), a.repeats)
    facts["uptime_end"] = uptime()
    rows = []
    for name, m in models.items():
        info = infos.get(name, {})
        rows.append({"model": name, "mode": "latency" if name in infos else "percentile",
                     "latency_ms_first": first.get(name), "latency_ms": round(final[name], 3),
                     "speedup_vs_spp3": round(final["yolov3-spp3"] / final[name], 2),
                     "importance_kept": round(importance_kept(graph, gammas, plans[name], gamma_sum), 4)
                     if name in plans else 1.0,
                     "gflops": round(count_gflops(m, a.img_size), 3), "target_ms": info.get("target_ms"),
                     "tries": info.get("tries"), "table": info.get("table"),
                     "predicted_full_ms": info.get("predicted_full_ms"),
                     "predicted_ms": info.get("predicted_ms"),
                     "measured_ms_in_search": info.get("measured_ms")})
    facts.update(wall_s=round(time.monotonic() - t0, 1), backend=a.backend, img_size=a.img_size,
                 round_to=a.round_to, repeats=a.repeats)
    atomic_write_json(Path(a.json), {"run": facts, "rows": rows})
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
