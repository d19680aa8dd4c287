"""SlimYOLOv3 channel pruning on a narrow YOLOv3-SPP3 (the real topology, widths / 16).

Every check compares against an independent computation: the unpruned network run with the removed
channels silenced, OpenCV DNN reading our files, or counts derived from the cfg.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from conftest import MODELS

from slimyolo_ros.darknet.cfg import load_cfg
from slimyolo_ros.darknet.channel_graph import channel_graph
from slimyolo_ros.darknet.model import Darknet
from slimyolo_ros.errors import PruneError
from slimyolo_ros.prune.plan import ChannelPlan, propagate
from slimyolo_ros.prune.slimming import plan_pruning, prune
from slimyolo_ros.prune.surgery import apply_plan
from slimyolo_ros.prune.thresholds import NotSparseWarning, keep_masks

IMG = 64


def cfg_head_convs(sections) -> set[int]:
    """Layer indices of the convs right before a [yolo] section, read from the cfg text."""
    return {i - 1 for i, s in enumerate(sections[1:]) if s.type == "yolo"}


def narrow_spp3(width_div: int = 16, img: int = IMG):
    """models/yolov3-spp3.cfg with every non-head conv narrowed; the layer graph is unchanged."""
    sections = load_cfg(MODELS / "yolov3-spp3.cfg")
    heads = cfg_head_convs(sections)
    sections[0].options["width"] = sections[0].options["height"] = str(img)
    for i, s in enumerate(sections[1:]):
        if s.type == "convolutional" and i not in heads:
            s.options["filters"] = str(max(2, int(s.options["filters"]) // width_div))
    return sections


@torch.no_grad()
def randomised(sections, seed: int = 0, sparse_share: float = 0.6) -> Darknet:
    """A model in eval mode with non-trivial BN stats and a sparsity-trained-looking gamma spread."""
    torch.manual_seed(seed)
    model = Darknet(sections)
    for m in model.module_list:
        if hasattr(m, "bn"):
            n = m.bn.num_features
            gamma = torch.rand(n) * 0.9 + 0.3
            small = torch.rand(n) < sparse_share
            gamma[small] = torch.rand(int(small.sum())) * 5e-3
            m.bn.weight.copy_(gamma * torch.sign(torch.randn(n)))
            m.bn.bias.copy_(torch.randn(n) * 0.5)
            m.bn.running_mean.copy_(torch.randn(n) * 0.2)
            m.bn.running_var.copy_(torch.rand(n) * 0.5 + 0.5)
            m.conv.weight.mul_(2.0)
    return model.eval()


@torch.no_grad()
def masked_copy(model: Darknet, plan: ChannelPlan, zero_beta: bool = False) -> Darknet:
    """The unpruned model with gamma (and optionally beta) of every removed channel set to 0: what
    pruning approximates (exactly, when beta is zeroed too)."""
    import copy

    out = copy.deepcopy(model)
    for i, m in enumerate(out.module_list):
        if hasattr(m, "bn"):
            removed = torch.as_tensor(np.flatnonzero(~plan.out_masks[i]), dtype=torch.long)
            m.bn.weight[removed] = 0
            if zero_beta:
                m.bn.bias[removed] = 0
    return out


@pytest.fixture(scope="module")
def base_sections():
    return narrow_spp3()


def raw_outputs(model: Darknet, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        _, raws = model.eval()(x)
    return raws


def test_exact_when_removed_channels_are_silent(base_sections):
    model = randomised(base_sections)
    plan, _ = plan_pruning(model, 0.6, 0.1)
    silent = masked_copy(model, plan, zero_beta=True)
    pruned = apply_plan(silent, plan, fold=True)
    # The network really shrank, in shortcut layers, SPP and FPN alike.
    assert sum(p.numel() for p in pruned.parameters()) < 0.7 * sum(p.numel() for p in model.parameters())
    x = torch.rand(2, 3, IMG, IMG)
    for a, b in zip(raw_outputs(silent, x), raw_outputs(pruned, x), strict=True):
        assert a.shape == b.shape
        assert torch.allclose(a, b, atol=1e-4, rtol=0), (a - b).abs().max()
    # And with the betas left in, pruning is not trivially exact (the test above can fail).
    loud = apply_plan(masked_copy(model, plan), plan, fold=False)
    ref = raw_outputs(masked_copy(model, plan), x)
    assert max((a - b).abs().max().item() for a, b in zip(ref, raw_outputs(loud, x), strict=True)) > 1e-2


def test_beta_folding_brings_pruned_model_closer_to_masked_model():
    sections = narrow_spp3(img=128)
    model = randomised(sections, seed=1)
    plan, _ = plan_pruning(model, 0.6, 0.1)
    masked = masked_copy(model, plan)  # gamma = 0, beta kept: what pruning should reproduce
    x = torch.rand(1, 3, 128, 128)
    ref = raw_outputs(masked, x)

    def err(m):
        out = raw_outputs(m, x)
        return float(np.mean([(a - b).abs().mean().item() for a, b in zip(ref, out, strict=True)]))

    folded, dropped = err(apply_plan(model, plan, fold=True)), err(apply_plan(model, plan, fold=False))
    assert folded < 0.5 * dropped, (folded, dropped)
    # The only inexactness is zero padding (a constant map is not constant at the borders of a
    # padded 3x3 conv). With wrap-around padding a constant stays constant, so folding is exact.
    circ_masked, circ_folded = masked, apply_plan(model, plan, fold=True)
    for net in (circ_masked, circ_folded):
        for m in net.module_list:
            if hasattr(m, "conv"):
                m.conv.padding_mode = "circular"
    for a, b in zip(raw_outputs(circ_masked, x), raw_outputs(circ_folded, x), strict=True):
        assert torch.allclose(a, b, atol=1e-4, rtol=0), (a - b).abs().max()


def test_graph_rules_shortcuts_heads_floor_and_multiple(base_sections):
    model = randomised(base_sections, seed=2)
    defs = model.module_defs
    graph = channel_graph(model)
    plan, info = plan_pruning(model, 0.8, 0.25)
    # Every shortcut's two inputs carry identical masks, and shortcut-joined convs do shrink.
    shrunk_in_group = False
    for i, s in enumerate(defs):
        if s.type == "shortcut":
            j = i + int(s.options["from"])
            assert np.array_equal(plan.out_masks[i - 1], plan.out_masks[j])
            assert np.array_equal(plan.out_masks[i], plan.out_masks[j])
            shrunk_in_group |= plan.kept(i - 1) < model.out_channels[i - 1]
    assert shrunk_in_group
    big_groups = [g for g in plan.groups if len(g) > 1]
    assert len(big_groups) == 5  # darknet-53 stages: 1, 2, 8, 8, 4 residual blocks
    # The heads keep all outputs; every prunable layer keeps at least ceil(K * C).
    assert graph.heads == cfg_head_convs(base_sections)
    for i in graph.heads:
        assert plan.out_masks[i].all()
    for i in graph.prunable:
        c = int(defs[i].options["filters"])
        assert plan.kept(i) >= math.ceil(0.25 * c)
    # The pruned network agrees with the plan, layer by layer.
    pruned = apply_plan(model, plan)
    for i, s in enumerate(defs):
        if s.type == "convolutional":
            assert pruned.module_list[i].conv.out_channels == plan.kept(i)
            assert pruned.module_list[i].conv.in_channels == int(plan.in_masks[i].sum())

    plan8, _ = plan_pruning(model, 0.8, 0.25, round_to=4)
    for i in graph.prunable:
        c = int(defs[i].options["filters"])
        k = plan8.kept(i)
        assert k % 4 == 0 or k == c, (i, k, c)
        assert k >= plan.kept(i)
        # rounding adds back the strongest removed channels: kept set is a superset
        assert np.all(plan8.out_masks[i][plan.out_masks[i]])


def test_thresholds_follow_the_paper_rule():
    rng = np.random.default_rng(0)
    gammas = {0: rng.random(100), 3: rng.random(40) * 0.01, 7: rng.random(10)}
    masks, info = keep_masks(gammas, 0.5, 0.1)
    allg = np.concatenate(list(gammas.values()))
    hat = np.quantile(allg, 0.5)
    assert info["gamma_hat"] == pytest.approx(hat)
    for i, g in gammas.items():
        floor = math.ceil(0.1 * g.size)
        top = set(np.argsort(-g)[:floor])
        expect = np.array([(g[c] >= hat) or (c in top) for c in range(g.size)])
        assert np.array_equal(masks[i], expect)
    assert masks[3].sum() == 4  # entirely below gamma_hat: only the 10% floor survives


def test_bad_ratios_raise_prune_error(base_sections):
    model = randomised(base_sections)
    for p, k in [(1.0, 0.1), (90, 0.1), (-0.1, 0.1), (0.5, 0.0), (0.5, 1.5)]:
        with pytest.raises(PruneError) as exc:
            plan_pruning(model, p, k)
        assert repr(p if not 0 <= p < 1 else k) in str(exc.value)
    with pytest.raises(PruneError, match="round-to"):
        plan_pruning(model, 0.5, 0.1, round_to=0)


def test_empty_layer_is_refused(base_sections):
    model = Darknet(base_sections)
    defs, graph = model.module_defs, channel_graph(model)
    masks = {i: np.ones(int(defs[i].options["filters"]), bool) for i in graph.prunable}
    masks[0][:] = False  # layer 0 is joined by no shortcut, so nothing can bring it back
    with pytest.raises(PruneError, match=r"layer\(s\) \[0\]"):
        propagate(graph, masks)


def test_not_sparse_weights_warn():
    rng = np.random.default_rng(1)
    dense = {0: rng.random(64) + 0.5, 1: rng.random(64) + 0.5}
    with pytest.warns(NotSparseWarning, match="not look sparsity-trained"):
        keep_masks(dense, 0.5, 0.1)
    sparse = {0: np.r_[rng.random(32) * 1e-3, rng.random(32)], 1: rng.random(64)}
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotSparseWarning)
        keep_masks(sparse, 0.5, 0.1)


def test_prune_report_counts(base_sections):
    model = randomised(base_sections, seed=3)
    pruned, report = prune(model, 0.7, 0.1, sizes=(64, 128))
    rows = {r["index"]: r for r in report["layers"]}
    for i, m in enumerate(pruned.module_list):
        if i in rows:
            assert rows[i]["after"] == m.conv.out_channels
    c = report["complexity"]
    assert [r["img_size"] for r in c] == [64, 128]
    # FLOPs scale with the input area; the cut is the same at every size.
    assert c[1]["gflops_before"] == pytest.approx(4 * c[0]["gflops_before"], rel=1e-3)
    assert c[0]["gflops_reduction_pct"] == pytest.approx(c[1]["gflops_reduction_pct"], abs=0.05)
    assert c[0]["params_after"] == sum(p.numel() for n, p in pruned.named_parameters())
    assert 0 < c[0]["gflops_reduction_pct"] < 100
    # The written cfg is what the pruned model is.
    assert Darknet.from_text(pruned.cfg_text()).out_channels == pruned.out_channels


def _opencv_heads(cfg, weights, x: np.ndarray) -> list[np.ndarray]:
    import cv2

    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    names = list(net.getLayerNames())
    # OpenCV names its layers itself; the conv feeding each head sits right before its permute.
    heads = [names[names.index(n) - 1] for n in names if n.startswith("permute_")]
    net.setInput(x)
    return list(net.forward(heads))


def test_pruned_files_load_in_opencv_and_match(base_sections, tmp_path):
    from slimyolo_ros.darknet.checkpoint import load_model
    from slimyolo_ros.slim import prune_to_dir

    model = randomised(base_sections, seed=4)
    names = [f"c{i}" for i in range(model.num_classes)]
    prune_to_dir(model, names, IMG, tmp_path, 0.7, 0.1, round_to=2, sizes=(IMG,))
    ours, class_names, _ = load_model(tmp_path / "pruned.pt")
    assert class_names == names
    assert ours.cfg_text() == (tmp_path / "pruned.cfg").read_text()
    x = np.random.default_rng(0).random((1, 3, IMG, IMG), dtype=np.float32)
    raws = raw_outputs(ours, torch.from_numpy(x))
    cv_out = _opencv_heads(tmp_path / "pruned.cfg", tmp_path / "pruned.weights", x)
    assert len(cv_out) == len(raws) == 3
    for o, r in zip(cv_out, raws, strict=True):
        b, a, h, w, n = r.shape
        t = r.permute(0, 1, 4, 2, 3).reshape(b, a * n, h, w).numpy()
        assert o.shape == t.shape
        np.testing.assert_allclose(o, t, rtol=1e-4, atol=1e-4 * np.abs(t).max())
    # The pruned model really is the smaller one.
    assert sum(p.numel() for p in ours.parameters()) < sum(p.numel() for p in model.parameters())


def test_prune_cli_writes_files_and_reports_errors(base_sections, tmp_path, capsys):
    import json

    from slimyolo_ros.cli import main
    from slimyolo_ros.darknet.checkpoint import save_checkpoint

    model = randomised(base_sections, seed=5)
    names = [f"c{i}" for i in range(model.num_classes)]
    save_checkpoint(tmp_path / "sparse.pt", model, names, IMG)
    out = tmp_path / "out"
    rc = main(["prune", "--weights", str(tmp_path / "sparse.pt"), "--global-percent", "0.5",
               "--layer-keep", "0.1", "--out", str(out), "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert sorted(p.name for p in out.iterdir()) == ["prune_report.json", "prune_report.md", "pruned.cfg",
                                                    "pruned.pt", "pruned.weights"]
    assert json.loads((out / "prune_report.json").read_text())["complexity"] == report["complexity"]
    assert [r["img_size"] for r in report["complexity"]] == [416, 608, 832]
    md = (out / "prune_report.md").read_text()
    assert "| 416 |" in md and "| layer |" in md

    # with layer pruning first: two residual blocks (6 layers) fewer, compared against the original
    rc = main(["prune", "--weights", str(tmp_path / "sparse.pt"), "--global-percent", "0.5",
               "--prune-layers", "2", "--out", str(tmp_path / "lp"), "--json"])
    assert rc == 0
    lp = json.loads(capsys.readouterr().out)
    assert len(lp["layer_pruning"]["dropped_shortcuts"]) == 2
    assert len(Darknet.from_file(tmp_path / "lp" / "pruned.cfg").module_list) == len(model.module_list) - 6
    assert lp["complexity"][0]["gflops_before"] == report["complexity"][0]["gflops_before"]
    assert lp["complexity"][0]["gflops_after"] < report["complexity"][0]["gflops_after"]

    rc = main(["prune", "--weights", str(tmp_path / "sparse.pt"), "--global-percent", "95",
               "--out", str(out)])
    assert rc == 2 and "P=95.0" in capsys.readouterr().err
    # cfg/weights mismatch: the pruned Darknet weights against the unpruned cfg
    (tmp_path / "full.cfg").write_text(model.cfg_text())
    rc = main(["prune", "--cfg", str(tmp_path / "full.cfg"), "--weights", str(out / "pruned.weights"),
               "--global-percent", "0.5", "--out", str(tmp_path / "o2")])
    err = capsys.readouterr().err
    assert rc == 2 and "pruned.weights" in err, err


def test_authors_pruned_cfgs_complexity(shared_reference):
    """Our params/GFLOPs on the SlimYOLOv3 authors' own cfgs, and our graph rules hold on them."""
    from slimyolo_ros.darknet.complexity import count_gflops, count_params

    cfg_dir = shared_reference / "cfg"
    full = Darknet.from_file(cfg_dir / "00-unpruned__yolov3-spp3.cfg")
    g_full, p_full = count_gflops(full, 416), count_params(full)
    cut = {}
    for name in ("1iter-pruned__prune_0.5.cfg", "1iter-pruned__prune_0.9.cfg",
                 "1iter-pruned__prune_0.95.cfg"):
        m = Darknet.from_file(cfg_dir / name)
        # same layer graph, fewer filters: our mask propagation accepts it unchanged
        assert [s.type for s in m.module_defs] == [s.type for s in full.module_defs]
        propagate(channel_graph(m), {})
        cut[name] = (g_full / count_gflops(m, 416), p_full / count_params(m))
    g95, p95 = cut["1iter-pruned__prune_0.95.cfg"]
    assert 8 < g95 < 14, g95  # the paper's ~90% FLOPs cut for SlimYOLOv3-SPP3-95
    assert p95 > 8, p95
    ratios = [cut[n][0] for n in sorted(cut)]
    assert ratios == sorted(ratios)  # 0.5 < 0.9 < 0.95
    # The paper's table (input 832): SlimYOLOv3-SPP3-50 (two 50% iterations) 20.8 M params,
    # 122.0 BFLOPs; -90 8.0 M, 39.9; -95 5.1 M, 26.3.
    for name, params_m, gflops in (("2iter-pruned__prune_0.5_0.5.cfg", 20.8, 122.0),
                                   ("1iter-pruned__prune_0.9.cfg", 8.0, 39.9),
                                   ("1iter-pruned__prune_0.95.cfg", 5.1, 26.3)):
        m = Darknet.from_file(cfg_dir / name)
        assert count_params(m) / 1e6 == pytest.approx(params_m, abs=0.05), name
        assert count_gflops(m, 832) == pytest.approx(gflops, abs=0.05), name
    assert count_gflops(full, 832) == pytest.approx(4 * count_gflops(full, 416), rel=1e-6)


def test_layer_pruning_drops_silent_residual_blocks_exactly(base_sections):
    from slimyolo_ros.prune.layers import prune_layers, residual_blocks

    model = randomised(base_sections, seed=6)
    blocks = residual_blocks(model)
    assert len(blocks) == 23  # darknet-53: 1 + 2 + 8 + 8 + 4
    silent = [blocks[0], blocks[5], blocks[-1]]  # first block, mid-stage, last block of the backbone
    with torch.no_grad():
        for s in silent:
            for j in (s - 2, s - 1):
                model.module_list[j].bn.weight.zero_()
            model.module_list[s - 1].bn.bias.zero_()  # f(x) = leaky(0) = 0: y = x exactly
    slim_model, info = prune_layers(model, 3)
    assert info["dropped_shortcuts"] == silent
    assert len(slim_model.module_list) == len(model.module_list) - 9
    x = torch.rand(1, 3, IMG, IMG)
    for a, b in zip(raw_outputs(model, x), raw_outputs(slim_model, x), strict=True):
        assert torch.allclose(a, b, atol=1e-4, rtol=0), (a - b).abs().max()
    # and the result still channel-prunes (routes were re-pointed correctly)
    pruned, _ = prune(slim_model, 0.5, 0.1, sizes=(IMG,))
    assert len(raw_outputs(pruned, x)) == 3
    with pytest.raises(PruneError, match="23 residual blocks"):
        prune_layers(model, 24)
