"""Messages the detector publishes besides its detections: LabelInfo (class index -> name).

The Detection2DArray itself is written as CDR bytes by ros/cdr.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vision_msgs.msg import LabelInfo, VisionClass


def to_label_info(class_names: Sequence[str], threshold: float, header: Any = None) -> LabelInfo:
    """LabelInfo: class index -> name (the ids used by the model), and the score threshold."""
    msg = LabelInfo()
    if header is not None:
        msg.header = header
    classes = []
    for i, name in enumerate(class_names):
        vc = VisionClass()
        vc.class_id = i
        vc.class_name = str(name)
        classes.append(vc)
    msg.class_map = classes
    msg.threshold = float(threshold)
    return msg
