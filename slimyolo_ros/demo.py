"""``make demo``: a synthetic UAV flight, recorded as a rosbag2, replayed through the live node.

1. generate ~100 synthetic 1280x720 UAV frames (VisDrone format, fixed seed);
2. write them as a bag (mcap): /camera/image_raw + /ground_truth, 30 fps stamps;
3. replay it through ``detect_node`` with the shipped SlimYOLOv3 (config/detect.yaml):
   once in lockstep (every frame scored: the accuracy) and once at the recorded 30 fps
   (what the node keeps up with on this machine: latency, throughput, drops);
4. print a summary; everything lands under ``demo_out/`` (annotated frames, reports, node logs).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from slimyolo_ros.errors import SlimyoloError

EVAL_POINT = ("conf_threshold:=0.001", "nms_threshold:=0.5", "max_detections:=300")  # slimyolo eval's
CAR_LENGTH = (80 / 720, 160 / 720)  # car length as a fraction of the frame's short side


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected WIDTHxHEIGHT, e.g. 1280x720") from None
    return w, h


def _dataset(out: Path, frames: int, size: tuple[int, int], seed: int) -> Path:
    """The synthetic flight; reused when an earlier demo run made the same one (generation is
    deterministic, so same parameters = same files)."""
    from slimyolo_ros.data.synth import generate, load_meta

    root = out / "flight"
    # Object scale and density of the shipped model's training data (320 px images, cars 20-40 px,
    # 15-40 objects, seen at 256 px: cars 16-32 px in the network input; see models/README.md): a
    # 1280x720 frame shrinks 5x into the network, so cars here are 80-160 px (a low-altitude flight),
    # and the frame covers 256x144 network pixels, i.e. 8-22 objects at the same density.
    # Expressed relative to the frame so other --size values keep it.
    short = min(size)
    kw = {"objects": [8, 22], "min_size": round(CAR_LENGTH[0] * short, 3),
          "max_size": round(CAR_LENGTH[1] * short, 3), "ignore_prob": 0.35}
    try:
        meta = load_meta(root)
        wanted = {"size": list(size), **kw}
        same = meta["seed"] == seed and meta["images"] == frames
        same = same and all(json.dumps(meta["config"][k]) == json.dumps(v) for k, v in wanted.items())
        if same:
            print(f"[1/3] synthetic flight: reusing {root} ({frames} frames {size[0]}x{size[1]})",
                  file=sys.stderr, flush=True)
            return root
    except (OSError, KeyError, ValueError):
        pass
    shutil.rmtree(root, ignore_errors=True)
    t = time.perf_counter()
    generate(root, frames, size=size, seed=seed, progress=False, **{**kw, "objects": tuple(kw["objects"])})
    print(f"[1/3] synthetic flight: {frames} frames {size[0]}x{size[1]} -> {root} "
          f"({time.perf_counter() - t:.1f} s)", file=sys.stderr, flush=True)
    return root


def _summary(acc: dict, live: dict, bag: Path, out: Path) -> str:
    lines = ["", "=" * 72, "slimyolo_ros demo: synthetic UAV flight replayed through detect_node", "=" * 72,
             f"bag: {bag} ({acc['frames_in_bag']} frames, /camera/image_raw bgr8 + /ground_truth)",
             f"model: {acc.get('model', 'config/detect.yaml default')}", ""]
    lines.append("accuracy (lockstep: each frame waits for its detections; every frame scored)")
    if acc.get("map50") is not None:
        n_obj = sum(acc["ground_truth_per_class"].values())
        lines.append(f"  mAP@0.5 {acc['map50']:.3f}    mAP@0.5:0.95 {acc['map']:.3f}    "
                     f"({acc['frames_scored']} frames, {n_obj} objects)")
    conf = acc.get("conf_threshold")
    where = f"score >= {conf:.2f}" if conf else "no operating point"
    lines.append(f"  {'class':<16}{'objects':>8}{'detected':>10}{'correct':>9}{'AP@0.5':>8}"
                 f"   (detected/correct at the best-F1 {where})")
    for c in sorted(acc["ground_truth_per_class"]):
        pc = acc["per_class"].get(c, {})
        ap = pc.get("ap50")
        correct = round(pc.get("recall", 0.0) * pc.get("gt", 0))
        lines.append(f"  {c:<16}{acc['ground_truth_per_class'][c]:>8}{pc.get('detections', 0):>10}"
                     f"{correct:>9}{'-' if ap is None else f'{ap:.3f}':>8}")
    lat = acc["latency_ms"]
    lines.append(f"  latency (one frame at a time): p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms")
    lines.append("")
    lines.append(f"real time (frames published at the recorded {live.get('bag_fps', 30):g} fps)")
    lat = live["latency_ms"]
    if lat["p50"] is not None:
        lines.append(f"  latency publish->detections: p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms, "
                     f"p99 {lat['p99']:.1f} ms")
    lines.append(f"  throughput {live['fps']:.1f} fps; {live['answered']} of {live['frames']} frames "
                 f"answered, {live['dropped']} dropped (the node keeps only the newest frame when it "
                 "falls behind)")
    if live.get("map50") is not None:
        lines.append(f"  mAP@0.5 over the answered frames: {live['map50']:.3f} (boxes above the node's "
                     f"conf_threshold only; {live['detections']} detections)")
    lines.append("")
    if acc.get("annotated"):
        lines.append(f"annotated frames: {Path(acc['annotated'][0]).parent}/*.png")
    lines.append(f"reports: {acc.get('report')}, {live.get('report')}")
    for r in (acc, live):
        for w in r.get("warnings", []):
            lines.append(f"warning: {w}")
        if r.get("error"):
            lines.append(f"ERROR: {r['error']}")
    lines.append(f"everything is under {out}/")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m slimyolo_ros.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--size", type=_parse_size, default=(1280, 720), help="WIDTHxHEIGHT (default 1280x720)")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--out", type=Path, default=Path("demo_out"))
    ap.add_argument("--params", type=Path, default=None, help="node parameters (default config/detect.yaml)")
    ap.add_argument("--json", action="store_true", help="print one JSON object with both reports")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        from slimyolo_ros.bag.make import make_bag
        from slimyolo_ros.bag.replay import ReplayConfig, default_params, replay

        out = args.out
        out.mkdir(parents=True, exist_ok=True)
        root = _dataset(out, args.frames, args.size, args.seed)
        bag = out / "flight_bag"
        shutil.rmtree(bag, ignore_errors=True)
        t = time.perf_counter()
        made = make_bag(root, bag, fps=args.fps, encoding="bgr8", storage="mcap", progress=False)
        print(f"[2/3] rosbag2: {bag} ({made['frames']} frames, {made['bytes'] / 1e6:.0f} MB, mcap, "
              f"{time.perf_counter() - t:.1f} s)", file=sys.stderr, flush=True)
        params = args.params or default_params()
        print(f"[3/3] replaying through detect_node (params {params}) ...", file=sys.stderr, flush=True)
        # The accuracy pass asks the node for slimyolo eval's operating point (the low-score tail that
        # mAP needs); the real-time pass runs the node exactly as configured.
        acc = replay(ReplayConfig(bag=bag, params=params, rate=None, out=out / "lockstep", progress=False,
                                  node_params=list(EVAL_POINT)))
        live = replay(ReplayConfig(bag=bag, params=params, rate=1.0, out=out / "realtime",
                                   annotated_frames=0, progress=False))
        live["bag_fps"] = args.fps
        acc["model"] = _model_name(params)
    except SlimyoloError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"lockstep": acc, "realtime": live, "wall_s": time.perf_counter() - t0}))
    else:
        print(_summary(acc, live, bag, out))
        print(f"demo finished in {time.perf_counter() - t0:.0f} s")
    return 1 if acc.get("error") or live.get("error") else 0


def _model_name(params: Path) -> str:
    """The weights the node was told to load, as written in the params file (for the summary)."""
    try:
        for line in params.read_text().splitlines():
            s = line.split("#")[0].strip()
            if s.startswith("weights:"):
                return s.split(":", 1)[1].strip()
    except OSError:
        pass
    return str(params)


if __name__ == "__main__":
    sys.exit(main())
