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
from slimyolo_ros.ros.detections import ClassIndex, read, to_message

SLIMYOLO = [sys.executable, "-m", "slimyolo_ros.cli"]
REPO = Path(__file__).resolve().parents[1]


def detection_array(ns: int, frame_id: str, boxes, names, scores=None, ids=None):
    """A rosbags Detection2DArray through the codec: boxes N×4 with class names (score 1 by default)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    classes = ClassIndex()
    rows = np.column_stack([boxes, np.ones(len(boxes)) if scores is None else scores, classes.indices(names)])
    return to_message(rows, msgs.header(ns, frame_id), classes.names, ids, types=typestore().types)


def read_detections(msg):
    """(boxes, class names, scores) of a Detection2DArray."""
    return read(msg)[:3]


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
        boxes, names, scores = read_detections(gt)
        np.testing.assert_allclose(boxes, s.boxes, atol=1e-3)
        assert names == [VISDRONE_CLASSES[c] for c in s.classes]
        assert np.all(scores == 1.0)
        ign_boxes, ign_names, _ = read_detections(ign)
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
    boxes, names, _ = read_detections(gts[1])
    assert names == ["car", "pedestrian"] and [d.id for d in gts[1].detections] == ["7", "9"]
    np.testing.assert_allclose(boxes, [[10, 10, 30, 20], [40, 30, 50, 50]])
    assert len(gts[0].detections) == 0 and len(gts[2].detections) == 0
    ign = [m for _, m in got["/ground_truth/ignore_regions"]]
    assert [len(m.detections) for m in ign] == [1, 0, 0]
    with Reader(bag) as r:  # target ids restart per sequence: the bag says where each one is
        assert json.loads(r.storage.metadata.custom["slimyolo_ros.sequences"]) == [["uav_a", 3], ["uav_b", 2]]


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


# ----------------------------------------------------------------------------------------------- bag eval
# The real detect_node in a subprocess, the real Detector. Model: the shipped SlimYOLOv3 when models/ has
# it (a trained model: the mAP comparison is about real detections); otherwise a seeded random-init
# narrowed SPP3 (mAP ~0 both ways, still hundreds of boxes per frame that must agree).
SHIPPED = Path(__file__).resolve().parents[1] / "models" / "slimyolov3-synth.pt"


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    if SHIPPED.is_file():
        return SHIPPED
    import torch

    from slimyolo_ros.darknet.checkpoint import save_checkpoint
    from slimyolo_ros.darknet.model import Darknet

    torch.manual_seed(0)
    net = Darknet.from_file(Path(__file__).resolve().parents[1] / "models" / "yolov3-spp3-tiny-width.cfg")
    return save_checkpoint(tmp_path_factory.mktemp("model") / "m.pt", net, list(VISDRONE_CLASSES), 320)


def _params(path: Path, weights: Path) -> Path:
    # The offline evaluator's operating point (slimyolo eval defaults), so both see the same boxes.
    path.write_text(
        "slimyolo_detector:\n  ros__parameters:\n"
        f"    weights: {weights}\n    device: cpu\n    conf_threshold: 0.001\n    nms_threshold: 0.5\n"
        "    max_detections: 300\n    publish_debug_image: false\n    stats_period: 0.0\n")
    return path


def _bag_eval(args: list[str], env: dict, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([*SLIMYOLO, "bag", "eval", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


@pytest.mark.slow
@pytest.mark.ros
def test_lockstep_equals_offline_eval_and_records(tiny_det, model, tmp_path, ros_env):
    bag = tmp_path / "bag"
    make_bag(tiny_det, bag, progress=False)
    out, rec = tmp_path / "out", tmp_path / "rec"
    r = _bag_eval(["--bag", str(bag), "--params", str(_params(tmp_path / "p.yaml", model)), "--lockstep",
                   "--record", str(rec), "--out", str(out), "--json", "--timeout", "120"], ros_env)
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads(r.stdout)
    off = subprocess.run([*SLIMYOLO, "eval", "--weights", str(model), "--data", str(tiny_det),
                          "--device", "cpu", "--json"], capture_output=True, text=True, timeout=240)
    assert off.returncode == 0, off.stderr[-3000:]
    off = json.loads(off.stdout)
    assert rep["frames"] == rep["answered"] == 4 and rep["dropped"] == 0 and rep["error"] is None
    assert rep["frames_scored"] == 4
    assert abs(rep["map50"] - off["map50"]) <= 0.005, (rep["map50"], off["map50"])
    assert abs(rep["map"] - off["map"]) <= 0.005, (rep["map"], off["map"])
    for k in ("p50", "p95", "p99"):
        assert rep["latency_ms"][k] > 0
    assert json.loads((out / "report.json").read_text())["map50"] == rep["map50"]
    assert len(rep["annotated"]) == 4 and all(cv2.imread(p) is not None for p in rep["annotated"])
    # the recorded bag: the source topics plus one Detection2DArray per frame, stamped like its image
    got = _read(rec)
    assert got["_types"]["/detections"] == "vision_msgs/msg/Detection2DArray"
    assert len(got["/camera/image_raw"]) == len(got["/ground_truth"]) == 4
    det_stamps = sorted(msgs.stamp_ns(m.header) for _, m in got["/detections"])
    assert det_stamps == [msgs.stamp_ns(m.header) for _, m in got["/camera/image_raw"]]
    assert sum(len(m.detections) for _, m in got["/detections"]) == rep["detections"] > 0
    # One pipeline: the node's boxes for each frame are the offline Detector's boxes for that image.
    from slimyolo_ros.data.visdrone import read_image
    from slimyolo_ros.detect import DetectorOptions, load_detector

    det = load_detector(str(model), DetectorOptions(device="cpu", conf_threshold=0.001, nms_threshold=0.5))
    by_stamp = {msgs.stamp_ns(m.header): m for _, m in got["/detections"]}
    for (_, img), s in zip(got["/camera/image_raw"], read_visdrone(tiny_det), strict=True):
        offline = det(read_image(s.image_path))
        boxes, names, scores = read_detections(by_stamp[msgs.stamp_ns(img.header)])
        assert len(boxes) == len(offline)
        order = np.lexsort((offline[:, 0], -offline[:, 4]))
        mine = np.lexsort((boxes[:, 0], -scores))
        np.testing.assert_allclose(boxes[mine], offline[order, :4], atol=0.05)
        np.testing.assert_allclose(scores[mine], offline[order, 4], atol=1e-4)
        assert [names[i] for i in mine] == [VISDRONE_CLASSES[int(c)] for c in offline[order, 5]]


def _write_bag(path: Path, frames: list[tuple[str, bool]], size=(64, 48)) -> None:
    """A hand-made bag: one Image per (encoding, has ground truth), 10 fps."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    ts = typestore()
    w, h = size
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as wr:
        img_c = wr.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=ts)
        gt_c = wr.add_connection("/ground_truth", "vision_msgs/msg/Detection2DArray", typestore=ts)
        for i, (enc, has_gt) in enumerate(frames):
            ns = DEFAULT_START_NS + i * 100_000_000
            _, m = msgs.image_message(np.full((h, w, 3), 30 * i, np.uint8), "bgr8", ns, "camera")
            m.encoding = enc  # the same bytes, declared in an encoding the node cannot read
            wr.write(img_c, ns, ts.serialize_cdr(m, "sensor_msgs/msg/Image"))
            if has_gt:
                gt = detection_array(ns, "camera", [[5, 5, 20, 20]], ["car"])
                wr.write(gt_c, ns, ts.serialize_cdr(gt, "vision_msgs/msg/Detection2DArray"))


def test_eval_bag_without_image_topic(tmp_path, ros_env):
    from rosbags.rosbag2 import StoragePlugin, Writer

    ts = typestore()
    bag = tmp_path / "gt_only"
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as wr:
        c = wr.add_connection("/ground_truth", "vision_msgs/msg/Detection2DArray", typestore=ts)
        wr.write(c, 1, ts.serialize_cdr(detection_array(1, "camera", [], []),
                                        "vision_msgs/msg/Detection2DArray"))
    r = _bag_eval(["--bag", str(bag), "--params", str(tmp_path / "none.yaml")], ros_env, timeout=60)
    assert r.returncode == 2
    assert "no image topic" in r.stderr and "/ground_truth" in r.stderr and str(bag) in r.stderr
    r = _bag_eval(["--bag", str(tmp_path / "missing")], ros_env, timeout=60)
    assert r.returncode == 2 and "missing" in r.stderr and "no such bag" in r.stderr


@pytest.mark.slow
@pytest.mark.ros
def test_eval_unknown_encoding_and_frames_without_ground_truth(model, tmp_path, ros_env):
    bag = tmp_path / "mixed"
    _write_bag(bag, [("bgr8", True), ("bgr8", True), ("bgr8", False), ("yuv422", True)])
    out = tmp_path / "out"
    r = _bag_eval(["--bag", str(bag), "--params", str(_params(tmp_path / "p.yaml", model)), "--lockstep",
                   "--out", str(out), "--json", "--timeout", "120"], ros_env)
    assert r.returncode == 1, r.stderr[-3000:]
    assert "yuv422" in r.stderr and "frame 3" in r.stderr
    rep = json.loads(r.stdout)
    assert rep == json.loads((out / "report.json").read_text())
    assert rep["frames"] == rep["answered"] == 3 and rep["skipped"] == 1
    assert rep["frames_without_ground_truth"] == 1 and rep["frames_scored"] == 2
    assert rep["map50"] is not None and rep["ground_truth_per_class"] == {"car": 2}
    assert any("no /ground_truth message" in w for w in rep["warnings"])


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@pytest.mark.slow
@pytest.mark.ros
def test_eval_node_dies_mid_replay(model, tmp_path, ros_env):
    import os
    import signal
    import time

    bag = tmp_path / "long"
    _write_bag(bag, [("bgr8", True)] * 8)  # 10 fps; at --rate 0.05 one frame every 2 s
    out = tmp_path / "out"
    proc = subprocess.Popen([*SLIMYOLO, "bag", "eval", "--bag", str(bag), "--params",
                             str(_params(tmp_path / "p.yaml", model)), "--rate", "0.05", "--out", str(out),
                             "--json", "--timeout", "120"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ros_env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "ready" not in ((out / "node.log").read_text()
                                                              if (out / "node.log").exists() else ""):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        time.sleep(4.0)  # the warm-up frame and the first frames go through
        nodes = _children(proc.pid)
        assert nodes, "detect_node subprocess not found"
        for pid in nodes:
            os.kill(pid, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, stderr[-3000:]
    assert "detect_node exited with code -9" in stderr
    rep = json.loads(stdout)
    assert "detect_node exited" in rep["error"]
    assert json.loads((out / "report.json").read_text())["error"] == rep["error"]
    assert rep["frames"] < 8  # the replay stopped where the node died
    assert rep["answered"] <= rep["frames"]


# ------------------------------------------------------------------------------------- bag eval --track
@pytest.fixture(scope="module")
def tiny_flight(tmp_path_factory) -> tuple[Path, Path]:
    """Two synthetic flights (target ids restart in each) and their bag: (VID root, bag)."""
    from slimyolo_ros.data.flight import generate_flights

    root = tmp_path_factory.mktemp("flight")
    generate_flights(root / "vid", 2, seed=4, progress=False, size=(640, 480), frames=8, car_length=60)
    make_bag(root / "vid", root / "bag", fps=10, progress=False)
    return root / "vid", root / "bag"


def _rescore(vid: Path, rec: Path) -> dict:
    """The recorded /tracks scored here against the flight's own annotation files, flight by flight."""
    from slimyolo_ros.bag.vid import read_vid
    from slimyolo_ros.evaluate.mot import MotFrame, evaluate_mot

    tracks = {msgs.stamp_ns(m.header): m for _, m in _read(rec)["/tracks"]}
    seqs: dict[str, list] = {}
    for i, f in enumerate(read_vid(vid)):
        m = tracks[DEFAULT_START_NS + i * 100_000_000]
        boxes, names, _ = read_detections(m)
        seqs.setdefault(f.sequence, []).append(MotFrame(
            f.sample.boxes, f.sample.classes, f.track_ids, boxes,
            np.asarray([VISDRONE_CLASSES.index(n) for n in names], np.int64), [d.id for d in m.detections],
            f.sample.ignore))
    return evaluate_mot(list(seqs.values()), VISDRONE_CLASSES)


@pytest.mark.ros
@pytest.mark.slow
def test_eval_track_flight_bag_lockstep_and_realtime(tiny_flight, model, tmp_path, ros_env):
    vid, bag = tiny_flight
    out, rec = tmp_path / "out", tmp_path / "rec"
    r = _bag_eval(["--bag", str(bag), "--params", str(_params(tmp_path / "p.yaml", model)), "--track",
                   "--record", str(rec), "--out", str(out), "--frames", "3", "--json", "--timeout", "120"],
                  ros_env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads(r.stdout)
    assert rep == json.loads((out / "report.json").read_text()) and rep["error"] is None
    # the params file says conf_threshold 0.001; tracking mode gives the detector the one in
    # config/track_detector.yaml, and says so
    import yaml

    shipped = yaml.safe_load((REPO / "config" / "track_detector.yaml").read_text())
    value = shipped["slimyolo_detector"]["ros__parameters"]["conf_threshold"]
    assert rep["detector_conf_threshold"] == {"value": value,
                                              "from": str(REPO / "config" / "track_detector.yaml")}
    for mode in ("lockstep", "realtime"):
        t = rep[mode]["tracking"]
        assert f"conf_threshold:={value!r}" in rep[mode]["node_command"]
        assert rep[mode]["detector_conf_threshold"] == rep["detector_conf_threshold"]
        assert t["sequences"] == ["flight_0004_000", "flight_0004_001"]
        assert t["answered"] + t["dropped"] == 16 and t["frames_scored"] == t["answered"] > 0
        for m in (t["overall"], *t["per_class"].values()):
            for k in ("HOTA", "MOTA", "IDF1", "IDSW", "Frag", "MT", "ML"):
                assert np.isfinite(m[k]), (mode, k, m)
        assert t["overall"]["gt_tracks"] > 0 and t["per_class"]
    lock = rep["lockstep"]["tracking"]
    assert lock["answered"] == 16 and lock["tracks"] > 0 and lock["overall"]["HOTA"] > 0
    assert len(lock["annotated"]) == 3
    assert all(cv2.imread(p).shape == (480, 640, 3) for p in lock["annotated"])
    # the lockstep pass is recorded: every frame's tracks carry ids, the detector's boxes all score >= 0.1
    got = _read(rec)
    assert len(got["/tracks"]) == 16 and all(d.id for _, m in got["/tracks"] for d in m.detections)
    assert all(s >= 0.1 - 1e-6 for _, m in got["/detections"] for s in read_detections(m)[2])
    # and scoring them independently, flight by flight, gives the report's numbers
    again = _rescore(vid, rec)["overall"]
    for k in ("HOTA", "MOTA", "IDF1", "IDSW"):
        assert again[k] == pytest.approx(lock["overall"][k], abs=1e-6), k


def test_track_scoring_keeps_the_bags_sequences_apart():
    """Target ids restart per flight: ground-truth id "1" in two sequences is two objects. A tracker that
    calls them 7 and 8 made no ID switch; scored as one sequence it would have made one."""
    from slimyolo_ros.bag.score import Run, score_tracks
    from slimyolo_ros.bag.source import Frame, Source

    ts = typestore()
    box = np.array([[10, 10, 50, 40]], np.float32)
    frames, tracks, gt, ids = [], {}, {}, {}
    for i, tid in enumerate(["7", "7", "8", "8"]):
        stamp = DEFAULT_START_NS + i * 100_000_000
        frames.append(Frame(i, stamp, stamp, "sensor_msgs/msg/Image", 64, 48))
        raw = ts.serialize_cdr(detection_array(stamp, "camera", box + i, ["car"], [0.9], ids=[tid]),
                               "vision_msgs/msg/Detection2DArray")
        tracks[stamp] = (1.0 + i, bytes(raw))
        gt[stamp], ids[stamp] = (box + i, ["car"]), ["1"]
    run = Run(command=[], log=None, frames=frames, tracks=tracks,
               published={f.stamp: 0.5 + f.index for f in frames})
    src = Source(Path("b"), "/camera/image_raw", "sensor_msgs/msg/Image", 4, gt, {}, True, None, ids,
                  [("a", 2), ("b", 2)], 10.0)
    t = score_tracks(run, src, ["car"])
    assert t["sequences"] == ["a", "b"] and t["frames_scored"] == 4 and t["tracks"] == 2
    assert t["overall"]["IDSW"] == 0 and t["overall"]["HOTA"] == pytest.approx(1.0)
    assert t["latency_ms"]["p50"] == pytest.approx(500.0)
    src.sequences = [("bag", 4)]  # the same frames as one sequence: the switch 7 -> 8 counts
    assert score_tracks(run, src, ["car"])["overall"]["IDSW"] == 1


def test_track_scoring_needs_target_ids():
    """A bag made from still images has no target ids: no MOT metrics, one warning saying why."""
    from slimyolo_ros.bag.score import Run, score_tracks
    from slimyolo_ros.bag.source import Frame, Source

    ts = typestore()
    stamp = DEFAULT_START_NS
    raw = ts.serialize_cdr(detection_array(stamp, "camera", [[1, 1, 9, 9]], ["car"], [0.9], ids=["3"]),
                           "vision_msgs/msg/Detection2DArray")
    run = Run(command=[], log=None, frames=[Frame(0, stamp, stamp, "sensor_msgs/msg/Image", 16, 16)],
               tracks={stamp: (1.0, bytes(raw))}, published={stamp: 0.9})
    src = Source(Path("still"), "/camera/image_raw", "sensor_msgs/msg/Image", 1,
                  {stamp: (np.array([[1, 1, 9, 9]], np.float32), ["car"])}, {}, True, None, {stamp: [""]},
                  [("bag", 1)], 10.0)
    t = score_tracks(run, src, ["car"])
    assert t["overall"] is None and t["answered"] == 1 and t["tracks"] == 1
    assert any("without a target id" in w and "still" in w for w in run.warnings)


def test_the_detectors_threshold_when_tracking_is_a_stated_setting(tmp_path):
    """config/track_detector.yaml's value unless --track-conf-threshold or --node-arg conf_threshold says
    otherwise; the source is named; a value outside [0, 1] is an error naming where it came from."""
    import yaml

    from slimyolo_ros.bag.replay import ReplayConfig, detector_overrides, track_conf_threshold
    from slimyolo_ros.bag.types import BagError

    shipped = REPO / "config" / "track_detector.yaml"
    value = yaml.safe_load(shipped.read_text())["slimyolo_detector"]["ros__parameters"]["conf_threshold"]
    base = ReplayConfig(bag=tmp_path / "b", track=True, node_params=["nms_threshold:=0.5"])
    assert track_conf_threshold(base) == (value, str(shipped))
    assert detector_overrides(base) == [f"conf_threshold:={float(value)!r}", "nms_threshold:=0.5"]
    flag = ReplayConfig(bag=tmp_path / "b", track=True, track_conf_threshold=1.0)
    assert track_conf_threshold(flag) == (1.0, "--track-conf-threshold")
    assert detector_overrides(flag) == ["conf_threshold:=1.0"]  # a double for the node, not the integer 1
    mine = ReplayConfig(bag=tmp_path / "b", track=True, track_conf_threshold=0.2,
                        node_params=["conf_threshold:=0.3"])
    assert track_conf_threshold(mine) == (0.3, "--node-arg conf_threshold")
    assert detector_overrides(mine) == ["conf_threshold:=0.3"]
    assert detector_overrides(ReplayConfig(bag=tmp_path / "b", node_params=["x:=1"])) == ["x:=1"]
    for bad, source in ((ReplayConfig(bag=tmp_path / "b", track=True, track_conf_threshold=1.5),
                         "--track-conf-threshold"),
                        (ReplayConfig(bag=tmp_path / "b", track=True, node_params=["conf_threshold:=high"]),
                         "--node-arg conf_threshold")):
        with pytest.raises(BagError, match=f"{source}: conf_threshold .* is not a number in"):
            track_conf_threshold(bad)


def test_track_conf_threshold_on_the_command_line(tmp_path):
    r = subprocess.run([*SLIMYOLO, "bag", "eval", "--bag", str(tmp_path / "none"), "--track",
                        "--track-conf-threshold", "abc"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--track-conf-threshold: invalid float value: 'abc'" in r.stderr, r.stderr
