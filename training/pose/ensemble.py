"""Several pose networks as one ONNX: the mean of their bin probabilities (``carpose-export A B ...``),
or of their weights (``carpose-export A B --soup``: ``build_soup``).

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
from training.pose.warm_start import fold_batchnorm, load_pose_network

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


def _load_members(paths: list[str | Path]) -> tuple[list[nn.Module], list[dict]]:
    """Every member's network (eval mode) and metadata; ValueError when they disagree on a crop."""
    if len(paths) < 2:
        raise ValueError("an ensemble or a soup needs at least two members")
    members, metas = zip(*(load_pose_network(p) for p in paths), strict=True)
    first = metas[0]
    for p, m in zip(paths[1:], metas[1:], strict=True):
        differ = [k for k in SHARED_KEYS if m.get(k) != first.get(k)]
        if differ:
            raise ValueError(f"{p} differs from {paths[0]} in {differ}: members must read the same crops")
    return list(members), list(metas)


def _combined_metadata(paths: list[str | Path], metas: list[dict], kind: str,
                       weights: list[float] | None = None) -> dict:
    """The first member's metadata, with every member listed under ``kind`` and the union of their
    provenance (what the leak checks of carpose.eval.real_sources.leaks_in_metadata read)."""
    meta = dict(metas[0])
    meta["model_version"] = f"{kind}:" + "+".join(str(m.get("model_version", "?")) for m in metas)
    meta[kind] = [{"file": str(p), "model_version": m.get("model_version"), "train_files": m.get("train_files"),
                   "init": m.get("init"), "selected_on": m.get("selected_on"), "leaks": leaks_in_metadata(m)}
                  | ({"weight": w} if weights else {})
                  for p, m, w in zip(paths, metas, weights or [None] * len(metas), strict=True)]
    for key in ("train_files", "train_backgrounds", "pseudo_labelled_photos"):
        meta[key] = sorted({str(f) for m in metas for f in (m.get(key) or [])})
    meta["bn_adapted"] = next((m["bn_adapted"] for m in metas if m.get("bn_adapted")), None)
    return meta


def build_ensemble(paths: list[str | Path]) -> tuple[MeanOfProbs, dict]:
    """The averaging network and its metadata; ValueError when the members disagree on a crop."""
    members, metas = _load_members(paths)
    return MeanOfProbs(members).eval(), _combined_metadata(paths, metas, "ensemble")


@torch.no_grad()
def build_soup(paths: list[str | Path], weights: list[float] | None = None) -> tuple[nn.Module, dict]:
    """One posenet whose weights are the weighted mean of the members' (``carpose-export --soup``).

    Why: runs fine-tuned from the same model (issue 21: the stages and epochs of one lineage) move a
    handful of real cars each way from epoch to epoch; the mean of their weights is one network of
    the same cost that sits between them, where an ensemble costs a pass per member. Members are
    compared in the folded form (``warm_start.fold_batchnorm``, the form of an ONNX export), so
    checkpoints and exports mix. Only members of one lineage make sense: the weights of two networks
    trained apart do not line up, and nothing here can tell (measure the soup on the benchmark).
    """
    members, metas = _load_members(paths)
    if any(m.get("arch") != "posenet" for m in metas):
        raise ValueError("a soup averages posenet weights; an ensemble (no --soup) takes any members")
    w = [1.0] * len(members) if not weights else [float(x) for x in weights]
    if len(w) != len(members) or min(w) < 0 or sum(w) <= 0:
        raise ValueError(f"a soup of {len(members)} members needs as many weights >= 0, not all 0; got {weights}")
    w = [x / sum(w) for x in w]
    states = [fold_batchnorm(m).state_dict() for m in members]
    soup = members[0]
    soup.load_state_dict({k: sum(wi * s[k] for wi, s in zip(w, states, strict=True))
                          if v.is_floating_point() else v for k, v in states[0].items()})
    return soup.eval(), _combined_metadata(paths, metas, "soup", w)
