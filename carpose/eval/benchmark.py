"""``carpose-benchmark``: the shipped (or any) models on every real validation source, one table.

    carpose-benchmark                                   # shipped models, every source in ../shared
    carpose-benchmark --pose-model runs/posenet/final.onnx --det-model runs/det/epoch3.pt --out runs/bench
    carpose-benchmark --sources kitti_val my_kitti_folder:my_images --no-det

Why one command: a model that looks good on one drive of one camera can fail on the next camera
(rear views read as fronts, large cars missed). Every figure the README and the model cards quote
comes from here, per source *and* for the union, per view sector, so neither the larger source nor
the commonest view hides a failure. Sources and their rules: ``carpose.eval.real_sources``.

Per source and for the union it reports:

- **pose on the true boxes** (the labelled boxes cut as the runtime cuts detector boxes; no detector):
  n, MedErr, Acc@30, Acc@15, flips (> 150 deg), front read as rear and rear read as front, the
  8 view sectors, Acc@30 by confidence fifth, and the balanced Acc@30 that chooses models (mean over
  sources of the mean per-sector Acc@30, ``carpose.eval.scoring.balanced_acc30``);
- **detector** (``carpose-det-eval``'s scoring): AP@0.5 / precision / recall at ``--conf`` for cars
  >= 40 px and for every labelled car, KITTI's AOS and AOS/AP, recall of cars 20-40 px, and the
  recall of cars >= 40 px per view sector and of occluded and border-cut ones (which cars it misses);
- **end to end**: azimuth errors of the cars the detector found (pose on the detector's box);
- **time per frame** with the runtime's own settings (detector, pose of the cars found, total).

Writes ``benchmark.json``, ``benchmark.md`` (the printed tables) and per source the worst pose
errors (``<source>_pose_worst.jpg``), the cars seen from behind (``<source>_rear.jpg``) and the
detector frames (``<source>_det_frames.jpg``) to ``--out``. The last line is the headline.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from carpose.convention import angular_error
from carpose.detect import detector_provenance
from carpose.eval.azimuth_report import azimuth_summary
from carpose.eval.det_eval import evaluate_folder, recall_by_view
from carpose.eval.det_sheet import save_frames_sheet
from carpose.eval.error_sheet import ErrorCase, save_worst_errors_sheet
from carpose.eval.kitti import kitti_pairs
from carpose.eval.label_crops import predict_all, source_crops
from carpose.eval.real_sources import RealSource, available_sources, leaks_in_metadata
from carpose.eval.scoring import (
    FLIP_DEG,
    SECTOR_NAMES,
    average_orientation_similarity,
    azimuth_error_stats,
    balanced_acc30,
    confidence_quintiles,
    detection_report,
    front_rear_confusion,
)
from carpose.pipeline import DEFAULT_DET_MODEL, DEFAULT_POSE_MODEL, Pipeline, PipelineConfig
from carpose.pose import PoseEstimator

UNION = "union"
#: Detector rows: every labelled car, and cars at least this tall (the targets' row).
DET_TALL_PX = 40.0
#: The "small cars" recall the detector issue tracks.
SMALL_PX = (20.0, 40.0)
#: A flip read at least this sure is the one a user cannot filter out (issue 40: at most 1 % of the cars).
CONFIDENT = 0.9
#: Pose rows by the share of a car's box that nearer cars' boxes hide (carpose.crop.hidden_share): none, then
#: up to each bound. In a parked row the car behind can be all but hidden; no crop shows what is not there.
HIDDEN_BINS = ((0.0, "none"), (0.25, "up to 1/4"), (0.5, "1/4 to 1/2"), (1.0, "over 1/2"))


@dataclass
class PoseScores:
    """Pose on one source's true boxes: what every table needs, kept for the union."""

    err: np.ndarray
    true: np.ndarray
    pred: np.ndarray
    conf: np.ndarray
    sure: np.ndarray
    height: np.ndarray
    cases: list[ErrorCase] = field(default_factory=list)
    crops_per_s: float = float("nan")
    hidden: np.ndarray | None = None  # per car, the share of its box nearer cars hide (true boxes only)

    @staticmethod
    def concat(parts: list[PoseScores]) -> PoseScores:
        def cat(k: str) -> np.ndarray:
            return np.concatenate([getattr(p, k) for p in parts]) if parts else np.zeros(0)

        hidden = cat("hidden") if parts and all(p.hidden is not None for p in parts) else None
        return PoseScores(cat("err"), cat("true"), cat("pred"), cat("conf"), cat("sure").astype(bool),
                          cat("height"), [c for p in parts for c in p.cases], hidden=hidden)

    def report(self) -> dict:
        """Subset x sector rows, front/rear confusion and confidence fifths, on the 'sure' labels."""
        summary = azimuth_summary(self.err, self.true, self.sure, self.height)
        s = self.sure
        sure_flip = (self.err[s] > FLIP_DEG) & (self.conf[s] >= CONFIDENT)
        out = {"subsets": summary, "sure": summary["sure"],
               "front_rear": front_rear_confusion(self.pred[s], self.true[s]),
               "confident_flips": {"conf_from": CONFIDENT, "flips": int(sure_flip.sum()),
                                   "n": int(s.sum())},
               "confidence_quintiles": confidence_quintiles(self.err[s], self.conf[s]),
               "crops_per_s": self.crops_per_s}
        if self.hidden is not None:
            out["by_hidden"] = hidden_rows(self.err[s], self.hidden[s])
        return out


def hidden_rows(err: np.ndarray, hidden: np.ndarray) -> list[dict]:
    """``azimuth_error_stats`` of the cars in each ``HIDDEN_BINS`` row (each car in exactly one)."""
    rows, lo = [], -1.0
    for hi, name in HIDDEN_BINS:
        rows.append({"cars": name, "to": hi, **azimuth_error_stats(err[(hidden > lo) & (hidden <= hi)])})
        lo = hi
    return rows


def pose_on_true_boxes(est: PoseEstimator, src: RealSource, progress: bool = True,
                       row_prior: bool = True) -> PoseScores:
    """The pose model on the source's labelled boxes (its pose filter), timed per crop; with ``row_prior``
    every labelled car of a frame is read and lends its heading to the cars it hides, as the pipeline's
    detector boxes do (carpose.row_prior); without it, each car as the network alone reads it."""
    kc = source_crops(src, est.crop_spec, progress, lenders=row_prior)
    t0 = time.perf_counter()
    r = predict_all(est, kc.crops, batch=32, progress=progress)
    dt = time.perf_counter() - t0
    if row_prior:
        r = est.decode(kc.with_row_prior(r.probs))
    s = kc.scored
    pred, conf, true = r.azimuth_deg[s], r.confidence[s], kc.azimuth_deg[s]
    err = np.asarray(angular_error(pred, true), np.float64).reshape(-1)
    refs = [ref for ref, keep in zip(kc.refs, s, strict=True) if keep]
    cases = [ErrorCase(img, box, float(t), float(p), f"{src.name}/{img.stem}#{k}", bool(su), float(c))
             for (img, k, box), t, p, su, c in zip(refs, true, pred, kc.sure[s], conf, strict=True)]
    return PoseScores(err, true, np.asarray(pred, np.float64).reshape(-1), np.asarray(conf, np.float64).reshape(-1),
                      kc.sure[s], kc.height_px[s], cases, len(kc) / dt if dt > 0 and len(kc) else float("nan"),
                      kc.hidden[s])


def time_frames(pipe: Pipeline, src: RealSource, limit: int = 30) -> dict:
    """Median ms per frame of ``pipe`` at its current thresholds (run_benchmark sets the runtime's), over
    ``limit`` frames spread over the source (the first one, which pays for warm-up, is run twice)."""
    pairs = kitti_pairs(src.labels, src.images)
    idx = np.unique(np.linspace(0, len(pairs) - 1, min(limit, len(pairs))).round().astype(int))
    rows, input_hw = [], None
    for n, i in enumerate(idx):
        img = cv2.imread(str(pairs[i][0]), cv2.IMREAD_COLOR)
        if img is None:
            continue
        if n == 0:
            pipe.process(img)
            input_hw = list(pipe.detector.network_hw(img.shape[:2])) if pipe.detector is not None else None
        t = pipe.process(img).timings_ms
        rows.append((t["detect"], t["pose"], t["total"]))
    a = np.asarray(rows, np.float64).reshape(-1, 3)
    med = np.median(a, 0) if len(a) else [float("nan")] * 3
    return {"frames": len(a), "detect_ms": float(med[0]), "pose_ms": float(med[1]), "total_ms": float(med[2]),
            "input_hw": input_hw}


def small_recall(by_height: list[dict]) -> dict:
    """Found / cars of the height bins inside SMALL_PX."""
    sel = [b for b in by_height if b["from_px"] >= SMALL_PX[0] and b["to_px"] is not None and b["to_px"] <= SMALL_PX[1]]
    gt, found = sum(b["gt"] for b in sel), sum(b["found"] for b in sel)
    return {"gt": gt, "found": found, "recall": found / gt if gt else None}


def detector_rows(matches: dict, conf: float) -> dict:
    """AP / P / R / AOS of the 'all' and 'tall' match lists of ``det_eval.evaluate_folder``."""
    rows = {}
    for key in ("all", "tall"):
        rep = detection_report(matches[key], conf)
        rows[key] = {**rep.to_dict(), "aos": average_orientation_similarity(matches[key])}
    return rows


def _matched_errors(cases: list[ErrorCase]) -> PoseScores:
    err = np.array([c.err_deg for c in cases], np.float64)
    true = np.array([c.true_deg for c in cases], np.float64)
    return PoseScores(err, true, np.array([c.pred_deg for c in cases], np.float64),
                      np.array([c.confidence or 0.0 for c in cases], np.float64),
                      np.array([c.sure for c in cases], bool), np.full(len(cases), np.inf), cases)


def run_benchmark(sources: list[RealSource], pose_model: str | Path = DEFAULT_POSE_MODEL,
                  det_model: str | Path | None = DEFAULT_DET_MODEL, conf: float = 0.35,
                  det_classes: dict | None = None, imgsz: int = 0, progress: bool = True,
                  timing_frames: int = 30, mirror_tta: bool | None = None, det_int8: bool = False,
                  row_prior: bool = True) -> dict:
    """Every number of the benchmark (see the module docstring), plus the cases and frame verdicts for
    the sheets under the keys ``_cases`` and ``_verdicts``. ``row_prior``: as the pipeline's (on by
    default); off, the pose figures are the network's alone."""
    if not sources:
        raise ValueError("no real validation source to score (../shared absent? see carpose.eval.real_sources)")
    est = PoseEstimator(pose_model, mirror_tta=mirror_tta)
    res: dict = {"pose_model": str(pose_model), "mirror_tta": est.mirror_tta, "row_prior": row_prior,
                 "det_model": str(det_model) if det_model else None, "conf": conf,
                 "pose_leaks": leaks_in_metadata(est.metadata),
                 "det_leaks": leaks_in_metadata(detector_provenance(det_model)) if det_model else [],
                 "sources": {}, "_cases": {}, "_verdicts": {}}
    pose_parts, e2e_parts, det_matches = [], [], {"all": [], "tall": []}
    small = {"gt": 0, "found": 0}
    views: dict[str, list] = {}  # evaluate_folder's per-car columns for recall_by_view, pooled over sources
    eval_pipe = None
    if det_model:
        # The PR curves need every detection (threshold 0.01); the timings run at ``conf``, the runtime's.
        eval_pipe = Pipeline(PipelineConfig(pose_model=pose_model, detector_weights=det_model,
                                            detector_classes=det_classes, det_conf=0.01, det_imgsz=imgsz,
                                            det_int8=det_int8, max_cars=100, occluder_conf=conf,
                                            row_prior=row_prior))
        res["det_model"] = str(eval_pipe.detector.weights)  # the INT8 twin, where the CPU runs it
        res["det_input_hw"] = list(eval_pipe.detector.input_hw)
        res["det_follows_aspect"] = eval_pipe.detector.follows_aspect
    for src in sources:
        ps = pose_on_true_boxes(est, src, progress, row_prior)
        pose_parts.append(ps)
        entry = {"camera": src.camera, "pose_types": list(src.pose_types), "det_types": list(src.det_types),
                 "pose": ps.report()}
        res["_cases"][src.name] = ps.cases
        if eval_pipe is not None and src.has_frames:
            r = evaluate_folder(src.labels, eval_pipe, conf, src.det_types, 0.0, progress, src.images,
                                DET_TALL_PX)
            for k in det_matches:
                det_matches[k] += r["matches"][k]
            for k, column in r["views"].items():
                views.setdefault(k, []).extend(column)
            sm = small_recall(r["summary"]["recall_by_height"])
            small = {k: small[k] + sm[k] for k in small}
            me = _matched_errors(r["cases"])
            e2e_parts.append(me)
            eval_pipe.set_thresholds(conf=conf)
            timing = time_frames(eval_pipe, src, timing_frames)
            eval_pipe.set_thresholds(conf=0.01)
            entry["det"] = {**detector_rows(r["matches"], conf), "frames": r["summary"]["frames"],
                            "recall_by_height": r["summary"]["recall_by_height"],
                            "recall_by_view": r["summary"]["recall_by_view"], "small": sm, "timing": timing}
            entry["end_to_end"] = me.report()
            res["_verdicts"][src.name] = r["verdicts"]
        res["sources"][src.name] = entry
    union = {"pose": PoseScores.concat(pose_parts).report()}
    if eval_pipe is not None and e2e_parts:
        union["det"] = {**detector_rows(det_matches, conf), "small": {**small, "recall": small["found"] / small["gt"]
                                                                 if small["gt"] else None},
                        "recall_by_view": recall_by_view(**views)}
        union["end_to_end"] = PoseScores.concat(e2e_parts).report()
    res["union"] = union
    res["selection"] = {
        "pose_balanced_acc30": balanced_acc30([s["pose"]["sure"]["sectors"] for s in res["sources"].values()]),
        "det_mean_ap_tall": (float(np.mean([s["det"]["tall"]["ap50"] for s in res["sources"].values() if "det" in s]))
                             if eval_pipe is not None and e2e_parts else None)}
    return res


# ----------------------------------------------------------------------------------------------- text


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _f(v: float | None, fmt: str = "{:.3f}") -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else fmt.format(v)


def _columns(res: dict) -> list[tuple[str, dict]]:
    return [*res["sources"].items(), (UNION, res["union"])]


def _confident(pose: dict) -> str:
    """'k (share)' of the cars flipped at or above the CONFIDENT threshold; '-' in reports from before it."""
    c = pose.get("confident_flips")
    return "-" if not c else f"{c['flips']} ({_pct(c['flips'] / c['n'] if c['n'] else None)})"


def _sector_label(k: int, name: str) -> str:
    """Row label of view sector ``k`` (45 deg wide, centred on k * 45): e.g. 'rear 157.5-202.5'."""
    return f"{name} {(k * 45 - 22.5) % 360:g}-{k * 45 + 22.5:g}"


def _pose_table(res: dict, key: str, title: str) -> list[str]:
    lines = [f"### {title}", "",
             f"| source | n | MedErr (deg) | Acc@30 | Acc@15 | flips > 150 | flips at conf >= {CONFIDENT:g} "
             "| rear read as front | front read as rear |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, col in _columns(res):
        if key not in col:
            continue
        s, fr = col[key]["sure"], col[key]["front_rear"]
        lines.append(f"| {name} | {s['n']} | {_f(s['med_err_deg'], '{:.1f}')} | {_pct(s['acc_30'])} "
                     f"| {_pct(s['acc_15'])} | {s['flips']} ({_pct(s['flip_rate'])}) | {_confident(col[key])} "
                     f"| {fr['rear_as_front']} of {fr['rear']} | {fr['front_as_rear']} of {fr['front']} |")
    lines += ["", "Per 45-deg view sector of the TRUE azimuth, each cell n / MedErr / Acc@30 / flips:", "",
              "| sector (deg) | " + " | ".join(n for n, c in _columns(res) if key in c) + " |",
              "|---|" + "---:|" * sum(key in c for _, c in _columns(res))]
    for k, sec in enumerate(SECTOR_NAMES):
        cells = []
        for _, col in _columns(res):
            if key not in col:
                continue
            r = col[key]["sure"]["sectors"][k]
            cells.append("0" if not r["n"] else
                         f"{r['n']} / {_f(r['med_err_deg'], '{:.1f}')} / {_pct(r['acc_30'])} / {r['flips']}")
        lines.append(f"| {_sector_label(k, sec)} | " + " | ".join(cells) + " |")
    return lines


def _hidden_table(res: dict) -> list[str]:
    """Pose on the true boxes by how much of each car nearer cars' boxes hide (the parked-row cars)."""
    cols = [(n, c["pose"]["by_hidden"]) for n, c in _columns(res) if "by_hidden" in c["pose"]]
    if not cols:
        return []
    lines = ["", "Pose on the true boxes by the share of the car's box that nearer cars' boxes hide (sure labels), "
             "each cell n / Acc@30 / flips:", "", "| hidden | " + " | ".join(n for n, _ in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for k, (_, name) in enumerate(HIDDEN_BINS):
        cells = [f"{r[k]['n']} / {_pct(r[k]['acc_30'])} / {r[k]['flips']}" if r[k]["n"] else "0" for _, r in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _view_recall_table(res: dict) -> list[str]:
    """Detector recall of the cars >= 40 px by view sector, occlusion and the border: which cars it misses."""
    cols = [(n, c["det"]["recall_by_view"]) for n, c in _columns(res) if "recall_by_view" in c.get("det", {})]
    if not cols:
        return []
    lines = [f"Detector recall of the cars >= {DET_TALL_PX:g} px at conf {res['conf']}, by 45-deg view sector of the "
             "TRUE azimuth and for occluded / border-cut cars (found of labelled):", "",
             "| cars | " + " | ".join(n for n, _ in cols) + " |", "|---|" + "---:|" * len(cols)]

    def cell(row: dict) -> str:
        return f"{row['found']} of {row['gt']}" if row["gt"] else "0"

    for k, sec in enumerate(SECTOR_NAMES):
        lines.append(f"| {_sector_label(k, sec)} | " + " | ".join(cell(v["sectors"][k]) for _, v in cols) + " |")
    for key in ("occluded", "border"):
        lines.append(f"| {cols[0][1][key]['cars']} | " + " | ".join(cell(v[key]) for _, v in cols) + " |")
    return lines


def shown_path(path: str | None) -> str | None:
    """A path as the tables show it: relative to the working directory when inside it (no machine paths
    in docs pasted from the output)."""
    if path is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def format_benchmark(res: dict) -> str:
    """The Markdown tables (they read in a terminal and paste into docs as they are)."""
    tta = "on" if res.get("mirror_tta") else "off"
    rows = "on" if res.get("row_prior") else "off"
    det = f"detector: {shown_path(res['det_model']) or '(not run)'}"
    if res.get("det_input_hw"):
        h, w = res["det_input_hw"]
        det += (f", input within {h}x{w}, following each frame's aspect" if res.get("det_follows_aspect")
                else f", input {h}x{w}") + f", conf {res['conf']}"
    lines = [f"pose model: {shown_path(res['pose_model'])} (mirror TTA {tta}, row prior {rows})", det, ""]
    lines += [f"LEAK: the pose model's metadata says: {leak}: its figures on that source are optimistic" for leak in
              res.get("pose_leaks", [])]
    lines += [f"LEAK: the detector's metadata says: {leak}: its figures on that source are optimistic" for leak in
              res.get("det_leaks", [])]
    lines += _pose_table(res, "pose", "Pose on the true boxes (sure labels)")
    lines += ["", "Acc@30 by confidence fifth (lowest first), true boxes:", "",
              "| source | 1 | 2 | 3 | 4 | 5 |", "|---|---:|---:|---:|---:|---:|"]
    for name, col in _columns(res):
        q = col["pose"]["confidence_quintiles"]
        lines.append(f"| {name} | " + " | ".join(f"{_pct(r['acc_30'])} (R>={r['conf_from']:.2f})" for r in q) + " |")
    lines += _hidden_table(res)
    if "det" in res["union"]:
        lines += ["", f"### Detector (IoU 0.5, conf {res['conf']})", "",
                  "| source | AP@0.5 >= 40 px | P | R | AOS | AOS/AP | AP@0.5 all | P all | R all | recall 20-40 px "
                  "| input | detector ms | frame ms |", "|---|" + "---:|" * 12]
        for name, col in _columns(res):
            if "det" not in col:
                continue
            d, a = col["det"]["tall"], col["det"]["all"]
            sm = col["det"]["small"]
            t = col["det"].get("timing")
            ratio = d["aos"] / d["ap50"] if d["ap50"] > 0 else None
            hw = t.get("input_hw") if t else None
            lines.append(f"| {name} | {_f(d['ap50'])} | {_f(d['precision'])} | {_f(d['recall'])} | {_f(d['aos'])} "
                         f"| {_f(ratio)} | {_f(a['ap50'])} | {_f(a['precision'])} | {_f(a['recall'])} "
                         f"| {sm['found']} of {sm['gt']} | {f'{hw[0]}x{hw[1]}' if hw else '-'} "
                         f"| {_f(t and t['detect_ms'], '{:.1f}')} "
                         f"| {_f(t and t['total_ms'], '{:.1f}')} |")
        lines += ["", *_view_recall_table(res), ""]
        lines += _pose_table(res, "end_to_end", "End to end: azimuth of the cars the detector found (its boxes)")
    lines += ["", "Selection scores: pose balanced Acc@30 (mean over sources of the mean per-sector Acc@30, "
              f"sectors with >= 10 cars) {_pct(res['selection']['pose_balanced_acc30'])}; detector mean AP@0.5 "
              f">= 40 px over sources {_f(res['selection']['det_mean_ap_tall'])}"]
    return "\n".join(lines)


def headline(res: dict) -> str:
    """The one line the README and the model cards quote."""
    u = res["union"]
    p = u["pose"]["sure"]
    parts = [f"pose Acc@30 {_pct(p['acc_30'])}, flips {_pct(p['flip_rate'])} (n={p['n']})"]
    if "det" in u:
        parts.append(f"detector AP@0.5 {_f(u['det']['tall']['ap50'])} (cars >= 40 px)")
    per = []
    for name, s in res["sources"].items():
        q = s["pose"]["sure"]
        per.append(f"{name} {_pct(q['acc_30'])} / {_pct(q['flip_rate'])}"
                   + (f" / AP {_f(s['det']['tall']['ap50'])}" if "det" in s else ""))
    return "headline (union of " + ", ".join(res["sources"]) + "): " + "; ".join(parts) + " | per source: " \
        + "; ".join(per)


def _public(obj: object) -> object:
    if isinstance(obj, dict):
        return {k: _public(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, list):
        return [_public(v) for v in obj]
    return obj


def write_outputs(res: dict, out: Path, worst: int = 24) -> list[Path]:
    """benchmark.json, benchmark.md and the contact sheets; returns what it wrote."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "benchmark.json", out / "benchmark.md"]
    (out / "benchmark.json").write_text(json.dumps(_public(res), indent=1, default=float))
    (out / "benchmark.md").write_text(format_benchmark(res) + "\n\n" + headline(res) + "\n")
    pose_name = Path(res["pose_model"]).name
    for name, cases in res["_cases"].items():
        if cases:
            written.append(save_worst_errors_sheet(cases, out / f"{name}_pose_worst.jpg", count=worst,
                                                   title=f"{pose_name} on {name}, true boxes"))
        rear = [c for c in cases if float(angular_error(c.true_deg, 180.0)) < 22.5]
        if rear:
            written.append(save_worst_errors_sheet(rear, out / f"{name}_rear.jpg", count=min(len(rear), 48),
                                                   title=f"{pose_name} on {name}: every car seen from behind"))
    for name, verdicts in res["_verdicts"].items():
        if verdicts:
            written.append(save_frames_sheet(verdicts, out / f"{name}_det_frames.jpg",
                                             title=f"{Path(res['det_model']).name} on {name}, conf {res['conf']}"))
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="carpose-benchmark", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sources", nargs="+", help="source names (nuscenes_front, kitti_val, stanford_val) or KITTI "
                                                "folders FOLDER[:IMAGES]; default: every registered source found "
                                                "(the detector runs on the frame sources)")
    p.add_argument("--pose-model", default=str(DEFAULT_POSE_MODEL))
    p.add_argument("--det-model", default=str(DEFAULT_DET_MODEL))
    p.add_argument("--det-classes", help="e.g. '2:car' for COCO weights")
    p.add_argument("--no-det", action="store_true", help="pose on the true boxes only")
    p.add_argument("--mirror-tta", action=argparse.BooleanOptionalAction, default=None,
                   help="pose on the true boxes with/without mirror test-time averaging (default: as the model's "
                        "metadata says; the detector runs follow the metadata)")
    p.add_argument("--row-prior", action=argparse.BooleanOptionalAction, default=True,
                   help="a car hidden behind a nearer one mixes in that car's heading (carpose.row_prior), as the "
                        "pipeline does (default); --no-row-prior: the network's readings alone")
    p.add_argument("--conf", type=float, default=0.35, help="the detector's operating threshold")
    p.add_argument("--imgsz", type=int, default=0,
                   help="detector input long side (0: the model's own; a fixed-size ONNX always uses its own)")
    p.add_argument("--det-int8", action="store_true",
                   help="on a CPU, run the shipped detector's INT8 twin (as the node's det_int8:=true)")
    p.add_argument("--timing-frames", type=int, default=30, help="frames per source timed with the runtime's settings")
    p.add_argument("--out", default="runs/benchmark", help="folder for benchmark.json/.md and the sheets")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    from carpose.infer import parse_classes

    try:
        sources = available_sources(args.sources, "carpose-benchmark", photos=True)
        res = run_benchmark(sources, args.pose_model, None if args.no_det else args.det_model, args.conf,
                            parse_classes(args.det_classes), args.imgsz, not args.quiet, args.timing_frames,
                            args.mirror_tta, args.det_int8, args.row_prior)
        written = write_outputs(res, Path(args.out))
    except (FileNotFoundError, ValueError) as exc:
        print(f"carpose-benchmark: error: {exc}", file=sys.stderr)
        return 2
    print(format_benchmark(res))
    print()
    print("wrote " + ", ".join(str(w) for w in written))
    print(headline(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
