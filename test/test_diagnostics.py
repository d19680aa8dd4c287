"""/diagnostics: the status logic (ros/health.py) on its own, then detect_node over real DDS watched by
a monitor in its own process: OK while frames are answered, WARN when the camera stops (the starvation
watch's cause in the message), OK again when frames return."""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import coco_tiny
from ros_helpers.probe import NodeProcess, Probe, node_env, wait_for

from slimyolo_ros.ros.health import (
    ERROR,
    OK,
    WARN,
    CounterWindow,
    Health,
    HealthLimits,
    judge,
    values,
)

REPO = Path(__file__).resolve().parents[1]
HELPERS = Path(__file__).resolve().parent / "ros_helpers"
LIMITS = HealthLimits(max_drop_share=0.5, latency_budget_ms=200.0, stale_s=5.0)


def healthy(**kw) -> Health:
    base = dict(received=50, answered=50, dropped=0, window_s=5.0, latency_ms=[40.0] * 50, silent_s=0.1,
                publishers=1, topic="/cam/image_raw")
    return Health(**{**base, **kw})


def test_frames_answered_is_ok():
    assert judge(healthy(), LIMITS) == (OK, "frames arrive and are answered")


def test_starvation_warns_with_the_watchs_cause():
    cause = "image subscription starved: /cam/image_raw: 1 publisher(s) on the topic but no frame ..."
    level, message = judge(healthy(received=0, answered=0, starvation=cause), LIMITS)
    assert (level, message) == (WARN, cause)


def test_silence_without_a_publisher_warns_after_stale_s():
    assert judge(healthy(received=0, answered=0, silent_s=4.9, publishers=0), LIMITS)[0] == OK
    level, message = judge(healthy(received=0, answered=0, silent_s=6.0, publishers=0), LIMITS)
    assert level == WARN and "nothing received for 6 s on /cam/image_raw (no publisher)" in message
    off = HealthLimits(stale_s=0.0)
    assert judge(healthy(received=0, answered=0, silent_s=600.0, publishers=0), off)[0] == OK


def test_drop_share_over_the_limit_warns():
    # 20 received, 10 of them replaced in the slot, 10 more lost on the way: 20 of 30 sent dropped
    level, message = judge(healthy(received=20, answered=10, dropped=20, lost=10), LIMITS)
    assert level == WARN and "dropped 67%" in message and "limit 50%" in message
    assert judge(healthy(received=20, answered=12, dropped=8), LIMITS)[0] == OK  # 40%
    # too few frames to judge a share
    assert judge(healthy(received=3, answered=1, dropped=2, lost=4), LIMITS)[0] == OK


def test_latency_over_budget_warns_on_p95():
    lat = [50.0] * 90 + [400.0] * 10  # p50 fine, p95 over the 200 ms budget
    level, message = judge(healthy(latency_ms=lat), LIMITS)
    assert level == WARN and "latency p95" in message and "budget of 200 ms" in message
    assert judge(healthy(latency_ms=lat), HealthLimits(latency_budget_ms=0.0))[0] == OK


def test_load_failure_and_inference_errors_are_errors():
    level, message = judge(Health(state="unconfigured", load_error="model file not found: /x.pt"), LIMITS)
    assert level == ERROR and "model file not found: /x.pt" in message
    level, message = judge(healthy(inference_error="RuntimeError: shape mismatch"), LIMITS)
    assert level == ERROR and "RuntimeError: shape mismatch" in message
    # a deliberately inactive managed node is not a problem
    assert judge(Health(state="inactive"), LIMITS)[0] == OK


def test_values_name_rates_latency_and_drops():
    v = dict(values(healthy(received=50, answered=40, dropped=10, latency_ms=[10.0, 20.0, 30.0])))
    assert v["fps in"] == "10.0" and v["fps out"] == "8.0" and v["drops"] == "10"
    assert v["latency p50 (ms)"] == "20.0" and float(v["latency p95 (ms)"]) == pytest.approx(29.0)
    assert dict(values(Health()))["latency p50 (ms)"] == "n/a"


def test_counter_window_slides_and_times_the_silence():
    w = CounterWindow(span_s=5.0)
    growth, span, silent = w.update(0.0, 0, 0)
    assert growth == (0, 0) and span == 0.0 and silent == 0.0
    for t in range(1, 11):  # 10 frames a second, 9 answered
        growth, span, silent = w.update(float(t), 10 * t, 9 * t)
    assert span == pytest.approx(5.0) and growth == (50, 45) and silent == 0.0
    for t in range(11, 14):  # frames stop
        growth, span, silent = w.update(float(t), 100, 90)
    assert silent == pytest.approx(3.0) and growth == (20, 18)
    growth, span, silent = w.update(14.0, 0, 0)  # counters reset: a fresh window
    assert growth == (0, 0) and span == 0.0


# ---- over real DDS ---------------------------------------------------------------------------------

class Monitor:
    """test/ros_helpers/diagnostics_listener.py in its own process; ``statuses(name)`` parses its lines."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.proc = NodeProcess([sys.executable, str(HELPERS / "diagnostics_listener.py")], env, log)
        self.proc.wait_log("listening", 60)

    def statuses(self, name: str) -> list[dict]:
        out = []
        for line in self.proc.text().splitlines():
            if line.startswith("{"):
                s = json.loads(line)
                if s["name"] == name:
                    out.append(s)
        return out

    def wait(self, name: str, pred, timeout: float, what: str, after: float = 0.0) -> dict:
        def found():
            return next((s for s in self.statuses(name) if s["t"] > after and pred(s)), None)
        try:
            return wait_for(found, timeout, what, poll=0.2)
        except AssertionError:
            tail = [(s["level"], s["message"][:120]) for s in self.statuses(name)[-8:]]
            raise AssertionError(f"{what} not seen within {timeout} s; last statuses {tail}") from None


class Camera:
    """Frames on /image_raw from this process at ``rate``; ``pause()`` stops sending but keeps the
    publisher (a camera that hangs), ``resume()`` sends again."""

    def __init__(self, probe: Probe, rate: float = 5.0) -> None:
        from sensor_msgs.msg import Image

        from slimyolo_ros.ros.convert import bgr_to_image

        self.pub = probe.node.create_publisher(Image, "/image_raw", 5)
        self.msg = bgr_to_image(np.full((360, 640, 3), 96, np.uint8), "bgr8")
        self.period, self.sending, self.done = 1.0 / rate, threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for i in itertools.count(1):
            if self.done.is_set():
                return
            if self.sending.is_set():
                self.msg.header.stamp.sec = i
                self.pub.publish(self.msg)
            time.sleep(self.period)

    def resume(self) -> None:
        self.sending.set()

    def pause(self) -> None:
        self.sending.clear()

    def close(self) -> None:
        self.done.set()
        self.thread.join(2)


@pytest.mark.ros
@pytest.mark.slow
def test_diagnostics_ok_then_warn_when_the_camera_stops_then_ok(ros_env, tmp_path):
    model = coco_tiny()
    env = node_env(ros_env)
    node = NodeProcess([str(Path(sys.executable).parent / "detect_node"), "--ros-args", "--params-file",
                        str(REPO / "config" / "detect.yaml"), "-p", f"weights:={model['weights']}",
                        "-p", f"cfg:={model['cfg']}", "-p", f"names:={model['names']}", "-p", "device:=cpu",
                        "-p", "starvation_timeout:=2.0", "-p", "reliability:=reliable",
                        # this test is about starvation; a loaded machine must not make it about speed
                        "-p", "diagnostics_max_drop_share:=1.0", "-p", "diagnostics_latency_budget_ms:=0.0"],
                       env, tmp_path / "node.log")
    monitor = Monitor(env, tmp_path / "monitor.log")
    probe = Probe()
    camera = Camera(probe)
    name = "slimyolo_detector: detector"
    try:
        node.wait_log("ready:", 90)
        wait_for(lambda: camera.pub.get_subscription_count() > 0, 30, "the node to subscribe")
        camera.resume()
        ok = monitor.wait(name, lambda s: s["level"] == OK and float(s["values"].get("fps out", 0)) > 0, 60,
                          "OK with frames answered")
        assert ok["message"] == "frames arrive and are answered"
        assert ok["values"]["device"] == "cpu" and ok["values"]["image topic"] == "/image_raw"
        assert ok["values"]["image QoS"].startswith("reliable")

        camera.pause()
        t_pause = time.monotonic()
        # The status may first say "nothing received for 2 s" (its own silence check) before the starvation
        # watch, which looks at the graph once a second, names the cause; the cause is what is asked for.
        warn = monitor.wait(name, lambda s: s["level"] == WARN and "starved" in s["message"], 30,
                            "WARN with the starvation watch's cause after the camera stopped", after=t_pause)
        assert "image subscription starved" in warn["message"], warn
        assert "1 publisher(s) on the topic but no frame received for 2 s" in warn["message"], warn

        camera.resume()
        t_resume = time.monotonic()
        back = monitor.wait(name, lambda s: s["level"] == OK and float(s["values"].get("fps out", 0)) > 0, 60,
                            "OK again after frames returned", after=t_resume)
        assert back["message"] == "frames arrive and are answered"
    finally:
        camera.close()
        probe.close()
        code = node.stop()
        monitor.proc.stop()
    assert code == 0, node.text()[-2000:]
