"""Writes the harness's section of docs/benchmarks.md between its markers, leaving the rest alone.

docs/benchmarks.md is shared: bench/inference.py owns another section. Only the text between
``<!-- bench:run start -->`` and ``<!-- bench:run end -->`` is replaced; when the markers are missing
the section is appended.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from slimyolo_ros.io_utils import atomic_write_text

START = "<!-- bench:run start -->"
END = "<!-- bench:run end -->"


def replace_section(path: Path, body: str) -> Path:
    """Put ``body`` between the markers in ``path`` (atomic write; other sections are kept)."""
    block = f"{START}\n{body.rstrip()}\n{END}"
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text, count=1)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    return atomic_write_text(path, text)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
