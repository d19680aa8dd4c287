"""Shared pieces of the benchmark harness: fixed thread counts and a median timer.

Every backend gets the same number of intra-op threads (torch, OpenCV, ONNX Runtime), set once at
start-up and recorded in the report, so side-by-side numbers compare runtimes, not thread pools.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_REFERENCE = REPO.parent / "shared" / "reference" / "slimyolov3"


def fix_threads(n: int) -> dict[str, int]:
    """Pin torch, OpenCV and (via :func:`ort_session_options`) ONNX Runtime to ``n`` threads.

    Also exported as OMP/MKL environment variables so subprocesses (the node) use the same count.
    """
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    import cv2
    import torch

    torch.set_num_threads(n)
    try:
        # Only allowed before the first inter-op parallel region; harmless to skip afterwards.
        torch.set_num_interop_threads(1)
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

    @property
    def minimum(self) -> float:
        return min(self.samples_ms)

    def summary(self) -> dict[str, float]:
        s = sorted(self.samples_ms)
        return {
            "median": round(self.median, 3),
            "min": round(s[0], 3),
            "max": round(s[-1], 3),
            "runs": len(s),
        }


def time_call(
    fn: Callable[[], object], warmup: int, repeats: int, sync: Callable[[], None] | None = None
) -> Timing:
    """Median-ready timings of ``fn()``: ``warmup`` untimed calls, then ``repeats`` timed ones.

    ``sync`` (e.g. ``torch.cuda.synchronize``) runs before each clock read so asynchronous devices
    are timed to completion.
    """
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    t = Timing()
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        t.samples_ms.append((time.perf_counter() - t0) * 1e3)
    return t


def peak_rss_mib(pid: int) -> float | None:
    """Peak resident set (VmHWM) of a live process from /proc, in MiB; None if unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"
