"""COCO-style mAP (pycocotools) plus precision/recall/F1 at the best-F1 confidence.

``evaluate(samples, detections, class_names)``: ``detections[i]`` is an N×6 array ``x1, y1, x2, y2, score,
class_index`` in the original pixels of ``samples[i]``.

VisDrone's ignored regions are handled as the VisDrone2018-DET toolkit does (``utils/dropObjectsInIgr.m``):
a ground-truth box or a detection is dropped before matching when at least half of its area lies inside the
union of the image's ignored regions (the toolkit keeps a box only when ``igrVal / (h * w) < 0.5``, with
``igrVal`` the ignored area under the box from an integral image of the ignore mask).

AP itself is COCO's (101-point interpolated precision, pycocotools), as the issue asks; the MATLAB toolkit
integrates VOC-style (all points), so its numbers differ slightly. Like the toolkit, only categories 1..10
are scored: "others" (11) is neither a ground truth nor an ignored region.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np

from slimyolo_ros.data.visdrone import Sample
from slimyolo_ros.errors import DatasetError

IOU_MATCH = 0.5  # the P/R/F1 operating point is reported at IoU 0.5, like mAP@0.5
MAX_DETS = 500  # per image, the VisDrone toolkit's limit (COCO's default 100 is too few for drone scenes)

# Scoring thresholds for mAP: a low confidence threshold so the precision-recall curve is complete
# (COCO practice; P/R/F1 are read at the best-F1 point), and the NMS IoU of the YOLOv3 ports' test.py.
# In this torch-free module so that option declarations (slimyolo train --help) need no torch.
EVAL_CONF_THRESHOLD = 0.001
EVAL_NMS_THRESHOLD = 0.6


# ---------------------------------------------------------------------------------------- ignored regions
def ignored_fraction(boxes: np.ndarray, ignore: np.ndarray, width: int, height: int) -> np.ndarray:
    """Fraction of each box's area inside the union of the ``ignore`` boxes (pixel grid, as the toolkit)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if len(boxes) == 0 or len(ignore) == 0:
        return np.zeros(len(boxes))
    ig = np.rint(np.asarray(ignore, np.float64)).astype(int)
    ig[:, [0, 2]] = ig[:, [0, 2]].clip(0, width)
    ig[:, [1, 3]] = ig[:, [1, 3]].clip(0, height)
    # rasterise only the window the regions span (an integral image of a whole 2000×1500 frame per image
    # would dominate the evaluation time)
    wx0, wy0, wx1, wy1 = ig[:, 0].min(), ig[:, 1].min(), ig[:, 2].max(), ig[:, 3].max()
    mask = np.zeros((max(wy1 - wy0, 0), max(wx1 - wx0, 0)), np.int32)
    for x1, y1, x2, y2 in ig:
        mask[y1 - wy0 : y2 - wy0, x1 - wx0 : x2 - wx0] = 1
    integral = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), np.int64)
    integral[1:, 1:] = mask.cumsum(0).cumsum(1)
    r = np.rint(boxes).astype(int)
    area = np.maximum(r[:, 2] - r[:, 0], 1) * np.maximum(r[:, 3] - r[:, 1], 1)
    x1, x2 = np.clip(r[:, 0], wx0, wx1) - wx0, np.clip(r[:, 2], wx0, wx1) - wx0
    y1, y2 = np.clip(r[:, 1], wy0, wy1) - wy0, np.clip(r[:, 3], wy0, wy1) - wy0
    covered = integral[y2, x2] - integral[y1, x2] - integral[y2, x1] + integral[y1, x1]
    return covered / area


def drop_ignored(sample: Sample, dets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gt_boxes, gt_classes, dets) with everything that is ≥ 50 % inside an ignored region removed."""
    if len(sample.ignore) == 0:
        return sample.boxes, sample.classes, dets
    keep_gt = ignored_fraction(sample.boxes, sample.ignore, sample.width, sample.height) < 0.5
    keep_dt = ignored_fraction(dets[:, :4], sample.ignore, sample.width, sample.height) < 0.5
    return sample.boxes[keep_gt], sample.classes[keep_gt], dets[keep_dt]


# ------------------------------------------------------------------------------------------- matching
def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix len(a) × len(b) of xyxy boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def match_detections(gt_boxes: np.ndarray, gt_classes: np.ndarray, dets: np.ndarray,
                     iou_threshold: float = IOU_MATCH) -> np.ndarray:
    """True-positive flag per detection: greedy in descending score, each detection takes the unmatched
    same-class ground truth it overlaps most (IoU ≥ threshold) — the rule COCOeval applies per IoU threshold.

    Hand-written because pycocotools only exposes precision as a function of recall (101 points) and no
    per-detection outcome, so it cannot give precision/recall at a confidence threshold; greedy matching in
    score order means a detection's outcome never depends on lower-scored ones, so one pass serves every
    threshold."""
    tp = np.zeros(len(dets), bool)
    if len(dets) == 0 or len(gt_boxes) == 0:
        return tp
    order = np.argsort(-dets[:, 4], kind="stable")
    iou = _iou(dets[:, :4], gt_boxes)
    same = dets[:, 5:6].astype(np.int64) == gt_classes[None, :].astype(np.int64)
    iou = np.where(same, iou, -1.0)
    taken = np.zeros(len(gt_boxes), bool)
    for d in order:
        cand = np.where(taken, -1.0, iou[d])
        g = int(np.argmax(cand))
        if cand[g] >= iou_threshold:
            taken[g] = True
            tp[d] = True
    return tp


def _prf(tp: float, fp: float, n_gt: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp > 0 else 0.0
    r = tp / n_gt if n_gt > 0 else 0.0
    f1 = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return float(p), float(r), float(f1)


# ------------------------------------------------------------------------------------------------ COCO
def _coco_precision(gt_per_image, dt_per_image, sizes, n_classes: int, max_dets: int) -> np.ndarray | None:
    """COCOeval's precision array T×R×K (IoU thresholds × 101 recall points × classes), -1 where a class has
    no ground truth; None when there is no detection at all (pycocotools cannot load an empty result)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, results = [], [], []
    for i, ((w, h), (gb, gc), d) in enumerate(zip(sizes, gt_per_image, dt_per_image, strict=True)):
        images.append({"id": i + 1, "width": int(w), "height": int(h)})
        for box, cls in zip(gb.tolist(), gc.tolist(), strict=True):
            bw, bh = box[2] - box[0], box[3] - box[1]
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(cls) + 1,
                                "bbox": [box[0], box[1], bw, bh], "area": bw * bh, "iscrowd": 0})
        for x1, y1, x2, y2, score, cls in d.tolist():
            results.append({"image_id": i + 1, "category_id": int(cls) + 1,
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
    if not results:
        return None
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress on stdout
        gt = COCO()
        gt.dataset = {"images": images, "annotations": annotations,
                      "categories": [{"id": k + 1, "name": str(k)} for k in range(n_classes)]}
        gt.createIndex()
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        ev.params.imgIds = [im["id"] for im in images]
        ev.params.catIds = list(range(1, n_classes + 1))
        ev.params.maxDets = [max_dets]
        ev.params.areaRng = [[0.0, 1e10]]
        ev.params.areaRngLbl = ["all"]
        ev.evaluate()
        ev.accumulate()
    return ev.eval["precision"][:, :, :, 0, -1]


def _mean_valid(x: np.ndarray) -> float | None:
    v = x[x > -1]
    return float(v.mean()) if v.size else None


# ----------------------------------------------------------------------------------------------- entry
def evaluate(
    samples: Sequence[Sample],
    detections: Sequence[np.ndarray],
    class_names: Sequence[str],
    max_dets: int = MAX_DETS,
) -> dict:
    """mAP@0.5, mAP@0.5:0.95 (pycocotools), and P/R/F1 per class and overall at the confidence that
    maximises overall F1. Classes without ground truth get ``ap``/``ap50`` None and are left out of the
    means (COCO's rule); an empty detection set gives zeros."""
    if len(samples) != len(detections):
        raise ValueError(f"{len(samples)} samples but {len(detections)} detection arrays")
    nc = len(class_names)
    gts, dts, sizes = [], [], []
    dropped = 0
    for s, d in zip(samples, detections, strict=True):
        d = np.asarray(d, np.float64).reshape(-1, 6)
        if len(s.classes) and int(s.classes.max()) >= nc:
            c = int(s.classes.max())
            raise DatasetError(f"{s.image_path}: ground-truth class index {c} but the model knows only {nc} "
                               f"classes ({', '.join(class_names)})")
        if len(d) and (d[:, 5].min() < 0 or d[:, 5].max() >= nc):
            bad = d[:, 5].max() if d[:, 5].max() >= nc else d[:, 5].min()
            raise ValueError(f"{s.image_path}: detection class index {bad:g} out of range 0..{nc - 1}")
        gb, gc, kept = drop_ignored(s, d)
        dropped += len(d) - len(kept)
        gts.append((np.asarray(gb, np.float64).reshape(-1, 4), np.asarray(gc, np.int64)))
        dts.append(kept)
        sizes.append((s.width, s.height))

    all_gt = np.concatenate([g[1] for g in gts]) if gts else np.zeros(0, np.int64)
    gt_count = np.bincount(all_gt, minlength=nc)
    precision = _coco_precision(gts, dts, sizes, nc, max_dets)

    # P/R/F1 from greedy matching over all detections sorted by score
    scores = np.concatenate([d[:, 4] for d in dts]) if dts else np.zeros(0)
    classes = np.concatenate([d[:, 5] for d in dts]).astype(np.int64) if dts else np.zeros(0, np.int64)
    tp = np.concatenate([match_detections(g[0], g[1], d) for g, d in zip(gts, dts, strict=True)]) \
        if dts else np.zeros(0, bool)
    n_gt = int(gt_count.sum())
    order = np.argsort(-scores, kind="stable")
    scores, classes, tp = scores[order], classes[order], tp[order]
    ctp, cfp = np.cumsum(tp), np.cumsum(~tp)
    conf = None
    best = (0.0, 0.0, 0.0)
    if len(scores) and n_gt:
        # a threshold cannot split equal scores: only the last detection of each run of ties is a cut point
        last_of_run = np.r_[scores[1:] != scores[:-1], True]
        p = ctp / (ctp + cfp)
        r = ctp / n_gt
        f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)
        f1 = np.where(last_of_run, f1, -1.0)
        k = int(np.argmax(f1))
        if f1[k] > 0:  # with no true positive at all there is no operating point worth naming
            conf = float(scores[k])
            best = (float(p[k]), float(r[k]), float(f1[k]))
    above = scores >= conf if conf is not None else np.zeros(len(scores), bool)

    per_class = {}
    ap50s, aps = [], []
    for k, name in enumerate(class_names):
        ap50 = _mean_valid(precision[0, :, k]) if precision is not None else None
        ap = _mean_valid(precision[:, :, k]) if precision is not None else None
        if gt_count[k] and precision is None:  # no detections at all: AP 0 where there was something to find
            ap50 = ap = 0.0
        if gt_count[k]:
            ap50s.append(ap50 if ap50 is not None else 0.0)
            aps.append(ap if ap is not None else 0.0)
        sel = above & (classes == k)
        pk, rk, fk = _prf(float(tp[sel].sum()), float((~tp[sel]).sum()), int(gt_count[k]))
        per_class[name] = {"ap50": ap50, "ap": ap, "precision": pk, "recall": rk, "f1": fk,
                           "gt": int(gt_count[k]), "detections": int(sel.sum())}

    return {
        "map50": float(np.mean(ap50s)) if ap50s else 0.0,
        "map": float(np.mean(aps)) if aps else 0.0,
        "precision": best[0],
        "recall": best[1],
        "f1": best[2],
        "conf_threshold": conf,
        "per_class": per_class,
        "n_images": len(samples),
        "n_gt": n_gt,
        "n_detections": int(len(scores)),
        "ignored_detections": int(dropped),
    }

