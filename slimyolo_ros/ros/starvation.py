"""Notice when the image subscription starves, and say why once.

Two symptoms, both seen with raw camera frames over Fast DDS defaults (docs/node.md):
* ``silent``: a publisher is on the topic but no frame has arrived for ``timeout_s``;
* ``lossy``: frames arrive, but the publisher's sequence numbers show that far more were sent
  (the node counts the gaps as middleware drops), while the node was mostly idle. Gaps while the
  worker is busy most of the time are the depth-1 queue keeping the newest frame, by design.

:class:`StarvationWatch` is fed counters and the time, so it is testable without a middleware; the
node calls it from a timer and logs the text :func:`starvation_message` builds. One warning per
episode: it re-arms only after frames have flowed normally again.
"""

from __future__ import annotations

from dataclasses import dataclass

from slimyolo_ros.ros.qos import BEST_EFFORT, RELIABLE

SILENT = "silent"
LOSSY = "lossy"


@dataclass
class _Mark:
    t: float
    received: int
    lost: int
    busy_s: float


class StarvationWatch:
    """``update()`` returns ``silent``/``lossy`` when a warning is due, else None."""

    def __init__(self, timeout_s: float, min_sent: int = 10, min_fraction: float = 0.5,
                 busy_fraction: float = 0.8) -> None:
        self.timeout_s = float(timeout_s)
        self.min_sent = min_sent
        self.min_fraction = min_fraction
        self.busy_fraction = busy_fraction
        self.armed = True
        self.starved = False
        self._since: float | None = None  # when the current silence (with a publisher) began
        self._last_received = 0
        self.last_window = (0, 0)  # (received, lost) in the last loss window: the numbers of a lossy warning
        self.last_window_s = 0.0  # that window's length: at least timeout_s, longer on a trickle
        self._mark: _Mark | None = None  # start of the current loss window

    def update(self, now: float, publishers: int, received: int, lost: int,
               busy_s: float = 0.0) -> str | None:
        """``received``/``lost``: frames received and sequence-gap frames so far; ``busy_s``: the node's
        time spent on frames so far (all cumulative)."""
        if self.timeout_s <= 0:
            return None
        kind = self._silent(now, publishers, received) or self._lossy(now, received, lost, busy_s)
        if kind is None:
            return None
        self.starved = True
        if not self.armed:
            return None
        self.armed = False
        return kind

    def _silent(self, now: float, publishers: int, received: int) -> str | None:
        if publishers == 0 or received != self._last_received or self._since is None:
            self._since = None if publishers == 0 else now
            self._last_received = received
            return None
        return SILENT if now - self._since >= self.timeout_s else None

    def _lossy(self, now: float, received: int, lost: int, busy_s: float) -> str | None:
        mark = self._mark
        if mark is None or received < mark.received or lost < mark.lost:  # first call or reset
            self._mark = _Mark(now, received, lost, busy_s)
            return None
        if now - mark.t < self.timeout_s:
            return None
        got, missed = received - mark.received, lost - mark.lost
        if got + missed < self.min_sent:
            # Too few frames to tell flowing from trickling (a stray frame of a starved stream, or
            # the first of a new publisher, shows no gap): the window grows until it can judge.
            return None
        node_bound = busy_s - mark.busy_s >= self.busy_fraction * (now - mark.t)
        self._mark = _Mark(now, received, lost, busy_s)
        self.last_window, self.last_window_s = (got, missed), now - mark.t
        if node_bound:
            return None
        if got < self.min_fraction * (got + missed):
            return LOSSY
        if got > 0:  # a normal window: the next starvation is a new episode
            self.armed, self.starved = True, False
        return None


def starvation_message(kind: str, topic: str, reliability: str, offered: list[str],
                       seconds: float, received: int = 0, sent: int = 0) -> str:
    """The warning: what is seen, the likely cause for this QoS combination, and the fixes.

    ``seconds``: the silence (``silent``) or the loss window (``lossy``) the warning is about."""
    if kind == SILENT:
        seen = (f"{topic}: {len(offered)} publisher(s) on the topic but no frame received for "
                f"{seconds:g} s")
    else:
        seen = (f"{topic}: only {received} of the {sent} frames the publisher sent arrived in the last "
                f"{seconds:.0f} s (gaps in its sequence numbers)")
    if reliability == RELIABLE and BEST_EFFORT in offered:
        cause = ("QoS mismatch: this subscription is reliable and a publisher offers best effort, "
                 "so DDS never matches them. Fix: reliability: auto (the default) or best_effort")
    elif reliability == BEST_EFFORT:
        cause = ("likely large frames over best effort: frames bigger than Fast DDS's shared-memory "
                 "segment go over UDP in fragments and a best-effort reader loses them when the "
                 "socket receive buffers overflow. Fix: reliability: auto or reliable; or start the "
                 "camera and this node with FASTDDS_DEFAULT_PROFILES_FILE=config/fastdds_large_frames.xml "
                 "(launch: large_frames:=true); or raise the socket buffers "
                 "(sysctl -w net.core.rmem_max=2147483647 net.core.rmem_default=26214400)")
    else:
        fix = ("Fix: start the camera and this node with "
               "FASTDDS_DEFAULT_PROFILES_FILE=config/fastdds_large_frames.xml (launch: large_frames:=true), "
               "or raise the socket buffers (sysctl -w net.core.rmem_max=2147483647 "
               "net.core.rmem_default=26214400)")
        if kind == SILENT:
            cause = ("likely a publisher that advertises but does not send (check it with ros2 topic hz), "
                     f"or frames too large for the socket receive buffers. {fix}")
        else:
            cause = ("likely large frames over UDP: fragments lost on small socket receive buffers are "
                     "resent slower than the camera sends, and the newest frame replaces the one being "
                     f"repaired. {fix}")
    return f"image subscription starved: {seen}; {cause} (docs/node.md: starvation)"
