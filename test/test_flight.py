"""Synthetic flights (``slimyolo synth --video``): deterministic, VisDrone-VID readable, ids that follow
objects, smooth motion under the camera's pan/yaw/zoom, occlusion and truncation, and a bag with ids."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from slimyolo_ros.bag.vid import read_vid
from slimyolo_ros.data.flight import Flight, FlightConfig, generate_flights
from slimyolo_ros.errors import DatasetError

SMALL = dict(size=(320, 240), frames=30, world=800, car_length=14.0, fps=10.0)


@pytest.fixture(scope="module")
def flight(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("flight") / "f"
    return generate_flights(root, sequences=1, seed=5, progress=False, **SMALL)


def rows_by_id(root: Path) -> dict[str, list[tuple[int, np.ndarray, int, int]]]:
    """target id -> [(frame, xyxy, category, truncation)] from the annotation file."""
    out = defaultdict(list)
    for ann in sorted((root / "annotations").glob("*.txt")):
        for line in ann.read_text().splitlines():
            f, tid, x, y, w, h, _s, cat, tr, _oc = line.split(",")
            out[tid].append((int(f), np.array([float(x), float(y), float(x) + float(w), float(y) + float(h)]),
                             int(cat), int(tr)))
    return out


def test_same_seed_same_bytes_other_seed_other_flight(flight, tmp_path):
    again = generate_flights(tmp_path / "again", sequences=1, seed=5, progress=False, **SMALL)
    other = generate_flights(tmp_path / "other", sequences=1, seed=6, progress=False, **dict(SMALL, frames=3))
    name = "flight_0005_000"
    for rel in (f"annotations/{name}.txt", f"sequences/{name}/0000001.jpg", f"sequences/{name}/0000030.jpg"):
        assert (flight / rel).read_bytes() == (again / rel).read_bytes(), rel
    assert (other / "sequences/flight_0006_000/0000001.jpg").read_bytes() != \
        (flight / f"sequences/{name}/0000001.jpg").read_bytes()


def test_the_vid_reader_reads_it_with_ids(flight):
    frames = read_vid(flight)
    assert len(frames) == SMALL["frames"]
    assert all(f.sample is not None and len(f.track_ids) == len(f.sample.boxes) for f in frames)
    assert sum(len(f.track_ids) for f in frames) > 5 * SMALL["frames"]  # a busy scene, not a few dots
    assert all(len(set(f.track_ids)) == len(f.track_ids) for f in frames)  # an id once per frame


def test_each_id_is_one_object_moving_smoothly_under_camera_motion(flight):
    cfg = FlightConfig(**SMALL)
    by_id = rows_by_id(flight)
    # Fastest image motion per frame: a vehicle (<= 2.5 car lengths/s) at the lowest altitude (zoom 1.2)
    # plus the camera's pan and yaw; a jump beyond this would be two objects sharing an id.
    bound = (2.5 * cfg.car_length * 1.2 + 60.0) / cfg.fps
    for tid, rows in by_id.items():
        assert len({cat for _, _, cat, _ in rows}) == 1, f"id {tid} changes class"
        frames = [f for f, *_ in rows]
        assert frames == sorted(set(frames)), f"id {tid} twice in a frame"
        for (f0, b0, _, t0), (f1, b1, _, t1) in zip(rows, rows[1:], strict=False):
            if f1 == f0 + 1 and not (t0 or t1):  # truncated boxes are clipped: their centre jumps
                step = np.hypot(*((b1[:2] + b1[2:]) / 2 - (b0[:2] + b0[2:]) / 2))
                assert step < bound, f"id {tid} jumps {step:.1f} px between frames {f0} and {f1}"
    assert sum(len(r) >= 10 for r in by_id.values()) > 5


def test_objects_standing_still_move_in_the_image():
    """Parked cars and standing people: the camera's pan, yaw and zoom move them in the image."""
    flight = Flight(FlightConfig(**dict(SMALL, parked=160)), np.random.default_rng([5, 0]))
    static = {o.tid for o in flight.objects if not o.vel.any()}
    centres = defaultdict(list)
    for _ in range(SMALL["frames"]):
        _img, rows = flight.render()
        for tid, x, y, w, h, _cat, trunc, _occ in rows:
            if tid in static and not trunc:
                centres[tid].append((x + w / 2, y + h / 2))
        flight.step()
    seen = [np.asarray(c) for c in centres.values() if len(c) >= 10]
    assert len(seen) >= 2, "too few parked objects in view to check"
    assert all(np.hypot(*(c[-1] - c[0])) > 3.0 for c in seen)


def test_objects_enter_and_leave_and_get_occluded_and_truncated(flight):
    by_id = rows_by_id(flight)
    firsts = [min(f for f, *_ in r) for r in by_id.values()]
    lasts = [max(f for f, *_ in r) for r in by_id.values()]
    assert any(f > 1 for f in firsts) and any(f < SMALL["frames"] for f in lasts)
    lines = [ln.split(",") for ln in next((flight / "annotations").glob("*.txt")).read_text().splitlines()]
    assert {"1", "2"} & {ln[9] for ln in lines}, "no occluded object in the whole flight"
    assert "1" in {ln[8] for ln in lines}, "no truncated object at the image border"


def test_bad_flight_arguments_are_named(tmp_path):
    with pytest.raises(DatasetError, match="world 500 px is too small"):
        generate_flights(tmp_path / "a", **dict(SMALL, world=500))
    with pytest.raises(DatasetError, match="car length 2 px"):
        generate_flights(tmp_path / "b", **dict(SMALL, car_length=2))
    with pytest.raises(DatasetError, match="frames per sequence must be >= 1, got 0"):
        generate_flights(tmp_path / "c", **dict(SMALL, frames=0))


def test_cli_and_bag_make_keep_the_ids(tmp_path):
    from rosbags.rosbag2 import Reader

    from slimyolo_ros.bag.make import GT_TOPIC, make_bag
    from slimyolo_ros.bag.types import typestore

    out = tmp_path / "cli"
    cmd = [str(Path(sys.executable).parent / "slimyolo"), "synth", "--video", "--out", str(out),
           "--frames", "4", "--size", "320x240", "--car-length", "14", "--seed", "2", "--json"]
    meta = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    assert meta["sequences"] == ["flight_0002_000"] and meta["target_ids"] > 0
    summary = make_bag(out, tmp_path / "bag", fps=10.0, progress=False)
    assert summary["frames"] == 4 and summary["frames_with_ground_truth"] == 4
    ts = typestore()
    ids = []
    with Reader(tmp_path / "bag") as r:
        conns = [c for c in r.connections if c.topic == GT_TOPIC]
        for c, _t, raw in r.messages(connections=conns):
            ids.append([d.id for d in ts.deserialize_cdr(raw, c.msgtype).detections])
    expected = [f.track_ids for f in read_vid(out)]
    assert ids == expected and all(all(i for i in frame) for frame in ids)
