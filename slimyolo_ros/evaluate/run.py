"""Run a Detector over samples and score it: COCO mAP, P/R/F1 and per-image latency."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from slimyolo_ros.data.visdrone import Sample, read_image
from slimyolo_ros.evaluate.coco import evaluate


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
