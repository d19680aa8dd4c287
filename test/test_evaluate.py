"""Evaluation: COCO mAP via pycocotools, P/R/F1 at the best-F1 confidence, ignored regions, the eval CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from slimyolo_ros.data.visdrone import VISDRONE_CLASSES, Sample, read_visdrone
from slimyolo_ros.evaluate.coco import evaluate, ignored_fraction, match_detections

REPO = Path(__file__).resolve().parents[1]
NAMES = ["a", "b", "c"]


def _sample(boxes, classes, ignore=(), size=(400, 300), name="x.jpg") -> Sample:
    return Sample(Path(name), np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(classes, np.int64),
                  np.asarray(ignore, np.float32).reshape(-1, 4), size[0], size[1])


@pytest.fixture(scope="module")
def scene():
    """Three images, three classes, 14 objects of varied sizes; one image without ground truth."""
    rng = np.random.default_rng(0)
    samples = []
    for i in range(2):
        xy = rng.uniform(0, 300, (7, 2))
        wh = rng.uniform(10, 60, (7, 2))
        samples.append(_sample(np.hstack([xy, xy + wh]), rng.integers(0, 3, 7), name=f"{i}.jpg"))
    samples.append(_sample([], [], name="empty.jpg"))
    return samples


def _perfect(samples, score=0.9):
    return [np.hstack([s.boxes, np.full((len(s.boxes), 1), score), s.classes[:, None]]) for s in samples]


def test_perfect_detections_score_one(scene):
    r = evaluate(scene, _perfect(scene), NAMES)
    assert r["map50"] == pytest.approx(1.0) and r["map"] == pytest.approx(1.0)
    assert r["precision"] == r["recall"] == r["f1"] == pytest.approx(1.0)
    assert r["n_gt"] == 14 and sum(c["gt"] for c in r["per_class"].values()) == 14
    assert all(c["ap50"] == pytest.approx(1.0) for c in r["per_class"].values())


def test_hand_computed_101_point_ap():
    """1 image, 2 GT; detections TP (0.9), FP (0.8), TP (0.7). Precision after each: 1, 1/2, 2/3 at recall
    1/2, 1/2, 1. COCO's interpolated precision is 1 for the 51 recall points 0..0.50 and 2/3 for the 50
    points 0.51..1, so AP = (51 + 50 * 2/3) / 101 at every IoU threshold (the boxes are exact)."""
    s = _sample([[10, 10, 50, 50], [100, 100, 140, 160]], [0, 0])
    d = np.array([[10, 10, 50, 50, 0.9, 0], [200, 0, 230, 20, 0.8, 0], [100, 100, 140, 160, 0.7, 0]])
    r = evaluate([s], [d], NAMES)
    expected = (51 + 50 * 2 / 3) / 101
    assert r["map50"] == pytest.approx(expected, abs=1e-9)
    assert r["map"] == pytest.approx(expected, abs=1e-9)
    # best F1: after the third detection P = 2/3, R = 1 -> F1 = 0.8 (vs 0.667 after the first)
    assert r["f1"] == pytest.approx(0.8) and r["conf_threshold"] == pytest.approx(0.7)
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == pytest.approx(1.0)
    # classes without ground truth stay out of the mean
    assert r["per_class"]["b"]["ap50"] is None and r["per_class"]["b"]["gt"] == 0


def test_iou_thresholds_in_map():
    """A box with IoU 0.58 with its GT counts at IoU 0.5 and 0.55 only: AP@0.5 = 1, mAP = 2/10."""
    s = _sample([[0, 0, 100, 100]], [1])
    # IoU of [0, 0, 100, 58] with [0, 0, 100, 100] is 0.58
    r = evaluate([s], [np.array([[0, 0, 100, 58, 0.5, 1]])], NAMES)
    assert r["map50"] == pytest.approx(1.0)
    assert r["map"] == pytest.approx(0.2)


def test_worse_detections_score_lower(scene):
    perfect = evaluate(scene, _perfect(scene), NAMES)
    shifted = [d.copy() for d in _perfect(scene)]
    for d in shifted:
        w = d[:, 2] - d[:, 0]
        d[:, [0, 2]] += 0.15 * w[:, None]  # IoU ~0.74: still a hit at 0.5, a miss at the strict thresholds
    r_shift = evaluate(scene, shifted, NAMES)
    assert r_shift["map50"] == pytest.approx(1.0) and r_shift["map"] < 0.7 * perfect["map"]

    missing = [d[::2] for d in _perfect(scene)]
    r_miss = evaluate(scene, missing, NAMES)
    assert r_miss["map50"] < 0.75 and r_miss["recall"] < 0.65 and r_miss["precision"] == pytest.approx(1.0)

    # confident false positives (also on the image without ground truth) push AP and precision down ...
    fps = [np.vstack([d, [[350, 250, 390, 290, 0.95, k % 3] for k in range(2)]]) for d in _perfect(scene)]
    r_fp = evaluate(scene, fps, NAMES)
    assert r_fp["map50"] < 0.95 and r_fp["precision"] < 1.0
    # ... while low-scored ones are cut off by the best-F1 threshold and leave AP alone
    low = [np.vstack([d, [[350, 250, 390, 290, 0.01, 0]]]) for d in _perfect(scene)]
    r_low = evaluate(scene, low, NAMES)
    assert r_low["map50"] == pytest.approx(1.0) and r_low["precision"] == pytest.approx(1.0)
    assert r_low["conf_threshold"] == pytest.approx(0.9)

    wrong_class = [np.hstack([d[:, :5], ((d[:, 5:] + 1) % 3)]) for d in _perfect(scene)]
    assert evaluate(scene, wrong_class, NAMES)["map50"] == pytest.approx(0.0)


def test_empty_detections_and_empty_dataset(scene):
    r = evaluate(scene, [np.zeros((0, 6))] * len(scene), NAMES)
    assert r["map50"] == r["map"] == r["precision"] == r["recall"] == r["f1"] == 0.0
    assert r["conf_threshold"] is None and r["n_gt"] == 14
    only_empty = [_sample([], [])]
    r2 = evaluate(only_empty, [np.array([[1, 1, 20, 20, 0.9, 0]])], NAMES)
    assert r2["map50"] == 0.0 and r2["n_gt"] == 0 and r2["precision"] == 0.0
    json.dumps(r2)  # the result is JSON-serialisable (None, not NaN)


def test_ignored_regions_drop_detections_and_gt():
    # GT 0 is a normal object; GT 1 lies inside the ignored region (dropped, as the VisDrone toolkit does)
    s = _sample([[10, 10, 50, 50], [210, 110, 240, 140]], [0, 0], ignore=[[200, 100, 300, 200]])
    hit = [10, 10, 50, 50, 0.5, 0]
    inside = [250, 150, 290, 190, 0.9, 0]  # fully inside the region: not a false positive
    half = [180, 120, 220, 160, 0.9, 0]  # exactly 50 % inside: dropped (the toolkit keeps < 50 %)
    r = evaluate([s], [np.array([hit, inside, half])], NAMES)
    assert r["n_gt"] == 1 and r["ignored_detections"] == 2
    assert r["map50"] == pytest.approx(1.0) and r["precision"] == pytest.approx(1.0)
    # the same detections without the region: two confident false positives and a missed GT
    plain = _sample(s.boxes, s.classes)
    r_plain = evaluate([plain], [np.array([hit, inside, half])], NAMES)
    assert r_plain["map50"] < 0.5 and r_plain["precision"] < 0.5
    mostly_out = np.array([[150, 100, 210, 160]])  # 1/6 inside
    np.testing.assert_allclose(ignored_fraction(mostly_out, s.ignore, 400, 300), [1 / 6])


def test_greedy_matching_one_gt_one_tp():
    gt = np.array([[0, 0, 10, 10]], np.float64)
    dets = np.array([[0, 0, 10, 10, 0.6, 0], [0, 0, 10, 11, 0.9, 0], [0, 0, 10, 10, 0.95, 1]])
    # the class-1 detection cannot match; of the two class-0 ones the higher-scored takes the GT
    assert match_detections(gt, np.array([0]), dets).tolist() == [False, True, False]


def test_class_out_of_range_is_named(scene):
    from slimyolo_ros.errors import DatasetError

    with pytest.raises(DatasetError, match="only 2 classes"):
        evaluate(scene, _perfect(scene), ["a", "b"])


def test_eval_cli_on_synthetic_data(tmp_path, capsys):
    """The real chain: synth dataset -> checkpoint of the narrow cfg -> Detector -> pycocotools -> JSON.
    (In-process through cli.main: torch is already imported here, a subprocess would import it again.)"""
    import torch

    from slimyolo_ros.cli import main
    from slimyolo_ros.darknet.checkpoint import save_checkpoint
    from slimyolo_ros.darknet.model import Darknet
    from slimyolo_ros.data.synth import generate

    data = generate(tmp_path / "val", 2, (128, 96), seed=5, objects=(4, 6), progress=False)
    torch.manual_seed(0)
    model = Darknet.from_file(REPO / "models" / "yolov3-spp3-tiny-width.cfg")
    weights = save_checkpoint(tmp_path / "m.pt", model, list(VISDRONE_CLASSES), 64)
    cmd = ["eval", "--weights", str(weights), "--data", str(data), "--img-size", "64", "--device", "cpu"]
    capsys.readouterr()
    assert main(cmd + ["--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # exactly one JSON object on stdout
    r = json.loads(out)
    # What training's evaluation says of the same model in memory: the checkpoint, the Detector the CLI
    # builds from it and its thresholds change nothing. The untrained model finds nothing, but it does
    # output boxes.
    from slimyolo_ros.evaluate.run import evaluate_model

    in_memory = evaluate_model(model, list(VISDRONE_CLASSES), 64, read_visdrone(data), device="cpu")
    assert {k: r[k] for k in in_memory} == pytest.approx(in_memory, abs=1e-6)
    assert r["n_detections"] > 0 and r["conf_threshold"] is None  # no true positive: no best-F1 threshold
    assert r["n_images"] == 2 and r["img_size"] == 64 and r["latency_ms"] > 0
    assert list(r["per_class"]) == list(VISDRONE_CLASSES)
    n_gt = sum(len(s.boxes) for s in read_visdrone(data))  # no ignored regions overlap objects in synth
    assert r["n_gt"] == n_gt == sum(c["gt"] for c in r["per_class"].values())

    assert main(cmd + ["--limit", "1"]) == 0
    table = capsys.readouterr().out
    assert "mAP@0.5" in table and "pedestrian" in table and "1 images" in table

    bad = [str(tmp_path / "nowhere") if a == str(data) else a for a in cmd]
    assert main(bad) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "Traceback" not in err


def test_ignored_fraction_matches_pixel_count():
    """Against a brute-force count on a full-image mask, with regions and boxes crossing the border."""
    rng = np.random.default_rng(1)
    W, H = 60, 40
    for _ in range(50):
        corners = rng.integers(-5, 70, (3, 4))
        a, b = corners[:, :2], corners[:, 2:]
        ig = np.hstack([np.minimum(a, b), np.maximum(a, b)])
        xy = rng.integers(-5, 65, (10, 2))
        boxes = np.hstack([xy, xy + rng.integers(1, 30, (10, 2))])
        mask = np.zeros((H, W))
        def window(x1, y1, x2, y2):
            return slice(max(y1, 0), max(min(y2, H), 0)), slice(max(x1, 0), max(min(x2, W), 0))

        for box in ig:
            mask[window(*box)] = 1
        ref = [mask[window(*box)].sum() / ((box[2] - box[0]) * (box[3] - box[1])) for box in boxes]
        np.testing.assert_allclose(ignored_fraction(boxes, ig, W, H), ref)
