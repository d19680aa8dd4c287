"""The real ``detect_node`` in a subprocess, timed from image publish to detections received.

Both clocks are in this process: ``t0`` right before ``publish(Image)``, ``t1`` when the
Detection2DArray carrying the same header stamp arrives. Frames are sent one at a time (the next
only after the previous answer), so the number is latency, not throughput under drops. DDS stays on
loopback (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) in a random ROS_DOMAIN_ID chosen by run.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import REPO, Timing, peak_rss_mib


class NodeProcess:
    """``detect_node`` with the given parameters; ``pid`` for /proc reads, ``stop()`` with SIGINT."""

    def __init__(self, params: dict[str, object], env: dict[str, str], log_path: Path):
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
    """The camera and the consumer in one rclpy node of this process."""

    def __init__(self, name: str = "slimyolo_bench"):
        import rclpy
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from vision_msgs.msg import Detection2DArray

        self.rclpy = rclpy
        if not rclpy.ok():
            rclpy.init()
        self.node = rclpy.create_node(name)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = self.node.create_publisher(Image, "/bench/image", qos)
        self._got: dict[tuple[int, int], float] = {}
        self.sub = self.node.create_subscription(
            Detection2DArray, "/bench/detections", self._on_dets, 10)
        self.last_count = 0

    def _on_dets(self, msg) -> None:
        self._got[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = time.perf_counter()
        self.last_count = len(msg.detections)

    def wait_matched(self, node: NodeProcess, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.pub.get_subscription_count() > 0 and self.sub.get_publisher_count() > 0:
                return
            if not node.alive():
                raise RuntimeError(f"detect_node exited ({node.proc.returncode}): {node.log_tail()}")
            self.rclpy.spin_once(self.node, timeout_sec=0.1)
        raise RuntimeError(f"detect_node did not connect within {timeout:.0f} s: {node.log_tail()}")

    def round_trip(self, msg, seq: int, timeout: float) -> float:
        """Publish ``msg`` with a stamp unique to ``seq``; ms until its detections arrive."""
        key = (1000 + seq, 0)
        msg.header.stamp.sec, msg.header.stamp.nanosec = key
        t0 = time.perf_counter()
        self.pub.publish(msg)
        end = t0 + timeout
        while key not in self._got:
            if time.perf_counter() > end:
                raise RuntimeError(f"no detections for frame {seq} within {timeout:.0f} s")
            self.rclpy.spin_once(self.node, timeout_sec=0.05)
        return (self._got.pop(key) - t0) * 1e3

    def close(self) -> None:
        self.node.destroy_node()


def measure_node(client: Client, model_pt: Path, backend: str, frames: dict[str, np.ndarray], env: dict[str, str],
                 warmup: int, repeats: int, log_dir: Path, img_size: int = 416,
                 timeout: float = 120.0) -> dict:
    """Start the node on ``model_pt``; e2e latency per frame size; peak RSS. One node per call."""
    from slimyolo_ros.ros.convert import bgr_to_image

    log_dir.mkdir(parents=True, exist_ok=True)
    params = {"weights": str(model_pt), "backend": backend, "device": "cpu", "img_size": img_size,
              "input_topic": "/bench/image", "detections_topic": "/bench/detections",
              "label_info_topic": "/bench/label_info", "reliability": "reliable",
              "publish_debug_image": False, "stats_period": 0.0}
    node = NodeProcess(params, env, log_dir / f"node_{model_pt.parent.name}_{backend}.log")
    out: dict = {"backend": backend, "frames": {}}
    try:
        t_start = time.monotonic()
        client.wait_matched(node, timeout)
        out["startup_s"] = round(time.monotonic() - t_start, 2)
        out["rss_after_start_mib"] = peak_rss_mib(node.pid)
        seq = 0
        for label, img in frames.items():
            msg = bgr_to_image(img)
            t = Timing()
            for i in range(warmup + repeats):
                seq += 1
                ms = client.round_trip(msg, seq, timeout)
                if i >= warmup:
                    t.samples_ms.append(ms)
            out["frames"][label] = {**t.summary(), "detections": client.last_count}
        out["peak_rss_mib"] = peak_rss_mib(node.pid)
    finally:
        node.stop()
    return out
