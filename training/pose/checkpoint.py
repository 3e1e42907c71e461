"""Checkpoints: the weights plus everything needed to rebuild, evaluate and export the model.

Written atomically (temp file, then rename) so an interrupted save never leaves a file that looks
like a checkpoint but is not. Reading is the runtime's job (the torch pose backend runs ``.pt``
files): :func:`carpose.pose.load_checkpoint`, re-exported here so training code reads and writes
checkpoints through one module; the format constant and the networks (carpose.nets) live in the
core too, so the core never imports this package.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from carpose.pose import CHECKPOINT_FORMAT, load_checkpoint

__all__ = ["load_checkpoint", "save_checkpoint"]


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
