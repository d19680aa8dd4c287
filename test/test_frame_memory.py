"""ros/frame_memory.py changes glibc's decision for frame-sized blocks: heap instead of mmap.

Checked in fresh interpreters (the allocator's thresholds are per process and glibc raises its own
after the first large free): a 1080p bgr8 frame's worth of malloc is counted by ``mallinfo2`` as
mmapped memory (``hblkhd``) without the call and as heap memory with it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO

PROBE = r"""
import ctypes, json, sys
sys.path.insert(0, sys.argv[2])
libc = ctypes.CDLL("libc.so.6")

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                 "fordblks", "keepcost")]

libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
applied = None
if sys.argv[1] == "on":
    from slimyolo_ros.ros.frame_memory import reuse_frame_memory
    applied = reuse_frame_memory()
frame = 1920 * 1080 * 3
before = libc.mallinfo2().hblkhd
p = libc.malloc(frame)
during = libc.mallinfo2().hblkhd
libc.free(p)
print(json.dumps({"applied": applied, "mmapped": during - before}))
"""


def _probe(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode, str(REPO)], capture_output=True, text=True,
                         timeout=60, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc allocator tuning is Linux-only")
def test_frame_sized_blocks_come_from_the_heap_once_enabled():
    try:
        off = _probe("off")
    except (subprocess.CalledProcessError, AttributeError) as exc:  # no mallinfo2: not glibc >= 2.33
        pytest.skip(f"no glibc mallinfo2 here: {exc}")
    frame = 1920 * 1080 * 3
    assert off["mmapped"] >= frame, f"glibc's default should mmap a {frame} B block: {off}"
    on = _probe("on")
    assert on["applied"] is True, on
    assert on["mmapped"] == 0, f"the frame block was still mmapped after reuse_frame_memory(): {on}"


def test_rejects_a_non_positive_size():
    from slimyolo_ros.ros.frame_memory import reuse_frame_memory

    with pytest.raises(ValueError, match="max_frame_bytes must be positive, got 0"):
        reuse_frame_memory(0)
