"""``slimyolo slim`` end to end on a tiny synthetic set: real trainer, real pruning, real evaluator.

The numbers are meaningless at this size (1 epoch per stage); what is checked is the pipeline's
plumbing: every stage ran from the previous one's output and was scored, the pruned architecture is
what got fine-tuned, and a rerun with --resume reuses finished steps.
"""

from __future__ import annotations

import json

import pytest
from conftest import MODELS
from test_prune import cfg_head_convs, masked_copy

from slimyolo_ros.darknet.cfg import load_cfg, write_cfg
from slimyolo_ros.darknet.checkpoint import load_checkpoint
from slimyolo_ros.errors import PruneError

pytestmark = pytest.mark.slow  # real training, pruning and fine-tuning rounds

IMG = 64


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from slimyolo_ros.data.synth import generate

    root = tmp_path_factory.mktemp("slim")
    sections = load_cfg(MODELS / "yolov3-spp3.cfg")
    heads = cfg_head_convs(sections)
    sections[0].options["width"] = sections[0].options["height"] = str(IMG)
    for i, s in enumerate(sections[1:]):
        if s.type == "convolutional" and i not in heads:
            s.options["filters"] = str(max(2, int(s.options["filters"]) // 16))
    cfg = root / "spp3-w16.cfg"
    cfg.write_text(write_cfg(sections))
    train = generate(root / "train", 6, size=(128, 128), seed=0, progress=False, objects=(3, 8))
    val = generate(root / "val", 3, size=(128, 128), seed=1, progress=False, objects=(3, 8))
    return cfg, train, val, root


@pytest.mark.filterwarnings("ignore:the weights do not look sparsity-trained")
def test_slim_pipeline_runs_every_stage(tiny, capsys):
    from slimyolo_ros.cli import main

    cfg, train, val, root = tiny
    out = root / "run"
    argv = ["slim", "--cfg", str(cfg), "--data", str(train), "--val", str(val), "--baseline-epochs", "1",
            "--ratios", "0.5,0.5", "--layer-keep", "0.1", "--sparsity", "0.01", "--sparsity-epochs", "1",
            "--finetune-epochs", "1", "--img-size", str(IMG), "--batch", "3", "--device", "cpu",
            "--latency-repeats", "1", "--train-opt", "progress=false", "--train-opt", "warmup_epochs=0.5",
            "--out", str(out), "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    stages = [r["stage"] for r in report["rows"]]
    assert stages == ["baseline", "sparsity", "pruned", "finetuned", "sparsity", "pruned", "finetuned"]
    g = [r["gflops"] for r in report["rows"]]
    # Each pruning cuts compute, and fine-tuning keeps the pruned architecture.
    assert g[2] < g[1] == g[0] and g[3] == g[2]
    assert g[5] < g[4] == g[3] and g[6] == g[5]
    for r in report["rows"]:
        assert r["latency_ms"] > 0 and r["params"] > 0
    # Each row's mAP is its checkpoint's: `slimyolo eval` of the saved file on the same images agrees,
    # whether the trainer or the pipeline scored it.
    scored = [r for r in report["rows"] if r["weights"].endswith(".pt")]
    assert {r["stage"] for r in scored} >= {"baseline", "sparsity", "finetuned"}
    for r in scored:
        assert main(["eval", "--weights", r["weights"], "--data", str(val), "--img-size", str(IMG),
                     "--device", "cpu", "--json"]) == 0
        ev = json.loads(capsys.readouterr().out)
        assert (ev["map50"], ev["f1"]) == pytest.approx((r["map50"], r["f1"]), abs=1e-6), r["model"]
    # The fine-tuned checkpoint is the pruned cfg, and iteration 2 started from iteration 1's result.
    it1, it2 = out / "iter1_p50", out / "iter2_p50"
    tuned = load_checkpoint(it1 / "finetune" / "best.pt")
    assert tuned["cfg"] == (it1 / "prune" / "pruned.cfg").read_text()
    sparse2 = load_checkpoint(it2 / "sparsity" / "last.pt")
    assert sparse2["cfg"] == tuned["cfg"]
    for f in ("slim_report.md", "slim_report.json", "slim_map_vs_gflops.png"):
        assert (out / f).stat().st_size > 0
    assert (out / "slim_map_vs_gflops.png").read_bytes()[:4] == b"\x89PNG"
    md = (out / "slim_report.md").read_text()
    assert md.count("| spp3-w16") == len(report["rows"])

    # --resume: every step is reused, nothing is trained again, the table is the same.
    stamp = (it2 / "finetune" / "best.pt").stat().st_mtime_ns
    assert main(argv + ["--resume"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert [r["gflops"] for r in again["rows"]] == g
    assert [r["map50"] for r in again["rows"]] == [r["map50"] for r in report["rows"]]
    assert (it2 / "finetune" / "best.pt").stat().st_mtime_ns == stamp


def test_slim_bad_arguments(tiny, tmp_path, capsys):
    from slimyolo_ros.cli import main
    from slimyolo_ros.slim import slim

    cfg, train, val, _ = tiny
    with pytest.raises(PruneError, match="P=1.5"):
        slim(cfg, train, val, tmp_path, [0.5, 1.5], IMG, 2, baseline_epochs=1)
    with pytest.raises(PruneError, match="--weights"):
        slim(cfg, train, val, tmp_path, [0.5], IMG, 2)
    rc = main(["slim", "--cfg", str(cfg), "--data", str(train), "--val", str(val), "--baseline-epochs", "1",
               "--train-opt", "eval_every=often", "--out", str(tmp_path / "x")])
    assert rc == 2 and "'often' is not a valid int" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:the weights do not look sparsity-trained")
def test_prune_eval_reports_map_before_finetuning(tiny, tmp_path, capsys):
    """``slimyolo prune --eval``: mAP right after pruning, with and without folding, and unpruned."""
    import torch

    from slimyolo_ros.cli import main
    from slimyolo_ros.darknet.checkpoint import save_checkpoint
    from slimyolo_ros.darknet.model import Darknet
    from slimyolo_ros.prune.slimming import plan_pruning

    cfg, _, val, _ = tiny
    torch.manual_seed(0)
    model = Darknet(load_cfg(cfg)).eval()
    with torch.no_grad():
        for m in model.module_list:
            if hasattr(m, "bn"):
                m.bn.weight.uniform_(0.2, 1.0)
                m.bn.bias.normal_(0, 0.3)
    plan, _ = plan_pruning(model, 0.5, 0.1)
    silent = masked_copy(model, plan, zero_beta=True)  # pruning this one changes no output
    save_checkpoint(tmp_path / "m.pt", silent, [f"c{i}" for i in range(model.num_classes)], IMG)
    rc = main(["prune", "--weights", str(tmp_path / "m.pt"), "--global-percent", "0.5", "--eval", str(val),
               "--out", str(tmp_path / "out"), "--json"])
    assert rc == 0
    maps = json.loads(capsys.readouterr().out)["map"]
    assert set(maps) == {"unpruned", "pruned, beta folded", "pruned, beta dropped"}
    for m in maps.values():
        assert set(m) == {"map50", "map", "precision", "recall", "f1"}
        assert m["map50"] == pytest.approx(maps["unpruned"]["map50"], abs=1e-6)
        assert m["f1"] == pytest.approx(maps["unpruned"]["f1"], abs=1e-3)


@pytest.mark.filterwarnings("ignore:the weights do not look sparsity-trained")
def test_slim_independent_sweep_from_given_weights(tiny, tmp_path):
    from slimyolo_ros.slim import slim

    cfg, train, val, root = tiny
    # a trained baseline to start from: the previous test's, or one epoch of our own
    base = root / "run" / "baseline" / "best.pt"
    if not base.is_file():
        from slimyolo_ros.train.trainer import train as train_fn

        base = train_fn(cfg, train, val, 1, IMG, 3, tmp_path / "base", device="cpu", progress=False)["best"]
    report = slim(cfg, train, val, tmp_path / "sweep", [0.3, 0.7], IMG, 3, weights=base, sparsity=0.01,
                  sparsity_epochs=1, finetune_epochs=1, device="cpu", independent=True, latency_repeats=1,
                  train_options={"progress": False})
    assert [r["stage"] for r in report["rows"]] == ["baseline", "sparsity", "pruned", "finetuned", "pruned",
                                                    "finetuned"]
    assert report["rows"][0]["scored_by"] == "pipeline"  # given weights are scored here
    g = {r["model"]: r["gflops"] for r in report["rows"]}
    assert g["spp3-w16-slim-70"] < g["spp3-w16-slim-30"] < g["spp3-w16"]
    # both ratios were pruned from the one sparse model
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir()) == ["baseline", "p30", "p70",
                                                                                   "sparsity"]
    for pct in ("p30", "p70"):
        tuned = load_checkpoint(tmp_path / "sweep" / pct / "finetune" / "best.pt")
        assert tuned["cfg"] == (tmp_path / "sweep" / pct / "prune" / "pruned.cfg").read_text()


@pytest.mark.filterwarnings("ignore:the weights do not look sparsity-trained")
def test_slim_with_a_latency_budget(tiny, tmp_path, monkeypatch):
    """``--target-ms`` in place of ``--ratios``: the prune step runs the latency mode. The budget is one
    no machine misses, so the plumbing is under test, not the speed."""
    from slimyolo_ros.cli import main

    cfg, train, val, root = tiny
    monkeypatch.setenv("SLIMYOLO_LATENCY_CACHE", str(tmp_path / "cache"))
    base = root / "run" / "baseline" / "best.pt"
    if not base.is_file():
        from slimyolo_ros.train.trainer import train as train_fn

        base = train_fn(cfg, train, val, 1, IMG, 3, tmp_path / "base", device="cpu", progress=False)["best"]
    out = tmp_path / "lat"
    argv = ["slim", "--cfg", str(cfg), "--data", str(train), "--val", str(val), "--weights", str(base),
            "--independent", "--target-ms", "100000", "--latency-threads", "1", "--sparsity", "0.01",
            "--sparsity-epochs", "1", "--finetune-epochs", "1", "--img-size", str(IMG), "--batch", "3",
            "--device", "cpu", "--latency-repeats", "1", "--train-opt", "progress=false", "--out", str(out),
            "--json"]
    assert main(argv) == 0
    report = json.loads((out / "slim_report.json").read_text())
    assert report["config"]["targets_ms"] == [100000.0] and report["config"]["ratios"] == []
    assert [r["model"] for r in report["rows"]][-1] == "spp3-w16-slim-100000ms"
    pruned = json.loads((out / "p100000ms" / "prune" / "prune_report.json").read_text())["thresholds"]
    assert pruned["mode"] == "latency" and pruned["within_budget"] and pruned["round_to"] == 8
    assert pruned["threads"] == 1
    assert "Latency budgets 100000 ms" in (out / "slim_report.md").read_text()
