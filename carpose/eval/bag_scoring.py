"""Scoring replay runs: one run against ground truth, and live against offline.

Why apart from the replay: the figures depend only on what a run published (carpose.eval.bag_replay's
RunResult) and the ground truth, so they are computed the same way for the node and the Pipeline,
with the matching of carpose.eval.scoring (the same code as ``carpose-det-eval``).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from carpose.eval.bag_replay import RunResult
from carpose.ros.bag import GtCar

DIST_EDGES = (0.0, 10.0, 20.0, 30.0, 50.0, math.inf)
#: Azimuths of node and Pipeline must agree to this (the node sends float32 degrees).
AGREE_TOL_DEG = 0.01


def _pct(values: list[float] | np.ndarray) -> dict:
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return {"n": 0}
    return {"n": int(len(v)), "mean": float(v.mean()), "p50": float(np.percentile(v, 50)),
            "p95": float(np.percentile(v, 95)), "p99": float(np.percentile(v, 99)), "max": float(v.max())}


def score_run(run: RunResult, gt: dict[int, list[GtCar]] | None, times_s: np.ndarray) -> dict:
    """Every figure of one run (see carpose.eval.bag_eval's module docstring)."""
    from carpose.eval.scoring import azimuth_error_stats, detection_report, match_frame, matched_azimuth_errors

    processed = len(run.outputs)
    out: dict[str, Any] = {
        "mode": run.mode, "frames_total": run.frames_total, "published": run.published, "processed": processed,
        "dropped": run.published - processed, "wall_s": round(run.wall_s, 3),
        "throughput_fps": processed / run.wall_s if run.wall_s > 0 else None,
        "latency_ms": _pct([o.latency_ms for o in run.outputs.values()]),
        "pipeline_ms": _pct([o.pipeline_ms for o in run.outputs.values()]),
        "latency_definition": "receive time - input header stamp (stamped at publish)" if run.mode == "live"
        else "Pipeline.process total", **run.extra}
    if gt is None:
        return out
    matches, pairs, gts = [], [], []  # gts: (distance, gt azimuth, found) of every countable GT car
    for i in sorted(run.outputs):
        cars = run.outputs[i].cars
        g = gt.get(i, [])
        valid = [c for c in g if not c.ignore]
        ign = [c for c in g if c.ignore]
        m = match_frame(np.array([c.box_xyxy for c in cars]).reshape(-1, 4), np.array([c.score for c in cars]),
                        np.array([c.box_xyxy for c in valid]).reshape(-1, 4),
                        np.array([c.box_xyxy for c in ign]).reshape(-1, 4), 0.5)
        matches.append(m)
        err = matched_azimuth_errors(m, np.array([c.azimuth_deg for c in cars]),
                                     np.array([c.azimuth_deg for c in valid]))
        found = set(m.gt_index[m.outcome == 1].tolist())
        gts += [(c.distance_m, c.azimuth_deg, j in found) for j, c in enumerate(valid)]
        for k, p in enumerate(np.flatnonzero(m.outcome == 1)):
            gc = valid[int(m.gt_index[p])]
            pairs.append({"frame": i, "t": float(times_s[i]), "track_id": gc.track_id, "gt_deg": gc.azimuth_deg,
                          "pred_deg": float(cars[p].azimuth_deg), "err_deg": float(err[k]),
                          "distance_m": gc.distance_m, "confidence": float(cars[p].azimuth_confidence)})
    rep = detection_report(matches, 0.0)
    out["detection"] = {"iou": 0.5, "precision": rep.precision, "recall": rep.recall, "ap50": rep.ap,
                        "tp": rep.tp, "fp": rep.fp, "fn": rep.fn,
                        "note": "over the published detections (score >= det_conf)"}
    err = np.array([p["err_deg"] for p in pairs])
    out["azimuth"] = azimuth_error_stats(err)
    dist = np.array([p["distance_m"] for p in pairs])
    gd, ga, gf = (np.array([g[k] for g in gts]) for k in range(3))

    def recall(sel: np.ndarray) -> dict:
        return {"gt": int(sel.sum()), "recall": float(gf[sel].mean()) if sel.any() else None}

    out["by_distance"] = [{"from_m": lo, "to_m": None if math.isinf(hi) else hi,
                           **azimuth_error_stats(err[(dist >= lo) & (dist < hi)]), **recall((gd >= lo) & (gd < hi))}
                          for lo, hi in itertools.pairwise(DIST_EDGES)]
    if any(not c.ignore and c.position is None for g in gt.values() for c in g):
        # Ground truth without a 3-D position (hand labels of real frames): a row of its own, never
        # a guessed distance; from_m/to_m None mark it. Decided on the whole bag, so every run of
        # it (live, offline) has the same rows.
        out["by_distance"].append({"from_m": None, "to_m": None, **azimuth_error_stats(err[~np.isfinite(dist)]),
                                   **recall(~np.isfinite(gd))})
    if len(gts) and not np.all(np.isfinite(gd)):
        out["by_distance_note"] = f"{int(np.sum(~np.isfinite(gd)))} ground-truth cars without a distance"
    gaz = np.array([p["gt_deg"] for p in pairs])
    out["by_azimuth"] = [{"from_deg": lo, "to_deg": lo + 30, **azimuth_error_stats(err[(gaz >= lo) & (gaz < lo + 30)]),
                          **recall((ga >= lo) & (ga < lo + 30))} for lo in range(0, 360, 30)]
    out["matched"] = pairs
    return out


def agreement(live: RunResult, offline: RunResult) -> dict:
    """Do node and Pipeline give the same cars and azimuths on the frames both processed?"""
    from carpose.convention import angular_error
    from carpose.track import iou_matrix

    common = sorted(set(live.outputs) & set(offline.outputs))
    max_az, min_iou, count_diff, cars = 0.0, 1.0, 0, 0
    for i in common:
        a, b = live.outputs[i].cars, offline.outputs[i].cars
        if len(a) != len(b):
            count_diff += 1
        if not a or not b:
            continue
        iou = iou_matrix(np.array([c.box_xyxy for c in a]), np.array([c.box_xyxy for c in b]))
        for r in range(len(a)):
            j = int(np.argmax(iou[r]))
            min_iou = min(min_iou, float(iou[r, j]))
            max_az = max(max_az, float(angular_error(a[r].azimuth_deg, b[j].azimuth_deg)))
            cars += 1
    ok = bool(common) and count_diff == 0 and max_az <= AGREE_TOL_DEG and min_iou >= 0.99
    return {"frames_compared": len(common), "cars_compared": cars, "frames_with_different_car_count": count_diff,
            "max_azimuth_diff_deg": max_az, "min_box_iou": min_iou, "tolerance_deg": AGREE_TOL_DEG, "agree": ok}

