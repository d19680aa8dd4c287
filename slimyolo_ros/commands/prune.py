"""``slimyolo prune``: SlimYOLOv3 channel pruning of a (sparsity-trained) model.

    slimyolo prune --cfg CFG --weights W --global-percent 0.9 --layer-keep 0.1 --out DIR
        [--round-to N] [--no-fold] [--eval ROOT] [--json]
    slimyolo prune --weights W --target-ms 40 --latency-backend onnxruntime --device cpu [--threads 2]
        [--img-size 416] [--round-to 8] --out DIR

The second form prunes to a latency budget measured on this machine (a per-layer latency table,
cached under ~/.cache/slimyolo_ros/latency or $SLIMYOLO_LATENCY_CACHE, then a knapsack over the
channel groups, then the pruned network timed end to end).

writes DIR/pruned.cfg + DIR/pruned.weights (Darknet; OpenCV DNN loads them), DIR/pruned.pt (fine-tune
it with ``slimyolo train --cfg DIR/pruned.cfg --weights DIR/pruned.pt``), DIR/prune_report.json/.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings

from slimyolo_ros.errors import PruneError, WeightsError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cfg", default=None,
                        help="Darknet cfg (required for .weights; a .pt carries its own)")
    parser.add_argument("--weights", required=True,
                        help="sparsity-trained .pt checkpoint or Darknet .weights")
    parser.add_argument("--names", default=None, help=".names file (class names for Darknet .weights)")
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--global-percent", "-P", type=float,
                     help="global ratio P in [0, 1): gamma_hat is the P-quantile of all prunable |gamma|")
    how.add_argument("--target-ms", type=float,
                     help="latency budget: the pruned network's forward on --latency-backend/--device at "
                          "--img-size must take at most this many milliseconds")
    parser.add_argument("--layer-keep", "-K", type=float, default=0.1,
                        help="K in (0, 1]: every layer keeps at least ceil(K * channels) (default 0.1)")
    parser.add_argument("--round-to", type=int, default=None, metavar="N",
                        help="kept channel counts are multiples of N (faster kernels; default 1 with "
                             "--global-percent, 8 with --target-ms)")
    parser.add_argument("--latency-backend", choices=("onnxruntime", "torch"), default="onnxruntime",
                        help="--target-ms: the runtime the budget is measured in (default onnxruntime)")
    parser.add_argument("--device", default="cpu", help="--target-ms: cpu or cuda (default cpu)")
    parser.add_argument("--threads", type=int, default=None,
                        help="--target-ms: intra-op threads of the measurements (default: torch's)")
    parser.add_argument("--importance", choices=("gamma-sum", "gamma-max"), default="gamma-sum",
                        help="--target-ms: a channel's importance over its shortcut group (default: "
                             "the sum of |gamma|)")
    parser.add_argument("--latency-repeats", type=int, default=5,
                        help="--target-ms: timed runs per table entry and end-to-end check (median)")
    parser.add_argument("--latency-cache", default=None, metavar="DIR",
                        help="--target-ms: latency table folder (default $SLIMYOLO_LATENCY_CACHE or "
                             "~/.cache/slimyolo_ros/latency)")
    parser.add_argument("--prune-layers", type=int, default=0, metavar="N",
                        help="first drop the N residual blocks with the lowest mean |gamma| (layer pruning)")
    parser.add_argument("--no-fold", action="store_true",
                        help="drop the removed channels' beta instead of folding it into the next layer")
    parser.add_argument("--eval", metavar="ROOT", default=None,
                        help="VisDrone-format dataset: report mAP right after pruning, "
                             "with and without folding")
    parser.add_argument("--img-size", type=int, default=None,
                        help="evaluation and latency input size (default: the model's)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")


def run(args: argparse.Namespace) -> int:
    from slimyolo_ros.darknet.checkpoint import load_model
    from slimyolo_ros.prune.report import to_markdown
    from slimyolo_ros.slim import prune_to_dir

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    # a user-facing warning (e.g. weights not sparsity-trained) as one plain line on stderr
    warnings.formatwarning = lambda message, category, *a, **k: f"warning: {message}\n"
    if args.weights.endswith(".weights") and args.cfg is None:
        raise PruneError(f"{args.weights}: Darknet weights need --cfg")
    try:
        model, names, img_size = load_model(args.weights, cfg=args.cfg, names=args.names)
    except WeightsError as exc:  # the cfg and the weights do not fit each other
        raise PruneError(f"cannot prune: {exc}") from None
    img_size = args.img_size or img_size
    samples = None
    if args.eval:
        from slimyolo_ros.data.visdrone import read_visdrone

        samples = read_visdrone(args.eval)
    latency = None
    if args.target_ms is not None:
        from slimyolo_ros.prune.latency_prune import LatencyTarget

        latency = LatencyTarget(args.target_ms, args.latency_backend, args.device, img_size, args.threads,
                                args.importance, args.latency_cache, max(1, args.latency_repeats))
    round_to = args.round_to if args.round_to is not None else (8 if latency else 1)
    _, report = prune_to_dir(model, names, img_size, args.out, args.global_percent, args.layer_keep,
                             round_to=round_to, fold=not args.no_fold,
                             eval_samples=samples, title=f"Prune report: {args.weights}",
                             prune_layers=args.prune_layers, latency=latency)
    report["source"] = {"weights": str(args.weights), "cfg": args.cfg}
    if args.json:
        print(json.dumps(report))
    else:
        c = {r["img_size"]: r for r in report["complexity"]}
        print(to_markdown(report).split("\n| layer |")[0])
        first = next(iter(c.values()))
        t = report["thresholds"]
        if latency is not None:
            print(f"latency: table predicts {t['predicted_ms']:.1f} ms, measured {t['measured_ms']:.1f} ms "
                  f"(target {t['target_ms']:.1f} ms{'' if t['within_budget'] else ', OVER BUDGET'})")
        print(f"wrote {args.out}/pruned.cfg, pruned.weights, pruned.pt, prune_report.json/.md "
              f"(GFLOPs -{first['gflops_reduction_pct']:.1f}%, params -{first['params_reduction_pct']:.1f}%)")
    return 0
