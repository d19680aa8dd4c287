"""``slimyolo train``: train (optionally with BN sparsity) a Darknet cfg on a VisDrone-format dataset.

Multi-process: ``torchrun --nproc_per_node N -m slimyolo_ros.cli train ...`` (or ``torchrun ...
$(which slimyolo) train ...``) runs DistributedDataParallel (gloo on CPU, nccl on CUDA); only rank 0
writes checkpoints, logs and evaluations.
"""

from __future__ import annotations

import argparse
import json
import logging


def add_arguments(parser: argparse.ArgumentParser) -> None:
    p = parser
    p.add_argument("--cfg", help="Darknet cfg (required unless --resume)")
    p.add_argument("--data", help="training set root (VisDrone layout: images/, annotations/)")
    p.add_argument("--val", help="validation set root, evaluated every --eval-every epochs")
    p.add_argument("--epochs", type=int, help="number of epochs (with --resume: raise it to train longer)")
    p.add_argument("--img-size", type=int, help="training/eval input size, a multiple of 32")
    p.add_argument("--batch", type=int, help="total batch size (split over DDP processes)")
    p.add_argument("--out", required=True, help="run directory: last.pt, best.pt, results.csv, plots")
    p.add_argument("--weights", help="initial weights: .pt checkpoint or Darknet .weights")
    p.add_argument("--cutoff", type=int, default=None,
                   help="with Darknet .weights: load only the first N layers (e.g. 75 for a backbone)")
    p.add_argument("--resume", action="store_true", help="continue OUT/last.pt with its stored options")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--accumulate", type=int, default=1, help="optimizer step every K batches")
    p.add_argument("--multi-scale", action="store_true", help="random input size in [0.5, 1.5] x img-size")
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd",
                   help="SGD with nesterov momentum (default) or Adam (beta1 = --momentum)")
    p.add_argument("--lr", type=float, default=0.01, help="initial learning rate (Adam: try 0.001)")
    p.add_argument("--lr-final", type=float, default=0.01, help="final LR as a fraction of --lr (cosine)")
    p.add_argument("--lr-schedule", choices=("cosine", "step"), default="cosine")
    p.add_argument("--momentum", type=float, default=0.937)
    p.add_argument("--weight-decay", type=float, default=5e-4, help="on conv weights only")
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--no-ema", action="store_true", help="do not keep an EMA of the weights")
    p.add_argument("--no-augment", action="store_true", help="no training augmentation")
    p.add_argument("--mosaic", type=float, default=0.0, help="probability of a 4-image mosaic")
    p.add_argument("--flip-ud", type=float, default=0.0,
                   help="probability of an up-down flip (top-down scenes)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--sparsity", type=float, default=0.0, metavar="ALPHA",
                   help="SlimYOLOv3 L1 penalty on BN gammas (the paper: 0.001)")
    p.add_argument("--sparsity-schedule", choices=("constant", "decay"), default="constant",
                   help="decay: alpha falls to 0.1*alpha over the last 30%% of epochs")
    p.add_argument("--sparsity-weighting", choices=("uniform", "flops"), default="uniform",
                   help="uniform: the paper's alpha on every gamma; flops: alpha per layer in proportion to "
                        "the FLOPs removing one of its channels saves (its output and every reader's input, "
                        "over its shortcut group; mean 1), so the expensive high-resolution layers thin out "
                        "too")
    p.add_argument("--teacher-weights", default=None,
                   help="distil from this model (.pt, or Darknet .weights with --teacher-cfg), e.g. the "
                        "unpruned model when fine-tuning a pruned one; its [yolo] heads must match")
    p.add_argument("--teacher-cfg", default=None, help="cfg of a Darknet .weights teacher")
    p.add_argument("--distill", type=float, default=1.0, metavar="W",
                   help="weight of the distillation loss next to the ground-truth loss (default 1)")
    p.add_argument("--eval-every", type=int, default=1, help="evaluate every N epochs (and at the end)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under DDP on CUDA")
    p.add_argument("--skip-bad", action="store_true", help="skip malformed annotation lines with a warning")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    p.add_argument("--json", action="store_true", help="print the final result as one JSON object")
    # fault injection for tests: NaN input at a global step; each DDP rank dumps its final weights
    p.add_argument("--debug-nan-step", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--debug-dump-state", action="store_true", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    from slimyolo_ros.train.trainer import train

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    kw = {"workers": args.workers, "progress": not args.no_progress}
    if args.debug_nan_step is not None:
        kw["debug_nan_step"] = args.debug_nan_step
    if args.debug_dump_state:
        kw["debug_dump_state"] = True
    if not args.resume:
        kw.update(cutoff=args.cutoff, accumulate=args.accumulate, multi_scale=args.multi_scale, lr=args.lr,
                  optimizer=args.optimizer,
                  lr_final=args.lr_final, lr_schedule=args.lr_schedule, momentum=args.momentum,
                  weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs, ema=not args.no_ema,
                  augment=not args.no_augment, mosaic=args.mosaic, flip_ud=args.flip_ud,
                  eval_every=args.eval_every, seed=args.seed,
                  sync_bn=args.sync_bn, skip_bad=args.skip_bad,
                  sparsity_weighting=args.sparsity_weighting, teacher_weights=args.teacher_weights,
                  teacher_cfg=args.teacher_cfg, distill=args.distill)
    result = train(args.cfg, args.data, args.val, args.epochs, args.img_size, args.batch, args.out,
                   weights=args.weights, resume=args.resume, device=args.device, sparsity=args.sparsity,
                   sparsity_schedule=args.sparsity_schedule, **kw)
    if args.json and int(__import__("os").environ.get("RANK", "0")) == 0:
        print(json.dumps(result))
    return 0
