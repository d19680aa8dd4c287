#!/usr/bin/env bash
# One prepared GPU run: full-width SlimYOLOv3-SPP3 trained, sparsity-trained, pruned at 0.9
# and 0.95, fine-tuned and evaluated, then CUDA latency fp32/fp16 and the fp16 detection check.
#
#   scripts/gpu_run.sh OUT_DIR [--dry-run] [--budget S] [--work DIR]
#
# On a CUDA machine with CUDA torch but no network, pycocotools, ../shared or ROS (Python 3.12): first run
# `python scripts/gpu_run.py --prepare` on a machine with network access (fills the git-ignored
# .gpu_bundle/: the cp312 pycocotools wheel, the authors' cfgs, the COCO yolov3-tiny) and copy .gpu_bundle/
# with the checkout. This script installs the wheel when pycocotools is missing and runs the repo from its
# source tree (PYTHONPATH), so no install step is needed. --dry-run is the CPU rehearsal that
# test/test_gpu_run.py runs.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3
fi
if ! "$PY" -c "import pycocotools" 2>/dev/null; then
    shopt -s nullglob
    wheels=(.gpu_bundle/wheels/pycocotools-*.whl)
    if [ ${#wheels[@]} -eq 0 ]; then
        echo "gpu_run.sh: pycocotools is missing and no wheel in .gpu_bundle/wheels: run" \
             "'python scripts/gpu_run.py --prepare' on a machine with pip access and copy .gpu_bundle" \
             "with the checkout" >&2
        exit 2
    fi
    site=${TMPDIR:-/tmp}/gpu_run_site
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
        "${wheels[-1]}"  # the newest, if --prepare ran twice: two versions stop pip
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$PY" scripts/gpu_run.py "$@"
