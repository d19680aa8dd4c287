"""Shared pieces of the benchmark harness: fixed thread counts, a median timer, run facts.

Every backend gets the same number of intra-op threads (torch, OpenCV, ONNX Runtime), set once at
start-up and recorded in the run, so side-by-side numbers compare runtimes, not thread pools.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_REFERENCE = REPO.parent / "shared" / "reference" / "slimyolov3"


def fix_threads(n: int) -> dict[str, int]:
    """Pin torch, OpenCV and ONNX Runtime (:func:`ort_session_options`) to ``n`` threads; also
    exported as OMP/MKL environment variables so subprocesses (the node) use the same count."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    import cv2
    import torch

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)  # only allowed before the first inter-op parallel region
    except RuntimeError:
        pass
    cv2.setNumThreads(n)
    return {"torch": torch.get_num_threads(), "opencv": cv2.getNumThreads(), "onnxruntime": n}


def ort_session_options(n: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = n
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return so


@dataclass
class Timing:
    """Milliseconds of the timed runs (warm-up runs excluded)."""

    samples_ms: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples_ms)

    def summary(self) -> dict[str, float]:
        s = sorted(self.samples_ms)
        return {"median": round(self.median, 3), "min": round(s[0], 3), "max": round(s[-1], 3),
                "runs": len(s)}


def time_call(fn: Callable[[], object], warmup: int, repeats: int) -> Timing:
    """``warmup`` untimed calls of ``fn()``, then ``repeats`` timed ones (``fn`` returns when done)."""
    for _ in range(warmup):
        fn()
    t = Timing()
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        t.samples_ms.append((time.perf_counter() - t0) * 1e3)
    return t


def interleaved(fns: dict, warmup: int, repeats: int, rounds: int = 2) -> dict[object, Timing]:
    """Time several callables in alternating rounds (pooled samples), so a load change on the shared
    CPU hits all of them alike instead of favouring whichever ran in a quiet minute."""
    out = {k: Timing() for k in fns}
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    per_round = max(1, -(-repeats // rounds))
    for _ in range(rounds):
        for k, fn in fns.items():
            out[k].samples_ms += time_call(fn, 0, per_round).samples_ms
    return out


def peak_rss_mib(pid: int) -> float | None:
    """Peak resident set (VmHWM) of a live process from /proc, in MiB; None if unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        return None
    return None


def run_facts(command: str, threads: dict[str, int]) -> dict:
    """Which run this is: command, commit, machine, library versions, load."""
    import cv2
    import numpy
    import onnxruntime
    import torch

    cpu = next((ln.split(":", 1)[1].strip() for ln in _read("/proc/cpuinfo").splitlines()
                if ln.startswith("model name")), platform.processor() or "unknown")
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return {
        "command": command,
        "git": git.stdout.strip() or "unknown",
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": threads,
        "load_avg_start": os.getloadavg(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                     "onnxruntime": onnxruntime.__version__, "opencv": cv2.__version__,
                     "numpy": numpy.__version__},
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""
