"""Sim-to-real levers of the pose model: mirror test-time averaging, batch-norm adaptation on
unlabelled crops, strong augmentation with random erasing, checkpoint choice on labelled real photos.
Real ONNX Runtime, real checkpoints, real rendered scenes exported as a KITTI folder."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from carpose.convention import angular_error, flip_azimuth
from carpose.pose import PoseEstimator, mirror_bins
from carpose.shipped import default_model_path
from training.pose.data import AugmentConfig, augment, random_erase


def test_mirror_bins_maps_azimuth_a_to_360_minus_a():
    k = 72
    p = np.zeros((3, k), np.float32)
    p[0, 6] = 1  # 30 deg
    p[1, 0] = 1  # 0 deg (front) stays front
    p[2, 18] = 1  # 90 deg (left side) -> 270 (right side)
    m = mirror_bins(p)
    assert m[0].argmax() == 66 and m[1].argmax() == 0 and m[2].argmax() == 54
    assert np.array_equal(mirror_bins(m), p)


@pytest.fixture(scope="module")
def shipped_pose():
    path = default_model_path("carpose_pose.onnx")
    if not path.is_file():
        pytest.skip(f"no shipped pose model at {path}")
    return path


def test_mirror_tta_averages_a_crop_with_its_mirror_image(shipped_pose):
    rng = np.random.default_rng(0)
    plain = PoseEstimator(shipped_pose, mirror_tta=False)
    tta = PoseEstimator(shipped_pose, mirror_tta=True)
    s = plain.input_size
    crops = rng.integers(0, 255, (3, s, s, 3), dtype=np.uint8)
    crops[:, s // 4: 3 * s // 4, : s // 2] = 40  # something that is not mirror-symmetric
    a, b = plain.predict(crops), plain.predict(crops[:, :, ::-1])
    r = tta.predict(crops)
    np.testing.assert_allclose(r.probs, 0.5 * (a.probs + mirror_bins(b.probs)), atol=1e-5)
    # averaged with its mirror, a crop and its mirror image get exactly mirrored answers
    rm = tta.predict(crops[:, :, ::-1])
    assert np.max(angular_error(rm.azimuth_deg, flip_azimuth(r.azimuth_deg))) < 0.01
    assert np.max(angular_error(a.azimuth_deg, r.azimuth_deg)) > 0 or np.max(np.abs(a.probs - r.probs)) > 1e-4


def test_strong_augmentation_keeps_the_label_unless_it_mirrors():
    rng = np.random.default_rng(1)
    img = np.full((64, 64, 3), 128, np.uint8)
    img[20:40, 5:30] = 10
    cfg = AugmentConfig.strong()
    seen_flip = seen_keep = False
    for _ in range(60):
        out, az = augment(img, 40.0, rng, cfg)
        assert out.shape == img.shape and out.dtype == np.uint8
        assert az in (40.0, float(flip_azimuth(40.0)))
        seen_flip |= az != 40.0
        seen_keep |= az == 40.0
    assert seen_flip and seen_keep
    with pytest.raises(ValueError, match="unknown augmentation"):
        AugmentConfig.named("wild")


def test_random_erase_paints_bounded_rectangles():
    rng = np.random.default_rng(2)
    for _ in range(20):
        f = np.zeros((64, 64, 3), np.float32)
        random_erase(f, rng, max_area=0.2)
        changed = np.any(f != 0, axis=2).mean()
        assert 0 < changed <= 2 * 0.2 + 1e-6


def test_batchnorm_adaptation_moves_only_the_statistics(pose_run, tmp_path):
    from training.pose.adapt_bn import adapt_batchnorm
    from training.pose.checkpoint import load_checkpoint

    model, _ = load_checkpoint(pose_run / "best.pt")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = np.random.default_rng(3)
    crops = rng.integers(0, 80, (40, 64, 64, 3), dtype=np.uint8)  # dark, low-contrast "real" crops
    assert adapt_batchnorm(model, crops, mix=0.0) > 0
    after0 = model.state_dict()
    assert all(torch.allclose(before[k].float(), after0[k].float()) for k in before)  # mix 0: nothing moves
    adapt_batchnorm(model, crops, mix=1.0)
    after = model.state_dict()
    moved = [k for k in before if k.endswith("running_mean") and not torch.allclose(before[k], after[k])]
    assert moved, "no running mean moved"
    assert all(torch.equal(before[k], after[k]) for k in before if k.endswith(("weight", "bias")))
    # the stem BN's new mean is the mean of its input (the stem conv's output) over the crops
    stem_conv, stem_bn = model.stem[0], model.stem[1]
    x = torch.from_numpy(crops.transpose(0, 3, 1, 2).copy()).float()
    with torch.no_grad():
        z = stem_conv(model.norm(x))
    torch.testing.assert_close(stem_bn.running_mean, z.mean((0, 2, 3)), atol=1e-3, rtol=1e-3)


@pytest.fixture(scope="module")
def real_like_kitti(pose_scenes, tmp_path_factory):
    """A KITTI folder (labels + images) from rendered scenes: stands in for labelled real photos."""
    from training.dataset.export import export_kitti

    root = tmp_path_factory.mktemp("realval") / "kitti"
    export_kitti(pose_scenes, root)
    return root


def test_train_chooses_best_checkpoint_on_several_real_sources(pose_crops, real_like_kitti, tmp_path):
    from training.pose.real_val import selection_key
    from training.pose.train import main

    second = tmp_path / "second"  # a second source: half of the frames' labels, images from the first
    (second / "label_2").mkdir(parents=True)
    labels = sorted((real_like_kitti / "label_2").glob("*.txt"))
    for lab in labels[: len(labels) // 2]:
        shutil.copy(lab, second / "label_2" / lab.name)
    out = tmp_path / "run"
    assert main(["--train", str(pose_crops), "--val", str(pose_crops), "--out", str(out), "--epochs", "2",
                 "--batch", "32", "--workers", "0", "--limit", "64", "--val-limit", "64", "--quiet",
                 "--real", str(real_like_kitti), f"{second}:{real_like_kitti / 'image_2'}", "--aug", "strong"]) == 0
    hist = json.loads((out / "history.json").read_text())["history"]
    assert len(hist) == 2
    for h in hist:
        per = h["real"]["sources"]
        assert set(per) == {"kitti", "second"} and 0 < per["second"]["all"]["n"] < per["kitti"]["all"]["n"]
        assert h["real"]["sure"]["n"] == per["kitti"]["sure"]["n"] + per["second"]["sure"]["n"]
    ck = torch.load(out / "best.pt", weights_only=True)
    keys = [selection_key(h["real"]) for h in hist]
    assert ck["epoch"] == (0 if keys[0] <= keys[1] else 1)  # the first best epoch wins a tie
    assert ck["metadata"]["selected_on"].startswith("real:") and ck["metadata"]["augment"] == "strong"


def test_adapt_bn_cli_writes_a_checkpoint_that_evaluates(pose_run, real_like_kitti, tmp_path):
    from training.pose.adapt_bn import main as adapt
    from training.pose.evaluate import evaluate

    out = tmp_path / "bn.pt"
    assert adapt([str(pose_run / "best.pt"), "--images", str(real_like_kitti / "image_2"), "--boxes",
                  str(real_like_kitti / "label_2"), "--min-height", "0", "--out", str(out)]) == 0
    meta = torch.load(out, weights_only=True)["metadata"]
    assert "azimuths not read" in meta["bn_adapted"]["boxes"] and meta["bn_adapted"]["crops"] >= 16
    r = evaluate(out, real_like_kitti, progress=False, min_height=0, max_truncation=1.0, max_occlusion=3)
    assert r["metrics"]["n"] > 0
    assert adapt([str(pose_run / "best.pt"), "--images", str(tmp_path), "--boxes", str(tmp_path),
                  "--out", str(tmp_path / "x.pt")]) == 2  # no images: a clear error, nothing written
    assert not (tmp_path / "x.pt").exists()


def test_exported_mirror_tta_flag_is_the_runtime_default(pose_run, tmp_path):
    from training.pose.export import export_onnx

    flagged = export_onnx(pose_run / "best.pt", tmp_path / "tta.onnx", mirror_tta=True)
    plain = export_onnx(pose_run / "best.pt", tmp_path / "plain.onnx")
    assert PoseEstimator(flagged).mirror_tta and not PoseEstimator(plain).mirror_tta
    assert not PoseEstimator(flagged, mirror_tta=False).mirror_tta  # the caller can still switch it off
    crops = np.random.default_rng(4).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    np.testing.assert_allclose(PoseEstimator(flagged).predict(crops).probs,
                               PoseEstimator(plain, mirror_tta=True).predict(crops).probs, atol=1e-6)
