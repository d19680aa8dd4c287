"""A run's per-epoch results: ``results.csv`` (rewritten atomically every epoch) and ``results.png``."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from slimyolo_ros.io_utils import atomic_write, atomic_write_text

CSV_FIELDS = ["epoch", "lr", "box", "obj", "cls", "loss", "distill", "alpha", "gamma_small_share",
              "precision", "recall", "f1", "map50", "map", "epoch_time_s"]


def write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in CSV_FIELDS})
    atomic_write_text(path, buf.getvalue())


def read_csv(path: Path, before_epoch: int) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = [dict(r) for r in csv.DictReader(f)]
    return [r for r in rows if r.get("epoch", "") != "" and int(r["epoch"]) < before_epoch]


def plot_results(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def col(name):
        return [float(r[name]) if r.get(name) not in ("", None) else float("nan") for r in rows]

    ep = [int(r["epoch"]) for r in rows]
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
    for ax, name in zip(axes[0], ("box", "obj", "cls"), strict=True):
        ax.plot(ep, col(name), marker=".")
        ax.set_title(f"{name} loss")
        ax.set_xlabel("epoch")
    axes[1, 0].plot(ep, col("loss"), marker=".")
    axes[1, 0].set_title("total loss (per image)")
    for name in ("map50", "map"):
        axes[1, 1].plot(ep, col(name), marker="o", label=name)
    axes[1, 1].set_title("val mAP")
    axes[1, 1].legend()
    for name in ("precision", "recall", "f1"):
        axes[1, 2].plot(ep, col(name), marker=".", label=name)
    axes[1, 2].set_title("val P / R / F1 (best-F1 threshold)")
    axes[1, 2].legend()
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)
