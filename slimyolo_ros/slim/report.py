"""The slim pipeline's paper-style table: OUT/slim_report.json, OUT/slim_report.md and the mAP against
GFLOPs plot OUT/slim_map_vs_gflops.png."""

from __future__ import annotations

from pathlib import Path

from slimyolo_ros.io_utils import atomic_write, atomic_write_json, atomic_write_text


def _steps(c: dict) -> str:
    if c.get("targets_ms"):
        lat = c.get("latency", {})
        return (f"Latency budgets {', '.join(f'{t:g} ms' for t in c['targets_ms'])} "
                f"({lat.get('backend', 'onnxruntime')}, {lat.get('device', 'cpu')}, "
                f"{lat.get('threads') or 'default'} threads)")
    return f"Global ratios {', '.join(f'{r:g}' for r in c['ratios'])}"


def to_markdown(report: dict) -> str:
    c = report["config"]
    base = report["rows"][0]
    lines = ["# SlimYOLOv3 pipeline report", "",
             _steps(c) + f" ({c.get('mode', 'iterative')}), "
             f"layer keep {c['layer_keep']:g}, sparsity alpha {c['sparsity']:g} ({c['sparsity_schedule']}, "
             f"{c.get('sparsity_weighting', 'uniform')} weighting) "
             f"for {c['sparsity_epochs']} epochs, fine-tuning {c['finetune_epochs']} epochs"
             + (f" (distilled from the sparse model, weight {c['distill']:g})" if c.get("distill") else "")
             + "; evaluated on "
             f"{c['val_images']} images of {c['val']}. Latency: CPU forward only, batch 1, median, "
             f"{c['torch_threads']} torch threads.", "",
             "| model | stage | input | P | R | F1 | mAP@0.5 | mAP@0.5:0.95 | GFLOPs | params | latency (ms) "
             "| GFLOPs cut | ΔmAP@0.5 |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        cut = 100 * (1 - r["gflops"] / base["gflops"])
        dmap = 100 * (r["map50"] - base["map50"])
        lines.append(f"| {r['model']} | {r['stage']} | {r['img_size']} | {r['precision']:.3f} | "
                     f"{r['recall']:.3f} | {r['f1']:.3f} | {r['map50']:.4f} | {r['map']:.4f} | "
                     f"{r['gflops']:.3f} | {r['params'] / 1e6:.3f} M | {r['latency_ms']:.1f} | "
                     f"{cut:.1f}% | {dmap:+.2f} |")
    return "\n".join(lines) + "\n"


def plot_map_vs_gflops(report: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers = {"baseline": "s", "sparsity": "x", "pruned": "v", "finetuned": "o"}
    for stage, marker in markers.items():
        rows = [r for r in report["rows"] if r["stage"] == stage]
        if rows:
            ax.scatter([r["gflops"] for r in rows], [r["map50"] for r in rows], marker=marker, label=stage)
    for r in report["rows"]:
        if r["stage"] in ("baseline", "finetuned"):
            ax.annotate(r["model"], (r["gflops"], r["map50"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    tuned = [r for r in report["rows"] if r["stage"] in ("baseline", "finetuned")]
    ax.plot([r["gflops"] for r in tuned], [r["map50"] for r in tuned], lw=0.8, color="gray")
    ax.set_xlabel(f"GFLOPs at {report['rows'][0]['img_size']}x{report['rows'][0]['img_size']}")
    ax.set_ylabel("mAP@0.5")
    ax.set_title("SlimYOLOv3: accuracy against compute")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return path


def write_slim_report(out: Path, report: dict) -> None:
    report["files"] = {"md": str(out / "slim_report.md"), "json": str(out / "slim_report.json"),
                       "png": str(out / "slim_map_vs_gflops.png")}
    atomic_write_json(out / "slim_report.json", report)
    atomic_write_text(out / "slim_report.md", to_markdown(report))
    plot_map_vs_gflops(report, out / "slim_map_vs_gflops.png")
