"""The project's ``.pt`` checkpoints (cfg text + class names + input size + state_dict) and
``load_model``, the one way a model is loaded from disk (``.pt`` or Darknet ``.weights``)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from slimyolo_ros.darknet.cfg import load_cfg
from slimyolo_ros.darknet.model import Darknet
from slimyolo_ros.darknet.weights import load_darknet_weights
from slimyolo_ros.errors import CfgError, WeightsError
from slimyolo_ros.io_utils import atomic_torch_save

FORMAT = "slimyolo_ros.checkpoint/1"
REQUIRED_KEYS = ("cfg", "class_names", "img_size", "state_dict")


def load_names(path: str | os.PathLike) -> list[str]:
    """Class names, one per line (Darknet ``.names``); blank lines are ignored."""
    path = Path(path)
    try:
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        raise WeightsError(f"{path}: names file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{path}: cannot read names: {exc}") from None
    if not names:
        raise WeightsError(f"{path}: names file holds no class names")
    return names


def save_checkpoint(path: str | os.PathLike, model: Darknet, class_names: list[str], img_size: int,
                    **extra: Any) -> Path:
    """Write a checkpoint atomically. ``extra`` values must be plain data (tensors, numbers, strings,
    lists, dicts) so that ``torch.load(weights_only=True)`` reads them back."""
    if len(class_names) != model.num_classes:
        raise WeightsError(f"{path}: {len(class_names)} class names for a model with "
                           f"{model.num_classes} classes")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    ckpt = {"format": FORMAT, "cfg": model.cfg_text(), "class_names": list(class_names),
            "img_size": int(img_size), "state_dict": state, **extra}
    return atomic_torch_save(ckpt, path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint with ``weights_only=True``: a file that needs code to unpickle is refused."""
    path = Path(path)
    if path.is_dir():
        raise WeightsError(f"{path}: is a directory, expected a checkpoint file")
    if not path.is_file():
        raise WeightsError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message suggests weights_only=False; report only the line that says what stopped it.
        lines = [ln.strip() for ln in str(exc).splitlines()]
        code = [ln for ln in lines if "GLOBAL" in ln or "global" in ln]
        if code:
            raise WeightsError(f"{path}: refused: the checkpoint holds pickled code or objects that "
                               f"torch.load(weights_only=True) does not load ({code[0]})") from None
        detail = next((ln for ln in lines if ln.startswith("Unsupported")), lines[0] if lines else "")
        raise WeightsError(f"{path}: not a readable torch checkpoint ({detail})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable torch checkpoint: {exc}") from None
    if not isinstance(ckpt, dict):
        raise WeightsError(f"{path}: expected a dict checkpoint, found {type(ckpt).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise WeightsError(f"{path}: checkpoint lacks {', '.join(missing)} "
                           f"(keys found: {', '.join(map(str, ckpt))})")
    return ckpt


def _check_classes(model: Darknet, class_names: list[str], names_from: str, cfg_from: str) -> None:
    if len(class_names) != model.num_classes:
        raise WeightsError(f"class-count mismatch: {cfg_from} has {model.num_classes} classes but "
                           f"{names_from} has {len(class_names)} class names")


def load_model(weights: str | os.PathLike, cfg: str | os.PathLike | None = None,
               names: str | os.PathLike | None = None,
               device: str | torch.device = "cpu") -> tuple[Darknet, list[str], int]:
    """Load a model for inference: returns ``(model in eval mode on device, class_names, img_size)``.

    ``.pt``: the cfg comes from the checkpoint unless ``cfg`` is given; class names from ``names`` if
    given, else from the checkpoint. Darknet ``.weights``: ``cfg`` is required; class names come from
    ``names``, or are the class indices as strings when no names file is given.
    """
    weights = Path(weights)
    for label, given in (("model", weights), ("cfg", cfg), ("names", names)):
        if given is not None and Path(given).is_dir():
            raise WeightsError(f"{given}: is a directory, expected a {label} file")
    if weights.suffix == ".pt":
        ckpt = load_checkpoint(weights)
        if cfg is not None:
            model, cfg_from = Darknet.from_file(cfg), str(cfg)
        else:
            model, cfg_from = Darknet.from_text(ckpt["cfg"], source=f"{weights}[cfg]"), f"{weights} (cfg)"
        try:
            model.load_state_dict(ckpt["state_dict"], strict=True)
        except RuntimeError as exc:
            raise WeightsError(f"{weights}: state_dict does not fit {cfg_from}: "
                               f"{str(exc).splitlines()[0]} {_first_detail(str(exc))}") from None
        if names is not None:
            class_names, names_from = load_names(names), str(names)
        else:
            class_names, names_from = [str(n) for n in ckpt["class_names"]], f"{weights} (class_names)"
        _check_classes(model, class_names, names_from, cfg_from)
        img_size = int(ckpt.get("img_size") or model.img_size)
    else:
        if cfg is None:
            raise WeightsError(f"{weights}: Darknet weights need a cfg (--cfg)")
        model = Darknet(load_cfg(cfg), source=str(cfg))
        load_darknet_weights(model, weights)
        if names is not None:
            class_names = load_names(names)
            _check_classes(model, class_names, str(names), str(cfg))
        else:
            class_names = [str(i) for i in range(model.num_classes)]
        img_size = model.img_size
    if model.num_classes == 0:
        raise CfgError(f"{cfg or weights}: the network has no [yolo] layer")
    check_finite(model, weights)
    return model.to(device).eval(), class_names, img_size


def check_finite(model: torch.nn.Module, source: str | os.PathLike) -> None:
    """Refuse a model with NaN or inf in any tensor (weights, BN statistics), naming the first one: such
    a model runs without error and finds nothing, or exports and prunes into more of the same."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point():
            finite = torch.isfinite(tensor)
            if not bool(finite.all()):
                raise WeightsError(f"{source}: tensor {name} holds {int((~finite).sum())} non-finite values "
                                   f"(NaN or inf) of {tensor.numel()}; the model cannot be used")


def _first_detail(message: str) -> str:
    lines = [line.strip() for line in message.splitlines()[1:] if line.strip()]
    return lines[0] if lines else ""
