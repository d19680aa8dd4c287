"""The Detector's command-line options, shared by ``slimyolo detect`` and ``slimyolo eval``, and
:func:`options_from_args`, the one mapping from them to a DetectorOptions."""

from __future__ import annotations

import argparse
from typing import Any

from slimyolo_ros.errors import SlimyoloError


def add_detector_arguments(p: argparse.ArgumentParser, conf: float, nms: float, conf_help: str = "") -> None:
    """``conf``/``nms``: the command's default thresholds (eval keeps the low-score tail for mAP)."""
    p.add_argument("--cfg", default=None, help="Darknet cfg (required with .weights; overrides a .pt's own)")
    p.add_argument("--names", default=None, help=".names file with one class name per line "
                                                 "(default: the checkpoint's class names)")
    p.add_argument("--img-size", type=int, default=None, help="network input side (default: the model's)")
    p.add_argument("--conf", type=float, default=conf,
                   help=f"score threshold, obj x cls (default {conf}{conf_help})")
    p.add_argument("--nms", type=float, default=nms, help=f"NMS IoU threshold (default {nms})")
    p.add_argument("--max-det", type=int, default=300, help="detections per image after NMS (default 300)")
    p.add_argument("--classes", default=None, help="comma-separated class names to keep (default all)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--half", action="store_true", help="fp16 inference (torch on CUDA)")
    p.add_argument("--backend", default="torch", choices=("torch", "onnxruntime"))
    p.add_argument("--providers", default="auto",
                   help="ONNX Runtime execution providers: auto (TensorRT, then CUDA, then CPU, whichever "
                        "this onnxruntime has) or a comma-separated list, e.g. tensorrt,cuda,cpu")
    p.add_argument("--trt-cache-dir", default=None,
                   help="TensorRT engine cache (default ~/.cache/slimyolo_ros/trt): built on the first "
                        "run, reused after")
    p.add_argument("--square", action="store_true",
                   help="letterbox to img_size x img_size (default: each side the smallest multiple "
                        "of 32 that holds the image, faster on non-square images)")
    p.add_argument("--no-fuse", action="store_true", help="keep BatchNorm separate (default: folded)")
    p.add_argument("--tile", default=None,
                   help="tiled inference: ROWSxCOLS (e.g. 2x3) or a tile side in pixels (e.g. 640); "
                        "the whole frame is also run and all detections merged by NMS")
    p.add_argument("--tile-overlap", type=float, default=0.2, help="overlap of neighbouring tiles")


def _tile_arg(value: str | None) -> Any:
    if value is None:
        return None
    v = value.strip().lower()
    if "x" in v or "," in v:
        return v
    try:
        return {"size": int(v)}
    except ValueError:
        raise SlimyoloError(f"--tile {value!r}: expected ROWSxCOLS (2x3) "
                            f"or a tile side in pixels (640)") from None


def options_from_args(args: argparse.Namespace) -> Any:
    """The DetectorOptions the arguments of :func:`add_detector_arguments` ask for."""
    from slimyolo_ros.detect import DetectorOptions

    return DetectorOptions(
        cfg=args.cfg, names=args.names, backend=args.backend, device=args.device, half=args.half,
        img_size=args.img_size, rect=not args.square, tile=_tile_arg(args.tile),
        tile_overlap=args.tile_overlap,
        conf_threshold=args.conf, nms_threshold=args.nms, max_detections=args.max_det, classes=args.classes,
        fuse=not args.no_fuse, providers=args.providers, trt_cache_dir=args.trt_cache_dir)
