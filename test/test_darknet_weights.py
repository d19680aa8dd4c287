"""Darknet .weights IO and the project's .pt checkpoints."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import MODELS, coco_tiny
from tiny_cfg import tiny_detector

from slimyolo_ros.darknet.checkpoint import load_checkpoint, load_model, load_names, save_checkpoint
from slimyolo_ros.darknet.model import Darknet
from slimyolo_ros.darknet.weights import load_darknet_weights, save_darknet_weights
from slimyolo_ros.errors import WeightsError

COCO_TINY = coco_tiny()

SMALL_CFG = tiny_detector()


def randomize(model: Darknet, seed: int) -> Darknet:
    """Random weights and non-trivial BN statistics, so every stored tensor matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif t.dtype.is_floating_point and not name.endswith("anchors"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
    return model


def small(seed: int | None = None) -> Darknet:
    model = Darknet.from_text(SMALL_CFG, "small.cfg")
    return randomize(model, seed) if seed is not None else model


def stored_tensors(model: Darknet) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def float_count(model: Darknet, layers: int | None = None) -> int:
    # independent of weights.py: everything in the state_dict of conv layers except the BN step counter
    n = len(model.module_list) if layers is None else layers
    return sum(v.numel() for k, v in model.state_dict().items()
               if int(k.split(".")[1]) < n and not k.endswith("num_batches_tracked"))


def test_round_trip_is_bit_exact(tmp_path):
    model = small(seed=1)
    first = tmp_path / "a.weights"
    save_darknet_weights(model, first, seen=1234)
    data = first.read_bytes()
    assert struct.unpack("<iiiq", data[:20]) == (0, 2, 0, 1234)
    assert len(data) == 20 + 4 * float_count(model)

    other = small(seed=2)
    header = load_darknet_weights(other, first)
    assert header["seen"] == 1234
    for key, value in stored_tensors(model).items():
        assert torch.equal(other.state_dict()[key], value), key
    second = tmp_path / "b.weights"
    save_darknet_weights(other, second)
    assert second.read_bytes() == data
    # Darknet's order for a BN conv: beta, gamma, mean, var, then weights
    bn = model.module_list[0].bn
    floats = np.frombuffer(data[20:], "<f4")
    assert np.array_equal(floats[:8], bn.bias.detach().numpy())
    assert np.array_equal(floats[8:16], bn.weight.detach().numpy())
    assert np.array_equal(floats[24:32], bn.running_var.numpy())
    # a conv without BN: bias, then weights
    conv3 = model.module_list[2].conv
    start = 8 * 4 + 8 * 3 * 9 + 16 * 4 + 16 * 8 * 9
    assert np.array_equal(floats[start:start + 12], conv3.bias.detach().numpy())


def test_old_header_with_int32_seen_round_trips(tmp_path):
    model = small(seed=3)
    body = b"".join(t.detach().numpy().astype("<f4").tobytes() for i in (0, 1, 2, 3)
                    for t in _file_order(model.module_list[i]))
    old = tmp_path / "old.weights"
    old.write_bytes(struct.pack("<iiii", 0, 1, 0, 777) + body)
    fresh = small()
    assert load_darknet_weights(fresh, old)["seen"] == 777
    for key, value in stored_tensors(model).items():
        assert torch.equal(fresh.state_dict()[key], value), key
    save_darknet_weights(fresh, tmp_path / "again.weights")
    assert (tmp_path / "again.weights").read_bytes() == old.read_bytes()


def _file_order(module):
    if hasattr(module, "bn"):
        bn = module.bn
        return [bn.bias, bn.weight, bn.running_mean, bn.running_var, module.conv.weight]
    return [module.conv.bias, module.conv.weight]


def test_real_yolov3_tiny_weights_round_trip(tmp_path):
    model = Darknet.from_file(COCO_TINY["cfg"])
    load_darknet_weights(model, COCO_TINY["weights"])
    save_darknet_weights(model, tmp_path / "tiny.weights")
    assert (tmp_path / "tiny.weights").read_bytes() == (COCO_TINY["weights"]).read_bytes()


def test_truncated_and_oversized_files_say_expected_and_found(tmp_path):
    model = small(seed=4)
    good = tmp_path / "good.weights"
    save_darknet_weights(model, good)
    data = good.read_bytes()
    expected = float_count(model)

    (tmp_path / "short.weights").write_bytes(data[:-12])
    with pytest.raises(WeightsError, match=rf"short.weights: truncated: expected {expected} floats .*"
                                           rf"found {expected - 3}"):
        load_darknet_weights(small(), tmp_path / "short.weights")
    (tmp_path / "long.weights").write_bytes(data + b"\0" * 8)
    with pytest.raises(WeightsError, match=rf"long.weights: oversized: expected {expected} floats .*"
                                           rf"found {expected + 2}"):
        load_darknet_weights(small(), tmp_path / "long.weights")
    (tmp_path / "ragged.weights").write_bytes(data + b"\0")
    with pytest.raises(WeightsError, match=rf"ragged.weights: .*not a whole number of float32 .*{expected}"):
        load_darknet_weights(small(), tmp_path / "ragged.weights")
    (tmp_path / "header.weights").write_bytes(data[:10])
    with pytest.raises(WeightsError, match="header.weights: 10 bytes is too short"):
        load_darknet_weights(small(), tmp_path / "header.weights")
    with pytest.raises(WeightsError, match="absent.weights: weights file not found"):
        load_darknet_weights(small(), tmp_path / "absent.weights")
    # a failed load leaves the model untouched
    target = small(seed=5)
    before = stored_tensors(target)
    with pytest.raises(WeightsError):
        load_darknet_weights(target, tmp_path / "short.weights")
    assert all(torch.equal(target.state_dict()[k], v) for k, v in before.items())


def test_cutoff_loads_and_saves_a_prefix(tmp_path):
    source = small(seed=6)
    full = tmp_path / "full.weights"
    save_darknet_weights(source, full)
    target = small(seed=7)
    untouched = stored_tensors(target)
    load_darknet_weights(target, full, cutoff=2)  # a "backbone" file may be longer than the prefix
    for key, value in stored_tensors(source).items():
        layer = int(key.split(".")[1])
        expected = value if layer < 2 else untouched[key]
        assert torch.equal(target.state_dict()[key], expected), key

    prefix = tmp_path / "backbone.conv.2"
    save_darknet_weights(source, prefix, cutoff=2)
    assert prefix.stat().st_size == 20 + 4 * float_count(source, layers=2)
    fresh = small(seed=8)
    load_darknet_weights(fresh, prefix, cutoff=2)
    assert torch.equal(fresh.module_list[1].conv.weight, source.module_list[1].conv.weight)
    with pytest.raises(WeightsError, match=rf"truncated: expected {float_count(source)} floats"):
        load_darknet_weights(small(), prefix)
    three = float_count(source, 3)
    with pytest.raises(WeightsError, match=rf"truncated: expected {three} floats for 3 conv"):
        load_darknet_weights(small(), prefix, cutoff=3)


def test_checkpoint_round_trip(tmp_path):
    model = small(seed=9).eval()
    names = ["person", "car"]
    path = save_checkpoint(tmp_path / "run" / "best.pt", model, names, 64, epoch=7,
                           optimizer={"lr": 0.01, "momentum": torch.tensor([0.9])})
    assert not list((tmp_path / "run").glob(".*tmp"))  # no temp files left behind
    ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 7 and ckpt["class_names"] == names and ckpt["img_size"] == 64
    loaded, class_names, img_size = load_model(path)
    assert class_names == names and img_size == 64 and not loaded.training
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x)[0], model(x)[0])
    # Darknet .weights + cfg + names is the other way in
    save_darknet_weights(model, tmp_path / "small.weights")
    (tmp_path / "small.cfg").write_text(SMALL_CFG)
    (tmp_path / "two.names").write_text("person\ncar\n")
    loaded, class_names, _ = load_model(tmp_path / "small.weights", tmp_path / "small.cfg",
                                        tmp_path / "two.names")
    assert class_names == names
    with torch.no_grad():
        assert torch.equal(loaded(x)[0], model(x)[0])
    _, class_names, _ = load_model(tmp_path / "small.weights", tmp_path / "small.cfg")
    assert class_names == ["0", "1"]


def test_checkpoint_errors_are_named(tmp_path):
    model = small(seed=10)
    path = save_checkpoint(tmp_path / "m.pt", model, ["a", "b"], 64)
    with pytest.raises(WeightsError, match=r"class-count mismatch: .*2 classes .*visdrone.names has 10"):
        load_model(path, names=MODELS / "visdrone.names")
    wide = tmp_path / "wide.cfg"
    wide.write_text(tiny_detector(widths=(8, 24)))
    with pytest.raises(WeightsError, match=r"m.pt: state_dict does not fit .*wide.cfg"):
        load_model(path, cfg=wide)
    with pytest.raises(WeightsError, match="need a cfg"):
        load_model(tmp_path / "x.weights")
    with pytest.raises(WeightsError, match="absent.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "absent.pt")
    torch.save({"state_dict": {}}, tmp_path / "partial.pt")
    with pytest.raises(WeightsError, match="partial.pt: checkpoint lacks cfg, class_names, img_size"):
        load_checkpoint(tmp_path / "partial.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a zip file at all")
    with pytest.raises(WeightsError, match="garbage.pt: not a readable torch checkpoint"):
        load_checkpoint(tmp_path / "garbage.pt")
    with pytest.raises(WeightsError, match="save.pt: 3 class names for a model with 2 classes"):
        save_checkpoint(tmp_path / "save.pt", model, ["a", "b", "c"], 64)
    (tmp_path / "empty.names").write_text("\n\n")
    with pytest.raises(WeightsError, match="empty.names: names file holds no class names"):
        load_names(tmp_path / "empty.names")


class _Payload:
    """Unpickling this would create a file: a stand-in for arbitrary code in a .pt."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pt_with_pickled_code_is_refused(tmp_path):
    marker = tmp_path / "code-ran"
    model = small(seed=11)
    evil = tmp_path / "evil.pt"
    torch.save({"cfg": model.cfg_text(), "class_names": ["a", "b"], "img_size": 64,
                "state_dict": model.state_dict(), "hook": _Payload(marker)}, evil)
    with pytest.raises(WeightsError, match=r"evil.pt: refused: .*weights_only=True.*GLOBAL"):
        load_checkpoint(evil)
    with pytest.raises(WeightsError, match="evil.pt: refused"):
        load_model(evil)
    assert not marker.exists()
