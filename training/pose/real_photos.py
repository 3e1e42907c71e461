"""``carpose-real-crops``: labelled real car photos made into pose training crops that look like a road camera's.

    carpose-real-crops ../shared/real/stanford_cars --out data/pose_real/stanford_train.h5 \\
        --backgrounds data/bg_road --copies 3

Why: the pose CNN learnt front from rear on renders and on its own pseudo-labels, and reads about one
real car in ten half a turn off (issue 40). A labelled-photos folder (carpose.eval.photo_labels) gives
thousands of real fronts and rears with hand-aligned labels, but as web photos: sharp, well lit, 100-200 px,
cut tight to the car with nothing around it. A road camera gives cars 20-120 px tall, blurred, noisy,
JPEG-compressed, often in poor light, in a detector's box a few percent off, with the street around them.
Each photo of the folder's **training part** (its classes split off the validation part, never a
validation class) becomes ``--copies`` crops, each drawn anew (``RoadLook``):

1. scaled so the car is 20-120 px tall (log-uniform; a share keep the photo's own size: near cars);
2. set into context: a patch of a road photo (``--backgrounds``, the car's bottom on the road rows), the
   photo's own border smeared outwards, or the crop's grey fill (a car cut by the frame's edge);
3. low light, blur (focus or motion), sensor noise and JPEG at that size;
4. with ``--truncate P``, a share P cut by the frame's edge (grey beyond it, the box ending there);
5. cut by ``carpose.crop.crop_box`` around a box jittered as a detector draws it.

The output is an ordinary crops file (training/dataset/schema.py) that ``carpose-train --train`` mixes with
renders; its ``render_config.real_photos`` names the folder, the part and the classes, and
training/dataset/provenance.py refuses it when any of its classes is a validation class. ``<out>.jpg``
is a contact sheet of crops per view sector with their labels: look at it before training on them.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from carpose.crop import CropSpec, box_in_crop, crop_box, crop_region
from carpose.eval.photo_labels import read_photo, read_photo_labels, split_mask, val_classes
from carpose.eval.real_sources import refuse_validation_frames
from training.pose.pseudo_pose import sector_sheet, write_real_crops

CONTEXTS = ("road", "smear", "grey")


@dataclass(frozen=True)
class RoadLook:
    """The draws that turn a web photo of a car into what a road camera's detector box gives."""

    height_px: tuple[float, float] = (20.0, 120.0)  # car height after scaling, log-uniform
    own_size_prob: float = 0.2  # keep the photo's size (a near car, sharp)
    context_probs: tuple[float, float, float] = (0.6, 0.2, 0.2)  # road patch / smeared border / grey fill
    low_light_prob: float = 0.25
    blur_prob: float = 0.35
    blur_sigma: tuple[float, float] = (0.4, 1.4)  # px at the car's scaled size
    motion_prob: float = 0.15  # of the blurred ones: a horizontal streak instead of a focus blur
    noise_prob: float = 0.4
    noise_sigma: tuple[float, float] = (2.0, 10.0)
    jpeg_prob: float = 0.6
    jpeg_quality: tuple[int, int] = (25, 85)
    truncate_prob: float = 0.0  # cut by the frame's edge: left / right (bottom a tenth of the time)
    truncate_share: tuple[float, float] = (0.1, 0.4)  # of the car's width (height) beyond the edge
    box_jitter: float = 0.04  # s.d. of each box edge, as a share of the box's width / height
    margin: float = 0.7  # canvas around the car, a share of its long side each way (room for context + jitter)

    def __post_init__(self) -> None:
        lo, hi = self.height_px
        if not 4 <= lo <= hi:
            raise ValueError(f"height_px wants 4 <= lo <= hi, got {self.height_px}")
        if len(self.context_probs) != len(CONTEXTS) or abs(sum(self.context_probs) - 1) > 1e-6:
            raise ValueError(f"context_probs: one share per {CONTEXTS}, summing to 1, got {self.context_probs}")


def scale_for(h: int, rng: np.random.Generator, look: RoadLook) -> float:
    """The factor a photo of a car ``h`` px tall is scaled by (never up: no detail the photo lacks)."""
    if rng.uniform() < look.own_size_prob:
        return 1.0
    lo, hi = look.height_px
    return min(1.0, math.exp(rng.uniform(math.log(lo), math.log(hi))) / h)


def context_canvas(car: np.ndarray, rng: np.random.Generator, look: RoadLook, backgrounds,
                   fill: int) -> tuple[np.ndarray, np.ndarray, str]:
    """The car (BGR) set in the middle of a square canvas with context around it; the canvas, the car's box
    in it (x1, y1, x2, y2) and which context was drawn."""
    ch, cw = car.shape[:2]
    side = int(math.ceil(max(ch, cw) * (1 + 2 * look.margin)))
    x0, y0 = (side - cw) // 2, (side - ch) // 2
    kind = CONTEXTS[int(rng.choice(len(CONTEXTS), p=look.context_probs))]
    if kind == "road" and backgrounds is None:
        kind = "smear"
    if kind == "road":
        patch = backgrounds.sample_on_ground(rng, side, (y0 + ch) / side)  # RGB
        canvas = np.ascontiguousarray(patch[:, :, ::-1])
    elif kind == "smear":
        canvas = cv2.copyMakeBorder(car, y0, side - ch - y0, x0, side - cw - x0, cv2.BORDER_REPLICATE)
        canvas = cv2.GaussianBlur(canvas, (0, 0), max(1.0, 0.15 * max(ch, cw)))
    else:
        canvas = np.full((side, side, 3), fill, np.uint8)
    canvas = canvas.copy()
    canvas[y0:y0 + ch, x0:x0 + cw] = car
    return canvas, np.array([x0, y0, x0 + cw, y0 + ch], np.float64), kind


def degrade(img: np.ndarray, rng: np.random.Generator, look: RoadLook) -> np.ndarray:
    """Low light, blur, noise and JPEG on a BGR uint8 image, each drawn with its probability."""
    f = img.astype(np.float32)
    if rng.uniform() < look.low_light_prob:  # darker and flatter: dusk, shade, an exposure for the sky
        f = 255.0 * (f / 255.0) ** rng.uniform(1.2, 2.2) * rng.uniform(0.35, 0.8)
    if rng.uniform() < look.blur_prob:
        sigma = rng.uniform(*look.blur_sigma)
        if rng.uniform() < look.motion_prob:
            k = max(3, int(round(4 * sigma)) | 1)
            kernel = np.zeros((k, k), np.float32)
            kernel[k // 2] = 1.0 / k
            f = cv2.filter2D(f, -1, kernel)
        else:
            f = cv2.GaussianBlur(f, (0, 0), sigma)
    if rng.uniform() < look.noise_prob:
        f += rng.normal(0.0, rng.uniform(*look.noise_sigma), f.shape).astype(np.float32)
    out = np.clip(f, 0, 255).astype(np.uint8)
    if rng.uniform() < look.jpeg_prob:
        q = int(rng.integers(look.jpeg_quality[0], look.jpeg_quality[1] + 1))
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out


def truncate(canvas: np.ndarray, box: np.ndarray, rng: np.random.Generator, look: RoadLook,
             fill: int) -> tuple[np.ndarray, np.ndarray]:
    """The car cut by the frame's edge, as a road camera cuts a car beside or below it: beyond a line
    across the car the canvas is the crop's fill (what ``crop_box`` pads outside a frame with) and the box
    ends at the line (a detector boxes what it sees)."""
    out, b = canvas.copy(), box.copy()
    f = rng.uniform(*look.truncate_share)
    side = rng.choice(3, p=(0.45, 0.45, 0.1))
    if side == 0:
        x = int(round(b[0] + f * (b[2] - b[0])))
        out[:, :x], b[0] = fill, x
    elif side == 1:
        x = int(round(b[2] - f * (b[2] - b[0])))
        out[:, x:], b[2] = fill, x
    else:
        y = int(round(b[3] - f * (b[3] - b[1])))
        out[y:], b[3] = fill, y
    return out, b


def jitter_box(box: np.ndarray, rng: np.random.Generator, look: RoadLook) -> np.ndarray:
    """Each edge moved by a normal draw of ``box_jitter`` times the box's width (x) or height (y)."""
    w, h = box[2] - box[0], box[3] - box[1]
    out = box + rng.normal(0.0, look.box_jitter, 4) * np.array([w, h, w, h])
    out[2] = max(out[2], out[0] + 0.5 * w)  # never less than half the car
    out[3] = max(out[3], out[1] + 0.5 * h)
    return out


def road_crop(photo_bgr: np.ndarray, rng: np.random.Generator, look: RoadLook, spec: CropSpec,
              backgrounds=None) -> tuple[np.ndarray, np.ndarray, str]:
    """One photo of a car (BGR, cut to the car) as a road camera's crop: RGB ``spec.size`` square, the
    car's true box in crop pixels, and the context kind drawn."""
    h, w = photo_bgr.shape[:2]
    s = scale_for(h, rng, look)
    car = photo_bgr
    if s < 1.0:
        car = cv2.resize(photo_bgr, (max(4, round(w * s)), max(4, round(h * s))), interpolation=cv2.INTER_AREA)
    canvas, box, kind = context_canvas(car, rng, look, backgrounds, spec.fill)
    canvas = degrade(canvas, rng, look)
    if look.truncate_prob and rng.uniform() < look.truncate_prob:
        canvas, box = truncate(canvas, box, rng, look, spec.fill)
    seen = jitter_box(box, rng, look)
    crop = crop_box(canvas, seen, spec)[:, :, ::-1]
    return np.ascontiguousarray(crop), box_in_crop(box, crop_region(seen, spec), spec.size), kind


#: Mirror-folded view sectors (a horizontal flip in training maps left onto right): front, front three-quarter,
#: side, rear three-quarter, rear, each 45 deg wide per side.
FOLDED_SECTORS = ("front", "front 3/4", "side", "rear 3/4", "rear")


def folded_sector(azimuth_deg: np.ndarray) -> np.ndarray:
    """Index into FOLDED_SECTORS of each azimuth (0 front, 90 / 270 side, 180 rear)."""
    a = np.asarray(azimuth_deg, np.float64) % 360.0
    a = np.minimum(a, 360.0 - a)  # 0..180, left and right folded
    return np.minimum(((a + 22.5) // 45).astype(int), 4)


def balanced_copies(azimuth_deg: np.ndarray, copies: int, max_copies: int = 8) -> np.ndarray:
    """Crops to draw per photo so that every folded view sector gets about the same number of crops (the
    mean of ``copies`` per photo kept overall), at least one and at most ``max_copies`` per photo. Why: web
    photographers shoot fronts (three in four of Stanford Cars' photos), and a network shown fronts three times
    as often learns to call an unclear car a front: the flip a road camera's rear views must not get."""
    sec = folded_sector(azimuth_deg)
    counts = np.bincount(sec, minlength=len(FOLDED_SECTORS)).astype(np.float64)
    present = counts > 0
    per_sector = copies * len(azimuth_deg) / present.sum()  # crops each present sector should get
    want = np.where(present, per_sector / np.maximum(counts, 1), 0.0)
    return np.clip(np.round(want[sec]), 1, max_copies).astype(int)


def make_real_crops(folder: str | Path, out: str | Path, copies: int = 3, backgrounds: str | Path | None = None,
                    spec: CropSpec | None = None, look: RoadLook | None = None, seed: int = 0,
                    limit: int | None = None, progress: bool = True, balance: bool = False) -> dict:
    """Write the training part of ``folder`` as a crops file (``copies`` draws per photo, or with ``balance``
    as many per photo as ``balanced_copies`` says); returns a summary."""
    spec = spec or CropSpec()
    look = look or RoadLook()
    labels = read_photo_labels(folder)
    held = set(val_classes(labels))
    train = labels.subset(split_mask(labels, "train"))
    assert not held & {int(c) for c in train.class_id}, "the class split leaked"  # split_mask's own contract
    n_photos = len(train) if limit is None else min(limit, len(train))
    bg = None
    if backgrounds is not None:
        from training.render.backgrounds import BackgroundSource  # brings the renderer's helpers along

        refuse_validation_frames(backgrounds, "context around real car photos")
        bg = BackgroundSource.from_folder(backgrounds)
        if not bg.photos:
            raise FileNotFoundError(f"no photos under {backgrounds}")
    per_photo = balanced_copies(train.azimuth_deg[:n_photos], copies) if balance else np.full(n_photos, copies)
    crops, az, bbox, cls, kinds = [], [], [], [], []
    unreadable = 0
    for i in tqdm(range(n_photos), desc="real crops", disable=not progress):
        photo = read_photo(train.image_path(i))
        if photo is None:
            unreadable += 1
            continue
        for c in range(int(per_photo[i])):
            rng = np.random.default_rng([seed, i, c])
            crop, box, kind = road_crop(photo, rng, look, spec, bg)
            crops.append(crop)
            az.append(train.azimuth_deg[i])
            bbox.append(box)
            cls.append(int(train.class_id[i]))
            kinds.append(kind)
    if not crops:
        raise FileNotFoundError(f"{folder}: no readable photo in its training part")
    order = np.random.default_rng([seed, 7]).permutation(len(crops))  # copies of one photo not side by side
    crops_a = np.stack(crops)[order]
    source = {"folder": str(folder), "part": "train", "classes": sorted(set(cls)), "val_classes": sorted(held),
              "photos": n_photos - unreadable, "copies": copies, "balanced": balance, "seed": seed,
              "look": asdict(look),
              "backgrounds": str(backgrounds) if backgrounds is not None else None}
    write_real_crops(out, crops_a, np.asarray(az)[order], np.asarray(bbox)[order], spec, "real_photos", source,
                     "training part: no validation class", source["backgrounds"] or "", seed)
    sheet = sector_sheet_of(crops_a, np.asarray(az)[order], Path(out).with_suffix(".jpg"))
    counts = {k: kinds.count(k) for k in CONTEXTS}
    return {"out": str(out), "rows": len(crops_a), "photos": n_photos - unreadable, "unreadable": unreadable,
            "classes": len(source["classes"]), "contexts": counts, "sheet": str(sheet)}


def sector_sheet_of(crops: np.ndarray, label: np.ndarray, path: Path, per_sector: int = 10) -> Path:
    """Crops per view sector with their labels drawn (training/pose/pseudo_pose's sheet), written as JPEG."""
    cv2.imwrite(str(path), sector_sheet(crops, label, np.ones(len(label)), per_sector))  # tiles are BGR
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="carpose-real-crops", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", help="a labelled-photos folder (labels.tsv + images/), e.g. ../shared/real/stanford_cars")
    p.add_argument("--out", required=True, help="crops HDF5 to write (a sheet <out>.jpg beside it)")
    p.add_argument("--copies", type=int, default=3, help="crops drawn per photo (default 3; with --balance the mean)")
    p.add_argument("--balance", action="store_true",
                   help="as many crops per photo as make every mirror-folded view sector (front, front 3/4, side, "
                        "rear 3/4, rear) about as common as the others: 1 to 8 per photo (balanced_copies)")
    p.add_argument("--backgrounds", help="road photos for the context around a car (e.g. data/bg_road); "
                                         "without: smeared borders and grey fill only")
    p.add_argument("--size", type=int, default=128, help="crop size (the pose model's input)")
    p.add_argument("--truncate", type=float, default=0.0, metavar="P",
                   help="share of the crops whose car the frame's edge cuts (RoadLook.truncate_prob; default 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, help="at most this many photos (a quick look)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.copies < 1:
        p.error("--copies must be >= 1")
    try:
        r = make_real_crops(args.folder, args.out, args.copies, args.backgrounds, CropSpec(size=args.size),
                            RoadLook(truncate_prob=args.truncate), seed=args.seed, limit=args.limit,
                            progress=not args.quiet, balance=args.balance)
    except (FileNotFoundError, ValueError) as exc:
        print(f"carpose-real-crops: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {r['out']}: {r['rows']} crops of {r['photos']} photos ({r['classes']} classes, training part), "
          f"contexts {r['contexts']}; {r['unreadable']} unreadable; look at {r['sheet']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
