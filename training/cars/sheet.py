"""Eight-view contact sheets of car models, to check their normalised axes by eye.

Why: nothing in a mesh file says which end is the front, and a car loaded back to front flips every
label by 180 degrees. Each row shows one car at azimuth 0, 45, ..., 315 (about 10 deg elevation),
rendered by the project's renderer after normalisation, so a correct car shows its FRONT at 0, its
LEFT side with the nose pointing image-left at 90, its REAR at 180 and its right side at 270.

    python -m training.cars.sheet ../shared/cars_more/kenney --out docs/car_sources/kenney.jpg

Front/rear sheets (docs/car_ends.md): ``--views 0,180 --realistic`` renders only those azimuths,
from a road camera (5 deg, 10 m), with the training renders' materials (materials.sample_look: dark
glass, clear head lamps, red tail lamps...) on a grey paint, a mid sunny sky from
lighting.SkyConfig's ranges with the sun behind the camera's shoulder, and the ground shadow on a
flat asphalt-grey background; ``--procedural N`` shows N procedural cars instead of a folder,
``--panel-vans N`` N procedural panel vans (training.cars.procedural.generate_panel_vans).

    python -m training.cars.sheet ../shared/cars --views 0,180 --realistic --size 256 \\
        --out docs/car_ends/shapenet.jpg
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import cv2
import numpy as np

from training.cars.loader import excluded_reason, find_model_files, load_car
from training.cars.model import CarModel

AZIMUTHS = tuple(range(0, 360, 45))
VIEW_NAMES = {0: "front", 90: "left", 180: "rear", 270: "right"}
NEUTRAL_PAINT = (0.62, 0.64, 0.68)  # untextured (paint-role) meshes: light grey-blue shows shading well


def _label(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.4) -> None:
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def reference_look(paint: str = "grey"):
    """The training renders' materials (materials.sample_look) with fixed, typical values: the
    middle of the ``paint`` family's ranges, dark glass, black tyres and trim, alloy rims, clear
    head lamps with the running lights off, red tail lamps (not lit)."""
    from training.render.materials import GLASS, LIGHT_FRONT, LIGHT_REAR, PAINT_FAMILIES, TYRE, CarLook, Material

    _, _, rgb, metal, rough = next(f for f in PAINT_FAMILIES if f[0] == paint)
    parts = {"glass": Material(GLASS[0], GLASS[1], 0.25), "tyre": Material(TYRE[0], TYRE[1], TYRE[2]),
             "rim": Material((0.6, 0.6, 0.61), 0.8, 0.35), "trim": Material((0.045,) * 3, 0.0, 0.6),
             "light_front": Material(*LIGHT_FRONT), "light_rear": Material(*LIGHT_REAR)}
    return CarLook(paint=Material(rgb, sum(metal) / 2, sum(rough) / 2), parts=parts, family=paint)


def reference_sky(view_azimuth_deg: float):
    """A sunny sky in the middle of lighting.SkyConfig's ranges (what ``carpose-render crops``
    draws from by default), the sun 40 deg up and 40 deg to the side of the camera, so the end the
    camera sees is lit the same way at every azimuth."""
    from training.render.lighting import SkyConfig
    from training.render.renderer import Lighting

    c = SkyConfig()
    mid = lambda r: (r[0] + r[1]) / 2  # noqa: E731
    sun, sky = mid(c.sun_intensity), mid(c.sky_intensity)
    return Lighting(ambient=mid(c.ambient), key_intensity=sun, key_color=(1.0, 0.97, 0.94),
                    key_azimuth_deg=view_azimuth_deg + 40.0, key_elevation_deg=40.0, fill_intensity=0.2,
                    sky_intensity=sky, sky_color=(0.8, 0.89, 1.0), bounce_intensity=0.275 * (sun + sky) / 3.0,
                    shadow=mid(c.shadow), contact_shadow=mid(c.contact_shadow))


ASPHALT_RGB = (112, 114, 116)  # flat road grey behind realistic tiles


def fill_for_view(model: CarModel, view, margin: float = 0.9) -> float:
    """The ``fill`` of CarRenderer.render_view that makes the car's bounding box, as seen from
    ``view``, span ``margin`` of the image (the default fill frames the bounding *sphere*, which
    leaves a head-on car at a third of the tile)."""
    from carpose.convention import camera_position, look_at_pose

    ext = model.extents
    target = np.array([0.0, 0.0, ext[2] / 2.0])
    radius = float(np.linalg.norm(ext) / 2.0)
    distance = max(view.distance_m, radius * 1.2)  # as render_view clamps it
    pose = look_at_pose(camera_position(view.azimuth_deg, view.elevation_deg, distance, target), target)
    lo, hi = model.bounds
    corners = np.array([[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    cam = (np.linalg.inv(pose) @ corners.T)[:3]  # OpenGL camera: looks down -z
    ratio = float(np.max(np.abs(cam[:2] / -cam[2])))
    return margin * math.tan(math.asin(min(radius / distance, 0.999))) / ratio


def _tile(model: CarModel, renderer, az: float, size: int, elevation_deg: float, distance_m: float,
          realistic: bool) -> np.ndarray:
    """One BGR view: flat neutral paint on dull green (axis checks), or the realistic look."""
    from training.render.renderer import Lighting, View

    view = View(az, elevation_deg, distance_m)
    if not realistic:
        res = renderer.render_view(model, view, size, Lighting(), paint=NEUTRAL_PAINT, fill=0.9)
        img = cv2.cvtColor(res.color, cv2.COLOR_RGB2BGR)
        img[~res.mask] = (70, 96, 70)  # dull green: the car's silhouette stands out
        return img
    from training.render.backgrounds import composite
    from training.render.lighting import ground_shadow

    light = reference_sky(az)
    res = renderer.render_view(model, view, size, light, fill=fill_for_view(model, view), look=reference_look())
    shadow = ground_shadow([(model, np.eye(4))], res.camera_pose, res.K, size, size, light)
    bg = np.empty((size, size, 3), np.uint8)
    bg[:] = ASPHALT_RGB
    return cv2.cvtColor(composite(res.color, res.mask, bg, shadow=shadow), cv2.COLOR_RGB2BGR)


def car_row(model: CarModel, renderer, size: int, elevation_deg: float = 10.0, note: str = "",
            azimuths: tuple[float, ...] = AZIMUTHS, realistic: bool = False, distance_m: float = 12.0) -> np.ndarray:
    """BGR strip of one car's views at ``azimuths`` (default the 8 views), labelled with its name,
    size, azimuths and ``note`` (e.g. "LEFT OUT")."""
    tiles = []
    for az in azimuths:
        img = _tile(model, renderer, az, size, elevation_deg, distance_m, realistic)
        _label(img, f"{az:g} {VIEW_NAMES.get(az, '')}", (3, 12))
        tiles.append(img)
    strip = np.concatenate(tiles, axis=1)
    L, W, H = model.extents
    _label(strip, f"{model.name[:28]}  {L:.2f}x{W:.2f}x{H:.2f} m  {note}", (3, size - 5))
    return strip


def contact_sheet(models: list[CarModel], size: int = 112, elevation_deg: float = 10.0,
                  notes: list[str] | None = None, azimuths: tuple[float, ...] = AZIMUTHS,
                  realistic: bool = False, distance_m: float = 12.0) -> np.ndarray:
    """BGR sheet, one row per car, one column per azimuth."""
    from training.render.renderer import CarRenderer

    notes = notes or [""] * len(models)
    with CarRenderer(size, size) as renderer:
        rows = [car_row(m, renderer, size, elevation_deg, n, azimuths, realistic, distance_m)
                for m, n in zip(models, notes, strict=True)]
    return np.concatenate(rows, axis=0)


def write_sheets(folder: str | Path | None, out: str | Path, per_page: int = 20, size: int = 112,
                 quality: int = 80, azimuths: tuple[float, ...] = AZIMUTHS, realistic: bool = False,
                 elevation_deg: float = 10.0, distance_m: float = 12.0, procedural: int = 0,
                 fleet_seed: int = 0, panel_vans: int = 0) -> list[Path]:
    """Sheets of every model below ``folder`` (excluded ones too: the sheet is how they are judged)
    and/or ``procedural`` procedural cars (training.cars.procedural.generate_fleet) and ``panel_vans``
    procedural panel vans, ``per_page``
    cars per JPEG: ``out`` itself when one page, else ``<stem>_<page>.jpg``."""
    files = find_model_files(folder) if folder is not None else []
    models = [load_car(p) for p in files]
    notes = ["LEFT OUT" if excluded_reason(p) else "" for p in files]
    if procedural:
        from training.cars.procedural import generate_fleet

        models += generate_fleet(procedural, seed=fleet_seed)
        notes += [""] * procedural
    if panel_vans:
        from training.cars.procedural import generate_panel_vans

        models += generate_panel_vans(panel_vans, seed=fleet_seed)
        notes += [""] * panel_vans
    if not models:
        raise ValueError("nothing to show: give a folder, --procedural N or --panel-vans N")
    pages = math.ceil(len(models) / per_page)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for k in range(pages):
        page = slice(k * per_page, (k + 1) * per_page)
        sheet = contact_sheet(models[page], size, elevation_deg, notes[page], azimuths, realistic, distance_m)
        path = out if pages == 1 else out.with_name(f"{out.stem}_{k + 1}{out.suffix}")
        jpeg = path.suffix.lower() in (".jpg", ".jpeg")
        cv2.imwrite(str(path), sheet, [cv2.IMWRITE_JPEG_QUALITY, quality] if jpeg else [])
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", nargs="?", help="folder of car models (or one model file)")
    p.add_argument("--out", required=True, help="JPEG/PNG path (pages get _1, _2, ... suffixes)")
    p.add_argument("--per-page", type=int, default=20)
    p.add_argument("--size", type=int, default=112, help="tile side in pixels")
    p.add_argument("--quality", type=int, default=80, help="JPEG quality")
    p.add_argument("--views", default=None,
                   help="comma-separated azimuths, one column each (default 0,45,...,315; e.g. 0,180)")
    p.add_argument("--realistic", action="store_true",
                   help="training-render materials and a sunny sky on asphalt grey, not flat paint on green")
    p.add_argument("--elevation", type=float, default=None,
                   help="camera elevation, deg (default 10; 5 with --realistic, a road camera)")
    p.add_argument("--distance", type=float, default=None, help="camera distance, m (default 12; 10 with --realistic)")
    p.add_argument("--procedural", type=int, default=0, help="also show this many procedural cars")
    p.add_argument("--panel-vans", type=int, default=0, help="also show this many procedural panel vans")
    p.add_argument("--fleet-seed", type=int, default=0, help="seed of the procedural fleet")
    args = p.parse_args(argv)
    if args.folder is None and not args.procedural and not args.panel_vans:
        p.error("give a folder, --procedural N or --panel-vans N")
    azimuths = tuple(float(a) % 360.0 for a in args.views.split(",")) if args.views else AZIMUTHS
    elevation = args.elevation if args.elevation is not None else (5.0 if args.realistic else 10.0)
    distance = args.distance if args.distance is not None else (10.0 if args.realistic else 12.0)
    for path in write_sheets(args.folder, args.out, args.per_page, args.size, args.quality, azimuths,
                             args.realistic, elevation, distance, args.procedural, args.fleet_seed, args.panel_vans):
        print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
