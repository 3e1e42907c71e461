"""A trainable ``posenet`` from an exported pose ONNX (such as the shipped ``models/carpose_pose.onnx``).

Why: the shipped model's checkpoint is not in the repository, only its ONNX export, whose
BatchNorm layers were folded into the convolutions. Fine-tuning from it costs a fraction of a run
from scratch on a 2-core CPU. The folded weights go back into the convolutions; each BatchNorm is
then set so that the network computes exactly what the ONNX computes in eval mode, *and* so that
its batch statistics on training crops match (``calibrate_batchnorm``): a BatchNorm left at mean 0 /
variance 1 would renormalise every layer at the first training step and throw the warm start away.

For a folded convolution ``y = W'x + b'`` whose outputs have mean ``m`` and std ``s`` on training
crops, the BatchNorm gets running mean ``m``, variance ``s^2``, weight ``s`` and bias ``b' + m``:
in eval mode ``(y0 - m) / s * s + b' + m = W'x + b'`` (exact), and in training mode a batch with
those statistics gives the same.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from carpose.nets import PoseNet, build_model
from carpose.pose import load_checkpoint


def _convs_by_shape(model: nn.Module) -> dict[tuple[int, ...], tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """Every conv of the posenet with the BatchNorm that follows it, keyed by weight shape (unique in
    posenet: each stage has its own widths)."""
    pairs = {}
    mods = list(model.modules())
    for i, m in enumerate(mods):
        if isinstance(m, nn.Conv2d):
            bn = next(x for x in mods[i + 1:] if isinstance(x, nn.BatchNorm2d))
            key = tuple(m.weight.shape)
            if key in pairs:
                raise ValueError(f"two convolutions of shape {key}: cannot match by shape")
            pairs[key] = (m, bn)
    return pairs


def _set_folded(conv: nn.Conv2d, bn: nn.BatchNorm2d, weight: torch.Tensor, bias: torch.Tensor) -> None:
    """Give a conv + BatchNorm pair the folded form ``y = W'x + b'`` (the BatchNorm an identity plus bias
    in eval mode): how an ONNX export stores it, and what weight soups average."""
    conv.weight.data = weight
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0 - bn.eps)
    bn.weight.data.fill_(1.0)
    bn.bias.data = bias


@torch.no_grad()
def fold_batchnorm(model: PoseNet) -> PoseNet:
    """Fold every BatchNorm's eval-mode statistics into its convolution, in place (the form of
    ``onnx_to_posenet``; eval outputs unchanged). Why: a trained checkpoint and an ONNX export of the
    same lineage only have comparable weights in this form, so it is the one a soup averages."""
    for conv, bn in _convs_by_shape(model).values():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        _set_folded(conv, bn, conv.weight * scale[:, None, None, None], bn.bias - bn.running_mean * scale)
    return model.eval()


def onnx_to_posenet(path: str | Path) -> tuple[PoseNet, dict]:
    """The posenet and the ``carpose`` metadata of an exported pose ONNX; eval outputs equal the ONNX's."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    meta = json.loads(next(p.value for p in m.metadata_props if p.key == "carpose"))
    if meta.get("arch") != "posenet":
        raise ValueError(f"{path}: warm start supports posenet exports, this is {meta.get('arch')!r}")
    model = build_model("posenet", int(meta["bins"]))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    pairs = _convs_by_shape(model)
    seen = set()
    for node in m.graph.node:
        if node.op_type == "Conv":
            w, b = inits[node.input[1]], inits[node.input[2]]
            _set_folded(*pairs[tuple(w.shape)], torch.from_numpy(w.copy()), torch.from_numpy(b.copy()))
            seen.add(tuple(w.shape))
        elif node.op_type == "Gemm":
            model.head.weight.data = torch.from_numpy(inits[node.input[1]].copy())
            model.head.bias.data = torch.from_numpy(inits[node.input[2]].copy())
            seen.add("head")
    if len(seen) != len(pairs) + 1:
        raise ValueError(f"{path}: {len(seen)} of {len(pairs) + 1} layers found: not a posenet export")
    return model.eval(), meta


def load_pose_network(path: str | Path) -> tuple[nn.Module, dict]:
    """A pose network in eval mode and its ``carpose`` metadata, from a checkpoint or a pose ONNX export
    (``onnx_to_posenet``: its BatchNorms still folded, exact in eval mode only)."""
    if Path(path).suffix.lower() == ".onnx":
        return onnx_to_posenet(path)
    model, ck = load_checkpoint(path)
    return model.eval(), ck["metadata"]


@torch.no_grad()
def calibrate_batchnorm(model: PoseNet, crops: np.ndarray) -> None:
    """Give every BatchNorm of a warm-started posenet the statistics of its input on ``crops`` (RGB
    uint8 N x S x S x 3) without changing what the network computes in eval mode (module docstring)."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    stats: dict[nn.BatchNorm2d, tuple[torch.Tensor, torch.Tensor]] = {}

    def hook(mod: nn.BatchNorm2d, inp: tuple[torch.Tensor], _out: torch.Tensor) -> None:
        x = inp[0].double()
        stats[mod] = (x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False))

    handles = [b.register_forward_hook(hook) for b in bns]
    model.eval()
    model.logits(torch.from_numpy(np.ascontiguousarray(crops.transpose(0, 3, 1, 2))).float())
    for h in handles:
        h.remove()
    for bn in bns:
        mean, var = stats[bn]
        std = torch.sqrt(var + bn.eps)
        bn.bias.data = (bn.bias.double() + mean).float()  # b' + m, with b' the folded bias
        bn.weight.data = std.float()
        bn.running_mean.copy_(mean.float())
        bn.running_var.copy_((std * std - bn.eps).clamp_min(0).float())
