"""Render throughput: crops/s and scenes/s for 1 and 2 workers at 128 px and the seed-like 224 px.

    python bench/render_bench.py [--models ../shared/cars] [--count 512] [--scenes 48] [--ray-only]

Prints a table. 'steady' is the rate between the first and the last finished block (worker start-up
and model loading excluded); 'wall' includes them. Default model: the 40k-face textured ShapeNet car
20a967d6 when ../shared is present, else the procedural fleet.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

from carpose.crop import CropSpec
from training.render.jobs import ModelSpec, run_job
from training.render.sampling import RenderConfig
from training.render.scenes import SceneConfig

HEAVY_MODEL = "20a967d68b6d291512da0dbf3c68e847"


def measure(kind: str, count: int, workers: int, size: int, spec: ModelSpec, tmp: Path,
            ray: str | None = None) -> tuple[float, float]:
    marks: list[tuple[float, int]] = []
    t0 = time.perf_counter()
    run_job(kind, tmp / f"{kind}_{workers}_{size}_{ray}.h5", count, spec, RenderConfig(crop=CropSpec(size=size)),
            scfg=SceneConfig() if kind == "scenes" else None, seed=1, workers=workers,
            block_size=16 if kind == "crops" else 4, overwrite=True, progress=False,
            on_block=lambda n: marks.append((time.perf_counter(), n)), ray=ray)
    wall = time.perf_counter() - t0
    steady = (sum(n for _, n in marks[1:]) / (marks[-1][0] - marks[0][0])) if len(marks) > 2 else float("nan")
    return count / wall, steady


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = Path(__file__).resolve().parents[2] / "shared" / "cars"
    ap.add_argument("--models", default=str(shared / HEAVY_MODEL) if (shared / HEAVY_MODEL).exists() else None)
    ap.add_argument("--count", type=int, default=512, help="crops per measurement")
    ap.add_argument("--scenes", type=int, default=48, help="scene frames per measurement")
    ap.add_argument("--ray-only", action="store_true", help="only the 128 px crops rows: 2 workers vs Ray")
    args = ap.parse_args()
    spec = ModelSpec(models_dir=args.models) if args.models else ModelSpec(procedural=16)
    cpu = platform.processor() or platform.machine()
    print(f"models: {args.models or 'procedural x16'}; {os.cpu_count()} cores; {cpu}")
    print(f"{'job':<22}{'workers':>8}{'wall/s':>10}{'steady/s':>10}{'steady/s/worker':>17}")
    tmp = Path(tempfile.mkdtemp(prefix="render_bench_"))
    try:
        # Ray row: a private local cluster of 2 CPUs (ray.init, no dashboard), against the 2-worker pool.
        local = measure("crops", args.count, 2, 128, spec, tmp)
        ray = measure("crops", args.count, 2, 128, spec, tmp, ray="local")
        for name, (wall, steady) in (("crops 128px pool", local), ("crops 128px ray", ray)):
            print(f"{name:<22}{2:>8}{wall:>10.1f}{steady:>10.1f}{steady / 2:>17.1f}")
        print(f"ray / pool: wall {ray[0] / local[0]:.2f}, steady {ray[1] / local[1]:.2f}")
        if args.ray_only:
            return
        for size in (128, 224):
            for workers in (1, 2):
                wall, steady = measure("crops", args.count, workers, size, spec, tmp)
                print(f"{f'crops {size}px':<22}{workers:>8}{wall:>10.1f}{steady:>10.1f}{steady / workers:>17.1f}")
        for workers in (1, 2):
            wall, steady = measure("scenes", args.scenes, workers, 128, spec, tmp)
            print(f"{'scenes 640x480':<22}{workers:>8}{wall:>10.1f}{steady:>10.1f}{steady / workers:>17.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
