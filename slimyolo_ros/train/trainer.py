"""YOLOv3 training: SGD + warmup + cosine/step LR, EMA, AMP, gradient accumulation, multi-scale,
DDP under torchrun, BN sparsity (SlimYOLOv3), per-epoch COCO eval, resumable atomic checkpoints.

Run directory (``out``):
- ``last.pt``: written atomically at the end of every epoch; holds everything ``--resume`` needs:
  the EMA weights as ``state_dict`` (what inference, pruning and fine-tuning load), the raw training
  weights (``model_state``), optimizer, scheduler, AMP scaler, EMA update count, epoch, RNG states and
  the training arguments. A SIGKILL mid-epoch loses only that epoch.
- ``best.pt``: the EMA weights of the epoch with the best fitness (mAP@0.5 on --val; the paper's metric).
- ``results.csv`` + ``results.png``: losses, LR, sparsity and metrics per epoch.
- ``gamma_hist.npz`` + ``gamma_hist.png``: |gamma| of the prunable BNs per epoch (see sparsity.py).

Resume is exact on CPU: the sampler's shuffle is a function of (seed, epoch) and the python/numpy/torch
RNG states are restored, so 2 epochs straight equal 1 epoch + resume 1 epoch, bit for bit.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import random
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from slimyolo_ros.darknet.checkpoint import load_checkpoint, save_checkpoint
from slimyolo_ros.darknet.input_size import MAX_STRIDE
from slimyolo_ros.darknet.model import Darknet
from slimyolo_ros.errors import DatasetError, TrainingError, WeightsError
from slimyolo_ros.evaluate.run import METRICS, evaluate_model
from slimyolo_ros.io_utils import remove_stale_temps
from slimyolo_ros.train import sparsity as sp
from slimyolo_ros.train.loss import YoloLoss
from slimyolo_ros.train.options import TrainOptions, check_options
from slimyolo_ros.train.results import plot_results, read_csv, write_csv
from slimyolo_ros.train.runtime import (
    init_distributed,
    rng_state,
    seed_everything,
    set_rng_state,
    worker_init,
)

log = logging.getLogger(__name__)



class TrainCallback:
    """Hooks into a run from outside the training loop, called on every rank; subclass and override
    what you need (tests inject faults and read each rank's weights through them)."""

    def on_batch(self, step: int, images: torch.Tensor) -> torch.Tensor:
        """The images global step ``step`` trains on: ``images``, or a replacement."""
        return images

    def on_train_end(self, model: nn.Module, info: dict) -> None:
        """After the last epoch: this rank's trained model (unwrapped from DDP) and ``info`` with
        ``rank``, ``world`` and ``steps`` (optimizer steps this process took) besides the result."""


# ------------------------------------------------------------------------------------ EMA
class ModelEMA:
    """Exponential moving average of the weights (yolov5's): decay ramps up as 0.9999 (1 - e^(-u/2000)),
    so in short runs the average follows the model closely instead of staying at the initial weights."""

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000.0, updates: int = 0):
        self.ema = copy.deepcopy(_unwrap(model)).eval()
        self.updates = updates
        self.decay, self.tau = decay, tau
        for p in self.ema.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        msd = _unwrap(model).state_dict()
        for k, v in self.ema.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(msd[k].detach(), alpha=1 - d)
            else:
                v.copy_(msd[k])


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


@torch.no_grad()
def initialize_head_biases(model: Darknet, img_size: int, objects_per_image: float = 8.0) -> None:
    """Start the convs feeding each [yolo] layer at sensible priors (the ultralytics ports' bias init):
    objectness at ~``objects_per_image`` objects per image spread over the layer's cells, class scores
    at ~0.6/nc. From a zero-mean init every cell starts at sigmoid(0) = 0.5 "object", and with the
    mean-reduced objectness loss it takes hundreds of steps just to learn that cells are background."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    model(torch.zeros(1, model.in_channels, img_size, img_size, device=device))  # sets each layer's stride
    model.train(was_training)
    for i in model.yolo_layers:
        layer = model.module_list[i]
        conv = model.module_list[i - 1].conv
        if conv.bias is None:
            continue
        na, nc = layer.num_anchors, layer.num_classes
        b = conv.bias.view(na, 5 + nc)
        b[:, 4] += math.log(objects_per_image / (img_size / layer.stride) ** 2)
        if nc > 1:
            b[:, 5:] += math.log(0.6 / (nc - 0.99))


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches, device: torch.device) -> None:
    """Recompute every BN's running mean/var as the exact average over ``batches`` (precise BN).

    The running statistics follow the weights with momentum 0.03; in short runs they still hold a large
    share of their initial values (var = 1) when the model is evaluated and saved, several times the true
    batch variance, so in eval mode the activations shrink layer after layer until a deep network's output
    no longer depends on the image. Recalibrating the saved model on a few un-augmented training batches
    fixes its eval mode and costs a forward pass over at most 64 images per evaluated epoch; the training
    dynamics are untouched."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    momenta = [m.momentum for m in bns]
    was_training = model.training
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    for imgs in batches:
        model(imgs.to(device).float())
    for m, momentum in zip(bns, momenta, strict=True):
        m.momentum = momentum
    model.train(was_training)


# ------------------------------------------------------------------------------------ data
def _load_dataset(root: str, what: str, skip_bad: bool, split: str):
    from slimyolo_ros.data.datasets import read_dataset

    dataset = read_dataset(root, split=split, skip_bad=skip_bad)
    log.info("%s set %s", what, dataset.describe())
    return dataset


def build_model(cfg: str | os.PathLike, class_names: Sequence[str]) -> Darknet:
    """The cfg's network with its [yolo] heads sized for ``class_names`` (a log line says what changed)."""
    from slimyolo_ros.darknet.cfg import load_cfg
    from slimyolo_ros.darknet.classes import set_classes

    sections, changes = set_classes(load_cfg(cfg), len(class_names), source=str(cfg))
    if changes:
        log.info("%s: adapted to the dataset's %d classes: %s", cfg, len(class_names), "; ".join(changes))
    return Darknet(sections, source=str(cfg))


def _unpack_batch(batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(images, targets, ignore regions or None) from whatever ``collate`` returns."""
    if isinstance(batch, dict):
        return batch["images"], batch["targets"], batch.get("ignore")
    imgs, targets = batch[0], batch[1]
    ignore = batch[4] if len(batch) > 4 and isinstance(batch[4], torch.Tensor) else None
    return imgs, targets, ignore


# ------------------------------------------------------------------------------------ optimizer, LR
def _build_optimizer(model: nn.Module, opt: TrainOptions) -> torch.optim.Optimizer:
    """SGD, weight decay on conv weights only (not on BN gammas/betas or biases, as in the ports)."""
    bn_w, conv_w, biases = [], [], []
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            bn_w.append(module.weight)
            biases.append(module.bias)
        elif isinstance(module, nn.Conv2d):
            conv_w.append(module.weight)
            if module.bias is not None:
                biases.append(module.bias)
    if opt.optimizer == "adam":
        # ultralytics' --adam: beta1 = momentum. It converges faster in short CPU runs; SGD stays the
        # default (the SlimYOLOv3 recipe; the L1 subgradient's step is alpha*lr only under SGD)
        optimizer: torch.optim.Optimizer = torch.optim.Adam(bn_w, lr=opt.lr, betas=(opt.momentum, 0.999))
    else:
        optimizer = torch.optim.SGD(bn_w, lr=opt.lr, momentum=opt.momentum, nesterov=opt.momentum > 0)
    optimizer.add_param_group({"params": conv_w, "weight_decay": opt.weight_decay})
    optimizer.add_param_group({"params": biases})
    return optimizer


def _lr_lambda(opt: TrainOptions):
    epochs, final = max(opt.epochs, 1), opt.lr_final
    if opt.lr_schedule == "cosine":
        return lambda e: ((1 - math.cos(e * math.pi / epochs)) / 2) * (final - 1) + 1
    if opt.lr_schedule == "step":  # Darknet-style: x0.1 at 80% and again at 90% of the epochs
        return lambda e: 0.1 ** ((e >= 0.8 * epochs) + (e >= 0.9 * epochs))
    raise TrainingError(f"--lr-schedule {opt.lr_schedule!r}: expected cosine or step")


# ------------------------------------------------------------------------------------ the trainer
def optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                   l1_alpha: float, prunable: list[int], max_norm: float = 10.0,
                   l1_weights: list[float] | None = None) -> torch.Tensor:
    """One optimizer step on the accumulated gradients: unscale (AMP), add the BN L1 subgradient
    ``l1_alpha * sign(gamma)`` to the true gradients, clip, step, update the scale, zero the grads.
    Returns the gradient norm before clipping (inf/NaN under AMP means the scaler skipped the step)."""
    scaler.unscale_(optimizer)
    sp.add_l1_subgradient(model, l1_alpha, prunable, l1_weights)
    norm = nn.utils.clip_grad_norm_(model.parameters(), max_norm=max_norm)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return norm


def _fmt(x: float) -> str:
    return f"{x:.6g}"


# Options a resumed run may take from the new invocation; everything else comes from last.pt.
RESUME_OVERRIDES = ("workers", "progress")


def train(cfg: str | os.PathLike | None, data: str | os.PathLike | None, val: str | os.PathLike | None,
          epochs: int | None, img_size: int | None, batch: int | None, out: str | os.PathLike,
          weights: str | os.PathLike | None = None, resume: bool = False, device: str = "auto",
          sparsity: float = 0.0, sparsity_schedule: str = "constant",
          callbacks: Sequence[TrainCallback] = (), **kwargs: Any) -> dict:
    """Train a Darknet cfg on a dataset in any format ``data.datasets.read_dataset`` reads (its class names
    size the [yolo] heads); see the module docstring for the outputs.

    ``kwargs`` are the other :class:`TrainOptions` fields. With ``resume=True`` the options stored in
    ``out/last.pt`` are used (``epochs`` may be raised to train longer; ``device``, ``workers`` and
    ``progress`` may differ) and training continues after the last finished epoch. Returns ``{"best",
    "last", "epochs_done", "metrics", "best_fitness", ...}``.
    """
    out = Path(out)
    known = {f.name for f in fields(TrainOptions)}
    unknown = set(kwargs) - known
    if unknown:
        raise TypeError(f"unknown training options: {', '.join(sorted(unknown))}")
    ckpt = None
    if resume:
        ckpt, opt = _resume_options(out, epochs, device, kwargs)
    else:
        missing = [n for n, v in (("cfg", cfg), ("data", data), ("val", val), ("epochs", epochs),
                                  ("img_size", img_size), ("batch", batch)) if v is None]
        if missing:
            raise TrainingError(f"missing training options: {', '.join(missing)}")
        opt = TrainOptions(cfg=str(cfg), data=str(data), val=str(val), epochs=int(epochs),
                           img_size=int(img_size), batch=int(batch), out=str(out),
                           weights=None if weights is None else str(weights), device=device,
                           sparsity=float(sparsity), sparsity_schedule=sparsity_schedule, **kwargs)
    check_options(opt)
    return _Trainer(opt, ckpt, callbacks).run()


def _resume_options(out: Path, epochs: int | None, device: str, kwargs: dict) -> tuple[dict, TrainOptions]:
    last = out / "last.pt"
    if not last.is_file():
        raise TrainingError(f"{last}: nothing to resume (no last.pt in the run directory)")
    ckpt = load_checkpoint(last)
    if "train_options" not in ckpt or "optimizer" not in ckpt:
        raise TrainingError(f"{last}: not a resumable training checkpoint (no optimizer/options)")
    known = {f.name for f in fields(TrainOptions)}
    # keys of options that no longer exist (older runs) are dropped
    stored = {k: v for k, v in ckpt["train_options"].items() if k in known}
    stored.update({k: v for k, v in kwargs.items() if k in RESUME_OVERRIDES})
    stored["device"] = device
    stored["out"] = str(out)
    if epochs is not None:
        stored["epochs"] = int(epochs)
    return ckpt, TrainOptions(**stored)


class _Trainer:
    def __init__(self, opt: TrainOptions, ckpt: dict | None, callbacks: Sequence[TrainCallback] = ()):
        self.opt = opt
        self.callbacks = list(callbacks)
        self.resume_ckpt = ckpt
        self.out = Path(opt.out)

    # -------------------------------------------------------------------------------- setup
    def _setup(self) -> None:
        from slimyolo_ros.data.dataset import YoloDataset, collate

        o = self.opt
        self.dist, self.device = init_distributed(o.device)
        self.cuda = self.device.type == "cuda"
        seed_everything(o.seed + self.dist.rank)
        if self.cuda:
            torch.backends.cudnn.benchmark = True  # fixed-size batches: let cuDNN pick the fastest kernels
        train_set = _load_dataset(o.data, "training", o.skip_bad, "train")
        self.class_names = list(train_set.class_names)
        self.train_samples = train_set.samples
        self.val_samples = None
        if self.dist.main:
            val_set = _load_dataset(o.val, "validation", o.skip_bad, "val")
            if val_set.class_names != self.class_names:
                raise DatasetError(f"--val {o.val}: its classes ({', '.join(val_set.class_names)}) differ "
                                   f"from those of --data {o.data} ({', '.join(self.class_names)})")
            self.val_samples = val_set.samples
        self.model = build_model(o.cfg, self.class_names)
        fresh_heads = False
        if o.weights and self.resume_ckpt is None:
            fresh_heads = self._load_initial_weights(o.weights, o.cutoff)
        if self.resume_ckpt is None and (not o.weights or o.cutoff is not None or fresh_heads):
            initialize_head_biases(self.model, o.img_size)  # heads the initial weights did not set
        self.model.to(self.device)
        self.teacher = self._load_teacher() if o.teacher_weights else None

        self.dataset = YoloDataset(self.train_samples, o.img_size, augment=o.augment, mosaic=o.mosaic,
                                   flip_ud=o.flip_ud)
        per_rank = max(1, o.batch // self.dist.world)
        self.generator = torch.Generator()
        if self.dist.enabled:
            self.sampler = torch.utils.data.DistributedSampler(
                self.dataset, num_replicas=self.dist.world, rank=self.dist.rank, shuffle=True, seed=o.seed)
        else:
            self.sampler = torch.utils.data.RandomSampler(self.dataset, generator=self.generator)
        self.loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=per_rank, sampler=self.sampler, num_workers=o.workers,
            collate_fn=collate, pin_memory=self.cuda, worker_init_fn=worker_init, generator=self.generator,
            drop_last=False)
        self.nb = len(self.loader)

        self.gs = MAX_STRIDE  # multi-scale sizes stay valid input sizes
        self.loss_fn = YoloLoss(self.model)
        self.optimizer = _build_optimizer(self.model, o)
        self.lf = _lr_lambda(o)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda=self.lf)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.cuda)
        self.ema = ModelEMA(self.model) if o.ema else None
        self.prunable = sp.prunable_bn(self.model)
        self.l1_weights = sp.channel_cost_weights(self.model, self.prunable, o.sparsity_weighting, o.img_size)
        self.gamma_log = sp.GammaLog(self.out)
        self.start_epoch = 0
        self.steps = 0  # optimizer steps taken by this process
        self.best_fitness = -1.0
        self.rows: list[dict] = []
        if self.resume_ckpt is not None:
            self._restore(self.resume_ckpt)
        if self.dist.enabled:
            if o.sync_bn and self.cuda:
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            elif o.sync_bn and self.dist.main:
                log.warning("--sync-bn needs CUDA; training with per-process BN statistics")
            self.model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.cuda else None)

    def _load_teacher(self) -> nn.Module:
        """The distillation teacher, frozen in eval mode; its [yolo] heads must match the student's."""
        from slimyolo_ros.darknet.checkpoint import load_model

        o = self.opt
        teacher, _, _ = load_model(o.teacher_weights, cfg=o.teacher_cfg, device=self.device)
        t_heads = [teacher.module_list[i] for i in teacher.yolo_layers]
        s_heads = [self.model.module_list[i] for i in self.model.yolo_layers]
        same = len(t_heads) == len(s_heads) and all(
            t.num_classes == s.num_classes and torch.equal(t.anchors.cpu(), s.anchors.cpu())
            for t, s in zip(t_heads, s_heads, strict=False))
        if not same:
            def heads(ms):
                return "; ".join(f"{m.num_classes} classes, anchors {m.anchors.tolist()}" for m in ms)
            raise TrainingError(f"--teacher-weights {o.teacher_weights}: its [yolo] layers "
                                f"({heads(t_heads)}) differ from those of {o.cfg} ({heads(s_heads)}); "
                                "distillation matches the heads cell by cell")
        for prm in teacher.parameters():
            prm.requires_grad_(False)
        return teacher.eval()

    def _load_initial_weights(self, weights: str, cutoff: int | None) -> bool:
        """Load ``weights``; True when the [yolo] heads were left as initialised (a checkpoint trained on
        another class count: everything but the convs before the [yolo] layers is loaded)."""
        path = Path(weights)
        if path.suffix == ".pt":
            ck = load_checkpoint(path)
            if len(ck.get("class_names") or []) not in (0, len(self.class_names)):
                return self._load_all_but_heads(path, ck)
            try:
                self.model.load_state_dict(ck["state_dict"], strict=True)
            except RuntimeError as exc:
                detail = str(exc).strip().splitlines()
                raise WeightsError(f"{path}: state_dict does not fit {self.opt.cfg}: "
                                   f"{' '.join(d.strip() for d in detail[:2])}") from None
        else:
            from slimyolo_ros.darknet.weights import load_darknet_weights

            load_darknet_weights(self.model, path, cutoff=cutoff)
        return False

    def _load_all_but_heads(self, path: Path, ck: dict) -> bool:
        heads = tuple(f"module_list.{i - 1}." for i in self.model.yolo_layers)
        own = self.model.state_dict()
        body = {k: v for k, v in ck["state_dict"].items() if not k.startswith(heads)}
        wrong = sorted((set(own) ^ set(body)) - {k for k in own if k.startswith(heads)}) + \
            [k for k in body if k in own and body[k].shape != own[k].shape]
        if wrong:
            raise WeightsError(f"{path}: state_dict does not fit {self.opt.cfg} outside the [yolo] heads "
                               f"either (first difference: {wrong[0]})")
        self.model.load_state_dict(body, strict=False)
        log.info("%s: trained for %d classes (%s); loaded all but the %d convs before the [yolo] layers, "
                 "which start fresh for the dataset's %d", path, len(ck["class_names"]),
                 ", ".join(map(str, ck["class_names"])), len(heads), len(self.class_names))
        return True

    def _restore(self, ck: dict) -> None:
        self.model.load_state_dict(ck["model_state"])
        if self.ema is not None:
            self.ema.ema.load_state_dict(ck["state_dict"])
            self.ema.updates = int(ck.get("ema_updates", 0))
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        if "scaler" in ck and self.cuda:
            self.scaler.load_state_dict(ck["scaler"])
        self.start_epoch = int(ck["epoch"]) + 1
        self.best_fitness = float(ck.get("best_fitness", -1.0))
        if self.dist.main and "rng" in ck:
            set_rng_state(ck["rng"])
        else:  # other ranks: a fresh stream that still depends only on (seed, rank, epoch)
            seed_everything(self.opt.seed + self.dist.rank + 1000 * self.start_epoch)
        self.rows = read_csv(self.out / "results.csv", self.start_epoch)
        self.gamma_log.load(self.start_epoch)
        # move optimizer state to the device
        for state in self.optimizer.state.values():
            for k, v in state.items():
                if isinstance(v, torch.Tensor):
                    state[k] = v.to(self.device)

    # -------------------------------------------------------------------------------- loop
    def run(self) -> dict:
        try:
            self._setup()
            if self.dist.main:
                self.out.mkdir(parents=True, exist_ok=True)
                remove_stale_temps(self.out)  # a save killed mid-write (SIGKILL) left its temporary file
                self._say(f"training {self.opt.cfg} on {self.opt.data} ({len(self.train_samples)} images, "
                          f"{self.nb} batches/epoch, world {self.dist.world}, {self.device}); "
                          f"epochs {self.start_epoch}..{self.opt.epochs - 1} -> {self.out}")
            metrics: dict = {}
            for epoch in range(self.start_epoch, self.opt.epochs):
                metrics = self._epoch(epoch)
            result = {"best": str(self.out / "best.pt"), "last": str(self.out / "last.pt"),
                      "results_csv": str(self.out / "results.csv"), "epochs_done": self.opt.epochs,
                      "best_fitness": self.best_fitness, "metrics": metrics or self._last_metrics()}
            for cb in self.callbacks:
                cb.on_train_end(_unwrap(self.model), {**result, "rank": self.dist.rank,
                                                      "world": self.dist.world, "steps": self.steps})
            return result
        finally:
            # _setup may fail before self.dist exists (a bad --device): its error must surface, not this
            if getattr(self, "dist", None) is not None and self.dist.enabled and dist.is_initialized():
                dist.destroy_process_group()

    def _last_metrics(self) -> dict:
        for r in reversed(self.rows):
            if r.get("map50") not in ("", None):
                return {k: float(r[k]) for k in METRICS}
        return {}

    def _say(self, msg: str) -> None:
        if self.dist.main:
            print(msg, file=sys.stderr, flush=True)

    def _epoch(self, epoch: int) -> dict:
        from tqdm import tqdm

        o, model = self.opt, self.model
        t0 = time.time()
        model.train()
        self.generator.manual_seed(o.seed * 100003 + epoch)  # shuffle = f(seed, epoch): resume-exact
        if self.dist.enabled:
            self.sampler.set_epoch(epoch)
        alpha = sp.alpha_at(epoch, o.epochs, o.sparsity, o.sparsity_schedule)
        nw = round(o.warmup_epochs * self.nb)
        mean_items = torch.zeros(4)
        mean_kd = 0.0
        pending = 0  # micro-batches accumulated since the last optimizer step
        self.optimizer.zero_grad(set_to_none=True)
        bar = tqdm(enumerate(self.loader), total=self.nb, file=sys.stderr, dynamic_ncols=True, leave=False,
                   desc=f"epoch {epoch + 1}/{o.epochs}", disable=not (self.dist.main and o.progress))
        for i, batch in bar:
            ni = i + self.nb * epoch  # global step
            imgs, targets, ignore = _unpack_batch(batch)
            imgs = imgs.to(self.device, non_blocking=True).float()
            for cb in self.callbacks:
                imgs = cb.on_batch(ni, imgs)
            if ni < nw:  # warmup: LR 0 -> scheduled value, momentum 0.8 -> momentum
                # (no yolov5-style high bias LR at the start: over a warmup of a few steps, as in short
                # CPU runs, it wrecks the head's bias init and slows learning the boxes)
                for g in self.optimizer.param_groups:  # ni + 1: the first step already moves the weights
                    g["lr"] = float(np.interp(ni + 1, [0, nw], [0.0, g["initial_lr"] * self.lf(epoch)]))
                    m = float(np.interp(ni + 1, [0, nw], [0.8, o.momentum]))
                    if "betas" in g:
                        g["betas"] = (m, g["betas"][1])
                    else:
                        g["momentum"] = m
            if o.multi_scale:
                gs = self.gs
                size = max(gs, random.randrange(int(o.img_size * 0.5), int(o.img_size * 1.5) + gs) // gs * gs)
                if size != imgs.shape[-1]:
                    imgs = nn.functional.interpolate(imgs, size=(size, size), mode="bilinear",
                                                     align_corners=False)

            step_now = (i + 1) % o.accumulate == 0 or i == self.nb - 1
            sync = self.dist.enabled and not step_now
            ctx = model.no_sync() if sync else nullcontext()
            with ctx:
                with torch.autocast(device_type="cuda", enabled=self.cuda):
                    outputs = model(imgs)
                loss, items = self.loss_fn(outputs, targets.to(self.device), imgs.shape[-2:], ignore)
                if self.teacher is not None:
                    with torch.no_grad(), torch.autocast(device_type="cuda", enabled=self.cuda):
                        _, t_raws = self.teacher(imgs)
                    kd, kd_items = self.loss_fn.distill(outputs, t_raws, imgs.shape[-2:])
                    loss = loss + o.distill * kd
                    mean_kd = (mean_kd * i + kd_items[3].item()) / (i + 1)
                self._check_finite(loss, epoch, i)
                if self.dist.enabled:
                    loss = loss * self.dist.world  # DDP averages gradients; keep them sums over images
                self.scaler.scale(loss).backward()
            pending += 1
            if step_now:
                norm = optimizer_step(model, self.optimizer, self.scaler, alpha * pending, self.prunable,
                                      l1_weights=self.l1_weights)
                if not self.cuda and not torch.isfinite(norm):
                    raise TrainingError(f"non-finite gradient (norm {norm.item()}) at epoch {epoch}, "
                                        f"step {i} (global step {ni}); last good checkpoint: "
                                        f"{self.out / 'last.pt'}")
                self.steps += 1
                if self.ema is not None:
                    self.ema.update(model)
                pending = 0
            mean_items = (mean_items * i + items.cpu()) / (i + 1)
            bar.set_postfix(box=f"{mean_items[0]:.4f}", obj=f"{mean_items[1]:.4f}",
                            cls=f"{mean_items[2]:.4f}", size=imgs.shape[-1])
        bar.close()
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        return self._end_epoch(epoch, mean_items, lr, alpha, time.time() - t0,
                               mean_kd if self.teacher is not None else None)

    def _calibration_batches(self, max_images: int = 64):
        """Fixed, un-augmented training batches for recalibrate_bn (no RNG is consumed)."""
        from slimyolo_ros.data.dataset import YoloDataset

        if not hasattr(self, "_calib"):
            self._calib = YoloDataset(self.train_samples[:max_images], self.opt.img_size, augment=False)
        bs = max(2, min(self.opt.batch, len(self._calib)))
        for start in range(0, len(self._calib), bs):
            items = [self._calib[i] for i in range(start, min(start + bs, len(self._calib)))]
            if len(items) > 1:  # batch statistics of one image would be too noisy
                yield torch.stack([it[0] for it in items])

    def _check_finite(self, loss: torch.Tensor, epoch: int, step: int) -> None:
        finite = torch.isfinite(loss.detach()).to(torch.int32).reshape(1)
        if self.dist.enabled:  # every rank must stop together, or the others hang in the next all-reduce
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if not finite.item():
            raise TrainingError(f"non-finite loss ({loss.item()}) at epoch {epoch}, step {step} "
                                f"(global step {step + self.nb * epoch}); training stopped, the last good "
                                f"checkpoint is {self.out / 'last.pt'}")

    def _end_epoch(self, epoch: int, items: torch.Tensor, lr: float, alpha: float, seconds: float,
                   distill: float | None = None) -> dict:
        o = self.opt
        final = epoch == o.epochs - 1
        do_eval = final or (epoch + 1) % o.eval_every == 0
        metrics: dict = {}
        row = {"epoch": epoch, "lr": _fmt(lr), "box": _fmt(items[0].item()), "obj": _fmt(items[1].item()),
               "cls": _fmt(items[2].item()), "loss": _fmt(items[3].item()), "alpha": _fmt(alpha)}
        if distill is not None:
            row["distill"] = _fmt(distill)  # the distillation loss per image, before its weight
        if self.dist.main:
            saved = self.ema.ema if self.ema is not None else _unwrap(self.model)
            if do_eval or final:  # what is evaluated, and the final last.pt that pruning loads, get exact BN
                recalibrate_bn(saved, self._calibration_batches(), self.device)
            share = self.gamma_log.add(epoch, sp.gamma_abs(saved, self.prunable))
            row["gamma_small_share"] = _fmt(share)
            if do_eval:
                metrics = self._evaluate(saved)
                row.update({k: _fmt(metrics[k]) for k in METRICS})
            row["epoch_time_s"] = f"{seconds:.1f}"
            self.rows.append(row)
            fitness = metrics.get("map50", -1.0) if do_eval else -1.0
            improved = do_eval and fitness > self.best_fitness
            if improved:
                self.best_fitness = fitness
            # last.pt first: if killed between the two writes, resume still sees this epoch as done
            self._save_last(epoch, saved, metrics)
            if improved or not (self.out / "best.pt").is_file():
                save_checkpoint(self.out / "best.pt", saved, self.class_names, o.img_size, epoch=epoch,
                                metrics=metrics, train_options=asdict(o))
            write_csv(self.out / "results.csv", self.rows)
            if do_eval or final:  # plots only when there is a new metric point (they cost ~1 s each)
                try:
                    plot_results(self.out / "results.png", self.rows)
                    self.gamma_log.plot(f"{Path(o.cfg).name}, sparsity alpha={o.sparsity:g} "
                                        f"({o.sparsity_schedule})")
                except Exception as exc:  # a plot must never stop training
                    log.warning("plotting failed: %s", exc)
            msg = (f"epoch {epoch + 1}/{o.epochs}: loss {items[3]:.4f} (box {items[0]:.4f} "
                   f"obj {items[1]:.4f} cls {items[2]:.4f}) lr {lr:.2e} |gamma|<1e-2 {share:.1%}")
            if metrics:
                msg += (f" | mAP@0.5 {metrics['map50']:.4f} mAP {metrics['map']:.4f} "
                        f"P {metrics['precision']:.3f} R {metrics['recall']:.3f} F1 {metrics['f1']:.3f}")
            self._say(msg + f" ({seconds:.1f} s)")
        if self.dist.enabled:
            dist.barrier()
        return metrics

    def _evaluate(self, model: nn.Module) -> dict:
        o = self.opt
        return evaluate_model(model, self.class_names, o.img_size, self.val_samples, device=self.device,
                              conf_threshold=o.conf_threshold, nms_threshold=o.nms_threshold,
                              progress=o.progress)

    def _save_last(self, epoch: int, saved: nn.Module, metrics: dict) -> None:
        o = self.opt
        save_checkpoint(
            self.out / "last.pt", saved, self.class_names, o.img_size,
            epoch=epoch,
            metrics=metrics,
            best_fitness=self.best_fitness,
            model_state={k: v.detach().cpu() for k, v in _unwrap(self.model).state_dict().items()},
            ema_updates=self.ema.updates if self.ema is not None else 0,
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(),
            rng=rng_state(),
            train_options=asdict(o),
        )
