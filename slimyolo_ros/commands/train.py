"""``slimyolo train``: train (optionally with BN sparsity) a Darknet cfg on a dataset (VisDrone-DET/VID, YOLO
format or COCO json; its class names size the cfg's [yolo] heads).

Multi-process: ``torchrun --nproc_per_node N -m slimyolo_ros.cli train ...`` (or ``torchrun ...
$(which slimyolo) train ...``) runs DistributedDataParallel (gloo on CPU, nccl on CUDA); only rank 0
writes checkpoints, logs and evaluations.
"""

from __future__ import annotations

import argparse
import json
import logging
import os


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from slimyolo_ros.train.options import add_arguments as add_option_arguments

    add_option_arguments(parser)
    parser.add_argument("--resume", action="store_true", help="continue OUT/last.pt with its stored options")
    parser.add_argument("--json", action="store_true", help="print the final result as one JSON object")


def run(args: argparse.Namespace) -> int:
    from slimyolo_ros.train.options import options_from_args
    from slimyolo_ros.train.trainer import RESUME_OVERRIDES, train

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    opts = options_from_args(args)
    positional = {k: opts.pop(k) for k in ("cfg", "data", "val", "epochs", "img_size", "batch", "out")}
    if positional["val"] is None and positional["data"] and not args.resume:
        positional["val"] = _val_split(positional["data"])
    if args.resume:  # the run's stored options, except what a new invocation may change
        opts = {k: v for k, v in opts.items() if k in (*RESUME_OVERRIDES, "device")}
    result = train(**positional, resume=args.resume, **opts)
    if args.json and int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(result))
    return 0


def _val_split(data: str) -> str | None:
    """--data itself when its data.yaml names a val: split (then --val may be left out)."""
    from pathlib import Path

    import yaml

    from slimyolo_ros.data.yolo_format import find_yaml

    path = find_yaml(Path(data))
    try:
        has_val = path is not None and "val" in (yaml.safe_load(path.read_text()) or {})
    except (OSError, yaml.YAMLError, TypeError):
        return None  # the reader reports it with its line
    if has_val:
        logging.getLogger(__name__).info("--val: the val: split of %s", path)
        return data
    return None
