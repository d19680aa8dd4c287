"""The ROS 2 floor is real: two processes talk over Fast DDS on loopback.

The package's install (colcon build) and its launch file (ros2 launch) are exercised for real in
test_launch.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from ros_helpers.floor_msgs import detections, image_sha256

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[1]
HELPERS = Path(__file__).resolve().parent / "ros_helpers"
PY = sys.executable


def test_detection2d_array_and_image_cross_processes_over_fast_dds(ros_env):
    assert ros_env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST" and ros_env["ROS_DOMAIN_ID"]
    token = f"floor-{uuid.uuid4().hex[:12]}"
    sub = subprocess.Popen([PY, str(HELPERS / "floor_sub.py"), token, "40"], env=ros_env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pub = subprocess.Popen([PY, str(HELPERS / "floor_pub.py"), token], env=ros_env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = sub.communicate(timeout=60)
    finally:
        pub.terminate()
        pub_out, pub_err = pub.communicate(timeout=20)
    assert sub.returncode == 0, f"subscriber got nothing:\n{out}\n{err}\npublisher:\n{pub_out}\n{pub_err}"
    got = json.loads(out.strip().splitlines()[-1])
    assert got["rmw"] == "rmw_fastrtps_cpp" and "rmw_fastrtps_cpp" in pub_out
    assert got["image"] == {"width": 64, "height": 48, "encoding": "bgr8", "step": 192,
                            "sha256": image_sha256(token), "stamp": 1234}
    expected = [[cx, cy, sx, sy, cls, score, token] for cx, cy, sx, sy, cls, score in detections(token)]
    assert got["detections"] == expected
