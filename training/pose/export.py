"""``carpose-export``: checkpoint -> ONNX with metadata, then prove ONNX Runtime agrees with torch.

    carpose-export runs/posenet/best.pt --out models/carpose_pose.onnx --parity data/pose/heldout_mesh.h5
    carpose-export a.pt b.onnx --out ensemble.onnx --mirror-tta   # one file, the mean of both members
    carpose-export a.onnx b.pt --soup 0.5 0.5 --out soup.onnx     # one network, the mean of their weights

The ONNX graph has a dynamic batch axis (opset 17), input ``image`` (RGB float32 NCHW, 0..255) and
output ``probs`` (softmax over the azimuth bins). The checkpoint's ``carpose`` metadata (input size,
mean/std, bins, crop recipe, convention version, training data hash, metrics) is stored in the
model's ``metadata_props`` so every runtime reads the same facts. The parity check runs real crops
through both and fails the export (no file written) if probabilities differ by 1e-4 or more.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import onnx
import torch

from carpose.pose import METADATA_KEY, PoseEstimator
from training.dataset.reader import CarposeDataset
from training.pose.checkpoint import load_checkpoint

OPSET = 17
PARITY_TOL = 1e-4


def load_exportable(sources: str | Path | list[str | Path],
                    soup: list[float] | None = None) -> tuple[torch.nn.Module, dict]:
    """The network to export and its metadata: one checkpoint, or several members (checkpoints or pose
    ONNX files) averaged into one network (training.pose.ensemble): their probabilities, or with
    ``soup`` (weights; empty: equal) their weights."""
    if isinstance(sources, (str, Path)) or len(sources) == 1:
        if soup is not None:
            raise ValueError("--soup needs at least two members")
        model, ck = load_checkpoint(sources if isinstance(sources, (str, Path)) else sources[0])
        return model.eval(), ck["metadata"]
    from training.pose.ensemble import build_ensemble, build_soup

    return build_ensemble(list(sources)) if soup is None else build_soup(list(sources), soup)


def export_onnx(ckpt_path: str | Path | list[str | Path], out: str | Path, opset: int = OPSET,
                mirror_tta: bool = False, soup: list[float] | None = None) -> Path:
    """Write the ONNX file (atomically) and return its path. ``ckpt_path``: a checkpoint, or a list of
    ensemble members (``soup``: of soup members, :func:`load_exportable`). ``mirror_tta`` is written
    into the metadata: runtimes then average every crop with its mirror image by default (carpose.pose)."""
    model, meta = load_exportable(ckpt_path, soup)
    meta = dict(meta, mirror_tta=bool(mirror_tta))
    s = int(meta["input_size"])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    dummy = torch.rand(2, 3, s, s) * 255
    # dynamo=False: the TorchScript exporter needs no onnxscript and gives a plain, static graph.
    torch.onnx.export(model, (dummy,), str(tmp), input_names=["image"], output_names=["probs"],
                      dynamic_axes={"image": {0: "batch"}, "probs": {0: "batch"}}, opset_version=opset,
                      do_constant_folding=True, dynamo=False)
    m = onnx.load(str(tmp))
    onnx.checker.check_model(m)
    del m.metadata_props[:]
    entry = m.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    m.producer_name, m.doc_string = "carpose-export", f"carpose pose CNN {meta.get('model_version', '')}"
    onnx.save(m, str(tmp))
    os.replace(tmp, out)
    return out


def parity_crops(path: str | Path | None, n: int, size: int, seed: int = 0) -> np.ndarray:
    """Real crops from an HDF5 file when given (what the check should use), else random pixels."""
    if path is None:
        return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    with CarposeDataset(path) as ds:
        if ds.image_shape[0] != size:
            raise ValueError(f"{path} has {ds.image_shape[0]} px crops, the model takes {size}")
        k = min(n, len(ds))
        if ds.kind == "layers":  # its cars cut from their canvases (on black) as the crops are cut
            from carpose.crop import CropSpec, crop_box

            spec = CropSpec.from_dict(ds.attrs["render_config"]["crop"])
            return np.stack([crop_box(img, box, spec) for img, box in zip(ds.h5["images"][:k], ds.h5["bbox"][:k],
                                                                          strict=True)])
        return ds.h5["images"][:k]


def parity_check(ckpt_path: str | Path | list[str | Path], onnx_path: str | Path, crops: np.ndarray,
                 soup: list[float] | None = None) -> dict:
    """Max |p_torch - p_onnx| and the largest decoded angle difference on the same crops (an ensemble's
    or a soup's torch side: its members loaded again and averaged)."""
    from carpose.azimuth_head import decode
    from carpose.convention import angular_error

    model, _ = load_exportable(ckpt_path, soup)
    with torch.no_grad():
        pt = model(torch.from_numpy(np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32))).numpy()
    onnx_est = PoseEstimator(onnx_path, backend="onnxruntime", device="cpu", mirror_tta=False)
    b = onnx_est.predict(crops)
    a_deg, _ = decode(pt, onnx_est.half_window)
    return {"n": len(crops), "max_abs_prob_diff": float(np.max(np.abs(pt - b.probs))),
            "max_angle_diff_deg": float(np.max(angular_error(a_deg, b.azimuth_deg)))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="carpose-export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="+",
                   help="checkpoint to export; several (checkpoints or pose ONNX files): one ONNX that averages "
                        "their probabilities (training/pose/ensemble.py)")
    p.add_argument("--out", required=True)
    p.add_argument("--parity", help="crops HDF5 file for the parity check (default: random pixels)")
    p.add_argument("--parity-n", type=int, default=256)
    p.add_argument("--opset", type=int, default=OPSET)
    p.add_argument("--soup", nargs="*", type=float, metavar="W",
                   help="with several members: average their weights (folded BatchNorms) into one network "
                        "instead of their probabilities; optional weights, one per member (default equal). "
                        "For members fine-tuned from one model (training/pose/ensemble.py)")
    p.add_argument("--mirror-tta", action="store_true",
                   help="mark the model for mirror test-time averaging (its runtimes then use it by default)")
    args = p.parse_args(argv)
    out = Path(args.out)
    staged = out.with_name(out.stem + ".staged.onnx")
    try:
        export_onnx(args.checkpoint, staged, args.opset, args.mirror_tta, args.soup)
        est = PoseEstimator(staged, backend="onnxruntime", device="cpu")
        crops = parity_crops(args.parity, args.parity_n, est.input_size)
        par = parity_check(args.checkpoint, staged, crops, args.soup)
    except (FileNotFoundError, ValueError) as exc:
        staged.unlink(missing_ok=True)
        print(f"carpose-export: error: {exc}", file=sys.stderr)
        return 2
    print(f"parity on {par['n']} {'real' if args.parity else 'random'} crops: max |dp| = "
          f"{par['max_abs_prob_diff']:.2e}, max angle diff = {par['max_angle_diff_deg']:.3f} deg")
    if par["max_abs_prob_diff"] >= PARITY_TOL:
        staged.unlink(missing_ok=True)
        print(f"carpose-export: error: ONNX Runtime and torch disagree by {par['max_abs_prob_diff']:.2e} "
              f">= {PARITY_TOL}; nothing written", file=sys.stderr)
        return 1
    os.replace(staged, out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
