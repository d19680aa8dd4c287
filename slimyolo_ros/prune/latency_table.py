"""The per-layer latency table: each conv's time at a grid of (input, output) widths, measured on the
target and cached on disk.

An entry is one conv geometry (kernel, stride, padding, input size, activation) at one pair of
widths, in milliseconds (median of interleaved repeats). Widths between grid points are interpolated
bilinearly: a conv's time is close to bilinear in its two widths once both are multiples of the
rounding step (the odd widths whose kernels run at half speed are never asked for).

The cache is one JSON file per target: ``<dir>/latency-<hash>.json`` where the hash covers the
device, the backend and its version, the thread count and the input size, and the file repeats that
key. A file whose key differs (or that does not parse) is ignored and rewritten, so a new
onnxruntime or another thread count never reuses old numbers. ``<dir>`` is ``$SLIMYOLO_LATENCY_CACHE``,
else ``$SLIMYOLO_CACHE/latency``, else ``~/.cache/slimyolo_ros/latency``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from slimyolo_ros.io_utils import atomic_write_json
from slimyolo_ros.prune.latency_backends import (
    ConvGeometry,
    backend_version,
    conv_runner,
    device_name,
    interleaved_medians,
)

log = logging.getLogger(__name__)

FORMAT = 1
# A run of a 1x1 conv on a 1x1x1 input: what one call costs besides the conv (the runtime's dispatch,
# the input copy). Subtracted from every entry: the network pays it once, not once per layer.
OVERHEAD = ConvGeometry(1, 1, 0, 1, 1, "linear")


def default_cache_dir() -> Path:
    if os.environ.get("SLIMYOLO_LATENCY_CACHE"):
        return Path(os.environ["SLIMYOLO_LATENCY_CACHE"])
    if os.environ.get("SLIMYOLO_CACHE"):
        return Path(os.environ["SLIMYOLO_CACHE"]) / "latency"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "slimyolo_ros" / "latency"


def table_key(backend: str, device: str, threads: int, img_size: int,
              version: str | None = None, device_label: str | None = None) -> dict:
    """What a measured number depends on besides the conv itself."""
    return {"format": FORMAT, "backend": backend, "version": version or backend_version(backend),
            "device": device_label or device_name(device), "threads": int(threads), "img_size": int(img_size)}


def cache_path(key: dict, cache_dir: str | os.PathLike | None = None) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir or default_cache_dir()) / f"latency-{digest}.json"


def grid(low: int, high: int, round_to: int, points: int) -> list[int]:
    """Up to ``points`` widths from ``low`` to ``high``, geometrically spaced, multiples of ``round_to``
    (the ends exactly)."""
    if high <= low:
        return [high]
    if points <= 2:
        return [low, high]
    raw = np.geomspace(low, high, points)
    mids = {int(round(v / round_to)) * round_to for v in raw[1:-1]}
    return sorted({low, high} | {m for m in mids if low < m < high})


@dataclass
class LatencyTable:
    """Measured entries (key -> ms) for one target, and the file they live in."""

    key: dict
    path: Path
    entries: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(cls, key: dict, cache_dir: str | os.PathLike | None = None) -> LatencyTable:
        path = cache_path(key, cache_dir)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls(key, path)
        if not isinstance(data, dict) or data.get("key") != key or not isinstance(data.get("entries"), dict):
            log.info("%s: made for another target or format, measuring again", path)
            return cls(key, path)
        return cls(key, path, {str(k): float(v) for k, v in data["entries"].items()})

    def save(self) -> None:
        atomic_write_json(self.path, {"key": self.key, "entries": dict(sorted(self.entries.items()))})

    def missing(self, g: ConvGeometry, points: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
        return [(i, o) for i, o in points if g.key(i, o) not in self.entries]

    def lookup(self, g: ConvGeometry, cins: Sequence[int], couts: Sequence[int], cin, cout):
        """Bilinear interpolation of the grid ``cins`` x ``couts`` of ``g`` at (cin, cout) (scalars or
        arrays)."""
        return self.interpolator(g, cins, couts)(cin, cout)

    def interpolator(self, g: ConvGeometry, cins: Sequence[int], couts: Sequence[int]):
        """A vectorised ``(cin, cout) -> ms`` over this geometry's grid (the per-call overhead removed)."""
        grid_ms = np.array([[self.entries[g.key(i, o)] for o in couts] for i in cins], dtype=np.float64)
        grid_ms = grid_ms - self.entries.get(OVERHEAD.key(1, 1), 0.0)
        xi, xo = np.asarray(cins, dtype=np.float64), np.asarray(couts, dtype=np.float64)

        def axis(x: np.ndarray, v):
            if x.size == 1:
                z = np.zeros(np.shape(v), dtype=np.int64)
                return z, z, np.zeros(np.shape(v))
            j = np.clip(np.searchsorted(x, v) - 1, 0, x.size - 2)
            return j, j + 1, (np.asarray(v, dtype=np.float64) - x[j]) / (x[j + 1] - x[j])

        def f(cin, cout):
            i0, i1, a = axis(xi, cin)
            o0, o1, b = axis(xo, cout)
            v = (1 - a) * ((1 - b) * grid_ms[i0, o0] + b * grid_ms[i0, o1]) + \
                a * ((1 - b) * grid_ms[i1, o0] + b * grid_ms[i1, o1])
            return np.maximum(v, 0.0)

        return f


def measure_missing(table: LatencyTable, wanted: dict[ConvGeometry, list[tuple[int, int]]],
                    backend: str, device: str, threads: int, repeats: int = 5) -> int:
    """Measure every grid point not in the table yet; returns how many.

    ``repeats`` rounds over the whole table, one timed run of every entry per round (after one
    untimed run), and the median over rounds: a table takes minutes, and on a shared machine the
    load changes within them; sampling every entry in every round spreads that change over all
    entries alike, instead of making the geometries measured in a busy minute look slow.
    """
    todo = {OVERHEAD: table.missing(OVERHEAD, [(1, 1)])}
    todo.update({g: table.missing(g, points) for g, points in wanted.items()})
    todo = {g: p for g, p in todo.items() if p}
    samples: dict[tuple[ConvGeometry, int, int], list[float]] = {}
    for r in range(max(1, repeats)):
        for g, points in todo.items():
            # One geometry's runners alive at a time: the widest weigh tens of MB each.
            fns = {(g, i, o): conv_runner(backend, device, threads, g, i, o) for i, o in points}
            for k, ms in interleaved_medians(fns, warmup=1, repeats=1).items():
                samples.setdefault(k, []).append(ms)
        log.info("latency table: round %d/%d over %d entries", r + 1, repeats, len(samples))
    for (g, i, o), ms in samples.items():
        table.entries[g.key(i, o)] = round(float(np.median(ms)), 4)
    if samples:
        table.save()
    return len(samples)
