"""Scenes -> YOLO labels (training.dataset.export): visible or amodal boxes, on a real rendered HDF5 file,
and a scenes file from before amodal boxes existed still read and exported."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from training.dataset.export import export_yolo
from training.dataset.reader import CarposeDataset, validate
from training.detector.train import train_detector


def _label_boxes(folder, stem: str, w: int, h: int) -> np.ndarray:
    path = next(folder.glob(f"labels/*/{stem}.txt"))
    rows = [list(map(float, ln.split()[1:])) for ln in path.read_text().splitlines() if ln.strip()]
    if not rows:
        return np.zeros((0, 4))
    cx, cy, bw, bh = np.asarray(rows).T
    return np.stack([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h], axis=1)


def test_export_writes_the_box_kind_asked_for(pose_scenes, tmp_path):
    vis_dir = export_yolo(pose_scenes, tmp_path / "visible")
    whole_dir = export_yolo(pose_scenes, tmp_path / "amodal", boxes="amodal")
    n_diff = 0
    with CarposeDataset(pose_scenes) as ds:
        h, w = ds.image(0).shape[:2]
        for i in range(len(ds)):
            cars = ds.cars_of_frame(i)
            kept = (cars["visible_fraction"] >= 0.15) & (cars["bbox"][:, 3] - cars["bbox"][:, 1] >= 8)
            np.testing.assert_allclose(_label_boxes(vis_dir, f"{i:06d}", w, h), cars["bbox"][kept], atol=0.05)
            np.testing.assert_allclose(_label_boxes(whole_dir, f"{i:06d}", w, h), cars["bbox_amodal"][kept], atol=0.05)
            gap = np.abs(cars["bbox_amodal"][kept] - cars["bbox"][kept])
            n_diff += int((gap.max(axis=1) > 1).sum()) if len(gap) else 0
    assert n_diff >= 1  # some car in these scenes is partly hidden: the two exports differ
    with pytest.raises(ValueError, match="boxes must be one of"):
        export_yolo(pose_scenes, tmp_path / "bad", boxes="full")


def test_a_scenes_file_without_amodal_boxes_reads_but_refuses_an_amodal_export(pose_scenes, tmp_path):
    old = tmp_path / "old.h5"
    shutil.copy(pose_scenes, old)
    with h5py.File(old, "a") as f:
        del f["cars/bbox_amodal"]
    validate(old)
    with CarposeDataset(old) as ds:
        assert "bbox_amodal" not in ds.labels() and "bbox" in ds.cars_of_frame(0)
    assert any((export_yolo(old, tmp_path / "visible") / "labels").rglob("*.txt"))
    with pytest.raises(ValueError, match="no amodal boxes"):
        export_yolo(old, tmp_path / "amodal", boxes="amodal")


def test_a_run_folder_keeps_one_kind_of_box(pose_scenes, tmp_path):
    """A run folder's exported labels are reused on a rerun; asked for the other kind of box it refuses
    instead of training on the wrong labels."""
    out = tmp_path / "run"
    (out / "yolo_data").mkdir(parents=True)
    (out / "yolo_data" / "exported").write_text(f"{pose_scenes}\n")  # a folder exported before --boxes existed
    with pytest.raises(ValueError, match="holds visible boxes, not amodal"):
        train_detector(pose_scenes, out, epochs=1, imgsz=64, batch=2, workers=0, device="cpu", boxes="amodal")
