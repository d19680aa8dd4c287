"""``slimyolo slim``: the whole SlimYOLOv3 pipeline, every stage evaluated, a paper-style table at the end.

    slimyolo slim --cfg CFG --data ROOT --val ROOT (--weights W | --baseline-epochs E)
        --ratios 0.5,0.5 --layer-keep 0.1 --sparsity 0.001 --sparsity-epochs E1 --finetune-epochs E2
        --img-size N --batch B [--round-to N] --out DIR [--resume] [--json]

``--target-ms 60,30`` (with ``--latency-backend``, ``--latency-device``, ``--latency-threads``) prunes
each iteration to a latency budget measured on this machine instead of a global ratio.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings

from slimyolo_ros.errors import PruneError


def _ratios(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated fractions like 0.5,0.5, found {text!r}") \
            from None


# Set by slim's own flags or per stage by the pipeline; --train-opt cannot override them.
RESERVED = ("cfg", "data", "val", "epochs", "img_size", "batch", "out", "weights", "sparsity",
            "sparsity_schedule", "sparsity_weighting", "device")


def _train_opts(items: list[str]) -> dict:
    """``KEY=VALUE`` strings -> trainer options, typed by the TrainOptions field they name."""
    from dataclasses import fields

    from slimyolo_ros.train.options import TrainOptions, parse_option

    allowed = sorted({f.name for f in fields(TrainOptions)} - set(RESERVED))
    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in allowed:
            raise PruneError(f"--train-opt {item!r}: expected KEY=VALUE with KEY one of: "
                             f"{', '.join(allowed)}")
        try:
            out[key] = parse_option(key, value)
        except ValueError as exc:
            raise PruneError(f"--train-opt {item!r}: {exc}") from None
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cfg", required=True, help="Darknet cfg of the unpruned network")
    parser.add_argument("--data", required=True, help="VisDrone-format training set")
    parser.add_argument("--val", required=True, help="VisDrone-format validation set (every stage is scored)")
    start = parser.add_mutually_exclusive_group(required=True)
    start.add_argument("--weights", default=None, help="trained baseline (.pt or Darknet .weights)")
    start.add_argument("--baseline-epochs", type=int, default=0, help="train the baseline first, E epochs")
    parser.add_argument("--ratios", type=_ratios, default=[0.5, 0.5],
                        help="global ratios, one prune iteration each (default 0.5,0.5 = SlimYOLOv3-SPP3-50)")
    parser.add_argument("--target-ms", type=_ratios, default=None, metavar="T1,T2",
                        help="latency budgets in ms, one prune iteration each, in place of --ratios "
                             "(slimyolo prune --target-ms)")
    parser.add_argument("--latency-backend", choices=("onnxruntime", "torch"), default="onnxruntime",
                        help="--target-ms: the runtime the budgets are measured in")
    parser.add_argument("--latency-device", default="cpu", help="--target-ms: cpu or cuda (default cpu)")
    parser.add_argument("--latency-threads", type=int, default=None,
                        help="--target-ms: intra-op threads of the measurements (default: torch's)")
    parser.add_argument("--independent", action="store_true",
                        help="a sweep: sparsity train once, prune + fine-tune each ratio from that sparse "
                             "model (default: iterate, each ratio prunes the previous fine-tuned model)")
    parser.add_argument("--layer-keep", type=float, default=0.1, help="layer keep K (default 0.1)")
    parser.add_argument("--sparsity", type=float, default=1e-3, help="L1 alpha on BN gammas (default 0.001)")
    parser.add_argument("--sparsity-schedule", choices=("constant", "decay"), default="constant")
    parser.add_argument("--sparsity-weighting", choices=("uniform", "flops"), default="uniform",
                        help="uniform: the paper; flops: alpha per layer ~ the FLOPs removing one of its "
                             "channels saves (see slimyolo train --help)")
    parser.add_argument("--sparsity-epochs", type=int, default=10)
    parser.add_argument("--finetune-epochs", type=int, default=10)
    parser.add_argument("--distill", type=float, default=0.0, metavar="W",
                        help="fine-tune with knowledge distillation from the unpruned sparse model, "
                             "weight W next to the ground-truth loss (default 0: off)")
    parser.add_argument("--img-size", type=int, default=416)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--round-to", type=int, default=None, metavar="N",
                        help="kept channel counts are multiples of N (default 1 with --ratios, 8 with "
                             "--target-ms)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--lr", type=float, default=None, help="learning rate of every training stage")
    parser.add_argument("--workers", type=int, default=None, help="data-loader workers")
    parser.add_argument("--train-opt", action="append", default=[], metavar="KEY=VALUE",
                        help="any other trainer option for every training stage, e.g. optimizer=adam, "
                             "flip_ud=0.5, eval_every=2, progress=false (repeatable)")
    parser.add_argument("--latency-repeats", type=int, default=5,
                        help="timed CPU forwards per stage for the latency column (median; default 5)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--resume", action="store_true", help="reuse the finished steps found in --out")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")


def run(args: argparse.Namespace) -> int:
    from slimyolo_ros.slim import slim, to_markdown

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    # a user-facing warning (e.g. weights not sparsity-trained) as one plain line on stderr
    warnings.formatwarning = lambda message, category, *a, **k: f"warning: {message}\n"
    if args.sparsity_epochs < 1 or args.finetune_epochs < 1:
        raise PruneError(f"--sparsity-epochs ({args.sparsity_epochs}) and --finetune-epochs "
                         f"({args.finetune_epochs}) must be >= 1")
    train_options = {k: v for k, v in (("lr", args.lr), ("workers", args.workers)) if v is not None}
    train_options.update(_train_opts(args.train_opt))
    train_options["sparsity_weighting"] = args.sparsity_weighting
    report = slim(args.cfg, args.data, args.val, args.out, args.ratios, args.img_size, args.batch,
                  weights=args.weights, baseline_epochs=args.baseline_epochs, layer_keep=args.layer_keep,
                  sparsity=args.sparsity, sparsity_epochs=args.sparsity_epochs,
                  finetune_epochs=args.finetune_epochs,
                  round_to=args.round_to if args.round_to is not None else (8 if args.target_ms else 1),
                  sparsity_schedule=args.sparsity_schedule, device=args.device, resume=args.resume,
                  train_options=train_options, latency_repeats=max(1, args.latency_repeats),
                  independent=args.independent, distill=args.distill, targets_ms=args.target_ms,
                  latency={"backend": args.latency_backend, "device": args.latency_device,
                           "threads": args.latency_threads})
    if args.json:
        print(json.dumps(report))
    else:
        print(to_markdown(report))
    return 0
