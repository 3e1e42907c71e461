"""Detector input shapes timed against each other on the real validation frames, interleaved.

    python bench/det_input_bench.py runs/det_shapes/det_288x512.onnx runs/det_shapes/det_352x640.onnx \
        runs/det_shapes/det_dynamic.onnx@640 [--frames 12] [--rounds 3]

Each option is a detector file (.onnx/.pt); ``FILE@SIDE`` hands it ``imgsz=SIDE``, which a dynamic ONNX
or a .pt uses as the long side of an input that follows each frame's aspect (ultralytics pads the short
side to a multiple of 32); a fixed-size ONNX runs at its own shape. Every frame (``--frames`` per real
source, carpose.eval.real_sources) goes through every option in turn, the order rotating from frame to
frame, so a shared machine's load falls on all options alike: on a busy machine read the ratio to the
first option (the baseline) rather than the milliseconds. Times are ``YoloDetector.detect``: letterbox,
network and NMS, as the pipeline's ``detect`` stage. Accuracy: ``carpose-benchmark --det-model FILE``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from carpose.detect import DetectorConfig, YoloDetector
from carpose.eval.kitti import kitti_pairs
from carpose.eval.real_sources import available_sources


def parse_option(text: str) -> tuple[str, int]:
    """'FILE' or 'FILE@SIDE' -> (file, side); the side defaults to 640 (the CLIs' default)."""
    path, _, side = text.rpartition("@") if "@" in text else (text, "", "640")
    return path, int(side)


def network_input(det: YoloDetector, frame: np.ndarray) -> tuple[int, int]:
    """(height, width) of the tensor the network gets for ``frame``: a fixed ONNX's own shape, else
    ultralytics' minimal-padding letterbox of the frame to the configured side."""
    if getattr(det.model.predictor.model, "dynamic", False) or det.weights.suffix == ".pt":
        from ultralytics.data.augment import LetterBox

        return LetterBox(det.input_hw, auto=True, stride=32)(image=frame).shape[:2]
    return det.input_hw


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("options", nargs="+", help="FILE or FILE@SIDE; the first is the baseline")
    p.add_argument("--sources", nargs="+", help="real sources (default: every one found)")
    p.add_argument("--frames", type=int, default=12, help="frames per source, spread over it")
    p.add_argument("--rounds", type=int, default=3, help="passes over the frames")
    args = p.parse_args()
    opts = [parse_option(o) for o in args.options]
    dets = [YoloDetector(DetectorConfig(weights=w, imgsz=s, conf=0.35, device="cpu")) for w, s in opts]
    names = [f"{Path(w).stem}@{s}" if "@" in o else Path(w).stem for (w, s), o in zip(opts, args.options, strict=True)]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"detector input bench: {platform.machine()}, {os.cpu_count()} cores, load average {load:.1f} at the "
          f"start; {args.rounds} rounds x {args.frames} frames per source, options interleaved")
    for src in available_sources(args.sources, "det_input_bench"):
        pairs = kitti_pairs(src.labels, src.images)
        idx = np.unique(np.linspace(0, len(pairs) - 1, min(args.frames, len(pairs))).round().astype(int))
        frames = [cv2.imread(str(pairs[i][0]), cv2.IMREAD_COLOR) for i in idx]
        for d in dets:
            d.detect(frames[0])  # a dynamic ONNX plans each new input shape once
        ms: list[list[float]] = [[] for _ in dets]
        k = 0
        for _ in range(args.rounds):
            for frame in frames:
                for j in np.roll(np.arange(len(dets)), k):
                    t0 = time.perf_counter()
                    dets[j].detect(frame)
                    ms[j].append((time.perf_counter() - t0) * 1000)
                k += 1
        base = float(np.median(ms[0]))
        h, w = frames[0].shape[:2]
        print(f"\n{src.name} ({w}x{h} frames)\n")
        print("| option | network input (h x w) | median ms | p90 ms | x baseline |")
        print("|---|---|---:|---:|---:|")
        for name, d, m in zip(names, dets, ms, strict=True):
            ih, iw = network_input(d, frames[0])
            print(f"| {name} | {ih} x {iw} | {np.median(m):.1f} | {np.percentile(m, 90):.1f} "
                  f"| {np.median(m) / base:.2f} |")
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end" if hasattr(os, "getloadavg") else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
