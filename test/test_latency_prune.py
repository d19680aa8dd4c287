"""Pruning to a latency budget: the knapsack, the width selection, the latency table's cache, and the
plan it yields on the narrow YOLOv3-SPP3 (shortcut groups, the per-layer floor, rounding, exactness).

Nothing here depends on how fast the machine is: the selection runs on latency tables made from a
formula, and the one test that measures only checks which entries the table holds.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from test_prune import IMG, masked_copy, narrow_spp3, randomised, raw_outputs
from tiny_cfg import cfg, conv, head, shortcut

from slimyolo_ros.darknet.channel_graph import channel_graph
from slimyolo_ros.darknet.model import Darknet
from slimyolo_ros.errors import PruneError
from slimyolo_ros.prune.importance import gamma_max, gamma_sum
from slimyolo_ros.prune.knapsack import multiple_choice_knapsack
from slimyolo_ros.prune.latency_backends import ConvGeometry
from slimyolo_ros.prune.latency_problem import latency_model
from slimyolo_ros.prune.latency_select import (
    ConvTerm,
    WidthProblem,
    allowed_widths,
    greedy_shrink,
    select_widths,
)
from slimyolo_ros.prune.latency_table import OVERHEAD, LatencyTable, cache_path, measure_missing, table_key
from slimyolo_ros.prune.slimming import bn_gammas
from slimyolo_ros.prune.surgery import apply_plan


def brute_force(values, costs, budget):
    best, arg = -math.inf, None
    for pick in itertools.product(*(range(len(v)) for v in values)):
        cost = sum(c[j] for c, j in zip(costs, pick, strict=True))
        value = sum(v[j] for v, j in zip(values, pick, strict=True))
        if cost <= budget + 1e-12 and value > best:
            best, arg = value, list(pick)
    return best, arg


def test_knapsack_finds_the_known_optimum():
    # Three groups. Budget 10: the best is (1, 2, 0): cost 3 + 6 + 0 = 9, value 4 + 7 + 0 = 11; the
    # greedy-by-value pick (2, 2, 0) costs 12 and does not fit; (2, 1, 0) = 7 + 3 + 0 = 10, value 10.
    values = [np.array([0.0, 4.0, 6.0]), np.array([0.0, 3.0, 7.0]), np.array([0.0, 0.5])]
    costs = [np.array([0.0, 3.0, 7.0]), np.array([0.0, 3.0, 6.0]), np.array([0.0, 2.0])]
    assert multiple_choice_knapsack(values, costs, 10.0) == [1, 2, 0]
    assert brute_force(values, costs, 10.0) == (11.0, [1, 2, 0])
    # Negative costs (savings against a reference) are fine; a budget below the cheapest is refused.
    shifted = [c - 5 for c in costs]
    assert multiple_choice_knapsack(values, shifted, 10.0 - 15) == [1, 2, 0]
    with pytest.raises(PruneError, match="below the cheapest"):
        multiple_choice_knapsack(values, costs, -1.0)


def test_knapsack_matches_brute_force_on_random_cases():
    rng = np.random.default_rng(0)
    for _ in range(30):
        n = rng.integers(2, 5)
        values = [np.sort(rng.random(rng.integers(2, 5))) for _ in range(n)]
        costs = [np.sort(rng.integers(0, 20, len(v))).astype(float) for v in values]
        budget = float(rng.integers(0, 40))
        best, arg = brute_force(values, costs, budget)
        if arg is None:
            with pytest.raises(PruneError):
                multiple_choice_knapsack(values, costs, budget)
            continue
        # integer costs on a grid of quarter steps of the room above the cheapest pick: exact
        room = int(budget - sum(c.min() for c in costs))
        pick = multiple_choice_knapsack(values, costs, budget, resolution=max(1, room) * 4)
        assert sum(c[j] for c, j in zip(costs, pick, strict=True)) <= budget
        assert sum(v[j] for v, j in zip(values, pick, strict=True)) == pytest.approx(best)


def test_allowed_widths_round_and_keep_the_floor():
    assert allowed_widths(100, 8, 0.1).tolist() == [16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 100]
    assert allowed_widths(64, 16, 0.3).tolist() == [32, 48, 64]  # floor ceil(19.2) = 20 -> 32
    assert allowed_widths(6, 8, 0.1).tolist() == [6]  # narrower than one step: cannot shrink
    assert allowed_widths(10, 1, 0.5).tolist() == [5, 6, 7, 8, 9, 10]
    with pytest.raises(PruneError, match="round-to"):
        allowed_widths(10, 0, 0.1)


def separable_problem():
    """Two independent convs: a conv's time is its output width times a per-conv rate."""
    imp = [np.array([5.0, 4.0, 1.0, 0.5]), np.array([3.0, 2.9, 2.8, 0.1])]
    convs = [ConvTerm(lambda i, o: 1.0 * o, (), 3, 0), ConvTerm(lambda i, o: 2.0 * o, (), 3, 1)]
    return WidthProblem([np.array([1, 2, 3, 4]), np.array([1, 2, 3, 4])], imp, convs)


def test_select_widths_is_optimal_on_a_separable_problem():
    p = separable_problem()
    w, info = select_widths(p, 7.0)
    # Brute force over both widths: the budget 7 ms buys (3, 2) = 10 + 5.9 or (1, 3) = 5 + 8.7.
    best = max(((a, b) for a in range(1, 5) for b in range(1, 5) if a + 2 * b <= 7),
               key=lambda ab: p.kept_importance(0, ab[0]) + p.kept_importance(1, ab[1]))
    assert tuple(w) == best == (3, 2)
    assert info["predicted_ms"] == pytest.approx(7.0)
    with pytest.raises(PruneError, match="per-layer floor"):
        select_widths(p, 2.9)


def test_select_widths_fits_the_exact_total_when_convs_share_groups():
    # conv a: image -> g0; conv b: g0 -> g1; conv c: g1 -> fixed 10. Time = c_in * c_out.
    imp = [np.linspace(1, 0.1, 16), np.linspace(2, 0.1, 16)]
    convs = [ConvTerm(lambda i, o: i * o * 1e-2, (), 3, 0), ConvTerm(lambda i, o: i * o * 1e-2, (0,), 0, 1),
             ConvTerm(lambda i, o: i * o * 1e-2, (1,), 0, None, 10)]
    widths = [allowed_widths(16, 4, 0.25)] * 2
    p = WidthProblem(widths, imp, convs)
    full = p.total([16, 16])
    for budget in (0.3 * full, 0.5 * full, 0.8 * full):
        w, _ = select_widths(p, budget)
        assert p.total(w) <= budget + 1e-9
        assert all(k % 4 == 0 for k in w)
        # No single step up of one group would still fit: the budget is used, not wasted.
        for g in range(2):
            if w[g] < 16:
                up = list(w)
                up[g] += 4
                assert p.total(up) > budget
    shrunk = greedy_shrink(p, [16, 16], 0.5 * full)
    assert p.total(shrunk) <= 0.5 * full


def formula_table(lm, key=None) -> LatencyTable:
    """A table filled from a FLOPs-like formula instead of measurements (no timing in tests)."""
    table = LatencyTable(key or {"test": 1}, path=None)
    table.entries[OVERHEAD.key(1, 1)] = 0.01
    for g, points in lm.wanted().items():
        for i, o in points:
            flops = i * o * g.kernel ** 2 * g.height * g.width / g.stride ** 2
            table.entries[g.key(i, o)] = 0.01 + 1e-6 * flops
    return table


@pytest.fixture(scope="module")
def narrow_model():
    return randomised(narrow_spp3(8), seed=5)


@pytest.mark.parametrize("round_to", [2, 4])
def test_latency_plan_keeps_groups_equal_floor_and_rounding(narrow_model, round_to):
    model = narrow_model
    graph, gammas = channel_graph(model), bn_gammas(model)
    lm = latency_model(model, graph, gammas, gamma_sum, IMG, round_to, 0.25, points=4)
    p = lm.problem(formula_table(lm))
    full = p.total([int(w[-1]) for w in lm.widths])
    widths, _ = select_widths(p, 0.4 * full)
    assert p.total(widths) <= 0.4 * full
    plan = lm.plan(widths)
    defs = model.module_defs
    for i, s in enumerate(defs):
        if s.type == "shortcut":  # both sides of every residual sum keep the same channels
            j = i + int(s.options["from"])
            assert np.array_equal(plan.out_masks[i - 1], plan.out_masks[j])
    for group in lm.free:
        masks = [plan.conv_masks[c] for c in group.convs]
        assert all(np.array_equal(masks[0], m) for m in masks)
    for i in graph.prunable:
        c = int(defs[i].options["filters"])
        k = plan.kept(i)
        assert k >= math.ceil(0.25 * c)
        assert k % round_to == 0 or k == c, (i, k, c)
    for i in graph.heads:
        assert plan.out_masks[i].all()
    assert sum(plan.kept(i) for i in graph.prunable) < 0.8 * sum(int(defs[i].options["filters"])
                                                                for i in graph.prunable)
    # The kept channels of a group are its most important ones.
    for g, group in enumerate(lm.free):
        kept = plan.conv_masks[group.convs[0]]
        if 0 < kept.sum() < kept.size:
            assert lm.importance[g][kept].min() >= lm.importance[g][~kept].max()


def test_latency_pruned_model_equals_the_masked_model(narrow_model):
    model = narrow_model
    graph, gammas = channel_graph(model), bn_gammas(model)
    lm = latency_model(model, graph, gammas, gamma_max, IMG, 4, 0.1, points=3)
    p = lm.problem(formula_table(lm))
    widths, _ = select_widths(p, 0.5 * p.total([int(w[-1]) for w in lm.widths]))
    plan = lm.plan(widths)
    silent = masked_copy(model, plan, zero_beta=True)
    pruned = apply_plan(silent, plan, fold=True)
    assert sum(q.numel() for q in pruned.parameters()) < 0.8 * sum(q.numel() for q in model.parameters())
    x = torch.rand(2, 3, IMG, IMG)
    for a, b in zip(raw_outputs(silent, x), raw_outputs(pruned, x), strict=True):
        assert a.shape == b.shape
        assert torch.allclose(a, b, atol=1e-4, rtol=0), (a - b).abs().max()


def test_table_cache_key_and_invalidation(tmp_path):
    base = dict(backend="onnxruntime", device="cpu", threads=2, img_size=416, version="onnxruntime 1.0",
                device_label="cpu: X")
    key = table_key(**base)
    paths = {cache_path(key, tmp_path)}
    for change in (dict(threads=1), dict(img_size=608), dict(version="onnxruntime 1.1"),
                   dict(device_label="cpu: Y"), dict(backend="torch")):
        paths.add(cache_path(table_key(**{**base, **change}), tmp_path))
    assert len(paths) == 6  # every part of the key gives another file

    g = ConvGeometry(3, 1, 1, 13, 13, "leaky")
    table = LatencyTable.load(key, tmp_path)
    assert table.entries == {}
    table.entries[g.key(8, 16)] = 1.5
    table.save()
    again = LatencyTable.load(key, tmp_path)
    assert again.entries == {g.key(8, 16): 1.5}
    assert again.missing(g, [(8, 16), (16, 16)]) == [(16, 16)]
    # A file that claims another key (an older onnxruntime wrote it) or does not parse is not used.
    data = json.loads(again.path.read_text())
    data["key"]["version"] = "onnxruntime 0.9"
    again.path.write_text(json.dumps(data))
    assert LatencyTable.load(key, tmp_path).entries == {}
    again.path.write_text("{not json")
    assert LatencyTable.load(key, tmp_path).entries == {}


def test_table_interpolates_between_grid_points():
    g = ConvGeometry(1, 1, 0, 4, 4, "linear")
    table = LatencyTable({}, path=None)
    for i in (8, 24):
        for o in (8, 16):
            table.entries[g.key(i, o)] = i * o / 8
    assert table.lookup(g, [8, 24], [8, 16], 16, 12) == pytest.approx(16 * 12 / 8)
    assert table.lookup(g, [8, 24], [8, 16], 8, 16) == pytest.approx(16)


def test_measured_table_holds_every_grid_point(tmp_path):
    model = Darknet.from_text(cfg(conv(8, stride=2), conv(16, stride=2), conv(8, size=1), conv(16),
                                  shortcut(-3), head(2), width=32, height=32))
    graph, gammas = channel_graph(model), bn_gammas(model)
    lm = latency_model(model, graph, gammas, gamma_sum, 32, 4, 0.25, points=2)
    assert any(len(g.convs) == 2 for g in lm.free)  # the shortcut ties conv 1 and conv 3
    key = table_key("onnxruntime", "cpu", 1, 32)
    table = LatencyTable.load(key, tmp_path)
    wanted = lm.wanted()
    n = measure_missing(table, wanted, "onnxruntime", "cpu", 1, repeats=1)
    expected = {g.key(i, o) for g, pts in wanted.items() for i, o in pts} | {OVERHEAD.key(1, 1)}
    assert n == len(expected)
    assert set(table.entries) == expected
    assert all(np.isfinite(v) and v >= 0 for v in table.entries.values())
    reloaded = LatencyTable.load(key, tmp_path)
    assert measure_missing(reloaded, wanted, "onnxruntime", "cpu", 1, repeats=1) == 0
    # The head conv (fixed output) has one output width on its grid; a free conv has several.
    head_spec = next(sp for sp in lm.layers if sp.out_group is None)
    assert head_spec.couts == [graph.group_of[head_spec.index].channels]
    assert len(next(sp for sp in lm.layers if sp.out_group is not None).couts) == 2


def test_over_budget_tightens_and_tries_again(narrow_model, tmp_path):
    """The table is filled from the formula (so nothing is timed); the end-to-end 'measurement' is the
    table's prediction plus a fixed overhead the table cannot see, as routes and the decode are."""
    from slimyolo_ros.prune.latency_prune import LatencyTarget, prune_to_latency

    model = narrow_model
    graph, gammas = channel_graph(model), bn_gammas(model)
    lm = latency_model(model, graph, gammas, gamma_sum, IMG, 8, 0.1, points=5)
    key = table_key("onnxruntime", "cpu", 1, IMG)
    table = formula_table(lm, key)
    table.path = cache_path(key, tmp_path)
    table.save()
    p = lm.problem(table)
    full = p.total([int(w[-1]) for w in lm.widths])
    overhead = 0.1 * full

    def measure(pruned):
        # The formula is bilinear in the widths, so the table's interpolation of it is exact.
        widths = [pruned.module_list[g.convs[0]].conv.out_channels for g in lm.free]
        return p.total(widths) + overhead

    target = LatencyTarget(0.6 * full, img_size=IMG, threads=1, cache_dir=tmp_path, tries=5)
    pruned, plan, info = prune_to_latency(model, target, layer_keep=0.1, round_to=8, measure=measure)
    assert info["table"]["measured_now"] == 0  # every entry came from the cache file
    tries = info["tries"]
    assert len(tries) >= 2 and tries[0]["measured_ms"] > target.target_ms
    assert tries[1]["budget_ms"] < tries[0]["budget_ms"]
    assert info["within_budget"] and info["measured_ms"] <= target.target_ms
    assert 0 < info["importance_kept"] < 1
    assert [m.conv.out_channels for m in pruned.module_list if hasattr(m, "conv")] == \
        [plan.kept(i) for i, m in enumerate(pruned.module_list) if hasattr(m, "conv")]


@pytest.mark.slow  # measures a (small) latency table
def test_prune_command_with_a_latency_target(tmp_path, capsys):
    from slimyolo_ros.cli import main
    from slimyolo_ros.darknet.checkpoint import load_model, save_checkpoint

    model = randomised(narrow_spp3(16, 32), seed=6)
    save_checkpoint(tmp_path / "m.pt", model, [f"c{i}" for i in range(model.num_classes)], 32)
    common = ["prune", "--weights", str(tmp_path / "m.pt"), "--img-size", "32",
              "--out", str(tmp_path / "out")]
    # A budget no machine misses: the run's plumbing, not its speed, is under test.
    rc = main(common + ["--target-ms", "100000", "--threads", "1", "--latency-repeats", "1",
                        "--latency-cache", str(tmp_path / "cache"), "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    t = report["thresholds"]
    assert t["mode"] == "latency" and t["round_to"] == 8 and t["within_budget"]
    assert t["table"]["measured_now"] == t["table"]["entries"] > 0
    assert t["measured_ms"] > 0 and t["predicted_ms"] > 0
    pruned, _, _ = load_model(tmp_path / "out" / "pruned.pt")
    assert pruned.cfg_text() == (tmp_path / "out" / "pruned.cfg").read_text()
    with pytest.raises(SystemExit):  # one or the other
        main(common + ["--target-ms", "10", "--global-percent", "0.5"])
    assert "not allowed with argument" in capsys.readouterr().err
