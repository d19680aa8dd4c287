"""Darknet cfg parsing, model building, the project cfgs against the authors' and the complexity counts."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import MODELS
from torch import nn

from slimyolo_ros import cli
from slimyolo_ros.darknet.cfg import load_cfg, parse_cfg, write_cfg
from slimyolo_ros.darknet.channel_graph import INPUT, channel_graph
from slimyolo_ros.darknet.complexity import count_gflops, count_params, layer_table
from slimyolo_ros.darknet.model import Darknet, MaxPool, Route, Shortcut, YOLOLayer
from slimyolo_ros.errors import CfgError, PruneError

# A small network using every section type: residual block, stride-2 and stride-1 (asymmetric) pools,
# an SPP-style stride-1 pool, upsample, routes with negative and absolute indices, two heads.
SMALL_CFG = """\
# a tiny test network
[net]
width=64
height=64
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=8
size=1
stride=1
pad=1
activation=mish

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky

[shortcut]
from=-3
activation=linear

[maxpool]
size=2
stride=2

[maxpool]
size=5
stride=1

[convolutional]
size=1
stride=1
pad=1
filters=21
activation=linear

[yolo]
mask = 3,4,5
anchors = 4,5,  8,9,  12,10,  20,22,  30,28,  50,40
classes=2
num=6
ignore_thresh=.7

[route]
layers = -5

[maxpool]
size=2
stride=1

[upsample]
stride=2

[route]
layers = -1, 0

[convolutional]
size=1
stride=1
pad=1
filters=21
activation=linear

[yolo]
mask = 0,1,2
anchors = 4,5,  8,9,  12,10,  20,22,  30,28,  50,40
classes=2
num=6
"""

PROJECT_CFGS = ["yolov3", "yolov3-tiny", "yolov3-spp1", "yolov3-spp3"]


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    seen = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            seen += 1
            if seen == occurrence:
                return number
    raise AssertionError(f"{needle!r} not in text")


def build(text: str) -> Darknet:
    return Darknet.from_text(text, source="bad.cfg")


# (id, old text, new text, text on the line the error must name, which occurrence, key, message part)
BAD_CASES = [
    ("unknown section", "[upsample]", "[upsampel]", "[upsampel]", 1, None, "unknown section [upsampel]"),
    ("unknown key", "activation=mish", "activation=mish\ngroups=2", "groups=2", 1, "groups",
     "unknown in [convolutional]"),
    ("non-integer value", "filters=16\nsize=3\nstride=2", "filters=sixteen\nsize=3\nstride=2",
     "filters=sixteen", 1, "filters", "expected an integer"),
    ("negative size", "filters=8\nsize=1", "filters=8\nsize=-1", "size=-1", 1, "size", "must be >= 1"),
    ("bad activation", "activation=mish", "activation=swish", "activation=swish", 1, "activation",
     "unsupported value 'swish'"),
    ("route past the start", "layers = -5", "layers = -50", "layers = -50", 1, "layers", "outside 0..8"),
    ("route forward", "layers = -1, 0", "layers = -1, 14", "layers = -1, 14", 1, "layers", "outside 0..11"),
    ("shortcut out of range", "from=-3", "from=-9", "from=-9", 1, "from", "outside 0..3"),
    ("shortcut channel mismatch", "from=-3", "from=-2", "from=-2", 1, "from", "channels"),
    ("yolo filters", "filters=21\nactivation=linear\n\n[yolo]\nmask = 3,4,5",
     "filters=20\nactivation=linear\n\n[yolo]\nmask = 3,4,5", "filters=20", 1, "filters",
     "len(mask) * (5 + classes)"),
    ("yolo classes", "classes=2\nnum=6\nignore_thresh", "classes=3\nnum=6\nignore_thresh", "filters=21", 1,
     "filters", "= 3 * (5 + 3) = 24"),
    ("mask out of range", "mask = 0,1,2", "mask = 0,1,7", "mask = 0,1,7", 1, "mask", "index 7 outside 0..5"),
    ("odd anchors", "anchors = 4,5,  8,9,  12,10,  20,22,  30,28,  50,40\nclasses=2\nnum=6\nignore",
     "anchors = 4,5,  8,9,  12,10,  20,22,  30,28,  50\nclasses=2\nnum=6\nignore", "30,28,  50", 1, "anchors",
     "pairs"),
    ("num disagrees", "num=6\nignore_thresh", "num=5\nignore_thresh", "num=5", 1, "num", "has 6 pairs"),
    ("bad float", "ignore_thresh=.7", "ignore_thresh=high", "ignore_thresh=high", 1, "ignore_thresh",
     "expected a number"),
    ("missing filters", "[convolutional]\nbatch_normalize=1\nfilters=8\n",
     "[convolutional]\nbatch_normalize=1\n", "[convolutional]", 1, None, "missing required key 'filters'"),
    ("no equals", "activation=mish", "activation mish", "activation mish", 1, None, "expected 'key=value'"),
    ("duplicate key", "activation=mish", "activation=mish\nsize=1", "size=1", 2, "size", "given twice"),
    ("unclosed header", "[upsample]", "[upsample", "[upsample", 1, None, "no closing ']'"),
]


@pytest.mark.parametrize("case", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_cfg_names_file_line_and_key(case):
    _, old, new, anchor, nth, key, part = case
    assert old in SMALL_CFG
    text = SMALL_CFG.replace(old, new, 1)
    with pytest.raises(CfgError) as info:
        build(text)
    message = str(info.value)
    assert message.startswith(f"bad.cfg:{line_of(text, anchor, nth)}:"), message
    if key:
        assert f"key '{key}'" in message, message
    assert part in message, message


def test_structural_errors():
    with pytest.raises(CfgError, match=r"bad.cfg:1: the first section must be \[net\]"):
        parse_cfg("[convolutional]\nfilters=3\n", "bad.cfg")
    with pytest.raises(CfgError, match=r"bad.cfg:1: 'key=value' before the first section"):
        parse_cfg("width=3\n[net]\n", "bad.cfg")
    with pytest.raises(CfgError, match=r"bad.cfg:3: a second \[net\]"):
        parse_cfg("[net]\nwidth=64\n[net]\n", "bad.cfg")
    with pytest.raises(CfgError, match=r"bad.cfg:1: no sections"):
        parse_cfg("# only a comment\n", "bad.cfg")
    with pytest.raises(CfgError, match=r"bad.cfg:1: .*no layers"):
        build("[net]\nwidth=64\n")
    with pytest.raises(CfgError, match=r"bad.cfg:2: \[net\] key 'width': must be >= 32"):
        build("[net]\nwidth=16\n[convolutional]\nfilters=3\n")
    with pytest.raises(CfgError, match=r"bad.cfg:\d+: \[yolo\] must follow a \[convolutional\]"):
        build("[net]\n[maxpool]\nsize=2\nstride=2\n[yolo]\nmask=0\nanchors=1,2\nclasses=1\n")


def test_missing_cfg_file_is_named(tmp_path):
    with pytest.raises(CfgError, match="nope.cfg: cfg file not found"):
        load_cfg(tmp_path / "nope.cfg")


def test_small_network_forward_and_layout():
    model = build(SMALL_CFG)
    types = [type(m) for m in model.module_list]
    assert types.count(MaxPool) == 3 and types.count(Route) == 2 and types.count(Shortcut) == 1
    conv = model.module_list[0]
    assert [name for name, _ in conv.named_children()] == ["conv", "bn", "act"]
    assert conv.conv.bias is None and model.module_list[7].conv.bias is not None
    assert isinstance(model.module_list[2].act, nn.Mish) and isinstance(model.module_list[7].act, nn.Identity)
    assert model.yolo_layers == [8, 14] and model.num_classes == 2 and model.img_size == 64
    assert model.out_channels[9] == 16 and model.out_channels[12] == 16 + 8

    x = torch.rand(2, 3, 64, 64)
    model.train()
    raws = model(x)
    assert [tuple(r.shape) for r in raws] == [(2, 3, 16, 16, 7), (2, 3, 64, 64, 7)]
    model.eval()
    with torch.no_grad():
        pred, raws_eval = model(x)
    assert pred.shape == (2, 3 * 16 * 16 + 3 * 64 * 64, 7)
    # decode of head 1, anchor 1, cell (y=5, x=9): stride 4, anchor (30, 28) in pixels
    raw = raws_eval[0][1, 1, 5, 9]
    row = pred[1, 1 * 256 + 5 * 16 + 9]
    assert torch.allclose(row[0], (torch.sigmoid(raw[0]) + 9) * 4)
    assert torch.allclose(row[1], (torch.sigmoid(raw[1]) + 5) * 4)
    assert torch.allclose(row[2:4], torch.exp(raw[2:4]) * torch.tensor([30.0, 28.0]))
    assert torch.allclose(row[4:], torch.sigmoid(raw[4:]))
    assert isinstance(model.module_list[8], YOLOLayer) and model.module_list[8].stride == 4


def test_channel_graph_ties_shortcuts_follows_routes_and_fixes_heads():
    g = channel_graph(build(SMALL_CFG))
    assert [grp.nodes for grp in g.groups] == [(INPUT,), (0,), (1, 3), (2,), (7,), (13,)]
    assert g.group_of[1] is g.group_of[3] and g.group_of[1].channels == 16
    assert g.heads == {7, 13} and g.prunable == (0, 1, 2, 3)
    assert [grp.fixed for grp in g.groups] == [True, False, False, False, True, True]
    # the shortcut (4) passes layer 3's channels on; route 12 = upsample(11) of route 9 (= layer 4), then 0
    assert g.layouts[4] == g.layouts[9] == g.layouts[11] == ((3, 16),)
    assert g.layouts[12] == ((3, 16), (0, 8))
    assert g.input_layout(0) == ((INPUT, 3),) and g.input_layout(13) == g.layouts[12]
    # a shortcut adding a concatenation to a single conv cannot be tied channel by channel
    text = ("[net]\nwidth=32\nheight=32\n\n" + "[convolutional]\nfilters=4\nsize=1\n\n" * 2
            + "[route]\nlayers=-1,-2\n\n[convolutional]\nfilters=8\nsize=1\n\n[shortcut]\nfrom=-2\n")
    with pytest.raises(PruneError, match=r"layer 4 \[shortcut\] \(cfg line 20\)"):
        channel_graph(build(text))


def test_darknet_maxpool_padding_never_wins():
    # yolov3-tiny's size=2 stride=1 pool pads right/bottom; padding must not beat negative activations
    x = -torch.arange(1.0, 10.0).view(1, 1, 3, 3)
    out = MaxPool(2, 1)(x)
    assert out.shape == x.shape
    assert out[0, 0, 2, 2] == x[0, 0, 2, 2]
    assert out[0, 0, 0, 0] == torch.max(x[0, 0, :2, :2])
    assert MaxPool(2, 2)(torch.zeros(1, 1, 13, 13)).shape[-1] == 7  # Darknet keeps the odd edge
    assert MaxPool(5, 1)(x).shape == x.shape


def test_cfg_text_round_trips():
    sections = parse_cfg(SMALL_CFG, "small.cfg")
    assert sections[0].comment == "a tiny test network"
    rewritten = write_cfg(sections)
    again = parse_cfg(rewritten, "again.cfg")
    assert [(s.type, s.options) for s in again] == [(s.type, s.options) for s in sections]
    model = build(SMALL_CFG)
    text = model.cfg_text()
    assert build(text).cfg_text() == text
    # a narrowed conv (what pruning does) shows up in the cfg the model writes
    model.module_list[0].conv = nn.Conv2d(3, 5, 3, 1, 1, bias=False)
    narrowed = parse_cfg(model.cfg_text())
    assert narrowed[1].options["filters"] == "5"
    assert narrowed[2].options["filters"] == "16"


def _signature(model: Darknet) -> list[tuple]:
    sig = []
    for section, module in zip(model.module_defs, model.module_list, strict=True):
        if section.type == "convolutional":
            c = module.conv
            sig.append(("conv", c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding,
                        hasattr(module, "bn"), type(module.act).__name__))
        elif isinstance(module, Route):
            sig.append(("route", tuple(module.layers)))
        elif isinstance(module, Shortcut):
            sig.append(("shortcut", module.source))
        elif isinstance(module, MaxPool):
            sig.append(("maxpool", module.size, module.stride, module.pad))
        elif isinstance(module, YOLOLayer):
            numbers = {k: [float(v) for v in section.options[k].split(",")] for k in ("mask", "anchors")}
            sig.append(("yolo", numbers["mask"], numbers["anchors"], module.num_classes))
        else:
            sig.append((section.type, getattr(module, "stride", None)))
    return sig


@pytest.mark.parametrize("name", PROJECT_CFGS)
def test_project_cfg_is_the_authors_network(name, shared_reference):
    with torch.device("meta"):  # structure only: skip allocating and initialising ~60M weights
        ours = Darknet.from_file(MODELS / f"{name}.cfg")
        theirs = Darknet.from_file(shared_reference / "cfg" / f"00-unpruned__{name}.cfg")
    assert _signature(ours) == _signature(theirs)
    assert count_params(ours) == count_params(theirs) == sum(p.numel() for p in theirs.parameters())
    assert ours.img_size == 416 and ours.num_classes == 10
    names = (MODELS / "visdrone.names").read_text().split()
    assert len(names) == ours.num_classes
    # the project cfg's own text survives a rewrite
    with torch.device("meta"):
        assert _signature(Darknet.from_text(ours.cfg_text())) == _signature(ours)


def test_every_reference_cfg_builds_and_runs(shared_reference):
    cfgs = sorted((shared_reference / "cfg").glob("*.cfg"))
    assert len(cfgs) >= 9
    x = torch.rand(1, 3, 64, 64)
    for path in cfgs:
        model = Darknet.from_file(path).eval()
        with torch.no_grad():
            pred, raws = model(x)
        cells = sum(r.shape[1] * r.shape[2] * r.shape[3] for r in raws)
        assert pred.shape == (1, cells, 15), path.name
        assert torch.isfinite(pred).all(), path.name
        assert count_params(model) == sum(p.numel() for p in model.parameters()), path.name


def test_spp3_params_and_gflops_match_an_independent_count():
    model = Darknet.from_file(MODELS / "yolov3-spp3.cfg").eval()
    flops = []

    def hook(module, inputs, output):
        k = module.weight.shape
        flops.append(2 * k[1] * k[2] * k[3] * k[0] * output.shape[2] * output.shape[3])

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.zeros(1, 3, 416, 416))
    params = sum(p.numel() for p in model.parameters())
    assert count_params(model) == params
    assert count_gflops(model, 416) == pytest.approx(sum(flops) / 1e9, rel=1e-12)
    assert len(flops) == sum(1 for d in model.module_defs if d.type == "convolutional")
    # the paper's input size scales FLOPs by exactly (832/416)^2 (all strides divide 416)
    assert count_gflops(model, 832) == pytest.approx(4 * count_gflops(model, 416), rel=1e-12)


def test_info_json(capsys):
    assert cli.main(["info", "--cfg", str(MODELS / "yolov3-tiny.cfg"), "--img-size", "320", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    model = Darknet.from_file(MODELS / "yolov3-tiny.cfg")
    assert out["img_size"] == 320
    assert out["params"] == sum(p.numel() for p in model.parameters())
    assert out["gflops"] == pytest.approx(count_gflops(model, 320))
    assert len(out["layers"]) == len(model.module_list)
    assert out["layers"][-1]["output"] == [45, 20, 20]
    assert out["layers"][16]["output"] == [45, 10, 10]
    assert layer_table(model, 320)[11]["output"] == [512, 10, 10]  # size-2 stride-1 pool keeps 10x10


def test_info_table_and_errors(capsys):
    assert cli.main(["info", "--cfg", str(MODELS / "yolov3.cfg")]) == 0
    out = capsys.readouterr().out
    assert "106  yolo" in out and "416x416" in out
    assert cli.main(["info", "--cfg", str(MODELS / "missing.cfg")]) == 2
    assert "missing.cfg: cfg file not found" in capsys.readouterr().err
