"""One exception family for every user-facing failure.

The CLI and the node print ``str(exc)`` of a SlimyoloError as one line and exit non-zero,
so each message must name the file, line, field or value that is wrong.
"""


class SlimyoloError(Exception):
    """Base class: a problem with the user's input, reported without a traceback."""


class CfgError(SlimyoloError):
    """A Darknet cfg is malformed: the message starts with ``file:line:``."""


class WeightsError(SlimyoloError):
    """A weights or checkpoint file does not fit the model (counts, classes, format)."""


class DatasetError(SlimyoloError):
    """A dataset is missing, empty or malformed: the message names file and line."""


class PruneError(SlimyoloError):
    """Pruning arguments are out of range or would empty a layer."""


class TrainingError(SlimyoloError):
    """Training cannot go on (NaN/inf loss, bad resume state)."""
