"""Realism features of the renderer: materials, part roles, shadows, backgrounds, camera effects.

Real renders (pyrender on EGL), real meshes from ../shared when present (skipped otherwise).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from training.cars.model import CarModel, CarPart
from training.render.backgrounds import BackgroundSource, boxes_overlap, composite, free_region, read_kitti_boxes
from training.render.interference import (
    InterferenceConfig,
    apply_photometric,
    exposure,
    saturate,
    sensor_noise,
    white_balance,
)
from training.render.lighting import ground_shadow, sample_sky
from training.render.materials import PAINT_NAMES, PAINT_SHARES, assign_face_roles, role_shares, sample_look
from training.render.renderer import CarRenderer, Lighting, View, is_untextured_single, trimesh_box_car
from training.render.sampling import RenderConfig, sample_view

APOLLO = Path(__file__).resolve().parents[2] / "shared" / "cars_more" / "apollocar3d" / "baoma_530" / "model.obj"


def _apollo_car() -> CarModel:
    """Hand-loaded ApolloCar3D mesh (native: long axis Z, front +Z, up Y) in the car frame."""
    m = trimesh.load(APOLLO, process=False)
    T = np.array([[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]], float)
    m.apply_transform(T)
    lo, hi = m.bounds
    m.apply_translation([-(lo[0] + hi[0]) / 2, -(lo[1] + hi[1]) / 2, -lo[2]])
    return CarModel(name="apollo", parts=[CarPart(m, "textured")], source="apollo")


def test_ground_shadow_darkens_ground_under_and_beside_the_car():
    car = trimesh_box_car()
    sun = Lighting(ambient=0.3, key_intensity=3.0, key_azimuth_deg=90.0, key_elevation_deg=35.0,
                   shadow=0.6, contact_shadow=0.5)
    with CarRenderer(160, 160) as r:
        res = r.render_view(car, View(0.0, 20.0, 12.0), 160, sun, fill=0.6)
    shadow = ground_shadow([(car, np.eye(4))], res.camera_pose, res.K, 160, 160, sun)
    bg = np.full((160, 160, 3), 150, np.uint8)
    img = composite(res.color, res.mask, bg, shadow=shadow).astype(float).mean(axis=2)
    ys, xs = np.nonzero(res.mask)
    bottom, left, right = ys.max(), xs.min(), xs.max()
    # Sun on the car's left (azimuth 90) -> shadow falls to its right = image left for a front view.
    beside = img[bottom - 3, max(left - 12, 0):left - 2]
    assert beside.mean() < 150 * 0.7, beside.mean()
    under = img[min(bottom + 2, 159), (left + right) // 2]
    assert under < 150 * 0.9  # contact shadow just below the car
    assert img[5, 5] == pytest.approx(150, abs=1)  # far from the car: untouched
    assert img[bottom - 3, min(right + 8, 159)] > img[bottom - 3, max(left - 8, 0)]  # sun side is brighter


def test_no_shadow_on_overcast_without_contact():
    car = trimesh_box_car()
    light = Lighting(shadow=0.0, contact_shadow=0.0)
    assert ground_shadow([(car, np.eye(4))], np.eye(4), np.eye(3), 10, 10, light) is None


def test_paint_colour_distribution_follows_the_road_mix():
    rng = np.random.default_rng(0)
    names = [sample_look(rng).family for _ in range(4000)]
    share = {n: names.count(n) / len(names) for n in PAINT_NAMES}
    achromatic = share["white"] + share["black"] + share["grey"] + share["silver"]
    assert 0.7 < achromatic < 0.82  # most cars are white, black, grey or silver
    assert share["white"] > share["blue"] and share["black"] > share["red"]
    for n, p in zip(PAINT_NAMES, PAINT_SHARES, strict=True):
        assert abs(share[n] - p) < 0.03, (n, share[n], p)
    looks = [sample_look(rng) for _ in range(300)]
    metal = np.array([lk.paint.metallic for lk in looks])
    assert metal.min() < 0.1 and metal.max() > 0.6  # solid and metallic paints both occur
    assert all(max(lk.parts["glass"].rgb) < 0.15 and max(lk.parts["tyre"].rgb) < 0.1 for lk in looks)


def test_looks_change_the_render_and_do_not_leak():
    car = trimesh_box_car()
    rng = np.random.default_rng(1)
    with CarRenderer(64, 64) as r:
        plain = r.render_view(car, View(30, 10, 10), 64, Lighting()).color
        looked = r.render_view(car, View(30, 10, 10), 64, Lighting(), look=sample_look(rng)).color
        again = r.render_view(car, View(30, 10, 10), 64, Lighting()).color
    assert not np.array_equal(plain, looked)
    np.testing.assert_array_equal(plain, again)


@pytest.mark.skipif(not APOLLO.exists(), reason="../shared ApolloCar3D meshes absent")
def test_face_roles_on_a_real_mesh():
    car = _apollo_car()
    assert is_untextured_single(car)
    mesh = car.parts[0].mesh
    roles = assign_face_roles(mesh)
    shares = role_shares(roles, mesh.area_faces)
    assert set(shares) >= {"paint", "glass", "tyre", "rim", "light_front", "light_rear", "trim"}
    assert shares["paint"] > 0.35 and 0.08 < shares["glass"] < 0.35, shares
    c = mesh.triangles_center
    H = mesh.bounds[1, 2]
    assert np.all(c[roles == "glass", 2] > 0.55 * H)  # windows above the belt line
    assert np.all(c[roles == "tyre", 2] < 0.5 * H)  # tyres low
    assert np.median(c[roles == "light_front", 0]) > 0 > np.median(c[roles == "light_rear", 0])
    with CarRenderer(96, 96) as r:  # renders with dark windows: glass darker than paint on a white car
        look = sample_look(np.random.default_rng(3), paint_rgb=(0.9, 0.9, 0.9))
        res = r.render_view(car, View(90, 8, 8), 96, sample_sky(np.random.default_rng(0)), look=look)
    assert res.mask.sum() > 500


def test_road_camera_elevations_are_mostly_low():
    rng = np.random.default_rng(0)
    el = np.array([sample_view(rng, RenderConfig()).elevation_deg for _ in range(2000)])
    assert np.mean(el <= 15) > 0.85 and el.min() >= 0


def test_labelled_background_crops_never_touch_a_box(tmp_path):
    import cv2

    img = np.random.default_rng(0).integers(0, 255, (300, 500, 3), dtype=np.uint8)
    boxes = np.array([[50, 60, 200, 160], [300, 100, 420, 260], [0, 250, 500, 300]], float)
    img_dir, lab_dir = tmp_path / "image_2", tmp_path / "label_2"
    img_dir.mkdir()
    lab_dir.mkdir()
    for y1x in boxes:  # paint the "cars" pure red so a crop that touches one shows it
        x1, y1, x2, y2 = y1x.astype(int)
        img[y1:y2, x1:x2] = (0, 0, 255)  # BGR red
    cv2.imwrite(str(img_dir / "000000.png"), img)
    cv2.imwrite(str(img_dir / "000001.png"), img)  # no label: must never be used
    (lab_dir / "000000.txt").write_text("".join(
        f"Car 0.0 0 0.0 {x1} {y1} {x2} {y2} -1 -1 -1 -1000 -1000 -1000 -10\n" for x1, y1, x2, y2 in boxes))
    np.testing.assert_allclose(read_kitti_boxes(lab_dir / "000000.txt"), boxes)
    src = BackgroundSource.from_folder(img_dir, labels=lab_dir)
    assert [p.name for p in src.photos] == ["000000.png"]
    rng = np.random.default_rng(1)
    for _ in range(200):
        out, origin = src.sample_with_region(rng, 32, 32)
        assert origin is not None and not boxes_overlap(origin[1], boxes)
        red = (out[..., 0] > 200) & (out[..., 1] < 50) & (out[..., 2] < 50)
        assert not red.any()
    assert free_region((100, 100), np.array([[0, 0, 100, 100]]), rng, 1.0) is None


def test_several_label_folders_keep_every_box_of_each_out_of_the_backgrounds(tmp_path):
    import cv2

    from training.render.backgrounds import frame_without_cars
    from training.render.cli import background_labels

    img = np.full((300, 500, 3), 90, np.uint8)
    boxes = np.array([[50, 60, 200, 160], [300, 100, 420, 260]], float)
    for x1, y1, x2, y2 in boxes.astype(int):
        img[y1:y2, x1:x2] = (0, 0, 255)  # two red "cars"
    img_dir, lab_a, lab_b = tmp_path / "image_2", tmp_path / "teacher", tmp_path / "judged"
    for d in (img_dir, lab_a, lab_b):
        d.mkdir()
    for name in ("000000", "000001", "000002"):
        cv2.imwrite(str(img_dir / f"{name}.png"), img)
    line = "Car -1 -1 -10 {} {} {} {} -1 -1 -1 -1000 -1000 -1000 -10 1.0\n"
    (lab_a / "000000.txt").write_text(line.format(*boxes[0]))  # each list knows one car of photo 0
    (lab_b / "000000.txt").write_text(line.format(*boxes[1]))
    (lab_b / "000001.txt").write_text(line.format(*boxes[0]) + line.format(*boxes[1]))  # photo 1: only in B
    src = BackgroundSource.from_folder(img_dir, labels=[lab_a, lab_b])
    assert [p.name for p in src.photos] == ["000000.png", "000001.png"]  # photo 2 has no label anywhere
    np.testing.assert_allclose(src.boxes[src.photos[0]], boxes)
    rng = np.random.default_rng(0)
    for _ in range(100):
        out, origin = src.sample_with_region(rng, 24, 24)
        assert not boxes_overlap(origin[1], boxes)
        assert not ((out[..., 0] > 200) & (out[..., 2] < 50)).any()
    road = frame_without_cars(img[..., ::-1], src.boxes[src.photos[0]], rng, 180, 300)  # RGB, both inpainted
    assert not ((road[..., 0] > 200) & (road[..., 2] < 50)).any()
    one = BackgroundSource.from_folder(img_dir, labels=lab_a)  # one folder: its car only, photo 0 only
    assert [p.name for p in one.photos] == ["000000.png"] and len(one.boxes[one.photos[0]]) == 1
    assert background_labels(None) is None and background_labels([str(lab_a)]) == str(lab_a)
    cfg = RenderConfig(background_labels=background_labels([str(lab_a), str(lab_b)]))
    assert RenderConfig.from_json(cfg.to_json()) == cfg  # several folders survive the jobs' JSON round trip
    with pytest.raises(FileNotFoundError, match="nowhere"):
        BackgroundSource.from_folder(img_dir, labels=[lab_a, tmp_path / "nowhere"])


def test_photometric_ops_keep_shape_and_dtype():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)
    for out in (exposure(img, -0.7), exposure(img, 0.5), white_balance(img, (1.1, 1.0, 0.9)), saturate(img, 0.6),
                sensor_noise(img, rng, 3.0, 0.5), apply_photometric(img, rng, InterferenceConfig())):
        assert out.shape == img.shape and out.dtype == np.uint8
    assert exposure(img, -1.0).mean() < img.mean() < exposure(img, 0.5).mean()
    grey = saturate(img, 0.0).astype(int)
    assert np.abs(grey[..., 0] - grey[..., 2]).max() <= 1
    before = img.copy()
    apply_photometric(img, rng, InterferenceConfig())
    np.testing.assert_array_equal(img, before)  # input untouched


@pytest.mark.skipif(not APOLLO.exists(), reason="../shared ApolloCar3D meshes absent")
def test_lamps_are_compact_corner_parts_and_symmetric():
    """Head/tail lamps cover a small share of the front/rear view, sit near the corners, on both
    sides alike; no lamp or trim face is a big triangle poking out of its region. The old rules
    (outer 60 % of the width over 0.36-0.58 H) labelled ~10 % of the view as lamp per end."""
    mesh = _apollo_car().parts[0].mesh
    roles = assign_face_roles(mesh)
    (_, W, H), c, n, a = mesh.extents, mesh.triangles_center, mesh.face_normals, mesh.area_faces
    edge = np.linalg.norm(mesh.triangles - np.roll(mesh.triangles, 1, axis=1), axis=2).max(axis=1)
    for role in ("light_front", "light_rear"):
        m = roles == role
        projected = float((a * np.abs(n[:, 0]))[m].sum()) / (W * H)  # share of the W x H end view
        assert 0.008 < projected < 0.04, (role, projected)
        assert np.all(np.abs(c[m, 1]) > 0.25 * W), role  # near the corners, not across the middle
        left, right = a[m & (c[:, 1] > 0)].sum(), a[m & (c[:, 1] < 0)].sum()
        assert min(left, right) / max(left, right) > 0.7, (role, left, right)
        assert np.all(np.abs(n[m, 0]) > 0.5), role  # they look forward / backward
        assert edge[m].max() < 0.25 * H, role  # no big spiky triangle
    grille = (roles == "trim") & (c[:, 2] > 0.1 * H)  # grille and intake: flat bands, no tall spikes
    tz = mesh.triangles[grille][:, :, 2]
    assert np.all(tz.max(axis=1) - tz.min(axis=1) < 0.2 * H)


@pytest.mark.skipif(not APOLLO.exists(), reason="../shared ApolloCar3D meshes absent")
def test_number_plates_sit_on_both_ends_of_a_one_piece_mesh(monkeypatch):
    """ApolloCar3D scans have no plates; real cars have one at each end (training.render.plates)."""
    from training.render.plates import PLATE_ROLE, TEXT_ROLE, plate_parts
    from training.render.renderer import model_parts

    car = _apollo_car()
    mesh = car.parts[0].mesh
    parts = plate_parts(mesh, car.name)
    plates = [m for role, m in parts if role == PLATE_ROLE]
    assert len(plates) == 2 and sum(role == TEXT_ROLE for role, _ in parts) >= 10
    lo, hi = mesh.bounds
    L, H = hi[0] - lo[0], hi[2] - lo[2]
    xs = sorted(float(p.centroid[0]) for p in plates)
    assert xs[0] < lo[0] + 0.15 * L and xs[1] > hi[0] - 0.15 * L  # one at the rear, one at the front
    for p in plates:
        w, h = p.extents[1], p.extents[2]
        assert (w, h) in ((pytest.approx(0.52), pytest.approx(0.11)), (pytest.approx(0.305), pytest.approx(0.152)))
        assert 0.2 * H < p.centroid[2] < 0.6 * H  # bumper / boot-lid height, not on the roof
        assert abs(p.centroid[1]) < 1e-9  # centred
    again = [m for role, m in plate_parts(mesh, car.name) if role == PLATE_ROLE]  # same plates every call
    assert [p.centroid.tolist() for p in again] == [p.centroid.tolist() for p in plates]
    assert {r for r, _, _ in model_parts(car)} >= {PLATE_ROLE, TEXT_ROLE}
    # the rear of a black car now holds a bright patch in the middle that the same render without
    # plates lacks (pyrender meshes are cached per renderer: one renderer per variant)
    import training.render.renderer as renderer_mod

    def centre_bright(with_plates: bool) -> int:
        if not with_plates:
            monkeypatch.setattr(renderer_mod, "plate_parts", lambda mesh, name: [])
        with CarRenderer(256, 256) as r:
            look = sample_look(np.random.default_rng(5), paint_rgb=(0.05, 0.05, 0.06))
            res = r.render_view(car, View(180, 5, 5), 256, sample_sky(np.random.default_rng(0)), look=look)
        g, m = res.color.astype(float).mean(2), res.mask
        xs = np.nonzero(m.any(0))[0]
        xc, half = (xs.min() + xs.max()) / 2, 0.12 * (xs.max() - xs.min())
        cols = slice(int(xc - half), int(xc + half) + 1)
        return int(((g > 2.2 * np.median(g[m])) & m)[:, cols].sum())

    plated = centre_bright(True)
    plain = centre_bright(False)
    assert plated > 2 * plain + 20
