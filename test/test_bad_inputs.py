"""Bad input, as a user gives it: every ``slimyolo`` command and both nodes run as subprocesses on a
wrong path, flag, value, model, dataset, bag or parameter, and each must answer with one error line that
names the bad thing, no traceback, and the documented exit status (2 for bad input).

``python test/test_bad_inputs.py`` runs the same cases outside pytest and prints the table of
docs/reliability.md (input, message, exit) with the count of cases that gave one clear line.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MODEL = REPO / "models" / "slimyolov3-synth.pt"
TINY_CFG = REPO / "models" / "yolov3-spp3-tiny-width.cfg"
TIMEOUT = 240


@dataclass(frozen=True)
class Case:
    """One bad input: the command (``{name}`` fields are fixture paths), the exit status it must give
    and the words its one error line must hold (what was given: path, flag or value)."""

    name: str
    argv: tuple[str, ...]
    needles: tuple[str, ...]
    rc: int = 2
    stdout: str = ""  # besides the error: what must still be printed on stdout
    slow: bool = True  # imports torch / loads a model (seconds per case)


def c(name: str, cmd: str, *needles: str, rc: int = 2, stdout: str = "", slow: bool = True) -> Case:
    return Case(name, tuple(cmd.split()), needles, rc, stdout, slow)


S = "slimyolo"
CASES = [
    # --- arguments
    c("unknown command", f"{S} detekt", "invalid choice", "detekt", slow=False),
    c("missing required flag", f"{S} detect --image x.jpg", "--weights", slow=False),
    c("not an integer", f"{S} detect --weights m.pt --image x.jpg --img-size abc", "--img-size", "abc",
      slow=False),
    c("bad size syntax", f"{S} synth --out {{tmp}}/s --size 64by64", "64by64", slow=False),
    c("unknown --device", f"{S} detect --weights {MODEL} --image {{img}} --device tpu", "--device", "'tpu'",
      slow=False),
    c("absent GPU", f"{S} detect --weights {MODEL} --image {{img}} --device cuda:7", "--device", "cuda:7"),
    c("train --device bogus", f"{S} train --cfg {TINY_CFG} --data {{data}} --val {{data}} --epochs 1 "
      f"--img-size 64 --batch 2 --out {{tmp}}/t --device bogus", "--device", "'bogus'", slow=False),
    c("train --device cuda:7", f"{S} train --cfg {TINY_CFG} --data {{data}} --val {{data}} --epochs 1 "
      f"--img-size 64 --batch 2 --out {{tmp}}/t --device cuda:7", "--device", "cuda:7"),
    c("eval --device bogus", f"{S} eval --weights {MODEL} --data {{data}} --device bogus", "'bogus'",
      slow=False),
    c("--conf out of range", f"{S} detect --weights {MODEL} --image {{img}} --conf 2", "conf", "2"),
    c("--tile syntax", f"{S} detect --weights {MODEL} --image {{img}} --tile lots", "--tile", "lots"),
    c("export --img-size 33", f"{S} export --weights {MODEL} --format onnx --out {{tmp}}/m.onnx "
      f"--img-size 33", "--img-size 33"),
    # --- files and folders
    c("--image is a directory", f"{S} detect --weights {MODEL} --image {{tmp}}", "{tmp}", "directory",
      slow=False),
    c("--image missing", f"{S} detect --weights {MODEL} --image {{tmp}}/none.jpg", "none.jpg", "not found",
      slow=False),
    c("--image not an image", f"{S} detect --weights {MODEL} --image {REPO}/README.md", "README.md",
      "cannot decode", slow=False),
    c("--weights is a directory", f"{S} detect --weights {{tmp}} --image {{img}}", "{tmp}", "directory"),
    c("--weights missing", f"{S} detect --weights {{tmp}}/none.pt --image {{img}}", "none.pt", "not found"),
    c("--weights not a checkpoint", f"{S} detect --weights {{text_pt}} --image {{img}}", "text.pt"),
    c("--cfg is a directory", f"{S} info --cfg {{tmp}}", "{tmp}", "directory"),
    c("--cfg missing", f"{S} info --cfg {{tmp}}/none.cfg", "none.cfg", "not found"),
    c("detect --out is a directory", f"{S} detect --weights {MODEL} --image {{scene}} --conf 0.01 "
      f"--out {{tmp}}", "--out", "{tmp}", "directory", stdout="."),
    c("detect --out unwritable", f"{S} detect --weights {MODEL} --image {{img}} --out /proc/x/y.png",
      "--out", "/proc/x"),
    c("export --out is a directory", f"{S} export --weights {MODEL} --format onnx --out {{tmp}}",
      "{tmp}", "directory"),
    c("export --out unwritable", f"{S} export --weights {MODEL} --format darknet --out /proc/x/m.weights",
      "/proc/x"),
    c("prune --out is a file", f"{S} prune --weights {MODEL} -P 0.5 --out {{text_pt}}", "text.pt",
      "is a file"),
    c("synth --out unwritable", f"{S} synth --out /proc/x/s --images 2", "/proc/x", slow=False),
    c("synth --out is a file", f"{S} synth --out {REPO}/README.md --images 2", "README.md",
      "not a directory", slow=False),
    c("eval --data is a file", f"{S} eval --weights {MODEL} --data {REPO}/README.md", "README.md",
      "not a directory", slow=False),
    c("eval --data without annotations/", f"{S} eval --weights {MODEL} --data {{tmp}}", "annotations",
      slow=False),
    c("train --out unwritable", f"{S} train --cfg {TINY_CFG} --data {{data}} --val {{data}} --epochs 1 "
      f"--img-size 64 --batch 2 --out /proc/x/run --device cpu", "/proc/x"),
    # --- model contents
    c("NaN weights: detect", f"{S} detect --weights {{nan_pt}} --image {{img}}", "nan.pt", "non-finite",
      "module_list.0"),
    c("inf in one tensor: detect", f"{S} detect --weights {{inf_pt}} --image {{img}}", "inf.pt",
      "non-finite", "running_var"),
    c("NaN in an ONNX weight: detect", f"{S} detect --weights {{nan_onnx}} --backend onnxruntime --image "
      f"{{img}}", "nan.onnx", "non-finite"),
    c("NaN weights: eval", f"{S} eval --weights {{nan_pt}} --data {{data}}", "nan.pt", "non-finite"),
    c("NaN weights: export", f"{S} export --weights {{nan_pt}} --format onnx --out {{tmp}}/n.onnx",
      "nan.pt", "non-finite"),
    c("NaN weights: prune", f"{S} prune --weights {{nan_pt}} -P 0.5 --out {{tmp}}/p", "nan.pt",
      "non-finite"),
    # --- bags
    c("bag make --out unwritable", f"{S} bag make --data {{data}} --out /proc/x/bag", "/proc/x"),
    c("bag make --out exists", f"{S} bag make --data {{data}} --out {{bag}}", "exists"),
    c("bag make --data is a file", f"{S} bag make --data {REPO}/README.md --out {{tmp}}/b", "README.md"),
    c("bag eval: no such bag", f"{S} bag eval --bag {{tmp}}/nobag", "nobag", "no such bag"),
    c("bag eval: no metadata.yaml", f"{S} bag eval --bag {{bag_nometa}}", "nometa", "no metadata.yaml"),
    c("bag eval: garbage metadata", f"{S} bag eval --bag {{bag_garbage}}", "metadata.yaml",
      "rosbag2_bagfile_information"),
    c("bag eval: metadata field wrong", f"{S} bag eval --bag {{bag_badfield}}", "metadata.yaml",
      "relative_file_paths"),
    c("bag eval: damaged MCAP chunk", f"{S} bag eval --bag {{bag_damaged}} --lockstep", "damaged",
      "checksum"),
    c("bag eval --params broken YAML", f"{S} bag eval --bag {{bag}} --params {{broken_yaml}}",
      "--params", "broken.yaml", "YAML"),
    c("bag eval --params missing", f"{S} bag eval --bag {{bag}} --params {{tmp}}/none.yaml", "--params",
      "none.yaml"),
    c("bag eval: the node refuses a parameter", f"{S} bag eval --bag {{bag}} --lockstep --out {{tmp}}/be "
      f"--node-arg conf_threshold:=abc", "conf_threshold", "'abc'"),
    # --- nodes at start-up
    c("detect_node --params-file missing", "detect_node --ros-args --params-file {tmp}/none.yaml",
      "none.yaml", "no such file", slow=False),
    c("detect_node --params-file broken", "detect_node --ros-args --params-file {broken_yaml}",
      "broken.yaml", "YAML", slow=False),
    c("detect_node --params-file directory", "detect_node --ros-args --params-file {tmp}", "{tmp}",
      "directory", slow=False),
    c("detect_node unknown --ros-args flag", "detect_node --ros-args --bogus", "--bogus", slow=False),
    c("track_node unknown --ros-args flag", "track_node --ros-args --bogus", "--bogus", slow=False),
    c("track_node --params-file missing", "track_node --ros-args --params-file {tmp}/none.yaml",
      "none.yaml", slow=False),
    c("detect_node conf_threshold:=abc", "detect_node --ros-args -p conf_threshold:=abc", "conf_threshold",
      "'abc'", slow=False),
    c("detect_node conf_threshold:=5", "detect_node --ros-args -p conf_threshold:=5", "conf_threshold",
      "5", slow=False),
    c("detect_node NaN weights", "detect_node --ros-args -p device:=cpu -p weights:={nan_pt}", "nan.pt",
      "non-finite"),
    c("detect_node weights is a directory", "detect_node --ros-args -p weights:={tmp}", "{tmp}"),
    c("detect_node device:=tpu", "detect_node --ros-args -p device:=tpu", "device", "'tpu'"),
]


# ------------------------------------------------------------------------------------------ fixtures
def make_inputs(tmp: Path) -> dict[str, str]:
    """The bad (and the few good) files the cases point at."""
    import cv2
    import numpy as np
    import torch

    from slimyolo_ros.bag.make import make_bag
    from slimyolo_ros.data.synth import generate

    data = tmp / "data"
    generate(data, 3, size=(96, 96), seed=1, progress=False)
    (data / "annotations" / sorted(p.name for p in (data / "annotations").iterdir())[0]).unlink()
    img = tmp / "img.jpg"
    cv2.imwrite(str(img), np.full((64, 80, 3), 90, np.uint8))
    ckpt = torch.load(MODEL, weights_only=True)
    nan = {**ckpt, "state_dict": {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                                  for k, v in ckpt["state_dict"].items()}}
    torch.save(nan, tmp / "nan.pt")
    bad = dict(ckpt["state_dict"])
    key = next(k for k in bad if k.endswith("running_var"))
    bad[key] = bad[key].clone()
    bad[key][0] = float("inf")
    torch.save({**ckpt, "state_dict": bad}, tmp / "inf.pt")
    _nan_onnx(tmp)
    (tmp / "text.pt").write_text("not a checkpoint\n")
    (tmp / "broken.yaml").write_text("slimyolo_detector:\n  ros__parameters: [\n")
    bag = tmp / "bag"
    make_bag(data, bag, fps=10, progress=False)
    scene = sorted((data / "images").iterdir())[-1]
    paths = {"tmp": tmp, "data": data, "img": img, "scene": scene, "nan_pt": tmp / "nan.pt",
             "nan_onnx": tmp / "nan.onnx",
             "inf_pt": tmp / "inf.pt", "text_pt": tmp / "text.pt", "broken_yaml": tmp / "broken.yaml",
             "bag": bag}
    paths.update(_broken_bags(tmp, bag))
    return {k: str(v) for k, v in paths.items()}


def _nan_onnx(tmp: Path) -> Path:
    """The shipped model exported (decoded boxes, as the Detector reads) with one weight set to NaN."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from slimyolo_ros.darknet.checkpoint import load_model
    from slimyolo_ros.export.onnx import export_onnx

    model, names, size = load_model(MODEL)
    export_onnx(model, tmp / "good.onnx", 64, names, decoded=True, check=False)
    proto = onnx.load(str(tmp / "good.onnx"))
    init = next(i for i in proto.graph.initializer if numpy_helper.to_array(i).dtype.kind == "f")
    values = numpy_helper.to_array(init).copy()
    values.flat[0] = np.nan
    init.CopyFrom(numpy_helper.from_array(values, init.name))
    onnx.save(proto, str(tmp / "nan.onnx"))
    return tmp / "nan.onnx"


def _broken_bags(tmp: Path, bag: Path) -> dict[str, Path]:
    out = {}
    for name in ("nometa", "garbage", "badfield", "damaged"):
        out[f"bag_{name}"] = shutil.copytree(bag, tmp / f"bag_{name}")
    (out["bag_nometa"] / "metadata.yaml").unlink()  # and two storage files: which one, or a split bag?
    one = next(out["bag_nometa"].glob("*.mcap"))
    shutil.copy(one, one.with_name("second_0.mcap"))
    (out["bag_garbage"] / "metadata.yaml").write_text("just a string\n")
    meta = out["bag_badfield"] / "metadata.yaml"
    meta.write_text(meta.read_text().replace("relative_file_paths:", "relative_file_paths: 7\n  x:"))
    mcap = next(out["bag_damaged"].glob("*.mcap"))
    raw = bytearray(mcap.read_bytes())
    mid = len(raw) // 3
    raw[mid:mid + 4096] = bytes(4096)  # 4 KB zeroed inside the data section
    mcap.write_bytes(bytes(raw))
    return out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    return make_inputs(tmp_path_factory.mktemp("bad_inputs"))


@pytest.fixture(scope="module")
def grouped_results(inputs) -> dict[str, subprocess.CompletedProcess]:
    return run_grouped([case for case in CASES if grouped(case)], inputs)


# ------------------------------------------------------------------------------------------- running
def command(case: Case, paths: dict[str, str]) -> list[str]:
    argv = [a.format(**paths) for a in case.argv]
    return [str(BIN / argv[0]), *argv[1:]]


def run_case(case: Case, paths: dict[str, str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RCUTILS_COLORIZED_OUTPUT": "0"}
    return subprocess.run(command(case, paths), capture_output=True, text=True, timeout=TIMEOUT, env=env,
                          cwd=paths["tmp"])


def grouped(case: Case) -> bool:
    """``slimyolo`` cases that load torch run together in one process (the ``slimyolo`` entry point,
    ``cli.main``, called once per case), so torch is imported once instead of once per case."""
    return case.slow and case.argv[0] == S


def run_grouped(cases: list[Case], paths: dict[str, str]) -> dict[str, subprocess.CompletedProcess]:
    import json

    argvs = [[a.format(**paths) for a in case.argv[1:]] for case in cases]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, __file__, "--drive"], input=json.dumps(argvs), capture_output=True,
                       text=True, timeout=TIMEOUT * 4, env=env, cwd=paths["tmp"])
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads(r.stdout.strip().splitlines()[-1])
    return {case.name: subprocess.CompletedProcess(case.argv, rc, out, err)
            for case, (rc, out, err) in zip(cases, results, strict=True)}


def drive() -> int:
    """``--drive``: run ``cli.main(argv)`` for each argv of the JSON list on stdin with this process's
    stdout and stderr (file descriptors, so C and logging output too) captured per case; print
    ``[[exit status, stdout, stderr], ...]`` as one JSON line. An exception that escapes ``main`` is a
    traceback in the case's stderr, as it would be for a user."""
    import json
    import tempfile
    import traceback

    from slimyolo_ros import cli

    real_out, real_err = os.dup(1), os.dup(2)
    results = []
    for argv in json.loads(sys.stdin.read()):
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            try:
                rc = cli.main(argv)
            except SystemExit as exc:  # argparse
                rc = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                traceback.print_exc()
                rc = 1
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(real_out, 1)
            os.dup2(real_err, 2)
            out.seek(0)
            err.seek(0)
            results.append([rc, out.read(), err.read()])
    print(json.dumps(results))
    return 0


def error_lines(stderr: str) -> list[str]:
    """The lines that report an error: ``prog: error: ...`` or a ROS ``[ERROR]`` log line."""
    return [ln for ln in stderr.splitlines() if ": error:" in ln or "[ERROR]" in ln]


def verdict(case: Case, paths: dict[str, str], r: subprocess.CompletedProcess) -> str | None:
    """None when the case gave one clear line; else what was wrong."""
    if "Traceback" in r.stderr or "Traceback" in r.stdout:
        return "traceback:\n" + r.stderr[-2000:]
    lines = error_lines(r.stderr)
    if len(lines) != 1:
        return f"{len(lines)} error lines (want 1):\n{r.stderr[-2000:]}"
    if r.returncode != case.rc:
        return f"exit {r.returncode}, want {case.rc}: {lines[0]}"
    missing = [n.format(**paths) for n in case.needles if n.format(**paths) not in lines[0]]
    if missing:
        return f"the line does not name {missing}: {lines[0]}"
    if case.stdout and case.stdout not in r.stdout:
        return f"stdout lacks {case.stdout!r}: {r.stdout[-500:]}"
    return None


def _param(case: Case):
    marks = [pytest.mark.slow] if case.slow else []
    if case.argv[0].endswith("_node"):
        marks.append(pytest.mark.ros)
    return pytest.param(case, id=case.name.replace(" ", "_"), marks=marks)


def test_at_least_forty_cases():
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_one_clear_line(case: Case, inputs: dict[str, str], request):
    r = request.getfixturevalue("grouped_results")[case.name] if grouped(case) else run_case(case, inputs)
    problem = verdict(case, inputs, r)
    assert problem is None, f"{' '.join(command(case, inputs))}: {problem}"


def test_detect_prints_its_detections_before_a_failed_out(inputs):
    case = c("json", f"{S} detect --weights {MODEL} --image {{scene}} --conf 0.01 --json --out {{tmp}}")
    r = run_case(case, inputs)
    import json

    report = json.loads(r.stdout)
    assert r.returncode == 2 and report["detections"] and report["annotated"] is None
    assert error_lines(r.stderr) == [f"slimyolo detect: error: --out: {inputs['tmp']}: is a directory, "
                                     f"not a file"]


@pytest.mark.slow
def test_eval_counts_images_without_annotation_file(inputs):
    import json

    r = run_case(c("eval", f"{S} eval --weights {MODEL} --data {{data}} --json --device cpu", rc=0), inputs)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["images_without_annotation"] == 1
    assert f"{inputs['data']}: 1 of 3 images have no annotation file" in r.stderr


def test_sigterm_leaves_no_temporary_file(tmp_path):
    """SIGTERM while synth writes its files atomically: the process ends with 143 and one line, and no
    ``.*.tmp`` is left in the output folder."""
    out = tmp_path / "s"
    proc = subprocess.Popen([str(BIN / "slimyolo"), "synth", "--out", str(out), "--images", "400",
                             "--size", "640x640", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 120
    while not list(out.glob("images/*.jpg")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert error_lines(err) == [] and err.strip().splitlines()[-1] == "slimyolo synth: terminated"
    assert list(out.rglob(".*.tmp")) == []


@pytest.mark.slow
def test_resume_removes_a_killed_save(tmp_path, inputs):
    """A save killed by SIGKILL leaves ``.last.pt.*.tmp``; the next start in the run folder removes it."""
    out = tmp_path / "run"
    base = [str(BIN / "slimyolo"), "train", "--out", str(out), "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = base + ["--cfg", str(TINY_CFG), "--data", inputs["data"], "--val", inputs["data"], "--epochs",
                    "1", "--img-size", "64", "--batch", "2", "--no-progress", "--eval-every", "5"]
    r = subprocess.run(first, capture_output=True, text=True, env=env, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-2000:]
    stale = out / ".last.pt.k1ll3d_x.tmp"
    stale.write_bytes(b"\0" * 1000)
    r = subprocess.run(base + ["--resume", "--epochs", "2"], capture_output=True, text=True, env=env,
                       timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not stale.exists() and (out / "last.pt").is_file()


# ------------------------------------------------------------------------------ a running detect_node
def _jpeg_claiming(width: int, height: int) -> bytes:
    """A small valid JPEG whose frame header (SOF0) claims ``width`` x ``height``: what a 20000x20000
    frame looks like to the node before it decodes anything."""
    import cv2
    import numpy as np

    data = bytearray(cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def _ros2_param_set(value: str) -> subprocess.CompletedProcess:
    # The CLI's own discovery of the node can take longer than its wait on a loaded machine ("Node not
    # found" with the node up): ask again, as a user would.
    for _ in range(5):
        r = subprocess.run([str(BIN / "ros2"), "param", "set", "/slimyolo_detector", "conf_threshold", value],
                           capture_output=True, text=True, timeout=60)
        if "Node not found" not in r.stderr:
            return r
        time.sleep(1.0)
    return r


@pytest.mark.slow
@pytest.mark.ros
def test_running_node_parameters_topic_type_and_frame_size(tmp_path):
    """One detect_node (CompressedImage): ``ros2 param set`` with an integer, a string and an out-of-range
    value; a std_msgs/String publisher on its image topic; a frame whose header claims 20000x20000 (over
    max_frame_pixels), dropped before decoding while the next good frame is answered."""
    import cv2
    import numpy as np
    from ros_helpers.probe import NodeProcess, Probe, node_env, wait_for
    from sensor_msgs.msg import CompressedImage
    from vision_msgs.msg import Detection2DArray

    env = node_env({**os.environ, "PYTHONPATH": str(REPO)})
    node = NodeProcess([str(BIN / "detect_node"), "--ros-args", "-p", "device:=cpu", "-p", "compressed:=true",
                        "-p", "stats_period:=0.0", "-p", "reliability:=reliable"], env, tmp_path / "node.log")
    probe = Probe("bad_inputs_probe")
    try:
        pub = probe.node.create_publisher(CompressedImage, "/image_raw/compressed", 5)
        dets = probe.collect(Detection2DArray, "/detections")
        node.wait_log("ready:", 120)
        wait_for(lambda: pub.get_subscription_count() > 0, 30, "the node to subscribe")

        ok = _ros2_param_set("1")
        assert "successful" in ok.stdout, ok.stdout + ok.stderr
        r = _ros2_param_set("abc")
        text = r.stdout + r.stderr
        assert "conf_threshold must be a number in [0, 1]; 'abc' is a string" in text, text
        r = _ros2_param_set("2.5")
        text = r.stdout + r.stderr
        assert "failed" in text and "2.5" in text, text
        assert _ros2_param_set("0.25").returncode == 0

        # another process, as a user's mistaken remap would be (one participant cannot have both types)
        wrong = subprocess.Popen([str(BIN / "ros2"), "topic", "pub", "-r", "2", "/image_raw/compressed",
                                  "std_msgs/msg/String", "{data: not an image}"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, env=env)
        try:
            node.wait_log("is published as std_msgs/msg/String, not sensor_msgs/msg/CompressedImage", 60)
        finally:
            wrong.terminate()
            wrong.wait(10)

        big = CompressedImage(format="jpeg", data=_jpeg_claiming(20000, 20000))
        big.header.stamp.sec = 1
        pub.publish(big)
        node.wait_log("dropped frame 20000x20000 (400000000 pixels): larger than max_frame_pixels", 30)
        good = CompressedImage(format="jpeg",
                               data=cv2.imencode(".jpg", np.full((96, 128, 3), 90, np.uint8))[1].tobytes())
        good.header.stamp.sec = 2
        deadline = time.monotonic() + 60
        while not any(m.header.stamp.sec == 2 for _, m in list(dets)) and time.monotonic() < deadline:
            pub.publish(good)
            time.sleep(0.5)
        assert any(m.header.stamp.sec == 2 for _, m in list(dets)), node.text()[-2000:]
        assert not any(m.header.stamp.sec == 1 for _, m in list(dets))
        assert "Traceback" not in node.text()
    finally:
        probe.close()
        node.stop()


# --------------------------------------------------------------------------------- the table for docs
def main() -> int:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        paths = make_inputs(Path(tmp))
        rows, clear = [], 0
        together = run_grouped([case for case in CASES if grouped(case)], paths)
        for case in CASES:
            r = together[case.name] if grouped(case) else run_case(case, paths)
            problem = verdict(case, paths, r)
            clear += problem is None
            tail = r.stderr.strip().splitlines()[-1:] or [""]
            line = (error_lines(r.stderr) or tail)[0]
            line = line.replace(tmp, "$TMP").replace(str(REPO), ".").replace("|", "\\|")
            cmd = " ".join(case.argv).format(**{k: v.replace(tmp, "$TMP") for k, v in paths.items()})
            cmd = cmd.replace(str(MODEL), "MODEL").replace(str(REPO), ".")
            flag = "" if problem is None else " **not clear**"
            rows.append(f"| `{cmd}` | {line} | {r.returncode} |{flag}")
            print(rows[-1], flush=True)
        print(f"\n{clear} of {len(CASES)} bad inputs gave one clear line")
    return 0 if clear == len(CASES) else 1


if __name__ == "__main__":
    sys.exit(drive() if sys.argv[1:] == ["--drive"] else main())
