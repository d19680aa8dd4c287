"""A ROS node under test as a subprocess: its command line, its DDS environment, its log, its stop.

- :class:`NodeUnderTest` starts an executable (``detect_node``, a downstream ``track_node``, or any
  command) with a parameters file, ``-p`` parameters and ``-r`` remaps, logs to a file, and stops it
  with SIGINT (its clean shutdown path), then SIGTERM, then SIGKILL; :class:`Pipeline` chains several.
- :func:`ros_environment` makes this process's DDS settings explicit so the node shares them.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from slimyolo_ros.errors import SlimyoloError
from slimyolo_ros.ros.package_files import config_file, search_dirs

PROFILE_ENV = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
SHM_FREE_NEEDED = 1 << 30  # each participant maps a 64 MiB segment; Docker's default /dev/shm is 64 MiB


class HarnessError(SlimyoloError):
    """A node under test cannot be started or driven: the message names the command or the file."""


class NodeDiedError(HarnessError):
    """The node under test exited (or stopped answering) before the run finished."""


def default_params(name: str = "detect.yaml") -> Path:
    """The package's config/<name> (ros/package_files.py: the checkout, else the share folder)."""
    path = config_file(name)
    if path is None:
        looked = ", ".join(str(d / "config") for d in search_dirs()) or "no package folder found"
        raise HarnessError(f"no node parameters file {name} (looked in {looked}; pass --params)")
    return path


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
    profile = config_file("fastdds_large_frames.xml")
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
    raise HarnessError(f"no executable {name!r} next to {sys.executable} or on PATH")


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
            raise HarnessError(f"node parameter {p!r}: expected name:=value")
        args += ["-p", p]
    for k, v in (remaps or {}).items():
        args += ["-r", f"{k}:={v}"]
    return [*base, "--ros-args", *args] if args else list(base)


class NodeUnderTest:
    """A node executable as a subprocess with its output in a log file; a context manager that stops
    it on exit. ``command`` is the full command line (see :func:`node_command`).

    ``process_group``: the command runs in its own process group and the stop signals go to the whole
    group, as a terminal's Ctrl-C does: for ``ros2 launch`` and everything it starts. Its SIGINT is the
    default action even when this process was started with SIGINT ignored (a background job)."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str] | None = None,
                 log: Path | None = None, cwd: Path | None = None, name: str = "node",
                 process_group: bool = False) -> None:
        self.command = list(command)
        self.name = name
        self.log = Path(log) if log else None
        self.process_group = process_group
        self._fh = open(self.log, "wb") if self.log else subprocess.DEVNULL  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.command, env=dict(env) if env is not None else None, cwd=cwd,
                                     stdout=self._fh, stderr=subprocess.STDOUT,
                                     start_new_session=process_group,
                                     preexec_fn=_default_sigint if process_group else None)

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

    def send_signal(self, sig: int) -> None:
        """``sig`` to the process, or to its whole group with ``process_group``."""
        if not self.process_group:
            self.proc.send_signal(sig)
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:  # the group is gone already
            pass

    def stop(self, sigint_wait: float = 10.0) -> int:
        """SIGINT (the node's clean shutdown path), then SIGTERM, then SIGKILL; returns the exit code."""
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGINT, sigint_wait), (signal.SIGTERM, 5)):
                self.send_signal(sig)
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
            else:
                self.send_signal(signal.SIGKILL)
                self.proc.wait()
        if self._fh is not subprocess.DEVNULL and not self._fh.closed:
            self._fh.close()
        return self.proc.returncode


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


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
