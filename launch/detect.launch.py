"""Start the SlimYOLOv3 detector node.

    ros2 launch slimyolo_ros detect.launch.py image_topic:=/camera/image_raw device:=cuda
    ros2 launch slimyolo_ros detect.launch.py params_file:=/path/my.yaml weights:=/path/model.pt

Without ``launch`` installed (e.g. the pip venv) the same start is
    detect_node --ros-args --params-file config/detect.yaml -r image_raw:=/camera/image_raw
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

PACKAGE = "slimyolo_ros"


def _detector_node(context, *args, **kwargs):
    # weights/device override the params file only when given (empty = keep the file's value),
    # which plain substitutions cannot express, hence the OpaqueFunction.
    overrides = {}
    for key in ("weights", "device"):
        value = LaunchConfiguration(key).perform(context)
        if value:
            overrides[key] = value
    return [
        Node(
            package=PACKAGE,
            executable="detect_node",
            name="slimyolo_detector",
            output="screen",
            emulate_tty=True,
            parameters=[LaunchConfiguration("params_file"), overrides],
            remappings=[("image_raw", LaunchConfiguration("image_topic"))],
        )
    ]


def generate_launch_description() -> LaunchDescription:
    default_params = os.path.join(get_package_share_directory(PACKAGE), "config", "detect.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="node parameters (YAML keyed slimyolo_detector: ros__parameters:)"),
        DeclareLaunchArgument("image_topic", default_value="image_raw",
                              description="camera topic, remapped onto the node's image_raw"),
        DeclareLaunchArgument("weights", default_value="",
                              description="model file (.pt or Darknet .weights); empty: the params file's"),
        DeclareLaunchArgument("device", default_value="",
                              description="auto | cpu | cuda | cuda:N; empty: the params file's"),
        OpaqueFunction(function=_detector_node),
    ])
