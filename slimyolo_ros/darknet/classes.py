"""A cfg adapted to a class count: each ``[yolo]``'s ``classes`` and the ``filters`` of the convolution
before it (``len(mask) * (5 + classes)``), so a cfg written for VisDrone's ten classes trains on a
dataset with N. Works on parsed sections (darknet/cfg.py), never on the text."""

from __future__ import annotations

from slimyolo_ros.darknet.cfg import Section
from slimyolo_ros.errors import CfgError


def _mask_len(section: Section, source: str) -> int:
    o = section.options
    try:
        if "mask" in o:
            return len([m for m in o["mask"].split(",") if m.strip()])
        if "num" in o:
            return int(o["num"])
        return len([a for a in o.get("anchors", "").split(",") if a.strip()]) // 2
    except ValueError:
        raise CfgError(f"{source}:{section.line}: [yolo] num {o.get('num')!r} is not an integer") from None


def set_classes(sections: list[Section], num_classes: int, source: str = "<cfg>") -> tuple[list[Section],
                                                                                             list[str]]:
    """(sections for ``num_classes``, one description per changed [yolo]; empty when nothing changed)."""
    if num_classes < 1:
        raise CfgError(f"{source}: a detector needs at least one class, got {num_classes}")
    out = [s.copy() for s in sections]
    changes = []
    for i, s in enumerate(out):
        if s.type != "yolo":
            continue
        prev = out[i - 1] if i else None
        if prev is None or prev.type != "convolutional":
            raise CfgError(f"{source}:{s.line}: [yolo] must follow a [convolutional] layer")
        filters = str(_mask_len(s, source) * (5 + num_classes))
        old_classes, old_filters = s.options.get("classes"), prev.options.get("filters")
        if old_classes == str(num_classes) and old_filters == filters:
            continue
        s.options["classes"] = str(num_classes)
        prev.options["filters"] = filters
        changes.append(f"line {s.line}: classes {old_classes} -> {num_classes}, filters of the conv on line "
                       f"{prev.line} {old_filters} -> {filters}")
    return out, changes
