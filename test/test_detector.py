"""The Detector and its parts: letterbox, NMS, BN folding, thresholds/class filter, parity with
OpenCV DNN on a real COCO model and image, tiled inference, the `slimyolo detect` command."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import coco_tiny, grace_hopper

from slimyolo_ros.darknet.model import Darknet
from slimyolo_ros.detect import Detector, DetectorError, DetectorOptions, load_detector
from slimyolo_ros.detect.backends import resolve_device
from slimyolo_ros.detect.fuse import fuse_model
from slimyolo_ros.detect.letterbox import letterbox, letterbox_boxes, unletterbox_boxes
from slimyolo_ros.detect.nms import nms_opencv, nms_torch, postprocess

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def count_bn(model: torch.nn.Module) -> int:
    return sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


TINY_CFG, TINY_WEIGHTS, COCO_NAMES = (coco_tiny()[k] for k in ("cfg", "weights", "names"))
TINY = DetectorOptions(cfg=TINY_CFG, names=COCO_NAMES, device="cpu", conf_threshold=0.1)


@pytest.fixture(scope="module")
def coco_tiny() -> Detector:
    return load_detector(TINY_WEIGHTS, TINY)


# ---------------------------------------------------------------- letterbox
@pytest.mark.parametrize("rect", [False, True])
@pytest.mark.parametrize("shape", [(333, 517), (517, 333), (416, 416), (61, 1001), (1080, 1920)])
def test_letterbox_box_drawn_in_image_comes_back_to_the_same_place(shape, rect):
    h, w = shape
    img = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = int(w * 0.31), int(h * 0.27), int(w * 0.74), int(h * 0.66)
    img[y1:y2, x1:x2] = 255  # pixels x1..x2-1: the box's edges are x1 and x2
    padded, scale, (px, py) = letterbox(img, 416, rect=rect)
    # rect: each side the smallest multiple of 32 that holds the resized image
    expect = {(333, 517): (288, 416), (517, 333): (416, 288), (416, 416): (416, 416), (61, 1001): (32, 416),
              (1080, 1920): (256, 416)}[shape] if rect else (416, 416)
    assert padded.shape == (*expect, 3)
    oh, ow = expect
    # Padding is grey 114 and the image is centred.
    assert padded[0, 0].tolist() == ([114] * 3 if (px or py) else [0] * 3)
    assert abs(px - (ow - round(w * scale)) / 2) <= 0.5 and abs(py - (oh - round(h * scale)) / 2) <= 0.5
    # Find the white box in the network input: bilinear resampling blurs its edges over a pixel, a
    # pixel more than half covered (> 127, and the 114 padding is not) belongs to it.
    mask = padded[..., 0] > 127
    cols, rows = mask.any(0), mask.any(1)
    bx1, bx2 = np.argmax(cols), len(cols) - np.argmax(cols[::-1])
    by1, by2 = np.argmax(rows), len(rows) - np.argmax(rows[::-1])
    back = unletterbox_boxes(np.array([[bx1, by1, bx2, by2]], np.float32), scale, (px, py), (h, w))[0]
    tol = 1.0 / scale + 0.5  # one network pixel, in original pixels
    assert np.abs(back - [x1, y1, x2, y2]).max() <= tol, (back, (x1, y1, x2, y2), tol)


def test_letterbox_mapping_round_trip_is_exact_and_clips():
    rng = np.random.default_rng(0)
    for h, w in [(333, 517), (1080, 1920), (7, 3000)]:
        _, scale, pad = letterbox(np.zeros((h, w), np.uint8), 608)
        boxes = np.sort(rng.uniform(0, 1, (50, 4)), axis=1)[:, [0, 1, 2, 3]] * [w, h, w, h]
        boxes = np.column_stack([np.minimum(boxes[:, 0], boxes[:, 2]), np.minimum(boxes[:, 1], boxes[:, 3]),
                                 np.maximum(boxes[:, 0], boxes[:, 2]), np.maximum(boxes[:, 1], boxes[:, 3])])
        there = letterbox_boxes(boxes, scale, pad, (h, w))
        assert there.min() >= 0 and there.max() <= 608
        back = unletterbox_boxes(there, scale, pad, (h, w))
        np.testing.assert_allclose(back, boxes, atol=2e-3 * max(h, w) / 608 + 1e-3)
    outside = unletterbox_boxes(np.array([[-50, -50, 700, 700, 0.5, 1]], np.float32), scale, pad, (h, w))
    assert outside[0].tolist()[:4] == [0, 0, w, h] and outside[0, 4] == np.float32(0.5)


# ---------------------------------------------------------------- NMS
def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _brute_force_nms(boxes, scores, classes, thr) -> list[int]:
    """Textbook greedy NMS, one box at a time, per class, in plain Python."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    kept: list[int] = []
    for i in order:
        if all(classes[k] != classes[i] or _iou(boxes[i], boxes[k]) <= thr for k in kept):
            kept.append(i)
    return kept


@pytest.mark.parametrize("nms", [nms_opencv, nms_torch], ids=["opencv", "torch"])
@pytest.mark.parametrize("seed,n,classes,thr", [(0, 300, 1, 0.45), (1, 400, 3, 0.5), (2, 1500, 4, 0.3)])
def test_batched_nms_equals_brute_force(nms, seed, n, classes, thr):
    g = torch.Generator().manual_seed(seed)
    # Clustered boxes so that plenty are suppressed, in chains (a suppressed box must not suppress).
    centres = torch.rand(max(n // 15, 1), 2, generator=g) * 300
    xy = centres[torch.randint(0, centres.shape[0], (n,), generator=g)] + torch.randn(n, 2, generator=g) * 8
    wh = torch.rand(n, 2, generator=g) * 40 + 10
    boxes = torch.cat([xy, xy + wh], 1)
    scores = torch.rand(n, generator=g)
    cls = torch.randint(0, classes, (n,), generator=g)
    keep = nms(boxes, scores, cls, thr)
    ref = _brute_force_nms(boxes.tolist(), scores.tolist(), cls.tolist(), thr)
    assert keep.tolist() == ref
    assert n > len(ref) > n // 20  # the case is neither trivial nor empty
    limited = nms(boxes, scores, cls, thr, max_keep=17)
    assert limited.tolist() == ref[:17]
    # equal scores: the lower index first, in both implementations
    tied = nms(boxes, torch.full_like(scores, 0.5), cls, thr)
    assert tied.tolist() == _brute_force_nms(boxes.tolist(), [0.5] * n, cls.tolist(), thr)
    assert nms(boxes[:0], scores[:0], cls[:0], thr).tolist() == []


def test_postprocess_drops_non_finite_boxes_and_keeps_the_rest():
    pred = torch.tensor([[[50, 50, 20, 20, 0.9, 0.9, 0.1],
                          [52, 50, float("nan"), 20, 0.95, 0.9, 0.1],
                          [300, 300, float("inf"), 20, 0.95, 0.1, 0.9],
                          [200, 200, 10, 10, 0.8, 0.1, 0.9]]])
    (out,) = postprocess(pred, 0.25, 0.45, 300)
    assert out[:, 5].tolist() == [0, 1] and torch.isfinite(out).all()


def test_postprocess_scores_thresholds_filter_and_cap():
    # Three boxes, two classes: score = obj × cls.
    pred = torch.tensor([[[50, 50, 20, 20, 0.9, 0.9, 0.1],    # cls 0, 0.81
                          [52, 50, 20, 20, 0.8, 0.2, 0.9],    # cls 1, 0.72, overlaps box 0 (other class)
                          [51, 51, 20, 20, 0.7, 0.95, 0.0],   # cls 0, 0.665, suppressed by box 0
                          [200, 200, 10, 10, 0.3, 0.5, 0.5]]])  # 0.15: below 0.25
    (out,) = postprocess(pred, 0.25, 0.45, 300)
    assert out.shape == (2, 6)
    np.testing.assert_allclose(out[:, 4].numpy(), [0.81, 0.72], rtol=1e-6)
    assert out[:, 5].tolist() == [0, 1]
    np.testing.assert_allclose(out[0, :4].numpy(), [40, 40, 60, 60])
    (only1,) = postprocess(pred, 0.25, 0.45, 300, class_filter=[1])
    assert only1[:, 5].tolist() == [1]
    (low,) = postprocess(pred, 0.1, 0.45, 300)
    assert low.shape[0] == 3 and low[-1, 4].item() == pytest.approx(0.15)
    (cap,) = postprocess(pred, 0.1, 0.45, 1)
    assert cap.shape[0] == 1 and cap[0, 4].item() == pytest.approx(0.81)
    (multi,) = postprocess(pred, 0.1, 0.45, 300, multi_label=True)
    # Box 3 gives two labels; box 1's class-0 label (0.16) falls to box 0 (same class, IoU 0.82).
    assert sorted(multi[:, 5].tolist()) == [0, 0, 1, 1]
    assert sorted(multi[:, 4].tolist()) == pytest.approx([0.15, 0.15, 0.72, 0.81])


# ---------------------------------------------------------------- BN folding
def test_fused_bn_equals_unfused():
    model = Darknet.from_file(MODELS / "yolov3-spp3-tiny-width.cfg").eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):  # non-trivial statistics, or folding is a no-op
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.3)
    fused = fuse_model(model)
    assert count_bn(model) > 50 and count_bn(fused) == 0
    assert count_bn(model) > 0  # the original is untouched
    x = torch.rand(2, 3, 128, 128, generator=g)
    with torch.no_grad():
        ref, fz = model(x)[0], fused(x)[0]
    err = ((fz - ref).abs() / (ref.abs() + 1)).max().item()
    assert err < 1e-4, err


# ---------------------------------------------------------------- real model vs OpenCV DNN
def _opencv_detections(img: np.ndarray, conf: float, nms: float, tmp: Path) -> np.ndarray:
    """Darknet cfg+weights in OpenCV DNN, OpenCV's blobFromImage and NMSBoxes, per class."""
    # OpenCV zeroes obj × cls below the [yolo] layer's `thresh` (default 0.2); lower it so that
    # scores down to `conf` survive (our parser does not know the key, so OpenCV gets its own copy).
    cfg = tmp / "yolov3-tiny-thresh.cfg"
    cfg.write_text(TINY_CFG.read_text().replace("[yolo]", "[yolo]\nthresh=0.01"))
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(TINY_WEIGHTS))
    net.setInput(cv2.dnn.blobFromImage(img, 1 / 255, (416, 416), swapRB=True, crop=False))
    out = np.concatenate(net.forward(net.getUnconnectedOutLayersNames()))
    h, w = img.shape[:2]
    cls = out[:, 5:].argmax(1)
    score = out[np.arange(len(out)), 5 + cls]
    m = score > conf
    b = out[m, :4] * [w, h, w, h]
    xywh = np.column_stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 2], b[:, 3]])
    rows = []
    for c in np.unique(cls[m]):
        idx = np.flatnonzero(cls[m] == c)
        for k in np.asarray(cv2.dnn.NMSBoxes(xywh[idx].tolist(), score[m][idx].tolist(), conf, nms)).ravel():
            x, y, bw, bh = xywh[idx[k]]
            rows.append([x, y, x + bw, y + bh, score[m][idx[k]], c])
    res = np.array(rows, np.float32).reshape(-1, 6)
    res[:, [0, 2]] = res[:, [0, 2]].clip(0, w)
    res[:, [1, 3]] = res[:, [1, 3]].clip(0, h)
    return res[np.argsort(-res[:, 4], kind="stable")]


def test_detections_match_opencv_dnn_on_real_image(coco_tiny, tmp_path):
    # A square crop: OpenCV's plain resize to 416x416 is then exactly our letterbox.
    img = np.ascontiguousarray(grace_hopper()[44:556])
    ours = coco_tiny(img)
    ref = _opencv_detections(img, coco_tiny.conf_threshold, coco_tiny.nms_threshold, tmp_path)
    assert len(ref) >= 3, ref  # a person and ties at least
    assert ours.dtype == np.float32 and ours.shape == ref.shape, (ours, ref)
    assert ours[:, 5].tolist() == ref[:, 5].tolist()
    assert {coco_tiny.class_names[int(c)] for c in ours[:, 5]} >= {"person", "tie"}
    np.testing.assert_allclose(ours[:, :4], ref[:, :4], atol=1.0)
    np.testing.assert_allclose(ours[:, 4], ref[:, 4], atol=1e-3)


def _matched(a: np.ndarray, b: np.ndarray, min_iou: float) -> bool:
    """Every box of ``a`` has a same-class box in ``b`` with IoU >= min_iou."""
    return all(any(int(q[5]) == int(p[5]) and _iou(p, q) >= min_iou for q in b) for p in a)


def test_rect_input_finds_what_the_square_input_finds(coco_tiny):
    # A 16:9 frame, the photo off-centre in noise: rect input 416x256 instead of 416x416.
    wide = np.random.default_rng(3).integers(60, 200, (600, 1066, 3), dtype=np.uint8)
    wide[:, 400:912] = grace_hopper()
    square = load_detector(TINY_WEIGHTS, TINY.replace(rect=False))
    a = square(wide)
    assert square.last_input_shape == (416, 416)
    b = coco_tiny(wide)
    assert coco_tiny.rect and coco_tiny.last_input_shape == (256, 416)
    strong_a, strong_b = a[a[:, 4] > 0.3], b[b[:, 4] > 0.3]
    assert len(strong_a) >= 1 and len(strong_b) >= 1  # the person at least
    # Same objects at the same places: the boxes map back through the rect padding, not the square's
    # (the tiny net's scores move with the grid alignment, so the match is of strong against weak).
    assert _matched(strong_a, b, 0.8) and _matched(strong_b, a, 0.8), (a, b)


def test_thresholds_class_filter_and_input_forms(coco_tiny):
    img = grace_hopper()
    det = coco_tiny
    all_dets = det(img)
    assert len(all_dets) >= 3 and (all_dets[:, 4] > 0.1).all()
    assert (all_dets[:, [0, 2]] >= 0).all() and (all_dets[:, [0, 2]] <= 512).all()
    assert (all_dets[:, [1, 3]] >= 0).all() and (all_dets[:, [1, 3]] <= 600).all()
    try:
        det.conf_threshold = 0.3
        high = det(img)
        assert len(high) < len(all_dets) and (high[:, 4] > 0.3).all()
        det.conf_threshold = 0.1
        det.class_filter = ["tie"]
        ties = det(img)
        assert det.class_filter == ["tie"]
        assert len(ties) >= 1 and set(ties[:, 5].tolist()) == {det.class_names.index("tie")}
        np.testing.assert_array_equal(ties, all_dets[all_dets[:, 5] == det.class_names.index("tie")])
        with pytest.raises(DetectorError, match=r"unknown class 'necktie'.*valid names: person, bicycle"):
            det.class_filter = ["necktie"]
        det.class_filter = None
        with pytest.raises(ValueError, match="conf_threshold 1.5"):
            det.conf_threshold = 1.5
        with pytest.raises(ValueError, match="nms_threshold -0.1"):
            det.nms_threshold = -0.1
        with pytest.raises(ValueError, match="max_detections 0"):
            det.max_detections = 0
        det.max_detections = 2
        assert len(det(img)) == 2
    finally:
        det.conf_threshold, det.class_filter, det.max_detections = 0.1, None, 300
    # BGRA and grayscale are converted; the alpha channel is dropped, not mistaken for a colour.
    bgra = np.dstack([img, np.full(img.shape[:2], 7, np.uint8)])
    np.testing.assert_array_equal(det(bgra), all_dets)
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    np.testing.assert_array_equal(det(gray), det(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)))
    with pytest.raises(DetectorError, match="dtype must be uint8.*float32"):
        det(img.astype(np.float32))
    # Timings are reported per stage.
    assert set(det.last_timings) >= {"preprocess", "forward", "postprocess"}


def test_a_batch_gives_each_image_the_boxes_it_gets_alone(coco_tiny):
    """detect_batch: two cameras of one shape share a forward pass, a third shape runs on its own; every
    image gets (to float tolerance) the boxes it gets alone, in its own pixels."""
    photo = grace_hopper()
    front = np.full((720, 1280, 3), 96, np.uint8)
    front[60:660, 700:1212] = photo
    down = np.full((720, 1280, 3), 40, np.uint8)
    down[100:400, 100:356] = cv2.resize(photo, (256, 300))
    odd = cv2.resize(photo, (300, 360))  # another letterbox shape: its own group
    images = [front, down, odd, front[:, ::-1].copy()]
    alone = [coco_tiny(img) for img in images]
    batch = coco_tiny.detect_batch(images)
    assert len(batch) == len(images)
    assert all(len(d) for d in alone), [len(d) for d in alone]  # something to compare in every image
    for got, want in zip(batch, alone, strict=True):
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-2, rtol=1e-4)
    assert coco_tiny.detect_batch([]) == []
    with pytest.raises(DetectorError, match="dtype"):
        coco_tiny.detect_batch([front, front.astype(np.float32)])


def test_unfused_detector_matches_fused(coco_tiny):
    img = grace_hopper()
    plain = load_detector(TINY_WEIGHTS, TINY.replace(fuse=False, channels_last=False))
    assert coco_tiny.fused and not plain.fused
    a, b = coco_tiny(img), plain(img)
    assert a[:, 5].tolist() == b[:, 5].tolist()
    np.testing.assert_allclose(a, b, atol=1e-3)


def test_fp16_network_decodes_in_fp32_and_agrees_with_fp32():
    """The one decode runs in fp32 whatever the network's dtype (the node's default GPU path is fp16).

    Run here with CPU fp16 convolutions (torch 2.13 has them; slow, hence 320 px). Tolerances: the
    fp16 network moves a box centre by ~0.02 px, its size by ~0.1 % and a score by ~0.003 on this
    model; 0.05 px is below what fp16 coordinates can even hold past 256 px (their spacing is 0.25 px).
    """
    import copy

    from slimyolo_ros.darknet.checkpoint import load_model

    model, _, _ = load_model(TINY_WEIGHTS, cfg=TINY_CFG, names=COCO_NAMES, device="cpu")
    model.eval()
    padded, _, _ = letterbox(grace_hopper(), 320)
    x = torch.from_numpy(padded[None]).permute(0, 3, 1, 2).flip(1).float() / 255
    with torch.inference_mode():
        pred32, _ = model(x)
        pred16, raws16 = copy.deepcopy(model).half()(x.half())
    assert raws16[0].dtype == torch.float16 and pred16.dtype == torch.float32
    keep = pred32[0, :, 4] > 0.05
    assert keep.sum() >= 5
    a, b = pred32[0, keep], pred16[0, keep]
    assert (a[:, :2] - b[:, :2]).abs().max() < 0.05
    assert ((a[:, 2:4] - b[:, 2:4]).abs() / a[:, 2:4]).max() < 0.01
    assert (a[:, 4:] - b[:, 4:]).abs().max() < 0.01


def test_device_selection():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(DetectorError, match="'tpu'"):
        resolve_device("tpu")
    if torch.cuda.is_available():
        assert resolve_device("cuda").type == "cuda"
        with pytest.raises(DetectorError, match="cuda:99"):
            resolve_device("cuda:99")
    else:
        with pytest.raises(DetectorError, match="'cuda'.*no CUDA GPU"):
            resolve_device("cuda")
        # half means fp16 where it runs (torch on CUDA); the Detector says what it uses.
        det = Detector.from_model(Darknet.from_file(MODELS / "yolov3-tiny.cfg"),
                                  [str(i) for i in range(10)], 128, device="cpu", half=True)
        assert det.half is False and det.device.type == "cpu"


@pytest.mark.parametrize("option,value,needle", [
    ("backend", "tensorrt", "backend 'tensorrt'"), ("device", "tpu", "device 'tpu'"),
    ("device", "cuda:x", "device 'cuda:x'"), ("img_size", 400, "img_size 400"),
    ("img_size", True, "img_size True"), ("conf_threshold", 1.5, "conf_threshold 1.5"),
    ("nms_threshold", float("nan"), "nms_threshold nan"), ("max_detections", 0, "max_detections 0"),
    ("tile", "2xz", "tile '2xz'"), ("tile_overlap", 1.0, "tile_overlap 1.0"), ("half", "yes", "half 'yes'"),
    ("classes", [1.5], "1.5 is neither"), ("providers", "gpu", "'gpu' is not an execution provider"),
    ("cfg", 3, "cfg 3"),
])
def test_options_name_the_bad_value_before_any_model_is_loaded(option, value, needle):
    with pytest.raises(DetectorError, match=needle):
        DetectorOptions(**{option: value})


def test_options_are_normalised_once_and_frozen():
    o = DetectorOptions.from_mapping({"device": " CUDA ", "tile": "2x3", "classes": "car, ,person",
                                      "backend": "onnxruntime", "providers": "[trt, CPU]"})
    assert o.device == "cuda:0" and (o.tile.rows, o.tile.cols) == (2, 3) and o.classes == ("car", "person")
    assert o.providers == ("TensorrtExecutionProvider", "CPUExecutionProvider")
    assert o.replace(conf_threshold=0.5) == DetectorOptions(**{**vars(o), "conf_threshold": 0.5})
    with pytest.raises(AttributeError):
        o.conf_threshold = 0.9  # type: ignore[misc]
    with pytest.raises(DetectorError, match="unknown detector option.*'conf'"):
        DetectorOptions.from_mapping({"conf": 0.5})
    with pytest.raises(DetectorError, match="providers .* belong to backend 'onnxruntime'"):
        DetectorOptions(providers="cuda")  # torch backend


def test_load_detector_checks_what_needs_the_model():
    with pytest.raises(DetectorError, match="unknown class 'unicorn'"):
        load_detector(TINY_WEIGHTS, TINY.replace(classes=["person", "unicorn"]))


# ---------------------------------------------------------------- tiling
def test_tiled_inference_finds_a_small_object_the_whole_frame_misses(coco_tiny):
    img = grace_hopper()
    tie = coco_tiny.class_names.index("tie")
    full_size = coco_tiny(img)
    ref_tie = full_size[full_size[:, 5] == tie][0, :4]  # where the tie is in the real photo
    # The photo shrunk to 250 px high in a 1664x1664 frame: the whole frame goes in at 1/4 scale.
    small_h, canvas = 250, 1664
    s = small_h / img.shape[0]
    small = cv2.resize(img, (round(img.shape[1] * s), small_h), interpolation=cv2.INTER_AREA)
    frame = np.full((canvas, canvas, 3), 114, np.uint8)
    x0, y0 = 565, 869
    frame[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
    expected = ref_tie * s + [x0, y0, x0, y0]
    try:
        coco_tiny.conf_threshold = 0.2
        whole = coco_tiny(frame)
        coco_tiny.tile = (3, 3)
        tiled = coco_tiny(frame)
        tiles = coco_tiny.last_timings["tiles"]
    finally:
        coco_tiny.tile, coco_tiny.conf_threshold = None, 0.1
    assert tiles == 10  # 9 tiles + the whole frame
    assert tie not in whole[:, 5].tolist()
    found = tiled[tiled[:, 5] == tie]
    assert len(found) >= 1
    cx, cy = (found[0, 0] + found[0, 2]) / 2, (found[0, 1] + found[0, 3]) / 2
    assert expected[0] <= cx <= expected[2] and expected[1] <= cy <= expected[3], (found, expected)
    # What the whole frame found survives the merge (the person).
    assert 0 in tiled[:, 5].tolist()


# ---------------------------------------------------------------- CLI
def test_cli_detect_json_and_annotated_png(tmp_path, capsys, coco_tiny):
    from slimyolo_ros.cli import main

    img = grace_hopper()
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), img)
    out = tmp_path / "annotated.png"
    rc = main(["detect", "--cfg", str(TINY_CFG), "--weights", str(TINY_WEIGHTS), "--names", str(COCO_NAMES),
               "--image", str(src), "--conf", "0.1", "--device", "cpu", "--out", str(out), "--json"])
    assert rc == 0
    stdout = capsys.readouterr().out
    result = json.loads(stdout)
    ref = coco_tiny(img)
    assert [d["class_id"] for d in result["detections"]] == ref[:, 5].astype(int).tolist()
    assert [d["class_name"] for d in result["detections"]][: 1] == [coco_tiny.class_names[int(ref[0, 5])]]
    np.testing.assert_allclose([d["bbox"] for d in result["detections"]], ref[:, :4], atol=0.01)
    np.testing.assert_allclose([d["score"] for d in result["detections"]], ref[:, 4], atol=1e-5)
    assert (result["width"], result["height"]) == (512, 600)
    drawn = cv2.imread(str(out))
    assert drawn.shape == img.shape and np.abs(drawn.astype(int) - img).sum() > 0
    rc = main(["detect", "--cfg", str(TINY_CFG), "--weights", str(TINY_WEIGHTS), "--image",
               str(tmp_path / "missing.jpg"), "--device", "cpu"])
    assert rc == 2 and "missing.jpg: image not found" in capsys.readouterr().err


@pytest.mark.parametrize("shape,color", [((1080, 1920, 3), 114), ((300, 200, 3), (10, 20, 30)),
                                         ((480, 640), 7), ((50, 60, 5), (1, 2, 3, 4, 5))])
def test_letterbox_pixels_are_the_resized_image_inside_the_fill_colour(shape, color):
    from slimyolo_ros.detect.letterbox import letterbox, letterbox_params

    img = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    out, _, (px, py) = letterbox(img, 416, color)
    _, _, (nh, nw) = letterbox_params(shape[0], shape[1], 416)
    assert out.shape == (416, 416, *shape[2:]) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[py:py + nh, px:px + nw],
                                  cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR))
    border = np.ones((416, 416), bool)
    border[py:py + nh, px:px + nw] = False
    fill = np.broadcast_to(np.asarray(color, np.uint8), out[border].shape)
    np.testing.assert_array_equal(out[border], fill)
