"""``carpose-render``: make synthetic training data from the command line.

    carpose-render crops   --out data/train.h5 --count 50000 --models ../shared/cars --workers 2
    carpose-render layers  --out data/layers.h5 --count 20000 --models ../shared/cars --workers 2
    carpose-render scenes  --out data/scenes.h5 --count 500
    carpose-render crops   --out /shared/train.h5 --count 1000000 --ray    # on a Ray cluster
    carpose-render preview data/train.h5 --out data/train_preview.png
    carpose-render info    data/train.h5
    carpose-render export  data/scenes.h5 --yolo data/yolo --kitti data/kitti
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from carpose.crop import CropSpec


def _add_job_args(p: argparse.ArgumentParser, default_count: int, backgrounds: bool = True) -> None:
    p.add_argument("--out", required=True, help="HDF5 file to write (written as <out>.parts, then renamed)")
    p.add_argument("--count", type=int, default=default_count)
    p.add_argument("--models", action="append", default=None, metavar="DIR",
                   help="folder of car meshes (OBJ/GLB/GLTF/PLY), e.g. ../shared/cars_more; repeat for several "
                        "folders; default: procedural cars only")
    p.add_argument("--procedural", type=int, default=None,
                   help="number of procedural cars (default 48 without --models, 0 with)")
    p.add_argument("--panel-vans", type=int, default=0, metavar="N",
                   help="also N procedural panel vans (delivery vans: KITTI's Vans, which the default fleet lacks)")
    p.add_argument("--fleet-seed", type=int, default=0, help="seed of the procedural fleet")
    p.add_argument("--split", choices=("all", "train", "heldout"), default="all",
                   help="which car models to use: all, the training ones, or the held-out ones")
    p.add_argument("--heldout-fraction", type=float, default=0.25)
    p.add_argument("--heldout", default="", help="comma-separated model names to hold out (overrides fraction)")
    if backgrounds:
        p.add_argument("--backgrounds", help="folder of photos for backgrounds; default: procedural backgrounds")
        p.add_argument("--background-labels", nargs="+", metavar="DIR",
                       help="KITTI label_2 folder(s) of the background photos: crops avoid (road scenes inpaint) every "
                       "box any of them lists (real road frames with their cars removed); photos without a label "
                       "file in any are skipped")
    p.add_argument("--procedural-backgrounds", type=float, default=0.3,
                   help="share of procedural backgrounds when --backgrounds is given (layers: when compositing with "
                        "carpose-train --composite-backgrounds; default 0.3)")
    p.add_argument("--studio", action="store_true",
                   help="the old look: flat paint only, studio key/fill lights, no shadows")
    p.add_argument("--no-interference", action="store_true", help="no occluders, blur, noise, jitter, JPEG")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--ray", nargs="?", const="auto", default=None, metavar="ADDRESS",
                   help="render the blocks as Ray tasks: on the cluster this node joined with `ray start` "
                        "(no ADDRESS, or 'auto'), at HOST:PORT, or on a private local cluster of --workers "
                        "CPUs ('local'); see docs/scaling.md")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output and its parts")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def background_labels(folders: list[str] | None) -> str | tuple[str, ...] | None:
    """``--background-labels`` for RenderConfig: one folder as a plain path, as every dataset rendered
    before several folders were possible records it (their attributes stay byte for byte the same);
    several as a tuple."""
    if not folders:
        return None
    return folders[0] if len(folders) == 1 else tuple(folders)


def _job(args: argparse.Namespace, kind: str) -> int:
    from training.render.interference import InterferenceConfig
    from training.render.jobs import ModelSpec, run_job
    from training.render.preview import summary
    from training.render.sampling import RenderConfig
    from training.render.scenes import SceneConfig

    models_dir = None if not args.models else args.models[0] if len(args.models) == 1 else tuple(args.models)
    spec = ModelSpec(models_dir=models_dir, procedural=args.procedural, fleet_seed=args.fleet_seed,
                     panel_vans=args.panel_vans, split=args.split, heldout_fraction=args.heldout_fraction,
                     heldout=tuple(n for n in args.heldout.split(",") if n))
    inter = InterferenceConfig.none() if args.no_interference else InterferenceConfig()
    look = dict(lighting="studio", materials="flat", shadows=False, haze=(0.0, 0.0)) if args.studio else {}
    cfg = RenderConfig(crop=CropSpec(size=getattr(args, "size", 128)), interference=inter,
                       background_labels=background_labels(getattr(args, "background_labels", None)),
                       procedural_backgrounds=args.procedural_backgrounds,
                       **look)
    scfg = None
    if kind == "scenes":
        from training.render.scenes import ROAD_CAMERA

        road = dict(ROAD_CAMERA) if args.layout == "road" else {}
        if args.hfov:
            road["hfov_deg"] = tuple(args.hfov)
        scfg = SceneConfig(width=args.width, height=args.height, max_cars=args.max_cars, layout=args.layout,
                           negatives=args.negatives, negative_dirs=tuple(args.negative_models or ()),
                           skip_negatives=tuple(args.skip_negative or ()), cross_street=args.cross_street,
                           cross_street_m=tuple(args.cross_street_m), parking_lot=args.parking_lot,
                           edge_margin_deg=args.edge_margin, side_first=args.side_first, **road)
    out = run_job(kind, args.out, args.count, spec, cfg, scfg=scfg, backgrounds=getattr(args, "backgrounds", None),
                  seed=args.seed, workers=args.workers, block_size=args.block_size,
                  overwrite=args.overwrite, progress=not args.quiet, ray=args.ray)
    print(summary(out))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="carpose-render", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("crops", help="detector-like crops of single cars with azimuth labels")
    _add_job_args(c, 1000)
    c.add_argument("--size", type=int, default=128, help="crop side in pixels (model input size)")
    lay = sub.add_parser("layers", help="cars rendered once with coverage and shadow, no background: composited "
                         "onto real photos at training time (carpose-train --composite-backgrounds DIR)")
    _add_job_args(lay, 1000, backgrounds=False)
    lay.add_argument("--size", type=int, default=128, help="crop side the composites are cut to (canvas: 1.5x)")
    s = sub.add_parser("scenes", help="full frames with several labelled cars")
    _add_job_args(s, 100)
    s.add_argument("--width", type=int, default=640)
    s.add_argument("--height", type=int, default=480)
    s.add_argument("--max-cars", type=int, default=6)
    s.add_argument("--layout", choices=("random", "road"), default="random",
                   help="road: kerb rows, lots and traffic in a road camera's perspective on whole road frames")
    s.add_argument("--negatives", type=int, default=0,
                   help="road layout: up to N unlabelled non-cars per scene (lorries, poles, fences, trees...)")
    s.add_argument("--negative-models", action="append", metavar="DIR",
                   help="mesh folder of extra negatives, e.g. ../shared/distractors (repeatable)")
    s.add_argument("--skip-negative", action="append", metavar="KIND",
                   help="road layout: leave out this kind of procedural negative (repeatable), e.g. box_van: KITTI "
                        "labels a windowless van a Van, which the product counts as a car")
    s.add_argument("--cross-street", type=float, default=0.45, metavar="P",
                   help="road layout: chance of a cross street ahead, its cars side-on (default 0.45)")
    s.add_argument("--cross-street-m", type=float, nargs=2, default=(10.0, 45.0), metavar=("NEAR", "FAR"),
                   help="road layout: distance range of the cross street in metres (default 10 45)")
    s.add_argument("--parking-lot", type=float, default=0.4, metavar="P",
                   help="road layout: chance of a parking lot beside the road (default 0.4)")
    s.add_argument("--side-first", action="store_true",
                   help="road layout: place the cross street and the lot before the kerb rows, which otherwise "
                        "take most of --max-cars first")
    s.add_argument("--edge-margin", type=float, default=4.0, metavar="DEG",
                   help="road layout: a car's centre may stand this far outside the field of view, so cars cut "
                        "by the image border are drawn (default 4)")
    s.add_argument("--hfov", type=float, nargs=2, metavar=("MIN", "MAX"),
                   help="horizontal field of view range in degrees (road layout default 55-75; a wide camera "
                        "such as KITTI's 1242 x 375 one sees about 81)")
    pv = sub.add_parser("preview", help="contact sheet PNG with labels drawn on")
    pv.add_argument("dataset")
    pv.add_argument("--out", help="PNG path (default: <dataset>_preview.png)")
    pv.add_argument("-n", type=int, default=32)
    inf = sub.add_parser("info", help="print a dataset summary (validates the file)")
    inf.add_argument("dataset")
    ex = sub.add_parser("export", help="export a scenes file to YOLO and/or KITTI folders")
    ex.add_argument("dataset")
    ex.add_argument("--yolo", help="output folder for ultralytics YOLO format")
    ex.add_argument("--kitti", help="output folder for KITTI object format")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from training.cars.loader import CarModelError
    from training.dataset.reader import DatasetError
    from training.dataset.writer import JobMismatchError

    try:
        if args.cmd in ("crops", "layers", "scenes"):
            return _job(args, args.cmd)
        if args.cmd == "info":
            from training.render.preview import summary

            print(summary(args.dataset))
        elif args.cmd == "preview":
            import cv2

            from training.dataset.reader import CarposeDataset
            from training.render.preview import crops_sheet, scenes_sheet

            with CarposeDataset(args.dataset) as ds:
                kind = ds.kind
            if kind == "layers":
                raise ValueError(f"{args.dataset} holds layers (no backgrounds): see them composited with "
                                 "python -m training.pose.composite preview LAYERS.h5 --backgrounds DIR")
            sheet = crops_sheet(args.dataset, n=args.n) if kind == "crops" else scenes_sheet(args.dataset)
            out = Path(args.out or Path(args.dataset).with_suffix("").as_posix() + "_preview.png")
            cv2.imwrite(str(out), sheet)
            print(f"wrote {out}")
        elif args.cmd == "export":
            from training.dataset.export import export_kitti, export_yolo

            if not (args.yolo or args.kitti):
                parser.error("export needs --yolo DIR and/or --kitti DIR")
            if args.yolo:
                print(f"wrote {export_yolo(args.dataset, args.yolo)}")
            if args.kitti:
                print(f"wrote {export_kitti(args.dataset, args.kitti)}")
    except (CarModelError, DatasetError, JobMismatchError, FileExistsError, FileNotFoundError, ValueError) as exc:
        print(f"carpose-render: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
