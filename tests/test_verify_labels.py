"""carpose-verify-labels: the teacher's boxes on unlabelled photos, judged tile by tile, become labels.

Real parts: rendered scene frames stand in for unlabelled photos, the shipped detector is the teacher
(carpose-pseudo-label), the sheets are real PNG files and the verdicts real CSV files."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from carpose.pipeline import DEFAULT_DET_MODEL
from training.detector.pseudo_label import GREY, TeacherConfig, pseudo_label, read_teacher_file
from training.detector.verify_labels import apply_verdicts, main, read_verdicts, tile


@pytest.fixture(scope="module")
def pseudo_dir(unlabelled_photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("verify") / "pseudo"
    cfg = TeacherConfig(weights=str(DEFAULT_DET_MODEL), imgsz=320, augment=False, ignore=0.05, keep=0.5)
    pseudo_label(unlabelled_photos, out, cfg, progress=False)
    return out


def _boxes(verify):
    return list(csv.DictReader(open(verify / "boxes.csv")))


def test_tile_draws_the_numbered_box_on_its_surroundings():
    img = np.full((300, 400, 3), 90, np.uint8)
    t = tile(img, (100, 100, 140, 120), 7, side=160)
    assert t.shape == (160, 160, 3)
    green = (t[..., 1] == 255) & (t[..., 0] == 0) & (t[..., 2] == 0)
    ys, xs = np.nonzero(green)
    assert xs.max() - xs.min() > 40  # a 40 px box is drawn enlarged
    assert (t[:20, :30] == 255).all(axis=2).any()  # the number, in white, top left


def test_sheets_number_every_box_and_apply_turns_verdicts_into_labels(pseudo_dir, tmp_path):
    verify = tmp_path / "verify"
    assert main(["sheets", str(pseudo_dir), "--out", str(verify), "--min-score", "0.05", "--min-px", "8",
                 "--per-sheet", "6", "--quiet"]) == 0
    rows = _boxes(verify)
    assert len(rows) >= 3, "the shipped detector should box some rendered cars"
    sheets = sorted((verify / "sheets").glob("sheet_*.png"))
    assert len(sheets) == -(-len(rows) // 6)
    assert cv2.imread(str(sheets[0])).shape == (160, 6 * 160, 3)
    assert [int(r["id"]) for r in rows] == list(range(len(rows)))

    # judge: the first box not a car, the second loose, the rest cars; no verdict for one box
    verdicts = {int(rows[0]["id"]): "not", int(rows[1]["id"]): "loose"}
    verdicts.update({int(r["id"]): "car" for r in rows[2:-1]})
    (verify / "verdicts" / "me.csv").write_text("id,verdict\n" + "".join(f"{i},{v}\n" for i, v in verdicts.items()))
    out = tmp_path / "verified"
    assert main(["apply", str(pseudo_dir), "--verdicts", str(verify), "--out", str(out), "--quiet"]) == 0
    info = json.loads((out / "pseudo.json").read_text())
    assert info["verified"]["judged"] == info["verified"]["matched"] == len(verdicts)
    assert info["verified"]["verdicts"]["not"] == 1 and info["verified"]["verdicts"]["loose"] == 1
    assert info["photos_folder"] == json.loads((pseudo_dir / "pseudo.json").read_text())["photos_folder"]

    def labels_of(stem):
        img = cv2.imread(str(out / "yolo/images/train" / f"{stem}.jpg"))
        h, w = img.shape[:2]
        lines = (out / "yolo/labels/train" / f"{stem}.txt").read_text().split()
        xywh = np.array(lines, float).reshape(-1, 5)[:, 1:] * [w, h, w, h]
        return img, np.c_[xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2]

    for r in rows:
        box = np.array([float(r[k]) for k in ("x1", "y1", "x2", "y2")])
        img, labels = labels_of(r["stem"])
        labelled = len(labels) and np.abs(labels - box).max(axis=1).min() < 1.0
        x1, y1, x2, y2 = box.astype(int)
        inside = img[y1 + 1:y2 - 1, x1 + 1:x2 - 1].astype(int)
        greyed = inside.size and (np.abs(inside - GREY) <= 3).all(axis=2).mean() > 0.9
        v = verdicts.get(int(r["id"]))
        if v == "car":
            assert labelled and not greyed
        elif v == "not":
            assert not labelled  # background: not a label (and only greyed where another box overlaps it)
        elif v == "loose":
            assert not labelled and greyed
    # the box with no verdict keeps the teacher's bands: a label from keep (0.5) up, else greyed
    last = rows[-1]
    _, labels = labels_of(last["stem"])
    box = np.array([float(last[k]) for k in ("x1", "y1", "x2", "y2")])
    assert bool(len(labels) and np.abs(labels - box).max(axis=1).min() < 1.0) == (float(last["score"]) >= 0.5)
    # the renderer's inpainting list drops the boxes judged background
    xyxy, _ = read_teacher_file(out / "label_2" / f"{rows[0]['stem']}.txt")
    assert not (np.abs(xyxy - np.array([float(rows[0][k]) for k in ("x1", "y1", "x2", "y2")])).max(axis=1) < 0.05).any()


def test_bad_verdicts_are_refused_with_the_line(pseudo_dir, tmp_path):
    verify = tmp_path / "verify"
    main(["sheets", str(pseudo_dir), "--out", str(verify), "--min-score", "0.05", "--min-px", "8", "--quiet"])
    f = verify / "verdicts" / "a.csv"
    f.write_text("0,van\n")
    with pytest.raises(ValueError, match=r"a.csv:1: verdict 'van'"):
        read_verdicts(verify)
    f.write_text("999999,car\n")
    with pytest.raises(ValueError, match="not in"):
        read_verdicts(verify)
    f.write_text("0,car\n")
    (verify / "verdicts" / "b.csv").write_text("0,not\n")
    with pytest.raises(ValueError, match="judged both"):
        read_verdicts(verify)
    assert main(["apply", str(pseudo_dir), "--verdicts", str(verify), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    (verify / "verdicts" / "b.csv").write_text("0,car\n")  # the same verdict twice is fine
    assert read_verdicts(verify) == {0: "car"}
    info = apply_verdicts(pseudo_dir, verify, tmp_path / "o2", progress=False)
    assert info["verified"]["verdicts"]["car"] == 1


def test_verdicts_for_boxes_the_teacher_no_longer_draws_are_left_out_and_said(pseudo_dir, tmp_path, capsys):
    import shutil

    verify = tmp_path / "verify"
    main(["sheets", str(pseudo_dir), "--out", str(verify), "--min-score", "0.05", "--min-px", "8", "--quiet"])
    rows = _boxes(verify)
    (verify / "verdicts" / "a.csv").write_text("".join(f"{r['id']},car\n" for r in rows))
    moved = tmp_path / "pseudo_again"  # as if the teacher were run again and drew its boxes 5 px away
    shutil.copytree(pseudo_dir, moved)
    f = moved / "teacher_2" / f"{rows[0]['stem']}.txt"
    lines = [ln.split() for ln in f.read_text().splitlines() if ln.strip()]
    for p in lines:
        p[4:8] = [f"{float(v) + 5:.2f}" for v in p[4:8]]
    f.write_text("".join(" ".join(p) + "\n" for p in lines))
    info = apply_verdicts(moved, verify, tmp_path / "out", progress=False)
    n_moved = sum(r["stem"] == rows[0]["stem"] for r in rows)
    assert info["verified"]["matched"] == info["verified"]["verdicts"]["car"] == len(rows) - n_moved
    assert f"{n_moved} of {len(rows)} judged boxes are not among" in capsys.readouterr().err
