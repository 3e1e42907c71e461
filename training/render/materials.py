"""Car materials: paint with the real-world colour mix, and glass/tyre/rim/trim/light materials,
plus per-face part roles for single untextured meshes.

Why: the pose network must not learn "flat pastel box = car". Real road cars are mostly white,
black, grey and silver, with glossy or metallic paint that reflects the sky, near-black tinted
glass, black tyres and plastic trim. Untextured real meshes (ApolloCar3D: one mesh, no parts) get
their roles from geometry (:func:`assign_face_roles`), so their windows and tyres are dark too.
Textured meshes keep their own materials.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import trimesh

#: Paint families: (name, share on the road, base RGB 0-1, metallic range, roughness range).
#: Shares: rough global/US fleet mix (white ~25 %, black ~21 %, grey ~17 %, silver ~13 %, blue ~9 %,
#: red ~8 %, the rest brown/beige, green, yellow/orange and odd colours).
PAINT_FAMILIES: tuple[tuple[str, float, tuple[float, float, float], tuple[float, float], tuple[float, float]], ...] = (
    ("white", 0.25, (0.88, 0.88, 0.87), (0.0, 0.3), (0.25, 0.45)),
    ("black", 0.21, (0.025, 0.025, 0.03), (0.0, 0.6), (0.15, 0.4)),
    ("grey", 0.17, (0.30, 0.31, 0.33), (0.2, 0.7), (0.25, 0.45)),
    ("silver", 0.13, (0.62, 0.63, 0.65), (0.5, 0.85), (0.25, 0.45)),
    ("blue", 0.09, (0.07, 0.15, 0.38), (0.2, 0.7), (0.2, 0.45)),
    ("red", 0.08, (0.50, 0.04, 0.04), (0.0, 0.6), (0.2, 0.45)),
    ("brown", 0.03, (0.35, 0.26, 0.18), (0.2, 0.6), (0.3, 0.5)),
    ("green", 0.02, (0.10, 0.22, 0.14), (0.2, 0.6), (0.3, 0.5)),
    ("other", 0.02, (0.5, 0.5, 0.5), (0.0, 0.6), (0.2, 0.5)),
)
PAINT_NAMES = tuple(f[0] for f in PAINT_FAMILIES)
PAINT_SHARES = np.array([f[1] for f in PAINT_FAMILIES]) / sum(f[1] for f in PAINT_FAMILIES)

#: Roles that are not paint and their material ranges: base RGB, metallic, roughness.
GLASS = ((0.025, 0.03, 0.04), 0.0, 0.08)
TYRE = ((0.03, 0.03, 0.03), 0.0, 0.85)
LIGHT_FRONT = ((0.75, 0.75, 0.72), 0.3, 0.15)
LIGHT_REAR = ((0.55, 0.03, 0.03), 0.0, 0.2)


@dataclass(frozen=True)
class Material:
    """One PBR material (pyrender metallic-roughness factors)."""

    rgb: tuple[float, float, float]
    metallic: float = 0.0
    roughness: float = 0.5
    emissive: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class CarLook:
    """Every material of one car in one sample; roles missing from ``parts`` keep the defaults."""

    paint: Material
    parts: dict[str, Material] = field(default_factory=dict)
    family: str = "custom"


def _tint(rng: np.random.Generator, rgb: np.ndarray, sigma: float) -> np.ndarray:
    """Small multiplicative tint so two 'white' cars are not the same white."""
    return np.clip(rgb * np.exp(rng.normal(0.0, sigma, 3)), 0.0, 1.0)


def sample_paint_material(rng: np.random.Generator) -> tuple[Material, str]:
    """A paint drawn from the real-world colour mix, with its own metallic and roughness."""
    k = int(rng.choice(len(PAINT_FAMILIES), p=PAINT_SHARES))
    name, _, base, metal, rough = PAINT_FAMILIES[k]
    rgb = np.array(base)
    if name == "other":  # yellow, orange, purple, teal...: anything saturated
        hue = rng.uniform(0, 1)
        rgb = np.clip(np.abs(((hue * 6 + np.array([0, 4, 2])) % 6) - 3) - 1, 0, 1) * rng.uniform(0.3, 0.8)
    elif name in ("white", "silver", "grey"):
        rgb = rgb * rng.uniform(0.85, 1.05)
    rgb = _tint(rng, rgb, 0.04 if name in ("white", "silver", "grey", "black") else 0.12)
    return Material(tuple(float(c) for c in rgb), float(rng.uniform(*metal)), float(rng.uniform(*rough))), name


def sample_look(rng: np.random.Generator, paint_rgb: tuple[float, float, float] | None = None) -> CarLook:
    """Materials of one car: paint from the colour mix (or ``paint_rgb``), dark tinted glass, black
    tyres, alloy or black rims, black plastic or (sometimes) chrome trim, clear and red lights."""
    paint, family = sample_paint_material(rng)
    if paint_rgb is not None:
        paint, family = Material(tuple(float(c) for c in paint_rgb), paint.metallic, paint.roughness), "given"
    g = GLASS[0][0] * rng.uniform(0.6, 2.0)
    glass = Material((g, g * rng.uniform(1.0, 1.3), g * rng.uniform(1.0, 1.5)), 0.0, float(rng.uniform(0.15, 0.35)))
    t = TYRE[0][0] * rng.uniform(0.7, 1.5)
    tyre = Material((t, t, t), 0.0, float(rng.uniform(0.75, 0.95)))
    if rng.uniform() < 0.75:
        r = rng.uniform(0.45, 0.75)
        rim = Material((r, r, r * 1.02), float(rng.uniform(0.6, 0.95)), float(rng.uniform(0.25, 0.45)))
    else:
        r = rng.uniform(0.03, 0.12)
        rim = Material((r, r, r), 0.3, 0.4)
    if rng.uniform() < 0.15:
        trim = Material((0.8, 0.8, 0.82), 1.0, float(rng.uniform(0.1, 0.25)))  # chrome
    else:
        p = rng.uniform(0.02, 0.07)
        trim = Material((p, p, p), 0.0, float(rng.uniform(0.45, 0.75)))  # black plastic
    lf = np.array(LIGHT_FRONT[0]) * rng.uniform(0.8, 1.2)
    on = rng.uniform() < 0.2  # daytime running lights on
    front = Material(tuple(float(c) for c in np.clip(lf, 0, 1)), LIGHT_FRONT[1], LIGHT_FRONT[2],
                     emissive=(0.8, 0.8, 0.75) if on else (0.0, 0.0, 0.0))
    rr = np.array(LIGHT_REAR[0]) * rng.uniform(0.7, 1.3)
    rear = Material(tuple(float(c) for c in np.clip(rr, 0, 1)), 0.0, LIGHT_REAR[2],
                    emissive=(0.5, 0.02, 0.02) if rng.uniform() < 0.1 else (0.0, 0.0, 0.0))
    # Number plates (meshes that have none get them, training.render.plates): mostly white, some yellow.
    pw = rng.uniform(0.7, 0.92)
    plate = Material((pw, pw, pw * 0.97) if rng.uniform() < 0.8 else (pw, pw * 0.78, 0.1), 0.0, 0.45)
    text = Material((0.03, 0.03, 0.04), 0.0, 0.6)
    return CarLook(paint=paint, family=family,
                   parts={"glass": glass, "tyre": tyre, "rim": rim, "trim": trim, "light_front": front,
                          "light_rear": rear, "plate": plate, "plate_text": text})


# ------------------------------------------------------------- per-face roles of one-piece meshes

@dataclass(frozen=True)
class RoleRules:
    """Geometric thresholds of :func:`assign_face_roles`, as fractions of the car's height (H),
    length (L) and width (W). Chosen by looking at role-coloured renders of ApolloCar3D sedans, SUVs
    and vans (front, rear and three-quarter views) next to nuScenes photos."""

    belt: float = 0.63  # window band starts above this height (fraction of H)
    roof_normal_z: float = 0.93  # faces above the belt with |n_z| above this are roof/hood, not glass
    roof_margin: float = 0.05  # the top 5 % of H is roof
    glass_inset: float = 0.06  # glass only within the body, not the outermost 6 % of W (mirrors)
    wheel_radius: tuple[float, float, float] = (0.2, 0.03, 0.42)  # r = a*H + b, at most c (metres)
    tyre_outer: float = 0.35  # tyre faces lie within this many metres of the body side
    rim_fraction: float = 0.62  # inside this fraction of r, side-facing faces are rim
    end_depth: float = 0.3  # lamps, grille and intake lie within this many metres of the front/rear end
    end_normal: float = 0.5  # ... on faces whose normal points forward/backward: |n_x| above this
    head_lamp: tuple[float, float, float, float] = (0.25, 0.48, 0.15, 0.0)  # |y|/W from, to; z: top-h, top-gap
    tail_lamp: tuple[float, float, float, float] = (0.27, 0.48, 0.16, 0.0)  # same, under the trunk lid edge
    grille: tuple[float, float, float] = (0.2, 0.17, 0.035)  # |y|/W below; z from top-h to top-gap (H)
    intake: tuple[float, float, float] = (0.3, 0.14, 0.24)  # |y|/W below; z between (fraction of H)
    sill: float = 0.1  # faces below this fraction of H (not tyres) are black under-body/sill trim
    inside: float = 0.65  # a face takes a region's role only if this share of its area lies inside


#: Barycentric sample points (a 4x4 triangular grid, 15 points) used to measure how much of a
#: face lies inside a region; the 3 corners count, so a face far bigger than the region never fits.
_BARY = np.array([(i, j, 4 - i - j) for i in range(5) for j in range(5 - i)], float) / 4.0


def _wheel_centres(verts: np.ndarray, L: float, H: float, r: float) -> np.ndarray:
    """x of the front and rear wheel centres: middle of the lowest vertices (tyre contact patches)
    in each half of the car; 30 % of L from the centre when the mesh gives no answer."""
    low = verts[verts[:, 2] < 0.06 * H]
    out = []
    for s in (1.0, -1.0):
        xs = low[low[:, 0] * s > 0.1 * L, 0]
        out.append(float(np.median(xs)) if len(xs) >= 3 else s * 0.3 * L)
    return np.array(out)


def _share_inside(pts: np.ndarray, y: tuple[float, float], z: tuple[float, float]) -> np.ndarray:
    """Share of each face's sample points (faces x samples x 3) with lo <= |y| < hi and lo <= z < hi."""
    ay = np.abs(pts[..., 1])
    inside = (ay >= y[0]) & (ay < y[1]) & (pts[..., 2] >= z[0]) & (pts[..., 2] < z[1])
    return inside.mean(axis=1)


def _end_top(z: np.ndarray, facing: np.ndarray, H: float, default: float) -> float:
    """Height of the top edge of the front (or rear) face: the 97th percentile height of the faces
    that look forward (backward) near that end, i.e. the hood (trunk lid) edge the lamps sit under."""
    return float(np.percentile(z[facing], 97)) if facing.sum() >= 10 else default * H


def _drop_loners(mesh: trimesh.Trimesh, region: np.ndarray) -> np.ndarray:
    """``region`` without the faces that share no edge with another face of it: on coarse meshes a
    flat grille is a fan of long triangles, and every other one (apex down) fits the box, leaving a
    row of black 'teeth'; a lone triangle is such a tooth or a spike, not a part, so it stays paint."""
    pairs = mesh.face_adjacency
    both = region[pairs[:, 0]] & region[pairs[:, 1]]
    linked = np.bincount(pairs[both].ravel(), minlength=len(region)) > 0
    return region & linked


def assign_face_roles(mesh: trimesh.Trimesh, rules: RoleRules | None = None) -> np.ndarray:
    """Role name per face of a one-piece car mesh in the car frame (+X front, +Z up, wheels on
    z = 0, centred in X and Y): 'glass', 'tyre', 'rim', 'light_front', 'light_rear', 'trim' or
    'paint'. Rules, in order of priority:

    - tyre: within the wheel radius of a wheel centre (side view) and near the body side;
      rim: the inner part of that disc on faces that look sideways;
    - glass: above the belt line, below the roof, normals not close to vertical;
    - light_front / light_rear: two compact boxes near the outer corners of the front / rear face,
      just under its top edge (hood edge at the front, belt line at the rear), on faces that look
      forward / backward;
    - trim: the grille (a box between the head lamps), the lower intake across the front bumper,
      and everything below the sill height that is not a tyre;
    - paint: the rest.

    Lamp, grille, intake and sill regions are boxes in (|y|, z); a face takes the role only when
    ``rules.inside`` of its area lies in the box (big triangles that straddle a boundary stay paint
    instead of poking out as spikes) and it shares an edge with another face of the same box (no
    lone 'teeth'), so the parts are clean shapes and left/right symmetric.
    """
    rules = rules or RoleRules()
    lo, hi = mesh.bounds
    L, W, H = hi - lo
    c = mesh.triangles_center
    n = mesh.face_normals
    z = c[:, 2] - lo[2]
    pts = np.einsum("kj,fjd->fkd", _BARY, mesh.triangles) - [0, 0, lo[2]]  # faces x samples x xyz
    roles = np.full(len(c), "paint", dtype=object)

    a, b, cap = rules.wheel_radius
    r = min(a * H + b, cap)
    wheels = _wheel_centres(mesh.vertices - [0, 0, lo[2]], L, H, r)
    d = np.min(np.hypot(c[:, 0, None] - wheels[None, :], z[:, None] - r), axis=1)
    outer = np.abs(c[:, 1]) > W / 2 - rules.tyre_outer
    tyre = (d < r) & outer
    rim = tyre & (d < rules.rim_fraction * r) & (np.abs(n[:, 1]) > 0.6)

    glass = ((z > rules.belt * H) & (z < (1 - rules.roof_margin) * H) & (np.abs(n[:, 2]) < rules.roof_normal_z)
             & (np.abs(c[:, 1]) < W / 2 * (1 - rules.glass_inset)))

    front = (c[:, 0] > hi[0] - rules.end_depth) & (n[:, 0] > rules.end_normal)
    rear = (c[:, 0] < lo[0] + rules.end_depth) & (n[:, 0] < -rules.end_normal)
    top_f = _end_top(z, front & (z < rules.belt * H), H, 0.55)
    top_r = _end_top(z, rear & (z < rules.belt * H), H, rules.belt)
    k = rules.inside

    def lamp(box: tuple[float, float, float, float], top: float) -> np.ndarray:
        y0, y1, h, gap = box
        return _share_inside(pts, (y0 * W, y1 * W), (top - h * H, top - gap * H)) >= k

    light_front = _drop_loners(mesh, front & lamp(rules.head_lamp, top_f))
    light_rear = _drop_loners(mesh, rear & lamp(rules.tail_lamp, top_r))
    gy, gh, ggap = rules.grille
    grille = front & (_share_inside(pts, (0.0, gy * W), (top_f - gh * H, top_f - ggap * H)) >= k)
    iy, iz0, iz1 = rules.intake
    intake = front & (_share_inside(pts, (0.0, iy * W), (iz0 * H, iz1 * H)) >= k)
    sill = (pts[..., 2] < rules.sill * H).mean(axis=1) >= k
    trim = sill | _drop_loners(mesh, grille) | _drop_loners(mesh, intake)

    roles[trim] = "trim"
    roles[glass] = "glass"
    roles[light_front] = "light_front"
    roles[light_rear] = "light_rear"
    roles[tyre] = "tyre"
    roles[rim] = "rim"
    return roles


def split_by_role(mesh: trimesh.Trimesh, roles: np.ndarray) -> dict[str, trimesh.Trimesh]:
    """One submesh per role present (faces keep their geometry; vertices are copied)."""
    out = {}
    for role in dict.fromkeys(roles.tolist()):
        idx = np.flatnonzero(roles == role)
        out[role] = mesh.submesh([idx], append=True, repair=False)
    return out


def role_shares(roles: np.ndarray, areas: np.ndarray) -> dict[str, float]:
    """Fraction of the surface area per role (for reports and tests)."""
    total = float(areas.sum()) or 1.0
    return {r: float(areas[roles == r].sum() / total) for r in sorted(set(roles.tolist()))}
