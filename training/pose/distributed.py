"""Data-parallel training under ``torchrun``: the few process-group facts ``carpose-train`` needs.

    torchrun --standalone --nproc-per-node 2 -m training.pose.train --train ... --out runs/ddp

``torchrun`` starts one process per rank and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the
rendezvous address; :func:`setup` sees them and joins the group (NCCL with one GPU per process,
``cuda:LOCAL_RANK``, when the device is CUDA; gloo on the CPU). Without them (plain ``carpose-train``)
nothing is initialised and every helper here is a no-op: rank 0 of a world of 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class World:
    device: torch.device
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one process that logs, writes files and exports."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1 or dist.is_initialized()


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``: CUDA when torch sees a GPU, else the CPU. Under torchrun each rank takes GPU LOCAL_RANK."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def setup(device_name: str = "auto") -> World:
    """Join torchrun's process group if this process was started by torchrun; else a world of 1."""
    if not launched_by_torchrun():
        return World(device=pick_device(device_name))
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = pick_device(device_name, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                device_id=device if device.type == "cuda" else None)
    return World(rank=rank, size=size, local_rank=local_rank, device=device)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a few floats over all ranks (identity in a world of 1)."""
    if not dist.is_initialized():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def same_on_all_ranks(value: float, device: torch.device) -> bool:
    """Whether every rank passed the same value (True in a world of 1); every rank gets the same answer."""
    if not dist.is_initialized():
        return True
    t = torch.tensor([value, -value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t[0] == -t[1])


class Logits(nn.Module):
    """``forward`` = the net's ``logits``. DDP synchronises gradients only for what goes through its
    ``forward`` (and our nets' ``forward`` returns probabilities for ONNX), so it wraps this."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.logits(x)


def logits_fn(model: nn.Module, world: World):
    """What the training step calls for logits: ``model.logits`` in a world of 1, else a
    DistributedDataParallel wrapper (gradients averaged over ranks in ``backward``; BatchNorm keeps
    per-rank batch statistics, rank 0's running statistics are broadcast at each forward). ``model``
    itself stays the plain network: checkpoints and evaluation use it unchanged."""
    if not world.distributed:
        return model.logits
    ids = [world.device.index] if world.device.type == "cuda" else None
    return DistributedDataParallel(Logits(model), device_ids=ids)
