"""carpose-det-int8 and the runtime's choice of the INT8 twin on a CPU.

Real parts: the shipped float detector, ONNX Runtime's static quantizer and inference, ultralytics'
letterbox and NMS; calibration photos are the street photos inside the ultralytics wheel, cut and
flipped into eight (a test cannot count on ../shared)."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import onnx
import pytest

from carpose.pipeline import DEFAULT_DET_MODEL, INT8_KEY, detector_file
from carpose.track import iou_matrix
from training.detector.network_input import network_input
from training.detector.quantize import (
    box_scores,
    float_nodes,
    head_nodes,
    main,
    matching_shift,
    quantize_detector,
)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from ultralytics.utils import ASSETS

    d = tmp_path_factory.mktemp("calib") / "street"
    d.mkdir()
    for name in ("bus.jpg", "zidane.jpg"):
        img = cv2.imread(str(ASSETS / name))
        h, w = img.shape[:2]
        for i, part in enumerate([img, img[: h // 2], img[:, : w // 2], img[h // 4:, w // 4:]]):
            cv2.imwrite(str(d / f"{name[:-4]}_{i}.jpg"), part if i % 2 else cv2.flip(part, 1))
    return d


@pytest.fixture(scope="module")
def twin(photos, tmp_path_factory):
    """The shipped detector and its INT8 twin side by side, as in models/."""
    d = tmp_path_factory.mktemp("models")
    float_path = d / "carpose_det.onnx"
    shutil.copy(DEFAULT_DET_MODEL, float_path)
    info = quantize_detector(float_path, d / "carpose_det_int8.onnx", photos, count=8, progress=False)
    return float_path, d / "carpose_det_int8.onnx", info


def test_int8_twin_quantizes_the_body_and_keeps_the_head_float(twin):
    float_path, int8_path, info = twin
    model = onnx.load(str(int8_path))
    head, kept = set(head_nodes(model)), set(float_nodes(model))
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    int8 = {n.name for n in convs if n.input[1] in dequantized}  # int8 weights, dequantized into the conv
    assert len(int8) > 40, "the backbone's and neck's convolutions are int8"
    assert head < kept and not int8 & kept, "the head, the stem, SPPF and C2PSA stay float"
    assert any(n.name.startswith(("/model.0/", "/model.23/")) for n in convs if n.name not in int8)
    meta = {p.key: p.value for p in model.metadata_props}
    src_meta = {p.key: p.value for p in onnx.load(str(float_path), load_external_data=False).metadata_props}
    for key in ("names", "stride", "imgsz", "task", "carpose_provenance"):  # what ultralytics and the leak checks read
        assert meta[key] == src_meta[key]
    made = json.loads(meta[INT8_KEY])
    assert made["count"] == 8 and made["from_sha256"] == info["from_sha256"]
    assert abs(made["class_logit_shift"]) < 1.0
    assert int8_path.stat().st_size < 0.6 * float_path.stat().st_size  # int8 weights, but for the float modules


def test_int8_boxes_follow_the_float_ones(twin, photos, unlabelled_photos):
    """The twin keeps the float detector's boxes: the same number above the default threshold on the
    calibration photos (the score match), and on street scenes with cars (rendered: a test cannot count on
    ../shared; the ultralytics photos hold no car) each float box above the threshold found again."""
    import onnxruntime as ort
    import torch
    from ultralytics.utils.nms import non_max_suppression

    float_path, int8_path, _ = twin
    sample = [network_input(cv2.imread(str(f)), (352, 640)) for f in sorted(photos.iterdir())]
    a, b = box_scores(float_path, sample), box_scores(int8_path, sample)
    assert abs(int((a >= 0.35).sum()) - int((b >= 0.35).sum())) <= 1
    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (float_path, int8_path)]
    found = 0
    for f in sorted(unlabelled_photos.iterdir()):
        x = network_input(cv2.imread(str(f)), (352, 640))
        boxes = [non_max_suppression(torch.from_numpy(s.run(None, {s.get_inputs()[0].name: x})[0]), 0.35, 0.5)[0]
                 [:, :4].numpy() for s in sessions]
        if len(boxes[0]):
            found += len(boxes[0])
            assert len(boxes[1]) >= 1 and (iou_matrix(boxes[0], boxes[1]).max(axis=1) > 0.8).all()
    assert found >= 2, "the float detector finds the rendered cars"


def test_matching_shift_puts_the_kth_box_at_the_threshold():
    float_scores = np.array([0.9, 0.6, 0.4, 0.2])  # three reach 0.35
    int8_scores = np.array([0.95, 0.7, 0.5, 0.45, 0.1])
    s = matching_shift(float_scores, int8_scores, 0.35)
    logit = np.log(int8_scores / (1 - int8_scores)) + s
    assert int((1 / (1 + np.exp(-logit)) >= 0.35).sum()) == 3
    assert matching_shift(np.array([0.1]), int8_scores, 0.35) == 0.0  # nothing to match


def test_runtime_runs_the_twin_on_cpu_only_when_it_was_made_from_that_file(twin, tmp_path, caplog):
    float_path, int8_path, _ = twin
    assert detector_file(float_path, "cpu") == int8_path
    assert detector_file(float_path, "cpu", int8=False) == float_path
    assert detector_file(float_path, "cuda:0") == float_path  # GPUs run the float network
    assert detector_file(None, "cpu") is None
    other = tmp_path / "mine.onnx"  # a user's own detector: never swapped
    shutil.copy(float_path, other)
    assert detector_file(other, "cpu") == other
    stale = tmp_path / "carpose_det.onnx"  # retrained float file beside an old twin
    stale.write_bytes(float_path.read_bytes() + b"\0")
    shutil.copy(int8_path, tmp_path / "carpose_det_int8.onnx")
    assert detector_file(stale, "cpu") == stale
    assert "not made from" in caplog.text


def test_validation_frames_are_refused_as_calibration(photos, tmp_path, capsys):
    val = tmp_path / "real" / "kitti_val" / "image_2"
    val.mkdir(parents=True)
    for f in sorted(photos.iterdir()):
        shutil.copy(f, val / f.name)
    out = tmp_path / "int8.onnx"
    assert main([str(DEFAULT_DET_MODEL), "--calib", str(val), "--out", str(out), "--quiet"]) == 2
    assert "validation" in capsys.readouterr().err and not out.exists()
    assert main([str(tmp_path / "missing.onnx"), "--calib", str(photos), "--out", str(out), "--quiet"]) == 2


def test_pipeline_runs_the_twin_only_when_asked(twin):
    from carpose.pipeline import Pipeline, PipelineConfig

    float_path, int8_path, _ = twin
    assert Pipeline(PipelineConfig(detector_weights=float_path, device="cpu")).detector.weights == float_path
    pipe = Pipeline(PipelineConfig(detector_weights=float_path, device="cpu", det_int8=True))
    assert pipe.detector.weights == int8_path
    assert pipe.detector.input_hw == (352, 640) and pipe.detector.follows_aspect  # the float file's box, kept
