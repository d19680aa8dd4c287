"""A node's health as one diagnostic status: the level and message ``/diagnostics`` reports, decided
from counters and times alone, so it is testable without a middleware (ros/diagnostics.py publishes
it through diagnostic_updater).

* ERROR: the model failed to load, or the latest frame's inference raised (until a frame succeeds);
* WARN: starved (the starvation watch's cause), no frame for ``stale_s`` while active, more than
  ``max_drop_share`` of the frames sent to the node dropped, or latency p95 over the budget;
* OK: frames arrive and are answered (or the node is deliberately not working: inactive, unconfigured).

Rates and shares come from a sliding window over the node's cumulative counters
(:class:`CounterWindow`): fps over one diagnostics period would jump with every frame.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

# diagnostic_msgs/DiagnosticStatus levels
OK, WARN, ERROR = 0, 1, 2
ACTIVE = "active"
MIN_FRAMES = 10  # below this many frames sent in the window a drop share says nothing


@dataclass(frozen=True)
class HealthLimits:
    """When a working node is unhealthy. ``latency_budget_ms`` 0 turns the latency check off."""

    max_drop_share: float = 0.5
    latency_budget_ms: float = 1000.0
    stale_s: float = 5.0


@dataclass
class Health:
    """What the node saw in the last window (counts are of that window, not cumulative)."""

    received: int = 0  # frames that reached the callback
    answered: int = 0  # frames processed and published
    dropped: int = 0  # replaced in the one-frame slot + lost in the middleware (sequence gaps)
    lost: int = 0  # the middleware part of ``dropped``: sent but never received
    window_s: float = 0.0
    latency_ms: list[float] = field(default_factory=list)
    silent_s: float = 0.0  # since the last frame arrived (or since the node started working)
    publishers: int = 0
    topic: str = ""
    starvation: str | None = None  # the starvation watch's message while it reports starved
    load_error: str | None = None
    inference_error: str | None = None
    state: str = ACTIVE  # lifecycle state label; unmanaged nodes are always active


def drop_share(h: Health) -> float:
    """Dropped frames as a share of the frames sent to the node (received + lost on the way)."""
    sent = h.received + h.lost
    return h.dropped / sent if sent else 0.0


def percentiles(latency_ms: list[float]) -> tuple[float, float] | None:
    if not latency_ms:
        return None
    p50, p95 = np.percentile(np.asarray(latency_ms, np.float64), [50, 95])
    return float(p50), float(p95)


def judge(h: Health, limits: HealthLimits) -> tuple[int, str]:
    """The status level and its one-line message."""
    if h.load_error:
        return ERROR, f"model not loaded: {h.load_error}"
    if h.state != ACTIVE:
        return OK, f"{h.state}: not subscribed (lifecycle)"
    if h.inference_error:
        return ERROR, f"inference failed: {h.inference_error}"
    if h.starvation:
        return WARN, h.starvation
    if limits.stale_s > 0 and h.silent_s >= limits.stale_s:
        who = f"{h.publishers} publisher(s)" if h.publishers else "no publisher"
        return WARN, f"nothing received for {h.silent_s:.0f} s on {h.topic or 'the input'} ({who})"
    problems = []
    share = drop_share(h)
    if h.received + h.lost >= MIN_FRAMES and share > limits.max_drop_share:
        problems.append(f"dropped {share:.0%} of the frames in the last {h.window_s:.0f} s "
                        f"(limit {limits.max_drop_share:.0%}): the node is slower than the camera")
    lat = percentiles(h.latency_ms)
    if limits.latency_budget_ms > 0 and lat is not None and lat[1] > limits.latency_budget_ms:
        problems.append(f"latency p95 {lat[1]:.0f} ms over the budget of {limits.latency_budget_ms:.0f} ms")
    if problems:
        return WARN, "; ".join(problems)
    if h.received == 0:
        return OK, "waiting for frames"
    return OK, "frames arrive and are answered"


def values(h: Health) -> list[tuple[str, str]]:
    """The status's key/value pairs (what rqt_robot_monitor shows under it)."""
    secs = max(h.window_s, 1e-9)
    lat = percentiles(h.latency_ms)
    return [
        ("fps in", f"{h.received / secs:.1f}" if h.window_s else "0.0"),
        ("fps out", f"{h.answered / secs:.1f}" if h.window_s else "0.0"),
        ("latency p50 (ms)", f"{lat[0]:.1f}" if lat else "n/a"),
        ("latency p95 (ms)", f"{lat[1]:.1f}" if lat else "n/a"),
        ("drops", str(h.dropped)),
        ("drop share", f"{drop_share(h):.2f}"),
        ("window (s)", f"{h.window_s:.1f}"),
    ]


@dataclass
class _Sample:
    t: float
    counts: tuple[int, ...]


class CounterWindow:
    """Differences of cumulative counters over the last ``span_s`` seconds, and when the first of
    them (frames received) last changed."""

    def __init__(self, span_s: float = 5.0) -> None:
        self.span_s = span_s
        self._samples: deque[_Sample] = deque()
        self._last_change: float | None = None

    def reset(self, now: float) -> None:
        """Start afresh (the node started working, e.g. a lifecycle activate)."""
        self._samples.clear()
        self._last_change = now

    def update(self, now: float, *counts: int) -> tuple[tuple[int, ...], float, float]:
        """Feed the counters' current totals; returns (their growth over the window, the window's
        length, seconds since the first counter last grew)."""
        if self._last_change is None:
            self._last_change = now
        if self._samples and counts[0] != self._samples[-1].counts[0]:
            self._last_change = now
        if self._samples and any(c < p for c, p in zip(counts, self._samples[-1].counts, strict=True)):
            self._samples.clear()  # counters were reset
        self._samples.append(_Sample(now, tuple(counts)))
        while len(self._samples) > 2 and now - self._samples[1].t >= self.span_s:
            self._samples.popleft()
        first = self._samples[0]
        growth = tuple(c - f for c, f in zip(counts, first.counts, strict=True))
        return growth, now - first.t, now - self._last_change
