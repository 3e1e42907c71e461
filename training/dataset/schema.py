"""The HDF5 layout of carpose datasets, written down once.

Crops file (``kind = "crops"``), one row per crop, datasets at the root:
    images        uint8   (N, S, S, 3)  RGB crops, chunked per 64 rows, gzip
    azimuth_deg   float32 (N,)   carpose convention (docs/conventions.md)
    elevation_deg float32 (N,)
    distance_m    float32 (N,)
    roll_deg      float32 (N,)
    model_id      int32   (N,)   index into the ``models`` attribute
    bbox          float32 (N, 4) visible car box in crop pixels (x1, y1, x2, y2)
    truncation    float32 (N,)
    occlusion     float32 (N,)
    paint_rgb     uint8   (N, 3)

Scenes file (``kind = "scenes"``): frames plus a flat table of cars:
    images        uint8   (F, H, W, 3)
    K             float32 (F, 3, 3)  camera intrinsics
    car_start     int64   (F,)  first row of the frame's cars in cars/*
    car_count     int32   (F,)
    cars/frame, cars/model_id, cars/bbox (visible, x1 y1 x2 y2), cars/bbox_full (the projected 3-D box),
    cars/bbox_amodal (the car's whole silhouette, as if unoccluded, cut by the frame;
    optional: scenes rendered before 2026-12-07 lack it),
    cars/azimuth_deg, cars/elevation_deg, cars/distance_m, cars/location_cam (x, y, z in the KITTI
    camera frame: x right, y down, z forward, bottom centre of the car), cars/dimensions (l, w, h),
    cars/rotation_y (KITTI), cars/visible_fraction, cars/truncation, cars/paint_rgb

Layers file (``kind = "layers"``): a car rendered once, no background, for compositing at training
time (training/pose/composite.py); one row per car, on a canvas C = 1.5 x the crop size:
    images        uint8   (N, C, C, 3)  the car's straight (un-premultiplied) RGB, 0 where alpha is 0
    alpha         uint8   (N, C, C)  coverage: 0 = background, 255 = car (antialiased edge between)
    shadow        uint8   (N, C, C)  factor on the ground the car casts its shadow on: 255 = none
    azimuth_deg, elevation_deg, distance_m, roll_deg, model_id, paint_rgb as in crops files;
    bbox          float32 (N, 4) tight car box (alpha > 0) in canvas pixels (x1, y1, x2, y2)
The ``render_config`` attribute also sets the draws made when compositing (box jitter, haze,
interference, truncation, low resolution, share of procedural backgrounds).

Attributes on the root of all three: schema_version, kind, convention_version, generator_version, seed,
count, render_config (JSON), models (JSON list of {name, source, transform, meta}), split (JSON),
created (ISO time). A file is only ever given its final name once it is complete.
"""

from __future__ import annotations

import numpy as np

SCHEMA_VERSION = 1
GENERATOR_VERSION = "carpose-render 1"

CROP_FIELDS: dict[str, tuple[np.dtype, tuple[int, ...]]] = {
    "azimuth_deg": (np.dtype(np.float32), ()),
    "elevation_deg": (np.dtype(np.float32), ()),
    "distance_m": (np.dtype(np.float32), ()),
    "roll_deg": (np.dtype(np.float32), ()),
    "model_id": (np.dtype(np.int32), ()),
    "bbox": (np.dtype(np.float32), (4,)),
    "truncation": (np.dtype(np.float32), ()),
    "occlusion": (np.dtype(np.float32), ()),
    "paint_rgb": (np.dtype(np.uint8), (3,)),
}

#: Per-row fields of a layers file besides ``images`` (the dtype and the shape after the row; None: C x C).
LAYER_FIELDS: dict[str, tuple[np.dtype, tuple[int, ...] | None]] = {
    "alpha": (np.dtype(np.uint8), None),
    "shadow": (np.dtype(np.uint8), None),
    **{k: CROP_FIELDS[k] for k in ("azimuth_deg", "elevation_deg", "distance_m", "roll_deg", "model_id", "bbox",
                                   "paint_rgb")},
}

SCENE_FRAME_FIELDS: dict[str, tuple[np.dtype, tuple[int, ...]]] = {
    "K": (np.dtype(np.float32), (3, 3)),
}

SCENE_CAR_FIELDS: dict[str, tuple[np.dtype, tuple[int, ...]]] = {
    "frame": (np.dtype(np.int64), ()),
    "model_id": (np.dtype(np.int32), ()),
    "bbox": (np.dtype(np.float32), (4,)),
    "bbox_full": (np.dtype(np.float32), (4,)),
    "bbox_amodal": (np.dtype(np.float32), (4,)),
    "azimuth_deg": (np.dtype(np.float32), ()),
    "elevation_deg": (np.dtype(np.float32), ()),
    "distance_m": (np.dtype(np.float32), ()),
    "location_cam": (np.dtype(np.float32), (3,)),
    "dimensions": (np.dtype(np.float32), (3,)),
    "rotation_y": (np.dtype(np.float32), ()),
    "visible_fraction": (np.dtype(np.float32), ()),
    "truncation": (np.dtype(np.float32), ()),
    "paint_rgb": (np.dtype(np.uint8), (3,)),
}

#: Car columns that older scenes files lack (added later to the same schema version): read when present.
SCENE_CAR_OPTIONAL = frozenset({"bbox_amodal"})

REQUIRED_ATTRS = ("schema_version", "kind", "convention_version", "generator_version", "seed",
                  "count", "render_config", "models", "split", "created")
