"""Labelled real photos: the class split, the ``stanford_val`` source, and the road-camera training crops.

Real parts: real JPEG folders with a labels table, real HDF5 crops files read by the training stream,
the shipped pose model through ``carpose-benchmark``. The Stanford Cars folder itself is used where
../shared has it (its split is checked there); everything else runs on small folders made here.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from conftest import SHARED

from carpose.crop import CropSpec
from carpose.eval.benchmark import run_benchmark
from carpose.eval.label_crops import photo_crops
from carpose.eval.photo_labels import (
    VAL_FRACTION,
    is_val_class,
    read_photo_labels,
    split_mask,
    val_classes,
)
from carpose.eval.real_sources import (
    RealSource,
    ValidationLeakError,
    leaks_in_metadata,
    resolve_sources,
    source_from_spec,
)
from training.dataset.provenance import refuse_leaky_datasets
from training.pose.data import CropStream
from training.pose.real_photos import RoadLook, balanced_copies, folded_sector, main, make_real_crops, road_crop

TRAIN_CLASSES = [c for c in range(1, 60) if not is_val_class(c)][:3]
VAL_CLASSES = [c for c in range(1, 60) if is_val_class(c)][:2]
HEADER = "file\tazimuth_deg\televation_deg\tclass_id\tupstream_h\n"


def _car_photo(rng: np.random.Generator, w: int = 160, h: int = 90) -> np.ndarray:
    img = np.full((h, w, 3), rng.integers(0, 255, 3), np.uint8)
    cv2.rectangle(img, (10, 20), (w - 10, h - 12), tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    cv2.circle(img, (35, h - 14), 10, (20, 20, 20), -1)
    cv2.circle(img, (w - 35, h - 14), 10, (20, 20, 20), -1)
    return img


@pytest.fixture
def photo_folder(tmp_path):
    """A labelled-photos folder: 4 photos of each of 3 training and 2 validation classes."""
    root = tmp_path / "cars"
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for c in TRAIN_CLASSES + VAL_CLASSES:
        for k in range(4):
            name = f"{c:03d}_{k}.jpg"
            cv2.imwrite(str(root / "images" / name), _car_photo(rng))
            rows.append(f"{name}\t{(c * 37 + k * 90) % 360:.1f}\t5.0\t{c}\t300\n")
    (root / "labels.tsv").write_text(HEADER + "".join(rows))
    return root


def test_the_class_split_is_fixed_by_the_class_alone_and_never_shares_a_class(photo_folder):
    labels = read_photo_labels(photo_folder)
    train, val = split_mask(labels, "train"), split_mask(labels, "val")
    assert not (train & val).any() and (train | val).all()
    assert set(labels.class_id[val]) == set(VAL_CLASSES) and set(labels.class_id[train]) == set(TRAIN_CLASSES)
    assert val_classes(labels) == sorted(VAL_CLASSES)
    # a fixed function of the id: the same answer in any order, about VAL_FRACTION of the classes
    share = np.mean([is_val_class(c) for c in range(1, 2001)])
    assert abs(share - VAL_FRACTION) < 0.03
    with pytest.raises(ValueError, match="part must be"):
        split_mask(labels, "test")


def test_a_bad_labels_table_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"labels\.tsv"):
        read_photo_labels(tmp_path)
    (tmp_path / "labels.tsv").write_text("file\tazimuth_deg\nx.jpg\t10\n")
    with pytest.raises(ValueError, match="class_id"):
        read_photo_labels(tmp_path)
    (tmp_path / "labels.tsv").write_text(HEADER + "x.jpg\tfront\t0\t3\t100\n")
    with pytest.raises(ValueError, match=r"labels.tsv:2"):
        read_photo_labels(tmp_path)


def test_photo_crops_cut_each_validation_photo_whole_with_its_label(photo_folder):
    spec = CropSpec()
    kc = photo_crops(photo_folder, spec, "val", progress=False)
    labels = read_photo_labels(photo_folder)
    assert len(kc) == 4 * len(VAL_CLASSES) and kc.crops.shape[1:] == (128, 128, 3)
    assert np.allclose(np.sort(kc.azimuth_deg), np.sort(labels.azimuth_deg[split_mask(labels, "val")]))
    # the box is the whole photo: a 160x90 photo fills the crop's width less the context, grey above and below
    crop = kc.crops[0]
    assert (crop[2, 64] == spec.fill).all() and not (crop[64, 64] == spec.fill).all()
    assert np.all(kc.height_px == 300)  # the car's height in the original photo, from the table


def test_stanford_val_is_a_registered_pose_source_and_the_detector_defaults_skip_it(tmp_path):
    src = source_from_spec("stanford_val")
    assert src.kind == "photos" and not src.has_frames and src.part == "val"
    ok, missing = resolve_sources(None, shared=tmp_path / "nowhere", photos=True)
    assert ok == [] and any(m.startswith("stanford_val: no labels") for m in missing)
    ok, missing = resolve_sources(None, shared=tmp_path / "nowhere")
    assert not any(m.startswith("stanford_val") for m in missing)  # frame tools (detectors) never list it


def test_benchmark_scores_a_photos_source_on_pose_beside_the_frames(photo_folder):
    src = RealSource("photos", photo_folder, photo_folder / "images", kind="photos", part="val")
    res = run_benchmark([src], det_model=None, progress=False)
    pose = res["sources"]["photos"]["pose"]
    assert pose["sure"]["n"] == 4 * len(VAL_CLASSES) and "confident_flips" in pose
    assert res["union"]["pose"]["sure"]["n"] == pose["sure"]["n"]


def test_road_crops_scale_the_car_down_jitter_its_box_and_keep_it_in_the_crop():
    rng = np.random.default_rng(1)
    photo = _car_photo(rng, 190, 110)
    spec = CropSpec()
    look = RoadLook(own_size_prob=0.0, height_px=(20.0, 20.0), low_light_prob=0, blur_prob=0, noise_prob=0,
                    jpeg_prob=0, context_probs=(0.0, 0.0, 1.0))
    crop, box, kind = road_crop(photo, np.random.default_rng(2), look, spec)
    assert crop.shape == (128, 128, 3) and kind == "grey"
    w, h = box[2] - box[0], box[3] - box[1]
    assert 0 <= box[0] < box[2] <= 128 and 0 <= box[1] < box[3] <= 128
    assert w / h == pytest.approx(190 / 110, rel=0.15)  # the car keeps its shape, scaled into the crop
    # scaled to a 20 px tall car, it is upsampled back: blurrier than the photo cut at its own size
    own, _, _ = road_crop(photo, np.random.default_rng(2), RoadLook(**{**look.__dict__, "own_size_prob": 1.0}), spec)
    assert cv2.Laplacian(crop, cv2.CV_64F).var() < cv2.Laplacian(own, cv2.CV_64F).var()
    with pytest.raises(ValueError, match="context_probs"):
        RoadLook(context_probs=(0.5, 0.5, 0.5))


def test_balanced_copies_even_out_the_folded_view_sectors_within_their_bounds():
    assert list(folded_sector(np.array([0.0, 350.0, 45.0, 315.0, 90.0, 270.0, 135.0, 180.0, 200.0]))) == \
        [0, 0, 1, 1, 2, 2, 3, 4, 4]
    az = np.array([10.0] * 60 + [90.0] * 20 + [180.0] * 5)  # fronts as web photographers shoot them
    n = balanced_copies(az, copies=2, max_copies=8)
    per = [n[folded_sector(az) == k].sum() for k in (0, 2, 4)]
    assert per[0] == 60 and 50 <= per[1] <= 60 and per[2] == 5 * 8  # rears capped at 8 copies each
    assert n.min() >= 1 and balanced_copies(np.array([10.0, 20.0]), 3).tolist() == [3, 3]


def test_a_truncated_car_ends_at_a_grey_frame_edge_and_its_box_with_it():
    photo = _car_photo(np.random.default_rng(1), 190, 110)
    spec = CropSpec()
    look = RoadLook(own_size_prob=1.0, low_light_prob=0, blur_prob=0, noise_prob=0, jpeg_prob=0, box_jitter=0.0,
                    context_probs=(0.0, 1.0, 0.0))
    _, whole, _ = road_crop(photo, np.random.default_rng(3), look, spec)
    cut_look = RoadLook(**{**look.__dict__, "truncate_prob": 1.0, "truncate_share": (0.3, 0.3)})
    for seed in range(6):
        crop, box, _ = road_crop(photo, np.random.default_rng(seed), cut_look, spec)
        aspect = (box[2] - box[0]) / (box[3] - box[1])
        whole_aspect = (whole[2] - whole[0]) / (whole[3] - whole[1])
        # 30 % of the width (left or right) or of the height (bottom) beyond the edge: the box's shape says which
        assert aspect == pytest.approx(0.7 * whole_aspect, rel=0.03) or aspect == pytest.approx(whole_aspect / 0.7,
                                                                                                 rel=0.03)
        grey = np.all(crop == spec.fill, axis=2)
        assert grey[:, :8].all() or grey[:, -8:].all() or grey[-8:].all()  # the frame's edge is the crop's fill


def test_real_crops_hold_the_training_classes_only_and_train(photo_folder, tmp_path):
    out = tmp_path / "real.h5"
    assert main([str(photo_folder), "--out", str(out), "--copies", "2", "--quiet"]) == 0
    stream = CropStream([out], train=True)
    assert len(stream) == 2 * 4 * len(TRAIN_CLASSES)
    img, az = next(iter(stream))
    assert img.shape == (3, 128, 128) and 0 <= float(az) < 360
    assert out.with_suffix(".jpg").is_file()
    refuse_leaky_datasets([out])  # a training part: accepted
    import h5py

    with h5py.File(out, "r") as f:
        rec = json.loads(f.attrs["render_config"])["real_photos"]
    assert rec["part"] == "train" and set(rec["classes"]) == set(TRAIN_CLASSES)
    assert set(rec["val_classes"]) == set(VAL_CLASSES)
    # a file claiming a validation class, or another part, is refused for training and flagged in a model
    with h5py.File(out, "r+") as f:
        cfg = json.loads(f.attrs["render_config"])
        cfg["real_photos"]["classes"] = TRAIN_CLASSES + VAL_CLASSES[:1]
        f.attrs["render_config"] = json.dumps(cfg)
    with pytest.raises(ValidationLeakError, match="validation classes"):
        refuse_leaky_datasets([out])
    assert leaks_in_metadata({"real_photos": [{"part": "val", "folder": "x", "classes": []}]})
    assert not leaks_in_metadata({"real_photos": [{"part": "train", "folder": "x", "classes": TRAIN_CLASSES}]})


def test_real_crops_refuse_validation_frames_as_context(photo_folder, tmp_path):
    with pytest.raises(ValidationLeakError):
        make_real_crops(photo_folder, tmp_path / "x.h5", backgrounds=SHARED / "real" / "kitti_val" / "image_2",
                        progress=False)


def test_the_stanford_split_holds_a_quarter_of_the_classes_and_every_view(tmp_path):
    folder = SHARED / "real" / "stanford_cars"
    if not (folder / "labels.tsv").is_file():
        pytest.skip(f"no labelled photos at {folder} (../shared is optional)")
    labels = read_photo_labels(folder)
    val = split_mask(labels, "val")
    assert 1400 <= val.sum() <= 1700
    sectors = np.bincount(((labels.azimuth_deg[val] + 22.5) // 45).astype(int) % 8, minlength=8)
    assert (sectors >= 40).all(), sectors
    kc = photo_crops(folder, CropSpec(), "val", progress=False, limit=8)
    assert len(kc) == 8
