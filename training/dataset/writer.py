"""Crash-safe, resumable dataset writing.

Why blocks on disk rather than appending to the HDF5 file: HDF5 is not crash-safe, so a run killed
mid-write can leave a file that opens but lies. Instead every block of samples is written to its
own ``.npz`` under ``<out>.parts/`` and given its final name by an atomic rename; a killed run
resumes by rendering only the missing blocks (sample i depends only on the seed and i, so the
result is identical). When every block is there they are merged into ``<out>.tmp`` which is
renamed to ``<out>``: a file under the final name is always complete.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from training.dataset.schema import GENERATOR_VERSION, SCHEMA_VERSION

FRAME_PREFIX, CAR_PREFIX = "f:", "c:"


class JobMismatchError(RuntimeError):
    """Leftover parts belong to a different job; resuming them would mix two datasets."""


class BlockStore:
    """The ``<out>.parts`` folder of one job: which blocks exist, saving and merging them."""

    def __init__(self, out: str | Path, job: dict, count: int, block_size: int) -> None:
        self.out = Path(out)
        self.parts = self.out.with_name(self.out.name + ".parts")
        self.job = dict(job, count=count, block_size=block_size)
        self.count = count
        self.block_size = block_size

    @property
    def num_blocks(self) -> int:
        return (self.count + self.block_size - 1) // self.block_size

    def block_range(self, b: int) -> range:
        return range(b * self.block_size, min((b + 1) * self.block_size, self.count))

    def block_path(self, b: int) -> Path:
        return self.parts / f"block_{b:06d}.npz"

    def prepare(self, overwrite: bool = False) -> list[int]:
        """Create or re-open the parts folder; return the blocks still to do.

        Raises FileExistsError if the output exists (unless ``overwrite``) and JobMismatchError if
        the parts were made by a job with other settings.
        """
        if self.out.exists() and not overwrite:
            raise FileExistsError(f"{self.out} exists; pass --overwrite to replace it")
        if overwrite and self.parts.exists():
            shutil.rmtree(self.parts)
        self.parts.mkdir(parents=True, exist_ok=True)
        job_file = self.parts / "job.json"
        if job_file.exists():
            old = json.loads(job_file.read_text())
            if old != json.loads(json.dumps(self.job)):
                diff = sorted(k for k in set(old) | set(self.job) if old.get(k) != self.job.get(k))
                raise JobMismatchError(
                    f"{self.parts} holds parts of a different job (differs in {', '.join(diff)}); "
                    "delete it or pass --overwrite")
        else:
            _atomic_write_text(job_file, json.dumps(self.job, indent=1, sort_keys=True))
        return [b for b in range(self.num_blocks) if not self.block_path(b).exists()]

    def save_block(self, b: int, arrays: dict[str, np.ndarray]) -> None:
        """Write one block; it appears under its final name only once fully written."""
        tmp = self.block_path(b).with_suffix(".tmp.npz")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.block_path(b))

    def iter_blocks(self) -> Iterable[dict[str, np.ndarray]]:
        for b in range(self.num_blocks):
            with np.load(self.block_path(b)) as z:
                yield {k: z[k] for k in z.files}

    def finalize(self, attrs: dict) -> Path:
        """Merge every block into the final HDF5 file (atomically) and remove the parts."""
        missing = [b for b in range(self.num_blocks) if not self.block_path(b).exists()]
        if missing:
            raise RuntimeError(f"cannot finalize {self.out}: blocks {missing[:5]}... are missing")
        tmp = self.out.with_name(self.out.name + ".tmp")
        first = next(iter(self.iter_blocks()))
        car_total = sum(len(blk[CAR_PREFIX + "frame"]) for blk in self.iter_blocks()) \
            if CAR_PREFIX + "frame" in first else 0
        with h5py.File(tmp, "w") as h5:
            dsets = {}
            for key, arr in first.items():
                name = key[len(FRAME_PREFIX):] if key.startswith(FRAME_PREFIX) else "cars/" + key[len(CAR_PREFIX):]
                rows = self.count if key.startswith(FRAME_PREFIX) else car_total
                chunk_rows = max(1, min(64, rows)) if arr.ndim >= 3 else max(1, min(4096, rows))
                kw = {"compression": "gzip", "compression_opts": 4} if arr.ndim >= 3 else {}
                dsets[key] = h5.create_dataset(name, shape=(rows, *arr.shape[1:]), dtype=arr.dtype,
                                               chunks=(chunk_rows, *arr.shape[1:]) if rows else None, **kw)
            f_off = c_off = 0
            for blk in self.iter_blocks():
                n_f = len(blk[FRAME_PREFIX + "images"])
                n_c = len(blk[CAR_PREFIX + "frame"]) if car_total else 0
                for key, arr in blk.items():
                    if key == CAR_PREFIX + "frame":
                        arr = arr + f_off
                    if key == FRAME_PREFIX + "car_start":
                        arr = arr + c_off
                    if key.startswith(FRAME_PREFIX):
                        dsets[key][f_off:f_off + n_f] = arr
                    else:
                        dsets[key][c_off:c_off + n_c] = arr
                f_off, c_off = f_off + n_f, c_off + n_c
            if f_off != self.count:
                raise RuntimeError(f"blocks hold {f_off} rows, expected {self.count}")
            base = {"schema_version": SCHEMA_VERSION, "generator_version": GENERATOR_VERSION,
                    "count": self.count, "created": datetime.now(timezone.utc).isoformat()}
            for k, v in {**base, **attrs}.items():
                h5.attrs[k] = json.dumps(v) if isinstance(v, (dict, list)) else v
        os.replace(tmp, self.out)
        shutil.rmtree(self.parts)
        return self.out


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
