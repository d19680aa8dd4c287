"""Start the tracker node alone, on someone else's detections.

    ros2 launch slimyolo_ros track.launch.py detections_topic:=/detector/detections
    ros2 launch slimyolo_ros track.launch.py params_file:=/path/track.yaml namespace:=uav1 log_level:=debug

Tracks are published on ``tracks`` (inside ``namespace``). Without ``launch`` installed the same start is
    track_node --ros-args --params-file config/track.yaml -r detections:=/detector/detections
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

PACKAGE = "slimyolo_ros"


def generate_launch_description() -> LaunchDescription:
    default_params = os.path.join(get_package_share_directory(PACKAGE), "config", "track.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="node parameters (YAML keyed slimyolo_tracker: ros__parameters:)"),
        DeclareLaunchArgument("detections_topic", default_value="detections",
                              description="vision_msgs/Detection2DArray input, remapped onto 'detections'"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and topics"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="true when replaying a bag with --clock"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug | info | warn | error"),
        Node(
            package=PACKAGE,
            executable="track_node",
            name="slimyolo_tracker",
            namespace=LaunchConfiguration("namespace"),
            output="screen",
            emulate_tty=True,
            parameters=[LaunchConfiguration("params_file"),
                        {"use_sim_time": LaunchConfiguration("use_sim_time")}],
            remappings=[("detections", LaunchConfiguration("detections_topic"))],
            arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
        ),
    ])
