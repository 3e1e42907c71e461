"""Real renders agree with the azimuth labels (docs/conventions.md).

Two independent checks: a box car with a coloured nose at its front (+X), and the ShapeNet models
after normalisation, whose cabin (roof) sits behind the middle of the car, so in a side view the
roof is shifted towards the car's rear.
"""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from training.cars.loader import CarModelError, find_model_files, load_car, load_car_folder
from training.cars.model import CarModel, CarPart
from training.render.renderer import CarRenderer, Lighting, View


@pytest.fixture(scope="module")
def renderer():
    with CarRenderer(128, 128) as r:
        yield r


def _nosed_box() -> CarModel:
    body = trimesh.creation.box(extents=(4.5, 1.8, 1.4))
    body.apply_translation((0, 0, 0.7))
    nose = trimesh.creation.box(extents=(0.3, 0.6, 0.6))
    nose.apply_translation((2.4, 0, 0.7))  # sticks out of the front (+X)
    return CarModel("nosed", [CarPart(body, "paint", (0.2, 0.6, 0.2, 1.0)), CarPart(nose, "light_rear")])


def _red(img: np.ndarray) -> np.ndarray:
    c = img.astype(int)
    return (c[..., 0] > 2 * c[..., 1] + 20) & (c[..., 0] > 2 * c[..., 2] + 20)


@pytest.mark.parametrize("azimuth, where", [(0, "centre"), (90, "left"), (180, "hidden"), (270, "right"),
                                            (45, "left"), (315, "right")])
def test_nose_at_the_front_appears_where_the_azimuth_says(renderer, azimuth, where):
    res = renderer.render_view(_nosed_box(), View(azimuth, 0.0, 12.0), 128, Lighting(key_intensity=1.0))
    red = _red(res.color)
    if where == "hidden":
        assert red.sum() == 0
        return
    assert red.sum() > 10
    x = np.nonzero(red)[1].mean()
    box = res.box()
    rel = (x - box[0]) / (box[2] - box[0])
    expected = {"centre": (0.4, 0.6), "left": (0.0, 0.35), "right": (0.65, 1.0)}[where]
    assert expected[0] <= rel <= expected[1], f"nose at {rel:.2f} of the car's width"


def _roof_offset(mask: np.ndarray) -> float:
    """Where the highest part of the silhouette sits, from -0.5 (image left) to 0.5 (right)."""
    cols = np.flatnonzero(mask.any(0))
    rows = np.flatnonzero(mask.any(1))
    x1, x2, y1, y2 = cols[0], cols[-1] + 1, rows[0], rows[-1] + 1
    top = np.where(mask.any(0), np.argmax(mask, axis=0), mask.shape[0])
    high = np.flatnonzero(top < y1 + 0.15 * (y2 - y1))
    return float((high.mean() - x1) / (x2 - x1) - 0.5)


def test_shapenet_models_are_normalised_and_face_plus_x(shared_cars, renderer):
    for model in load_car_folder(shared_cars):
        lo, hi = model.bounds
        assert hi[0] - lo[0] == pytest.approx(4.5, rel=1e-6)
        assert lo[2] == pytest.approx(0.0, abs=1e-6)
        assert (lo[0] + hi[0]) / 2 == pytest.approx(0.0, abs=1e-6)
        assert (lo[1] + hi[1]) / 2 == pytest.approx(0.0, abs=1e-6)
        assert 1.6 < hi[1] - lo[1] < 2.3 and 1.2 < hi[2] - lo[2] < 2.0, model.extents  # width, height
        views = {a: renderer.render_view(model, View(a, 0.0, 15.0), 128, Lighting()) for a in (0, 90, 180, 270)}
        aspect = {a: (b[2] - b[0]) / (b[3] - b[1]) for a, b in ((a, v.box()) for a, v in views.items())}
        assert min(aspect[90], aspect[270]) > 1.5 * max(aspect[0], aspect[180]), (model.name, aspect)
        # Cabin behind the middle: seen from the left (90) the rear is on the image right.
        assert _roof_offset(views[90].mask) > 0.03, model.name
        assert _roof_offset(views[270].mask) < -0.03, model.name


def test_loader_records_transform(shared_cars):
    path = find_model_files(shared_cars)[0]
    model = load_car(path)
    raw = trimesh.load(path, force="scene", process=False).dump()
    v_native = np.asarray(raw[0].vertices[:5])
    v_car = np.asarray(model.parts[0].mesh.vertices[:5])
    mapped = (model.transform @ np.c_[v_native, np.ones(5)].T).T[:, :3]
    np.testing.assert_allclose(mapped, v_car, atol=1e-6)
    assert model.meta["axes_from"] == "known_models.json"


def test_bad_model_files_give_clear_errors(tmp_path):
    with pytest.raises(CarModelError, match="does not exist"):
        load_car_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CarModelError, match="has no"):
        load_car_folder(tmp_path / "empty")
    bad = tmp_path / "bad" / "model.obj"
    bad.parent.mkdir()
    bad.write_text("this is not an obj file\nf 1 2 3\n")
    with pytest.raises(CarModelError):
        load_car(bad)
    with pytest.raises(CarModelError, match="different axes"):
        load_car(bad, front="+y", up="-y")
