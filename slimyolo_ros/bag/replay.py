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

Images are published as the bag's CDR bytes (``Publisher.publish(bytes)``): no conversion, and the
time between ``publish`` and the answer is the node's latency plus transport, nothing of ours.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
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
)
from slimyolo_ros.bag.types import COMPRESSED_IMAGE, DETECTION2D_ARRAY, BagError, typestore
from slimyolo_ros.io_utils import atomic_write_json

log = logging.getLogger(__name__)

DETECTIONS_TOPIC = "/detections"  # where the node's output is remapped during a replay
LABEL_INFO_TOPIC = "/label_info"
_WARMUP_OFFSET_NS = 1_000_000_000  # the warm-up frame's stamp lies 1 s before the first frame
_LOCKSTEP_MAX_MISSES = 3  # consecutive unanswered frames before lockstep gives up on the node


class NodeDiedError(BagError):
    """The detector node exited (or stopped answering) before the replay finished."""


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


def _read_ground_truth(reader) -> tuple[dict[int, tuple], dict[int, np.ndarray], bool]:
    """({stamp: (boxes, names)}, {stamp: ignore boxes}, bag has a ground-truth topic)."""
    ts = typestore()
    gt_conns = [c for c in reader.connections if c.topic == GT_TOPIC and c.msgtype == DETECTION2D_ARRAY]
    ign_conns = [c for c in reader.connections if c.topic == IGNORE_TOPIC and c.msgtype == DETECTION2D_ARRAY]
    gt: dict[int, tuple] = {}
    ignore: dict[int, np.ndarray] = {}
    if gt_conns or ign_conns:
        for conn, _, raw in reader.messages(connections=gt_conns + ign_conns):
            m = ts.deserialize_cdr(raw, conn.msgtype)
            boxes, names, _ = msgs.read_detections(m)
            if conn.topic == GT_TOPIC:
                gt[msgs.stamp_ns(m.header)] = (boxes, names)
            else:
                ignore[msgs.stamp_ns(m.header)] = boxes
    return gt, ignore, bool(gt_conns)


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


# ------------------------------------------------------------------------------------------ node process
def _config_file(name: str) -> tuple[Path, Path]:
    """config/<name> of a checkout and of the installed package share folder (either may not exist)."""
    return (Path(__file__).resolve().parents[2] / "config" / name,
            Path(sys.prefix) / "share" / "slimyolo_ros" / "config" / name)


def default_params() -> Path:
    """config/detect.yaml of a checkout, else of the installed package share folder."""
    here, share = _config_file("detect.yaml")
    if here.is_file():
        return here
    if share.is_file():
        return share
    raise BagError(f"no node parameters file: neither {here} nor {share} exists (pass --params)")


PROFILE_ENV = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
SHM_FREE_NEEDED = 1 << 30  # each participant maps a 64 MiB segment; Docker's default /dev/shm is 64 MiB


def _shm_free_bytes() -> int:
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


def use_large_frames_profile() -> Path | None:
    """Export ``FASTDDS_DEFAULT_PROFILES_FILE`` = config/fastdds_large_frames.xml for this process and
    its children, so camera-sized frames between processes on this host go through Fast DDS shared
    memory instead of fragmented UDP (docs/node.md: a reliable fragmented stream lagged by more than a
    second on a loaded CPU). Nothing changes when the user set a profile, the file is not found, or
    /dev/shm has too little room. Returns the profile now in force from here, if any."""
    if any(k in os.environ for k in PROFILE_ENV):
        return None
    profile = next((p for p in _config_file("fastdds_large_frames.xml") if p.is_file()), None)
    if profile is None or _shm_free_bytes() < SHM_FREE_NEEDED:
        return None
    os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    return profile


def ros_environment() -> dict[str, str]:
    """This process's DDS settings, made explicit so the node subprocess shares them: discovery on
    loopback unless the user chose otherwise, a random domain when none is set (two replays on
    one machine must not hear each other), and the large-frame shared-memory profile."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 101)))
    use_large_frames_profile()  # before this process's rclpy.init; the node inherits it
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _node_command(cfg: ReplayConfig, params: Path, image_topic: str, compressed: bool) -> list[str]:
    if cfg.node_command:
        base = list(cfg.node_command)
    else:
        exe = Path(sys.executable).parent / "detect_node"
        base = [str(exe)] if exe.is_file() else ([shutil.which("detect_node")] if shutil.which("detect_node")
                                                 else [sys.executable, "-m", "slimyolo_ros.ros.node"])
    # Topics are set through the node's own parameters, not remapping: with compressed:=true the node
    # appends /compressed to input_topic, which a remap of "image_raw" would not follow.
    base_topic = image_topic.removesuffix("/compressed") if compressed else image_topic
    cmd = [*base, "--ros-args", "--params-file", str(params),
           "-p", f"input_topic:={base_topic}", "-p", f"compressed:={'true' if compressed else 'false'}",
           "-p", f"detections_topic:={DETECTIONS_TOPIC}", "-p", f"label_info_topic:={LABEL_INFO_TOPIC}"]
    # Reliable image transport unless the caller overrides it (--node-arg reliability:=best_effort):
    # best effort over Fast DDS's default transports loses every image larger than ~0.5 MB (all
    # fragments must arrive, none is resent; measured here: 640x480 bgr8 and up never arrive), and a
    # replay must deliver each frame. The node still keeps only the newest frame (depth 1), so a slow
    # node drops frames in timed mode just as on the vehicle.
    cmd += ["-p", "reliability:=reliable"]
    for p in cfg.node_params:
        cmd += ["-p", p]
    return cmd


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGINT, 10), (signal.SIGTERM, 5)):
        proc.send_signal(sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
    proc.kill()
    proc.wait()


def _tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


# ------------------------------------------------------------------------------------------ the listener
class _Listener:
    """rclpy side: an image publisher and a raw Detection2DArray subscription, spun in a thread."""

    def __init__(self, image_topic: str, compressed: bool) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage, Image
        from vision_msgs.msg import Detection2DArray, LabelInfo

        self._rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("slimyolo_bag_eval", context=self.context)
        # Reliable + keep-last: a node that is too slow loses frames in its own queue (what a real
        # camera driver causes), never because this side dropped them.
        reliable = ReliabilityPolicy.RELIABLE
        pub_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=reliable)
        self.publisher = self.node.create_publisher(CompressedImage if compressed else Image, image_topic,
                                                    pub_qos)
        # The node publishes detections reliable (depth 10); a deep queue here so none is lost.
        sub_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=reliable)
        self.answers: dict[int, tuple[float, bytes]] = {}
        self.duplicates = 0
        self.resent = 0
        self.cond = threading.Condition()
        self.class_names: list[str] | None = None
        self._ts = typestore()
        self.node.create_subscription(Detection2DArray, DETECTIONS_TOPIC, self._on_detections, sub_qos,
                                      raw=True)
        label_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=reliable,
                               durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(LabelInfo, LABEL_INFO_TOPIC, self._on_label_info, label_qos)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # context shut down under us at the end: nothing left to do
            pass

    def _on_detections(self, raw: bytes) -> None:
        t = time.perf_counter()
        m = self._ts.deserialize_cdr(raw, DETECTION2D_ARRAY)
        stamp = msgs.stamp_ns(m.header)
        with self.cond:
            if stamp in self.answers:
                self.duplicates += 1
            else:
                self.answers[stamp] = (t, raw)
            self.cond.notify_all()

    def _on_label_info(self, msg) -> None:
        self.class_names = [c.class_name for c in sorted(msg.class_map, key=lambda c: c.class_id)]

    def wait_for(self, stamp: int, timeout: float, alive) -> bool:
        end = time.perf_counter() + timeout
        with self.cond:
            while stamp not in self.answers:
                left = end - time.perf_counter()
                if left <= 0 or not alive():
                    return stamp in self.answers
                self.cond.wait(min(left, 0.1))
        return True

    def close(self) -> None:
        try:
            self.executor.shutdown(timeout_sec=1.0)
            self.node.destroy_node()
        finally:
            if self.context.ok():
                self._rclpy.shutdown(context=self.context)
        self._thread.join(2.0)


def _lockstep_wait(listener: _Listener, stamp: int, raw: bytes, published: dict, timeout: float,
                   alive) -> bool:
    """Wait for the answer to ``stamp``. The node's image subscription is best effort with depth 1,
    so a frame can be lost in transport; it is sent again when the answer is overdue (several times
    the usual latency). Latency still counts from the first send."""
    with listener.cond:
        recent = list(listener.answers.items())[-20:]
    answered = [t - published[s] for s, (t, _) in recent if s in published]
    resend_after = max(1.0, 5 * float(np.median(answered))) if answered else 2.0
    end = time.perf_counter() + timeout
    while True:
        left = end - time.perf_counter()
        if listener.wait_for(stamp, min(resend_after, max(left, 0.0)), alive):
            return True
        if left <= resend_after or not alive():
            return False
        listener.resent += 1
        listener.publisher.publish(raw)


def _restamp(m, typename: str, stamp: int) -> bytes:
    ts = typestore()
    m.header.stamp.sec, m.header.stamp.nanosec = stamp // 1_000_000_000, stamp % 1_000_000_000
    return bytes(ts.serialize_cdr(m, typename))


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
    reader = _open_reader(bag)
    try:
        return _replay(cfg, bag, reader)
    finally:
        reader.close()


def _replay(cfg: ReplayConfig, bag: Path, reader) -> dict:
    image_topic, image_type = _pick_image_topic(reader, bag, cfg.image_topic)
    compressed = image_type == COMPRESSED_IMAGE
    gt, ignore, has_gt = _read_ground_truth(reader)
    bag_names = _custom_class_names(reader)
    params = Path(cfg.params) if cfg.params else default_params()
    if not params.is_file():
        raise BagError(f"--params {params}: no such file")
    n_in_bag = sum(c.msgcount for c in reader.connections if c.topic == image_topic)
    if n_in_bag == 0:
        raise BagError(f"{bag}: image topic {image_topic} has no messages")
    out = Path(cfg.out) if cfg.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    warnings: list[str] = []
    if not has_gt:
        warnings.append(f"{bag}: no {GT_TOPIC} topic: latency and throughput only, no mAP")

    env = ros_environment()
    listener = _Listener(image_topic, compressed)
    log_path = (out / "node.log") if out else Path(os.devnull)
    cmd = _node_command(cfg, params, image_topic, compressed)
    log.info("starting node: %s", " ".join(cmd))
    log_file = open(log_path, "wb")  # noqa: SIM115 (closed in the finally below)
    proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    alive = lambda: proc.poll() is None  # noqa: E731

    frames: list[_Frame] = []
    published: dict[int, float] = {}  # stamp -> perf_counter at publish
    skipped: list[str] = []
    keep: dict[int, tuple[bytes, str]] = {}  # frames kept for the annotated PNGs
    want_png = set(np.linspace(0, n_in_bag - 1, max(cfg.annotated_frames, 0)).round().astype(int).tolist()) \
        if cfg.annotated_frames > 0 else set()
    error: str | None = None
    t_start = time.perf_counter()
    t_first_pub = t_last_pub = None
    try:
        # Warm-up: the first image, re-stamped 1 s earlier, until the node answers it. Proves the
        # node is up and both directions are matched, and pays the first-inference cost off the clock.
        first = next((f for f in _image_frames(reader, image_topic) if not _check_image(f[2], f[0].typename)),
                     None)
        if first is None:
            raise BagError(f"{bag}: no frame on {image_topic} the node can decode: "
                           f"{_check_image(next(_image_frames(reader, image_topic))[2], image_type)}")
        warm_stamp = first[0].stamp - _WARMUP_OFFSET_NS
        warm = _restamp(first[2], image_type, warm_stamp)
        deadline = time.perf_counter() + cfg.timeout
        while True:
            if not alive():
                raise NodeDiedError(f"detect_node exited with code {proc.returncode} before it answered "
                                    f"a first frame; its log ({log_path}):\n{_tail(log_path)}")
            if listener.publisher.get_subscription_count() > 0:
                listener.publisher.publish(warm)
                if listener.wait_for(warm_stamp, 2.0, alive):
                    break
            else:
                time.sleep(0.1)
            if time.perf_counter() > deadline:
                raise NodeDiedError(f"detect_node did not answer within --timeout {cfg.timeout:g} s "
                                    f"(no Detection2DArray on {DETECTIONS_TOPIC}); its log ({log_path}):\n"
                                    f"{_tail(log_path)}")

        from tqdm import tqdm

        bar = tqdm(total=n_in_bag, desc=f"bag eval {bag.name}", unit="frame", disable=not cfg.progress,
                   leave=False)
        t0 = None
        log0 = None
        misses = 0
        for frame, raw, m in _image_frames(reader, image_topic):
            bar.update(1)
            why = _check_image(m, frame.typename)
            if why:
                skipped.append(f"frame {frame.index} (stamp {frame.stamp}): {why}")
                continue
            if frame.stamp in published:
                skipped.append(f"frame {frame.index}: stamp {frame.stamp} repeats an earlier frame's; "
                               "answers are matched by stamp, so it is not published")
                continue
            if frame.index in want_png:
                keep[frame.stamp] = (raw, frame.typename)
            if cfg.rate is not None:
                if t0 is None:
                    t0, log0 = time.perf_counter(), frame.log_ns
                target = t0 + (frame.log_ns - log0) / 1e9 / cfg.rate
                while (left := target - time.perf_counter()) > 0:
                    time.sleep(min(left, 0.05))
                if not alive():
                    raise NodeDiedError(f"detect_node exited with code {proc.returncode} after "
                                        f"{len(published)} frames")
            published[frame.stamp] = t_last_pub = time.perf_counter()
            t_first_pub = t_first_pub or t_last_pub
            listener.publisher.publish(raw)
            frames.append(frame)
            if cfg.rate is None:
                if _lockstep_wait(listener, frame.stamp, raw, published, cfg.timeout, alive):
                    misses = 0
                    continue
                if not alive():
                    raise NodeDiedError(f"detect_node exited with code {proc.returncode} after "
                                        f"{len(published)} frames")
                misses += 1
                warnings.append(f"frame {frame.index}: no answer within {cfg.timeout:g} s")
                if misses >= _LOCKSTEP_MAX_MISSES:
                    raise NodeDiedError(f"detect_node stopped answering: {misses} frames in a row without "
                                        f"detections within --timeout {cfg.timeout:g} s")
        bar.close()
        # Timed mode: wait for the answers still in flight (stop once nothing new came for a while).
        if cfg.rate is not None:
            with listener.cond:
                lat = [t - published[s] for s, (t, _) in listener.answers.items() if s in published]
            # Quiet for a few typical latencies (at least 2 s): the last frame may still be in inference.
            patience = max(2.0, 3 * float(np.percentile(lat, 95)) if lat else min(cfg.timeout, 10.0))
            last_n, quiet_since = -1, time.perf_counter()
            while alive() and time.perf_counter() - quiet_since < patience:
                with listener.cond:
                    n = sum(1 for s in published if s in listener.answers)
                if n == len(published):
                    break
                if n != last_n:
                    last_n, quiet_since = n, time.perf_counter()
                time.sleep(0.05)
            if not alive():
                raise NodeDiedError(f"detect_node exited with code {proc.returncode} after "
                                    f"{len(published)} frames")
    except NodeDiedError as exc:
        error = str(exc)
        if "its log" not in error:
            error += f"; its log ({log_path}):\n{_tail(log_path)}"
    finally:
        node_rc = proc.poll()
        _stop(proc)
        log_file.close()
        with listener.cond:
            answers = dict(listener.answers)
            duplicates = listener.duplicates
            resent = listener.resent
        label_names = listener.class_names
        listener.close()
    wall = time.perf_counter() - t_start
    if skipped:
        msg = f"{len(skipped)} frame(s) not published: " + "; ".join(skipped[:3]) + \
            ("; ..." if len(skipped) > 3 else "")
        error = error or msg
        warnings.append(msg)
    if node_rc is not None and error is None:
        error = (f"detect_node exited with code {node_rc} during the replay; its log ({log_path}):\n"
                 f"{_tail(log_path)}")

    report = _score(frames, published, answers, gt, ignore, has_gt, bag_names, label_names, warnings)
    answered_t = [answers[f.stamp][0] for f in frames if f.stamp in answers]
    report.update({
        "bag": str(bag),
        "image_topic": image_topic,
        "mode": "lockstep" if cfg.rate is None else "timed",
        "rate": cfg.rate,
        "frames_in_bag": n_in_bag,
        "skipped": len(skipped),
        "duplicate_answers": duplicates,
        "resent": resent,
        "fps": (len(answered_t) / (max(answered_t) - t_first_pub)) if answered_t and t_first_pub else 0.0,
        "wall_s": round(wall, 3),
        "params": str(params),
        "node_command": cmd,
        "error": error,
        "warnings": warnings,
    })
    if out:
        # Draw at the best-F1 confidence when known: a lockstep run for mAP asks the node for the
        # whole low-score tail, which would bury the picture.
        report["annotated"] = _annotate(out, keep, answers, gt, report["class_names"],
                                        report.get("conf_threshold") or 0.0)
        report["node_log"] = str(log_path)
    if cfg.record:
        report["record"] = str(_record(cfg.record, bag, frames, published, answers))
    if out:
        report["report"] = str(out / "report.json")
        atomic_write_json(out / "report.json", report)
    return report


def _score(frames, published, answers, gt, ignore, has_gt, bag_names, label_names, warnings) -> dict:
    """Latency, counts and (with ground truth) COCO mAP over the answered frames."""
    ts = typestore()
    # Class names: the dataset's list as stored in the bag, else the model's (LabelInfo), then any
    # name only the detections or the ground truth use, so no box is lost to an unknown name.
    names: list[str] = list(bag_names or label_names or [])
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
        warnings.append(f"{no_gt} answered frame(s) have no {GT_TOPIC} message with their stamp: "
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


def _record(dest: Path, bag: Path, frames, published, answers) -> Path:
    """The replayed images, the ground truth and the node's answers (``/detections``, logged at the
    image's bag time plus the measured latency) as one bag in the source bag's storage format."""
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
                det_conn = w.add_connection(DETECTIONS_TOPIC, DETECTION2D_ARRAY, typestore=ts)
                for c, t, raw in src.messages():
                    w.write(conns[c.topic], t, raw)
                for stamp, f in replayed.items():
                    if stamp in answers:
                        lat_ns = int((answers[stamp][0] - published[stamp]) * 1e9)
                        w.write(det_conn, f.log_ns + max(lat_ns, 0), answers[stamp][1])
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
    for w in r["warnings"]:
        lines.append(f"  warning: {w}")
    if r.get("annotated"):
        lines.append(f"  annotated frames: {Path(r['annotated'][0]).parent}/ ({len(r['annotated'])} PNG)")
    if r.get("record"):
        lines.append(f"  recorded: {r['record']}")
    if r.get("report"):
        lines.append(f"  report: {r['report']}")
    return "\n".join(lines)
