"""AP against training hours: the real-source scores of every checkpoint of one or more detector runs.

    python scripts/det_hours_plot.py --start runs/det42_ship/select.json \\
        n=runs/det42_n w=runs/det42_w --out docs/det_ap_hours.png

Why: issue 42 asks whether a wider network pays for its slower steps on a 2-core CPU, which is a question
of AP per hour, not per epoch. Each run is a ``carpose-train-det --real`` folder: ``det_train.json`` holds
``carpose-det-select``'s scores of every epoch's weights and ``last.pt``, ``train/results.csv`` ultralytics'
seconds at the end of each epoch (``last.pt`` sits at ``train_minutes``). A run still going, or cut off by a
session's end, has no ``det_train.json`` yet: its epochs are read from ``<run>/select/select.json``
(``carpose-det-select <run>/train/weights/epoch*.pt --out <run>/select``). ultralytics' clock starts again
when a run resumes; the hours here add up the epochs finished (an epoch cut off mid-way is not counted).
``--start`` is a ``carpose-det-select --out`` file of the starting weights, drawn at 0 h for every run (a
widened network starts with the same boxes). Prints the table it plots.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path


def epoch_seconds(results: Path) -> dict[int, float]:
    """Training seconds at the end of each epoch (1-based), summed over resumed parts of a run:
    ultralytics' ``time`` column starts again from 0 when a run resumes."""
    seconds: dict[int, float] = {}
    if not results.is_file():
        return seconds
    offset = last_raw = total = 0.0
    with results.open() as fh:
        for row in csv.DictReader(fh):
            row = {k.strip(): v for k, v in row.items()}
            if "time" not in row:
                continue
            raw = float(row["time"])
            if raw < last_raw:  # the clock started again: a resumed run
                offset = total
            total, last_raw = offset + raw, raw
            seconds[int(float(row["epoch"]))] = total
    return seconds


def run_points(folder: Path) -> list[tuple[float, str, dict]]:
    """(hours, checkpoint name, select scores) of every scored checkpoint of a run, in time order."""
    done, cut = folder / "det_train.json", folder / "select" / "select.json"
    if done.is_file():
        info = json.loads(done.read_text())
        if "selection" not in info:
            raise ValueError(f"{folder}: no real-source scores (train it with carpose-train-det --real)")
        scored = info["selection"]
    elif cut.is_file():  # a run not finished: its epochs scored by carpose-det-select
        info, scored = {}, json.loads(cut.read_text())["scores"]
    else:
        raise ValueError(f"{folder}: neither det_train.json nor select/select.json")
    seconds = epoch_seconds(folder / "train" / "results.csv")
    pts = []
    for s in scored:
        name = Path(s["weights"]).stem
        if name.startswith("epoch"):  # ultralytics' epochN.pt is saved after epoch N+1 (its 0-based index)
            hours = seconds.get(int(name[5:].split("_")[0]) + 1, float("nan")) / 3600
        elif "train_minutes" in info:
            hours = info["train_minutes"] / 60
        else:
            continue  # last.pt of a run still going is one of its epochs
        pts.append((hours, name, s))
    return sorted(pts, key=lambda p: p[0])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="LABEL=RUN_FOLDER")
    p.add_argument("--start", help="carpose-det-select --out select.json of the starting weights (drawn at 0 h)")
    p.add_argument("--out", default="det_ap_hours.png")
    args = p.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = None
    if args.start:
        sel = json.loads(Path(args.start).read_text())
        start = sel["scores"][0]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    print("| run | checkpoint | hours | " + " | ".join(["mean AP", "union AP", "union P", "union R"]) + " |")
    print("|---|---|---:|---:|---:|---:|---:|")
    if start:
        u = start["union"]
        print(f"| start | {Path(start['weights']).name} | 0.00 | {start['mean_ap']:.3f} | {u['ap50']:.3f} "
              f"| {u['precision']:.3f} | {u['recall']:.3f} |")
    for spec in args.runs:
        label, _, folder = spec.partition("=")
        if not folder:
            p.error(f"{spec!r}: want LABEL=RUN_FOLDER")
        pts = run_points(Path(folder))
        xs = ([0.0] if start else []) + [h for h, _, _ in pts]
        ys = ([start["mean_ap"]] if start else []) + [s["mean_ap"] for _, _, s in pts]
        ax.plot(xs, ys, marker="o", label=label)
        for h, name, s in pts:
            u = s["union"]
            print(f"| {label} | {name} | {h:.2f} | {s['mean_ap']:.3f} | {u['ap50']:.3f} | {u['precision']:.3f} "
                  f"| {u['recall']:.3f} |")
    ax.set_xlabel("training hours on 2 CPU cores")
    ax.set_ylabel("mean AP@0.5 over the real sources (cars >= 40 px)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
