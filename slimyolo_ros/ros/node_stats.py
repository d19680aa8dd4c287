"""detect_node's counters and timing windows (what ``~/stats`` and the stats log line report), shared
by the image callback, the inference worker and the stats timer."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import numpy as np

# The stages of one frame in the node, in order: waiting in the one-frame slot for the worker, Image
# -> ndarray, the Detector's letterbox / forward / decode+NMS, Detection2DArray building, publish().
STAGES = ("wait", "convert", "letterbox", "forward", "postprocess", "message", "publish")


class Stats:
    """Counters and a latency window, shared by the callback, the worker and the stats timer."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received = self.processed = self.bad = 0
        self.dropped_replaced = self.dropped_middleware = 0
        self.window_processed = 0
        self.busy_s = 0.0  # the worker's time on frames, cumulative (starvation: a busy node drops by design)
        self.window_start = time.monotonic()
        self.latency_ms: deque[float] = deque(maxlen=1000)
        # (monotonic time, ms) of the latest frames, never cleared by snapshot(): /diagnostics' window
        self.recent_latency: deque[tuple[float, float]] = deque(maxlen=1000)
        self.inference_ms: deque[float] = deque(maxlen=1000)
        # per processed frame: where its time in the node went (STAGES), for ~/stats and benchmarks
        self.stage_ms: dict[str, deque[float]] = {k: deque(maxlen=1000) for k in STAGES}
        self._last_seq: dict[Any, int] = {}

    def on_receive(self, info: dict | None) -> None:
        """Count middleware drops from gaps in the publisher's sequence numbers (when the RMW
        reports them; Fast DDS does)."""
        with self.lock:
            self.received += 1
            seq = info.get("publication_sequence_number") if info else None
            if not seq:
                return
            gid = info.get("publisher_gid")
            key = bytes(gid["data"]) if isinstance(gid, dict) and "data" in gid else repr(gid)
            last = self._last_seq.get(key)
            if last is not None and seq > last + 1:
                self.dropped_middleware += seq - last - 1
            self._last_seq[key] = seq

    def forget_publishers(self) -> None:
        with self.lock:
            self._last_seq.clear()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            now = time.monotonic()
            elapsed = max(now - self.window_start, 1e-9)
            lat = np.array(self.latency_ms) if self.latency_ms else np.zeros(1)
            inf = np.array(self.inference_ms) if self.inference_ms else np.zeros(1)
            stages = {k: round(float(np.median(v)), 2) if v else 0.0 for k, v in self.stage_ms.items()}
            out = {
                "received": self.received,
                "processed": self.processed,
                "dropped": self.dropped_replaced + self.dropped_middleware,
                "dropped_replaced": self.dropped_replaced,
                "dropped_middleware": self.dropped_middleware,
                "bad_frames": self.bad,
                "fps": round(self.window_processed / elapsed, 2),
                "latency_ms_p50": round(float(np.percentile(lat, 50)), 1),
                "latency_ms_p95": round(float(np.percentile(lat, 95)), 1),
                "inference_ms_p50": round(float(np.percentile(inf, 50)), 1),
                "stages_ms_p50": stages,
            }
            self.window_processed = 0
            self.window_start = now
            self.latency_ms.clear()
            self.inference_ms.clear()
            for v in self.stage_ms.values():
                v.clear()
            return out
