"""``slimyolo synth``: write a synthetic UAV dataset in the VisDrone-DET format, or (``--video``) flights in
the VisDrone-VID/MOT format."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"size {text!r} is not WIDTHxHEIGHT (e.g. 640x640)")
    return int(m.group(1)), int(m.group(2))


def _range(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+))?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"objects {text!r} is not MIN-MAX (e.g. 15-40) or a single number")
    lo = int(m.group(1))
    hi = int(m.group(2)) if m.group(2) is not None else lo
    if hi < lo:
        raise argparse.ArgumentTypeError(f"objects {text!r}: MAX is smaller than MIN")
    return lo, hi


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder (gets images/, annotations/, synth.json; with "
                   "--video sequences/, annotations/, flight.json)")
    p.add_argument("--video", "--flight", action="store_true", help="render temporally coherent flights "
                   "(VisDrone-VID: target ids, camera motion, occlusion) instead of unrelated images")
    p.add_argument("--sequences", type=int, default=1, help="--video: number of flights (default 1)")
    p.add_argument("--frames", type=int, default=100, help="--video: frames per flight (default 100)")
    p.add_argument("--fps", type=float, default=10.0, help="--video: frame rate the motion is timed for "
                   "(default 10)")
    p.add_argument("--car-length", type=float, default=26.0, help="--video: car length in px at the nominal "
                   "altitude (default 26)")
    p.add_argument("--images", type=int, default=100, help="number of images (default 100)")
    p.add_argument("--size", type=_size, default=None, help="WIDTHxHEIGHT (default 640x640; --video 640x480)")
    p.add_argument("--seed", type=int, default=0, help="same seed -> byte-identical files (default 0)")
    p.add_argument("--objects", type=_range, default=(15, 40), help="annotated objects per image, MIN-MAX "
                   "(default 15-40)")
    p.add_argument("--min-size", type=float, default=None, help="smallest car length in px (other classes "
                   "scale with it: pedestrian 0.36x, bus 2.6x); default 4%% of the short image side")
    p.add_argument("--max-size", type=float, default=None, help="largest car length in px; default 9%% of "
                   "the short image side")
    p.add_argument("--ignore-prob", type=float, default=0.35, help="chance of an ignored region per image")
    p.add_argument("--json", action="store_true", help="print one JSON summary object on stdout")


def _run_video(args: argparse.Namespace) -> int:
    from slimyolo_ros.data.flight import generate_flights

    t0 = time.perf_counter()
    out = generate_flights(args.out, args.sequences, seed=args.seed, size=args.size or (640, 480),
                           frames=args.frames, fps=args.fps, car_length=args.car_length,
                           progress=sys.stderr.isatty() or not args.json)
    meta = json.loads((out / "flight.json").read_text())
    meta["out"] = str(out)
    meta["seconds"] = round(time.perf_counter() - t0, 3)
    if args.json:
        print(json.dumps(meta))
        return 0
    w, h = meta["config"]["size"]
    print(f"wrote {len(meta['sequences'])} flight(s) x {args.frames} frames {w}x{h} (seed {args.seed}) to "
          f"{out} in {meta['seconds']:.1f} s; {meta['target_ids']} target ids")
    for name, n in meta["boxes_per_class"].items():
        print(f"  {name:<16} {n:>6}")
    return 0


def run(args: argparse.Namespace) -> int:
    from slimyolo_ros.data.synth import generate, load_meta

    if args.video:
        return _run_video(args)
    args.size = args.size or (640, 640)

    t0 = time.perf_counter()
    out = generate(args.out, args.images, size=args.size, seed=args.seed, objects=args.objects,
                   min_size=args.min_size, max_size=args.max_size, ignore_prob=args.ignore_prob,
                   progress=sys.stderr.isatty() or not args.json)
    meta = load_meta(out)
    meta["out"] = str(out)
    meta["seconds"] = round(time.perf_counter() - t0, 3)
    if args.json:
        print(json.dumps(meta))
        return 0
    counts = meta["objects_per_class"]
    lo, hi = meta["car_length_px"]
    print(f"wrote {meta['images']} images {args.size[0]}x{args.size[1]} (seed {args.seed}) to {out} "
          f"in {meta['seconds']:.1f} s")
    print(f"car length {lo:.1f}-{hi:.1f} px; {sum(counts.values())} objects, "
          f"{meta['ignored_regions']} ignored regions")
    for name, n in counts.items():
        print(f"  {name:<16} {n:>6}")
    return 0
