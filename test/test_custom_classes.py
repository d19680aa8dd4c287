"""A user's own classes end to end: a 3-class YOLO-format dataset trains a cfg written for 10 classes,
and the names travel through the checkpoint, pruning, ONNX metadata, ``slimyolo detect`` and the node's
``label_info``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from custom_classes import NAMES, synth_scenes, write_yolo
from tiny_cfg import tiny_detector

from slimyolo_ros.darknet.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent  # the venv running the tests

pytestmark = [pytest.mark.slow, pytest.mark.ros]


def slimyolo(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    out = subprocess.run([str(VENV_BIN / "python"), "-m", "slimyolo_ros.cli", *args], capture_output=True,
                         text=True, timeout=300, env=env)
    assert out.returncode == 0, f"slimyolo {' '.join(args)}:\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory, ros_env):
    tmp = tmp_path_factory.mktemp("classes")
    data = write_yolo(tmp / "boats", synth_scenes(tmp / "synth", n=8, size=96))
    cfg = tmp / "tiny10.cfg"
    cfg.write_text(tiny_detector(widths=(8, 16, 16), classes=10))  # written for VisDrone's ten
    run = slimyolo("train", "--cfg", str(cfg), "--data", str(data), "--epochs", "2", "--img-size", "64",
                   "--batch", "4", "--out", str(tmp / "run"), "--no-progress", "--json", env=ros_env)
    pruned = tmp / "pruned"
    slimyolo("prune", "--weights", str(tmp / "run" / "last.pt"), "-P", "0.5", "--out", str(pruned),
             env=ros_env)
    return {"tmp": tmp, "data": data, "train_log": run.stderr, "pt": pruned / "pruned.pt"}


def test_training_says_the_format_and_adapts_the_heads(trained):
    log = trained["train_log"]
    assert f"training set {trained['data']}: yolo format, 8 images, 3 classes from" in log, log[-2000:]
    assert "adapted to the dataset's 3 classes: line" in log and "classes 10 -> 3" in log, log[-2000:]
    for f in ("best.pt", "last.pt"):
        ck = load_checkpoint(trained["tmp"] / "run" / f)
        assert ck["class_names"] == NAMES and "classes=3" in ck["cfg"].replace(" ", "")


def test_pruned_checkpoint_onnx_and_detect_carry_the_names(trained, ros_env):
    assert load_checkpoint(trained["pt"])["class_names"] == NAMES
    onnx = trained["tmp"] / "pruned.onnx"
    slimyolo("export", "--weights", str(trained["pt"]), "--format", "onnx", "--decoded", "--out", str(onnx),
             env=ros_env)
    from slimyolo_ros.export.onnx import read_metadata

    assert read_metadata(onnx)["class_names"] == NAMES
    image = next((trained["data"] / "images").glob("*.jpg"))
    for weights in (trained["pt"], onnx):
        backend = "onnxruntime" if weights.suffix == ".onnx" else "torch"
        out = slimyolo("detect", "--weights", str(weights), "--image", str(image), "--conf", "0.001",
                       "--backend", backend, "--device", "cpu", "--json", env=ros_env)
        result = json.loads(out.stdout)
        assert result["class_names"] == NAMES
        assert {d["class_name"] for d in result["detections"]} <= set(NAMES)


def test_a_checkpoint_for_other_classes_starts_all_but_the_heads(trained, ros_env):
    """Fine-tuning a VisDrone model on the 3-class data: the body is loaded, the heads start fresh."""
    import torch

    from slimyolo_ros.darknet.checkpoint import save_checkpoint
    from slimyolo_ros.darknet.model import Darknet
    from slimyolo_ros.data.visdrone import VISDRONE_CLASSES

    tmp = trained["tmp"]
    torch.manual_seed(11)
    visdrone = Darknet.from_file(tmp / "tiny10.cfg")
    save_checkpoint(tmp / "visdrone.pt", visdrone, list(VISDRONE_CLASSES), 64)
    run = slimyolo("train", "--cfg", str(tmp / "tiny10.cfg"), "--data", str(trained["data"]), "--weights",
                   str(tmp / "visdrone.pt"), "--epochs", "1", "--img-size", "64", "--batch", "4",
                   "--lr", "1e-12", "--no-ema", "--out", str(tmp / "transfer"), "--no-progress", env=ros_env)
    assert "trained for 10 classes (pedestrian, people" in run.stderr and "which start fresh for the " \
        "dataset's 3" in run.stderr, run.stderr[-2000:]
    got = load_checkpoint(tmp / "transfer" / "last.pt")["state_dict"]
    want = visdrone.state_dict()
    for key in ("module_list.0.conv.weight", "module_list.2.conv.weight", "module_list.3.conv.weight"):
        assert torch.allclose(got[key], want[key], atol=1e-6), key  # lr 1e-12: the loaded body, unchanged
    head = "module_list.4.conv.weight"
    assert got[head].shape[0] == 3 * (5 + 3) and want[head].shape[0] == 3 * (5 + 10)


def test_eval_scores_the_model_on_its_own_dataset(trained, ros_env):
    out = slimyolo("eval", "--weights", str(trained["pt"]), "--data", str(trained["data"]), "--device", "cpu",
                   "--json", env=ros_env)
    assert "differ from the dataset's" not in out.stderr, out.stderr[-2000:]
    assert list(json.loads(out.stdout)["per_class"]) == NAMES  # scored under the dataset's own classes
    other = trained["tmp"] / "other.yaml"  # the same files under other names: said, not silently matched
    other.write_text((trained["data"] / "data.yaml").read_text().replace("vehicle", "boat")
                     .replace("path: .", f"path: {trained['data']}"))
    out = slimyolo("eval", "--weights", str(trained["pt"]), "--data", str(other), "--device", "cpu", "--json",
                   env=ros_env)
    said = "(person, vehicle, two-wheeler) differ from the dataset's (person, boat, two-wheeler)"
    assert said in out.stderr, out.stderr[-2000:]


def test_the_node_publishes_the_datasets_names_on_label_info(trained, ros_env, tmp_path):
    from ros_helpers.probe import LATCHED, NodeProcess, Probe, node_env, wait_for
    from vision_msgs.msg import LabelInfo

    node = NodeProcess([str(VENV_BIN / "detect_node"), "--ros-args", "-p", f"weights:={trained['pt']}",
                        "-p", "device:=cpu", "-r", "__ns:=/custom"], node_env(ros_env), tmp_path / "node.log")
    probe = Probe("custom_classes_probe")
    try:
        node.wait_log("ready:", 90)
        got = probe.collect(LabelInfo, "/custom/label_info", LATCHED)
        msg = wait_for(lambda: got and got[-1][1], 20, "LabelInfo on /custom/label_info")
        assert [(c.class_id, c.class_name) for c in msg.class_map] == list(enumerate(NAMES))
    finally:
        code = node.stop()
        probe.close()
    assert code == 0, node.text()[-2000:]
