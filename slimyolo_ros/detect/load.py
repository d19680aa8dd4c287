"""``load_detector``: a model file and its DetectorOptions in, a ready Detector out.

The node, ``slimyolo eval``, ``slimyolo detect``, the bag replay (through the node) and the benchmarks
each build one DetectorOptions (checked when made, naming a bad value) and call this; what depends on
the file or the machine (class names, the device, ONNX Runtime's providers) is checked here.
"""

from __future__ import annotations

import os
from pathlib import Path

from slimyolo_ros.detect.backends import OnnxRuntimeBackend, resolve_device
from slimyolo_ros.detect.detector import Detector, detector_for_model
from slimyolo_ros.detect.errors import DetectorError
from slimyolo_ros.detect.options import DetectorOptions


def load_detector(weights: str | os.PathLike, options: DetectorOptions | None = None) -> Detector:
    """Load ``weights`` into a Detector run as ``options`` say (default: ``DetectorOptions()``).

    ``weights``: a ``.pt`` checkpoint, Darknet ``.weights`` (with ``options.cfg``) or, for backend
    onnxruntime, an ``.onnx`` written by ``slimyolo export --decoded``. With onnxruntime and
    ``.pt``/``.weights``, the model is exported once to a cache file (``onnx_cache`` folder, default
    ``$SLIMYOLO_CACHE`` or ``~/.cache/slimyolo_ros``). A fixed-shape ``.onnx`` (exported without
    ``--dynamic``) runs square (``Detector.rect`` is then False).
    """
    options = options or DetectorOptions()
    if not isinstance(options, DetectorOptions):
        raise DetectorError(f"options {options!r}: expected a DetectorOptions")
    if options.backend == "torch":
        resolve_device(options.device)  # before the (slow) model load: cuda without a GPU fails fast
    path = Path(weights)
    if path.suffix == ".onnx":
        if options.backend != "onnxruntime":
            raise DetectorError(f"{path}: an .onnx model needs backend='onnxruntime'")
        return _load_onnx(path, options)

    from slimyolo_ros.darknet.checkpoint import load_model

    model, class_names, size = load_model(path, cfg=options.cfg, names=options.names, device="cpu")
    if options.img_size is None:
        options = options.replace(img_size=size)
    return detector_for_model(model, class_names, options, owned=True, weights=path)


def _load_onnx(path: Path, options: DetectorOptions) -> Detector:
    from slimyolo_ros.export.onnx import read_metadata

    meta = read_metadata(path)
    if meta.get("outputs") != "decoded":
        raise DetectorError(f"{path}: the Detector needs an ONNX exported with decoded boxes "
                            f"(slimyolo export --decoded); this one has outputs={meta.get('outputs')!r}")
    size = int(meta["img_size"])
    if options.img_size is not None and options.img_size != size:
        raise DetectorError(f"{path}: exported for img_size {size}, img_size={options.img_size} asked; "
                            f"export again with --img-size {options.img_size}")
    if options.names is not None:
        from slimyolo_ros.darknet.checkpoint import load_names

        class_names = load_names(options.names)
    else:
        class_names = list(meta.get("class_names") or [])
    if not meta.get("dynamic"):
        options = options.replace(rect=False)  # a fixed-shape graph takes square inputs only
    backend = OnnxRuntimeBackend(path, options.device, options.providers, options.trt_cache_dir)
    return Detector(backend, class_names, size, options, weights=path)
