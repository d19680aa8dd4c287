"""Bare forward passes of one network in three runtimes, on the same input blob.

Each ``*_forward`` returns a zero-argument callable that runs the network once on a fixed
1×3×H×W float32 RGB blob and returns when the outputs are computed (so the timer sees the whole
forward, including the YOLO decode each runtime does in its graph). Pre- and post-processing are in
the node's own stage timings (~/stats), measured end to end by bench/node_e2e.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

Forward = Callable[[], object]


def detector(pt: Path, backend: str, img_size: int, device: str = "cpu", half: bool = False,
             onnx_cache: Path | None = None, **options: object):
    """The project's Detector for ``pt`` as the node would build it (``options``: more
    DetectorOptions fields)."""
    from slimyolo_ros.detect import DetectorOptions, load_detector

    opts = DetectorOptions(backend=backend, img_size=img_size, device=device, half=half,
                           onnx_cache=onnx_cache, **options)
    return load_detector(str(pt), opts)


def torch_forward(det, blob: np.ndarray) -> Forward:
    """The Detector's torch network (fp16 if the Detector is) on the float blob."""
    import torch

    model = det.model
    x = torch.from_numpy(blob).to(det.device)
    if det.half:
        x = x.half()
    # The Detector may keep the model in NHWC (channels_last); feed the layout it runs on.
    w = next(model.parameters())
    if w.dim() == 4 and not w.is_contiguous() and w.is_contiguous(memory_format=torch.channels_last):
        x = x.contiguous(memory_format=torch.channels_last)
    sync = (lambda: torch.cuda.synchronize(det.device)) if det.device.type == "cuda" else (lambda: None)

    def run() -> object:
        with torch.inference_mode():
            out = model(x)[0]
        sync()
        return out

    return run


def onnxruntime_forward(onnx_path: Path, blob: np.ndarray, device: str = "cpu",
                        half: bool = False) -> Forward:
    """ONNX Runtime on the graph the Detector exported, with the harness's fixed thread count."""
    import onnxruntime as ort

    from bench.common import ort_session_options

    providers = ["CUDAExecutionProvider"] if device.startswith("cuda") else ["CPUExecutionProvider"]
    threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    sess = ort.InferenceSession(str(onnx_path), ort_session_options(threads), providers=providers)
    inp = sess.get_inputs()[0]
    x = blob.astype(np.float16 if half else np.float32)
    if device.startswith("cuda"):
        # Input and outputs stay on the GPU so the timing is the network, not PCIe copies.
        io = sess.io_binding()
        io.bind_ortvalue_input(inp.name, ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
        for o in sess.get_outputs():
            io.bind_output(o.name, "cuda")
        return lambda: sess.run_with_iobinding(io)
    feed = {inp.name: x}
    return lambda: sess.run(None, feed)


def opencv_forward(cfg: Path, weights: Path, blob: np.ndarray, device: str = "cpu",
                   half: bool = False) -> Forward:
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
    return lambda: net.forward(names)


def input_blob(img_bgr: np.ndarray, size: int, rect: bool = False) -> np.ndarray:
    """The network input every backend gets: the Detector's letterbox (``rect``: the Detector's
    default rectangular one), RGB, [0, 1], 1×3×H×W."""
    import cv2

    from slimyolo_ros.detect.letterbox import letterbox

    padded = letterbox(img_bgr, size, rect=rect)[0]
    h, w = padded.shape[:2]
    return cv2.dnn.blobFromImage(padded, 1 / 255.0, (w, h), swapRB=True, crop=False)
