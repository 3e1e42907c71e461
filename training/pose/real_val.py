"""Real-photo validation while training: score the labelled real cars of every source after every epoch.

The renders are what the network learns from, but real camera frames are what it is for, and the
synthetic validation split says little about them (98 % on renders against 62-94 % on real cars). So
``carpose-train --real SOURCE [SOURCE ...]`` crops the labelled cars of each real validation source
once (``carpose.eval.real_sources``: the registered names ``nuscenes_front``, ``kitti_val`` and
``stanford_val`` (the validation classes of the labelled photos), or any KITTI folder ``FOLDER[:IMAGES]``;
each scored with its own filter, as ``carpose-benchmark`` scores it),
and after every epoch scores them; ``best.pt`` is then the epoch with the best real score. Only the
*choice* of checkpoint sees these labels, never a gradient: they are validation sets, not training data.

Selection key, in order (``selection_key``): the balanced Acc@30 (per source the mean Acc@30 over its
view sectors with >= 10 cars, then the mean over sources, so neither the larger source nor the
commonest view outvotes the rest), then fewer flips (> 150 deg) over all sources, then lower MedErr.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from carpose.azimuth_head import decode
from carpose.convention import angular_error
from carpose.crop import CropSpec
from carpose.eval.label_crops import source_crops
from carpose.eval.real_sources import RealSource, source_from_spec
from carpose.eval.scoring import azimuth_error_stats, balanced_acc30, sector_stats


@dataclass
class RealValSet:
    """Labelled real crops of one source (RGB uint8, N x S x S x 3), cut once at start-up."""

    name: str
    crops: np.ndarray
    azimuth_deg: np.ndarray
    sure: np.ndarray

    def __len__(self) -> int:
        return len(self.azimuth_deg)


def load_real_val(src: RealSource | str, spec: CropSpec) -> RealValSet:
    """The source's labelled cars under its own pose filter (``RealSource``)."""
    src = source_from_spec(src) if isinstance(src, str) else src
    if not src.available:
        raise FileNotFoundError(f"real source {src.name}: {src.missing()}")
    kc = source_crops(src, spec, progress=False)
    if len(kc) == 0:
        raise FileNotFoundError(f"{src.name}: no labelled car with a readable image (images: {src.images})")
    return RealValSet(src.name, kc.crops, kc.azimuth_deg, kc.sure)


@torch.no_grad()
def _predict(model: torch.nn.Module, real: RealValSet, device: torch.device, half_window: int,
             batch: int = 128) -> np.ndarray:
    probs = []
    for i in range(0, len(real), batch):
        x = torch.from_numpy(np.ascontiguousarray(real.crops[i:i + batch].transpose(0, 3, 1, 2))).float()
        probs.append(torch.softmax(model.logits(x.to(device)), 1).float().cpu().numpy())
    return decode(np.concatenate(probs), half_window)[0]


def score_real(model: torch.nn.Module, reals: list[RealValSet], device: torch.device, half_window: int) -> dict:
    """Per source (sure labels, all, sectors), the union, and the balanced Acc@30 that chooses."""
    was_training = model.training
    model.eval()
    out: dict = {"sources": {}}
    errs, trues = [], []
    try:
        for real in reals:
            err = np.asarray(angular_error(_predict(model, real, device, half_window), real.azimuth_deg)).reshape(-1)
            e, t = err[real.sure], real.azimuth_deg[real.sure]
            out["sources"][real.name] = {"all": azimuth_error_stats(err), "sure": azimuth_error_stats(e),
                                         "sectors": sector_stats(e, t)}
            errs.append(e)
            trues.append(t)
    finally:
        model.train(was_training)
    out["sure"] = azimuth_error_stats(np.concatenate(errs) if errs else np.zeros(0))
    out["balanced_acc30"] = balanced_acc30([s["sectors"] for s in out["sources"].values()])
    return out


def selection_key(m: dict) -> tuple[float, int, float]:
    """Smaller is better: (-balanced Acc@30, flips, MedErr), flips and MedErr on every source's sure labels."""
    s = m["sure"]
    bal = m.get("balanced_acc30")
    return (-(bal if bal is not None else s["acc_30"] or 0.0), s["flips"], s["med_err_deg"] or 0.0)


def format_real(m: dict) -> str:
    """One log fragment: balanced Acc@30, then Acc@30 / flips per source."""
    per = ", ".join(f"{k} {100 * (v['sure']['acc_30'] or 0):.1f}%/{v['sure']['flips']} flips"
                    for k, v in m["sources"].items())
    bal = m.get("balanced_acc30")
    return f"balanced Acc@30 {'-' if bal is None else f'{100 * bal:.1f}%'} ({per})"
