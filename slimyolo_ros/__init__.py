"""slimyolo_ros: SlimYOLOv3 object detection for UAVs, with a ROS 2 node on top.

The core (darknet, detect, data, train, prune, evaluate, export) never imports ROS;
only ``slimyolo_ros.ros`` and ``slimyolo_ros.bag`` do.
"""

__version__ = "0.1.0"
