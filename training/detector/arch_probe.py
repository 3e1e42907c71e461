"""An untrained detector of any ultralytics architecture, exported as the shipped file is, to time it.

    python -m training.detector.arch_probe yolo11s.yaml --out runs/arch/yolo11s.onnx \
        [--int8 --calib ../shared/real_unlabelled]
    python bench/det_input_bench.py models/carpose_det.onnx runs/arch/yolo11s.onnx --frame-size 640x480
    python bench/pipeline_bench.py --sizes 640x480 --cars 4 --det-model runs/arch/yolo11s.onnx

Why: a larger network is the detector lever that needs a GPU to train, and the issue's time budget
(45 ms a frame, 25 frames/s end to end on 2 CPU cores) decides whether it could ship at all. The cost
of a network does not depend on its weights, so random ones (one class, ``car``), exported with the
shipped file's settings (free height and width, the 352 x 640 box, opset 17, NMS outside) and
optionally quantized like its INT8 twin, time the same as a trained one. An untrained network draws
(almost) no boxes: the benches' ``found`` column reads 0 and their pose stage costs nothing, so add
the shipped detector's pose milliseconds to its end-to-end figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def random_detector(arch: str, out: str | Path, box: tuple[int, int] = (352, 640), seed: int = 0) -> dict:
    """Write ``out``: ``arch`` (an ultralytics model file such as ``yolo11s.yaml``) with random
    weights and one class, exported like ``carpose_det.onnx``; returns what was made."""
    import torch

    from training.detector.train import export_onnx
    from training.detector.warm_start import blank_detector, save_detector

    torch.manual_seed(seed)
    try:
        net = blank_detector(arch, {0: "car"})
    except FileNotFoundError as exc:
        raise ValueError(f"{arch}: not an ultralytics architecture file ({exc})") from exc
    with tempfile.TemporaryDirectory() as tmp:
        pt = save_detector(net, arch, Path(tmp) / Path(arch).with_suffix(".pt").name)
        export_onnx(pt, out, box, provenance={"untrained": arch, "purpose": "timing only"}, dynamic=True)
    return {"onnx": str(out), "arch": arch, "parameters": sum(p.numel() for p in net.parameters()),
            "box": list(box)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.detector.arch_probe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("arch", help="ultralytics architecture file, e.g. yolo11n.yaml, yolo11s.yaml")
    p.add_argument("--out", required=True, help="the ONNX path")
    p.add_argument("--box", type=int, nargs=2, default=(352, 640), metavar=("H", "W"),
                   help="the box frames are fitted into (default: the shipped 352 x 640)")
    p.add_argument("--int8", action="store_true", help="also write OUT's INT8 twin (*_int8.onnx, carpose-det-int8)")
    p.add_argument("--calib", help="unlabelled photos for --int8's calibration")
    args = p.parse_args(argv)
    if args.int8 and not args.calib:
        p.error("--int8 needs --calib (a folder of unlabelled photos)")
    try:
        info = random_detector(args.arch, args.out, tuple(args.box))
        if args.int8:
            from training.detector.quantize import quantize_detector

            int8 = Path(args.out).with_name(Path(args.out).stem + "_int8.onnx")
            quantize_detector(args.out, int8, args.calib, count=32, progress=False)
            info["int8"] = str(int8)
    except (FileNotFoundError, ValueError) as exc:
        print(f"arch_probe: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
