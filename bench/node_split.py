"""Where one frame's time goes in the node: the node's own functions, called in its order.

Stages (each timed over repeated runs, median):
  receive   what the executor does before the callback runs: with the node's raw subscription, one copy
            of the serialised frame into a Python ``bytes`` (timed here as that copy); rclpy's typed
            deserialisation, the before of that change, is reported apart as ``typed_receive_ms``
  convert   ros/convert.image_from_cdr + image_to_bgr (serialised Image -> H×W×3 BGR view)
  letterbox Detector stage ``preprocess`` (letterbox + batch)
  forward   Detector stage ``forward`` (uint8 -> float on the device, network incl. YOLO decode)
  decode+NMS Detector stage ``postprocess`` (score filter, class-aware NMS, back to original pixels)
  message   ros/messages.serialize_detection2d_array (CDR bytes, as the node publishes them)
  publish   a real rclpy publisher with one matched subscriber (DDS serialisation + hand-off)
The letterbox/forward/postprocess numbers are the Detector's own ``last_timings`` from full
``detector(img)`` calls, i.e. exactly what the node runs.
"""

from __future__ import annotations

import time

import numpy as np

from bench.common import Timing, time_call

STAGES = ("receive", "convert", "letterbox", "forward", "decode+NMS", "message", "publish")


def split_frame(det, img: np.ndarray, warmup: int, repeats: int, node=None) -> dict:
    """Median ms per stage for one frame through ``det`` (a Detector) and the node's converters."""
    import rclpy
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    from slimyolo_ros.ros.convert import bgr_to_image, image_from_cdr, image_to_bgr
    from slimyolo_ros.ros.messages import serialize_detection2d_array

    own = node is None
    inited = own and not rclpy.ok()
    if inited:
        rclpy.init()
    if own:
        node = rclpy.create_node("slimyolo_bench_split")
    pub = node.create_publisher(Detection2DArray, "/bench/split_detections", 10)
    sub = node.create_subscription(Detection2DArray, "/bench/split_detections", lambda _m: None, 10)
    end = time.monotonic() + 10
    while pub.get_subscription_count() == 0 and time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)

    msg = bgr_to_image(img)
    wire = serialize_message(msg)
    typed = time_call(lambda: deserialize_message(wire, Image), warmup, repeats)
    out: dict[str, Timing] = {}
    out["receive"] = time_call(lambda: bytes(memoryview(wire)), warmup, repeats)
    out["convert"] = time_call(lambda: image_to_bgr(image_from_cdr(wire)), warmup, repeats)
    received = image_from_cdr(wire)
    frame = image_to_bgr(received)
    stage_t = {"letterbox": Timing(), "forward": Timing(), "decode+NMS": Timing()}
    dets = None
    for i in range(warmup + repeats):
        dets = det(frame)
        if i >= warmup:
            lt = det.last_timings
            stage_t["letterbox"].samples_ms.append(lt["preprocess"])
            stage_t["forward"].samples_ms.append(lt["forward"])
            stage_t["decode+NMS"].samples_ms.append(lt["postprocess"])
    out.update(stage_t)
    nms = _nms_side_by_side(det, frame, warmup, repeats)
    names = det.class_names
    # what the node does: CDR bytes by hand, published as bytes
    out["message"] = time_call(lambda: serialize_detection2d_array(dets, received.header, names), warmup,
                               repeats)
    built = serialize_detection2d_array(dets, received.header, names)

    # KEEP_LAST history: an undrained subscriber never blocks the writer, so no spinning is timed.
    out["publish"] = time_call(lambda: pub.publish(built), warmup, repeats)
    node.destroy_subscription(sub)
    node.destroy_publisher(pub)
    if own:
        node.destroy_node()
    if inited:  # leave rclpy as found: a test session may init it again later
        rclpy.try_shutdown()
    medians = {k: round(out[k].median, 3) for k in STAGES}
    total = sum(medians.values())
    return {
        "stages_ms": medians,
        "total_ms": round(total, 3),
        "outside_forward_ms": round(total - medians["forward"], 3),
        "typed_receive_ms": round(typed.median, 3),
        "nms_ms": nms,
        "detections": int(len(dets)),
        "frame": f"{img.shape[1]}x{img.shape[0]}",
        "image_bytes": int(img.nbytes),
    }


def _nms_side_by_side(det, frame: np.ndarray, warmup: int, repeats: int) -> dict:
    """Both NMS implementations on this frame's candidates: the Detector's output with NMS off
    (IoU threshold 1 suppresses nothing), i.e. every box that reaches its NMS, in original pixels."""
    import torch

    from slimyolo_ros.detect.nms import nms_opencv, nms_torch

    thr, cap = det.nms_threshold, det.max_detections
    det.nms_threshold, det.max_detections = 1.0, 30000
    try:
        cands = torch.from_numpy(det(frame))
    finally:
        det.nms_threshold, det.max_detections = thr, cap
    boxes, scores, classes = cands[:, :4], cands[:, 4], cands[:, 5].long()
    return {
        "candidates": int(len(cands)),
        **{name: round(time_call(lambda f=f: f(boxes, scores, classes, thr, cap), warmup, repeats).median, 3)
           for name, f in (("opencv", nms_opencv), ("torch", nms_torch))},
    }
