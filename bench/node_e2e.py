"""The real ``detect_node`` in a subprocess, timed from image publish to detections received.

Both clocks are in this process: ``t0`` right before the camera publishes the (serialised) Image,
``t1`` when the Detection2DArray carrying the same header stamp arrives. Frames are sent one at a
time (the next only after the previous answer), so the number is latency, not throughput under drops.
DDS stays on loopback (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) in a random ROS_DOMAIN_ID chosen by run.py.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import REPO, Timing, peak_rss_mib

# SLIMYOLO_REUSE_FRAME_MEMORY=0 turns ros/frame_memory.py off in both the echo and detect_node, and
# SLIMYOLO_RAW_IMAGE_RECEIVE=0 makes both take the Image through rclpy's message conversion (the
# "before" rows of those fixes); SLIMYOLO_RECT=0 runs detect_node on square inputs. Same topics and
# QoS as detect_node and the same receive path, no work:
# answers each Image with an empty Detection2DArray carrying its header. Its round trip is what DDS +
# rclpy cost for the frame alone.
ECHO_NODE = """
import os
if os.environ.get("SLIMYOLO_REUSE_FRAME_MEMORY", "1") != "0":  # as detect_node does by default
    from slimyolo_ros.ros.frame_memory import reuse_frame_memory
    reuse_frame_memory()
import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray
from slimyolo_ros.ros.convert import image_from_cdr, image_to_bgr
from slimyolo_ros.ros.messages import serialize_detection2d_array
raw = os.environ.get("SLIMYOLO_RAW_IMAGE_RECEIVE", "1") != "0"
NONE = np.zeros((0, 6), np.float32)
rclpy.init()
node = rclpy.create_node("slimyolo_bench_echo")
pub = node.create_publisher(Detection2DArray, "/bench/detections", 10)
qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)
def answer(m):
    m = image_from_cdr(m) if raw else m
    image_to_bgr(m)  # the pixel view the node takes
    pub.publish(serialize_detection2d_array(NONE, m.header, []))
node.create_subscription(Image, "/bench/image", answer, qos, raw=raw)
try:
    rclpy.spin(node)
except (KeyboardInterrupt, ExternalShutdownException):
    pass
"""


STATS_PERIOD_S = 0.5  # the node's ~/stats windows: per-stage medians of the frames in each window


class NodeProcess:
    """``detect_node`` with the given parameters; ``pid`` for /proc reads, ``stop()`` with SIGINT."""

    def __init__(self, params: dict[str, object] | None, env: dict[str, str], log_path: Path):
        if params is None:  # the transport floor: a trivial rclpy node answering each image
            cmd = [sys.executable, "-c", ECHO_NODE]
        else:
            args = []
            for k, v in params.items():
                if isinstance(v, bool):
                    v = str(v).lower()
                args += ["-p", f"{k}:={v}"]
            cmd = [sys.executable, "-m", "slimyolo_ros.ros.node", "--ros-args", *args]
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 2000) -> str:
        self._log.flush()
        return self.log_path.read_text()[-n:]

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def ros_env(domain_id: int, threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    env["PYTHONUNBUFFERED"] = "1"
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


class Client:
    """The camera and the consumer in one rclpy node of this process.

    The consumer takes the detections as serialised bytes (``raw=True``): ``arrival`` is when they are
    in this process, ``decoded`` after rclpy's ``deserialize_message`` into Python objects, which for
    a Detection2DArray of ~150 boxes costs a Python consumer several ms (the node cannot help it, so
    it is reported as the consumer's, not the node's). The node's own ``~/stats`` windows (its
    per-stage medians) are kept too.
    """

    def __init__(self, name: str = "slimyolo_bench"):
        import rclpy
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from rclpy.serialization import deserialize_message
        from sensor_msgs.msg import Image
        from std_msgs.msg import String
        from vision_msgs.msg import Detection2DArray

        self.rclpy = rclpy
        if not rclpy.ok():
            rclpy.init()
        self.node = rclpy.create_node(name)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = self.node.create_publisher(Image, "/bench/image", qos)
        self._got: dict[tuple[int, int], tuple[float, float]] = {}
        self._decode = lambda raw: deserialize_message(raw, Detection2DArray)
        self.sub = self.node.create_subscription(Detection2DArray, "/bench/detections", self._on_dets, 10,
                                                 raw=True)
        self.stats: list[tuple[float, dict]] = []
        self.node.create_subscription(String, "/slimyolo_detector/stats", self._on_stats, 10)
        self.last_count = 0

    def _on_dets(self, raw: bytes) -> None:
        t_arrival = time.perf_counter()
        msg = self._decode(raw)
        t_decoded = time.perf_counter()
        self._got[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = (t_arrival, t_decoded)
        self.last_count = len(msg.detections)

    def _on_stats(self, msg) -> None:
        import json

        self.stats.append((time.perf_counter(), json.loads(msg.data)))

    def wait_matched(self, node: NodeProcess, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.pub.get_subscription_count() > 0 and self.sub.get_publisher_count() > 0:
                return
            if not node.alive():
                raise RuntimeError(f"detect_node exited ({node.proc.returncode}): {node.log_tail()}")
            self.rclpy.spin_once(self.node, timeout_sec=0.1)
        raise RuntimeError(f"detect_node did not connect within {timeout:.0f} s: {node.log_tail()}")

    def prime(self, wire: bytearray, node: NodeProcess, timeout: float) -> None:
        """Publish ``wire`` (stamp 0.0) every 0.5 s until its answer arrives. Matching is seen from each
        side on its own: the client can see the node's detections writer before that writer has matched
        the client's reader, and a volatile answer sent then reaches nobody (a frame that never returns).
        One answered frame means both directions are matched."""
        key = (0, 0)
        struct.pack_into("<iI", wire, 4, *key)
        data = bytes(wire)
        end = time.monotonic() + timeout
        while key not in self._got:
            if time.monotonic() > end:
                raise RuntimeError(f"detect_node did not answer a frame within {timeout:.0f} s: "
                                   f"{node.log_tail()}")
            if not node.alive():
                raise RuntimeError(f"detect_node exited ({node.proc.returncode}): {node.log_tail()}")
            self.pub.publish(data)
            self.spin_for(0.5)
        self._got.pop(key)

    def round_trip(self, wire: bytearray, seq: int, timeout: float) -> tuple[float, float, float]:
        """Publish the serialised Image ``wire`` with a stamp unique to ``seq``; ms until the publish
        call returns, until its detections arrive, and until they are decoded.

        The camera publishes serialised bytes, as a C++ driver hands DDS a message already in C form; a
        Python camera publishing an Image object pays rclpy's conversion on its side (~2 ms at 1080p),
        which is the camera's cost, not the node's."""
        key = (1000 + seq, 0)
        struct.pack_into("<iI", wire, 4, *key)  # header.stamp, right after the encapsulation
        data = bytes(wire)
        t0 = time.perf_counter()
        self.pub.publish(data)
        t_sent = time.perf_counter()
        end = t0 + timeout
        while key not in self._got:
            if time.perf_counter() > end:
                raise RuntimeError(f"no detections for frame {seq} within {timeout:.0f} s")
            self.rclpy.spin_once(self.node, timeout_sec=0.05)
        t_arrival, t_decoded = self._got.pop(key)
        return (t_sent - t0) * 1e3, (t_arrival - t0) * 1e3, (t_decoded - t0) * 1e3

    def spin_for(self, seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            self.rclpy.spin_once(self.node, timeout_sec=0.05)

    def close(self) -> None:
        self.node.destroy_node()


def measure_node(
    client: Client,
    model_pt: Path | None,
    backend: str,
    frames: dict[str, np.ndarray],
    env: dict[str, str],
    warmup: int,
    repeats: int,
    log_dir: Path,
    img_size: int = 416,
    timeout: float = 120.0,
    forward=None,
) -> dict:
    """Start the node on ``model_pt`` (None: the echo node); e2e latency per frame; peak RSS.

    ``forward``: the same network's bare forward in this process, run right after each round trip
    (the node is idle then), so e2e and forward are paired under the same load and the overhead is
    the median of per-frame differences, robust to a CPU whose load drifts.
    """
    from rclpy.serialization import serialize_message

    from slimyolo_ros.ros.convert import bgr_to_image

    log_dir.mkdir(parents=True, exist_ok=True)
    params = None
    if model_pt is not None:
        params = {
            "weights": str(model_pt),
            "backend": backend,
            "device": "cpu",
            "img_size": img_size,
            "input_topic": "/bench/image",
            "detections_topic": "/bench/detections",
            "label_info_topic": "/bench/label_info",
            "reliability": "reliable",
            "publish_debug_image": False,
            "stats_period": STATS_PERIOD_S,
            "reuse_frame_memory": env.get("SLIMYOLO_REUSE_FRAME_MEMORY", "1") != "0",
            "raw_image_receive": env.get("SLIMYOLO_RAW_IMAGE_RECEIVE", "1") != "0",
            "rect": env.get("SLIMYOLO_RECT", "1") != "0",
        }
    label = f"{model_pt.parent.name}_{backend}" if model_pt is not None else "echo"
    node = NodeProcess(params, env, log_dir / f"node_{label}.log")
    out: dict = {"backend": backend, "frames": {}}
    try:
        t_start = time.monotonic()
        client.wait_matched(node, timeout)
        client.prime(bytearray(serialize_message(bgr_to_image(np.zeros((8, 8, 3), np.uint8)))), node, timeout)
        out["startup_s"] = round(time.monotonic() - t_start, 2)  # until the node answers a frame
        out["rss_after_start_mib"] = peak_rss_mib(node.pid)
        seq = 0
        for label, img in frames.items():
            wire = bytearray(serialize_message(bgr_to_image(img)))
            t, f, dec, sent = Timing(), Timing(), Timing(), Timing()
            t_first = None
            for i in range(warmup + repeats):
                seq += 1
                ms_sent, ms, ms_decoded = client.round_trip(wire, seq, timeout)
                fwd_ms = None
                if forward is not None:
                    t0 = time.perf_counter()
                    forward()
                    fwd_ms = (time.perf_counter() - t0) * 1e3
                if i >= warmup:
                    t_first = t_first or time.perf_counter()
                    t.samples_ms.append(ms)
                    dec.samples_ms.append(ms_decoded - ms)
                    sent.samples_ms.append(ms_sent)
                    if fwd_ms is not None:
                        f.samples_ms.append(fwd_ms)
            out["frames"][label] = {**t.summary(), "detections": client.last_count,
                                    "consumer_decode_ms": round(dec.median, 3),
                                    "camera_publish_ms": round(sent.median, 3)}
            if params is not None:  # the node's stage medians over the stats windows of these frames
                client.spin_for(STATS_PERIOD_S * 2.5)
                windows = [s["stages_ms_p50"] for ts, s in client.stats
                           if ts >= t_first and s.get("fps", 0) > 0 and "stages_ms_p50" in s]
                if windows:
                    out["frames"][label]["node_stages_ms"] = {
                        k: round(float(np.median([w[k] for w in windows])), 3) for k in windows[0]}
            if f.samples_ms:
                diffs = Timing([a - b for a, b in zip(t.samples_ms, f.samples_ms, strict=True)])
                out["frames"][label].update(
                    {"forward_paired_ms": round(f.median, 3), "overhead_paired_ms": round(diffs.median, 3)}
                )
        out["peak_rss_mib"] = peak_rss_mib(node.pid)
    finally:
        node.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    """Subprocess entry (one DDS participant per variant, so the Fast DDS profile can differ):
    prints one JSON object, the result of :func:`measure_node`."""
    import argparse
    import json

    sys.path.insert(0, str(REPO))
    from bench.sparse_model import bench_frame

    p = argparse.ArgumentParser()
    p.add_argument("--weights", default=None, help=".pt for detect_node; omitted: the echo node")
    p.add_argument("--backend", default="torch")
    p.add_argument("--frames", default="1280x720,1920x1080")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--img-size", type=int, default=416)
    p.add_argument("--log-dir", required=True)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    frames = {}
    for f in a.frames.split(","):
        w, h = (int(v) for v in f.split("x"))
        frames[f] = bench_frame(w, h, a.seed)
    forward = None
    if a.weights:
        from bench.backends import detector, input_blob, onnxruntime_forward, torch_forward

        cache = Path(os.environ["SLIMYOLO_CACHE"]) / "onnx" if os.environ.get("SLIMYOLO_CACHE") else None
        det = detector(Path(a.weights), a.backend, a.img_size, "cpu", onnx_cache=cache)
        # The node's own input shape (SLIMYOLO_RECT=0: square, the before of rect letterboxing); the
        # bench frames are all 16:9, so one blob fits them all.
        from slimyolo_ros.detect.letterbox import letterbox_shape

        rect = os.environ.get("SLIMYOLO_RECT", "1") != "0"
        shapes = {letterbox_shape(*f.shape[:2], a.img_size, rect) for f in frames.values()}
        assert len(shapes) == 1, f"frames {a.frames} give different network inputs {shapes}"
        blob = input_blob(next(iter(frames.values())), a.img_size, rect)
        if a.backend == "torch":
            forward = torch_forward(det, blob)
        else:
            forward = onnxruntime_forward(det.onnx_path, blob)
        forward()
    client = Client()
    try:
        r = measure_node(
            client,
            Path(a.weights) if a.weights else None,
            a.backend,
            frames,
            dict(os.environ),
            a.warmup,
            a.repeats,
            Path(a.log_dir),
            a.img_size,
            forward=forward,
        )
    finally:
        client.close()
        client.rclpy.try_shutdown()
    print(json.dumps(r))
    return 0


def run_subprocess(env: dict[str, str], timeout: float = 600.0, **kw: object) -> dict:
    """:func:`main` in a fresh interpreter with ``env`` (ROS domain, threads, Fast DDS profile)."""
    import json

    args = []
    for k, v in kw.items():
        if v is not None:
            args += [f"--{k.replace('_', '-')}", str(v)]
    proc = subprocess.run(
        [sys.executable, "-m", "bench.node_e2e", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"bench.node_e2e {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-1500:]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    sys.exit(main())
