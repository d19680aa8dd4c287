"""vision_msgs message objects: LabelInfo (class index -> name) and Detection2DArray.

detect_node writes its Detection2DArray as CDR bytes (ros/cdr.py, on its critical path);
track_node builds message objects here, since it sets each detection's ``id`` to a track id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from vision_msgs.msg import Detection2D, Detection2DArray, LabelInfo, ObjectHypothesisWithPose, VisionClass

from slimyolo_ros.ros.cdr import center_rows


def to_detection2d_array(dets: np.ndarray, header: Any, class_names: Sequence[str],
                         ids: Sequence[str] | None = None) -> Detection2DArray:
    """N×6 ``x1, y1, x2, y2, score, class_index`` -> Detection2DArray, ``header`` on the array and on
    every detection, the class name as ``class_id``, ``ids[i]`` as detection i's ``id`` (default empty):
    with no ids, the message ros/cdr.py serialises."""
    out = Detection2DArray(header=header)
    for i, (cx, cy, w, h, score, c) in enumerate(center_rows(dets)):
        d = Detection2D(header=header, id=str(ids[i]) if ids is not None else "")
        d.bbox.center.position.x, d.bbox.center.position.y = cx, cy
        d.bbox.size_x, d.bbox.size_y = w, h
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = class_names[int(c)] if 0 <= int(c) < len(class_names) else str(int(c))
        hyp.hypothesis.score = score
        d.results = [hyp]
        out.detections.append(d)
    return out


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

