"""The CPU inference fast path of Darknet's [maxpool] (separable running maxima) must equal
max_pool2d exactly, for the SPP sizes, yolov3-tiny's size=2 and explicit padding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from slimyolo_ros.darknet.model import MaxPool, _max_filter


def reference(x: torch.Tensor, m: MaxPool) -> torch.Tensor:
    lo, hi = m.pad
    return F.max_pool2d(F.pad(x, (lo, hi, lo, hi), value=float("-inf")), m.size, m.stride)


@pytest.mark.parametrize("size,padding", [(5, None), (9, None), (13, None), (3, None), (4, None), (5, 2)])
def test_fast_maxpool_equals_max_pool2d(size: int, padding: int | None) -> None:
    torch.manual_seed(size)
    # Negative values and ties: padding must never win, equal values must not matter.
    x = torch.randn(2, 7, 13, 11).round(decimals=1) - 0.5
    m = MaxPool(size, 1, padding)
    with torch.no_grad():
        fast = m(x)
    ref = reference(x, m)
    assert fast.shape == ref.shape
    assert torch.equal(fast, ref)
    assert torch.equal(_max_filter(x, size, *m.pad), ref)


def test_training_and_tracing_keep_max_pool2d() -> None:
    m = MaxPool(5, 1)
    x = torch.randn(1, 3, 8, 8, requires_grad=True)
    y = m(x)  # autograd path: max_pool2d's gradient, one winner per window
    assert y.grad_fn is not None and "MaxPool" in type(y.grad_fn).__name__
    traced = torch.jit.trace(m, torch.randn(1, 3, 8, 8))
    assert "max_pool2d" in str(traced.graph)
