"""Keep camera-frame-sized buffers in the process heap instead of fresh ``mmap`` pages.

Every received frame passes through buffers as large as the frame: Fast DDS's receive buffer, rmw's
deserialised C message and rclpy's Python array (6.2 MB each for 1920x1080 bgr8). glibc serves
allocations above ``M_MMAP_THRESHOLD`` (128 KiB at start) with a fresh ``mmap``, whose pages the
kernel zero-fills and faults in one by one (~1,500 faults per 1080p frame and buffer), and unmaps
them again on ``free``. glibc raises the threshold by itself after the first such free, but it also
trims the heap top back to the kernel, so whether frames end up reusing warm pages depends on the
order of frees: measured on the dev machine, the 1080p image -> reply round trip over the shared
memory transport stayed at ~15 ms for a whole run under load and dropped to ~6 ms once the two
thresholds were set explicitly (docs/benchmarks.md has the side-by-side numbers).

This is the one place that talks to the C allocator; it is a no-op where there is no glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt(3) parameter numbers (malloc.h); stable glibc ABI.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Large enough for a 4K bgr8 frame (24.9 MB); glibc caps the threshold at 32 MiB on 64-bit.
DEFAULT_MAX_FRAME_BYTES = 32 << 20


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        return None  # musl and others: no glibc tuning knobs
    return libc


def reuse_frame_memory(max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> bool:
    """Serve allocations up to ``max_frame_bytes`` from the heap and keep up to twice that much
    freed memory mapped, so each frame reuses the previous frame's pages.

    Returns True when both settings were applied (glibc), False otherwise. Costs at most
    ``2 * max_frame_bytes`` of resident memory that would otherwise go back to the kernel.
    """
    if max_frame_bytes <= 0:
        raise ValueError(f"max_frame_bytes must be positive, got {max_frame_bytes}")
    libc = _glibc()
    if libc is None:
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    threshold = min(int(max_frame_bytes), DEFAULT_MAX_FRAME_BYTES)
    ok_mmap = libc.mallopt(M_MMAP_THRESHOLD, threshold) == 1
    ok_trim = libc.mallopt(M_TRIM_THRESHOLD, 2 * threshold) == 1
    return ok_mmap and ok_trim
