"""Detector input shapes timed against each other on the real validation frames, interleaved.

    python bench/det_input_bench.py runs/det_shapes/det_288x512.onnx runs/det_shapes/det_352x640.onnx \
        runs/det_shapes/det_dynamic.onnx@640 [--frames 12] [--rounds 3]

Each option is a detector file (.onnx/.pt) run at its own input size (a fixed-size ONNX: its shape; a
dynamic ONNX: the box it was exported for, e.g. the shipped 352 x 640; a .pt: 640), or ``FILE@SIDE`` /
``FILE@HxW``, which a dynamic ONNX or a .pt uses as the long side / the box of an input that follows each
frame's aspect (ultralytics pads the short side to a multiple of 32); a fixed-size ONNX always runs at
its own shape. A ``--frame-size WxH`` adds a source of that size (the nuScenes frames resized), for
cameras without labelled frames here, such as 640x480. Every frame (``--frames`` per real
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


def parse_option(text: str) -> tuple[str, int | tuple[int, int] | None]:
    """'FILE', 'FILE@SIDE' or 'FILE@HxW' -> (file, size); None: the model's own size."""
    if "@" not in text:
        return text, None
    path, _, size = text.rpartition("@")
    h, _, w = size.partition("x")
    return path, (int(h), int(w)) if w else int(h)


def fit_frame(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """The largest central window of ``frame`` with the aspect width:height, resized to that size."""
    fh, fw = frame.shape[:2]
    cw, ch = min(fw, round(fh * width / height)), min(fh, round(fw * height / width))
    x, y = (fw - cw) // 2, (fh - ch) // 2
    return cv2.resize(frame[y:y + ch, x:x + cw], (width, height), interpolation=cv2.INTER_AREA)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("options", nargs="+", help="FILE, FILE@SIDE or FILE@HxW; the first is the baseline")
    p.add_argument("--sources", nargs="+", help="real sources (default: every one found)")
    p.add_argument("--frames", type=int, default=12, help="frames per source, spread over it")
    p.add_argument("--rounds", type=int, default=3, help="passes over the frames")
    p.add_argument("--frame-size", nargs="*", default=[], metavar="WxH",
                   help="also time the first source's frames cut to this aspect and resized (e.g. 640x480)")
    args = p.parse_args()
    opts = [parse_option(o) for o in args.options]
    dets = [YoloDetector(DetectorConfig(weights=w, imgsz=s, conf=0.35, device="cpu")) for w, s in opts]
    names = [Path(w).stem + (o[o.rindex("@"):] if "@" in o else "")
             for (w, _), o in zip(opts, args.options, strict=True)]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"detector input bench: {platform.machine()}, {os.cpu_count()} cores, load average {load:.1f} at the "
          f"start; {args.rounds} rounds x {args.frames} frames per source, options interleaved")
    sets = []
    for src in available_sources(args.sources, "det_input_bench"):
        pairs = kitti_pairs(src.labels, src.images)
        idx = np.unique(np.linspace(0, len(pairs) - 1, min(args.frames, len(pairs))).round().astype(int))
        sets.append((src.name, [cv2.imread(str(pairs[i][0]), cv2.IMREAD_COLOR) for i in idx]))
    for size in args.frame_size:
        w, h = (int(v) for v in size.split("x"))
        sets.append((f"{sets[0][0]} as {w}x{h}", [fit_frame(f, w, h) for f in sets[0][1]]))
    for set_name, frames in sets:
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
        print(f"\n{set_name} ({w}x{h} frames)\n")
        print("| option | network input (h x w) | median ms | p90 ms | x baseline |")
        print("|---|---|---:|---:|---:|")
        for name, d, m in zip(names, dets, ms, strict=True):
            ih, iw = d.network_hw(frames[0].shape[:2])
            print(f"| {name} | {ih} x {iw} | {np.median(m):.1f} | {np.percentile(m, 90):.1f} "
                  f"| {np.median(m) / base:.2f} |")
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end" if hasattr(os, "getloadavg") else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
