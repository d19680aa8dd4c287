"""Image / CompressedImage <-> BGR conversion and Detection2DArray building, on real ROS messages.

The expected arrays are built here with numpy byte layouts (channel order, row padding, byte
order) independently of convert.py, so a wrong stride or swapped channel in convert.py fails.
"""

from __future__ import annotations

import array

import cv2
import numpy as np
import pytest
from ros_helpers.images import bgr_to_compressed
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from slimyolo_ros.ros.convert import (
    ImageDecodeError,
    bgr_to_image,
    compressed_to_bgr,
    image_to_bgr,
)
from slimyolo_ros.ros.detections import (
    BadDetections,
    ClassIndex,
    label_info,
    label_names,
    read,
    to_array,
    to_cdr,
    to_message,
)

H, W = 7, 5


def detection2d_array_to_numpy(msg, class_names) -> np.ndarray:
    return to_array(msg, ClassIndex(class_names))


@pytest.fixture(scope="module")
def bgr() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (H, W, 3), dtype=np.uint8)


def raw_msg(pixels: np.ndarray, encoding: str, pad: int = 0, big_endian: bool = False) -> Image:
    """Image with `pad` junk bytes after every row, built straight from the byte layout."""
    h, w = pixels.shape[:2]
    if pixels.dtype == np.uint16:
        pixels = pixels.astype(">u2" if big_endian else "<u2")
    rows = pixels.reshape(h, -1).view(np.uint8).reshape(h, -1)
    junk = np.full((h, pad), 0xAB, dtype=np.uint8)
    data = np.concatenate([rows, junk], axis=1)
    msg = Image()
    msg.height, msg.width, msg.encoding = h, w, encoding
    msg.is_bigendian = big_endian
    msg.step = data.shape[1]
    msg.data = array.array("B", data.tobytes())
    return msg


def layouts(bgr: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """encoding -> (pixels in that encoding's layout, the BGR image a decoder must return)."""
    b, g, r = bgr[..., 0], bgr[..., 1], bgr[..., 2]
    alpha = np.full_like(b, 77)
    gray8 = np.arange(H * W, dtype=np.uint8).reshape(H, W) * 7
    gray16 = (np.arange(H * W, dtype=np.uint16).reshape(H, W) * 1543) + 5
    return {
        "bgr8": (bgr, bgr),
        "rgb8": (np.dstack([r, g, b]), bgr),
        "bgra8": (np.dstack([b, g, r, alpha]), bgr),
        "rgba8": (np.dstack([r, g, b, alpha]), bgr),
        "mono8": (gray8, np.dstack([gray8] * 3)),
        # full-range 16 -> 8 bit: the high byte
        "mono16": (gray16, np.dstack([(gray16 >> 8).astype(np.uint8)] * 3)),
    }


@pytest.mark.parametrize("encoding", ["bgr8", "rgb8", "bgra8", "rgba8", "mono8", "mono16"])
@pytest.mark.parametrize("pad", [0, 3])
def test_every_encoding_decodes_with_and_without_row_padding(bgr, encoding, pad):
    pixels, expected = layouts(bgr)[encoding]
    out = image_to_bgr(raw_msg(pixels, encoding, pad=pad))
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)


def test_mono16_honours_is_bigendian(bgr):
    pixels, expected = layouts(bgr)["mono16"]
    big = raw_msg(pixels, "mono16", pad=2, big_endian=True)
    little = raw_msg(pixels, "mono16", pad=2, big_endian=False)
    assert bytes(big.data) != bytes(little.data)
    np.testing.assert_array_equal(image_to_bgr(big), expected)
    np.testing.assert_array_equal(image_to_bgr(little), expected)
    # the same bytes read with the wrong flag give different pixels: the flag is really used
    little.is_bigendian = True
    assert not np.array_equal(image_to_bgr(little), expected)


def test_bgr8_is_a_view_of_the_message_data(bgr):
    msg = raw_msg(bgr, "bgr8", pad=4)
    out = image_to_bgr(msg)
    assert np.shares_memory(out, np.frombuffer(msg.data, dtype=np.uint8))


@pytest.mark.parametrize("encoding", ["bgr8", "rgb8", "bgra8", "rgba8"])
def test_colour_round_trip_through_message(bgr, encoding):
    header = Header(frame_id="cam")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    msg = bgr_to_image(bgr, encoding, header=header)
    assert (msg.encoding, msg.width, msg.height) == (encoding, W, H)
    assert msg.step == W * (4 if "a" in encoding[3:] else 3)
    assert msg.header.frame_id == "cam" and msg.header.stamp.nanosec == 345
    np.testing.assert_array_equal(image_to_bgr(msg), bgr)


@pytest.mark.parametrize("encoding", ["mono8", "mono16"])
def test_mono_round_trip_through_message(bgr, encoding):
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    msg = bgr_to_image(bgr, encoding)
    assert msg.step == W * (2 if encoding == "mono16" else 1)
    np.testing.assert_array_equal(image_to_bgr(msg), np.dstack([gray] * 3))


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_compressed_round_trip(fmt):
    # smooth image so JPEG is near-lossless; PNG must be exact
    yy, xx = np.mgrid[0:48, 0:64]
    img = np.dstack([xx * 4, yy * 5, (xx + yy) * 2]).astype(np.uint8)
    out = compressed_to_bgr(bgr_to_compressed(img, fmt, quality=95))
    assert out.shape == img.shape
    if fmt == "png":
        np.testing.assert_array_equal(out, img)
    else:
        assert np.abs(out.astype(int) - img).mean() < 2.0


def bad(msg, decode=image_to_bgr) -> ImageDecodeError:
    with pytest.raises(ImageDecodeError) as info:
        decode(msg)
    return info.value


def test_unsupported_encoding_is_named(bgr):
    msg = raw_msg(bgr, "bgr8")
    msg.encoding = "yuv422"
    err = bad(msg)
    assert "yuv422" in str(err) and err.kind == "encoding"


def test_data_shorter_than_step_times_height(bgr):
    msg = raw_msg(bgr, "bgr8", pad=1)
    msg.data = msg.data[:-5]
    err = bad(msg)
    assert err.kind == "short_data"
    assert f"step*height = {msg.step}*{H}" in str(err) and str(len(msg.data)) in str(err)


def test_step_smaller_than_row(bgr):
    msg = raw_msg(bgr, "rgba8")
    msg.step = W * 4 - 1
    err = bad(msg)
    assert err.kind == "step" and f"step {W * 4 - 1}" in str(err) and "rgba8" in str(err)


@pytest.mark.parametrize("field", ["width", "height"])
def test_zero_width_or_height(bgr, field):
    msg = raw_msg(bgr, "bgr8")
    setattr(msg, field, 0)
    err = bad(msg)
    assert err.kind == "size" and f"{field}=0" in str(err)


def test_corrupt_jpeg_garbage_and_truncated(bgr):
    good = bgr_to_compressed(np.repeat(np.repeat(bgr, 8, 0), 8, 1), "jpeg")
    truncated = CompressedImage(format="jpeg")
    truncated.data = good.data[: len(good.data) // 2]
    err = bad(truncated, compressed_to_bgr)
    assert err.kind == "truncated" and "JPEG" in str(err) and "truncated" in str(err)

    garbage = CompressedImage(format="jpeg")
    garbage.data = array.array("B", b"this is not a jpeg" * 10)
    err = bad(garbage, compressed_to_bgr)
    assert err.kind == "corrupt" and "jpeg" in str(err)

    # right signature and end marker, garbage in between: OpenCV itself refuses it
    broken = CompressedImage(format="jpeg")
    broken.data = array.array("B", b"\xff\xd8" + bytes(200) + b"\xff\xd9")
    err = bad(broken, compressed_to_bgr)
    assert err.kind == "corrupt" and "JPEG" in str(err)


def test_unsupported_compressed_format_is_named():
    msg = CompressedImage(format="16UC1; compressedDepth png")
    msg.data = array.array("B", b"\x89PNG\r\n\x1a\n")
    err = bad(msg, compressed_to_bgr)
    assert err.kind == "format" and "compressedDepth" in str(err)


def test_detection2d_array_fields():
    header = Header(frame_id="uav/cam")
    header.stamp.sec, header.stamp.nanosec = 1700000000, 123456789
    dets = np.array([[10, 20, 50, 100, 0.9, 1], [100.5, 0, 101.5, 3, 0.3, 0]], dtype=np.float32)
    from rclpy.serialization import deserialize_message
    from vision_msgs.msg import Detection2DArray

    msg = deserialize_message(to_cdr(dets, header, ["person", "car"]), Detection2DArray)
    assert msg.header.frame_id == "uav/cam" and msg.header.stamp.nanosec == 123456789
    assert len(msg.detections) == 2
    d0, d1 = msg.detections
    for d in (d0, d1):
        assert d.header.frame_id == "uav/cam" and d.header.stamp.sec == 1700000000
        assert d.id == "" and len(d.results) == 1
    assert (d0.bbox.center.position.x, d0.bbox.center.position.y) == (30.0, 60.0)
    assert (d0.bbox.size_x, d0.bbox.size_y) == (40.0, 80.0)
    assert d0.results[0].hypothesis.class_id == "car"
    assert d0.results[0].hypothesis.score == pytest.approx(0.9)
    assert d1.results[0].hypothesis.class_id == "person"
    assert d1.bbox.center.position.x == pytest.approx(101.0) and d1.bbox.size_y == pytest.approx(3.0)
    np.testing.assert_allclose(detection2d_array_to_numpy(msg, ["person", "car"]), dets, atol=1e-4)

    empty = deserialize_message(to_cdr(np.zeros((0, 6), np.float32), header, ["person"]),
                                Detection2DArray)
    assert empty.detections == [] and empty.header.frame_id == "uav/cam"


@pytest.mark.parametrize("frame_id", ["", "c", "uav/camera_optical", "kamera_ø"])
@pytest.mark.parametrize("n", [0, 1, 2, 37])
def test_hand_serialised_detections_equal_rclpy_serialisation(frame_id, n):
    """The node publishes to_cdr's bytes: they must read back as exactly the message
    rclpy serialises from the message object, with the same length (same layout), for every alignment
    case (frame_id and class-name lengths mod 4 and 8), an out-of-range class index, and scores outside
    [0, 1]. (Not compared byte for byte: Fast CDR leaves alignment padding uninitialised.)"""
    from rclpy.serialization import deserialize_message, serialize_message
    from vision_msgs.msg import Detection2DArray

    names = ["pedestrian", "people", "bicycle", "car", "van", "truck", "tricycle", "awning-tricycle", "bus",
             "motor", "é"]
    rng = np.random.default_rng(n)
    dets = np.zeros((n, 6), np.float32)
    dets[:, :2] = rng.uniform(-5, 1900, (n, 2))
    dets[:, 2:4] = dets[:, :2] + rng.uniform(0.5, 90, (n, 2))
    dets[:, 4] = rng.uniform(-0.1, 1.1, n)
    dets[:, 5] = rng.integers(0, len(names) + 1, n)  # len(names): out of range -> its number as the name
    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = -3 if n == 1 else 1700000000 + n, 999999999
    raw = to_cdr(dets, header, names)
    reference = serialize_message(to_message(dets, header, names))
    assert len(raw) == len(reference)
    back = deserialize_message(raw, Detection2DArray)
    assert back == deserialize_message(reference, Detection2DArray)
    assert len(back.detections) == n and back.header.frame_id == frame_id
    if n:
        ok = dets[:, 5] < len(names)
        got = detection2d_array_to_numpy(back, names)
        np.testing.assert_allclose(got[ok, :4], dets[ok, :4], atol=1e-3)
        np.testing.assert_allclose(got[:, 4], np.clip(dets[:, 4], 0, 1), atol=1e-6)


def test_label_info_maps_ids_to_names():
    msg = label_info(["person", "car", "bus"], 0.3)
    assert [(c.class_id, c.class_name) for c in msg.class_map] == [(0, "person"), (1, "car"), (2, "bus")]
    assert msg.threshold == pytest.approx(0.3)
    assert label_names(msg) == ["person", "car", "bus"]


def test_rosbags_and_rclpy_messages_are_built_and_read_alike():
    """The codec serves the bag tools' rosbags messages as it serves the nodes' rclpy messages: the same
    detections built with either serialise to the same message, and read back the same."""
    from rclpy.serialization import deserialize_message, serialize_message
    from vision_msgs.msg import Detection2DArray

    from slimyolo_ros.bag.msgs import header as bag_header
    from slimyolo_ros.bag.types import DETECTION2D_ARRAY, typestore

    ts = typestore()
    dets = np.array([[10, 20, 50, 100, 0.9, 1], [0, 0, 4, 4, 0.5, 7]], np.float32)
    names, ids = ["person", "car"], ["12", "3"]
    bag_msg = to_message(dets, bag_header(1_700_000_000_250_000_000, "cam"), names, ids, types=ts.types)
    header = Header(frame_id="cam")
    header.stamp.sec, header.stamp.nanosec = 1_700_000_000, 250_000_000
    ros_msg = to_message(dets, header, names, ids)
    raw = bytes(ts.serialize_cdr(bag_msg, DETECTION2D_ARRAY))
    assert deserialize_message(raw, Detection2DArray) == ros_msg
    assert ts.deserialize_cdr(serialize_message(ros_msg), DETECTION2D_ARRAY).detections[1].id == "3"
    for m in (bag_msg, ros_msg):
        got = read(m)
        assert got.names == ["car", "7"] and got.ids == ids
        classes = ClassIndex(names)
        np.testing.assert_allclose(to_array(m, classes), [[10, 20, 50, 100, 0.9, 1], [0, 0, 4, 4, 0.5, 2]],
                                   atol=1e-6)
        assert classes.names == ["person", "car", "7"]  # a name the index did not know gets the next index


@pytest.mark.parametrize("field,value,needle", [("size_x", float("nan"), "detections[0].bbox"),
                                                ("size_y", -1.0, "detections[0].bbox"),
                                                ("score", float("inf"), "detections[0].results score")])
def test_unusable_detections_are_named(field, value, needle):
    msg = to_message(np.array([[1, 1, 5, 5, 0.5, 0]], np.float32), Header(), ["car"])
    d = msg.detections[0]
    if field == "score":
        d.results[0].hypothesis.score = value
    else:
        setattr(d.bbox, field, value)
    with pytest.raises(BadDetections, match=needle.replace("[", r"\[").replace("]", r"\]")):
        to_array(msg, ClassIndex())
