"""Wait for one Image and one Detection2DArray carrying the token; print what arrived as JSON."""

import hashlib
import json
import sys
import time

import rclpy
from rclpy.node import Node
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray


def main() -> int:
    token, timeout = sys.argv[1], float(sys.argv[2])
    rclpy.init()
    node = Node("floor_sub")
    got: dict = {}

    def on_image(m: Image) -> None:
        if m.header.frame_id == token:
            got["image"] = {"width": m.width, "height": m.height, "encoding": m.encoding, "step": m.step,
                            "sha256": hashlib.sha256(bytes(m.data)).hexdigest(), "stamp": m.header.stamp.sec}

    def on_dets(m: Detection2DArray) -> None:
        if m.header.frame_id == token:
            got["detections"] = [
                [d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.size_x, d.bbox.size_y,
                 d.results[0].hypothesis.class_id, d.results[0].hypothesis.score, d.header.frame_id]
                for d in m.detections
            ]

    node.create_subscription(Image, "/floor/image", on_image, 10)
    node.create_subscription(Detection2DArray, "/floor/detections", on_dets, 10)
    deadline = time.monotonic() + timeout
    while len(got) < 2 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    got["rmw"] = rclpy.get_rmw_implementation_identifier()
    print(json.dumps(got), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0 if "image" in got and "detections" in got else 1


if __name__ == "__main__":
    sys.exit(main())
