"""Checkpoints: the weights plus everything needed to rebuild, evaluate and export the model.

Written atomically (temp file, then rename) so an interrupted save never leaves a file that looks
like a checkpoint but is not; read with clear errors for missing, corrupt or foreign files.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from carpose.pose import CHECKPOINT_FORMAT, PoseModelError, check_metadata
from training.pose.nets import build_model


def save_checkpoint(path: str | Path, model: torch.nn.Module, metadata: dict, extra: dict | None = None) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": CHECKPOINT_FORMAT, "version": 1, "arch": metadata["arch"], "bins": metadata["bins"],
             "metadata": metadata, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             **(extra or {})}
    tmp = p.with_name(p.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, p)
    return p


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """(model in eval mode, checkpoint dict). Raises FileNotFoundError / PoseModelError."""
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
