"""scripts/gpu_train_det.sh at toy size on the CPU (TOY=1), so the GPU recipe cannot rot: scenes
rendered, the shipped detector widened, a YOLO11s trained from it through carpose-train-det and exported
as the shipped file is; the parts a device call brings back put together again; a second call finds the
run done and trains nothing."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
from conftest import REPO


def run_recipe(tmp_path, runs) -> subprocess.CompletedProcess:
    env = os.environ | {"TOY": "1", "RUNS": str(runs), "PARTS": str(runs / "parts"),
                        "CARPOSE_SHARED": str(tmp_path / "no_shared")}  # procedural cars only: hermetic
    return subprocess.run(["bash", str(REPO / "scripts" / "gpu_train_det.sh")], env=env, capture_output=True,
                          text=True, timeout=600)


def test_gpu_recipe_runs_at_toy_size(tmp_path):
    from ultralytics import YOLO

    from carpose.detect import DetectorConfig, YoloDetector, onnx_input_size

    runs = tmp_path / "runs"
    done = run_recipe(tmp_path, runs)
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads((runs / "det_train.json").read_text())
    assert info["arch"] == "yolo11s.yaml" and info["epochs"] == 1
    args = (runs / "train" / "args.yaml").read_text().splitlines()
    assert f"model: {runs / 'init_from_onnx.pt'}" in args  # the widened network, its BatchNorms calibrated
    assert "pretrained: true" in args and "lr0: 0.0005" in args
    onnx = runs / "carpose_det_s.onnx"
    assert onnx_input_size(onnx) == ((352, 640), False)  # exported as the shipped file: free size, its box
    det = YoloDetector(DetectorConfig(weights=onnx, conf=0.01, device="cpu"))
    assert det.classes == {0: "car"} and isinstance(det.detect(np.full((375, 1242, 3), 100, np.uint8)), list)
    parts = runs / "parts"
    joined = b"".join(p.read_bytes() for p in sorted(parts.glob("carpose_det_s.onnx.part*")))
    assert joined == onnx.read_bytes() and all(p.stat().st_size <= 16 * 2**20 for p in parts.iterdir())
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"".join(p.read_bytes() for p in sorted(parts.glob("last_weights.pt.part*"))))
    assert YOLO(str(weights), task="detect").model.yaml["scale"] == "s"  # what a next session goes on from
    again = run_recipe(tmp_path, runs)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Starting training" not in again.stdout + again.stderr  # a finished run is not trained again
