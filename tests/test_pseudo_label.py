"""carpose-pseudo-label: a teacher detector labels unlabelled photos; the student trains on them.

Real parts: rendered scene frames stand in for unlabelled photos, the shipped detector is the
teacher (ultralytics, test-time augmentation on), and carpose-train-det trains one epoch on the
result. The validation frames are refused at both doors."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from carpose.eval.real_sources import ValidationLeakError
from carpose.pipeline import DEFAULT_DET_MODEL
from training.detector.box_fusion import fuse_boxes
from training.detector.pseudo_label import (
    GREY,
    Teacher,
    TeacherConfig,
    grey_out,
    kitti_lines,
    own_car_boxes,
    pseudo_label,
    split_bands,
    yolo_lines,
)
from training.detector.train import main as train_det_main
from training.render.backgrounds import read_kitti_boxes


def test_unsure_boxes_are_greyed_but_never_over_a_sure_car():
    xyxy = np.array([[10, 10, 50, 40], [12, 12, 48, 38], [60, 5, 90, 30]], float)
    scores = np.array([0.9, 0.3, 0.2])
    sure, unsure = split_bands(xyxy, scores, keep=0.45)
    # the unsure box lying inside the sure car is dropped; the one elsewhere stays unsure
    assert sure.tolist() == [[10, 10, 50, 40]] and unsure.tolist() == [[60, 5, 90, 30]]
    img = np.random.default_rng(0).integers(0, 255, (50, 100, 3), dtype=np.uint8)
    before = img.copy()
    overlapping = np.array([[40, 20, 70, 45]], float)  # half over the sure car
    out = grey_out(img, np.vstack([unsure, overlapping]), sure)
    assert np.array_equal(img, before), "the photo itself is not painted on"
    assert (out[5:30, 60:90] == GREY).all() and (out[40:45, 55:70] == GREY).all()
    assert np.array_equal(out[10:40, 10:50], img[10:40, 10:50])  # the labelled car is untouched
    (line,) = yolo_lines(sure, 100, 50)
    assert [float(v) for v in line.split()] == pytest.approx([0, 0.3, 0.5, 0.4, 0.6])
    (k,) = kitti_lines(sure, np.array([0.9]))
    assert k.split()[0] == "Car" and [float(v) for v in k.split()[4:8]] == [10, 10, 50, 40]


def test_the_cameras_own_car_is_greyed_not_labelled():
    """A wing mirror at the frame's right edge in most of a source's photos is the camera's own car; a
    car followed in mid-frame through the same photos, and the mirror in a short source, stay boxes."""
    mirror, lead = [0.7, 0.53, 1.0, 0.91], [0.45, 0.5, 0.55, 0.6]
    rng = np.random.default_rng(0)
    photos = [np.array([mirror, lead]) + rng.normal(0, 0.005, (2, 4)) for _ in range(24)]
    for b in photos:
        b[0, 2] = 1.0  # the teacher's boxes are clipped to the frame
    photos += [np.array([[0.0, 0.4, 0.2, 0.6]])] * 2  # a car cut by the left edge, twice: not recurring enough
    flags = own_car_boxes(photos)
    assert all(f[0] for f in flags[:24]) and not any(f[1] for f in flags[:24])
    assert not any(f.any() for f in flags[24:])
    assert not any(f.any() for f in own_car_boxes(photos[:10]))  # 10 photos: too few to tell


def test_fused_boxes_score_by_how_many_detectors_found_the_car():
    a = (np.array([[10, 10, 50, 40], [100, 10, 140, 40]], float), np.array([0.9, 0.6]))
    b = (np.array([[14, 10, 54, 40], [200, 0, 230, 30]], float), np.array([0.3, 0.8]))
    xyxy, scores = fuse_boxes([a, b])
    # the car both found: the mean of their scores, the box weighted towards the surer detector
    assert scores.tolist() == pytest.approx([0.6, 0.4, 0.3]), "best first: both (0.6), b alone (0.8 / 2), a alone"
    assert xyxy[0].tolist() == pytest.approx([11, 10, 51, 40])
    assert xyxy[1].tolist() == [200, 0, 230, 30] and xyxy[2].tolist() == [100, 10, 140, 40]
    # one detector: its own boxes; nobody: nothing; no detector at all: an error
    one, s1 = fuse_boxes([a])
    assert one.tolist() == a[0].tolist() and s1.tolist() == a[1].tolist()
    assert fuse_boxes([(np.zeros((0, 4)), np.zeros(0))] * 2)[0].shape == (0, 4)
    with pytest.raises(ValueError):
        fuse_boxes([])


def test_a_teacher_of_two_equal_detectors_labels_like_one(unlabelled_photos, tmp_path):
    """Fusing a detector with a copy of itself changes nothing: every box is found by both at the same
    score. Real ultralytics runs with test-time augmentation on rendered photos."""
    import shutil

    copy = tmp_path / "same_detector.onnx"
    shutil.copy(DEFAULT_DET_MODEL, copy)
    single = Teacher(TeacherConfig(weights=str(DEFAULT_DET_MODEL), imgsz=320, ignore=0.1), tmp_path / "w1")
    pair = Teacher(TeacherConfig(weights=[str(DEFAULT_DET_MODEL), str(copy)], imgsz=320, ignore=0.1), tmp_path / "w2")
    found = 0
    for p in sorted(unlabelled_photos.glob("*.jpg")):
        img = cv2.imread(str(p))
        (b1, s1), (b2, s2) = single.boxes(img), pair.boxes(img)
        assert b1.shape == b2.shape and np.allclose(b1, b2, atol=1e-3) and np.allclose(s1, s2, atol=1e-5)
        found += len(b1)
    assert found > 0
    with pytest.raises(ValueError, match="distinct"):
        Teacher(TeacherConfig(weights=[str(DEFAULT_DET_MODEL), str(DEFAULT_DET_MODEL)]), tmp_path / "w3")


def test_pseudo_labels_train_the_student(unlabelled_photos, pose_scenes, tmp_path):
    out = tmp_path / "pseudo"
    cfg = TeacherConfig(weights=str(DEFAULT_DET_MODEL), imgsz=320, augment=True, ignore=0.05, keep=0.3)
    info = pseudo_label(unlabelled_photos, out, cfg, progress=False)
    assert info["photos"] == 4 and info["unreadable"] == 0
    assert info["sure"] > 0, "the shipped detector should find some rendered cars at keep 0.3"
    total_sure = 0
    for p in sorted(unlabelled_photos.glob("*.jpg")):
        yolo = (out / "yolo/labels/train" / f"{p.stem}.txt").read_text().split("\n")
        kitti = read_kitti_boxes(out / "label_2" / f"{p.stem}.txt")
        scores = [float(line.split()[-1]) for line in (out / "label_2" / f"{p.stem}.txt").read_text().splitlines()]
        n_sure = len([line for line in yolo if line.strip()])
        assert n_sure == sum(s >= cfg.keep for s in scores) and len(kitti) >= n_sure
        assert all(s >= cfg.ignore for s in scores)
        assert cv2.imread(str(out / "yolo/images/train" / f"{p.stem}.jpg")).shape == cv2.imread(str(p)).shape
        total_sure += n_sure
    assert total_sure == info["sure"]
    assert (out / "sheet.jpg").is_file()
    meta = json.loads((out / "pseudo.json").read_text())
    assert meta["photos_folder"] == str(unlabelled_photos) and meta["teacher"]["keep"] == 0.3

    det = tmp_path / "det"
    assert train_det_main([str(pose_scenes), "--out", str(det), "--epochs", "1", "--imgsz", "128", "--batch", "4",
                           "--workers", "0", "--pseudo", str(out)]) == 0
    data = (det / "data_with_pseudo.yaml").read_text()
    assert str((out / "yolo/images/train").resolve()) in data and str(det / "yolo_data" / "images" / "train") in data
    assert json.loads((det / "det_train.json").read_text())["pseudo_labelled_photos"] == [str(unlabelled_photos)]


def test_validation_frames_are_never_pseudo_labelled(tmp_path, pose_scenes):
    val = tmp_path / "shared" / "real" / "kitti_val" / "image_2"
    val.mkdir(parents=True)
    cv2.imwrite(str(val / "000000.png"), np.zeros((40, 60, 3), np.uint8))
    with pytest.raises(ValidationLeakError):
        pseudo_label(val, tmp_path / "p", TeacherConfig(weights=str(DEFAULT_DET_MODEL)), progress=False)
    # a pseudo-label folder made from validation frames (by hand, or by an older tool) is refused too
    forged = tmp_path / "forged"
    forged.mkdir()
    (forged / "pseudo.json").write_text(json.dumps({"photos_folder": str(val)}))
    assert train_det_main([str(pose_scenes), "--out", str(tmp_path / "det"), "--epochs", "1",
                           "--pseudo", str(forged)]) == 2
    assert not (tmp_path / "det" / "train").exists()
