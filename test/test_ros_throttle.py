"""The nodes' throttled warnings: one line per kind per period, the next one counts what was held back."""

from __future__ import annotations

from slimyolo_ros.ros.throttle import ThrottledWarnings


def test_one_line_per_kind_per_period_and_the_count_of_the_rest():
    now = [100.0]
    lines: list[str] = []
    w = ThrottledWarnings(lines.append, period_s=5.0, clock=lambda: now[0])
    assert w.warn("encoding", "bad encoding") and w.warn("step", "bad step")  # kinds are throttled apart
    now[0] += 4.9
    assert not w.warn("encoding", "bad encoding") and not w.warn("encoding", "bad encoding")
    now[0] += 0.1
    assert w.warn("encoding", "bad encoding")
    now[0] += 5.0
    assert w.warn("encoding", "bad encoding")
    assert lines == ["bad encoding", "bad step", "bad encoding (+2 more of this kind in the last 5 s)",
                     "bad encoding"]
