"""ament_python package: colcon on a ROS 2 install, or `pip install -e .` in the project venv."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "slimyolo_ros"


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
    install_requires=["setuptools"],
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
