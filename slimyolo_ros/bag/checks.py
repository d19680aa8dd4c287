"""What can be wrong with a bag before and while it is read, named in words: a directory without
metadata.yaml, metadata that is not what ros2 bag writes (which field), a storage file whose data was
damaged after writing; and the chunk checksums that make such damage detectable.

rosbags (0.11) reports these as "Expected metadata file '<dir>' does not exist", "string indices must
be integers" or a bare UnicodeDecodeError, and its MCAP writer stores a chunk CRC of 0 ("not
computed"), so a damaged chunk of a bag made here was read as if it were intact."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from slimyolo_ros.bag.types import BagError

MCAP_MAGIC = b"\x89MCAP0\r\n"
_OP_CHUNK, _OP_FOOTER = 0x06, 0x02
# metadata.yaml fields a reader needs, and what each must be (rosbag2 bagfile information, version 1-9)
_FIELDS = {"version": int, "storage_identifier": str, "relative_file_paths": list,
           "topics_with_message_count": list, "duration": dict, "starting_time": dict, "message_count": int}
_KINDS = {int: "an integer", str: "a string", list: "a list", dict: "a mapping"}


def check_bag(bag: Path) -> None:
    """Raise BagError naming the bag and what is wrong, for the faults rosbags reports unclearly."""
    if not bag.is_dir():
        return  # a single storage file (or nothing: the caller says "no such bag")
    meta = bag / "metadata.yaml"
    if not meta.is_file():
        storage = sorted(p.name for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))
        hint = (f"it holds {', '.join(storage)}; `ros2 bag reindex {bag}` rebuilds the metadata" if storage
                else "not a rosbag2 directory")
        raise BagError(f"{bag}: no metadata.yaml ({hint})")
    info = _bagfile_information(meta)
    for name, kind in _FIELDS.items():
        value = info.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            found = "missing" if name not in info else f"{value!r}"
            raise BagError(f"{meta}: field rosbag2_bagfile_information.{name} must be {_KINDS[kind]}, "
                           f"found {found}")
    for rel in info["relative_file_paths"]:
        if not (bag / Path(str(rel)).name).is_file():
            raise BagError(f"{bag}: storage file {rel} (listed in metadata.yaml) is missing")
    for i, topic in enumerate(info["topics_with_message_count"]):
        tm = topic.get("topic_metadata") if isinstance(topic, dict) else None
        if not isinstance(tm, dict) or not all(isinstance(tm.get(k), str) for k in ("name", "type")):
            raise BagError(f"{meta}: field topics_with_message_count[{i}] lacks topic_metadata name/type")


def _bagfile_information(meta: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(meta.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise BagError(f"{meta}: cannot read it: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise BagError(f"{meta}{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    info = data.get("rosbag2_bagfile_information") if isinstance(data, dict) else None
    if not isinstance(info, dict):
        raise BagError(f"{meta}: no rosbag2_bagfile_information mapping (not the metadata ros2 bag writes)")
    return info


def read_error(bag: Path, exc: BaseException) -> BagError | None:
    """A failure while rosbags reads ``bag``'s storage as one BagError naming the bag and the damage;
    None for exceptions that are not about the file's contents."""
    from rosbags.rosbag2 import ReaderError

    if isinstance(exc, BagError):
        return exc
    text = " ".join(str(exc).split()).rstrip(".")
    if isinstance(exc, ReaderError) and "checksum" in text.lower():
        return BagError(f"{bag}: damaged MCAP chunk ({text}): the file changed after it was written "
                        f"(an interrupted copy or a bad disk); nothing was scored")
    if isinstance(exc, (ReaderError, UnicodeDecodeError, struct.error, EOFError, KeyError, IndexError)):
        section = "summary or index" if isinstance(exc, (UnicodeDecodeError, struct.error)) else "data"
        return BagError(f"{bag}: damaged or unreadable storage {section} ({type(exc).__name__}: {text})")
    return None


def add_chunk_crcs(path: Path) -> int:
    """Write each MCAP chunk's CRC-32 of its uncompressed records into the file in place (rosbags
    writes 0, which readers take as "no checksum"); returns the number of chunks. Readers, rosbags
    included, then refuse a chunk whose bytes changed."""
    from rosbags.rosbag2.storage_mcap import DECOMPRESSORS

    count = 0
    with open(path, "r+b") as f:
        if f.read(8) != MCAP_MAGIC:
            raise BagError(f"{path}: not an MCAP file")
        while header := f.read(9):
            op, length = struct.unpack("<BQ", header)
            start = f.tell()
            if op == _OP_FOOTER:
                break
            if op == _OP_CHUNK:
                _, _, size, crc = struct.unpack("<QQQI", f.read(28))
                crc_at = start + 24
                (n,) = struct.unpack("<I", f.read(4))
                compression = f.read(n).decode()
                (clen,) = struct.unpack("<Q", f.read(8))
                records = DECOMPRESSORS[compression](f.read(clen), size)
                f.seek(crc_at)
                f.write(struct.pack("<I", zlib.crc32(records)))
                count += 1
            f.seek(start + length)
    return count


UNANNOTATED_KEY = "slimyolo_ros.frames_without_annotation"


def frames_without_annotation(frames: list) -> int:
    """How many DET frames ``(image_path, sample, ids, sequence)`` had no annotations/<name>.txt: the
    bag carries them as empty ground truth (background), which `bag eval` then says."""
    return sum(1 for path, _, _, seq in frames
               if seq is None and not (path.parent.parent / "annotations" / f"{path.stem}.txt").is_file())


def unannotated_in_bag(reader) -> int:
    """What ``bag make`` recorded under :data:`UNANNOTATED_KEY` (0 when the bag does not say)."""
    custom = getattr(getattr(reader.storage, "metadata", None), "custom", None) or {}
    try:
        return int(custom.get(UNANNOTATED_KEY, 0))
    except (TypeError, ValueError):
        return 0
