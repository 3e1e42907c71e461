"""carpose-pseudo-pose: real crops labelled by the pose model where it agrees with its mirror image.

Real parts: the shipped pose model (ONNX Runtime) and detector read rendered scene frames that stand
in for unlabelled photos; the written file is read by the training loader and refused when its
photos are validation frames."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from carpose.convention import angular_error
from carpose.crop import CropSpec
from carpose.eval.real_sources import ValidationLeakError, shared_root
from training.dataset.provenance import refuse_leaky_datasets
from training.dataset.reader import CarposeDataset, DatasetError, validate
from training.detector.pseudo_label import touches_frame
from training.pose.data import CropStream
from training.pose.pseudo_pose import cap_per_sector, main, mirror_consistent, pseudo_pose, sector_of, write_crops


def test_only_confident_readings_that_agree_with_the_mirror_are_kept():
    az = np.array([30.0, 0.0, 120.0, 355.0, 200.0])
    conf = np.array([0.9, 0.9, 0.4, 0.8, 0.9])
    # mirror readings, in the mirror image's own frame (a car at a shows as 360 - a there)
    az_m = np.array([330.0, 180.0, 240.0, 358.0, 170.0])
    conf_m = np.array([0.9, 0.9, 0.9, 0.9, 0.9])
    keep, label = mirror_consistent(az, conf, az_m, conf_m, min_conf=0.6, max_disagree=15)
    # 30/330 agree; 0 vs a mirror that says rear: a flip; 120: not confident; 355 vs 358 (= 2 mapped
    # back): agree across 0;
    # 200 vs 190: agree
    assert keep.tolist() == [True, False, False, True, True]
    assert label[0] == pytest.approx(30) and angular_error(label[3], 358.5) < 1e-6
    assert label[4] == pytest.approx(195)
    keep, _ = mirror_consistent(az, conf, az_m, conf_m, min_conf=0.6, max_disagree=2)
    assert keep.tolist() == [True, False, False, False, False]


def test_sectors_caps_and_boxes_cut_by_the_frame():
    assert sector_of(np.array([0, 22.4, 22.6, 180, 337.6, 359])).tolist() == [0, 0, 1, 4, 0, 0]
    label = np.array([180.0] * 10 + [0.0] * 3 + [90.0])
    idx = cap_per_sector(label, 4)
    assert sorted(sector_of(label[idx]).tolist()) == [0, 0, 0, 2, 4, 4, 4, 4]
    assert len(cap_per_sector(label, None)) == len(label)
    boxes = np.array([[100, 300, 540, 360], [450, 190, 640, 329], [0, 200, 100, 300], [100, 200, 300, 340]])
    assert touches_frame(boxes, 640, 360).tolist() == [True, True, True, False]


def test_crops_file_trains_and_remembers_its_photos(tmp_path):
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (10, 32, 32, 3), dtype=np.uint8)
    label = rng.uniform(0, 360, 10)
    bbox = np.tile([3.0, 3.0, 29.0, 29.0], (10, 1))
    src = {"photos_folder": str(tmp_path / "street")}
    out = write_crops(tmp_path / "real.h5", crops, label, bbox, CropSpec(size=32), src)
    assert validate(out)["kind"] == "crops"
    with CarposeDataset(out) as ds:
        assert np.array_equal(ds.h5["images"][()], crops)
        np.testing.assert_allclose(ds.labels()["azimuth_deg"], label, rtol=1e-6)
    assert refuse_leaky_datasets([out]) == [src["photos_folder"]]
    rows = list(CropStream([out, out], train=False))  # listed twice: read twice (how a small set is oversampled)
    assert len(rows) == 20 and rows[0][0].shape == (3, 32, 32)
    np.testing.assert_allclose(sorted(float(a) for _, a in rows), sorted(np.tile(label, 2)), rtol=1e-5)
    with pytest.raises(DatasetError, match="carpose-pseudo-pose --grey-nearer"):
        CropStream([out], train=False, grey_nearer=True)  # real crops cut unlike the run's composites
    grey = write_crops(tmp_path / "grey.h5", crops, label, bbox, CropSpec(size=32, occluders="grey_nearer"), src)
    assert len(list(CropStream([grey], train=False, grey_nearer=True))) == 10
    with pytest.raises(DatasetError, match="occluders='grey_nearer'"):
        CropStream([grey], train=False)
    leaky = write_crops(tmp_path / "leaky.h5", crops, label, bbox, CropSpec(size=32),
                        {"photos_folder": str(shared_root() / "real" / "kitti_val" / "image_2")})
    with pytest.raises(ValidationLeakError):
        refuse_leaky_datasets([leaky])


def test_cli_labels_detected_cars_and_refuses_validation_frames(unlabelled_photos, tmp_path, capsys):
    out = tmp_path / "pseudo.h5"
    assert main(["--images", str(unlabelled_photos), "--out", str(out), "--min-score", "0.2", "--min-height", "20",
                 "--min-conf", "0.3", "--max-disagree", "30", "--quiet"]) == 0
    info = json.loads(out.with_name("pseudo.h5.json").read_text())
    assert 0 < info["kept"] <= info["confident_both"] <= info["boxes"]
    assert info["written"] == info["kept"] == sum(info["per_sector"].values())
    with CarposeDataset(out) as ds:
        assert len(ds) == info["written"] and ds.h5["images"].shape[1:] == (128, 128, 3)
    assert cv2.imread(str(out) + ".jpg") is not None
    assert "mirror-consistent" in capsys.readouterr().out
    val = shared_root() / "real" / "kitti_val" / "image_2"
    assert main(["--images", str(val), "--out", str(tmp_path / "no.h5"), "--quiet"]) == 2
    assert not (tmp_path / "no.h5").exists()


def test_grey_nearer_stores_crops_with_the_nearer_car_greyed_but_labels_them_as_the_teacher_reads(tmp_path):
    """A parked row in one photo: car A behind, car B nearer overlapping A's right half, car C cut by the
    frame and nearer still, over A's left edge. With --grey-nearer A's stored crop has B's and C's boxes
    grey (C is not cropped, being cut by the frame, but still hides A), B's crop is as without; the
    labels are the teacher's readings of the crops it was trained on, so they do not change."""
    rng = np.random.default_rng(1)
    photo = tmp_path / "street" / "row.jpg"
    photo.parent.mkdir()
    cv2.imwrite(str(photo), cv2.resize(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8), (400, 300)))
    boxes = {photo: np.array([[150, 100, 230, 160], [190, 110, 290, 190], [0, 120, 160, 240]], np.float64)}
    import onnx

    from carpose.pose import METADATA_KEY

    m = onnx.load("models/carpose_pose.onnx")  # the labeller: the shipped network, its crops not greyed
    entry = next(e for e in m.metadata_props if e.key == METADATA_KEY)
    meta = json.loads(entry.value)
    meta["crop"] = {**meta["crop"], "occluders": "none"}
    entry.value = json.dumps(meta)
    onnx.save(m, str(tmp_path / "labeller.onnx"))
    kw = dict(pose_model=tmp_path / "labeller.onnx", min_conf=0.0, max_disagree=180.0, progress=False)
    plain = pseudo_pose(boxes, **kw)
    grey = pseudo_pose(boxes, grey_nearer=True, **kw)
    assert len(plain["crops"]) == len(grey["crops"]) == 2  # C touches the frame: not a training crop
    np.testing.assert_allclose(grey["label"], plain["label"])
    assert grey["crop_spec"].occluders == "grey_nearer" and plain["crop_spec"].occluders == "none"
    np.testing.assert_array_equal(grey["crops"][1], plain["crops"][1])
    changed = np.any(grey["crops"][0] != plain["crops"][0], axis=2)
    assert changed[:, -20:].mean() > 0.4 and changed[:, :8].mean() > 0.4  # B on the right, C on the left
    assert np.mean(np.all(grey["crops"][0][changed] == 114, axis=1)) > 0.8  # the rest: the grey edge resized
