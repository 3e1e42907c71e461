"""carpose-benchmark and the figures it is made of: AOS, front/rear confusion, the balanced selection
score, the real-source registry, the detector checkpoint choice, and the CLI end to end (real renders
exported as two KITTI sources, the shipped ONNX models under ONNX Runtime; the KITTI validation frames
when ../shared is there)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED

from carpose.eval.kitti import parse_kitti_label
from carpose.eval.real_sources import resolve_sources, source_from_spec, validation_sources
from carpose.eval.scoring import (
    FrameMatch,
    average_orientation_similarity,
    average_precision,
    balanced_acc30,
    front_rear_confusion,
    match_frame,
    sector_stats,
    with_orientation,
)
from carpose.pipeline import DEFAULT_DET_MODEL, DEFAULT_POSE_MODEL

needs_shipped = pytest.mark.skipif(not (DEFAULT_POSE_MODEL.exists() and DEFAULT_DET_MODEL.exists()),
                                   reason="shipped models (models/*.onnx) not present")


def _frames(pred_az: list[float]) -> list[FrameMatch]:
    """One frame, three cars at 0/90/180 deg, three detections on them plus a lower-scored false positive."""
    gt = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], float)
    pred = np.vstack([gt, [[80, 80, 90, 90]]])
    m = match_frame(pred, np.array([0.9, 0.8, 0.7, 0.6]), gt)
    return [with_orientation(m, np.array([*pred_az, 0.0]), np.array([0.0, 90.0, 180.0]))]


def test_aos_equals_ap_when_right_falls_with_error_and_is_zero_when_every_view_is_flipped():
    right, flipped = _frames([0.0, 90.0, 180.0]), _frames([180.0, 270.0, 0.0])
    ap = average_precision(right)["ap"]
    assert ap == pytest.approx(1.0)
    assert average_orientation_similarity(right) == pytest.approx(ap)
    assert average_orientation_similarity(flipped) == pytest.approx(0.0, abs=1e-12)
    side = average_orientation_similarity(_frames([90.0, 180.0, 270.0]))  # every car off by 90 deg
    assert side == pytest.approx(0.5)
    one_off = average_orientation_similarity(_frames([0.0, 90.0, 0.0]))  # the last true positive flipped
    assert 0.5 < one_off < 1.0
    with pytest.raises(ValueError, match="with_orientation"):
        average_orientation_similarity([match_frame(np.zeros((1, 4)), np.ones(1), np.zeros((1, 4)))])


def test_front_rear_confusion_counts_only_front_and_rear_mixups():
    true = np.array([0, 10, 350, 180, 170, 200, 90])
    pred = np.array([180, 10, 190, 0, 170, 15, 270])  # 2 fronts read as rear, 2 rears read as front
    fr = front_rear_confusion(pred, true)
    assert (fr["front"], fr["front_as_rear"], fr["rear"], fr["rear_as_front"]) == (3, 2, 3, 2)
    assert fr["front_as_rear_rate"] == pytest.approx(2 / 3)
    assert front_rear_confusion(np.array([90.0]), np.array([90.0]))["rear_as_front_rate"] is None


def test_balanced_score_lets_neither_source_nor_the_commonest_view_outvote():
    # source A: 40 fronts all right, 4 rears all wrong; source B: 3 side views, all right
    a = sector_stats(np.r_[np.zeros(40), np.full(4, 170.0)], np.r_[np.zeros(40), np.full(4, 180.0)])
    b = sector_stats(np.zeros(3), np.full(3, 90.0))
    assert balanced_acc30([a], min_n=3) == pytest.approx(0.5)  # front 100 %, rear 0 %: the mean of the two
    assert balanced_acc30([a, b], min_n=3) == pytest.approx(0.75)  # A 0.5, B 1.0
    few = sector_stats(np.full(2, 170.0), np.full(2, 90.0))  # 2 cars: below the sector minimum, no vote
    assert balanced_acc30([b, few], min_n=3) == pytest.approx(1.0) and balanced_acc30([few], min_n=3) is None
    # the default minimum (10 cars) leaves A's 4 rear cars and B's 3 side cars out: only A's fronts vote
    assert balanced_acc30([a, b]) == pytest.approx(1.0)


def test_real_sources_resolve_by_name_or_folder_and_say_what_is_missing(tmp_path):
    names = [s.name for s in validation_sources()]
    assert names == ["nuscenes_front", "kitti_val", "stanford_val"]
    kitti = source_from_spec("kitti_val")
    assert kitti.det_types == ("Car", "Van") and kitti.pose_types == ("Car",)
    (tmp_path / "set" / "label_2").mkdir(parents=True)
    s = source_from_spec(f"{tmp_path / 'set'}:{tmp_path / 'imgs'}")
    assert s.name == "set" and s.images == tmp_path / "imgs" and not s.available
    ok, missing = resolve_sources([str(tmp_path / "set")])
    assert ok == [] and "no images" in missing[0]
    ok, missing = resolve_sources(None, shared=tmp_path / "nowhere")
    assert [s.name for s in ok] == [] and len(missing) == 2
    with pytest.raises(FileNotFoundError, match="neither a known source"):
        source_from_spec(str(tmp_path / "nothing"))


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory) -> tuple[Path, Path, Path]:
    """6 rendered 640x360 road-camera scenes of held-out procedural cars, exported to KITTI and split
    into two sources, the second with its images in another folder (like data/real + ../shared)."""
    from training.dataset.export import export_kitti
    from training.render.cli import main

    tmp = tmp_path_factory.mktemp("bench")
    h5 = tmp / "scenes.h5"
    assert main(["scenes", "--out", str(h5), "--count", "6", "--procedural", "200", "--split", "heldout",
                 "--quiet", "--seed", "91", "--max-cars", "4", "--width", "640", "--height", "360"]) == 0
    export_kitti(h5, tmp / "a")
    b = tmp / "b"
    (b / "label_2").mkdir(parents=True)
    images_b = tmp / "images_b"
    images_b.mkdir()
    for lab in sorted((tmp / "a" / "label_2").glob("*.txt"))[3:]:
        shutil.move(lab, b / "label_2" / lab.name)
        img = tmp / "a" / "image_2" / f"{lab.stem}.png"
        shutil.move(img, images_b / img.name)
    return tmp / "a", b, images_b


@needs_shipped
def test_benchmark_cli_scores_each_source_and_their_union(two_sources, tmp_path, capsys):
    from carpose.eval.benchmark import main

    a, b, images_b = two_sources
    out = tmp_path / "bench"
    assert main(["--sources", str(a), f"{b}:{images_b}", "--out", str(out), "--timing-frames", "2",
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    res = json.loads((out / "benchmark.json").read_text())
    labels = {name: [o for lab in sorted((root / "label_2").glob("*.txt")) for o in parse_kitti_label(lab)]
              for name, root in (("a", a), ("b", b))}
    for name, objs in labels.items():
        src = res["sources"][name]
        cars = [o for o in objs if o.type == "Car"]
        # pose on the true boxes: the folder rule's filter (height >= 20, truncation <= 0.5, occlusion <= 2)
        assert src["pose"]["sure"]["n"] == sum(o.height_px >= 20 and o.truncated <= 0.5 and o.occluded <= 2
                                               for o in cars) > 0
        det = src["det"]
        assert det["all"]["tp"] + det["all"]["fn"] == len(cars)  # every labelled car counts in "all"
        assert det["tall"]["tp"] + det["tall"]["fn"] == sum(o.height_px >= 40 for o in cars)
        assert 0 <= det["tall"]["aos"] <= det["tall"]["ap50"] + 1e-9
        assert det["timing"]["frames"] == 2 and det["timing"]["total_ms"] >= det["timing"]["detect_ms"] > 0
        assert sum(r["n"] for r in src["pose"]["sure"]["sectors"]) == src["pose"]["sure"]["n"]
        # by the share nearer cars hide: each sure car in one row, the flips of the rows those of the source
        hidden = src["pose"]["by_hidden"]
        assert sum(r["n"] for r in hidden) == src["pose"]["sure"]["n"]
        assert sum(r["flips"] for r in hidden) == src["pose"]["sure"]["flips"]
        # recall by view: every car >= 40 px in exactly one sector, found as often as the tall recall says
        view = det["recall_by_view"]
        assert sum(r["gt"] for r in view["sectors"]) == view["all"]["gt"] == det["tall"]["tp"] + det["tall"]["fn"]
        assert sum(r["found"] for r in view["sectors"]) == view["all"]["found"] == det["tall"]["tp"]
        assert view["occluded"]["gt"] == sum(o.height_px >= 40 and o.occluded >= 1 for o in cars)
    u = res["union"]
    assert u["det"]["recall_by_view"]["all"]["found"] == u["det"]["tall"]["tp"]
    assert [r["gt"] for r in u["det"]["recall_by_view"]["sectors"]] == [
        sum(s["det"]["recall_by_view"]["sectors"][k]["gt"] for s in res["sources"].values()) for k in range(8)]
    assert "| rear 157.5-202.5 |" in printed and "| cut by the border |" in printed and "| over 1/2 |" in printed
    assert u["pose"]["sure"]["n"] == sum(s["pose"]["sure"]["n"] for s in res["sources"].values())
    assert u["det"]["all"]["tp"] + u["det"]["all"]["fn"] == sum(
        s["det"]["all"]["tp"] + s["det"]["all"]["fn"] for s in res["sources"].values())
    assert u["end_to_end"]["sure"]["n"] == u["det"]["all"]["tp"] == sum(
        s["end_to_end"]["sure"]["n"] for s in res["sources"].values())
    assert u["pose"]["sure"]["med_err_deg"] < 30  # held-out rendered cars: the shipped model knows renders
    # the selection score is the balanced Acc@30 of the per-source sector rows (None: no sector of >= 10 cars)
    assert res["selection"]["pose_balanced_acc30"] == balanced_acc30(
        [s["pose"]["sure"]["sectors"] for s in res["sources"].values()])
    headline = printed.strip().splitlines()[-1]
    assert headline.startswith("headline (union of a, b): pose Acc@30") and "detector AP@0.5" in headline
    assert (out / "benchmark.md").read_text().strip().endswith(headline)
    for name in ("a_pose_worst.jpg", "b_pose_worst.jpg", "a_det_frames.jpg", "b_det_frames.jpg"):
        assert cv2.imread(str(out / name)) is not None, name
    # the row prior (on by default) reads every labelled car of a frame, scores only the filter's
    assert res["row_prior"] is True and "row prior on" in printed
    assert main(["--sources", str(a), "--no-det", "--no-row-prior", "--out", str(tmp_path / "alone"), "--quiet"]) == 0
    alone = json.loads((tmp_path / "alone" / "benchmark.json").read_text())
    assert alone["row_prior"] is False and alone["sources"]["a"]["pose"]["sure"]["n"] == res["sources"]["a"]["pose"][
        "sure"]["n"]
    assert main(["--sources", str(tmp_path / "none"), "--quiet"]) == 2  # a clear error, not a traceback


@needs_shipped
def test_detector_choice_prefers_the_better_checkpoint_on_every_source(two_sources, tmp_path, capsys):
    """The shipped detector against a blind copy (its first convolution's weights zeroed, so it sees no
    image): the choice must fall on the working one, and the table names it."""
    import onnx
    from onnx import numpy_helper

    from training.detector.select import main

    a, b, images_b = two_sources
    model = onnx.load(str(DEFAULT_DET_MODEL))
    first_conv = next(n for n in model.graph.node if n.op_type == "Conv")
    for init in model.graph.initializer:
        if init.name == first_conv.input[1]:
            init.CopyFrom(numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(init)), init.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    assert main([str(broken), str(DEFAULT_DET_MODEL), "--sources", str(a), f"{b}:{images_b}",
                 "--out", str(tmp_path)]) == 0
    sel = json.loads((tmp_path / "select.json").read_text())
    assert sel["chosen"] == str(DEFAULT_DET_MODEL)
    assert sel["scores"][1]["mean_ap"] > sel["scores"][0]["mean_ap"]
    assert "**(chosen)**" in capsys.readouterr().out


def test_benchmark_on_the_kitti_validation_frames_scores_every_filtered_car(tmp_path):
    """Pose on the true boxes of the real KITTI frames: the number of cars is the filter's, and cars seen
    from behind are there (the view the first validation set lacked)."""
    root = SHARED / "real" / "kitti_val"
    if not (root / "label_2").is_dir():
        pytest.skip(f"no KITTI validation frames at {root} (../shared is optional)")
    from carpose.eval.benchmark import main

    assert main(["--sources", "kitti_val", "--no-det", "--out", str(tmp_path), "--quiet"]) == 0
    res = json.loads((tmp_path / "benchmark.json").read_text())
    objs = [o for lab in sorted((root / "label_2").glob("*.txt")) for o in parse_kitti_label(lab)]
    want = sum(o.type == "Car" and o.height_px >= 20 and o.truncated <= 0.5 and o.occluded <= 2 for o in objs)
    pose = res["sources"]["kitti_val"]["pose"]
    assert pose["sure"]["n"] == want
    rear = next(r for r in pose["sure"]["sectors"] if r["sector"] == "rear")
    assert rear["n"] >= 20 and pose["front_rear"]["rear"] >= rear["n"]
    assert cv2.imread(str(tmp_path / "kitti_val_rear.jpg")) is not None
