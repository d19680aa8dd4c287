"""``--device`` / the ``device`` parameter, checked one way for every command and the node: ``auto``,
``cpu``, ``cuda`` or ``cuda:N``, and a CUDA device only when torch can use it."""

from __future__ import annotations

import re

from slimyolo_ros.errors import SlimyoloError

CHOICES = "auto, cpu, cuda or cuda:N"


class DeviceError(SlimyoloError):
    """A device name that is not one of :data:`CHOICES`, or a GPU this machine does not have."""


def device_spelling(value: object, flag: str = "--device") -> str:
    """``value`` spelled the one way (``auto``, ``cpu``, ``cuda:N``), without asking whether that device
    exists (no torch import); raises DeviceError naming ``flag`` and the value."""
    name = str(value).strip().lower()
    if name in ("auto", "cpu"):
        return name
    m = re.fullmatch(r"cuda(?::(\d+))?", name)
    if m is None:
        raise DeviceError(f"{flag} {value!r}: expected {CHOICES}")
    return f"cuda:{int(m.group(1) or 0)}"


def check_device(value: object, flag: str = "--device") -> str:
    """The normalised device name (``auto``, ``cpu``, ``cuda:N``) of a device this machine has; raises
    DeviceError naming ``flag`` and the value. torch is imported only for a CUDA name, so ``auto``/``cpu``
    stay cheap."""
    name = device_spelling(value, flag)
    if name in ("auto", "cpu"):
        return name
    import torch

    index = int(name.split(":", 1)[1])
    if not torch.cuda.is_available():
        raise DeviceError(f"{flag} {value!r}: torch {torch.__version__} sees no CUDA GPU "
                          f"(torch.cuda.is_available() is False); use cpu or auto")
    count = torch.cuda.device_count()
    if index >= count:
        raise DeviceError(f"{flag} {value!r}: only {count} CUDA device(s) visible (cuda:0..cuda:{count - 1})")
    return f"cuda:{index}"
