"""Tiny Darknet cfgs for tests, written from sections so that each test states only what matters to it.

``tiny_detector()`` is the small detector the tests share (strided BN convs, a conv, one [yolo] head
with three anchors, 64x64 input). A test that needs another shape (a shortcut for the channel graph, a
stride-1 maxpool for OpenCV's padding, two heads for the loss's anchor assignment) builds it from
``conv``/``shortcut``/``route``/``maxpool``/``head`` so the difference stays visible where it is used.
"""

from __future__ import annotations

from collections.abc import Sequence

Anchors = Sequence[tuple[int, int]]
TINY_ANCHORS: Anchors = ((4, 5), (8, 9), (12, 10))


def section(kind: str, **options: object) -> str:
    return "\n".join([f"[{kind}]"] + [f"{k}={v}" for k, v in options.items()])


def conv(filters: int, size: int = 3, stride: int = 1, bn: bool = True, activation: str = "leaky") -> str:
    norm = {"batch_normalize": 1} if bn else {}
    return section("convolutional", **norm, filters=filters, size=size, stride=stride, pad=1,
                   activation=activation)


def shortcut(source: int, activation: str | None = None) -> str:
    extra = {"activation": activation} if activation else {}
    return section("shortcut", **{"from": source}, **extra)


def route(*layers: int) -> str:
    return section("route", layers=",".join(map(str, layers)))


def maxpool(size: int, stride: int) -> str:
    return section("maxpool", size=size, stride=stride)


def head(classes: int, mask: Sequence[int] = (0, 1, 2), anchors: Anchors = TINY_ANCHORS,
         **yolo_options: object) -> str:
    """The 1x1 linear conv with len(mask) * (5 + classes) filters and its [yolo] layer."""
    anchor_text = ", ".join(f"{w},{h}" for w, h in anchors)
    return "\n\n".join([
        conv(len(mask) * (5 + classes), size=1, bn=False, activation="linear"),
        section("yolo", mask=",".join(map(str, mask)), anchors=anchor_text, classes=classes,
                num=len(anchors), **yolo_options),
    ])


def cfg(*sections: str, width: int = 64, height: int = 64) -> str:
    return "\n\n".join([section("net", width=width, height=height), *sections]) + "\n"


def tiny_detector(widths: Sequence[int] = (8, 16), last: int = 12, classes: int = 2) -> str:
    """Stride-2 BN convs of ``widths``, a 3x3 conv of ``last`` filters without BN, one head."""
    return cfg(*(conv(w, stride=2) for w in widths), conv(last, bn=False), head(classes))
