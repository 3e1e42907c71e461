"""Evaluation on labelled KITTI folders whose images live elsewhere (the hand-labelled real set):
the sure flag, sector and subset tables, the worst-errors sheet, and both CLIs end to end.

Real parts: scenes rendered by the real renderer and exported to KITTI, the shipped ONNX models run
by ONNX Runtime, real PNGs read back. The tests at the end run on the real frames and their hand
labels and skip when ../shared or the labels are absent.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO, SHARED, load_script

from carpose.convention import kitti_alpha_from_azimuth
from carpose.eval.azimuth_report import azimuth_summary, format_azimuth_summary
from carpose.eval.error_sheet import PRED_COLOR, TRUE_COLOR, ErrorCase, worst_errors_sheet
from carpose.eval.kitti import kitti_pairs, parse_kitti_label
from carpose.eval.scoring import SECTOR_NAMES, azimuth_error_stats, sector_stats
from carpose.pipeline import DEFAULT_DET_MODEL, DEFAULT_POSE_MODEL

SHIPPED = DEFAULT_POSE_MODEL.exists() and DEFAULT_DET_MODEL.exists()
needs_shipped = pytest.mark.skipif(not SHIPPED, reason="shipped models (models/*.onnx) not present")
REAL_LABELS = REPO / "data" / "real" / "nuscenes_front" / "label_2"
REAL_IMAGES = SHARED / "real" / "nuscenes_front" / "image_2"


def _line(box: tuple[float, float, float, float], az: float, sure: int | None = None, occ: int = 0,
          trunc: float = 0.0) -> str:
    alpha = float(kitti_alpha_from_azimuth(az))
    tail = "" if sure is None else f" {sure}"
    return f"Car {trunc:.2f} {occ} {alpha:.4f} {' '.join(f'{v:.1f}' for v in box)} -1 -1 -1 -1000 -1000 -1000 -10{tail}"


# --- labels ------------------------------------------------------------------------------------------

def test_sure_flag_is_the_16th_field_and_absent_means_sure(tmp_path):
    f = tmp_path / "000000.txt"
    f.write_text("\n".join([_line((10, 10, 50, 40), 0.0), _line((60, 10, 90, 40), 90.0, 1),
                            _line((100, 10, 140, 40), 180.0, 0)]) + "\n")
    objs = parse_kitti_label(f)
    assert [o.sure for o in objs] == [True, True, False]
    assert [round(o.azimuth_deg) % 360 for o in objs] == [0, 90, 180]
    assert objs[0].height_px == pytest.approx(30.0)
    f.write_text(_line((10, 10, 50, 40), 0.0) + " maybe\n")
    with pytest.raises(ValueError, match="16th"):
        parse_kitti_label(f)


def test_label_tool_writes_what_kitti_reads(tmp_path):
    tool = load_script("scripts/label_tool.py")
    simple = tmp_path / "simple.txt"
    simple.write_text("100 200 180 260 45 0 0.0 1\n300 200 340 230 270 1 0.2 0  # a far car, not sure\n")
    assert tool.write_labels(simple, tmp_path / "label_2" / "000007.txt") == 2
    objs = parse_kitti_label(tmp_path / "label_2" / "000007.txt")
    assert [o.sure for o in objs] == [True, False]
    assert objs[1].occluded == 1 and objs[1].truncated == pytest.approx(0.2)
    assert abs(objs[1].azimuth_deg - 270.0) < 0.01 and np.allclose(objs[0].box_xyxy, [100, 200, 180, 260])


def test_kitti_pairs_takes_images_from_another_folder(tmp_path):
    (tmp_path / "set" / "label_2").mkdir(parents=True)
    (tmp_path / "pics").mkdir()
    for stem in ("000001", "000002"):
        (tmp_path / "set" / "label_2" / f"{stem}.txt").write_text(_line((1, 1, 20, 20), 0.0, 1) + "\n")
    cv2.imwrite(str(tmp_path / "pics" / "000001.png"), np.zeros((30, 30, 3), np.uint8))
    pairs = kitti_pairs(tmp_path / "set", tmp_path / "pics")
    assert pairs == [(tmp_path / "pics" / "000001.png", tmp_path / "set" / "label_2" / "000001.txt")]
    with pytest.raises(FileNotFoundError, match="--images"):  # no image_2 and no --images: say what to do
        kitti_pairs(tmp_path / "set")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        kitti_pairs(tmp_path / "set", tmp_path / "nowhere")


# --- sectors and subsets -----------------------------------------------------------------------------

def test_sectors_follow_the_true_azimuth_with_bin_0_centred_on_front():
    true = np.array([0.0, 22.4, 22.5, 337.5, 337.4, 180.0, 200.0, 90.0])
    err = np.array([5.0, 10.0, 170.0, 20.0, 40.0, 160.0, 2.0, 0.0])
    rows = {r["sector"]: r for r in sector_stats(err, true)}
    assert [r for r in rows] == list(SECTOR_NAMES)
    assert rows["front"]["n"] == 3  # 0, 22.4 and 337.5 (the lower edge belongs to the sector)
    assert rows["front"]["med_err_deg"] == pytest.approx(10.0) and rows["front"]["flips"] == 0
    assert rows["front-left"]["n"] == 1 and rows["front-left"]["flips"] == 1  # 22.5 starts front-left
    assert rows["front-right"]["n"] == 1 and rows["front-right"]["acc_30"] == 0.0
    assert rows["rear"]["n"] == 2 and rows["rear"]["flips"] == 1 and rows["rear"]["acc_30"] == 0.5
    assert rows["left"]["n"] == 1 and rows["right"]["n"] == 0 and rows["right"]["med_err_deg"] is None
    assert rows["front"]["from_deg"] == 337.5 and rows["front"]["to_deg"] == 22.5
    assert sum(r["n"] for r in rows.values()) == len(err)


def test_flips_are_errors_above_150_deg():
    s = azimuth_error_stats(np.array([150.0, 150.1, 179.0, 3.0]))
    assert s["flips"] == 2 and s["flip_rate"] == pytest.approx(0.5)
    assert azimuth_error_stats(np.zeros(0))["flips"] == 0


def test_summary_subsets_split_by_sure_and_height():
    err = np.array([5.0, 175.0, 20.0, 60.0])
    true = np.array([0.0, 180.0, 90.0, 270.0])
    sure = np.array([True, False, True, True])
    height = np.array([80.0, 100.0, 12.0, 30.0])
    s = azimuth_summary(err, true, sure, height, min_height=30)
    assert list(s) == ["all", "sure", "all >=30px", "sure >=30px"]
    assert [s[k]["n"] for k in s] == [4, 3, 3, 2]
    assert s["all"]["flips"] == 1 and s["sure"]["flips"] == 0  # the flip was an unsure label
    assert s["sure >=30px"]["med_err_deg"] == pytest.approx(32.5)
    assert sum(r["n"] for r in s["sure"]["sectors"]) == 3
    text = format_azimuth_summary(s, "t")
    assert "| sure >=30px | 2 | 32.5 | 50% | 50% | 0 |" in text
    assert "| rear 157.5-202.5 | 1 / 175.0 / 0% / 1 | 0 | 1 / 175.0 / 0% / 1 | 0 |" in text
    # no flags, no heights (an HDF5 set): only "all"
    assert list(azimuth_summary(err, true)) == ["all"]


# --- worst-errors sheet -------------------------------------------------------------------------------

def test_worst_errors_sheet_orders_by_error_and_draws_both_arrows(tmp_path):
    img = np.full((300, 400, 3), 120, np.uint8)
    cv2.rectangle(img, (100, 120), (220, 190), (200, 30, 30), -1)  # a "car"
    path = tmp_path / "f.png"
    cv2.imwrite(str(path), img)
    box = np.array([100.0, 120.0, 220.0, 190.0])
    cases = [ErrorCase(path, box, 0.0, 10.0, "f#0"), ErrorCase(path, box, 90.0, 270.0, "f#1", sure=False),
             ErrorCase(path, box + 5, 180.0, 150.0, "f#2", confidence=0.4, pred_box_xyxy=box)]
    sheet = worst_errors_sheet(cases, count=2, cols=2, size=160)
    assert sheet.shape == (40 + 160, 320, 3)  # legend + one row of the 2 worst
    first = sheet[40:200, :160]  # the flip (90 vs 270): a green and a red arrow, left and right of centre
    green = np.all(np.abs(first.astype(int) - TRUE_COLOR) < 40, axis=2)
    red = np.all(np.abs(first.astype(int) - PRED_COLOR) < 40, axis=2)
    gy, gx = np.nonzero(green[30:120])  # below the dial, above the text bar
    ry, rx = np.nonzero(red[30:120])
    assert len(gx) > 20 and len(rx) > 20
    # azimuth 90 points left in the image, 270 right (carpose.draw): the tips lie on those sides
    assert gx.min() < 50 and rx.max() > 110
    with pytest.raises(ValueError):
        worst_errors_sheet([])


# --- both CLIs on a rendered KITTI folder with the images elsewhere ------------------------------------

@pytest.fixture(scope="module")
def kitti_set(tmp_path_factory) -> tuple[Path, Path]:
    """4 rendered 640x480 scenes of held-out procedural cars as KITTI labels (every other car marked
    unsure) in one folder and their PNGs in another, like data/real + ../shared."""
    from training.dataset.export import export_kitti
    from training.render.cli import main

    tmp = tmp_path_factory.mktemp("realish")
    h5 = tmp / "scenes.h5"
    assert main(["scenes", "--out", str(h5), "--count", "4", "--procedural", "200", "--split", "heldout",
                 "--quiet", "--seed", "78", "--max-cars", "4"]) == 0
    export_kitti(h5, tmp / "export")
    root = tmp / "set"
    (root / "label_2").mkdir(parents=True)
    k = 0
    for lab in sorted((tmp / "export" / "label_2").glob("*.txt")):
        lines = []
        for line in lab.read_text().splitlines():
            lines.append(f"{line} {k % 2}")
            k += 1
        (root / "label_2" / lab.name).write_text("".join(f"{x}\n" for x in lines))
    shutil.move(tmp / "export" / "image_2", tmp / "images")
    return root, tmp / "images"


@needs_shipped
def test_carpose_eval_reads_a_real_style_set_with_one_command(kitti_set, tmp_path):
    from training.pose.evaluate import main

    root, images = kitti_set
    objs = [o for lab in sorted((root / "label_2").glob("*.txt")) for o in parse_kitti_label(lab)]
    assert main([str(DEFAULT_POSE_MODEL), str(root), "--images", str(images), "--min-height", "0",
                 "--max-truncation", "1", "--max-occlusion", "3", "--out", str(tmp_path / "ev"), "--quiet"]) == 0
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())["set"]
    s = m["subsets"]
    assert m["n"] == s["all"]["n"] == len(objs) > 4
    assert s["sure"]["n"] == sum(o.sure for o in objs) < len(objs)
    assert s["all >=30px"]["n"] == sum(o.height_px >= 30 for o in objs)
    for sub in s.values():
        assert sum(r["n"] for r in sub["sectors"]) == sub["n"]
        assert sum(r["flips"] for r in sub["sectors"]) == sub["flips"]
    assert len(m["per_sector"]) == 8
    assert s["all >=30px"]["med_err_deg"] < 25  # held-out rendered cars: the shipped model knows renders
    sheet = cv2.imread(str(tmp_path / "ev" / "set_worst.png"))
    assert sheet is not None and sheet.shape[1] == 6 * 200
    # without --images the folder has no image_2: a clear error, exit code 2
    assert main([str(DEFAULT_POSE_MODEL), str(root), "--quiet"]) == 2


@needs_shipped
def test_carpose_det_eval_reads_a_real_style_set_with_one_command(kitti_set, tmp_path, capsys):
    from carpose.eval.det_eval import main

    root, images = kitti_set
    objs = [o for lab in sorted((root / "label_2").glob("*.txt")) for o in parse_kitti_label(lab)]
    assert main([str(root), "--images", str(images), "--out", str(tmp_path / "det"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "| >= 40 px |" in out and "recall by box height" in out and "per 45-deg sector" in out
    assert "by view sector of the true azimuth" in out and "| cut by the border |" in out
    s = json.loads((tmp_path / "det" / "det_eval.json").read_text())
    assert s["frames"] == 4
    assert s["tp"] + s["fn"] == sum(o.height_px >= 15 for o in objs)
    assert s["tall"]["tp"] + s["tall"]["fn"] == sum(o.height_px >= 40 for o in objs)
    assert sum(b["gt"] for b in s["recall_by_height"]) == len(objs)
    view = s["recall_by_view"]
    assert sum(r["gt"] for r in view["sectors"]) == s["tall"]["tp"] + s["tall"]["fn"]
    assert view["all"]["found"] == s["tall"]["tp"]
    assert s["ap50"] > 0.3 and s["tp"] > 0
    az = s["azimuth_on_matched"]
    assert az["all"]["n"] == s["tp"] and az["sure"]["n"] <= s["tp"]
    for name in ("det_pr.png", "det_worst.png", "det_frames.png"):
        assert cv2.imread(str(tmp_path / "det" / name)) is not None
    assert s["detect_ms"]["median"] > 0 and s["curve"]["ap"] == pytest.approx(s["ap50"])
    # a frame range, with the first run's curves drawn as the "before"
    assert main([str(root), "--images", str(images), "--frames", "1:3", "--out", str(tmp_path / "det2"),
                 "--baseline", str(tmp_path / "det" / "det_eval.json"), "--quiet"]) == 0
    s2 = json.loads((tmp_path / "det2" / "det_eval.json").read_text())
    assert s2["frames"] == 2 and s2["tp"] + s2["fn"] < s["tp"] + s["fn"]
    assert main([str(root), "--images", str(images), "--frames", "9:", "--quiet"]) == 2  # selects nothing


# --- the real set (skips without ../shared or the hand labels) -----------------------------------------

@pytest.fixture(scope="module")
def real_set() -> Path:
    if not any(REAL_IMAGES.glob("*.png")):
        pytest.skip(f"no real frames at {REAL_IMAGES} (../shared is optional)")
    if not any(REAL_LABELS.glob("*.txt")):
        pytest.skip(f"no hand labels in {REAL_LABELS}")
    return REAL_LABELS.parent


def test_real_labels_parse_and_have_their_frames(real_set):
    labs = sorted((real_set / "label_2").glob("*.txt"))
    assert len(kitti_pairs(real_set, REAL_IMAGES)) == len(labs)  # every label has its frame
    for lab in labs:
        for o in parse_kitti_label(lab):
            assert o.type == "Car"
            x1, y1, x2, y2 = o.box_xyxy
            assert 0 <= x1 < x2 <= 1600 and 0 <= y1 < y2 <= 900, f"{lab}: box {o.box_xyxy}"
            assert o.occluded in (0, 1, 2) and 0.0 <= o.truncated <= 1.0


@needs_shipped
def test_carpose_eval_on_the_real_set(real_set, tmp_path):
    from training.pose.evaluate import main

    objs = [o for lab in sorted((real_set / "label_2").glob("*.txt")) for o in parse_kitti_label(lab)]
    assert main([str(DEFAULT_POSE_MODEL), str(real_set), "--images", str(REAL_IMAGES), "--min-height", "0",
                 "--max-truncation", "1", "--out", str(tmp_path), "--quiet"]) == 0
    s = json.loads((tmp_path / "metrics.json").read_text())["nuscenes_front"]["subsets"]
    assert s["all"]["n"] == len(objs) and s["sure"]["n"] == sum(o.sure for o in objs)
    assert (tmp_path / "nuscenes_front_worst.png").stat().st_size > 0


@needs_shipped
def test_carpose_det_eval_on_real_frames(real_set, tmp_path):
    """Three labelled real frames (1600x900 through the detector takes about a second each)."""
    from carpose.eval.det_eval import main

    sub = tmp_path / "sub"
    (sub / "label_2").mkdir(parents=True)
    labs = sorted((real_set / "label_2").glob("*.txt"))[:3]
    for lab in labs:
        shutil.copy(lab, sub / "label_2" / lab.name)
    assert main([str(sub), "--images", str(REAL_IMAGES), "--out", str(tmp_path / "det"), "--quiet"]) == 0
    s = json.loads((tmp_path / "det" / "det_eval.json").read_text())
    assert s["frames"] == len(labs)
    assert sum(b["gt"] for b in s["recall_by_height"]) == sum(len(parse_kitti_label(x)) for x in labs)


def test_recall_by_view_counts_each_car_once_by_sector_occlusion_and_border():
    from carpose.eval.det_eval import recall_by_view

    r = recall_by_view(found=[True, False, True, False, True], azimuth_deg=[0.0, 359.0, 180.0, 95.0, float("nan")],
                       occluded=[0, 1, 2, 0, 1], at_border=[False, True, False, False, True])
    sectors = {row["cars"]: (row["found"], row["gt"]) for row in r["sectors"]}
    assert sectors["front"] == (1, 2) and sectors["rear"] == (1, 1) and sectors["left"] == (0, 1)
    assert sum(row["gt"] for row in r["sectors"]) == 4  # the car without an azimuth is in no sector
    assert (r["occluded"]["found"], r["occluded"]["gt"]) == (2, 3)
    assert (r["border"]["found"], r["border"]["gt"], r["border"]["recall"]) == (1, 2, 0.5)
    assert r["all"]["gt"] == 5 and r["all"]["found"] == 3 and sectors["right"] == (0, 0)
    assert next(row for row in r["sectors"] if row["cars"] == "right")["recall"] is None
