"""YOLOv3 loss: target encoding, ignore threshold, ignore regions, finite gradients."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_cfg import cfg, conv, head, route

from slimyolo_ros.darknet.model import Darknet
from slimyolo_ros.train.loss import YoloLoss

# Two heads, one anchor each, 5x apart in size so a target shaped like one anchor matches only it
# (the ratio rule accepts shapes within 4x): the expected assignment is then unambiguous.
ANCHORS = ((8, 8), (40, 40))


def _cfg(thresh: float) -> str:
    return cfg(conv(8, stride=2), conv(8, stride=2), conv(8, stride=2),
               head(3, mask=(0,), anchors=ANCHORS, ignore_thresh=thresh), route(-3),
               conv(8, stride=2), head(3, mask=(1,), anchors=ANCHORS, ignore_thresh=thresh))

SIZE = 64
BIG = 30.0  # a logit whose sigmoid is 1 - 1e-13


def _model(thresh: float = 0.7) -> Darknet:
    return Darknet.from_text(_cfg(thresh))


def _empty_outputs(batch: int = 2) -> list[torch.Tensor]:
    # stride 8 -> 8x8 grid, stride 16 -> 4x4 grid; obj and class logits "certainly not"
    outs = [torch.zeros(batch, 1, n, n, 8) for n in (8, 4)]
    for o in outs:
        o[..., 4:] = -BIG
    return outs


def _encode(outs: list[torch.Tensor], b: int, cls: int, cx: float, cy: float, layer: int) -> None:
    """Write the raw output a perfect model would give for a box of exactly the layer's anchor shape."""
    n = outs[layer].shape[2]
    gx, gy = cx * n, cy * n
    gi, gj = int(gx), int(gy)
    fx, fy = gx - gi, gy - gj
    o = outs[layer][b, 0, gj, gi]
    o[0], o[1] = math.log(fx / (1 - fx)), math.log(fy / (1 - fy))
    o[2] = o[3] = 0.0  # exp(0) * anchor = the box size
    o[4] = BIG
    o[5 + cls] = BIG


def _targets() -> torch.Tensor:
    # [batch, cls, cx, cy, w, h] normalised: 8x8 px boxes go to the stride-8 head, 40x40 px to stride 16
    return torch.tensor([
        [0, 1, 0.30, 0.40, 8 / SIZE, 8 / SIZE],
        [0, 2, 0.55, 0.55, 40 / SIZE, 40 / SIZE],
        [1, 0, 0.70, 0.20, 8 / SIZE, 8 / SIZE],
    ])


def _encoded() -> list[torch.Tensor]:
    outs = _empty_outputs()
    _encode(outs, 0, 1, 0.30, 0.40, 0)
    _encode(outs, 0, 2, 0.55, 0.55, 1)
    _encode(outs, 1, 0, 0.70, 0.20, 0)
    return outs


def test_loss_near_zero_for_encoded_targets_and_large_for_random():
    loss_fn = YoloLoss(_model())
    loss, items = loss_fn(_encoded(), _targets(), (SIZE, SIZE))
    box, obj, cls, total = items.tolist()
    assert box < 1e-4 and obj < 1e-4 and cls < 1e-4, items
    assert math.isclose(loss.item(), total * 2, rel_tol=1e-5)  # x batch size

    torch.manual_seed(0)
    rand = [torch.randn_like(o) for o in _encoded()]
    _, items_r = loss_fn(rand, _targets(), (SIZE, SIZE))
    assert items_r[0] > 0.01 and items_r[1] > 100 * max(obj, 1e-6) and items_r[2] > 0.01, items_r


def test_misplaced_prediction_is_penalised():
    # the same perfect output but the 8x8 box predicted one cell to the right: box and obj losses grow
    loss_fn = YoloLoss(_model())
    outs = _empty_outputs()
    _encode(outs, 0, 1, 0.30 + 1 / 8, 0.40, 0)
    _encode(outs, 0, 2, 0.55, 0.55, 1)
    _encode(outs, 1, 0, 0.70, 0.20, 0)
    _, items = loss_fn(outs, _targets(), (SIZE, SIZE))
    assert items[1] > 1e-2


def test_ignore_thresh_from_cfg_spares_overlapping_predictions():
    # A confident duplicate in the neighbouring cell overlaps the GT by IoU ~0.9: with the cfg's
    # ignore_thresh=0.7 Darknet does not punish it; with ignore_thresh=1 it is plain background.
    def with_duplicate() -> list[torch.Tensor]:
        outs = _empty_outputs(1)
        cx = (2 + 0.95) / 8  # near the right edge of cell 2
        _encode(outs, 0, 0, cx, 0.5 + 0.5 / 8, 0)
        dup = outs[0][0, 0, 4, 3]
        dup[0] = math.log(0.001 / 0.999)  # centre at cell 3 + 0.001, i.e. 0.051 cells away
        dup[1] = 0.0
        dup[2] = dup[3] = 0.0
        dup[4] = BIG
        return outs

    targets = torch.tensor([[0, 0, (2 + 0.95) / 8, 0.5 + 0.5 / 8, 8 / SIZE, 8 / SIZE]])
    _, spared = YoloLoss(_model(0.7))(with_duplicate(), targets, (SIZE, SIZE))
    _, punished = YoloLoss(_model(1.0))(with_duplicate(), targets, (SIZE, SIZE))
    assert spared[1] < 1e-6
    assert punished[1] > 1e-2


def test_ignore_regions_mask_background_objectness():
    loss_fn = YoloLoss(_model())
    torch.manual_seed(1)
    outs = [torch.randn(2, 1, n, n, 8) for n in (8, 4)]
    no_targets = torch.zeros((0, 6))
    _, plain = loss_fn(outs, no_targets, (SIZE, SIZE))
    whole = torch.tensor([[0, 0.0, 0.0, 1.0, 1.0], [1, 0.0, 0.0, 1.0, 1.0]])
    _, masked = loss_fn(outs, no_targets, (SIZE, SIZE), ignore=whole)
    half = torch.tensor([[0, 0.0, 0.0, 1.0, 1.0]])  # image 0 only
    _, halved = loss_fn(outs, no_targets, (SIZE, SIZE), ignore=half)
    assert plain[1] > 1e-2
    assert masked[1] == 0.0
    assert 0.2 * plain[1] < halved[1] < 0.8 * plain[1]

    # a target inside an ignore region is still learnt (its positive term is not masked)
    _, with_gt = loss_fn(_empty_outputs(), _targets(), (SIZE, SIZE), ignore=whole)
    assert with_gt[1] > 1e-2


def test_gradients_finite_on_extreme_outputs():
    model = _model()
    model.train()
    loss_fn = YoloLoss(model)
    torch.manual_seed(2)
    x = torch.rand(2, 3, SIZE, SIZE)
    outs = model(x)
    outs = [o * 50 for o in outs]  # saturated logits and exp(tw) far out of range
    loss, _ = loss_fn(outs, _targets(), (SIZE, SIZE))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_distillation_gradient_vanishes_at_the_teacher_and_pulls_towards_it():
    loss_fn = YoloLoss(_model())
    g = torch.Generator().manual_seed(0)
    teacher = [torch.randn(2, 1, n, n, 8, generator=g) * 2 for n in (8, 4)]
    # At the teacher's own outputs every term is at its minimum: no gradient.
    same = [t.clone().requires_grad_(True) for t in teacher]
    loss, items = loss_fn.distill(same, teacher, (SIZE, SIZE))
    loss.backward()
    assert max(s.grad.abs().max().item() for s in same) < 1e-6
    assert items.shape == (4,) and bool(torch.isfinite(items).all())
    # From elsewhere, descending the loss moves objectness, classes and boxes to the teacher's.
    student = [torch.randn(2, 1, n, n, 8, generator=g).requires_grad_(True) for n in (8, 4)]

    probs = [0, 1, 4, 5, 6, 7]  # sigmoid offsets, objectness, classes; 2:4 are log sizes

    def gap() -> float:
        pairs = zip(student, teacher, strict=True)
        return sum((s[..., probs].sigmoid() - t[..., probs].sigmoid()).abs().mean().item()
                   + (s[..., 2:4] - t[..., 2:4]).abs().mean().item() for s, t in pairs)

    before = gap()
    opt = torch.optim.Adam(student, lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        loss_fn.distill(student, teacher, (SIZE, SIZE))[0].backward()
        opt.step()
    assert gap() < 0.3 * before, (before, gap())
    with pytest.raises(ValueError, match="teacher"):
        loss_fn.distill(student, teacher[:1], (SIZE, SIZE))
