"""bench/run.py's machinery on a tiny cfg: models via the real ``slimyolo prune``, rows from the three
real runtimes, the node-path split through rclpy, and the markdown section writer. No timing
assertions: the numbers only have to exist and be positive; speed lives in docs/benchmarks.md."""

from __future__ import annotations

import argparse
import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO))

TINY_CFG = """[net]
width=64
height=64
channels=3

[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=32
size=3
stride=2
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=16
size=1
stride=1
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=32
size=3
stride=1
pad=1
activation=leaky

[shortcut]
from=-3
activation=linear

[maxpool]
size=5
stride=1

[convolutional]
size=1
stride=1
pad=1
filters=45
activation=linear

[yolo]
mask=0,1,2
anchors=4,5, 8,10, 16,20
classes=10
num=3
"""

REQUIRED = {"model", "backend", "img_size", "gflops", "params", "latency_ms_median"}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    import bench.sparse_model as sm
    from bench.common import fix_threads
    from bench.run import Bench

    sm.USE_REFERENCE_FRAME = False  # ../shared is only read through the shared_reference fixture
    fix_threads(1)
    work = tmp_path_factory.mktemp("bench")
    cfg = work / "tiny.cfg"
    cfg.write_text(TINY_CFG)
    args = argparse.Namespace(
        quick=True,
        threads=1,
        cfg=str(cfg),
        work=str(work),
        seed=0,
        warmup=0,
        repeats=1,
        sizes="64",
        models="yolov3-spp3,slim-50",
        multiples="",
    )
    b = Bench(args)
    b.prepare()
    b.latency_table()
    return b


def test_rows_have_the_required_keys_for_every_model_and_backend(bench) -> None:
    rows = bench.rows
    assert {(r["model"], r["backend"]) for r in rows} == {
        (m, be) for m in ("yolov3-spp3", "slim-50") for be in ("torch", "onnxruntime", "opencv")
    }
    for r in rows:
        assert REQUIRED <= set(r), r
        assert r["img_size"] == 64
        assert r["latency_ms_median"] > 0 and r["gflops"] > 0 and r["params"] > 0
    g = {r["model"]: (r["gflops"], r["params"]) for r in rows}
    # slim-50 came out of the real pruner with sparse gammas: it must be smaller than its source.
    assert g["slim-50"][0] < g["yolov3-spp3"][0] and g["slim-50"][1] < g["yolov3-spp3"][1]


def test_pruned_model_files_load_in_opencv(bench) -> None:
    import cv2

    mf = bench.models["slim-50"]
    assert (mf.cfg.parent / "prune_report.json").is_file()
    net = cv2.dnn.readNetFromDarknet(str(mf.cfg), str(mf.weights))
    assert net.getUnconnectedOutLayersNames()


def test_node_split_runs_the_node_functions(bench) -> None:
    from bench.backends import detector
    from bench.node_split import STAGES, split_frame
    from bench.sparse_model import bench_frame

    det = detector(bench.models["slim-50"].pt, "torch", 64, "cpu")
    thresholds = (det.nms_threshold, det.max_detections)
    s = split_frame(det, bench_frame(160, 96), warmup=0, repeats=2)
    assert list(s["stages_ms"]) == list(STAGES)
    assert all(v >= 0 for v in s["stages_ms"].values())
    assert s["frame"] == "160x96" and s["image_bytes"] == 160 * 96 * 3
    # the NMS comparison ran on this frame's candidates and left the Detector's thresholds as they were
    assert set(s["nms_ms"]) == {"candidates", "opencv", "torch"} and s["nms_ms"]["candidates"] >= 0
    assert (det.nms_threshold, det.max_detections) == thresholds


def test_rect_letterbox_effect_times_both_inputs_in_every_runtime(bench) -> None:
    rows = bench.rect_letterbox(128)  # a 1920x1080 frame at 128: 128x72 resized, 128x96 rect input
    assert [r["model"] for r in rows] == ["slim-50"]  # the unpruned net is not what the node runs
    r = rows[0]
    assert r["square_input"] == [128, 128] and r["rect_input"] == [96, 128]
    for b in ("torch", "onnxruntime", "opencv"):
        assert r[f"{b}_square_ms"] > 0 and r[f"{b}_rect_ms"] > 0, r


def test_markdown_section_replaces_only_its_own_markers(bench, tmp_path) -> None:
    from bench.markdown import render
    from bench.report import END, START, replace_section

    details = {
        "command": "python bench/run.py --quick --json x.json",
        "date_utc": "now",
        "git": "abc",
        "wall_s": 1.0,
        "cpu": "cpu",
        "cores": 2,
        "load_avg_start": (0.1, 0, 0),
        "load_avg_end": (0.2, 0, 0),
        "threads": {"torch": 1, "opencv": 1, "onnxruntime": 1},
        "versions": {},
        "repeats": 1,
        "warmup": 0,
        "sizes": [64],
        "cuda": "skipped: no GPU",
        "notes": [],
    }
    body = render(bench.rows, details)
    assert "| slim-50 |" in body and "FLOPs ratio" in body
    details["rect_letterbox"] = [{"model": "slim-50", "img_size": 128, "frame": "1920x1080",
                                  "square_input": [128, 128], "rect_input": [96, 128],
                                  "torch_square_ms": 4.2, "torch_rect_ms": 3.1}]
    assert "| slim-50 | torch | 4.2 | 3.1 | 1.35x |" in render(bench.rows, details)
    doc = tmp_path / "benchmarks.md"
    other = "<!-- bench:inference start -->\nTHEIRS\n<!-- bench:inference end -->\n"
    doc.write_text("# Benchmarks\n\n" + other)
    replace_section(doc, body)
    replace_section(doc, body.replace("slim-50", "slim-xx"))
    text = doc.read_text()
    assert other in text
    assert text.count(START) == 1 and text.count(END) == 1
    assert "slim-xx" in text and "| slim-50 |" not in text


def test_node_e2e_round_trips_serialised_frames_through_the_echo_node(ros_env, tmp_path) -> None:
    """The e2e harness end to end over real DDS: the camera's serialised frames (stamp patched into the
    CDR bytes per frame) reach the echo node's raw receive and come back matched by stamp, for both
    receive paths. A wrong stamp offset or a broken parse would time out here."""
    from bench.node_e2e import run_subprocess

    for raw in ("1", "0"):
        env = dict(ros_env, SLIMYOLO_RAW_IMAGE_RECEIVE=raw)
        r = run_subprocess(env, timeout=120, frames="64x48,33x17", warmup=1, repeats=3,
                           log_dir=tmp_path / raw)
        for frame in ("64x48", "33x17"):
            t = r["frames"][frame]
            assert t["runs"] == 3 and t["median"] > 0 and t["camera_publish_ms"] >= 0, (raw, r)
            assert t["detections"] == 0  # the echo answers with an empty array carrying the header
