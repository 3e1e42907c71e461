"""Azimuth metrics and the plots people look at, computed the same way for every model and dataset.

Every error is ``carpose.convention.angular_error`` (shortest way round, degrees). The seed project's
metric (4-quadrant accuracy) is computed from the *continuous* prediction, so a 72-bin model and the
4-class seed network are scored on the same footing.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from carpose.convention import QUADRANT_NAMES, angular_error, azimuth_to_quadrant
from carpose.eval.scoring import azimuth_error_stats, confidence_quintiles, sector_stats


def azimuth_metrics(pred_deg: np.ndarray, true_deg: np.ndarray, confidence: np.ndarray | None = None
                    ) -> dict:
    """MedErr, mean error, Acc@30/15/5, flips (errors > 150 deg, from ``azimuth_error_stats``), quadrant
    accuracy, per-azimuth, per-sector and per-confidence errors."""
    pred = np.asarray(pred_deg, np.float64)
    true = np.asarray(true_deg, np.float64)
    if pred.shape != true.shape or pred.ndim != 1:
        raise ValueError(f"pred and true must be equal-length 1-D arrays, got {pred.shape} {true.shape}")
    n = len(pred)
    if n == 0:
        return {"n": 0}
    err = np.asarray(angular_error(pred, true))
    qp, qt = azimuth_to_quadrant(pred), azimuth_to_quadrant(true)
    conf_mat = np.zeros((4, 4), np.int64)
    np.add.at(conf_mat, (qt, qp), 1)
    out = {
        **azimuth_error_stats(err),
        "acc_5": float(np.mean(err <= 5.0)),
        "quadrant_acc": float(np.mean(qp == qt)),
        "quadrant_confusion": conf_mat.tolist(),
        "quadrant_names": list(QUADRANT_NAMES),
    }
    edges = np.arange(0, 361, 30)
    per = []
    for lo, hi in itertools.pairwise(edges):
        m = (true >= lo) & (true < hi)
        per.append({"from": int(lo), "to": int(hi), **azimuth_error_stats(err[m])})
    out["per_azimuth"] = per
    out["per_sector"] = sector_stats(err, true)  # the 8 view sectors of 45 deg (front, front-left, ...)
    if confidence is not None:
        c = np.asarray(confidence, np.float64)
        out["mean_confidence"] = float(c.mean())
        out["calibration"] = confidence_quintiles(err, c)
        if n > 2 and np.std(c) > 0:
            out["conf_err_spearman"] = float(_spearman(c, err))
    return out


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def format_metrics(name: str, m: dict) -> str:
    """One table row: what the issue notes and model card quote."""
    if m.get("n", 0) == 0:
        return f"{name:<28} (no samples)"
    conf = f"{m['mean_confidence']:.2f}" if "mean_confidence" in m else "-"
    return (f"{name:<28} n={m['n']:<6} MedErr={m['med_err_deg']:6.1f}  Acc@30={100 * m['acc_30']:5.1f}%  "
            f"Acc@15={100 * m['acc_15']:5.1f}%  Quad={100 * m['quadrant_acc']:5.1f}%  "
            f"flips={100 * m['flip_rate']:4.1f}%  conf={conf}")


def save_json(obj: dict, path: str | Path) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=float))
    tmp.replace(p)


# --- plots ---------------------------------------------------------------------------------------

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_training_curves(history: list[dict], path: str | Path, title: str = "") -> None:
    """Loss per epoch (train, val) and val MedErr / Acc@30 per epoch (and the real photos' Acc@30)."""
    plt = _plt()
    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    if all("val_loss" in h for h in history):
        ax[0].plot(ep, [h["val_loss"] for h in history], "o-", label="val")
    ax[0].set_xlabel("epoch")
    ax[0].set_ylabel("loss")
    ax[0].legend()
    ax[0].grid(alpha=0.3)
    if all("val" in h for h in history):
        ax[1].plot(ep, [h["val"]["med_err_deg"] for h in history], "o-", color="C3", label="MedErr (deg)")
        ax[1].set_ylabel("median error (deg)")
        ax2 = ax[1].twinx()
        ax2.plot(ep, [100 * h["val"]["acc_30"] for h in history], "s--", color="C2", label="Acc@30 (%)")
        if all("real" in h for h in history):
            ax2.plot(ep, [100 * h["real"]["sure"]["acc_30"] for h in history], "^:", color="C4",
                     label="real photos Acc@30 (%)")
        ax2.set_ylabel("Acc@30 (%)")
        ax[1].legend(loc="upper left")
        ax2.legend(loc="upper right")
    ax[1].set_xlabel("epoch")
    ax[1].grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_polar_error(pred_deg: np.ndarray, true_deg: np.ndarray, path: str | Path, title: str = "") -> None:
    """Median error (radius) by true azimuth, in the convention's own picture: 0 = front at the top,
    counter-clockwise as seen from above; each point is one sample's error, faint."""
    plt = _plt()
    err = np.asarray(angular_error(pred_deg, true_deg))
    true = np.asarray(true_deg, np.float64)
    fig = plt.figure(figsize=(6, 6))
    ax = fig.add_subplot(projection="polar")
    ax.set_theta_zero_location("N")
    ax.set_theta_direction(1)  # counter-clockwise
    k = min(len(true), 3000)
    ax.scatter(np.deg2rad(true[:k]), err[:k], s=3, alpha=0.15, color="C0", label="samples")
    edges = np.arange(0, 361, 15)
    mids, meds = [], []
    for lo, hi in itertools.pairwise(edges):
        m = (true >= lo) & (true < hi)
        if m.any():
            mids.append(np.deg2rad((lo + hi) / 2))
            meds.append(np.median(err[m]))
    if mids:
        ax.plot([*mids, mids[0]], [*meds, meds[0]], "o-", color="C3", label="median error")
    ax.set_rmax(max(45.0, float(np.percentile(err, 90)) if len(err) else 45.0))
    ax.set_title(title + "\nerror (deg) vs true azimuth: 0 front, 90 left, 180 rear, 270 right", fontsize=9)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_quadrant_confusion(metrics: dict, path: str | Path, title: str = "") -> None:
    plt = _plt()
    cm = np.asarray(metrics["quadrant_confusion"], np.float64)
    rows = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    names = metrics.get("quadrant_names", list(QUADRANT_NAMES))
    ax.set_xticks(range(4), names)
    ax.set_yticks(range(4), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(4):
        for j in range(4):
            ax.text(j, i, f"{100 * rows[i, j]:.0f}%\n{int(cm[i, j])}", ha="center", va="center", fontsize=8,
                    color="white" if rows[i, j] > 0.5 else "black")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def format_calibration(cal: list[dict], title: str = "") -> str:
    """Markdown table of the confidence quintiles: does dropping the least confident fifth help?"""
    rows = [f"{title}: Acc@30 by confidence quintile (lowest first)" if title else
            "Acc@30 by confidence quintile (lowest first)", "",
            "| quintile | confidence | n | MedErr (deg) | Acc@30 |", "|---|---|---:|---:|---:|"]
    for i, c in enumerate(cal):
        rows.append(f"| {i + 1} | {c['conf_from']:.2f}-{c['conf_to']:.2f} | {c['n']} | {c['med_err_deg']:.1f} | "
                    f"{100 * c['acc_30']:.0f}% |")
    return "\n".join(rows) + "\n"


def plot_calibration(metrics: dict, path: str | Path, title: str = "") -> None:
    plt = _plt()
    cal = metrics.get("calibration", [])
    fig, ax = plt.subplots(figsize=(5, 4))
    if cal:
        x = [(c["conf_from"] + c["conf_to"]) / 2 for c in cal]
        ax.plot(x, [c["med_err_deg"] for c in cal], "o-", label="median error (deg)")
        ax2 = ax.twinx()
        ax2.plot(x, [100 * c["acc_30"] for c in cal], "s--", color="C2", label="Acc@30 (%)")
        ax2.set_ylabel("Acc@30 (%)")
    ax.set_xlabel("confidence (quintile centre)")
    ax.set_ylabel("median error (deg)")
    ax.set_title(title + "\nerror by confidence", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_all_plots(pred: np.ndarray, true: np.ndarray, metrics: dict, out_dir: str | Path, prefix: str,
                   title: str) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{prefix}_polar.png", out / f"{prefix}_quadrants.png", out / f"{prefix}_calibration.png"]
    plot_polar_error(pred, true, paths[0], title)
    plot_quadrant_confusion(metrics, paths[1], title)
    plot_calibration(metrics, paths[2], title)
    return paths
