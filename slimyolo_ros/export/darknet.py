"""Darknet export: cfg + .weights (+ .names), the format Darknet, OpenCV DNN and the SlimYOLOv3
authors' tools load."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from slimyolo_ros.darknet.weights import save_darknet_weights
from slimyolo_ros.io_utils import atomic_write_text


def export_darknet(model: nn.Module, path: str | os.PathLike, img_size: int | None = None,
                   class_names: list[str] | None = None) -> dict[str, Any]:
    """Write ``path`` (.weights) and, next to it, the cfg of the current architecture (``.cfg``) and
    ``.names``. ``img_size`` sets the cfg's [net] width/height. The model must not be BN-folded."""
    path = Path(path)
    if img_size:
        model.img_size = model.img_height = int(img_size)
    cfg_path = path.with_suffix(".cfg")
    atomic_write_text(cfg_path, model.cfg_text())
    save_darknet_weights(model, path)
    report: dict[str, Any] = {"path": str(path), "format": "darknet", "cfg": str(cfg_path),
                              "img_size": model.img_size, "bytes": path.stat().st_size}
    if class_names:
        names_path = path.with_suffix(".names")
        atomic_write_text(names_path, "\n".join(class_names) + "\n")
        report["names"] = str(names_path)
    return report
