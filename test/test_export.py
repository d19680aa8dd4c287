"""Export: ONNX (ONNX Runtime parity, OpenCV DNN loads and agrees), the ONNX Runtime Detector backend,
TorchScript and Darknet round trips, the `slimyolo export` command."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from conftest import coco_tiny, grace_hopper

from slimyolo_ros.darknet.checkpoint import load_model, save_checkpoint
from slimyolo_ros.darknet.model import Darknet
from slimyolo_ros.detect import DetectorError, DetectorOptions, load_detector
from slimyolo_ros.export.onnx import compare, export_onnx, read_metadata, torch_reference

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
SIZE = 128


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _random_model(seed: int = 0) -> Darknet:
    """The narrow YOLOv3-SPP3 (every layer type: shortcut, SPP maxpools, routes, upsample, 3 heads),
    random weights and non-trivial BN statistics."""
    torch.manual_seed(seed)
    model = Darknet.from_file(MODELS / "yolov3-spp3-tiny-width.cfg").eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


def _names(n: int) -> list[str]:
    return [f"class{i}" for i in range(n)]


@pytest.fixture(scope="module")
def model() -> Darknet:
    return _random_model()


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory) -> dict[bool, tuple[Path, dict]]:
    """decoded -> (path, report) of one export each, in a folder of its own."""
    out = {}
    for decoded in (False, True):
        folder = tmp_path_factory.mktemp("decoded" if decoded else "raw")
        path = folder / "m.onnx"
        out[decoded] = path, export_onnx(model, path, SIZE, _names(model.num_classes), decoded=decoded)
    return out


@pytest.mark.parametrize("decoded", [False, True])
def test_onnx_matches_onnxruntime_and_opencv(model, exported, decoded):
    import onnxruntime as ort

    path, report = exported[decoded]
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version >= 13
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.onnx"]  # one file, no external data
    assert report["onnxruntime"]["ok"] and report["onnxruntime"]["max_abs_diff"] <= 1e-3

    # Independently of the report: our own ORT session against the torch model, batch of 2.
    x = np.random.default_rng(1).random((2, 3, SIZE, SIZE), dtype=np.float32)
    ref = torch_reference(model, x, decoded)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = sess.run(None, {"images": x})
    assert [o.shape for o in outs] == [r.shape for r in ref]
    if not decoded:  # B×A×H×W×(5+C) per head, strides 32, 16, 8
        assert [o.shape[2:4] for o in outs] == [(4, 4), (8, 8), (16, 16)]
    for o, r in zip(outs, ref, strict=True):
        np.testing.assert_allclose(o, r, rtol=1e-4, atol=1e-4)

    # OpenCV DNN loads the same file and computes the same numbers.
    net = cv2.dnn.readNetFromONNX(str(path))
    net.setInput(x[:1])
    cv_outs = net.forward(net.getUnconnectedOutLayersNames())
    by_shape = sorted([r[:1] for r in ref], key=lambda a: a.shape)
    for o, r in zip(sorted(cv_outs, key=lambda a: a.shape), by_shape, strict=True):
        np.testing.assert_allclose(o, r, rtol=1e-4, atol=1e-4)

    meta = read_metadata(path)
    assert meta["outputs"] == ("decoded" if decoded else "raw") and int(meta["img_size"]) == SIZE
    assert meta["class_names"] == _names(model.num_classes) and len(meta["anchors"]) == 3


def test_onnxruntime_backend_gives_the_torch_detections(tmp_path):
    coco = coco_tiny()
    opts = DetectorOptions(cfg=coco["cfg"], names=coco["names"], device="cpu", conf_threshold=0.1)
    on_ort = opts.replace(backend="onnxruntime", onnx_cache=tmp_path)
    img = grace_hopper()
    torch_det = load_detector(coco["weights"], opts)
    ort_det = load_detector(coco["weights"], on_ort)
    assert ort_det.provider == "CPUExecutionProvider" and torch_det.provider == "torch-cpu"
    assert ort_det.onnx_path is not None and ort_det.onnx_path.parent == tmp_path
    threads = torch.get_num_threads()
    a, b = torch_det(img), ort_det(img)
    # the ORT path post-processes on one torch thread and gives the caller's setting back
    assert torch.get_num_threads() == threads
    assert len(a) >= 3
    assert a[:, 5].tolist() == b[:, 5].tolist()
    np.testing.assert_allclose(b[:, :4], a[:, :4], atol=0.05)
    np.testing.assert_allclose(b[:, 4], a[:, 4], atol=1e-4)
    # Tiles go through ORT as a batch (dynamic batch axis) and agree too.
    torch_det.tile = ort_det.tile = (2, 2)
    np.testing.assert_allclose(ort_det(img), torch_det(img), atol=0.05)
    # The cached .onnx loads directly, class names from its metadata; the cache is reused.
    direct = load_detector(ort_det.onnx_path, DetectorOptions(backend="onnxruntime", device="cpu",
                                                              conf_threshold=0.1))
    assert direct.class_names == torch_det.class_names and direct.img_size == 416
    np.testing.assert_allclose(direct(img), b, atol=1e-5)
    again = load_detector(coco["weights"], on_ort)
    assert again.onnx_path == ort_det.onnx_path and len(list(tmp_path.glob("*.onnx"))) == 1


def test_detector_refuses_raw_onnx_and_torch_backend_for_onnx(exported):
    path = exported[False][0]
    with pytest.raises(DetectorError, match="decoded"):
        load_detector(path, DetectorOptions(backend="onnxruntime", device="cpu"))
    with pytest.raises(DetectorError, match="backend='onnxruntime'"):
        load_detector(path, DetectorOptions(device="cpu"))


def test_cli_export_onnx_torchscript_darknet(model, tmp_path, capsys):
    from slimyolo_ros.cli import main

    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, model, _names(model.num_classes), SIZE)

    rc = main(["export", "--weights", str(ckpt), "--format", "onnx", "--decoded", "--out",
               str(tmp_path / "m.onnx"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0 and report["onnxruntime"]["ok"] and report["opencv"]["loads"] and report["opencv"]["ok"]
    assert report["fused_bn"] and report["img_size"] == SIZE

    rc = main(["export", "--weights", str(ckpt), "--format", "torchscript", "--decoded", "--out",
               str(tmp_path / "m.ts"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0 and report["reload"]["ok"]
    scripted = torch.jit.load(str(tmp_path / "m.ts"))
    x = torch.rand(1, 3, SIZE, SIZE)
    with torch.no_grad():
        np.testing.assert_allclose(scripted(x).numpy(), torch_reference(model, x.numpy(), True)[0],
                                   rtol=1e-4, atol=1e-4)

    rc = main(["export", "--weights", str(ckpt), "--format", "darknet", "--out", str(tmp_path / "m.weights"),
               "--json"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0
    back, names, size = load_model(tmp_path / "m.weights", cfg=report["cfg"], names=report["names"])
    assert names == _names(model.num_classes) and size == SIZE
    with torch.no_grad():
        np.testing.assert_array_equal(back(x)[0].numpy(), model(x)[0].numpy())

    rc = main(["export", "--weights", str(ckpt), "--format", "onnx", "--img-size", "100", "--out",
               str(tmp_path / "bad.onnx")])
    assert rc == 2 and "--img-size 100" in capsys.readouterr().err


def test_onnx_dynamic_shapes_and_fp16(model, tmp_path):
    import onnxruntime as ort

    path = tmp_path / "dyn.onnx"
    export_onnx(model, path, SIZE, decoded=True, dynamic=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for size in (96, 160):  # other sizes than the one exported at, as TensorRT profiles would use
        x = np.random.default_rng(size).random((1, 3, size, size), dtype=np.float32)
        (out,) = sess.run(None, {"images": x})
        ref = torch_reference(model, x, True)[0]
        assert out.shape == ref.shape == (1, 3 * (size // 32) ** 2 * 21, 15)
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    # The Detector feeds a free-shape graph rectangular inputs, a fixed-shape one squares only.
    img = np.random.default_rng(1).integers(0, 255, (90, 160, 3), dtype=np.uint8)
    for onnx_path, rect, shape in ((path, True, (96, SIZE)), (tmp_path / "fixed.onnx", False, (SIZE, SIZE))):
        if not rect:
            export_onnx(model, onnx_path, SIZE, _names(model.num_classes), decoded=True)
        det = load_detector(onnx_path, DetectorOptions(backend="onnxruntime", device="cpu"))
        assert read_metadata(onnx_path)["dynamic"] is rect and det.rect is rect
        det(img)
        assert det.last_input_shape == shape

    half = tmp_path / "half.onnx"
    report = export_onnx(model, half, SIZE, decoded=True, half=True)
    assert report["onnxruntime"]["ok"], report
    proto = onnx.load(str(half))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # decoded in fp32


def _decoded_rows(boxes: list[list[float]]) -> np.ndarray:
    """A decoded output: one image, rows of x, y, w, h, objectness, two class scores."""
    return np.array([boxes], np.float32)


def test_parity_tolerance_scales_with_each_columns_magnitude_and_names_non_finite_values():
    ref = _decoded_rows([[300.0, 200.0, 900.0, 700.0, 0.5, 0.2, 0.7],
                         [10.0, 12.0, 30.0, 40.0, 0.1, 0.9, 0.1]])
    # float32 noise in a raw w/h logit comes out of exp() scaled by the box: 0.05 px on a 900 px box
    noisy_box = ref.copy()
    noisy_box[0, 0, 2] += 0.05
    assert compare([noisy_box], [ref])["ok"]
    # the same absolute error on a score is a real disagreement, and so is a wrong class
    noisy_score = ref.copy()
    noisy_score[0, 1, 5] += 0.05
    assert not compare([noisy_score], [ref])["ok"]
    assert compare([noisy_score], [ref])["max_abs_diff"] == pytest.approx(0.05, rel=1e-3)
    # small boxes are not excused by a big box elsewhere in the image beyond the column's own scale
    off = ref.copy()
    off[0, 1, 2] += 1.0
    assert not compare([off], [ref])["ok"]

    # exp overflow of an untrained model: inf on both sides agrees, and is reported
    inf_ref = ref.copy()
    inf_ref[0, 0, 3] = np.inf
    same = compare([inf_ref.copy()], [inf_ref])
    assert same["ok"] and same["max_abs_diff"] == 0.0 and same["nonfinite_reference"] == 1
    # inf on one side only, or nan, is never "max abs diff 0"
    one_sided = compare([ref], [inf_ref])
    assert not one_sided["ok"] and one_sided["max_abs_diff"] == np.inf
    nan_out = ref.copy()
    nan_out[0, 0, 0] = np.nan
    got = compare([nan_out], [ref])
    assert not got["ok"] and np.isnan(got["max_abs_diff"])
