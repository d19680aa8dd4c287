"""Driving a stream of frames through a node under test: :func:`ready` (warm-up until the first answer),
:func:`lockstep` (one frame, wait for its answer), :func:`paced` (on a schedule, drops allowed),
:func:`drain` (the answers still in flight), and the node's own stage timings from ``~/stats``."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from slimyolo_ros.harness.client import Client
from slimyolo_ros.harness.process import NodeDiedError, NodeUnderTest


def ready(client: Client, node: NodeUnderTest, pub: Any, topic: str, raw: bytes, stamp: int,
          timeout: float) -> float:
    """Publish the warm-up frame ``raw`` (carrying ``stamp``) every 2 s until its reply arrives on
    ``topic``; returns the seconds it took. One answered frame proves the node is up, both directions
    are matched (each side sees matching on its own; a reply sent before the node's writer matched
    our reader reaches nobody), and pays the first inference off the clock."""
    t0 = time.perf_counter()
    while True:
        node.check("before it answered a first frame")
        if pub.get_subscription_count() > 0:
            pub.publish(raw)
            if client.wait_reply(topic, stamp, 2.0, node.alive):
                with client.lock:
                    client.replies_on[topic].pop(stamp, None)
                return time.perf_counter() - t0
        else:
            time.sleep(0.1)
        if time.perf_counter() - t0 > timeout:
            raise NodeDiedError(f"{node.name} did not answer within {timeout:g} s (no reply on {topic})"
                                + (f"; its log ({node.log}):\n{node.tail()}" if node.log else ""))


def lockstep(client: Client, node: NodeUnderTest, pub: Any, topic: str, stamp: int, raw: bytes,
             timeout: float) -> bool:
    """Publish one frame and wait for its reply. A frame lost in transport (best-effort, depth 1) is
    sent again once its answer is overdue (five typical latencies, at least 1 s); latency still counts
    from the first send. False when no reply came within ``timeout``; NodeDiedError if the node exits."""
    recent = client.latencies_s(topic)[-20:]
    resend_after = max(1.0, 5 * sorted(recent)[len(recent) // 2]) if recent else 2.0
    client.send(pub, stamp, raw)
    end = time.perf_counter() + timeout
    while True:
        left = end - time.perf_counter()
        if client.wait_reply(topic, stamp, min(resend_after, max(left, 0.0)), node.alive):
            return True
        node.check(f"after {len(client.published)} frames")
        if left <= resend_after:
            return False
        client.resent += 1
        pub.publish(raw)


def paced(client: Client, node: NodeUnderTest, pub: Any, frames: Iterable[tuple[int, int, bytes]],
          rate: float) -> None:
    """Publish ``(log time ns, stamp, raw)`` frames on their recorded schedule scaled by ``rate``;
    a node slower than that drops frames, as on the vehicle."""
    t0 = log0 = None
    for log_ns, stamp, raw in frames:
        if t0 is None:
            t0, log0 = time.perf_counter(), log_ns
        target = t0 + (log_ns - log0) / 1e9 / rate
        while (left := target - time.perf_counter()) > 0:
            time.sleep(min(left, 0.05))
        node.check(f"after {len(client.published)} frames")
        client.send(pub, stamp, raw)


def drain(client: Client, node: NodeUnderTest, topic: str, timeout: float) -> None:
    """Wait for the replies still in flight: stop when all came, or when none came for a few typical
    latencies (at least 2 s; the last frame may still be in inference)."""
    lat = sorted(client.latencies_s(topic))
    patience = max(2.0, 3 * lat[int(0.95 * (len(lat) - 1))]) if lat else min(timeout, 10.0)
    last_n, quiet_since = -1, time.perf_counter()
    while node.alive() and time.perf_counter() - quiet_since < patience:
        n = client.answered(topic)
        if n == len(client.published):
            return
        if n != last_n:
            last_n, quiet_since = n, time.perf_counter()
        time.sleep(0.05)
    node.check(f"after {len(client.published)} frames")


def stage_medians(stats: list[tuple[float, dict]], since: float) -> dict[str, float]:
    """Per-stage median (ms) over the ``~/stats`` windows after ``since`` that processed frames."""
    import statistics

    windows = [s["stages_ms_p50"] for t, s in list(stats)
               if t >= since and s.get("fps", 0) > 0 and "stages_ms_p50" in s]
    if not windows:
        return {}
    return {k: round(statistics.median(w[k] for w in windows if k in w), 3) for k in windows[0]}
