"""One generic renderer: rows of a bench/run.py JSON as a markdown table.

    python bench/table.py docs/benchmarks.json --kind forward \\
        --cols model,backend,img_size,input,gflops,latency_ms_median [--where backend=torch]

Nested fields are addressed with dots (``node_stages_ms.forward``). Interpretation is written by hand
in docs/benchmarks.md; this only lays numbers out.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path


def field(row: dict, name: str) -> object:
    value: object = row
    for part in name.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def cell(v: object) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
    if isinstance(v, list | tuple):
        return "x".join(str(x) for x in v) if all(isinstance(x, int) for x in v) else " ".join(map(str, v))
    return str(v)


def grid(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A markdown table of ``rows`` (sequences of values) under ``headers``."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def table(rows: Iterable[dict], cols: Sequence[str]) -> str:
    """A markdown table of JSON rows, one column per (dotted) field name."""
    return grid(cols, ([field(r, c) for c in cols] for r in rows))


def select(rows: Iterable[dict], kind: str | None, where: Sequence[str]) -> list[dict]:
    tests = [w.split("=", 1) for w in where]
    return [r for r in rows if (kind is None or r.get("kind") == kind)
            and all(cell(field(r, k)) == v for k, v in tests)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("json", type=Path, help="bench/run.py output")
    p.add_argument("--kind", default=None, help="forward | node | node_ab (default: all rows)")
    p.add_argument("--cols", required=True, help="comma-separated fields, dots for nested ones")
    p.add_argument("--where", action="append", default=[], help="field=value (as printed); repeatable")
    a = p.parse_args(argv)
    data = json.loads(a.json.read_text())
    rows = data["rows"] if isinstance(data, dict) else data
    print(table(select(rows, a.kind, a.where), a.cols.split(",")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
