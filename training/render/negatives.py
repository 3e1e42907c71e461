"""Things on a road that are not cars, to render beside the cars as unlabelled negatives.

Why: the first detector trained on cars alone fired on chain-link fences, trailers, box trucks,
trees and poles in real frames (docs/real_eval.md): it had never been shown that those are *not*
cars. These objects are rendered into road scenes with no label, so every box the detector puts
on them is a false positive the loss punishes.

Procedural objects (always available, a few hundred faces each): box bodies of lorries, trailers,
buses and windowless vans, poles, bollards, concrete barriers, fences of posts and rails, trees.
Mesh distractors (a lorry in ``../shared/distractors``, the box-body vehicles the car registry
excludes) are added by :func:`load_negatives`. Every object is a :class:`CarModel` in the car frame
(metres, +X along its length, +Z up, on z=0) so the renderer and the scene layout take it as they
take a car; ``meta["kind"]`` says what it is and ``meta["colour"]`` its base colour.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import trimesh

from training.cars.model import CarModel, CarPart

log = logging.getLogger(__name__)

#: Where each kind stands in a road scene (training.render.scenes.place_road): in a lane like a
#: vehicle, at the kerb line, or behind the kerb.
VEHICLE_KINDS = ("lorry", "trailer", "bus", "box_van")
KERB_KINDS = ("pole", "bollard", "barrier")
VERGE_KINDS = ("fence", "tree")


def _box(lx: float, ly: float, lz: float, x: float = 0.0, y: float = 0.0, z0: float = 0.0) -> trimesh.Trimesh:
    m = trimesh.creation.box(extents=(lx, ly, lz))
    m.apply_translation((x, y, z0 + lz / 2))
    return m


def _cyl(r: float, h: float, x: float = 0.0, y: float = 0.0, z0: float = 0.0, sections: int = 10) -> trimesh.Trimesh:
    m = trimesh.creation.cylinder(radius=r, height=h, sections=sections)
    m.apply_translation((x, y, z0 + h / 2))
    return m


def _grey(rng: np.random.Generator, lo: float, hi: float) -> tuple[float, float, float, float]:
    g = float(rng.uniform(lo, hi))
    tint = rng.normal(0.0, 0.03, 3)
    return (*np.clip(g + tint, 0.0, 1.0).tolist(), 1.0)


def _model(name: str, kind: str, parts: list[tuple[trimesh.Trimesh, str, tuple]]) -> CarModel:
    return CarModel(name=name, parts=[CarPart(mesh=m, role=role, color=c) for m, role, c in parts],
                    collection="negatives", meta={"kind": kind, "colour": parts[0][2]})


def box_vehicle(rng: np.random.Generator, kind: str, name: str) -> CarModel:
    """A lorry, trailer, bus or windowless van: a box body on wheels (a cab for lorries)."""
    L, W, H, lift = {"lorry": (7.0, 2.5, 3.6, 0.9), "trailer": (10.0, 2.5, 3.3, 1.1), "bus": (11.0, 2.55, 3.1, 0.35),
                     "box_van": (5.5, 2.1, 2.6, 0.4)}[kind]
    L *= rng.uniform(0.85, 1.15)
    H *= rng.uniform(0.9, 1.1)
    body_c = _grey(rng, 0.35, 0.95) if rng.uniform() < 0.7 else (*rng.uniform(0.05, 0.9, 3).tolist(), 1.0)
    parts: list[tuple[trimesh.Trimesh, str, tuple]] = []
    cab = 0.0
    if kind == "lorry":
        cab = 2.0
        parts.append((_box(cab, W * 0.96, 2.6, x=L / 2 - cab / 2, z0=0.5), "paint", body_c))
        parts.append((_box(0.05, W * 0.8, 0.9, x=L / 2 + 0.01, z0=1.9), "glass", (0.05, 0.07, 0.1, 1.0)))
    parts.insert(0, (_box(L - cab - 0.2, W, H - lift, x=-(cab + 0.2) / 2, z0=lift), "paint", body_c))
    if kind == "bus":  # a band of windows along both sides
        parts.append((_box(L * 0.9, W + 0.04, 0.9, z0=lift + (H - lift) * 0.5), "glass", (0.05, 0.07, 0.1, 1.0)))
    r = 0.5 if kind != "box_van" else 0.35
    for x in (-L / 2 + 1.2, L / 2 - 1.5 - cab * 0.3):
        for y in (-W / 2 + 0.15, W / 2 - 0.15):
            wheel = trimesh.creation.cylinder(radius=r, height=0.3, sections=12)
            wheel.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, (1, 0, 0)))
            wheel.apply_translation((x, y, r))
            parts.append((wheel, "tyre", (0.03, 0.03, 0.03, 1.0)))
    return _model(name, kind, parts)


def street_object(rng: np.random.Generator, kind: str, name: str) -> CarModel:
    """Poles, bollards, barriers, fences and trees: the clutter along a kerb."""
    if kind == "pole":
        h = float(rng.uniform(3.0, 8.0))
        c = _grey(rng, 0.2, 0.7)
        parts = [(_cyl(float(rng.uniform(0.06, 0.18)), h), "paint", c)]
        if rng.uniform() < 0.4:  # a sign on it
            parts.append((_box(0.05, 0.7, 0.7, z0=h * 0.6), "paint", (*rng.uniform(0.1, 1.0, 3).tolist(), 1.0)))
    elif kind == "bollard":
        parts = [(_cyl(0.1, float(rng.uniform(0.8, 1.1)), sections=8), "paint", _grey(rng, 0.1, 0.9))]
    elif kind == "barrier":
        L = float(rng.uniform(2.0, 6.0))
        parts = [(_box(L, 0.5, 0.45), "paint", _grey(rng, 0.6, 0.85)),
                 (_box(L, 0.25, float(rng.uniform(0.35, 0.6)), z0=0.45), "paint", _grey(rng, 0.6, 0.85))]
    elif kind == "fence":
        L = float(rng.uniform(4.0, 15.0))
        h = float(rng.uniform(1.2, 2.2))
        c = _grey(rng, 0.3, 0.7)
        parts = [(_box(0.06, 0.06, h, x=x), "paint", c) for x in np.arange(-L / 2, L / 2 + 0.01, 2.5)]
        step = float(rng.uniform(0.1, 0.25))  # chain link / palings: many thin bars
        parts += [(_box(0.02, 0.02, h, x=x), "paint", c) for x in np.arange(-L / 2, L / 2, step)]
        parts += [(_box(L, 0.03, 0.04, z0=z), "paint", c) for z in (0.1, h / 2, h - 0.05)]
    elif kind == "tree":
        h = float(rng.uniform(3.0, 9.0))
        trunk = (_cyl(float(rng.uniform(0.12, 0.3)), h * 0.5), "paint", (0.25, 0.18, 0.12, 1.0))
        crown = trimesh.creation.icosphere(subdivisions=2, radius=float(rng.uniform(1.2, 3.0)))
        crown.vertices *= rng.uniform(0.75, 1.25, 3)
        crown.vertices += rng.normal(0.0, 0.15, crown.vertices.shape)
        crown.apply_translation((0, 0, h * 0.5 + crown.extents[2] * 0.4))
        green = (float(rng.uniform(0.1, 0.3)), float(rng.uniform(0.25, 0.5)), float(rng.uniform(0.05, 0.2)), 1.0)
        parts = [trunk, (crown, "paint", green)]
    else:
        raise ValueError(f"unknown street object {kind!r}")
    return _model(name, kind, parts)


def procedural_negatives(count_per_kind: int = 4, seed: int = 0) -> list[CarModel]:
    """``count_per_kind`` variants of every procedural kind (deterministic for ``seed``)."""
    rng = np.random.default_rng(seed)
    out = []
    for kind in VEHICLE_KINDS:
        out += [box_vehicle(rng, kind, f"neg_{kind}_{i}") for i in range(count_per_kind)]
    for kind in KERB_KINDS + VERGE_KINDS:
        out += [street_object(rng, kind, f"neg_{kind}_{i}") for i in range(count_per_kind)]
    return out


def check_kinds(kinds: tuple[str, ...]) -> None:
    """Refuse a kind of procedural negative that does not exist (a misspelt ``--skip-negative``)."""
    unknown = set(kinds) - set(VEHICLE_KINDS + KERB_KINDS + VERGE_KINDS)
    if unknown:
        raise ValueError(f"unknown negative kind(s) {sorted(unknown)}; expected some of "
                         f"{list(VEHICLE_KINDS + KERB_KINDS + VERGE_KINDS)}")


def load_negatives(mesh_dirs: tuple[str, ...] = (), count_per_kind: int = 4, seed: int = 0,
                   skip: tuple[str, ...] = ()) -> list[CarModel]:
    """Procedural negatives plus the meshes below ``mesh_dirs`` (e.g. ``../shared/distractors``; a
    missing folder is skipped with a log line). Meshes are taken as +Y up (glTF) and scaled to 7 m
    long along their native Z: which end is the front does not matter for a negative. ``skip``: kinds
    of procedural negative left out (a box van is a Van to KITTI's labellers, so a car to the product)."""
    from training.cars.loader import find_model_files, load_car

    check_kinds(skip)
    out = [m for m in procedural_negatives(count_per_kind, seed) if m.meta["kind"] not in skip]
    for d in mesh_dirs:
        if not Path(d).is_dir():
            log.info("negatives: %s not found, skipped", d)
            continue
        for p in find_model_files(d):
            try:
                m = load_car(p, front="+z", up="+y", length_m=7.0)
            except ValueError as exc:
                log.warning("negatives: %s skipped (%s)", p, exc)
                continue
            m.collection, m.meta = "negatives", {"kind": "lorry", "colour": None}
            out.append(m)
    return out
