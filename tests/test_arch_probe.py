"""training.detector.arch_probe: an untrained network exported as the shipped detector is (free height
and width, its box in the metadata, one class 'car'), loaded and run by the runtime's detector like
any shipped file, and a wrong architecture refused with a clear error."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from carpose.detect import DetectorConfig, YoloDetector, onnx_input_size
from training.detector.arch_probe import main, random_detector


def test_random_detector_is_exported_like_the_shipped_file(tmp_path):
    out = tmp_path / "probe.onnx"
    info = random_detector("yolo11n.yaml", out, box=(160, 320))
    assert info["parameters"] > 2_000_000 and info["box"] == [160, 320]
    assert onnx_input_size(out) == ((160, 320), False)  # dynamic, fitted into the recorded box
    proto = onnx.load(str(out), load_external_data=False)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert "car" in meta["names"] and "timing only" in meta["carpose_provenance"]
    det = YoloDetector(DetectorConfig(weights=str(out), conf=0.35, device="cpu"))
    assert det.network_hw((480, 640)) == (160, 224)  # a 4:3 frame: the box's height, width to a multiple of 32
    assert isinstance(det.detect(np.full((480, 640, 3), 90, np.uint8)), list)


def test_seeded_weights_make_the_same_file(tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    random_detector("yolo11n.yaml", a, box=(160, 320), seed=3)
    random_detector("yolo11n.yaml", b, box=(160, 320), seed=3)
    wa = {i.name: i.raw_data for i in onnx.load(str(a)).graph.initializer}
    wb = {i.name: i.raw_data for i in onnx.load(str(b)).graph.initializer}
    assert wa == wb


def test_cli_refuses_unknown_architectures_and_int8_without_photos(tmp_path, capsys):
    assert main(["no_such_net.yaml", "--out", str(tmp_path / "x.onnx")]) == 2
    assert "not an ultralytics architecture file" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()
    with pytest.raises(SystemExit):
        main(["yolo11n.yaml", "--out", str(tmp_path / "x.onnx"), "--int8"])
    assert main(["yolo11n.yaml", "--out", str(tmp_path / "n.onnx"), "--box", "128", "256"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["box"] == [128, 256]
