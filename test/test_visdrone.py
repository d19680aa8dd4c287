"""VisDrone-DET reader: boxes, classes, ignored regions, "others", and file:line errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from slimyolo_ros.data.visdrone import (
    VISDRONE_CLASSES,
    Sample,
    format_annotation,
    image_size,
    read_visdrone,
    write_annotation,
)
from slimyolo_ros.errors import DatasetError

MODELS = Path(__file__).resolve().parents[1] / "models"


def sample_annotation_text(sample: Sample) -> str:
    """A ``Sample`` back as VisDrone text (objects then ignored regions)."""
    def xywh(b: np.ndarray) -> np.ndarray:
        return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)

    n, m = len(sample.boxes), len(sample.ignore)
    tr = sample.truncation if len(sample.truncation) == n else np.zeros(n, np.int64)
    oc = sample.occlusion if len(sample.occlusion) == n else np.zeros(n, np.int64)
    return format_annotation(
        np.concatenate([xywh(sample.boxes), xywh(sample.ignore)]),
        np.concatenate([sample.classes + 1, np.zeros(m, np.int64)]),
        np.concatenate([tr, np.zeros(m, np.int64)]),
        np.concatenate([oc, np.zeros(m, np.int64)]),
    )



def make_root(tmp_path: Path, files: dict[str, str | None], size=(200, 100)) -> Path:
    """``files``: stem -> annotation text (None: image without annotation file)."""
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    w, h = size
    for stem, text in files.items():
        cv2.imwrite(str(root / "images" / f"{stem}.jpg"), np.full((h, w, 3), 90, np.uint8))
        if text is not None:
            (root / "annotations" / f"{stem}.txt").write_text(text)
    return root


GOOD = (
    "10,20,30,40,1,4,0,1,\n"  # car, trailing comma as in the real files
    "0,0,50,30,0,0,0,0\n"  # ignored region
    "100,50,8,16,1,1,1,2\n"  # pedestrian
    "150,60,20,20,1,11,0,0\n"  # others: dropped
    "190,90,30,30,1,10,0,0\n"  # motor, partly outside the 200x100 image: clipped
    "\n\n"
)


def test_class_names_match_models_names_file():
    names = [ln.strip() for ln in (MODELS / "visdrone.names").read_text().splitlines() if ln.strip()]
    assert tuple(names) == VISDRONE_CLASSES


def test_good_file_parsed(tmp_path):
    root = make_root(tmp_path, {"a": GOOD, "b": None})
    samples = read_visdrone(root)
    assert [s.image_path.name for s in samples] == ["a.jpg", "b.jpg"]
    a, b = samples
    assert (a.width, a.height) == (200, 100)
    np.testing.assert_allclose(a.boxes, [[10, 20, 40, 60], [100, 50, 108, 66], [190, 90, 200, 100]])
    assert a.classes.tolist() == [3, 0, 9]
    assert [VISDRONE_CLASSES[c] for c in a.classes] == ["car", "pedestrian", "motor"]
    np.testing.assert_allclose(a.ignore, [[0, 0, 50, 30]])
    assert a.truncation.tolist() == [0, 1, 0] and a.occlusion.tolist() == [1, 2, 0]
    assert a.boxes.dtype == np.float32 and a.classes.dtype == np.int64
    # an image without an annotation file is a background image, and counted
    assert b.boxes.shape == (0, 4) and b.ignore.shape == (0, 4)
    assert samples.unannotated == 1 and samples.n_skipped == 0


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("1,2,3,4,1,4,0", "expected 8"),
        ("1,2,3,4,1,4,0,0,9", "expected 8"),
        ("1,2,x,4,1,4,0,0", "bbox_width is not a number"),
        ("1,2,3,4,1,4.5,0,0", "object_category"),
        ("1,2,3,4,1,12,0,0", "object_category"),
        ("1,2,3,4,1,-1,0,0", "object_category"),
        ("1,2,0,4,1,4,0,0", "must be > 0"),
        ("1,2,3,-4,1,4,0,0", "must be > 0"),
        ("500,2,3,4,1,4,0,0", "outside"),
        ("1,2,nan,4,1,4,0,0", "not finite"),
    ],
)
def test_bad_line_names_file_and_line(tmp_path, line, needle):
    root = make_root(tmp_path, {"a": "10,20,30,40,1,4,0,0\n\n" + line + "\n"})
    with pytest.raises(DatasetError) as exc:
        read_visdrone(root)
    msg = str(exc.value)
    assert f"{root / 'annotations' / 'a.txt'}:3:" in msg
    assert needle in msg


def test_skip_bad_counts_and_keeps_good_lines(tmp_path):
    root = make_root(tmp_path, {"a": "10,20,30,40,1,4,0,0\nbad line\n1,2,0,4,1,4,0,0\n", "b": GOOD})
    (root / "annotations" / "orphan.txt").write_text("1,2,3,4,1,4,0,0\n")
    samples = read_visdrone(root, skip_bad=True)
    assert samples.n_skipped == 3
    assert any("orphan.txt" in p for p in samples.problems)
    assert any(p.startswith(f"{root / 'annotations' / 'a.txt'}:2:") for p in samples.problems)
    assert [len(s.boxes) for s in samples] == [1, 3]


def test_annotation_without_image(tmp_path):
    root = make_root(tmp_path, {"a": GOOD})
    (root / "annotations" / "orphan.txt").write_text("1,2,3,4,1,4,0,0\n")
    with pytest.raises(DatasetError, match="orphan.txt: no matching image"):
        read_visdrone(root)


def test_missing_or_empty_root(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        read_visdrone(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="annotations|images"):
        read_visdrone(tmp_path / "empty")
    (tmp_path / "empty" / "images").mkdir()
    (tmp_path / "empty" / "annotations").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        read_visdrone(tmp_path / "empty")


def test_unreadable_image_is_named(tmp_path):
    root = make_root(tmp_path, {"a": GOOD})
    bad = root / "images" / "a.jpg"
    bad.write_bytes(b"this is not a jpeg")
    with pytest.raises(DatasetError, match=str(bad)):
        read_visdrone(root)


def test_header_size_matches_decoded_size(tmp_path):
    for ext, shape in ((".jpg", (37, 81)), (".png", (50, 19))):
        p = tmp_path / f"x{ext}"
        cv2.imwrite(str(p), np.zeros(shape + (3,), np.uint8))
        img = cv2.imread(str(p))
        assert image_size(p) == (img.shape[1], img.shape[0])


def test_write_then_read_round_trip(tmp_path):
    root = make_root(tmp_path, {"a": None})
    write_annotation(root / "annotations" / "a.txt", [[5, 6, 10, 12], [0, 0, 40, 20], [50, 50, 9, 9]],
                     [8, 0, 3], truncation=[1, 0, 0], occlusion=[2, 0, 1])
    s = read_visdrone(root)[0]
    np.testing.assert_allclose(s.boxes, [[5, 6, 15, 18], [50, 50, 59, 59]])
    assert s.classes.tolist() == [7, 2]
    np.testing.assert_allclose(s.ignore, [[0, 0, 40, 20]])
    # a Sample written back reads as the same Sample
    text = sample_annotation_text(s)
    (root / "annotations" / "a.txt").write_text(text)
    s2: Sample = read_visdrone(root)[0]
    np.testing.assert_allclose(s2.boxes, s.boxes)
    assert s2.classes.tolist() == s.classes.tolist()
    assert s2.truncation.tolist() == [1, 0] and s2.occlusion.tolist() == [2, 1]


def test_two_images_one_name(tmp_path):
    root = make_root(tmp_path, {"a": GOOD})
    cv2.imwrite(str(root / "images" / "a.png"), np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(DatasetError, match="a.png: same name as a.jpg"):
        read_visdrone(root)
