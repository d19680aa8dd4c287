"""``detect_node``: camera Image in, vision_msgs/Detection2DArray out.

A thin ROS shell over :func:`slimyolo_ros.detect.load_detector` (no ML here):

* parameters, with their ranges and descriptions, are declared in ros/parameters.py;
* the image subscription has depth 1 and its callback only parks the message in a one-slot
  mailbox (ros/frame_slot.py); a worker thread takes the newest message, converts it
  (ros/convert.py), calls the Detector and publishes exactly one Detection2DArray per processed
  frame (empty when nothing is found). A frame that arrives while another is waiting replaces it and
  counts as a drop, so the node never falls behind the camera;
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
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String
from vision_msgs.msg import Detection2DArray, LabelInfo

from slimyolo_ros.errors import SlimyoloError

# The node shares the onboard CPU with camera drivers and other nodes; OpenMP workers that spin while
# idle starve them and the node itself (measured in docs/benchmarks.md). Set before torch (imported with
# the Detector) initialises OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from slimyolo_ros.ros.compat import on_parameter_update
from slimyolo_ros.ros.convert import (
    ImageDecodeError,
    bgr_to_image,
    compressed_to_bgr,
    image_to_bgr,
)
from slimyolo_ros.ros.detections import label_info, to_cdr
from slimyolo_ros.ros.diagnostics import detector_diagnostics
from slimyolo_ros.ros.frame_slot import FrameSlot
from slimyolo_ros.ros.input_checks import IMAGE_TYPES, frame_size, parameter_problem, wrong_type_publishers
from slimyolo_ros.ros.lifecycle import node_class, release_memory
from slimyolo_ros.ros.node_stats import Stats
from slimyolo_ros.ros.parameters import PARAMETERS, detector_options, resolve_path, search_dirs
from slimyolo_ros.ros.qos import (
    AUTO,
    RELIABILITY_CHOICES,
    choose_reliability,
    describe_change,
    profile,
    reliability_name,
)
from slimyolo_ros.ros.spin import run_node
from slimyolo_ros.ros.starvation import SILENT, StarvationWatch, starvation_message
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
        self.stats = Stats()
        self._warnings = ThrottledWarnings(self.get_logger().warning, WARN_PERIOD_S)
        self._slot = FrameSlot()
        self._compressed = bool(p["compressed"])

        self._image_topic = self.resolve_topic_name(p["input_topic"] + ("/compressed" if self._compressed
                                                                          else ""))
        self._sub: Any = None
        self._wrong_types: set[str] = set()
        self._oversized = 0
        self._reliability: str | None = None
        self._offered: list[str] = []
        self._starvation = StarvationWatch(float(p["starvation_timeout"]))
        self._starvation_warnings = 0
        self._det_pub = self.create_publisher(Detection2DArray, p["detections_topic"], 10)
        self._label_pub = self.create_publisher(LabelInfo, p["label_info_topic"],
                                                profile(depth=1, latched=True))
        self._publish_label_info()
        self._debug_pub = (self.create_publisher(Image, p["debug_image_topic"], 1)
                           if p["publish_debug_image"] else None)
        self._stats_pub = self.create_publisher(String, "~/stats", 10)
        self._last_logged: tuple[int, int, int] = (0, 0, 0)
        self._stats_timer = (self.create_timer(float(p["stats_period"]), self._report_stats)
                             if p["stats_period"] > 0 else None)
        self.state = "inactive"

    def start(self) -> None:
        """Subscribe the camera and start the worker (lifecycle: activate)."""
        p = self._p
        self._slot = FrameSlot()
        self._update_subscription()
        # Steady time: the QoS decision and the starvation watch must run even while a sim-time
        # clock (use_sim_time) is paused or not published yet.
        self._graph_timer = self.create_timer(GRAPH_POLL_S, self._watch_publishers,
                                              clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._worker = threading.Thread(target=self._work, name="slimyolo-inference", daemon=True)
        self._worker.start()
        self.state = "active"
        self.get_logger().info(
            f"ready: {self._sub.topic_name} ({'CompressedImage' if self._compressed else 'Image'}, "
            f"reliability {p['reliability']}) -> {self._det_pub.topic_name}; model {self._model_desc}"
        )

    def stop(self) -> None:
        """Release the camera subscription and stop the worker (lifecycle: deactivate); a frame in
        the worker's hands is finished first, so nothing is published after this returns."""
        self._slot.close()
        self._worker.join(timeout=5.0)
        self.destroy_timer(self._graph_timer)
        if self._sub is not None:
            self.destroy_subscription(self._sub)
        self._sub, self._reliability = None, None
        self.stats.forget_publishers()
        self.state = "inactive"

    def teardown(self) -> None:
        """Destroy the publishers and free the model (lifecycle: cleanup). Also after a setup that
        failed halfway, so everything is looked up with getattr."""
        if getattr(self, "_stats_timer", None) is not None:
            self.destroy_timer(self._stats_timer)
        for name in ("_det_pub", "_label_pub", "_debug_pub", "_stats_pub"):
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
            else:
                continue
            self.get_logger().info(f"parameter {param.name} = {param.value}")

    def _publish_label_info(self) -> None:
        msg = label_info(self.class_names, self.detector.conf_threshold)
        msg.header.stamp = self.get_clock().now().to_msg()
        self._label_pub.publish(msg)

    # ---- image subscription: QoS and starvation ------------------------------------------
    def _publisher_offers(self) -> list[str]:
        infos = self.get_publishers_info_by_topic(self._image_topic)
        for found in wrong_type_publishers(infos, self._compressed):
            if found not in self._wrong_types:  # once per type: it will not change its mind
                self._wrong_types.add(found)
                self.get_logger().warning(
                    f"{self._image_topic} is published as {found}, not {IMAGE_TYPES[self._compressed]}: "
                    f"this node cannot read it (check the remapping of the image topic)")
        return [reliability_name(i.qos_profile.reliability) for i in infos
                if str(i.topic_type) == IMAGE_TYPES[self._compressed]]

    def _update_subscription(self) -> None:
        """(Re)create the image subscription when the reliability to use changed (auto mode)."""
        self._offered = self._publisher_offers()
        want = choose_reliability(self._p["reliability"], self._offered, self._reliability)
        if want == self._reliability:
            return
        if self._sub is not None:
            self.destroy_subscription(self._sub)
            self.stats.forget_publishers()  # frames missed while switching are no transport loss
        self._sub = self.create_subscription(CompressedImage if self._compressed else Image,
                                             self._image_topic, self._on_image, profile(want, depth=1))
        if self._p["reliability"] == AUTO:
            self.get_logger().info(describe_change(self._image_topic, self._reliability, want, self._offered))
        self._reliability = want

    def _watch_publishers(self) -> None:
        self._update_subscription()
        with self.stats.lock:
            received, lost = self.stats.received, self.stats.dropped_middleware
            busy_s = self.stats.busy_s
        kind = self._starvation.update(time.monotonic(), len(self._offered), received, lost, busy_s)
        if kind is None:
            return
        self._starvation_warnings += 1
        window = self._starvation.last_window
        self._starvation_text = starvation_message(
            kind, self._image_topic, self._reliability or "", self._offered,
            self._starvation.timeout_s if kind == SILENT else self._starvation.last_window_s,
            received=window[0], sent=window[0] + window[1])
        self.get_logger().warning(self._starvation_text)

    # ---- data path -----------------------------------------------------------------------
    def _on_image(self, msg: Any, info: Any) -> None:
        self.stats.on_receive(info)
        if self._slot.put(msg, time.monotonic()):
            with self.stats.lock:
                self.stats.dropped_replaced += 1

    def _work(self) -> None:
        while rclpy.ok():
            item = self._slot.take()
            if item is None:
                return
            try:
                self._process(*item)
                self._inference_error = None
            except Exception as exc:  # one broken frame must never stop the worker
                self._inference_error = f"{type(exc).__name__}: {_one_line(exc)}"
                self._bad_frame("internal", f"frame failed: {type(exc).__name__}: {_one_line(exc)}")

    def _process(self, msg: Any, t_recv: float) -> None:
        t_take = time.monotonic()
        if self._too_large(msg):
            return
        try:
            img = compressed_to_bgr(msg) if self._compressed else image_to_bgr(msg)
        except ImageDecodeError as exc:
            where = (f"stamp {msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d}, "
                     f"frame_id {msg.header.frame_id!r}")
            self._bad_frame(exc.kind, f"dropped frame ({where}): {exc}")
            return
        t0 = time.monotonic()
        dets = self.detector(img)
        t1 = time.monotonic()
        # CDR bytes, not a message object: the generic conversion is on the critical path (ros/detections.py)
        out = to_cdr(dets, msg.header, self.class_names)
        t2 = time.monotonic()
        self._det_pub.publish(out)
        t_done = time.monotonic()
        timings = self.detector.last_timings
        stage_ms = {"wait": (t_take - t_recv) * 1e3, "convert": (t0 - t_take) * 1e3,
                    "letterbox": timings.get("preprocess", 0.0), "forward": timings.get("forward", 0.0),
                    "postprocess": timings.get("postprocess", 0.0), "message": (t2 - t1) * 1e3,
                    "publish": (t_done - t2) * 1e3}
        with self.stats.lock:
            self.stats.processed += 1
            self.stats.window_processed += 1
            self.stats.busy_s += t_done - t_take
            self.stats.latency_ms.append((t_done - t_recv) * 1e3)
            self.stats.recent_latency.append((t_done, (t_done - t_recv) * 1e3))
            self.stats.inference_ms.append((t1 - t0) * 1e3)
            for k, v in stage_ms.items():
                self.stats.stage_ms[k].append(v)
        if self._debug_pub is not None and self._debug_pub.get_subscription_count() > 0:
            self._debug_pub.publish(bgr_to_image(self._draw(img, dets, self.class_names),
                                                 header=msg.header))

    def _too_large(self, msg: Any) -> bool:
        """Drop a frame over max_frame_pixels before decoding it (a 20000x20000 JPEG is 1.2 GB decoded)."""
        size = frame_size(msg, self._compressed)
        limit = int(self._p["max_frame_pixels"])
        if size is None or size[0] * size[1] <= limit:
            return False
        self._oversized += 1
        w, h = size
        self._bad_frame("too_large", f"dropped frame {w}x{h} ({w * h} pixels): larger than max_frame_pixels "
                                     f"{limit} ({self._oversized} dropped so far)")
        return True

    def _bad_frame(self, kind: str, text: str) -> None:
        with self.stats.lock:
            self.stats.bad += 1
        self._warnings.warn(kind, text)

    def _report_stats(self) -> None:
        s = self.stats.snapshot()
        s.update(provider=self.detector.provider, reliability=self._reliability,
                 publishers=len(self._offered),
                 starved=self._starvation.starved, starvation_warnings=self._starvation_warnings,
                 stamp=self.get_clock().now().nanoseconds / 1e9)
        self._stats_pub.publish(String(data=json.dumps(s)))
        seen = (s["received"], s["bad_frames"], s["dropped"])
        if seen == self._last_logged:  # an idle node keeps quiet in the log
            return
        self._last_logged = seen
        self.get_logger().info(
            f"fps {s['fps']:.1f} | latency p50 {s['latency_ms_p50']:.0f} ms p95 {s['latency_ms_p95']:.0f} ms "
            f"(inference p50 {s['inference_ms_p50']:.0f} ms) | processed {s['processed']} "
            f"dropped {s['dropped']} (replaced {s['dropped_replaced']}, "
            f"middleware {s['dropped_middleware']}) "
            f"bad {s['bad_frames']}"
        )

    def close(self) -> None:
        if self.state == "active":
            self._slot.close()
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
