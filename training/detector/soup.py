"""``carpose-det-soup``: one detector whose weights are the weighted mean of several fine-tuned ones.

    carpose-det-soup models/carpose_det.onnx runs/det_fused/carpose_det.onnx --weights 0.5 0.5 \\
        --out runs/det_soup/soup50.onnx --export-hw 352 640 --dynamic

Why: every round of self-training from the shipped detector trades one camera for the other (issue 22:
the student of a better teacher gains 0.04 AP on KITTI and loses 0.08 on nuScenes). Two networks
fine-tuned from the same weights lie in one basin, so the mean of their weights is itself a good
network ("model soups", Wortsman et al. 2022; WiSE-FT) that often keeps what each learnt, at no cost
at run time: one network, the same input, the same speed. Ensembling the two instead would double
the detector's time per frame.

Members are exported detectors (``.onnx``, turned back into weights exactly as ``--init`` does) or
ultralytics ``.pt`` files of the same architecture. Every tensor is averaged, BatchNorm statistics
too. The soup's ONNX metadata holds the union of its members' provenance (``carpose_provenance``:
backgrounds, pseudo-labelled photos, the sources a member was chosen on) plus the members and their
weights, so ``carpose-benchmark`` still flags a leaky member.

A soup's scores need not sit where its members' did (the shipped one's run higher: at the default
threshold 0.35 it kept more boxes at lower precision). ``--operate-at T`` adds one constant to every
class logit so that the product's default threshold cuts where T cut: the order of the boxes, hence
AP, is unchanged, and the node, the benchmark and every tool keep one threshold. T is chosen like a
threshold, on the validation sources (models/README.md).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import tempfile
from pathlib import Path

import carpose.detect  # noqa: F401  (makes ultralytics offline before it is imported)
from carpose.detect import detector_provenance
from carpose.pipeline import PipelineConfig
from training.detector.train import export_onnx

DEFAULT_CONF = PipelineConfig().det_conf  # the threshold the node, the benchmark and the tools use by default


def load_detector_checkpoint(path: str | Path, work_dir: Path, tag: str) -> dict:
    """An ultralytics checkpoint dict for a ``.pt`` or an exported ``.onnx`` detector, its
    BatchNorms folded into the convolutions either way (an ONNX file's are; a ``.pt``'s are folded
    here), so that members of both kinds average layer by layer."""
    import torch

    from training.detector.warm_start import as_weights, fold_batchnorms

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no detector at {path}")
    ckpt = torch.load(as_weights(path, work_dir / f"{tag}_{path.stem}.pt"), weights_only=False, map_location="cpu")
    if path.suffix.lower() != ".onnx":
        for key in ("model", "ema"):
            if ckpt.get(key) is not None:
                ckpt[key] = ckpt[key].float()
                fold_batchnorms(ckpt[key])
    return ckpt


def average_state(states: list[dict], weights: list[float]) -> dict:
    """The weighted mean of state dicts with the same keys and shapes (integer tensors, such as
    BatchNorm's batch counter, come from the first member)."""
    keys = list(states[0])
    for i, s in enumerate(states[1:], 1):
        if list(s) != keys or any(s[k].shape != states[0][k].shape for k in keys):
            raise ValueError(f"member {i} is another architecture than member 0: a soup needs the same network")
    out = {}
    for k in keys:
        first = states[0][k]
        if first.is_floating_point():
            out[k] = sum(w * s[k].float() for w, s in zip(weights, states, strict=True)).to(first.dtype)
        else:
            out[k] = first.clone()
    return out


def shift_class_logits(net, shift: float) -> None:
    """Add ``shift`` to every class logit of an ultralytics detection head (the bias of the last
    convolution of each scale's class branch): all scores move the same monotone way, so AP and the
    order of boxes are unchanged and only where a fixed threshold cuts moves."""
    import torch

    head = net.model[-1]
    if not hasattr(head, "cv3"):
        raise ValueError("not an ultralytics Detect head: no class branches (cv3)")
    with torch.no_grad():
        for branch in head.cv3:
            last = branch[-1]
            if not isinstance(last, torch.nn.Conv2d) or last.bias is None:
                raise ValueError("the class branch does not end in a biased convolution")
            last.bias += shift


def threshold_shift(operate_at: float, default: float = DEFAULT_CONF) -> float:
    """The logit shift after which the product's ``default`` threshold cuts where ``operate_at``
    cuts the unshifted scores."""
    if not 0 < operate_at < 1:
        raise ValueError(f"--operate-at must lie in (0, 1), got {operate_at}")
    return math.log(default / (1 - default)) - math.log(operate_at / (1 - operate_at))


DATA_KEYS = ("train_backgrounds", "pseudo_labelled_photos", "chosen_on")  # what leak checks read


def merged_provenance(members: list[str | Path], weights: list[float]) -> dict:
    """The union of the members' training data (order kept; the keys the leak checks read) and the
    soup's recipe: each member with its weight and its own full provenance (a member may be a soup)."""
    merged: dict = {key: [] for key in DATA_KEYS}
    recipe = []
    for m, w in zip(members, weights, strict=True):
        prov = detector_provenance(m)
        for key in DATA_KEYS:
            merged[key] += [v for v in prov.get(key) or [] if v not in merged[key]]
        recipe.append({"member": str(m), "weight": w, "provenance": prov})
    return merged | {"soup": recipe}


def make_soup(members: list[str | Path], weights: list[float], out: str | Path,
              export_hw: tuple[int, int] = (352, 640), operate_at: float | None = None,
              dynamic: bool = False) -> Path:
    """Average the members' weights and export the soup to ``out`` (ONNX at ``export_hw``; with
    ``dynamic``, the box that frames are fitted into, see ``export_onnx``). With
    ``operate_at``, the soup's class scores are shifted so that the default threshold cuts where
    ``operate_at`` cut them (a soup's scores need not sit where its members' did). One member is its
    own weights re-exported: with ``operate_at``, a single detector moved to its operating point."""
    import torch

    shift = 0.0 if operate_at is None else threshold_shift(operate_at)
    if not members:
        raise ValueError("give at least one member")
    if len(weights) != len(members) or any(w < 0 for w in weights) or abs(sum(weights) - 1) > 1e-6:
        raise ValueError(f"give one non-negative weight per member, summing to 1 (got {weights})")
    with tempfile.TemporaryDirectory(prefix="carpose_soup_") as tmp:
        work = Path(tmp)
        ckpts = [load_detector_checkpoint(m, work, f"member{i}") for i, m in enumerate(members)]
        nets = [c.get("ema") or c["model"] for c in ckpts]
        soup = copy.deepcopy(nets[0])
        soup.load_state_dict(average_state([n.state_dict() for n in nets], weights))
        if shift:
            shift_class_logits(soup, shift)
        ckpt = {k: v for k, v in ckpts[0].items() if k in ("date", "version", "license", "docs")}
        ckpt |= {"model": soup, "ema": None}
        pt = work / f"{Path(out).stem}.pt"
        torch.save(ckpt, pt)
        provenance = merged_provenance(members, weights) | {"class_logit_shift": round(shift, 6)}
        return export_onnx(pt, out, export_hw, provenance, dynamic)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="carpose-det-soup", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("members", nargs="+", help="detectors fine-tuned from the same weights (.onnx or .pt)")
    p.add_argument("--weights", type=float, nargs="+", help="one per member, summing to 1 (default: equal)")
    p.add_argument("--out", required=True, help="the soup's ONNX path")
    p.add_argument("--export-hw", type=int, nargs=2, default=(352, 640), metavar=("H", "W"),
                   help="the exported input (default 352 640, the shipped detector's box)")
    p.add_argument("--dynamic", action="store_true",
                   help="free height and width: each frame is fitted into H x W and padded only to a multiple of 32 "
                        "(no compute on padding for wide or 4:3 cameras)")
    p.add_argument("--operate-at", type=float, metavar="T",
                   help=f"shift the soup's class scores so that the default threshold ({DEFAULT_CONF}) cuts where T "
                        "cuts the unshifted soup (AP unchanged)")
    args = p.parse_args(argv)
    weights = args.weights or [1 / len(args.members)] * len(args.members)
    try:
        out = make_soup(args.members, weights, args.out, tuple(args.export_hw), args.operate_at, args.dynamic)
    except (FileNotFoundError, ValueError) as exc:
        print(f"carpose-det-soup: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"onnx": str(out), "members": args.members, "weights": weights}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
