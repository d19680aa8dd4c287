"""A camera driver stand-in: sensor_msgs/Image bgr8 at a fixed rate, in its own process; and
``CameraProcess``, how tests start it.

    python camera.py TOPIC [--width 1280] [--height 720] [--rate 10] [--reliability reliable]
                     [--stamp-base 1000] [--frames 0] [--clock] [--frame-id camera_optical]

QoS is rclpy's default (reliable, keep last 10, volatile) unless --reliability best_effort, and no
Fast DDS profile unless the environment sets one: what a user's camera node does. Frame i carries
stamp sec = stamp-base + i, so the test knows which frames were answered. With --clock it also
publishes /clock = the frame's stamp (sim time, as ``ros2 bag play --clock`` does). It runs until
--frames are sent (0: until SIGINT/SIGTERM) and prints ``sent N`` on exit.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image

from slimyolo_ros.harness import PROFILE_ENV
from slimyolo_ros.ros.convert import bgr_to_image


def default_dds_env(env: dict[str, str]) -> dict[str, str]:
    """A user's setup: no Fast DDS profile (test/conftest.py gives the test process one)."""
    return {k: v for k, v in env.items() if k not in PROFILE_ENV}


class CameraProcess:
    """This script as a subprocess; ``stop()`` returns how many frames it sent."""

    def __init__(self, env: dict[str, str], topic: str, log: Path, *args: str) -> None:
        from ros_helpers.probe import NodeProcess  # here: run as a script, ros_helpers is no package

        self.proc = NodeProcess([sys.executable, __file__, topic, *args], env, log)
        self.proc.wait_log("camera on", 90)

    def stop(self) -> int:
        self.proc.stop()
        return int(self.proc.text().split("sent ")[-1].split()[0])


def answered(results: list, lo: int, hi: int) -> set[int]:
    """Stamps (sec) in [lo, hi) of the messages a Probe collected."""
    return {m.header.stamp.sec for _, m in list(results) if lo <= m.header.stamp.sec < hi}


def answered_after_first(results: list, cam: CameraProcess, base: int, n: int) -> tuple[set[int], int]:
    """Wait for the first answered frame stamped >= ``base`` and the ``n`` frames after it (the auto
    subscription settles on reliable within a second or two of discovery), then stop the camera.
    The answered stamps among those ``n`` frames, and how many frames the camera sent."""
    from ros_helpers.probe import wait_for  # here: this file also runs as the camera process

    try:
        first = wait_for(lambda: min(answered(results, base, 10**6), default=None), 60,
                         "a first answered frame")
        wait_for(lambda: answered(results, first + n, 10**6), 60, f"answers up to frame {first + n}")
    finally:
        sent = cam.stop()
    return answered(results, first, first + n), sent


def frame(width: int, height: int) -> np.ndarray:
    """A grey scene with a few coloured boxes (content does not matter, size does)."""
    img = np.full((height, width, 3), 96, np.uint8)
    rng = np.random.default_rng(0)
    for _ in range(8):
        x, y = int(rng.integers(0, width - 100)), int(rng.integers(0, height - 100))
        img[y:y + 80, x:x + 60] = rng.integers(0, 255, 3, dtype=np.uint8)
    return img


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("topic")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--reliability", choices=("reliable", "best_effort"), default="reliable")
    ap.add_argument("--stamp-base", type=int, default=1000)
    ap.add_argument("--frames", type=int, default=0)
    ap.add_argument("--clock", action="store_true")
    ap.add_argument("--frame-id", default="camera_optical")
    args = ap.parse_args()

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    rclpy.init(signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    node = Node("test_camera")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE if args.reliability == "reliable"
                     else ReliabilityPolicy.BEST_EFFORT)
    pub = node.create_publisher(Image, args.topic, qos)
    clock_pub = node.create_publisher(Clock, "/clock", 10) if args.clock else None
    msg: Image = bgr_to_image(frame(args.width, args.height), "bgr8")
    msg.header.frame_id = args.frame_id
    print(f"camera on {pub.topic_name} {args.width}x{args.height} {args.rate:g} Hz {args.reliability}",
          flush=True)
    sent, period, start = 0, 1.0 / args.rate, time.monotonic()
    while not stop and (args.frames == 0 or sent < args.frames):
        msg.header.stamp.sec, msg.header.stamp.nanosec = args.stamp_base + sent, 0
        if clock_pub is not None:
            clock_pub.publish(Clock(clock=msg.header.stamp))
        pub.publish(msg)
        sent += 1
        time.sleep(max(0.0, start + sent * period - time.monotonic()))
    print(f"sent {sent}", flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
