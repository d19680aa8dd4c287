"""The SlimYOLOv3 loop above training and pruning: sparsity -> prune -> fine-tune -> evaluate -> iterate
(``slimyolo slim``), and ``prune_to_dir``, the pruned files ``slimyolo prune`` writes."""

from slimyolo_ros.slim.pipeline import slim
from slimyolo_ros.slim.prune_dir import prune_to_dir
from slimyolo_ros.slim.report import to_markdown

__all__ = ["prune_to_dir", "slim", "to_markdown"]
