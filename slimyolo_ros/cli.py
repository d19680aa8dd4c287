"""``slimyolo``: the command-line entry point.

Each subcommand lives in ``slimyolo_ros/commands/<name>.py`` with two functions:
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their
subcommand runs, so ``slimyolo --help`` stays fast and torch is not loaded for it.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

from slimyolo_ros.errors import SlimyoloError, describe_os_error

# name -> one-line help. The module slimyolo_ros.commands.<name> implements it.
COMMANDS: dict[str, str] = {
    "info": "layer table, params and GFLOPs of a cfg",
    "detect": "run the Detector on one image",
    "synth": "generate a synthetic UAV dataset in VisDrone format",
    "train": "train (optionally with BN sparsity) a cfg on a VisDrone, YOLO-format or COCO dataset",
    "eval": "COCO-style mAP, P/R/F1 of a model on a VisDrone-format dataset",
    "prune": "SlimYOLOv3 channel pruning of a sparsity-trained model",
    "slim": "the whole SlimYOLOv3 pipeline: sparsity -> prune -> fine-tune, iterated",
    "reproduce": "the SlimYOLOv3 paper's VisDrone experiment, end to end and resumable",
    "export": "export a model to ONNX, Darknet or TorchScript",
    "bag": "rosbag2: make a bag from a dataset, replay it through the node and score it",
}


class _Parser(argparse.ArgumentParser):
    """argparse with its error as one line: the usage block it prints first hides the line that matters."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Terminated(BaseException):
    """SIGTERM as an exception, so that ``finally`` blocks run (an atomic write removes its temp file)."""


def _terminate(signum: int, frame: object) -> None:
    raise _Terminated()


def _load(name: str):
    return importlib.import_module(f"slimyolo_ros.commands.{name}")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = _Parser(prog="slimyolo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    wanted = next((a for a in (argv or []) if not a.startswith("-")), None)
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        # Only the chosen subcommand's module is imported (it may pull in torch).
        if name == wanted:
            _load(name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)
    name = " ".join(filter(None, (args.command, getattr(args, "bag_command", None))))
    try:
        if isinstance(getattr(args, "device", None), str):
            from slimyolo_ros.devices import check_device

            check_device(args.device)
        return int(_load(args.command).run(args) or 0)
    except SlimyoloError as exc:
        print(f"slimyolo {name}: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:  # an --out that cannot be written, a directory where a file goes, ...
        print(f"slimyolo {name}: error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"slimyolo {name}: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print(f"slimyolo {name}: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
