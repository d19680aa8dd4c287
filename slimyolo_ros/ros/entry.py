"""The nodes' console scripts. Ctrl-C in the first seconds, while torch and rclpy are still being
imported, ends the process quietly with status 130, as it does once the node runs (ros/spin.py); so
the node modules are imported here, inside that guard, not at the top."""

from __future__ import annotations


def detect_node() -> int:
    try:
        from slimyolo_ros.ros.node import main

        return main()
    except KeyboardInterrupt:
        return 130


def track_node() -> int:
    try:
        from slimyolo_ros.ros.track_node import main

        return main()
    except KeyboardInterrupt:
        return 130
