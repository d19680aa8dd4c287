"""``slimyolo export``: a model to ONNX (checked against ONNX Runtime and OpenCV DNN), Darknet or
TorchScript. See docs/deploy.md for TensorRT on a Jetson."""

from __future__ import annotations

import argparse
import json
import sys

from slimyolo_ros.darknet.input_size import check_img_size
from slimyolo_ros.errors import SlimyoloError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True, help=".pt checkpoint or Darknet .weights (needs --cfg)")
    parser.add_argument("--cfg", default=None, help="Darknet cfg (required with .weights)")
    parser.add_argument("--names", default=None, help=".names file (default: the checkpoint's names)")
    parser.add_argument("--format", required=True, choices=["onnx", "darknet", "torchscript"])
    parser.add_argument("--out", required=True, help="output file")
    parser.add_argument("--img-size", type=int, default=None, help="input side (default: the model's)")
    parser.add_argument("--dynamic", action="store_true",
                        help="ONNX: free batch, height and width (ONNX Runtime/TensorRT; OpenCV DNN "
                             "cannot load it). Default: free batch only")
    parser.add_argument("--half", action="store_true", help="fp16 weights and input (for GPU runtimes)")
    parser.add_argument("--decoded", action="store_true",
                        help="output decoded boxes B×N×(5+C) (what the Detector reads) "
                             "instead of the raw heads")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 13, default 17)")
    parser.add_argument("--no-fuse", action="store_true",
                        help="ONNX/TorchScript: keep BatchNorm layers (default: folded into the convs)")
    parser.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime / OpenCV checks")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def run(args: argparse.Namespace) -> int:
    from slimyolo_ros.darknet.checkpoint import load_model

    model, class_names, img_size = load_model(args.weights, cfg=args.cfg, names=args.names, device="cpu")
    img_size = args.img_size or img_size
    img_size = check_img_size(img_size, "--img-size")
    if args.opset < 13:
        raise SlimyoloError(f"--opset {args.opset}: must be >= 13")
    if args.format != "onnx" and args.dynamic:
        raise SlimyoloError("--dynamic applies to --format onnx only")

    if args.format == "darknet":
        from slimyolo_ros.export.darknet import export_darknet

        report = export_darknet(model, args.out, img_size, class_names)
    else:
        exported = model
        if not args.no_fuse:
            from slimyolo_ros.detect.fuse import fuse_model

            exported = fuse_model(model)
        if args.format == "torchscript":
            from slimyolo_ros.export.torchscript import export_torchscript

            report = export_torchscript(exported, args.out, img_size, decoded=args.decoded, half=args.half,
                                        check=not args.no_check)
        else:
            from slimyolo_ros.export.onnx import check_opencv, check_parity, export_onnx

            report = export_onnx(exported, args.out, img_size, class_names, decoded=args.decoded,
                                 dynamic=args.dynamic, half=args.half, opset=args.opset, check=False)
            if not args.no_check:
                # Against the unfolded model: the check covers folding and export together.
                report["onnxruntime"] = check_parity(args.out, model, img_size, decoded=args.decoded,
                                                     half=args.half)
                if not args.half:
                    report["opencv"] = check_opencv(args.out, model, img_size, decoded=args.decoded)
        report["fused_bn"] = not args.no_fuse
    report["class_names"] = class_names

    parity = report.get("onnxruntime") or report.get("reload")
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['path']}: {args.format}, {report['bytes'] / 1e6:.1f} MB, img_size {img_size}",
              file=sys.stderr)
        if parity:
            print(f"  parity vs torch: max abs diff {parity['max_abs_diff']:.3g} -> "
                  f"{'OK' if parity['ok'] else 'FAILED'}", file=sys.stderr)
        if "opencv" in report:
            cv = report["opencv"]
            print("  OpenCV DNN: " + (f"loads, max abs diff {cv['max_abs_diff']:.3g}" if cv["loads"]
                                      else f"cannot load ({cv['error']})"), file=sys.stderr)
    if parity and not parity["ok"]:
        raise SlimyoloError(f"{args.out}: exported model disagrees with torch "
                            f"(max abs diff {parity['max_abs_diff']:.3g}, {parity.get('error', '')})")
    return 0
