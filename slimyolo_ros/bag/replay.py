"""Replay a bag through the live detector node and score what comes back.

The real ``detect_node`` runs as a subprocess (same executable, parameters file and QoS a robot
would use); this process publishes the bag's images, listens to the node's Detection2DArray, matches
answers to frames by header stamp and scores them against the bag's ground truth with the same
evaluator as ``slimyolo eval`` (``slimyolo_ros.evaluate.coco.evaluate``).

Two modes:
- timed (``rate``): frames go out on the bag's recorded schedule scaled by ``rate``; a node slower
  than the camera drops frames, as it would on the vehicle. mAP is over the answered frames;
  ``dropped`` counts the rest.
- lockstep (``rate=None``): one frame, wait for its answer, next frame. Every frame is scored, so the
  mAP equals the offline ``slimyolo eval`` on the same images and model.

With ``track``: ``track_node`` runs downstream of the detector (its ``detections`` in, ``tracks`` out),
the replay waits for / collects the tracker's answers by stamp, and the tracks are scored against the
ground truth's target ids (``slimyolo_ros.evaluate.mot``: HOTA, MOTA, IDF1, ...), each sequence of the
bag on its own. In timed mode the frames the detector dropped are time gaps for the tracker, as on the
vehicle; the metrics are over the answered frames. :func:`replay_track` runs both modes.

Reading the bag is ``bag/source.py``, scoring ``bag/score.py``, the annotated frames, the recorded bag
and the text report ``bag/report.py``; this module runs the nodes and puts the report together.

Images are published as the bag's CDR bytes (``Publisher.publish(bytes)``): no conversion, and the
time between ``publish`` and the answer is the node's latency plus transport, nothing of ours.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from slimyolo_ros.bag import timeline
from slimyolo_ros.bag.ground_truth import attach
from slimyolo_ros.bag.make import GT_TOPIC
from slimyolo_ros.bag.report import annotate_detections, annotate_tracks, record
from slimyolo_ros.bag.score import Run, score, score_tracks
from slimyolo_ros.bag.source import Source, check_image, image_frames, open_reader, open_source, warm_frame
from slimyolo_ros.bag.types import COMPRESSED_IMAGE, BagError
from slimyolo_ros.harness import (
    Client,
    NodeDiedError,
    NodeUnderTest,
    Pipeline,
    default_params,
    drain,
    executable,
    lockstep,
    node_command,
    paced,
    qos,
    ready,
    ros_environment,
)
from slimyolo_ros.io_utils import atomic_write_json

log = logging.getLogger(__name__)

DETECTIONS_TOPIC = "/detections"  # where the node's output is remapped during a replay
LABEL_INFO_TOPIC = "/label_info"
TRACKS_TOPIC = "/tracks"  # the tracker's output during a replay with track=True
# The detector's conf_threshold in track mode, unless --track-conf-threshold or --node-arg sets it.
TRACK_DETECTOR_PARAMS = "track_detector.yaml"
_LOCKSTEP_MAX_MISSES = 3  # consecutive unanswered frames before lockstep gives up on the node


@dataclass
class ReplayConfig:
    bag: Path
    params: Path | None = None  # node parameters file; None: the package's config/detect.yaml
    rate: float | None = 1.0  # None: lockstep
    record: Path | None = None
    out: Path | None = None  # report folder; None: nothing written but the report dict
    annotated_frames: int = 4
    timeout: float = 60.0
    node_params: list[str] = field(default_factory=list)  # extra "name:=value"
    image_topic: str | None = None  # None: /camera/image_raw, its /compressed, or the only image topic
    node_command: list[str] | None = None  # override the node executable (tests, other nodes)
    progress: bool = True
    track: bool = False  # also run track_node on the detections and score its tracks (MOT metrics)
    track_params: Path | None = None  # tracker parameters file; None: the package's config/track.yaml
    track_node_params: list[str] = field(default_factory=list)  # extra "name:=value" for track_node
    track_node_command: list[str] | None = None  # override the tracker executable
    track_conf_threshold: float | None = None  # detector's conf_threshold in track mode; None: the config's
    gt: Path | None = None  # annotation file or folder (bag/ground_truth.py) instead of a /ground_truth topic
    gt_match: str = "order"  # "order" or "stamp"
    gt_stamps: Path | None = None  # KEY,STAMP lines for gt_match="stamp"


def _node_command(cfg: ReplayConfig, params: Path, src: Source) -> list[str]:
    base = cfg.node_command or executable("detect_node", "slimyolo_ros.ros.node")
    compressed = src.image_type == COMPRESSED_IMAGE
    # Topics are set through the node's own parameters, not remapping: with compressed:=true the node
    # appends /compressed to input_topic, which a remap of "image_raw" would not follow.
    # Reliable image transport unless the user overrides it (--node-arg reliability:=best_effort):
    # best effort over Fast DDS's default transports loses every image larger than ~0.5 MB (all
    # fragments must arrive, none is resent), and a replay must deliver each frame. The node still
    # keeps only the newest frame (depth 1), so a slow node drops frames in timed mode as on the vehicle.
    # A recorder's CompressedImage topic need not end in /compressed (e.g. /compressed_image): then the
    # node's <input_topic>/compressed is remapped onto it.
    input_topic = src.image_topic.removesuffix("/compressed") if compressed else src.image_topic
    remaps = {f"{input_topic}/compressed": src.image_topic} \
        if compressed and not src.image_topic.endswith("/compressed") else None
    fixed = {"input_topic": input_topic, "compressed": compressed, "detections_topic": DETECTIONS_TOPIC,
             "label_info_topic": LABEL_INFO_TOPIC, "reliability": "reliable"}
    return node_command(base, params, fixed, detector_overrides(cfg), remaps)


def detector_overrides(cfg: ReplayConfig) -> list[str]:
    """The detector's -p overrides: in track mode its conf_threshold (:func:`track_conf_threshold`), then
    the user's."""
    if not cfg.track:
        return list(cfg.node_params)
    value, _ = track_conf_threshold(cfg)
    # repr: 1.0 stays a double on the command line ("1" would be an integer, which the node refuses)
    return [f"conf_threshold:={value!r}"] + [p for p in cfg.node_params
                                              if p.split(":=", 1)[0] != "conf_threshold"]


def track_conf_threshold(cfg: ReplayConfig) -> tuple[float, str]:
    """The detector's conf_threshold in track mode and where it comes from: ``--node-arg
    conf_threshold:=...``, else ``--track-conf-threshold``, else config/track_detector.yaml."""
    given = [p.split(":=", 1)[1] for p in cfg.node_params if p.split(":=", 1)[0] == "conf_threshold"]
    if given:
        value, source = given[-1], "--node-arg conf_threshold"
    elif cfg.track_conf_threshold is not None:
        value, source = cfg.track_conf_threshold, "--track-conf-threshold"
    else:
        path = default_params(TRACK_DETECTOR_PARAMS)
        value, source = _yaml_conf_threshold(path), str(path)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not 0.0 <= number <= 1.0:
        raise BagError(f"{source}: conf_threshold {value!r} is not a number in [0, 1]")
    return number, source


def _yaml_conf_threshold(path: Path) -> object:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text())
        return doc["slimyolo_detector"]["ros__parameters"]["conf_threshold"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise BagError(f"{path}: no slimyolo_detector: ros__parameters: conf_threshold "
                       f"({type(exc).__name__}: {exc})") from None


def _track_command(cfg: ReplayConfig, src: Source) -> list[str]:
    """track_node on the detector's output; its settings are validated here, before anything starts."""
    from slimyolo_ros.tracking import TrackConfigError, load_track_config

    base = cfg.track_node_command or executable("track_node", "slimyolo_ros.ros.track_node")
    params = Path(cfg.track_params) if cfg.track_params else default_params("track.yaml")
    if not params.is_file():
        raise BagError(f"--track-params {params}: no such file")
    try:
        load_track_config(params)
    except TrackConfigError as exc:
        raise BagError(str(exc)) from None
    # frame_rate only sizes the tracker's first prediction step; the bag's rate is the right nominal one.
    fixed = {"detections_topic": DETECTIONS_TOPIC, "tracks_topic": TRACKS_TOPIC,
             "frame_rate": round(src.fps, 3), "reliability": "reliable"}
    return node_command(base, params, fixed, cfg.track_node_params)


def _sendable(reader, src: Source, run: Run, want_png: set[int]):
    """Yield (frame, raw) of the frames the node can decode, each stamp once; the rest are skipped
    with the reason."""
    seen: set[int] = set()
    for frame, raw, m in image_frames(reader, src.image_topic):
        why = check_image(m, frame.typename)
        if why:
            run.skipped.append(f"frame {frame.index} (stamp {frame.stamp}): {why}")
            continue
        if frame.stamp in seen:
            run.skipped.append(f"frame {frame.index}: stamp {frame.stamp} repeats an earlier frame's; "
                               "answers are matched by stamp, so it is not published")
            continue
        seen.add(frame.stamp)
        if frame.index in want_png:
            run.keep[frame.stamp] = (raw, frame.typename)
        run.frames.append(frame)
        yield frame, raw


def _stream(cfg: ReplayConfig, reader, src: Source, run: Run, client: Client,
            node: NodeUnderTest | Pipeline, pub) -> None:
    """Warm up, then every frame lockstep or on the bag's schedule; NodeDiedError when a node goes.
    The answer awaited is the last node's: the tracker's in track mode."""
    topic = TRACKS_TOPIC if cfg.track else DETECTIONS_TOPIC
    warm_stamp, warm = warm_frame(reader, src, blank=cfg.track)
    ready(client, node, pub, topic, warm, warm_stamp, cfg.timeout)
    from tqdm import tqdm

    n = src.frames_in_bag
    want_png = set(np.linspace(0, n - 1, cfg.annotated_frames).round().astype(int).tolist()) \
        if cfg.annotated_frames > 0 else set()
    frames = tqdm(_sendable(reader, src, run, want_png), total=n, desc=f"bag eval {src.bag.name}",
                  unit="frame", disable=not cfg.progress, leave=False)
    if cfg.rate is not None:
        paced(client, node, pub, ((f.log_ns, f.stamp, raw) for f, raw in frames), cfg.rate)
        drain(client, node, topic, cfg.timeout)
        return
    misses = 0
    for frame, raw in frames:
        if lockstep(client, node, pub, topic, frame.stamp, raw, cfg.timeout):
            misses = 0
            continue
        misses += 1
        run.warnings.append(f"frame {frame.index}: no answer within {cfg.timeout:g} s")
        if misses >= _LOCKSTEP_MAX_MISSES:
            raise NodeDiedError(f"{node.name} stopped answering: {misses} frames in a row without "
                                f"an answer on {topic} within --timeout {cfg.timeout:g} s")


def run_node(cfg: ReplayConfig, reader, src: Source, params: Path, out: Path | None) -> Run:
    """Start detect_node (and track_node on its output), stream the bag's frames through, collect the
    answers, stop the nodes."""
    from sensor_msgs.msg import CompressedImage, Image

    run = Run(command=_node_command(cfg, params, src), log=(out / "node.log") if out else None)
    if cfg.track:
        run.track_command = _track_command(cfg, src)
        run.track_log = (out / "track_node.log") if out else None
    env = ros_environment()  # before this process's rclpy starts: the nodes inherit the same DDS setup
    log.info("starting node: %s", " ".join(run.command))
    t_start = time.perf_counter()
    client = Client("slimyolo_bag_eval")
    try:
        # Reliable + keep-last: a node too slow loses frames in its own queue (what a real camera
        # driver causes), never because this side dropped them.
        pub = client.publisher(CompressedImage if src.image_type == COMPRESSED_IMAGE else Image,
                               src.image_topic, qos(5))
        answers = client.replies(DETECTIONS_TOPIC)
        tracks = client.replies(TRACKS_TOPIC) if cfg.track else {}
        labels = client.label_names(LABEL_INFO_TOPIC)
        with contextlib.ExitStack() as stack:
            node = stack.enter_context(NodeUnderTest(run.command, env, run.log, name="detect_node"))
            tracker = stack.enter_context(NodeUnderTest(run.track_command, env, run.track_log,
                                                        name="track_node")) if cfg.track else None
            try:
                _stream(cfg, reader, src, run, client, Pipeline(node, tracker) if tracker else node, pub)
            except NodeDiedError as exc:
                run.error = str(exc)
            run.node_rc = node.returncode
            run.track_rc = tracker.returncode if tracker else None
    finally:
        with client.lock:
            run.answers, run.tracks = dict(answers), dict(tracks)
            run.published = dict(client.published)
            run.duplicates, run.resent = client.duplicates, client.resent
        run.label_names = labels[-1][1] if labels else None
        client.close()
    run.wall_s = time.perf_counter() - t_start
    _run_errors(run, node, tracker)
    return run


def _run_errors(run: Run, node: NodeUnderTest, tracker: NodeUnderTest | None) -> None:
    if run.skipped:
        msg = f"{len(run.skipped)} frame(s) not published: " + "; ".join(run.skipped[:3]) + \
            ("; ..." if len(run.skipped) > 3 else "")
        run.error = run.error or msg
        run.warnings.append(msg)
    for rc, n in ((run.node_rc, node), (run.track_rc, tracker)):
        if rc is not None and run.error is None:
            where = f"; its log ({n.log}):\n{n.tail()}" if n.log else ""
            run.error = f"{n.name} exited with code {rc} during the replay{where}"


def replay(cfg: ReplayConfig) -> dict:
    """Run one replay; returns the report (also written to ``cfg.out/report.json``).

    Problems with the input that make the replay impossible (no bag, no image topic) raise
    ``BagError`` before the node starts. Problems during the replay (the node dies, frames that
    cannot be decoded) are reported in ``report["error"]`` with everything measured so far.
    """
    bag = Path(cfg.bag)
    if cfg.rate is not None and not cfg.rate > 0:
        raise BagError(f"--rate {cfg.rate}: must be > 0")
    if (cfg.gt_stamps or cfg.gt_match != "order") and not cfg.gt:
        raise BagError("--gt-match stamp and --gt-stamps describe annotation files: give them with --gt PATH")
    params = Path(cfg.params) if cfg.params else default_params()
    reader = open_reader(bag)
    try:
        src = open_source(bag, reader, cfg.image_topic)
        from slimyolo_ros.bag.checks import unannotated_in_bag

        unannotated = unannotated_in_bag(reader)
        gt_file = attach(src, reader, cfg.gt, cfg.gt_match, cfg.gt_stamps) if cfg.gt else None
        if not params.is_file():
            raise BagError(f"--params {params}: no such file")
        out = Path(cfg.out) if cfg.out else None
        if out:
            out.mkdir(parents=True, exist_ok=True)
        run = run_node(cfg, reader, src, params, out)
    finally:
        reader.close()
    if not src.has_gt:
        run.warnings.insert(0, f"{bag}: no {GT_TOPIC} topic: latency and throughput only, no mAP")
    if unannotated:  # bag make wrote them as empty ground truth: scored as background
        run.warnings.append(f"{bag}: {unannotated} frame(s) had no annotation file when the bag was made; "
                            f"they are scored as background (no objects)")
    report = score(run, src)
    report["ground_truth_file"] = gt_file
    if cfg.track:
        report["tracking"] = score_tracks(run, src, report["class_names"])
    report.update(_facts(cfg, src, run, params))
    report["frames_without_annotation"] = unannotated
    return _write(cfg, report, run, src, out)


def replay_track(cfg: ReplayConfig, modes: tuple[str, ...] = ("lockstep", "realtime")) -> dict:
    """Detector + tracker over the bag in lockstep (every frame) and/or in real time (``cfg.rate``, the
    detector's drops are gaps for the tracker); one report per mode under ``cfg.out/<mode>/``, and the
    combined one in ``cfg.out/report.json``."""
    out = Path(cfg.out) if cfg.out else None
    value, source = track_conf_threshold(cfg)
    combined: dict = {"bag": str(cfg.bag), "track": True, "error": None,
                      "detector_conf_threshold": {"value": value, "from": source}}
    for mode in ("lockstep", "realtime"):
        if mode not in modes:
            combined[mode] = None
            continue
        rate = None if mode == "lockstep" else (cfg.rate or 1.0)
        r = replay(dataclasses.replace(cfg, track=True, rate=rate, out=(out / mode) if out else None,
                                       record=cfg.record if mode == modes[0] else None))
        combined[mode] = r
        combined["error"] = combined["error"] or r.get("error")
    if out:
        combined["report"] = str(out / "report.json")
        atomic_write_json(out / "report.json", combined)
    return combined


def _facts(cfg: ReplayConfig, src: Source, run: Run, params: Path) -> dict:
    answered_t = [run.answers[f.stamp][0] for f in run.frames if f.stamp in run.answers]
    t_first = min(run.published.values(), default=None)
    return {
        "bag": str(src.bag),
        "image_topic": src.image_topic,
        "mode": "lockstep" if cfg.rate is None else "timed",
        "rate": cfg.rate,
        "frames_in_bag": src.frames_in_bag,
        "skipped": len(run.skipped),
        "duplicate_answers": run.duplicates,
        "resent": run.resent,
        "fps": (len(answered_t) / (max(answered_t) - t_first)) if answered_t and t_first else 0.0,
        "wall_s": round(run.wall_s, 3),
        "params": str(params),
        "node_command": run.command,
        "track_node_command": run.track_command,
        "detector_conf_threshold": (dict(zip(("value", "from"), track_conf_threshold(cfg), strict=True))
                                    if cfg.track else None),
        "error": run.error,
        "warnings": run.warnings,
    }


def _write(cfg: ReplayConfig, report: dict, run: Run, src: Source, out: Path | None) -> dict:
    """Detections over time, annotated frames, the recorded bag and report.json, as asked for."""
    over_time = timeline.series(run)
    report["detections_per_frame"] = timeline.summary(over_time)
    if out:
        report["timeline"] = timeline.write(out, over_time)
        # Draw at the best-F1 confidence when known: a lockstep run for mAP asks the node for the
        # whole low-score tail, which would bury the picture.
        report["annotated"] = annotate_detections(out, run.keep, run.answers, src.gt, report["class_names"],
                                        report.get("conf_threshold") or 0.0)
        report["node_log"] = str(run.log)
        if cfg.track:
            report["tracking"]["annotated"] = annotate_tracks(out / "tracks", run, src,
                                                               report["class_names"])
            report["tracking"]["node_log"] = str(run.track_log)
    if cfg.record:
        report["record"] = str(record(cfg.record, src.bag, run.frames, run.published,
                                      {DETECTIONS_TOPIC: run.answers,
                                       **({TRACKS_TOPIC: run.tracks} if cfg.track else {})}))
    if out:
        report["report"] = str(out / "report.json")
        atomic_write_json(out / "report.json", report)
    return report
