"""The pose networks. Every network takes RGB crops as float32 NCHW in 0..255 and returns bin
probabilities (N, K): normalisation and softmax live *inside* the graph, so the ONNX model, the
TensorRT engine and the torch checkpoint all take the same input and give the same output, and no
runtime can forget a preprocessing step.

- ``posenet``: ours. A compact ResNet (stem 16 ch, four residual stages 32-64-128-256 ch, stride 2
  each, global average pool, 72-bin head), ~1.2 M parameters, ~60 MMAC at 128 px: cheap enough to
  train on a 2-core CPU in the ``--quick`` profile and to run on every crop of a frame in real time.
  (A 32-64-128-256-256 variant has 3x the compute and trained 4-5x slower per image here.)
- ``seed4``: the seed project's Keras network re-implemented for the baseline row: six conv blocks
  32-64-64-128-128-256 (3x3 conv, ReLU, 2x2 max-pool), dense 4096-1024-256 with dropout 0.4, a
  4-class softmax over 90 deg quadrants, 224 px input. Our crops are resized to 224 px inside the
  network so both models read the same data.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

#: ImageNet statistics in 0..255 units; stored in the model metadata for documentation only.
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)

ARCHS = ("posenet", "seed4")


class Normalize(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class BasicBlock(nn.Module):
    """ResNet basic block with a strided projection shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.short(x), inplace=True)


class PoseNet(nn.Module):
    def __init__(self, bins: int = 72, widths: tuple[int, ...] = (16, 32, 64, 128, 256),
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.norm = Normalize()
        w0 = widths[0]
        self.stem = nn.Sequential(nn.Conv2d(3, w0, 3, 2, 1, bias=False), nn.BatchNorm2d(w0), nn.ReLU(inplace=True))
        self.stages = nn.Sequential(*[BasicBlock(a, b, 2) for a, b in itertools.pairwise(widths)])
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(widths[-1], bins)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(self.norm(x)))
        return self.head(self.drop(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=1)


class Seed4Net(nn.Module):
    def __init__(self, bins: int = 4, input_size: int = 224) -> None:
        super().__init__()
        self.input_size = input_size
        self.norm = Normalize()
        layers: list[nn.Module] = []
        cin = 3
        for cout in (32, 64, 64, 128, 128, 256):
            layers += [nn.Conv2d(cin, cout, 3, 1, 1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            cin = cout
        self.features = nn.Sequential(*layers)
        side = input_size // 64
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(256 * side * side, 4096), nn.ReLU(inplace=True), nn.Dropout(0.4),
            nn.Linear(4096, 1024), nn.ReLU(inplace=True), nn.Dropout(0.4),
            nn.Linear(1024, 256), nn.ReLU(inplace=True), nn.Dropout(0.4), nn.Linear(256, bins))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return self.classifier(self.features(self.norm(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=1)


def build_model(arch: str, bins: int) -> nn.Module:
    if arch == "posenet":
        return PoseNet(bins=bins)
    if arch == "seed4":
        if bins != 4:
            raise ValueError("seed4 is the seed's 4-class network: bins must be 4")
        return Seed4Net(bins=4)
    raise ValueError(f"unknown arch {arch!r}; choose one of {ARCHS}")


def default_bins(arch: str) -> int:
    return 4 if arch == "seed4" else 72


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
