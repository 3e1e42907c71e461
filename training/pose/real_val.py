"""Real-photo validation while training: score the hand-labelled real cars after every epoch.

The renders are what the network learns from, but real camera frames are what it is for, and the
synthetic validation split says little about them (98 % on renders against 78 % on real cars). So
``carpose-train --real DIR`` crops the labelled cars of a KITTI-format folder once (the project's
real validation set, ``data/real/nuscenes_front``: labels in the repo, images in ``../shared``), and
after every epoch scores them; ``best.pt`` is then the epoch with the best real score. Only the
*choice* of checkpoint sees these labels, never a gradient: it is a validation set, not training data.

Selection key, in order: Acc@30 on the "sure" labels, fewer flips (> 150 deg), lower MedErr.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from carpose.azimuth_head import decode
from carpose.convention import angular_error
from carpose.crop import CropSpec
from carpose.eval.label_crops import kitti_crops
from carpose.eval.scoring import azimuth_error_stats


@dataclass
class RealValSet:
    """Labelled real crops (RGB uint8, N x S x S x 3), cut once at start-up."""

    name: str
    crops: np.ndarray
    azimuth_deg: np.ndarray
    sure: np.ndarray

    def __len__(self) -> int:
        return len(self.azimuth_deg)


def load_real_val(root: str | Path, spec: CropSpec, images: str | Path | None = None) -> RealValSet:
    """Every labelled car of the folder (no height/truncation filter: the set's own rule is >= 30 px)."""
    kc = kitti_crops(root, spec, min_height=0, max_truncation=1.0, max_occlusion=3, progress=False,
                     images=images)
    if len(kc) == 0:
        raise FileNotFoundError(f"{root}: no labelled car with a readable image "
                                f"(images: {images or Path(root) / 'image_2'})")
    return RealValSet(Path(root).name, kc.crops, kc.azimuth_deg, kc.sure)


@torch.no_grad()
def score_real(model: torch.nn.Module, real: RealValSet, device: torch.device, half_window: int,
               batch: int = 128) -> dict:
    """Metrics of ``model`` (any carpose net with ``logits``) on the real crops: all and sure."""
    was_training = model.training
    model.eval()
    probs = []
    for i in range(0, len(real), batch):
        x = torch.from_numpy(np.ascontiguousarray(real.crops[i:i + batch].transpose(0, 3, 1, 2))).float()
        probs.append(torch.softmax(model.logits(x.to(device)), 1).float().cpu().numpy())
    model.train(was_training)
    pred, _ = decode(np.concatenate(probs), half_window)
    err = np.asarray(angular_error(pred, real.azimuth_deg)).reshape(-1)
    return {"all": azimuth_error_stats(err), "sure": azimuth_error_stats(err[real.sure])}


def selection_key(m: dict) -> tuple[float, int, float]:
    """Smaller is better: (-Acc@30, flips, MedErr) on the sure labels."""
    s = m["sure"] if m["sure"].get("n") else m["all"]
    return (-s["acc_30"], s["flips"], s["med_err_deg"])
