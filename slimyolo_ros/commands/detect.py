"""``slimyolo detect``: run the Detector on one image; print the detections, optionally draw them."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from slimyolo_ros.errors import SlimyoloError, describe_os_error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True,
                        help="model: .pt checkpoint, Darknet .weights (needs --cfg) "
                             "or .onnx (--backend onnxruntime)")
    parser.add_argument("--cfg", default=None,
                        help="Darknet cfg (required with .weights; overrides a .pt's own)")
    parser.add_argument("--names", default=None, help=".names file with one class name per line")
    parser.add_argument("--image", required=True, help="image file (anything OpenCV reads)")
    parser.add_argument("--img-size", type=int, default=None,
                        help="network input side (default: the model's)")
    parser.add_argument("--conf", type=float, default=0.25, help="score threshold, obj x cls (default 0.25)")
    parser.add_argument("--nms", type=float, default=0.45, help="NMS IoU threshold (default 0.45)")
    parser.add_argument("--max-det", type=int, default=300, help="most detections reported (default 300)")
    parser.add_argument("--classes", default=None, help="comma-separated class names to keep (default all)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--half", action="store_true", help="fp16 inference (CUDA only)")
    parser.add_argument("--backend", default="torch", choices=["torch", "onnxruntime"])
    parser.add_argument("--square", action="store_true",
                        help="letterbox to img_size x img_size (default: each side the smallest multiple "
                             "of 32 that holds the image, faster on non-square images)")
    parser.add_argument("--no-fuse", action="store_true", help="keep BatchNorm separate (default: folded)")
    parser.add_argument("--tile", default=None,
                        help="tiled inference: ROWSxCOLS (e.g. 2x3) or a tile side in pixels (e.g. 640); "
                             "the whole frame is also run and all detections merged by NMS")
    parser.add_argument("--tile-overlap", type=float, default=0.2, help="overlap of neighbouring tiles")
    parser.add_argument("--out", default=None, help="write the image with boxes drawn to this PNG")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _tile_arg(value: str | None):
    if value is None:
        return None
    v = value.strip().lower()
    if "x" in v or "," in v:
        return v
    try:
        return {"size": int(v)}
    except ValueError:
        raise SlimyoloError(f"--tile {value!r}: expected ROWSxCOLS (2x3) "
                            f"or a tile side in pixels (640)") from None


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
    det = load_detector(args.weights, cfg=args.cfg, names=args.names, device=args.device, half=args.half,
                        img_size=args.img_size, conf_threshold=args.conf, nms_threshold=args.nms,
                        max_detections=args.max_det, classes=args.classes, backend=args.backend,
                        tile=_tile_arg(args.tile), tile_overlap=args.tile_overlap, fuse=not args.no_fuse,
                        rect=not args.square)
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
                          "img_size": det.img_size, "conf_threshold": det.conf_threshold,
                          "nms_threshold": det.nms_threshold,
                          "timings_ms": {k: round(v, 3) for k, v in det.last_timings.items()},
                          "detections": rows, "annotated": args.out}))
        return
    for r in rows:
        x1, y1, x2, y2 = r["bbox"]
        print(f"{r['class_name']:<20} {r['score']:.3f}  [{x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f}]")
    t = det.last_timings
    print(f"{image_path}: {len(rows)} detections, {img.shape[1]}x{img.shape[0]}, "
          f"{det.backend} on {det.device}, "
          f"{t.get('total', 0):.1f} ms (pre {t.get('preprocess', 0):.1f}, forward {t.get('forward', 0):.1f}, "
          f"post {t.get('postprocess', 0):.1f})" + (f"; drawn to {args.out}" if args.out else ""),
          file=sys.stderr)
