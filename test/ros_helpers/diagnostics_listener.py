"""Listen on /diagnostics in its own process, as a monitor (rqt_robot_monitor, an aggregator) does, and
print each status as one JSON line: {"t", "name", "level", "message", "values"}. Used by tests:

    python diagnostics_listener.py [--topic /diagnostics]

Runs until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--topic", default="/diagnostics")
    args = ap.parse_args()
    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    rclpy.init(signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    node = Node("test_diagnostics_listener")

    def on_array(msg: DiagnosticArray) -> None:
        for s in msg.status:
            level = s.level[0] if isinstance(s.level, bytes) else int(s.level)
            print(json.dumps({"t": time.monotonic(), "name": s.name, "level": level, "message": s.message,
                              "values": {kv.key: kv.value for kv in s.values}}), flush=True)

    node.create_subscription(DiagnosticArray, args.topic, on_array, 50)
    print("listening", flush=True)
    while not stop:
        rclpy.spin_once(node, timeout_sec=0.2)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
