"""``slimyolo info --cfg CFG [--img-size N] [--json]``: layer table, params and GFLOPs of a cfg."""

from __future__ import annotations

import argparse
import json

from slimyolo_ros.darknet.input_size import check_img_size


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cfg", required=True, help="Darknet cfg file")
    parser.add_argument("--img-size", type=int, default=None,
                        help="square input size in pixels (default: the cfg's [net] width)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def _shape(shape: list[int]) -> str:
    return "x".join(str(v) for v in shape)


def run(args: argparse.Namespace) -> int:
    from slimyolo_ros.darknet.complexity import count_params, layer_table
    from slimyolo_ros.darknet.model import Darknet

    model = Darknet.from_file(args.cfg)
    img_size = args.img_size or model.img_size
    img_size = check_img_size(img_size, "--img-size")
    rows = layer_table(model, img_size)
    params = count_params(model)
    gflops = sum(r["gflops"] for r in rows)
    if args.json:
        print(json.dumps({"cfg": str(args.cfg), "img_size": img_size, "params": params, "gflops": gflops,
                          "num_classes": model.num_classes, "num_layers": len(rows),
                          "yolo_layers": model.yolo_layers, "layers": rows}))
        return 0
    print(f"{'idx':>4}  {'type':<14}{'filters':>8}  {'size/str':>8}  {'input':>14}  {'output':>14}"
          f"  {'params':>10}  {'GFLOPs':>8}  from")
    for r in rows:
        ks = f"{r['size']}/{r['stride']}" if "size" in r else (f"x{r['stride']}" if "stride" in r else "")
        ref = ",".join(map(str, r.get("layers", [])))
        print(f"{r['index']:>4}  {r['type']:<14}{r['filters']:>8}  {ks:>8}  {_shape(r['input']):>14}  "
              f"{_shape(r['output']):>14}  {r['params']:>10}  {r['gflops']:>8.3f}  {ref}")
    print(f"{args.cfg}: {len(rows)} layers, {model.num_classes} classes, input {img_size}x{img_size}: "
          f"{params} parameters ({params / 1e6:.2f} M), {gflops:.2f} GFLOPs")
    return 0
