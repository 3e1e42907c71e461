"""``carpose-train``: train the pose CNN (or the seed baseline) on rendered crops.

    carpose-train --train data/pose/train_*.h5 --val data/pose/random_*.h5 \
        --heldout data/pose/heldout_*.h5 --arch posenet --out runs/posenet --quick

Writes to ``--out``: ``best.pt`` (lowest ``--val`` MedErr, or with ``--real`` the best balanced score on
the labelled real validation sources, ``training/pose/real_val.py``; the held-out cars never choose
anything),
``last.pt`` (with optimiser state, for ``--resume``), ``history.json``, ``curves.png``, and after
training the full evaluation (``eval.json``, polar / quadrant / calibration PNGs) of ``best.pt`` on
the --val and --heldout sets; with ``--export PATH`` also the ONNX model (``carpose-export``, parity
checked). Uses the GPU when there is one (``--device auto``). Training files rendered over real
validation frames are refused (``training/dataset/provenance.py``); the background folders of the
files trained on go into the model's metadata (``train_backgrounds``).

Data-parallel (DDP) under torchrun, one process per GPU (NCCL) or several on a CPU (gloo):

    torchrun --standalone --nproc-per-node 2 -m training.pose.train --train ... --out runs/ddp

Each rank reads its own shard of the chunks, ``--batch`` is per rank (the global batch is
``--batch`` x ranks; ``--lr`` is not scaled for you), gradients are averaged over ranks, BatchNorm
statistics are per rank. Rank 0 alone validates, chooses ``best.pt`` and writes every file;
``--resume`` makes every rank load ``last.pt`` (so ``--out`` must be on storage every node sees).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from carpose.azimuth_head import DEFAULT_DECODE_HALF_WINDOW, DEFAULT_SIGMA_DEG, decode, soft_labels
from carpose.convention import CONVENTION_VERSION, angular_error, bin_centers
from carpose.crop import CropSpec
from carpose.nets import MEAN, STD, build_model, count_parameters, default_bins
from training.dataset.provenance import real_photo_records, refuse_leaky_datasets
from training.dataset.reader import CarposeDataset
from training.pose import distributed
from training.pose.checkpoint import load_checkpoint, save_checkpoint
from training.pose.data import AugmentConfig, CropStream, data_fingerprint, make_loader
from training.pose.metrics import azimuth_metrics, format_metrics, plot_training_curves, save_all_plots, save_json
from training.pose.real_val import format_real, load_real_val, score_real, selection_key

log = logging.getLogger("carpose.train")

#: Defaults per architecture: ours uses AdamW + cosine; seed4 keeps the seed's Adam at lr 5e-5.
ARCH_DEFAULTS = {
    "posenet": {"lr": 3e-3, "weight_decay": 5e-4, "optimizer": "adamw", "sigma_deg": DEFAULT_SIGMA_DEG,
                "half_window": DEFAULT_DECODE_HALF_WINDOW},
    "seed4": {"lr": 5e-5, "weight_decay": 0.0, "optimizer": "adam", "sigma_deg": 0.0, "half_window": 0},
}


def soft_targets(az: torch.Tensor, bins: int, sigma_deg: float) -> torch.Tensor:
    return torch.from_numpy(soft_labels(az.numpy(), bins, sigma_deg))


def soft_cross_entropy(logits: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    """The training loss: cross-entropy against soft labels, mean over the batch."""
    return -(tgt * F.log_softmax(logits, 1)).sum(1).mean()


#: Bins within this many degrees of the label's opposite view count as a flip (``flip_penalty``).
FLIP_WINDOW_DEG = 30.0


def flip_penalty(logits: torch.Tensor, az: torch.Tensor, window_deg: float = FLIP_WINDOW_DEG) -> torch.Tensor:
    """-log(1 - probability mass within ``window_deg`` of label + 180), mean over the batch.

    Why: cross-entropy against a narrow soft label charges a confident answer half a turn away no more
    than one 40 deg away, yet a front read as a rear is the product's worst failure. This term grows
    without bound as the opposite view takes the mass, and is ~0 while it holds none."""
    opposite = az.detach().cpu().double().numpy().reshape(-1, 1) + 180.0
    near = np.asarray(angular_error(bin_centers(logits.shape[1])[None, :], opposite)) <= window_deg
    mass = (torch.softmax(logits, 1) * torch.from_numpy(near).to(logits.device)).sum(1)
    return -torch.log1p(-mass.clamp(max=1 - 1e-6)).mean()


@torch.no_grad()
def predict(model: torch.nn.Module, loader, device: torch.device, half_window: int, bins: int,
            sigma_deg: float, progress: bool = False, desc: str = "eval") -> dict:
    """Run a model over a loader: predictions, confidences, labels and the mean loss."""
    model.eval()
    preds, confs, trues, losses = [], [], [], []
    for x, az in tqdm(loader, desc=desc, disable=not progress, leave=False):
        logits = model.logits(x.to(device))
        tgt = soft_targets(az, bins, sigma_deg).to(device)
        losses.append(float(soft_cross_entropy(logits, tgt)) * len(x))
        p, c = decode(torch.softmax(logits, 1).float().cpu().numpy(), half_window)
        preds.append(p)
        confs.append(c)
        trues.append(az.numpy())
    n = sum(len(t) for t in trues)
    if n == 0:
        return {"pred": np.zeros(0), "conf": np.zeros(0), "true": np.zeros(0), "loss": float("nan")}
    return {"pred": np.concatenate(preds), "conf": np.concatenate(confs), "true": np.concatenate(trues),
            "loss": sum(losses) / n}


def build_metadata(args: argparse.Namespace, bins: int, input_size: int, crop: dict, hp: dict) -> dict:
    return {
        "model_version": f"carpose-pose-{args.arch}-{datetime.now(timezone.utc).strftime('%Y%m%d%H%M%S')}",
        "arch": args.arch, "bins": bins, "input_size": input_size, "input_name": "image", "output_name": "probs",
        "input_format": "RGB float32 NCHW in 0..255 (normalisation inside the model)",
        "mean": list(MEAN), "std": list(STD), "crop": crop, "convention_version": CONVENTION_VERSION,
        "sigma_deg": hp["sigma_deg"], "decode_half_window": hp["half_window"],
        "train_files": [str(p) for p in args.train], "train_data_hash": data_fingerprint(args.train),
        "augment": args.aug, "init": args.init, "flip_weight": args.flip_weight,
        "selected_on": "real:" + ",".join(args.real) if args.real else "val",
        "train_backgrounds": refuse_leaky_datasets(args.train),
        "real_photos": [{k: r[k] for k in ("folder", "part", "classes", "photos", "copies")}
                        for p in dict.fromkeys(args.train) for r in real_photo_records(p)],
        "composite_backgrounds": str(args.composite_backgrounds) if args.composite_backgrounds else None,
        "neighbours": args.neighbours,
        "neighbour_front_height": list(args.neighbour_front_height),
        "neighbour_max_cover": args.neighbour_max_cover,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="carpose-train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", nargs="+", required=True, help="crops HDF5 file(s) to train on")
    p.add_argument("--composite-backgrounds", metavar="DIR",
                   help="photo folder (searched recursively, e.g. ../shared/real_unlabelled) that --train layers "
                        "files (carpose-render layers) are composited onto as they stream "
                        "(training/pose/composite.py); validation frames are refused")
    p.add_argument("--neighbours", type=float, default=0.0, metavar="P",
                   help="share of the composites (layers files) that get a second car beside the labelled one, "
                        "as in a parked row (training/pose/composite.py NeighbourConfig); default 0")
    p.add_argument("--neighbour-front-height", type=float, nargs=2, default=(1.0, 1.3), metavar=("LO", "HI"),
                   help="a neighbour in front is LO..HI times the target's height and stands lower by half the "
                        "excess (NeighbourConfig.front_height; KITTI's parked rows: nearer cars up to 2x and "
                        "lower by 0.2-1.3 heights)")
    p.add_argument("--neighbour-max-cover", type=float, default=0.5, metavar="F",
                   help="a neighbour in front hides at most this share of the target's pixels (NeighbourConfig)")
    p.add_argument("--grey-nearer", action="store_true",
                   help="crops grey the boxes of nearer overlapping cars (carpose.crop, issue 21): a neighbour in "
                        "front is greyed in the composites, the real validation crops are cut so, real crops "
                        "files must be (carpose-pseudo-pose --grey-nearer), and the model records it")
    p.add_argument("--val", nargs="*", default=[],
                   help="crops scored after every epoch to pick best.pt (for the shipped model: the training "
                        "cars from new views, the seed's random split), then reported")
    p.add_argument("--val-name", default="random_split", help="name of the --val set in reports")
    p.add_argument("--heldout", nargs="*", default=[],
                   help="crops of car models never trained on: reported only, never used to choose anything")
    p.add_argument("--real", nargs="+", metavar="SOURCE",
                   help="real validation sources scored after every epoch; they choose best.pt (balanced Acc@30 "
                        "over sources and view sectors) and are never trained on: registered names "
                        "(nuscenes_front kitti_val stanford_val, carpose.eval.real_sources) or KITTI folders "
                        "FOLDER[:IMAGES]")
    p.add_argument("--aug", choices=("default", "strong"), default="default",
                   help="training augmentation preset (training/pose/data.py AugmentConfig)")
    p.add_argument("--arch", choices=("posenet", "seed4"), default="posenet")
    p.add_argument("--init", help="start from these weights: a carpose .pt checkpoint, or an exported posenet "
                                  ".onnx such as models/carpose_pose.onnx (training/pose/warm_start.py)")
    p.add_argument("--flip-weight", type=float, default=0.0,
                   help="weight of the flip penalty (mass half a turn from the label; 0 = off)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--epochs", type=int, default=None, help="default 30, or 6 with --quick")
    p.add_argument("--quick", action="store_true", help="CPU profile: fewer epochs (see README)")
    p.add_argument("--batch", type=int, default=64,
                   help="crops per step and process (under torchrun the global batch is this x ranks)")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--limit", type=int, default=None, help="use at most this many rows of each file")
    p.add_argument("--val-limit", type=int, default=2048, help="rows per val file scored after each epoch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    p.add_argument("--export", metavar="ONNX", help="after training, export best.pt to this ONNX file "
                   "(carpose-export, parity-checked on the first --val or --train file)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.epochs is None:
        args.epochs = 6 if args.quick else 30
    return args


def calibration_crops(path: str | Path, composite_backgrounds: str | Path | None, n: int = 256) -> np.ndarray:
    """The first ``n`` crops of a training file as the network sees them (RGB uint8 N x S x S x 3, no
    augmentation): a crops file's rows, or a layers file's cars composited (its stored canvases are
    1.5x the crop, on black: BatchNorm statistics from them would not be a training crop's)."""
    stream = CropStream([path], train=False, limit=n, composite_backgrounds=composite_backgrounds)
    return np.stack([x.numpy().transpose(1, 2, 0) for x, _ in stream]).round().astype(np.uint8)


def neighbour_config(args: argparse.Namespace):
    """The neighbour cars' geometry of the run (training/pose/composite.py NeighbourConfig)."""
    if args.neighbours <= 0:
        return None
    from training.pose.composite import NeighbourConfig  # brings the renderer along: only when compositing

    lo, hi = args.neighbour_front_height
    if not 0 < lo <= hi or not 0 < args.neighbour_max_cover <= 1:
        raise ValueError(f"--neighbour-front-height {lo} {hi} / --neighbour-max-cover {args.neighbour_max_cover}: "
                         "want 0 < LO <= HI and a cover in (0, 1]")
    return NeighbourConfig(front_height=(lo, hi), max_cover=args.neighbour_max_cover)


def initial_model(args: argparse.Namespace, bins: int) -> torch.nn.Module:
    """A fresh network, or ``--init``'s weights (an ONNX export's BatchNorms calibrated on the first
    training crops, so its first training steps continue where it was)."""
    if not args.init:
        return build_model(args.arch, bins)
    from training.pose.warm_start import calibrate_batchnorm, load_pose_network

    model, _ = load_pose_network(args.init)
    if Path(args.init).suffix.lower() == ".onnx":  # folded BatchNorms: give them training statistics
        calibrate_batchnorm(model, calibration_crops(args.train[0], args.composite_backgrounds))
    return model


def train(args: argparse.Namespace, world: distributed.World | None = None) -> dict | None:
    """Train; the final report on rank 0 (the only rank that writes), None on the others."""
    world = world or distributed.World(device=distributed.pick_device(args.device))
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = world.device
    out = Path(args.out)
    if world.main:
        out.mkdir(parents=True, exist_ok=True)
    hp = dict(ARCH_DEFAULTS[args.arch])
    if args.lr is not None:
        hp["lr"] = args.lr
    bins = default_bins(args.arch)
    with CarposeDataset(args.train[0]) as ds:
        input_size = ds.image_shape[0]
        crop = ds.attrs["render_config"].get("crop", {"size": input_size, "context": 0.1, "fill": 114})
    crop = {**crop, "occluders": "grey_nearer" if args.grey_nearer else "none"}
    train_stream = CropStream(args.train, train=True, aug=AugmentConfig.named(args.aug), seed=args.seed,
                              limit=args.limit, rank=world.rank, world_size=world.size,
                              composite_backgrounds=args.composite_backgrounds, neighbours=args.neighbours,
                              grey_nearer=args.grey_nearer, neighbour_config=neighbour_config(args))
    train_loader = make_loader(train_stream, args.batch, args.workers)
    val_loader = make_loader(CropStream(args.val, train=False, limit=args.val_limit), 256, min(args.workers, 1)) \
        if args.val and world.main else None  # rank 0 alone scores and chooses best.pt
    real = [load_real_val(r, CropSpec.from_dict(crop)) for r in args.real] if args.real and world.main else None
    model = initial_model(args, bins).to(device)
    if world.size > 1:
        torch.manual_seed(args.seed + world.rank)  # same initial weights on every rank, own dropout masks
    meta = build_metadata(args, bins, input_size, crop, hp)
    steps_per_epoch = train_stream.batches_per_epoch(args.batch, args.workers)
    if steps_per_epoch == 0:
        raise ValueError(f"{len(train_stream)} training crops give no full batch of {args.batch}"
                         + (f" on every one of {world.size} ranks" if world.size > 1 else ""))
    total = steps_per_epoch * args.epochs
    if hp["optimizer"] == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
        warm = min(500, total // 10)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: (s + 1) / max(1, warm) if s < warm else
            0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, total - warm)))))
    else:
        opt = torch.optim.Adam(model.parameters(), lr=hp["lr"])
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    history: list[dict] = []
    start_epoch, best = 0, float("inf")
    best_real: tuple = (float("inf"),)
    if args.resume and (out / "last.pt").exists():
        _, ck = load_checkpoint(out / "last.pt", map_location=device)
        model.load_state_dict(ck["state_dict"])  # into this model: the optimiser holds its parameters
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        history, start_epoch, best = ck["history"], ck["epoch"] + 1, ck["best_med_err"]
        best_real = tuple(ck.get("best_real", best_real))
        meta = ck["metadata"]
        log.info("resumed from %s at epoch %d", out / "last.pt", start_epoch)
    if not distributed.same_on_all_ranks(start_epoch, device):
        raise ValueError(f"the ranks disagree on the epoch to resume at: does every node see {out / 'last.pt'}?")
    net = distributed.logits_fn(model, world)  # model.logits, or its DDP wrapper under torchrun
    log.info("%s: %d parameters, %d train crops (%d px), %d steps/epoch, %d epochs, device %s%s", args.arch,
             count_parameters(model), len(train_stream), input_size, steps_per_epoch, args.epochs, device,
             f", {world.size} ranks (global batch {args.batch * world.size})" if world.size > 1 else "")
    t0 = time.time()
    for epoch in range(start_epoch, args.epochs):
        model.train()
        train_stream.set_epoch(epoch)
        steps = train_stream.batches_per_epoch(args.batch, args.workers)  # the same on every rank
        run_loss, seen, te = 0.0, 0, time.time()
        bar = tqdm(itertools.islice(train_loader, steps), total=steps, desc=f"epoch {epoch + 1}/{args.epochs}",
                   disable=args.quiet or not world.main, leave=False)
        for x, az in bar:
            x = x.to(device, non_blocking=True)
            tgt = soft_targets(az, bins, hp["sigma_deg"]).to(device)
            logits = net(x)
            loss = soft_cross_entropy(logits, tgt)
            if args.flip_weight:
                loss = loss + args.flip_weight * flip_penalty(logits, az)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            run_loss += loss.item() * len(x)
            seen += len(x)
            bar.set_postfix(loss=f"{run_loss / seen:.3f}", img_s=f"{seen / (time.time() - te):.0f}")
        run_loss, seen = distributed.all_reduce_sum([run_loss, seen], device)  # over all ranks
        rec = {"epoch": epoch + 1, "train_loss": run_loss / max(1, seen), "lr": opt.param_groups[0]["lr"],
               "epoch_s": time.time() - te, "train_img_s": seen / max(1e-9, time.time() - te)}
        if not world.main:
            continue  # rank 0 alone scores, chooses and writes
        if val_loader is not None:
            r = predict(model, val_loader, device, hp["half_window"], bins, hp["sigma_deg"])
            rec["val_loss"] = r["loss"]
            m = azimuth_metrics(r["pred"], r["true"], r["conf"])
            rec["val"] = {k: m[k] for k in ("med_err_deg", "acc_30", "acc_15", "quadrant_acc", "flip_rate")}
            if m["med_err_deg"] < best:
                best = m["med_err_deg"]
                if real is None:
                    save_checkpoint(out / "best.pt", model, meta, {"epoch": epoch, "history": [*history, rec]})
        if real is not None:
            rec["real"] = score_real(model, real, device, hp["half_window"])
            if selection_key(rec["real"]) < best_real:
                best_real = selection_key(rec["real"])
                save_checkpoint(out / "best.pt", model, meta, {"epoch": epoch, "history": [*history, rec]})
        elif val_loader is None:
            save_checkpoint(out / "best.pt", model, meta, {"epoch": epoch, "history": [*history, rec]})
        history.append(rec)
        save_checkpoint(out / "last.pt", model, meta, {"epoch": epoch, "history": history, "best_med_err": best,
                                                        "best_real": list(best_real),
                                                        "optimizer": opt.state_dict(), "scheduler": sched.state_dict()})
        save_json({"history": history}, out / "history.json")
        plot_training_curves(history, out / "curves.png", f"{args.arch} training")
        v = rec.get("val", {})
        log.info("epoch %d: loss %.3f, val MedErr %s, Acc@30 %s; real: %s; %.0f img/s", epoch + 1,
                 rec["train_loss"], f"{v['med_err_deg']:.1f}" if v else "-",
                 f"{100 * v['acc_30']:.1f}%" if v else "-",
                 format_real(rec["real"]) if "real" in rec else "-", rec["train_img_s"])
    train_minutes = (time.time() - t0) / 60
    if not world.main:
        return None
    return final_report(args, out, device, hp, bins, train_minutes, history)


def final_report(args: argparse.Namespace, out: Path, device: torch.device, hp: dict, bins: int,
                 train_minutes: float, history: list[dict]) -> dict:
    """Score best.pt on the full validation sets, write eval.json + plots, store metrics in best.pt."""
    model, ck = load_checkpoint(out / "best.pt", map_location=device)
    report: dict = {"arch": args.arch, "train_minutes": round(train_minutes, 2), "device": str(device),
                    "parameters": count_parameters(model), "epochs": len(history),
                    "best_epoch": int(ck.get("epoch", -1)) + 1, "sets": {}}
    for name, files in (("heldout_models", args.heldout), (args.val_name, args.val)):
        if not files:
            continue
        loader = make_loader(CropStream(files, train=False), 256, min(args.workers, 1))
        r = predict(model, loader, device, hp["half_window"], bins, hp["sigma_deg"], progress=not args.quiet,
                    desc=name)
        m = azimuth_metrics(r["pred"], r["true"], r["conf"])
        m["files"] = [str(f) for f in files]
        report["sets"][name] = m
        save_all_plots(r["pred"], r["true"], m, out, name, f"{args.arch} on {name} (n={m['n']})")
        print(format_metrics(f"{args.arch} {name}", m))
    save_json(report, out / "eval.json")
    meta = dict(ck["metadata"], metrics={k: {x: v[x] for x in ("n", "med_err_deg", "acc_30", "acc_15", "quadrant_acc")}
                                          for k, v in report["sets"].items()})
    save_checkpoint(out / "best.pt", model, meta, {k: ck[k] for k in ("epoch", "history") if k in ck})
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    world = distributed.setup(args.device)  # joins torchrun's process group; a world of 1 without torchrun
    logging.basicConfig(level=logging.INFO if world.main else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        report = train(args, world)
    except (FileNotFoundError, ValueError) as exc:
        print(f"carpose-train: error: {exc}", file=sys.stderr)
        return 2
    finally:
        distributed.cleanup()
    if report is None:  # not rank 0
        return 0
    print(json.dumps({k: v for k, v in report.items() if k != "sets"}))
    if args.export:
        from training.pose.export import main as export_main

        return export_main([str(Path(args.out) / "best.pt"), "--out", args.export,
                            "--parity", str((args.val or args.train)[0])])
    return 0


if __name__ == "__main__":
    sys.exit(main())
