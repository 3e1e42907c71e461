"""carpose-det-soup: the weighted mean of detectors fine-tuned from the same weights, exported to ONNX.

Real parts: the shipped detector (ONNX, turned back into weights), ultralytics' exporter, ONNX Runtime."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch

from carpose.detect import detector_provenance
from carpose.pipeline import DEFAULT_DET_MODEL
from training.detector.soup import DEFAULT_CONF, average_state, main, make_soup, threshold_shift

HW = (96, 160)


def raw_outputs(onnx_path, image: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: image})[0][0]  # (4 + classes, anchors)


@pytest.fixture(scope="module")
def soups(tmp_path_factory):
    """The shipped detector souped with a copy of itself, and alone moved to an operating point."""
    d = tmp_path_factory.mktemp("soup")
    twin = d / "twin.onnx"
    shutil.copy(DEFAULT_DET_MODEL, twin)
    plain = make_soup([DEFAULT_DET_MODEL, twin], [0.5, 0.5], d / "plain.onnx", HW)
    shifted = make_soup([DEFAULT_DET_MODEL], [1.0], d / "shifted.onnx", HW, operate_at=0.45)  # one member
    reference = d / "reference.onnx"  # the shipped detector itself at the same input, by the same road
    from training.detector.train import export_onnx
    from training.detector.warm_start import onnx_to_pt

    export_onnx(onnx_to_pt(DEFAULT_DET_MODEL, d / "ref.pt"), reference, HW)
    return plain, shifted, reference, twin


def test_a_soup_of_a_detector_with_itself_is_that_detector(soups):
    plain, _, reference, twin = soups
    image = np.random.default_rng(0).random((1, 3, *HW), dtype=np.float32)
    a, b = raw_outputs(reference, image), raw_outputs(plain, image)
    assert a.shape == b.shape
    assert np.abs(a[:4] - b[:4]).max() < 0.5, "boxes (input pixels) within the FP16 storage of a .pt"
    assert np.abs(a[4:] - b[4:]).max() < 5e-3
    prov = detector_provenance(plain)
    shipped = detector_provenance(DEFAULT_DET_MODEL)
    for key in ("train_backgrounds", "pseudo_labelled_photos", "chosen_on"):  # the members' data, once
        assert prov[key] == shipped[key]
    assert [m["member"] for m in prov["soup"]] == [str(DEFAULT_DET_MODEL), str(twin)]
    assert prov["soup"][0]["provenance"] == shipped
    assert prov["class_logit_shift"] == 0.0


def test_a_trained_pt_member_is_folded_before_averaging(soups, tmp_path):
    """A .pt keeps real BatchNorm statistics, an ONNX member identity ones: the soup of the shipped
    detector with itself as a .pt (BatchNorms calibrated on photos, as a training run leaves them)
    is the shipped detector, not a mean of unlike parameters."""
    import cv2

    from training.detector.warm_start import onnx_to_pt

    _, _, reference, _ = soups
    rng = np.random.default_rng(1)
    photos = []
    for k in range(4):
        img = cv2.GaussianBlur(rng.integers(0, 255, (120, 200, 3), dtype=np.uint8), (9, 9), 3)
        photos.append(tmp_path / f"photo{k}.png")
        cv2.imwrite(str(photos[-1]), img)
    pt = onnx_to_pt(DEFAULT_DET_MODEL, tmp_path / "trained.pt", calibration=photos, imgsz=160)
    bn = next(m for m in torch.load(pt, weights_only=False)["model"].modules()
              if isinstance(m, torch.nn.BatchNorm2d))
    assert float(bn.running_var.float().std()) > 1e-3  # real statistics, not an identity
    mixed = make_soup([DEFAULT_DET_MODEL, pt], [0.5, 0.5], tmp_path / "mixed.onnx", HW)
    image = rng.random((1, 3, *HW), dtype=np.float32)
    a, b = raw_outputs(reference, image), raw_outputs(mixed, image)
    assert np.abs(a[:4] - b[:4]).max() < 1.0
    assert np.abs(a[4:] - b[4:]).max() < 1e-2


def test_the_operating_shift_moves_the_threshold_not_the_order(soups):
    plain, shifted, _, _ = soups
    image = np.random.default_rng(1).random((1, 3, *HW), dtype=np.float32)
    a, b = raw_outputs(plain, image), raw_outputs(shifted, image)
    assert np.allclose(a[:4], b[:4], atol=1e-3), "boxes do not move"
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    ok = (a[4] > 1e-4) & (a[4] < 1 - 1e-4)  # scores whose logit the FP16 weights still resolve
    shift = threshold_shift(0.45)
    assert shift == pytest.approx(math.log(0.35 / 0.65) - math.log(0.45 / 0.55))
    assert ok.sum() > 10 and np.allclose(logit(b[4][ok]) - logit(a[4][ok]), shift, atol=1e-2)  # FP16 biases
    # what scored 0.45 before now scores the default threshold: the same boxes pass it
    clear = np.abs(a[4] - 0.45) > 1e-3
    assert np.array_equal((a[4] >= 0.45)[clear], (b[4] >= DEFAULT_CONF)[clear])
    assert detector_provenance(shifted)["class_logit_shift"] == pytest.approx(shift, abs=1e-6)


def test_bad_soups_are_refused_and_write_nothing(tmp_path, capsys):
    out = tmp_path / "soup.onnx"
    assert main([str(DEFAULT_DET_MODEL), str(DEFAULT_DET_MODEL), "--weights", "0.7", "0.7", "--out", str(out)]) == 2
    assert main([str(DEFAULT_DET_MODEL), str(tmp_path / "missing.onnx"), "--out", str(out)]) == 2
    assert main([str(DEFAULT_DET_MODEL), str(DEFAULT_DET_MODEL), "--operate-at", "1.5", "--out", str(out)]) == 2
    assert not out.exists()
    errors = capsys.readouterr().err
    assert "summing to 1" in errors and "no detector" in errors
    with pytest.raises(ValueError, match="at least one member"):
        make_soup([], [], out)
    with pytest.raises(ValueError, match="architecture"):
        average_state([{"w": torch.zeros(2)}, {"w": torch.zeros(3)}], [0.5, 0.5])
    assert json.dumps(threshold_shift(DEFAULT_CONF)) == "0.0"
