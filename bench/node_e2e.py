"""The real ``detect_node`` end to end: serialised Image published -> its Detection2DArray back.

Uses the node-under-test harness (slimyolo_ros/harness/). Frames go one at a time (lockstep),
so the number is latency, not throughput under drops; both clocks are in this process. Each
variant is a list of ``name:=value`` node parameters (``[]`` = the shipped defaults); variants run
in alternating rounds (ABC, CBA, ...), each round a fresh node per variant, so a load change on the
shared CPU hits them alike and each variant's ratio to the first is paired within a round. The
node's own per-stage medians (``~/stats``) come with every row.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.common import REPO, Timing, peak_rss_mib
from slimyolo_ros.harness import (
    Client,
    NodeUnderTest,
    executable,
    lockstep,
    node_command,
    ready,
    restamp,
    ros_environment,
    stage_medians,
)

IMAGE, DETECTIONS = "/bench/image", "/bench/detections"
STATS_PERIOD_S = 0.5  # the node's ~/stats windows: per-stage medians of the frames in each window


def _wire(img: np.ndarray) -> bytes:
    from rclpy.serialization import serialize_message

    from slimyolo_ros.ros.convert import bgr_to_image

    return serialize_message(bgr_to_image(img))


def _count(raw: bytes) -> int:
    from rclpy.serialization import deserialize_message
    from vision_msgs.msg import Detection2DArray

    return len(deserialize_message(raw, Detection2DArray).detections)


class E2E:
    """One client for every node run; ``run_node`` starts one node and times the frames through it."""

    def __init__(self, frames: dict[str, np.ndarray], log_dir: Path, timeout: float = 180.0) -> None:
        from sensor_msgs.msg import Image

        self.env = ros_environment()
        self.client = Client("slimyolo_bench")
        self.pub = self.client.publisher(Image, IMAGE)
        self.replies = self.client.replies(DETECTIONS)
        self.stats = self.client.stats("slimyolo_detector")
        self.frames = {k: _wire(v) for k, v in frames.items()}
        self.warm = _wire(np.zeros((8, 8, 3), np.uint8))
        self.log_dir, self.timeout = log_dir, timeout
        self.seq = 0
        log_dir.mkdir(parents=True, exist_ok=True)

    def _stamp(self) -> int:
        self.seq += 1
        return self.seq * 1_000_000_000

    def run_node(self, weights: Path, backend: str, img_size: int, variant: Sequence[str], warmup: int,
                 repeats: int, label: str) -> list[dict]:
        params = {"weights": str(weights), "backend": backend, "device": "cpu", "img_size": img_size,
                  "input_topic": IMAGE, "detections_topic": DETECTIONS,
                  "label_info_topic": "/bench/label_info", "reliability": "reliable",
                  "publish_debug_image": False, "stats_period": STATS_PERIOD_S}
        cmd = node_command(executable("detect_node", "slimyolo_ros.ros.node"), None, params, variant)
        rows = []
        with NodeUnderTest(cmd, self.env, self.log_dir / f"node_{label}.log", REPO, "detect_node") as node:
            stamp = self._stamp()
            startup = ready(self.client, node, self.pub, DETECTIONS, restamp(self.warm, stamp), stamp,
                            self.timeout)
            for frame, wire in self.frames.items():
                t = Timing()
                t_first = None
                for i in range(warmup + repeats):
                    stamp = self._stamp()
                    if not lockstep(self.client, node, self.pub, DETECTIONS, stamp, restamp(wire, stamp),
                                    self.timeout):
                        raise TimeoutError(f"no detections within {self.timeout:g} s; {node.tail()}")
                    if i >= warmup:
                        t_first = t_first or self.client.published[stamp]
                        t.samples_ms.append((self.replies[stamp][0] - self.client.published[stamp]) * 1e3)
                time.sleep(STATS_PERIOD_S * 2.5)  # the stats windows covering the last frames
                rows.append({"frame": frame, **{f"e2e_ms_{k}": v for k, v in t.summary().items()},
                             "detections": _count(self.replies[stamp][1]),
                             "node_stages_ms": stage_medians(self.stats, t_first)})
            for r in rows:
                r.update({"startup_s": round(startup, 2), "peak_rss_mib": peak_rss_mib(node.pid)})
        return rows

    def close(self) -> None:
        self.client.close()


def ab_rounds(e2e: E2E, weights: Path, backend: str, img_size: int, variants: dict[str, list[str]],
              rounds: int, warmup: int, repeats: int, model: str, log=print) -> list[dict]:
    """Every variant once per round, order reversed every other round; one row per run and frame."""
    rows = []
    names = list(variants)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            for row in e2e.run_node(weights, backend, img_size, variants[name], warmup, repeats,
                                    f"{model}_{backend}_{r}_{len(rows)}"):
                row.update({"kind": "node", "model": model, "backend": backend, "img_size": img_size,
                            "variant": name, "round": r})
                rows.append(row)
                log(f"node {model} {backend} [{name}] round {r} {row['frame']}: "
                    f"{row['e2e_ms_median']:.1f} ms, stages {row['node_stages_ms']}")
    return rows


def paired_ratios(rows: list[dict], base: str) -> list[dict]:
    """Per variant and frame: median run time over ``base``'s in the same round; median and spread."""
    by = {(r["model"], r["frame"], r["round"], r["variant"]): r["e2e_ms_median"] for r in rows
          if r.get("kind") == "node"}
    out = []
    for model, frame, variant in sorted({(m, f, v) for m, f, _, v in by if v != base}):
        ratios = [by[(model, frame, rd, variant)] / by[(model, frame, rd, base)]
                  for m, f, rd, v in by if (m, f, v) == (model, frame, variant) and (m, f, rd, base) in by]
        if ratios:
            out.append({"kind": "node_ab", "model": model, "frame": frame, "variant": variant, "base": base,
                        "ratio_median": round(statistics.median(ratios), 3),
                        "ratio_min": round(min(ratios), 3), "ratio_max": round(max(ratios), 3),
                        "rounds": len(ratios)})
    return out
