"""The header stamp of a serialised message, read and replaced in place: replies are matched to frames
by stamp without deserialising them (no message conversion between publish and reply)."""

from __future__ import annotations

import struct


def stamp_of(raw: bytes | memoryview) -> int:
    """Header stamp (ns) of a serialised message whose first field is a std_msgs/Header: int32 sec
    and uint32 nanosec right after the 4-byte CDR encapsulation (byte order from its second byte)."""
    order = "<" if raw[1] == 1 else ">"
    sec, nsec = struct.unpack_from(order + "iI", raw, 4)
    return sec * 1_000_000_000 + nsec


def restamp(raw: bytes | bytearray, stamp_ns: int) -> bytes:
    """A copy of a serialised Header-first message with its stamp replaced."""
    out = bytearray(raw)
    order = "<" if out[1] == 1 else ">"
    struct.pack_into(order + "iI", out, 4, *divmod(int(stamp_ns), 1_000_000_000))
    return bytes(out)
