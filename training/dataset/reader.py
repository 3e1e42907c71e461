"""Open carpose HDF5 datasets with a schema check and clear errors.

Why validate up front: a wrong or truncated file should fail at open with a message naming the file
and the problem, not hours into training with an h5py traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from carpose.convention import convention_mismatch
from training.dataset.schema import (
    CROP_FIELDS,
    LAYER_FIELDS,
    REQUIRED_ATTRS,
    SCENE_CAR_FIELDS,
    SCENE_CAR_OPTIONAL,
    SCENE_FRAME_FIELDS,
    SCHEMA_VERSION,
)


class DatasetError(ValueError):
    """The file is not a usable carpose dataset; the message says why."""


class CarposeDataset:
    """Read access to a validated crops, layers or scenes file. Opens lazily, so it can be handed to
    worker processes (each opens its own h5py handle)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.attrs = validate(self.path)
        self.kind: str = self.attrs["kind"]
        self.count: int = int(self.attrs["count"])
        self._h5: h5py.File | None = None

    @property
    def h5(self) -> h5py.File:
        if self._h5 is None:
            self._h5 = h5py.File(self.path, "r")
        return self._h5

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def __enter__(self) -> CarposeDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self.count

    @property
    def models(self) -> list[dict]:
        return self.attrs["models"]

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of the images the file gives a pose CNN: its crops, or for a layers file the crops
        composited from it (``crop.size`` of its render config; ``canvas_shape`` is what it stores)."""
        if self.kind == "layers":
            size = int(self.attrs["render_config"]["crop"]["size"])
            return (size, size, 3)
        return self.canvas_shape

    @property
    def canvas_shape(self) -> tuple[int, ...]:
        """Shape of the stored ``images`` rows (crops, frames, or a layers file's car canvases)."""
        return tuple(self.h5["images"].shape[1:])

    def labels(self) -> dict[str, np.ndarray]:
        """Every per-row label column (crops, layers) or car column (scenes) as arrays in memory."""
        if self.kind == "crops":
            return {k: self.h5[k][...] for k in CROP_FIELDS}
        if self.kind == "layers":
            return {k: self.h5[k][...] for k, (_, shape) in LAYER_FIELDS.items() if shape is not None}
        return {k: self.h5["cars/" + k][...] for k in self._car_fields()}

    def image(self, i: int) -> np.ndarray:
        return self.h5["images"][i]

    def iter_images(self):
        """Yield (index, image) in file order, reading one compressed chunk at a time. Why: a single
        row read decompresses its whole chunk (64 frames), so row-by-row export was 64x slower."""
        d = self.h5["images"]
        step = d.chunks[0] if d.chunks else 64
        for a in range(0, len(d), step):
            block = d[a:a + step]
            for k, img in enumerate(block):
                yield a + k, img

    def cars_of_frame(self, i: int) -> dict[str, np.ndarray]:
        if self.kind != "scenes":
            raise DatasetError(f"{self.path} holds crops, not scenes")
        s, n = int(self.h5["car_start"][i]), int(self.h5["car_count"][i])
        return {k: self.h5["cars/" + k][s:s + n] for k in self._car_fields()}

    def _car_fields(self) -> list[str]:
        """The car columns this file holds (an older file lacks the optional ones)."""
        return [k for k in SCENE_CAR_FIELDS if k not in SCENE_CAR_OPTIONAL or "cars/" + k in self.h5]


def _decode_attrs(h5: h5py.File) -> dict:
    out = {}
    for k, v in h5.attrs.items():
        if isinstance(v, bytes):
            v = v.decode()
        if k in ("render_config", "models", "split") and isinstance(v, str):
            v = json.loads(v)
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


def validate(path: str | Path) -> dict:
    """Check a file against the schema; return its attributes or raise DatasetError."""
    path = Path(path)
    if not path.exists():
        partial = path.with_name(path.name + ".parts")
        hint = f" (an unfinished run left {partial}: run the same command again to resume)" \
            if partial.exists() else ""
        raise FileNotFoundError(f"dataset {path} does not exist{hint}")
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise DatasetError(f"{path} is not a readable HDF5 file (truncated or corrupt?): {exc}") from exc
    with h5:
        attrs = _decode_attrs(h5)
        missing = [a for a in REQUIRED_ATTRS if a not in attrs]
        if missing:
            raise DatasetError(f"{path} is not a carpose dataset: attributes {missing} missing")
        if attrs["schema_version"] != SCHEMA_VERSION:
            raise DatasetError(f"{path} has schema version {attrs['schema_version']}, this carpose reads "
                               f"{SCHEMA_VERSION}; re-render it")
        if why := convention_mismatch(attrs["convention_version"], str(path)):
            raise DatasetError(why)
        kind, n = attrs["kind"], int(attrs["count"])
        if kind == "crops":
            expected = {"images": (np.dtype(np.uint8), None), **CROP_FIELDS}
            rows = dict.fromkeys(expected, n)
        elif kind == "layers":
            canvas = tuple(h5["images"].shape[1:3]) if "images" in h5 else None
            expected = {"images": (np.dtype(np.uint8), None),
                        **{k: (dt, canvas if shape is None else shape) for k, (dt, shape) in LAYER_FIELDS.items()}}
            rows = dict.fromkeys(expected, n)
        elif kind == "scenes":
            n_cars = int(h5["car_count"][...].sum()) if "car_count" in h5 else -1
            expected = {"images": (np.dtype(np.uint8), None), "car_start": (np.dtype(np.int64), ()),
                        "car_count": (np.dtype(np.int32), ()), **SCENE_FRAME_FIELDS,
                        **{"cars/" + k: v for k, v in SCENE_CAR_FIELDS.items()}}
            rows = {k: (n_cars if k.startswith("cars/") else n) for k in expected}
        else:
            raise DatasetError(f"{path}: unknown dataset kind {kind!r}")
        for name, (dtype, shape) in expected.items():
            if name not in h5 and name.removeprefix("cars/") in SCENE_CAR_OPTIONAL:
                continue
            if name not in h5:
                raise DatasetError(f"{path}: dataset {name!r} missing")
            d = h5[name]
            if d.dtype != dtype or d.shape[0] != rows[name] or (shape is not None and d.shape[1:] != shape):
                raise DatasetError(f"{path}: dataset {name!r} is {d.dtype} {d.shape}, expected {dtype} "
                                   f"with {rows[name]} rows" + (f" x {shape}" if shape else ""))
        img = h5["images"]
        if img.ndim != 4 or img.shape[3] != 3:
            raise DatasetError(f"{path}: images must be (N, H, W, 3), got {img.shape}")
    return attrs
