"""Derive a narrowed cfg (same layer sequence, fewer filters) for training on a CPU.

``python -m slimyolo_ros.train.narrow models/yolov3-spp3.cfg --divisor 8 --size 256 \
    > models/yolov3-spp3-tiny-width.cfg`` regenerates the shipped training cfg.
"""

from __future__ import annotations

import argparse
import sys

from slimyolo_ros.darknet.cfg import Section, load_cfg, write_cfg

HEADER = """\
# {name}: YOLOv3-SPP3 narrowed for training on a CPU (tests, synthetic-data evidence, demos).
# Derived from {source} by `python -m slimyolo_ros.train.narrow {source} --divisor {divisor} --size {size}`:
# the same layer sequence (Darknet-53 backbone, the three SPP blocks where the SlimYOLOv3 authors put
# them, the same routes/shortcuts/upsamples and the three [yolo] heads with their anchors), every
# [convolutional] has filters / {divisor} (at least {minimum}), except the convs feeding a [yolo] layer,
# which keep len(mask) * (5 + classes). [net] width/height = {size}.
# About {divisor}^2 = {flops_ratio}x fewer FLOPs and parameters than the full network, so it prunes with the
# same graph rules (shortcut merges, SPP routes) as the real model.
"""


def narrow_sections(sections: list[Section], divisor: int, minimum: int = 2,
                    size: int | None = None) -> list[Section]:
    """Copy of ``sections`` with conv widths divided by ``divisor`` (heads before [yolo] untouched)."""
    if divisor < 1:
        raise ValueError(f"divisor must be >= 1, found {divisor}")
    out = [s.copy() for s in sections]
    for i, s in enumerate(out):
        if s.type == "net" and size is not None:
            s.options["width"] = s.options["height"] = str(size)
        if s.type != "convolutional":
            continue
        feeds_yolo = i + 1 < len(out) and out[i + 1].type == "yolo"
        if not feeds_yolo:
            s.options["filters"] = str(max(minimum, int(s.options["filters"]) // divisor))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cfg")
    p.add_argument("--divisor", type=int, default=8)
    p.add_argument("--minimum", type=int, default=2)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--name", default="yolov3-spp3-tiny-width.cfg")
    a = p.parse_args(argv)
    sections = narrow_sections(load_cfg(a.cfg), a.divisor, a.minimum, a.size)
    sections[0].comment = ""
    header = HEADER.format(name=a.name, source=a.cfg, divisor=a.divisor, size=a.size, minimum=a.minimum,
                           flops_ratio=a.divisor**2)
    sys.stdout.write(header + write_cfg(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
