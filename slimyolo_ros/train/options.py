"""The training options, declared once: :class:`TrainOptions` is what a run stores (and ``--resume``
reuses), and its fields, with their types and help, generate the ``slimyolo train`` arguments
(:func:`add_arguments`) and type the ``--train-opt KEY=VALUE`` strings of ``slimyolo slim``
(:func:`parse_option`)."""

from __future__ import annotations

import argparse
import types
import typing
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any

from slimyolo_ros.darknet.input_size import check_img_size
from slimyolo_ros.errors import TrainingError
from slimyolo_ros.evaluate.coco import EVAL_CONF_THRESHOLD, EVAL_NMS_THRESHOLD

# The sparsity penalty's variants (train/sparsity.py implements them; declared here, with the other
# options, so that `slimyolo train --help` needs no torch).
WEIGHTINGS = ("uniform", "flops")
SCHEDULES = ("constant", "decay")


def _opt(default: Any = MISSING, help: str = "", **cli: Any) -> Any:
    """A field with its CLI help; ``cli`` holds extra argparse keywords (choices, metavar, required)."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass
class TrainOptions:
    """Everything that defines a run (stored in last.pt, reused by --resume).

    A bool field that defaults to True becomes a ``--no-NAME`` flag, one that defaults to False a
    ``--NAME`` flag; every other field a ``--NAME VALUE`` argument typed by its annotation."""

    cfg: str = _opt(help="Darknet cfg (required unless --resume)")
    data: str = _opt(help="training set: VisDrone-DET/-VID root, YOLO format (data.yaml, or images/ + "
                          "labels/ + a .names file) or COCO json; its class names size the [yolo] heads")
    val: str = _opt(help="validation set (same formats), evaluated every --eval-every epochs; default: the "
                         "val: split of --data's data.yaml")
    epochs: int = _opt(help="number of epochs (with --resume: raise it to train longer)")
    img_size: int = _opt(help="training/eval input size, a multiple of 32")
    batch: int = _opt(help="total batch size (split over DDP processes)")
    out: str = _opt(help="run directory: last.pt, best.pt, results.csv, plots", required=True)
    weights: str | None = _opt(None, "initial weights: .pt checkpoint or Darknet .weights")
    cutoff: int | None = _opt(None, "with Darknet .weights: load only the first N layers (e.g. 75 for a "
                                    "backbone)")
    device: str = _opt("auto", "auto, cpu, cuda or cuda:N")
    accumulate: int = _opt(1, "optimizer step every K batches")
    multi_scale: bool = _opt(False, "random input size in [0.5, 1.5] x img-size")
    optimizer: str = _opt("sgd", "SGD with nesterov momentum (default) or Adam (beta1 = --momentum)",
                          choices=("sgd", "adam"))
    lr: float = _opt(0.01, "initial learning rate (Adam: try 0.001)")
    lr_final: float = _opt(0.01, "final LR as a fraction of --lr (cosine)")
    lr_schedule: str = _opt("cosine", choices=("cosine", "step"))
    momentum: float = _opt(0.937)
    weight_decay: float = _opt(5e-4, "on conv weights only")
    warmup_epochs: float = _opt(1.0)
    ema: bool = _opt(True, "do not keep an EMA of the weights")
    workers: int = _opt(0, "DataLoader worker processes")
    augment: bool = _opt(True, "no training augmentation")
    mosaic: float = _opt(0.0, "probability of a 4-image mosaic")
    # up-down flips suit top-down (synthetic) scenes, not VisDrone's oblique views
    flip_ud: float = _opt(0.0, "probability of an up-down flip (top-down scenes)")
    sparsity: float = _opt(0.0, "SlimYOLOv3 L1 penalty on BN gammas (the paper: 0.001)", metavar="ALPHA")
    sparsity_schedule: str = _opt("constant", "decay: alpha falls to 0.1*alpha over the last 30%% of epochs",
                                  choices=SCHEDULES)
    sparsity_weighting: str = _opt(
        "uniform", "uniform: the paper's alpha on every gamma; flops: alpha per layer in proportion to the "
                   "FLOPs removing one of its channels saves (its output and every reader's input, over "
                   "its shortcut group; mean 1), so the expensive high-resolution layers thin out too",
        choices=WEIGHTINGS)
    teacher_weights: str | None = _opt(
        None, "distil from this model (.pt, or Darknet .weights with --teacher-cfg), e.g. the unpruned "
              "model when fine-tuning a pruned one; its [yolo] heads must match")
    teacher_cfg: str | None = _opt(None, "cfg of a Darknet .weights teacher")
    distill: float = _opt(1.0, "weight of the distillation loss next to the ground-truth loss (default 1)",
                          metavar="W")
    eval_every: int = _opt(1, "evaluate every N epochs (and at the end)")
    seed: int = _opt(0)
    sync_bn: bool = _opt(False, "SyncBatchNorm under DDP on CUDA")
    conf_threshold: float = _opt(EVAL_CONF_THRESHOLD, "confidence threshold of the per-epoch evaluation")
    nms_threshold: float = _opt(EVAL_NMS_THRESHOLD, "NMS IoU threshold of the per-epoch evaluation")
    skip_bad: bool = _opt(False, "skip malformed annotation lines with a warning")
    progress: bool = _opt(True, "no tqdm bars")


def _value_type(f: Field) -> tuple[type, bool]:
    """(the value type, whether None is allowed) of a field: ``int``, ``str | None``, ..."""
    hint = typing.get_type_hints(TrainOptions)[f.name]
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and rest[0] in (bool, int, float, str):
            return rest[0], True
    elif hint in (bool, int, float, str):
        return hint, False
    raise TypeError(f"TrainOptions.{f.name}: type {hint} has no command-line form (add one here)")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One argument per field. Fields without a default are left to ``None`` here (``--resume`` takes
    them from the run), except ``out``, which is always required."""
    for f in fields(TrainOptions):
        kind, _ = _value_type(f)
        meta = dict(f.metadata)
        help_text = meta.pop("help") or None
        if kind is bool:
            if f.default:
                parser.add_argument(_flag("no_" + f.name), dest=f.name, action="store_false", help=help_text)
            else:
                parser.add_argument(_flag(f.name), action="store_true", help=help_text)
            continue
        default = None if f.default is MISSING else f.default
        parser.add_argument(_flag(f.name), type=kind, default=default, help=help_text, **meta)


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainOptions fields of a namespace built by :func:`add_arguments`."""
    return {f.name: getattr(args, f.name) for f in fields(TrainOptions)}


TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def parse_option(name: str, text: str) -> Any:
    """The value of option ``name`` from its text (``--train-opt name=text``), typed by its field.

    ``none`` gives None for an optional field. Raises KeyError for an unknown name and ValueError
    naming the expected type for a bad value."""
    known = {f.name: f for f in fields(TrainOptions)}
    kind, optional = _value_type(known[name])
    if optional and text.strip().lower() == "none":
        return None
    if kind is bool:
        if text.strip().lower() not in TRUE + FALSE:
            raise ValueError(f"{text!r} is not a valid bool (true/false, yes/no, 1/0)")
        return text.strip().lower() in TRUE
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a valid {kind.__name__}") from None
    choices = known[name].metadata.get("choices")
    if choices and value not in choices:
        raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
    return value


def check_options(o: TrainOptions) -> None:
    """Range and consistency checks; the message names the CLI flag and the bad value."""
    checks = [
        (o.epochs >= 1, f"--epochs must be >= 1, found {o.epochs}"),
        (o.batch >= 1, f"--batch must be >= 1, found {o.batch}"),
        (o.accumulate >= 1, f"--accumulate must be >= 1, found {o.accumulate}"),
        (o.lr > 0, f"--lr must be > 0, found {o.lr}"),
        (o.sparsity >= 0, f"--sparsity must be >= 0, found {o.sparsity}"),
        (o.eval_every >= 1, f"--eval-every must be >= 1, found {o.eval_every}"),
        (o.warmup_epochs >= 0, f"--warmup-epochs must be >= 0, found {o.warmup_epochs}"),
        (o.distill >= 0, f"--distill must be >= 0, found {o.distill}"),
        (o.teacher_cfg is None or o.teacher_weights is not None, "--teacher-cfg needs --teacher-weights"),
    ]
    for f in fields(TrainOptions):
        choices = f.metadata.get("choices")
        value = getattr(o, f.name)
        checks.append((not choices or value in choices,
                       f"{_flag(f.name)} must be {' or '.join(choices or ())}, found {value!r}"))
    for ok, message in checks:
        if not ok:
            raise TrainingError(message)
    check_img_size(o.img_size, "--img-size", TrainingError)
    if not Path(o.cfg).is_file():
        raise TrainingError(f"--cfg {o.cfg}: file not found")
