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


def describe_os_error(exc: OSError) -> str:
    """One line for a failed file operation, naming the path and what is wrong with it in words a
    user acts on ("is a directory, not a file"), instead of errno text and a traceback."""
    import errno
    import os

    # a failed rename (an atomic write's temporary file onto its target) is about the target
    path = exc.filename2 if exc.filename2 is not None else exc.filename if exc.filename is not None else ""
    what = {
        errno.EISDIR: "is a directory, not a file",
        errno.ENOTDIR: "a part of this path is a file, not a directory",
        errno.ENOENT: "no such file or directory",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.EROFS: "read-only file system",
        errno.ENOSPC: "no space left on the device",
        errno.EEXIST: "exists already",
    }.get(exc.errno, exc.strerror or str(exc))
    if exc.errno == errno.EEXIST and path and os.path.isfile(path):
        return f"{path}: is a file, expected a directory"
    if exc.errno == errno.ENOTDIR and path:
        # name the component that is a file: "out.txt/pruned.cfg" -> out.txt
        parent = os.fspath(path)
        while parent and not os.path.isfile(parent):
            parent = os.path.dirname(parent)
        if parent:
            return f"{path}: {parent} is a file, not a directory"
    return f"{path}: {what}" if path else what
