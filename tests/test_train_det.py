"""carpose-train-det end to end on a tiny real dataset: rendered scenes -> YOLO export -> one epoch
of ultralytics training from scratch -> ONNX -> loaded by carpose's detector. Checks the plumbing
(no downloads, files where the README says), not accuracy."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import torch

from carpose.detect import DetectorConfig, YoloDetector
from training.detector.train import main


def test_train_det_cli_trains_exports_and_loads(pose_scenes, tmp_path):
    out, onnx = tmp_path / "det", tmp_path / "det.onnx"
    assert main([str(pose_scenes), "--out", str(out), "--epochs", "1", "--imgsz", "128", "--batch", "4",
                 "--workers", "0", "--export", str(onnx)]) == 0
    info = json.loads((out / "det_train.json").read_text())
    assert info["epochs"] == 1 and info["onnx"] == str(onnx)
    labels = sorted((out / "yolo_data" / "labels").rglob("*.txt"))
    assert len(labels) == 4 and len(list((out / "yolo_data" / "labels" / "val").glob("*.txt"))) == 1
    assert any(p.read_text().strip() for p in labels)  # one label file per scene
    det = YoloDetector(DetectorConfig(weights=onnx, conf=0.001))
    assert det.config.imgsz == 128 and det.classes == {0: "car"}
    dets = det.detect(np.zeros((240, 320, 3), np.uint8))
    assert all(0 <= d.box_xyxy[0] < d.box_xyxy[2] <= 320 for d in dets)


def test_onnx_warm_start_reproduces_the_exported_model(pose_scenes, tmp_path):
    """The shipped detector exists only as ONNX (BatchNorm folded); a new run starts from it."""
    from training.detector.network_input import network_inputs
    from training.detector.warm_start import max_output_difference, onnx_to_pt

    out, onnx = tmp_path / "det", tmp_path / "det.onnx"
    assert main([str(pose_scenes), "--out", str(out), "--epochs", "1", "--imgsz", "128", "--batch", "4",
                 "--workers", "0", "--export", str(onnx)]) == 0
    pt = onnx_to_pt(onnx, tmp_path / "back.pt")
    # boxes are in input pixels (0..128); the .pt stores FP16, hence a small tolerance
    assert max_output_difference(onnx, pt, size=128) < 0.5
    # Training normalises by the batch's statistics: with identity BatchNorms that is another
    # network; calibrated on the batch, the same one (and still the exported one at inference).
    photos = sorted((out / "yolo_data" / "images").rglob("*.jpg"))
    calibrated = onnx_to_pt(onnx, tmp_path / "calibrated.pt", calibration=photos, imgsz=128)
    assert max_output_difference(onnx, calibrated, size=128) < 0.5
    batch = torch.from_numpy(network_inputs(photos, (128, 128)))
    gap = {p.stem: train_vs_eval_gap(p, batch) for p in (pt, calibrated)}
    assert gap["calibrated"] < 1e-2 < gap["back"], gap
    # and training goes on from it, gently (--lr0: AdamW at that rate, not ultralytics' 'auto', which
    # would ignore it): a rectangular export for wide cameras
    out2, onnx2 = tmp_path / "det2", tmp_path / "det2.onnx"
    assert main([str(pose_scenes), "--out", str(out2), "--epochs", "1", "--imgsz", "128", "--batch", "4",
                 "--workers", "0", "--init", str(onnx), "--lr0", "0.0005", "--export", str(onnx2),
                 "--export-hw", "96", "128", "--close-mosaic", "0", "--seed", "3"]) == 0
    args = (out2 / "train" / "args.yaml").read_text().splitlines()
    assert "optimizer: AdamW" in args and "lr0: 0.0005" in args
    assert "close_mosaic: 0" in args  # mosaics to the end
    assert "seed: 3" in args and "seed: 0" in (out / "train" / "args.yaml").read_text().splitlines()
    assert "close_mosaic: 1" in (out / "train" / "args.yaml").read_text().splitlines()  # default: the last epoch
    assert "warmup_bias_lr: 0.0" in args  # not ultralytics' 0.1, which undoes a warm start under AdamW
    det = YoloDetector(DetectorConfig(weights=onnx2, conf=0.001))
    assert det.input_hw == (96, 128)


def train_vs_eval_gap(pt, batch) -> float:
    """Largest difference of the raw head maps in training mode (BatchNorm on the batch's own
    statistics) and in inference mode (running statistics), relative to their size."""
    from ultralytics import YOLO

    net = YOLO(str(pt), task="detect", verbose=False).model.float()
    head = net.model[-1]
    outs = []
    for bn_training in (True, False):
        net.train(bn_training)
        head.training = True  # raw maps either way
        with torch.no_grad():
            outs.append(net(batch))
    a, b = (torch.cat([t.flatten() for t in tensors(o)]) for o in outs)
    return float((a - b).abs().max() / b.abs().max())


def tensors(out) -> list:
    """Every tensor of a (nested) model output."""
    if torch.is_tensor(out):
        return [out]
    items = out.values() if isinstance(out, dict) else out if isinstance(out, (list, tuple)) else []
    return [t for item in items for t in tensors(item)]


def test_training_loads_no_integration_callbacks():
    """ultralytics' trainer imports every integration whose setting is on; its raytune callback
    imports Ray, which then reads its configuration for the whole process (CI's Ray cluster test
    could not connect after a detector training had run). In a fresh process, as a trainer starts."""
    code = (
        "import sys\n"
        "from collections import defaultdict\n"
        "import carpose.detect\n"
        "from training.detector.train import no_integration_callbacks\n"
        "no_integration_callbacks()\n"
        "from ultralytics.utils.callbacks.base import add_integration_callbacks\n"
        "class DetectionTrainer:\n"
        "    callbacks = defaultdict(list)\n"
        "add_integration_callbacks(DetectionTrainer())\n"
        "print('ray' in sys.modules, 'mlflow' in sys.modules, 'wandb' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-3:] == ["False", "False", "False"]


CUT_OFF = """
import os, sys
from ultralytics.utils.callbacks import base
from training.detector.train import main

def cut_off(trainer):  # the session ends right after the first epoch is saved: no cleanup, like a kill
    os._exit(3)

base.default_callbacks["on_model_save"].append(cut_off)
main(sys.argv[1:])
"""


def test_a_cut_off_run_resumes_where_it_stopped(pose_scenes, tmp_path):
    """Issue 42: a training longer than a session goes on from its last finished epoch (optimizer and
    schedule included) and ends as an uncut run would: every epoch's weights, the chosen ONNX."""
    out, onnx = tmp_path / "det", tmp_path / "det.onnx"
    args = [str(pose_scenes), "--out", str(out), "--epochs", "3", "--imgsz", "128", "--batch", "4", "--workers",
            "0", "--export", str(onnx)]
    cut = subprocess.run([sys.executable, "-c", CUT_OFF, *args], capture_output=True, text=True, timeout=600)
    assert cut.returncode == 3, cut.stderr[-2000:]
    weights = out / "train" / "weights"
    assert sorted(p.name for p in weights.glob("epoch*.pt")) == ["epoch0.pt"] and not onnx.exists()
    from training.detector.train import resume_point

    assert resume_point(weights / "last.pt") == (1, 3)
    first = (weights / "epoch0.pt").read_bytes()
    assert main([*args, "--resume"]) == 0
    assert (weights / "epoch0.pt").read_bytes() == first  # a new run would have trained and saved it again
    rows = (out / "train" / "results.csv").read_text().strip().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [1, 2, 3]  # epochs 2 and 3 added, epoch 1 not trained again
    assert {p.name for p in weights.glob("epoch*.pt")} == {"epoch0.pt", "epoch1.pt", "epoch2.pt"}
    assert onnx.exists() and json.loads((out / "det_train.json").read_text())["onnx"] == str(onnx)
    assert main([*args, "--resume"]) == 2  # a finished run: a clear error, nothing trained


def test_cpu_training_computes_on_every_core(pose_scenes, tmp_path, monkeypatch):
    """ultralytics leaves one core to a data loader it does not run on a CPU (one torch thread on a
    2-core machine); carpose-train-det computes on all of them."""
    import os

    from ultralytics.utils.callbacks import base

    seen = []
    monkeypatch.setitem(base.default_callbacks, "on_train_epoch_end",
                        [*base.default_callbacks["on_train_epoch_end"], lambda t: seen.append(torch.get_num_threads())])
    assert main([str(pose_scenes), "--out", str(tmp_path / "det"), "--epochs", "1", "--imgsz", "128", "--batch",
                 "4", "--workers", "0"]) == 0
    assert seen == [os.cpu_count()]
