"""Real labelled frames as a bag: ``carpose-make-bag --from-kitti`` (carpose.eval.kitti_bag).

A KITTI folder is written in tmp_path (real-sized PNG/JPEG frames, label lines of every kind, calib
files) and the bag is read back with the same reader carpose-bag-eval uses; the last test makes a
bag of three official KITTI frames from ../shared and scores it offline with the shipped models.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED

from carpose.convention import azimuth_from_kitti_alpha
from carpose.ros.bag import CAMERA_INFO_TOPIC, GT_TOPIC, START_NS, BagReader, typestore
from training.render.drive_bag import main as make_bag_main

REPO = Path(__file__).resolve().parents[1]
SHIPPED_POSE = REPO / "models" / "carpose_pose.onnx"
SHIPPED_DET = REPO / "models" / "carpose_det.onnx"

# KITTI's own P2 of frame 000011 (fx 721.5, offset of image_2 from the reference camera ~6 cm).
P2_KITTI = [721.5377, 0, 609.5593, 44.85728, 0, 721.5377, 172.854, 0.2163791, 0, 0, 1, 0.002745884]
P2_OTHER = [707.0493, 0, 604.0814, 45.75831, 0, 707.0493, 180.5066, -0.3454157, 0, 0, 1, 0.004981016]
# frame 0: every kind of line; types/heights decide what counts (default Car,Van >= 25 px)
LABELS_0 = [
    "Car 0.00 0 1.74 444.29 171.04 504.95 225.82 1.86 1.57 3.83 -4.95 1.83 26.64 1.55",  # counted, 3-D
    "Van 0.00 1 -1.57 600.00 150.00 700.00 250.00 2.00 1.90 4.50 2.00 1.50 15.00 -1.44",  # counted (Car,Van)
    "Pedestrian 0.00 0 0.30 883.68 144.15 937.35 259.01 1.90 0.42 1.04 5.06 1.43 12.42 0.68",  # not a car
    "DontCare -1 -1 -10 0.00 226.06 88.58 373.00 -1 -1 -1 -1000 -1000 -1000 -10",  # ignore, no azimuth
    "Car 0.00 0 -2.80 1000.00 180.00 1030.00 200.00 1.50 1.60 3.90 20.00 1.60 60.00 -2.48",  # 20 px: ignore
    "Car 0.30 0 0.50 800.00 100.00 900.00 200.00 -1 -1 -1 -1000 -1000 -1000 -10 1",  # hand label: no 3-D
]
LABELS_1 = ["Car 0.00 0 -0.20 100.00 120.00 300.00 260.00 1.50 1.60 4.00 -6.00 1.70 9.00 -0.80"]


def _image(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _kitti(root: Path, calib: bool = True) -> Path:
    """Three frames: 1242x375 PNG, 1224x370 JPEG (KITTI has both sizes), 1242x375 PNG with no car."""
    for d in ("image_2", "label_2", *(["calib"] if calib else [])):
        (root / d).mkdir(parents=True)
    frames = [("000000", ".png", (375, 1242), LABELS_0, P2_KITTI), ("000001", ".jpg", (370, 1224), LABELS_1, P2_OTHER),
              ("000002", ".png", (375, 1242), [], P2_KITTI)]
    for k, (name, ext, (h, w), labels, p2) in enumerate(frames):
        assert cv2.imwrite(str(root / "image_2" / f"{name}{ext}"), _image(h, w, k))
        (root / "label_2" / f"{name}.txt").write_text("".join(f"{line}\n" for line in labels))
        if calib:
            p2_line = "P2: " + " ".join(f"{v:.9e}" for v in p2)
            (root / "calib" / f"{name}.txt").write_text(f"P0: {' 0' * 12}\n{p2_line}\nR0_rect: 1 0 0 0 1 0 0 0 1\n")
    return root


def _camera_infos(bag: Path) -> list:
    from rosbags.rosbag2 import Reader

    with Reader(bag) as rd:
        conns = [c for c in rd.connections if c.topic == CAMERA_INFO_TOPIC]
        return [typestore().deserialize_cdr(raw, c.msgtype) for c, _, raw in rd.messages(connections=conns)]


def test_kitti_folder_becomes_a_bag_with_images_intrinsics_and_ground_truth(tmp_path):
    root = _kitti(tmp_path / "kitti")
    bag = tmp_path / "bag"
    assert make_bag_main(["--from-kitti", str(root), str(bag), "--fps", "5", "--quiet"]) == 0
    r = BagReader(bag)
    assert (r.num_frames, r.gt_topic) == (3, GT_TOPIC)
    frames = list(r.frames())
    assert [f.stamp_ns for f in frames] == [START_NS + i * 200_000_000 for i in range(3)]  # name order, 5 fps
    for f, name in zip(frames, ("000000.png", "000001.jpg", "000002.png"), strict=True):
        assert np.array_equal(f.image, cv2.imread(str(root / "image_2" / name)))  # each frame at its own size
    assert [f.image.shape[:2] for f in frames] == [(375, 1242), (370, 1224), (375, 1242)]

    infos = _camera_infos(bag)
    assert [(m.width, m.height) for m in infos] == [(1242, 375), (1224, 370), (1242, 375)]
    for m, p2 in zip(infos, (P2_KITTI, P2_OTHER, P2_KITTI), strict=True):
        assert np.allclose(np.reshape(m.k, (3, 3)), np.reshape(p2, (3, 4))[:, :3])

    gt0 = frames[0].gt  # label order; the pedestrian is left out
    assert [g.ignore for g in gt0] == [False, False, True, True, False]
    alphas = [1.74, -1.57, None, -2.80, 0.50]
    for g, a in zip(gt0, alphas, strict=True):
        if a is None:
            assert math.isnan(g.azimuth_deg)  # DontCare has no alpha: no azimuth invented
        else:
            assert g.azimuth_deg == pytest.approx(float(azimuth_from_kitti_alpha(a)), abs=1e-4)
        assert g.track_id == -1
    assert np.allclose(gt0[0].box_xyxy, [444.29, 171.04, 504.95, 225.82], atol=1e-3)
    # box centre in the image_2 camera: bottom centre lifted by h/2, plus P2's offset (K^-1 P2[:, 3])
    offset = np.linalg.solve(np.reshape(P2_KITTI, (3, 4))[:, :3], np.reshape(P2_KITTI, (3, 4))[:, 3])
    assert np.allclose(gt0[0].position, np.array([-4.95, 1.83 - 1.86 / 2, 26.64]) + offset, atol=1e-6)
    assert abs(offset[0] - 0.0598) < 1e-3 and gt0[0].rotation_y == pytest.approx(1.55, abs=1e-6)
    assert gt0[4].position is None and math.isnan(gt0[4].rotation_y) and math.isnan(gt0[4].distance_m)
    assert [g.ignore for g in frames[1].gt] == [False] and frames[2].gt == []  # an empty label: no cars

    info = json.loads(r.custom_data["carpose.kitti"])
    assert (info["frames"], info["names"], info["types"]) == (3, ["000000", "000001", "000002"], ["Car", "Van"])
    assert info["folder"] == str(root.resolve()) and info["min_height_px"] == 25.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag", "kitti"]  # no staging dir left


def test_types_min_height_and_no_calib(tmp_path):
    root = _kitti(tmp_path / "kitti", calib=False)
    bag = tmp_path / "bag"
    assert make_bag_main(["--from-kitti", str(root), str(bag), "--types", "Car", "--min-height", "15",
                          "--frames", "2", "--storage", "sqlite3", "--quiet"]) == 0
    r = BagReader(bag)
    assert r.num_frames == 2 and CAMERA_INFO_TOPIC not in r.topics  # no calib: no intrinsics invented
    gt0 = next(r.frames()).gt
    # Car only: the van becomes an ignore region; 15 px: the 20 px car counts
    assert [g.ignore for g in gt0] == [False, True, True, False, False]
    # without calib the position stays in the reference camera (no offset known)
    assert np.allclose(gt0[0].position, [-4.95, 1.83 - 0.93, 26.64], atol=1e-6)
    assert json.loads(r.custom_data["carpose.kitti"])["camera_info"] == "none (no calib)"


def test_bad_input_gets_an_error_naming_the_file(tmp_path, capsys):
    def fails(root: Path, *extra: str) -> str:
        out = tmp_path / "bag"
        assert make_bag_main(["--from-kitti", str(root), str(out), "--quiet", *extra]) == 2
        assert not out.exists() and not (tmp_path / "bag.partial").exists()
        return capsys.readouterr().err

    (tmp_path / "empty").mkdir()
    assert "needs label_2/" in fails(tmp_path / "empty")

    root = _kitti(tmp_path / "a")
    (root / "image_2" / "000001.jpg").write_bytes(b"not a jpeg")
    assert f"{root / 'image_2' / '000001.jpg'}: unreadable image" in fails(root)

    root = _kitti(tmp_path / "b")
    (root / "label_2" / "000001.txt").write_text("Car 0.00 0 -0.20 100 120 300 260\n")
    assert f"{root / 'label_2' / '000001.txt'}:1: KITTI label lines have 15" in fails(root)

    root = _kitti(tmp_path / "c")
    (root / "calib" / "000002.txt").write_text("P0: 1 2 3\n")
    assert f"{root / 'calib' / '000002.txt'}: no 'P2:' line" in fails(root)
    (root / "calib" / "000002.txt").unlink()
    assert f"{root / 'calib' / '000002.txt'} is missing" in fails(root)

    root = _kitti(tmp_path / "d")
    (root / "label_2" / "000001.txt").write_text("Car 0.00 0 -10 100 120 300 260 -1 -1 -1 -1000 -1000 -1000 -10\n")
    assert "is counted but has no alpha" in fails(root)

    assert "does not exist" in fails(_kitti(tmp_path / "e"), "--images", str(tmp_path / "nowhere"))


@pytest.mark.skipif(not SHIPPED_POSE.is_file(), reason="needs the shipped models/carpose_pose.onnx")
def test_cars_without_a_3d_label_are_scored_in_an_unknown_distance_row(tmp_path):
    """The pose CNN alone on the ground-truth boxes (offline): every counted car is matched, the
    hand-label-style car (-1000 location) sits in the 'unknown' distance row, no distance invented."""
    from carpose.eval.bag_eval import EvalConfig, evaluate

    bag = tmp_path / "bag"
    assert make_bag_main(["--from-kitti", str(_kitti(tmp_path / "kitti")), str(bag), "--quiet"]) == 0
    r = evaluate(EvalConfig(str(bag), mode="offline", det_model="gt", out=str(tmp_path / "eval"), video=False,
                            progress=False))
    s = r["scores"]["offline"]
    assert (s["detection"]["tp"], s["detection"]["fn"], s["azimuth"]["n"]) == (4, 0, 4)
    rows = {(b["from_m"], b["to_m"]): (b["gt"], b["n"]) for b in s["by_distance"]}
    assert rows[(None, None)] == (1, 1)  # the -1000 car
    assert rows[(10.0, 20.0)] == (2, 2) and rows[(20.0, 30.0)] == (1, 1)  # the van at 15 m, frame 1's at 11 m
    assert sum(gt for gt, _ in rows.values()) == 4
    assert "| unknown (no 3-D label) | 1 / 100.0% / 1 /" in r["report_md"].read_text()


@pytest.mark.skipif(not (SHIPPED_POSE.is_file() and SHIPPED_DET.is_file()),
                    reason="needs the shipped models/carpose_pose.onnx and models/carpose_det.onnx")
def test_official_kitti_frames_scored_offline_by_bag_eval(tmp_path):
    """Three official KITTI frames through carpose-bag-eval's evaluate (offline, shipped models):
    the ground truth it counts is what the labels say, and every car has a distance."""
    root = SHARED / "real" / "kitti_val"
    if not (root / "label_2").is_dir():
        pytest.skip(f"no KITTI frames at {root} (../shared is optional)")
    from carpose.eval.bag_eval import EvalConfig, evaluate

    bag = tmp_path / "kitti_bag"
    assert make_bag_main(["--from-kitti", str(root), str(bag), "--frames", "3", "--quiet"]) == 0
    names = json.loads(BagReader(bag).custom_data["carpose.kitti"])["names"]
    assert names == sorted(p.stem for p in (root / "label_2").glob("*.txt"))[:3]
    # counted by hand from the label files: Car/Van at least 25 px tall
    n_gt = 0
    for name in names:
        for line in (root / "label_2" / f"{name}.txt").read_text().splitlines():
            f = line.split()
            n_gt += f[0] in ("Car", "Van") and float(f[7]) - float(f[5]) >= 25
    assert n_gt > 0
    r = evaluate(EvalConfig(str(bag), mode="offline", out=str(tmp_path / "eval"), video=False, progress=False))
    s = r["scores"]["offline"]
    assert s["processed"] == 3 and s["detection"]["tp"] + s["detection"]["fn"] == n_gt
    assert sum(b["gt"] for b in s["by_distance"] if b["from_m"] is not None) == n_gt  # KITTI has 3-D boxes
