"""Procedural cars: parametric sedans, hatchbacks, SUVs, vans and pickups, and panel vans on request.

Why: the project must work with no external data, and 4 ShapeNet meshes are far too few distinct
shapes to learn azimuth from. Each car is built from convex pieces (a lower body and a cabin made
from side profiles, extruded across the width, plus wheels, windows, lights, grille, bumpers and
mirrors), so it renders fast (~2k faces) and its front and rear differ the way real cars do:
long hood and windscreen at the front, headlights and grille at the front, red tail lights, a
trunk, hatch or cargo bed at the rear.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh

from training.cars.model import CarModel, CarPart

BODY_TYPES = ("sedan", "hatchback", "suv", "van", "pickup")
#: Body types a fleet draws only when asked (``generate_panel_vans``), so the default fleets, and every
#: dataset rendered from them, stay what they were.
EXTRA_BODY_TYPES = ("panel_van",)
#: Share of panel vans that carry glass all along the sides (minibuses, crew vans).
PANEL_VAN_GLAZED = 0.25


@dataclass(frozen=True)
class _Ranges:
    length: tuple[float, float]
    width: tuple[float, float]
    height: tuple[float, float]
    clearance: tuple[float, float]
    wheel_radius: tuple[float, float]
    belt: tuple[float, float]  # beltline height as a fraction of (height - clearance) above clearance
    hood: tuple[float, float]  # hood length / length
    tail: tuple[float, float]  # trunk (or bed) length / length; ~0 for hatchbacks, SUVs and vans
    rake: tuple[float, float]  # windscreen run (x) / cabin height
    rear_rake: tuple[float, float]  # rear window run / cabin height


_TYPES: dict[str, _Ranges] = {
    "sedan": _Ranges((4.3, 5.1), (1.72, 1.9), (1.38, 1.5), (0.12, 0.17), (0.30, 0.34), (0.48, 0.56),
                     (0.24, 0.30), (0.14, 0.20), (1.3, 1.8), (1.0, 1.6)),
    "hatchback": _Ranges((3.7, 4.4), (1.65, 1.8), (1.42, 1.55), (0.12, 0.17), (0.29, 0.33), (0.48, 0.56),
                         (0.20, 0.26), (0.0, 0.02), (1.2, 1.7), (0.3, 0.7)),
    "suv": _Ranges((4.3, 5.0), (1.8, 2.0), (1.65, 1.85), (0.19, 0.25), (0.35, 0.40), (0.50, 0.58),
                   (0.18, 0.24), (0.0, 0.03), (0.9, 1.3), (0.15, 0.35)),
    "van": _Ranges((4.6, 5.4), (1.85, 2.0), (1.9, 2.2), (0.15, 0.2), (0.32, 0.36), (0.42, 0.5),
                   (0.07, 0.12), (0.0, 0.01), (0.5, 0.9), (0.05, 0.15)),
    "pickup": _Ranges((5.0, 5.6), (1.85, 2.0), (1.75, 1.9), (0.2, 0.26), (0.36, 0.40), (0.52, 0.6),
                      (0.20, 0.25), (0.30, 0.38), (0.8, 1.1), (0.0, 0.05)),
    # Delivery vans (Sprinter, Transit, Transporter, Ducato): tall, long, a short bonnet and a box body
    # to a vertical rear, the sides windowless behind the front doors. KITTI labels them Van and the
    # product counts them as cars; the first detectors missed 8 of KITTI's 10 (issue 22, round 10).
    "panel_van": _Ranges((4.8, 6.6), (1.9, 2.05), (2.0, 2.75), (0.16, 0.22), (0.32, 0.38), (0.36, 0.44),
                         (0.10, 0.16), (0.0, 0.01), (0.35, 0.6), (0.0, 0.03)),
}

PAINT_DEFAULT = (0.7, 0.7, 0.72, 1.0)
COLORS = {"glass": (0.05, 0.07, 0.1, 1.0), "tyre": (0.03, 0.03, 0.03, 1.0), "rim": (0.6, 0.6, 0.62, 1.0),
          "trim": (0.06, 0.06, 0.06, 1.0), "light_front": (0.95, 0.95, 0.85, 1.0),
          "light_rear": (0.75, 0.04, 0.03, 1.0)}


def _prism(profile_xz: list[tuple[float, float]], y0: float, y1: float) -> trimesh.Trimesh:
    """Convex prism: a convex side profile (x, z) extruded from y0 to y1."""
    pts = [(x, y, z) for x, z in profile_xz for y in (y0, y1)]
    return trimesh.convex.convex_hull(np.array(pts))


def _slab(corners: np.ndarray, normal: np.ndarray, thickness: float = 0.01) -> trimesh.Trimesh:
    """Thin convex plate on the planar polygon ``corners`` (N x 3), pushed out along ``normal``."""
    n = normal / np.linalg.norm(normal)
    return trimesh.convex.convex_hull(np.vstack([corners + n * 0.004, corners + n * (0.004 + thickness)]))


def _shrink(points: np.ndarray, factor: float) -> np.ndarray:
    c = points.mean(axis=0)
    return c + (points - c) * factor


def _box(center: tuple[float, float, float], extents: tuple[float, float, float]) -> trimesh.Trimesh:
    b = trimesh.creation.box(extents=extents)
    b.apply_translation(center)
    return b


def _wheel(x: float, y: float, radius: float, width: float) -> tuple[trimesh.Trimesh, trimesh.Trimesh]:
    rot = trimesh.transformations.rotation_matrix(np.pi / 2, (1, 0, 0))  # cylinder axis Z -> Y
    tyre = trimesh.creation.cylinder(radius=radius, height=width, sections=20)
    tyre.apply_transform(rot)
    tyre.apply_translation((x, y, radius))
    rim = trimesh.creation.cylinder(radius=radius * 0.6, height=width + 0.02, sections=12)
    rim.apply_transform(rot)
    rim.apply_translation((x, y, radius))
    return tyre, rim


def generate_car(seed: int, body_type: str | None = None) -> CarModel:
    """A random car of ``body_type`` (random type if None), deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    if body_type is None:
        body_type = BODY_TYPES[int(rng.integers(len(BODY_TYPES)))]
    if body_type not in _TYPES:
        raise ValueError(f"unknown body type {body_type!r}; expected one of {BODY_TYPES + EXTRA_BODY_TYPES}")
    r = _TYPES[body_type]
    u = lambda rng_range: float(rng.uniform(*rng_range))  # noqa: E731
    L, W, H = u(r.length), u(r.width), u(r.height)
    c, wr = u(r.clearance), u(r.wheel_radius)
    zb = c + u(r.belt) * (H - c)  # beltline
    front, rear = L / 2, -L / 2
    hood_len, tail_len = u(r.hood) * L, u(r.tail) * L
    cab_h = H - zb
    x_ws = front - hood_len  # windscreen base
    x_rf = x_ws - u(r.rake) * cab_h  # roof front
    x_rw = rear + tail_len + (0.05 if tail_len < 0.1 else 0.0)  # rear window base
    x_rr = x_rw + u(r.rear_rake) * cab_h  # roof rear
    if x_rf - x_rr < 0.6:  # keep a real roof
        x_rr = x_rf - 0.6
    z_nose = zb - u((0.06, 0.16))  # hood slopes down to the nose
    z_tail = zb - (u((0.0, 0.06)) if tail_len > 0.1 else 0.0)
    bevel = 0.08
    parts: list[CarPart] = []

    # Lower body (full width) and cabin (narrower: tumblehome), both convex prisms.
    lower = [(front - bevel, c), (front, c + 0.12), (front, z_nose - 0.05), (front - 0.12, z_nose),
             (x_ws, zb), (x_rw if tail_len < 0.1 else rear + tail_len, zb), (rear + 0.04, z_tail),
             (rear, z_tail - 0.08), (rear, c + 0.12), (rear + bevel, c)]
    parts.append(CarPart(_prism(lower, -W / 2, W / 2), "paint", PAINT_DEFAULT))
    # A box body's sides stand almost upright; a car's cabin leans in (tumblehome).
    wc = W * (u((0.95, 0.98)) if body_type == "panel_van" else u((0.84, 0.92)))
    glazed = body_type != "panel_van" or rng.uniform() < PANEL_VAN_GLAZED
    cabin = [(x_ws, zb), (x_rf, H), (x_rr, H), (x_rw, zb)]
    parts.append(CarPart(_prism(cabin, -wc / 2, wc / 2), "paint", PAINT_DEFAULT))

    # Glass: windscreen, rear window, side windows (split by a B pillar).
    def face(x_a, z_a, x_b, z_b_):
        return np.array([[x_a, -wc / 2, z_a], [x_a, wc / 2, z_a], [x_b, wc / 2, z_b_], [x_b, -wc / 2, z_b_]])

    ws = face(x_ws, zb, x_rf, H)
    parts.append(CarPart(_slab(_shrink(ws, 0.9), np.array([H - zb, 0.0, x_ws - x_rf])), "glass", COLORS["glass"]))
    rear_glass = glazed or rng.uniform() < 0.5  # a panel van's rear doors: glazed or not
    if rear_glass:
        z_rg = zb if glazed else zb + 0.4 * cab_h  # a panel van's rear-door windows sit high
        rw = face(x_rw + (x_rr - x_rw) * (z_rg - zb) / (H - zb), z_rg, x_rr, H)
        parts.append(CarPart(_slab(_shrink(rw, 0.88), np.array([-(H - zb), 0.0, x_rr - x_rw])), "glass",
                             COLORS["glass"]))
    # Side glass over the whole cabin, or (panel van) the front doors only: a cab window then a blind box.
    x_door = x_rr if glazed else max(x_rf - u((0.75, 1.0)), x_rr + 0.5)
    side = np.array([[x_ws, zb], [x_rf, H], [x_door, H], [x_door if not glazed else x_rw, zb]])
    side_in = _shrink(side, 0.86)
    side_in[:, 1] += 0.02
    for s in (-1.0, 1.0):
        pts = np.c_[side_in[:, 0], np.full(4, s * wc / 2), side_in[:, 1]]
        parts.append(CarPart(_slab(pts, np.array([0.0, s, 0.0])), "glass", COLORS["glass"]))
        x_b = (x_rf + x_rr) / 2 + u((-0.15, 0.15)) if glazed else x_door - 0.1
        parts.append(CarPart(_box((x_b, s * (wc / 2 + 0.02), (zb + H) / 2), (0.1, 0.015, H - zb)), "paint",
                             PAINT_DEFAULT))
        # Mirror at the front of the cabin.
        parts.append(CarPart(_box((x_ws - 0.1, s * (wc / 2 + 0.1), zb + 0.08), (0.12, 0.18, 0.1)), "paint",
                             PAINT_DEFAULT))

    # Pickup bed walls and tailgate.
    if body_type == "pickup":
        bed_front, wall = x_rw, 0.05
        for s in (-1.0, 1.0):
            parts.append(CarPart(_box(((bed_front + rear) / 2, s * (W / 2 - wall / 2), zb + 0.18),
                                      (bed_front - rear, wall, 0.36)), "paint", PAINT_DEFAULT))
        parts.append(CarPart(_box((rear + wall / 2, 0.0, zb + 0.18), (wall, W, 0.36)), "paint", PAINT_DEFAULT))
        parts.append(CarPart(_box(((bed_front + rear) / 2, 0.0, zb + 0.01), (bed_front - rear - 0.1, W - 0.1, 0.02)),
                             "trim", COLORS["trim"]))

    # Wheels.
    overhang_f = u((0.16, 0.22)) * L if body_type not in ("van", "panel_van") else u((0.12, 0.16)) * L
    overhang_r = u((0.17, 0.24)) * L
    tw = u((0.2, 0.26))
    for x in (front - overhang_f, rear + overhang_r):
        for s in (-1.0, 1.0):
            tyre, rim = _wheel(x, s * (W / 2 - tw / 2 + 0.02), wr, tw)
            parts.append(CarPart(tyre, "tyre", COLORS["tyre"]))
            parts.append(CarPart(rim, "rim", COLORS["rim"]))

    # Lights, grille, bumpers, plate.
    lw, lh = u((0.22, 0.38)), u((0.08, 0.16))
    z_hl = z_nose - 0.05 - lh / 2 - u((0.0, 0.08))
    z_tl = (z_tail if tail_len > 0.1 or body_type in ("hatchback",) else zb + 0.2 * cab_h) - 0.06 - lh / 2
    for s in (-1.0, 1.0):
        parts.append(CarPart(_box((front + 0.005, s * (W / 2 - 0.06 - lw / 2), z_hl), (0.03, lw, lh)),
                             "light_front", COLORS["light_front"]))
        parts.append(CarPart(_box((rear - 0.005, s * (W / 2 - 0.05 - lw / 2), z_tl), (0.03, lw, lh * 1.1)),
                             "light_rear", COLORS["light_rear"]))
    grille_w = W - 2 * (0.1 + lw) - 0.05
    parts.append(CarPart(_box((front + 0.006, 0.0, z_hl - 0.02), (0.03, max(grille_w, 0.3), lh * 1.3)), "trim",
                         COLORS["trim"]))
    parts.append(CarPart(_box((front - 0.02, 0.0, c + 0.1), (0.1, W * 0.98, 0.16)), "trim", COLORS["trim"]))
    parts.append(CarPart(_box((rear + 0.02, 0.0, c + 0.1), (0.1, W * 0.98, 0.16)), "trim", COLORS["trim"]))
    parts.append(CarPart(_box((rear - 0.012, 0.0, c + 0.3), (0.02, 0.5, 0.12)), "light_front",
                         (0.9, 0.9, 0.9, 1.0)))  # number plate at the rear
    parts.append(CarPart(_box((front + 0.035, 0.0, c + 0.1), (0.02, 0.5, 0.12)), "light_front",
                         (0.9, 0.9, 0.9, 1.0)))  # and on the front bumper: real cars carry both

    model = CarModel(name=f"proc_{body_type}_{seed}", parts=parts, source="procedural",
                     meta={"body_type": body_type, "seed": seed, "length_m": round(L, 3), "width_m": round(W, 3),
                           "height_m": round(H, 3)})
    _normalise(model)
    return model


def _normalise(model: CarModel) -> None:
    """Centre X/Y on 0 and put the lowest point (the tyres) on z = 0."""
    lo, hi = model.bounds
    shift = -np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    for p in model.parts:
        p.mesh.apply_translation(shift)
        p.mesh.fix_normals()


def generate_panel_vans(count: int, seed: int = 0) -> list[CarModel]:
    """``count`` distinct panel vans (``EXTRA_BODY_TYPES``), seeded apart from ``generate_fleet``'s cars."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    return [generate_car(seed * 1_000_003 + 500_000 + i, "panel_van") for i in range(count)]


def generate_fleet(count: int, seed: int = 0) -> list[CarModel]:
    """``count`` distinct cars; body types cycle so every type appears once count >= 5."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    return [generate_car(seed * 1_000_003 + i, BODY_TYPES[i % len(BODY_TYPES)]) for i in range(count)]
