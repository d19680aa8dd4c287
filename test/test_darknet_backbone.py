"""Darknet's partial weights (darknet53.conv.74: a header and the convolutions of layers 0..74, nothing
after) loaded into the full-size YOLOv3 / SPP1 / SPP3 cfgs with ``cutoff=75``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from slimyolo_ros.darknet.model import Darknet
from slimyolo_ros.darknet.weights import load_darknet_weights
from slimyolo_ros.errors import WeightsError

MODELS = Path(__file__).resolve().parents[1] / "models"
CFGS = ("yolov3.cfg", "yolov3-spp1.cfg", "yolov3-spp3.cfg")
# darknet53.conv.74 as pjreddie.com serves it: 20 header bytes + 40,620,640 float32
DARKNET53_CONV74_BYTES = 162_482_580

pytestmark = pytest.mark.slow  # three full-size models (~60 M parameters each) built on the CPU


def _file_tensors(model: Darknet, cutoff: int) -> list[tuple[int, list[torch.Tensor]]]:
    """Per conv layer before ``cutoff``: its tensors in Darknet's file order."""
    out = []
    for i, (d, m) in enumerate(zip(model.module_defs[:cutoff], model.module_list[:cutoff], strict=True)):
        if d.type == "convolutional":
            ts = [m.bn.bias, m.bn.weight, m.bn.running_mean, m.bn.running_var] if hasattr(m, "bn") else \
                [m.conv.bias]
            out.append((i, ts + [m.conv.weight]))
    return out


@pytest.fixture(scope="module")
def backbone_file(tmp_path_factory):
    """A darknet53.conv.74 of random floats, written byte by byte as Darknet writes it."""
    torch.manual_seed(0)
    model = Darknet.from_file(MODELS / "yolov3.cfg")
    layers = _file_tensors(model, 75)
    count = sum(t.numel() for _, ts in layers for t in ts)
    floats = np.random.default_rng(1).standard_normal(count, dtype=np.float32)
    path = tmp_path_factory.mktemp("backbone") / "darknet53.conv.74"
    with open(path, "wb") as f:
        f.write(np.array([0, 2, 0], "<i4").tobytes() + np.array([32013312], "<i8").tobytes())
        f.write(floats.astype("<f4").tobytes())
    return path, floats, [(i, [tuple(t.shape) for t in ts]) for i, ts in layers]


@pytest.mark.parametrize("cfg", CFGS)
def test_darknet53_conv74_loads_the_52_backbone_convs_and_leaves_the_rest(cfg, backbone_file):
    path, floats, shapes = backbone_file
    assert path.stat().st_size == DARKNET53_CONV74_BYTES
    torch.manual_seed(2)
    model = Darknet.from_file(MODELS / cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    header = load_darknet_weights(model, path, cutoff=75)
    assert header["seen"] == 32013312 and header["floats"] == len(floats)
    layers = _file_tensors(model, 75)
    assert len(layers) == 52 and [(i, [tuple(t.shape) for t in ts]) for i, ts in layers] == shapes
    pos = 0
    for _, ts in layers:
        for t in ts:
            n = t.numel()
            assert np.array_equal(t.detach().numpy().ravel(), floats[pos:pos + n])
            pos += n
    loaded = {f"module_list.{i}." for i, _ in layers}
    rest = [k for k in before if not any(k.startswith(p) for p in loaded)]
    assert any(k.startswith("module_list.105.") or k.startswith("module_list.75.") for k in rest)
    for k in rest:
        assert torch.equal(model.state_dict()[k], before[k]), f"{k} changed"


def test_a_short_backbone_file_names_the_layer_where_it_ends(backbone_file, tmp_path):
    path, floats, shapes = backbone_file
    sizes = [sum(int(np.prod(s)) for s in ss) for _, ss in shapes]
    k = 40  # the file stops half way through the 41st convolution
    cut = sum(sizes[:k]) + sizes[k] // 2
    short = tmp_path / "darknet53.conv.74"
    short.write_bytes(path.read_bytes()[:20 + 4 * cut])
    with pytest.raises(WeightsError, match=rf"ends inside layer {shapes[k][0]} \(\[convolutional\] on cfg "
                                           rf"line \d+, conv {k + 1} of 52"):
        load_darknet_weights(Darknet.from_file(MODELS / "yolov3-spp3.cfg"), short, cutoff=75)
