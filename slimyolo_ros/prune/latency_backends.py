"""Run one convolution, or a whole model, on the target backend, and time callables interleaved.

Latency-aware pruning measures where the model will run: ``onnxruntime`` (the Detector's default
CPU backend; BN folded by ORT's graph optimiser, leaky ReLU fused into the conv) or ``torch`` (BN
folded as the Detector does), on ``cpu`` or ``cuda``, with a fixed number of intra-op threads.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slimyolo_ros.errors import PruneError

BACKENDS = ("onnxruntime", "torch")
Run = Callable[[], object]


@dataclass(frozen=True)
class ConvGeometry:
    """Everything about a conv that its time depends on, except its two widths."""

    kernel: int
    stride: int
    pad: int
    height: int  # of its input
    width: int
    activation: str  # leaky | linear (others are timed as leaky: the same elementwise pass)

    def key(self, cin: int, cout: int) -> str:
        return (f"k{self.kernel}s{self.stride}p{self.pad}{self.activation}_{self.height}x{self.width}"
                f"_{cin}x{cout}")


def check_backend(backend: str, device: str) -> None:
    if backend not in BACKENDS:
        raise PruneError(f"--latency-backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise PruneError(f"--device {device!r}: expected cpu or cuda")
    if device != "cpu" and not torch.cuda.is_available():
        raise PruneError(f"--device {device}: torch sees no CUDA device on this machine")


def backend_version(backend: str) -> str:
    if backend == "onnxruntime":
        import onnxruntime as ort

        return f"onnxruntime {ort.__version__}"
    return f"torch {torch.__version__}"


def device_name(device: str) -> str:
    if device != "cpu":
        return f"cuda: {torch.cuda.get_device_name(torch.device(device))}"
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        name = next(ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name"))
    except (OSError, StopIteration):
        name = platform.processor() or platform.machine()
    return f"cpu: {name}"


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _ort_session(model_bytes: bytes | str, device: str, threads: int, spinning: bool) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if not spinning:
        # The table keeps a geometry's sessions alive together: the idle pools of the others would
        # spin on the cores the timed one needs.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    providers = ["CUDAExecutionProvider"] if device != "cpu" else ["CPUExecutionProvider"]
    return ort.InferenceSession(model_bytes, opts, providers=providers)


def _ort_run(sess: Any, x: np.ndarray, device: str) -> Run:
    import onnxruntime as ort

    name = sess.get_inputs()[0].name
    if device == "cpu":
        feed = {name: x}
        return lambda: sess.run(None, feed)
    # On a GPU the input and outputs stay there: the time is the kernels, not PCIe copies.
    io = sess.io_binding()
    io.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
    for o in sess.get_outputs():
        io.bind_output(o.name, "cuda")
    return lambda: sess.run_with_iobinding(io)


def _conv_onnx(g: ConvGeometry, cin: int, cout: int, seed: int = 0) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array((rng.standard_normal((cout, cin, g.kernel, g.kernel)) * 0.05)
                                .astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(cout, np.float32), "b")
    out = "c" if g.activation != "linear" else "y"
    nodes = [helper.make_node("Conv", ["x", "w", "b"], [out], kernel_shape=[g.kernel] * 2,
                              strides=[g.stride] * 2, pads=[g.pad] * 4)]
    if g.activation != "linear":
        nodes.append(helper.make_node("LeakyRelu", ["c"], ["y"], alpha=0.1))
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, cin, g.height, g.width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what every onnxruntime >= 1.14 reads
    return model.SerializeToString()


def conv_runner(backend: str, device: str, threads: int, g: ConvGeometry, cin: int, cout: int) -> Run:
    """One forward of a single conv (+ bias, + activation) of this geometry and widths."""
    x = np.random.default_rng(1).random((1, cin, g.height, g.width), dtype=np.float32)
    if backend == "onnxruntime":
        return _ort_run(_ort_session(_conv_onnx(g, cin, cout), device, threads, spinning=False), x, device)
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, g.kernel, g.stride, g.pad, bias=True)]
    if g.activation != "linear":
        layers.append(nn.LeakyReLU(0.1))
    return _torch_run(nn.Sequential(*layers), torch.from_numpy(x), device, threads)


def _torch_run(module: nn.Module, x: torch.Tensor, device: str, threads: int) -> Run:
    module = module.to(device).eval()
    x = x.to(device)
    cuda = device != "cpu"

    def run() -> object:
        with torch_threads(threads), torch.inference_mode():
            out = module(x)
        if cuda:
            torch.cuda.synchronize(device)
        return out

    return run


def model_runner(backend: str, device: str, threads: int, model: nn.Module, img_size: int) -> Run:
    """One forward of the whole network (decoded output), square ``img_size`` input, as the Detector
    runs it: torch with BN folded, or ONNX Runtime on the exported graph."""
    from slimyolo_ros.detect.fuse import fuse_model

    x = torch.rand(1, 3, img_size, img_size, generator=torch.Generator().manual_seed(0))
    if backend == "torch":
        return _torch_run(fuse_model(model.cpu().float()), x, device, threads)
    from slimyolo_ros.export.onnx import export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(model.cpu().float().eval(), path, img_size, decoded=True, dynamic_batch=False,
                    check=False)
        # As the Detector's session: spinning off when OpenMP is told to be passive.
        passive = os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"
        sess = _ort_session(str(path), device, threads, spinning=not passive)
    return _ort_run(sess, x.numpy(), device)


def interleaved_medians(fns: Mapping[Any, Run], warmup: int = 1, repeats: int = 5) -> dict[Any, float]:
    """Median ms of each callable over ``repeats`` rounds; every round runs each callable once, so
    a change of load on a shared machine hits all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[Any, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            samples[k].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in samples.items()}
