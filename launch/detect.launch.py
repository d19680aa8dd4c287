"""Start the SlimYOLOv3 detector node (and, with track:=true, the tracker on its output).

    ros2 launch slimyolo_ros detect.launch.py image_topic:=/camera/image_raw device:=cuda
    ros2 launch slimyolo_ros detect.launch.py params_file:=/path/my.yaml weights:=/path/model.pt
    ros2 launch slimyolo_ros detect.launch.py namespace:=uav1 use_sim_time:=true large_frames:=true
    ros2 launch slimyolo_ros detect.launch.py backend:=onnxruntime providers:=tensorrt,cuda,cpu
    ros2 launch slimyolo_ros detect.launch.py managed:=true track:=true   # then: ros2 lifecycle set ...
    ros2 launch slimyolo_ros detect.launch.py image_topics:='[/cam_front/image_raw, /cam_down/image_raw]'

``ros2 launch slimyolo_ros detect.launch.py --show-args`` lists the arguments (docs/node.md).
"""

import os

import yaml
from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

PACKAGE = "slimyolo_ros"
NODE_NAME = "slimyolo_detector"
TRACKER_NAME = "slimyolo_tracker"


def _share(*parts):
    return os.path.join(get_package_share_directory(PACKAGE), *parts)


def _node_section(params_file, node_name):
    """The ros__parameters a params file gives ``node_name`` (keyed by name, /name or /**)."""
    try:
        with open(params_file) as f:
            data = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError):
        return {}  # the node reports an unreadable params file itself, naming it
    merged = {}
    for key in ("/**", node_name, "/" + node_name):
        section = data.get(key) if isinstance(data, dict) else None
        if isinstance(section, dict):
            merged.update(section.get("ros__parameters") or {})
    return merged


def _topic_list(text):
    """``[/a/image_raw, /b/image_raw]`` or ``/a/image_raw,/b/image_raw`` -> the topics."""
    try:
        value = yaml.safe_load(text) if text.strip() else []
    except yaml.YAMLError:
        value = text
    if isinstance(value, str):
        value = value.split(",")
    return [str(t).strip() for t in value or [] if str(t).strip()]


def _nodes(context, *args, **kwargs):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    namespace = arg("namespace")
    params_file = arg("params_file")
    # A params file keyed "slimyolo_detector:" matches only the node without a namespace (rcl matches
    # keys against the fully qualified name), so a namespaced node gets the file's values as a dict,
    # which launch_ros hands over keyed "/**".
    params = [params_file] if not namespace.strip("/") else [_node_section(params_file, NODE_NAME)]
    # weights, device, backend, providers and trt_cache_dir override the params file only when given
    # (empty = keep the file's value),
    # which plain substitutions cannot express, hence the OpaqueFunction.
    overrides = {key: arg(key) for key in ("weights", "device", "backend", "providers", "trt_cache_dir")
                 if arg(key)}
    overrides["use_sim_time"] = arg("use_sim_time").lower() in ("true", "1", "yes")
    cameras = _topic_list(arg("image_topics"))
    if cameras:  # several cameras, one model: each publishes <its namespace>/detections (docs/node.md)
        overrides["image_topics"] = cameras
    env = {}
    if arg("large_frames").lower() in ("true", "1", "yes"):
        profile = _share("config", "fastdds_large_frames.xml")
        env = {"FASTDDS_DEFAULT_PROFILES_FILE": profile}
    # What both nodes share: package, namespace, console output, log level.
    common = dict(package=PACKAGE, namespace=namespace, output="screen", emulate_tty=True,
                  ros_arguments=["--log-level", arg("log_level")])
    # managed: lifecycle nodes, unconfigured until `ros2 lifecycle set <node> configure` (ros/lifecycle.py)
    common["arguments"] = ["--managed"] if arg("managed").lower() in ("true", "1", "yes") else []
    detector = Node(
        executable="detect_node",
        name=NODE_NAME,
        parameters=[*params, overrides],
        remappings=[("image_raw", LaunchConfiguration("image_topic"))],
        additional_env=env,
        **common,
    )
    detections = _node_section(params_file, NODE_NAME).get("detections_topic", "detections")
    track_params = _share("config", "track.yaml")
    tracker = Node(
        executable="track_node",
        name=TRACKER_NAME,
        parameters=([track_params] if os.path.isfile(track_params) else [])
        + [{"use_sim_time": overrides["use_sim_time"]}],
        remappings=[("detections", detections)],
        condition=IfCondition(LaunchConfiguration("track")),
        **common,
    )
    return [detector, tracker]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=_share("config", "detect.yaml"),
                              description="node parameters (YAML keyed slimyolo_detector: ros__parameters:)"),
        DeclareLaunchArgument("image_topic", default_value="image_raw",
                              description="camera topic, remapped onto the node's image_raw"),
        DeclareLaunchArgument("image_topics", default_value="",
                              description="several cameras, one model: [/cam_front/image_raw, "
                                          "/cam_down/image_raw]; each camera's detections go to its "
                                          "namespace's detections topic; empty: the one image_topic"),
        DeclareLaunchArgument("weights", default_value="",
                              description="model file (.pt or Darknet .weights); empty: the params file's"),
        DeclareLaunchArgument("device", default_value="",
                              description="auto | cpu | cuda | cuda:N; empty: the params file's"),
        DeclareLaunchArgument("backend", default_value="",
                              description="torch | onnxruntime; empty: the params file's"),
        DeclareLaunchArgument("providers", default_value="",
                              description="ONNX Runtime execution providers: auto or a list such as "
                                          "tensorrt,cuda,cpu; empty: the params file's"),
        DeclareLaunchArgument("trt_cache_dir", default_value="",
                              description="TensorRT engine cache folder; empty: the params file's"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the node(s) and their relative topics"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="follow /clock (ros2 bag play --clock)"),
        DeclareLaunchArgument("log_level", default_value="info",
                              description="debug | info | warn | error | fatal"),
        DeclareLaunchArgument("large_frames", default_value="false",
                              description="start the node with config/fastdds_large_frames.xml (Fast DDS "
                                          "shared memory for camera-sized frames; the camera needs it too)"),
        DeclareLaunchArgument("track", default_value="false",
                              description="also start track_node (slimyolo_tracker) on the detections"),
        DeclareLaunchArgument("managed", default_value="false",
                              description="start the node(s) as lifecycle nodes: unconfigured until "
                                          "`ros2 lifecycle set /slimyolo_detector configure`, then activate"),
        OpaqueFunction(function=_nodes),
    ])
