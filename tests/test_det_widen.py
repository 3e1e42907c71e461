"""training.detector.widen (carpose-det-widen): the shipped YOLO11n widened into a YOLO11s-width network
computes the same function: the same raw Detect outputs and the same boxes on real photos (unlabelled
ones: the validation frames never shape a model, not even a check's choice of it), has exactly a YOLO11s's
tensors, with --noise moves only slightly, and refuses what it cannot copy (attention heads of another
size) instead of approximating it."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from conftest import REPO, SHARED

from training.detector.network_input import image_files, network_input
from training.detector.warm_start import blank_detector
from training.detector.widen import (
    SHIPPED_BOX,
    WideningError,
    head_map,
    main,
    narrow_network,
    raw_outputs,
    side_by_side,
    spread,
    widen_network,
)

SHIPPED = REPO / "models" / "carpose_det.onnx"
#: Boxes kept for the comparison: far below the operating point (0.35), so many boxes are compared.
LOW_CONF = 0.05


@pytest.fixture(scope="module")
def frames(request) -> list[np.ndarray]:
    """Four real road photos from different sources of ../shared/real_unlabelled; without ../shared,
    four rendered street scenes (a weaker check: procedural cars)."""
    photos = image_files(SHARED / "real_unlabelled")
    if photos:
        picks = [photos[i] for i in np.linspace(0, len(photos) - 1, 4).round().astype(int)]
        return [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in picks]
    from training.dataset.reader import CarposeDataset

    with CarposeDataset(request.getfixturevalue("pose_scenes")) as ds:
        return [cv2.cvtColor(img, cv2.COLOR_RGB2BGR) for _, img in ds.iter_images()]


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """The shipped detector read back as carpose-train-det --init reads it, and its widening."""
    narrow = narrow_network(SHIPPED, tmp_path_factory.mktemp("narrow"))
    return narrow, widen_network(narrow, blank_detector("yolo11s.yaml", dict(narrow.names)))


def batch(frames: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.concatenate([network_input(f, SHIPPED_BOX) for f in frames]))


def final_boxes(decoded: torch.Tensor) -> list[torch.Tensor]:
    """ultralytics' NMS over the decoded output, as prediction runs it: per image N x (x1 y1 x2 y2 score class)."""
    from ultralytics.utils.nms import non_max_suppression

    return non_max_suppression(decoded, conf_thres=LOW_CONF, iou_thres=0.5)


def test_channel_maps():
    m = spread(3, 5)
    assert m.index.tolist() == [0, 1, 2, 0, 1] and m.counts().tolist() == [2, 2, 1, 2, 2]
    cat = side_by_side(spread(2, 4), spread(3, 3))
    assert cat.narrow == 5 and cat.index.tolist() == [0, 1, 0, 1, 2, 3, 4]
    heads = head_map(2, 4, 3)  # four heads of 3 channels copying two: whole heads, in order
    assert heads.index.tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5]
    with pytest.raises(WideningError):
        spread(4, 3)


def test_widened_network_has_yolo11s_tensors(nets):
    _, wide = nets
    blank = blank_detector("yolo11s.yaml", {0: "car"})
    got = {k: tuple(v.shape) for k, v in wide.state_dict().items()}
    assert got == {k: tuple(v.shape) for k, v in blank.state_dict().items()}
    assert sum(p.numel() for p in wide.parameters()) == sum(p.numel() for p in blank.parameters()) > 9_000_000
    attn = wide.model[10].m[0].attn
    assert (attn.num_heads, attn.head_dim, attn.key_dim) == (4, 64, 32)  # YOLO11n: 2 heads of the same size
    assert wide.model[-1].cv3[0][2].in_channels == 128 and wide.model[-1].cv2[0][2].in_channels == 64


def test_widened_network_gives_the_same_outputs_and_boxes_on_real_frames(nets, frames):
    narrow, wide = nets
    x = batch(frames)
    a, b = raw_outputs(narrow, x), raw_outputs(wide, x)
    # raw Detect outputs: box-bin and class logits, and the decoded boxes (input pixels, up to 640) and scores
    assert (a["scores"] - b["scores"]).abs().max() < 1e-3
    assert (a["boxes"] - b["boxes"]).abs().max() < 1e-3
    assert (a["decoded"][:, :4] - b["decoded"][:, :4]).abs().max() < 1e-2
    assert (a["decoded"][:, 4:] - b["decoded"][:, 4:]).abs().max() < 1e-5
    found = 0
    for da, db in zip(final_boxes(a["decoded"]), final_boxes(b["decoded"]), strict=True):
        assert len(da) == len(db)
        if len(da):
            assert (da[:, :4] - db[:, :4]).abs().max() < 1e-2 and (da[:, 4] - db[:, 4]).abs().max() < 1e-5
        found += len(da)
    assert found >= 4  # the comparison is about boxes, not about empty outputs


def test_noise_moves_the_outputs_only_slightly(nets, frames):
    narrow, _ = nets
    x = batch(frames[:2])
    a = raw_outputs(narrow, x)
    b = raw_outputs(widen_network(narrow, blank_detector("yolo11s.yaml", {0: "car"}), noise=1e-3, seed=1), x)
    moved = (a["scores"] - b["scores"]).abs().max()
    assert 1e-3 < moved < 1.0  # the copies differ now (symmetry broken) ...
    sure = a["decoded"][:, 4] > 0.35
    assert sure.any()
    box_moves = (a["decoded"][:, :4] - b["decoded"][:, :4]).abs().permute(0, 2, 1)[sure]
    assert box_moves.max() < 2.0 and (a["decoded"][:, 4] - b["decoded"][:, 4]).abs().max() < 0.05  # ... slightly


def test_attention_heads_of_another_size_are_refused():
    """ultralytics gives C2PSA max(c // 64, 1) heads: a net whose C2PSA is 32 wide has one head of 32,
    a YOLO11n two of 64; a head of 64 cannot be a copy of a head of 32."""
    from ultralytics.nn.tasks import DetectionModel, yaml_model_load

    cfg = yaml_model_load("yolo11n.yaml")
    cfg.pop("yaml_file", None)
    cfg |= {"nc": 1, "scales": {"n": [0.5, 0.0625, 1024]}}
    tiny = DetectionModel(cfg, verbose=False)
    with pytest.raises(WideningError, match="heads"):
        widen_network(tiny, blank_detector("yolo11n.yaml", {0: "car"}))
    with pytest.raises(WideningError, match="C3k"):  # YOLO11m swaps the Bottlenecks for C3k blocks
        widen_network(blank_detector("yolo11n.yaml", {0: "car"}), blank_detector("yolo11m.yaml", {0: "car"}))


def test_cli_writes_a_checkpoint_and_exports_it_as_the_shipped_file(tmp_path, frames, capsys):
    from ultralytics import YOLO

    from carpose.detect import DetectorConfig, YoloDetector, detector_provenance, onnx_input_size

    pt, onnx = tmp_path / "det_s.pt", tmp_path / "det_s.onnx"
    assert main([str(SHIPPED), "--out", str(pt), "--export", str(onnx)]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["max_abs_raw_difference"] < 1e-2 and info["parameters"]["wide"] > 3 * info["parameters"]["narrow"]
    assert YOLO(str(pt), task="detect", verbose=False).model.yaml["scale"] == "s"  # the trainer rebuilds a YOLO11s
    assert onnx_input_size(onnx) == (SHIPPED_BOX, False)  # height and width free, fitted into 352 x 640
    prov = detector_provenance(onnx)
    assert prov["widened"]["arch"] == "yolo11s.yaml" and prov["chosen_on"] == detector_provenance(SHIPPED)["chosen_on"]
    # the product's detector (letterbox, network, NMS) on real frames: the same boxes as the shipped file
    shipped, widened = (YoloDetector(DetectorConfig(weights=w, conf=LOW_CONF, device="cpu")) for w in (SHIPPED, onnx))
    found = 0
    for f in frames[:2]:
        da, db = shipped.detect(f), widened.detect(f)
        assert len(da) == len(db)
        for u, v in zip(da, db, strict=True):
            assert np.abs(u.box_xyxy - v.box_xyxy).max() < 1e-2 and abs(u.score - v.score) < 1e-4
        found += len(da)
    assert found >= 1


def test_calibrated_batchnorms_are_copied_so_training_mode_keeps_the_function(tmp_path):
    """An ONNX detector's BatchNorms are identities until calibrated (warm_start); calibrated before the
    widening, every copy gets its channel's statistics, so under training's batch statistics the wide
    network still computes what it computes at inference (an identity BatchNorm would rescale every layer)."""
    photos = image_files(SHARED / "real_unlabelled")
    if not photos:
        pytest.skip("no real_unlabelled photos (../shared is optional)")
    photos = photos[:: len(photos) // 4][:4]
    narrow = narrow_network(SHIPPED, tmp_path, calibration=photos, imgsz=160)
    wide = widen_network(narrow, blank_detector("yolo11s.yaml", dict(narrow.names)))
    x = torch.from_numpy(np.concatenate([network_input(cv2.imread(str(p)), (160, 160)) for p in photos]))
    inference = raw_outputs(wide, x)["scores"]
    wide.train()
    with torch.no_grad():
        training = wide(x)["scores"]  # BatchNorm on this batch's own statistics
    assert (training - inference).abs().max() < 1e-2 * inference.abs().max()


def test_cli_refuses_validation_frames_for_calibration(tmp_path, capsys):
    bad = SHARED / "real" / "kitti_val" / "image_2"
    assert main([str(SHIPPED), "--out", str(tmp_path / "x.pt"), "--calib", str(bad)]) == 2
    assert "validation" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()
