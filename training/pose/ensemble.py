"""Several pose networks as one ONNX: the mean of their bin probabilities (``carpose-export A B ...``).

Why: two posenets trained on different data (issue 21: the stage-3 model on crops files, a stage-4
model on composites with neighbour cars) are wrong on different real cars; averaging their
probabilities outvotes a front/rear confusion that one of them makes with little confidence, as
mirror TTA does for one network. One file keeps every runtime as it is (ONNX Runtime, TensorRT, the
node): the members run side by side inside the graph, so the cost is one network pass per member.

Members are checkpoints (``.pt``) or pose ONNX exports (turned back into networks by
``training.pose.warm_start.load_pose_network``, exact in eval mode). They must agree on what a crop is
(input size, crop recipe, bins, normalisation, convention); the ensemble's metadata is the first
member's with ``ensemble`` listing every member (its file, version, training files and init).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from carpose.eval.real_sources import leaks_in_metadata
from training.pose.warm_start import load_pose_network

#: Metadata every member must share: what a crop is and what the output bins mean.
SHARED_KEYS = ("arch", "bins", "input_size", "crop", "mean", "std", "convention_version", "decode_half_window")


class MeanOfProbs(nn.Module):
    """Runs every member on the same batch and averages their probabilities (each sums to 1, so does
    the mean)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(0)


def build_ensemble(paths: list[str | Path]) -> tuple[MeanOfProbs, dict]:
    """The averaging network and its metadata; ValueError when the members disagree on a crop."""
    if len(paths) < 2:
        raise ValueError("an ensemble needs at least two members")
    members, metas = zip(*(load_pose_network(p) for p in paths), strict=True)
    first = metas[0]
    for p, m in zip(paths[1:], metas[1:], strict=True):
        differ = [k for k in SHARED_KEYS if m.get(k) != first.get(k)]
        if differ:
            raise ValueError(f"{p} differs from {paths[0]} in {differ}: members must read the same crops")
    meta = dict(first)
    meta["model_version"] = "ensemble:" + "+".join(str(m.get("model_version", "?")) for m in metas)
    meta["ensemble"] = [{"file": str(p), "model_version": m.get("model_version"), "train_files": m.get("train_files"),
                         "init": m.get("init"), "selected_on": m.get("selected_on"),
                         "leaks": leaks_in_metadata(m)}
                        for p, m in zip(paths, metas, strict=True)]
    # provenance that leak checks read (carpose.eval.real_sources.leaks_in_metadata): every member's
    for key in ("train_files", "train_backgrounds", "pseudo_labelled_photos"):
        meta[key] = sorted({str(f) for m in metas for f in (m.get(key) or [])})
    meta["bn_adapted"] = next((m["bn_adapted"] for m in metas if m.get("bn_adapted")), None)
    return MeanOfProbs(list(members)).eval(), meta
