"""The real ``detect_node`` from two source trees, interleaved: paired before/after numbers for a
change on the frame's path.

    git archive <commit> | tar -x -C /tmp/base
    PYTHONPATH=$PWD .venv/bin/python -m bench.node_trees --base /tmp/base --new . --rounds 4

Each round starts a fresh node per tree (order alternating AB, BA, ...) with its package imported from
that tree (PYTHONPATH first), the same model, frame and parameters, frames in lockstep
(bench/node_e2e.py). Printed: per tree the median over rounds of each run's end-to-end median and of
the node's own ~/stats stage medians, and new/base per round paired (median, min-max).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from bench.common import REPO


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", type=Path, required=True, help="the tree before the change")
    p.add_argument("--new", type=Path, default=REPO, help="the tree after it (default: this one)")
    p.add_argument("--weights", type=Path, default=REPO / "models" / "slimyolov3-synth.pt")
    p.add_argument("--backend", default="torch")
    p.add_argument("--img-size", type=int, default=416)
    p.add_argument("--frame", default="1920x1080", help="WxH (default 1920x1080)")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--out", type=Path, default=Path("bench-out") / "node_trees.json")
    a = p.parse_args(argv)

    from bench.node_e2e import E2E, paired_ratios
    from bench.sparse_model import bench_frame

    trees = {"base": a.base.resolve(), "new": a.new.resolve()}
    e2e = E2E({a.frame: bench_frame(*map(int, a.frame.split("x")))}, a.out.parent / "logs")
    env = dict(e2e.env)
    rows: list[dict] = []
    try:
        for r in range(a.rounds):
            for name in list(trees) if r % 2 == 0 else list(trees)[::-1]:
                e2e.env = {**env, "PYTHONPATH": str(trees[name])}
                for row in e2e.run_node(a.weights, a.backend, a.img_size, [], a.warmup, a.repeats,
                                        f"{name}_{r}"):
                    row.update(kind="node", model=a.weights.stem, variant=name, round=r)
                    rows.append(row)
                    print(f"round {r} {name}: {row['e2e_ms_median']:.1f} ms, stages {row['node_stages_ms']}",
                          flush=True)
    finally:
        e2e.close()
    summary = {name: _medians([r for r in rows if r["variant"] == name]) for name in trees}
    result = {"trees": {k: str(v) for k, v in trees.items()}, "settings": vars(a) | {"base": str(a.base),
              "new": str(a.new), "weights": str(a.weights), "out": str(a.out)},
              "summary": summary, "paired": paired_ratios(rows, "base"), "rows": rows}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1, default=str))
    print(json.dumps({"summary": summary, "paired": result["paired"]}, indent=1))
    return 0


def _medians(rows: list[dict]) -> dict[str, float]:
    """Median over runs of the run's e2e median and of each stage median (ms)."""
    out = {"e2e_ms": round(statistics.median(r["e2e_ms_median"] for r in rows), 2)}
    for stage in sorted({s for r in rows for s in r["node_stages_ms"]}):
        vals = [r["node_stages_ms"][stage] for r in rows if stage in r["node_stages_ms"]]
        out[stage] = round(statistics.median(vals), 3)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
