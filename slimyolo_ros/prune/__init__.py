"""SlimYOLOv3 channel pruning: thresholds -> plan over the channel graph -> surgery (+ beta folding)."""

from slimyolo_ros.prune.slimming import plan_pruning, prune

__all__ = ["plan_pruning", "prune"]
