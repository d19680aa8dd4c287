"""``slimyolo detect``: run the Detector on one image; print the detections, optionally draw them."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from slimyolo_ros.commands.detector_args import add_detector_arguments, options_from_args
from slimyolo_ros.errors import SlimyoloError, describe_os_error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True,
                        help="model: .pt checkpoint, Darknet .weights (needs --cfg) "
                             "or .onnx (--backend onnxruntime)")
    parser.add_argument("--image", required=True, help="image file (anything OpenCV reads)")
    add_detector_arguments(parser, conf=0.25, nms=0.45)
    parser.add_argument("--out", default=None, help="write the image with boxes drawn to this PNG")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def run(args: argparse.Namespace) -> int:
    import cv2

    from slimyolo_ros.detect import load_detector
    from slimyolo_ros.detect.draw import draw_detections, write_png

    image_path = Path(args.image)
    if image_path.is_dir():
        raise SlimyoloError(f"--image {image_path}: is a directory, expected an image file")
    if not image_path.is_file():
        raise SlimyoloError(f"--image {image_path}: image not found")
    img = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise SlimyoloError(f"{image_path}: OpenCV cannot decode this file as an image")
    if img.dtype != "uint8":  # 16-bit PNG/TIFF: keep the top 8 bits
        img = (img >> 8).astype("uint8") if img.dtype == "uint16" else cv2.convertScaleAbs(img)
    det = load_detector(args.weights, options_from_args(args))
    dets = det(img)
    names = det.class_names
    rows = [{"class_id": int(c), "class_name": names[int(c)], "score": round(float(s), 6),
             "bbox": [round(float(v), 2) for v in (x1, y1, x2, y2)]}
            for x1, y1, x2, y2, s, c in dets.tolist()]
    out_error = None
    if args.out:
        try:
            bgr = img if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
            write_png(args.out, draw_detections(bgr, dets, names))
        except OSError as exc:  # the detections are printed first: they are not lost with the drawing
            out_error, args.out = f"--out: {describe_os_error(exc)}", None
    _print(args, image_path, img, det, rows)
    if out_error:
        raise SlimyoloError(out_error)
    return 0


def _print(args: argparse.Namespace, image_path: Path, img, det, rows: list[dict]) -> None:
    if args.json:
        print(json.dumps({"image": str(image_path), "width": int(img.shape[1]), "height": int(img.shape[0]),
                          "weights": str(args.weights), "backend": det.backend, "device": str(det.device),
                          "provider": det.provider,
                          "img_size": det.img_size, "conf_threshold": det.conf_threshold,
                          "nms_threshold": det.nms_threshold, "class_names": list(det.class_names),
                          "timings_ms": {k: round(v, 3) for k, v in det.last_timings.items()},
                          "detections": rows, "annotated": args.out}))
        return
    for r in rows:
        x1, y1, x2, y2 = r["bbox"]
        print(f"{r['class_name']:<20} {r['score']:.3f}  [{x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f}]")
    t = det.last_timings
    print(f"{image_path}: {len(rows)} detections, {img.shape[1]}x{img.shape[0]}, "
          f"{det.backend} on {det.device} ({det.provider}), "
          f"{t.get('total', 0):.1f} ms (pre {t.get('preprocess', 0):.1f}, forward {t.get('forward', 0):.1f}, "
          f"post {t.get('postprocess', 0):.1f})" + (f"; drawn to {args.out}" if args.out else ""),
          file=sys.stderr)
