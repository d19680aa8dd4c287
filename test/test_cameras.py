"""Several cameras, one detect_node: each in its own process as a user runs them (three camera
drivers, detect_node with ``image_topics``), over Fast DDS on loopback; the test process listens.
Plus the pure parts: the cameras' topics from the parameters and the newest-frame slots' order."""

from __future__ import annotations

import json
import threading
import time

import pytest
from ros_helpers.camera import CameraProcess, answered, default_dds_env
from ros_helpers.probe import NodeProcess, Probe, node_env, wait_for
from std_msgs.msg import String
from test_node import START_TIMEOUT, shipped_node_cmd
from vision_msgs.msg import Detection2DArray

from slimyolo_ros.ros.camera_input import CameraTopics, camera_topics
from slimyolo_ros.ros.diagnostics import judge_cameras
from slimyolo_ros.ros.frame_slot import FrameSlots
from slimyolo_ros.ros.health import OK, WARN, Health, HealthLimits

SINGLE = {"input_topic": "image_raw", "detections_topic": "detections", "debug_image_topic": "~/debug_image",
          "image_topics": [], "detections_topics": []}


def test_one_camera_keeps_the_single_topics():
    assert camera_topics(SINGLE) == [CameraTopics("image_raw", "detections", "~/debug_image")]


def test_each_camera_publishes_in_its_image_topics_namespace_unless_told():
    p = dict(SINGLE, image_topics=["/cam_front/image_raw", "cam_down/image_raw"])
    assert [(c.image, c.detections, c.debug_image) for c in camera_topics(p)] == [
        ("/cam_front/image_raw", "/cam_front/detections", "/cam_front/debug_image"),
        ("cam_down/image_raw", "cam_down/detections", "cam_down/debug_image")]
    p["detections_topics"] = ["/front/dets", "/down/dets"]
    assert [c.detections for c in camera_topics(p)] == ["/front/dets", "/down/dets"]


@pytest.mark.parametrize("change, needle", [
    ({"image_topics": ["/a/image_raw", "/b/image_raw"], "detections_topics": ["/x"]}, "1 topics for 2"),
    ({"image_topics": ["/a/image_raw", "/a/image_raw"]}, "listed twice"),
    ({"image_topics": ["/a/image_raw", "/a/image_rect"]}, "two cameras would publish on one topic"),
    ({"image_topics": ["/a/image_raw", ""]}, "'image_topics': a list of topic names"),
    ({"detections_topics": ["/x"]}, "'image_topics' is empty"),
])
def test_bad_camera_lists_name_the_parameter(change, needle):
    with pytest.raises(ValueError, match=needle):
        camera_topics(dict(SINGLE, **change))


def test_slots_keep_the_newest_frame_per_camera_and_serve_round_robin():
    slots = FrameSlots(3)
    assert slots.put(0, "a1", 0.0) is False
    assert slots.put(0, "a2", 0.1) is True  # replaced: counted as a drop by the node
    slots.put(2, "c1", 0.2)
    assert slots.take() == [(0, "a2", 0.1)]
    slots.put(0, "a3", 0.3)
    assert slots.take() == [(2, "c1", 0.2)]  # camera 0 waits its turn behind camera 2
    slots.put(1, "b1", 0.4)
    assert slots.take(batch=True) == [(0, "a3", 0.3), (1, "b1", 0.4)]
    got = []
    worker = threading.Thread(target=lambda: got.append(slots.take()))
    worker.start()
    time.sleep(0.05)
    slots.close()
    worker.join(5)
    assert got == [None]


def test_diagnostics_report_the_worst_camera_by_name_and_every_cameras_values():
    fine = Health(received=50, answered=50, window_s=5.0, latency_ms=[40.0] * 50, publishers=1)
    starved = Health(received=0, answered=0, window_s=5.0, silent_s=7.0, publishers=1,
                     topic="/cam_down/image_raw")
    level, message, pairs = judge_cameras([("/cam_front/image_raw", fine), ("/cam_down/image_raw", starved)],
                                          HealthLimits())
    assert level == WARN and message.startswith("/cam_down/image_raw: nothing received for 7 s"), message
    assert "/cam_front" not in message
    keys = dict(pairs)
    assert keys["/cam_front/image_raw fps in"] == "10.0" and keys["/cam_down/image_raw fps in"] == "0.0"
    level, message, _ = judge_cameras([("/a", fine), ("/b", fine)], HealthLimits())
    assert (level, message) == (OK, "frames arrive and are answered")


CAMERAS = {"/cam_front": (10_000, "front_optical", "320", "240"),
           "/cam_down": (20_000, "down_optical", "320", "240"),
           "/cam_rear": (30_000, "rear_optical", "256", "192")}  # another letterbox shape


def _camera(env, tmp, ns: str) -> CameraProcess:
    base, frame_id, w, h = CAMERAS[ns]
    return CameraProcess(env, f"{ns}/image_raw", tmp / f"{ns.strip('/')}.log", "--stamp-base", str(base),
                         "--frame-id", frame_id, "--width", w, "--height", h, "--rate", "5")


@pytest.mark.slow
@pytest.mark.parametrize("batch", ["false", "true"])
def test_three_cameras_answered_on_their_own_topics_and_one_stopping_stalls_none(ros_env, tmp_path, batch):
    env = default_dds_env(node_env(ros_env))
    topics = ",".join(f"{ns}/image_raw" for ns in CAMERAS)
    node = NodeProcess(shipped_node_cmd(f"image_topics:=[{topics}]", f"camera_batch:={batch}",
                                        "stats_period:=1.0", "__ns:=/multi"), env, tmp_path / "node.log")
    probe = Probe("cameras_probe")
    dets = {ns: probe.collect(Detection2DArray, f"{ns}/detections") for ns in CAMERAS}
    stats = probe.collect(String, "/multi/slimyolo_detector/stats")
    cams: dict[str, CameraProcess] = {}
    try:
        node.wait_log("ready:", START_TIMEOUT)
        cams = {ns: _camera(env, tmp_path, ns) for ns in CAMERAS}
        for ns, (base, _, _, _) in CAMERAS.items():
            wait_for(lambda ns=ns, base=base: len(answered(dets[ns], base, base + 10**4)) >= 5, 90,
                     f"5 answered frames of {ns}")
        cams.pop("/cam_down").stop()
        stopped_at = {ns: len(dets[ns]) for ns in CAMERAS}
        for ns in ("/cam_front", "/cam_rear"):
            wait_for(lambda ns=ns: len(dets[ns]) >= stopped_at[ns] + 10, 60,
                     f"{ns} answered after /cam_down stopped")
        wait_for(lambda: "cameras" in json.loads(stats[-1][1].data), 10, "per-camera ~/stats")
    finally:
        for cam in cams.values():
            cam.stop()
        code = node.stop()
        probe.close()
    text = node.text()
    assert code == 0 and "Traceback" not in text, text[-3000:]
    assert "ready: 3 cameras: /cam_front/image_raw -> /cam_front/detections" in text
    for ns, (base, frame_id, _, _) in CAMERAS.items():
        msgs = [m for _, m in list(dets[ns])]
        # only this camera's frames, with its header: stamps from its range, its frame_id
        assert msgs and all(base <= m.header.stamp.sec < base + 10**4 for m in msgs), ns
        assert {m.header.frame_id for m in msgs} == {frame_id}, ns
        assert all(d.header.frame_id == frame_id for m in msgs for d in m.detections), ns
    assert len(dets["/cam_down"]) <= stopped_at["/cam_down"] + 1  # at most the frame in the worker's hands
    per_camera = json.loads(stats[-1][1].data)["cameras"]
    assert set(per_camera) == {f"{ns}/image_raw" for ns in CAMERAS}
    assert all(per_camera[f"{ns}/image_raw"]["reliability"] == "reliable" for ns in CAMERAS), per_camera
