"""The bench:run section of docs/benchmarks.md, rendered from one run's rows and details."""

from __future__ import annotations

from bench.report import table

MODELS = ("yolov3-spp3", "slim-50", "slim-90", "slim-95")
BACKENDS = ("torch", "onnxruntime", "opencv")
SPEEDUP_TARGET = 6.0
OVERHEAD_TARGET = 0.10
NO_REUSE = ", no frame reuse"  # bench/run.py's transport label for ros/frame_memory.py turned off
TYPED_RECEIVE = ", typed receive"  # ... and for raw_image_receive turned off (rclpy's Image conversion)
SQUARE_INPUT = ", square input"  # ... and for the node's rect letterbox turned off (img_size² inputs)


def _lat(
    rows: list[dict], model: str, backend: str, size: int, device: str = "cpu", precision: str = "fp32"
) -> float | None:
    for r in rows:
        if (r["model"], r["backend"], r["img_size"], r["device"], r["precision"]) == (
            model,
            backend,
            size,
            device,
            precision,
        ):
            return r["latency_ms_median"]
    return None


def _best(
    rows: list[dict], model: str, size: int, backends=BACKENDS, device: str = "cpu", precision: str = "fp32"
) -> tuple[str, float] | None:
    c = [(v, b) for b in backends if (v := _lat(rows, model, b, size, device, precision)) is not None]
    if not c:
        return None
    v, b = min(c)
    return b, v


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**not met**")


def latency_section(rows: list[dict], sizes: list[int], device: str = "cpu", precision: str = "fp32") -> str:
    out = []
    for size in sizes:
        base = _best(rows, "yolov3-spp3", size, device=device, precision=precision)
        body = []
        base_gflops = next(
            (r["gflops"] for r in rows if r["model"] == "yolov3-spp3" and r["img_size"] == size), None
        )
        for m in MODELS:
            mr = [
                r
                for r in rows
                if r["model"] == m
                and r["img_size"] == size
                and r["device"] == device
                and r["precision"] == precision
            ]
            if not mr:
                continue
            gflops, params = mr[0]["gflops"], mr[0]["params"]
            lat = {b: _lat(rows, m, b, size, device, precision) for b in BACKENDS}
            best = _best(rows, m, size, device=device, precision=precision)
            speedup = flops_ratio = ideal = None
            if base and best and base_gflops:
                speedup = base[1] / best[1]
                flops_ratio = base_gflops / gflops
                ideal = 100.0 * speedup / flops_ratio
            body.append(
                [
                    m,
                    f"{gflops:.2f}",
                    f"{params / 1e6:.2f} M",
                    *[lat[b] for b in BACKENDS],
                    best[0] if best else None,
                    f"{speedup:.2f}x" if speedup else None,
                    f"{flops_ratio:.2f}x" if flops_ratio else None,
                    f"{ideal:.0f}%" if ideal else None,
                ]
            )
        out.append(f"**{size}×{size}, batch 1, {device}, {precision}** (forward ms, median)\n")
        out.append(
            table(
                [
                    "model",
                    "GFLOPs",
                    "params",
                    "torch",
                    "onnxruntime",
                    "opencv",
                    "best",
                    "speed-up (best vs SPP3 best)",
                    "FLOPs ratio",
                    "% of ideal",
                ],
                body,
            )
        )
        out.append("")
        per = []
        for m in MODELS[1:]:
            g = next((r["gflops"] for r in rows if r["model"] == m and r["img_size"] == size), None)
            if g is None or not base_gflops:
                continue
            cells = []
            for b in BACKENDS:
                a, z = (
                    _lat(rows, "yolov3-spp3", b, size, device, precision),
                    _lat(rows, m, b, size, device, precision),
                )
                cells.append(f"{a / z:.2f}x ({100 * a / z / (base_gflops / g):.0f}%)" if a and z else None)
            per.append([m, f"{base_gflops / g:.2f}x", *cells])
        if per:
            out.append("Speed-up over SPP3 within each runtime (% of the FLOPs ratio):\n")
            out.append(table(["model", "FLOPs ratio", *BACKENDS], per))
            out.append("")
    return "\n".join(out)


def _omp() -> str:
    import os

    # Runs that predate the details key: run.py set it in this very process before rendering.
    return os.environ.get("OMP_WAIT_POLICY") or "unset"


def render(rows: list[dict], d: dict) -> str:
    sizes = d.get("sizes", [416])
    v = d.get("versions", {})
    s: list[str] = []
    s.append("## Speed, side by side (`bench/run.py`)\n")
    s.append(f"Command: `{d['command']}` — {d['date_utc']}, git `{d['git']}`, wall {d['wall_s']:.0f} s.  ")
    s.append(
        f"CPU: {d['cpu']} ({d['cores']} cores visible, shared with other work; load average "
        f"{d['load_avg_start'][0]:.2f} at start, {d['load_avg_end'][0]:.2f} at end). Threads fixed: "
        f"torch {d['threads']['torch']}, OpenCV {d['threads']['opencv']}, ONNX Runtime intra-op "
        f"{d['threads']['onnxruntime']}, OMP_WAIT_POLICY={d.get('omp_wait_policy') or _omp()}.  "
    )
    s.append(
        f"torch {v.get('torch')}, onnxruntime {v.get('onnxruntime')}, OpenCV {v.get('opencv')}, "
        f"numpy {v.get('numpy')}, Python {v.get('python')}. Each number is the median of "
        f"{d['repeats']} timed runs after {d['warmup']} warm-up runs (the unpruned SPP3: half the runs, "
        f"1 warm-up). Machine-readable: the `--json` file (latency rows) and its `.details.json`. "
        "The load of the shared CPU drifts during a run, so compare within a row (the backends of one "
        "model, the variants of one effect, a node run and its paired forward are timed in interleaved "
        "rounds) with more trust than across rows timed minutes apart.\n"
    )
    s.append(
        "**The models.** Not trained weights: `models/yolov3-spp3.cfg` (10 classes) with random "
        "weights whose BN |gamma| are drawn log-uniform in [1e-4, 1], i.i.d. over all channels (as "
        "sparse as after L1 sparsity training), BN statistics set by one data-dependent pass, and "
        "head biases set so ~200 boxes pass conf 0.25 on the benchmark frame (bench/sparse_model.py). "
        "slim-50/90/95 are produced from it by the project's pruner, "
        f"`{d.get('prune_command', 'slimyolo prune')}` with -P 0.5/0.9/0.95 and layer keep 0.1; "
        "the pruner's shortcut unions and per-layer floor decide the channel counts, and GFLOPs/params "
        "come from `slimyolo_ros.darknet.complexity`. Speed depends on the architecture, not on what "
        "the weights learned, so these latencies hold for trained models of the same cfgs. "
        f"The input frame: {d.get('frame', '?')}, letterboxed to S×S.\n"
    )
    s.append(
        "Latency = one forward pass on a 1×3×S×S float blob, including the YOLO decode each runtime "
        "does in its graph (the Detector's pre/post-processing is in the node split below). torch = the "
        "Detector's torch model (BN folded and NHWC, its defaults); onnxruntime = the ONNX the Detector "
        "exports and its `ort_session`; opencv = `cv2.dnn.readNetFromDarknet` on the pruned cfg + .weights.\n"
    )
    s.append("### Latency: SPP3 vs pruned, three runtimes\n")
    s.append(latency_section(rows, sizes))

    ref = d.get("reference_arch")
    if ref:
        body = []
        for r in ref["rows"]:
            size = r["img_size"]
            base_g = next(
                (x["gflops"] for x in rows if x["model"] == "yolov3-spp3" and x["img_size"] == size), None
            )
            base = _best(rows, "yolov3-spp3", size)
            avail = [(r[b], b) for b in BACKENDS if r.get(b)]
            if not base or not base_g or not avail:
                continue
            best_ms, best_b = min(avail)
            per = []
            for b in BACKENDS:
                a = _lat(rows, "yolov3-spp3", b, size)
                per.append(f"{r[b]:.1f} ({a / r[b]:.2f}x)" if a and r.get(b) else None)
            body.append(
                [
                    size,
                    f"{r['gflops']:.2f}",
                    f"{base_g / r['gflops']:.2f}x",
                    *per,
                    f"{base[1] / best_ms:.2f}x ({best_b})",
                ]
            )
        s.append(
            f"**The SlimYOLOv3 authors' own pruned architecture** (`{ref['cfg']}`, their 95% cfg, random "
            "weights made as above; not produced by our pruner). Our synthetic i.i.d. gammas let `slimyolo "
            "prune` cut more FLOPs than the authors' real sparsity training did, so this row shows the "
            "speed-up on the architecture the paper's ~11x FLOPs ratio refers to. ms (speed-up over SPP3 in "
            "the same runtime):\n"
        )
        s.append(table(["size", "GFLOPs", "FLOPs ratio", *BACKENDS, "best vs SPP3 best"], body))
        s.append("")

    # ---- targets
    s.append("### Targets\n")
    t_rows = []
    size0 = sizes[0]
    base, slim = _best(rows, "yolov3-spp3", size0), _best(rows, "slim-95", size0)
    if base and slim:
        sp = base[1] / slim[1]
        g = {r["model"]: r["gflops"] for r in rows if r["img_size"] == size0}
        fr = g["yolov3-spp3"] / g["slim-95"]
        t_rows.append(
            [
                f"slim-95 ≥ {SPEEDUP_TARGET:.0f}x faster than SPP3 at {size0}, best backend",
                f"{base[1]:.1f} ms ({base[0]}) / {slim[1]:.1f} ms ({slim[0]}) = {sp:.2f}x "
                f"(FLOPs ratio {fr:.2f}x, {100 * sp / fr:.0f}% of ideal)",
                _met(sp >= SPEEDUP_TARGET),
            ]
        )
    ref_row = next(
        (r for r in (d.get("reference_arch") or {}).get("rows", []) if r["img_size"] == size0), None
    )
    if base and ref_row and any(ref_row.get(b) for b in BACKENDS):
        ms, b = min((ref_row[b], b) for b in BACKENDS if ref_row.get(b))
        g0 = next(r["gflops"] for r in rows if r["model"] == "yolov3-spp3" and r["img_size"] == size0)
        sp, fr = base[1] / ms, g0 / ref_row["gflops"]
        t_rows.append(
            [
                f"the same with the authors' prune_0.95 architecture at {size0}, best backend",
                f"{base[1]:.1f} ms ({base[0]}) / {ms:.1f} ms ({b}) = {sp:.2f}x "
                f"(FLOPs ratio {fr:.2f}x, {100 * sp / fr:.0f}% of ideal)",
                _met(sp >= SPEEDUP_TARGET),
            ]
        )
    for r in d.get("node_e2e", []):
        if r["model"] != "slim-95" or "1920x1080" not in r["frames"]:
            continue
        fw, ee, ov = _overhead(r, r["frames"]["1920x1080"])
        if fw is None:
            continue
        t_rows.append(
            [
                f"node overhead ≤ {100 * OVERHEAD_TARGET:.0f}% of forward at 1920x1080, slim-95 "
                f"({r['backend']}, Fast DDS transport: {r['transport']})",
                f"e2e {ee:.1f} ms, forward {fw:.1f} ms, overhead {ov:.1f} ms = "
                f"{100 * ov / fw:.1f}% of forward",
                _met(ov <= OVERHEAD_TARGET * fw),
            ]
        )
    for size in sizes:
        for m in MODELS:
            ours, cv = _best(rows, m, size, ("torch", "onnxruntime")), _lat(rows, m, "opencv", size)
            if ours and cv:
                t_rows.append(
                    [
                        f"our best backend ≥ OpenCV DNN, {m} at {size}",
                        f"{ours[0]} {ours[1]:.1f} ms vs opencv {cv:.1f} ms = {cv / ours[1]:.2f}x",
                        _met(ours[1] <= cv),
                    ]
                )
    s.append(table(["target", "measured (ratio)", "status"], t_rows))
    s.append("")

    # ---- 8.5 effects
    s.append("### Making pruned networks fast: effect of each measure\n")
    cm = d.get("channel_multiple", [])
    if cm:
        s.append(
            f"**`slimyolo prune --channel-multiple N`** (kept counts rounded up to a multiple of N) at "
            f"{cm[0]['img_size']}, forward ms (median); 'vs N=1' compares the best backend:\n"
        )
        body = []
        for r in cm:
            b1 = next((x for x in cm if x["model"] == r["model"] and x["channel_multiple"] == 1), None)
            best = (
                min((r[b], b) for b in BACKENDS if r.get(b) is not None)
                if any(r.get(b) for b in BACKENDS)
                else None
            )
            best1 = min((b1[b], b) for b in BACKENDS if b1.get(b) is not None) if b1 else None
            rel = f"{best1[0] / best[0]:.2f}x" if best and best1 else None
            body.append(
                [r["model"], r["channel_multiple"], f"{r['gflops']:.2f}", *[r.get(b) for b in BACKENDS], rel]
            )
        s.append(
            table(["model", "N", "GFLOPs", "torch", "onnxruntime", "opencv", "speed vs N=1 (best)"], body)
        )
        s.append("")
    fold = d.get("bn_folding", [])
    if fold:
        s.append("**BN folding** (Detector `fuse`, torch; ONNX Runtime and OpenCV fold BN themselves):\n")
        s.append(
            table(
                ["model", "size", "unfused ms", "fused ms", "speed-up"],
                [
                    [
                        r["model"],
                        r["img_size"],
                        r["torch_unfused_ms"],
                        r["torch_fused_ms"],
                        f"{r['torch_unfused_ms'] / r['torch_fused_ms']:.2f}x"
                        if r["torch_fused_ms"]
                        else None,
                    ]
                    for r in fold
                ],
            )
        )
        s.append("")
    rect = d.get("rect_letterbox", [])
    if rect:
        r0 = rect[0]
        sq, rc = "x".join(map(str, r0["square_input"][::-1])), "x".join(map(str, r0["rect_input"][::-1]))
        s.append(
            f"**Rectangular letterbox** (Detector `rect`, default; node parameter `rect`): a {r0['frame']} "
            f"frame at {r0['img_size']} goes in as {rc} (W×H) instead of {sq}, where the padding was "
            "wasted work; forward ms, the same models and runtimes, interleaved rounds:\n"
        )
        body = []
        for r in rect:
            for b in BACKENDS:
                a_, b_ = r.get(f"{b}_square_ms"), r.get(f"{b}_rect_ms")
                if a_ is not None and b_ is not None:
                    body.append([r["model"], b, a_, b_, f"{a_ / b_:.2f}x"])
        s.append(table(["model", "runtime", f"{sq} ms", f"{rc} ms", "speed-up"], body))
        s.append("")
    body = []
    for size in sizes:
        for m in MODELS:
            b = _best(rows, m, size)
            if b:
                lats = {x: _lat(rows, m, x, size) for x in BACKENDS}
                second = sorted(v for v in lats.values() if v is not None)
                margin = f"{second[1] / second[0]:.2f}x" if len(second) > 1 else None
                body.append([m, size, b[0], b[1], margin])
    s.append("**Best backend per model** (CPU):\n")
    s.append(table(["model", "size", "best", "ms", "lead over the runner-up"], body))
    s.append("")
    spp = d.get("spp_maxpool", [])
    if spp:
        s.append(
            "**SPP max-pools in torch** (found by profiling the NCHW torch forward: torch's CPU `max_pool2d` "
            "scans k×k per output, and the 9 stride-1 pools of the three SPP blocks were about a third of "
            "the pruned net's CPU time; one 13×13 pool on 64×52×52 costs ~29 ms NCHW, ~4 ms NHWC, ~2.4 ms "
            "separable). darknet/model.py now computes stride-1 pools at CPU inference as two separable "
            "running maxima (bit-identical, test/test_spp_maxpool.py). The Detector meanwhile runs its "
            "torch model NHWC (channels_last), where `max_pool2d` is already vectorised, so the gain there "
            "is small; NCHW is what `Detector.from_model` (evaluation during training) runs. Same run, same "
            "models, interleaved rounds; before = plain `max_pool2d`:\n"
        )
        s.append(
            table(
                ["model", "size", "layout", "before ms", "after ms", "speed-up"],
                [
                    [
                        r["model"],
                        r["img_size"],
                        r.get("layout", "NCHW"),
                        r["before_ms"],
                        r["after_ms"],
                        f"{r['before_ms'] / r['after_ms']:.2f}x",
                    ]
                    for r in spp
                ],
            )
        )
        s.append("")

    # ---- node split
    splits = d.get("node_split", [])
    if splits:
        s.append("### One frame through the node's path (median ms per stage)\n")
        s.append(
            "Same functions the node calls: receive = the one copy of the serialised frame into Python "
            "bytes that the node's raw subscription costs (`typed receive` = rclpy's deserialisation into "
            "an Image object, the before of `raw_image_receive`, not part of the total), convert = "
            "`ros.convert.image_from_cdr` + `image_to_bgr`, the "
            "Detector's own stage timings (letterbox / forward / decode+NMS), "
            "`ros.messages.serialize_detection2d_array` (the node publishes CDR bytes), and a real rclpy "
            "publisher with a matched subscriber.\n"
        )
        stages = list(splits[0]["stages_ms"])
        body = [
            [
                x["model"],
                x["backend"],
                x["frame"],
                *[x["stages_ms"][k] for k in stages],
                x.get("typed_receive_ms"),
                x["total_ms"],
                f"{x['outside_forward_ms']:.2f} "
                f"({100 * x['outside_forward_ms'] / x['stages_ms']['forward']:.1f}%)",
                x["detections"],
            ]
            for x in splits
        ]
        s.append(
            table(["model", "backend", "frame", *stages, "typed receive", "total",
                   "outside forward (% of fwd)", "dets"], body)
        )
        s.append("")

    # ---- node e2e + RSS
    if d.get("node_e2e"):
        s.append("### detect_node end to end (image publish → Detection2DArray received)\n")
        s.append(
            "A real `detect_node` subprocess over loopback DDS (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, "
            "random ROS_DOMAIN_ID), bgr8 frames sent one at a time, reliable QoS; e2e = image publish → the "
            "detections' bytes arrive in the consumer (an rclpy raw subscription); `consumer decode` = what "
            "rclpy's deserialize_message then costs a Python consumer for the Detection2DArray (the "
            "consumer's cost, not the node's); forward = the bare "
            "forward of the same model and backend, timed in the client right after each round trip (the "
            "node idles then); overhead = median of the per-frame differences (the pairs cancel the "
            "drifting load of the shared CPU; rows with 3 frames are there for peak RSS, too few for an "
            "overhead). `echo` is a trivial rclpy node "
            "answering each Image at once: the transport floor (DDS + rclpy for the frame alone). "
            "Transport `default` = Fast DDS as shipped (512 KiB shared-memory segment, so big frames go "
            "over UDP loopback in fragments); `shm-64MiB` = both ends with "
            "`FASTDDS_DEFAULT_PROFILES_FILE=config/fastdds_large_frames.xml`; `, no frame reuse` = the same "
            "with "
            "`ros/frame_memory.py` turned off in both the echo and the node (`reuse_frame_memory:=false`, "
            "glibc's default allocator thresholds: the before of that fix); `, typed receive` = both take "
            "the Image through rclpy's message conversion (`raw_image_receive:=false`, the before of "
            "`ros/convert.image_from_cdr`); `, square input` = the node letterboxes to img_size² "
            "(`rect:=false`, the before of the rectangular letterbox; every other row runs the node's "
            "default rectangular input, and its forward is paired on that input). "
            "The camera publishes the Image as serialised bytes (what a C++ "
            "driver hands DDS); `camera publish ms` is how long that call takes. Peak RSS = VmHWM of the "
            "node process (/proc) after its frames.\n"
        )
        body = []
        for r in d["node_e2e"]:
            for frame, t in r["frames"].items():
                fw, _, ov = _overhead(r, t)
                if t["runs"] < 5:
                    ov = None
                body.append(
                    [
                        r["model"],
                        r["backend"],
                        r["transport"],
                        frame,
                        t["median"],
                        t.get("camera_publish_ms"),
                        t.get("consumer_decode_ms"),
                        fw,
                        ov,
                        f"{100 * ov / fw:.1f}%" if fw and ov is not None else None,
                        t["runs"],
                        f"{r['peak_rss_mib']:.0f}" if r.get("peak_rss_mib") else None,
                    ]
                )
        s.append(
            table(
                [
                    "model",
                    "backend",
                    "transport",
                    "frame",
                    "e2e ms",
                    "camera publish ms",
                    "consumer decode ms",
                    "forward ms",
                    "overhead ms",
                    "overhead % of fwd",
                    "frames",
                    "peak RSS MiB",
                ],
                body,
            )
        )
        s.append("")
        staged = [(r, f, t) for r in d["node_e2e"] for f, t in r["frames"].items()
                  if t.get("node_stages_ms") and t["runs"] >= 5]
        if staged:
            keys = list(staged[0][2]["node_stages_ms"])
            s.append(
                "Where the time of one frame goes (median ms): the node's own stages from its `~/stats` "
                "(`stages_ms_p50` over the windows of the timed frames) and the rest of e2e, which is the "
                "transport: image publish → node callback plus detections publish → consumer. Medians do not "
                "add up exactly: when the forward drifts during a run the remainder is only approximate (it "
                "can even come out below zero); the paired overhead in the table above is the robust one.\n"
            )
            body = []
            for r, frame, t in staged:
                st = t["node_stages_ms"]
                in_node = sum(st.values())
                body.append([r["model"], r["backend"], r["transport"], frame, t["median"],
                             *[st[k] for k in keys], in_node, t["median"] - in_node])
            s.append(table(["model", "backend", "transport", "frame", "e2e", *keys, "node total",
                            "transport (e2e − node)"], body))
            s.append("")

    s.append(fast_path_section(d))

    # ---- CUDA
    s.append("### CUDA (fp32 and fp16)\n")
    cuda = d.get("cuda")
    if isinstance(cuda, str) and cuda.startswith("skipped"):
        s.append(
            f"Skipped: {cuda.split(': ', 1)[1]}. The code path is in `Bench.cuda` "
            "(torch fp32/fp16 via the Detector's `half`, ONNX Runtime with the CUDA provider and I/O "
            "binding, OpenCV's CUDA target); a GPU machine fills this table with the same command.\n"
        )
    else:
        s.append(f"Device: {cuda}.\n")
        for precision in ("fp32", "fp16"):
            s.append(latency_section(rows, sizes, device="cuda:0", precision=precision))
    for note in d.get("fix_notes", []):
        s.append(note)
    if d.get("notes"):
        s.append("### Failures during this run\n")
        s.extend(f"- {n}" for n in d["notes"])
    return "\n".join(s) + "\n"


def _overhead(r: dict, t: dict) -> tuple[float | None, float, float | None]:
    """(forward, e2e, overhead) of one node run and frame: the paired numbers (forward timed right
    after each round trip, overhead = median of per-frame differences) when present, else the
    latency table's forward."""
    if t.get("forward_paired_ms") is not None:
        return t["forward_paired_ms"], t["median"], t["overhead_paired_ms"]
    fw = r.get("forward_ms")
    return fw, t["median"], (t["median"] - fw if fw else None)


def _e2e(d: dict, model: str, transport: str, frame: str) -> float | None:
    for r in d.get("node_e2e", []):
        if r["model"] == model and r["transport"] == transport and frame in r["frames"]:
            return r["frames"][frame]["median"]
    return None


def _before_after(d: dict, slim: str | None, before: str, frame: str) -> list[tuple[str, float, float]]:
    """(model, e2e with the ``before`` transport label, e2e without it) over shm-64MiB, for the echo and
    the slim model, where both runs exist."""
    pairs = [(m, _e2e(d, m, "shm-64MiB" + before, frame), _e2e(d, m, "shm-64MiB", frame))
             for m in ("echo", slim) if m]
    return [(m, a, b) for m, a, b in pairs if a and b]


def fast_path_section(d: dict) -> str:
    """What the split and the e2e runs show outside the forward pass, and what was changed."""
    s = ["### Fast path: what dominates outside the forward pass, and what was done\n"]
    items = []
    for x in d.get("node_split", []):
        if x["frame"] != "1920x1080":
            continue
        outside = {k: v for k, v in x["stages_ms"].items() if k != "forward"}
        top = max(outside, key=outside.get)
        pct = 100 * x["outside_forward_ms"] / x["stages_ms"]["forward"]
        line = (
            f"- In the node ({x['backend']}, 1920x1080): everything around the forward pass takes "
            f"{x['outside_forward_ms']:.1f} ms ({pct:.1f}% of its {x['stages_ms']['forward']:.1f} ms "
            f"forward); the largest piece is {top} ({outside[top]:.2f} ms)."
        )
        if outside[top] < 3.0:
            line += (
                " Conversion is a zero-copy view; message building and publishing stay around a "
                "millisecond or below: no stage of the node's own code is worth a change."
            )
        items.append(line)
    slim = next(
        (r["model"] for r in d.get("node_e2e", []) if r["model"] != "echo" and len(r["frames"]) > 1), None
    )
    for frame in ("1280x720", "1920x1080"):
        ed, es = _e2e(d, "echo", "default", frame), _e2e(d, "echo", "shm-64MiB", frame)
        nd, ns = (
            (_e2e(d, slim, "default", frame), _e2e(d, slim, "shm-64MiB", frame)) if slim else (None, None)
        )
        if ed and es:
            line = (
                f"- Transport, {frame} bgr8: the echo round trip (DDS + rclpy only) is {ed:.1f} ms with "
                f"Fast DDS as shipped and {es:.1f} ms with config/fastdds_large_frames.xml ({ed / es:.1f}x)"
            )
            if nd and ns:
                line += f"; detect_node with {slim}: {nd:.1f} → {ns:.1f} ms end to end"
            items.append(line + ".")
    for r in d.get("node_e2e", []):
        t = r["frames"].get("1920x1080")
        if r["model"] == "echo" or t is None or t["runs"] < 5:
            continue
        fw, ee, ov = _overhead(r, t)
        floor = _e2e(d, "echo", r["transport"], "1920x1080")
        if ov is not None and floor and floor > ov and r["transport"].endswith(NO_REUSE):
            items.append(
                f"- Node overhead at 1920x1080 ({r['model']}, {r['backend']}, transport {r['transport']}): "
                f"{ov:.1f} ms, less than the echo round trip ({floor:.1f} ms): with glibc's default "
                "thresholds the bare echo gets fresh pages for every frame, while in detect_node the "
                "large blocks that torch / ONNX Runtime free at start-up have already raised glibc's "
                "sliding mmap threshold, so its frames reuse heap pages even without the setting; the "
                "echo floor does not apply to this row."
            )
        elif ov is not None and floor and floor > ov:
            items.append(
                f"- Node overhead at 1920x1080 ({r['model']}, {r['backend']}, transport {r['transport']}): "
                f"{ov:.1f} ms, less than the echo round trip ({floor:.1f} ms): probably because 6 MB "
                "frames sent back to back to an instant responder pile up in UDP fragments and retransmits, "
                "while the node's forward spaces them out; the floor cannot be separated for this transport."
            )
        elif ov is not None and floor:
            items.append(
                f"- Node overhead at 1920x1080 ({r['model']}, {r['backend']}, transport {r['transport']}): "
                f"{ov:.1f} ms, of which {floor:.1f} ms is the transport floor (echo) and "
                f"{ov - floor:.1f} ms the node itself (deserialise, convert, letterbox, decode+NMS, "
                "message, publish, thread hand-off)."
                + (f" The floor alone is over the 10% budget ({0.1 * fw:.1f} ms of a {fw:.1f} ms forward): "
                   "a node that does nothing costs more than that through rclpy and DDS between processes."
                   if fw and floor > 0.1 * fw else "")
            )
    fixes = [
        ("Image receive", TYPED_RECEIVE,
         "with `raw_image_receive` (the subscription takes the serialised bytes and "
         "`ros/convert.image_from_cdr` views the pixels in place, instead of rclpy deserialising into "
         "the C struct and copying the pixels into a Python array: two passes over the frame, in the "
         "executor thread, for every frame including the dropped ones)."),
        ("Rectangular letterbox", SQUARE_INPUT,
         "with the rectangular letterbox (`rect`, the node's default): the 16:9 frame goes through "
         "the network at 416x256 instead of 416x416, so the forward itself shrinks (table above); "
         "the overhead ratio of the target rows is against that smaller forward."),
        ("Frame memory", NO_REUSE,
         "with `reuse_frame_memory` (glibc serves frame-sized buffers from the heap instead of "
         "fresh mmap pages that the kernel zero-fills and faults in on every frame; "
         "`ros/frame_memory.py`). detect_node itself shows no difference beyond noise: its "
         "torch / ONNX Runtime start-up already pushed glibc's sliding threshold up; the setting "
         "makes that hold from the first frame in any process (a camera driver, a plain rclpy node "
         "like the echo)."),
    ]
    for name, before, why in fixes:
        for frame in ("1280x720", "1920x1080"):
            pairs = _before_after(d, slim, before, frame)
            if pairs:
                items.append(f"- {name}, {frame} bgr8 over shm-64MiB: "
                             + "; ".join(f"{m} {a:.1f} → {b:.1f} ms ({a / b:.1f}x)" for m, a, b in pairs)
                             + " " + why)
    if items:
        items.append(
            "- Fix for the transport (the dominant non-forward cost): Fast DDS's default shared-memory "
            "segment is 512 KiB, so every camera frame fell back to UDP loopback in ~64 KiB fragments. "
            "`config/fastdds_large_frames.xml` gives each participant a 64 MiB segment; export "
            "`FASTDDS_DEFAULT_PROFILES_FILE` to it for the camera driver and the node (before/after above, "
            "measured in this run)."
        )
    for x in d.get("node_split", []):
        nms = x.get("nms_ms")
        if x["frame"] == "1920x1080" and x["backend"] == "onnxruntime" and nms and nms["candidates"]:
            items.append(
                "- Fix for decode+NMS: on the CPU, NMS is OpenCV's `cv2.dnn.NMSBoxesBatched` (C++) instead "
                f"of the vectorised torch version (kept for CUDA): for the {nms['candidates']} candidates "
                f"of this 1920x1080 bench frame {nms['opencv']:.2f} vs {nms['torch']:.2f} ms, timed side by "
                "side in this run, with the same kept boxes (test_detector.py holds both to a brute-force "
                "reference); the decode+NMS column above is with OpenCV's."
            )
    items.append(
        "- Fix for the forward pass in torch: the SPP max-pools (table above, before/after in this run)."
    )
    items.append(
        "- Threads: with torch's OpenMP threads spinning (libgomp's default) on a CPU shared with other "
        "work, every small parallel torch op waits for a descheduled spinner: in a contended test (load "
        "average ~7 on the 2 cores) the Detector's decode+NMS of 826 candidates took 200-250 ms with 2 "
        "threads vs 22-25 ms with `OMP_WAIT_POLICY=PASSIVE`. This script sets PASSIVE (the node "
        "subprocesses inherit it); recommended for the node on a busy onboard computer."
    )
    s.extend(items)
    s.append("")
    return "\n".join(s)
