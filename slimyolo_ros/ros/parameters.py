"""detect_node's parameters: each one's default, type, range and description (what ``ros2 param
describe`` shows); a relative model path is looked for by ros/package_files.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from slimyolo_ros.darknet.input_size import MAX_STRIDE
from slimyolo_ros.ros.package_files import resolve_path as resolve_path
from slimyolo_ros.ros.package_files import search_dirs as search_dirs


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
                          integer_range=[IntegerRange(from_value=0, to_value=4096, step=MAX_STRIDE)])),
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
    "image_topics": ([], _desc(
        "several cameras, one model: a list of image topics (each keeps its newest frame, has its own "
        "QoS, starvation watch and counters); empty: the one input_topic", dynamic_typing=True)),
    "detections_topics": ([], _desc(
        "with image_topics: one detections topic per camera, in the same order; empty: the image "
        "topic's namespace + /detections (/cam_front/image_raw -> /cam_front/detections)",
        dynamic_typing=True)),
    "camera_batch": (True, _desc(
        "with image_topics: run the frames of all waiting cameras as one batch (one forward per "
        "letterbox shape); false: one frame at a time, round-robin (docs/benchmarks.md: several cameras)",
        read_only=False)),
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
    "diagnostics_max_drop_share": (0.5, _desc(
        "/diagnostics warns when more than this share of the frames sent to the node is dropped "
        "(the node slower than the camera, or frames lost on the way)",
        floating_point_range=_range(0.0, 1.0))),
    "diagnostics_latency_budget_ms": (1000.0, _desc(
        "/diagnostics warns when latency p95 (frame received to detections published) exceeds this; 0: off",
        floating_point_range=_range(0.0, 60000.0))),
    "tile": (False, _desc("tiled inference: overlapping tiles at network resolution + merged NMS "
                          "(small objects in 4K frames)")),
    "tile_size": (0, _desc("tile side in pixels; 0: img_size",
                           integer_range=[IntegerRange(from_value=0, to_value=8192, step=1)])),
    "tile_overlap": (0.2, _desc("tile overlap fraction", floating_point_range=_range(0.0, 0.9))),
    "backend": ("torch", _desc("torch | onnxruntime")),
    "providers": ("auto", _desc(
        "ONNX Runtime execution providers (backend onnxruntime): auto (TensorRT, then CUDA, then CPU, "
        "whichever this onnxruntime has) or a list, as a string 'tensorrt,cuda,cpu' or a string array; "
        "full names (CUDAExecutionProvider) work too", dynamic_typing=True)),
    "trt_cache_dir": ("~/.cache/slimyolo_ros/trt", _desc(
        "TensorRT engine cache folder: the first start builds the fp16 engine, later starts reuse it")),
    "stats_period": (5.0, _desc("seconds between stats log lines and ~/stats messages; 0: off",
                                floating_point_range=_range(0.0, 3600.0))),
}


def detector_options(p: dict[str, Any], cfg: Path | None = None, names: Path | None = None) -> Any:
    """The DetectorOptions that the node's parameter values ``p`` ask for (``cfg``/``names``: the
    resolved files). It names the bad value; the node turns that into its one-line start-up error.
    ``classes`` is not among them: it changes at runtime and the node sets it as the class filter."""
    from slimyolo_ros.detect import DetectorOptions  # torch comes with it: only once the files exist

    tile = {"size": int(p["tile_size"]), "overlap": float(p["tile_overlap"])} if p["tile"] else None
    return DetectorOptions(
        cfg=str(cfg) if cfg else None, names=str(names) if names else None, backend=p["backend"],
        device=p["device"], half=bool(p["half"]), img_size=int(p["img_size"]) or None, rect=bool(p["rect"]),
        tile=tile, conf_threshold=float(p["conf_threshold"]), nms_threshold=float(p["nms_threshold"]),
        max_detections=int(p["max_detections"]), providers=p["providers"],
        trt_cache_dir=p["trt_cache_dir"] or None)
