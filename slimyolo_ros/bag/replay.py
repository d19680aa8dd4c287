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

Images are published as the bag's CDR bytes (``Publisher.publish(bytes)``): no conversion, and the
time between ``publish`` and the answer is the node's latency plus transport, nothing of ours.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from slimyolo_ros.bag import msgs
from slimyolo_ros.bag.make import (
    CLASS_NAMES_KEY,
    COMPRESSED_TOPIC,
    GT_TOPIC,
    IGNORE_TOPIC,
    IMAGE_TOPIC,
    SEQUENCES_KEY,
)
from slimyolo_ros.bag.runner import (
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
    restamp,
    ros_environment,
)
from slimyolo_ros.bag.types import COMPRESSED_IMAGE, DETECTION2D_ARRAY, BagError, typestore
from slimyolo_ros.io_utils import atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)

DETECTIONS_TOPIC = "/detections"  # where the node's output is remapped during a replay
LABEL_INFO_TOPIC = "/label_info"
TRACKS_TOPIC = "/tracks"  # the tracker's output during a replay with track=True
# What the detector is told in track mode unless the user sets conf_threshold: the shipped model scores
# true objects 0.1-0.3, and ByteTrack's second (low-score) stage only gets input below its 0.25 split when
# the detector publishes it (docs/tracking.md: measured on the demo flight).
TRACK_DETECTOR_PARAMS = ("conf_threshold:=0.1",)
_WARMUP_OFFSET_NS = 1_000_000_000  # the warm-up frame's stamp lies 1 s before the first frame
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


@dataclass
class _Frame:
    index: int
    log_ns: int
    stamp: int
    typename: str
    width: int
    height: int


# ------------------------------------------------------------------------------------------ bag reading
def _open_reader(bag: Path):
    from rosbags.rosbag2 import Reader

    if not bag.exists():
        raise BagError(f"{bag}: no such bag")
    try:
        reader = Reader(bag)
        reader.open()
    except Exception as exc:  # rosbags raises several unrelated types for unreadable bags
        raise BagError(f"{bag}: not a readable rosbag2 ({type(exc).__name__}: {exc})") from exc
    return reader


def _pick_image_topic(reader, bag: Path, wanted: str | None) -> tuple[str, str]:
    topics = {c.topic: c.msgtype for c in reader.connections}
    images = {t: ty for t, ty in topics.items() if msgs.is_image_type(ty)}
    listing = ", ".join(f"{t} ({ty})" for t, ty in sorted(topics.items())) or "none"
    if wanted:
        if wanted not in images:
            raise BagError(f"{bag}: no image topic {wanted!r} (sensor_msgs/msg/Image or CompressedImage); "
                           f"topics in the bag: {listing}")
        return wanted, images[wanted]
    for t in (IMAGE_TOPIC, COMPRESSED_TOPIC):
        if t in images:
            return t, images[t]
    if len(images) == 1:
        return next(iter(images.items()))
    if not images:
        raise BagError(f"{bag}: no image topic (sensor_msgs/msg/Image or CompressedImage); "
                       f"topics in the bag: {listing}")
    raise BagError(f"{bag}: several image topics ({', '.join(sorted(images))}); choose one")


def _custom_class_names(reader) -> list[str] | None:
    custom = getattr(getattr(reader.storage, "metadata", None), "custom", None) or {}
    try:
        names = json.loads(custom[CLASS_NAMES_KEY])
    except (KeyError, TypeError, ValueError):
        return None
    return [str(n) for n in names] if isinstance(names, list) else None


def _read_ground_truth(reader) -> tuple[dict[int, tuple], dict[int, np.ndarray], bool, dict[int, list[str]]]:
    """({stamp: (boxes, names)}, {stamp: ignore boxes}, bag has a ground-truth topic, {stamp: target ids})."""
    ts = typestore()
    gt_conns = [c for c in reader.connections if c.topic == GT_TOPIC and c.msgtype == DETECTION2D_ARRAY]
    ign_conns = [c for c in reader.connections if c.topic == IGNORE_TOPIC and c.msgtype == DETECTION2D_ARRAY]
    gt: dict[int, tuple] = {}
    ignore: dict[int, np.ndarray] = {}
    ids: dict[int, list[str]] = {}
    if gt_conns or ign_conns:
        for conn, _, raw in reader.messages(connections=gt_conns + ign_conns):
            m = ts.deserialize_cdr(raw, conn.msgtype)
            boxes, names, _ = msgs.read_detections(m)
            if conn.topic == GT_TOPIC:
                gt[msgs.stamp_ns(m.header)] = (boxes, names)
                ids[msgs.stamp_ns(m.header)] = [str(d.id) for d in m.detections]
            else:
                ignore[msgs.stamp_ns(m.header)] = boxes
    return gt, ignore, bool(gt_conns), ids


def _sequences(reader, n_frames: int) -> list[tuple[str, int]]:
    """The bag's sequences as (name, frames) in bag order (``bag make`` of a VID root stores them);
    one sequence when the bag does not say."""
    custom = getattr(getattr(reader.storage, "metadata", None), "custom", None) or {}
    try:
        seqs = [(str(name), int(count)) for name, count in json.loads(custom[SEQUENCES_KEY])]
    except (KeyError, TypeError, ValueError):
        return [("bag", n_frames)]
    return seqs if sum(c for _, c in seqs) == n_frames else [("bag", n_frames)]


def _image_frames(reader, topic: str):
    """Yield (frame, raw bytes, message) for every image on ``topic``, in bag order."""
    ts = typestore()
    conns = [c for c in reader.connections if c.topic == topic]
    for i, (conn, log_ns, raw) in enumerate(reader.messages(connections=conns)):
        m = ts.deserialize_cdr(raw, conn.msgtype)
        if conn.msgtype == COMPRESSED_IMAGE:
            # The evaluator needs the frame size (ignored-region masks); a CompressedImage has none.
            img = cv2.imdecode(np.asarray(m.data, np.uint8), cv2.IMREAD_GRAYSCALE)
            h, w = img.shape[:2] if img is not None else (0, 0)
        else:
            w, h = int(m.width), int(m.height)
        yield _Frame(i, log_ns, msgs.stamp_ns(m.header), conn.msgtype, w, h), raw, m


def _check_image(m, typename: str) -> str | None:
    """Why the node could not decode this image (cheap checks only), or None."""
    from slimyolo_ros.ros.convert import COMPRESSED_FORMATS, ENCODINGS

    if typename == COMPRESSED_IMAGE:
        fmt = (m.format or "").lower()
        if fmt and not any(f in fmt for f in COMPRESSED_FORMATS):
            return f"unsupported compressed format {m.format!r} (supported: {', '.join(COMPRESSED_FORMATS)})"
        return None
    if m.encoding not in ENCODINGS:
        return f"unsupported encoding {m.encoding!r} (supported: {', '.join(ENCODINGS)})"
    return None


# ------------------------------------------------------------------------------------------ the run
@dataclass
class _Source:
    """What the replay needs from the bag besides its frames."""

    bag: Path
    image_topic: str
    image_type: str
    frames_in_bag: int
    gt: dict[int, tuple]
    ignore: dict[int, np.ndarray]
    has_gt: bool
    class_names: list[str] | None
    gt_ids: dict[int, list[str]] = field(default_factory=dict)
    sequences: list[tuple[str, int]] = field(default_factory=list)
    fps: float = 10.0  # of the image topic's stamps


@dataclass
class _Run:
    """What happened while the node ran: the frames sent, its answers by stamp, what went wrong."""

    command: list[str]
    log: Path | None
    frames: list[_Frame] = field(default_factory=list)
    published: dict[int, float] = field(default_factory=dict)  # stamp -> perf_counter at first publish
    answers: dict[int, tuple[float, bytes]] = field(default_factory=dict)
    keep: dict[int, tuple[bytes, str]] = field(default_factory=dict)  # frames kept for the PNGs
    tracks: dict[int, tuple[float, bytes]] = field(default_factory=dict)  # track_node's answers by stamp
    track_command: list[str] | None = None
    track_log: Path | None = None
    track_rc: int | None = None
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    label_names: list[str] | None = None
    duplicates: int = 0
    resent: int = 0
    error: str | None = None
    node_rc: int | None = None
    wall_s: float = 0.0


def _open_source(cfg: ReplayConfig, bag: Path, reader) -> _Source:
    image_topic, image_type = _pick_image_topic(reader, bag, cfg.image_topic)
    n_in_bag = sum(c.msgcount for c in reader.connections if c.topic == image_topic)
    if n_in_bag == 0:
        raise BagError(f"{bag}: image topic {image_topic} has no messages")
    gt, ignore, has_gt, ids = _read_ground_truth(reader)
    span_s = (reader.end_time - reader.start_time) / 1e9
    fps = (n_in_bag - 1) / span_s if n_in_bag > 1 and span_s > 0 else 10.0
    return _Source(bag, image_topic, image_type, n_in_bag, gt, ignore, has_gt, _custom_class_names(reader),
                   ids, _sequences(reader, n_in_bag), fps)


def _node_command(cfg: ReplayConfig, params: Path, src: _Source) -> list[str]:
    base = cfg.node_command or executable("detect_node", "slimyolo_ros.ros.node")
    compressed = src.image_type == COMPRESSED_IMAGE
    # Topics are set through the node's own parameters, not remapping: with compressed:=true the node
    # appends /compressed to input_topic, which a remap of "image_raw" would not follow.
    # Reliable image transport unless the user overrides it (--node-arg reliability:=best_effort):
    # best effort over Fast DDS's default transports loses every image larger than ~0.5 MB (all
    # fragments must arrive, none is resent), and a replay must deliver each frame. The node still
    # keeps only the newest frame (depth 1), so a slow node drops frames in timed mode as on the vehicle.
    fixed = {"input_topic": src.image_topic.removesuffix("/compressed") if compressed else src.image_topic,
             "compressed": compressed, "detections_topic": DETECTIONS_TOPIC,
             "label_info_topic": LABEL_INFO_TOPIC, "reliability": "reliable"}
    return node_command(base, params, fixed, detector_overrides(cfg))


def detector_overrides(cfg: ReplayConfig) -> list[str]:
    """The detector's -p overrides: in track mode TRACK_DETECTOR_PARAMS first (unless the user sets the
    same parameter), then the user's, which win."""
    if not cfg.track:
        return list(cfg.node_params)
    given = {p.split(":=", 1)[0] for p in cfg.node_params}
    return [p for p in TRACK_DETECTOR_PARAMS if p.split(":=", 1)[0] not in given] + list(cfg.node_params)


def _track_command(cfg: ReplayConfig, src: _Source) -> list[str]:
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


def _sendable(reader, src: _Source, run: _Run, want_png: set[int]):
    """Yield (frame, raw) of the frames the node can decode, each stamp once; the rest are skipped
    with the reason."""
    seen: set[int] = set()
    for frame, raw, m in _image_frames(reader, src.image_topic):
        why = _check_image(m, frame.typename)
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


def _warm_frame(reader, src: _Source, blank: bool = False) -> tuple[int, bytes]:
    """The first decodable image, re-stamped 1 s before it (so its answer is never scored); ``blank``:
    its pixels black, so a tracker downstream starts no track from it."""
    first = next(((f, raw) for f, raw, m in _image_frames(reader, src.image_topic)
                  if not _check_image(m, f.typename)), None)
    if first is None:
        _, _, m = next(_image_frames(reader, src.image_topic))
        raise BagError(f"{src.bag}: no frame on {src.image_topic} the node can decode: "
                       f"{_check_image(m, src.image_type)}")
    stamp = first[0].stamp - _WARMUP_OFFSET_NS
    return stamp, restamp(_blank(first[1], src.image_type) if blank else first[1], stamp)


def _blank(raw: bytes, typename: str) -> bytes:
    ts = typestore()
    m = ts.deserialize_cdr(raw, typename)
    if typename == COMPRESSED_IMAGE:
        black = np.zeros_like(msgs.decode_image(m, typename))
        m.data = np.frombuffer(cv2.imencode(".jpg", black)[1].tobytes(), np.uint8)
    else:
        m.data = np.zeros_like(m.data)
    return bytes(ts.serialize_cdr(m, typename))


def _stream(cfg: ReplayConfig, reader, src: _Source, run: _Run, client: Client,
            node: NodeUnderTest | Pipeline, pub) -> None:
    """Warm up, then every frame lockstep or on the bag's schedule; NodeDiedError when a node goes.
    The answer awaited is the last node's: the tracker's in track mode."""
    topic = TRACKS_TOPIC if cfg.track else DETECTIONS_TOPIC
    warm_stamp, warm = _warm_frame(reader, src, blank=cfg.track)
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


def run_node(cfg: ReplayConfig, reader, src: _Source, params: Path, out: Path | None) -> _Run:
    """Start detect_node (and track_node on its output), stream the bag's frames through, collect the
    answers, stop the nodes."""
    from sensor_msgs.msg import CompressedImage, Image

    run = _Run(command=_node_command(cfg, params, src), log=(out / "node.log") if out else None)
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


def _run_errors(run: _Run, node: NodeUnderTest, tracker: NodeUnderTest | None) -> None:
    if run.skipped:
        msg = f"{len(run.skipped)} frame(s) not published: " + "; ".join(run.skipped[:3]) + \
            ("; ..." if len(run.skipped) > 3 else "")
        run.error = run.error or msg
        run.warnings.append(msg)
    for rc, n in ((run.node_rc, node), (run.track_rc, tracker)):
        if rc is not None and run.error is None:
            where = f"; its log ({n.log}):\n{n.tail()}" if n.log else ""
            run.error = f"{n.name} exited with code {rc} during the replay{where}"


# ------------------------------------------------------------------------------------------ the replay
def replay(cfg: ReplayConfig) -> dict:
    """Run one replay; returns the report (also written to ``cfg.out/report.json``).

    Problems with the input that make the replay impossible (no bag, no image topic) raise
    ``BagError`` before the node starts. Problems during the replay (the node dies, frames that
    cannot be decoded) are reported in ``report["error"]`` with everything measured so far.
    """
    bag = Path(cfg.bag)
    if cfg.rate is not None and not cfg.rate > 0:
        raise BagError(f"--rate {cfg.rate}: must be > 0")
    params = Path(cfg.params) if cfg.params else default_params()
    reader = _open_reader(bag)
    try:
        src = _open_source(cfg, bag, reader)
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
    report = score(run, src)
    if cfg.track:
        report["tracking"] = score_tracks(run, src, report["class_names"])
    report.update(_facts(cfg, src, run, params))
    return _write(cfg, report, run, src, out)


def replay_track(cfg: ReplayConfig, modes: tuple[str, ...] = ("lockstep", "realtime")) -> dict:
    """Detector + tracker over the bag in lockstep (every frame) and/or in real time (``cfg.rate``, the
    detector's drops are gaps for the tracker); one report per mode under ``cfg.out/<mode>/``, and the
    combined one in ``cfg.out/report.json``."""
    out = Path(cfg.out) if cfg.out else None
    combined: dict = {"bag": str(cfg.bag), "track": True, "error": None,
                      "detector_params_added": [p for p in detector_overrides(dataclasses.replace(
                          cfg, track=True)) if p not in cfg.node_params]}
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


def _facts(cfg: ReplayConfig, src: _Source, run: _Run, params: Path) -> dict:
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
        "error": run.error,
        "warnings": run.warnings,
    }


def _write(cfg: ReplayConfig, report: dict, run: _Run, src: _Source, out: Path | None) -> dict:
    """Annotated frames, the recorded bag and report.json, as asked for."""
    if out:
        # Draw at the best-F1 confidence when known: a lockstep run for mAP asks the node for the
        # whole low-score tail, which would bury the picture.
        report["annotated"] = _annotate(out, run.keep, run.answers, src.gt, report["class_names"],
                                        report.get("conf_threshold") or 0.0)
        report["node_log"] = str(run.log)
        if cfg.track:
            report["tracking"]["annotated"] = _annotate_tracks(out / "tracks", run, src,
                                                               report["class_names"])
            report["tracking"]["node_log"] = str(run.track_log)
    if cfg.record:
        report["record"] = str(_record(cfg.record, src.bag, run.frames, run.published, run.answers,
                                       run.tracks))
    if out:
        report["report"] = str(out / "report.json")
        atomic_write_json(out / "report.json", report)
    return report


def score(run: _Run, src: _Source) -> dict:
    """Latency, counts and (with ground truth) COCO mAP over the answered frames."""
    frames, published, answers = run.frames, run.published, run.answers
    gt, ignore, has_gt = src.gt, src.ignore, src.has_gt
    ts = typestore()
    # Class names: the dataset's list as stored in the bag, else the model's (LabelInfo), then any
    # name only the detections or the ground truth use, so no box is lost to an unknown name.
    names: list[str] = list(src.class_names or run.label_names or [])
    index = {n: i for i, n in enumerate(names)}

    def idx(n: str) -> int:
        if n not in index:
            index[n] = len(names)
            names.append(n)
        return index[n]

    lat, det_counts, gt_counts = [], Counter(), Counter()
    samples, dets = [], []
    with_dets = 0
    no_gt = 0
    from slimyolo_ros.data.visdrone import Sample

    for f in frames:
        if f.stamp not in answers:
            continue
        t, raw = answers[f.stamp]
        lat.append((t - published[f.stamp]) * 1000.0)
        boxes, dnames, scores = msgs.read_detections(ts.deserialize_cdr(raw, DETECTION2D_ARRAY))
        with_dets += bool(len(boxes))
        det_counts.update(dnames)
        if not has_gt:
            continue
        if f.stamp not in gt:
            no_gt += 1
            continue
        gboxes, gnames = gt[f.stamp]
        gt_counts.update(gnames)
        samples.append(Sample(image_path=Path(f"frame_{f.index:06d}_{f.stamp}"), boxes=gboxes,
                              classes=np.asarray([idx(n) for n in gnames], np.int64),
                              ignore=ignore.get(f.stamp, np.zeros((0, 4), np.float32)),
                              width=f.width, height=f.height))
        cls = np.asarray([idx(n) for n in dnames], np.float32)
        dets.append(np.concatenate([boxes, scores[:, None], cls[:, None]], axis=1).astype(np.float32)
                    if len(boxes) else np.zeros((0, 6), np.float32))
    if no_gt:
        run.warnings.append(f"{no_gt} answered frame(s) have no {GT_TOPIC} message with their stamp: "
                        "left out of the mAP")
    answered = len(lat)
    report: dict = {
        "frames": len(frames),
        "answered": answered,
        "frames_with_detections": with_dets,
        "dropped": len(frames) - answered,
        "frames_scored": len(samples),
        "frames_without_ground_truth": no_gt,
        "detections": int(sum(det_counts.values())),
        "detections_per_class": dict(sorted(det_counts.items())),
        "ground_truth_per_class": dict(sorted(gt_counts.items())),
        "latency_ms": _percentiles(lat),
        "map50": None,
        "map": None,
        "per_class": {},
    }
    if samples:
        from slimyolo_ros.evaluate.coco import evaluate

        metrics = evaluate(samples, dets, names)
        report["map50"] = float(metrics["map50"])
        report["map"] = float(metrics["map"])
        for k in ("precision", "recall", "f1", "conf_threshold"):
            if k in metrics:
                report[k] = None if metrics[k] is None else float(metrics[k])
        report["per_class"] = metrics.get("per_class", {})
    report["class_names"] = names
    return report


def _by_sequence(frames: list[_Frame], sequences: list[tuple[str, int]]) -> list[tuple[str, list[_Frame]]]:
    """The replayed frames grouped by the bag's sequences (bag image index ranges), in order."""
    bounds, start = [], 0
    for name, count in sequences:
        bounds.append((name, start, start + count))
        start += count
    return [(name, [f for f in frames if lo <= f.index < hi]) for name, lo, hi in bounds]


def _read_tracks(raw: bytes) -> tuple[np.ndarray, list[str], np.ndarray, list[str]]:
    """(boxes, class names, scores, track ids) of one serialised Detection2DArray from track_node."""
    m = typestore().deserialize_cdr(raw, DETECTION2D_ARRAY)
    boxes, names, scores = msgs.read_detections(m)
    return boxes, names, scores, [str(d.id) for d in m.detections]


def score_tracks(run: _Run, src: _Source, names: list[str]) -> dict:
    """MOT metrics (``evaluate_mot``: HOTA, MOTA, IDF1, ID switches, ...) of the tracker's answers against
    the ground truth's target ids, each sequence on its own, over the frames the tracker answered."""
    from slimyolo_ros.evaluate.mot import MotFrame, evaluate_mot

    names = list(names)
    index = {n: i for i, n in enumerate(names)}

    def idx(n: str) -> int:
        return index.setdefault(n, len(index))

    seqs, lat, track_ids, warnings = [], [], set(), []
    no_ids = False
    for _, frames in _by_sequence(run.frames, src.sequences):
        mot = []
        for f in frames:
            if f.stamp not in run.tracks:
                continue
            t, raw = run.tracks[f.stamp]
            lat.append((t - run.published[f.stamp]) * 1000.0)
            boxes, tnames, _, ids = _read_tracks(raw)
            track_ids.update(ids)
            if f.stamp not in src.gt:
                continue
            gboxes, gnames = src.gt[f.stamp]
            gids = src.gt_ids.get(f.stamp, [])
            no_ids = no_ids or any(not i for i in gids)
            mot.append(MotFrame(gboxes, np.asarray([idx(n) for n in gnames], np.int64), gids, boxes,
                                np.asarray([idx(n) for n in tnames], np.int64), ids,
                                src.ignore.get(f.stamp, np.zeros((0, 4), np.float32))))
        if mot:
            seqs.append(mot)
    names = sorted(index, key=index.get)
    result: dict = {"overall": None, "per_class": {}}
    if no_ids:
        warnings.append(f"{src.bag}: {GT_TOPIC} has objects without a target id (Detection2D.id): "
                        "no MOT metrics (make the bag from a VisDrone-VID root, e.g. slimyolo synth --video)")
    elif seqs:
        result = evaluate_mot(seqs, names)
    run.warnings.extend(warnings)
    answered = sum(1 for f in run.frames if f.stamp in run.tracks)
    return {**result, "frames": len(run.frames), "answered": answered, "dropped": len(run.frames) - answered,
            "frames_scored": sum(len(q) for q in seqs), "sequences": [n for n, _ in src.sequences],
            "tracks": len(track_ids - {""}), "latency_ms": _percentiles(lat)}


def _annotate_tracks(out: Path, run: _Run, src: _Source, names: list[str], trail: int = 15) -> list[str]:
    """The kept frames with the tracker's boxes, ids and each track's recent path (``draw_tracks``), JPEG.
    Trails follow every answered frame of the sequence, not only the drawn ones."""
    from slimyolo_ros.detect.draw import TrailHistory, draw_tracks

    ts = typestore()
    paths = []
    index = {n: i for i, n in enumerate(names)}
    for seq, frames in _by_sequence(run.frames, src.sequences):
        history = TrailHistory(trail)
        for f in frames:
            if f.stamp not in run.tracks:
                continue
            boxes, tnames, _, ids = _read_tracks(run.tracks[f.stamp][1])
            trails = history.update(boxes, ids)
            if f.stamp not in run.keep:
                continue
            raw, typename = run.keep[f.stamp]
            try:
                img = msgs.decode_image(ts.deserialize_cdr(raw, typename), typename)
            except Exception as exc:  # a frame we cannot show must not lose the report
                log.warning("annotated frame %d: %s", f.stamp, exc)
                continue
            cls = np.asarray([index.get(n, -1) for n in tnames], np.int64)
            img = draw_tracks(img, boxes, ids, cls, names, trails)
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
            if ok:
                out.mkdir(parents=True, exist_ok=True)
                paths.append(str(atomic_write_bytes(out / f"{seq}_{f.index:06d}.jpg", buf.tobytes())))
    return paths


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "mean": None, "max": None}
    a = np.asarray(values)
    p50, p95, p99 = np.percentile(a, [50, 95, 99]).tolist()
    return {"p50": round(p50, 3), "p95": round(p95, 3), "p99": round(p99, 3),
            "mean": round(float(a.mean()), 3), "max": round(float(a.max()), 3)}


def _annotate(out: Path, keep: dict, answers: dict, gt: dict, names: list[str],
              min_score: float) -> list[str]:
    """A few frames with the node's boxes drawn (detect/draw.py) over the ground truth (thin white), PNG."""
    from slimyolo_ros.detect.draw import draw_detections, write_png

    ts = typestore()
    paths = []
    index = {n: i for i, n in enumerate(names)}
    for stamp, (raw, typename) in sorted(keep.items()):
        try:
            img = msgs.decode_image(ts.deserialize_cdr(raw, typename), typename)
        except Exception as exc:  # a frame we cannot show must not lose the report
            log.warning("annotated frame %d: %s", stamp, exc)
            continue
        if stamp in gt:
            for x1, y1, x2, y2 in gt[stamp][0].round().astype(int).tolist():
                cv2.rectangle(img, (x1, y1), (x2, y2), (255, 255, 255), 1)
        if stamp in answers:
            boxes, dnames, scores = msgs.read_detections(
                ts.deserialize_cdr(answers[stamp][1], DETECTION2D_ARRAY))
            cls = np.asarray([index.get(n, -1) for n in dnames], np.float32)
            shown = scores >= min_score
            boxes, scores, cls = boxes[shown], scores[shown], cls[shown]
            det = np.concatenate([boxes, scores[:, None], cls[:, None]], axis=1) if len(boxes) \
                else np.zeros((0, 6), np.float32)
            img = draw_detections(img, det, names)
        else:
            cv2.putText(img, "dropped: no answer", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 255), 2)
        paths.append(str(write_png(out / f"frame_{stamp}.png", img)))
    return paths


def _record(dest: Path, bag: Path, frames, published, answers, tracks=None) -> Path:
    """The replayed images, the ground truth and the node's answers (``/detections``, and the tracker's
    ``/tracks`` when there are any; logged at the image's bag time plus the measured latency) as one bag
    in the source bag's storage format."""
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer

    dest = Path(dest)
    if dest.exists():
        raise BagError(f"--record {dest}: exists already; remove it or choose another path")
    ts = typestore()
    replayed = {f.stamp: f for f in frames}
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_root = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    tmp = tmp_root / dest.name
    try:
        with Reader(bag) as src:
            files = [str(f.get("path", "")) for f in getattr(src.storage, "files", [])] or [bag.name]
            storage = StoragePlugin.SQLITE3 if any(f.endswith(".db3") for f in files) else StoragePlugin.MCAP
            with Writer(tmp, version=Writer.VERSION_LATEST, storage_plugin=storage) as w:
                conns = {}
                for c in src.connections:
                    if c.topic not in conns:
                        conns[c.topic] = w.add_connection(c.topic, c.msgtype, msgdef=c.msgdef.data,
                                                          rihs01=c.digest)
                outputs = [(w.add_connection(DETECTIONS_TOPIC, DETECTION2D_ARRAY, typestore=ts), answers)]
                if tracks:
                    outputs.append((w.add_connection(TRACKS_TOPIC, DETECTION2D_ARRAY, typestore=ts), tracks))
                for c, t, raw in src.messages():
                    w.write(conns[c.topic], t, raw)
                for out_conn, got in outputs:
                    for stamp, f in replayed.items():
                        if stamp in got:
                            lat_ns = int((got[stamp][0] - published[stamp]) * 1e9)
                            w.write(out_conn, f.log_ns + max(lat_ns, 0), got[stamp][1])
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    return dest


# ------------------------------------------------------------------------------------------ text report
def format_report(r: dict) -> str:
    def ms(v):
        return "-" if v is None else f"{v:.1f} ms"

    mode = r["mode"] if r["rate"] is None else f"{r['mode']}, rate {r['rate']:g}x"
    lines = [f"bag {r['bag']} ({mode})",
             f"  frames: {r['frames']} published, {r['answered']} answered, {r['dropped']} dropped, "
             f"{r['frames_with_detections']} with detections, {r['skipped']} skipped"]
    if r.get("map50") is not None:
        lines.append(f"  mAP@0.5 {r['map50']:.4f}   mAP@0.5:0.95 {r['map']:.4f}   "
                     f"({r['frames_scored']} frames scored)")
    else:
        lines.append("  mAP: n/a (no ground truth for the answered frames)")
    lat = r["latency_ms"]
    lines.append(f"  latency publish->detections: p50 {ms(lat['p50'])}, p95 {ms(lat['p95'])}, "
                 f"p99 {ms(lat['p99'])}; throughput {r['fps']:.1f} fps")
    classes = sorted(set(r["detections_per_class"]) | set(r["ground_truth_per_class"]))
    if classes:
        lines.append(f"  {'class':<16}{'detections':>11}{'truth':>7}{'AP@0.5':>8}")
        for c in classes:
            ap = r["per_class"].get(c, {}).get("ap50")
            lines.append(f"  {c:<16}{r['detections_per_class'].get(c, 0):>11}"
                         f"{r['ground_truth_per_class'].get(c, 0):>7}{'-' if ap is None else f'{ap:.3f}':>8}")
    if r.get("tracking"):
        lines.extend(_format_tracking(r["tracking"]))
    for w in r["warnings"]:
        lines.append(f"  warning: {w}")
    if r.get("annotated"):
        lines.append(f"  annotated frames: {Path(r['annotated'][0]).parent}/ ({len(r['annotated'])} PNG)")
    if r.get("record"):
        lines.append(f"  recorded: {r['record']}")
    if r.get("report"):
        lines.append(f"  report: {r['report']}")
    return "\n".join(lines)


def _format_tracking(t: dict) -> list[str]:
    from slimyolo_ros.evaluate.mot import format_mot

    lat = t["latency_ms"]
    p50 = "-" if lat["p50"] is None else f"{lat['p50']:.1f} ms"
    lines = [f"  tracking (track_node): {t['answered']} of {t['frames']} frames answered, "
             f"{t['tracks']} track ids; latency publish->tracks p50 {p50}"]
    if t.get("overall"):
        o = t["overall"]
        lines.append(f"  HOTA {100 * o['HOTA']:.1f}   MOTA {100 * o['MOTA']:.1f}   "
                     f"IDF1 {100 * o['IDF1']:.1f}   ID switches {o['IDSW']}   "
                     f"({t['frames_scored']} frames scored, {len(t['sequences'])} sequence(s))")
        lines.extend("    " + ln for ln in format_mot(t).splitlines())
    else:
        lines.append("  MOT metrics: n/a (no ground truth with target ids for the answered frames)")
    if t.get("annotated"):
        lines.append(f"  annotated tracks: {Path(t['annotated'][0]).parent}/ ({len(t['annotated'])} JPEG)")
    return lines


def format_track_report(r: dict) -> str:
    """The readable summary of :func:`replay_track`: one block per mode."""
    added = ", ".join(r["detector_params_added"]) or "none"
    lines = [f"bag eval --track {r['bag']} (detector parameters added for tracking: {added})"]
    for mode in ("lockstep", "realtime"):
        if r.get(mode):
            lines += ["", f"[{mode}]", format_report(r[mode])]
    if r.get("report"):
        lines += ["", f"report: {r['report']}"]
    return "\n".join(lines)
