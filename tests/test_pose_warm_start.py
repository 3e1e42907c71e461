"""Fine-tuning from an exported pose ONNX (the shipped model has no checkpoint in the repository):
the recovered posenet computes what the ONNX computes, before and after its BatchNorms are calibrated,
and its training-mode output on the calibration crops stays close; the flip penalty punishes mass half
a turn from the label. Real ONNX Runtime on the shipped model."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from carpose.pipeline import DEFAULT_POSE_MODEL
from training.pose.train import flip_penalty
from training.pose.warm_start import calibrate_batchnorm, onnx_to_posenet

needs_shipped = pytest.mark.skipif(not DEFAULT_POSE_MODEL.exists(), reason="shipped pose model not present")


def _crops(n: int = 48, size: int = 128) -> np.ndarray:
    """Smooth random colour images (blurred noise): varied, image-like statistics."""
    rng = np.random.default_rng(0)
    return np.stack([cv2.GaussianBlur(rng.integers(0, 255, (size, size, 3), dtype=np.uint8), (0, 0), 3)
                     for _ in range(n)])


@needs_shipped
def test_posenet_from_onnx_matches_onnx_runtime_before_and_after_calibration():
    import onnxruntime as ort

    crops = _crops()
    x = np.ascontiguousarray(crops.transpose(0, 3, 1, 2)).astype(np.float32)
    sess = ort.InferenceSession(str(DEFAULT_POSE_MODEL), providers=["CPUExecutionProvider"])
    want = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    model, meta = onnx_to_posenet(DEFAULT_POSE_MODEL)
    assert meta["arch"] == "posenet" and meta["bins"] == want.shape[1]
    with torch.no_grad():
        np.testing.assert_allclose(model(torch.from_numpy(x)).numpy(), want, atol=2e-4)
        calibrate_batchnorm(model, crops)
        model.eval()
        np.testing.assert_allclose(model(torch.from_numpy(x)).numpy(), want, atol=2e-4)
        bn = model.stem[1]
        assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))  # real statistics now
        model.train()
        model.drop.eval()  # dropout off: compare the BatchNorms alone
        train_mode = model(torch.from_numpy(x)).numpy()
    # batch statistics = the calibration statistics: training mode computes what eval mode does
    np.testing.assert_allclose(train_mode, want, atol=2e-3)


def test_warm_start_refuses_a_model_that_is_not_a_posenet(tmp_path):
    import onnx
    from onnx import helper

    node = helper.make_node("Identity", ["image"], ["probs"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("image", 1, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("probs", 1, [1, 3, 8, 8])])
    m = helper.make_model(graph)
    m.metadata_props.add(key="carpose", value='{"arch": "seed4", "bins": 4}')
    onnx.save(m, str(tmp_path / "x.onnx"))
    with pytest.raises(ValueError, match="posenet"):
        onnx_to_posenet(tmp_path / "x.onnx")


def test_flip_penalty_grows_with_the_mass_half_a_turn_away():
    bins = 72
    az = torch.tensor([0.0, 90.0])
    def logits_at(deg: list[float]) -> torch.Tensor:
        lg = torch.full((2, bins), -20.0)
        for i, d in enumerate(deg):
            lg[i, int(round(d / 5)) % bins] = 20.0
        return lg
    right = flip_penalty(logits_at([0.0, 90.0]), az)
    side = flip_penalty(logits_at([90.0, 180.0]), az)  # 90 deg off: not a flip
    flipped = flip_penalty(logits_at([180.0, 270.0]), az)
    near_flip = flip_penalty(logits_at([155.0, 245.0]), az)  # 155 deg off: inside the 30-deg window
    assert right < 1e-6 and side < 1e-6
    assert flipped > 5 and near_flip > 5
    uniform = flip_penalty(torch.zeros(2, bins), az)  # 13 of 72 bins within 30 deg of the opposite
    assert uniform == pytest.approx(-np.log(1 - 13 / 72), rel=1e-4)
