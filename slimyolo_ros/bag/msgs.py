"""rosbags message objects for the bag tools: images and Detection2DArray, built and read back.

These are rosbags' own message classes (pure Python, CDR via the typestore), not rclpy's:
writing and reading bags needs no ROS install.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from slimyolo_ros.bag.types import COMPRESSED_IMAGE, DETECTION2D_ARRAY, IMAGE, typestore

# encoding -> (channels, conversion from BGR); what `bag make` writes and the node decodes.
RAW_ENCODINGS: dict[str, tuple[int, int | None]] = {
    "bgr8": (3, None),
    "rgb8": (3, cv2.COLOR_BGR2RGB),
    "mono8": (1, cv2.COLOR_BGR2GRAY),
}
ENCODINGS = (*RAW_ENCODINGS, "jpeg")


def stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def header(ns: int, frame_id: str):
    t = typestore().types
    return t["std_msgs/msg/Header"](
        stamp=t["builtin_interfaces/msg/Time"](sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000),
        frame_id=frame_id,
    )


def image_message(img_bgr: np.ndarray | None, encoding: str, ns: int, frame_id: str,
                  jpeg_bytes: bytes | None = None):
    """(typename, message) for one frame: sensor_msgs/Image, or CompressedImage for ``jpeg``."""
    t = typestore().types
    if encoding == "jpeg":
        if jpeg_bytes is None:
            ok, buf = cv2.imencode(".jpg", img_bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
            if not ok:
                raise ValueError("OpenCV could not JPEG-encode the frame")
            jpeg_bytes = buf.tobytes()
        msg = t[COMPRESSED_IMAGE](header=header(ns, frame_id), format="jpeg",
                                  data=np.frombuffer(jpeg_bytes, np.uint8))
        return COMPRESSED_IMAGE, msg
    channels, code = RAW_ENCODINGS[encoding]
    pixels = img_bgr if code is None else cv2.cvtColor(img_bgr, code)
    pixels = np.ascontiguousarray(pixels)
    h, w = pixels.shape[:2]
    msg = t[IMAGE](header=header(ns, frame_id), height=h, width=w, encoding=encoding, is_bigendian=0,
                   step=w * channels, data=pixels.reshape(-1))
    return IMAGE, msg


def detection_array(ns: int, frame_id: str, boxes_xyxy: np.ndarray, class_ids: Sequence[str],
                    scores: Sequence[float] | None = None, ids: Sequence[str] | None = None):
    """A vision_msgs/Detection2DArray (rosbags object): one hypothesis per box, centre/size in pixels."""
    t = typestore().types
    hdr = header(ns, frame_id)
    boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    dets = []
    for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        hyp = t["vision_msgs/msg/ObjectHypothesisWithPose"](
            hypothesis=t["vision_msgs/msg/ObjectHypothesis"](
                class_id=str(class_ids[i]), score=1.0 if scores is None else float(scores[i])),
            pose=t["geometry_msgs/msg/PoseWithCovariance"](
                pose=t["geometry_msgs/msg/Pose"](
                    position=t["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
                    orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)),
                covariance=np.zeros(36, np.float64)),
        )
        bbox = t["vision_msgs/msg/BoundingBox2D"](
            center=t["vision_msgs/msg/Pose2D"](
                position=t["vision_msgs/msg/Point2D"](x=(x1 + x2) / 2, y=(y1 + y2) / 2), theta=0.0),
            size_x=x2 - x1, size_y=y2 - y1)
        dets.append(t["vision_msgs/msg/Detection2D"](header=hdr, results=[hyp], bbox=bbox,
                                                       id="" if ids is None else str(ids[i])))
    return t[DETECTION2D_ARRAY](header=hdr, detections=dets)


def read_detections(msg) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(boxes N×4 xyxy float32, class_ids, scores N float32) from a Detection2DArray: the best
    hypothesis of each detection (the node writes one)."""
    boxes, names, scores = [], [], []
    for d in msg.detections:
        cx, cy = d.bbox.center.position.x, d.bbox.center.position.y
        w, h = d.bbox.size_x, d.bbox.size_y
        boxes.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
        if d.results:
            best = max(d.results, key=lambda r: r.hypothesis.score)
            names.append(best.hypothesis.class_id)
            scores.append(best.hypothesis.score)
        else:
            names.append("")
            scores.append(0.0)
    return (np.asarray(boxes, np.float32).reshape(-1, 4), names, np.asarray(scores, np.float32))


def decode_image(msg, typename: str) -> np.ndarray:
    """A bag image message as H×W×3 BGR uint8, decoded exactly as the node decodes it
    (``slimyolo_ros.ros.convert`` reads rosbags messages too: same field names, numpy data).
    Raises ``ImageDecodeError`` naming what is unsupported."""
    from slimyolo_ros.ros.convert import compressed_to_bgr, image_to_bgr

    img = compressed_to_bgr(msg) if typename == COMPRESSED_IMAGE else image_to_bgr(msg)
    # A bgr8 result is a read-only view of the message buffer; callers draw on it.
    return img if img.flags.writeable and img.flags.c_contiguous else np.array(img, order="C")


def is_image_type(typename: str) -> bool:
    return typename in (IMAGE, COMPRESSED_IMAGE)
