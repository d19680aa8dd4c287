"""ament_python package: colcon on a ROS 2 install, or `pip install -e .` in the project venv."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "slimyolo_ros"


# What the package imports at run time, with the lowest versions it needs (the venv's exact pins are in
# requirements.txt). rclpy, the ROS messages and launch come from ROS (package.xml), not from pip.
INSTALL_REQUIRES = [
    "setuptools",
    # torch.onnx.export(dynamo=False) needs 2.5; NVIDIA's JetPack 6.1 wheel calls itself 2.5.0a0.
    "torch>=2.5.0a0",
    "numpy>=1.26",
    "opencv-python-headless>=4.9",
    "Pillow>=9",  # a CompressedImage's size from its header
    "PyYAML>=6",
    "tqdm>=4.66",
    "matplotlib>=3.8",
    "pycocotools>=2.0.8",
    "rosbags>=0.10",
]
EXTRAS_REQUIRE = {
    # The onnxruntime backend and `slimyolo export`. On CUDA or Jetson install onnxruntime-gpu (the same
    # module) instead of onnxruntime: both installed, one overwrites the other.
    "onnx": ["onnx>=1.16", "onnxscript>=0.1", "onnxruntime>=1.18"],
}
# track_node and `bag eval --track` import trackers (>=2.6.1) and supervision (>=0.31). They are not
# listed: both declare the non-headless opencv-python, which would replace opencv-python-headless's cv2;
# README gives the `pip install --no-deps` line and their other dependencies.


def files(pattern: str) -> list[str]:
    return sorted(p for p in glob(pattern) if not p.endswith("/"))


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", files("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", files("config/*.yaml") + files("config/*.xml")),
        (f"share/{PACKAGE}/models", files("models/*.cfg") + files("models/*.names")
         + files("models/*.pt") + files("models/*.weights") + files("models/*.md")),
    ],
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    python_requires=">=3.10",
    zip_safe=True,
    maintainer="slimyolo_ros maintainers",
    maintainer_email="maintainers@slimyolo-ros.dev",
    description="SlimYOLOv3 UAV object detection: a ROS 2 node and its training/pruning pipeline",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "detect_node = slimyolo_ros.ros.entry:detect_node",
            "slimyolo = slimyolo_ros.cli:main",
            "track_node = slimyolo_ros.ros.entry:track_node",
        ],
    },
)
