"""The rosbags typestore the bag tools use: ROS 2 standard types plus vision_msgs.

vision_msgs is not in rosbags' built-in stores, so its types are registered from the same
.msg files the venv's rosidl build uses (``interfaces/vision_msgs/msg`` in a checkout, or the
installed ``share/vision_msgs/msg`` of a ROS prefix). No ROS install is needed to write bags.
"""

from __future__ import annotations

import os
import sys
from functools import cache
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from slimyolo_ros.errors import SlimyoloError

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
DETECTION2D_ARRAY = "vision_msgs/msg/Detection2DArray"

_REPO_MSG_DIR = Path(__file__).resolve().parents[2] / "interfaces" / "vision_msgs" / "msg"


class BagError(SlimyoloError):
    """A bag is missing, unreadable or lacks what a command needs: the message names bag and topic."""


def _store_enum() -> Stores:
    # The ROS 2 wheels in the venv are Kilted; older rosbags releases lack it, so take the newest
    # ROS 2 store the installed rosbags knows (the std/sensor message layouts are the same).
    for name in ("ROS2_KILTED", "ROS2_JAZZY", "ROS2_HUMBLE"):
        if hasattr(Stores, name):
            return getattr(Stores, name)
    raise BagError("the installed rosbags has no ROS 2 typestore (need rosbags >= 0.10)")


def vision_msgs_dir() -> Path:
    """The folder of vision_msgs .msg files: the checkout's, else an installed ROS prefix's."""
    candidates = [_REPO_MSG_DIR]
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    for prefix in [*prefixes, sys.prefix]:
        candidates.append(Path(prefix) / "share" / "vision_msgs" / "msg")
    for c in candidates:
        if (c / "Detection2DArray.msg").is_file():
            return c
    raise BagError("vision_msgs .msg files not found in " + ", ".join(str(c) for c in candidates))


@cache
def typestore() -> Typestore:
    """A ROS 2 typestore with every vision_msgs message registered (built once per process)."""
    store = get_typestore(_store_enum())
    folder = vision_msgs_dir()
    types: dict = {}
    for path in sorted(folder.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"vision_msgs/msg/{path.stem}"))
    store.register(types)
    return store
