"""The ROS user's path, for real: ``colcon build`` in a workspace, ``source install/setup.bash``,
``ros2 launch slimyolo_ros detect.launch.py``, a camera with rclpy's default QoS and no Fast DDS
profile, ``ros2 param set``, ``ros2 topic echo``, and Ctrl-C.

Every ros2/colcon command runs through ``bash -c`` after sourcing the workspace, as a user types it.
The launch runs in its own process group with SIGINT restored, so the group signal is what Ctrl-C
in a terminal sends (a background process of a non-interactive shell would ignore it).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import REPO, VENV_BIN, require_ros2_cli
from ros_helpers.camera import CameraProcess, answered_after_first, default_dds_env
from ros_helpers.probe import Probe, node_env, wait_for
from vision_msgs.msg import Detection2DArray

from slimyolo_ros.harness import NodeUnderTest

pytestmark = [pytest.mark.ros, pytest.mark.slow]  # colcon build and ros2 launch: minutes

sys.path.insert(0, str(REPO))
from bench.soak import build_workspace  # noqa: E402  (the soak benchmark builds the same workspace)

START_TIMEOUT = 120.0


def sourced(ws: Path, command: str) -> list[str]:
    return ["bash", "-c", f"source {shlex.quote(str(ws / 'install' / 'setup.bash'))} && {command}"]


def ros2(ws: Path, env: dict[str, str], command: str, timeout: float = 60) -> str:
    proc = subprocess.run(sourced(ws, command), env=env, cwd=ws, capture_output=True, text=True,
                          timeout=timeout)
    return proc.stdout + proc.stderr


def ros2_until(ws: Path, env: dict[str, str], command: str, done, timeout: float = 60) -> str:
    """Repeat a ros2 CLI call while it has not found the node yet (daemon discovery)."""
    deadline = time.monotonic() + timeout
    while True:
        out = ros2(ws, env, command)
        if done(out) or time.monotonic() > deadline:
            return out
        time.sleep(1.0)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A colcon workspace with a copy of this package in src/, built."""
    require_ros2_cli()
    ws = tmp_path_factory.mktemp("ws")
    build_workspace(ws, dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"))
    return ws


@pytest.fixture(scope="module")
def user_env(ros_env) -> dict[str, str]:
    """This run's DDS domain on loopback, the venv on PATH, and no Fast DDS profile: a user's
    default camera has none, which is the case the node must handle."""
    env = default_dds_env(node_env(ros_env))
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_colcon_installs_what_ros2_launch_and_run_look_for(workspace, user_env):
    prefix = workspace / "install" / "slimyolo_ros"
    share = prefix / "share" / "slimyolo_ros"
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "slimyolo_ros").is_file()
    for rel in ("package.xml", "launch/detect.launch.py", "config/detect.yaml",
                "config/fastdds_large_frames.xml"):
        assert (share / rel).read_bytes() == (REPO / rel).read_bytes(), rel
    shipped = sorted(p.name for p in (REPO / "models").iterdir()
                     if p.suffix in (".cfg", ".names", ".pt", ".weights", ".md"))
    assert shipped and sorted(p.name for p in (share / "models").iterdir()) == shipped
    for exe in ("detect_node", "slimyolo"):
        assert os.access(prefix / "lib" / "slimyolo_ros" / exe, os.X_OK), exe
    # after sourcing, the workspace's package comes first
    out = ros2(workspace, user_env, "ros2 pkg prefix slimyolo_ros && "
               "python -c 'import slimyolo_ros.ros.node as n; print(n.__file__)'")
    assert out.splitlines()[0] == str(prefix) and str(prefix) in out.splitlines()[1], out
    out = ros2(workspace, user_env, "ros2 launch slimyolo_ros detect.launch.py --show-args")
    for arg in ("params_file", "image_topic", "weights", "device", "namespace", "use_sim_time",
                "log_level", "large_frames", "track", "image_topics"):
        assert f"'{arg}'" in out, out


class Launch(NodeUnderTest):
    """``ros2 launch`` in its own process group (the harness's), output in a log file."""

    def __init__(self, ws: Path, env: dict[str, str], log: Path, args: str) -> None:
        super().__init__(sourced(ws, f"exec ros2 launch slimyolo_ros detect.launch.py {args}"), env, log,
                         cwd=ws, name="ros2 launch", process_group=True)
        self.pgid = self.proc.pid

    def group(self) -> list[psutil.Process]:
        out = []
        for p in psutil.process_iter():
            try:
                if os.getpgid(p.pid) == self.pgid and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(p)
            except (ProcessLookupError, psutil.Error):
                pass
        return out

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.stop()  # closes the log


@pytest.fixture(scope="module")
def launched(workspace, user_env, tmp_path_factory):
    log = tmp_path_factory.mktemp("launch") / "launch.log"
    launch = Launch(workspace, user_env, log, "image_topic:=/cam/image_raw device:=cpu")
    probe = Probe("launch_probe")
    try:
        wait_for(lambda: "ready:" in launch.text() or launch.proc.poll() is not None, START_TIMEOUT,
                 "the node's ready line", poll=0.2)
        assert "ready:" in launch.text(), launch.text()[-3000:]
        yield launch, probe
    finally:
        probe.close()
        launch.kill()  # only what a failed test left running
        ros2(workspace, user_env, "ros2 daemon stop")


def test_launched_node_is_the_installed_one(launched, workspace):
    launch, _ = launched
    ready = next(ln for ln in launch.text().splitlines() if "ready:" in ln)
    share = workspace / "install" / "slimyolo_ros" / "share" / "slimyolo_ros"
    assert "/cam/image_raw (Image, reliability auto)" in ready, ready
    assert str(share / "models" / "slimyolov3-synth.pt") in ready and "device cpu" in ready, ready


def test_default_qos_camera_is_answered(launched, user_env, tmp_path):
    """rclpy's default publisher QoS (reliable), 1280x720 bgr8, 10 Hz, no profile: the issue's case."""
    launch, probe = launched
    dets = probe.collect(Detection2DArray, "/detections")
    cam = CameraProcess(user_env, "/cam/image_raw", tmp_path / "camera.log", "--stamp-base", "100")
    got, sent = answered_after_first(dets, cam, 100, 50)
    assert len(got) >= 40, f"{len(got)} of 50 frames answered ({sent} sent):\n{launch.text()[-3000:]}"
    assert "best_effort -> reliable" in launch.text()


def test_ros2_param_set_is_validated_by_the_node(launched, workspace, user_env):
    def found(out: str) -> bool:
        return "Node not found" not in out

    out = ros2_until(workspace, user_env, "ros2 param set /slimyolo_detector conf_threshold 1.5", found)
    assert "Setting parameter failed" in out and "conf_threshold" in out and "1.5" in out, out
    out = ros2_until(workspace, user_env, "ros2 param set /slimyolo_detector conf_threshold 0.4", found)
    assert "Set parameter successful" in out, out
    out = ros2_until(workspace, user_env, "ros2 param get /slimyolo_detector conf_threshold", found)
    assert "Double value is: 0.4" in out, out


def test_ros2_topic_echo_shows_the_class_map(launched, workspace, user_env):
    names_file = REPO / "models" / "slimyolov3-synth.names"
    names = [n.strip() for n in names_file.read_text().splitlines() if n.strip()]
    out = ros2(workspace, user_env, "timeout 60 ros2 topic echo --once /label_info", timeout=90)
    for i, name in enumerate(names):
        assert f"class_id: {i}\n  class_name: {name}" in out, out


def test_ctrl_c_stops_everything_cleanly(launched):
    launch, _ = launched
    members = launch.group()
    assert any("detect_node" in " ".join(p.cmdline()) for p in members), [p.cmdline() for p in members]
    t0 = time.monotonic()
    os.killpg(launch.pgid, signal.SIGINT)  # what Ctrl-C in the terminal sends to the foreground group
    launch.proc.wait(timeout=30)
    took = time.monotonic() - t0
    wait_for(lambda: not launch.group(), 10, "every process of the launch to exit")
    text = launch.text()
    assert took < 15, f"ros2 launch took {took:.1f} s to stop"
    assert "Traceback" not in text, text[-3000:]
    assert "process has finished cleanly" in text and launch.proc.returncode == 0, text[-3000:]


def test_launch_arguments_namespace_sim_time_log_level_large_frames(workspace, user_env, tmp_path):
    """A params file of the user's, keyed by the node's plain name, still reaches the namespaced node;
    large_frames gives the node (only) the installed Fast DDS profile."""
    params = tmp_path / "params.yaml"
    text = (REPO / "config" / "detect.yaml").read_text()
    params.write_text(text.replace("stats_period: 5.0", "stats_period: 2.5"))
    assert "stats_period: 2.5" in params.read_text()
    launch = Launch(workspace, user_env, tmp_path / "launch.log",
                    f"namespace:=uav1 params_file:={params} use_sim_time:=true log_level:=debug "
                    "large_frames:=true device:=cpu")
    try:
        wait_for(lambda: "ready:" in launch.text() or launch.proc.poll() is not None, START_TIMEOUT,
                 "the node's ready line", poll=0.2)
        ready = next(ln for ln in launch.text().splitlines() if "ready:" in ln)
        assert "[uav1.slimyolo_detector]" in ready and "-> /uav1/detections" in ready, ready
        assert "[DEBUG]" in launch.text()
        node = next(p for p in launch.group() if "detect_node" in " ".join(p.cmdline()))
        profile = workspace / "install" / "slimyolo_ros" / "share" / "slimyolo_ros" / "config" / \
            "fastdds_large_frames.xml"
        assert node.environ().get("FASTDDS_DEFAULT_PROFILES_FILE") == str(profile)

        def found(out: str) -> bool:
            return "Node not found" not in out

        out = ros2_until(workspace, user_env, "ros2 param get /uav1/slimyolo_detector stats_period", found)
        assert "Double value is: 2.5" in out, out
        out = ros2_until(workspace, user_env, "ros2 param get /uav1/slimyolo_detector use_sim_time", found)
        assert "Boolean value is: True" in out, out
        os.killpg(launch.pgid, signal.SIGINT)
        launch.proc.wait(timeout=30)
        wait_for(lambda: not launch.group(), 10, "every process of the launch to exit")
        assert "Traceback" not in launch.text()
    finally:
        launch.kill()
        ros2(workspace, user_env, "ros2 daemon stop")


# ---- ros2 bag play compatibility of `slimyolo bag make` ------------------------------------------
# rosbag2 itself is not installable here; its reader needs a version-5+ metadata.yaml naming the
# storage plugin and files, per topic the ROS type, cdr serialisation, offered QoS (a list; empty:
# the player offers its default) and the RIHS01 type hash that rosidl generated for the type; an mcap
# file with the "ros2" profile, or the sqlite3 schema of rosbag2_storage_default_plugins.
def rosidl_type_hash(msgtype: str) -> str:
    """The hash rosidl generated for ``pkg/msg/Name`` (share/<pkg>/msg/<Name>.json of its install)."""
    import json
    import sys

    pkg, _, name = msgtype.split("/")
    # the ROS wheels and vision_msgs install a ROS prefix into the venv
    desc = json.loads((Path(sys.prefix) / "share" / pkg / "msg" / f"{name}.json").read_text())
    return next(h["hash_string"] for h in desc["type_hashes"] if h["type_name"] == msgtype)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_make_writes_a_standard_rosbag2(tmp_path, storage):
    import sqlite3

    import yaml
    from rosbags.rosbag2 import Reader

    from slimyolo_ros.bag.make import make_bag
    from slimyolo_ros.data.synth import generate

    generate(tmp_path / "det", 3, size=(96, 64), seed=1, progress=False)
    bag = tmp_path / "bag"
    make_bag(tmp_path / "det", bag, storage=storage, progress=False)
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] >= 5 and meta["storage_identifier"] == storage
    assert meta["relative_file_paths"] == [f"bag.{'mcap' if storage == 'mcap' else 'db3'}"]
    assert meta["message_count"] == sum(t["message_count"] for t in meta["topics_with_message_count"]) == 9
    topics = {}
    for t in meta["topics_with_message_count"]:
        tm = t["topic_metadata"]
        topics[tm["name"]] = tm["type"]
        assert tm["serialization_format"] == "cdr" and isinstance(tm["offered_qos_profiles"], list), tm
        assert tm["type_description_hash"] == rosidl_type_hash(tm["type"]), tm
    with Reader(bag) as reader:  # rosbags' Reader of the standard rosbag2 layout
        assert {c.topic: c.msgtype for c in reader.connections} == topics
        assert sum(1 for _ in reader.messages()) == 9
    data = bag / meta["relative_file_paths"][0]
    if storage == "mcap":
        head = data.read_bytes()[:64]
        assert head[:8] == b"\x89MCAP0\r\n" and head[8] == 0x01  # magic, then the Header record
        profile_len = int.from_bytes(head[17:21], "little")
        assert head[21:21 + profile_len] == b"ros2"
    else:
        db = sqlite3.connect(data)
        cols = {row[1] for row in db.execute("PRAGMA table_info(topics)")}
        assert {"name", "type", "serialization_format", "offered_qos_profiles"} <= cols
        assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 9
        db.close()


# ---- track:=true: detector + tracker, ids seen by a separate subscriber process -------------------
def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
    return iw * ih / union if union > 0 else 0.0


def _track_id_runs(answers: dict[int, dict], frames: list) -> tuple[int, int, int]:
    """Follow each ground-truth object through consecutive answered frames by its matched track (IoU >=
    0.5): (longest run of frames with one track id, consecutive pairs matched, pairs that kept the id)."""
    matched: list[dict[str, str]] = []  # per frame: ground-truth id -> track id
    for i, f in enumerate(frames):
        a = answers.get(i)
        m: dict[str, str] = {}
        if a is not None:
            for gid, g in zip(f.track_ids, f.sample.boxes.tolist(), strict=True):
                best = max(range(len(a["ids"])), key=lambda k: _iou(g, a["boxes"][k]), default=None)
                if best is not None and _iou(g, a["boxes"][best]) >= 0.5:
                    m[gid] = a["ids"][best]
        matched.append(m)
    pairs = kept = longest = 0
    run: dict[str, int] = {}
    for prev, cur in zip(matched, matched[1:], strict=False):
        nxt = {}
        for gid, tid in cur.items():
            if gid in prev:
                pairs += 1
                kept += prev[gid] == tid
            nxt[gid] = run.get(gid, 1) + 1 if prev.get(gid) == tid else 1
            longest = max(longest, nxt[gid])
        run = nxt
    return longest, pairs, kept


@pytest.mark.slow
def test_launch_image_topics_gives_one_node_several_cameras(workspace, user_env, tmp_path):
    """The list as a user types it on the command line reaches the node: one detections topic per camera."""
    launch = Launch(workspace, user_env, tmp_path / "launch.log",
                    "image_topics:='[/lc_front/image_raw, /lc_down/image_raw]' device:=cpu")
    try:
        wait_for(lambda: "ready:" in launch.text() or launch.proc.poll() is not None, START_TIMEOUT,
                 "the node's ready line", poll=0.2)
        ready = next((ln for ln in launch.text().splitlines() if "ready:" in ln), launch.text()[-3000:])
        assert ("ready: 2 cameras: /lc_front/image_raw -> /lc_front/detections, "
                "/lc_down/image_raw -> /lc_down/detections") in ready, ready
        os.killpg(launch.pgid, signal.SIGINT)
        launch.proc.wait(timeout=30)
        assert "Traceback" not in launch.text()
    finally:
        launch.kill()
        ros2(workspace, user_env, "ros2 daemon stop")


def test_launch_track_true_tracks_with_stable_ids(workspace, user_env, tmp_path):
    """``track:=true`` starts both nodes wired together; a camera plays a synthetic flight and a separate
    process subscribing to /tracks sees each object keep its track id from frame to frame."""
    import json
    import sys

    from ros_helpers.probe import NodeProcess

    from slimyolo_ros.bag.vid import read_vid
    from slimyolo_ros.data.flight import generate_flights

    generate_flights(tmp_path / "vid", 1, seed=4, progress=False, size=(640, 480), frames=20, car_length=60)
    frames = read_vid(tmp_path / "vid")
    # the detector at the tracking operating point (bag eval --track's): the model scores objects 0.1-0.3
    params = tmp_path / "params.yaml"
    params.write_text((REPO / "config" / "detect.yaml").read_text().replace(
        "conf_threshold: 0.25", "conf_threshold: 0.1"))
    assert "conf_threshold: 0.1 " in params.read_text()
    helper = str(REPO / "test" / "ros_helpers" / "flight.py")
    launch = Launch(workspace, user_env, tmp_path / "launch.log",
                    f"track:=true image_topic:=/cam/image_raw device:=cpu params_file:={params}")
    listener = camera = None
    try:
        wait_for(lambda: ("ready:" in launch.text() and "tracking with" in launch.text())
                 or launch.proc.poll() is not None, START_TIMEOUT, "both nodes' ready lines", poll=0.2)
        assert "tracking with bytetrack" in launch.text(), launch.text()[-3000:]
        assert "-> /tracks" in launch.text(), launch.text()[-3000:]
        out = tmp_path / "tracks.jsonl"
        listener = NodeProcess([sys.executable, helper, "listen", "/tracks", str(out)], user_env,
                               tmp_path / "listener.log")
        listener.wait_log("listening", 60)
        seq_dir = str(frames[0].image_path.parent)
        camera = NodeProcess([sys.executable, helper, "camera", seq_dir, "/cam/image_raw", "--rate", "4",
                              "--fps", "10", "--stamp-base", "100"], user_env, tmp_path / "camera.log")
        camera.wait_log("sent 20", 120)

        def answers() -> dict[int, dict]:
            lines = out.read_text().splitlines() if out.exists() else []
            got = [json.loads(ln) for ln in lines]
            return {round((a["stamp_ns"] - 100 * 10**9) / 1e8): a for a in got}

        wait_for(lambda: len(answers()) >= 20, 30, "tracks for all 20 frames", poll=0.5)
    finally:
        for p in (camera, listener):
            if p is not None:
                p.stop()
        launch_text = launch.text()
        launch.kill()
        ros2(workspace, user_env, "ros2 daemon stop")
    got = answers()
    assert sorted(got) == list(range(20)), sorted(got)  # one tracks message per frame, header copied
    for a in got.values():
        assert all(a["ids"]) and len(set(a["ids"])) == len(a["ids"]), a
    longest, pairs, kept = _track_id_runs(got, frames)
    assert longest >= 5, (longest, pairs, kept, launch_text[-2000:])
    assert pairs >= 10 and kept >= 0.9 * pairs, (longest, pairs, kept)


def test_track_launch_tracks_someone_elses_detections(workspace, user_env, tmp_path):
    """``track.launch.py`` alone on another detector's topic: one tracks message per input with its
    stamp, a steadily moving object keeps one id, and Ctrl-C ends the launch cleanly."""
    from test_track_node import TrackerRig, detection, id_near

    cmd = sourced(workspace, "exec ros2 launch slimyolo_ros track.launch.py "
                             "detections_topic:=/their/detections")
    rig = TrackerRig(user_env, tmp_path / "launch.log", cmd=cmd, input_topic="/their/detections")
    try:
        ids = [id_near(rig.send([detection(100 + 5 * k, 200)]), 100 + 5 * k, 200) for k in range(8)]
    finally:
        code = rig.close()
    assert ids[-1] and set(ids[2:]) == {ids[-1]}, ids  # confirmed after the first frames, then stable
    assert code == 0 and "Traceback" not in rig.text(), rig.text()[-2000:]
    left = [p.pid for p in psutil.process_iter() if _pgid(p.pid) == rig.proc.pid]
    assert not left, f"processes of the launch left behind: {left}"


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None
