"""detect_node's checks of what comes in from outside: parameter values set at start-up or with
``ros2 param set`` (a sentence a person can act on, not rclpy's type numbers), publishers of the image
topic with another message type, and frames too large to decode (judged from the header alone)."""

from __future__ import annotations

import io
import math
from typing import Any

IMAGE_TYPES = {False: "sensor_msgs/msg/Image", True: "sensor_msgs/msg/CompressedImage"}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        return "a list"
    return f"a {type(value).__name__}"


def number_problem(name: str, value: Any, descriptor: Any) -> str | None:
    """Why ``value`` cannot be the floating-point parameter ``name`` (None if it can). An integer is
    that number (``ros2 param set ... conf_threshold 1`` sends an integer)."""
    ranges = list(getattr(descriptor, "floating_point_range", []) or [])
    where = f" in [{ranges[0].from_value:g}, {ranges[0].to_value:g}]" if ranges else ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"parameter {name} must be a number{where}; {value!r} is {_kind(value)}"
    if not math.isfinite(value):
        return f"parameter {name} must be a finite number{where}; got {value!r}"
    if ranges and not ranges[0].from_value <= value <= ranges[0].to_value:
        return f"parameter {name} must be a number{where}; {value!r} is outside that range"
    return None


def parameter_problem(name: str, value: Any, parameters: dict[str, tuple[Any, Any]]) -> str | None:
    """A readable refusal for a bad value of one of ``parameters`` (name -> (default, descriptor));
    None when it is fine or not a number parameter (rclpy and the node check the others)."""
    if name not in parameters:
        return None
    default, descriptor = parameters[name]
    if isinstance(default, float):
        return number_problem(name, value, descriptor)
    return None


def wrong_type_publishers(infos: list[Any], compressed: bool) -> list[str]:
    """The message types of the topic's publishers that the node cannot read (not Image /
    CompressedImage as configured), e.g. a remap onto a std_msgs/String topic."""
    want = IMAGE_TYPES[compressed]
    return sorted({str(i.topic_type) for i in infos if str(i.topic_type) != want})


def frame_size(msg: Any, compressed: bool) -> tuple[int, int] | None:
    """(width, height) of a frame without decoding it: an Image's header fields, or what a JPEG/PNG
    header says (Pillow reads only the header: nothing is decompressed). None: not known (the decoder
    then reports what is wrong with the data)."""
    if not compressed:
        return int(msg.width), int(msg.height)
    from PIL import JpegImagePlugin, PngImagePlugin, UnidentifiedImageError

    data = msg.data
    head = bytes(data[:8])
    # The plugin classes directly, not Image.open: open() refuses (raises) above its own pixel limit,
    # and the size is what the node's max_frame_pixels judges.
    plugin = (JpegImagePlugin.JpegImageFile if head.startswith(b"\xff\xd8") else
              PngImagePlugin.PngImageFile if head.startswith(b"\x89PNG\r\n\x1a\n") else None)
    if plugin is None:
        return None
    try:
        with plugin(io.BytesIO(bytes(data))) as im:
            return int(im.size[0]), int(im.size[1])
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError, IndexError):
        return None
