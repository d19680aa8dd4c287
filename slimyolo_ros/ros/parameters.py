"""detect_node's parameters: each one's default, type, range and description (what ``ros2 param
describe`` shows), and where a relative model path is looked for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

PACKAGE = "slimyolo_ros"
REPO = Path(__file__).resolve().parents[2]


def resolve_path(value: str) -> Path:
    """A model path as given, else relative to the installed share dir, else to the source tree.

    So ``models/x.pt`` means the package's shipped model both after ``colcon build`` (share/
    slimyolo_ros/models) and in a source checkout (``pip install -e .`` installs no share dir).
    When it exists nowhere, the first place looked is returned (for the error message).
    """
    path = Path(value).expanduser()
    if path.is_absolute() or path.exists():
        return path
    candidates = search_dirs()
    found = next((d / path for d in candidates if (d / path).exists()), None)
    return found or (candidates[0] / path if candidates else path)


def search_dirs() -> list[Path]:
    dirs = []
    try:
        from ament_index_python.packages import get_package_share_directory

        dirs.append(Path(get_package_share_directory(PACKAGE)))
    except Exception:  # not installed with colcon / no AMENT_PREFIX_PATH
        pass
    if (REPO / "package.xml").is_file():  # running from a source checkout
        dirs.append(REPO)
    return dirs


def _desc(description: str, read_only: bool = True, **kw: Any) -> ParameterDescriptor:
    if "floating_point_range" in kw:
        # `ros2 param set ... conf_threshold 1` and `conf_threshold: 1` in a file send an integer: take it as
        # that number. rclpy would refuse it as a type mismatch; ros/input_checks.py checks the value.
        kw.setdefault("dynamic_typing", True)
    return ParameterDescriptor(description=description, read_only=read_only, **kw)


def _range(lo: float, hi: float) -> list[FloatingPointRange]:
    return [FloatingPointRange(from_value=lo, to_value=hi)]


# name -> (default, descriptor). config/detect.yaml documents the same set (a test checks it).
PARAMETERS: dict[str, tuple[Any, ParameterDescriptor]] = {
    "weights": ("models/slimyolov3-synth.pt", _desc(
        "model file: a .pt checkpoint (cfg and class names inside) or Darknet .weights (needs cfg); "
        "relative paths resolve against the package share dir, then the source tree")),
    "cfg": ("", _desc("Darknet cfg; empty: the one stored in the .pt checkpoint")),
    "names": ("", _desc("class names file (one per line); empty: the names in the .pt checkpoint")),
    "device": ("auto", _desc("auto | cpu | cuda | cuda:N (auto: CUDA when available, "
                             "else CPU with a warning)")),
    "half": (True, _desc("fp16 inference on CUDA (ignored on CPU)")),
    "img_size": (0, _desc("network input size (multiple of 32); 0: the model's own",
                          integer_range=[IntegerRange(from_value=0, to_value=4096, step=32)])),
    "rect": (True, _desc("letterbox to the smallest multiple of 32 per side instead of img_size x img_size "
                         "(a 1920x1080 frame at 416 runs at 416x256)")),
    "conf_threshold": (0.25, _desc("minimum score obj*cls in [0, 1]", read_only=False,
                                   floating_point_range=_range(0.0, 1.0))),
    "nms_threshold": (0.45, _desc("NMS IoU threshold in [0, 1]", read_only=False,
                                  floating_point_range=_range(0.0, 1.0))),
    "max_detections": (300, _desc("at most this many detections per frame",
                                  integer_range=[IntegerRange(from_value=1, to_value=100000, step=1)])),
    "classes": ([], _desc("only publish these class names; empty: all classes", read_only=False,
                          dynamic_typing=True)),
    "input_topic": ("image_raw", _desc("image topic (remap it in the launch file)")),
    "compressed": (False, _desc("subscribe sensor_msgs/CompressedImage on <input_topic>/compressed")),
    "max_frame_pixels": (7680 * 4320, _desc(
        "frames with more pixels (width x height, read from the message or JPEG/PNG header) are dropped "
        "with a warning before they are decoded; default 8K (7680x4320)",
        integer_range=[IntegerRange(from_value=1, to_value=2**40, step=1)])),
    "detections_topic": ("detections", _desc("vision_msgs/Detection2DArray output topic")),
    "label_info_topic": ("label_info", _desc("vision_msgs/LabelInfo topic (transient local)")),
    "publish_debug_image": (True, _desc("publish an annotated image while someone subscribes to it")),
    "debug_image_topic": ("~/debug_image", _desc("annotated sensor_msgs/Image topic")),
    "reliability": ("auto", _desc("image subscription QoS reliability: auto (reliable when every publisher "
                                  "offers reliable, else best effort; re-decided as publishers come and "
                                  "go) | best_effort | reliable")),
    "starvation_timeout": (5.0, _desc("warn once when a publisher is on the image topic but no frame arrived "
                                      "for this many seconds, or most of its frames are lost; 0: off",
                                      floating_point_range=_range(0.0, 3600.0))),
    "tile": (False, _desc("tiled inference: overlapping tiles at network resolution + merged NMS "
                          "(small objects in 4K frames)")),
    "tile_size": (0, _desc("tile side in pixels; 0: img_size",
                           integer_range=[IntegerRange(from_value=0, to_value=8192, step=1)])),
    "tile_overlap": (0.2, _desc("tile overlap fraction", floating_point_range=_range(0.0, 0.9))),
    "backend": ("torch", _desc("torch | onnxruntime")),
    "stats_period": (5.0, _desc("seconds between stats log lines and ~/stats messages; 0: off",
                                floating_point_range=_range(0.0, 3600.0))),
}
