"""The tracking core without ROS: stamp-timed tracking over the ``trackers`` library, its config
validation, the MOT metrics against a hand-computed case, and the track drawing."""

from __future__ import annotations

import ast
import logging
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from slimyolo_ros.detect.draw import TrailHistory, draw_tracks, track_color
from slimyolo_ros.evaluate.mot import MotFrame, evaluate_mot
from slimyolo_ros.tracking import (
    ALGORITHMS,
    MultiObjectTracker,
    TrackConfigError,
    TrackerConfig,
    load_track_config,
)
from slimyolo_ros.tracking.config import NODE_NAME

REPO = Path(__file__).resolve().parents[1]
DT = 0.1  # 10 fps


def box(cx: float, cy: float, w: float = 20, h: float = 20, score: float = 0.9, cls: int = 0) -> list[float]:
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, score, cls]


def id_near(tracks, x: float, y: float) -> str | None:
    """The id of the track whose box centre is within 10 px of (x, y)."""
    for (x1, y1, x2, y2), tid in zip(tracks.boxes.tolist(), tracks.ids, strict=True):
        if abs((x1 + x2) / 2 - x) < 10 and abs((y1 + y2) / 2 - y) < 10:
            return tid
    return None


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_object_missing_for_a_few_frames_keeps_its_id(algorithm):
    t = MultiObjectTracker(TrackerConfig(algorithm=algorithm))
    ids = []
    for k in range(20):
        dets = [box(400, 300)]
        if not 8 <= k < 12:  # 4 frames (0.4 s) without the moving object: shorter than the 1 s buffer
            dets.append(box(50 + 6 * k, 100))
        tr = t.update(np.array(dets, np.float32), k * DT)
        ids.append(id_near(tr, 50 + 6 * k, 100))
    assert ids[5] is not None and ids[19] == ids[5], ids
    assert all(i is None for i in ids[8:12])


@pytest.mark.parametrize("algorithm", ["bytetrack", "sort"])
def test_dropped_frames_are_time_gaps_not_missed_updates(algorithm):
    """Frames the detector dropped do not exist for the tracker: the next stamp is 0.5 s later, and the
    object (which kept moving) is still matched because the prediction spans the whole gap."""
    t = MultiObjectTracker(TrackerConfig(algorithm=algorithm))
    speed = 60.0  # px per second: 30 px over the gap, more than the box width
    for k in range(10):
        t.update(np.array([box(100 + speed * k * DT, 100)], np.float32), k * DT)
    before = id_near(t.update(np.array([box(100 + speed * 1.0, 100)], np.float32), 1.0), 160, 100)
    after = t.update(np.array([box(100 + speed * 1.5, 100)], np.float32), 1.5)
    assert before is not None and id_near(after, 190, 100) == before


def test_two_crossing_objects_keep_their_ids():
    t = MultiObjectTracker(TrackerConfig())
    first = {}
    for k in range(30):
        xa, xb = 100 + 8 * k, 332 - 8 * k  # cross at k = 14.5, 12 px apart vertically
        tr = t.update(np.array([box(xa, 200), box(xb, 212)], np.float32), k * DT)
        a, b = id_near(tr, xa, 200), id_near(tr, xb, 212)
        if k == 3:
            first = {"a": a, "b": b}
        if k >= 3:
            assert (a, b) == (first["a"], first["b"]), f"frame {k}: {a}, {b} != {first}"
    assert first["a"] != first["b"]


def test_isolated_low_score_false_positives_never_become_tracks():
    rng = np.random.default_rng(0)
    t = MultiObjectTracker(TrackerConfig())
    for k in range(40):
        dets = [box(300, 300)]
        for _ in range(3):  # each at a new place: never twice in a row
            dets.append(box(*rng.uniform(0, 1000, 2), score=float(rng.uniform(0.1, 0.45))))
        tr = t.update(np.array(dets, np.float32), k * DT)
        assert len(tr) <= 1 and (len(tr) == 0 or id_near(tr, 300, 300) is not None)


def test_stamp_backwards_resets_with_one_log_line_and_ids_are_never_reused(caplog):
    t = MultiObjectTracker(TrackerConfig())
    seen = set()
    with caplog.at_level(logging.INFO, logger="slimyolo_ros.tracking.tracker"):
        for _loop in range(2):  # a bag played twice
            for k in range(5):
                tr = t.update(np.array([box(100 + 5 * k, 100)], np.float32), 10.0 + k * DT)
                if k == 4:
                    seen.add(tr.ids[0])
    assert len(seen) == 2, seen  # the second loop's object got a new id
    assert t.resets == 1
    assert sum("went backwards" in r.getMessage() for r in caplog.records) == 1


def test_empty_input_ages_tracks_until_the_buffer_runs_out():
    t = MultiObjectTracker(TrackerConfig(track_buffer_s=0.5))
    for k in range(5):
        tr = t.update(np.array([box(100, 100)], np.float32), k * DT)
    tid = tr.ids[0]
    for k in range(5, 8):  # 0.3 s of empty frames: within the buffer
        assert len(t.update(np.zeros((0, 6), np.float32), k * DT)) == 0
    assert t.update(np.array([box(100, 100)], np.float32), 0.8).ids == [tid]
    for k in range(9, 20):  # 1.1 s empty: the track is gone
        t.update(np.zeros((0, 6), np.float32), k * DT)
    again = t.update(np.array([box(100, 100)], np.float32), 2.0)
    again = t.update(np.array([box(100, 100)], np.float32), 2.1)
    assert again.ids and again.ids[0] != tid


def test_per_class_matching_never_continues_another_class():
    per_class = MultiObjectTracker(TrackerConfig())
    agnostic = MultiObjectTracker(TrackerConfig(class_agnostic=True))
    ids = {"per": [], "agn": []}
    for k in range(10):
        cls = 0 if k < 5 else 1  # same place, the detector changes its mind about the class
        d = np.array([box(100, 100, cls=cls)], np.float32)
        ids["per"].append(per_class.update(d, k * DT).ids)
        ids["agn"].append(agnostic.update(d, k * DT).ids)
    assert ids["per"][4] != ids["per"][9] and ids["agn"][4] == ids["agn"][9]


# ------------------------------------------------------------------------------------------ config
def test_every_tracker_value_comes_from_the_file(tmp_path):
    """The shipped file sets every tracker setting and each reaches the config; the same file with every
    value changed loads the changed values (the shipped ones are also the defaults, so a loader that
    ignored the file would pass the first half alone). The node's topic keys stay out of the tracker."""
    import yaml

    params = yaml.safe_load((REPO / "config" / "track.yaml").read_text())[NODE_NAME]["ros__parameters"]
    keys = [f.name for f in fields(TrackerConfig)]
    assert load_track_config(REPO / "config" / "track.yaml").to_dict() == {k: params[k] for k in keys}
    others = {"algorithm": ("ocsort", "sort"), "track_activation_threshold": (0.4, 0.5),
              "high_conf_det_threshold": (0.45, 0.55), "minimum_iou_threshold": (0.3, 0.35),
              "minimum_consecutive_frames": (3, 4), "track_buffer_s": (2.5, 3.0), "frame_rate": (30.0, 25.0),
              "class_agnostic": (True, False), "min_score": (0.1, 0.15)}
    changed = {k: next(v for v in others[k] if v != params[k]) for k in keys}
    path = tmp_path / "track.yaml"
    path.write_text(yaml.safe_dump({NODE_NAME: {"ros__parameters": {**params, **changed}}}))
    assert load_track_config(path).to_dict() == changed


@pytest.mark.parametrize("key,value,needle", [
    ("algorithm", "kalman", "'kalman'"),
    ("track_activation_threshold", 1.5, "track_activation_threshold 1.5"),
    ("minimum_iou_threshold", "high", "minimum_iou_threshold 'high'"),
    ("minimum_consecutive_frames", 0, "minimum_consecutive_frames 0"),
    ("track_buffer_s", -1.0, "track_buffer_s -1.0"),
    ("frame_rate", 0, "frame_rate 0"),
    ("class_agnostic", "yes", "class_agnostic 'yes'"),
    ("min_score", float("nan"), "min_score nan"),
    ("bogus", 1, "bogus"),
])
def test_bad_config_values_are_named(tmp_path, key, value, needle):
    import yaml

    path = tmp_path / "track.yaml"
    path.write_text(yaml.safe_dump({NODE_NAME: {"ros__parameters": {key: value}}}))
    if key == "bogus":  # the file may carry the node's topic parameters; the dict API rejects unknowns
        with pytest.raises(TrackConfigError, match=needle):
            TrackerConfig.from_dict({key: value})
        return
    with pytest.raises(TrackConfigError) as exc:
        load_track_config(path)
    assert str(path) in str(exc.value) and needle in str(exc.value)


def test_config_file_without_the_node_section_is_named(tmp_path):
    path = tmp_path / "track.yaml"
    path.write_text("other_node:\n  ros__parameters: {}\n")
    with pytest.raises(TrackConfigError, match="slimyolo_tracker: ros__parameters"):
        load_track_config(path)


# ----------------------------------------------------------------------------------------- metrics
def test_mot_metrics_match_a_hand_computed_case():
    """Two ground-truth objects over 4 frames, exact boxes (IoU 1 or 0):
    A is tracked as id 1 in frames 1-2, then as id 2 in frames 3-4 (one ID switch);
    B is tracked as id 3 except in frame 3 (one miss, one fragmentation); one false positive in frame 1.
    By hand: TP 7, FN 1, FP 1, IDSW 1 -> MOTA = 1 - 3/8 = 0.625.
    IDF1: best one-to-one id match A-1 (or A-2) 2 + B-3 3 = IDTP 5 of 8 GT and 8 tracker boxes -> 10/16.
    HOTA (IoU 1 at every alpha): DetA = 7/9; AssA = (2*2/4 + 2*2/4 + 3*3/4) / 7 = 4.25/7;
    HOTA = sqrt(DetA * AssA) = sqrt(4.25/9). MT: A (4/4) ; PT: B (3/4 < 80 %); ML none.
    """
    A, B, FP = [0, 0, 10, 10], [50, 50, 60, 60], [200, 200, 210, 210]
    per_frame = [[(A, "1"), (B, "3"), (FP, "9")], [(A, "1"), (B, "3")], [(A, "2")], [(A, "2"), (B, "3")]]
    frames = [MotFrame(np.array([A, B], float), np.array([3, 3]), ["a", "b"],
                       np.array([b for b, _ in t], float), np.full(len(t), 3), [i for _, i in t])
              for t in per_frame]
    r = evaluate_mot([frames], ["p", "q", "r", "car"])
    o = r["overall"]
    assert (o["TP"], o["FN"], o["FP"], o["IDSW"], o["Frag"]) == (7, 1, 1, 1, 1)
    assert (o["MT"], o["PT"], o["ML"], o["gt_tracks"]) == (1, 1, 0, 2)
    assert o["MOTA"] == pytest.approx(0.625)
    assert o["IDF1"] == pytest.approx(10 / 16)
    assert o["DetA"] == pytest.approx(7 / 9)
    assert o["AssA"] == pytest.approx(4.25 / 7)
    assert o["HOTA"] == pytest.approx((4.25 / 9) ** 0.5)
    assert r["per_class"]["car"] == o and set(r["per_class"]) == {"car"}


def test_mot_metrics_match_only_within_a_class_and_skip_ignored_regions():
    A = [0, 0, 10, 10]
    gt = dict(gt_boxes=np.array([A], float), gt_classes=np.array([0]), gt_ids=["a"])
    wrong_class = [MotFrame(**gt, track_boxes=np.array([A], float), track_classes=np.array([1]),
                            track_ids=["1"]) for _ in range(3)]
    r = evaluate_mot([wrong_class], ["pedestrian", "people"])
    assert (r["overall"]["TP"], r["overall"]["FP"], r["overall"]["FN"]) == (0, 3, 3)
    ignored = [MotFrame(**gt, track_boxes=np.array([A, [100, 100, 110, 110]], float),
                        track_classes=np.array([0, 0]), track_ids=["1", "2"],
                        ignore=np.array([[90, 90, 120, 120]], np.float32)) for _ in range(3)]
    o = evaluate_mot([ignored], ["pedestrian"])["overall"]
    assert (o["TP"], o["FP"], o["MOTA"]) == (3, 0, 1.0)


# -------------------------------------------------------------------------------------------- draw
def test_draw_tracks_labels_ids_in_a_stable_colour_with_trails():
    img = np.zeros((120, 200, 3), np.uint8)
    trails = TrailHistory(length=3)
    for k in range(5):
        t = trails.update(np.array([[10 + 10 * k, 60, 30 + 10 * k, 80]]), ["7"])
    assert len(t["7"]) == 3  # only the last 3 centres
    out = draw_tracks(img, np.array([[50, 60, 70, 80]]), ["7"], np.array([3]), ["a", "b", "c", "car"], t)
    colour = np.array(track_color("7"))
    assert (out == colour).all(-1).sum() > 50  # box, label background and trail in the track's colour
    assert out[70, 45].any()  # the trail between the last centres (x 40..60 at y 70)
    assert img.sum() == 0  # input untouched


def test_track_colours_differ_between_ids_and_hold_across_processes():
    """Ids born together (consecutive numbers) get different colours, and an id's colour does not depend on
    the process (no per-run string hashing): another interpreter with another hash seed agrees."""
    ids = [str(i) for i in range(1, 41)]
    here = [track_color(i) for i in ids]
    assert all(a != b for a, b in zip(here, here[1:], strict=False))
    assert len(set(here)) >= 15
    # the module file alone: the same function without importing the detector's torch
    code = ("import runpy, sys; f = runpy.run_path(sys.argv[1])['track_color'];"
            "print([f(str(i)) for i in range(1, 41)])")
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code, str(REPO / "slimyolo_ros" / "detect" / "draw.py")],
                         env=env, capture_output=True, text=True, timeout=120, check=True).stdout
    assert [tuple(c) for c in ast.literal_eval(out)] == here
