"""Several cameras into one detect_node: 1, 2 and 4 cameras of 1280x720 bgr8 at 10 Hz each, one frame
at a time (round-robin across the cameras) against every waiting frame in one batch (``camera_batch``).

    python bench/cameras.py --json runs/bench/cameras.json [--cameras 1 2 4] [--segment-s 8] [--rounds 3]

One node per camera count (config/detect.yaml, its shipped model, on CPU; the Fast DDS shared-memory
profile as bench/run.py), fed from this process: one publisher per camera, pre-serialised frames, each
camera at its rate with its own stamps and its own phase (cameras are not synchronised). The two modes
alternate in segments on the same node (round r: A B, round r+1: B A; ``camera_batch`` set at runtime
between segments, one settling second not counted), so a load change on the shared CPU hits both alike
and each batch segment is paired with the round-robin segment of its round. Per segment and camera:
frames sent, share answered, latency (publish here -> its detections back here) p50/p95; per segment the
node's CPU (process time / wall, 1.0 = one core). With one camera both modes are the same path.
First (``--forward-repeats``, ``--no-node`` for only this) the Detector alone in this process:
``detect_batch`` of k frames against k single-frame calls, alternating call by call.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import fix_threads, run_facts  # noqa: E402
from slimyolo_ros.harness import (  # noqa: E402
    Client,
    NodeUnderTest,
    default_params,
    executable,
    node_command,
    restamp,
    ros_environment,
    wait_until,
)

MODES = ("round_robin", "batch")


class Cameras:
    """``k`` cameras publishing from this process; frames sent inside a segment are tagged with it."""

    def __init__(self, client: Client, k: int, rate: float, wire: bytes, seed: int) -> None:
        from sensor_msgs.msg import Image

        self.client, self.k, self.period, self.wire = client, k, 1.0 / rate, wire
        self.pubs = [client.publisher(Image, f"/bench_cam{i}/image_raw") for i in range(k)]
        self.topics = [f"/bench_cam{i}/detections" for i in range(k)]
        for t in self.topics:
            client.replies(t)
        rng = random.Random(seed)
        self.phase = [rng.uniform(0, self.period) for _ in range(k)]
        self.segment: int | None = None
        self.sent: list[tuple[int, int, int]] = []  # (segment, camera, stamp)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def stamp(self, cam: int, seq: int) -> int:
        return ((cam + 1) * 1_000_000 + seq) * 1_000_000_000

    def _run(self) -> None:
        start, seq = time.perf_counter() + 0.1, 0
        while not self._stop.is_set():
            events = sorted((start + seq * self.period + self.phase[c], c) for c in range(self.k))
            for t, cam in events:
                time.sleep(max(0.0, t - time.perf_counter()))
                stamp = self.stamp(cam, seq)
                self.client.send(self.pubs[cam], stamp, restamp(self.wire, stamp))
                if self.segment is not None:
                    self.sent.append((self.segment, cam, stamp))
            seq += 1

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)


def _set_batch(client: Client, batch: bool) -> None:
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    if not hasattr(client, "_set_params"):
        client._set_params = client.node.create_client(SetParameters, "/slimyolo_detector/set_parameters")
    req = SetParameters.Request(parameters=[Parameter("camera_batch", value=batch).to_parameter_msg()])
    result = client.call(client._set_params, req).results[0]
    if not result.successful:
        raise RuntimeError(f"camera_batch:={batch} refused: {result.reason}")


def _segment_rows(client: Client, cams: Cameras, seg: int, mode: str, k: int, rnd: int, cpu: float,
                  wall: float) -> list[dict]:
    rows = []
    for c in range(k):
        stamps = [s for g, cam, s in cams.sent if g == seg and cam == c]
        box = client.replies_on[cams.topics[c]]
        lat = [(box[s][0] - client.published[s]) * 1e3 for s in stamps if s in box]
        rows.append({"cameras": k, "mode": mode, "round": rnd, "segment": seg, "camera": c,
                     "sent": len(stamps), "answered": len(lat),
                     "answered_share": round(len(lat) / len(stamps), 3) if stamps else 0.0,
                     "latency_ms_p50": round(float(np.percentile(lat, 50)), 1) if lat else None,
                     "latency_ms_p95": round(float(np.percentile(lat, 95)), 1) if lat else None,
                     "node_cpu": round(cpu / wall, 2), "segment_s": round(wall, 2)})
    return rows


def run_count(env: dict[str, str], k: int, args: argparse.Namespace, wire: bytes,
              log_dir: Path) -> list[dict]:
    """One node with ``k`` cameras; ``args.rounds`` rounds of both modes."""
    topics = "[" + ",".join(f"/bench_cam{i}/image_raw" for i in range(k)) + "]"
    params = {"device": "cpu", "reliability": "reliable", "publish_debug_image": False, "stats_period": 0.0,
              "image_topics": topics, "camera_batch": False}
    cmd = node_command(executable("detect_node", "slimyolo_ros.ros.node"), default_params(), params)
    client = Client(f"bench_cameras_{k}")
    cams = Cameras(client, k, args.rate, wire, seed=k)
    rows: list[dict] = []
    try:
        with NodeUnderTest(cmd, env, log_dir / f"cameras_{k}.log", REPO, "detect_node") as node:
            node.wait_log("ready:", args.timeout)
            cams.start()
            wait_until(lambda: all(client.replies_on[t] for t in cams.topics), args.timeout,
                       "first detections of every camera")
            proc = psutil.Process(node.pid)
            seg = 0
            for rnd in range(args.rounds):
                for mode in MODES if rnd % 2 == 0 else MODES[::-1]:
                    _set_batch(client, mode == "batch")
                    time.sleep(args.settle_s)
                    c0, t0 = sum(proc.cpu_times()[:2]), time.perf_counter()
                    cams.segment = seg
                    time.sleep(args.segment_s)
                    cams.segment = None
                    cpu, wall = sum(proc.cpu_times()[:2]) - c0, time.perf_counter() - t0
                    node.check(f"segment {seg}")
                    time.sleep(args.settle_s)  # the segment's last frames answered before they are counted
                    rows += _segment_rows(client, cams, seg, mode, k, rnd, cpu, wall)
                    r = [x for x in rows if x["segment"] == seg]
                    print(f"{k} camera(s) {mode:11s} round {rnd}: answered "
                          f"{[x['answered_share'] for x in r]} p50 {[x['latency_ms_p50'] for x in r]} ms "
                          f"cpu {r[0]['node_cpu']}", flush=True)
                    seg += 1
            cams.stop()
    finally:
        cams.stop()
        client.close()
    return rows


def summary(rows: list[dict]) -> list[dict]:
    """Per camera count and mode: medians over segments of the mean answered share over cameras, the
    answered frames per second (all cameras), latency p50/p95 (median over cameras) and CPU; and the
    batch / round-robin ratios of answered frames per second and of latency p50, paired by round."""
    out = []
    segs: dict[tuple[int, str, int], list[dict]] = {}
    for r in rows:
        if r.get("kind") != "forward":
            segs.setdefault((r["cameras"], r["mode"], r["round"]), []).append(r)
    for k in sorted({r["cameras"] for r in rows if r.get("kind") != "forward"}):
        for mode in MODES:
            mine = [v for (kk, m, _), v in segs.items() if kk == k and m == mode]
            if not mine:
                continue

            def med(fn, mine=mine):
                vals = [fn(s) for s in mine]
                vals = [v for v in vals if v is not None]
                return round(statistics.median(vals), 3) if vals else None

            out.append({"cameras": k, "mode": mode, "segments": len(mine),
                        "answered_share": med(lambda s: statistics.mean(c["answered_share"] for c in s)),
                        "answered_per_s": med(lambda s: sum(c["answered"] for c in s) / s[0]["segment_s"]),
                        "latency_ms_p50": med(lambda s: _median([c["latency_ms_p50"] for c in s])),
                        "latency_ms_p95": med(lambda s: _median([c["latency_ms_p95"] for c in s])),
                        "node_cpu": med(lambda s: s[0]["node_cpu"])})
        pairs = [(segs[(k, "batch", rd)], segs[(k, "round_robin", rd)]) for (kk, m, rd) in segs
                 if kk == k and m == "batch" and (k, "round_robin", rd) in segs]
        ratios = [(sum(c["answered"] for c in b) / b[0]["segment_s"])
                  / max(1e-9, sum(c["answered"] for c in a) / a[0]["segment_s"]) for b, a in pairs]
        lat = [_median([c["latency_ms_p50"] for c in b]) / _median([c["latency_ms_p50"] for c in a])
               for b, a in pairs if _median([c["latency_ms_p50"] for c in a])
               and _median([c["latency_ms_p50"] for c in b])]
        if ratios:
            out.append({"cameras": k, "mode": "batch/round_robin",
                        "answered_per_s_ratio_median": round(statistics.median(ratios), 3),
                        "answered_per_s_ratios": [round(x, 3) for x in ratios],
                        "latency_p50_ratio_median": round(statistics.median(lat), 3) if lat else None,
                        "latency_p50_ratios": [round(x, 3) for x in lat]})
    return out


def forward_pairs(counts: list[int], width: int, height: int, repeats: int, log=print) -> list[dict]:
    """The Detector alone (the shipped model, CPU): ``detect_batch`` of k frames against k calls of one
    frame, alternating call by call (A B B A ...), median ms of ``repeats`` each after 2 warm-up."""
    from slimyolo_ros.detect import DetectorOptions, load_detector
    from slimyolo_ros.ros.parameters import PARAMETERS, resolve_path

    det = load_detector(str(resolve_path(PARAMETERS["weights"][0])), DetectorOptions(device="cpu"))
    rng = np.random.default_rng(1)
    rows = []
    for k in counts:
        frames = [rng.integers(0, 255, (height, width, 3), dtype=np.uint8) for _ in range(k)]
        runs = {"one_at_a_time": lambda frames=frames: [det(f) for f in frames],
                "batch": lambda frames=frames: det.detect_batch(frames)}
        times: dict[str, list[float]] = {name: [] for name in runs}
        for i in range(repeats + 2):
            for name in (list(runs) if i % 2 == 0 else list(runs)[::-1]):
                t0 = time.perf_counter()
                runs[name]()
                if i >= 2:
                    times[name].append((time.perf_counter() - t0) * 1e3)
        ratios = [b / a for a, b in zip(times["one_at_a_time"], times["batch"], strict=True)]
        row = {"kind": "forward", "cameras": k, "repeats": repeats,
               **{f"{n}_ms_median": round(statistics.median(t), 1) for n, t in times.items()},
               "batch_ratio_median": round(statistics.median(ratios), 3),
               "input": f"{width}x{height} -> {det.last_input_shape}"}
        log(json.dumps(row))
        rows.append(row)
    return rows


def _median(vals: list) -> float | None:
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--segment-s", type=float, default=8.0)
    ap.add_argument("--settle-s", type=float, default=1.5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=240.0)
    ap.add_argument("--forward-repeats", type=int, default=20,
                    help="the Detector alone, batch against one at a time (0: skip)")
    ap.add_argument("--no-node", action="store_true", help="only the Detector part")
    args = ap.parse_args()
    # as the node does, before torch starts OpenMP: idle workers that spin starve everything else here
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    threads = fix_threads(args.threads)
    env = ros_environment()
    facts = run_facts(" ".join(["python bench/cameras.py", *sys.argv[1:]]), threads)
    from rclpy.serialization import serialize_message

    from slimyolo_ros.ros.convert import bgr_to_image

    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (args.height, args.width, 3), dtype=np.uint8)
    wire = serialize_message(bgr_to_image(img))
    log_dir = args.json.parent / "cameras_logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    rows = []
    if args.forward_repeats:
        rows += forward_pairs(args.cameras, args.width, args.height, args.forward_repeats)
    for k in [] if args.no_node else args.cameras:
        rows += run_count(env, k, args, wire, log_dir)
    facts.update(wall_s=round(time.time() - t0), load_avg_end=os.getloadavg())
    result = {"run": facts, "rows": rows, "summary": summary(rows)}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    for s in result["summary"]:
        print(json.dumps(s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
