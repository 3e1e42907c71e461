"""Turn an exported ultralytics ONNX detector back into trainable ``.pt`` weights.

Why: on a 2-core CPU a detector trains a few epochs per hour, so a new run should start from the
last shipped detector rather than from random weights, and the repository keeps only the ONNX
file. ultralytics exports with the parameter names of the PyTorch module and BatchNorm folded into
each convolution; this puts every folded weight back into its convolution and makes the BatchNorm
after it an identity plus the folded bias (running mean 0, variance 1 - eps, scale 1), which gives
the same outputs.

An identity BatchNorm is right at inference but wrong in training, where BatchNorm normalises by the
batch's own statistics: every layer's output would be rescaled to unit variance and the warm start
lost at the first step (the loss of the shipped detector started 4x its trained level). Given
calibration images, :func:`calibrate_batchnorms` gives each BatchNorm the mean and variance of its
input on them and a scale and shift that undo them: the same outputs at inference, and nearly the
same under the batch statistics of training (the pose model's warm start does the same).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.detector.network_input import network_inputs


def blank_detector(arch: str, names: dict[int, str]):
    """``arch`` (an ultralytics model file such as ``yolo11n.yaml``) with ``names`` as its classes and
    freshly initialised weights: the network a warm start fills, or one timed untrained (arch_probe)."""
    from ultralytics.nn.tasks import DetectionModel, yaml_model_load

    import carpose.detect  # noqa: F401  (offline ultralytics)

    cfg = yaml_model_load(arch)
    cfg.pop("yaml_file", None)
    cfg["nc"] = len(names)
    net = DetectionModel(cfg, verbose=False)
    net.names = names
    return net


def save_detector(net, arch: str, out_pt: str | Path) -> Path:
    """``net`` written as an ultralytics checkpoint (what ``YOLO(out_pt)``, the trainer and the exporter load)."""
    from ultralytics import YOLO

    yolo = YOLO(arch, task="detect", verbose=False)  # the wrapper that saves checkpoints ultralytics reloads
    yolo.model = net
    out_pt = Path(out_pt)
    out_pt.parent.mkdir(parents=True, exist_ok=True)
    yolo.save(str(out_pt))
    return out_pt


def onnx_to_pt(onnx_path: str | Path, out_pt: str | Path, arch: str = "yolo11n.yaml",
               calibration: list[str | Path] | None = None, imgsz: int = 640) -> Path:
    """Write ``out_pt``: ``arch`` with the class names and weights of ``onnx_path``; with
    ``calibration`` (image files), its BatchNorms calibrated on them at ``imgsz``
    (:func:`calibrate_batchnorms`), as a training run needs."""
    import ast

    import onnx
    import torch
    from onnx import numpy_helper

    proto = onnx.load(str(onnx_path))
    meta = {p.key: p.value for p in proto.metadata_props}
    names = ast.literal_eval(meta.get("names", "{0: 'car'}"))
    weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in proto.graph.initializer}
    net = blank_detector(arch, names)  # ``arch`` with the ONNX file's classes
    modules = dict(net.named_modules())
    used = set()
    with torch.no_grad():
        for name, tensor in weights.items():
            if not name.endswith((".weight", ".bias")):
                continue
            owner, kind = name.rsplit(".", 1)
            mod = modules.get(owner)
            if mod is None or not hasattr(mod, kind):
                continue
            parent = modules.get(owner.rsplit(".", 1)[0]) if owner.endswith(".conv") else None
            bn = getattr(parent, "bn", None) if parent is not None else None
            if isinstance(bn, torch.nn.BatchNorm2d) and getattr(mod, "bias", None) is None:
                if kind == "weight":
                    mod.weight.copy_(tensor)
                else:  # folded bias -> the BatchNorm's shift; the rest of the BN is an identity
                    bn.weight.fill_(1.0)
                    bn.bias.copy_(tensor)
                    bn.running_mean.zero_()
                    bn.running_var.fill_(1.0 - bn.eps)
            else:
                getattr(mod, kind).copy_(tensor)
            used.add(name)
    missing = [n for n in weights if n.endswith((".weight", ".bias")) and n not in used and "dfl" not in n]
    if missing:
        raise ValueError(f"{onnx_path}: {len(missing)} tensors have no place in {arch}: {missing[:4]}")
    if calibration:
        calibrate_batchnorms(net, network_inputs(calibration, (imgsz, imgsz)))
    return save_detector(net, arch, out_pt)


def calibrate_batchnorms(net, images: np.ndarray, batch: int = 8) -> None:
    """Give every BatchNorm of ``net`` (identities after :func:`onnx_to_pt`) the per-channel mean m
    and variance v of its input on ``images``, scale sqrt(v + eps) and shift b + m: at inference
    (x - m) / sqrt(v + eps) * sqrt(v + eps) + b + m = x + b, the exported function unchanged, and in
    training a batch like these images is normalised to nearly the same output. One pass suffices:
    the outputs, so every later layer's input, do not change."""
    import torch

    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    sums = {id(b): [0.0, 0.0, 0] for b in bns}

    def record(module, inputs):
        x = inputs[0].detach().double()
        acc = sums[id(module)]
        acc[0] = acc[0] + x.sum(dim=(0, 2, 3))
        acc[1] = acc[1] + (x * x).sum(dim=(0, 2, 3))
        acc[2] += x.numel() // x.shape[1]

    hooks = [b.register_forward_pre_hook(record) for b in bns]
    net.float().eval()
    try:
        with torch.no_grad():
            for i in range(0, len(images), batch):
                net(torch.from_numpy(images[i:i + batch]))
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        for b in bns:
            s, ss, n = sums[id(b)]
            mean = s / n
            var = (ss / n - mean * mean).clamp_min(0.0)
            b.running_mean.copy_(mean.float())
            b.running_var.copy_(var.float())
            b.weight.copy_(torch.sqrt(var + b.eps).float())
            b.bias.add_(mean.float())


def fold_batchnorms(net) -> None:
    """Fold every BatchNorm of ``net`` into the convolution before it, in the form
    :func:`onnx_to_pt` gives (scale 1, mean 0, variance 1 - eps, the folded bias as its shift): the
    same function, and the same parameter layout as a detector read back from ONNX, so that weights
    of both origins can be averaged (carpose-det-soup). A trained ``.pt`` keeps real statistics;
    averaged with an identity BatchNorm they would mean nothing."""
    import torch

    convs = {name: m for name, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)}
    with torch.no_grad():
        for name, bn in net.named_modules():
            if not isinstance(bn, torch.nn.BatchNorm2d):
                continue
            conv = convs.get(name.rsplit(".", 1)[0] + ".conv") if "." in name else None
            if conv is None or conv.bias is not None:
                raise ValueError(f"{name}: a BatchNorm without its bias-free convolution: cannot fold")
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
            bn.bias.copy_(bn.bias - scale * bn.running_mean)
            bn.weight.fill_(1.0)
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)


def as_weights(path: str | Path, out_pt: str | Path, arch: str = "yolo11n.yaml",
               calibration: list[str | Path] | None = None, imgsz: int = 640) -> Path:
    """ultralytics weights for a detector given as ``.pt`` (returned as it is) or as an exported
    ``.onnx`` (turned back into ``out_pt``, its BatchNorms calibrated on ``calibration`` images if
    given): what training, teachers and soups start from."""
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        return path
    Path(out_pt).parent.mkdir(parents=True, exist_ok=True)
    return onnx_to_pt(path, out_pt, arch, calibration, imgsz)


def max_output_difference(onnx_path: str | Path, pt_path: str | Path, size: int = 320, seed: int = 0) -> float:
    """Largest absolute difference of the raw head outputs of the two models on a random image."""
    import onnxruntime as ort
    import torch
    from ultralytics import YOLO

    x = np.random.default_rng(seed).uniform(0, 1, (1, 3, size, size)).astype(np.float32)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    a = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    net = YOLO(str(pt_path), task="detect", verbose=False).model.float().eval()
    with torch.no_grad():
        b = net(torch.from_numpy(x))[0].numpy()
    return float(np.abs(a - b).max())
