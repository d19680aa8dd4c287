"""YOLOv3 loss on the raw outputs of a Darknet model's [yolo] layers.

Follows the ultralytics YOLOv3/v5 PyTorch ports (target assignment by anchor shape ratio,
CIoU box loss, IoU-valued objectness targets, per-layer balance), with two Darknet rules that the
ports dropped and SlimYOLOv3 trains with:

- ``ignore_thresh`` from each [yolo] section: a prediction that is not assigned a target but
  overlaps some ground truth by more than ignore_thresh is not pushed towards background;
- every ground truth always gets its best-shaped anchor over all layers (Darknet's rule), besides
  the ratio matches, so tiny VisDrone objects far below the smallest anchor are still learnt.

Dataset ignore regions (VisDrone category 0) mask the background term: a prediction whose
centre lies inside one is neither rewarded nor penalised, mirroring the evaluator, which drops
detections inside ignore regions.

The decoding matches the model's eval-mode output (Darknet): ``cx = (sigmoid(tx) + i) * stride``,
``w = exp(tw) * anchor``. Everything is written by hand because torchvision (box_iou, CIoU) cannot
be used with this torch build (see /work/shared/notes) and the target assignment is YOLO-specific.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class LossGains:
    """Loss weights: yolov5's box and class gains (scaled by layer count / classes in YoloLoss), and a
    stronger objectness gain than yolov5's 1.0 * (img/640)^2.

    Objectness is the only term that has to tell object cells from the ~99.6% background cells; with
    yolov5's image-size scaling it is ~10x weaker than the box term at the 256-320 px inputs of CPU
    runs, too weak for the assigned cells to separate from the background in a short run."""

    box: float = 0.05
    obj: float = 1.5
    cls: float = 0.5
    anchor_t: float = 4.0  # a target matches an anchor when both side ratios are within [1/4, 4]
    obj_iou: float = 1.0  # objectness target = (1 - obj_iou) + obj_iou * IoU(pred, target)
    box_iou: str = "ciou"  # "ciou" or "giou"


def box_iou_cxcywh(b1: torch.Tensor, b2: torch.Tensor, kind: str = "iou", eps: float = 1e-7) -> torch.Tensor:
    """Element-wise IoU / GIoU / CIoU of two ``...x4`` (cx, cy, w, h) tensors of the same shape."""
    b1x1, b1x2 = b1[..., 0] - b1[..., 2] / 2, b1[..., 0] + b1[..., 2] / 2
    b1y1, b1y2 = b1[..., 1] - b1[..., 3] / 2, b1[..., 1] + b1[..., 3] / 2
    b2x1, b2x2 = b2[..., 0] - b2[..., 2] / 2, b2[..., 0] + b2[..., 2] / 2
    b2y1, b2y2 = b2[..., 1] - b2[..., 3] / 2, b2[..., 1] + b2[..., 3] / 2
    inter = (torch.min(b1x2, b2x2) - torch.max(b1x1, b2x1)).clamp(0) * (
        torch.min(b1y2, b2y2) - torch.max(b1y1, b2y1)
    ).clamp(0)
    w1, h1, w2, h2 = b1[..., 2], b1[..., 3], b2[..., 2], b2[..., 3]
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    if kind == "iou":
        return iou
    cw = torch.max(b1x2, b2x2) - torch.min(b1x1, b2x1)  # enclosing box
    ch = torch.max(b1y2, b2y2) - torch.min(b1y1, b2y1)
    if kind == "giou":
        c_area = cw * ch + eps
        return iou - (c_area - union) / c_area
    if kind == "ciou":
        c2 = cw**2 + ch**2 + eps
        rho2 = (b2[..., 0] - b1[..., 0]) ** 2 + (b2[..., 1] - b1[..., 1]) ** 2
        v = (4 / math.pi**2) * (torch.atan(w2 / (h2 + eps)) - torch.atan(w1 / (h1 + eps))) ** 2
        with torch.no_grad():
            alpha = v / (v - iou + (1 + eps))
        return iou - (rho2 / c2 + v * alpha)
    raise ValueError(f"unknown IoU kind {kind!r}")


def pairwise_iou_cxcywh(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """IoU matrix N×M of (cx, cy, w, h) boxes ``a`` N×4 and ``b`` M×4."""
    a1, a2 = a[:, None, :2] - a[:, None, 2:] / 2, a[:, None, :2] + a[:, None, 2:] / 2
    b1, b2 = b[None, :, :2] - b[None, :, 2:] / 2, b[None, :, :2] + b[None, :, 2:] / 2
    inter = (torch.min(a2, b2) - torch.max(a1, b1)).clamp(0).prod(-1)
    return inter / (a[:, None, 2:].prod(-1) + b[None, :, 2:].prod(-1) - inter + eps)


def _wh_iou(wh1: torch.Tensor, wh2: torch.Tensor) -> torch.Tensor:
    """IoU of boxes sharing a centre: ``wh1`` N×2 vs ``wh2`` M×2 → N×M (Darknet's anchor choice)."""
    inter = torch.min(wh1[:, None], wh2[None]).prod(2)
    return inter / (wh1.prod(1)[:, None] + wh2.prod(1)[None] - inter + 1e-9)


def _layer_balance(stride: float) -> float:
    # yolov5's objectness balance: small-stride layers have many more cells (and mostly background),
    # so their mean objectness loss is weighted up.
    if stride <= 8:
        return 4.0
    if stride <= 16:
        return 1.0
    return 0.4


class YoloLoss:
    """Callable loss for a Darknet model: ``loss_fn(outputs, targets, input_hw, ignore=None)``.

    - ``outputs``: the training-mode list of raw B×A×H×W×(5+C) tensors, one per [yolo] layer;
    - ``targets``: n×6 ``[batch_index, class, cx, cy, w, h]`` normalised to the network input;
    - ``input_hw``: (H, W) of the network input in pixels (it varies under multi-scale);
    - ``ignore``: optional m×5 ``[batch_index, x1, y1, x2, y2]`` normalised ignore regions.

    Returns ``(loss, items)``: ``loss`` is the scalar to backpropagate (already multiplied by the
    batch size, as in the ultralytics ports, so the gradient is a sum over images and the learning
    rate does not depend on the batch size); ``items`` is a detached ``[box, obj, cls, total]``
    per-image tensor for logging.
    """

    def __init__(self, model: nn.Module, gains: LossGains | None = None):
        model = getattr(model, "module", model)  # DDP
        self.gains = gains or LossGains()
        self.layers = [model.module_list[i] for i in model.yolo_layers]
        self.num_classes = int(model.num_classes)
        nl = len(self.layers)
        self.box_gain = self.gains.box * 3 / nl
        self.obj_gain = self.gains.obj * 3 / nl
        self.cls_gain = self.gains.cls * self.num_classes / 80 * 3 / nl
        self.anchors = [layer.anchors.detach().float().cpu() for layer in self.layers]  # pixels
        self.ignore_thresh = [float(getattr(layer, "ignore_thresh", 0.7)) for layer in self.layers]

    def __call__(
        self,
        outputs: list[torch.Tensor],
        targets: torch.Tensor,
        input_hw: tuple[int, int],
        ignore: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        device = outputs[0].device
        targets = targets.to(device=device, dtype=torch.float32)
        height, width = int(input_hw[0]), int(input_hw[1])
        forced = self._best_anchor_overall(targets, width, height)
        lbox = torch.zeros((), device=device)
        lobj = torch.zeros((), device=device)
        lcls = torch.zeros((), device=device)
        bs = outputs[0].shape[0]
        for li, raw in enumerate(outputs):
            p = raw.float()
            _, na, ny, nx, _ = p.shape
            stride = height / ny
            anchors = self.anchors[li].to(device) / stride  # grid units
            b, a, gj, gi, tbox, tcls = self._assign(targets, anchors, nx, ny, forced, li)

            tobj = torch.zeros(p.shape[:4], device=device)
            if b.numel():
                ps = p[b, a, gj, gi]
                pbox = torch.cat((ps[:, :2].sigmoid(), torch.exp(ps[:, 2:4].clamp(max=8)) * anchors[a]), 1)
                iou = box_iou_cxcywh(pbox, tbox, self.gains.box_iou)
                lbox = lbox + (1.0 - iou).mean()
                tobj[b, a, gj, gi] = (1.0 - self.gains.obj_iou) + self.gains.obj_iou * iou.detach().clamp(0)
                if self.num_classes > 1:
                    t = torch.zeros_like(ps[:, 5:])
                    t[torch.arange(len(tcls), device=device), tcls] = 1.0
                    lcls = lcls + F.binary_cross_entropy_with_logits(ps[:, 5:], t)

            weight = self._background_weight(p, anchors, targets, ignore, li, tobj)
            bce = F.binary_cross_entropy_with_logits(p[..., 4], tobj, reduction="none")
            lobj = lobj + (bce * weight).mean() * _layer_balance(stride)

        lbox = lbox * self.box_gain
        lobj = lobj * self.obj_gain
        lcls = lcls * self.cls_gain
        total = lbox + lobj + lcls
        return total * bs, torch.stack((lbox, lobj, lcls, total)).detach()

    # -- target assignment -------------------------------------------------------------------
    def _best_anchor_overall(self, targets: torch.Tensor, width: int, height: int) -> torch.Tensor:
        """Per target, the (layer, anchor) pair whose shape fits it best over all layers (n×2)."""
        if not len(targets):
            return torch.zeros((0, 2), dtype=torch.long, device=targets.device)
        wh = targets[:, 4:6] * targets.new_tensor([width, height])
        all_anchors = torch.cat(self.anchors).to(targets.device)
        best = _wh_iou(wh, all_anchors).argmax(1)
        layer_of = torch.cat([torch.full((len(a),), i) for i, a in enumerate(self.anchors)])
        layer_of = layer_of.to(targets.device)
        first = torch.tensor([0] + [len(a) for a in self.anchors[:-1]]).cumsum(0).to(targets.device)
        return torch.stack((layer_of[best], best - first[layer_of[best]]), 1)

    def _assign(self, targets, anchors, nx, ny, forced, li):
        device = targets.device
        if not len(targets):
            e = torch.zeros(0, dtype=torch.long, device=device)
            return e, e, e, e, torch.zeros((0, 4), device=device), e
        t = targets * targets.new_tensor([1, 1, nx, ny, nx, ny])
        ratio = t[None, :, 4:6] / anchors[:, None]  # A×n×2
        match = torch.max(ratio, 1 / ratio).max(2).values < self.gains.anchor_t
        own = forced[:, 0] == li
        match[forced[own, 1], own.nonzero().squeeze(1)] = True
        ai, ti = match.nonzero(as_tuple=True)
        t = t[ti]
        b, c = t[:, 0].long(), t[:, 1].long()
        gxy, gwh = t[:, 2:4], t[:, 4:6]
        gi = gxy[:, 0].long().clamp(0, nx - 1)
        gj = gxy[:, 1].long().clamp(0, ny - 1)
        tbox = torch.cat((gxy - torch.stack((gi, gj), 1).float(), gwh), 1)
        return b, ai, gj, gi, tbox, c

    # -- which background predictions to penalise ----------------------------------------------
    @torch.no_grad()
    def _background_weight(self, p, anchors, targets, ignore, li, tobj) -> torch.Tensor:
        """1 where the objectness BCE counts, 0 for unassigned predictions Darknet would not punish."""
        bsz, na, ny, nx, _ = p.shape
        device = p.device
        gy, gx = torch.meshgrid(torch.arange(ny, device=device), torch.arange(nx, device=device),
                                indexing="ij")
        grid = torch.stack((gx, gy), -1).float()  # H×W×2
        cxy = p[..., :2].sigmoid() + grid  # B×A×H×W×2, grid units
        wh = torch.exp(p[..., 2:4].clamp(max=8)) * anchors.view(1, na, 1, 1, 2)
        boxes = torch.cat((cxy, wh), -1).view(bsz, -1, 4)
        skip = torch.zeros(bsz, boxes.shape[1], dtype=torch.bool, device=device)

        thresh = self.ignore_thresh[li]
        if len(targets) and thresh < 1.0:
            gt = targets[:, 2:6] * targets.new_tensor([nx, ny, nx, ny])
            timg = targets[:, 0].long()
            # one small IoU matrix per image keeps memory at N×T_image instead of B×N×T_batch
            for img in timg.unique().tolist():
                sel = timg == img
                skip[img] = pairwise_iou_cxcywh(boxes[img], gt[sel]).amax(1) > thresh

        if ignore is not None and len(ignore):
            ignore = ignore.to(device=device, dtype=torch.float32)
            centre = boxes[..., :2] / boxes.new_tensor([nx, ny])  # normalised
            rb = ignore[:, 0].long()
            c = centre[rb]  # M×N×2
            inside = (
                (c[..., 0] >= ignore[:, None, 1])
                & (c[..., 0] <= ignore[:, None, 3])
                & (c[..., 1] >= ignore[:, None, 2])
                & (c[..., 1] <= ignore[:, None, 4])
            )
            hit = torch.zeros(bsz, boxes.shape[1], device=device)
            hit.index_add_(0, rb, inside.float())
            skip |= hit > 0

        weight = (~skip).float().view(bsz, na, ny, nx)
        return torch.where(tobj > 0, torch.ones_like(weight), weight)

    # -- knowledge distillation ---------------------------------------------------------------
    def distill(
        self, student: list[torch.Tensor], teacher: list[torch.Tensor], input_hw: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Objectness-scaled output distillation (Mehta & Ozturk, "Object detection at 200 frames per
        second", 2018) from a teacher's raw heads to the student's, cell by cell.

        A pruned model keeps the convs before each [yolo] whole, so teacher and student heads line up.
        Objectness is matched everywhere (BCE against the teacher's probability: its soft
        background is what the hard targets lack); class probabilities and the box (sigmoid offsets
        and log sizes, squared error) only where the teacher sees an object, weighted by its
        objectness, so the teacher's noise on background cells does not drown the signal. The terms
        carry the ground-truth loss's gains, so a weight of 1 balances the two. Returns
        ``(loss × batch, [box, obj, cls, total] per image)`` like :meth:`__call__`.
        """
        if len(student) != len(teacher):
            raise ValueError(f"student has {len(student)} [yolo] outputs, teacher {len(teacher)}")
        device = student[0].device
        lbox = torch.zeros((), device=device)
        lobj = torch.zeros((), device=device)
        lcls = torch.zeros((), device=device)
        for s, t in zip(student, teacher, strict=True):
            if s.shape != t.shape:
                raise ValueError(f"student output {tuple(s.shape)} vs teacher {tuple(t.shape)}")
            s, t = s.float(), t.detach().float()
            t_obj = t[..., 4].sigmoid()
            lobj = lobj + F.binary_cross_entropy_with_logits(s[..., 4], t_obj) * _layer_balance(
                int(input_hw[0]) / s.shape[2])
            w = t_obj / t_obj.sum().clamp(min=1e-6)
            box = ((s[..., :2].sigmoid() - t[..., :2].sigmoid()) ** 2).sum(-1) + (
                (s[..., 2:4] - t[..., 2:4]) ** 2).sum(-1)
            lbox = lbox + (w * box).sum()
            if self.num_classes > 1:
                cls = F.binary_cross_entropy_with_logits(s[..., 5:], t[..., 5:].sigmoid(), reduction="none")
                lcls = lcls + (w * cls.mean(-1)).sum()
        lbox = lbox * self.box_gain
        lobj = lobj * self.obj_gain
        lcls = lcls * self.cls_gain
        total = lbox + lobj + lcls
        return total * student[0].shape[0], torch.stack((lbox, lobj, lcls, total)).detach()
