"""``/diagnostics`` for the nodes, through diagnostic_updater: one status per node
(``slimyolo_detector: detector``, ``slimyolo_tracker: tracker``) whose level and message
ros/health.py decides; this module only samples the node's counters and fills the message.

diagnostic_updater's Updater publishes on its own timer (``diagnostic_updater.period``, a parameter it
declares). That timer runs on the node's ROS clock; it is replaced by a steady one, so a node under
``use_sim_time`` keeps reporting while the bag is paused or /clock is not published yet.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from diagnostic_updater import DiagnosticStatusWrapper, Updater
from rclpy.clock import Clock, ClockType

from slimyolo_ros.ros.health import ACTIVE, ERROR, OK, CounterWindow, Health, HealthLimits, judge, values

PERIOD_S = 1.0
PERIOD_PARAMETER = "diagnostic_updater.period"
WINDOW_S = 5.0  # rates, drop share and latency are over this many seconds


class NodeDiagnostics:
    """One diagnostic task on a node: ``sample()`` says what the node saw, ``extra()`` adds the
    node's own values (device, QoS)."""

    def __init__(self, node: Any, task: str, sample: Callable[[], Health | list[tuple[str, Health]]],
                 limits: Callable[[], HealthLimits], extra: Callable[[], list[tuple[str, str]]],
                 hardware_id: str = "none") -> None:
        self._sample, self._limits, self._extra = sample, limits, extra
        self.updater = Updater(node, period=PERIOD_S)
        # Humble's and Jazzy's diagnostic_updater declare the period parameter; older ones did not.
        period = (float(node.get_parameter(PERIOD_PARAMETER).value) if node.has_parameter(PERIOD_PARAMETER)
                  else PERIOD_S)
        node.destroy_timer(self.updater.timer)
        self.updater.timer = node.create_timer(period, self.updater.update,
                                               clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.updater.setHardwareID(hardware_id)
        self.updater.add(task, self._run)

    def _run(self, stat: DiagnosticStatusWrapper) -> DiagnosticStatusWrapper:
        try:
            sampled = self._sample()
            level, message, pairs = (judge_cameras(sampled, self._limits()) if isinstance(sampled, list)
                                     else (*judge(sampled, self._limits()), values(sampled)))
        except Exception as exc:  # a monitoring bug must not end the node it monitors
            stat.summary(bytes([ERROR]), f"diagnostics failed: {type(exc).__name__}: {exc}")
            return stat
        stat.summary(bytes([level]), message)  # a byte field: an int there is published as garbage
        for key, value in [*pairs, *self._extra()]:
            stat.add(key, value)
        return stat


def detector_health(node: Any, cam: Any, window: CounterWindow) -> Health:
    """One camera's counters (a ros/camera_input.CameraInput of ``node``) as a Health."""
    stats = cam.stats
    now = time.monotonic()
    with stats.lock:
        counts = (stats.received, stats.processed, stats.dropped_replaced + stats.dropped_middleware,
                  stats.dropped_middleware)
        latency = [ms for t, ms in stats.recent_latency if now - t <= window.span_s]
    (received, answered, dropped, lost), span, silent = window.update(now, *counts)
    starved = cam.starvation.starved
    return Health(
        received=received, answered=answered, dropped=dropped, lost=lost, window_s=span,
        latency_ms=latency, silent_s=silent, publishers=len(cam.offered), topic=cam.image_topic,
        starvation=(cam.starvation_text or "image subscription starved") if starved else None,
        load_error=getattr(node, "setup_error", None), inference_error=node._inference_error)


def judge_cameras(sampled: list[tuple[str, Health]], limits: HealthLimits) -> tuple[int, str, list]:
    """Several cameras in one status: the worst camera's level, the message of each camera that is not
    OK (or the common one), and every camera's values prefixed with its topic."""
    judged = [(name, *judge(h, limits), h) for name, h in sampled]
    level = max(lv for _, lv, _, _ in judged)
    bad = [f"{name}: {msg}" for name, lv, msg, _ in judged if lv != OK]
    messages = {msg for _, _, msg, _ in judged}
    message = "; ".join(bad) if bad else (messages.pop() if len(messages) == 1 else
                                          "; ".join(f"{n}: {m}" for n, _, m, _ in judged))
    pairs = [(f"{name} {key}", value) for name, _, _, h in judged for key, value in values(h)]
    return level, message, pairs


def detector_diagnostics(node: Any) -> NodeDiagnostics:
    """The ``detector`` status of detect_node (``node``: a DetectorNode, set up or not)."""
    windows: dict[str, CounterWindow] = {}

    def sample() -> Health | list[tuple[str, Health]]:
        cameras = getattr(node, "_cameras", [])
        for cam in cameras:
            windows.setdefault(cam.image_topic, CounterWindow(WINDOW_S))
        if node.state != ACTIVE:
            for window in windows.values():
                window.reset(time.monotonic())  # silence is counted from the (next) activation on
            return Health(state=node.state, load_error=getattr(node, "setup_error", None))
        healths = [(cam.image_topic, detector_health(node, cam, windows[cam.image_topic])) for cam in cameras]
        return healths[0][1] if len(healths) == 1 else healths

    def limits() -> HealthLimits:
        p = node._p
        return HealthLimits(max_drop_share=float(p["diagnostics_max_drop_share"]),
                            latency_budget_ms=float(p["diagnostics_latency_budget_ms"]),
                            stale_s=float(p["starvation_timeout"]))

    def extra() -> list[tuple[str, str]]:
        det = node.detector
        if det is None:
            return []
        provider = getattr(det, "provider", None)
        out = [("device", f"{det.device}{' fp16' if det.half else ''}"),
               ("backend", det.backend + (f" ({provider})" if provider else ""))]
        cameras = getattr(node, "_cameras", [])
        for cam in cameras:
            prefix = f"{cam.image_topic} " if len(cameras) > 1 else ""
            out += [(f"{prefix}image topic", cam.image_topic),
                    (f"{prefix}image QoS", f"{cam.reliability or 'not subscribed'} (reliability "
                                           f"{node._p['reliability']}), depth 1, volatile"),
                    (f"{prefix}publishers", str(len(cam.offered)))]
        return out

    return NodeDiagnostics(node, "detector", sample, limits, extra)


class MessageCounts:
    """track_node's counters for /diagnostics: messages in, answered, and each one's time in the node.
    Only the executor thread writes them; the updater runs on the same thread."""

    def __init__(self) -> None:
        self.n_received = self.n_answered = 0
        self.recent_latency: deque[tuple[float, float]] = deque(maxlen=1000)

    def received(self) -> float:
        self.n_received += 1
        return time.monotonic()

    def answered(self, t_received: float) -> None:
        now = time.monotonic()
        self.n_answered += 1
        self.recent_latency.append((now, (now - t_received) * 1e3))


def tracker_diagnostics(node: Any) -> NodeDiagnostics:
    """The ``tracker`` status of track_node: silence counts from its detections topic's publishers
    (the detector's own status says why its output stopped)."""
    window = CounterWindow(WINDOW_S)

    def sample() -> Health:
        now = time.monotonic()
        if node.state != ACTIVE:
            window.reset(now)
            return Health(state=node.state, load_error=getattr(node, "setup_error", None))
        c = node.counts
        (received, answered), span, silent = window.update(now, c.n_received, c.n_answered)
        topic = node.sub.topic_name
        return Health(received=received, answered=answered, window_s=span, silent_s=silent,
                      latency_ms=[ms for t, ms in c.recent_latency if now - t <= window.span_s],
                      publishers=node.count_publishers(topic), topic=topic)

    def extra() -> list[tuple[str, str]]:
        if node.tracker is None:
            return []
        cfg = node.tracker.config
        return [("algorithm", cfg.algorithm), ("device", "cpu"),
                ("input QoS", f"{node.get_parameter('reliability').value}, depth 10")]

    return NodeDiagnostics(node, "tracker", sample, lambda: HealthLimits(), extra)
