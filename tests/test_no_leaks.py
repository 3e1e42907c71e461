"""The leak test: real validation frames never become training signal.

Validation frames (``../shared/real/*``, ``data/real/*``) may choose and score models; they must never be
render backgrounds, BatchNorm-adaptation images or anything a model is trained on, or the figures on
them stop saying anything about unseen cameras. Every door is tried here with real parts: the renderer
CLI, a real HDF5 file's recorded background folder, carpose-train, carpose-train-det, carpose-adapt-bn.
The path checks work by name as well, so these tests run without ../shared too.
"""

from __future__ import annotations

import json

import cv2
import h5py
import numpy as np
import pytest
from conftest import SHARED

from carpose.eval.real_sources import (
    ValidationLeakError,
    leaked_folder,
    leaks_in_metadata,
    refuse_validation_frames,
    validation_sources,
)
from training.dataset.provenance import background_folders, refuse_leaky_datasets
from training.render.backgrounds import BackgroundSource

VALIDATION = [p for s in validation_sources() for p in (s.images, s.labels)]


def _photos(folder, n=3):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))
    return folder


def test_every_validation_folder_is_recognised_and_unlabelled_photos_are_not(tmp_path):
    for folder in VALIDATION:
        assert leaked_folder(folder) is not None, folder
        assert leaked_folder(folder / "000011.png") is not None  # a frame inside it too
        with pytest.raises(ValidationLeakError, match="validation"):
            refuse_validation_frames(folder, "render backgrounds")
    # the same folders as a dataset records them: relative, from another working directory
    assert leaked_folder("../shared/real/kitti_val/image_2") is not None
    assert leaked_folder("data/real/nuscenes_front/label_2") is not None
    assert leaked_folder(SHARED / "real_unlabelled" / "camvid") is None
    assert leaked_folder(tmp_path) is None
    refuse_validation_frames(None, "anything")  # nothing asked: nothing refused


def test_renderer_refuses_validation_backgrounds(tmp_path):
    from training.render.cli import main

    for folder in VALIDATION:
        out = tmp_path / "x.h5"
        assert main(["crops", "--out", str(out), "--count", "4", "--procedural", "2", "--size", "64", "--quiet",
                     "--backgrounds", str(folder)]) == 2
        assert not out.exists()


@pytest.fixture(scope="module")
def clean_crops(tmp_path_factory):
    """A real crops file rendered over a folder of unlabelled photos."""
    from training.render.cli import main

    tmp = tmp_path_factory.mktemp("leak")
    photos = _photos(tmp / "real_unlabelled" / "somecity")
    out = tmp / "crops.h5"
    assert main(["crops", "--out", str(out), "--count", "64", "--procedural", "4", "--size", "64", "--quiet",
                 "--backgrounds", str(photos), "--seed", "5"]) == 0
    return out, photos


def test_datasets_record_their_backgrounds_and_leaky_ones_are_refused(clean_crops, tmp_path):
    from training.pose.train import main as train

    clean, photos = clean_crops
    assert background_folders(clean) == [str(photos)]
    assert refuse_leaky_datasets([clean]) == [str(photos)]
    leaky = tmp_path / "leaky.h5"
    leaky.write_bytes(clean.read_bytes())
    with h5py.File(leaky, "r+") as h5:  # a file rendered over validation frames, as older recipes did
        h5.attrs["backgrounds"] = "../shared/real/nuscenes_front/image_2"
    with pytest.raises(ValidationLeakError, match="nuscenes_front"):
        refuse_leaky_datasets([clean, leaky])
    out = tmp_path / "run"
    assert train(["--train", str(leaky), "--out", str(out), "--epochs", "1", "--batch", "32", "--workers", "0",
                  "--quiet"]) == 2
    assert not (out / "last.pt").exists()
    # a clean run records what it trained on, and the benchmark's leak check finds nothing in it
    assert train(["--train", str(clean), "--out", str(out), "--epochs", "1", "--batch", "32", "--workers", "0",
                  "--limit", "32", "--quiet"]) == 0
    import torch

    meta = torch.load(out / "last.pt", weights_only=True)["metadata"]
    assert meta["train_backgrounds"] == [str(photos)] and leaks_in_metadata(meta) == []


def test_detector_training_refuses_scenes_over_validation_frames(clean_crops, tmp_path):
    from training.detector.train import main

    clean, _ = clean_crops
    leaky = tmp_path / "scenes.h5"
    leaky.write_bytes(clean.read_bytes())
    with h5py.File(leaky, "r+") as h5:
        cfg = json.loads(h5.attrs["render_config"])
        cfg["background_labels"] = "data/real/nuscenes_front/label_2"
        h5.attrs["render_config"] = json.dumps(cfg)
    assert main([str(leaky), "--out", str(tmp_path / "det"), "--epochs", "1"]) == 2
    assert not (tmp_path / "det" / "train").exists()


def test_a_validation_folder_among_several_background_label_folders_is_refused(clean_crops, tmp_path):
    clean, photos = clean_crops
    for labels, leaks in ((["data/det/pseudo/label_2", "data/det/pseudo_v/label_2"], False),
                          (["data/det/pseudo/label_2", "data/real/kitti_val/label_2"], True)):
        two = tmp_path / f"two_{leaks}.h5"
        two.write_bytes(clean.read_bytes())
        with h5py.File(two, "r+") as h5:  # carpose-render --background-labels A B records both folders
            cfg = json.loads(h5.attrs["render_config"])
            cfg["background_labels"] = labels
            h5.attrs["render_config"] = json.dumps(cfg)
        assert background_folders(two) == [str(photos), *labels]
        if leaks:
            with pytest.raises(ValidationLeakError, match="kitti_val"):
                refuse_leaky_datasets([two])
        else:
            assert refuse_leaky_datasets([two]) == sorted([str(photos), *labels])
    with pytest.raises(ValidationLeakError, match="nuscenes_front"):
        BackgroundSource.from_folder(photos, labels=[tmp_path, "data/real/nuscenes_front/label_2"])


def test_adapt_bn_refuses_validation_images(pose_run, tmp_path, capsys):
    from training.pose.adapt_bn import main as adapt

    for folder in VALIDATION:
        out = tmp_path / "bn.pt"
        assert adapt([str(pose_run / "best.pt"), "--images", str(folder), "--detector", "models/carpose_det.onnx",
                      "--out", str(out)]) == 2
        assert "validation" in capsys.readouterr().err and not out.exists()


def test_leaks_in_a_models_metadata_are_named():
    meta = {"bn_adapted": {"images": "../shared/real/nuscenes_front/image_2", "boxes": "detector models/d.onnx"},
            "train_backgrounds": ["../shared/real_unlabelled", "/x/shared/real/kitti_val/image_2"]}
    leaks = leaks_in_metadata(meta)
    assert len(leaks) == 2 and "BatchNorm" in leaks[0] and "kitti_val" in leaks[1]
    assert leaks_in_metadata({"bn_adapted": {"images": "../shared/real_unlabelled", "boxes": "detector d.onnx"}}) == []
