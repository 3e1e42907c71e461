"""Pose estimation at run time: car crops in, azimuth + confidence out, from any of three backends.

Every backend runs the same network with the same contract (RGB float32 NCHW in 0..255 -> bin
probabilities (N, K); normalisation and softmax are inside the graph) and the same metadata (the
``carpose`` JSON written at export), so switching backend never changes the preprocessing:

- ``onnxruntime``: ``.onnx`` files; CUDA provider when present and asked for, else CPU. The default.
- ``tensorrt``: ``.engine`` files built by ``carpose-build-engine`` (GPU only).
- ``torch``: ``.pt`` checkpoints written by ``carpose-train`` (for evaluating before export).

No ROS import: the node, the CLIs and the benchmarks all use this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from carpose.azimuth_head import DEFAULT_DECODE_HALF_WINDOW, decode
from carpose.convention import convention_mismatch
from carpose.crop import CropSpec, crop_box, crop_boxes
from carpose.shipped import missing_model_message

if TYPE_CHECKING:
    import torch

BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch")
METADATA_KEY = "carpose"
CHECKPOINT_FORMAT = "carpose-pose-checkpoint"


class PoseModelError(ValueError):
    """The model file cannot be used; the message says why and what to do."""


@dataclass
class PosePrediction:
    azimuth_deg: np.ndarray  # (N,) in [0, 360)
    confidence: np.ndarray  # (N,) in [0, 1]
    probs: np.ndarray  # (N, K)


def check_metadata(meta: dict, source: str) -> dict:
    """Validate the ``carpose`` metadata of a model; returns it. Raises PoseModelError."""
    missing = [k for k in ("input_size", "bins", "convention_version", "crop") if k not in meta]
    if missing:
        raise PoseModelError(f"{source}: carpose metadata lacks {missing}; re-export it with carpose-export")
    if why := convention_mismatch(meta["convention_version"], source):
        raise PoseModelError(f"{why}; retrain it")
    return meta


class OnnxRuntimeBackend:
    """ONNX Runtime session; CUDA execution provider first when ``device`` allows and it exists."""

    name = "onnxruntime"

    def __init__(self, path: Path, device: str = "auto", threads: int = 0) -> None:
        import onnxruntime as ort

        avail = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if device != "cpu" and "CUDAExecutionProvider" in avail:
            providers.insert(0, "CUDAExecutionProvider")
        elif device.startswith("cuda"):
            raise PoseModelError(f"device {device!r} asked for, but ONNX Runtime has no CUDA provider "
                                 f"(available: {avail}); install onnxruntime-gpu or use device 'cpu'")
        opts = ort.SessionOptions()
        # No busy-waiting between runs: ORT's pool spins by default, and in a pipeline that also runs
        # the detector (another ORT session or torch) the spinning threads steal the CPU they need.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise PoseModelError(f"{path} is not a loadable ONNX model: {exc}") from exc
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if raw is None:
            raise PoseModelError(f"{path} has no '{METADATA_KEY}' metadata: it was not exported by carpose-export")
        self.metadata = json.loads(raw)
        self.providers = self.session.get_providers()
        self.input_name = self.session.get_inputs()[0].name

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """A ``carpose-train`` checkpoint (written by training.pose.checkpoint.save_checkpoint): (model in
    eval mode, checkpoint dict). Raises FileNotFoundError / PoseModelError."""
    import torch

    from carpose.nets import build_model

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {p} does not exist")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated/corrupt zips and pickles
        raise PoseModelError(f"{p} is not a readable checkpoint (truncated or corrupt?): {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise PoseModelError(f"{p} is not a carpose pose checkpoint (written by carpose-train)")
    check_metadata(ckpt["metadata"], str(p))
    model = build_model(ckpt["arch"], int(ckpt["bins"]))
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise PoseModelError(f"{p}: weights do not fit arch {ckpt['arch']!r}: {exc}") from exc
    return model.to(map_location).eval(), ckpt


class TorchBackend:
    """A ``carpose-train`` checkpoint run by PyTorch (torch and carpose.nets are imported lazily)."""

    name = "torch"

    def __init__(self, path: Path, device: str = "auto") -> None:
        import torch

        self.torch = torch
        dev = "cuda" if device in ("auto", "cuda") and torch.cuda.is_available() else \
            (device if device.startswith("cuda") else "cpu")
        self.device = torch.device(dev)
        self.model, ckpt = load_checkpoint(path, map_location=self.device)
        self.model.eval()
        self.metadata = ckpt["metadata"]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.model(self.torch.from_numpy(batch).to(self.device)).float().cpu().numpy()


def open_backend(path: str | Path, backend: str = "auto", device: str = "auto"):
    p = Path(path)
    if backend not in BACKENDS:
        raise PoseModelError(f"unknown pose backend {backend!r}; choose one of {BACKENDS}")
    if not p.is_file():
        raise FileNotFoundError(f"pose {missing_model_message(p)}")
    if backend == "auto":
        backend = {".engine": "tensorrt", ".plan": "tensorrt", ".pt": "torch", ".pth": "torch"}.get(
            p.suffix.lower(), "onnxruntime")
    if backend == "onnxruntime":
        return OnnxRuntimeBackend(p, device)
    if backend == "torch":
        return TorchBackend(p, device)
    from carpose.trt_backend import TensorRTPoseBackend

    return TensorRTPoseBackend(p)


def mirror_bins(probs: np.ndarray) -> np.ndarray:
    """Bin probabilities of the mirror image: azimuth a -> 360 - a (``convention.flip_azimuth``).

    Bin 0 is centred on 0 deg, so bin i (centre i*w) maps to bin (K - i) mod K: 0 stays, 90 <-> 270.
    """
    k = probs.shape[1]
    return probs[:, (-np.arange(k)) % k]


class PoseEstimator:
    """Crops -> azimuths. ``predict`` takes RGB uint8 crops (N, S, S, 3) already cut with
    :attr:`crop_spec`; ``predict_boxes`` cuts them from a BGR frame itself.

    ``mirror_tta``: also run every crop's mirror image (one batch of 2N) and average its bin
    probabilities, mirrored back, with the crop's own. A front/rear or left/right confusion that the
    network makes on one view but not on the other is outvoted; it costs one network pass per crop.
    ``None`` (the default) follows the model: its metadata ``mirror_tta`` (set at export when the
    model was chosen with it), else off.
    """

    def __init__(self, model_path: str | Path, backend: str = "auto", device: str = "auto",
                 mirror_tta: bool | None = None) -> None:
        self.model_path = Path(model_path)
        self.backend = open_backend(model_path, backend, device)
        self.metadata = check_metadata(self.backend.metadata, str(model_path))
        self.input_size = int(self.metadata["input_size"])
        self.bins = int(self.metadata["bins"])
        self.crop_spec = CropSpec.from_dict(self.metadata["crop"])
        if self.crop_spec.size != self.input_size:
            raise PoseModelError(f"{model_path}: crop size {self.crop_spec.size} != input size {self.input_size}")
        self.half_window = int(self.metadata.get("decode_half_window", DEFAULT_DECODE_HALF_WINDOW))
        self.mirror_tta = bool(self.metadata.get("mirror_tta", False) if mirror_tta is None else mirror_tta)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def predict(self, crops_rgb: np.ndarray) -> PosePrediction:
        crops = np.asarray(crops_rgb)
        s = self.input_size
        if crops.ndim == 3:
            crops = crops[None]
        if crops.ndim != 4 or crops.shape[1:] != (s, s, 3) or crops.dtype != np.uint8:
            raise ValueError(f"pose model wants uint8 RGB crops (N, {s}, {s}, 3), got {crops.dtype} {crops.shape}")
        if len(crops) == 0:
            return PosePrediction(np.zeros(0), np.zeros(0), np.zeros((0, self.bins), np.float32))
        n = len(crops)
        if self.mirror_tta:
            crops = np.concatenate([crops, crops[:, :, ::-1]])
        batch = np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32)
        probs = np.asarray(self.backend.infer(batch), dtype=np.float32)
        if probs.shape != (len(crops), self.bins) or not np.all(np.isfinite(probs)):
            raise PoseModelError(f"{self.model_path}: backend returned {probs.shape} (finite: "
                                 f"{bool(np.all(np.isfinite(probs)))}), expected ({len(crops)}, {self.bins})")
        if self.mirror_tta:
            probs = 0.5 * (probs[:n] + mirror_bins(probs[n:]))
        return self.decode(probs)

    def decode(self, probs: np.ndarray) -> PosePrediction:
        """Azimuth and confidence of bin probabilities (N, K) as this model decodes them (its
        ``decode_half_window``): also for probabilities changed after the network (carpose.row_prior)."""
        probs = np.asarray(probs, np.float32)
        az, conf = decode(probs, self.half_window)
        return PosePrediction(az, conf, probs)

    def crop(self, image_bgr: np.ndarray, box_xyxy: np.ndarray) -> np.ndarray:
        """One RGB crop of a car alone in its frame (carpose.crop.crop_box; no other car to grey)."""
        return crop_box(image_bgr, box_xyxy, self.crop_spec)[:, :, ::-1]

    def crops(self, image_bgr: np.ndarray, boxes_xyxy: np.ndarray, frame_boxes: np.ndarray | None = None
              ) -> np.ndarray:
        """The RGB crops of cars of a frame exactly as training crops were cut (carpose.crop.crop_boxes:
        a ``grey_nearer`` model gets each car's nearer neighbours among ``frame_boxes``, default the
        boxes themselves, greyed)."""
        return crop_boxes(image_bgr, boxes_xyxy, self.crop_spec, frame_boxes)[:, :, :, ::-1]

    def predict_boxes(self, image_bgr: np.ndarray, boxes_xyxy: np.ndarray) -> PosePrediction:
        return self.predict(self.crops(image_bgr, boxes_xyxy))
