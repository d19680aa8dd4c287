"""ONNX Runtime execution providers: the choice from (asked, available) over many cases, their
options (TensorRT fp16 with an engine cache), and, for real on this machine's onnxruntime, the
provider in use reported by `slimyolo detect` and by detect_node's log and ~/stats, and a provider
asked for but missing refused with one line and exit status 2 by both."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import onnxruntime as ort
import pytest
from conftest import coco_tiny, grace_hopper

from slimyolo_ros.detect import DetectorError, DetectorOptions, ProviderError, load_detector
from slimyolo_ros.detect.providers import (
    CPU,
    CUDA,
    DEFAULT_TRT_CACHE,
    TENSORRT,
    choose_providers,
    parse_providers,
    provider_options,
)

REPO = Path(__file__).resolve().parents[1]
SLIMYOLO = [sys.executable, "-m", "slimyolo_ros.cli"]
AZURE = "AzureExecutionProvider"
AVAILABLE = ort.get_available_providers()
# A provider this onnxruntime lacks: CUDA on a CPU-only build (the pip `onnxruntime` wheel).
MISSING = next(p for p in (CUDA, TENSORRT, "ROCMExecutionProvider") if p not in AVAILABLE)

ALL = [TENSORRT, CUDA, CPU]
CPU_ONLY = [AZURE, CPU]  # what the pip `onnxruntime` wheel offers
CUDA_BUILD = [CUDA, CPU]  # onnxruntime-gpu without the TensorRT libraries


@pytest.mark.parametrize("asked,available,device,expected", [
    ("auto", ALL, "auto", (TENSORRT, CUDA, CPU)),
    ("auto", [CPU, CUDA, TENSORRT], "auto", (TENSORRT, CUDA, CPU)),  # our order, not ORT's listing
    ("auto", CUDA_BUILD, "auto", (CUDA, CPU)),
    ("auto", CPU_ONLY, "auto", (CPU,)),  # Azure is never picked by auto
    ("auto", ALL, "cpu", (CPU,)),  # device cpu keeps auto off the GPU
    ("auto", ALL, "cuda:1", (TENSORRT, CUDA, CPU)),
    ("auto", CUDA_BUILD, "cuda:0", (CUDA, CPU)),
    (None, CPU_ONLY, "auto", (CPU,)),
    ("", CPU_ONLY, "auto", (CPU,)),
    ("cpu", CPU_ONLY, "auto", (CPU,)),
    ("cuda,cpu", CUDA_BUILD, "auto", (CUDA, CPU)),
    ("[cuda, cpu]", CUDA_BUILD, "auto", (CUDA, CPU)),  # a launch argument's text of a list
    ([CUDA], CUDA_BUILD, "cuda:0", (CUDA,)),
    (["TRT", "Cuda"], ALL, "auto", (TENSORRT, CUDA)),
    (["cpu", "cuda", "cpu"], CUDA_BUILD, "auto", (CPU, CUDA)),  # as asked, duplicates dropped
    ([AZURE], CPU_ONLY, "auto", (AZURE,)),  # a full name ORT offers passes as given
])
def test_choice_of_providers(asked, available, device, expected):
    assert choose_providers(asked, available, device) == expected


@pytest.mark.parametrize("asked,available,device,needles", [
    (["cuda"], CPU_ONLY, "auto", ["CUDAExecutionProvider is not available", "offers AzureExecutionProvider, "
                                  "CPUExecutionProvider", "onnxruntime-gpu", "Jetson"]),
    ("tensorrt,cuda", CUDA_BUILD, "auto", ["TensorrtExecutionProvider is not available",
                                           "TensorRT libraries"]),
    ("auto", CPU_ONLY, "cuda:0", ["CUDAExecutionProvider is not available", "device 'cuda:0' needs it",
                                  "onnxruntime-gpu"]),
    (["cuda"], CUDA_BUILD, "cpu", ["run on a GPU but device is 'cpu'"]),
    (["OpenVINOExecutionProvider"], CPU_ONLY, "auto", ["OpenVINOExecutionProvider is not available",
                                                       "an onnxruntime build that includes it"]),
    ("auto", [], "auto", ["offers none"]),
])
def test_missing_provider_is_one_line_naming_what_there_is_and_where_it_comes_from(asked, available, device,
                                                                                    needles):
    with pytest.raises(ProviderError) as err:
        choose_providers(asked, available, device)
    text = str(err.value)
    assert "\n" not in text
    for needle in needles:
        assert needle in text, text


@pytest.mark.parametrize("bad", ["gpu", ["cuda", 7], {"cuda": 1}, 3])
def test_unknown_provider_names_are_refused(bad):
    with pytest.raises(DetectorError, match="providers"):
        parse_providers(bad)


def test_tensorrt_runs_fp16_with_an_engine_cache_and_gpus_get_the_device(tmp_path):
    opts = dict(provider_options((TENSORRT, CUDA, CPU), 1, str(tmp_path / "trt")))
    assert opts[TENSORRT] == {"device_id": 1, "trt_fp16_enable": True, "trt_engine_cache_enable": True,
                              "trt_engine_cache_path": str(tmp_path / "trt")}
    assert opts[CUDA] == {"device_id": 1} and opts[CPU] == {}
    default = dict(provider_options((TENSORRT,)))[TENSORRT]["trt_engine_cache_path"]
    assert default == str(Path(DEFAULT_TRT_CACHE).expanduser()) and "~" not in default


# ---- for real, on this machine's onnxruntime ---------------------------------------------------

@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    """The tiny COCO model exported once (decoded boxes, free input shape), as the node would load it."""
    from slimyolo_ros.darknet.checkpoint import load_model
    from slimyolo_ros.export.onnx import export_onnx

    m = coco_tiny()
    model, names, size = load_model(m["weights"], cfg=m["cfg"], names=m["names"], device="cpu")
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_onnx(model, path, size, names, decoded=True, dynamic=True, check=False)
    return path


def test_detector_uses_and_reports_the_cpu_provider(tiny_onnx):
    det = load_detector(tiny_onnx, DetectorOptions(backend="onnxruntime", device="cpu", conf_threshold=0.1))
    assert det.providers == (CPU,) and det.provider == CPU and det.device.type == "cpu"
    person = det(grace_hopper())
    assert 0 in person[:, 5].tolist()  # the photo's person: the session really ran
    with pytest.raises(ProviderError, match=f"{MISSING} is not available"):
        load_detector(tiny_onnx, DetectorOptions(backend="onnxruntime", providers=[MISSING]))


def _detect(tiny_onnx: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    image = tmp_path / "photo.png"
    cv2.imwrite(str(image), grace_hopper())
    return subprocess.run([*SLIMYOLO, "detect", "--weights", str(tiny_onnx), "--image", str(image),
                           "--backend", "onnxruntime", *args], capture_output=True, text=True, timeout=300,
                          cwd=REPO)


def test_cli_reports_the_provider_and_refuses_a_missing_one(tiny_onnx, tmp_path):
    ok = _detect(tiny_onnx, tmp_path, "--providers", "auto", "--json")
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["provider"] == CPU and any(d["class_name"] == "person" for d in report["detections"])
    bad = _detect(tiny_onnx, tmp_path, "--providers", MISSING)
    assert bad.returncode == 2, bad.stderr
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in bad.stderr, bad.stderr
    assert f"{MISSING} is not available" in lines[0] and CPU in lines[0] and "onnxruntime" in lines[0]


# ---- detect_node ---------------------------------------------------------------------------------

def _node_cmd(tiny_onnx: Path, *params: str) -> list[str]:
    cmd = [str(Path(sys.executable).parent / "detect_node"), "--ros-args", "--params-file",
           str(REPO / "config" / "detect.yaml"), "-p", f"weights:={tiny_onnx}", "-p", "backend:=onnxruntime",
           "-p", "device:=cpu", "-p", "stats_period:=1.0"]
    for p in params:
        cmd += ["-p", p] if ":=" in p and not p.startswith("__") else ["-r", p]
    return cmd


@pytest.mark.ros
def test_node_refuses_a_missing_provider_with_one_line_and_exit_2(ros_env, tiny_onnx):
    from ros_helpers.probe import node_env

    proc = subprocess.run(_node_cmd(tiny_onnx, f"providers:=[{MISSING}]"), env=node_env(ros_env),
                          capture_output=True, text=True, timeout=120)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    errors = [ln for ln in text.splitlines() if "ERROR" in ln]
    assert "Traceback" not in text and len(errors) == 1, text
    assert f"{MISSING} is not available" in errors[0] and CPU in errors[0], errors


@pytest.mark.ros
@pytest.mark.slow
def test_node_names_the_provider_in_its_log_and_stats(ros_env, tiny_onnx, tmp_path):
    from ros_helpers.probe import NodeProcess, Probe, node_env, wait_for
    from std_msgs.msg import String

    node = NodeProcess(_node_cmd(tiny_onnx, "providers:=cpu", "__ns:=/ortcpu"), node_env(ros_env),
                       tmp_path / "node.log")
    probe = Probe("providers_probe")
    try:
        stats = probe.collect(String, "/ortcpu/slimyolo_detector/stats")
        ready = node.wait_log("ready:", 120.0)
        assert f"provider {CPU}" in ready, ready
        wait_for(lambda: stats, 30.0, "a ~/stats message")
        assert json.loads(stats[-1][1].data)["provider"] == CPU
    finally:
        code = node.stop()
        probe.close()
    assert code == 0 and "Traceback" not in node.text(), node.text()[-3000:]
