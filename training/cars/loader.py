"""Load car meshes (OBJ+MTL with textures, GLB/GLTF, PLY) and normalise them into the car frame.

Why a registry of native axes: mesh files carry no notion of "front". ShapeNet cars lie along X with
Y up, but which end is the front differs between datasets, so a wrong guess would silently flip
every label by 180 degrees. Axes come, in order of precedence, from an explicit argument, a
``carpose.json`` beside the model file, ``known_models.json`` (single models checked by eye), the
collection registry ``car_sources.json`` (per collection below a SOURCES.tsv, with per-model
overrides; checked by eye on docs/car_sources/), or the ShapeNet default (front -X, up +Y) with a
warning.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import trimesh

from training.cars.model import CarModel, CarPart
from training.cars.sources import REGISTRY, collection_of, source_info

log = logging.getLogger(__name__)

MESH_SUFFIXES = (".obj", ".glb", ".gltf", ".ply")
DEFAULT_LENGTH_M = 4.5
SHAPENET_DEFAULT_AXES = {"front": "-x", "up": "+y"}
_KNOWN = json.loads((Path(__file__).with_name("known_models.json")).read_text())


class CarModelError(ValueError):
    """A car model file or folder cannot be used; the message says which and why."""


def parse_axis(spec: str) -> np.ndarray:
    """'+x', '-y', 'z' ... -> unit vector."""
    s = spec.strip().lower()
    sign = -1.0 if s.startswith("-") else 1.0
    letter = s.lstrip("+-")
    if letter not in ("x", "y", "z"):
        raise CarModelError(f"axis must be one of +x -x +y -y +z -z, got {spec!r}")
    v = np.zeros(3)
    v["xyz".index(letter)] = sign
    return v


def native_to_car_rotation(front: str, up: str) -> np.ndarray:
    """3x3 rotation taking native coordinates to the car frame (+X front, +Y left, +Z up)."""
    f, u = parse_axis(front), parse_axis(up)
    if abs(float(f @ u)) > 0.5:
        raise CarModelError(f"front {front!r} and up {up!r} must be different axes")
    left = np.cross(u, f)
    return np.stack([f, left, u])  # rows: where each car axis points in native coordinates


#: File stems that name nothing (ShapeNet ``model.obj``, Sketchfab ``scene.gltf``): the folder names the car.
GENERIC_STEMS = ("model", "scene")


def model_key(path: Path) -> str:
    """Identifier of a model file: its folder name for ``<id>/model.obj`` or ``<name>/scene.gltf``."""
    return path.parent.name if path.stem.lower() in GENERIC_STEMS else path.stem


def registry_entry(path: Path) -> tuple[str | None, dict]:
    """(collection, settings) for a model file from car_sources.json: the collection's defaults
    merged with the model's own overrides; (None, {}) for a file outside any registered collection."""
    collection = collection_of(path)
    entry = REGISTRY.get(collection or "")
    if not isinstance(entry, dict):
        return collection, {}
    info = {k: v for k, v in entry.items() if k not in ("models", "excluded", "repository", "licence")}
    info.update(entry.get("models", {}).get(model_key(path), {}))
    return collection, info


def excluded_reason(path: Path) -> str | None:
    """Why the registry leaves this model out of folder loads (None: it is used)."""
    entry = REGISTRY.get(collection_of(path) or "")
    return entry.get("excluded", {}).get(model_key(path)) if isinstance(entry, dict) else None


def find_model_files(folder: str | Path) -> list[Path]:
    """Every loadable mesh below ``folder`` (one per ShapeNet-style sub-folder), sorted."""
    root = Path(folder)
    if not root.exists():
        raise CarModelError(f"car model folder {root} does not exist")
    if root.is_file():
        return [root]
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in MESH_SUFFIXES and p.is_file())
    if not files:
        raise CarModelError(f"car model folder {root} has no {'/'.join(MESH_SUFFIXES)} files")
    return files


def _axes_for(path: Path, front: str | None, up: str | None) -> tuple[dict, str]:
    info: dict = {}
    origin = "argument"
    sidecar = path.parent / "carpose.json"
    if sidecar.is_file():
        info, origin = json.loads(sidecar.read_text()), str(sidecar)
    elif model_key(path) in _KNOWN:
        info, origin = dict(_KNOWN[model_key(path)]), "known_models.json"
    elif registry_entry(path)[1].get("front"):
        info, origin = registry_entry(path)[1], "car_sources.json"
    else:
        info, origin = dict(SHAPENET_DEFAULT_AXES), "ShapeNet default (unchecked)"
        if front is None or up is None:
            log.warning("%s: orientation not known, assuming ShapeNet axes front=-x up=+y; "
                        "check a preview and add a carpose.json if the cars face the wrong way", path)
    if front is not None:
        info["front"] = front
    if up is not None:
        info["up"] = up
    return info, origin


_TEXTURE_ATTRS = ("baseColorTexture", "metallicRoughnessTexture", "normalTexture", "emissiveTexture",
                  "occlusionTexture", "image")


def _fix_textures(geom: trimesh.Trimesh) -> None:
    """Grey+alpha (PIL mode 'LA') textures become RGBA: pyrender refuses 2-channel textures
    (seen on pgdrive/datsun_s130)."""
    material = getattr(geom.visual, "material", None)
    for attr in _TEXTURE_ATTRS:
        image = getattr(material, attr, None)
        if image is not None and getattr(image, "mode", None) in ("LA", "P", "PA"):
            setattr(material, attr, image.convert("RGBA"))


def _load_parts(path: Path, role: str = "textured") -> list[CarPart]:
    try:
        loaded = trimesh.load(path, force="scene", process=False)
    except Exception as exc:  # trimesh raises many types for broken files
        raise CarModelError(f"cannot load car model {path}: {exc}") from exc
    parts: list[CarPart] = []
    for geom in loaded.dump() if hasattr(loaded, "dump") else [loaded]:
        if isinstance(geom, trimesh.Trimesh) and len(geom.faces) > 0:
            _fix_textures(geom)
            parts.append(CarPart(mesh=geom, role=role))
    if not parts:
        raise CarModelError(f"car model {path} has no triangles")
    return parts


def load_car(path: str | Path, front: str | None = None, up: str | None = None,
             length_m: float | None = None) -> CarModel:
    """Load one model file and normalise it: front +X, up +Z, centred in X/Y, wheels on z=0,
    scaled to ``length_m`` (else the registry's ``length_m``, else its ``unit_m`` metres per native
    unit, else 4.5 m). The model records its collection, provenance and licence."""
    path = Path(path)
    if not path.is_file():
        raise CarModelError(f"car model file {path} does not exist")
    axes, origin = _axes_for(path, front, up)
    rot = native_to_car_rotation(axes["front"], axes["up"])
    parts = _load_parts(path, axes.get("role", "textured"))
    transform = np.eye(4)
    transform[:3, :3] = rot
    for p in parts:
        p.mesh.apply_transform(transform)
    model = CarModel(name=model_key(path), parts=parts, source=str(path))
    native_len = float(model.extents[0])
    if not np.isfinite(native_len) or native_len <= 0:
        raise CarModelError(f"car model {path} has a degenerate size {model.extents}")
    if length_m or axes.get("length_m") or not axes.get("unit_m"):
        target_len = float(length_m or axes.get("length_m") or DEFAULT_LENGTH_M)
    else:
        target_len = native_len * float(axes["unit_m"])
    scale = np.eye(4)
    scale[:3, :3] *= target_len / native_len
    lo, hi = model.bounds
    shift = np.eye(4)
    shift[:3, 3] = -np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]]) * (target_len / native_len)
    post = shift @ scale
    for p in parts:
        p.mesh.apply_transform(post)
    model.transform = post @ transform
    model.meta = {"front": axes["front"], "up": axes["up"], "axes_from": origin,
                  "length_m": round(target_len, 4), "faces": model.face_count}
    _attach_source(model, path, axes)
    return model


def _attach_source(model: CarModel, path: Path, axes: dict) -> None:
    """Collection, provenance and licence from SOURCES.tsv (else the registry), so they reach the
    dataset attributes; a model of unknown origin says so rather than guessing a licence."""
    collection = collection_of(path) or axes.get("source")
    info = source_info(path, collection)
    if info is None:
        model.collection = path.parent.parent.name or "unknown"
        model.origin = str(path)
        model.licence = "unknown (no SOURCES.tsv row or registry entry)"
    else:
        model.collection, model.origin, model.licence = info.collection, info.origin, info.licence


def load_car_folder(folder: str | Path, include_excluded: bool = False, **kwargs) -> list[CarModel]:
    """Load every model below ``folder`` (see :func:`find_model_files`), skipping the ones the
    registry excludes (front/rear not confirmed, not car-like) unless ``include_excluded``."""
    models = []
    for p in find_model_files(folder):
        why = None if include_excluded else excluded_reason(p)
        if why:
            log.info("%s: left out (%s)", p, why)
            continue
        models.append(load_car(p, **kwargs))
    if not models:
        raise CarModelError(f"every car model below {folder} is excluded in car_sources.json")
    return models
