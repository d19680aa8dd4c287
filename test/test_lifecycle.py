"""Managed (lifecycle) nodes as a user drives them: ``ros2 launch slimyolo_ros detect.launch.py
managed:=true track:=true`` from a colcon workspace, every transition made with the real ``ros2 lifecycle
set`` and checked with ``ros2 lifecycle get`` and the ROS graph (subscriptions, publishers, answers);
and a configure that fails on a missing model, seen in the log, the state and /diagnostics."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import VENV_BIN, require_ros2_cli
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from ros_helpers.camera import default_dds_env
from ros_helpers.probe import LATCHED, NodeProcess, Probe, node_env, wait_for
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from test_diagnostics import Monitor
from vision_msgs.msg import Detection2DArray, LabelInfo

from slimyolo_ros.ros.convert import bgr_to_image
from slimyolo_ros.ros.health import ERROR

pytestmark = [pytest.mark.ros, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.soak import build_workspace  # noqa: E402  (the workspace the launch test builds too)

DETECTOR, TRACKER = "/slimyolo_detector", "/slimyolo_tracker"


class User:
    """A shell with the workspace sourced: ``ros2 lifecycle ...`` as typed."""

    def __init__(self, ws: Path, env: dict[str, str]) -> None:
        self.ws, self.env = ws, env

    def cmd(self, command: str) -> list[str]:
        return ["bash", "-c", f"source {shlex.quote(str(self.ws / 'install' / 'setup.bash'))} && {command}"]

    def run(self, command: str, timeout: float = 60) -> str:
        proc = subprocess.run(self.cmd(command), env=self.env, cwd=self.ws, capture_output=True, text=True,
                              timeout=timeout)
        return proc.stdout + proc.stderr

    def lifecycle(self, verb: str, node: str, transition: str = "", timeout: float = 60) -> str:
        """``ros2 lifecycle <verb> <node> [transition]``, repeated while the CLI has not discovered
        the node yet."""
        deadline = time.monotonic() + timeout
        while True:
            out = self.run(f"ros2 lifecycle {verb} {node} {transition}".strip())
            if "Node not found" not in out or time.monotonic() > deadline:
                return out
            time.sleep(1.0)


@pytest.fixture(scope="module")
def user(tmp_path_factory, ros_env):
    require_ros2_cli()
    ws = tmp_path_factory.mktemp("ws")
    build_workspace(ws, dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"))
    env = default_dds_env(node_env(ros_env))
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    u = User(ws, env)
    yield u
    u.run("ros2 daemon stop")


def frame(stamp: int) -> Image:
    msg = bgr_to_image(np.full((360, 640, 3), 96, np.uint8), "bgr8")
    msg.header = Header(frame_id="camera")
    msg.header.stamp.sec = stamp
    return msg


def answered(probe_results: list, stamp: int) -> bool:
    return any(m.header.stamp.sec == stamp for _, m in list(probe_results))


def set_param(probe: Probe, client, name: str, value) -> bool:
    req = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
    return probe.call(client, req).results[0].successful


def test_managed_launch_is_driven_by_ros2_lifecycle(user, tmp_path):
    log = tmp_path / "launch.log"
    fh = open(log, "wb")  # noqa: SIM115 (closed below)
    args = "managed:=true track:=true device:=cpu image_topic:=/cam/image_raw"
    launch = subprocess.Popen(
        user.cmd(f"exec ros2 launch slimyolo_ros detect.launch.py {args}"), cwd=user.ws, env=user.env,
        stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    probe = Probe("lifecycle_probe")
    n = probe.node
    cam = n.create_publisher(Image, "/cam/image_raw", 5)
    dets = probe.collect(Detection2DArray, "/detections")
    tracks = probe.collect(Detection2DArray, "/tracks")
    labels = probe.collect(LabelInfo, "/label_info", LATCHED)
    params = n.create_client(SetParameters, f"{DETECTOR}/set_parameters")
    try:
        for node in (DETECTOR, TRACKER):
            assert "unconfigured [1]" in user.lifecycle("get", node), log.read_text()[-3000:]
        # unconfigured: nothing subscribed, nothing loaded; parameters already behave as unmanaged
        assert cam.get_subscription_count() == 0 and n.count_publishers("/label_info") == 0
        assert not set_param(probe, params, "conf_threshold", 1.5)  # out of range: refused
        assert set_param(probe, params, "conf_threshold", 0.4)

        for node in (DETECTOR, TRACKER):
            assert "Transitioning successful" in user.lifecycle("set", node, "configure")
            assert "inactive [2]" in user.lifecycle("get", node)
        # configured: the model is loaded (label_info, with the threshold set while unconfigured), but the
        # camera is not subscribed yet
        label = wait_for(lambda: next((m for _, m in list(labels)), None), 30, "label_info after configure")
        assert label.threshold == pytest.approx(0.4) and len(label.class_map) > 0
        assert cam.get_subscription_count() == 0

        for node in (DETECTOR, TRACKER):
            assert "Transitioning successful" in user.lifecycle("set", node, "activate")
            assert "active [3]" in user.lifecycle("get", node)
        wait_for(lambda: cam.get_subscription_count() == 1, 30, "the detector to subscribe the camera")
        for stamp in range(1, 1000):  # best effort until the auto QoS settles: resend until answered
            cam.publish(frame(stamp))
            if answered(dets, stamp - 1) or stamp > 300:
                break
            time.sleep(0.1)
        wait_for(lambda: answered(tracks, stamp - 1), 30, "the tracker's answer")
        assert "ready:" in log.read_text() and "tracking with" in log.read_text()

        assert "Transitioning successful" in user.lifecycle("set", DETECTOR, "deactivate")
        assert "inactive [2]" in user.lifecycle("get", DETECTOR)
        wait_for(lambda: cam.get_subscription_count() == 0, 30, "the image subscription to be released")
        before = len(dets)
        for stamp in range(5000, 5010):
            cam.publish(frame(stamp))
            time.sleep(0.1)
        time.sleep(1.0)
        assert len(dets) == before, "detections published while inactive"

        assert "Transitioning successful" in user.lifecycle("set", DETECTOR, "cleanup")
        assert "unconfigured [1]" in user.lifecycle("get", DETECTOR)
        wait_for(lambda: n.count_publishers("/label_info") == 0, 30, "cleanup to destroy the publishers")

        for node in (DETECTOR, TRACKER):
            assert "Transitioning successful" in user.lifecycle("set", node, "shutdown")
        launch.wait(timeout=60)
        text = log.read_text()
        assert "Traceback" not in text, text[-3000:]
        assert text.count("process has finished cleanly") == 2 and launch.returncode == 0, text[-3000:]
    finally:
        probe.close()
        if launch.poll() is None:
            os.killpg(launch.pid, signal.SIGKILL)
            launch.wait(timeout=30)
        fh.close()


def test_configure_with_a_missing_model_fails_and_the_node_stays(user, ros_env, tmp_path):
    missing = tmp_path / "no_such_model.pt"
    env = node_env(ros_env)
    node = NodeProcess([str(VENV_BIN / "detect_node"), "--managed", "--ros-args", "-p", f"weights:={missing}",
                        "-p", "device:=cpu"], env, tmp_path / "node.log")
    monitor = Monitor(env, tmp_path / "monitor.log")
    try:
        assert "unconfigured [1]" in user.lifecycle("get", DETECTOR), node.text()
        out = user.lifecycle("set", DETECTOR, "configure")
        assert "Transitioning failed" in out, out
        assert f"configure failed: model file not found: {missing}" in node.text(), node.text()
        assert "unconfigured [1]" in user.lifecycle("get", DETECTOR) and node.alive()
        status = monitor.wait("slimyolo_detector: detector", lambda s: s["level"] == ERROR, 30,
                              "ERROR on /diagnostics")
        assert f"model not loaded: model file not found: {missing}" in status["message"], status
        assert "Transitioning successful" in user.lifecycle("set", DETECTOR, "shutdown")
        node.proc.wait(timeout=30)
        assert node.returncode == 0, node.text()
        assert "Traceback" not in node.text(), node.text()
    finally:
        node.stop()
        monitor.proc.stop()


def test_unmanaged_nodes_have_no_lifecycle_services(ros_env, tmp_path):
    """Unmanaged stays the default: no ``--managed``, no lifecycle services; the node just works."""
    node = NodeProcess([str(VENV_BIN / "track_node")], node_env(ros_env), tmp_path / "track.log")
    probe = Probe("unmanaged_probe")
    try:
        node.wait_log("tracking with", 60)
        def services() -> dict | None:
            try:  # the node is discovered a moment before its services
                found = dict(probe.node.get_service_names_and_types_by_node("slimyolo_tracker", "/"))
            except Exception:  # NodeNameNonExistentError
                return None
            return found if f"{TRACKER}/get_parameters" in found else None

        services = wait_for(services, 30, "the tracker's services")
        time.sleep(1.0)  # any lifecycle service would have been discovered with the others
        services = dict(probe.node.get_service_names_and_types_by_node("slimyolo_tracker", "/"))
        assert not [s for s in services if "get_state" in s or "change_state" in s], services
    finally:
        probe.close()
        node.stop()
