"""Bare forward passes of one network in three runtimes, on the same input blob.

Each ``*_forward`` returns a zero-argument callable that runs the network once on a fixed
1×3×S×S float32 RGB blob and returns when the outputs are computed (so the timer sees the whole
forward, including the YOLO decode that each runtime does in its graph). Pre- and post-processing
are timed separately by the node split (bench/node_split.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

Forward = Callable[[], object]


def detector(
    pt: Path,
    backend: str,
    img_size: int,
    device: str = "cpu",
    half: bool = False,
    fuse: bool = True,
    onnx_cache: Path | None = None,
    **kw,
):
    """The project's Detector for ``pt``, configured as the node would run it (``kw``: more options)."""
    from slimyolo_ros.detect.detector import Detector

    return Detector(
        str(pt),
        backend=backend,
        img_size=img_size,
        device=device,
        half=half,
        fuse=fuse,
        onnx_cache=onnx_cache,
        **kw,
    )


def torch_forward(det, blob: np.ndarray) -> Forward:
    """The Detector's torch network (fused or not, fp16 if the Detector is) on the float blob."""
    import torch

    model = det.model
    x = torch.from_numpy(blob).to(det.device)
    if det.half:
        x = x.half()
    # The Detector may keep the model in NHWC (channels_last); feed the layout it runs on.
    w = model.module_list[0].conv.weight
    if w.dim() == 4 and not w.is_contiguous() and w.is_contiguous(memory_format=torch.channels_last):
        x = x.contiguous(memory_format=torch.channels_last)
    sync = (lambda: torch.cuda.synchronize(det.device)) if det.device.type == "cuda" else (lambda: None)

    def run() -> object:
        with torch.inference_mode():
            out = model(x)[0]
        sync()
        return out

    return run


def onnxruntime_forward(
    onnx_path: Path, blob: np.ndarray, device: str = "cpu", half: bool = False
) -> Forward:
    """ONNX Runtime on the graph the Detector exported, in a session made by the project's
    ``ort_session`` (intra-op threads = torch's thread count, i.e. the fixed count)."""
    import onnxruntime as ort

    from slimyolo_ros.export.onnx import ort_session

    sess = ort_session(onnx_path, device)
    inp = sess.get_inputs()[0]
    x = blob.astype(np.float16 if half else np.float32)
    if device.startswith("cuda"):
        # Input and outputs stay on the GPU so the timing is the network, not PCIe copies.
        io = sess.io_binding()
        io.bind_ortvalue_input(inp.name, ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
        for o in sess.get_outputs():
            io.bind_output(o.name, "cuda")

        def run_bound() -> object:
            sess.run_with_iobinding(io)
            return None

        return run_bound
    feed = {inp.name: x}

    def run() -> object:
        return sess.run(None, feed)

    return run


def opencv_forward(
    cfg: Path, weights: Path, blob: np.ndarray, device: str = "cpu", half: bool = False
) -> Forward:
    import cv2

    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    if device.startswith("cuda"):
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_CUDA)
        net.setPreferableTarget(cv2.dnn.DNN_TARGET_CUDA_FP16 if half else cv2.dnn.DNN_TARGET_CUDA)
    else:
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    names = net.getUnconnectedOutLayersNames()
    net.setInput(blob)

    def run() -> object:
        return net.forward(names)

    return run


def input_blob(img_bgr: np.ndarray, size: int, rect: bool = False) -> np.ndarray:
    """The network input every backend gets: the Detector's letterbox (``rect``: the Detector's
    default rectangular one), RGB, [0, 1], 1×3×H×W."""
    import cv2

    from slimyolo_ros.detect.letterbox import letterbox

    padded = letterbox(img_bgr, size, rect=rect)[0]
    h, w = padded.shape[:2]
    return cv2.dnn.blobFromImage(padded, 1 / 255.0, (w, h), swapRB=True, crop=False)
