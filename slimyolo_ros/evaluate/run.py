"""Run a Detector over samples and score it: COCO mAP, P/R/F1 and per-image latency; score a model in
memory the one way training, pruning and the slim pipeline share (:func:`evaluate_model`)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from slimyolo_ros.data.visdrone import Sample, read_image
from slimyolo_ros.evaluate.coco import EVAL_CONF_THRESHOLD, EVAL_NMS_THRESHOLD, evaluate


def evaluate_detector(detector: Any, samples: Sequence[Sample], progress: bool = True) -> dict:
    """``evaluate`` on ``detector(img)`` of every sample, plus ``latency_ms`` (median wall time of one
    ``detector(img)`` call: letterbox, forward, NMS; not the file read), its per-stage medians
    ``latency_stages_ms`` (from ``detector.last_timings`` when the detector keeps them) and ``n_images``."""
    from tqdm import tqdm

    detections: list[np.ndarray] = []
    latency: list[float] = []
    stages: dict[str, list[float]] = {}
    for s in tqdm(samples, desc="eval", unit="img", disable=not progress, leave=False):
        img = read_image(s.image_path)
        t0 = time.perf_counter()
        dets = detector(img)
        latency.append((time.perf_counter() - t0) * 1e3)
        detections.append(np.asarray(dets, np.float32).reshape(-1, 6))
        for k, v in (getattr(detector, "last_timings", None) or {}).items():
            stages.setdefault(k, []).append(float(v))
    result = evaluate(samples, detections, list(detector.class_names))
    result["latency_ms"] = float(statistics.median(latency)) if latency else 0.0
    result["latency_stages_ms"] = {k: float(statistics.median(v)) for k, v in stages.items()}
    result["n_images"] = len(samples)
    return result


METRICS = ("precision", "recall", "f1", "map50", "map")


def evaluate_model(model: nn.Module, class_names: Sequence[str], img_size: int, samples: Sequence[Sample],
                   device: str | torch.device | None = None, conf_threshold: float = EVAL_CONF_THRESHOLD,
                   nms_threshold: float = EVAL_NMS_THRESHOLD, progress: bool = False) -> dict[str, float]:
    """P, R, F1, mAP@0.5 and mAP@0.5:0.95 of a model in memory on ``samples``, through the Detector.

    The one way training, pruning and the slim pipeline score a model, so their numbers compare. The
    model is left untouched (the Detector works on a BN-folded copy); ``device`` defaults to the
    model's own."""
    from slimyolo_ros.detect.detector import Detector

    kw = {} if device is None else {"device": str(device)}
    detector = Detector.from_model(model, list(class_names), img_size, conf_threshold=conf_threshold,
                                   nms_threshold=nms_threshold, **kw)
    result = evaluate_detector(detector, samples, progress=progress)
    return {k: float(result[k]) for k in METRICS}
