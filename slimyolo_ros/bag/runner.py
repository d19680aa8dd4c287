"""A ROS node under test: started as a subprocess, fed serialised frames, its replies matched by stamp.

One place for what bag replay, the benchmark and the node tests all need:

- :class:`NodeUnderTest` starts an executable (``detect_node``, a downstream ``track_node``, or any
  command) with a parameters file, ``-p`` parameters and ``-r`` remaps, logs to a file, and stops it
  with SIGINT (its clean shutdown path), then SIGTERM, then SIGKILL.
- :class:`Client` is rclpy in this process (its own context, an executor thread): it publishes
  frames as serialised bytes on one topic and collects the replies on any number of output topics
  by header stamp, plus typed messages (``collect``), the nodes' ``~/stats`` JSON and service calls.
- :func:`lockstep` (one frame, wait for its answer) and :func:`paced` (on a schedule, drops allowed)
  drive a stream of frames through it.

Frames go out as CDR bytes (``Publisher.publish(bytes)``), so the time between publish and reply is
the node's latency plus transport, none of this process's message conversion. Replies are read as
bytes too; only their header stamp is parsed here.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from slimyolo_ros.bag.types import BagError

PROFILE_ENV = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
SHM_FREE_NEEDED = 1 << 30  # each participant maps a 64 MiB segment; Docker's default /dev/shm is 64 MiB


class NodeDiedError(BagError):
    """The node under test exited (or stopped answering) before the run finished."""


# ------------------------------------------------------------------------------------------ environment
def config_file(name: str) -> tuple[Path, Path]:
    """config/<name> of a checkout and of the installed package share folder (either may not exist)."""
    return (Path(__file__).resolve().parents[2] / "config" / name,
            Path(sys.prefix) / "share" / "slimyolo_ros" / "config" / name)


def default_params(name: str = "detect.yaml") -> Path:
    """config/<name> of a checkout, else of the installed package share folder."""
    here, share = config_file(name)
    for path in (here, share):
        if path.is_file():
            return path
    raise BagError(f"no node parameters file: neither {here} nor {share} exists (pass --params)")


def _shm_free_bytes() -> int:
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


def use_large_frames_profile() -> Path | None:
    """Export ``FASTDDS_DEFAULT_PROFILES_FILE`` = config/fastdds_large_frames.xml for this process and
    its children, so camera-sized frames between processes on this host go through Fast DDS shared
    memory instead of fragmented UDP (docs/node.md: a reliable fragmented stream lags on a loaded
    CPU). Nothing changes when the user set a profile, the file is not found, or /dev/shm has too
    little room. Returns the profile now in force from here, if any."""
    if any(k in os.environ for k in PROFILE_ENV):
        return None
    profile = next((p for p in config_file("fastdds_large_frames.xml") if p.is_file()), None)
    if profile is None or _shm_free_bytes() < SHM_FREE_NEEDED:
        return None
    os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    return profile


def ros_environment() -> dict[str, str]:
    """This process's DDS settings, made explicit so node subprocesses share them: discovery on
    loopback unless the user chose otherwise, a random domain when none is set (two runs on one
    machine must not hear each other), and the large-frame shared-memory profile. Call before this
    process's rclpy is initialised."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 101)))
    use_large_frames_profile()
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["RCUTILS_LOGGING_BUFFERED_STREAM"] = "0"
    env["RCUTILS_COLORIZED_OUTPUT"] = "0"
    return env


def executable(name: str, module: str | None = None) -> list[str]:
    """The console script ``name`` next to this interpreter, else on PATH, else ``python -m module``."""
    exe = Path(sys.executable).parent / name
    if exe.is_file():
        return [str(exe)]
    if shutil.which(name):
        return [str(shutil.which(name))]
    if module:
        return [sys.executable, "-m", module]
    raise BagError(f"no executable {name!r} next to {sys.executable} or on PATH")


def node_command(base: Sequence[str], params_file: Path | None = None,
                 params: Mapping[str, object] | None = None, overrides: Sequence[str] = (),
                 remaps: Mapping[str, str] | None = None) -> list[str]:
    """``base --ros-args [--params-file F] -p k:=v ... -r from:=to ...``. ``overrides`` are
    "name:=value" strings (a user's ``--node-param``), given last so they win over the file and
    ``params``."""
    args: list[str] = ["--params-file", str(params_file)] if params_file is not None else []
    for k, v in (params or {}).items():
        args += ["-p", f"{k}:={str(v).lower() if isinstance(v, bool) else v}"]
    for p in overrides:
        if ":=" not in p or p.startswith(":="):
            raise BagError(f"node parameter {p!r}: expected name:=value")
        args += ["-p", p]
    for k, v in (remaps or {}).items():
        args += ["-r", f"{k}:={v}"]
    return [*base, "--ros-args", *args] if args else list(base)


# ------------------------------------------------------------------------------------------ the process
class NodeUnderTest:
    """A node executable as a subprocess with its output in a log file; a context manager that stops
    it on exit. ``command`` is the full command line (see :func:`node_command`)."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str] | None = None,
                 log: Path | None = None, cwd: Path | None = None, name: str = "node") -> None:
        self.command = list(command)
        self.name = name
        self.log = Path(log) if log else None
        self._fh = open(self.log, "wb") if self.log else subprocess.DEVNULL  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.command, env=dict(env) if env is not None else None, cwd=cwd,
                                     stdout=self._fh, stderr=subprocess.STDOUT)

    def __enter__(self) -> NodeUnderTest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def text(self) -> str:
        """Everything the node logged so far ("" without a log file)."""
        try:
            return self.log.read_text(errors="replace") if self.log else ""
        except OSError:
            return ""

    def tail(self, lines: int = 8) -> str:
        return "\n".join(self.text().strip().splitlines()[-lines:])

    def died(self, when: str) -> NodeDiedError:
        """The error for a node that exited ``when`` (e.g. "after 12 frames"), with its log's tail."""
        where = f"; its log ({self.log}):\n{self.tail()}" if self.log else ""
        return NodeDiedError(f"{self.name} exited with code {self.proc.poll()} {when}{where}")

    def check(self, when: str) -> None:
        if not self.alive():
            raise self.died(when)

    def wait_log(self, needle: str, timeout: float) -> str:
        """Block until ``needle`` appears in the log; raises NodeDiedError / TimeoutError."""
        end = time.monotonic() + timeout
        while needle not in (text := self.text()):
            if not self.alive():
                raise self.died(f"before logging {needle!r}")
            if time.monotonic() > end:
                raise TimeoutError(f"{self.name} did not log {needle!r} within {timeout:g} s; "
                                   f"its log ({self.log}):\n{self.tail()}")
            time.sleep(0.1)
        return text

    def stop(self) -> int:
        """SIGINT (the node's clean shutdown path), then SIGTERM, then SIGKILL; returns the exit code."""
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGINT, 10), (signal.SIGTERM, 5)):
                self.proc.send_signal(sig)
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
            else:
                self.proc.kill()
                self.proc.wait()
        if self._fh is not subprocess.DEVNULL and not self._fh.closed:
            self._fh.close()
        return self.proc.returncode


class Pipeline:
    """Nodes under test chained on topics (a detector and the tracker on its output), driven as one by
    :func:`ready`, :func:`lockstep`, :func:`paced` and :func:`drain`: alive while every node is, and
    ``check`` names the node that exited. ``log``/``tail`` are the last node's (the one answering)."""

    def __init__(self, *nodes: NodeUnderTest) -> None:
        if not nodes:
            raise ValueError("Pipeline needs at least one node")
        self.nodes = nodes
        self.name = " -> ".join(n.name for n in nodes)

    @property
    def log(self) -> Path | None:
        return self.nodes[-1].log

    def tail(self, lines: int = 8) -> str:
        return self.nodes[-1].tail(lines)

    def alive(self) -> bool:
        return all(n.alive() for n in self.nodes)

    def check(self, when: str) -> None:
        for n in self.nodes:
            n.check(when)


# ------------------------------------------------------------------------------------------ CDR stamps
def stamp_of(raw: bytes | memoryview) -> int:
    """Header stamp (ns) of a serialised message whose first field is a std_msgs/Header: int32 sec
    and uint32 nanosec right after the 4-byte CDR encapsulation (byte order from its second byte)."""
    order = "<" if raw[1] == 1 else ">"
    sec, nsec = struct.unpack_from(order + "iI", raw, 4)
    return sec * 1_000_000_000 + nsec


def restamp(raw: bytes | bytearray, stamp_ns: int) -> bytes:
    """A copy of a serialised Header-first message with its stamp replaced."""
    out = bytearray(raw)
    order = "<" if out[1] == 1 else ">"
    struct.pack_into(order + "iI", out, 4, *divmod(int(stamp_ns), 1_000_000_000))
    return bytes(out)


# ------------------------------------------------------------------------------------------ the client
def qos(depth: int = 10, reliable: bool = True, latched: bool = False) -> Any:
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


class Client:
    """rclpy in this process: its own context and node, spun by an executor thread.

    ``publisher``/``collect``/``call`` are plain rclpy; ``replies(topic)`` subscribes to serialised
    messages and files them by header stamp (``self.replies_on[topic][stamp] = (perf_counter, bytes)``,
    a repeated stamp counts in ``duplicates``); ``stats(node)`` keeps a node's ``~/stats`` JSON.
    """

    def __init__(self, name: str = "slimyolo_runner") -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self._rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(args=[], context=self.context)  # not sys.argv: a "k:=v" there is no remap of ours
        self.node = rclpy.create_node(name, context=self.context)
        self.lock = threading.Condition()
        self.replies_on: dict[str, dict[int, tuple[float, bytes]]] = {}
        self.duplicates = 0
        self.published: dict[int, float] = {}  # stamp -> perf_counter at first publish
        self.resent = 0
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # the context shut down under us: nothing left to do
                if not self.context.ok():
                    return
                raise

    # ---- plain rclpy ------------------------------------------------------------------------
    def publisher(self, msg_type: Any, topic: str, profile: Any = None) -> Any:
        return self.node.create_publisher(msg_type, topic, profile or qos(5))

    def collect(self, msg_type: Any, topic: str, profile: Any = None) -> list[tuple[float, Any]]:
        """Subscribe; returns the live list of (monotonic receive time, message)."""
        received: list[tuple[float, Any]] = []

        def on_msg(msg: Any) -> None:
            with self.lock:
                received.append((time.monotonic(), msg))

        self.node.create_subscription(msg_type, topic, on_msg, profile or qos(50))
        return received

    def call(self, client: Any, request: Any, timeout: float = 10.0) -> Any:
        wait_until(client.service_is_ready, timeout, f"service {client.srv_name}")
        future = client.call_async(request)
        wait_until(future.done, timeout, f"reply from {client.srv_name}")
        return future.result()

    # ---- frames and replies -----------------------------------------------------------------
    def replies(self, topic: str, msg_type: Any = None, depth: int = 100) -> dict[int, tuple[float, bytes]]:
        """Collect the serialised ``msg_type`` (default Detection2DArray) on ``topic`` by stamp."""
        if msg_type is None:
            from vision_msgs.msg import Detection2DArray as msg_type
        box: dict[int, tuple[float, bytes]] = self.replies_on.setdefault(topic, {})

        def on_raw(raw: bytes) -> None:
            t = time.perf_counter()
            stamp = stamp_of(raw)
            with self.lock:
                if stamp in box:
                    self.duplicates += 1
                else:
                    box[stamp] = (t, raw)
                self.lock.notify_all()

        self.node.create_subscription(msg_type, topic, on_raw, qos(depth), raw=True)
        return box

    def stats(self, node_name: str) -> list[tuple[float, dict]]:
        """The JSON of ``/<node_name>/stats`` as (perf_counter, dict), live."""
        from std_msgs.msg import String

        got: list[tuple[float, dict]] = []
        self.node.create_subscription(
            String, f"/{node_name.lstrip('/')}/stats",
            lambda m: got.append((time.perf_counter(), json.loads(m.data))), qos(10))
        return got

    def label_names(self, topic: str) -> list[tuple[float, list[str]]]:
        """Class names from a LabelInfo topic (latched), live."""
        from vision_msgs.msg import LabelInfo

        got: list[tuple[float, list[str]]] = []
        self.node.create_subscription(
            LabelInfo, topic,
            lambda m: got.append((time.perf_counter(),
                                  [c.class_name for c in sorted(m.class_map, key=lambda c: c.class_id)])),
            qos(1, latched=True))
        return got

    def send(self, pub: Any, stamp: int, raw: bytes) -> float:
        """Publish serialised ``raw`` (already carrying ``stamp``); the first send's time is kept."""
        t = time.perf_counter()
        self.published.setdefault(stamp, t)
        pub.publish(raw)
        return t

    def wait_reply(self, topic: str, stamp: int, timeout: float,
                   alive: Callable[[], bool] = lambda: True) -> bool:
        box = self.replies_on[topic]
        end = time.perf_counter() + timeout
        with self.lock:
            while stamp not in box:
                left = end - time.perf_counter()
                if left <= 0 or not alive():
                    return stamp in box
                self.lock.wait(min(left, 0.1))
        return True

    def answered(self, topic: str) -> int:
        with self.lock:
            return sum(1 for s in self.published if s in self.replies_on[topic])

    def latencies_s(self, topic: str) -> list[float]:
        with self.lock:
            box = self.replies_on[topic]
            return [box[s][0] - t for s, t in self.published.items() if s in box]

    def close(self) -> None:
        try:
            self.executor.shutdown(timeout_sec=1.0)
            self.node.destroy_node()
        finally:
            if self.context.ok():
                self._rclpy.shutdown(context=self.context)
        self._thread.join(2.0)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, poll: float = 0.02) -> Any:
    """The first truthy ``predicate()`` within ``timeout`` s; raises TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


# ------------------------------------------------------------------------------------------ pacing
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
