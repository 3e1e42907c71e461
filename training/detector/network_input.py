"""Photos as the detector network sees them: which files count as photos, and how one is letterboxed
into a tensor.

Why one module: the INT8 calibration (``quantize``), the warm start's BatchNorm calibration
(``warm_start``) and the trainer's choice of calibration images (``train``) must all feed the network
what ultralytics feeds it; each had its own copy (a hand-made letterbox in one of them). This module
imports nothing of the project, so every detector module can use it without an import cycle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def image_files(folder: str | Path) -> list[Path]:
    """Every photo under ``folder`` (any depth), sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def letterboxed(image_bgr: np.ndarray, box_hw: tuple[int, int]) -> np.ndarray:
    """The image letterboxed into the box as ultralytics does at run time (BGR uint8): fitted at its
    aspect, centred, padded with grey 114."""
    from ultralytics.data.augment import LetterBox

    return LetterBox(box_hw, auto=False, stride=32)(image=image_bgr)


def as_tensor(letterboxed_bgr: np.ndarray) -> np.ndarray:
    """1 x 3 x H x W float32 RGB in [0, 1]: the network's input."""
    x = letterboxed_bgr[:, :, ::-1].transpose(2, 0, 1)[None]
    return np.ascontiguousarray(x, dtype=np.float32) / 255.0


def network_input(image_bgr: np.ndarray, box_hw: tuple[int, int]) -> np.ndarray:
    """1 x 3 x H x W float32 RGB in [0, 1], letterboxed into the box as ultralytics does at run time."""
    return as_tensor(letterboxed(image_bgr, box_hw))


def network_inputs(paths: list[str | Path], box_hw: tuple[int, int]) -> np.ndarray:
    """N x 3 x H x W: the photo files read and letterboxed into one box (a batch)."""
    import cv2

    batch = []
    for p in paths:
        image = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{p}: not an image")
        batch.append(network_input(image, box_hw))
    return np.concatenate(batch)
