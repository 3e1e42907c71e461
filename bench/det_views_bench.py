"""Test-time views of the detector on the real validation frames: accuracy and time of each.

    python bench/det_views_bench.py                      # the default views of the shipped detector
    python bench/det_views_bench.py own own+flip:wbf own+800:wbf tiles640 --conf 0.35

Issue 22 names two runtime levers for the cars the detector misses (small cars of a wide camera, a
40 px KITTI car being 21 px at the shipped 224 x 640 input): an input that fits the camera, or
"tiling a wide frame into two squares with merged boxes; choose by AP per ms on both sources". This
bench scores such views with the benchmark's own scorer (``carpose.eval.det_eval.evaluate_folder``:
AP@0.5, precision and recall at ``--conf`` of the cars >= 40 px, recall of the cars 20-40 px) and
times them as the pipeline's ``detect`` stage (letterbox, network, NMS, merging), so a view is chosen
by what it gains per millisecond on every source, not on one.

A view is one pass or several merged:

* ``own``: the detector at its own input (the shipped file: each frame fitted into 352 x 640);
* ``SIDE`` (e.g. ``800``): the frame fitted into a SIDE x SIDE box instead (a dynamic ONNX keeps the
  frame's aspect and pads to a multiple of 32);
* a trailing ``f`` (``ownf``, ``800f``): the frame mirrored left-right, boxes mirrored back;
* ``tilesSIDE`` (e.g. ``tiles640``): two windows of 60 % of the frame's width (left and right, full
  height, overlapping by a fifth), each fitted into a SIDE box; a box touching a window's inner edge is
  cut by the window, not by the frame, and is dropped; the rest are merged by NMS;
* a trailing ``@TAG`` (``own@r18``): that pass runs the detector file given as ``--model TAG=PATH``
  instead of ``--det-model``, so an ensemble of two detectors is ``own+own@r18:wbf``;
* ``A+B[+C]:nms`` / ``:wbf``: the views' boxes merged by non-maximum suppression (the best box of a
  cluster, at the detector's IoU 0.5) or by weighted box fusion (``training.detector.box_fusion``:
  boxes averaged, a cluster scored by the mean over views, a view that missed the car adding 0).

Every pass keeps boxes down to a score of 0.01 (the PR curve's range) and the fusion scores them,
so ``--conf`` is the operating point after merging. Run on a quiet machine: ``ms`` is the median of
the ``detect`` stage over the frames (the first frame of each view pays for setup and is left out).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from carpose.detect import DetectorConfig, YoloDetector
from carpose.eval.benchmark import DET_TALL_PX, detector_rows, small_recall
from carpose.eval.det_eval import evaluate_folder
from carpose.eval.real_sources import available_sources
from carpose.pipeline import DEFAULT_DET_MODEL, Pipeline, PipelineConfig
from carpose.results import Detection
from training.detector.box_fusion import fuse_boxes

DEFAULT_VIEWS = ("own", "ownf", "own+ownf:wbf", "800", "own+800:wbf", "960", "own+960:nms", "tiles640",
                 "own+tiles640:nms")
#: Width of each of the two tiles, as a share of the frame's width.
TILE_SHARE = 0.6
#: A box within this many pixels of a tile's inner edge is cut by the tile.
TILE_EDGE_PX = 2.0


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by non-maximum suppression, best score first (torchvision's, as ultralytics uses)."""
    import torch
    import torchvision

    keep = torchvision.ops.nms(torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4),
                               torch.as_tensor(scores, dtype=torch.float64).reshape(-1), iou)
    return keep.numpy().astype(np.int64)


def tile_windows(width: int, share: float = TILE_SHARE) -> list[tuple[int, int]]:
    """(x0, x1) of the left and the right tile of a frame ``width`` wide."""
    tw = int(round(width * share))
    return [(0, tw), (width - tw, width)]


def merge_tiles(per_tile: list[tuple[np.ndarray, np.ndarray]], windows: list[tuple[int, int]], width: int,
                iou: float) -> tuple[np.ndarray, np.ndarray]:
    """One frame's boxes and scores from each tile's (boxes and scores in tile pixels): boxes moved to
    frame pixels; a box touching a tile's inner edge is dropped (the frame's own edges cut real cars, a
    tile's inner edge cuts them falsely); a car inside the overlap, found by both tiles, is kept once (NMS)."""
    boxes, scores = [], []
    for (b, s), (x0, x1) in zip(per_tile, windows, strict=True):
        b = np.asarray(b, np.float64).reshape(-1, 4).copy()
        b[:, [0, 2]] += x0
        cut = ((x0 > 0) & (b[:, 0] <= x0 + TILE_EDGE_PX)) | ((x1 < width) & (b[:, 2] >= x1 - TILE_EDGE_PX))
        boxes.append(b[~cut])
        scores.append(np.asarray(s, np.float64).reshape(-1)[~cut])
    b, s = np.concatenate(boxes), np.concatenate(scores)
    k = nms(b, s, iou)
    return b[k], s[k]


def mirror_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    """Boxes found on the left-right mirrored frame, in the frame's own pixels."""
    out = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
    out[:, [0, 2]] = width - out[:, [2, 0]]
    return out


class ViewDetector:
    """A detector made of test-time views of one detector file, merged (see the module docstring)."""

    def __init__(self, spec: str, weights: str | Path, iou: float = 0.5,
                 models: dict[str, Path] | None = None) -> None:
        self.weights = Path(weights)
        self.models = dict(models or {})
        parts, _, how = spec.partition(":")
        self.how = how or "nms"
        if self.how not in ("nms", "wbf"):
            raise ValueError(f"view {spec!r}: merge with ':nms' or ':wbf', not {how!r}")
        self.iou = iou
        self.conf = 0.01
        self._dets: dict[tuple[int | None, Path], YoloDetector] = {}
        # (detector, tiled, mirrored) per view, parsed and loaded now: a bad spec fails before any frame
        self._passes = []
        for part in parts.split("+"):
            v, _, tag = part.partition("@")
            if tag and tag not in self.models:
                raise ValueError(f"view {part!r}: no --model {tag}=PATH given")
            weights_of = self.models[tag] if tag else self.weights
            self._passes.append((self._detector(self._side(v), weights_of), v.removesuffix("f").startswith("tiles"),
                                 v.endswith("f")))

    @staticmethod
    def _side(view: str) -> int | None:
        core = view.removesuffix("f").removeprefix("tiles")
        if core in ("own", ""):
            return None
        if not core.isdigit():
            raise ValueError(f"unknown view {view!r}: own, SIDE, tilesSIDE, with an optional trailing f and @TAG")
        return int(core)

    def _detector(self, side: int | None, weights: Path) -> YoloDetector:
        if (side, weights) not in self._dets:
            self._dets[side, weights] = YoloDetector(DetectorConfig(weights=weights, conf=0.01, iou=self.iou,
                                                                    imgsz=side, max_det=300, device="cpu"))
        return self._dets[side, weights]

    def set_thresholds(self, conf: float | None = None, iou: float | None = None) -> None:
        if conf is not None:
            self.conf = conf

    def _pass(self, det: YoloDetector, tiled: bool, mirrored: bool,
              image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        img = np.ascontiguousarray(image[:, ::-1]) if mirrored else image
        w = img.shape[1]

        def run(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            found = det.detect(np.ascontiguousarray(frame))
            return (np.array([d.box_xyxy for d in found], np.float64).reshape(-1, 4),
                    np.array([d.score for d in found], np.float64))

        if tiled:
            windows = tile_windows(w)
            b, s = merge_tiles([run(img[:, x0:x1]) for x0, x1 in windows], windows, w, self.iou)
        else:
            b, s = run(img)
        return (mirror_boxes(b, w) if mirrored else b), s

    def detect(self, image: np.ndarray) -> list[Detection]:
        per_view = [self._pass(*p, image) for p in self._passes]
        if len(per_view) == 1:
            boxes, scores = per_view[0]
        elif self.how == "wbf":
            boxes, scores = fuse_boxes(per_view, iou=0.55)
        else:
            boxes = np.concatenate([b for b, _ in per_view])
            scores = np.concatenate([s for _, s in per_view])
            k = nms(boxes, scores, self.iou)
            boxes, scores = boxes[k], scores[k]
        return [Detection(box_xyxy=b, score=float(s), class_id=0, class_name="car")
                for b, s in zip(boxes, scores, strict=True) if s >= self.conf]


def score_view(spec: str, weights: str, sources: list, conf: float, models: dict[str, Path] | None = None,
               iou: float = 0.5) -> dict:
    """AP / P / R (cars >= 40 px), recall 20-40 px and median detect ms of one view, per source and pooled."""
    pipe = Pipeline(PipelineConfig(detector_weights=None, max_cars=300, occluder_conf=conf))
    pipe.detector = ViewDetector(spec, weights, iou=iou, models=models)
    out: dict = {}
    pooled: dict[str, list] = {"all": [], "tall": []}
    small = [0, 0]
    for src in sources:
        r = evaluate_folder(src.labels, pipe, conf, src.det_types, 0.0, False, src.images, DET_TALL_PX)
        for k in pooled:
            pooled[k] += r["matches"][k]
        row = detector_rows(r["matches"], conf)["tall"]
        band = small_recall(r["summary"]["recall_by_height"])
        sm = (band["found"], band["gt"])
        small = [small[0] + sm[0], small[1] + sm[1]]
        out[src.name] = {**row, "small": sm, "ms": r["summary"]["detect_ms"]["median"]}
    out["union"] = {**detector_rows(pooled, conf)["tall"], "small": tuple(small), "ms": None}
    return out


def format_rows(results: dict[str, dict], source: str) -> list[str]:
    lines = [f"\n{source}\n", "| view | AP@0.5 >= 40 px | P | R | recall 20-40 px | detect ms | AP gain per 10 ms |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    base = next(iter(results.values()))
    for spec, res in results.items():
        r = res[source]
        ms = f"{r['ms']:.1f}" if r["ms"] is not None else "-"
        gain = "-"
        if r["ms"] is not None and spec != next(iter(results)) and r["ms"] > base[source]["ms"]:
            gain = f"{(r['ap50'] - base[source]['ap50']) / (r['ms'] - base[source]['ms']) * 10:+.3f}"
        lines.append(f"| {spec} | {r['ap50']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | "
                     f"{r['small'][0]} of {r['small'][1]} | {ms} | {gain} |")
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("views", nargs="*", default=list(DEFAULT_VIEWS), help="views; the first is the baseline")
    p.add_argument("--det-model", default=str(DEFAULT_DET_MODEL))
    p.add_argument("--model", action="append", default=[], metavar="TAG=PATH",
                   help="another detector file, run by views ending in @TAG (repeatable)")
    p.add_argument("--sources", nargs="+", help="real sources (default: every one found)")
    p.add_argument("--conf", type=float, default=0.35, help="operating threshold after merging")
    p.add_argument("--iou", type=float, default=0.5, help="NMS IoU of each pass and of ':nms' merging")
    args = p.parse_args()
    models = {}
    for item in args.model:
        tag, eq, path = item.partition("=")
        if not eq or not tag or not Path(path).is_file():
            p.error(f"--model {item!r}: give TAG=PATH of an existing detector file")
        models[tag] = Path(path)
    sources = available_sources(args.sources, "det_views_bench")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"detector views bench: {Path(args.det_model).name}, conf {args.conf}, NMS IoU {args.iou}; "
          f"{platform.machine()}, {os.cpu_count()} cores, load average {load:.1f} at the start")
    results = {spec: score_view(spec, args.det_model, sources, args.conf, models, args.iou) for spec in args.views}
    for name in [s.name for s in sources] + ["union"]:
        print("\n".join(format_rows(results, name)))
    if hasattr(os, "getloadavg"):
        print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
