"""Soak: a 30 Hz 1280x720 camera through the launched node for minutes; does anything grow?

    python bench/soak.py --minutes 10 --json runs/soak/soak.json

What a user runs: the package is built with colcon in a workspace (``--workspace``, default
runs/soak/ws), and ``ros2 launch slimyolo_ros detect.launch.py image_topic:=/soak/image_raw
device:=cpu`` starts the node after ``source install/setup.bash``. The camera is in this process:
rclpy's default publisher QoS (reliable, depth 10), bgr8, no Fast DDS profile (the node decides its
QoS with reliability auto). Latency = camera publish -> Detection2DArray with the frame's stamp back
here. Per minute: frames sent / answered, latency p50/p95 of that minute's answered frames, the node's
RSS at the end of the minute and its cumulative ~/stats drop counters. The node keeps only the newest
frame, so a node slower than 30 Hz answers a fraction of the frames; growth over the minutes (RSS,
latency, a falling answered rate) is what this looks for.

Writes JSON (``--json``) and its section of docs/benchmarks.md between ``<!-- bench:soak start/end
-->`` (``--md``; the rest of the file is left alone).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.table import grid  # noqa: E402
from slimyolo_ros.harness import PROFILE_ENV, NodeUnderTest  # noqa: E402
from slimyolo_ros.io_utils import atomic_write_text  # noqa: E402

START, END = "<!-- bench:soak start -->", "<!-- bench:soak end -->"
PACKAGE_FILES = ("setup.py", "setup.cfg", "package.xml", "README.md", "resource", "launch", "config",
                 "models", "slimyolo_ros")
TOPIC = "/soak/image_raw"
VENV_BIN = Path(sys.executable).parent


def user_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROFILE_ENV}
    env.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 101)))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["RCUTILS_COLORIZED_OUTPUT"] = "0"
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def build_workspace(ws: Path, env: dict[str, str]) -> None:
    """A colcon workspace with a copy of this package in src/, built as a user builds it (the launch
    test uses it too). Raises RuntimeError with colcon's output when the build fails."""
    src = ws / "src" / "slimyolo_ros"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    for name in PACKAGE_FILES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif path.is_file():
            shutil.copy2(path, src / name)
    proc = subprocess.run(["bash", "-c", "colcon build --packages-select slimyolo_ros"], cwd=ws, env=env,
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"colcon build in {ws} failed ({proc.returncode}):\n"
                           f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}")


def launch(ws: Path, env: dict[str, str], log: Path, large_frames: bool) -> NodeUnderTest:
    setup = shlex.quote(str(ws / "install" / "setup.bash"))
    cmd = (f"source {setup} && exec ros2 launch slimyolo_ros detect.launch.py "
           f"image_topic:={TOPIC} device:=cpu large_frames:={str(large_frames).lower()}")
    return NodeUnderTest(["bash", "-c", cmd], env, log, cwd=ws, name="ros2 launch", process_group=True)


def node_process(group: int, timeout: float = 120.0) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in psutil.process_iter(["cmdline"]):
            try:
                if os.getpgid(p.pid) == group and any("detect_node" in a for a in p.info["cmdline"] or []):
                    return p
            except (ProcessLookupError, psutil.Error):
                pass
        time.sleep(0.5)
    raise RuntimeError("detect_node did not start under ros2 launch")


class Camera:
    """rclpy in this process: the 30 Hz publisher, the detections and ~/stats subscriptions."""

    def __init__(self, width: int, height: int) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from std_msgs.msg import String
        from vision_msgs.msg import Detection2DArray

        from slimyolo_ros.ros.convert import bgr_to_image

        rclpy.init()
        self.node = rclpy.create_node("soak_camera")
        self.pub = self.node.create_publisher(Image, TOPIC, 10)
        img = np.full((height, width, 3), 96, np.uint8)
        img[100:400, 300:500] = (40, 160, 220)
        self.msg = bgr_to_image(img, "bgr8")
        self.sent: dict[int, float] = {}
        self.answered: dict[int, float] = {}
        self.stats: dict = {}
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(Detection2DArray, "/detections", self._on_det, reliable)
        self.node.create_subscription(String, "/slimyolo_detector/stats",
                                      lambda m: setattr(self, "stats", json.loads(m.data)), reliable)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        threading.Thread(target=self.executor.spin, daemon=True).start()

    def _on_det(self, msg) -> None:
        self.answered.setdefault(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec, time.monotonic())

    def publish(self, i: int) -> int:
        """Frame i, stamped 1000 s + i ms (unique, and what the detections carry back)."""
        sec, nanosec = 1000 + i // 1000, (i % 1000) * 10**6
        self.msg.header.stamp.sec, self.msg.header.stamp.nanosec = sec, nanosec
        key = sec * 10**9 + nanosec
        self.sent[key] = time.monotonic()
        self.pub.publish(self.msg)
        return key

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown()


def minute_row(cam: Camera, keys: list[int], rss_mib: float) -> dict:
    lat = [(cam.answered[k] - cam.sent[k]) * 1e3 for k in keys if k in cam.answered]
    s = cam.stats
    return {"sent": len(keys), "answered": len(lat),
            "latency_ms_p50": round(float(np.percentile(lat, 50)), 1) if lat else None,
            "latency_ms_p95": round(float(np.percentile(lat, 95)), 1) if lat else None,
            "node_rss_mib": round(rss_mib, 1),
            "node_received": s.get("received"), "node_dropped_replaced": s.get("dropped_replaced"),
            "node_dropped_middleware": s.get("dropped_middleware"),
            "starvation_warnings": s.get("starvation_warnings")}


def soak(args: argparse.Namespace) -> dict:
    env = user_env()
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    for var in PROFILE_ENV:
        os.environ.pop(var, None)
    ws = Path(args.workspace).resolve()
    build_workspace(ws, env)
    log = ws / "launch.log"
    if args.large_frames:  # the camera (this process) too: a sample travels in its writer's segment
        os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(REPO / "config" / "fastdds_large_frames.xml")
    launched = launch(ws, env, log, args.large_frames)
    proc = launched.proc
    cam = None
    try:
        node = node_process(proc.pid)
        deadline = time.monotonic() + 120
        while "ready:" not in log.read_text(errors="replace"):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"node not ready:\n{log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.5)
        cam = Camera(args.width, args.height)
        time.sleep(3.0)  # discovery, and the node's QoS decision (reliability auto)
        minutes, i, period = [], 0, 1.0 / args.rate
        t_start = time.monotonic()
        for m in range(args.minutes):
            keys: list[int] = []
            t_end = t_start + (m + 1) * 60.0
            while time.monotonic() < t_end:
                keys.append(cam.publish(i))
                i += 1
                time.sleep(max(0.0, t_start + i * period - time.monotonic()))
            time.sleep(1.0)  # answers still on their way belong to this minute
            minutes.append(minute_row(cam, keys, node.memory_info().rss / 2**20))
            print(json.dumps({"minute": m + 1, **minutes[-1]}), flush=True)
    finally:
        if cam is not None:
            cam.close()
        t0 = time.monotonic()
        launched.stop(sigint_wait=30.0)  # Ctrl-C to the launch's process group, as a terminal sends it
        stop_s = time.monotonic() - t0
    text = log.read_text(errors="replace")
    return {"command": shlex.join(["python", "bench/soak.py", *sys.argv[1:]]),
            "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "git": _git_rev(), "rate_hz": args.rate, "large_frames": args.large_frames,
            "width": args.width, "height": args.height,
            "cpus": os.cpu_count(), "load_avg_end": round(os.getloadavg()[0], 2),
            "ready_line": next((ln for ln in text.splitlines() if "ready:" in ln), ""),
            "qos_lines": [ln.split("]: ", 1)[-1] for ln in text.splitlines() if "reliability auto:" in ln],
            "warnings": [ln for ln in text.splitlines() if "WARN" in ln][:10],
            "traceback": "Traceback" in text, "stop_s": round(stop_s, 2), "exit_code": proc.returncode,
            "minutes": minutes}


def _git_rev() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return out.stdout.strip()


def markdown(r: dict, note: str) -> str:
    rows = [(i + 1, m["sent"], m["answered"], f"{100 * m['answered'] / max(m['sent'], 1):.0f}%",
             m["latency_ms_p50"], m["latency_ms_p95"], m["node_rss_mib"], m["node_dropped_replaced"],
             m["node_dropped_middleware"]) for i, m in enumerate(r["minutes"])]
    first, last = r["minutes"][0], r["minutes"][-1]
    return "\n".join([
        "## Soak: a 30 Hz 1280x720 camera through `ros2 launch` (bench/soak.py)", "",
        f"Command: `{r['command']}` — {r['date_utc']}, git `{r['git']}`, {r['cpus']} CPUs, load average "
        f"{r['load_avg_end']} at the end. {note}".rstrip(), "",
        f"Camera: rclpy default QoS (reliable), {r['width']}x{r['height']} bgr8 at {r['rate_hz']:g} Hz, "
        + ("camera and node with config/fastdds_large_frames.xml (`large_frames:=true`)" if r["large_frames"]
           else "no Fast DDS profile")
        + "; node: `ros2 launch slimyolo_ros detect.launch.py device:=cpu` from a colcon "
        f"workspace, the shipped config and model. QoS: {'; '.join(r['qos_lines']) or '–'}.", "",
        grid(["minute", "sent", "answered", "answered %", "latency p50 ms", "latency p95 ms",
               "node RSS MiB", "replaced in the node (cum.)", "replaced in the DDS queue (cum.)"], rows),
        "",
        f"RSS minute 1 → {len(r['minutes'])}: {first['node_rss_mib']} → {last['node_rss_mib']} MiB; "
        f"latency p50 {first['latency_ms_p50']} → {last['latency_ms_p50']} ms. Ctrl-C (SIGINT to the launch's"
        f" process group) stopped it in {r['stop_s']} s, exit code {r['exit_code']}, traceback: "
        f"{'yes' if r['traceback'] else 'no'}. \"answered\": frames whose detections came back; the node "
        "keeps only the newest frame, so at 30 Hz a node slower than 33 ms per frame answers a fraction "
        "and counts the rest as replaced: in its one-frame slot, or already in the depth-1 DDS reader queue "
        "when its executor thread did not take the frame in time (sequence gaps).",
    ])


def replace_section(path: Path, body: str) -> None:
    block = f"{START}\n{body.rstrip()}\n{END}"
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    text = pattern.sub(lambda _m: block, text, count=1) if pattern.search(text) else \
        text.rstrip() + "\n\n" + block + "\n"
    atomic_write_text(path, text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=int, default=10)
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--workspace", default=str(REPO / "runs" / "soak" / "ws"))
    ap.add_argument("--json", default=str(REPO / "runs" / "soak" / "soak.json"))
    ap.add_argument("--md", default=str(REPO / "docs" / "benchmarks.md"), help="'' to skip")
    ap.add_argument("--large-frames", action="store_true",
                    help="camera and node with config/fastdds_large_frames.xml (launch large_frames:=true)")
    ap.add_argument("--note", default="", help="a sentence for the markdown (e.g. the machine's load)")
    args = ap.parse_args()
    result = soak(args)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(args.json), json.dumps(result, indent=1) + "\n")
    if args.md:
        replace_section(Path(args.md), markdown(result, args.note))
    print(json.dumps({k: v for k, v in result.items() if k != "minutes"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
