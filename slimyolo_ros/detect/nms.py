"""Class-aware non-maximum suppression and YOLO post-processing.

On the CPU, NMS is OpenCV's ``cv2.dnn.NMSBoxesBatched`` (greedy, class-aware, C++; much faster than
the torch version below for the few hundred candidates of a busy 1080p frame, same result; both are
timed side by side in docs/benchmarks.md).
On other devices (CUDA) a hand-written torch version runs where the tensors are: torchvision's ``nms``
operator cannot be loaded with this torch build, and the one-liners that replace it either loop in
Python per box (slow for thousands of candidates) or build a full K×K IoU matrix (gigabytes at
K = 30000). Both follow one rule (a test holds each to a brute-force reference).

Greedy NMS here is exact and vectorised: candidates are sorted by score and processed in chunks.
A chunk is first suppressed by every box already kept (one chunk × kept IoU matrix), then greedy
order inside the chunk is resolved by a fixed-point iteration on the chunk's "j suppresses i" matrix
(``keep_i = alive_i and no kept j < i suppresses i``; entry ``i`` is final after ``i`` rounds and
the loop stops as soon as nothing changes, usually after 2–4 rounds). Processing stops once
``max_keep`` boxes are kept: later (lower-scored) boxes cannot change the first ``max_keep``.

Class awareness: the usual trick offsets each class's boxes by ``class × (max coordinate + 1)`` so
that boxes of different classes never overlap and one class-agnostic NMS does all classes at once.
Here the same effect is had by AND-ing the suppression matrix with a same-class mask, which costs the
same and keeps float32 coordinates exact (an 80-class offset on a 4K frame moves coordinates to
~3e5 where float32 has 0.03 px steps, enough to flip an IoU that sits on the threshold).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

# Candidates per chunk: a 1024×1024 bool matrix is 1 MiB, small enough for any device.
_CHUNK = 1024


def _inter_union(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairwise intersection and union areas (len(a) × len(b)) of xyxy boxes."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter, area_a[:, None] + area_b[None, :] - inter


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU matrix (len(a) × len(b)) of xyxy boxes; empty boxes give IoU 0."""
    inter, union = _inter_union(a, b)
    safe = union.clamp(min=torch.finfo(union.dtype).tiny)
    return torch.where(union > 0, inter / safe, torch.zeros_like(inter))


def _overlaps(a: torch.Tensor, b: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """``box_iou(a, b) > iou_threshold`` without the division (inter > t·union)."""
    inter, union = _inter_union(a, b)
    return inter > iou_threshold * union


def batched_nms(
    boxes_xyxy: torch.Tensor,
    scores: torch.Tensor,
    classes: torch.Tensor,
    iou_threshold: float,
    max_keep: int | None = None,
) -> torch.Tensor:
    """Greedy class-aware NMS. Returns indices of kept boxes, highest score first (ties: lower index
    first).

    A box is suppressed by a higher-scored kept box of the same class whose IoU with it is
    strictly greater than ``iou_threshold`` (the rule of Darknet, OpenCV and torchvision).
    CPU tensors go to OpenCV (:func:`nms_opencv`), others to :func:`nms_torch`.
    """
    if boxes_xyxy.device.type == "cpu":
        return nms_opencv(boxes_xyxy, scores, classes, iou_threshold, max_keep)
    return nms_torch(boxes_xyxy, scores, classes, iou_threshold, max_keep)


def nms_opencv(boxes_xyxy: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, iou_threshold: float,
               max_keep: int | None = None) -> torch.Tensor:
    """:func:`batched_nms` by ``cv2.dnn.NMSBoxesBatched`` (CPU tensors). OpenCV offsets each class's
    boxes in float64 (exact here, unlike the float32 trick the torch version avoids); degenerate
    (zero-area) boxes are the one difference: OpenCV lets one suppress an identical one."""
    n = boxes_xyxy.shape[0]
    if n == 0 or (max_keep is not None and max_keep <= 0):
        return torch.empty(0, dtype=torch.long)
    b = boxes_xyxy.detach().to(torch.float64).numpy()
    xywh = np.concatenate([b[:, :2], np.maximum(b[:, 2:] - b[:, :2], 0.0)], axis=1)
    keep = cv2.dnn.NMSBoxesBatched(
        xywh, scores.detach().to(torch.float32).numpy(), classes.detach().to(torch.int32).numpy(),
        -1.0, float(iou_threshold),  # score threshold below any score: candidates are filtered already
    )
    idx = torch.from_numpy(np.asarray(keep, dtype=np.int64).reshape(-1))
    return idx if max_keep is None else idx[:max_keep]


def nms_torch(boxes_xyxy: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, iou_threshold: float,
              max_keep: int | None = None) -> torch.Tensor:
    """:func:`batched_nms` in torch, on the tensors' device (see the module docstring)."""
    n = boxes_xyxy.shape[0]
    device = boxes_xyxy.device
    if n == 0 or (max_keep is not None and max_keep <= 0):
        return torch.empty(0, dtype=torch.long, device=device)
    order = torch.argsort(scores, descending=True, stable=True)
    boxes = boxes_xyxy[order].float()
    cls = classes[order]
    kept: list[torch.Tensor] = []  # positions in `order`
    kept_boxes = boxes[:0]
    kept_cls = cls[:0]
    n_kept = 0
    for start in range(0, n, _CHUNK):
        cb, cc = boxes[start : start + _CHUNK], cls[start : start + _CHUNK]
        if n_kept:
            over = _overlaps(cb, kept_boxes, iou_threshold) & (cc[:, None] == kept_cls[None, :])
            alive = ~over.any(1)
        else:
            alive = torch.ones(cb.shape[0], dtype=torch.bool, device=device)
        # suppresses[i, j]: j (earlier, higher score) would suppress i if j is kept.
        suppresses = _overlaps(cb, cb, iou_threshold) & (cc[:, None] == cc[None, :])
        suppresses = torch.tril(suppresses, diagonal=-1)
        keep = alive
        while True:
            new = alive & ~(suppresses & keep[None, :]).any(1)
            if torch.equal(new, keep):
                break
            keep = new
        idx = keep.nonzero().squeeze(1) + start
        if idx.numel():
            kept.append(idx)
            kept_boxes = torch.cat([kept_boxes, boxes[idx]])
            kept_cls = torch.cat([kept_cls, cls[idx]])
            n_kept += idx.numel()
        if max_keep is not None and n_kept >= max_keep:
            break
    if not kept:
        return torch.empty(0, dtype=torch.long, device=device)
    positions = torch.cat(kept)
    if max_keep is not None:
        positions = positions[:max_keep]
    return order[positions]


def cxcywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    half = b[..., 2:4] / 2
    return torch.cat([b[..., :2] - half, b[..., :2] + half], dim=-1)


def postprocess(
    pred: torch.Tensor,
    conf_threshold: float,
    nms_threshold: float,
    max_detections: int,
    class_filter: Sequence[int] | torch.Tensor | None = None,
    multi_label: bool = False,
    max_nms: int = 30000,
) -> list[torch.Tensor]:
    """Decoded YOLO output → detections per image.

    ``pred`` is B×N×(5+C): cx, cy, w, h (input pixels), objectness, class probabilities (not yet
    multiplied by objectness). Returns one float32 K×6 tensor per image: x1, y1, x2, y2,
    score = obj × cls prob, class index; at most ``max_detections``, highest score first.
    A candidate needs score > ``conf_threshold``. With ``multi_label`` every class above the
    threshold yields a box, otherwise only the best class of each box. ``max_nms`` caps the
    candidates that reach NMS (the highest-scored are kept).
    """
    if pred.dim() != 3 or pred.shape[-1] < 6:
        raise ValueError(f"pred must be B×N×(5+C) with C >= 1, got shape {tuple(pred.shape)}")
    pred = pred.float()
    allowed = None
    if class_filter is not None:
        allowed = torch.as_tensor(list(class_filter) if not torch.is_tensor(class_filter) else class_filter,
                                  dtype=torch.long, device=pred.device)
    out: list[torch.Tensor] = []
    for p in pred:
        # score = obj × cls <= obj, so obj alone pre-filters the bulk of the grid cheaply.
        p = p[p[:, 4] > conf_threshold]
        if p.shape[0] == 0:
            out.append(p.new_zeros((0, 6)))
            continue
        scores_all = p[:, 5:] * p[:, 4:5]
        if multi_label:
            i, j = (scores_all > conf_threshold).nonzero(as_tuple=True)
            score = scores_all[i, j]
        else:
            score, j = scores_all.max(1)
            i = (score > conf_threshold).nonzero().squeeze(1)
            score, j = score[i], j[i]
        if allowed is not None:
            m = torch.isin(j, allowed)
            i, j, score = i[m], j[m], score[m]
        if score.numel() > max_nms:
            top = score.topk(max_nms).indices
            i, j, score = i[top], j[top], score[top]
        boxes = cxcywh_to_xyxy(p[i, :4])
        finite = torch.isfinite(boxes).all(1) & torch.isfinite(score)
        if not bool(finite.all()):  # a diverged model: NaN/inf boxes would poison NMS for the rest
            boxes, score, j = boxes[finite], score[finite], j[finite]
        keep = batched_nms(boxes, score, j, nms_threshold, max_keep=max_detections)
        out.append(torch.cat([boxes[keep], score[keep, None], j[keep, None].float()], dim=1))
    return out
