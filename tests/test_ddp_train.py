"""carpose-train data-parallel (DDP): real processes, a real rendered HDF5 file, a real gloo group.

- ``torchrun --nproc-per-node 2`` trains, only rank 0 writes the run and the ONNX, and ``--resume``
  continues it (and really trains: the weights move).
- One DDP step's gradients equal those of a single process on the same global batch.
- The ranks' shards of an epoch are disjoint, cover it, and every rank runs the same number of steps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from carpose.nets import build_model
from training.pose import distributed
from training.pose.checkpoint import load_checkpoint
from training.pose.data import AugmentConfig, CropStream, make_loader
from training.pose.train import soft_cross_entropy, soft_targets

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 180  # one run takes ~15 s here


def _torchrun(args: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "training.pose.train", *args]
    p = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:  # e.g. a rank waiting for a step the others never take
        p.terminate()  # torchrun stops its workers on SIGTERM (a SIGKILL would orphan them)
        out, err = p.communicate(timeout=60)
        pytest.fail(f"torchrun hung for {TIMEOUT_S} s:\n{out[-2000:]}{err[-3000:]}")
    assert p.returncode == 0, out[-3000:] + err[-3000:]
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


def test_torchrun_two_ranks_trains_writes_once_exports_and_resumes(pose_crops, tmp_path):
    out, onnx_path = tmp_path / "run", tmp_path / "ddp.onnx"
    # the fixture twice: 4 chunks (64 + 32 rows each), so each rank gets its own 2 chunks
    common = ["--train", str(pose_crops), str(pose_crops), "--val", str(pose_crops), "--val-name", "val",
              "--out", str(out), "--batch", "16", "--workers", "0", "--val-limit", "64", "--quiet"]
    r = _torchrun([*common, "--epochs", "2", "--export", str(onnx_path)])
    # rank 0 alone reports, exports and writes; nothing half-written is left behind
    assert r.stdout.count('"arch": "posenet"') == 1, r.stdout
    assert r.stdout.count(f"wrote {onnx_path}") == 1, r.stdout
    assert "2 ranks (global batch 32)" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["best.pt", "last.pt", "history.json", "curves.png", "eval.json", "val_polar.png", "val_quadrants.png",
         "val_calibration.png"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp.onnx", "run"]
    hist = json.loads((out / "history.json").read_text())["history"]
    assert [h["epoch"] for h in hist] == [1, 2]
    # checkpoints hold the plain network (no DDP "module." prefix): they load like single-process ones
    model, ck = load_checkpoint(out / "best.pt")
    assert not any(k.startswith(("module.", "net.")) for k in ck["state_dict"])
    from carpose.pose import PoseEstimator

    with h5py.File(pose_crops, "r") as f:
        crops = f["images"][:8]
    assert PoseEstimator(onnx_path, backend="onnxruntime").predict(crops).probs.shape == (8, 72)

    before = torch.load(out / "last.pt", weights_only=True)
    _torchrun([*common, "--epochs", "3", "--resume"])
    after = torch.load(out / "last.pt", weights_only=True)
    hist3 = json.loads((out / "history.json").read_text())["history"]
    assert [h["epoch"] for h in hist3] == [1, 2, 3]
    assert hist3[:2] == hist  # the first two epochs come from last.pt, not re-run
    assert after["epoch"] == 2 and before["epoch"] == 1
    assert not torch.equal(before["state_dict"]["head.weight"], after["state_dict"]["head.weight"])


# --- one step: DDP gradients == single-process gradients -------------------------------------------

def _fresh_model(train: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("posenet", 72)
    model.drop.p = 0.0
    return model.train(train)


def _grad_worker(rank: int, world_size: int, init_file: str, batch_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        torch.set_num_threads(1)
        x, tgt = torch.load(batch_file, weights_only=True)
        n = len(x) // world_size
        xs, ts = x[rank * n:(rank + 1) * n], tgt[rank * n:(rank + 1) * n]
        world = distributed.World(device=torch.device("cpu"), rank=rank, size=world_size)
        grads = {}
        for mode in ("train", "eval"):
            model = _fresh_model(train=mode == "train")
            net = distributed.logits_fn(model, world)  # what carpose-train steps with
            soft_cross_entropy(net(xs), ts).backward()
            grads[mode] = {k: p.grad.clone() for k, p in model.named_parameters()}
        torch.save(grads, Path(out_dir) / f"grads{rank}.pt")
    finally:
        dist.destroy_process_group()


def _grads(model: torch.nn.Module, x: torch.Tensor, tgt: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad()
    soft_cross_entropy(model.logits(x), tgt).backward()
    return {k: p.grad.clone() for k, p in model.named_parameters()}


def _max_rel_err(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).norm() / b[k].norm().clamp_min(1e-12)) for k in b)


def test_one_ddp_step_has_the_gradients_of_one_process_on_the_whole_batch(pose_crops, tmp_path):
    """Two gloo ranks, each on half of a 16-crop batch, against one process on all 16.

    Dropout is off (its masks are random). BatchNorm in train mode normalises with the statistics
    of the batch it sees, so a rank's half is normalised by that half's statistics, not the whole
    batch's: there the reference is the mean of the single-process gradients of the two halves
    (exactly what DDP computes). In eval mode (running statistics) the samples are independent and
    the reference is the single-process gradient of the whole batch.
    """
    x, az = next(iter(make_loader(CropStream([pose_crops], train=False), 16, 0)))
    tgt = soft_targets(az, 72, 7.5)
    torch.save((x, tgt), tmp_path / "batch.pt")
    mp.spawn(_grad_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "batch.pt"), str(tmp_path)),
             nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"grads{r}.pt", weights_only=True) for r in range(2)]

    model = _fresh_model(train=True)
    halves = [_grads(model, x[i * 8:(i + 1) * 8], tgt[i * 8:(i + 1) * 8]) for i in range(2)]
    ref_train = {k: (halves[0][k] + halves[1][k]) / 2 for k in halves[0]}
    ref_eval = _grads(_fresh_model(train=False), x, tgt)  # fresh: the halves moved the running statistics
    for g in ranks:  # both ranks hold the same, averaged, gradients
        assert g["train"].keys() == ref_train.keys()
        assert _max_rel_err(g["train"], ref_train) < 1e-5  # measured 9e-8
        assert _max_rel_err(g["eval"], ref_eval) < 1e-4  # measured 2e-6 (16 vs 8 + 8 terms summed)
    # and the check can tell: one half alone is far from the average
    assert _max_rel_err(halves[0], ref_train) > 1e-2


# --- sharding --------------------------------------------------------------------------------------

def test_ranks_read_disjoint_shards_that_cover_the_epoch_in_equal_steps(pose_crops):
    files = [pose_crops] * 3  # 6 chunks of 64 / 32 rows
    with h5py.File(pose_crops, "r") as f:
        labels = f["azimuth_deg"][:]
    for workers in (0, 2):
        streams = [CropStream(files, train=True, aug=AugmentConfig.none(), seed=3, rank=r, world_size=2)
                   for r in range(2)]
        for epoch in (0, 1):
            shards = []
            for s in streams:
                s.set_epoch(epoch)
                shards.append({s.chunks[c] for c in s.shard()})
            assert not shards[0] & shards[1]
            assert shards[0] | shards[1] == set(streams[0].chunks)
            steps = streams[0].batches_per_epoch(16, workers)
            assert steps == streams[1].batches_per_epoch(16, workers) > 0
            counts = []
            for s, mine in zip(streams, shards, strict=True):
                got = np.concatenate([az.numpy() for _, az in make_loader(s, 16, workers)])
                counts.append(len(got) // 16)
                # what a rank yields comes from its own chunks only (a full batch may skip a few rows)
                want = Counter(np.concatenate([labels[a:b] for _, a, b in mine]).tolist())
                assert not Counter(got.tolist()) - want  # a sub-multiset of the rank's own rows
                assert 0 <= want.total() - len(got) < 16 * max(1, workers)
            assert min(counts) == steps  # the step count every rank runs is the fewest any rank has
    # a world of 1 reads every chunk, as before
    one = CropStream(files, train=True, seed=3)
    assert sorted(one.shard()) == list(range(len(one.chunks)))
