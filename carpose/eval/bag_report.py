"""What a bag evaluation leaves behind: PNG plots, the annotated replay video, the markdown tables,
``report.md`` and ``report.json``.

Why apart from scoring: these only present the scores (dicts from carpose.eval.bag_scoring) and the
frames; nothing here computes a figure that the report states.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from carpose.eval.bag_replay import EvalConfig, RunResult
from carpose.ros.bag import BagReader, GtCar


def _histogram(series: dict[str, list[float]], bins, xlabel: str, ylabel: str, path: Path, legend_size: int) -> Path:
    """One overlaid histogram per labelled series, saved as PNG."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for label, values in series.items():
        ax.hist(values, bins=bins, alpha=0.6, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if series:
        ax.legend(fontsize=legend_size)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_plots(out: Path, scores: dict[str, dict], gt: dict[int, list[GtCar]] | None, times_s: np.ndarray) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = {}
    marks = {"live": ("o", "tab:red"), "offline": ("x", "tab:blue")}
    if gt is not None:
        # track_id -1 (real frames, carpose.eval.kitti_bag): cars without identity, one panel of points
        tracks = sorted({c.track_id for g in gt.values() for c in g})
        if tracks:
            fig, axes = plt.subplots(len(tracks), 1, figsize=(8, 1.9 * len(tracks) + 0.6), sharex=True, squeeze=False)
            for ax, tid in zip(axes[:, 0], tracks, strict=True):
                pts = [(times_s[i], c.azimuth_deg, c.ignore) for i, g in gt.items() for c in g if c.track_id == tid]
                pts.sort()
                t = np.array([p[0] for p in pts])
                a = np.array([p[1] for p in pts])
                if tid >= 0:
                    jumps = np.flatnonzero(np.abs(np.diff(a)) > 180) + 1  # break the line where it wraps
                    ax.plot(np.insert(t, jumps, np.nan), np.insert(a, jumps, np.nan), "k-", lw=1.5,
                            label="ground truth")
                else:  # different cars at one time: no line between them
                    ax.plot(t, a, "ks", ms=4, mfc="none", label="ground truth")
                ig = np.array([p[2] for p in pts])
                if ig.any():
                    ax.plot(t[ig], a[ig], "k.", ms=3, alpha=0.4, label="GT (DontCare)")
                for mode, s in scores.items():
                    pm = [(p["t"], p["pred_deg"]) for p in s.get("matched", []) if p["track_id"] == tid]
                    if pm:
                        mk, col = marks.get(mode, ("+", "tab:green"))
                        ax.plot([p[0] for p in pm], [p[1] for p in pm], mk, color=col, ms=4, label=mode)
                ax.set_ylim(-5, 365)
                ax.set_yticks(range(0, 361, 90))
                ax.set_ylabel(f"car {tid}\naz (deg)" if tid >= 0 else "untracked cars\naz (deg)", fontsize=8)
                ax.grid(alpha=0.3)
                ax.legend(fontsize=6, loc="upper right")
            axes[-1, 0].set_xlabel("time (s)")
            fig.suptitle("azimuth over time per ground-truth car", fontsize=10)
            fig.tight_layout()
            paths["azimuth_over_time"] = out / "azimuth_over_time.png"
            fig.savefig(paths["azimuth_over_time"], dpi=90)
            plt.close(fig)
        paths["error_histogram"] = _histogram(
            {f"{mode} (n={len(e)})": e for mode, s in scores.items()
             if (e := [p["err_deg"] for p in s.get("matched", [])])},
            np.arange(0, 185, 5), "azimuth error (deg)", "matched cars", out / "error_histogram.png", 8)
    paths["latency_histogram"] = _histogram(
        {f"{mode}: {s['latency_definition']}": lat for mode, s in scores.items()
         if (lat := list(s.get("_latencies", [])))},
        30, "latency (ms)", "frames", out / "latency_histogram.png", 6)
    return paths


def write_video(path: Path, reader: BagReader, n: int, run: RunResult, gt: dict[int, list[GtCar]] | None,
                fps: float) -> Path | None:
    """Annotated replay: ground truth as thin white boxes, predictions by carpose.draw.annotate."""
    from carpose.draw import annotate

    writer = None
    try:
        for f in reader.frames():
            if f.index >= n:
                break
            o = run.outputs.get(f.index)
            img = f.image.copy()  # decoded straight from the bag's buffer: read-only
            for g in (gt or {}).get(f.index, []):
                b = np.round(g.box_xyxy).astype(int)
                col = (150, 150, 150) if g.ignore else (255, 255, 255)
                cv2.rectangle(img, (b[0], b[1]), (b[2], b[3]), col, 1, cv2.LINE_AA)
            img = annotate(img, o.cars if o is not None else [])
            if o is None:
                cv2.putText(img, "dropped", (4, img.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 255), 2)
            if writer is None:
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (img.shape[1], img.shape[0]))
                if not writer.isOpened():
                    return None
            writer.write(img)
    finally:
        if writer is not None:
            writer.release()
    return path if writer is not None else None


def _f(v: Any, fmt: str = "{:.3f}", pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{100 * v:.1f}%" if pct else fmt.format(v)


def summary_table(scores: dict[str, dict]) -> str:
    """The markdown table carpose-bag-eval prints and puts at the top of report.md."""
    modes = list(scores)
    rows = [("frames processed / published", lambda s: f"{s['processed']} / {s['published']}"),
            ("frames dropped", lambda s: str(s["dropped"]))]
    if any("detection" in s for s in scores.values()):
        rows += [("detection precision @IoU0.5", lambda s: _f(s["detection"]["precision"])),
                 ("detection recall @IoU0.5", lambda s: _f(s["detection"]["recall"])),
                 ("detection AP@0.5", lambda s: _f(s["detection"]["ap50"])),
                 ("matched cars", lambda s: str(s["azimuth"]["n"])),
                 ("azimuth MedErr (deg)", lambda s: _f(s["azimuth"]["med_err_deg"], "{:.1f}")),
                 ("azimuth Acc@30", lambda s: _f(s["azimuth"]["acc_30"], pct=True)),
                 ("azimuth Acc@15", lambda s: _f(s["azimuth"]["acc_15"], pct=True))]
    rows += [("latency p50 / p95 / p99 (ms)", lambda s: " / ".join(_f(s["latency_ms"].get(k), "{:.0f}")
                                                                  for k in ("p50", "p95", "p99"))),
             ("pipeline p50 (ms)", lambda s: _f(s["pipeline_ms"].get("p50"), "{:.0f}")),
             ("throughput (frames/s)", lambda s: _f(s["throughput_fps"], "{:.2f}"))]
    lines = ["| metric | " + " | ".join(modes) + " |", "|---|" + "---|" * len(modes)]
    for name, fn in rows:
        cells = []
        for m in modes:
            try:
                cells.append(fn(scores[m]))
            except (KeyError, TypeError):
                cells.append("-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _bins_table(scores: dict[str, dict], key: str, label: Any) -> str:
    modes = [m for m in scores if key in scores[m]]
    if not modes:
        return ""
    lines = [f"| {key.replace('by_', '')} | " + " | ".join(f"{m}: GT cars / recall / matched / MedErr / Acc@30"
                                                          for m in modes) + " |", "|---|" + "---|" * len(modes)]
    for j, b in enumerate(scores[modes[0]][key]):
        cells = []
        for m in modes:
            x = scores[m][key][j]
            cells.append(f"{x['gt']} / {_f(x['recall'], pct=True)} / {x['n']} / {_f(x['med_err_deg'], '{:.1f}')} / "
                         f"{_f(x['acc_30'], pct=True)}")
        lines.append(f"| {label(b)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _distance_label(b: dict) -> str:
    if b["from_m"] is None:
        return "unknown (no 3-D label)"
    return f"{b['from_m']:.0f}-{b['to_m']:.0f} m" if b["to_m"] is not None else f">= {b['from_m']:.0f} m"


def write_report(out: Path, cfg: EvalConfig, reader: BagReader, n: int, scores: dict[str, dict],
                 agree: dict | None, files: dict[str, Path | None]) -> tuple[Path, Path]:
    rel = lambda p: os.path.relpath(p, out)  # noqa: E731
    md = [f"# carpose bag evaluation: {reader.path.name}", "",
          f"Bag `{reader.path}` ({reader.storage}), image topic `{reader.image_topic}` ({n} frames), ground truth "
          f"`{reader.gt_topic or 'none'}`. Pose model `{cfg.pose_model}`, detector `{cfg.det_model}` "
          f"(conf {cfg.det_conf}, IoU {cfg.det_iou}, imgsz {cfg.det_imgsz or 'of the model'}). Mode {cfg.mode}"
          + (f", rate {cfg.rate:g}" + (" (back-pressure)" if cfg.rate <= 0 else " x recorded")
             if cfg.mode != "offline" else "") + ".", "", summary_table(scores), ""]
    if reader.gt_topic is None:
        md += ["No ground truth topic: throughput, latency and video only.", ""]
    if agree is not None:
        md += [f"**Live vs offline**: {agree['frames_compared']} frames, {agree['cars_compared']} cars compared; "
               f"max azimuth difference {agree['max_azimuth_diff_deg']:.4f} deg, min box IoU "
               f"{agree['min_box_iou']:.4f}, frames with a different car count "
               f"{agree['frames_with_different_car_count']}: **{'agree' if agree['agree'] else 'DISAGREE'}**.", ""]
    t = _bins_table(scores, "by_distance", _distance_label)
    if t:
        md += ["## Azimuth error by distance", "", t, ""]
    t = _bins_table(scores, "by_azimuth", lambda b: f"{b['from_deg']}-{b['to_deg']} deg")
    if t:
        md += ["## Azimuth error by ground-truth azimuth", "", t, ""]
    md += ["## Files", ""]
    for name, p in files.items():
        if p is not None:
            md.append(f"- {name}: [{rel(p)}]({rel(p)})")
            if str(p).endswith(".png"):
                md.append(f"\n  ![{name}]({rel(p)})\n")
    md += ["", "Only processed frames are scored. 'DontCare' ground truth (tiny, hidden or truncated cars) "
           "is an ignore region. Definitions: carpose/eval/bag_eval.py."]
    report_md = out / "report.md"
    report_md.write_text("\n".join(md) + "\n")
    js = {"bag": str(reader.path), "storage": reader.storage, "image_topic": reader.image_topic,
          "gt_topic": reader.gt_topic, "frames": n, "config": {k: v for k, v in vars(cfg).items()},
          "runs": {m: {k: v for k, v in s.items() if not k.startswith("_")} for m, s in scores.items()},
          "agreement": agree, "files": {k: str(v) for k, v in files.items() if v is not None}}
    report_json = out / "report.json"
    report_json.write_text(json.dumps(js, indent=1, default=float))
    return report_md, report_json


