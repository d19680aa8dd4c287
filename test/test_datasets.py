"""``read_dataset``: VisDrone-DET, VisDrone-VID, YOLO format and COCO json, detected from the folder, with
the class names each defines; bad data gets one clear line each; a cfg follows the dataset's classes."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
from custom_classes import FOLD, NAMES, synth_scenes, write_coco, write_yolo
from tiny_cfg import tiny_detector

from slimyolo_ros.darknet.cfg import parse_cfg
from slimyolo_ros.darknet.classes import set_classes
from slimyolo_ros.darknet.model import Darknet
from slimyolo_ros.data.datasets import read_dataset
from slimyolo_ros.data.visdrone import VISDRONE_CLASSES
from slimyolo_ros.errors import DatasetError


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return synth_scenes(tmp_path_factory.mktemp("synth"))


def _same_boxes(got, want):
    for g, w in zip(got.samples, want, strict=True):
        assert g.image_path.name == w.image_path.name
        np.testing.assert_allclose(g.boxes, w.boxes, atol=1e-3)
        assert g.classes.tolist() == FOLD[w.classes].tolist()


def test_yolo_format_with_data_yaml(scenes, tmp_path):
    ds = read_dataset(write_yolo(tmp_path / "y", scenes), split="train")
    assert ds.format == "yolo" and ds.class_names == NAMES and ds.names_from.endswith("data.yaml")
    _same_boxes(ds, scenes)
    assert "yolo format" in ds.describe() and "person, vehicle, two-wheeler" in ds.describe()


def test_yolo_format_with_a_names_file(scenes, tmp_path):
    ds = read_dataset(write_yolo(tmp_path / "y", scenes, names_file="obj.names"))
    assert ds.format == "yolo" and ds.class_names == NAMES and ds.names_from.endswith("obj.names")
    _same_boxes(ds, scenes)


def test_coco_json_categories_become_contiguous_classes_and_crowds_are_ignored(scenes, tmp_path):
    ds = read_dataset(write_coco(tmp_path / "c", scenes, crowd_first=True))
    assert ds.format == "coco" and ds.class_names == NAMES
    for g, w in zip(ds.samples, scenes, strict=True):
        np.testing.assert_allclose(g.boxes, w.boxes[1:], atol=1e-3)  # the first box of each is a crowd
        np.testing.assert_allclose(g.ignore, w.boxes[:1], atol=1e-3)
        assert g.classes.tolist() == FOLD[w.classes[1:]].tolist()


def test_visdrone_det_and_vid_keep_visdrone_classes(tmp_path):
    from slimyolo_ros.bag.vid import read_vid
    from slimyolo_ros.data.flight import generate_flights

    det = read_dataset(synth_scenes(tmp_path / "det", n=2)[0].image_path.parents[1])
    assert det.format == "visdrone-det" and det.class_names == list(VISDRONE_CLASSES)
    root = generate_flights(tmp_path / "vid", 1, seed=1, progress=False, size=(128, 96), frames=4,
                             car_length=12)
    vid = read_dataset(root)
    assert vid.format == "visdrone-vid" and vid.class_names == list(VISDRONE_CLASSES)
    frames = read_vid(root)  # the bag tools' reader of the same files
    assert len(vid.samples) == len(frames) == 4 and sum(len(s.boxes) for s in vid.samples) > 0
    for s, f in zip(vid.samples, frames, strict=True):
        np.testing.assert_allclose(s.boxes, f.sample.boxes)
        assert s.classes.tolist() == f.sample.classes.tolist()


def test_bad_labels_are_one_clear_line_each(scenes, tmp_path, caplog):
    root = write_yolo(tmp_path / "y", scenes)
    labels = sorted((root / "labels").glob("*.txt"))
    labels[0].write_text(labels[0].read_text() + "3 0.5 0.5 0.1 0.1\n")
    line = len(labels[0].read_text().splitlines())
    with pytest.raises(DatasetError, match=rf"{labels[0]}:{line}: class index 3 out of range 0\.\.2 "
                                           rf"\(3 class names\)"):
        read_dataset(root)
    labels[0].write_text("1 1.5 0.5 0.2 0.2\n")  # wholly right of the image
    with pytest.raises(DatasetError, match=rf"{labels[0]}:1: box .* lies outside the 96x96 image"):
        read_dataset(root)
    labels[0].write_text("1 0.95 0.5 0.2 0.2\n")  # reaches past the right border: clipped, said once
    labels[1].unlink()
    labels[2].unlink()
    with caplog.at_level(logging.INFO):
        ds = read_dataset(root)
    assert ds.samples[0].boxes.tolist() == [[pytest.approx(81.6), pytest.approx(38.4), 96.0,
                                             pytest.approx(57.6)]]
    said = [r.getMessage() for r in caplog.records]
    assert sum("2 of 8 images have no labels (trained on as background" in m for m in said) == 1, said
    assert sum("1 box(es) reach outside their image and were clipped" in m for m in said) == 1, said
    assert ds.samples.unannotated == 2 and len(ds.samples[1].boxes) == 0


def test_skip_bad_drops_the_line_and_keeps_the_file(scenes, tmp_path):
    root = write_yolo(tmp_path / "y", scenes)
    label = sorted((root / "labels").glob("*.txt"))[0]
    label.write_text("7 0.5 0.5 0.1 0.1\n0 0.5 0.5 0.2 0.2\n")
    ds = read_dataset(root, skip_bad=True)
    assert ds.samples[0].classes.tolist() == [0]
    assert len(ds.samples.problems) == 1 and f"{label}:1: class index 7" in ds.samples.problems[0]


def test_missing_names_file_and_unknown_layouts_say_what_was_expected(scenes, tmp_path):
    root = write_yolo(tmp_path / "y", scenes, names_file=None)
    with pytest.raises(DatasetError, match=r"YOLO-format dataset without class names: add data.yaml with "
                                           r"names:, or a .names / classes.txt file"):
        read_dataset(root)
    shutil.rmtree(root / "labels")
    with pytest.raises(DatasetError, match=r"not a dataset this reads: expected images/ \+ annotations/"):
        read_dataset(root)
    with pytest.raises(DatasetError, match="dataset not found"):
        read_dataset(tmp_path / "nowhere")


def test_a_cfg_for_ten_classes_is_adapted_to_three():
    sections = parse_cfg(tiny_detector(classes=10))
    adapted, changes = set_classes(sections, 3)
    model = Darknet(adapted)
    assert model.num_classes == 3 and model.module_list[-2].conv.out_channels == 3 * (5 + 3)
    assert len(changes) == 1 and "classes 10 -> 3" in changes[0] and "45 -> 24" in changes[0]
    assert set_classes(adapted, 3)[1] == []  # already fits: nothing to say
    assert Darknet(sections).num_classes == 10  # the input sections are not modified
