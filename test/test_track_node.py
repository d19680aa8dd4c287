"""track_node over the real middleware: the node as a subprocess, scripted Detection2DArrays published
from this process over Fast DDS on loopback, the ``tracks`` it publishes collected here.

Every input is sent in lockstep (publish, wait for the output with its stamp), so "one output per
input" is checked exactly. Each test starts its stamps 100 s after the previous test's, so tracks of
one test have expired (1 s buffer) before the next begins.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rclpy
from conftest import in_ci
from rclpy.context import Context
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from ros_helpers.probe import Probe, wait_for
from std_msgs.msg import Header
from vision_msgs.msg import (
    BoundingBox2D,
    Detection2D,
    Detection2DArray,
    ObjectHypothesis,
    ObjectHypothesisWithPose,
)

from slimyolo_ros.harness import NodeUnderTest, node_command

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[1]
NODE = Path(sys.executable).parent / "track_node"  # from the venv running the tests
FRAME_ID = "uav/camera_optical"
RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)
DT = 0.1


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
    """The node process and a probe node here, both through the node-under-test harness."""

    def __init__(self, env: dict[str, str], log: Path, *params: str, cmd: list[str] | None = None,
                 input_topic: str = "/detections") -> None:
        """``cmd``: how the node is started (default: track_node with config/track.yaml and ``params``);
        it runs in its own process group, so close() stops a launch and everything it started."""
        if cmd is None:
            cmd = node_command([str(NODE)], REPO / "config" / "track.yaml", overrides=params)
        self.log_path = log
        self.process = NodeUnderTest(cmd, env, log, name="track_node", process_group=True)
        self.proc = self.process.proc
        self.probe = Probe("track_test_probe")
        self.node, self.lock = self.probe.node, self.probe.lock
        self.pub = self.probe.publisher(Detection2DArray, input_topic, RELIABLE)
        self.received = self.probe.collect(Detection2DArray, "/tracks", RELIABLE)
        wait_for(lambda: "tracking with" in self.text() or self.proc.poll() is not None, 120, "node start")
        assert self.proc.poll() is None, self.text()
        wait_for(lambda: self.pub.get_subscription_count() > 0 and
                 self.node.count_publishers("/tracks") > 0, 60, "discovery")
        self.stamp = 0.0

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
        out = new[0][1]
        assert (out.header.stamp.sec, out.header.stamp.nanosec) == key and out.header.frame_id == frame_id
        return out

    def next_test(self) -> None:
        self.stamp = math.floor(self.stamp) + 100.0

    def close(self) -> int:
        """Ctrl-C to the process group, as a terminal sends it; the exit code (SIGTERM after 20 s)."""
        code = self.process.stop(sigint_wait=20.0)
        self.probe.close()
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


def _service(rig, srv_type, name: str, request):
    client = rig.node.create_client(srv_type, f"/slimyolo_tracker/{name}")
    wait_for(client.service_is_ready, 30, f"/slimyolo_tracker/{name}")
    future = client.call_async(request)
    wait_for(future.done, 30, f"a reply from /slimyolo_tracker/{name}")
    return future.result()


def test_the_running_node_has_the_parameters_config_documents(rig):
    """What the running node declares (its parameter services) against config/track.yaml: the same names,
    the file's values in force (but the test's track_buffer_s:=1), each with a description, the tracker's
    numbers with their ranges, topics and QoS read-only."""
    import yaml
    from rcl_interfaces.srv import DescribeParameters, GetParameters, ListParameters
    from rclpy.parameter import parameter_value_to_python

    documented = yaml.safe_load((REPO / "config" / "track.yaml").read_text())
    documented = documented["slimyolo_tracker"]["ros__parameters"]
    names = set(_service(rig, ListParameters, "list_parameters", ListParameters.Request()).result.names)
    rclpy_own = set(rig.node.get_parameters_by_prefix(""))  # what every rclpy node declares (use_sim_time)
    assert names - rclpy_own == set(documented)
    order = sorted(documented)
    values = _service(rig, GetParameters, "get_parameters", GetParameters.Request(names=order)).values
    running = {n: parameter_value_to_python(v) for n, v in zip(order, values, strict=True)}
    assert running == {**documented, "track_buffer_s": 1}
    described = _service(rig, DescribeParameters, "describe_parameters",
                         DescribeParameters.Request(names=order)).descriptors
    by_name = {d.name: d for d in described}
    # diagnostic_updater declares its own two (period, use_fqn) without descriptions
    assert all(by_name[n].description for n in order if not n.startswith("diagnostic_updater."))
    assert {n for n in order if by_name[n].read_only} == {"detections_topic", "tracks_topic", "reliability"}
    for name in ("track_activation_threshold", "high_conf_det_threshold", "minimum_iou_threshold",
                 "min_score"):
        r = by_name[name].floating_point_range
        assert len(r) == 1 and (r[0].from_value, r[0].to_value) == (0.0, 1.0), name
    assert by_name["minimum_consecutive_frames"].integer_range[0].from_value == 1


def _ros2(env: dict[str, str], *args: str) -> str:
    ros2 = Path(sys.executable).parent / "ros2"
    if not ros2.is_file():
        msg = f"no ros2 CLI in {ros2.parent} (make setup installs it)"
        if in_ci():
            pytest.fail(msg + "; CI=true requires it")
        pytest.skip(msg)
    deadline = time.monotonic() + 60
    while True:  # the CLI may not have discovered the node yet
        proc = subprocess.run([str(ros2), *args], env=env, capture_output=True, text=True, timeout=120)
        out = proc.stdout + proc.stderr
        if "Node not found" not in out or time.monotonic() > deadline:
            return out
        time.sleep(1.0)


def test_ros2_param_set_is_validated_then_applied(rig, ros_env):
    """A bad value at runtime is refused with the reason (by its range, or by TrackerConfig for what a
    range cannot say), a good one is applied: the tracker drops detections below the new min_score."""
    refused = (("algorithm", "kalman", "'kalman'"),
               ("track_activation_threshold", "1.5", "track_activation_threshold"),
               ("track_activation_threshold", "2", "track_activation_threshold 2.0 is not in [0, 1]"),
               ("minimum_consecutive_frames", "0", "minimum_consecutive_frames"),
               ("tracks_topic", "elsewhere", "read-only"))
    for name, value, needle in refused:
        out = _ros2(ros_env, "param", "set", "/slimyolo_tracker", name, value)
        assert "Setting parameter failed" in out and needle in out, out
    rig.next_test()
    assert len([rig.send([detection(100, 100, score=0.9)]) for _ in range(4)][-1].detections) == 1
    out = _ros2(ros_env, "param", "set", "/slimyolo_tracker", "min_score", "0.95")
    assert "Set parameter successful" in out, out
    wait_for(lambda: "tracks start over" in rig.text(), 10, "the log line of the change")
    rig.next_test()
    assert all(rig.send([detection(100, 100, score=0.9)]).detections == [] for _ in range(4))
    assert "Double value is: 0.95" in _ros2(ros_env, "param", "get", "/slimyolo_tracker", "min_score")
    out = _ros2(ros_env, "param", "set", "/slimyolo_tracker", "min_score", "0.05")
    assert "Set parameter successful" in out, out
    rig.next_test()
    assert len([rig.send([detection(100, 100, score=0.9)]) for _ in range(4)][-1].detections) == 1


@pytest.mark.parametrize("post_set_callbacks", [True, False], ids=["iron_and_later", "humble_fallback"])
def test_parameter_updates_are_validated_then_applied_on_every_distro(post_set_callbacks, monkeypatch):
    """The node in this process, on both paths of ros/compat.on_parameter_update: with Iron's post-set
    callbacks, and as on Humble (whose Node has no add_post_set_parameters_callback; removed here from
    rclpy's Node class for real). Both refuse a bad value with the reason and apply a good one."""
    from rclpy.parameter import Parameter

    from slimyolo_ros.ros.track_node import TrackerNode

    if not post_set_callbacks:
        monkeypatch.delattr(Node, "add_post_set_parameters_callback")
    context = Context()
    rclpy.init(context=context)
    try:
        node = TrackerNode(context=context)
        assert hasattr(node, "add_post_set_parameters_callback") == post_set_callbacks
        [bad] = node.set_parameters([Parameter("algorithm", value="kalman")])
        assert not bad.successful and "kalman" in bad.reason
        assert node.tracker.config.algorithm == "bytetrack"
        assert node.get_parameter("algorithm").value == "bytetrack"
        [bad] = node.set_parameters([Parameter("min_score", value=float("nan"))])
        assert not bad.successful and node.tracker.config.min_score == 0.05
        [good] = node.set_parameters([Parameter("algorithm", value="sort")])
        assert good.successful
        assert node.tracker.config.algorithm == "sort" and node.get_parameter("algorithm").value == "sort"
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


@pytest.mark.parametrize("param,needle", [
    ("track_activation_threshold:=1.7", "track_activation_threshold"),
    ("track_activation_threshold:=2", "track_activation_threshold 2.0 is not in [0, 1]"),
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
    assert len(errors) == 1 and needle in errors[0] and param.split(":=")[1] in errors[0], text
    assert "Traceback" not in text
