"""``slimyolo reproduce``: the SlimYOLOv3 paper's experiment on VisDrone as one resumable command.

    slimyolo reproduce --data VISDRONE_ROOT [--backbone darknet53.conv.74] [--device cuda:0]
        [--epochs-scale F] [--out DIR] [--json]

baseline training -> sparsity training (alpha 0.001) -> pruning at 0.5 / 0.9 / 0.95 (10% per-layer
safety) -> fine-tuning -> the paper-style table. Run it again after a kill: finished stages are skipped.
What to download and how long it takes: docs/reproduce.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

DEFAULT_CFG = "models/yolov3-spp3.cfg"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True,
                        help="VisDrone root holding VisDrone2019-DET-train/ and VisDrone2019-DET-val/")
    parser.add_argument("--backbone", default=None,
                        help="Darknet's darknet53.conv.74: the baseline starts from its 52 convolutions "
                             "(--cutoff 75); without it, from random weights")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--epochs-scale", type=float, default=1.0, metavar="F",
                        help="multiply every stage's epochs by F (default 1: the full schedule)")
    parser.add_argument("--out", default="runs/reproduce", help="run folder (default runs/reproduce)")
    parser.add_argument("--cfg", default=DEFAULT_CFG, help=f"the unpruned network (default {DEFAULT_CFG})")
    parser.add_argument("--img-size", type=int, default=416, help="training and evaluation size (416)")
    parser.add_argument("--batch", type=int, default=32, help="batch of every training stage (32)")
    parser.add_argument("--workers", type=int, default=8, help="data-loader workers (default 8)")
    parser.add_argument("--probe-seconds", type=float, default=20.0,
                        help="how long the training speed is measured before the plan is printed")
    parser.add_argument("--latency-repeats", type=int, default=20,
                        help="timed forwards per model and size for the latency columns (median)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no tqdm bars")
    parser.add_argument("--json", action="store_true", help="print the plan and table as one JSON object")


def _cfg_path(value: str) -> Path:
    """As given, else relative to the source tree (the shipped models/ folder)."""
    path = Path(value)
    if path.exists() or path.is_absolute():
        return path
    in_tree = Path(__file__).resolve().parents[2] / value
    return in_tree if in_tree.exists() else path


def run(args: argparse.Namespace) -> int:
    from slimyolo_ros.slim.reproduce import reproduce

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    result = reproduce(args.data, args.out, _cfg_path(args.cfg), backbone=args.backbone, device=args.device,
                       epochs_scale=args.epochs_scale, img_size=args.img_size, batch=args.batch,
                       probe_seconds=args.probe_seconds, latency_repeats=max(1, args.latency_repeats),
                       train_options={"workers": args.workers, "progress": args.progress})
    if args.json:
        print(json.dumps(result))
    else:
        print((Path(args.out) / "reproduce_table.md").read_text())
    return 0
