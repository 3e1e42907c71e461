"""``carpose-build-engine``: turn the exported pose CNN (ONNX) into a TensorRT engine for this GPU.

    carpose-build-engine models/pose.onnx --out models/pose.engine                  # FP16 (default)
    carpose-build-engine models/pose.onnx --out models/pose.fp32.engine --precision fp32
    carpose-build-engine models/pose.onnx --out models/pose.int8.engine --precision int8 \\
        --calib data/train.h5 --calib-batches 32 --calib-batch-size 16
    options: --min-batch 1 --opt-batch 8 --max-batch 64  --timing-cache PATH  --workspace-mib 1024

Why a build step on the target machine: a TensorRT engine is specific to the TensorRT version and
the GPU it was built on, so it is built where it runs (never shipped), and a ``<engine>.json``
sidecar records what it was built with so the runtime (carpose/trt_backend.py) can refuse a stale
engine with the command that rebuilds it. Everything that does not need TensorRT (reading the
ONNX metadata, the input profile, the calibration batches, the sidecar) is a plain function here
and is tested on machines without a GPU; TensorRT itself is imported only inside
:func:`build_engine`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from carpose.convention import convention_mismatch
from carpose.trt_backend import (
    BUILD_COMMAND,
    SIDECAR_VERSION,
    EngineError,
    import_tensorrt,
    sidecar_path,
)

#: Written into every sidecar; bump when the build recipe changes what an engine computes.
BUILDER_VERSION = "carpose-build-engine 1"
INPUT_NAME = "image"
OUTPUT_NAME = "probs"
METADATA_KEY = "carpose"
REQUIRED_METADATA = ("input_size", "bins", "convention_version", "model_version")
PRECISIONS = ("fp16", "fp32", "int8")


class EngineBuildError(EngineError):
    """The inputs of a build (ONNX model, options, calibration data) are unusable; says why."""


# ----------------------------------------------------------------------------------------------
# ONNX model: metadata and identity


def read_onnx_metadata(onnx_path: str | Path) -> dict:
    """The ``carpose`` metadata of an exported pose model, checked against its graph.

    Why check the graph too: the runtime trusts ``input_size`` and ``bins`` from the sidecar, which
    copies them from here, so they must agree with the tensors TensorRT will actually build.
    """
    import onnx

    path = Path(onnx_path)
    if not path.exists():
        raise FileNotFoundError(f"ONNX model {path} does not exist (export the pose CNN first)")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends for non-ONNX files
        raise EngineBuildError(f"{path} is not a readable ONNX model: {exc}") from exc
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        raise EngineBuildError(f"{path} has no {METADATA_KEY!r} entry in its metadata_props (found "
                               f"{sorted(props) or 'none'}); it was not exported by the carpose exporter, "
                               f"which records input_size, bins, convention_version and model_version")
    try:
        meta = json.loads(props[METADATA_KEY])
    except ValueError as exc:
        raise EngineBuildError(f"{path}: metadata {METADATA_KEY!r} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise EngineBuildError(f"{path}: metadata {METADATA_KEY!r} must be a JSON object, got {type(meta).__name__}")
    missing = [k for k in REQUIRED_METADATA if k not in meta]
    if missing:
        raise EngineBuildError(f"{path}: carpose metadata lacks {missing} (has {sorted(meta)})")
    for key in ("input_size", "bins"):
        if not isinstance(meta[key], int) or isinstance(meta[key], bool) or meta[key] < (1 if key == "input_size"
                                                                                         else 2):
            raise EngineBuildError(f"{path}: carpose metadata {key} must be a positive integer, got {meta[key]!r}")
    if why := convention_mismatch(meta["convention_version"], str(path)):
        raise EngineBuildError(why)
    _check_graph(path, model, meta["input_size"], meta["bins"])
    return meta


def _dims(value_info: Any) -> list[int | None]:
    """Static dims as ints, symbolic or unknown ones as None."""
    return [d.dim_value if d.HasField("dim_value") else None for d in value_info.type.tensor_type.shape.dim]


def _check_graph(path: Path, model: Any, size: int, bins: int) -> None:
    inits = {i.name for i in model.graph.initializer}
    inputs = {i.name: i for i in model.graph.input if i.name not in inits}
    outputs = {o.name: o for o in model.graph.output}
    if INPUT_NAME not in inputs:
        raise EngineBuildError(f"{path}: no graph input named {INPUT_NAME!r} (inputs: {sorted(inputs)})")
    if OUTPUT_NAME not in outputs:
        raise EngineBuildError(f"{path}: no graph output named {OUTPUT_NAME!r} (outputs: {sorted(outputs)})")
    dims = _dims(inputs[INPUT_NAME])
    if len(dims) != 4 or any(d is not None and d != want for d, want in zip(dims[1:], (3, size, size), strict=False)):
        raise EngineBuildError(f"{path}: input {INPUT_NAME!r} has shape {dims}, expected [N, 3, {size}, {size}] "
                               f"from its metadata input_size={size}")
    if dims[0] not in (None, 0):
        raise EngineBuildError(f"{path}: input {INPUT_NAME!r} has a fixed batch of {dims[0]}; export it with a "
                               f"dynamic batch axis so the engine can take 1..max crops per frame")
    odims = _dims(outputs[OUTPUT_NAME])
    if len(odims) != 2 or (odims[1] is not None and odims[1] != bins):
        raise EngineBuildError(f"{path}: output {OUTPUT_NAME!r} has shape {odims}, expected [N, {bins}] from its "
                               f"metadata bins={bins}")


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks: ties an engine to the exact ONNX it came from."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# Input profile


@dataclass(frozen=True)
class ProfileSpec:
    """min/opt/max input shapes of the one optimisation profile. TensorRT tunes kernels for ``opt``
    and accepts any batch in [min, max]; the runtime splits bigger batches."""

    input_name: str
    min_shape: tuple[int, int, int, int]
    opt_shape: tuple[int, int, int, int]
    max_shape: tuple[int, int, int, int]

    def as_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min_shape), "opt": list(self.opt_shape), "max": list(self.max_shape)}


def make_profile(input_size: int, min_batch: int = 1, opt_batch: int = 8, max_batch: int = 64,
                 input_name: str = INPUT_NAME) -> ProfileSpec:
    """Profile for NCHW crops of ``input_size``; requires 1 <= min <= opt <= max."""
    for name, v in (("input_size", input_size), ("min batch", min_batch), ("opt batch", opt_batch),
                    ("max batch", max_batch)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise EngineBuildError(f"{name} must be an integer >= 1, got {v!r}")
    if not min_batch <= opt_batch <= max_batch:
        raise EngineBuildError(f"batch sizes must satisfy 1 <= min <= opt <= max, got min={min_batch}, "
                               f"opt={opt_batch}, max={max_batch}")

    def shape(n: int) -> tuple[int, int, int, int]:
        return (int(n), 3, int(input_size), int(input_size))

    return ProfileSpec(input_name, shape(min_batch), shape(opt_batch), shape(max_batch))


# ----------------------------------------------------------------------------------------------
# INT8 calibration data


def crops_to_nchw(images: np.ndarray) -> np.ndarray:
    """uint8 (N, S, S, 3) RGB -> float32 (N, 3, S, S) in 0..255: the model's input layout
    (normalisation is inside the model, so calibration must not normalise)."""
    if images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"expected (N, H, W, 3) crops, got shape {images.shape}")
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)


def select_calibration_rows(count: int, num_batches: int, batch_size: int, seed: int = 0) -> np.ndarray:
    """(B, batch_size) row indices, sorted within each batch (h5py reads increasing indices).

    Why random rather than the first rows: files are written in sample order, which may be ordered
    by model or view; a seeded draw without replacement spreads calibration over the whole file
    and is the same on every run. B is reduced when the file holds fewer rows than asked for.
    """
    if batch_size < 1 or num_batches < 1:
        raise EngineBuildError(f"calibration needs batches >= 1 and batch size >= 1, got {num_batches} x {batch_size}")
    if count < batch_size:
        raise EngineBuildError(f"calibration file holds {count} crops, fewer than one batch of {batch_size}")
    b = min(num_batches, count // batch_size)
    rows = np.random.default_rng(seed).choice(count, size=b * batch_size, replace=False)
    return np.sort(rows.reshape(b, batch_size), axis=1)


class CalibrationBatches:
    """Streams INT8 calibration batches from a carpose crops HDF5 file, one batch in memory at a time.

    The crop size must equal the model's input size: resizing here would calibrate on images the
    network never sees at runtime.
    """

    def __init__(self, h5_path: str | Path, input_size: int, batch_size: int = 16, num_batches: int = 32,
                 seed: int = 0) -> None:
        from training.dataset.reader import CarposeDataset

        self.path = Path(h5_path)
        self.input_size = int(input_size)
        self.batch_size = int(batch_size)
        self._ds = CarposeDataset(self.path)  # validates the schema, raises DatasetError / FileNotFoundError
        if self._ds.kind != "crops":
            raise EngineBuildError(f"calibration file {self.path} holds {self._ds.kind}, expected a crops file "
                                   f"(carpose-render crops)")
        shape = self._ds.image_shape
        if shape != (self.input_size, self.input_size, 3):
            self._ds.close()
            raise EngineBuildError(f"calibration crops in {self.path} are {shape[0]}x{shape[1]} but the model takes "
                                   f"{self.input_size}x{self.input_size} inputs; render crops with "
                                   f"--size {self.input_size}")
        self.rows = select_calibration_rows(len(self._ds), num_batches, self.batch_size, seed)
        self._ds.close()

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.batch_size, 3, self.input_size, self.input_size)

    def batch(self, i: int) -> np.ndarray:
        """Batch ``i`` as float32 (batch_size, 3, S, S), 0..255."""
        return crops_to_nchw(self._ds.h5["images"][self.rows[i]])

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            for i in range(len(self)):
                yield self.batch(i)
        finally:
            self._ds.close()

    def close(self) -> None:
        self._ds.close()


def _make_calibrator(trt: Any, batches: CalibrationBatches, cache_out: Path | None) -> Any:
    """An IInt8EntropyCalibrator2 feeding ``batches`` through one reused CUDA buffer.

    Defined inside a function because the base class only exists once tensorrt is imported. The
    cache is written (for inspection or trtexec) but never read back: a stale cache from another
    model or data set would silently set wrong INT8 scales.
    """
    import torch

    class _Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._iter = iter(batches)
            self._buf = torch.empty(batches.shape, dtype=torch.float32, device="cuda")
            self.done = 0

        def get_batch_size(self) -> int:
            return batches.batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            x = next(self._iter, None)
            if x is None:
                return None
            self._buf.copy_(torch.from_numpy(x))
            torch.cuda.synchronize()
            self.done += 1
            return [int(self._buf.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            if cache_out is not None:
                _atomic_write_bytes(cache_out, bytes(cache))

    return _Calibrator()


# ----------------------------------------------------------------------------------------------
# Sidecar and files


def gpu_info() -> dict:
    """Name, compute capability and driver of CUDA device 0 via torch (cheap, no nvidia-smi)."""
    import torch

    if not torch.cuda.is_available():
        raise EngineBuildError("no CUDA GPU visible to torch: TensorRT engines are built on the GPU they will run "
                               "on (check the NVIDIA driver and CUDA_VISIBLE_DEVICES)")
    major, minor = torch.cuda.get_device_capability(0)
    driver = None
    try:  # private but long-standing; only informational, so any failure just leaves it out
        v = int(torch._C._cuda_getDriverVersion())
        driver = f"{v // 1000}.{(v % 1000) // 10}"
    except Exception:
        pass
    return {"gpu_name": torch.cuda.get_device_name(0), "compute_capability": f"{major}.{minor}",
            "cuda_driver": driver, "cuda_runtime": torch.version.cuda}


def make_sidecar(*, onnx_path: str | Path, onnx_sha256: str, metadata: dict, profile: ProfileSpec, precision: str,
                 tensorrt_version: str, gpu: dict, engine_sha256: str, engine_bytes: int,
                 rebuild_command: str, calibration: dict | None = None) -> dict:
    """Everything the runtime needs to trust (or refuse) the engine, and a human needs to trace it."""
    return {
        "sidecar_version": SIDECAR_VERSION,
        "builder": BUILDER_VERSION,
        "created": datetime.now(timezone.utc).isoformat(),
        "tensorrt_version": str(tensorrt_version),
        "gpu_name": gpu.get("gpu_name"),
        "compute_capability": gpu.get("compute_capability"),
        "cuda_driver": gpu.get("cuda_driver"),
        "cuda_runtime": gpu.get("cuda_runtime"),
        "precision": precision,
        "input_name": profile.input_name,
        "output_name": OUTPUT_NAME,
        "input_shapes": profile.as_dict(),
        "input_size": int(metadata["input_size"]),
        "bins": int(metadata["bins"]),
        "source_onnx": {"path": str(Path(onnx_path).resolve()), "sha256": onnx_sha256},
        "carpose": dict(metadata),
        "calibration": calibration,
        "engine_sha256": engine_sha256,
        "engine_bytes": int(engine_bytes),
        "rebuild_command": rebuild_command,
    }


def write_sidecar(engine_path: str | Path, sidecar: dict) -> Path:
    """Write ``<engine>.json`` atomically; returns its path."""
    out = sidecar_path(engine_path)
    _atomic_write_bytes(out, (json.dumps(sidecar, indent=1, sort_keys=True) + "\n").encode())
    return out


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write under a temporary name in the same folder, fsync, rename: the final name is never half-written."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def build_command_line(onnx_path: str | Path, out: str | Path, precision: str, profile: ProfileSpec,
                       calib: str | Path | None = None, calib_batches: int = 32, calib_batch_size: int = 16,
                       timing_cache: str | Path | None = None, workspace_mib: int = 1024) -> str:
    """The full command (absolute paths) that reproduces a build: stored in the sidecar, printed by
    the runtime when the engine has to be rebuilt on another machine or TensorRT version."""
    args = [BUILD_COMMAND, str(Path(onnx_path).resolve()), "--out", str(Path(out).resolve()),
            "--precision", precision, "--min-batch", str(profile.min_shape[0]),
            "--opt-batch", str(profile.opt_shape[0]), "--max-batch", str(profile.max_shape[0]),
            "--workspace-mib", str(workspace_mib)]
    if calib is not None:
        args += ["--calib", str(Path(calib).resolve()), "--calib-batches", str(calib_batches),
                 "--calib-batch-size", str(calib_batch_size)]
    if timing_cache is not None:
        args += ["--timing-cache", str(Path(timing_cache).resolve())]
    return shlex.join(args)


# ----------------------------------------------------------------------------------------------
# The TensorRT part


def build_engine(onnx_path: str | Path, out: str | Path, *, precision: str = "fp16",
                 profile: ProfileSpec | None = None, calib: CalibrationBatches | None = None,
                 timing_cache: str | Path | None = None, workspace_mib: int = 1024,
                 metadata: dict | None = None, command: str | None = None,
                 log: Callable[[str], None] = print) -> dict:
    """Build and write ``out`` plus its sidecar; returns the sidecar. Needs TensorRT and a GPU.

    The engine and the sidecar appear under their final names only when both are complete; an old
    sidecar is removed first, so a reader never pairs a new engine with an old sidecar.
    """
    if precision not in PRECISIONS:
        raise EngineBuildError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "int8" and calib is None:
        raise EngineBuildError("--precision int8 needs calibration crops: pass --calib data.h5")
    onnx_path, out = Path(onnx_path), Path(out)
    meta = metadata if metadata is not None else read_onnx_metadata(onnx_path)
    profile = profile or make_profile(meta["input_size"])
    trt = import_tensorrt()
    gpu = gpu_info()
    log(f"building {precision} engine from {onnx_path} with TensorRT {trt.__version__} on {gpu['gpu_name']} "
        f"(sm {gpu['compute_capability']}), batch {profile.min_shape[0]}/{profile.opt_shape[0]}/"
        f"{profile.max_shape[0]}")

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT's ONNX parser rejected {onnx_path}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # int8 keeps fp16 for layers that do not quantise well
    opt_profile = builder.create_optimization_profile()
    opt_profile.set_shape(profile.input_name, profile.min_shape, profile.opt_shape, profile.max_shape)
    config.add_optimization_profile(opt_profile)
    calibrator = None
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        calib_profile = builder.create_optimization_profile()  # calibration runs at one fixed batch
        calib_profile.set_shape(profile.input_name, calib.shape, calib.shape, calib.shape)
        config.set_calibration_profile(calib_profile)
        calibrator = _make_calibrator(trt, calib, out.with_name(out.name + ".calib"))
        config.int8_calibrator = calibrator

    cache_path = Path(timing_cache) if timing_cache is not None else None
    cache_bytes = cache_path.read_bytes() if cache_path is not None and cache_path.exists() else b""
    cache = config.create_timing_cache(cache_bytes)
    if cache is None or not config.set_timing_cache(cache, False):  # False: refuse another TensorRT/GPU's cache
        log(f"timing cache {cache_path} is unreadable or from another TensorRT/GPU; starting a fresh one")
        config.set_timing_cache(config.create_timing_cache(b""), False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT could not build an engine from {onnx_path} (see the TensorRT log above)")
    blob = bytes(serialized)
    if cache_path is not None:
        _atomic_write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))

    calib_info = None
    if calib is not None:
        calib_info = {"path": str(calib.path.resolve()), "batches": len(calib), "batch_size": calib.batch_size,
                      "batches_used": getattr(calibrator, "done", None)}
    sidecar = make_sidecar(
        onnx_path=onnx_path, onnx_sha256=file_sha256(onnx_path), metadata=meta, profile=profile,
        precision=precision, tensorrt_version=trt.__version__, gpu=gpu,
        engine_sha256=hashlib.sha256(blob).hexdigest(), engine_bytes=len(blob), calibration=calib_info,
        rebuild_command=command or build_command_line(
            onnx_path, out, precision, profile, calib.path if calib is not None else None,
            len(calib) if calib is not None else 32, calib.batch_size if calib is not None else 16,
            timing_cache, workspace_mib))
    out.parent.mkdir(parents=True, exist_ok=True)
    old = sidecar_path(out)
    if old.exists():
        old.unlink()
    _atomic_write_bytes(out, blob)
    write_sidecar(out, sidecar)
    log(f"wrote {out} ({len(blob) / 1e6:.1f} MB) and {sidecar_path(out)}")
    return sidecar


# ----------------------------------------------------------------------------------------------
# CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=BUILD_COMMAND, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("onnx", help="pose CNN exported to ONNX (input 'image', output 'probs', carpose metadata)")
    parser.add_argument("--out", required=True, help="engine file to write (plus <out>.json)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp16")
    parser.add_argument("--calib", help="carpose crops HDF5 file for INT8 calibration (needed for int8)")
    parser.add_argument("--calib-batches", type=int, default=32)
    parser.add_argument("--calib-batch-size", type=int, default=16)
    parser.add_argument("--min-batch", type=int, default=1)
    parser.add_argument("--opt-batch", type=int, default=8)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--timing-cache", help="TensorRT timing cache to read and update (speeds up rebuilds)")
    parser.add_argument("--workspace-mib", type=int, default=1024, help="builder workspace limit in MiB")
    args = parser.parse_args(argv)

    from training.dataset.reader import DatasetError

    calib = None
    try:
        if args.workspace_mib < 1:
            raise EngineBuildError(f"--workspace-mib must be >= 1, got {args.workspace_mib}")
        if args.calib is not None and args.precision != "int8":
            raise EngineBuildError(f"--calib is only used with --precision int8 (got --precision {args.precision})")
        if args.precision == "int8" and args.calib is None:
            raise EngineBuildError("--precision int8 needs calibration crops: pass --calib data.h5 "
                                   "(a carpose-render crops file at the model's input size)")
        # Check everything that needs no GPU first, so a bad model or option fails in a second.
        meta = read_onnx_metadata(args.onnx)
        profile = make_profile(meta["input_size"], args.min_batch, args.opt_batch, args.max_batch)
        if args.calib is not None:
            calib = CalibrationBatches(args.calib, meta["input_size"], args.calib_batch_size, args.calib_batches)
        command = build_command_line(args.onnx, args.out, args.precision, profile, args.calib, args.calib_batches,
                                     args.calib_batch_size, args.timing_cache, args.workspace_mib)
        build_engine(args.onnx, args.out, precision=args.precision, profile=profile, calib=calib,
                     timing_cache=args.timing_cache, workspace_mib=args.workspace_mib, metadata=meta,
                     command=command)
    except (EngineError, DatasetError, FileNotFoundError) as exc:
        print(f"{BUILD_COMMAND}: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if calib is not None:
            calib.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
