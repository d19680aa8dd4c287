"""``slimyolo reproduce`` rehearsed on the CPU: tiny synthetic VisDrone folders, a tiny cfg, every epoch
count scaled down to one; killed after the baseline and run again, it resumes and writes the table."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tiny_cfg import tiny_detector

from slimyolo_ros.darknet.model import Darknet
from slimyolo_ros.darknet.weights import save_darknet_weights
from slimyolo_ros.data.synth import generate
from slimyolo_ros.errors import DatasetError
from slimyolo_ros.slim.reproduce import SIZES, find_splits

REPO = Path(__file__).resolve().parents[1]
PYTHON = Path(sys.executable)  # the venv running the tests


def _cmd(data: Path, cfg: Path, backbone: Path, out: Path) -> list[str]:
    return [str(PYTHON), "-m", "slimyolo_ros.cli", "reproduce", "--data", str(data), "--cfg", str(cfg),
            "--backbone", str(backbone), "--device", "cpu", "--epochs-scale", "0.001", "--img-size", "64",
            "--batch", "4", "--workers", "0", "--probe-seconds", "0.5", "--latency-repeats", "1",
            "--no-progress", "--out", str(out), "--json"]


@pytest.mark.slow
def test_rehearsal_is_killed_after_the_baseline_and_resumes_to_the_table(tmp_path):
    data = tmp_path / "visdrone"
    generate(data / "VisDrone2019-DET-train", 8, size=(96, 96), seed=1, progress=False, objects=(3, 6))
    generate(data / "VisDrone2019-DET-val", 4, size=(96, 96), seed=2, progress=False, objects=(3, 6))
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(tiny_detector(widths=(8, 16, 16), classes=10))
    torch.manual_seed(5)
    backbone = save_darknet_weights(Darknet.from_file(cfg), tmp_path / "backbone.weights")
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(_cmd(data, cfg, backbone, out), stdout=subprocess.DEVNULL,
                             stderr=open(tmp_path / "first.log", "w"), env=env, start_new_session=True)
    marker = out / "baseline" / "step.json"
    deadline = time.monotonic() + 300
    while not marker.is_file() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    log1 = (tmp_path / "first.log").read_text()
    assert marker.is_file(), log1[-3000:]
    assert not (out / "reproduce_table.json").exists(), "killed too late to test resuming"
    assert "training speed on cpu:" in log1 and "baseline          1 epochs x 8 images" in log1, log1[-3000:]
    assert f"baseline: from {backbone}" in log1
    baseline_mtime = (out / "baseline" / "last.pt").stat().st_mtime_ns

    second = subprocess.run(_cmd(data, cfg, backbone, out), capture_output=True, text=True, timeout=600,
                            env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming:" in second.stderr and "baseline: done" in second.stderr, second.stderr[-3000:]
    assert (out / "baseline" / "last.pt").stat().st_mtime_ns == baseline_mtime  # not trained again
    result = json.loads(second.stdout)
    table = {r["model"]: r for r in result["table"]}
    assert list(table) == ["tiny", "tiny sparse", "tiny-slim-50 pruned", "tiny-slim-50",
                           "tiny-slim-90 pruned", "tiny-slim-90", "tiny-slim-95 pruned", "tiny-slim-95"]
    assert table["tiny-slim-95"]["params"] < table["tiny-slim-50"]["params"] < table["tiny"]["params"]
    for r in table.values():
        assert r["gflops_416"] < r["gflops_608"] < r["gflops_832"]
        assert all(r[f"latency_ms_{s}"] > 0 for s in SIZES) and math.isfinite(r["map50"])
    assert "| tiny-slim-90 | finetuned |" in (out / "reproduce_table.md").read_text()


def test_visdrone_root_needs_one_train_and_one_val_folder(tmp_path):
    (tmp_path / "VisDrone2019-DET-train").mkdir()
    with pytest.raises(DatasetError, match="expected one val folder .* found none"):
        find_splits(tmp_path)
    (tmp_path / "VisDrone2019-DET-val").mkdir()
    assert find_splits(tmp_path) == (tmp_path / "VisDrone2019-DET-train", tmp_path / "VisDrone2019-DET-val")
