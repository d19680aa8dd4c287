"""Multi-object tracking metrics: HOTA, CLEAR (MOTA, ID switches, fragmentations, MT/PT/ML), Identity (IDF1).

The metric code is the ``trackers`` library's TrackEval port (``trackers.eval``); this module turns
frames of ground truth and tracks (boxes, classes, string ids) into its per-frame id arrays and IoU
matrices, per class and overall, and aggregates over sequences with the library's own combiners.

Overall: all classes together, but a track can only match a ground-truth object of its own class.
Tracks mostly inside a VisDrone ignored region (intersection over the track's area > 0.5) are dropped
before scoring, as ``slimyolo eval`` drops detections there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

_EMPTY4 = np.zeros((0, 4), np.float32)


@dataclass
class MotFrame:
    """One frame: ground truth and tracks, boxes xyxy in pixels, class indices, string ids."""

    gt_boxes: np.ndarray
    gt_classes: np.ndarray
    gt_ids: Sequence[str]
    track_boxes: np.ndarray
    track_classes: np.ndarray
    track_ids: Sequence[str]
    ignore: np.ndarray = field(default_factory=lambda: _EMPTY4)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _in_ignore(boxes: np.ndarray, ignore: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    ignore = np.asarray(ignore, np.float64).reshape(-1, 4)
    if len(ignore) == 0 or len(boxes) == 0:
        return np.zeros(len(boxes), bool)
    iw = np.clip(np.minimum(boxes[:, None, 2], ignore[None, :, 2]) - np.maximum(boxes[:, None, 0],
                 ignore[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(boxes[:, None, 3], ignore[None, :, 3]) - np.maximum(boxes[:, None, 1],
                 ignore[None, :, 1]), 0, None)
    area = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-9)
    return ((iw * ih).max(1) / area) > 0.5


def _sequence_inputs(frames: Sequence[MotFrame], cls: int | None):
    """The library's inputs for one sequence: per-frame int id arrays and IoU matrices."""
    gt_map: dict[str, int] = {}
    tr_map: dict[str, int] = {}
    gt_ids, tr_ids, sims = [], [], []
    for f in frames:
        gcls = np.asarray(f.gt_classes, np.int64).reshape(-1)
        tcls = np.asarray(f.track_classes, np.int64).reshape(-1)
        tboxes = np.asarray(f.track_boxes, np.float64).reshape(-1, 4)
        tkeep = ~_in_ignore(tboxes, f.ignore)
        gkeep = np.ones(len(gcls), bool)
        if cls is not None:
            gkeep &= gcls == cls
            tkeep &= tcls == cls
        g_idx, t_idx = np.nonzero(gkeep)[0], np.nonzero(tkeep)[0]
        gt_ids.append(np.array([gt_map.setdefault(str(f.gt_ids[i]), len(gt_map)) for i in g_idx], np.int64))
        tr_ids.append(np.array([tr_map.setdefault(str(f.track_ids[i]), len(tr_map)) for i in t_idx],
                               np.int64))
        sim = _iou(np.asarray(f.gt_boxes).reshape(-1, 4)[g_idx], tboxes[t_idx])
        sim[gcls[g_idx][:, None] != tcls[t_idx][None, :]] = 0.0  # matches only within a class
        sims.append(sim)
    return gt_ids, tr_ids, sims


_KEYS = {"HOTA": "HOTA", "DetA": "DetA", "AssA": "AssA", "MOTA": "MOTA", "MOTP": "MOTP", "IDF1": "IDF1",
         "IDP": "IDP", "IDR": "IDR", "IDSW": "IDSW", "Frag": "Frag", "MT": "MT", "PT": "PT", "ML": "ML",
         "TP": "CLR_TP", "FP": "CLR_FP", "FN": "CLR_FN"}


def _group(sequences: Sequence[Sequence[MotFrame]], cls: int | None) -> dict:
    from trackers.eval.clear import aggregate_clear_metrics, compute_clear_metrics
    from trackers.eval.hota import aggregate_hota_metrics, compute_hota_metrics
    from trackers.eval.identity import aggregate_identity_metrics, compute_identity_metrics

    clear, hota, ident = [], [], []
    gt_tracks = 0
    for frames in sequences:
        g, t, s = _sequence_inputs(frames, cls)
        gt_tracks += len(np.unique(np.concatenate(g))) if g else 0
        clear.append(compute_clear_metrics(g, t, s))
        hota.append(compute_hota_metrics(g, t, s))
        ident.append(compute_identity_metrics(g, t, s))
    merged: dict = {}
    merged.update(aggregate_clear_metrics(clear))
    merged.update(aggregate_hota_metrics(hota))
    merged.update(aggregate_identity_metrics(ident))
    out = {}
    for name, key in _KEYS.items():
        v = merged[key]
        v = float(np.mean(v)) if isinstance(v, np.ndarray | list) else v
        out[name] = int(v) if name in ("IDSW", "Frag", "MT", "PT", "ML", "TP", "FP", "FN") else float(v)
    out["gt_tracks"] = int(gt_tracks)
    return out


def evaluate_mot(sequences: Sequence[Sequence[MotFrame]], class_names: Sequence[str]) -> dict:
    """HOTA/DetA/AssA, MOTA/MOTP, IDF1/IDP/IDR, IDSW, Frag, MT/PT/ML, TP/FP/FN: overall and per class.

    ``sequences`` is a list of sequences, each a list of ``MotFrame`` in time order. Ratios are fractions
    (0-1); per-class entries exist for every class with ground truth or tracks.
    """
    if not sequences or not any(len(s) for s in sequences):
        raise ValueError("evaluate_mot: no frames to evaluate")
    present: set[int] = set()
    for frames in sequences:
        for f in frames:
            present.update(np.asarray(f.gt_classes, np.int64).reshape(-1).tolist())
            present.update(np.asarray(f.track_classes, np.int64).reshape(-1).tolist())
    per_class = {}
    for c in sorted(present):
        name = class_names[c] if 0 <= c < len(class_names) else str(c)
        per_class[name] = _group(sequences, c)
    return {"overall": _group(sequences, None), "per_class": per_class,
            "sequences": len(sequences), "frames": int(sum(len(s) for s in sequences))}
