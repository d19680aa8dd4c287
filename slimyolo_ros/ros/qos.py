"""The image subscription's reliability: explicit, or ``auto`` = what the camera offers.

A best-effort reader of a reliable camera loses large raw frames: a 1280x720 bgr8 Image does not
fit Fast DDS's default shared-memory segment, goes over UDP in ~45 fragments, and on default Linux
socket buffers almost none arrive complete (docs/node.md). A reliable reader of a best-effort camera
is the opposite mistake: DDS never matches the two. ``auto`` therefore does what ``ros2 topic echo``
and rosbag2 do: reliable when every publisher offers reliable, best effort otherwise.

The decision is a pure function of strings so it is testable without a middleware; the node maps
rclpy's QoS enums with :func:`reliability_name`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

RELIABLE = "reliable"
BEST_EFFORT = "best_effort"
AUTO = "auto"
RELIABILITY_CHOICES = (AUTO, BEST_EFFORT, RELIABLE)


def choose_reliability(requested: str, offered: Iterable[str], current: str | None = None) -> str:
    """The reliability the image subscription should have now.

    ``requested``: the node's ``reliability`` parameter; ``offered``: the reliability each
    publisher of the topic offers (``reliable``, ``best_effort`` or anything else, e.g. unknown);
    ``current``: what the subscription has now (None before it exists).

    Without publishers ``auto`` keeps ``current``, so a camera that stops does not make the node
    resubscribe; before any publisher is known it starts best effort, which matches publishers of
    either kind, so a camera that starts later is heard at once and then decided on.
    """
    if requested not in RELIABILITY_CHOICES:
        raise ValueError(f"reliability {requested!r} is not one of {', '.join(RELIABILITY_CHOICES)}")
    if requested != AUTO:
        return requested
    offered = list(offered)
    if not offered:
        return current or BEST_EFFORT
    return RELIABLE if all(o == RELIABLE for o in offered) else BEST_EFFORT


def reliability_name(policy: Any) -> str:
    """rclpy's ReliabilityPolicy (or its int value) -> ``reliable`` / ``best_effort`` / ``unknown``."""
    from rclpy.qos import ReliabilityPolicy

    try:
        policy = ReliabilityPolicy(int(policy))
    except (TypeError, ValueError):
        return "unknown"
    return {ReliabilityPolicy.RELIABLE: RELIABLE, ReliabilityPolicy.BEST_EFFORT: BEST_EFFORT}.get(
        policy, "unknown")


def profile(reliability: str = RELIABLE, depth: int = 10, latched: bool = False) -> Any:
    """An rclpy QoSProfile: keep-last ``depth``, ``reliable`` or ``best_effort``, volatile or (``latched``)
    transient local: the QoS of every subscription and publisher of the package that needs more than a
    depth."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    if reliability not in (RELIABLE, BEST_EFFORT):
        raise ValueError(f"reliability {reliability!r} is not {RELIABLE} or {BEST_EFFORT}")
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE if reliability == RELIABLE
                      else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


def describe_change(topic: str, old: str | None, new: str, offered: list[str]) -> str:
    """The one log line for a (re)decision in auto mode."""
    if offered:
        counts = {k: offered.count(k) for k in sorted(set(offered))}
        what = ", ".join(f"{n} {k}" for k, n in counts.items())
        why = f"publishers offer: {what}"
    else:
        why = "no publisher yet; best effort matches either kind"
    start = "" if old is None else f"{old} -> "
    return f"reliability auto: {topic} subscribed {start}{new} ({why})"
