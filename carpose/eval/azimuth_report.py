"""One azimuth summary for labelled sets: subsets (all / sure / tall enough) x view sectors, as tables.

``carpose-eval`` (hand boxes, pose only) and ``carpose-det-eval`` (cars the detector found) both
call ``azimuth_summary`` and print ``format_azimuth_summary``, so the real-set numbers mean the same
in both places. Each row is ``carpose.eval.scoring.azimuth_error_stats`` (MedErr, Acc@30, flips = errors
> 150 deg); sectors are the 8 view sectors of the TRUE azimuth (``carpose.eval.scoring.sector_stats``).

Subsets: ``all`` labelled cars; ``sure`` the ones whose labeller was sure of the azimuth within
30 deg (16th field of our hand labels); and both again for cars at least ``min_height`` px tall
(default 30: below that a car is a few dozen pixels and its view is guesswork for people too).
"""

from __future__ import annotations

import numpy as np

from carpose.eval.scoring import azimuth_error_stats, sector_stats

#: Cars shorter than this (box height, px) are left out of the "tall" subsets.
DEFAULT_MIN_HEIGHT = 30.0


def subset_masks(sure: np.ndarray | None, height_px: np.ndarray | None, n: int,
                 min_height: float = DEFAULT_MIN_HEIGHT) -> dict[str, np.ndarray]:
    """Boolean masks of the subsets that exist for this data (no sure flags: no 'sure' rows)."""
    allm = np.ones(n, bool)
    masks = {"all": allm}
    if sure is not None:
        masks["sure"] = np.asarray(sure, bool).reshape(-1)
    if height_px is not None:
        tall = np.asarray(height_px, np.float64).reshape(-1) >= min_height
        tag = f">={min_height:g}px"
        masks[f"all {tag}"] = tall
        if sure is not None:
            masks[f"sure {tag}"] = masks["sure"] & tall
    return masks


def azimuth_summary(err_deg: np.ndarray, true_deg: np.ndarray, sure: np.ndarray | None = None,
                    height_px: np.ndarray | None = None, min_height: float = DEFAULT_MIN_HEIGHT) -> dict:
    """{subset: {n, MedErr, Acc@30, flips, ..., "sectors": [8 sector rows]}} for every subset."""
    err = np.asarray(err_deg, np.float64).reshape(-1)
    true = np.asarray(true_deg, np.float64).reshape(-1)
    out = {}
    for name, m in subset_masks(sure, height_px, len(err), min_height).items():
        if len(m) != len(err):
            raise ValueError(f"subset '{name}' has {len(m)} flags for {len(err)} errors")
        out[name] = {**azimuth_error_stats(err[m]), "sectors": sector_stats(err[m], true[m])}
    return out


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def _deg(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def format_azimuth_summary(summary: dict, title: str = "azimuth") -> str:
    """Two Markdown tables (they read as text in a terminal and paste into docs as they are):
    the subsets, then n / MedErr / Acc@30 / flips per view sector of the true azimuth."""
    lines = [f"{title}: errors by subset (flips = errors > 150 deg)", "",
             "| cars | n | MedErr (deg) | Acc@30 | Acc@15 | flips |", "|---|---:|---:|---:|---:|---:|"]
    for name, s in summary.items():
        lines.append(f"| {name} | {s['n']} | {_deg(s['med_err_deg'])} | {_pct(s['acc_30'])} | {_pct(s['acc_15'])} "
                     f"| {s['flips']} |")
    names = list(summary)
    lines += ["", f"{title}: per 45-deg sector of the TRUE azimuth, each cell n / MedErr / Acc@30 / flips", "",
              "| sector (deg) | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for k, sec in enumerate(summary[names[0]]["sectors"]):
        cells = []
        for name in names:
            r = summary[name]["sectors"][k]
            cells.append("0" if not r["n"] else
                         f"{r['n']} / {_deg(r['med_err_deg'])} / {_pct(r['acc_30'])} / {r['flips']}")
        lines.append(f"| {sec['sector']} {sec['from_deg']:g}-{sec['to_deg']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
