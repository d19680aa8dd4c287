"""Scoring a replay: what the node(s) answered, by stamp, against the bag's ground truth. Detections with
the same COCO evaluator as ``slimyolo eval`` (``evaluate.coco``), tracks with the MOT metrics of
``evaluate.mot`` (each sequence on its own), latency from publish to answer."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from slimyolo_ros.bag.make import GT_TOPIC
from slimyolo_ros.bag.source import Frame, Source, by_sequence
from slimyolo_ros.bag.types import DETECTION2D_ARRAY, typestore
from slimyolo_ros.ros.detections import ClassIndex, Detections, read, to_array


@dataclass
class Run:
    """What happened while the node ran: the frames sent, its answers by stamp, what went wrong."""

    command: list[str]
    log: Path | None
    frames: list[Frame] = field(default_factory=list)
    published: dict[int, float] = field(default_factory=dict)  # stamp -> perf_counter at first publish
    answers: dict[int, tuple[float, bytes]] = field(default_factory=dict)
    keep: dict[int, tuple[bytes, str]] = field(default_factory=dict)  # frames kept for the PNGs
    tracks: dict[int, tuple[float, bytes]] = field(default_factory=dict)  # track_node's answers by stamp
    track_command: list[str] | None = None
    track_log: Path | None = None
    track_rc: int | None = None
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    label_names: list[str] | None = None
    duplicates: int = 0
    resent: int = 0
    error: str | None = None
    node_rc: int | None = None
    wall_s: float = 0.0


def score(run: Run, src: Source) -> dict:
    """Latency, counts and (with ground truth) COCO mAP over the answered frames."""
    frames, published, answers = run.frames, run.published, run.answers
    gt, ignore, has_gt = src.gt, src.ignore, src.has_gt
    # Class names: the dataset's list as stored in the bag, else the model's (LabelInfo), then any
    # name only the detections or the ground truth use, so no box is lost to an unknown name.
    classes = ClassIndex(src.class_names or run.label_names or [])
    lat, det_counts, gt_counts = [], Counter(), Counter()
    samples, dets = [], []
    with_dets = 0
    no_gt = 0
    from slimyolo_ros.data.visdrone import Sample

    for f in frames:
        if f.stamp not in answers:
            continue
        t, raw = answers[f.stamp]
        lat.append((t - published[f.stamp]) * 1000.0)
        msg = read_message(raw)
        found = read(msg)
        with_dets += bool(len(found.boxes))
        det_counts.update(found.names)
        if not has_gt:
            continue
        if f.stamp not in gt:
            no_gt += 1
            continue
        gboxes, gnames = gt[f.stamp]
        gt_counts.update(gnames)
        samples.append(Sample(image_path=Path(f"frame_{f.index:06d}_{f.stamp}"), boxes=gboxes,
                              classes=classes.indices(gnames),
                              ignore=ignore.get(f.stamp, np.zeros((0, 4), np.float32)),
                              width=f.width, height=f.height))
        dets.append(to_array(msg, classes))
    if no_gt:
        what = f"ground truth from {src.truth_from}" if src.truth_from else f"{GT_TOPIC} message"
        run.warnings.append(f"{no_gt} answered frame(s) have no {what} with their stamp: "
                        "left out of the mAP")
    answered = len(lat)
    report: dict = {
        "frames": len(frames),
        "answered": answered,
        "frames_with_detections": with_dets,
        "dropped": len(frames) - answered,
        "frames_scored": len(samples),
        "frames_without_ground_truth": no_gt,
        "detections": int(sum(det_counts.values())),
        "detections_per_class": dict(sorted(det_counts.items())),
        "ground_truth_per_class": dict(sorted(gt_counts.items())),
        "latency_ms": percentiles(lat),
        "map50": None,
        "map": None,
        "per_class": {},
    }
    if samples:
        from slimyolo_ros.evaluate.coco import evaluate

        metrics = evaluate(samples, dets, classes.names)
        report["map50"] = float(metrics["map50"])
        report["map"] = float(metrics["map"])
        for k in ("precision", "recall", "f1", "conf_threshold"):
            if k in metrics:
                report[k] = None if metrics[k] is None else float(metrics[k])
        report["per_class"] = metrics.get("per_class", {})
    report["class_names"] = classes.names
    return report


def score_tracks(run: Run, src: Source, names: list[str]) -> dict:
    """MOT metrics (``evaluate_mot``: HOTA, MOTA, IDF1, ID switches, ...) of the tracker's answers against
    the ground truth's target ids, each sequence on its own, over the frames the tracker answered."""
    from slimyolo_ros.evaluate.mot import MotFrame, evaluate_mot

    classes = ClassIndex(names)
    seqs, lat, track_ids, warnings = [], [], set(), []
    no_ids = False
    for _, frames in by_sequence(run.frames, src.sequences):
        mot = []
        for f in frames:
            if f.stamp not in run.tracks:
                continue
            t, raw = run.tracks[f.stamp]
            lat.append((t - run.published[f.stamp]) * 1000.0)
            found = read_tracks(raw)
            track_ids.update(found.ids)
            if f.stamp not in src.gt:
                continue
            gboxes, gnames = src.gt[f.stamp]
            gids = src.gt_ids.get(f.stamp, [])
            no_ids = no_ids or any(not i for i in gids)
            mot.append(MotFrame(gboxes, classes.indices(gnames), gids, found.boxes,
                                classes.indices(found.names), found.ids,
                                src.ignore.get(f.stamp, np.zeros((0, 4), np.float32))))
        if mot:
            seqs.append(mot)
    result: dict = {"overall": None, "per_class": {}}
    if no_ids and src.truth_from:
        warnings.append(f"{src.truth_from}: objects without a target id (COCO: track_id or instance_id): "
                        "no MOT metrics")
    elif no_ids:
        warnings.append(f"{src.bag}: {GT_TOPIC} has objects without a target id (Detection2D.id): "
                        "no MOT metrics (make the bag from a VisDrone-VID root, e.g. slimyolo synth --video)")
    elif seqs:
        result = evaluate_mot(seqs, classes.names)
    run.warnings.extend(warnings)
    answered = sum(1 for f in run.frames if f.stamp in run.tracks)
    return {**result, "frames": len(run.frames), "answered": answered, "dropped": len(run.frames) - answered,
            "frames_scored": sum(len(q) for q in seqs), "sequences": [n for n, _ in src.sequences],
            "tracks": len(track_ids - {""}), "latency_ms": percentiles(lat)}


def read_message(raw: bytes):
    """One serialised Detection2DArray (a node's answer) as a rosbags message."""
    return typestore().deserialize_cdr(raw, DETECTION2D_ARRAY)


def read_tracks(raw: bytes) -> Detections:
    """Boxes, class names, scores and track ids of one serialised Detection2DArray from track_node."""
    return read(read_message(raw))


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "mean": None, "max": None}
    a = np.asarray(values)
    p50, p95, p99 = np.percentile(a, [50, 95, 99]).tolist()
    return {"p50": round(p50, 3), "p95": round(p95, 3), "p99": round(p99, 3),
            "mean": round(float(a.mean()), 3), "max": round(float(a.max()), 3)}
