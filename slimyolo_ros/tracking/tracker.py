"""Multi-object tracking on N×6 detections, timed by message stamps, over the ``trackers`` library.

The association and Kalman filtering are Roboflow's ``trackers`` (clean-room SORT, ByteTrack, OC-SORT,
BoT-SORT); this module only adds what a ROS pipeline needs around them:
- time from stamps: the library's timestamp mode turns a gap (frames the detector dropped) into a longer
  prediction step and ages lost tracks by seconds, not by calls;
- a stamp going backwards (a bag looping) resets every track, with one log line;
- per-class matching (one library tracker per class) or class-agnostic matching;
- string track ids that stay stable for a track's life and are never reused, across resets too;
- the published box is the track's filtered (Kalman) box, not the raw detection.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from slimyolo_ros.tracking.config import TrackerConfig

log = logging.getLogger(__name__)

_AGNOSTIC = -1  # the key of the single tracker in class-agnostic mode


@dataclass
class Tracks:
    """The tracks present in one frame: ``boxes`` M×4 xyxy, ``scores`` M, ``classes`` M, ``ids`` M."""

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    classes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def as_array(self) -> np.ndarray:
        """N×6 ``x1, y1, x2, y2, score, class`` (the detection convention), in ``ids`` order."""
        return np.hstack([self.boxes, self.scores[:, None], self.classes[:, None].astype(np.float32)]
                         ).astype(np.float32).reshape(-1, 6)


def _make_library_tracker(cfg: TrackerConfig):
    import trackers

    # The library counts its lost-track buffer in frames of a 30 fps video and converts to seconds.
    common = {"lost_track_buffer": max(0, round(cfg.track_buffer_s * 30.0)), "frame_rate": cfg.frame_rate,
              "minimum_consecutive_frames": cfg.minimum_consecutive_frames}
    if cfg.algorithm == "sort":
        return trackers.SORTTracker(track_activation_threshold=cfg.track_activation_threshold,
                                    minimum_iou_threshold=cfg.minimum_iou_threshold, **common)
    if cfg.algorithm == "bytetrack":
        return trackers.ByteTrackTracker(track_activation_threshold=cfg.track_activation_threshold,
                                         minimum_iou_threshold=cfg.minimum_iou_threshold,
                                         high_conf_det_threshold=cfg.high_conf_det_threshold, **common)
    if cfg.algorithm == "ocsort":
        return trackers.OCSORTTracker(minimum_iou_threshold=cfg.minimum_iou_threshold,
                                      high_conf_det_threshold=cfg.high_conf_det_threshold, **common)
    # BoT-SORT's camera-motion compensation needs the image; the tracker node sees only detections.
    return trackers.BoTSORTTracker(track_activation_threshold=cfg.track_activation_threshold,
                                   minimum_iou_threshold_first_assoc=cfg.minimum_iou_threshold,
                                   high_conf_det_threshold=cfg.high_conf_det_threshold,
                                   enable_cmc=False, instant_first_frame_activation=False, **common)


class MultiObjectTracker:
    """``update(dets, stamp_s)`` once per frame, in stamp order; returns the tracks present in that frame."""

    def __init__(self, config: TrackerConfig | None = None):
        self.config = config or TrackerConfig()
        self._next_id = 1
        self._generation = 0
        self._ids: dict[tuple[int, int, int], str] = {}  # (generation, class key, library id) -> our id
        self._trackers: dict[int, object] = {}
        self._last_stamp: float | None = None
        self.resets = 0

    def reset(self) -> None:
        """Forget every track; ids already handed out are not handed out again."""
        self._generation += 1
        self._trackers.clear()
        self._ids = {}
        self._last_stamp = None

    def warm_up(self) -> None:
        """Import the tracking libraries and build one library tracker now, so the first frame is not the
        one that pays for it (importing supervision takes seconds on a loaded onboard CPU, long enough
        for a node's input queue to overflow). Changes no state."""
        import supervision  # noqa: F401 - the import is the point

        _make_library_tracker(self.config)

    def _tracker_for(self, key: int):
        if key not in self._trackers:
            self._trackers[key] = _make_library_tracker(self.config)
        return self._trackers[key]

    def _id(self, key: int, library_id: int) -> str:
        k = (self._generation, key, int(library_id))
        if k not in self._ids:
            self._ids[k] = str(self._next_id)
            self._next_id += 1
        return self._ids[k]

    def update(self, dets: np.ndarray, stamp_s: float) -> Tracks:
        """Feed one frame's N×6 detections (``x1, y1, x2, y2, score, class``) taken at ``stamp_s`` seconds."""
        import supervision as sv

        if not math.isfinite(stamp_s):
            raise ValueError(f"stamp {stamp_s!r} is not a finite number of seconds")
        dets = np.asarray(dets, np.float32).reshape(-1, 6)
        if not np.isfinite(dets).all():
            raise ValueError("detections contain NaN or infinite values")
        if self._last_stamp is not None and stamp_s < self._last_stamp:
            log.info("stamp went backwards (%.3f s -> %.3f s): tracker reset, new ids from here",
                     self._last_stamp, stamp_s)
            self.reset()
            self.resets += 1
        self._last_stamp = stamp_s
        dets = dets[dets[:, 4] >= self.config.min_score]
        classes = dets[:, 5].astype(np.int64)
        keys = {_AGNOSTIC} if self.config.class_agnostic else set(classes.tolist()) | set(self._trackers)
        out = Tracks()
        parts = []
        for key in sorted(keys):
            sel = dets if key == _AGNOSTIC else dets[classes == key]
            d = sv.Detections(xyxy=sel[:, :4].astype(np.float32), confidence=sel[:, 4].astype(np.float32),
                              class_id=sel[:, 5].astype(int))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # duplicate stamps: the library skips the predict step
                r = self._tracker_for(key).update(d, timestamp=stamp_s)
            if r.tracker_id is None or len(r) == 0:
                continue
            keep = np.asarray(r.tracker_id) >= 0
            if keep.any():
                parts.append((key, _filtered_boxes(self._tracker_for(key), r[keep])))
        if not parts:
            return out
        out.boxes = np.concatenate([np.asarray(r.xyxy, np.float32) for _, r in parts]).reshape(-1, 4)
        out.scores = np.concatenate([_conf(r) for _, r in parts]).astype(np.float32)
        out.classes = np.concatenate([np.asarray(r.class_id, np.int64) for _, r in parts])
        out.ids = [self._id(key, tid) for key, r in parts for tid in np.asarray(r.tracker_id).tolist()]
        return out


def _filtered_boxes(library_tracker, r):
    """``r`` with each box replaced by its track's Kalman state after this frame's update: the tracker's
    box, which scores better than the raw detection's (docs/results.md, tracking section)."""
    state = library_tracker.tracked_objects
    by_id = dict(zip(np.asarray(state.tracker_id).tolist(), np.asarray(state.xyxy, np.float32), strict=True))
    ids = np.asarray(r.tracker_id).tolist()
    r.xyxy = np.array([by_id.get(t, b) for t, b in zip(ids, r.xyxy, strict=True)], np.float32).reshape(-1, 4)
    return r


def _conf(r) -> np.ndarray:
    return np.ones(len(r), np.float32) if r.confidence is None else np.asarray(r.confidence, np.float32)
