"""Publish the token's Image and Detection2DArray twice a second until killed (or 60 s)."""

import sys
import time

import rclpy
from floor_msgs import build
from rclpy.node import Node
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray


def main() -> int:
    token = sys.argv[1]
    rclpy.init()
    node = Node("floor_pub")
    img, dets = build(token)
    pub_img = node.create_publisher(Image, "/floor/image", 10)
    pub_det = node.create_publisher(Detection2DArray, "/floor/detections", 10)
    print(f"publishing with {rclpy.get_rmw_implementation_identifier()}", flush=True)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and rclpy.ok():
            pub_img.publish(img)
            pub_det.publish(dets)
            rclpy.spin_once(node, timeout_sec=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
