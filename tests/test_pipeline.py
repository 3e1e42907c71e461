"""Runtime core: detection scoring on hand-made cases, the Pipeline's handling of bad input, and the
full chain (shipped detector + shipped pose model) on rendered scenes with known cars."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from carpose.convention import angular_error
from carpose.eval.scoring import average_precision, detection_report, match_frame, matched_azimuth_errors
from carpose.pipeline import DEFAULT_DET_MODEL, DEFAULT_POSE_MODEL, Pipeline, PipelineConfig, as_bgr8
from carpose.results import Detection
from training.pose.export import export_onnx

SHIPPED = DEFAULT_POSE_MODEL.exists() and DEFAULT_DET_MODEL.exists()
needs_shipped = pytest.mark.skipif(not SHIPPED, reason="shipped models (models/*.onnx) not present")


# --- scoring ---------------------------------------------------------------------------------------

def test_match_frame_tp_fp_ignore_and_duplicates():
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    ignore = np.array([[50, 50, 60, 60]], float)
    pred = np.array([[0, 0, 10, 11],  # TP on gt 0
                     [1, 0, 10, 10],  # duplicate of gt 0 -> FP
                     [50, 50, 60, 61],  # in a DontCare region -> ignored
                     [80, 80, 90, 90]], float)  # nothing there -> FP
    m = match_frame(pred, np.array([0.9, 0.8, 0.7, 0.6]), gt, ignore)
    assert m.outcome.tolist() == [1, 0, -1, 0]
    assert m.gt_index[0] == 0 and m.num_gt == 2
    rep = detection_report([m], threshold=0.65)
    assert (rep.tp, rep.fp, rep.fn) == (1, 1, 1)
    assert rep.precision == pytest.approx(0.5) and rep.recall == pytest.approx(0.5)
    # the higher-scored prediction takes the GT even if a lower one overlaps more
    m2 = match_frame(np.array([[1, 0, 10, 10], [0, 0, 10, 10]], float), np.array([0.9, 0.5]), gt[:1])
    assert m2.outcome.tolist() == [1, 0]


def test_average_precision_hand_made():
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    perfect = match_frame(gt.copy(), np.array([0.9, 0.8]), gt)
    assert average_precision([perfect])["ap"] == pytest.approx(1.0)
    # one TP at 0.9, then an FP at 0.8, GT 2 never found: P/R = (1, .5), (.5, .5) -> AP = 0.5
    half = match_frame(np.array([[0, 0, 10, 10], [80, 80, 90, 90]], float), np.array([0.9, 0.8]), gt)
    assert average_precision([half])["ap"] == pytest.approx(0.5)
    # FP ranked first: precision 1/2 at recall .5 and 2/3 at recall 1 -> AP = 2/3
    fp_first = match_frame(np.array([[80, 80, 90, 90], [0, 0, 10, 10], [20, 20, 30, 30]], float),
                           np.array([0.95, 0.9, 0.8]), gt)
    assert average_precision([fp_first])["ap"] == pytest.approx(2 / 3)
    assert np.isnan(average_precision([match_frame(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 4)))])["ap"])


def test_matched_azimuth_errors_pair_the_right_cars():
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    m = match_frame(np.array([[20, 20, 30, 30], [0, 0, 10, 10]], float), np.array([0.9, 0.8]), gt)
    err = matched_azimuth_errors(m, np.array([95.0, 350.0]), np.array([10.0, 90.0]))
    assert err.tolist() == pytest.approx([5.0, 20.0])


# --- pipeline on bad input (tiny real model, caller's boxes) ---------------------------------------------

@pytest.fixture(scope="module")
def tiny_pipe(pose_run, tmp_path_factory) -> Pipeline:
    onnx = export_onnx(pose_run / "best.pt", tmp_path_factory.mktemp("pipe") / "pose.onnx")
    return Pipeline(PipelineConfig(pose_model=onnx, detector_weights=None, max_cars=3, return_probs=True))


def test_image_formats_and_bad_images():
    bgr = np.zeros((20, 30, 3), np.uint8)
    assert as_bgr8(bgr) is not None and as_bgr8(np.zeros((20, 30), np.uint8)).shape == (20, 30, 3)
    assert as_bgr8(np.zeros((20, 30, 4), np.uint8)).shape == (20, 30, 3)
    for bad, msg in [(np.zeros((0, 0, 3), np.uint8), "empty"), (np.zeros((20, 30, 3), np.float32), "uint8"),
                     (np.zeros((20, 30, 2), np.uint8), "channels"), ([[1, 2]], "numpy")]:
        with pytest.raises(ValueError, match=msg):
            as_bgr8(bad)


def test_pipeline_skips_bad_boxes_with_reasons_and_batches_the_rest(tiny_pipe):
    img = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    boxes = np.array([[10, 10, 60, 50, 0.9], [np.nan, 0, 10, 10, 0.8], [500, 500, 600, 600, 0.7],
                      [5, 5, 7, 7, 0.6], [-20, 30, 40, 100, 0.5]])
    res = tiny_pipe.process(img, boxes=boxes)
    reasons = sorted(r for _, r in res.skipped)
    assert len(res.cars) == 2 and len(reasons) == 3
    assert any("non-finite" in r for r in reasons) and any("outside" in r for r in reasons) \
        and any("smaller" in r for r in reasons)
    assert res.cars[1].box_xyxy[0] == 0  # clipped to the image
    for c in res.cars:
        assert 0 <= c.azimuth_deg < 360 and 0 <= c.azimuth_confidence <= 1 and c.probs.shape == (72,)
    assert {"detect", "crop", "pose", "total"} <= set(res.timings_ms)
    # the batched result equals one-at-a-time results (crops are batched, not mixed up)
    single = tiny_pipe.process(img, boxes=boxes[4:5])
    assert angular_error(single.cars[0].azimuth_deg, res.cars[1].azimuth_deg) < 1e-3
    # max_cars keeps the best-scored boxes and says why the rest went
    many = np.array([[10 + i, 10, 60 + i, 50, 0.1 * i] for i in range(1, 6)])
    r = tiny_pipe.process(img, boxes=many)
    assert [c.score for c in r.cars] == pytest.approx([0.5, 0.4, 0.3])
    assert sum("max_cars" in why for _, why in r.skipped) == 2
    # grayscale and BGRA frames are accepted; a frame with no boxes gives no cars
    assert len(tiny_pipe.process(img[:, :, 0], boxes=boxes[:1]).cars) == 1
    assert tiny_pipe.process(img, boxes=np.zeros((0, 4))).cars == []
    with pytest.raises(ValueError, match="detector"):
        tiny_pipe.process(img)
    with pytest.raises(ValueError, match="rows"):
        tiny_pipe.process(img, boxes=np.zeros((2, 3)))


def test_a_grey_nearer_model_gets_each_car_with_its_nearer_neighbour_greyed(tiny_pipe, tmp_path):
    """Issue 21: a model whose crop record says ``grey_nearer`` (trained with carpose-train --grey-nearer)
    is fed, by the pipeline, each car's crop with the boxes of the overlapping nearer cars of the frame
    painted grey: the car behind is read from what is left of it, the car in front as it is."""
    import onnx

    from carpose.crop import CropSpec, crop_box
    from carpose.pose import METADATA_KEY

    m = onnx.load(str(tiny_pipe.pose.model_path))
    entry = next(e for e in m.metadata_props if e.key == METADATA_KEY)
    meta = json.loads(entry.value)
    meta["crop"] = {**meta["crop"], "occluders": "grey_nearer"}
    entry.value = json.dumps(meta)
    onnx.save(m, str(tmp_path / "grey.onnx"))
    # the row prior (on by default, its own test below) off: the crops alone
    pipe = Pipeline(PipelineConfig(pose_model=tmp_path / "grey.onnx", detector_weights=None, return_probs=True,
                                   row_prior=False))
    plain_pipe = Pipeline(PipelineConfig(pose_model=tiny_pipe.pose.model_path, detector_weights=None,
                                         return_probs=True, row_prior=False))
    assert pipe.pose.crop_spec.occluders == "grey_nearer"
    img = np.random.default_rng(3).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    behind, front = [20.0, 20.0, 80.0, 60.0], [50.0, 30.0, 120.0, 90.0]  # front: its bottom edge lower
    scored = np.array([[*behind, 0.9], [*front, 0.8]])
    res, plain = pipe.process(img, boxes=scored), plain_pipe.process(img, boxes=scored)
    np.testing.assert_allclose(res.cars[1].probs, plain.cars[1].probs, atol=1e-6)
    assert np.abs(res.cars[0].probs - plain.cars[0].probs).max() > 1e-4
    spec = pipe.pose.crop_spec
    greyed = crop_box(img, behind, spec, grey=np.array([front]))[:, :, ::-1]
    np.testing.assert_allclose(res.cars[0].probs, pipe.pose.predict(greyed).probs[0], atol=1e-6)
    assert CropSpec.from_dict(meta["crop"]) == spec
    # evaluation detects down to a score of 0.01: only boxes the runtime would keep grey a car
    strict = Pipeline(PipelineConfig(pose_model=tmp_path / "grey.onnx", detector_weights=None, return_probs=True,
                                     occluder_conf=0.85, row_prior=False))
    np.testing.assert_allclose(strict.process(img, boxes=scored).cars[0].probs, plain.cars[0].probs, atol=1e-6)


def test_a_car_hidden_behind_a_nearer_one_mixes_in_its_heading_by_the_share_hidden(tiny_pipe):
    """Issue 21, the row prior (on by default): the car behind gets (1 - h) of its own bin probabilities and
    h of the nearer car's, h the share of its box the nearer box hides; its azimuth and confidence are
    decoded from the mix; the nearer car is read as it is; a box under ``occluder_conf`` lends nothing."""
    from carpose.crop import hidden_share

    def pipe(**kw) -> Pipeline:
        return Pipeline(PipelineConfig(pose_model=tiny_pipe.pose.model_path, detector_weights=None,
                                       return_probs=True, **kw))

    img = np.random.default_rng(5).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    behind, front = [20.0, 20.0, 80.0, 60.0], [50.0, 30.0, 120.0, 90.0]
    scored = np.array([[*behind, 0.9], [*front, 0.8]])
    on, alone = tiny_pipe.process(img, boxes=scored), pipe(row_prior=False).process(img, boxes=scored)
    h = hidden_share(behind, np.array([front]))
    assert h == pytest.approx(900 / 2400)
    np.testing.assert_allclose(on.cars[1].probs, alone.cars[1].probs, atol=1e-6)
    mixed = (1 - h) * alone.cars[0].probs + h * alone.cars[1].probs
    np.testing.assert_allclose(on.cars[0].probs, mixed, atol=1e-6)
    want = tiny_pipe.pose.decode(mixed[None])
    assert on.cars[0].azimuth_deg == pytest.approx(float(want.azimuth_deg[0]), abs=1e-3)
    assert on.cars[0].azimuth_confidence == pytest.approx(float(want.confidence[0]), abs=1e-5)
    # the tiny network's readings are near uniform, yet the mix moves the car behind
    assert np.abs(on.cars[0].probs - alone.cars[0].probs).max() > 1e-5
    strict = pipe(occluder_conf=0.85).process(img, boxes=scored)
    np.testing.assert_allclose(strict.cars[0].probs, alone.cars[0].probs, atol=1e-6)


def test_pipeline_smoothing_assigns_tracks(tiny_pipe):
    img = np.random.default_rng(1).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    tiny_pipe.set_smoothing(True)
    try:
        ids = [[c.track_id for c in tiny_pipe.process(img, boxes=[Detection(np.array([10.0 + k, 10, 60 + k, 50]), 0.9),
                                                                  Detection(np.array([90.0, 20, 150, 80]), 0.8)]).cars]
               for k in range(3)]
    finally:
        tiny_pipe.set_smoothing(False)
    assert ids[0] == ids[1] == ids[2] and len(set(ids[0])) == 2 and min(ids[0]) >= 0


def test_missing_models_fail_at_construction(tmp_path, pose_run):
    with pytest.raises(FileNotFoundError):
        Pipeline(PipelineConfig(pose_model=tmp_path / "none.onnx", detector_weights=None))
    onnx = export_onnx(pose_run / "best.pt", tmp_path / "pose.onnx")
    with pytest.raises(FileNotFoundError):
        Pipeline(PipelineConfig(pose_model=onnx, detector_weights=tmp_path / "none.onnx"))


# --- the shipped models on rendered scenes -------------------------------------------------------------

@needs_shipped
def test_full_pipeline_on_rendered_scenes_finds_cars_and_their_azimuths(pose_scenes_640):
    from training.dataset.reader import CarposeDataset

    pipe = Pipeline(PipelineConfig())
    errors, found, total = [], 0, 0
    with CarposeDataset(pose_scenes_640) as ds:
        for i in range(len(ds)):
            img = cv2.cvtColor(ds.image(i), cv2.COLOR_RGB2BGR)
            cars = ds.cars_of_frame(i)
            keep = (cars["visible_fraction"] > 0.5) & (cars["bbox"][:, 3] - cars["bbox"][:, 1] > 30)
            res = pipe.process(img)
            m = match_frame(np.array([c.box_xyxy for c in res.cars]).reshape(-1, 4),
                            np.array([c.score for c in res.cars]), cars["bbox"][keep])
            found += int((m.outcome == 1).sum())
            total += int(keep.sum())
            errors.append(matched_azimuth_errors(m, np.array([c.azimuth_deg for c in res.cars]),
                                                 cars["azimuth_deg"][keep]))
    err = np.concatenate(errors)
    assert total >= 8
    assert found / total > 0.6, f"detector found {found}/{total} clearly visible cars"
    assert np.median(err) < 20, f"median azimuth error {np.median(err):.1f} deg on {len(err)} cars"


@needs_shipped
def test_infer_cli_draws_and_records(tmp_path, pose_scenes_640):
    from carpose.infer import main
    from training.dataset.reader import CarposeDataset

    src = tmp_path / "in"
    src.mkdir()
    with CarposeDataset(pose_scenes_640) as ds:
        for i in range(2):
            cv2.imwrite(str(src / f"f{i}.png"), cv2.cvtColor(ds.image(i), cv2.COLOR_RGB2BGR))
    (src / "broken.png").write_bytes(b"not a png")
    assert main([str(src), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    lines = [json.loads(x) for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert [x["frame"] for x in lines] == ["f0.png", "f1.png"]  # the broken file is skipped, not fatal
    assert any(x["cars"] for x in lines)
    out = cv2.imread(str(tmp_path / "out" / "f0.png"))
    assert out.shape == (480, 640, 3) and not np.array_equal(out, cv2.imread(str(src / "f0.png")))
    assert main([str(tmp_path / "nothing"), "--out", str(tmp_path / "o2")]) == 2


@needs_shipped
def test_det_eval_on_kitti_export_of_rendered_scenes(tmp_path, pose_scenes_640):
    from carpose.eval.det_eval import main
    from training.dataset.export import export_kitti

    export_kitti(pose_scenes_640, tmp_path / "kitti")
    assert main([str(tmp_path / "kitti"), "--out", str(tmp_path / "ev"), "--quiet"]) == 0
    s = json.loads((tmp_path / "ev" / "det_eval.json").read_text())
    assert s["frames"] == 6 and s["tp"] + s["fn"] > 0
    assert 0.0 <= s["precision"] <= 1.0 and s["ap50"] > 0.3
    assert (tmp_path / "ev" / "det_pr.png").stat().st_size > 0


def test_det_eval_cli_clear_error_on_bad_folder(tmp_path):
    from carpose.eval.det_eval import main

    assert main([str(tmp_path), "--det-model", str(tmp_path / "x.onnx")]) == 2


@pytest.fixture(scope="module")
def pose_scenes_640(tmp_path_factory) -> Path:
    """6 rendered 640x480 scenes of held-out procedural cars (the shipped models never saw them)."""
    from training.render.cli import main

    out = tmp_path_factory.mktemp("scenes") / "scenes.h5"
    assert main(["scenes", "--out", str(out), "--count", "6", "--procedural", "200", "--split", "heldout",
                 "--quiet", "--seed", "77", "--max-cars", "4"]) == 0
    return out
