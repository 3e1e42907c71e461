"""Turn an exported ultralytics ONNX detector back into trainable ``.pt`` weights.

Why: on a 2-core CPU a detector trains a few epochs per hour, so a new run should start from the
last shipped detector rather than from random weights, and the repository keeps only the ONNX
file. ultralytics exports with the parameter names of the PyTorch module and BatchNorm folded into
each convolution; this puts every folded weight back into its convolution and makes the BatchNorm
after it an identity plus the folded bias (running mean 0, variance 1 - eps, scale 1), which gives
the same outputs and trains on from there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def onnx_to_pt(onnx_path: str | Path, out_pt: str | Path, arch: str = "yolo11n.yaml") -> Path:
    """Write ``out_pt``: ``arch`` with the class names and weights of ``onnx_path``."""
    import ast

    import onnx
    import torch
    from onnx import numpy_helper
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel, yaml_model_load

    import carpose.detect  # noqa: F401  (offline ultralytics)

    proto = onnx.load(str(onnx_path))
    meta = {p.key: p.value for p in proto.metadata_props}
    names = ast.literal_eval(meta.get("names", "{0: 'car'}"))
    weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in proto.graph.initializer}
    cfg = yaml_model_load(arch)
    cfg.pop("yaml_file", None)
    cfg["nc"] = len(names)
    net = DetectionModel(cfg, verbose=False)  # ``arch`` with the ONNX file's class count
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
    net.names = names
    yolo = YOLO(arch, task="detect", verbose=False)  # the wrapper that saves checkpoints ultralytics reloads
    yolo.model = net
    out_pt = Path(out_pt)
    out_pt.parent.mkdir(parents=True, exist_ok=True)
    yolo.save(str(out_pt))
    return out_pt


def as_weights(path: str | Path, out_pt: str | Path, arch: str = "yolo11n.yaml") -> Path:
    """ultralytics weights for a detector given as ``.pt`` (returned as it is) or as an exported
    ``.onnx`` (turned back into ``out_pt``): what training, teachers and soups start from."""
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        return path
    Path(out_pt).parent.mkdir(parents=True, exist_ok=True)
    return onnx_to_pt(path, out_pt, arch)


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
