"""mAP of latency-aware against percentile pruning at equal measured latency, after the same
fine-tuning: ``python bench/latency_prune_map.py --weights SPARSE.pt --data TRAIN --val VAL --out DIR``.

From one sparsity-trained checkpoint:
  1. percentile pruning (``slimyolo prune --global-percent P --layer-keep K``, as slim-90) and its
     end-to-end latency on the backend (median of interleaved rounds);
  2. latency-aware pruning (``slimyolo prune --target-ms T``) with T = that latency; every try of
     the pruner is timed interleaved with the percentile model (a shared CPU's load moves within
     minutes), so "within T" means "not slower than the percentile model, side by side";
  3. both timed again, interleaved in one run;
  4. both fine-tuned by the same ``slimyolo train`` command (run side by side, one thread each) and
     scored by ``slimyolo eval`` on the same validation set, before and after fine-tuning.
Data only; docs/results.md reads it. Nothing asserts on speed or accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from bench.common import fix_threads, run_facts  # noqa: E402
from bench.latency_prune import log, uptime  # noqa: E402

SLIMYOLO = [sys.executable, "-m", "slimyolo_ros.cli"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", required=True, help="sparsity-trained .pt checkpoint")
    p.add_argument("--data", required=True, help="fine-tuning set")
    p.add_argument("--val", required=True, help="validation set of both evaluations")
    p.add_argument("--out", required=True)
    p.add_argument("--img-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads of every timing")
    p.add_argument("--percent", type=float, default=0.9)
    p.add_argument("--layer-keep", type=float, default=0.1)
    p.add_argument("--round-to", type=int, default=8, help="the latency-aware model's width multiple")
    p.add_argument("--repeats", type=int, default=15, help="interleaved rounds of each timing")
    p.add_argument("--latency-cache", default=None)
    p.add_argument("--finetune-epochs", type=int, default=10)
    p.add_argument("--retime", action="store_true",
                   help="only time OUT's two pruned models again beside the unpruned one (interleaved "
                        "--repeats rounds) and add the percentile model's |gamma| kept: OUT/retime.json")
    p.add_argument("--train-args", default="--batch 8 --optimizer adam --lr 0.003 --lr-final 1.0 "
                   "--flip-ud 0.5 --warmup-epochs 0 --eval-every 5 --seed 0 --workers 0 --no-progress",
                   help="the rest of both `slimyolo train` commands")
    return p.parse_args(argv)


def prune_both(a: argparse.Namespace, out: Path) -> tuple[dict, dict]:
    """Both pruned models (written as DIR/pruned.cfg + pruned.pt) and what the latency search did."""
    from slimyolo_ros.darknet.checkpoint import load_model, save_checkpoint
    from slimyolo_ros.prune.latency_backends import interleaved_medians, model_runner
    from slimyolo_ros.prune.latency_prune import LatencyTarget, prune_to_latency
    from slimyolo_ros.slim import prune_to_dir

    base, names, _ = load_model(a.weights)
    models = {}
    models["percentile"], _ = prune_to_dir(base, names, a.img_size, out / "percentile", a.percent,
                                           a.layer_keep, sizes=(a.img_size,))
    ref = model_runner("onnxruntime", "cpu", a.threads, models["percentile"], a.img_size)
    target = interleaved_medians({"percentile": ref}, warmup=2, repeats=a.repeats)["percentile"]
    log(f"percentile: {target:.2f} ms ({uptime()})")

    def measure(pruned) -> float:
        ms = interleaved_medians({"try": model_runner("onnxruntime", "cpu", a.threads, pruned, a.img_size),
                                  "ref": ref}, warmup=1, repeats=a.repeats)
        return target * ms["try"] / ms["ref"]

    t = LatencyTarget(target, "onnxruntime", "cpu", a.img_size, a.threads, "gamma-sum", a.latency_cache,
                      max(3, a.repeats // 3))
    models["latency"], _, info = prune_to_latency(base, t, a.layer_keep, a.round_to, measure=measure)
    (out / "latency").mkdir(parents=True, exist_ok=True)
    models["latency"].save_cfg(out / "latency" / "pruned.cfg")
    save_checkpoint(out / "latency" / "pruned.pt", models["latency"], names, a.img_size,
                    prune={"global_percent": None, "target_ms": target, "layer_keep": a.layer_keep,
                           "round_to": a.round_to, "fold": True})
    log(f"latency: tries {info['tries']} ({uptime()})")
    return models, info


def finetune_and_eval(a: argparse.Namespace, out: Path, names: list[str]) -> dict:
    """The same train command for every model, side by side (one thread each), then eval of both."""
    procs, cmds = {}, {}
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    for n in names:
        d = out / n
        cmds[n] = [*SLIMYOLO, "train", "--cfg", str(d / "pruned.cfg"), "--weights", str(d / "pruned.pt"),
                   "--data", a.data, "--val", a.val, "--epochs", str(a.finetune_epochs), "--img-size",
                   str(a.img_size), *shlex.split(a.train_args), "--out", str(d / "finetune")]
        log("$ " + shlex.join(cmds[n][2:]))
        with open(d / "finetune.log", "w") as logf:
            procs[n] = subprocess.Popen(cmds[n], env=env, stdout=logf, stderr=subprocess.STDOUT)
    for n, p in procs.items():
        if p.wait() != 0:
            raise SystemExit(f"fine-tuning {n} failed: see {out / n / 'finetune.log'}")
    scores = {}
    for n in names:
        for stage, w in (("pruned", out / n / "pruned.pt"), ("finetuned", out / n / "finetune" / "last.pt")):
            cmd = [*SLIMYOLO, "eval", "--weights", str(w), "--data", a.val, "--img-size", str(a.img_size),
                   "--json"]
            log("$ " + shlex.join(cmd[2:]))
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            m = json.loads(r.stdout.strip().splitlines()[-1])
            scores[(n, stage)] = {k: m.get(k) for k in ("map50", "map", "precision", "recall", "f1")}
    return {"commands": {n: shlex.join(c[2:]) for n, c in cmds.items()}, "scores": scores}


def retime(a: argparse.Namespace, out: Path, facts: dict) -> dict:
    """The written models timed again, all interleaved, and the percentile plan's share of |gamma|."""
    from slimyolo_ros.darknet.channel_graph import channel_graph
    from slimyolo_ros.darknet.checkpoint import load_model
    from slimyolo_ros.darknet.complexity import count_gflops, count_params
    from slimyolo_ros.prune.importance import gamma_sum
    from slimyolo_ros.prune.latency_backends import interleaved_medians, model_runner
    from slimyolo_ros.prune.latency_prune import importance_kept
    from slimyolo_ros.prune.slimming import bn_gammas, plan_pruning

    models = {"unpruned": load_model(a.weights)[0]}
    for n in ("percentile", "latency"):
        models[n] = load_model(out / n / "pruned.pt")[0]
    plan, _ = plan_pruning(models["unpruned"], a.percent, a.layer_keep)
    kept = importance_kept(channel_graph(models["unpruned"]), bn_gammas(models["unpruned"]), plan, gamma_sum)
    ms = interleaved_medians({n: model_runner("onnxruntime", "cpu", a.threads, m, a.img_size)
                              for n, m in models.items()}, warmup=2, repeats=a.repeats)
    facts["uptime_end"] = uptime()
    return {"run": facts, "percentile_importance_kept": round(kept, 6),
            "rows": [{"model": n, "latency_ms": round(ms[n], 3), "params": count_params(m),
                      "gflops": round(count_gflops(m, a.img_size), 4)} for n, m in models.items()]}


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    threads = fix_threads(a.threads)
    argv = sys.argv[1:] if argv is None else argv
    facts = run_facts("python bench/latency_prune_map.py " + " ".join(shlex.quote(x) for x in argv), threads)
    facts["uptime_start"] = uptime()
    if a.retime:
        from slimyolo_ros.io_utils import atomic_write_json

        result = retime(a, Path(a.out), facts)
        atomic_write_json(Path(a.out) / "retime.json", result)
        print(json.dumps(result["rows"], indent=1), result["percentile_importance_kept"])
        return 0
    from slimyolo_ros.darknet.complexity import count_gflops, count_params
    from slimyolo_ros.io_utils import atomic_write_json
    from slimyolo_ros.prune.latency_backends import interleaved_medians, model_runner

    t0 = time.monotonic()
    out = Path(a.out)
    models, info = prune_both(a, out)
    facts["uptime_before_final"] = uptime()
    final = interleaved_medians({n: model_runner("onnxruntime", "cpu", a.threads, m, a.img_size)
                                 for n, m in models.items()}, warmup=2, repeats=a.repeats)
    facts["uptime_after_final"] = uptime()
    log(f"final interleaved: {final}")
    tuned = finetune_and_eval(a, out, list(models))
    facts.update(uptime_end=uptime(), wall_s=round(time.monotonic() - t0, 1), img_size=a.img_size,
                 repeats=a.repeats, finetune=tuned["commands"])
    rows = [{"model": n, "latency_ms": round(final[n], 3), "params": count_params(m),
             "gflops": round(count_gflops(m, a.img_size), 4),
             "importance_kept": info["importance_kept"] if n == "latency" else None,
             **{f"{stage}_{k}": v for stage in ("pruned", "finetuned")
                for k, v in tuned["scores"][(n, stage)].items()}} for n, m in models.items()]
    atomic_write_json(out / "latency_prune_map.json", {"run": facts, "latency_search": info, "rows": rows})
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
