"""``make demo``: a synthetic UAV flight, recorded as a rosbag2, replayed through the live nodes.

1. fly a synthetic 1280x720 UAV video (``slimyolo synth --video``: one flight of 100 frames at 30 fps,
   persistent target ids, fixed seed);
2. write it as a bag (mcap): /camera/image_raw + /ground_truth (with the target ids), 30 fps stamps;
3. replay it through ``detect_node`` with the shipped SlimYOLOv3 (config/detect.yaml) in lockstep at
   ``slimyolo eval``'s operating point (every frame scored: the detection mAP);
4. replay it through ``detect_node`` + ``track_node`` (config/track.yaml), in lockstep and at the
   recorded 30 fps (the detector's drops are gaps for the tracker): HOTA, MOTA, IDF1, ID switches;
5. print a summary; everything lands under ``demo_out/`` (annotated frames with track ids, reports, logs).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import asdict
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


def _dataset(out: Path, frames: int, size: tuple[int, int], seed: int, fps: float) -> Path:
    """The synthetic flight; reused when an earlier demo run made the same one (generation is
    deterministic, so same parameters = same files)."""
    from slimyolo_ros.data.flight import FlightConfig, generate_flights

    root = out / "flight"
    # Object scale of the shipped model's training data (320 px images, cars 20-40 px, seen at 256 px:
    # cars 16-32 px in the network input; see models/README.md): a 1280x720 frame shrinks 5x into the
    # network, so a car is 120 px at the flight's nominal altitude (a low-altitude flight; the camera's
    # zoom varies it). Expressed relative to the frame so other --size values keep it.
    car = round(sum(CAR_LENGTH) / 2 * min(size), 3)
    # A busy street at low altitude: three times the default people and parked vehicles per ground
    # area, so a 1280x720 view (11 x 6 car lengths) holds a few dozen objects to detect and track.
    kw = dict(size=size, frames=frames, fps=fps, car_length=car, walkers=270, parked=120)
    wanted = asdict(FlightConfig(**kw))
    try:
        meta = json.loads((root / "flight.json").read_text())
        if meta["seed"] == seed and len(meta["sequences"]) == 1 and \
                json.dumps(meta["config"], sort_keys=True) == json.dumps(wanted, sort_keys=True):
            print(f"[1/4] synthetic flight: reusing {root} ({frames} frames {size[0]}x{size[1]})",
                  file=sys.stderr, flush=True)
            return root
    except (OSError, KeyError, ValueError, TypeError):
        pass
    shutil.rmtree(root, ignore_errors=True)
    t = time.perf_counter()
    generate_flights(root, 1, seed=seed, progress=False, **kw)
    print(f"[1/4] synthetic flight: {frames} frames {size[0]}x{size[1]} at {fps:g} fps -> {root} "
          f"({time.perf_counter() - t:.1f} s)", file=sys.stderr, flush=True)
    return root


def _summary(acc: dict, track: dict, bag: Path, out: Path) -> str:
    live = track["realtime"]
    title = "slimyolo_ros demo: synthetic UAV flight replayed through detect_node + track_node"
    lines = ["", "=" * 72, title, "=" * 72,
             f"bag: {bag} ({acc['frames_in_bag']} frames, /camera/image_raw bgr8 + /ground_truth with ids)",
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
    lines.extend(_tracking_lines(track))
    lines.append(f"real time (frames published at the recorded {live.get('bag_fps', 30):g} fps, detector + "
                 "tracker)")
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
    shown = (track["lockstep"] or {}).get("tracking", {}).get("annotated")
    if shown:
        lines.append(f"annotated tracks (ids, trails): {Path(shown[0]).parent}/*.jpg")
    lines.append(f"reports: {acc.get('report')}, {track.get('report')}")
    for r in (acc, track["lockstep"], live):
        for w in r.get("warnings", []):
            lines.append(f"warning: {w}")
        if r.get("error"):
            lines.append(f"ERROR: {r['error']}")
    lines.append(f"everything is under {out}/")
    return "\n".join(lines)


def _tracking_lines(track: dict) -> list[str]:
    from slimyolo_ros.evaluate.mot import format_mot

    conf = track["detector_conf_threshold"]
    lines = [f"tracking (track_node, config/track.yaml; detector conf_threshold {conf['value']:g} from "
             f"{conf['from']}), all in %"]
    for mode, what in (("lockstep", "every frame"), ("realtime", "the answered frames")):
        t = (track.get(mode) or {}).get("tracking") or {}
        o = t.get("overall")
        if not o:
            lines.append(f"  {mode}: no MOT metrics")
            continue
        lines.append(f"  {mode:<9} HOTA {100 * o['HOTA']:5.1f}  MOTA {100 * o['MOTA']:5.1f}  IDF1 "
                     f"{100 * o['IDF1']:5.1f}  ID switches {o['IDSW']:3d}  ({what}: {t['frames_scored']}; "
                     f"{t['tracks']} track ids for {o['gt_tracks']} objects)")
    t = (track.get("lockstep") or {}).get("tracking") or {}
    if t.get("overall"):
        lines.extend("    " + ln for ln in format_mot(t).splitlines())
    lines.append("")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m slimyolo_ros.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--size", type=_parse_size, default=(1280, 720), help="WIDTHxHEIGHT (default 1280x720)")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--out", type=Path, default=Path("demo_out"))
    ap.add_argument("--params", type=Path, default=None, help="node parameters (default config/detect.yaml)")
    ap.add_argument("--track-frames", type=int, default=10,
                    help="annotated frames with track ids and trails (default 10)")
    ap.add_argument("--json", action="store_true", help="print one JSON object with both reports")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        acc, track, bag, out = _run(args)
    except SlimyoloError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"lockstep": acc, "realtime": track["realtime"], "track_lockstep": track["lockstep"],
                          "detector_conf_threshold": track["detector_conf_threshold"],
                          "wall_s": time.perf_counter() - t0}))
    else:
        print(_summary(acc, track, bag, out))
        print(f"demo finished in {time.perf_counter() - t0:.0f} s")
    return 1 if acc.get("error") or track.get("error") else 0


def _run(args: argparse.Namespace) -> tuple[dict, dict, Path, Path]:
    from slimyolo_ros.bag.make import make_bag
    from slimyolo_ros.bag.replay import ReplayConfig, replay, replay_track
    from slimyolo_ros.harness import default_params

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    root = _dataset(out, args.frames, args.size, args.seed, args.fps)
    bag = out / "flight_bag"
    shutil.rmtree(bag, ignore_errors=True)
    t = time.perf_counter()
    made = make_bag(root, bag, fps=args.fps, encoding="bgr8", storage="mcap", progress=False)
    print(f"[2/4] rosbag2: {bag} ({made['frames']} frames, {made['bytes'] / 1e6:.0f} MB, mcap, "
          f"{time.perf_counter() - t:.1f} s)", file=sys.stderr, flush=True)
    params = args.params or default_params()
    print(f"[3/4] replaying through detect_node (params {params}) ...", file=sys.stderr, flush=True)
    # The accuracy pass asks the node for slimyolo eval's operating point (the low-score tail that mAP
    # needs); the tracking passes run the node as configured plus replay's tracking parameters.
    acc = replay(ReplayConfig(bag=bag, params=params, rate=None, out=out / "lockstep", progress=False,
                              node_params=list(EVAL_POINT)))
    acc["model"] = _model_name(params)
    print("[4/4] replaying through detect_node + track_node (lockstep, then real time) ...",
          file=sys.stderr, flush=True)
    track = replay_track(ReplayConfig(bag=bag, params=params, rate=1.0, out=out / "tracking", progress=False,
                                      annotated_frames=args.track_frames))
    if track["realtime"]:
        track["realtime"]["bag_fps"] = args.fps
    return acc, track, bag, out


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
