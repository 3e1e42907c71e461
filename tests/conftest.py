"""Shared test fixtures: where ../shared is, and skipping cleanly where it is absent."""

from __future__ import annotations

import importlib.util
import os
import types
from pathlib import Path

import pytest

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

# Load triton (through torch._dynamo) before any test opens an EGL context: Mesa's llvmpipe and
# triton each bring an LLVM, and triton's loaded second segfaults (seen here when an optimiser was
# created after a render in the same process). Separate CLI processes never hit this.
import torch._dynamo  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CARPOSE_SHARED", REPO.parent / "shared"))


def load_script(relpath: str, name: str | None = None) -> types.ModuleType:
    """A script of the repository (``bench/...py``, ``scripts/...py``: not importable packages) loaded as a
    module, so tests can call its functions."""
    path = REPO / relpath
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def shared_cars() -> Path:
    cars = SHARED / "cars"
    if not any(cars.glob("*/model.obj")):
        pytest.skip(f"no ShapeNet cars at {cars} (../shared is optional)")
    return cars


@pytest.fixture(scope="session")
def shared_photos() -> Path:
    photos = SHARED / "real" / "nuscenes_front" / "image_2"
    if not any(photos.glob("*.png")):
        pytest.skip(f"no real photos at {photos} (../shared is optional)")
    return photos


@pytest.fixture(scope="session")
def pose_crops(tmp_path_factory) -> Path:
    """96 real rendered 64 px crops of procedural cars (a real HDF5 file, ~3 s)."""
    from training.render.cli import main

    out = tmp_path_factory.mktemp("pose") / "crops.h5"
    assert main(["crops", "--out", str(out), "--count", "96", "--procedural", "6", "--size", "64",
                 "--quiet", "--seed", "7"]) == 0
    return out


@pytest.fixture(scope="session")
def pose_scenes(tmp_path_factory) -> Path:
    """4 real rendered 320x240 scenes with several labelled cars each."""
    from training.render.cli import main

    out = tmp_path_factory.mktemp("pose") / "scenes.h5"
    assert main(["scenes", "--out", str(out), "--count", "4", "--procedural", "6", "--width", "320",
                 "--height", "240", "--quiet", "--seed", "3"]) == 0
    return out


@pytest.fixture(scope="session")
def unlabelled_photos(pose_scenes, tmp_path_factory) -> Path:
    """The rendered scenes as a folder of unlabelled JPEG photos (stand-ins for real_unlabelled)."""
    import cv2

    from training.dataset.reader import CarposeDataset

    folder = tmp_path_factory.mktemp("unlabelled") / "street"
    folder.mkdir()
    with CarposeDataset(pose_scenes) as ds:
        for i, img in ds.iter_images():
            cv2.imwrite(str(folder / f"photo_{i}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return folder


@pytest.fixture(scope="session")
def pose_run(tmp_path_factory, pose_crops) -> Path:
    """A real (tiny) carpose-train run: 3 epochs on 64 crops, validated on the crops file."""
    from training.pose.train import main

    out = tmp_path_factory.mktemp("run") / "posenet"
    assert main(["--train", str(pose_crops), "--val", str(pose_crops), "--val-name", "val", "--out", str(out),
                 "--epochs", "3", "--batch", "32", "--workers", "0", "--limit", "64", "--val-limit", "64", "--quiet",
                 "--lr", "3e-3"]) == 0
    return out


# ------------------------------------------------------------------------- Fast DDS shared memory
SHM = Path("/dev/shm")
_SESSION_START = 0.0


def pytest_sessionstart(session) -> None:
    global _SESSION_START
    import time

    _SESSION_START = time.time() - 1.0


def _mapped_shm() -> set[str]:
    """Every /dev/shm file some live process has mapped (/proc/<pid>/maps)."""
    mapped: set[str] = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        try:
            mapped |= {line.split()[-1] for line in maps.read_text().splitlines() if "/dev/shm/" in line}
        except OSError:  # the process ended, or is not ours to read
            continue
    return mapped


def pytest_sessionfinish(session, exitstatus) -> None:
    """Remove the Fast DDS shared-memory segments this session's ROS processes left behind.

    Fast DDS frees its segments (``/dev/shm/fastdds_*``, 0.5-35 MB each) on a clean exit only; the
    node tests stop some processes hard, and each run of the suite left about 280 MB in /dev/shm,
    which is RAM (seen: 7 GB after a day of runs, then a machine frozen by one more job). Only files
    created during this session and mapped by no live process are removed, so another ROS program
    running beside the tests keeps its segments.
    """
    if not SHM.is_dir():
        return
    stale = [p for p in SHM.glob("fastdds_*") if p.stat().st_mtime >= _SESSION_START]
    if not stale:
        return
    mapped = _mapped_shm()
    for p in stale:
        base = str(p).removesuffix("_el")
        if base not in mapped and str(p) not in mapped:
            p.unlink(missing_ok=True)
