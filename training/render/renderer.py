"""Headless pyrender renderer for car models in the car frame.

Why pyrender on EGL: it renders textured meshes offscreen on the CPU through Mesa (about 40
frames/s at 224 px for a 40k-face car), with no display and no GPU, and the same code uses a GPU
where one exists. One renderer (one EGL context) per process; render workers each make their own.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import numpy as np
import pyrender
import trimesh

from carpose.convention import camera_position, look_at_pose
from training.cars.model import CarModel
from training.render.materials import CarLook, Material, assign_face_roles, split_by_role
from training.render.plates import plate_parts

#: Fixed materials per part role (RGBA base colour, metallic, roughness); paint comes per sample.
ROLE_MATERIALS: dict[str, tuple[tuple[float, float, float, float], float, float]] = {
    "glass": ((0.06, 0.08, 0.11, 1.0), 0.1, 0.15),
    "tyre": ((0.04, 0.04, 0.04, 1.0), 0.0, 0.9),
    "rim": ((0.55, 0.55, 0.57, 1.0), 0.8, 0.35),
    "trim": ((0.08, 0.08, 0.08, 1.0), 0.1, 0.6),
    "light_front": ((0.95, 0.95, 0.85, 1.0), 0.0, 0.2),
    "light_rear": ((0.75, 0.05, 0.04, 1.0), 0.0, 0.3),
    "plate": ((0.85, 0.85, 0.82, 1.0), 0.0, 0.45),
    "plate_text": ((0.04, 0.04, 0.05, 1.0), 0.0, 0.6),
}


@dataclass(frozen=True)
class View:
    """Where the camera is relative to the car (see carpose.convention) and how it is built."""

    azimuth_deg: float
    elevation_deg: float
    distance_m: float
    roll_deg: float = 0.0


@dataclass(frozen=True)
class Lighting:
    """Sun (the key directional light), sky, ground bounce, a weak camera-side fill and ambient.

    The sky is a directional light from straight above (sky colour) and the bounce one from below
    (asphalt colour): together with ambient they approximate a sky hemisphere, so roofs and hoods
    are brighter than doors and the under-body is dark, as outdoors. ``shadow`` is how much the
    sun's shadow darkens the ground (0 on overcast days), ``contact_shadow`` the soft ambient
    occlusion under the car (always there outdoors); both are applied by :func:`ground_shadow`
    when compositing. The defaults (no sky, no bounce, no shadow) are the old studio lighting.
    """

    ambient: float = 0.3
    key_intensity: float = 2.0
    key_color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    key_azimuth_deg: float = 30.0
    key_elevation_deg: float = 50.0
    fill_intensity: float = 0.8
    sky_intensity: float = 0.0
    sky_color: tuple[float, float, float] = (0.85, 0.92, 1.0)
    bounce_intensity: float = 0.0
    shadow: float = 0.0
    contact_shadow: float = 0.0
    self_shadow: bool = False  # pyrender shadow maps on the car itself (wheel arches, under-body)

    def sun_direction(self) -> np.ndarray:
        """Unit vector from the scene towards the sun (world / car frame)."""
        return camera_position(self.key_azimuth_deg, self.key_elevation_deg, 1.0)


@dataclass
class RenderResult:
    color: np.ndarray  # HxWx3 uint8 RGB, background black
    depth: np.ndarray  # HxW float32 metres, 0 where nothing was hit
    K: np.ndarray  # 3x3 intrinsics
    camera_pose: np.ndarray  # 4x4 camera-to-car (OpenGL convention)
    view: View | None = None  # the view actually rendered (distance may have been clamped)
    alpha: np.ndarray | None = None  # HxW uint8 coverage 0..255 (4x MSAA), only with ``coverage``

    def straight_color(self) -> np.ndarray:
        """The colour with the antialiased edge's blend with the black background divided out (needs
        ``alpha``): what to blend with the coverage over another background, without a dark rim."""
        if self.alpha is None:
            raise ValueError("render with coverage=True for a straight (un-premultiplied) colour")
        a = self.alpha.astype(np.float32)[..., None]
        out = self.color.astype(np.float32) * 255.0 / np.maximum(a, 1.0)
        return np.where(a > 0, np.clip(out + 0.5, 0, 255), 0).astype(np.uint8)

    @property
    def mask(self) -> np.ndarray:
        return self.depth > 0

    def box(self) -> np.ndarray | None:
        """Tight box (x1, y1, x2, y2) of the rendered car in pixels (x2/y2 exclusive), or None."""
        return mask_box(self.mask)


def mask_box(mask: np.ndarray) -> np.ndarray | None:
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if len(xs) == 0:
        return None
    return np.array([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1], dtype=np.float64)


def _role_material(role: str, color: tuple) -> pyrender.MetallicRoughnessMaterial:
    base, metal, rough = ROLE_MATERIALS.get(role, (color, 0.3, 0.5))
    return pyrender.MetallicRoughnessMaterial(baseColorFactor=base, metallicFactor=metal,
                                              roughnessFactor=rough, doubleSided=True)


def _set_material(mat: pyrender.MetallicRoughnessMaterial, m: Material) -> None:
    mat.baseColorFactor = np.array([*m.rgb, 1.0], dtype=np.float32)
    mat.metallicFactor = float(m.metallic)
    mat.roughnessFactor = float(m.roughness)
    mat.emissiveFactor = np.asarray(m.emissive, dtype=np.float32)


def is_untextured_single(model: CarModel) -> bool:
    """True for meshes that came from a file with no texture, no colours and no part roles
    (ApolloCar3D): their parts get roles from geometry (materials.assign_face_roles)."""
    return all(p.role == "textured" and isinstance(p.mesh, trimesh.Trimesh) and p.mesh.visual.kind is None
               for p in model.parts)


def model_parts(model: CarModel) -> list[tuple[str, trimesh.Trimesh, tuple]]:
    """(role, mesh, colour) of every part to render; one-piece untextured meshes are split into
    role parts by geometry and get number plates at both ends (training.render.plates)."""
    if not is_untextured_single(model):
        return [(p.role, p.mesh, p.color) for p in model.parts]
    out = []
    for p in model.parts:
        for role, sub in split_by_role(p.mesh, assign_face_roles(p.mesh)).items():
            out.append((role, sub, ROLE_MATERIALS.get(role, ((0.7, 0.7, 0.72, 1.0),))[0]))
        out += [(role, m, ROLE_MATERIALS[role][0]) for role, m in plate_parts(p.mesh, model.name)]
    return out


class CarRenderer:
    """Renders one or several cars with an intrinsics camera into an offscreen EGL buffer."""

    def __init__(self, width: int = 256, height: int = 256) -> None:
        self._renderer = pyrender.OffscreenRenderer(width, height)
        self._meshes: dict[tuple[int, int], tuple[list[pyrender.Mesh], list]] = {}

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.delete()
            self._renderer = None

    def __enter__(self) -> CarRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pyrender_meshes(self, model: CarModel, instance: int = 0) -> tuple[list[pyrender.Mesh], dict]:
        """Convert once per model (the slow part with textured files) and keep the materials of
        every non-textured role (paint, glass, tyre...) so a sample's look can change them per
        render without rebuilding anything. ``instance`` gives the 2nd, 3rd... copy of a model in
        one scene meshes of its own, so each can have its own look. Returns the meshes and
        {role: [(material handle, default Material)]}."""
        key = (id(model), instance)
        if key not in self._meshes:
            meshes, handles = [], {}
            smooth = is_untextured_single(model)  # real scanned bodies are smooth; procedural ones boxy
            for role, tm, color in model_parts(model):
                if role == "textured":
                    mesh = pyrender.Mesh.from_trimesh(tm, smooth=False)
                    for prim in mesh.primitives:
                        prim.material.doubleSided = True  # ShapeNet winding is inconsistent
                    meshes.append(mesh)
                    continue
                if role == "paint":
                    default = Material(tuple(float(c) for c in color[:3]), 0.4, 0.35)
                else:
                    base, metal, rough = ROLE_MATERIALS.get(role, (color, 0.3, 0.5))
                    default = Material(tuple(float(c) for c in base[:3]), metal, rough)
                mat = pyrender.MetallicRoughnessMaterial(doubleSided=True)
                _set_material(mat, default)
                mesh = pyrender.Mesh.from_trimesh(tm, material=mat, smooth=smooth and role == "paint")
                # from_trimesh deep-copies the material: the primitives' copies are the handles.
                handles.setdefault(role, []).extend((prim.material, default) for prim in mesh.primitives)
                meshes.append(mesh)
            self._meshes[key] = (meshes, handles)
        return self._meshes[key]

    def render(self, cars: list[tuple[CarModel, np.ndarray]], camera_pose: np.ndarray, K: np.ndarray,
               width: int, height: int, lighting: Lighting,
               paints: list[tuple[float, float, float] | None] | None = None,
               segment: bool = False, looks: list[CarLook | None] | None = None, coverage: bool = False
               ) -> tuple[RenderResult, np.ndarray | None]:
        """Render cars placed by 4x4 car-to-world poses, seen from ``camera_pose`` (camera-to-world).

        ``looks`` (materials.sample_look) set every material of each car; ``paints`` only the
        paint colour (the older, simpler way). Textured parts always keep their own materials.
        With ``segment`` also returns an HxW int array: index of the car visible at each pixel, -1
        for background (pyrender's flat segmentation pass). With ``coverage`` the result also holds the
        antialiased coverage (``alpha``, the MSAA resolve of the buffer's alpha over a transparent
        background); its ``color`` is then blended with black on the edge (``straight_color``).
        """
        scene = pyrender.Scene(bg_color=(0.0, 0.0, 0.0, 0.0), ambient_light=(lighting.ambient,) * 3)
        car_nodes = []
        seen: dict[int, int] = {}
        for i, (model, pose) in enumerate(cars):
            seen[id(model)] = seen.get(id(model), -1) + 1
            meshes, handles = self._pyrender_meshes(model, seen[id(model)])
            look = looks[i] if looks is not None else None
            paint = paints[i] if paints is not None else None
            for role, mats in handles.items():
                for mat, default in mats:
                    # Set every time (None -> the model's own materials): the meshes are cached and
                    # shared between renders, so a look must never leak into the next sample.
                    m = default
                    if look is not None:
                        m = look.paint if role == "paint" else look.parts.get(role, default)
                    if role == "paint" and paint is not None:
                        m = Material(tuple(float(c) for c in paint), m.metallic, m.roughness)
                    _set_material(mat, m)
            # Each mesh gets the car pose itself: pyrender composes parent-node poses wrongly here
            # (a translated/rotated parent rendered the car as a huge plane; seen in scenes).
            car_nodes.append([scene.add(m, pose=pose) for m in meshes])
        r = self._viewport(scene, camera_pose, K, width, height)
        self._add_lights(scene, lighting, camera_pose)
        flags = pyrender.RenderFlags.SHADOWS_DIRECTIONAL if lighting.self_shadow else pyrender.RenderFlags.NONE
        if coverage:
            flags |= pyrender.RenderFlags.RGBA
        color, depth = r.render(scene, flags=flags)
        result = RenderResult(color=np.ascontiguousarray(color[..., :3]), depth=depth.astype(np.float32),
                              K=K, camera_pose=camera_pose,
                              alpha=np.ascontiguousarray(color[..., 3]) if coverage else None)
        seg = None
        if segment:
            node_map = {}
            for i, nodes in enumerate(car_nodes):
                for n in nodes:
                    node_map[n] = _seg_color(i)
            seg_rgb, _ = r.render(scene, flags=pyrender.RenderFlags.SEG, seg_node_map=node_map)
            seg = _seg_index(seg_rgb, len(cars))
        return result, seg

    def _viewport(self, scene: pyrender.Scene, camera_pose: np.ndarray, K: np.ndarray, width: int,
                  height: int) -> pyrender.OffscreenRenderer:
        """Put the intrinsics camera into ``scene`` and size the offscreen buffer; returns the renderer."""
        cam = pyrender.IntrinsicsCamera(fx=K[0, 0], fy=K[1, 1], cx=K[0, 2], cy=K[1, 2], znear=0.05, zfar=1000.0)
        scene.add(cam, pose=camera_pose)
        r = self._renderer
        r.viewport_width, r.viewport_height = width, height
        return r

    def silhouette_mask(self, model: CarModel, pose: np.ndarray, camera_pose: np.ndarray, K: np.ndarray,
                        width: int, height: int) -> np.ndarray:
        """The pixels the car covers when rendered alone (a flat segmentation pass, no shading): the
        denominator of a car's visible fraction in a crowded scene, and its amodal box (the whole car
        as if nothing stood in front of it, cut by the frame: how KITTI boxes a hidden car)."""
        scene = pyrender.Scene(bg_color=(0.0, 0.0, 0.0, 0.0))
        meshes, _ = self._pyrender_meshes(model, 0)
        nodes = [scene.add(m, pose=pose) for m in meshes]
        r = self._viewport(scene, camera_pose, K, width, height)
        seg_rgb, _ = r.render(scene, flags=pyrender.RenderFlags.SEG, seg_node_map={n: _seg_color(0) for n in nodes})
        return _seg_index(seg_rgb, 1) == 0

    @staticmethod
    def _add_lights(scene: pyrender.Scene, lighting: Lighting, camera_pose: np.ndarray) -> None:
        key_pos = camera_position(lighting.key_azimuth_deg, lighting.key_elevation_deg, 10.0)
        key = pyrender.DirectionalLight(color=np.asarray(lighting.key_color), intensity=lighting.key_intensity)
        scene.add(key, pose=look_at_pose(key_pos, (0.0, 0.0, 0.0)))
        if lighting.fill_intensity > 0:
            # A fill light from above the camera keeps the visible side readable; not from the
            # camera itself, whose mirror highlight washes out every surface facing the lens.
            eye, forward = camera_pose[:3, 3], -camera_pose[:3, 2]
            direction = forward - np.array([0.0, 0.0, 0.8])
            fill = pyrender.DirectionalLight(color=np.ones(3), intensity=lighting.fill_intensity)
            scene.add(fill, pose=look_at_pose(eye, eye + direction))
        if lighting.sky_intensity > 0:  # sky dome from above (roof, hood, glass reflect it)
            sky = pyrender.DirectionalLight(color=np.asarray(lighting.sky_color), intensity=lighting.sky_intensity)
            scene.add(sky, pose=look_at_pose(np.array([0.3, 0.2, 10.0]), np.zeros(3)))
        if lighting.bounce_intensity > 0:  # light from the road onto lower panels, warm grey
            bounce = pyrender.DirectionalLight(color=np.array([1.0, 0.95, 0.88]), intensity=lighting.bounce_intensity)
            scene.add(bounce, pose=look_at_pose(np.array([0.2, -0.3, -10.0]), np.zeros(3)))

    def render_view(self, model: CarModel, view: View, size: int, lighting: Lighting,
                    paint: tuple[float, float, float] | None = None, fill: float = 0.8,
                    look: CarLook | None = None, coverage: bool = False) -> RenderResult:
        """One car, centred, from ``view``; the focal length is chosen so the car's bounding sphere
        spans ``fill`` of the image, whatever the distance (perspective still follows distance).
        ``coverage``: also the antialiased alpha (``RenderResult.alpha``, see :meth:`render`)."""
        ext = model.extents
        target = np.array([0.0, 0.0, ext[2] / 2.0])
        radius = float(np.linalg.norm(ext) / 2.0)
        distance = max(view.distance_m, radius * 1.2)
        half_angle = math.asin(min(radius / distance, 0.999))
        focal = fill * size / 2.0 / math.tan(half_angle)
        K = np.array([[focal, 0.0, size / 2.0], [0.0, focal, size / 2.0], [0.0, 0.0, 1.0]])
        eye = camera_position(view.azimuth_deg, view.elevation_deg, distance, target)
        pose = look_at_pose(eye, target, roll_deg=view.roll_deg)
        result, _ = self.render([(model, np.eye(4))], pose, K, size, size, lighting, paints=[paint], looks=[look],
                                coverage=coverage)
        result.view = View(view.azimuth_deg, view.elevation_deg, distance, view.roll_deg)
        return result


def _seg_color(i: int) -> np.ndarray:
    """Unique RGB for car i in the segmentation pass (index + 1 spread over two channels)."""
    v = i + 1
    return np.array([v % 256, v // 256, 200], dtype=np.uint8)


def _seg_index(seg_rgb: np.ndarray, n: int) -> np.ndarray:
    idx = seg_rgb[..., 0].astype(np.int32) + 256 * seg_rgb[..., 1].astype(np.int32) - 1
    valid = (seg_rgb[..., 2] == 200) & (idx >= 0) & (idx < n)
    return np.where(valid, idx, -1)


def trimesh_box_car(length: float = 4.5, width: float = 1.8, height: float = 1.4) -> CarModel:
    """A plain box 'car' in the car frame; only for tests of geometry that need no real car."""
    from training.cars.model import CarPart

    box = trimesh.creation.box(extents=(length, width, height))
    box.apply_translation((0, 0, height / 2))
    return CarModel(name="box", parts=[CarPart(mesh=box, role="paint", color=(0.6, 0.6, 0.6, 1.0))])
