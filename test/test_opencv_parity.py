"""Raw [yolo] outputs against an independent implementation: OpenCV DNN's Darknet importer.

OpenCV reads the same cfg + .weights; each of its [yolo] outputs is a (H*W*A) x (5+C) matrix with one
row per cell per anchor (row = (y*W + x)*A + a): box centre and size normalised to the input,
objectness, then objectness x class probability, zeroed where it is not above 0.2.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pytest
import torch
from conftest import MODELS, coco_tiny
from tiny_cfg import cfg, conv, head, maxpool

from slimyolo_ros.darknet.model import Darknet
from slimyolo_ros.darknet.weights import load_darknet_weights, save_darknet_weights

COCO_TINY = coco_tiny()
IMAGE = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
RTOL = 1e-4
OPENCV_CLASS_THRESHOLD = 0.2  # OpenCV's region layer zeroes obj*cls at or below this


def opencv_outputs(cfg: Path, weights: Path, blob: np.ndarray) -> dict[str, np.ndarray]:
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    # OpenCV's CPU Winograd path for 3x3 convs is an approximation (~3e-4 relative on YOLOv3-SPP3);
    # the parity checked here is of the exact convolution both sides claim to compute.
    net.enableWinograd(False)
    net.setInput(blob)
    names = net.getUnconnectedOutLayersNames()
    return dict(zip(names, net.forward(names), strict=True))


def ours_in_opencv_layout(model: Darknet, blob: np.ndarray) -> dict[str, np.ndarray]:
    model.eval()
    size = blob.shape[-1]
    with torch.no_grad():
        pred, raws = model(torch.from_numpy(blob))
    out, offset = {}, 0
    for index, raw in zip(model.yolo_layers, raws, strict=True):
        _, a, h, w, n = raw.shape
        rows = pred[0, offset:offset + a * h * w].view(a, h, w, n).permute(1, 2, 0, 3).reshape(-1, n).clone()
        offset += a * h * w
        rows[:, :4] /= size
        rows[:, 5:] *= rows[:, 4:5]
        out[f"yolo_{index}"] = rows.numpy()
    return out


def assert_parity(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray]) -> int:
    """Compare layer by layer; returns how many class scores were above OpenCV's threshold."""
    assert sorted(ours) == sorted(theirs)
    compared = 0
    for name, mine in ours.items():
        cv = theirs[name]
        assert mine.shape == cv.shape, name
        np.testing.assert_allclose(mine[:, :5], cv[:, :5], rtol=RTOL, atol=0, err_msg=f"{name} box, obj")
        kept = cv[:, 5:] > 0
        assert (cv[:, 5:][kept] > OPENCV_CLASS_THRESHOLD).all()
        np.testing.assert_allclose(mine[:, 5:][kept], cv[:, 5:][kept], rtol=RTOL, atol=0, err_msg=name)
        # where OpenCV zeroed a score, ours must be at or below its threshold (within the tolerance)
        assert (mine[:, 5:][~kept] <= OPENCV_CLASS_THRESHOLD * (1 + RTOL)).all(), name
        compared += int(kept.sum())
    return compared


def image_blob(size: int) -> np.ndarray:
    img = cv2.imread(str(IMAGE))
    assert img is not None, IMAGE
    return cv2.dnn.blobFromImage(img, 1 / 255.0, (size, size), swapRB=True, crop=False)


def test_yolov3_spp3_random_weights_match_opencv(tmp_path):
    torch.manual_seed(0)
    model = Darknet.from_file(MODELS / "yolov3-spp3.cfg")
    blob = image_blob(416)
    # Non-trivial BN statistics: random gamma/beta, running stats taken from the image itself with the
    # variances doubled, so activations stay O(1) and shrink a little per layer instead of amplifying
    # float32 rounding through 126 layers (with the exact image statistics OpenCV's own float32 rounding
    # reaches ~6e-5 relative; this way both sides agree to ~1e-6).
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = 1.0
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
        model.train()
        model(torch.from_numpy(blob))
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.mul_(2)
    variances = torch.cat([m.running_var for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)])
    assert variances.min() < 1e-2 and variances.max() > 1.0

    weights = tmp_path / "spp3-random.weights"
    save_darknet_weights(model, weights)
    ours = ours_in_opencv_layout(model, blob)
    theirs = opencv_outputs(MODELS / "yolov3-spp3.cfg", weights, blob)
    assert [a.shape[0] for a in ours.values()] == [13 * 13 * 3, 26 * 26 * 3, 52 * 52 * 3]
    assert assert_parity(ours, theirs) > 100


def test_real_coco_yolov3_tiny_matches_opencv():
    cfg, weights = COCO_TINY["cfg"], COCO_TINY["weights"]
    model = Darknet.from_file(cfg)
    load_darknet_weights(model, weights)
    blob = image_blob(416)
    ours = ours_in_opencv_layout(model, blob)
    theirs = opencv_outputs(cfg, weights, blob)
    assert assert_parity(ours, theirs) >= 1
    # the trained network finds Grace Hopper's tie (COCO class 27) at the centre of the lower image
    rows = ours["yolo_16"]
    best = rows[rows[:, 5:].max(1).argmax()]
    assert best[5:].argmax() == 27 and best[5 + 27] > 0.5
    assert abs(best[0] - 0.5) < 0.05 and 0.7 < best[1] < 0.9


# linear activations and a size-2 stride-1 maxpool: the two places where OpenCV's reading matters
SMALL_CFG = cfg(conv(8, stride=2, activation="linear"), maxpool(2, 1), head(classes=2))


def test_bn_eps_and_stride1_pool_padding_match_opencv(tmp_path):
    # Tiny BN variances make eps matter (1e-5 instead of Darknet's 1e-6 moves outputs by ~1%), and a
    # negative BN beta makes most activations negative, so zero-padding the size-2 stride-1 maxpool
    # (instead of ignoring the pad) would change the whole right column and bottom row.
    torch.manual_seed(1)
    cfg = tmp_path / "small.cfg"
    cfg.write_text(SMALL_CFG)
    model = Darknet.from_file(cfg)
    with torch.no_grad():
        bn = model.module_list[0].bn
        bn.running_var.uniform_(1e-4, 1e-3)
        bn.running_mean.normal_(0.0, 0.05)
        bn.weight.uniform_(0.001, 0.01)
        bn.bias.fill_(-0.5)
    weights = tmp_path / "small.weights"
    save_darknet_weights(model, weights)
    blob = image_blob(64)
    assert_parity(ours_in_opencv_layout(model, blob), opencv_outputs(cfg, weights, blob))


@pytest.mark.parametrize("size", [320])
def test_yolov3_tiny_at_another_size_matches_opencv(size):
    # the size-2 stride-1 maxpool and the upsample/route at a grid of 10x10 and 20x20
    cfg, weights = COCO_TINY["cfg"], COCO_TINY["weights"]
    model = Darknet.from_file(cfg)
    load_darknet_weights(model, weights)
    blob = image_blob(size)
    ours = ours_in_opencv_layout(model, blob)
    assert [a.shape[0] for a in ours.values()] == [10 * 10 * 3, 20 * 20 * 3]
    assert_parity(ours, opencv_outputs(cfg, weights, blob))
