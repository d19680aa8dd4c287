"""``slimyolo bag make|eval``: a dataset as a rosbag2, and a bag replayed through the live node."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bag_command", metavar="ACTION")
    sub.required = True

    mk = sub.add_parser("make", help="write a VisDrone-format dataset (DET or VID) as a rosbag2",
                        description="write a VisDrone-format dataset (DET images/+annotations/, or VID "
                                    "sequences/+annotations/) as a rosbag2 with /camera/image_raw, "
                                    "/ground_truth and /ground_truth/ignore_regions")
    mk.add_argument("--data", required=True, type=Path, help="dataset root")
    mk.add_argument("--out", required=True, type=Path, help="bag directory to create (must not exist)")
    mk.add_argument("--fps", type=float, default=30.0, help="frame rate of the stamps (default 30)")
    mk.add_argument("--encoding", default="bgr8", help="bgr8, rgb8, mono8 (Image) or jpeg (CompressedImage)")
    mk.add_argument("--storage", default="mcap", help="mcap or sqlite3 (default mcap)")
    mk.add_argument("--frame-id", default="camera", help="header.frame_id (default camera)")
    mk.add_argument("--limit", type=int, default=None, help="only the first N frames")
    mk.add_argument("--json", action="store_true", help="print one JSON object (the bag summary)")

    ev = sub.add_parser("eval", help="replay a bag through the detector node (and the tracker) and score it",
                        description="start detect_node, publish the bag's images (recorded timing x "
                                    "--rate, or --lockstep), collect its detections and score them "
                                    "against the bag's ground truth. --track: also track_node on the "
                                    "detections, MOT metrics against the ground truth's target ids, in "
                                    "lockstep and in real time (one of them with --lockstep / --rate)")
    ev.add_argument("--bag", required=True, type=Path, help="bag directory (or .mcap/.db3 file)")
    ev.add_argument("--image-topic", default=None, metavar="TOPIC",
                    help="the image topic to replay (sensor_msgs/Image or CompressedImage); needed when the "
                         "bag has several (default: /camera/image_raw, its /compressed, or the only one)")
    ev.add_argument("--gt", type=Path, default=None, metavar="PATH",
                    help="ground truth from annotation files instead of a /ground_truth topic: a "
                         "VisDrone-VID annotation file or folder (or VID root), a MOT Challenge gt.txt, "
                         "or a COCO json")
    ev.add_argument("--gt-match", choices=("order", "stamp"), default="order",
                    help="order: the k-th annotated frame is the bag's k-th image (default); stamp: by time, "
                         "from the COCO file names or --gt-stamps")
    ev.add_argument("--gt-stamps", type=Path, default=None, metavar="FILE",
                    help="with --gt-match stamp: lines KEY,STAMP (KEY a COCO file_name or frame number; "
                         "STAMP in ns, or seconds with a decimal point)")
    ev.add_argument("--params", type=Path, default=None,
                    help="node parameters file (default: config/detect.yaml of the package)")
    mode = ev.add_mutually_exclusive_group()
    mode.add_argument("--rate", type=float, default=None, help="playback speed factor (default 1.0)")
    mode.add_argument("--lockstep", action="store_true",
                      help="publish one frame at a time and wait for its detections (accuracy mode)")
    ev.add_argument("--record", type=Path, default=None,
                    help="write a bag with the images, the detections (/detections) and the ground truth")
    ev.add_argument("--out", type=Path, default=None,
                    help="report folder: report.json, node.log, annotated PNGs (default runs/bag_eval/<bag>)")
    ev.add_argument("--frames", type=int, default=4, help="annotated frames to write (default 4)")
    ev.add_argument("--timeout", type=float, default=60.0,
                    help="seconds to wait for the node to come up, and for each answer in lockstep")
    ev.add_argument("--node-arg", action="append", default=[], metavar="NAME:=VALUE",
                    help="extra node parameter (-p NAME:=VALUE), repeatable; e.g. conf_threshold:=0.001 "
                         "nms_threshold:=0.5 for the operating point of slimyolo eval (mAP needs the "
                         "low-score tail)")
    ev.add_argument("--track", action="store_true",
                    help="also run track_node on the detections and report HOTA/MOTA/IDF1/ID switches "
                         "(the ground truth needs target ids: a /ground_truth topic from bag make of a "
                         "VID root, or --gt VisDrone-VID / MOT gt.txt); "
                         "the detector gets conf_threshold:=0.1 unless --node-arg sets it")
    ev.add_argument("--track-params", type=Path, default=None,
                    help="tracker parameters file (default: config/track.yaml of the package)")
    ev.add_argument("--track-conf-threshold", type=float, default=None, metavar="C",
                    help="the detector's conf_threshold while tracking (default: config/track_detector.yaml; "
                         "a --node-arg conf_threshold:=... wins); the report states the value used")
    ev.add_argument("--track-arg", action="append", default=[], metavar="NAME:=VALUE",
                    help="extra track_node parameter, repeatable; e.g. algorithm:=sort")
    ev.add_argument("--json", action="store_true", help="print one JSON object (the report)")


def _make(args: argparse.Namespace) -> int:
    from slimyolo_ros.bag.make import make_bag

    summary = make_bag(args.data, args.out, fps=args.fps, encoding=args.encoding, storage=args.storage,
                       frame_id=args.frame_id, limit=args.limit)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {summary['bag']}: {summary['frames']} frames ({summary['encoding']}, "
              f"{summary['storage']}, {summary['duration_s']:.2f} s at {summary['fps']:g} fps), "
              f"{summary['frames_with_ground_truth']} with ground truth, {summary['bytes'] / 1e6:.1f} MB")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from slimyolo_ros.bag.checks import read_error

    _check_params_files(args)
    try:
        report, text = _replay(args)
    except Exception as exc:  # rosbags' errors on damaged storage, raised while the bag is read
        named = read_error(args.bag, exc)
        if named is None:
            raise
        raise named from None
    print(json.dumps(report) if args.json else text(report))
    if report.get("error"):
        print(f"slimyolo bag eval: error: {_one_line_error(report['error'])}", file=sys.stderr)
        # a node that refused its parameters at start-up (its status 2) is bad input here too
        return 2 if "exited with code 2 before" in str(report["error"]) else 1
    return 0


def _check_params_files(args: argparse.Namespace) -> None:
    """A parameters file that exists but is no YAML mapping, found before any node starts (a missing one
    is reported by the replay, after the bag's own checks)."""
    from slimyolo_ros.errors import SlimyoloError
    from slimyolo_ros.ros.startup import ros_args_problem

    for flag, path in (("--params", args.params), ("--track-params", args.track_params)):
        if path is not None and path.exists():
            if problem := ros_args_problem(["--ros-args", "--params-file", str(path)]):
                raise SlimyoloError(problem.replace("--params-file", flag, 1))


def _one_line_error(error: str) -> str:
    """A node's failure as one line: the first line, and the node's own error line from its log tail."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else ""
    said = next((ln for ln in reversed(lines[1:]) if "error" in ln.lower()), lines[-1])
    return f"{lines[0].rstrip(':')}: {said}"


def _replay(args: argparse.Namespace):
    from slimyolo_ros.bag.replay import ReplayConfig, replay, replay_track
    from slimyolo_ros.bag.report import format_report, format_track_report

    out = args.out or Path("runs") / "bag_eval" / args.bag.resolve().name
    cfg = ReplayConfig(bag=args.bag, params=args.params, rate=None if args.lockstep else (args.rate or 1.0),
                       record=args.record, out=out, annotated_frames=args.frames, timeout=args.timeout,
                       node_params=list(args.node_arg), track_params=args.track_params,
                       track_node_params=list(args.track_arg), track_conf_threshold=args.track_conf_threshold,
                       image_topic=args.image_topic, gt=args.gt, gt_match=args.gt_match,
                       gt_stamps=args.gt_stamps)
    if args.track:
        # Both modes unless one was asked for.
        modes = ("lockstep",) if args.lockstep else ("realtime",) if args.rate else ("lockstep", "realtime")
        report = replay_track(cfg, modes)
        text = format_track_report
    else:
        report, text = replay(cfg), format_report
    return report, text


def run(args: argparse.Namespace) -> int:
    return _make(args) if args.bag_command == "make" else _eval(args)
