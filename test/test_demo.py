"""`make demo` end to end at toy size: synthetic flight -> bag -> detector and tracker, the shipped model."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from rosbags.rosbag2 import Reader

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.ros
def test_demo_small_flight(tmp_path, ros_env):
    out = tmp_path / "demo_out"
    r = subprocess.run([sys.executable, "-m", "slimyolo_ros.demo", "--frames", "3", "--size", "320x240",
                        "--out", str(out), "--json"], capture_output=True, text=True, env=ros_env,
                       timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)
    acc, live = res["lockstep"], res["realtime"]
    assert acc["frames"] == acc["answered"] == acc["frames_scored"] == 3 and acc["error"] is None
    assert acc["map50"] is not None and sum(acc["ground_truth_per_class"].values()) > 0
    assert live["frames"] == 3 and live["answered"] + live["dropped"] == 3 and live["error"] is None
    assert Path(acc["params"]).resolve() == (REPO / "config" / "detect.yaml").resolve()
    with Reader(out / "flight_bag") as bag:
        assert bag.topics["/camera/image_raw"].msgcount == 3
        assert (out / "flight_bag" / "flight_bag.mcap").is_file()
    assert len(acc["annotated"]) >= 1 and cv2.imread(acc["annotated"][0]).shape == (240, 320, 3)
    # the flight is tracked: detector + tracker, lockstep and real time, MOT metrics and frames with ids
    assert res["detector_conf_threshold"]["from"].endswith("config/track_detector.yaml")
    for rep in (res["track_lockstep"], live):
        t = rep["tracking"]
        assert t["sequences"] == ["flight_2026_000"] and t["frames_scored"] == t["answered"] > 0
        for k in ("HOTA", "MOTA", "IDF1", "IDSW", "Frag", "MT", "ML"):
            assert math.isfinite(t["overall"][k]), (k, t["overall"])
        assert t["overall"]["gt_tracks"] > 0
    t = res["track_lockstep"]["tracking"]
    assert t["answered"] == 3 and len(t["annotated"]) == 3
    assert all(cv2.imread(p).shape == (240, 320, 3) for p in t["annotated"])
