"""``carpose-verify-labels``: a person (or a helper agent) decides the teacher's boxes on real photos.

    carpose-verify-labels sheets data/det/pseudo_k --out data/det/verify_k     # numbered tiles to judge
    # ... write data/det/verify_k/verdicts/*.csv: id,verdict (car | loose | not | unsure | own)
    carpose-verify-labels apply data/det/pseudo_k --verdicts data/det/verify_k --out data/det/pseudo_v

Why: self-training (``carpose-pseudo-label``) keeps what the teacher is sure of and greys what it is
not, so the cars the detector misses on real cameras stay missed: three misses in five are boxes the
detector draws in the right place and does not believe (hidden cars, dark cars, vans: issue 22,
round 8), and in the training photos such boxes are grey, never cars. Judging a box is cheap where
drawing one is not: each candidate box of the teacher (``teacher_2``, its score down to the
teacher's ``--ignore``) is shown as a numbered tile, the box in green on its surroundings, and a
verdict per number turns it into a label (``car``), a grey region (``loose``: a car under a badly
fitted box, half a car or two; ``unsure``; ``own``: the camera's own car) or background (``not``).

Only unlabelled photos (never validation frames: the pseudo-label folder's provenance is checked) are
judged; the verdicts are data of the project, written beside the sheets. ``apply`` writes a new
pseudo-label folder that ``carpose-train-det --pseudo`` reads like any other: boxes judged ``car`` are
labels, ``loose`` / ``unsure`` / ``own`` are greyed, ``not`` are background, and the boxes not shown
(under ``--min-score`` or ``--min-px``) keep the bands of the folder they came from.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from carpose.draw import tile_grid
from training.detector.pseudo_label import (
    own_car_flags,
    pseudo_folder_provenance,
    recorded_boxes,
    write_training_copy,
)

VERDICTS = ("car", "loose", "not", "unsure", "own")
#: Verdicts that grey the box in the training copy (neither car nor background).
GREYED = ("loose", "unsure", "own")
TILE = 160  # tile side in pixels: a 16 px box is drawn 3-4x larger
CONTEXT = 0.6  # the tile shows this share of the box's size around it on each side


def candidates(pseudo_dir: str | Path, min_score: float, min_px: float) -> list[dict]:
    """Every teacher box of the folder at least ``min_score`` and ``min_px`` tall, numbered in a fixed
    order (photo name, then falling score), so sheets, verdicts and ``apply`` agree on ids."""
    pseudo_dir = Path(pseudo_dir)
    folder = pseudo_folder_provenance(pseudo_dir)
    rows = []
    for path, (xyxy, scores) in recorded_boxes(pseudo_dir, folder, min_score).items():
        for k in np.argsort(-scores, kind="stable"):
            x1, y1, x2, y2 = xyxy[k]
            if y2 - y1 >= min_px:
                rows.append({"photo": str(path), "stem": path.stem, "x1": x1, "y1": y1, "x2": x2, "y2": y2,
                             "score": float(scores[k])})
    for i, r in enumerate(rows):
        r["id"] = i
    return rows


def tile(image: np.ndarray, box: tuple[float, float, float, float], number: int, side: int = TILE) -> np.ndarray:
    """The box in green on its surroundings (``CONTEXT`` of its size each side, at least 24 px), scaled
    to ``side`` x ``side`` (small boxes enlarged), the number in the top-left corner."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    m = max(CONTEXT * max(x2 - x1, y2 - y1), 24.0)
    cx0, cy0 = int(max(0, x1 - m)), int(max(0, y1 - m))
    cx1, cy1 = int(min(w, math.ceil(x2 + m))), int(min(h, math.ceil(y2 + m)))
    crop = image[cy0:cy1, cx0:cx1]
    s = side / max(crop.shape[:2])
    crop = cv2.resize(crop, (max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s))),
                      interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    out = np.full((side, side, 3), 40, np.uint8)
    out[:crop.shape[0], :crop.shape[1]] = crop
    p = [round((x1 - cx0) * s), round((y1 - cy0) * s), round((x2 - cx0) * s), round((y2 - cy0) * s)]
    cv2.rectangle(out, (p[0], p[1]), (p[2], p[3]), (0, 255, 0), 2)
    cv2.putText(out, str(number), (3, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 4, cv2.LINE_AA)
    cv2.putText(out, str(number), (3, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _read(path: str | Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"{path}: unreadable photo")
    return img


def write_sheets(pseudo_dir: str | Path, out: str | Path, min_score: float = 0.1, min_px: float = 16.0,
                 per_sheet: int = 30, columns: int = 6, progress: bool = True) -> dict:
    """``out/sheets/sheet_NNN.png`` (``per_sheet`` numbered tiles each) and ``out/boxes.csv`` (id, photo,
    box, score); ``out/verdicts/`` is where the verdict files go."""
    out = Path(out)
    rows = candidates(pseudo_dir, min_score, min_px)
    if not rows:
        raise ValueError(f"{pseudo_dir}: no teacher box of score >= {min_score} and >= {min_px} px to judge")
    (out / "sheets").mkdir(parents=True, exist_ok=True)
    (out / "verdicts").mkdir(exist_ok=True)
    with open(out / "boxes.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=["id", "stem", "x1", "y1", "x2", "y2", "score", "photo"])
        wr.writeheader()
        for r in rows:
            wr.writerow({k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()})
    cache: dict[str, np.ndarray] = {}
    n_sheets = math.ceil(len(rows) / per_sheet)
    for s in tqdm(range(n_sheets), desc="verify sheets", unit="sheet", disable=not progress):
        tiles = []
        for r in rows[s * per_sheet:(s + 1) * per_sheet]:
            if r["photo"] not in cache:
                cache = {r["photo"]: _read(r["photo"])}  # rows come photo by photo
            tiles.append(tile(cache[r["photo"]], (r["x1"], r["y1"], r["x2"], r["y2"]), r["id"]))
        cv2.imwrite(str(out / "sheets" / f"sheet_{s:03d}.png"), tile_grid(tiles, columns))
    info = {"pseudo_dir": str(pseudo_dir), "min_score": min_score, "min_px": min_px, "boxes": len(rows),
            "sheets": n_sheets, "per_sheet": per_sheet, "verdicts": list(VERDICTS)}
    (out / "verify.json").write_text(json.dumps(info, indent=1))
    return info


def read_verdicts(verify_dir: str | Path) -> dict[int, str]:
    """Every ``id,verdict`` row of ``verify_dir/verdicts/*.csv``; an unknown verdict, an id judged twice
    two ways or an id that is not in ``boxes.csv`` is an error (a typo must not become a label)."""
    verify_dir = Path(verify_dir)
    with open(verify_dir / "boxes.csv", newline="") as fh:
        known = {int(r["id"]) for r in csv.DictReader(fh)}
    out: dict[int, str] = {}
    for f in sorted((verify_dir / "verdicts").glob("*.csv")):
        with open(f, newline="") as fh:
            rows = list(csv.reader(fh))
        for n, row in enumerate(rows, 1):
            if not row or row[0].strip().lower() in ("id", "") or row[0].startswith("#"):
                continue
            try:
                i, v = int(row[0]), row[1].strip().lower()
            except (ValueError, IndexError) as e:
                raise ValueError(f"{f}:{n}: expected 'id,verdict', got {row}") from e
            if v not in VERDICTS:
                raise ValueError(f"{f}:{n}: verdict {v!r} is not one of {VERDICTS}")
            if i not in known:
                raise ValueError(f"{f}:{n}: id {i} is not in {verify_dir / 'boxes.csv'}")
            if out.get(i, v) != v:
                raise ValueError(f"{f}:{n}: id {i} judged both {out[i]!r} and {v!r}")
            out[i] = v
    return out


def apply_verdicts(pseudo_dir: str | Path, verify_dir: str | Path, out: str | Path, keep: float | None = None,
                   ignore: float | None = None, progress: bool = True) -> dict:
    """A pseudo-label folder at ``out`` from ``pseudo_dir``'s teacher boxes and the verdicts: judged boxes
    as their verdict says, boxes not judged (not shown, or no verdict) by ``pseudo_dir``'s own bands
    (``keep`` / ``ignore``, default the folder's): labels from ``keep`` up, greyed from ``ignore``."""
    pseudo_dir, verify_dir, out = Path(pseudo_dir), Path(verify_dir), Path(out)
    meta = json.loads((pseudo_dir / "pseudo.json").read_text())
    keep = meta["teacher"]["keep"] if keep is None else keep
    ignore = meta["teacher"]["ignore"] if ignore is None else ignore
    info = json.loads((verify_dir / "verify.json").read_text())
    verdicts = read_verdicts(verify_dir)
    judged: dict[str, list[tuple[np.ndarray, str]]] = {}
    with open(verify_dir / "boxes.csv", newline="") as fh:
        shown = list(csv.DictReader(fh))
    for r in shown:
        v = verdicts.get(int(r["id"]))
        if v is not None:
            judged.setdefault(r["stem"], []).append((np.array([float(r[k]) for k in ("x1", "y1", "x2", "y2")]), v))
    folder = Path(meta["photos_folder"])
    boxes = recorded_boxes(pseudo_dir, folder, ignore, meta.get("limit"))
    photos = list(boxes)
    own = own_car_flags(photos, boxes)
    # "sure" / "unsure" are the bands, as in every pseudo-label folder: labels and grey boxes
    counts = {"photos": 0, "sure": 0, "unsure": 0, "grey_fraction": 0.0}
    applied = dict.fromkeys(VERDICTS, 0)  # verdicts that met their teacher box
    for path in tqdm(photos, desc="verified labels", unit="photo", disable=not progress):
        img = _read(path)
        xyxy, scores = boxes[path]
        mine = judged.get(path.stem, [])
        sure, unsure = [], []
        for k, (b, s) in enumerate(zip(xyxy, scores, strict=True)):
            v = next((v for jb, v in mine if np.allclose(jb, b, atol=0.02)), None)  # boxes.csv rounds to 0.01
            if v is not None:
                applied[v] += 1
                (sure if v == "car" else unsure if v in GREYED else []).append(b)
            elif own[path][k]:
                unsure.append(b)
            else:
                (sure if s >= keep else unsure).append(b)
        sure_a, unsure_a = np.array(sure).reshape(-1, 4), np.array(unsure).reshape(-1, 4)
        # what a renderer inpaints: every box that may be a car (not the ones judged background)
        inpaint = np.vstack([sure_a, unsure_a])
        counts["grey_fraction"] += write_training_copy(out, path.stem, img, sure_a, unsure_a, inpaint,
                                                       np.ones(len(inpaint)))
        counts["photos"] += 1
        counts["sure"] += len(sure_a)
        counts["unsure"] += len(unsure_a)
    counts["grey_fraction"] = round(counts["grey_fraction"] / max(1, counts["photos"]), 4)
    matched = sum(applied.values())
    if matched < len(verdicts):  # the teacher was run again and drew other boxes: say so, do not guess
        print(f"carpose-verify-labels: {len(verdicts) - matched} of {len(verdicts)} judged boxes are not among "
              f"{pseudo_dir}'s teacher boxes (a teacher run other than the judged one?); they are left out",
              file=sys.stderr)
    result = {"photos_folder": str(folder), "teacher": {**meta["teacher"], "keep": keep, "ignore": ignore},
              "verified": {"from": str(pseudo_dir), "sheets": str(verify_dir), "min_score": info["min_score"],
                           "min_px": info["min_px"], "shown": info["boxes"], "judged": len(verdicts),
                           "matched": matched, "verdicts": applied},
              "unreadable": meta.get("unreadable", 0), **counts,
              "teacher_minutes": meta.get("teacher_minutes")}
    (out / "pseudo.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sh = sub.add_parser("sheets", help="numbered tiles of the teacher's boxes to judge")
    sh.add_argument("pseudo_dir", help="a carpose-pseudo-label folder (its teacher_2 boxes)")
    sh.add_argument("--out", required=True)
    sh.add_argument("--min-score", type=float, default=0.1, help="show boxes scoring at least this")
    sh.add_argument("--min-px", type=float, default=16.0, help="show boxes at least this tall (pixels)")
    sh.add_argument("--per-sheet", type=int, default=30)
    ap = sub.add_parser("apply", help="a pseudo-label folder from the verdicts")
    ap.add_argument("pseudo_dir")
    ap.add_argument("--verdicts", required=True, help="the folder 'sheets' wrote (boxes.csv, verdicts/)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--keep", type=float, help="boxes not judged: labels from here up (default: the folder's)")
    ap.add_argument("--ignore", type=float, help="boxes not judged: greyed from here up (default: the folder's)")
    for s in (sh, ap):
        s.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    try:
        if args.cmd == "sheets":
            info = write_sheets(args.pseudo_dir, args.out, args.min_score, args.min_px, args.per_sheet,
                                progress=not args.quiet)
            print(f"{info['boxes']} boxes on {info['sheets']} sheets in {args.out}/sheets; write verdicts "
                  f"(id,verdict: {' | '.join(VERDICTS)}) to {args.out}/verdicts/*.csv")
        else:
            info = apply_verdicts(args.pseudo_dir, args.verdicts, args.out, args.keep, args.ignore, not args.quiet)
            print(json.dumps({k: info[k] for k in ("photos", "sure", "unsure", "grey_fraction")}
                             | {"verdicts": info["verified"]["verdicts"]}))
    except (FileNotFoundError, ValueError) as e:
        print(f"carpose-verify-labels: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
