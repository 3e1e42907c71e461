"""Car model collections (../shared/cars_more): registry axes, normalisation, front-is-+X, licences,
the held-out split stratified by collection, and source/licence in a real render job's HDF5 attrs.

Tests that need ../shared skip cleanly without it; the SOURCES.tsv lookup and the stratified split
are also tested on files made here.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import SHARED
from training.cars.checks import rear_minus_front
from training.cars.loader import find_model_files, load_car, load_car_folder, model_key
from training.cars.sources import REGISTRY, collection_of, source_info
from training.render.jobs import ModelSpec, build_models, heldout_names

MORE = SHARED / "cars_more"
COLLECTIONS = ("apollocar3d", "gazebo", "kenney", "pgdrive")
#: Stylised cars whose ends are equally high: the end-height cue does not apply (sheets checked by eye).
END_CUE_UNRELIABLE = {"kenney_sedan", "kenney_police"}


@pytest.fixture(scope="module")
def cars_more():
    if not (MORE / "SOURCES.tsv").is_file():
        pytest.skip(f"no {MORE} (../shared is optional)")
    return MORE


@pytest.fixture(scope="module")
def loaded(cars_more) -> dict:
    """Every used model of every collection, loaded once: {collection: [CarModel]}."""
    return {c: load_car_folder(cars_more / c) for c in COLLECTIONS}


def _tsv_row(cars_more, collection: str) -> dict:
    """The SOURCES.tsv row of a collection, read with the csv module (column names from its header)."""
    import csv

    with open(cars_more / "SOURCES.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return next(r for r in rows if r["folder"].split("/")[0] == collection)


def test_every_collection_loads_with_registry_axes_and_licence(loaded, cars_more):
    counts = {c: len(ms) for c, ms in loaded.items()}
    assert counts == {"apollocar3d": 79, "gazebo": 3, "kenney": 5, "pgdrive": 2}, counts
    for collection, models in loaded.items():
        entry = REGISTRY[collection]
        for m in models:
            want = {**entry, **entry.get("models", {}).get(m.name, {})}
            assert m.meta["axes_from"] == "car_sources.json", m.name
            assert (m.meta["front"], m.meta["up"]) == (want["front"], want["up"]), m.name
            assert m.collection == collection
            assert m.licence and m.origin.startswith(_tsv_row(cars_more, collection)["source repository"])
    names = [m.name for ms in loaded.values() for m in ms]
    assert len(names) == len(set(names)), "model names must be unique across collections"


def test_models_are_normalised_to_the_car_frame_and_real_size(loaded):
    for collection, models in loaded.items():
        for m in models:
            lo, hi = m.bounds
            L, W, H = m.extents
            assert lo[2] == pytest.approx(0.0, abs=1e-6), m.name  # on the ground
            assert (lo[0] + hi[0]) / 2 == pytest.approx(0.0, abs=1e-6)
            assert (lo[1] + hi[1]) / 2 == pytest.approx(0.0, abs=1e-6)
            assert 3.3 < L < 5.8 and L > 1.6 * W and L > 1.9 * H, (m.name, m.extents)  # long axis is X
            want = REGISTRY[collection].get("models", {}).get(m.name, {}).get("length_m")
            if want:
                assert L == pytest.approx(want, rel=1e-6), m.name
    # ApolloCar3D is in metres: its own size is kept (transform has no scale).
    for m in loaded["apollocar3d"]:
        assert np.linalg.det(m.transform[:3, :3]) == pytest.approx(1.0, abs=1e-6), m.name
        assert 1.3 < m.extents[2] < 2.0, (m.name, m.extents)


def test_front_is_plus_x_by_end_heights(loaded):
    """Rear end (boot/hatch) higher than the front end (bonnet): see training.cars.checks."""
    diffs = {m.name: rear_minus_front(m) for ms in loaded.values() for m in ms}
    checked = {n: d for n, d in diffs.items() if n not in END_CUE_UNRELIABLE}
    wrong = {n: round(d, 3) for n, d in checked.items() if d < 0.05}
    assert not wrong, f"cars whose front end is not lower than their rear end: {wrong}"
    assert len(checked) == 87


def test_front_cue_catches_a_flipped_car(cars_more):
    path = cars_more / "apollocar3d" / "aodi_a6" / "model.obj"
    assert rear_minus_front(load_car(path)) > 0.1
    flipped = load_car(path, front="-z", up="+y")
    assert rear_minus_front(flipped) < -0.1


def test_excluded_models_are_left_out_with_a_reason(cars_more):
    for collection in COLLECTIONS:
        excluded = REGISTRY[collection].get("excluded", {})
        files = {model_key(p) for p in find_model_files(cars_more / collection)}
        assert set(excluded) <= files, collection
        assert all(len(why) > 20 for why in excluded.values())
    assert set(REGISTRY["kenney"]["excluded"]) == {"kenney_ambulance", "kenney_delivery"}
    assert "gazebo_ambulance" in REGISTRY["gazebo"]["excluded"]
    assert load_car_folder(cars_more / "gazebo", include_excluded=True)[0].name == "gazebo_ambulance"


def test_source_info_reads_the_sources_tsv_row(cars_more):
    info = source_info(cars_more / "kenney" / "van" / "kenney_van.glb")
    assert info.collection == "kenney" and "CC0" in info.licence
    row = _tsv_row(cars_more, "kenney")  # ../shared's own record, read here without source_info
    assert info.commit == row["commit"] and len(info.commit) == 40
    assert "non-commercial" in source_info(cars_more / "apollocar3d" / "aodi_a6" / "model.obj").licence


def test_source_lookup_without_shared(tmp_path):
    """A collection of our own with a SOURCES.tsv: the licence comes from its row."""
    (tmp_path / "mycars" / "box").mkdir(parents=True)
    (tmp_path / "SOURCES.tsv").write_text(
        "folder\tsource repository\tcommit\tpath there\tlicence as stated\tnotes\n"
        "mycars/*\texample/cars\tabc123\tmodels/\tCC0 test licence\tnone\n")
    obj = tmp_path / "mycars" / "box" / "box.obj"
    obj.write_text("v 0 0 0\nv 4 0 0\nv 0 1.5 0\nv 0 0 1.8\nf 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n")
    assert collection_of(obj) == "mycars"
    model = load_car(obj, front="+x", up="+y")
    assert (model.collection, model.licence, model.origin) == ("mycars", "CC0 test licence",
                                                               "example/cars@abc123:models/")
    assert collection_of(tmp_path / "elsewhere.obj") is None


def test_heldout_split_is_stratified_by_collection():
    groups = {f"a{i}": "apollocar3d" for i in range(79)} | {f"g{i}": "gazebo" for i in range(3)}
    groups |= {f"k{i}": "kenney" for i in range(5)} | {"p0": "pgdrive", "p1": "pgdrive", "solo": "one"}
    held = heldout_names(list(groups), 0.25, groups=groups)
    per = {c: sum(groups[n] == c for n in held) for c in set(groups.values())}
    assert per == {"apollocar3d": 20, "gazebo": 1, "kenney": 2, "pgdrive": 1, "one": 0}
    # Stable: the same names in another order give the same set.
    assert heldout_names(sorted(groups, reverse=True), 0.25, groups=groups) == held
    # Without groups: the old procedural / file split.
    assert heldout_names(["proc_a", "proc_b", "x", "y"], 0.5) == heldout_names(
        ["proc_a", "proc_b", "x", "y"], 0.5, groups={"proc_a": "p", "proc_b": "p", "x": "f", "y": "f"})


def test_build_models_from_several_folders_holds_out_every_collection(cars_more, shared_cars):
    spec = dict(models_dir=(str(shared_cars), str(cars_more)), procedural=8)
    train, split = build_models(ModelSpec(split="train", **spec))
    held, split2 = build_models(ModelSpec(split="heldout", **spec))
    assert split == {**split2, "split": "train"}
    assert split["collections"] == {"apollocar3d": 79, "gazebo": 3, "kenney": 5, "pgdrive": 2,
                                    "procedural": 8, "shapenet": 4}
    assert {m.name for m in train}.isdisjoint(m.name for m in held)
    per = {}
    for m in held:
        per[m.collection] = per.get(m.collection, 0) + 1
    assert per == {"apollocar3d": 20, "gazebo": 1, "kenney": 2, "pgdrive": 1, "procedural": 2, "shapenet": 1}
    with pytest.raises(ValueError, match="unique"):
        build_models(ModelSpec(models_dir=(str(cars_more / "pgdrive"), str(cars_more / "pgdrive"))))


def test_render_job_records_source_and_licence(cars_more, tmp_path):
    """A tiny real crops job from two --models folders: every model's collection, origin and licence
    (from SOURCES.tsv) are in the HDF5 attributes."""
    from training.dataset.reader import CarposeDataset
    from training.render.cli import main

    out = tmp_path / "crops.h5"
    assert main(["crops", "--out", str(out), "--count", "4", "--size", "64", "--quiet", "--no-interference",
                 "--models", str(cars_more / "pgdrive"), "--models", str(cars_more / "kenney")]) == 0
    with CarposeDataset(out) as ds:
        records = {r["name"]: r for r in ds.models}
        split = ds.attrs["split"]
    assert set(records) == {"beetle", "datsun_s130", "kenney_police", "kenney_sedan", "kenney_suv",
                            "kenney_suv_luxury", "kenney_van"}
    assert records["beetle"]["collection"] == "pgdrive" and "CC BY 4.0" in records["beetle"]["licence"]
    assert records["beetle"]["origin"].startswith("decisionforce/pgdrive@2ba6cac2")
    assert "CC0" in records["kenney_van"]["licence"]
    assert split["collections"] == {"kenney": 5, "pgdrive": 2}


def test_contact_sheet_has_one_row_of_8_views_per_model(cars_more, tmp_path):
    import cv2

    from training.cars.sheet import write_sheets

    (path,) = write_sheets(cars_more / "gazebo", tmp_path / "gazebo.jpg", size=64)
    sheet = cv2.imread(str(path))
    assert sheet.shape == (4 * 64, 8 * 64, 3)  # the excluded ambulance is shown too (marked LEFT OUT)
    tiles = sheet.reshape(4, 64, 8, 64, 3)
    assert all(tiles[r, :, c].std() > 5 for r in range(4) for c in range(8))  # every view shows a car


def test_front_rear_sheet_of_procedural_cars(tmp_path):
    """``--views 0,180 --realistic --procedural N``: one row per car, one column per view, the
    training renders' materials (red tail lamps at 180, none at 0); needs no ../shared."""
    import cv2

    from training.cars.sheet import main

    out = tmp_path / "ends.png"
    assert main(["--procedural", "2", "--views", "0,180", "--realistic", "--size", "64", "--out", str(out)]) == 0
    sheet = cv2.imread(str(out)).astype(int)
    assert sheet.shape == (2 * 64, 2 * 64, 3)  # rows = cars, columns = views
    tiles = sheet.reshape(2, 64, 2, 64, 3)
    for r in range(2):
        front, rear = tiles[r, :, 0], tiles[r, :, 1]
        assert front.std() > 5 and rear.std() > 5  # a car in every tile
        red = [int(((t[..., 2] > 90) & (t[..., 2] > 2 * t[..., 1]) & (t[..., 2] > 2 * t[..., 0])).sum())
               for t in (front, rear)]
        assert red[0] == 0 and red[1] >= 10, red  # tail lamps at the rear, none at the front
