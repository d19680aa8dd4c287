"""Where a bag's data is: what rosbags' ``Reader`` should open for the path a user gives.

``ros2 bag record`` writes a folder with ``metadata.yaml`` (one storage file, or several when split by
size or duration, possibly zstd-compressed per file or per message); tools and other recorders also
hand out a bare ``.mcap`` or ``.db3``, sometimes copied into a folder without its ``metadata.yaml``.
rosbags reads the folder through its metadata, or one storage file directly; this picks which.
"""

from __future__ import annotations

from pathlib import Path

from slimyolo_ros.bag.types import BagError

STORAGE_SUFFIXES = (".mcap", ".db3")


def storage_path(bag: Path) -> Path:
    """``bag`` itself (a folder with metadata.yaml, or a storage file), or the one storage file of a
    folder without metadata.yaml."""
    bag = Path(bag)
    if not bag.is_dir() or (bag / "metadata.yaml").is_file():
        return bag
    files = sorted(p for p in bag.iterdir() if p.suffix in STORAGE_SUFFIXES and p.is_file())
    if len(files) == 1:
        return files[0]
    if not files:
        raise BagError(f"{bag}: no metadata.yaml and no .mcap or .db3 file in the folder")
    names = ", ".join(p.name for p in files)
    raise BagError(f"{bag}: no metadata.yaml and {len(files)} storage files ({names}): "
                   f"a split bag is read through its metadata.yaml (`ros2 bag reindex {bag}` rebuilds it); "
                   "give one file to read only that one")
