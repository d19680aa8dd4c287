"""A ROS node under test: started as a subprocess, fed serialised frames, its replies matched by stamp.

One place for what bag replay, the benchmark and the node tests all need:

- ``process``: :class:`NodeUnderTest` / :class:`Pipeline` (start, log, stop a node or a chain of
  them), the command line (:func:`node_command`, :func:`executable`), the DDS environment the nodes
  share (:func:`ros_environment`) and the package's default parameters files (:func:`default_params`);
- ``client``: :class:`Client`, rclpy in this process, publishing frames as bytes and collecting
  replies by stamp;
- ``stamps``: the header stamp of a serialised message, read (:func:`stamp_of`) and replaced
  (:func:`restamp`);
- ``drive``: :func:`ready`, :func:`lockstep`, :func:`paced`, :func:`drain`, :func:`stage_medians`.

Frames go out as CDR bytes (``Publisher.publish(bytes)``), so the time between publish and reply is
the node's latency plus transport, none of this process's message conversion.
"""

from slimyolo_ros.harness.client import Client, qos, wait_until
from slimyolo_ros.harness.drive import drain, lockstep, paced, ready, stage_medians
from slimyolo_ros.harness.process import (
    PROFILE_ENV,
    HarnessError,
    NodeDiedError,
    NodeUnderTest,
    Pipeline,
    default_params,
    executable,
    node_command,
    ros_environment,
    use_large_frames_profile,
)
from slimyolo_ros.harness.stamps import restamp, stamp_of

__all__ = [
    "PROFILE_ENV", "Client", "HarnessError", "NodeDiedError", "NodeUnderTest", "Pipeline", "default_params",
    "drain", "executable", "lockstep", "node_command", "paced", "qos", "ready", "restamp",
    "ros_environment", "stage_medians", "stamp_of", "use_large_frames_profile", "wait_until",
]
