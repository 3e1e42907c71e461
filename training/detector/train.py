"""``carpose-train-det``: train the shipped car detector from scratch on rendered scenes.

    carpose-train-det data/det/scenes.h5 --out runs/det --epochs 30 --imgsz 416 \
        --export models/carpose_det.onnx

COCO-pretrained weights cannot be downloaded on this project's machines, so the shipped detector
is a YOLO11n (ultralytics' own architecture file, random initialisation) trained only on carpose
renders: the scenes file is exported to YOLO format (one class, 'car'), trained with ultralytics'
trainer (why: it brings mosaic/scale/HSV augmentation, the loss and the mAP evaluation we would
otherwise rewrite), and exported to ONNX at a fixed input size. Users with real weights (e.g. a COCO
``yolo11n.pt``) pass them to the node / ``carpose-infer`` instead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from carpose.detect import PROVENANCE_KEY  # importing carpose.detect makes ultralytics offline
from training.dataset.export import BOX_KINDS, export_yolo
from training.dataset.provenance import refuse_leaky_datasets
from training.detector.network_input import image_files
from training.detector.pseudo_label import pseudo_folder_provenance

#: ultralytics' trainer integrations, each imported by every training while its setting is on.
INTEGRATIONS = ("clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb")


def no_integration_callbacks() -> None:
    """Switch ultralytics' experiment-tracking integrations off for this process, in memory (the
    user's settings file is not rewritten). carpose uses none of them; some reach the network
    (comet, wandb, clearml, mlflow), and ``raytune`` imports Ray inside every training, which fixes
    Ray's configuration for the whole process (a later Ray cluster test then could not connect)."""
    from ultralytics.utils import SETTINGS

    for key in INTEGRATIONS:
        dict.__setitem__(SETTINGS, key, False)  # bypasses JSONDict's save, as carpose.detect does


def train_detector(scenes: str | Path | list, out: str | Path, epochs: int, imgsz: int, batch: int, workers: int,
                   device: str, arch: str = "yolo11n.yaml", seed: int = 0, fraction: float = 1.0,
                   init: str | Path | None = None, hours: float | None = None, resume: bool = False,
                   pseudo: list[str | Path] | None = None, lr0: float | None = None,
                   warmup_bias_lr: float = 0.0, boxes: str = "visible", close_mosaic: int | None = None) -> Path:
    """Train; return the path of the final .pt weights (``last.pt``: the synthetic validation split
    that ultralytics' ``best.pt`` is chosen on says little about real frames). Every epoch's weights
    stay as ``epoch<N>.pt`` (N counts from 0) so a run can be scored per epoch on real frames.

    ``init``: start from these weights (a ``.pt``, or an exported ``.onnx`` such as the shipped
    detector, converted by training.detector.warm_start) instead of random ones. ``hours``: train
    for this long (ultralytics' ``time``; the learning-rate schedule fits the time and ``epochs``
    is ignored), so a run fits a session. ``resume``: continue ``<out>/train/weights/last.pt``
    after an interruption, with its own settings. ``pseudo``: carpose-pseudo-label folders whose
    real photos and teacher labels join the training images (never the validation split: the
    synthetic validation split stays synthetic, and the choice is made on real sources anyway).
    ``lr0``: AdamW at this learning rate instead of ultralytics' 'auto' optimizer (which ignores any
    lr0 and, for runs this short, picks AdamW at 0.002): a gentler fine-tuning of a warm start.
    ``warmup_bias_lr``: where the biases' rate starts its warm-up with ``lr0`` (0.1 only to reproduce
    the runs made before the default was mended, below). ``boxes``: the scenes' cars boxed by their
    visible pixels or whole (training.dataset.export.export_yolo). ``close_mosaic``: how many last epochs
    train on whole frames instead of mosaics (default: a fifth of them, at least one)."""
    from ultralytics import YOLO

    no_integration_callbacks()
    out = Path(out).resolve()
    last = out / "train" / "weights" / "last.pt"
    if resume:
        if not last.exists():
            raise FileNotFoundError(f"nothing to resume: {last} does not exist")
        done, planned = resume_point(last)
        if not 0 < done < planned:  # ultralytics would stop on a bare assert
            raise ValueError(f"nothing to resume: {last} finished its {planned} epochs (a finished run keeps "
                             "no optimizer; an --hours run plans only the epochs its time fitted): start a "
                             "new run with --init on its weights")
        model = YOLO(str(last))
        model.add_callback("on_train_start", use_every_core)
        model.train(resume=True)
        return last
    data_dir = out / "yolo_data"
    done = data_dir / "exported"  # written after the last file: a cut-off export starts again
    files = [scenes] if isinstance(scenes, (str, Path)) else list(scenes)
    marker = "\n".join([*(str(f) for f in files), f"boxes: {boxes}"]) + "\n"
    if done.exists():  # a rerun reuses the export, of the same kind of box only
        had = next((ln.removeprefix("boxes: ") for ln in done.read_text().splitlines() if ln.startswith("boxes: ")),
                   "visible")  # folders exported before --boxes hold visible boxes
        if had != boxes:
            raise ValueError(f"{data_dir} holds {had} boxes, not {boxes}: use another --out")
    else:
        for k, f in enumerate(files):
            export_yolo(f, data_dir, prefix=f"s{k}_" if len(files) > 1 else "", boxes=boxes)
        done.write_text(marker)
    data_yaml = data_dir / "data.yaml"
    if pseudo:
        train_dirs = [str(data_dir / "images" / "train"),
                      *(str((Path(d) / "yolo" / "images" / "train").resolve()) for d in pseudo)]
        text = data_yaml.read_text().splitlines()
        data_yaml = out / "data_with_pseudo.yaml"
        data_yaml.write_text("\n".join(f"train: {train_dirs}" if line.startswith("train:") else line
                                       for line in text) + "\n")
    start = arch
    if init is not None:
        from training.detector.warm_start import as_weights

        start = str(as_weights(init, out / "init_from_onnx.pt", arch, calibration_images(data_yaml), imgsz))
    model = YOLO(start)  # an architecture file builds random weights: no download
    model.add_callback("on_train_start", use_every_core)
    extra = {"time": hours} if hours else {}
    if lr0 is not None:
        # warmup_bias_lr 0: ultralytics' warm-up starts the biases' rate at 0.1 (made for SGD from
        # scratch; its 'auto' optimizer sets 0 itself, an explicit AdamW keeps 0.1), and with AdamW
        # each warm-up step then moves every bias, BatchNorm shifts included, by up to 0.1: the
        # warm start was lost in the first epoch (every --lr0 run up to round 5 of issue 22).
        extra |= {"optimizer": "AdamW", "lr0": lr0, "warmup_bias_lr": warmup_bias_lr}
    # A warm start is a fine-tuning: a short LR warm-up (ultralytics' default, 3 epochs, would be a
    # whole CPU run). A timed run re-plans its epoch count after the first epoch, so its last epoch
    # without mosaic is asked for directly.
    warmup = 0.3 if init is not None else 3.0
    if close_mosaic is None:
        close_mosaic = 1 if hours else max(1, epochs // 5)
    model.train(data=str(data_yaml), epochs=epochs, imgsz=imgsz, batch=batch, workers=workers,
                device=device, project=str(out), name="train", exist_ok=True, pretrained=init is not None,
                seed=seed, plots=False, amp=device != "cpu", cache="ram", patience=max(10, epochs),
                fraction=fraction, close_mosaic=close_mosaic, warmup_epochs=warmup, save_period=1,
                verbose=False, **extra)
    if not last.exists():
        raise RuntimeError(f"ultralytics wrote no {last}")
    return last


def use_every_core(trainer) -> None:
    """ultralytics trains on a CPU with ``cpu_count() - 1`` torch threads (its NUM_THREADS, meant to leave
    a core to the data loader, which it runs in the main thread on a CPU anyway): one thread on a
    2-core machine, half of it idle. Every core computes instead."""
    import torch

    if trainer.device.type == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)


def resume_point(last: Path) -> tuple[int, int]:
    """(epochs finished, epochs planned) of an ultralytics checkpoint. A run cut off between epochs
    keeps its last finished epoch and optimizer; a finished run's ``last.pt`` is stripped (epoch -1)."""
    import torch

    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    return int(ckpt.get("epoch", -1)) + 1, int(ckpt["train_args"]["epochs"])


def calibration_images(data_yaml: Path, count: int = 64, seed: int = 0) -> list[Path]:
    """``count`` training images drawn evenly from every training folder of ``data_yaml`` (scenes and
    pseudo-labelled photos alike): what an ONNX warm start's BatchNorms are calibrated on."""
    import random

    import yaml

    cfg = yaml.safe_load(data_yaml.read_text())
    root = Path(cfg.get("path", data_yaml.parent))
    dirs = cfg["train"] if isinstance(cfg["train"], list) else [cfg["train"]]
    # A pseudo-label folder listed several times (to weigh it) is searched once.
    files = sorted({f for d in dict.fromkeys(dirs) for f in image_files(root / d)})
    if not files:
        raise FileNotFoundError(f"{data_yaml}: no training images to calibrate a warm start on")
    return random.Random(seed).sample(files, min(count, len(files)))


def export_onnx(weights: str | Path, dest: str | Path, imgsz: int | tuple[int, int],
                provenance: dict | None = None, dynamic: bool = False) -> Path:
    """ONNX at a fixed input, a side or (height, width) (letterboxed by ultralytics at predict
    time), NMS outside. With ``dynamic`` the height and width stay free and ``imgsz`` is the box each
    frame is fitted into (recorded in the metadata; carpose.detect.onnx_input_size): a frame of
    another aspect than the box is padded only to a multiple of 32, not to the box. ``provenance``
    (what the weights were trained on: background folders, pseudo-labelled photo folders) goes into
    the file's metadata, where ``carpose-benchmark`` reads it back to flag figures on frames the
    detector has seen."""
    from ultralytics import YOLO

    model = YOLO(str(weights))
    onnx_path = Path(model.export(format="onnx", imgsz=imgsz, simplify=False, dynamic=dynamic, opset=17))
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.copyfile(onnx_path, tmp)
    if provenance is not None:
        import onnx

        proto = onnx.load(str(tmp))
        entry = next((p for p in proto.metadata_props if p.key == PROVENANCE_KEY), None) \
            or proto.metadata_props.add()
        entry.key, entry.value = PROVENANCE_KEY, json.dumps(provenance)
        onnx.save(proto, str(tmp))
    tmp.replace(dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="carpose-train-det", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenes", nargs="+", help="scenes HDF5 file(s) (carpose-render scenes)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--imgsz", type=int, default=416)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--arch", default="yolo11n.yaml", help="ultralytics architecture file (random init)")
    p.add_argument("--fraction", type=float, default=1.0, help="fraction of the training images to use")
    p.add_argument("--init", help="start from these weights (.pt, or an exported .onnx like models/carpose_det.onnx)")
    p.add_argument("--lr0", type=float, help="AdamW at this learning rate (default: ultralytics' 'auto', AdamW 0.002)")
    p.add_argument("--warmup-bias-lr", type=float, default=0.0,
                   help="with --lr0: the biases' warm-up starting rate (ultralytics' own default 0.1 moves every "
                        "bias of a warm start by up to 0.1 a step under AdamW; 0.1 reproduces runs made before "
                        "2026-12-06's mend)")
    p.add_argument("--hours", type=float, help="train for this long instead of --epochs (fits the LR schedule)")
    p.add_argument("--resume", action="store_true", help="continue <out>/train/weights/last.pt")
    p.add_argument("--pseudo", action="append", metavar="DIR",
                   help="a carpose-pseudo-label folder: its real photos and teacher labels join the training "
                        "images (repeat for several)")
    p.add_argument("--boxes", choices=BOX_KINDS, default="visible",
                   help="box a scene's car by its visible pixels or whole, cut by the frame (amodal: KITTI's way)")
    p.add_argument("--close-mosaic", type=int, metavar="N",
                   help="train the last N epochs on whole frames instead of mosaics (default: a fifth, at least 1)")
    p.add_argument("--seed", type=int, default=0,
                   help="ultralytics' seed (data order, augmentation): two seeds show how far a rerun moves")
    p.add_argument("--export", help="also export the final (or, with --real, the chosen) weights to this ONNX path")
    p.add_argument("--real", nargs="*", metavar="SOURCE",
                   help="after training, choose among every epoch's weights and last.pt on these real validation "
                        "sources (carpose-det-select; no names: every registered source found)")
    p.add_argument("--export-hw", type=int, nargs=2, metavar=("H", "W"),
                   help="export a rectangular input (e.g. 384 640 for 16:9 cameras) instead of --imgsz square")
    p.add_argument("--dynamic", action="store_true",
                   help="export with a free height and width: frames are fitted into the export size and padded "
                        "only to a multiple of 32 (as the shipped detector)")
    args = p.parse_args(argv)
    t0 = time.time()
    try:
        backgrounds = refuse_leaky_datasets(args.scenes)
        pseudo_photos = [pseudo_folder_provenance(d) for d in args.pseudo or []]
        best = train_detector(args.scenes, args.out, args.epochs, args.imgsz, args.batch, args.workers,
                              args.device, args.arch, fraction=args.fraction, init=args.init, hours=args.hours,
                              resume=args.resume, pseudo=args.pseudo, lr0=args.lr0,
                              warmup_bias_lr=args.warmup_bias_lr, boxes=args.boxes,
                              close_mosaic=args.close_mosaic, seed=args.seed)
    except (FileNotFoundError, ValueError) as exc:  # ValidationLeakError too
        print(f"carpose-train-det: error: {exc}", file=sys.stderr)
        return 2
    info = {"weights": str(best), "train_minutes": round((time.time() - t0) / 60, 1), "epochs": args.epochs,
            "imgsz": args.imgsz, "arch": args.arch, "scenes": [str(s) for s in args.scenes],
            "backgrounds": backgrounds, "pseudo_labelled_photos": pseudo_photos}
    if args.real is not None:
        from carpose.eval.real_sources import resolve_sources
        from training.detector.select import format_scores, select_checkpoint

        weights = best.parent
        candidates = [*sorted(weights.glob("epoch*.pt"), key=lambda q: int(q.stem[5:].split("_")[0])), best]
        sources, _ = resolve_sources(args.real or None)
        best, scores, k = select_checkpoint(candidates, sources, imgsz=args.imgsz)
        print(format_scores(scores, k))
        info |= {"weights": str(best), "chosen_on": [s.name for s in sources], "selection": scores}
    if args.export:
        provenance = {"train_backgrounds": backgrounds, "pseudo_labelled_photos": pseudo_photos,
                      "chosen_on": info.get("chosen_on", [])}
        info["onnx"] = str(export_onnx(best, args.export, tuple(args.export_hw) if args.export_hw else args.imgsz,
                                       provenance, args.dynamic))
    (Path(args.out) / "det_train.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
