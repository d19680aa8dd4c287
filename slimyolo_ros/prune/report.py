"""The prune report: per-layer channels, thresholds, params and GFLOPs before/after (JSON + markdown)."""

from __future__ import annotations

from slimyolo_ros.darknet.complexity import count_gflops, count_params
from slimyolo_ros.darknet.model import Darknet
from slimyolo_ros.prune.plan import ChannelPlan


def _pct(before: float, after: float) -> float:
    return round(100.0 * (1.0 - after / before), 2) if before else 0.0


def complexity_rows(before: Darknet, after: Darknet, sizes: tuple[int, ...]) -> list[dict]:
    p0, p1 = count_params(before), count_params(after)
    rows = []
    for s in sizes:
        g0, g1 = count_gflops(before, s), count_gflops(after, s)
        rows.append({"img_size": s, "params_before": p0, "params_after": p1,
                     "params_reduction_pct": _pct(p0, p1), "gflops_before": g0,
                     "gflops_after": g1, "gflops_reduction_pct": _pct(g0, g1)})
    return rows


def build_report(before: Darknet, after: Darknet, plan: ChannelPlan, info: dict,
                 sizes: tuple[int, ...] = (416, 608, 832)) -> dict:
    group_of = {i: g[0] for g in plan.groups for i in g}
    layers = []
    for i, (s, m) in enumerate(zip(before.module_defs, after.module_list, strict=True)):
        if s.type != "convolutional":
            continue
        layers.append({"index": i, "before": int(s.options["filters"]), "after": int(m.conv.out_channels),
                       "size": int(s.options.get("size", 1)), "stride": int(s.options.get("stride", 1)),
                       "group": group_of.get(i, i), "prunable": i in info.get("prunable_layers", ())})
    prunable = [r for r in layers if r["prunable"]]
    thresholds = {k: v for k, v in info.items() if k not in ("layer_thresholds", "prunable_layers")}
    per_layer = info.get("layer_thresholds", {})
    thresholds["layer_thresholds"] = {str(k): round(v, 6) for k, v in per_layer.items()}
    return {
        "thresholds": thresholds,
        "prunable_channels_before": sum(r["before"] for r in prunable),
        "prunable_channels_after": sum(r["after"] for r in prunable),
        "shortcut_groups": [g for g in plan.groups if len(g) > 1],
        "complexity": complexity_rows(before, after, sizes),
        "layers": layers,
    }


def _latency_line(t: dict) -> str:
    tries = "; ".join(f"budget {a['budget_ms']:.1f} ms: table {a['predicted_ms']:.1f} ms, measured "
                      f"{a['measured_ms']:.1f} ms" for a in t["tries"])
    return (f"Latency target {t['target_ms']:.1f} ms on {t['backend']} ({t['table']['key']['version']}), "
            f"{t['table']['key']['device']}, {t['threads']} threads, {t['img_size']}x{t['img_size']}; "
            f"layer keep K = {t['layer_keep']:g}, round-to = {t['round_to']}, importance {t['importance']} "
            f"(kept {t['importance_kept']:.1%}), beta folding: {'on' if t.get('fold', True) else 'off'}. "
            f"Tries: {tries}. Latency table: {t['table']['path']} ({t['table']['entries']} entries, "
            f"{t['table']['measured_now']} measured now).")


def to_markdown(report: dict, title: str = "Prune report") -> str:
    t = report["thresholds"]
    lines = [f"# {title}", ""]
    if t.get("mode") == "latency":
        lines.append(_latency_line(t))
    else:
        lines.append(f"Global percent P = {t['global_percent']:g} (gamma_hat = {t['gamma_hat']:.4g}), "
                     f"layer keep K = {t['layer_keep']:g}, round-to = {t.get('round_to', 1)}, "
                     f"beta folding: {'on' if t.get('fold', True) else 'off'}.")
    sp = t.get("sparsity", {})
    if sp:
        lines.append(f"Share of prunable |gamma| < 1e-2: {sp['share_below_1e-2']:.1%}; "
                     f"median |gamma| {sp['median_abs_gamma']:.4g}.")
    lines.append(f"Prunable channels: {report['prunable_channels_before']} -> "
                 f"{report['prunable_channels_after']}.")
    if "layer_pruning" in report:
        lp = report["layer_pruning"]
        lines.append(f"Layer pruning first: dropped {len(lp['dropped_shortcuts'])} of {lp['blocks']} "
                     f"residual blocks (shortcut layers {lp['dropped_shortcuts']} of the original cfg); "
                     "the layer table below indexes the layer-pruned network.")
    lines += ["", "| input | params before | params after | params cut "
                  "| GFLOPs before | GFLOPs after | GFLOPs cut |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["complexity"]:
        lines.append(f"| {r['img_size']} | {r['params_before'] / 1e6:.3f} M | "
                     f"{r['params_after'] / 1e6:.3f} M | {r['params_reduction_pct']:.1f}% | "
                     f"{r['gflops_before']:.3f} | {r['gflops_after']:.3f} | "
                     f"{r['gflops_reduction_pct']:.1f}% |")
    if "map" in report:
        lines += ["", "| mAP right after pruning (no fine-tuning) | mAP@0.5 | mAP@0.5:0.95 |",
                  "|---|---:|---:|"]
        for name, m in report["map"].items():
            lines.append(f"| {name} | {m['map50']:.4f} | {m['map']:.4f} |")
    lines += ["", "| layer | kernel | filters before | filters after | kept | shares mask with |",
              "|---:|---|---:|---:|---:|---:|"]
    grouped = {i for g in report["shortcut_groups"] for i in g}
    for r in report["layers"]:
        kept = r["after"] / r["before"]
        share = str(r["group"]) if r["index"] in grouped else ""
        note = "" if r["prunable"] else " (fixed)"
        lines.append(f"| {r['index']}{note} | {r['size']}x{r['size']}/{r['stride']} | {r['before']} | "
                     f"{r['after']} | {kept:.0%} | {share} |")
    return "\n".join(lines) + "\n"
