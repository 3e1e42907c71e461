"""``carpose-det-select``: choose a detector checkpoint on every real validation source.

    carpose-det-select runs/det/train/weights/epoch*.pt runs/det/train/weights/last.pt --out runs/det/select

ultralytics chooses ``best.pt`` on its synthetic validation split, which says little about real
cameras; and the choice on one real drive favours that drive. Each candidate here is scored on every
real validation source (``carpose.eval.real_sources``, the rules ``carpose-benchmark`` uses: Car+Van on
KITTI, cars >= 40 px, IoU 0.5), and the winner has the best **mean over sources** of AP@0.5, so the
source with more cars does not outvote the other (ties: the union's AP, then the earlier candidate).
The table shows each source's AP / precision / recall beside the union's, so the price on one source
of a gain on the other is in plain view. Only the choice sees the labels, never a gradient.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from carpose.eval.benchmark import DET_TALL_PX, detector_rows
from carpose.eval.det_eval import evaluate_folder
from carpose.eval.real_sources import RealSource, available_sources
from carpose.pipeline import DEFAULT_POSE_MODEL, Pipeline, PipelineConfig


def score_checkpoint(weights: str | Path, sources: list[RealSource], conf: float = 0.35, imgsz: int = 640,
                     pose_model: str | Path = DEFAULT_POSE_MODEL, progress: bool = False) -> dict:
    """AP / P / R (cars >= 40 px) per source and for the union, and the mean AP over sources."""
    pipe = Pipeline(PipelineConfig(pose_model=pose_model, detector_weights=weights, det_conf=0.01,
                                   det_imgsz=imgsz, max_cars=100))
    per, pooled = {}, {"all": [], "tall": []}
    for src in sources:
        r = evaluate_folder(src.labels, pipe, conf, src.det_types, 0.0, progress, src.images, DET_TALL_PX)
        per[src.name] = detector_rows(r["matches"], conf)["tall"]
        for k in pooled:
            pooled[k] += r["matches"][k]
    union = detector_rows(pooled, conf)["tall"]
    return {"weights": str(weights), "sources": per, "union": union,
            "mean_ap": float(np.mean([p["ap50"] for p in per.values()]))}


def choose(scores: list[dict]) -> int:
    """Index of the winner: highest mean AP over sources, then union AP; the first on a tie."""
    keys = [(-s["mean_ap"], -s["union"]["ap50"]) for s in scores]
    return min(range(len(scores)), key=lambda i: keys[i])


def format_scores(scores: list[dict], chosen: int) -> str:
    names = list(scores[0]["sources"]) if scores else []
    lines = ["| checkpoint | " + " | ".join(f"{n} AP / P / R" for n in names) + " | union AP / P / R | mean AP |",
             "|---|" + "---:|" * (len(names) + 2)]
    for i, s in enumerate(scores):
        cell = [f"{r['ap50']:.3f} / {r['precision']:.3f} / {r['recall']:.3f}"
                for r in [*(s["sources"][n] for n in names), s["union"]]]
        mark = " **(chosen)**" if i == chosen else ""
        lines.append(f"| {Path(s['weights']).name}{mark} | " + " | ".join(cell) + f" | {s['mean_ap']:.3f} |")
    return "\n".join(lines)


def select_checkpoint(candidates: list[str | Path], sources: list[RealSource], conf: float = 0.35,
                      imgsz: int = 640) -> tuple[Path, list[dict], int]:
    """Score every candidate (with a tqdm bar) and return the winner, all scores and its index."""
    from tqdm import tqdm

    if not candidates:
        raise ValueError("no checkpoint to choose from")
    if not sources:
        raise ValueError("no real validation source available (../shared absent?)")
    scores = [score_checkpoint(c, sources, conf, imgsz) for c in tqdm(candidates, desc="checkpoints", unit="ckpt")]
    k = choose(scores)
    return Path(candidates[k]), scores, k


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="carpose-det-select", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", help="detector weights (.pt or .onnx), e.g. every epoch of a run")
    p.add_argument("--sources", nargs="+", help="real validation sources (default: every registered one found)")
    p.add_argument("--conf", type=float, default=0.35)
    p.add_argument("--imgsz", type=int, default=512, help="detector input side for .pt weights")
    p.add_argument("--out", help="folder for select.json")
    args = p.parse_args(argv)
    try:
        sources = available_sources(args.sources, "carpose-det-select")
        best, scores, k = select_checkpoint(args.checkpoints, sources, args.conf, args.imgsz)
    except (FileNotFoundError, ValueError) as exc:
        print(f"carpose-det-select: error: {exc}", file=sys.stderr)
        return 2
    print(format_scores(scores, k))
    print(f"chosen: {best} (mean AP@0.5 over {', '.join(s.name for s in sources)}: {scores[k]['mean_ap']:.3f})")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "select.json").write_text(json.dumps({"chosen": str(best), "scores": scores}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
