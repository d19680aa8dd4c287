"""SlimYOLOv3 sparsity: the L1 subgradient on BN gammas, its AMP/accumulation semantics, schedules, logs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import MODELS
from tiny_cfg import cfg, conv, head, shortcut

from slimyolo_ros.darknet.cfg import load_cfg
from slimyolo_ros.darknet.channel_graph import channel_graph
from slimyolo_ros.darknet.complexity import count_gflops
from slimyolo_ros.darknet.model import Darknet
from slimyolo_ros.prune.plan import propagate
from slimyolo_ros.prune.surgery import pruned_sections
from slimyolo_ros.train import sparsity as sp
from slimyolo_ros.train.loss import YoloLoss
from slimyolo_ros.train.options import TrainOptions
from slimyolo_ros.train.trainer import _build_optimizer, optimizer_step

# a shortcut ties two convs' channels: the regulariser must treat them as one group
CFG = cfg(conv(8, stride=2), conv(8), shortcut(-2), conv(16, stride=2),
          head(3, anchors=((6, 6), (12, 12), (24, 24))))

SIZE = 64


def _model(seed: int = 0) -> Darknet:
    torch.manual_seed(seed)
    m = Darknet.from_text(CFG)
    m.train()
    return m


def _batch(seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(4, 3, SIZE, SIZE, generator=g)
    t = torch.tensor([[0, 1, 0.3, 0.3, 0.2, 0.2], [1, 0, 0.6, 0.5, 0.1, 0.15], [3, 2, 0.5, 0.5, 0.3, 0.3]])
    return x, t


def test_prunable_bn_lists_every_bn_conv():
    # layer 1 is shortcut-joined: pruned with a merged mask, so it is prunable too; the head conv has no BN
    model = _model()
    assert sp.prunable_bn(model) == [0, 1, 3]


def _train(alpha: float, steps: int = 6) -> np.ndarray:
    model = _model()
    loss_fn = YoloLoss(model)
    opt = _build_optimizer(model, TrainOptions("", "", "", 1, SIZE, 4, "", lr=0.01, momentum=0.9))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    idx = sp.prunable_bn(model)
    for s in range(steps):
        x, t = _batch(s)
        loss, _ = loss_fn(model(x), t, (SIZE, SIZE))
        loss.backward()
        optimizer_step(model, opt, scaler, alpha, idx, max_norm=1e9)
    return sp.gamma_abs(model, idx)


def test_large_alpha_shrinks_gammas():
    plain = _train(0.0)
    sparse = _train(5.0)
    # 6 SGD steps of lr 0.01 * alpha 5 pull each |gamma| (initially 1) down by ~0.3 more than the data term
    assert sparse.mean() < plain.mean() - 0.1
    assert (sparse < plain).mean() > 0.9


def test_accumulation_and_amp_semantics_match_explicit_l1_loss():
    """Documented: with K micro-batches, one alpha*K subgradient after unscaling equals autograd of
    sum_k (loss_k + alpha * sum|gamma|), with or without a loss scaler."""
    alpha, k = 0.3, 3
    ref = _model()
    idx = sp.prunable_bn(ref)
    loss_fn = YoloLoss(ref)
    for s in range(k):
        x, t = _batch(s)
        loss, _ = loss_fn(ref(x), t, (SIZE, SIZE))
        l1 = sum(g.abs().sum() for g in sp.bn_gammas(ref, idx))
        (loss + alpha * l1).backward()
    expected = [g.grad.clone() for g in sp.bn_gammas(ref, idx)]
    expected_conv = ref.module_list[3].conv.weight.grad.clone()

    for scale in (None, 2.0**12):
        model = _model()
        opt = _build_optimizer(model, TrainOptions("", "", "", 1, SIZE, 4, "", lr=0.0, momentum=0.0))
        scaler = torch.amp.GradScaler("cpu", init_scale=scale or 1.0, enabled=scale is not None)
        for s in range(k):
            x, t = _batch(s)
            loss, _ = loss_fn(model(x), t, (SIZE, SIZE))
            scaler.scale(loss).backward()
        # what optimizer_step does before stepping: unscale, then the L1 term for k micro-batches
        scaler.unscale_(opt)
        sp.add_l1_subgradient(model, alpha * k, idx)
        got = [g.grad for g in sp.bn_gammas(model, idx)]
        for e, gt in zip(expected, got, strict=True):
            torch.testing.assert_close(gt, e, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(model.module_list[3].conv.weight.grad, expected_conv, rtol=1e-4, atol=1e-5)


def test_amp_step_applies_penalty_to_unscaled_gradients():
    # Through optimizer_step itself: a scaled and an unscaled run take the same SGD step.
    results = []
    for scale in (None, 2.0**10):
        model = _model()
        opt = _build_optimizer(model, TrainOptions("", "", "", 1, SIZE, 4, "", lr=0.05, momentum=0.0))
        scaler = torch.amp.GradScaler("cpu", init_scale=scale or 1.0, enabled=scale is not None)
        x, t = _batch(0)
        loss, _ = YoloLoss(model)(model(x), t, (SIZE, SIZE))
        scaler.scale(loss).backward()
        optimizer_step(model, opt, scaler, 2.0, sp.prunable_bn(model), max_norm=1e9)
        results.append(sp.gamma_abs(model, sp.prunable_bn(model)))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-4, atol=1e-6)
    # and the penalty mattered: without it the step is different
    model = _model()
    opt = _build_optimizer(model, TrainOptions("", "", "", 1, SIZE, 4, "", lr=0.05, momentum=0.0))
    x, t = _batch(0)
    loss, _ = YoloLoss(model)(model(x), t, (SIZE, SIZE))
    loss.backward()
    optimizer_step(model, opt, torch.amp.GradScaler("cpu", enabled=False), 0.0, [], max_norm=1e9)
    assert np.abs(sp.gamma_abs(model, sp.prunable_bn(model)) - results[0]).max() > 0.05


def test_alpha_schedules():
    assert [sp.alpha_at(e, 10, 1e-3) for e in range(10)] == [1e-3] * 10
    decay = [sp.alpha_at(e, 10, 1e-3, "decay") for e in range(10)]
    assert decay[:7] == [1e-3] * 7
    assert decay[-1] == pytest.approx(1e-4)
    assert all(a >= b for a, b in zip(decay, decay[1:], strict=False))
    with pytest.raises(ValueError):
        sp.alpha_at(0, 10, 1e-3, "linear")


def test_gamma_log_writes_histograms_and_plot(tmp_path):
    logger = sp.GammaLog(tmp_path)
    rng = np.random.default_rng(0)
    for epoch, scale in enumerate((1.0, 0.1, 0.001)):
        share = logger.add(epoch, np.abs(rng.normal(0, scale, 500)))
    assert share > 0.9  # most |N(0, 0.001)| are below 1e-2
    logger.plot("test")
    with np.load(tmp_path / "gamma_hist.npz") as z:
        assert z["counts"].shape == (3, len(sp.HIST_EDGES) - 1)
        assert (z["counts"].sum(1) == 500).all()
        assert z["small_share"][0] < 0.05
    assert (tmp_path / "gamma_hist.png").stat().st_size > 1000
    again = sp.GammaLog(tmp_path)
    again.load(upto_epoch=2)
    assert again.epochs == [0, 1]


def test_removal_cost_equals_the_flops_a_real_prune_of_one_channel_saves():
    """The arithmetic cost of a channel (own output + every reader's input, over its shortcut group) is
    checked against the pruner itself: remove channel 0 of each group, rebuild, count GFLOPs."""
    m = Darknet(load_cfg(MODELS / "yolov3-spp3-tiny-width.cfg"))
    size = 256
    saved = sp.channel_removal_gflops(m, size)
    base = count_gflops(m, size)
    graph = channel_graph(m)
    convs = graph.prunable
    full = {i: np.ones(m.module_list[i].bn.weight.numel(), bool) for i in convs}
    groups = [g for g in propagate(graph, full).groups if set(g) <= set(convs)]
    assert len(groups) > 40 and any(len(g) == 9 for g in groups)  # SPP3: trunks, bottlenecks, SPP, FPN
    for group in groups:
        masks = {i: mask.copy() for i, mask in full.items()}
        for i in group:
            masks[i][0] = False
        pruned = Darknet(pruned_sections(m, propagate(graph, masks)))
        for i in group:
            assert saved[i] == pytest.approx(base - count_gflops(pruned, size), rel=1e-9), group


def test_flops_weighting_follows_the_removal_cost_with_mean_one():
    m = _model()
    idx = sp.prunable_bn(m)
    assert sp.channel_cost_weights(m, idx, "uniform", SIZE) == [1.0] * len(idx)
    w = np.array(sp.channel_cost_weights(m, idx, "flops", SIZE))
    saved = sp.channel_removal_gflops(m, SIZE)
    channels = np.array([m.module_list[i].bn.weight.numel() for i in idx], float)
    np.testing.assert_allclose((w * channels).sum() / channels.sum(), 1.0, rtol=1e-9)
    np.testing.assert_allclose(w / w[-1], [saved[i] / saved[idx[-1]] for i in idx], rtol=1e-9)
    # layers 0 and 1 share the shortcut's mask, so they carry the same (whole group's) cost
    assert w[0] == w[1]
    # the same ratios at any input size (every layer's FLOPs scale with H*W alike)
    np.testing.assert_allclose(sp.channel_cost_weights(m, idx, "flops", 2 * SIZE), w, rtol=1e-9)
    with pytest.raises(ValueError, match="unknown sparsity weighting 'area'"):
        sp.channel_cost_weights(m, idx, "area", SIZE)


def test_weighted_subgradient_equals_the_weighted_l1_term():
    idx = sp.prunable_bn(_model())
    weights = [3.0, 0.5, 1.25]
    alpha = 0.01
    grads = []
    for explicit in (False, True):
        m = _model()
        imgs, targets = _batch(1)
        loss, _ = YoloLoss(m)(m(imgs), targets, (SIZE, SIZE))
        if explicit:
            loss = loss + alpha * sum(w * g.abs().sum() for w, g in zip(weights, sp.bn_gammas(m, idx),
                                                                          strict=True))
        m.zero_grad()
        loss.backward()
        if not explicit:
            sp.add_l1_subgradient(m, alpha, idx, weights)
        grads.append([g.grad.clone() for g in sp.bn_gammas(m, idx)])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="2 sparsity weights for 3 BN layers"):
        sp.add_l1_subgradient(_model(), alpha, idx, [1.0, 1.0])
