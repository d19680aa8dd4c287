"""``slimyolo eval``: COCO mAP@0.5 and mAP@0.5:0.95, P/R/F1 at the best-F1 confidence, latency."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from slimyolo_ros.commands.detector_args import add_detector_arguments, options_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True, help=".pt checkpoint, Darknet .weights (needs --cfg) or .onnx")
    p.add_argument("--data", required=True, help="VisDrone-DET/-VID, YOLO or COCO (docs/datasets.md)")
    add_detector_arguments(p, conf=0.001, nms=0.5, conf_help=": mAP needs the low-score tail")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    p.add_argument("--skip-bad", action="store_true", help="skip malformed annotation lines with a warning")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _fmt(x: float | None) -> str:
    return "    -" if x is None else f"{x:5.3f}"


def format_table(r: dict) -> str:
    lines = [f"{'class':<16} {'gt':>6} {'det':>6} {'AP50':>6} {'AP':>6} {'P':>6} {'R':>6} {'F1':>6}"]
    for name, c in r["per_class"].items():
        lines.append(f"{name:<16} {c['gt']:>6} {c['detections']:>6} {_fmt(c['ap50']):>6} {_fmt(c['ap']):>6} "
                     f"{_fmt(c['precision']):>6} {_fmt(c['recall']):>6} {_fmt(c['f1']):>6}")
    n_det = sum(c["detections"] for c in r["per_class"].values())
    lines.append(f"{'all':<16} {r['n_gt']:>6} {n_det:>6} {_fmt(r['map50']):>6} {_fmt(r['map']):>6} "
                 f"{_fmt(r['precision']):>6} {_fmt(r['recall']):>6} {_fmt(r['f1']):>6}")
    conf = "n/a" if r["conf_threshold"] is None else f"{r['conf_threshold']:.3f}"
    lines.append("")
    lines.append(f"mAP@0.5 {r['map50']:.4f}   mAP@0.5:0.95 {r['map']:.4f}   P/R/F1 at conf >= {conf} "
                 f"(best F1; det column = detections kept there)")
    stages = ", ".join(f"{k} {v:.1f}" for k, v in r.get("latency_stages_ms", {}).items() if k != "total")
    lines.append(f"{r['n_images']} images, latency {r['latency_ms']:.1f} ms/image (median"
                 + (f"; {stages} ms" if stages else "") + f"), {r['ignored_detections']} detections "
                 f"in ignored regions dropped")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from slimyolo_ros.data.datasets import read_dataset
    from slimyolo_ros.errors import DatasetError

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s: %(message)s")
    dataset = read_dataset(args.data, split="val", skip_bad=args.skip_bad)  # before torch: fail fast
    samples = dataset.samples
    n_skipped = samples.n_skipped
    unannotated = samples.unannotated
    if unannotated:  # scored as background: a forgotten annotations/ file lowers mAP without a word
        print(f"warning: {args.data}: {unannotated} of {len(samples)} images have no annotation file in "
              f"annotations/; they are scored as background images (no objects)", file=sys.stderr)
    if args.limit is not None:
        if args.limit < 1:
            raise DatasetError(f"--limit {args.limit}: must be >= 1")
        samples = samples[: args.limit]
    from slimyolo_ros.detect import load_detector
    from slimyolo_ros.evaluate.run import evaluate_detector

    options = options_from_args(args)  # a bad option fails before the model loads
    detector = load_detector(args.weights, options)
    if list(detector.class_names) != dataset.class_names:
        logging.getLogger("slimyolo.eval").warning(
            "the model's class names (%s) differ from the dataset's (%s): classes are matched by index",
            ", ".join(detector.class_names), ", ".join(dataset.class_names))
    result = evaluate_detector(detector, samples, progress=sys.stderr.isatty())
    result.update({
        "weights": str(args.weights),
        "data": str(args.data),
        "img_size": detector.img_size,
        "device": str(detector.device),
        "provider": detector.provider,
        "conf": args.conf,
        "nms": args.nms,
        "skipped_annotations": n_skipped,
        "images_without_annotation": unannotated,
    })
    if args.json:
        print(json.dumps(result))
    else:
        print(format_table(result))
    return 0
