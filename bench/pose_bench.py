"""Pose model throughput: crops/s for batch 1, 8, 32 on ONNX Runtime CPU (with and without mirror
test-time averaging) vs torch CPU (and ONNX Runtime CUDA / torch CUDA / TensorRT when a GPU and the
libraries are there).

    python bench/pose_bench.py [--onnx models/carpose_pose.onnx] [--ckpt runs/posenet/best.pt] [--arch posenet]

Throughput does not depend on the weights: without a checkpoint a freshly initialised network of
``--arch`` is exported to a temporary ONNX file, so the bench runs anywhere. Prints a table: median
latency per batch and crops/s (median of ``--reps`` timed runs after warm-up).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from carpose.nets import build_model, default_bins
from carpose.pose import PoseEstimator
from training.pose.checkpoint import save_checkpoint
from training.pose.export import export_onnx


def time_fn(fn, reps: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def fresh_checkpoint(arch: str, tmp: Path) -> Path:
    from carpose.convention import CONVENTION_VERSION

    bins = default_bins(arch)
    meta = {"arch": arch, "bins": bins, "input_size": 128, "convention_version": CONVENTION_VERSION,
            "crop": {"size": 128, "context": 0.1, "fill": 114}, "decode_half_window": 3 if bins > 4 else 0}
    return save_checkpoint(tmp / f"{arch}.pt", build_model(arch, bins), meta)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--onnx", help="ONNX model (default: export --ckpt or a fresh network)")
    p.add_argument("--ckpt", help="checkpoint for the torch rows")
    p.add_argument("--arch", default="posenet")
    p.add_argument("--engine", help="TensorRT engine (GPU only)")
    p.add_argument("--batches", default="1,8,32")
    p.add_argument("--reps", type=int, default=20)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pose_bench_"))
    ckpt = Path(args.ckpt) if args.ckpt else fresh_checkpoint(args.arch, tmp)
    onnx_path = Path(args.onnx) if args.onnx else export_onnx(ckpt, tmp / "m.onnx")
    # (backend, device, mirror test-time averaging): the mirror row costs a second pass per crop
    rows: list[tuple[str, str, bool]] = [("onnxruntime", "cpu", False), ("onnxruntime", "cpu", True),
                                         ("torch", "cpu", False)]
    if torch.cuda.is_available():
        rows += [("onnxruntime", "cuda", False), ("torch", "cuda", False)]
    if args.engine:
        rows.append(("tensorrt", "cuda", False))
    print(f"pose bench: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__} ({torch.get_num_threads()} threads), model {onnx_path.name}")
    print(f"{'backend':<12} {'device':<6} {'mirror':<6} {'batch':>5} {'ms/batch':>9} {'crops/s':>9}")
    for backend, device, tta in rows:
        path = {"onnxruntime": onnx_path, "torch": ckpt, "tensorrt": args.engine}[backend]
        try:
            est = PoseEstimator(path, backend=backend, device=device, mirror_tta=tta)
        except Exception as exc:  # a missing GPU provider is a row, not a crash
            print(f"{backend:<12} {device:<6} unavailable: {exc}")
            continue
        mirror = "yes" if tta else "no"
        s = est.input_size
        for b in (int(x) for x in args.batches.split(",")):
            crops = np.random.default_rng(0).integers(0, 256, (b, s, s, 3), dtype=np.uint8)
            dt = time_fn(lambda c=crops, e=est: e.predict(c), args.reps)
            print(f"{backend:<12} {device:<6} {mirror:<6} {b:>5} {dt * 1000:>9.2f} {b / dt:>9.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
