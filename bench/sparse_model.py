"""A stand-in for a sparsity-trained YOLOv3-SPP3: random weights, BN gammas made sparse on purpose.

Speed does not depend on what the weights have learned, only on the architecture the pruner leaves
behind, so the benchmark does not need a trained model (days of GPU time). What it needs is:

- |gamma| spread over decades like after L1 sparsity training: drawn log-uniform in
  [GAMMA_MIN, GAMMA_MAX], i.i.d. over all channels, so the global P-percentile threshold of
  ``slimyolo prune`` removes a share P of the prunable channels before the shortcut unions and the
  per-layer keep floor (which the pruner applies, and the resulting GFLOPs record);
- activations of a sane scale (no overflow, no denormals, which would make a CPU crawl): the BN
  running statistics are set from one forward pass in train mode (data-dependent init), so every
  BN sees mean 0 / variance 1 input as in a trained network;
- a realistic amount of post-processing work: the head convs are rescaled so their logits have unit
  spread and the objectness bias is chosen so about ``CANDIDATES`` boxes pass the confidence
  threshold on the benchmark frame (a trained VisDrone model sees a few hundred on a dense frame),
  instead of the thousands (or none) that raw random weights give.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from bench.common import SHARED_REFERENCE

GAMMA_MIN, GAMMA_MAX = 1e-4, 1.0
CANDIDATES = 200
CONF_THRESHOLD = 0.25
# The real UAV frame from ../shared when present; tests switch it off (they must not read ../shared
# without the shared_reference fixture).
USE_REFERENCE_FRAME = True


def bench_frame(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A BGR frame of the given size: the real UAV frame in ../shared when present, else textured noise."""
    real = SHARED_REFERENCE / "uav_frame_3840x2160.jpg"
    img = cv2.imread(str(real)) if USE_REFERENCE_FRAME and real.is_file() else None
    if img is None:
        rng = np.random.default_rng(seed)
        small = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
        img = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)


def frame_source() -> str:
    real = SHARED_REFERENCE / "uav_frame_3840x2160.jpg"
    if USE_REFERENCE_FRAME and real.is_file():
        return "the real 3840x2160 UAV frame of ../shared/reference, resized"
    return "textured noise (../shared/reference not used)"


def _to_input(img_bgr: np.ndarray, size: int) -> torch.Tensor:
    # Calibration only (not timed): a plain square resize is close enough to the letterbox.
    rgb = cv2.cvtColor(cv2.resize(img_bgr, (size, size)), cv2.COLOR_BGR2RGB)
    return torch.from_numpy(rgb).permute(2, 0, 1).float().div(255.0).unsqueeze(0)


@torch.no_grad()
def make_sparse_model(cfg: str | Path, seed: int = 0, calib_size: int = 320, head_size: int = 416):
    """Darknet model from ``cfg`` with log-uniform |gamma|, calibrated BN statistics and heads."""
    from slimyolo_ros.darknet.model import Darknet

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = Darknet.from_file(cfg)
    bns = [m.bn for m in model.module_list if isinstance(m, torch.nn.Sequential) and hasattr(m, "bn")]
    for bn in bns:
        c = bn.num_features
        gamma = np.exp(rng.uniform(np.log(GAMMA_MIN), np.log(GAMMA_MAX), c))
        bn.weight.copy_(torch.from_numpy(gamma).float())
        bn.bias.copy_(torch.from_numpy(rng.normal(0.0, 0.05, c)).float())

    # Data-dependent init: with momentum 1 one train-mode pass stores exactly the batch statistics,
    # and each BN normalises with them, so later layers are calibrated on normalised inputs too.
    # The batch holds the frame, its mirror and uniform noise: ONNX parity checks feed noise, and a
    # network calibrated on natural images only can overflow exp() in the box decode on noise.
    frame = bench_frame(1920, 1080, seed)
    noise = torch.from_numpy(rng.random((1, 3, calib_size, calib_size), dtype=np.float32))
    batch = torch.cat([_to_input(frame, calib_size), _to_input(frame[:, ::-1].copy(), calib_size), noise])
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 1.0
    model.train()
    model(batch)
    for bn, m in zip(bns, saved, strict=True):
        bn.momentum = m
    model.eval()
    _calibrate_heads(model, _to_input(frame, head_size))
    return model


def _head_inputs(model, x: torch.Tensor) -> dict[int, torch.Tensor]:
    feats: dict[int, torch.Tensor] = {}
    hooks = []
    for yi in model.yolo_layers:
        conv = model.module_list[yi - 1].conv
        hooks.append(conv.register_forward_hook(lambda m, inp, out, yi=yi: feats.__setitem__(yi, inp[0])))
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return feats


@torch.no_grad()
def _calibrate_heads(model, x: torch.Tensor, rescale: bool = True) -> None:
    """``rescale``: give every head logit a unit spread (box sizes 0.1) on ``x``. Then set the
    objectness bias so that about CANDIDATES boxes pass the confidence threshold on ``x``."""
    feats = _head_inputs(model, x)
    obj_logits, cls_best = [], []
    for yi in model.yolo_layers:
        conv = model.module_list[yi - 1].conv
        layer = model.module_list[yi]
        n = 5 + layer.num_classes
        if rescale:
            z = torch.nn.functional.conv2d(feats[yi], conv.weight, None, conv.stride, conv.padding)
            std = z.flatten(2).std(dim=2)[0].clamp_min(1e-6)  # per output channel
            target = torch.ones_like(std)
            for a in range(layer.num_anchors):
                # Box sizes: exp() of a small spread around the anchor. Wide logits would make exp()
                # amplify float rounding beyond the exporter's ONNX parity tolerance on noise input.
                target[a * n + 2 : a * n + 4] = 0.1
            conv.weight.mul_((target / std).view(-1, 1, 1, 1))
            conv.bias.zero_()
        z = conv(feats[yi])
        for a in range(layer.num_anchors):
            obj_logits.append((z[0, a * n + 4] - conv.bias[a * n + 4]).flatten())
            cls_best.append(z[0, a * n + 5 : (a + 1) * n].sigmoid().amax(0).flatten())
    obj = torch.cat(obj_logits).double()
    cls = torch.cat(cls_best).double()
    # Bisection on the objectness bias b: count(sigmoid(z + b) * best_cls > conf) == CANDIDATES.
    lo, hi = -30.0, 30.0
    for _ in range(60):
        b = (lo + hi) / 2
        count = int(((obj + b).sigmoid() * cls > CONF_THRESHOLD).sum())
        if count > CANDIDATES:
            hi = b
        else:
            lo = b
    for yi in model.yolo_layers:
        conv = model.module_list[yi - 1].conv
        n = 5 + model.module_list[yi].num_classes
        for a in range(model.module_list[yi].num_anchors):
            conv.bias[a * n + 4] = lo


def recalibrate_objectness(model, seed: int = 0, head_size: int = 416) -> None:
    """Re-set only the objectness biases of a pruned model (as fine-tuning would restore its output
    distribution), so every model under test sends about CANDIDATES boxes to NMS. The architecture
    and every other weight stay as the pruner wrote them."""
    _calibrate_heads(model.eval(), _to_input(bench_frame(1920, 1080, seed), head_size), rescale=False)


def class_names(repo: Path) -> list[str]:
    lines = (repo / "models" / "visdrone.names").read_text().splitlines()
    return [line.strip() for line in lines if line.strip()]
