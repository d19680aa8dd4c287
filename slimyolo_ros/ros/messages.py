"""vision_msgs builders: LabelInfo (class index -> name) and Detection2DArray as message objects.

detect_node writes its Detection2DArray as CDR bytes (ros/cdr.py, the same bytes as these objects
serialised); the tracker and the tests build message objects here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from vision_msgs.msg import Detection2D, Detection2DArray, LabelInfo, ObjectHypothesisWithPose, VisionClass


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


def to_detection2d_array(dets: np.ndarray, header: Any, class_names: Sequence[str],
                         ids: Sequence[str] | None = None) -> Detection2DArray:
    """N×6 ``x1, y1, x2, y2, score, class_index`` -> Detection2DArray, ``header`` on the array and on
    every detection, ``ids[i]`` as detection i's id (track ids; default empty). An out-of-range class
    index is named by its number; scores are clipped to [0, 1]."""
    out = Detection2DArray(header=header)
    rows = np.asarray(dets, np.float64).reshape(-1, 6).tolist()
    for i, (x1, y1, x2, y2, score, c) in enumerate(rows):
        d = Detection2D(header=header, id=str(ids[i]) if ids is not None else "")
        d.bbox.center.position.x, d.bbox.center.position.y = (x1 + x2) * 0.5, (y1 + y2) * 0.5
        d.bbox.size_x, d.bbox.size_y = x2 - x1, y2 - y1
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = class_names[int(c)] if 0 <= int(c) < len(class_names) else str(int(c))
        hyp.hypothesis.score = min(max(score, 0.0), 1.0)
        d.results = [hyp]
        out.detections.append(d)
    return out
