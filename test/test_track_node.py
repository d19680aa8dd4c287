"""track_node over the real middleware: the node as a subprocess, scripted Detection2DArrays published
from this process over Fast DDS on loopback, the ``tracks`` it publishes collected here.

Every input is sent in lockstep (publish, wait for the output with its stamp), so "one output per
input" is checked exactly. Each test starts its stamps 100 s after the previous test's, so tracks of
one test have expired (1 s buffer) before the next begins.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Header
from vision_msgs.msg import (
    BoundingBox2D,
    Detection2D,
    Detection2DArray,
    ObjectHypothesis,
    ObjectHypothesisWithPose,
)

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[1]
NODE = Path(sys.executable).parent / "track_node"  # from the venv running the tests
FRAME_ID = "uav/camera_optical"
RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)
DT = 0.1


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def detection(cx: float, cy: float, w: float = 20, h: float = 20, score: float = 0.9,
              name: str = "car") -> Detection2D:
    d = Detection2D()
    d.bbox = BoundingBox2D()
    d.bbox.center.position.x, d.bbox.center.position.y = float(cx), float(cy)
    d.bbox.size_x, d.bbox.size_y = float(w), float(h)
    hyp = ObjectHypothesisWithPose()
    hyp.hypothesis = ObjectHypothesis(class_id=name, score=float(score))
    d.results = [hyp]
    return d


class TrackerRig:
    """The node process (a local start: the shared runner is being rewritten) and a probe node here."""

    def __init__(self, env: dict[str, str], log: Path, *params: str, cmd: list[str] | None = None,
                 input_topic: str = "/detections") -> None:
        """``cmd``: how the node is started (default: track_node with config/track.yaml and ``params``);
        it runs in its own process group, so close() stops a launch and everything it started."""
        if cmd is None:
            cmd = [str(NODE), "--ros-args", "--params-file", str(REPO / "config" / "track.yaml")]
            for p in params:
                cmd += ["-p", p]
        self.log_path = log
        self._log = open(log, "w")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = Node("track_test_probe", context=self.context)
        self.pub = self.node.create_publisher(Detection2DArray, input_topic, RELIABLE)
        self.lock = threading.Lock()
        self.received: list[Detection2DArray] = []
        self.node.create_subscription(Detection2DArray, "/tracks", self._on_tracks, RELIABLE)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()
        wait_for(lambda: "tracking with" in self.text() or self.proc.poll() is not None, 120, "node start")
        assert self.proc.poll() is None, self.text()
        wait_for(lambda: self.pub.get_subscription_count() > 0 and
                 self.node.count_publishers("/tracks") > 0, 60, "discovery")
        self.stamp = 0.0

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:
                if not self.context.ok():
                    return
                raise

    def _on_tracks(self, msg: Detection2DArray) -> None:
        with self.lock:
            self.received.append(msg)

    def text(self) -> str:
        return self.log_path.read_text()

    def send(self, dets: list[Detection2D], stamp: float | None = None, frame_id: str = FRAME_ID
             ) -> Detection2DArray:
        """Publish one Detection2DArray and return the one tracks message carrying its stamp."""
        if stamp is None:
            self.stamp += DT
            stamp = self.stamp
        msg = Detection2DArray()
        msg.header = Header(frame_id=frame_id)
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(round(stamp * 1e9), 10**9)
        msg.detections = dets
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        with self.lock:
            start = len(self.received)
        self.pub.publish(msg)

        def reply():
            with self.lock:
                return len(self.received) > start

        wait_for(reply, 20, f"tracks for stamp {key}:\n{self.text()[-2000:]}")
        time.sleep(0.01)  # a duplicate would most likely be here by now; later ones show up in the next send
        with self.lock:
            new = self.received[start:]
        assert len(new) == 1, f"{len(new)} outputs for one input"
        out = new[0]
        assert (out.header.stamp.sec, out.header.stamp.nanosec) == key and out.header.frame_id == frame_id
        return out

    def next_test(self) -> None:
        self.stamp = math.floor(self.stamp) + 100.0

    def close(self) -> int:
        """Ctrl-C to the process group, as a terminal sends it; the exit code (killed after 20 s)."""
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            code = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            code = self.proc.wait()
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._log.close()
        return code


@pytest.fixture(scope="module")
def rig(ros_env, tmp_path_factory):
    env = dict(ros_env)
    env.setdefault("RCUTILS_LOGGING_BUFFERED_STREAM", "0")
    # track_buffer_s as an integer (as a YAML file may write it): means 1.0 s, not a type error
    r = TrackerRig(env, tmp_path_factory.mktemp("track") / "node.log", "track_buffer_s:=1")
    assert "buffer 1 s" in r.text()
    yield r
    code = r.close()
    assert code == 0, f"track_node exit code {code}:\n{r.text()[-2000:]}"


def tracks_of(msg: Detection2DArray) -> dict[str, tuple[float, float]]:
    """track id -> box centre."""
    return {d.id: (d.bbox.center.position.x, d.bbox.center.position.y) for d in msg.detections}


def id_near(msg: Detection2DArray, x: float, y: float) -> str | None:
    near = [tid for tid, (cx, cy) in tracks_of(msg).items() if abs(cx - x) < 10 and abs(cy - y) < 10]
    return near[0] if near else None


def test_one_output_per_input_with_the_header_even_when_empty(rig):
    rig.next_test()
    for frame_id in ("cam_a", "cam_b"):
        out = rig.send([], frame_id=frame_id)
        assert out.detections == []
    out = [rig.send([detection(100, 100)]) for _ in range(4)]
    last = out[-1].detections
    assert len(last) == 1 and last[0].id
    d = last[0]
    assert d.results[0].hypothesis.class_id == "car" and 0 < d.results[0].hypothesis.score <= 1
    assert (d.bbox.center.position.x, d.bbox.size_x) == pytest.approx((100, 20), abs=2)
    assert d.header.frame_id == FRAME_ID


def test_missing_object_keeps_its_id(rig):
    rig.next_test()
    ids = []
    for k in range(20):  # (the node was started with the shipped config/track.yaml)
        dets = [detection(400, 300, name="bus")]
        if not 8 <= k < 12:
            dets.append(detection(50 + 6 * k, 100, name="pedestrian"))
        out = rig.send(dets)
        ids.append(id_near(out, 50 + 6 * k, 100))
    assert ids[5] and ids[19] == ids[5], ids


def test_two_crossing_objects_keep_their_ids(rig):
    rig.next_test()
    first = None
    for k in range(30):
        xa, xb = 100 + 8 * k, 332 - 8 * k
        out = rig.send([detection(xa, 200), detection(xb, 212)])
        pair = (id_near(out, xa, 200), id_near(out, xb, 212))
        if k == 3:
            first = pair
            assert None not in pair and pair[0] != pair[1]
        elif k > 3:
            assert pair == first, f"frame {k}: {pair} != {first}"


def test_isolated_low_score_false_positives_do_not_become_tracks(rig):
    import random

    rig.next_test()
    rnd = random.Random(1)
    for _ in range(25):
        fps = [detection(rnd.uniform(0, 1000), rnd.uniform(0, 1000), score=rnd.uniform(0.1, 0.45))
               for _ in range(3)]
        out = rig.send([detection(600, 600), *fps])
    assert set(tracks_of(out)) == {id_near(out, 600, 600)}


def test_stamp_jump_backwards_resets_and_ids_are_not_reused(rig):
    rig.next_test()
    t0 = rig.stamp
    before = [rig.send([detection(100 + 5 * k, 100)], stamp=t0 + k * DT) for k in range(5)]
    after = [rig.send([detection(100 + 5 * k, 100)], stamp=t0 + k * DT) for k in range(5)]  # the bag loops
    old, new = id_near(before[-1], 120, 100), id_near(after[-1], 120, 100)
    assert old and new and new != old
    assert int(new) > int(old)
    wait_for(lambda: rig.text().count("went backwards") == 1, 5, "one reset line")
    rig.stamp = t0 + 1.0


def test_a_bad_message_is_survived(rig):
    rig.next_test()
    out = rig.send([detection(100, 100, w=float("nan"))])
    assert out.detections == []
    wait_for(lambda: "not tracked" in rig.text(), 5, "a warning about the bad message")
    assert rig.proc.poll() is None
    for _ in range(3):
        out = rig.send([detection(300, 300)])
    assert len(out.detections) == 1


@pytest.mark.parametrize("param,needle", [
    ("track_activation_threshold:=1.7", "track_activation_threshold 1.7"),
    ("track_buffer_s:=abc", "track_buffer_s 'abc'"),
    ("algorithm:=kalman", "'kalman'"),
    ("reliability:=sometimes", "reliability 'sometimes'"),
])
def test_bad_parameter_is_one_clear_startup_error(ros_env, param, needle):
    cmd = [str(NODE), "--ros-args", "--params-file", str(REPO / "config" / "track.yaml"), "-p", param]
    proc = subprocess.run(cmd, env=ros_env, capture_output=True, text=True, timeout=120)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    errors = [ln for ln in text.splitlines() if "ERROR" in ln]
    assert len(errors) == 1 and needle in errors[0], text
    assert "Traceback" not in text


def test_every_declared_parameter_is_documented_in_config():
    import yaml

    from slimyolo_ros.ros.track_node import _TOPIC_PARAMS
    from slimyolo_ros.tracking import TrackerConfig

    declared = set(TrackerConfig().to_dict()) | set(_TOPIC_PARAMS)
    in_yaml = set(yaml.safe_load((REPO / "config" / "track.yaml").read_text())["slimyolo_tracker"]
                  ["ros__parameters"])
    assert in_yaml == declared


