"""Detector tests on real ultralytics models with random weights, built from the packaged YOLO11n
yaml (nothing is downloaded), saved as .pt and exported to ONNX like a user's own model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from carpose.detect import (
    COCO_VEHICLES,
    DetectorConfig,
    ExternalBoxes,
    YoloDetector,
    default_class_map,
    detections_from_array,
)
from carpose.results import Detection

REPO = Path(__file__).resolve().parents[1]
COCO_LIKE = {i: f"class{i}" for i in range(80)} | {2: "car", 5: "bus", 7: "truck"}


def _liven(net, seed: int) -> None:
    """Make a random-weight detector behave like a trained one statistically.

    Freshly initialised, the activations shrink ~1e-8-fold through the 100 layers, so every anchor
    scores the class prior exactly and every box collapses. Kaiming-normal convs keep the signal
    alive; the final class / box convs are then set so their logits vary by ~1 across anchors
    around a chosen level (bias cancels the features' channel means): scores spread over (0, 1),
    the arg-max class varies from anchor to anchor, and boxes have a plausible size.
    """
    import torch

    torch.manual_seed(seed)
    net.eval()
    head = net.model[-1]
    finals = [seq[-1] for seq in (*head.cv2, *head.cv3)]
    keep_ids = {id(m) for m in (*finals, *head.dfl.modules())}  # DFL's conv is the fixed 0..15 expectation
    feats: dict[int, torch.Tensor] = {}

    def record(mod, inp, out):
        feats[id(mod)] = inp[0]

    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, torch.nn.Conv2d) and id(mod) not in keep_ids:
                torch.nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
        hooks = [m.register_forward_hook(record) for m in finals]
        net(torch.rand(1, 3, 160, 160))  # channel statistics only: a small input will do
        for h in hooks:
            h.remove()
        for seq, spread, level in [(s, 0.5, 0.0) for s in head.cv2] + [(s, 1.5, -3.0) for s in head.cv3]:
            conv, f = seq[-1], feats[id(seq[-1])]
            mean, std = f.mean((0, 2, 3)), float(f.std((0, 2, 3)).mean())
            conv.weight.normal_(0.0, spread / (std * conv.weight.shape[1] ** 0.5))
            conv.bias.copy_(level - conv.weight[:, :, 0, 0] @ mean)


def _build_model(out_dir: Path, name: str, names: dict[int, str], seed: int = 0) -> Path:
    """Random-weight YOLO11n with ``names`` saved as ``name``.pt the way ultralytics saves checkpoints."""
    from ultralytics import YOLO
    from ultralytics.nn.tasks import yaml_model_load
    from ultralytics.utils import YAML

    cfg = yaml_model_load("yolo11n.yaml")  # packaged yaml, scale 'n' from the name
    cfg.pop("yaml_file", None)
    cfg["nc"] = len(names)
    yaml_path = out_dir / f"yolo11n-{name}.yaml"
    YAML.save(yaml_path, cfg)
    model = YOLO(str(yaml_path), task="detect", verbose=False)
    model.model.names = dict(names)
    _liven(model.model, seed)
    pt = out_dir / f"{name}.pt"
    model.save(str(pt))
    return pt


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("yolo")
    car_pt = _build_model(out, "car", {0: "car"})
    coco_pt = _build_model(out, "coco", COCO_LIKE)
    from ultralytics import YOLO

    with warnings.catch_warnings():  # torch's notice that ultralytics uses the TorchScript-based exporter
        warnings.simplefilter("ignore", DeprecationWarning)
        # simplify=False: onnxslim is not installed, and ultralytics would try to pip-install it.
        onnx = Path(YOLO(str(car_pt), task="detect").export(format="onnx", imgsz=320, simplify=False, verbose=False))
    assert onnx.is_file()
    return {"car_pt": car_pt, "coco_pt": coco_pt, "car_onnx": onnx}


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    from ultralytics.utils import ASSETS

    img = cv2.imread(str(ASSETS / "bus.jpg"))  # a real street photo shipped inside the ultralytics wheel
    assert img is not None
    return img


def _check_detections(dets: list[Detection], image: np.ndarray, conf: float, classes: dict[int, str]) -> None:
    h, w = image.shape[:2]
    for d in dets:
        assert isinstance(d, Detection)
        assert d.box_xyxy.shape == (4,) and d.box_xyxy.dtype == np.float64
        x1, y1, x2, y2 = d.box_xyxy
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        assert d.score >= conf
        assert d.class_id in classes and d.class_name == classes[d.class_id]
    scores = [d.score for d in dets]
    assert scores == sorted(scores, reverse=True)


def test_missing_weights_raise_without_download(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="never downloads"):
        YoloDetector(DetectorConfig(weights="yolo11n.pt"))  # a name ultralytics would fetch from GitHub
    with pytest.raises(FileNotFoundError, match="not found"):
        YoloDetector(DetectorConfig(weights=tmp_path / "nope" / "best.onnx"))
    assert list(tmp_path.iterdir()) == []  # nothing was downloaded here


def test_plain_name_in_current_directory_is_used(models, tmp_path, monkeypatch):
    (tmp_path / "yolo11n.pt").write_bytes(models["car_pt"].read_bytes())
    monkeypatch.chdir(tmp_path)
    det = YoloDetector(DetectorConfig(weights="yolo11n.pt", imgsz=320))
    assert det.weights == tmp_path / "yolo11n.pt"


def test_bad_config_values():
    with pytest.raises(ValueError):
        DetectorConfig(weights="x.pt", conf=1.5)
    with pytest.raises(ValueError):
        DetectorConfig(weights="x.pt", iou=-0.1)
    with pytest.raises(ValueError):
        DetectorConfig(weights="x.pt", max_det=0)


def test_default_class_map():
    assert default_class_map({0: "car"}) == {0: "car"}
    assert default_class_map(COCO_LIKE) == {2: "car"}
    assert default_class_map({0: "vehicle"}) == {0: "car"}  # single-class models detect cars
    with pytest.raises(ValueError, match="no class named 'car'"):
        default_class_map({0: "person", 1: "dog"})
    # a user model with car types: every car-like class, not lorries or buses
    names = {0: "Car", 1: "pickup_truck", 2: "truck", 3: "Mini-Van", 4: "bus", 5: "SUV"}
    assert default_class_map(names) == {0: "car", 1: "car", 3: "car", 5: "car"}
    # 'van' alone is not enough to guess: without a 'car' class the names are ambiguous
    with pytest.raises(ValueError):
        default_class_map({0: "van", 1: "person"})


@pytest.mark.parametrize("key", ["car_pt", "car_onnx"])
def test_detect_single_class_model(models, image, key):
    det = YoloDetector(DetectorConfig(weights=models[key], imgsz=320, device="cpu"))
    assert det.classes == {0: "car"}  # read from the model's names, also from the ONNX metadata
    dets = det.detect(image)
    assert len(dets) > 3
    _check_detections(dets, image, 0.25, {0: "car"})


def test_pt_and_onnx_agree(models, image):
    """The exported model gives the same boxes (the .pt is stored in FP16, hence the tolerance)."""
    pt = YoloDetector(DetectorConfig(weights=models["car_pt"], imgsz=320, conf=0.5))
    ox = YoloDetector(DetectorConfig(weights=models["car_onnx"], imgsz=320, conf=0.5))
    a, b = pt.detect(image), ox.detect(image)
    assert a and abs(len(a) - len(b)) <= 1
    assert np.allclose(a[0].box_xyxy, b[0].box_xyxy, atol=3.0) and a[0].score == pytest.approx(b[0].score, abs=0.02)


def test_fixed_size_onnx_uses_its_own_input_size(models, image):
    # exported at 320 px: asking for 640 would make ONNX Runtime reject the first frame
    ox = YoloDetector(DetectorConfig(weights=models["car_onnx"], imgsz=640, conf=0.5))
    assert ox.config.imgsz == 320
    assert ox.detect(image)
    assert YoloDetector(DetectorConfig(weights=models["car_pt"], imgsz=640)).config.imgsz == 640


def test_rectangular_onnx_runs_at_its_own_shape(models, image, tmp_path):
    """A 16:9 camera wastes 44 % of a square input on padding; a (height, width) ONNX does not, and
    gives the boxes the .pt gives when ultralytics letterboxes the same frame to the same shape."""
    import shutil

    from ultralytics import YOLO

    pt_copy = tmp_path / "car.pt"
    shutil.copyfile(models["car_pt"], pt_copy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        rect = Path(YOLO(str(pt_copy), task="detect").export(format="onnx", imgsz=(256, 320), simplify=False,
                                                              verbose=False))
    ox = YoloDetector(DetectorConfig(weights=rect, imgsz=640, conf=0.5))
    assert ox.input_hw == (256, 320)
    wide = cv2.resize(image, (400, 320))  # letterboxed to 320 x 256 exactly, no padding
    a = YoloDetector(DetectorConfig(weights=models["car_pt"], imgsz=320, conf=0.5)).detect(wide)
    b = ox.detect(wide)
    assert a and abs(len(a) - len(b)) <= 1
    assert np.allclose(a[0].box_xyxy, b[0].box_xyxy, atol=3.0)
    with pytest.raises(ValueError):
        DetectorConfig(weights="x.pt", imgsz=(16, 320))


def test_dynamic_onnx_fits_each_frame_into_its_export_box(models, image, tmp_path):
    """A dynamic ONNX exported for a 256 x 320 box runs there when no size is asked for, keeps each
    frame's aspect and pads only to a multiple of 32: a KITTI-shaped frame costs 128 x 320, not
    256 x 320, and its boxes are the .pt's at the same box (ultralytics' own letterbox)."""
    import shutil

    from carpose.detect import onnx_input_size
    from training.detector.train import export_onnx

    pt_copy = tmp_path / "car.pt"
    shutil.copyfile(models["car_pt"], pt_copy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's exporter notices, and its tracer's about the dynamic head
        dyn = export_onnx(pt_copy, tmp_path / "dyn.onnx", (256, 320), dynamic=True)
    assert onnx_input_size(dyn) == ((256, 320), False)
    assert onnx_input_size(models["car_onnx"]) == (320, True)
    assert onnx_input_size(models["car_pt"]) == (None, False)

    ox = YoloDetector(DetectorConfig(weights=dyn, conf=0.5))  # no size given: the export box
    assert ox.input_hw == (256, 320) and ox.follows_aspect
    wide = cv2.resize(image, (1242, 375))
    assert ox.network_hw(wide.shape[:2]) == (128, 320)  # scale 320/1242 -> 97 rows, padded to 128
    assert ox.network_hw((480, 640)) == (256, 320)
    assert ox.network_hw((900, 1600)) == (192, 320)  # 16:9 in a 5:4 box: the width limits
    a = YoloDetector(DetectorConfig(weights=models["car_pt"], imgsz=(256, 320), conf=0.5)).detect(wide)
    b = ox.detect(wide)
    assert a and abs(len(a) - len(b)) <= 1
    assert np.allclose(a[0].box_xyxy, b[0].box_xyxy, atol=3.0)

    fixed = YoloDetector(DetectorConfig(weights=models["car_onnx"], imgsz=0))  # 0: the model's own, as ROS says
    assert fixed.config.imgsz == 320 and not fixed.follows_aspect and fixed.network_hw(wide.shape[:2]) == (320, 320)
    assert YoloDetector(DetectorConfig(weights=models["car_pt"])).config.imgsz == 640  # a .pt says nothing
    long_side = YoloDetector(DetectorConfig(weights=dyn, imgsz=160))  # asked for: the long side, as ultralytics
    assert long_side.network_hw(wide.shape[:2]) == (64, 160)


def test_class_filter_and_mapping(models, image):
    def per_class(dets):
        return {c: sum(d.class_id == c for d in dets) for c in {d.class_id for d in dets}}

    auto = YoloDetector(DetectorConfig(weights=models["coco_pt"], imgsz=320))
    assert auto.classes == {2: "car"}
    cars = auto.detect(image)
    assert cars and per_class(cars).keys() == {2}

    vehicles = YoloDetector(DetectorConfig(weights=models["coco_pt"], classes=COCO_VEHICLES, imgsz=320))
    mixed = vehicles.detect(image)
    _check_detections(mixed, image, 0.25, COCO_VEHICLES)
    assert len(per_class(mixed)) >= 2

    bus = YoloDetector(DetectorConfig(weights=models["coco_pt"], classes={5: "bus"}, imgsz=320))
    buses = bus.detect(image)
    assert {(d.class_id, d.class_name) for d in buses} == {(5, "bus")}
    # NMS is per class, so filtering picks exactly the same boxes of a class either way
    assert per_class(mixed).get(2, 0) == len(cars) and per_class(mixed).get(5, 0) == len(buses)

    with pytest.raises(ValueError, match="not in the model"):
        YoloDetector(DetectorConfig(weights=models["car_pt"], classes={2: "car"}))


def test_set_thresholds_changes_results(models, image):
    det = YoloDetector(DetectorConfig(weights=models["car_pt"], conf=0.01, iou=0.9, imgsz=320, max_det=300))
    loose = det.detect(image)
    assert len(loose) > 10
    median = float(np.median([d.score for d in loose]))
    det.set_thresholds(conf=median)
    fewer = det.detect(image)
    assert 0 < len(fewer) < len(loose)
    _check_detections(fewer, image, median, {0: "car"})
    det.set_thresholds(conf=0.01, iou=0.1)  # aggressive NMS merges overlapping boxes
    merged = det.detect(image)
    assert 0 < len(merged) < len(loose)
    det.set_thresholds(conf=loose[0].score + 1e-6)
    assert det.detect(image) == []
    with pytest.raises(ValueError):
        det.set_thresholds(conf=2.0)
    with pytest.raises(ValueError):
        det.set_thresholds(iou=-1)


def test_detect_rejects_bad_images(models):
    det = YoloDetector(DetectorConfig(weights=models["car_pt"], imgsz=320))
    with pytest.raises(ValueError):
        det.detect(np.zeros((32, 32), np.uint8))
    with pytest.raises(ValueError):
        det.detect(np.zeros((32, 32, 3), np.float32))


def test_detections_from_array():
    d4 = detections_from_array([[10, 20, 50, 60], [0, 0, 5, 5]])
    assert [d.score for d in d4] == [1.0, 1.0] and all(d.class_name == "car" and d.class_id == 2 for d in d4)
    d5 = detections_from_array(np.array([[10, 20, 50, 60, 0.9], [1, 1, 4, 4, 0.1]]), min_score=0.5)
    assert len(d5) == 1 and d5[0].score == pytest.approx(0.9)
    d6 = detections_from_array([[10, 20, 50, 60, 0.9, 2], [10, 20, 50, 60, 0.8, 7], [1, 1, 9, 9, 0.8, 0]],
                               class_names=COCO_VEHICLES)
    assert [(d.class_id, d.class_name) for d in d6] == [(2, "car"), (7, "truck")]
    clipped = detections_from_array([[-10, -5, 50, 700], [200, 200, 300, 300]], image_shape=(100, 120, 3))
    assert len(clipped) == 1 and np.allclose(clipped[0].box_xyxy, [0, 0, 50, 100])
    assert detections_from_array(np.zeros((0, 4))) == []
    with pytest.raises(ValueError):
        detections_from_array(np.zeros((3, 3)))
    with pytest.raises(ValueError):
        detections_from_array([[10, 10, 5, 20]])
    with pytest.raises(ValueError):
        detections_from_array([[np.nan, 10, 15, 20]])


def test_external_boxes():
    ext = ExternalBoxes(conf=0.3)
    img = np.zeros((100, 100, 3), np.uint8)
    assert ext.detect(img) == []
    ext.set_boxes([[10, 10, 40, 40, 0.9], [50, 50, 90, 120, 0.2]])
    assert len(ext.detect(img)) == 1
    ext.set_thresholds(conf=0.1, iou=0.5)
    dets = ext.detect(img)
    assert len(dets) == 2 and np.allclose(dets[1].box_xyxy, [50, 50, 90, 100])


_OFFLINE_SCRIPT = r"""
import json, socket, sys
attempts = []

def _blocked(kind):
    def f(*args, **kwargs):
        attempts.append([kind, repr(args[:2])])
        raise OSError("network disabled by test")
    return f

socket.socket.connect = _blocked("connect")
socket.socket.connect_ex = _blocked("connect_ex")
socket.create_connection = _blocked("create_connection")
socket.getaddrinfo = _blocked("getaddrinfo")

early_attempts = 0
if sys.argv[1] == "late":  # someone imported ultralytics before carpose, without YOLO_OFFLINE
    import ultralytics.utils
    early_attempts = len(attempts)
    attempts.clear()

import cv2
from carpose.detect import DetectorConfig, YoloDetector
from ultralytics.utils import ASSETS
import ultralytics.utils as uu, ultralytics.utils.checks as uc

img = cv2.imread(str(ASSETS / "bus.jpg"))
counts = []
for w in sys.argv[2:]:
    det = YoloDetector(DetectorConfig(weights=w, imgsz=320, device="cpu"))
    counts.append(len(det.detect(img)))
uc.check_font("Arial.ttf")  # what ultralytics plotting would call: must not download
print(json.dumps({"attempts": attempts, "early": early_attempts, "counts": counts,
                  "online": uu.ONLINE or uc.ONLINE}))
"""


@pytest.mark.parametrize("mode", ["early", "late"])
def test_detect_offline_subprocess(models, tmp_path, mode):
    """With every socket connect/DNS lookup failing (and recorded), loading and running .pt and
    .onnx models works and nothing even tries the network, also without scripts/env.sh's YOLO_OFFLINE."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOLO_", "PYTEST_"))}
    proxy = "http://127.0.0.1:9"
    env.update(http_proxy=proxy, https_proxy=proxy, HTTP_PROXY=proxy, HTTPS_PROXY=proxy,
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
    script = tmp_path / "offline.py"
    script.write_text(textwrap.dedent(_OFFLINE_SCRIPT))
    weights = [str(models["car_pt"]), str(models["car_onnx"])] if mode == "early" else [str(models["car_pt"])]
    proc = subprocess.run([sys.executable, str(script), mode, *weights],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["attempts"] == [], report
    assert report["online"] is False
    assert all(c > 0 for c in report["counts"]), report
    if mode == "late":
        assert report["early"] > 0  # sanity: the recorder does see ultralytics' own DNS probe
