"""What the node answered over the bag's time, for bags without ground truth: detections per frame and per
class, and latency, frame by frame (``timeline.csv``) and as a plot (``timeline.png``, matplotlib Agg)."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

import numpy as np

from slimyolo_ros.bag.score import Run, read_message
from slimyolo_ros.io_utils import atomic_write_bytes, atomic_write_text
from slimyolo_ros.ros.detections import read


def series(run: Run) -> dict:
    """Per answered frame: time since the first frame's stamp (s), latency (ms), detections per class."""
    t0 = run.frames[0].stamp if run.frames else 0
    rows = []
    for f in run.frames:
        if f.stamp not in run.answers:
            continue
        t, raw = run.answers[f.stamp]
        names = read(read_message(raw)).names
        rows.append(((f.stamp - t0) / 1e9, (t - run.published[f.stamp]) * 1000.0, Counter(names)))
    classes = sorted({c for _, _, counts in rows for c in counts})
    return {"t_s": [r[0] for r in rows], "latency_ms": [r[1] for r in rows],
            "detections": [sum(r[2].values()) for r in rows],
            "per_class": {c: [r[2].get(c, 0) for r in rows] for c in classes}}


def summary(s: dict) -> dict:
    """Detections per frame (mean, max) overall and per class."""
    def stats(values: list[int]) -> dict:
        return {"mean": round(float(np.mean(values)), 3), "max": int(max(values))} if values else \
            {"mean": None, "max": None}

    return {"all": stats(s["detections"]), **{c: stats(v) for c, v in s["per_class"].items()}}


def write(out: Path, s: dict) -> dict[str, str]:
    """``timeline.csv`` and ``timeline.png`` in ``out``; their paths."""
    buf = io.StringIO()
    w = csv.writer(buf)
    classes = list(s["per_class"])
    w.writerow(["t_s", "latency_ms", "detections", *classes])
    for i, t in enumerate(s["t_s"]):
        w.writerow([f"{t:.6f}", f"{s['latency_ms'][i]:.3f}", s["detections"][i],
                    *(s["per_class"][c][i] for c in classes)])
    paths = {"csv": str(atomic_write_text(out / "timeline.csv", buf.getvalue()))}
    paths["png"] = str(atomic_write_bytes(out / "timeline.png", _plot(s)))
    return paths


def _plot(s: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a robot or in CI
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 6), dpi=100)
    ax_det, ax_lat = fig.subplots(2, 1, sharex=True)
    ax_det.plot(s["t_s"], s["detections"], color="black", lw=1.5, label="all")
    for c, v in s["per_class"].items():
        ax_det.plot(s["t_s"], v, lw=1, label=c)
    ax_det.set_ylabel("detections per frame")
    if s["t_s"]:
        ax_det.legend(loc="upper right", fontsize="small", ncol=2)
    ax_lat.plot(s["t_s"], s["latency_ms"], ".", ms=3)
    ax_lat.set_ylabel("latency (ms)")
    ax_lat.set_xlabel("time since the first frame (s, header stamps)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
