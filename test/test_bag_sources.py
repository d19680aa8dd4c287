"""Bags as rosbag2 records them (storage formats, compression, split files, many topics) and ground truth
from annotation files (VisDrone-VID, MOT Challenge, COCO) matched to a bag's frames by order or stamp."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from conftest import shared_bags
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer

from slimyolo_ros.bag import msgs, timeline
from slimyolo_ros.bag.ground_truth import attach, stamp_from_name
from slimyolo_ros.bag.score import Run, score_tracks
from slimyolo_ros.bag.source import Frame, image_frames, open_reader, open_source
from slimyolo_ros.bag.types import BagError, typestore
from slimyolo_ros.errors import DatasetError
from slimyolo_ros.ros.detections import to_cdr

T0 = 1_700_000_000_000_000_000
STEP = 100_000_000  # 10 fps


def _write(path: Path, n: int, storage=StoragePlugin.MCAP, compression=None, first: int = 0,
           compressed_image: bool = False) -> list[int]:
    """A bag of ``n`` images (frame k's pixels all = 10 k), a camera_info-like topic beside them;
    header stamp = log time; the stamps."""
    ts = typestore()
    stamps = []
    w = Writer(path, version=9, storage_plugin=storage)
    if compression:
        w.set_compression(compression, CompressionFormat.ZSTD)
    with w:
        img = w.add_connection("/cam/image_raw", "sensor_msgs/msg/Image", typestore=ts)
        other = w.add_connection("/chatter", "std_msgs/msg/String", typestore=ts)
        jpg = w.add_connection("/cam/image_raw/compressed", "sensor_msgs/msg/CompressedImage",
                               typestore=ts) if compressed_image else None
        for k in range(first, first + n):
            ns = T0 + k * STEP
            _, m = msgs.image_message(np.full((48, 64, 3), 10 * k, np.uint8), "bgr8", ns, "camera")
            w.write(img, ns, ts.serialize_cdr(m, "sensor_msgs/msg/Image"))
            w.write(other, ns, ts.serialize_cdr(ts.types["std_msgs/msg/String"](data=f"x{k}"),
                                                "std_msgs/msg/String"))
            if jpg is not None:
                _, c = msgs.image_message(np.full((48, 64, 3), 10 * k, np.uint8), "jpeg", ns, "camera")
                w.write(jpg, ns, ts.serialize_cdr(c, "sensor_msgs/msg/CompressedImage"))
            stamps.append(ns)
    return stamps


def _frames(bag: Path, topic: str | None = "/cam/image_raw") -> tuple[list[int], list[int]]:
    """(header stamps, first pixel value) of every image the replay would read."""
    reader = open_reader(bag)
    try:
        src = open_source(bag, reader, topic)
        got = [(f.stamp, int(msgs.decode_image(m, f.typename)[0, 0, 0]))
               for f, _, m in image_frames(reader, src.image_topic)]
    finally:
        reader.close()
    return [g[0] for g in got], [g[1] for g in got]


@pytest.mark.parametrize("storage,compression", [
    (StoragePlugin.MCAP, None), (StoragePlugin.SQLITE3, None),
    (StoragePlugin.MCAP, CompressionMode.STORAGE),  # zstd chunks, as rosbag2's mcap storage preset does
    (StoragePlugin.MCAP, CompressionMode.FILE), (StoragePlugin.MCAP, CompressionMode.MESSAGE),
    (StoragePlugin.SQLITE3, CompressionMode.FILE)])
def test_storage_formats_and_compression(tmp_path, storage, compression):
    bag = tmp_path / "b"
    stamps = _write(bag, 5, storage, compression)
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    files = meta["relative_file_paths"]
    if compression == CompressionMode.FILE:
        assert files[0].endswith(".zstd") and meta["compression_mode"] == "file"
    if compression == CompressionMode.STORAGE:
        data = (bag / files[0]).read_bytes()
        assert b"zstd" in data and b"bgr8" not in data  # the chunk really is compressed
    got_stamps, pixels = _frames(bag)
    assert got_stamps == stamps and pixels == [0, 10, 20, 30, 40]


def test_split_bag_reads_every_file_in_order(tmp_path):
    """rosbag2 splits a recording (--max-bag-size / --max-bag-duration) into <name>_0.mcap, <name>_1.mcap
    under one metadata.yaml; made here from two bags, their metadata merged as rosbag2 writes it."""
    bag, second = tmp_path / "split", tmp_path / "second"
    stamps = _write(bag, 3) + _write(second, 4, first=3)
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())
    info2 = yaml.safe_load((second / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    info = meta["rosbag2_bagfile_information"]
    (second / info2["relative_file_paths"][0]).rename(bag / "split_1.mcap")
    info["relative_file_paths"].append("split_1.mcap")
    info["files"].append({**info2["files"][0], "path": "split_1.mcap"})
    info["message_count"] += info2["message_count"]
    info["duration"]["nanoseconds"] = info2["starting_time"]["nanoseconds_since_epoch"] + \
        info2["duration"]["nanoseconds"] - info["starting_time"]["nanoseconds_since_epoch"]
    for t, t2 in zip(info["topics_with_message_count"], info2["topics_with_message_count"], strict=True):
        t["message_count"] += t2["message_count"]
    (bag / "metadata.yaml").write_text(yaml.safe_dump(meta))
    got_stamps, pixels = _frames(bag)
    assert got_stamps == stamps and pixels == [0, 10, 20, 30, 40, 50, 60]
    # without its metadata.yaml the split bag's files cannot be put together: said, with the files
    (bag / "metadata.yaml").unlink()
    with pytest.raises(BagError, match=r"2 storage files \(split.mcap, split_1.mcap\).*metadata.yaml"):
        open_reader(bag)


def test_bare_mcap_file_and_folder_without_metadata(tmp_path):
    bag = tmp_path / "b"
    stamps = _write(bag, 3)
    (bag / "metadata.yaml").unlink()
    assert _frames(bag)[0] == stamps  # the folder: its one .mcap
    assert _frames(next(bag.glob("*.mcap")))[0] == stamps  # the file itself
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BagError, match="no metadata.yaml and no .mcap or .db3"):
        open_reader(empty)


def test_several_image_topics_need_a_choice(tmp_path):
    bag = tmp_path / "b"
    _write(bag, 2, compressed_image=True)
    with pytest.raises(BagError) as err:
        _frames(bag, None)
    text = str(err.value)
    assert "--image-topic" in text and "/cam/image_raw (sensor_msgs/msg/Image)" in text
    assert "/cam/image_raw/compressed (sensor_msgs/msg/CompressedImage)" in text and "/chatter" not in text
    reader = open_reader(bag)
    try:
        src = open_source(bag, reader, "/cam/image_raw/compressed")
        assert (src.image_type, src.frames_in_bag) == ("sensor_msgs/msg/CompressedImage", 2)
        with pytest.raises(BagError, match="no image topic '/chatter'"):
            open_source(bag, reader, "/chatter")
    finally:
        reader.close()


def test_rosbag2_recorded_bags_as_they_are():
    bags = shared_bags()
    rerun = bags / "rerun_rosbag2_2025_09_10"
    with pytest.raises(BagError) as err:  # 33 topics, two of them images
        _frames(rerun, None)
    listed = "/compressed_image (sensor_msgs/msg/CompressedImage), /image (sensor_msgs/msg/Image)"
    assert listed in str(err.value)
    assert "--image-topic" in str(err.value)
    for topic, typename in (("/image", "sensor_msgs/msg/Image"),
                            ("/compressed_image", "sensor_msgs/msg/CompressedImage")):
        reader = open_reader(rerun)
        try:
            src = open_source(rerun, reader, topic)
            frames = [(f, m) for f, _, m in image_frames(reader, topic)]
        finally:
            reader.close()
        assert src.image_type == typename and src.frames_in_bag == len(frames) == 1 and not src.has_gt
        img = msgs.decode_image(frames[0][1], typename)
        assert img.shape == (480, 640, 3) and (frames[0][0].width, frames[0][0].height) == (640, 480)
    # sqlite3 + metadata.yaml by rosbag2_py: three 2x2 mono8 images, stamps 0, 1, 2 s
    stamps, _ = _frames(bags / "ros2bag_tools_images.bag", None)
    assert stamps == [0, 1_000_000_000, 2_000_000_000]


# ---- ground truth from files -------------------------------------------------------------------------

def _source(bag: Path):
    reader = open_reader(bag)
    return reader, open_source(bag, reader, "/cam/image_raw")


def _vid_line(frame, tid, box, cat):
    x1, y1, x2, y2 = box
    return f"{frame},{tid},{x1},{y1},{x2 - x1},{y2 - y1},1,{cat},0,0"


def test_visdrone_vid_folder_matched_by_order(tmp_path):
    """Two sequences (3 + 2 frames) over a 6-image bag: 5 matched, the last image after the annotations."""
    bag = tmp_path / "b"
    stamps = _write(bag, 6)
    ann = tmp_path / "annotations"
    ann.mkdir()
    (ann / "seq_a.txt").write_text("\n".join([_vid_line(1, 1, (1, 2, 11, 12), 4),  # car
                                              _vid_line(1, 2, (60, 40, 80, 60), 4),  # clipped to 64x48
                                              _vid_line(1, 3, (70, 5, 80, 15), 4),  # outside: dropped
                                              _vid_line(3, 1, (3, 2, 13, 12), 4),
                                              _vid_line(3, 0, (30, 30, 40, 40), 0),  # ignored region
                                              _vid_line(3, 9, (20, 20, 25, 25), 11)]) + "\n")  # others
    (ann / "seq_b.txt").write_text(_vid_line(2, 7, (5, 5, 9, 9), 1) + "\n")  # pedestrian, frame 2 of 2
    reader, src = _source(bag)
    try:
        summary = attach(src, reader, ann)
    finally:
        reader.close()
    assert summary["format"] == "visdrone-vid" and summary["matched"] == 5
    assert summary["ground_truth_frames"] == 5 and summary["bag_frames"] == 6
    assert summary["bag_frames_without_ground_truth"] == {"after the ground truth's last frame (5 frames)": 1}
    assert src.sequences == [("seq_a", 3), ("seq_b", 2), ("(after the ground truth)", 1)]
    assert sorted(src.gt) == stamps[:5]
    boxes, names = src.gt[stamps[2]]
    assert names == ["car"] and boxes.tolist() == [[3, 2, 13, 12]]
    assert src.ignore[stamps[2]].tolist() == [[30, 30, 40, 40]] and src.gt_ids[stamps[2]] == ["1"]
    assert src.gt[stamps[1]][1] == [] and src.gt[stamps[4]][1] == ["pedestrian"]
    assert src.gt_ids[stamps[4]] == ["7"] and src.gt[stamps[3]][1] == []
    assert src.gt[stamps[0]][0].tolist() == [[1, 2, 11, 12], [60, 40, 64, 48]]
    assert src.gt_ids[stamps[0]] == ["1", "2"] and src.gt[stamps[0]][1] == ["car", "car"]


def test_visdrone_vid_root_counts_frames_from_its_images(tmp_path):
    """In a VID root a sequence is as long as its folder of images: unannotated last frames are frames."""
    bag = tmp_path / "b"
    stamps = _write(bag, 5)
    root = tmp_path / "vid"
    for seq, n in (("s1", 3), ("s2", 2)):
        (root / "sequences" / seq).mkdir(parents=True)
        for k in range(1, n + 1):
            cv2.imwrite(str(root / "sequences" / seq / f"{k:07d}.jpg"), np.zeros((48, 64, 3), np.uint8))
    (root / "annotations").mkdir()
    (root / "annotations" / "s1.txt").write_text(_vid_line(1, 4, (1, 1, 9, 9), 6) + "\n")  # truck
    (root / "annotations" / "s2.txt").write_text(_vid_line(1, 8, (2, 2, 9, 9), 10) + "\n")  # motor
    reader, src = _source(bag)
    try:
        summary = attach(src, reader, root)
    finally:
        reader.close()
    assert summary["matched"] == 5 and src.sequences == [("s1", 3), ("s2", 2)]
    assert [src.gt[s][1] for s in stamps] == [["truck"], [], [], ["motor"], []]


def test_visdrone_vid_file_longer_than_the_bag(tmp_path):
    bag = tmp_path / "b"
    _write(bag, 2)
    ann = tmp_path / "uav0001.txt"
    ann.write_text("\n".join(_vid_line(k, 1, (1, 1, 5, 5), 4) for k in (1, 2, 3, 4)) + "\n")
    reader, src = _source(bag)
    try:
        summary = attach(src, reader, ann)
    finally:
        reader.close()
    assert summary["matched"] == 2
    assert summary["ground_truth_unmatched"] == {
        "past the bag's last image (the bag has 2 on /cam/image_raw)": 2}


def test_mot_challenge_gt_txt(tmp_path):
    bag = tmp_path / "b"
    stamps = _write(bag, 3)
    gt = tmp_path / "MOT17-02" / "gt" / "gt.txt"
    gt.parent.mkdir(parents=True)
    gt.write_text("1,1,10,20,30,20,1,1,1.0\n"   # pedestrian
                  "1,2,50,20,10,10,0,1,1.0\n"   # consider = 0: not scored
                  "2,3,5,5,10,10,1,7,0.5\n"     # static person: a distractor (ignored region)
                  "2,4,60,5,10,10,1,3,1.0\n"    # car: not a MOT17 scored class
                  "3,1,12,20,30,20,1,1,0.9\n")
    reader, src = _source(bag)
    try:
        summary = attach(src, reader, gt.parent.parent)  # the sequence folder
    finally:
        reader.close()
    assert summary["format"] == "mot" and summary["matched"] == 3 and src.class_names == ["pedestrian"]
    assert src.gt[stamps[0]][0].tolist() == [[10, 20, 40, 40]] and src.gt_ids[stamps[0]] == ["1"]
    assert src.gt[stamps[1]][1] == [] and src.ignore[stamps[1]].tolist() == [[5, 5, 15, 15]]
    assert src.gt[stamps[2]][1] == ["pedestrian"] and src.sequences == [("MOT17-02", 3)]


def _coco(path: Path, file_names: list[str], ids: bool = True) -> Path:
    images = [{"id": i + 1, "file_name": n, "width": 64, "height": 48} for i, n in enumerate(file_names)]
    anns = [{"id": i + 1, "image_id": i + 1, "category_id": 3, "bbox": [i, 2, 10, 10], "iscrowd": 0,
             **({"track_id": 5} if ids else {})} for i in range(len(file_names))]
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": 1, "name": "boat"}, {"id": 3, "name": "buoy"}]}))
    return path


def test_coco_by_stamp_from_file_names(tmp_path):
    bag = tmp_path / "b"
    stamps = _write(bag, 4)
    sec = T0 // 10**9
    names = [f"{sec}.{(k * STEP + 3_000_000):09d}.jpg" for k in (0, 2, 3)]  # 3 ms after frames 0, 2, 3
    names += [f"{sec + 60}.000000000.jpg", "frame_without_time.jpg"]
    reader, src = _source(bag)
    try:
        summary = attach(src, reader, _coco(tmp_path / "instances.json", names), match="stamp")
    finally:
        reader.close()
    assert summary["matched"] == 3 and summary["tolerance_ms"] == 50
    assert summary["ground_truth_unmatched"] == {"no bag image within 50 ms of its stamp": 1,
                                                 "no timestamp in its file name": 1}
    assert summary["bag_frames_without_ground_truth"] == {"no annotated frame with a stamp near it": 1}
    assert sorted(src.gt) == [stamps[0], stamps[2], stamps[3]] and src.class_names == ["boat", "buoy"]
    assert src.gt[stamps[2]][0].tolist() == [[1, 2, 11, 12]] and src.gt[stamps[2]][1] == ["buoy"]
    assert src.gt_ids[stamps[2]] == ["5"]


def test_coco_by_stamp_from_a_mapping_file(tmp_path):
    bag = tmp_path / "b"
    stamps = _write(bag, 3)
    coco = _coco(tmp_path / "c.json", ["a.jpg", "b.jpg"])
    mapping = tmp_path / "stamps.csv"
    mapping.write_text(f"# file,stamp\nb.jpg,{stamps[0]}\na.jpg,{stamps[2] / 1e9:.9f}\n")
    reader, src = _source(bag)
    try:
        summary = attach(src, reader, coco, match="stamp", stamps_file=mapping)
        # order would pair a.jpg with the first image; the mapping pairs b.jpg with it
        assert src.gt[stamps[0]][0].tolist() == [[1, 2, 11, 12]] and summary["matched"] == 2
        mapping.write_text("a.jpg;12\n")
        with pytest.raises(DatasetError, match=r"stamps.csv:1: expected KEY,STAMP"):
            attach(src, reader, coco, match="stamp", stamps_file=mapping)
        with pytest.raises(DatasetError, match="only with --gt-match stamp"):
            attach(src, reader, coco, stamps_file=mapping)
        with pytest.raises(DatasetError, match="has no times"):  # VID without a mapping has no stamps
            ann = tmp_path / "s.txt"
            ann.write_text(_vid_line(1, 1, (1, 1, 5, 5), 4) + "\n")
            attach(src, reader, ann, match="stamp")
    finally:
        reader.close()


def test_tracks_against_coco_without_target_ids_say_so(tmp_path):
    bag = tmp_path / "b"
    stamps = _write(bag, 1)
    coco = _coco(tmp_path / "no_ids.json", ["a.jpg"], ids=False)
    reader, src = _source(bag)
    try:
        attach(src, reader, coco)
    finally:
        reader.close()
    names = ["buoy"]
    run = Run(command=[], log=None, frames=[Frame(0, stamps[0], stamps[0], "sensor_msgs/msg/Image", 64, 48)],
              published={stamps[0]: 1.0})
    dets = np.asarray([[0, 2, 10, 12, 0.9, 0]], np.float32)
    run.tracks[stamps[0]] = (1.01, to_cdr(dets, msgs.header(stamps[0], "camera"), names))
    t = score_tracks(run, src, names)
    assert t["overall"] is None and t["frames_scored"] == 1
    assert any(str(coco) in w and "without a target id" in w for w in run.warnings), run.warnings


def test_rosbag2_sqlite3_bag_with_coco_by_stamp(tmp_path):
    """rosbag2_py's sqlite3 bag (stamps 0, 1, 2 s) and a COCO file whose frames are timed by a mapping file,
    listed out of order; one annotated time lies past the last image."""
    bag = shared_bags() / "ros2bag_tools_images.bag"
    coco = _coco(tmp_path / "c.json", ["a.png", "b.png", "c.png"])
    mapping = tmp_path / "stamps.csv"
    mapping.write_text("c.png,0.000000001\na.png,2000000000\nb.png,3.0\n")
    reader = open_reader(bag)
    try:
        src = open_source(bag, reader)
        summary = attach(src, reader, coco, match="stamp", stamps_file=mapping)
    finally:
        reader.close()
    assert summary["matched"] == 2 and summary["tolerance_ms"] == 500
    assert summary["ground_truth_unmatched"] == {"no bag image within 500 ms of its stamp": 1}
    assert sorted(src.gt) == [0, 2_000_000_000]
    # the boxes (x from 0 and 2, y from 2) lie outside the 2x2 images: clipped away, frames without objects
    assert src.gt[0][1] == [] and src.gt[2_000_000_000][1] == [] and src.gt_ids[0] == []


def test_stamps_in_file_names():
    assert stamp_from_name("1694350000.123456789.jpg") == 1694350000_123456789
    assert stamp_from_name("cam_1694350000_5.png") == 1694350000_500000000
    assert stamp_from_name("1694350000123456789.jpg") == 1694350000123456789
    assert stamp_from_name("000123.jpg") is None


def test_bad_ground_truth_files_are_named(tmp_path):
    bag = tmp_path / "b"
    _write(bag, 2)
    bad = tmp_path / "x.txt"
    bad.write_text("1,2,3\n")
    reader, src = _source(bag)
    try:
        with pytest.raises(DatasetError, match=r"x.txt: 3 comma-separated fields"):
            attach(src, reader, bad)
        bad.write_text(_vid_line(1, 1, (1, 1, 5, 5), 4) + "\n" + "1,1,1,1,4,4,1,13,0,0\n")
        with pytest.raises(DatasetError, match=r"x.txt:2: object_category '13'"):
            attach(src, reader, bad)
        with pytest.raises(DatasetError, match="no such file"):
            attach(src, reader, tmp_path / "missing.json")
    finally:
        reader.close()


def test_detections_over_time(tmp_path):
    """The no-ground-truth report: detections per frame and per class, and latency, by stamp."""
    names = ["car", "boat"]
    run = Run(command=[], log=None)
    rows = {0: [[1, 1, 5, 5, 0.9, 0], [2, 2, 6, 6, 0.8, 0], [3, 3, 9, 9, 0.7, 1]], 1: [],
            3: [[1, 1, 4, 4, 0.5, 1]]}
    for k in range(4):
        stamp = T0 + k * STEP
        run.frames.append(Frame(k, stamp, stamp, "sensor_msgs/msg/Image", 64, 48))
        run.published[stamp] = 10.0 + k
        if k in rows:
            dets = np.asarray(rows[k], np.float32).reshape(-1, 6)
            cdr = to_cdr(dets, msgs.header(stamp, "camera"), names)
            run.answers[stamp] = (10.0 + k + 0.02 * (k + 1), cdr)
    s = timeline.series(run)
    assert s["t_s"] == pytest.approx([0.0, 0.1, 0.3]) and s["detections"] == [3, 0, 1]
    assert s["per_class"] == {"boat": [1, 0, 1], "car": [2, 0, 0]}
    assert s["latency_ms"] == pytest.approx([20.0, 40.0, 80.0])
    summary = timeline.summary(s)
    assert summary["all"] == {"mean": pytest.approx(4 / 3, abs=1e-3), "max": 3} and summary["car"]["max"] == 2
    paths = timeline.write(tmp_path, s)
    png = cv2.imread(paths["png"])
    assert png is not None and png.shape[0] > 100
    lines = Path(paths["csv"]).read_text().splitlines()
    assert lines[0] == "t_s,latency_ms,detections,boat,car" and lines[1].endswith(",3,1,2")
    assert len(lines) == 4


# ---- bag eval end to end: the real detect_node (and track_node) over Fast DDS -------------------------

SLIMYOLO = [sys.executable, "-m", "slimyolo_ros.cli"]
MODEL = Path(__file__).resolve().parents[1] / "models" / "slimyolov3-synth.pt"


def _params(path: Path) -> Path:
    path.write_text("slimyolo_detector:\n  ros__parameters:\n"
                    f"    weights: {MODEL}\n    device: cpu\n    conf_threshold: 0.001\n"
                    "    nms_threshold: 0.5\n"
                    "    max_detections: 300\n    publish_debug_image: false\n    stats_period: 0.0\n")
    return path


def _bag_eval(args: list[str], env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*SLIMYOLO, "bag", "eval", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def test_eval_names_the_image_topics_to_choose_from(ros_env, tmp_path):
    rerun = shared_bags() / "rerun_rosbag2_2025_09_10"
    r = _bag_eval(["--bag", str(rerun)], ros_env, timeout=60)
    assert r.returncode == 2 and "--image-topic" in r.stderr
    assert "/compressed_image (sensor_msgs/msg/CompressedImage), /image (sensor_msgs/msg/Image)" in r.stderr
    r = _bag_eval(["--bag", str(rerun), "--image-topic", "/image", "--gt-match", "stamp"], ros_env,
                  timeout=60)
    assert r.returncode == 2 and "give them with --gt PATH" in r.stderr
    bad = tmp_path / "gt.txt"
    bad.write_text("1,2,3\n")
    r = _bag_eval(["--bag", str(rerun), "--image-topic", "/image", "--gt", str(bad)], ros_env, timeout=60)
    assert r.returncode == 2 and f"{bad}: 3 comma-separated fields" in r.stderr


@pytest.mark.slow
@pytest.mark.ros
def test_eval_recorded_bag_without_ground_truth(tmp_path, ros_env):
    """``ros2 bag record``'s bare .mcap with 33 topics: the chosen CompressedImage topic is replayed, the
    rest ignored; without ground truth the report is latency, throughput and detections over time."""
    rerun = shared_bags() / "rerun_rosbag2_2025_09_10"
    out, rec = tmp_path / "out", tmp_path / "rec"
    r = _bag_eval(["--bag", str(rerun), "--image-topic", "/compressed_image", "--params",
                   str(_params(tmp_path / "p.yaml")), "--lockstep", "--out", str(out), "--timeout", "120",
                   "--record", str(rec)], ros_env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "detections per answered frame" in r.stdout and "timeline.png" in r.stdout
    rep = json.loads((out / "report.json").read_text())
    assert rep["image_topic"] == "/compressed_image" and rep["frames"] == rep["answered"] == 1
    assert rep["map50"] is None and rep["latency_ms"]["p50"] > 0 and rep["ground_truth_file"] is None
    assert rep["detections_per_frame"]["all"]["max"] == rep["detections"]
    assert cv2.imread(rep["timeline"]["png"]) is not None
    assert len(Path(rep["timeline"]["csv"]).read_text().splitlines()) == 2
    # the record: all recorded topics (Humble's, without type hashes) and the node's answer
    reader = open_reader(rerun)
    try:
        recorded = {c.topic for c in reader.connections}
    finally:
        reader.close()
    reader = open_reader(rec)
    try:
        topics = {c.topic for c in reader.connections}
        ts = typestore()
        got = {c.topic: ts.deserialize_cdr(raw, c.msgtype) for c, _, raw in reader.messages()
               if c.topic in ("/detections", "/compressed_image")}
    finally:
        reader.close()
    assert topics == recorded | {"/detections"} and len(recorded) > 30
    assert msgs.stamp_ns(got["/detections"].header) == msgs.stamp_ns(got["/compressed_image"].header)


@pytest.mark.slow
@pytest.mark.ros
def test_eval_track_with_annotation_files_scores_as_the_bags_own_truth(tmp_path, ros_env):
    """A flight's bag scored against its /ground_truth topic and against the VisDrone-VID annotation files
    it was made from (``--gt``, frames by order): the same frames, mAP and MOT metrics."""
    from slimyolo_ros.bag.make import make_bag
    from slimyolo_ros.data.flight import generate_flights

    generate_flights(tmp_path / "vid", 2, seed=5, progress=False, size=(320, 240), frames=5, car_length=40)
    bag = tmp_path / "bag"
    make_bag(tmp_path / "vid", bag, fps=10, progress=False)
    params = str(_params(tmp_path / "p.yaml"))
    reports = []
    for extra in ([], ["--gt", str(tmp_path / "vid" / "annotations")]):
        out = tmp_path / f"out{len(reports)}"
        r = _bag_eval(["--bag", str(bag), "--params", params, "--track", "--lockstep", "--frames", "0",
                       "--out", str(out), "--json", "--timeout", "120", *extra], ros_env)
        assert r.returncode == 0, r.stderr[-3000:]
        reports.append(json.loads(r.stdout)["lockstep"])
    topic, files = reports
    matching = files["ground_truth_file"]
    assert matching["matched"] == 10 and matching["format"] == "visdrone-vid"
    assert files["ground_truth_file"]["ground_truth_unmatched"] == {}
    assert topic["ground_truth_file"] is None
    assert files["frames_scored"] == topic["frames_scored"] == 10
    assert topic["ground_truth_per_class"]
    assert files["ground_truth_per_class"] == topic["ground_truth_per_class"]
    assert files["map50"] == pytest.approx(topic["map50"], abs=1e-9)
    t_files, t_topic = files["tracking"], topic["tracking"]
    assert t_files["sequences"] == t_topic["sequences"] and len(t_topic["sequences"]) == 2
    assert t_topic["overall"]["gt_tracks"] > 0
    for k in ("HOTA", "MOTA", "IDF1", "IDSW", "gt_tracks"):
        assert t_files["overall"][k] == pytest.approx(t_topic["overall"][k], abs=1e-9), k
