"""bench/run.py's machinery on a tiny cfg: models via the real ``slimyolo prune``, forward rows from
the three real runtimes on square and rectangular inputs, the real detect_node end to end with an A/B
variant, and the generic table renderer. No timing assertions: the numbers only have to exist and be
positive; speed lives in docs/benchmarks.md."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from conftest import REPO
from tiny_cfg import cfg, conv, head, maxpool, shortcut

pytestmark = pytest.mark.slow  # prunes, exports and runs three runtimes and the node

sys.path.insert(0, str(REPO))

# a shortcut (prunable groups) and an SPP-like maxpool: the features slim-50 pruning meets in SPP3
TINY_CFG = cfg(conv(16, stride=2), conv(32, stride=2), conv(16, size=1), conv(32), shortcut(-3, "linear"),
               maxpool(5, 1), head(10, anchors=((4, 5), (8, 10), (16, 20))))

REQUIRED = {"kind", "model", "backend", "img_size", "input", "gflops", "params", "latency_ms_median"}
BACKENDS = ("torch", "onnxruntime", "opencv")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    import bench.sparse_model as sm
    from bench.common import fix_threads
    from bench.run import Bench, parse_args

    sm.USE_REFERENCE_FRAME = False  # ../shared is only read through the shared_reference fixture
    fix_threads(1)
    work = tmp_path_factory.mktemp("bench")
    cfg = work / "tiny.cfg"
    cfg.write_text(TINY_CFG)
    args = parse_args(["--quick", "--json", str(work / "out.json"), "--threads", "1", "--cfg", str(cfg),
                       "--work", str(work), "--warmup", "0", "--repeats", "1", "--sizes", "128",
                       "--models", "yolov3-spp3,slim-50", "--no-reference",
                       # a budget the tiny net always meets: the plumbing is under test, not the speed
                       "--latency-targets", "100000"])
    b = Bench(args)
    b.prepare()
    b.forward_table()
    b.speedups()
    return b


def test_rows_have_the_required_keys_for_every_model_backend_and_input(bench) -> None:
    rows = [r for r in bench.rows if r["kind"] == "forward"]
    assert {(r["model"], r["backend"], r["shape"]) for r in rows} == {
        (m, be, sh) for m in ("yolov3-spp3", "slim-50", "latency-100000ms") for be in BACKENDS
        for sh in ("square", "rect")}
    for r in rows:
        assert REQUIRED <= set(r), r
        assert r["img_size"] == 128
        assert r["latency_ms_median"] > 0 and r["gflops"] > 0 and r["params"] > 0
        # a 1920x1080 frame at 128: the square letterbox, or 128x72 padded to the next multiple of 32
        assert r["input"] == ("128x128" if r["shape"] == "square" else "128x96"), r
    g = {r["model"]: (r["gflops"], r["params"]) for r in rows}
    # slim-50 came out of the real pruner with sparse gammas: it must be smaller than its source.
    assert g["slim-50"][0] < g["yolov3-spp3"][0] and g["slim-50"][1] < g["yolov3-spp3"][1]


def test_every_model_is_compared_with_spp3_on_the_same_backend_and_shape(bench) -> None:
    fwd = {(r["model"], r["backend"], r["shape"]): r["latency_ms_median"] for r in bench.rows
           if r["kind"] == "forward"}
    ups = [r for r in bench.rows if r["kind"] == "speedup"]
    assert {(r["model"], r["backend"], r["shape"]) for r in ups} == {
        k for k in fwd if k[0] != "yolov3-spp3"}
    for r in ups:
        base = fwd[("yolov3-spp3", r["backend"], r["shape"])]
        ratio = base / fwd[(r["model"], r["backend"], r["shape"])]
        assert r["vs_spp3"] == pytest.approx(ratio, rel=1e-3, abs=1e-4)


def test_pruned_model_files_load_in_opencv(bench) -> None:
    import cv2

    mf = bench.models["slim-50"]
    assert (mf.cfg.parent / "prune_report.json").is_file()
    net = cv2.dnn.readNetFromDarknet(str(mf.cfg), str(mf.weights))
    assert net.getUnconnectedOutLayersNames()


def test_table_renders_selected_rows_and_nested_fields(bench, tmp_path, capsys) -> None:
    from bench.table import main, select, table

    rows = [*bench.rows, {"kind": "node", "model": "m", "node_stages_ms": {"forward": 12.345}}]
    torch_rows = select(rows, "forward", ["backend=torch", "shape=rect"])
    assert {r["model"] for r in torch_rows} == {"yolov3-spp3", "slim-50", "latency-100000ms"}
    assert len(torch_rows) == 3
    text = table(torch_rows, ["model", "input", "latency_ms_median"])
    assert text.splitlines()[0] == "| model | input | latency_ms_median |" and "| slim-50 | 128x96 |" in text
    assert table(select(rows, "node", []), ["model", "node_stages_ms.forward", "missing"]).endswith(
        "| m | 12.3 | – |")
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"run": {}, "rows": rows}))
    assert main([str(path), "--kind", "forward", "--cols", "model,backend", "--where", "shape=square"]) == 0
    assert capsys.readouterr().out.count("| slim-50 |") == 3


@pytest.mark.ros
def test_node_e2e_runs_the_real_node_with_a_variant_and_pairs_the_rounds(bench, tmp_path) -> None:
    """The real detect_node through the shared harness: serialised frames (stamp patched into the CDR
    bytes per frame) come back matched by stamp for the defaults and a rect:=false variant, with the
    node's own stage timings; a wrong stamp offset or a broken parse would time out here."""
    from bench.node_e2e import E2E, ab_rounds, paired_ratios

    e2e = E2E({"64x48": np.zeros((48, 64, 3), np.uint8), "33x17": np.full((17, 33, 3), 99, np.uint8)},
              tmp_path / "logs", timeout=120)
    try:
        rows = ab_rounds(e2e, bench.models["slim-50"].pt, "torch", 128,
                         {"defaults": [], "rect:=false": ["rect:=false"]}, 2, 1, 3, "slim-50",
                         log=lambda _: None)
    finally:
        e2e.close()
    assert {(r["variant"], r["frame"], r["round"]) for r in rows} == {
        (v, f, rd) for v in ("defaults", "rect:=false") for f in ("64x48", "33x17") for rd in (0, 1)}
    for r in rows:
        assert r["e2e_ms_runs"] == 3 and r["e2e_ms_median"] > 0 and r["peak_rss_mib"] > 0, r
        assert r["startup_s"] > 0
    # the node answers a frame the same way in every round (a new node process each time)
    answers: dict[tuple[str, str], set[int]] = {}
    for r in rows:
        answers.setdefault((r["variant"], r["frame"]), set()).add(r["detections"])
    assert all(len(a) == 1 for a in answers.values()), answers
    assert any(r["node_stages_ms"].get("forward", 0) > 0 for r in rows), rows
    ab = paired_ratios(rows, "defaults")
    assert {(r["variant"], r["frame"]) for r in ab} == {("rect:=false", "64x48"), ("rect:=false", "33x17")}
    assert all(r["rounds"] == 2 and r["ratio_min"] <= r["ratio_median"] <= r["ratio_max"] for r in ab)


def test_run_help_lists_the_variant_option() -> None:
    import subprocess

    r = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--help"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "--node-variant" in r.stdout
