"""slimyolo bag make / bag eval: real rosbag2 files (rosbags), the real detect_node over Fast DDS."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from slimyolo_ros.bag import msgs
from slimyolo_ros.bag.make import DEFAULT_START_NS, make_bag
from slimyolo_ros.bag.types import typestore
from slimyolo_ros.data.synth import generate
from slimyolo_ros.data.visdrone import VISDRONE_CLASSES, read_visdrone, write_annotation

SLIMYOLO = [sys.executable, "-m", "slimyolo_ros.cli"]


def _read(bag: Path) -> dict[str, list]:
    """topic -> [(bag time, message)], plus the connection types under '_types'."""
    ts = typestore()
    out: dict[str, list] = {"_types": {}}
    with Reader(bag) as r:
        for c in r.connections:
            out["_types"][c.topic] = c.msgtype
        for c, t, raw in r.messages():
            out.setdefault(c.topic, []).append((t, ts.deserialize_cdr(raw, c.msgtype)))
    return out


@pytest.fixture(scope="module")
def tiny_det(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("det")
    generate(root, 4, size=(320, 240), seed=3, progress=False, ignore_prob=1.0)
    return root


def test_make_mcap_bgr8_round_trip(tiny_det, tmp_path):
    bag = tmp_path / "b"
    summary = make_bag(tiny_det, bag, fps=10.0, encoding="bgr8", storage="mcap", progress=False)
    assert (bag / "metadata.yaml").is_file() and (bag / "b.mcap").is_file()
    got = _read(bag)
    assert got["_types"] == {"/camera/image_raw": "sensor_msgs/msg/Image",
                             "/ground_truth": "vision_msgs/msg/Detection2DArray",
                             "/ground_truth/ignore_regions": "vision_msgs/msg/Detection2DArray"}
    samples = read_visdrone(tiny_det)
    assert summary["frames"] == len(got["/camera/image_raw"]) == len(got["/ground_truth"]) == len(samples)
    for i, ((t_img, img), (t_gt, gt), (_, ign), s) in enumerate(zip(
            got["/camera/image_raw"], got["/ground_truth"], got["/ground_truth/ignore_regions"], samples,
            strict=True)):
        expect_ns = DEFAULT_START_NS + i * 100_000_000
        assert t_img == t_gt == msgs.stamp_ns(img.header) == msgs.stamp_ns(gt.header) == expect_ns
        assert img.encoding == "bgr8" and (img.width, img.height) == (320, 240)
        np.testing.assert_array_equal(msgs.decode_image(img, "sensor_msgs/msg/Image"),
                                      cv2.imread(str(s.image_path)))
        boxes, names, scores = msgs.read_detections(gt)
        np.testing.assert_allclose(boxes, s.boxes, atol=1e-3)
        assert names == [VISDRONE_CLASSES[c] for c in s.classes]
        assert np.all(scores == 1.0)
        ign_boxes, ign_names, _ = msgs.read_detections(ign)
        np.testing.assert_allclose(ign_boxes, s.ignore, atol=1e-3)
        assert set(ign_names) <= {"ignored"}
    assert sum(len(s.ignore) for s in samples) > 0  # ignore_prob=1: the ignore topic was exercised


@pytest.mark.parametrize("encoding", ["rgb8", "mono8"])
def test_make_raw_encodings(tiny_det, tmp_path, encoding):
    bag = tmp_path / encoding
    make_bag(tiny_det, bag, encoding=encoding, storage="mcap", progress=False)
    first = _read(bag)["/camera/image_raw"][0][1]
    src = cv2.imread(str(read_visdrone(tiny_det)[0].image_path))
    assert first.encoding == encoding
    expect = cv2.cvtColor(src, cv2.COLOR_BGR2RGB if encoding == "rgb8" else cv2.COLOR_BGR2GRAY)
    assert first.step == 320 * (3 if encoding == "rgb8" else 1)
    np.testing.assert_array_equal(np.asarray(first.data).reshape(expect.shape), expect)


def test_make_sqlite3_jpeg_keeps_source_bytes(tiny_det, tmp_path):
    bag = tmp_path / "j"
    make_bag(tiny_det, bag, encoding="jpeg", storage="sqlite3", progress=False)
    assert (bag / "j.db3").is_file()
    got = _read(bag)
    assert got["_types"]["/camera/image_raw/compressed"] == "sensor_msgs/msg/CompressedImage"
    assert "/camera/image_raw" not in got["_types"]
    samples = read_visdrone(tiny_det)
    imgs = got["/camera/image_raw/compressed"]
    assert len(imgs) == len(samples)
    for (_, m), s in zip(imgs, samples, strict=True):
        assert m.format == "jpeg"
        assert bytes(np.asarray(m.data)) == s.image_path.read_bytes()


def test_make_vid_sequences_and_missing_annotations(tmp_path):
    root = tmp_path / "vid"
    for seq, n in (("uav_a", 3), ("uav_b", 2)):
        (root / "sequences" / seq).mkdir(parents=True)
        for k in range(1, n + 1):
            img = np.full((60, 80, 3), 40 * k, np.uint8)
            cv2.imwrite(str(root / "sequences" / seq / f"{k:07d}.jpg"), img)
    (root / "annotations").mkdir()
    # frame_index,target_id,left,top,w,h,score,category,trunc,occl: two cars on frame 2, track ids 7/9,
    # an ignored region on frame 1, an "others" object (dropped) on frame 3
    (root / "annotations" / "uav_a.txt").write_text(
        "2,7,10,10,20,10,1,4,0,0\n2,9,40,30,10,20,1,1,0,0\n1,0,0,0,30,30,0,0,0,0\n3,4,5,5,5,5,1,11,0,0\n")
    bag = tmp_path / "vb"
    summary = make_bag(root, bag, progress=False)
    assert summary["frames"] == 5 and summary["frames_with_ground_truth"] == 3  # uav_b has no annotations
    got = _read(bag)
    gts = [m for _, m in got["/ground_truth"]]
    boxes, names, _ = msgs.read_detections(gts[1])
    assert names == ["car", "pedestrian"] and [d.id for d in gts[1].detections] == ["7", "9"]
    np.testing.assert_allclose(boxes, [[10, 10, 30, 20], [40, 30, 50, 50]])
    assert len(gts[0].detections) == 0 and len(gts[2].detections) == 0
    ign = [m for _, m in got["/ground_truth/ignore_regions"]]
    assert [len(m.detections) for m in ign] == [1, 0, 0]


def test_make_cli_errors(tiny_det, tmp_path):
    r = subprocess.run([*SLIMYOLO, "bag", "make", "--data", str(tiny_det), "--out", str(tmp_path / "x"),
                        "--encoding", "yuv422"], capture_output=True, text=True)
    assert r.returncode == 2 and "yuv422" in r.stderr and "bgr8" in r.stderr
    assert not (tmp_path / "x").exists()
    r = subprocess.run([*SLIMYOLO, "bag", "make", "--data", str(tmp_path / "nope"),
                        "--out", str(tmp_path / "y")], capture_output=True, text=True)
    assert r.returncode == 2 and "nope" in r.stderr
    (tmp_path / "exists").mkdir()
    r = subprocess.run([*SLIMYOLO, "bag", "make", "--data", str(tiny_det), "--out", str(tmp_path / "exists")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "exists already" in r.stderr


def test_make_cli_json(tiny_det, tmp_path):
    r = subprocess.run([*SLIMYOLO, "bag", "make", "--data", str(tiny_det), "--out", str(tmp_path / "c"),
                        "--fps", "5", "--storage", "sqlite3", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["frames"] == 4 and summary["storage"] == "sqlite3"
    with Reader(tmp_path / "c") as rd:
        assert rd.duration == 3 * 200_000_000 + 1  # rosbags reports last - first + 1 ns
        assert rd.message_count == 12


def test_bad_annotation_line_is_named(tmp_path):
    root = tmp_path / "bad"
    (root / "images").mkdir(parents=True)
    cv2.imwrite(str(root / "images" / "a.jpg"), np.zeros((50, 50, 3), np.uint8))
    write_annotation(root / "annotations" / "a.txt", [[1, 1, 5, 5]], [4])
    with open(root / "annotations" / "a.txt", "a") as f:
        f.write("1,2,3\n")
    r = subprocess.run([*SLIMYOLO, "bag", "make", "--data", str(root), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "a.txt:2" in r.stderr
