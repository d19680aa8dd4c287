"""``detect_node``: camera Image in, vision_msgs/Detection2DArray out.

A thin ROS shell over :func:`slimyolo_ros.detect.load_detector` (no ML here):

* parameters, with their ranges and descriptions, are declared in ros/parameters.py;
* the image subscription has depth 1 and its callback only parks the message in a one-slot
  mailbox (ros/frame_slot.py); a worker thread takes the newest message, converts it
  (ros/convert.py), calls the Detector and publishes exactly one Detection2DArray per processed
  frame (empty when nothing is found). A frame that arrives while another is waiting replaces it and
  counts as a drop, so the node never falls behind the camera;
* several cameras (``image_topics``): one model, one worker; each camera has its own slot,
  subscription, QoS, starvation watch, counters and detections topic (ros/camera_input.py); the
  worker takes every waiting frame as one batch (``camera_batch``, default) or serves them round-robin;
* drops lost before the callback (middleware overwrote the depth-1 queue) are counted from gaps in
  the publisher's sequence numbers;
* the image subscription's reliability follows the camera (``reliability: auto``, ros/qos.py), and a
  camera that is there but whose frames do not arrive gets one warning naming cause and fix
  (ros/starvation.py);
* LabelInfo (class id -> name) on ``label_info``, TRANSIENT_LOCAL, so late subscribers get it;
* an annotated debug image only while somebody subscribes to it;
* conf/nms thresholds and the class filter can be changed at runtime (validated);
* every ``stats_period`` seconds one info line (fps, latency p50/p95, drops) and the same numbers
  as JSON on ``~/stats`` (std_msgs/String) for tools and tests (counters: ros/node_stats.py).

Startup failures (missing/corrupt model, CUDA requested without a GPU, bad parameter) are one
error line and exit status 2, like the ``slimyolo`` CLI.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_msgs.msg import String
from vision_msgs.msg import LabelInfo

from slimyolo_ros.errors import SlimyoloError

# The node shares the onboard CPU with camera drivers and other nodes; OpenMP workers that spin while
# idle starve them and the node itself (measured in docs/benchmarks.md). Set before torch (imported with
# the Detector) initialises OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from slimyolo_ros.ros.camera_input import CameraInput, camera_topics
from slimyolo_ros.ros.compat import on_parameter_update
from slimyolo_ros.ros.convert import (
    ImageDecodeError,
    bgr_to_image,
    compressed_to_bgr,
    image_to_bgr,
)
from slimyolo_ros.ros.detections import label_info, to_cdr
from slimyolo_ros.ros.diagnostics import detector_diagnostics
from slimyolo_ros.ros.frame_slot import FrameSlots
from slimyolo_ros.ros.input_checks import frame_size, parameter_problem
from slimyolo_ros.ros.lifecycle import node_class, release_memory
from slimyolo_ros.ros.parameters import PARAMETERS, detector_options, resolve_path, search_dirs
from slimyolo_ros.ros.qos import RELIABILITY_CHOICES, profile
from slimyolo_ros.ros.spin import run_node
from slimyolo_ros.ros.throttle import ThrottledWarnings

NODE_NAME = "slimyolo_detector"
WARN_PERIOD_S = 5.0  # one warning per kind of bad frame per this many seconds
GRAPH_POLL_S = 1.0  # how often the image topic's publishers are looked at (QoS auto, starvation)


class StartupError(SlimyoloError):
    """The node cannot start: a parameter, the model file or the device is wrong."""


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class DetectorNode(Node):
    """``managed``: build only the parameters and /diagnostics; ``setup``/``start``/``stop``/``teardown``
    are then driven by the lifecycle transitions (ros/lifecycle.py). Unmanaged, the node sets up and
    starts at once."""

    def __init__(self, managed: bool = False, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        for name, (default, descriptor) in PARAMETERS.items():
            try:
                self.declare_parameter(name, default, descriptor)
            except Exception as exc:  # InvalidParameterValueException etc. from a params file
                raise StartupError(f"parameter {name!r}: {_one_line(exc)}") from None
        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        self._p = p
        self._check_static_parameters(p)
        self.detector: Any = None
        self.state = "unconfigured"
        self._inference_error: str | None = None
        self._starvation_text: str | None = None
        on_parameter_update(self, self._validate_update, self._apply_update)
        self._diagnostics = detector_diagnostics(self)
        if not managed:
            self.setup()
            self.start()

    def setup(self) -> None:
        """Load the model, create the publishers (lifecycle: configure). Parameters are read again:
        the runtime ones may have been set while the node was unconfigured."""
        self._p = p = {name: self.get_parameter(name).value for name in PARAMETERS}
        self.detector = self._load_detector(p)
        self.class_names: list[str] = list(self.detector.class_names)
        try:
            self.detector.class_filter = _class_names(p["classes"])
        except ValueError as exc:  # DetectorError names the unknown class
            raise StartupError(f"parameter 'classes': {_one_line(exc)}") from None

        from slimyolo_ros.detect.draw import draw_detections

        self._draw = draw_detections
        self._warnings = ThrottledWarnings(self.get_logger().warning, WARN_PERIOD_S)
        self._compressed = bool(p["compressed"])
        self._batch = bool(p["camera_batch"])
        self._cameras = [CameraInput(self, i, topics, p, self._on_image)
                         for i, topics in enumerate(camera_topics(p))]
        self._slots = FrameSlots(len(self._cameras))
        self._label_pub = self.create_publisher(LabelInfo, p["label_info_topic"],
                                                profile(depth=1, latched=True))
        self._publish_label_info()
        self._stats_pub = self.create_publisher(String, "~/stats", 10)
        self._stats_timer = (self.create_timer(float(p["stats_period"]), self._report_stats)
                             if p["stats_period"] > 0 else None)
        self.state = "inactive"

    def start(self) -> None:
        """Subscribe the camera and start the worker (lifecycle: activate)."""
        self._slots = FrameSlots(len(self._cameras))
        for cam in self._cameras:
            cam.update_subscription()
        # Steady time: the QoS decision and the starvation watch must run even while a sim-time
        # clock (use_sim_time) is paused or not published yet.
        self._graph_timer = self.create_timer(GRAPH_POLL_S, self._watch_publishers,
                                              clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._worker = threading.Thread(target=self._work, name="slimyolo-inference", daemon=True)
        self._worker.start()
        self.state = "active"
        self.get_logger().info(f"ready: {self._ready_text()}; model {self._model_desc}")

    def _ready_text(self) -> str:
        kind = f"{'CompressedImage' if self._compressed else 'Image'}, reliability {self._p['reliability']}"
        if len(self._cameras) == 1:
            cam = self._cameras[0]
            return f"{cam.sub.topic_name} ({kind}) -> {cam.det_pub.topic_name}"
        pairs = ", ".join(f"{c.sub.topic_name} -> {c.det_pub.topic_name}" for c in self._cameras)
        how = "waiting frames in one batch" if self._batch else "one frame at a time, round-robin"
        return f"{len(self._cameras)} cameras: {pairs} ({kind}; {how})"

    def stop(self) -> None:
        """Release the camera subscription and stop the worker (lifecycle: deactivate); a frame in
        the worker's hands is finished first, so nothing is published after this returns."""
        self._slots.close()
        self._worker.join(timeout=5.0)
        self.destroy_timer(self._graph_timer)
        for cam in self._cameras:
            cam.unsubscribe()
        self.state = "inactive"

    def teardown(self) -> None:
        """Destroy the publishers and free the model (lifecycle: cleanup). Also after a setup that
        failed halfway, so everything is looked up with getattr."""
        if getattr(self, "_stats_timer", None) is not None:
            self.destroy_timer(self._stats_timer)
        for cam in getattr(self, "_cameras", []):
            cam.destroy_publishers()
        for name in ("_label_pub", "_stats_pub"):
            if getattr(self, name, None) is not None:
                self.destroy_publisher(getattr(self, name))
            setattr(self, name, None)
        cuda = self.detector is not None and self.detector.device.type == "cuda"
        self.detector = None
        release_memory(cuda)
        self.state = "unconfigured"

    # ---- startup -------------------------------------------------------------------------
    def _check_static_parameters(self, p: dict[str, Any]) -> None:
        for name, value in p.items():
            if problem := parameter_problem(name, value, PARAMETERS):
                raise StartupError(problem)
        if p["reliability"] not in RELIABILITY_CHOICES:
            raise StartupError(
                f"parameter 'reliability': {p['reliability']!r} is not {', '.join(RELIABILITY_CHOICES)}"
            )
        try:
            camera_topics(p)
        except ValueError as exc:  # it names the parameter
            raise StartupError(_one_line(exc)) from None

    def _load_detector(self, p: dict[str, Any]) -> Any:
        weights = resolve_path(p["weights"])
        if weights.is_dir():
            raise StartupError(f"parameter 'weights' = {p['weights']!r}: {weights} is a directory, "
                               f"expected a model file")
        if not weights.is_file():
            raise StartupError(f"model file not found: {weights} (parameter 'weights' = {p['weights']!r}"
                               f"{_looked_in(p['weights'])})")
        cfg = resolve_path(p["cfg"]) if p["cfg"] else None
        names = resolve_path(p["names"]) if p["names"] else None
        for label, path in (("cfg", cfg), ("names", names)):
            if path is not None and not path.is_file():
                raise StartupError(f"{label} file not found: {path} (parameter {label!r}"
                                   f"{_looked_in(p[label])})")
        t0 = time.monotonic()
        # load_detector checks every option and names the bad one; what it logs (device auto
        # without a GPU) goes to this node's log.
        library_log, to_ros = logging.getLogger("slimyolo_ros"), _RosLogHandler(self.get_logger())
        library_log.addHandler(to_ros)
        try:
            # torch is imported here, after the file checks, so a typo fails fast.
            from slimyolo_ros.detect import load_detector

            det = load_detector(str(weights), detector_options(p, cfg, names))
        except SlimyoloError as exc:  # its messages name the file, the option or the device
            raise StartupError(_one_line(exc)) from None
        except Exception as exc:  # torch/pickle/OpenCV errors on a corrupt file
            raise StartupError(
                f"cannot load model {weights}: {type(exc).__name__}: {_one_line(exc)}"
            ) from None
        finally:
            library_log.removeHandler(to_ros)
        load_ms = (time.monotonic() - t0) * 1e3
        # First forward pays for allocations; the Detector already warmed up CUDA itself.
        t0 = time.monotonic()
        if det.device.type != "cuda":
            det(np.zeros((480, 640, 3), np.uint8))
        warm_ms = (time.monotonic() - t0) * 1e3
        self._model_desc = (f"{weights} ({len(det.class_names)} classes, device {det.device}"
                            f"{' fp16' if det.half else ''}, provider {det.provider}, input {det.img_size}"
                            f"{', tiled' if det.tile else ''}, "
                            f"loaded in {load_ms:.0f} ms, warm-up {warm_ms:.0f} ms)")
        return det

    # ---- runtime parameters --------------------------------------------------------------
    def _validate_update(self, params: list[Parameter]) -> SetParametersResult:
        for param in params:
            if problem := parameter_problem(param.name, param.value, PARAMETERS):
                return SetParametersResult(successful=False, reason=problem)
            if param.name == "classes":
                try:
                    string_like = (Parameter.Type.STRING_ARRAY, Parameter.Type.NOT_SET)
                    if param.type_ not in string_like and param.value:
                        raise ValueError(f"classes must be a string array, got {param.type_.name}")
                    names = _class_names(param.value)
                    if self.detector is not None:  # unconfigured: the model checks them at configure
                        self.detector.check_classes(names)
                except ValueError as exc:
                    return SetParametersResult(successful=False, reason=_one_line(exc))
            elif param.name in ("conf_threshold", "nms_threshold"):
                # The descriptor's range rejects most bad values, but not NaN: the Detector's check.
                from slimyolo_ros.detect.options import unit_interval

                try:
                    unit_interval(param.name, param.value)
                except ValueError as exc:
                    return SetParametersResult(successful=False, reason=_one_line(exc))
        return SetParametersResult(successful=True)

    def _apply_update(self, params: list[Parameter]) -> None:
        if self.detector is None:  # unconfigured: setup() reads the new values
            return
        for param in params:
            if param.name == "conf_threshold":
                self.detector.conf_threshold = float(param.value)
                self._publish_label_info()
            elif param.name == "nms_threshold":
                self.detector.nms_threshold = float(param.value)
            elif param.name == "classes":
                self.detector.class_filter = _class_names(param.value)
            elif param.name == "camera_batch":
                self._batch = bool(param.value)
            else:
                continue
            self.get_logger().info(f"parameter {param.name} = {param.value}")

    def _publish_label_info(self) -> None:
        msg = label_info(self.class_names, self.detector.conf_threshold)
        msg.header.stamp = self.get_clock().now().to_msg()
        self._label_pub.publish(msg)

    # ---- image subscriptions: QoS and starvation (per camera: ros/camera_input.py) -----------
    def _watch_publishers(self) -> None:
        for cam in self._cameras:
            text = cam.watch()
            if text is not None:
                self.get_logger().warning(text)

    # ---- data path -----------------------------------------------------------------------
    def _on_image(self, cam: CameraInput, msg: Any, info: Any) -> None:
        cam.stats.on_receive(info)
        if self._slots.put(cam.index, msg, time.monotonic()):
            with cam.stats.lock:
                cam.stats.dropped_replaced += 1

    def _work(self) -> None:
        while rclpy.ok():
            items = self._slots.take(self._batch)
            if items is None:
                return
            t_take = time.monotonic()
            try:
                self._process(items, t_take)
                self._inference_error = None
            except Exception as exc:  # one broken frame must never stop the worker
                self._inference_error = f"{type(exc).__name__}: {_one_line(exc)}"
                for i, _, _ in items:
                    self._bad_frame("internal", f"frame failed: {type(exc).__name__}: {_one_line(exc)}",
                                    self._cameras[i])
            busy = time.monotonic() - t_take
            for cam in self._cameras:  # the worker serves all cameras: busy for one is busy for each
                cam.add_busy(busy)

    def _decode(self, cam: CameraInput, msg: Any) -> np.ndarray | None:
        if self._too_large(cam, msg):
            return None
        try:
            return compressed_to_bgr(msg) if self._compressed else image_to_bgr(msg)
        except ImageDecodeError as exc:
            where = (f"stamp {msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d}, "
                     f"frame_id {msg.header.frame_id!r}")
            on = f" on {cam.image_topic}" if len(self._cameras) > 1 else ""
            self._bad_frame(exc.kind, f"dropped frame{on} ({where}): {exc}", cam)
            return None

    def _process(self, items: list[tuple[int, Any, float]], t_take: float) -> None:
        """The frames taken from the slots (one, or one per waiting camera): decode, detect (several as
        one batch), publish each on its camera's topic with its own header."""
        frames = []
        for i, msg, t_recv in items:
            img = self._decode(self._cameras[i], msg)
            if img is not None:
                frames.append((self._cameras[i], msg, t_recv, img))
        if not frames:
            return
        t0 = time.monotonic()
        if len(frames) == 1:
            all_dets = [self.detector(frames[0][3])]
        else:
            all_dets = self.detector.detect_batch([f[3] for f in frames])
        t1 = time.monotonic()
        timings = self.detector.last_timings
        for (cam, msg, t_recv, img), dets in zip(frames, all_dets, strict=True):
            t2 = time.monotonic()
            # CDR bytes, not a message object: the generic conversion is on the critical path
            # (ros/detections.py)
            out = to_cdr(dets, msg.header, self.class_names)
            t3 = time.monotonic()
            cam.det_pub.publish(out)
            t_done = time.monotonic()
            stage_ms = {"wait": (t_take - t_recv) * 1e3, "convert": (t0 - t_take) * 1e3,
                        "letterbox": timings.get("preprocess", 0.0), "forward": timings.get("forward", 0.0),
                        "postprocess": timings.get("postprocess", 0.0), "message": (t3 - t2) * 1e3,
                        "publish": (t_done - t3) * 1e3}
            cam.record(t_recv, t_done, (t1 - t0) * 1e3, stage_ms)
            if cam.debug_pub is not None and cam.debug_pub.get_subscription_count() > 0:
                cam.debug_pub.publish(bgr_to_image(self._draw(img, dets, self.class_names),
                                                   header=msg.header))

    def _too_large(self, cam: CameraInput, msg: Any) -> bool:
        """Drop a frame over max_frame_pixels before decoding it (a 20000x20000 JPEG is 1.2 GB decoded)."""
        size = frame_size(msg, self._compressed)
        limit = int(self._p["max_frame_pixels"])
        if size is None or size[0] * size[1] <= limit:
            return False
        cam.oversized += 1
        w, h = size
        on = f" on {cam.image_topic}" if len(self._cameras) > 1 else ""
        self._bad_frame("too_large", f"dropped frame{on} {w}x{h} ({w * h} pixels): larger than "
                                     f"max_frame_pixels {limit} ({cam.oversized} dropped so far)", cam)
        return True

    def _bad_frame(self, kind: str, text: str, cam: CameraInput) -> None:
        with cam.stats.lock:
            cam.stats.bad += 1
        self._warnings.warn(kind, text)

    def _report_stats(self) -> None:
        stamp = self.get_clock().now().nanoseconds / 1e9
        snaps = [cam.snapshot() for cam in self._cameras]
        if len(snaps) == 1:  # one camera: its values at the top level
            out = dict(snaps[0], provider=self.detector.provider, stamp=stamp)
        else:
            totals = {k: sum(s[k] for s in snaps) for k in ("received", "processed", "dropped", "bad_frames")}
            out = dict(totals, fps=round(sum(s["fps"] for s in snaps), 2), camera_batch=self._batch,
                       provider=self.detector.provider, stamp=stamp,
                       cameras={c.image_topic: s for c, s in zip(self._cameras, snaps, strict=True)})
        self._stats_pub.publish(String(data=json.dumps(out)))
        for cam, s in zip(self._cameras, snaps, strict=True):
            self._log_stats(cam, s)

    def _log_stats(self, cam: CameraInput, s: dict[str, Any]) -> None:
        seen = (s["received"], s["bad_frames"], s["dropped"])
        if seen == cam.last_logged:  # an idle camera keeps quiet in the log
            return
        cam.last_logged = seen
        self.get_logger().info(
            f"{cam.image_topic + ': ' if len(self._cameras) > 1 else ''}"
            f"fps {s['fps']:.1f} | latency p50 {s['latency_ms_p50']:.0f} ms p95 {s['latency_ms_p95']:.0f} ms "
            f"(inference p50 {s['inference_ms_p50']:.0f} ms) | processed {s['processed']} "
            f"dropped {s['dropped']} (replaced {s['dropped_replaced']}, "
            f"middleware {s['dropped_middleware']}) "
            f"bad {s['bad_frames']}"
        )

    def close(self) -> None:
        if self.state == "active":
            self._slots.close()
            self._worker.join(timeout=5.0)


def _looked_in(value: str) -> str:
    if Path(value).expanduser().is_absolute():
        return ""
    return "; looked in " + ", ".join(str(d) for d in [Path.cwd(), *search_dirs()])


def _class_names(value: Any) -> list[str]:
    """The ``classes`` parameter as a list of names (the Detector checks them; empty: all classes)."""
    if value is None:
        return []
    if isinstance(value, (bytes, bytearray)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"classes must be a list of class names, got {list(value)!r}")
    return list(value)


class _RosLogHandler(logging.Handler):
    """Python log records of the library, as lines of the node's ROS log."""

    def __init__(self, ros_logger: Any) -> None:
        super().__init__()
        self._ros = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        text = " ".join(record.getMessage().split())
        (self._ros.warning if record.levelno >= logging.WARNING else self._ros.info)(text)



def main(argv: list[str] | None = None) -> int:
    return run_node(node_class(DetectorNode, argv), NODE_NAME, argv)


if __name__ == "__main__":
    sys.exit(main())
