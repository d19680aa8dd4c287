"""scripts/gpu_run.sh (scripts/gpu_run.py): the prepared GPU run, rehearsed on the CPU.

The dry run is the same script with tiny data, the ÷8 cfg and one epoch per training stage: every
stage runs for real (synth, trainer, pruning, evaluator, Detector latency in torch and ONNX Runtime,
the fp16 check), so the first run on a GPU is not the script's first run.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STAGES = ["env", "probe", "synth", "baseline", "eval_baseline", "sparse", "eval_sparse",
          "prune_slim90", "finetune_slim90", "eval_slim90", "prune_slim95", "finetune_slim95",
          "eval_slim95", "latency", "fp16_check"]


def _num(x) -> float:
    assert isinstance(x, (int, float)) and not isinstance(x, bool), x
    assert math.isfinite(x), x
    return float(x)


@pytest.mark.slow
def test_dry_run_writes_every_stage_with_sane_numbers(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu_run.sh"), str(out), "--dry-run",
                           "--work", str(work)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=1200)
    log = (out / "run.log").read_text() if (out / "run.log").is_file() else ""
    assert proc.returncode == 0, proc.stderr[-3000:] + log[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert res["dry_run"] is True and res["finished"] is True
    stages = res["stages"]
    assert sorted(stages) == sorted(STAGES)
    assert {n: r["status"] for n, r in stages.items() if r["status"] != "ok"} == {}
    assert stages["synth"]["images"] == {"train": 8, "val": 4}
    assert stages["probe"]["raw_img_per_s"] > 0

    # the paper's table: every row from the same evaluator, pruned rows smaller than the baseline
    table = {r["model"]: r for r in res["table"]}
    assert list(table) == ["baseline", "sparse", "slim-90", "slim-95"]
    for model, r in table.items():
        assert r["status"] == "ok"
        assert _num(r["params"]) > 0 and _num(r["gflops_416"]) > 0
        ev = stages["eval_" + model.replace("-", "")]  # the row's numbers are its eval stage's
        assert (_num(r["map50"]), _num(r["f1"])) == (ev["map50"], ev["f1"])
    base = table["baseline"]
    assert table["sparse"]["params"] == base["params"]
    for m in ("slim-90", "slim-95"):
        assert table[m]["params"] < base["params"] and table[m]["gflops_416"] < base["gflops_416"]
        assert 0 < _num(table[m]["gflops_cut_pct"]) < 100
        assert isinstance(table[m]["meets_target"], bool)
    assert table["slim-95"]["gflops_416"] <= table["slim-90"]["gflops_416"]

    # latency: every model x precision x size in torch, ONNX Runtime exercised, fp16 not faked on CPU
    lat = stages["latency"]
    assert {"yolov3-spp3", "ours-slim90", "ours-slim95"} <= set(lat["models"])
    assert any(m.startswith("authors-") for m in lat["models"]), lat["notes"]
    sizes = res["plan"]["lat_sizes"]
    rows = res["latency"]
    for m in lat["models"]:
        for prec in ("fp32", "fp16"):
            got = sorted(r["img_size"] for r in rows if r["model"] == m and r["backend"] == "torch"
                         and r["precision"] == prec)
            assert got == sorted(sizes), (m, prec, got)
    for r in rows:
        assert _num(r["ms_median"]) > 0 and r["ms_min"] <= r["ms_median"]
        assert r["half_active"] is False  # the CPU ignores half; the row must say so
    assert any(r["backend"] == "onnxruntime" for r in rows), lat["errors"]

    fp16 = stages["fp16_check"]
    # half is not active on the CPU, so the "fp16" Detector is the fp32 one: every box matched, same scores
    assert fp16["fp16_active"] is False and fp16["n_fp32"] == fp16["n_fp16"] >= 1
    assert (fp16["match_rate"], fp16["mean_iou"], fp16["max_score_diff"]) == (1.0, 1.0, 0.0)
    assert "stage fp16_check: ok" in log
    summary = (out / "summary.md").read_text()
    assert "| slim-95 |" in summary and "torch fp16 128" in summary


@pytest.mark.slow
def test_a_failed_stage_is_recorded_and_independent_stages_still_run(tmp_path):
    sys.path.insert(0, str(REPO / "scripts"))
    from gpu_run import Run, StageCut, dry_plan

    run = Run(tmp_path, tmp_path / "work", dry_plan(100.0))

    def boom(_allowed: float) -> dict:
        raise ValueError("bad input")

    def cut(_allowed: float) -> dict:
        raise StageCut("killed after 3 s", {"weights": "last.pt"})

    assert run.stage("a", 10, boom) is None
    assert run.stage("b", 10, lambda _a: {"x": 1}, needs=("a",)) is None
    assert run.stage("c", 10, lambda a: {"allowed": a}) == {"status": "ok", "allowed": 10,
                                                            "seconds": pytest.approx(0, abs=1)}
    assert run.stage("d", 10, cut)["weights"] == "last.pt"
    assert run.stage("e", 10, lambda _a: {}, needs=("d",))["status"] == "ok"  # a cut stage can be built on
    assert run.stage("f", 10, lambda _a: {}, reserve=1000.0) is None
    saved = json.loads((tmp_path / "results.json").read_text())["stages"]
    assert saved["a"]["status"] == "failed" and saved["a"]["error"] == "ValueError: bad input"
    assert saved["b"]["status"] == "skipped" and "needs a" in saved["b"]["reason"]
    assert [saved[k]["status"] for k in "cdef"] == ["ok", "cut", "ok", "skipped"]
    assert saved["f"]["reason"].startswith("out of time")
    assert "stage a: failed" in (tmp_path / "run.log").read_text()


def test_the_run_imports_no_ros():
    code = ("import sys; sys.path.insert(0, 'scripts'); import gpu_run as g; import slimyolo_ros.cli;"
            "[__import__('slimyolo_ros.commands.' + c) for c in ('synth', 'train', 'prune', 'eval', 'info')];"
            "import slimyolo_ros.detect, slimyolo_ros.train.trainer, slimyolo_ros.slim;"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('rclpy', 'sensor_msgs', 'vision_msgs', 'std_msgs', 'launch', 'rosbags'));"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=300,
                   env=dict(os.environ, PYTHONPATH=str(REPO)))
