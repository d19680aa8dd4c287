#!/usr/bin/env python3
"""Compare the tracking library's algorithms on synthetic flights, on the SAME detections.

1. synthetic flights (``slimyolo synth --video``) are rendered into ``--flights`` unless already there;
2. the project's Detector (``load_detector``) runs once over every frame; the detections are cached in
   ``<flights>/detections-<settings>.npz`` so every algorithm (and a rerun) sees identical input;
3. each algorithm tracks every flight through ``slimyolo_ros.tracking.MultiObjectTracker`` with the
   frame stamps ``k / fps``, and ``slimyolo_ros.evaluate.mot.evaluate_mot`` scores it against the ids
   of the ground truth: HOTA, MOTA, IDF1, ID switches, fragmentations, MT/ML.

Prints a Markdown table (or ``--json``); ``--frames-out DIR`` writes annotated frames (ids + trails) of
the first flight for the best algorithm.

    .venv/bin/python scripts/compare_trackers.py --flights data/flights_cmp --sequences 3 --frames 100
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from slimyolo_ros.bag.vid import read_vid
from slimyolo_ros.evaluate.mot import MotFrame, evaluate_mot
from slimyolo_ros.tracking import ALGORITHMS, MultiObjectTracker, TrackerConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("--flights", required=True, help="VisDrone-VID root (rendered when it has no sequences/)")
    p.add_argument("--sequences", type=int, default=3, help="flights to render (default 3)")
    p.add_argument("--frames", type=int, default=100, help="frames per flight (default 100)")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--weights", default="models/slimyolov3-synth.pt")
    p.add_argument("--img-size", type=int, default=640, help="detector input (default 640)")
    p.add_argument("--conf", type=float, default=0.05, help="detector score threshold (default 0.05: low "
                   "scores are input for ByteTrack's second stage)")
    p.add_argument("--algorithms", default=",".join(ALGORITHMS), help="comma-separated (default all)")
    p.add_argument("--activation", type=float, default=0.25, help="track_activation_threshold (default 0.25, "
                   "as config/track.yaml)")
    p.add_argument("--high", type=float, default=0.25, help="high_conf_det_threshold (default 0.25)")
    p.add_argument("--iou", type=float, default=0.2, help="minimum_iou_threshold (default 0.2)")
    p.add_argument("--buffer", type=float, default=1.0, help="track_buffer_s (default 1.0)")
    p.add_argument("--frames-out", default=None, help="write annotated frames of the first flight here")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p.parse_args(argv)


def flights(args: argparse.Namespace) -> tuple[dict[str, list], float]:
    from slimyolo_ros.data.flight import generate_flights

    root = Path(args.flights)
    if not (root / "sequences").is_dir():
        generate_flights(root, args.sequences, seed=args.seed, frames=args.frames, progress=not args.json)
    meta = root / "flight.json"
    fps = json.loads(meta.read_text())["config"]["fps"] if meta.is_file() else 10.0
    seqs: dict[str, list] = {}
    for f in read_vid(root):
        seqs.setdefault(f.sequence, []).append(f)
    return seqs, float(fps)


def detections(args: argparse.Namespace, seqs: dict[str, list]) -> tuple[dict[str, list], list[str]]:
    from slimyolo_ros.detect import DetectorOptions, load_detector

    key = hashlib.sha256(json.dumps([args.weights, args.img_size, args.conf, sorted(seqs),
                                     Path(args.weights).stat().st_size]).encode()).hexdigest()[:12]
    cache = Path(args.flights) / f"detections-{key}.npz"
    det = load_detector(args.weights, DetectorOptions(device="cpu", img_size=args.img_size,
                                                      conf_threshold=args.conf))
    if cache.is_file():
        z = np.load(cache, allow_pickle=False)
        return {s: [z[f"{s}/{i}"] for i in range(len(fr))] for s, fr in seqs.items()}, det.class_names
    from tqdm import tqdm

    out: dict[str, list[np.ndarray]] = {}
    total = sum(len(v) for v in seqs.values())
    with tqdm(total=total, desc="detect", unit="frame", disable=args.json) as bar:
        for s, frames in seqs.items():
            out[s] = []
            for f in frames:
                out[s].append(det(cv2.imread(str(f.image_path))))
                bar.update(1)
    np.savez_compressed(cache, **{f"{s}/{i}": d for s, ds in out.items() for i, d in enumerate(ds)})
    return out, det.class_names


def track(cfg: TrackerConfig, seqs: dict[str, list], dets: dict[str, list[np.ndarray]], fps: float):
    """Per sequence: [MotFrame], and per sequence the Tracks of each frame (for drawing)."""
    mot, all_tracks = [], {}
    for s, frames in seqs.items():
        tracker = MultiObjectTracker(cfg)
        seq, tr_list = [], []
        for k, (f, d) in enumerate(zip(frames, dets[s], strict=True)):
            tr = tracker.update(d, k / fps)
            tr_list.append(tr)
            seq.append(MotFrame(f.sample.boxes, f.sample.classes, f.track_ids, tr.boxes, tr.classes,
                                tr.ids, f.sample.ignore))
        mot.append(seq)
        all_tracks[s] = tr_list
    return mot, all_tracks


def draw_first(out_dir: Path, seqs: dict[str, list], tracks: dict[str, list], names: list[str]) -> None:
    from slimyolo_ros.detect.draw import TrailHistory, draw_tracks, write_png

    out_dir.mkdir(parents=True, exist_ok=True)
    s = next(iter(seqs))
    trails = TrailHistory(length=15)
    for k, (f, tr) in enumerate(zip(seqs[s], tracks[s], strict=True)):
        t = trails.update(tr.boxes, tr.ids)
        if k % 10 == 9:
            # ids only: the objects are small, class names would hide them
            img = draw_tracks(cv2.imread(str(f.image_path)), tr.boxes, tr.ids, trails=t)
            write_png(out_dir / f"{s}_{k + 1:07d}.png", img)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seqs, fps = flights(args)
    t0 = time.perf_counter()
    dets, names = detections(args, seqs)
    t_det = time.perf_counter() - t0
    results, tracks_of = {}, {}
    for alg in args.algorithms.split(","):
        cfg = TrackerConfig(algorithm=alg, track_activation_threshold=args.activation,
                            high_conf_det_threshold=args.high, minimum_iou_threshold=args.iou,
                            track_buffer_s=args.buffer, frame_rate=fps, min_score=args.conf)
        t1 = time.perf_counter()
        mot, tracks_of[alg] = track(cfg, seqs, dets, fps)
        r = evaluate_mot(mot, names)
        r["track_seconds"] = round(time.perf_counter() - t1, 2)
        results[alg] = r
    best = max(results, key=lambda a: (results[a]["overall"]["HOTA"], results[a]["overall"]["IDF1"]))
    if args.frames_out:
        draw_first(Path(args.frames_out), seqs, tracks_of[best], names)
    summary = {"flights": list(seqs), "frames": sum(len(v) for v in seqs.values()), "fps": fps,
               "detect_seconds": round(t_det, 1),
               "settings": {k: v for k, v in vars(args).items() if k != "json"},
               "best": best, "results": results}
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"{summary['frames']} frames in {len(seqs)} flights; detections {args.weights} img_size "
          f"{args.img_size} conf >= {args.conf}; activation {args.activation}, high {args.high}, "
          f"iou {args.iou}, buffer {args.buffer} s")
    print("| algorithm | HOTA | DetA | AssA | MOTA | IDF1 | ID switches | Frag | MT | ML | GT tracks |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for alg, r in results.items():
        o = r["overall"]
        pct = " | ".join(f"{100 * o[k]:.1f}" for k in ("HOTA", "DetA", "AssA", "MOTA", "IDF1"))
        counts = " | ".join(str(o[k]) for k in ("IDSW", "Frag", "MT", "ML", "gt_tracks"))
        print(f"| {alg}{' (best)' if alg == best else ''} | {pct} | {counts} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
