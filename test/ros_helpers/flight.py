"""Two small processes for the tracking launch test: a camera that plays a synthetic flight, and a
subscriber of the tracker's output.

    python flight.py camera SEQUENCE_DIR TOPIC [--rate 5] [--fps 10] [--stamp-base 100]
    python flight.py listen TOPIC OUT.jsonl

``camera`` publishes the sequence's JPEG frames in order as sensor_msgs/Image bgr8 (rclpy's default
QoS: reliable, keep last 10), frame i stamped ``stamp-base + i / fps`` seconds (the flight's own time,
whatever the publishing rate), then prints ``sent N`` and exits. ``listen`` writes one JSON line per
vision_msgs/Detection2DArray: ``{"stamp_ns", "ids", "boxes" (x1, y1, x2, y2), "classes"}``, flushed.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

import cv2
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from slimyolo_ros.ros.convert import bgr_to_image


def camera(args: argparse.Namespace) -> int:
    frames = sorted(Path(args.sequence).glob("*.jpg"))
    node = Node("test_flight_camera")
    pub = node.create_publisher(Image, args.topic, 10)
    print(f"camera on {pub.topic_name}: {len(frames)} frames", flush=True)
    deadline = time.monotonic() + 60
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # both sides of the match settle before the first frame
    sent = 0
    for i, path in enumerate(frames):
        msg = bgr_to_image(cv2.imread(str(path)), "bgr8")
        msg.header.frame_id = "camera_optical"
        ns = args.stamp_base * 1_000_000_000 + round(i * 1e9 / args.fps)
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(ns, 1_000_000_000)
        pub.publish(msg)
        sent += 1
        time.sleep(1.0 / args.rate)
    print(f"sent {sent}", flush=True)
    time.sleep(1.0)
    node.destroy_node()
    return 0


def listen(args: argparse.Namespace) -> int:
    node = Node("test_tracks_listener")
    out = open(args.out, "a")  # noqa: SIM115 - closed at exit

    def on_msg(m: Detection2DArray) -> None:
        boxes = [[d.bbox.center.position.x - d.bbox.size_x / 2, d.bbox.center.position.y - d.bbox.size_y / 2,
                  d.bbox.center.position.x + d.bbox.size_x / 2, d.bbox.center.position.y + d.bbox.size_y / 2]
                 for d in m.detections]
        out.write(json.dumps({"stamp_ns": m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec,
                              "ids": [d.id for d in m.detections], "boxes": boxes,
                              "classes": [d.results[0].hypothesis.class_id if d.results else ""
                                          for d in m.detections]}) + "\n")
        out.flush()

    node.create_subscription(Detection2DArray, args.topic, on_msg, 50)
    print(f"listening on {args.topic}", flush=True)
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while not stop:
        rclpy.spin_once(node, timeout_sec=0.1)
    out.close()
    node.destroy_node()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    cam = sub.add_parser("camera")
    cam.add_argument("sequence")
    cam.add_argument("topic")
    cam.add_argument("--rate", type=float, default=5.0)
    cam.add_argument("--fps", type=float, default=10.0)
    cam.add_argument("--stamp-base", type=int, default=100)
    lis = sub.add_parser("listen")
    lis.add_argument("topic")
    lis.add_argument("out")
    args = ap.parse_args()
    rclpy.init(signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    try:
        return camera(args) if args.cmd == "camera" else listen(args)
    finally:
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
