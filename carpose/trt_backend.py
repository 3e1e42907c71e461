"""Run the pose CNN as a TensorRT engine (no ROS import; TensorRT and torch are imported lazily).

Why a sidecar JSON next to every engine: a serialized TensorRT engine only runs under the exact
TensorRT version and on the GPU model it was built for, and a mismatch shows up as an opaque
deserialisation failure or, worse, as silently wrong numbers. The builder
(``carpose-build-engine``, training/build_engine.py) writes ``<engine>.json`` recording the
TensorRT version, the GPU, the input profile and the carpose model metadata; this module checks it
before touching the engine, and a mismatch names both sides and the exact command to rebuild.

Why torch for device memory: torch is already a dependency and gives CUDA tensors, streams and
copies, so the runtime needs no pycuda / cuda-python.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from carpose.convention import convention_mismatch

#: Sidecar format version; bumped when a key changes meaning.
SIDECAR_VERSION = 1
#: The builder CLI, named in every error that asks for a rebuild.
BUILD_COMMAND = "carpose-build-engine"
#: Keys every sidecar must have for the runtime to trust it.
REQUIRED_SIDECAR_KEYS = ("tensorrt_version", "gpu_name", "precision", "input_name", "output_name",
                         "input_shapes", "input_size", "bins", "carpose")
TENSORRT_INSTALL_HINT = ("TensorRT needs an NVIDIA GPU and driver; on such a machine install it into this "
                         "environment with `pip install tensorrt-cu12` (pick the package matching the CUDA "
                         "major version of the driver), then run again")


class EngineError(RuntimeError):
    """A TensorRT engine cannot be built, loaded or run; the message says why and what to do."""


class TensorRTUnavailableError(EngineError):
    """The ``tensorrt`` Python package cannot be imported here."""


class EngineMismatchError(EngineError):
    """The engine was built for another TensorRT version or GPU than the one present."""


def tensorrt_available() -> bool:
    """True when ``import tensorrt`` works. Never touches the GPU, so it is safe for test skips and
    backend selection on machines without one."""
    try:
        import tensorrt  # noqa: F401
    except Exception:  # ImportError, or a broken install failing to load its shared libraries
        return False
    return True


def import_tensorrt() -> Any:
    """Import and return the ``tensorrt`` module, or raise TensorRTUnavailableError with the fix."""
    try:
        import tensorrt as trt
    except Exception as exc:
        raise TensorRTUnavailableError(f"TensorRT is not installed in {sys.executable} ({exc}). "
                                       f"{TENSORRT_INSTALL_HINT}") from exc
    return trt


def sidecar_path(engine_path: str | Path) -> Path:
    """``model.engine`` -> ``model.engine.json``: the sidecar travels with the engine's full name."""
    p = Path(engine_path)
    return p.with_name(p.name + ".json")


def rebuild_command(sidecar: dict, engine_path: str | Path | None = None) -> str:
    """The exact command that rebuilds this engine on the current machine.

    The builder records its own command line in the sidecar; older or hand-made sidecars fall back
    to the source ONNX path and precision they name.
    """
    cmd = sidecar.get("rebuild_command")
    if isinstance(cmd, str) and cmd:
        return cmd
    onnx_path = (sidecar.get("source_onnx") or {}).get("path") or "MODEL.onnx"
    out = str(engine_path) if engine_path is not None else "MODEL.engine"
    return shlex.join([BUILD_COMMAND, onnx_path, "--out", out, "--precision", str(sidecar.get("precision", "fp16"))])


def load_engine_sidecar(path: str | Path) -> dict:
    """Read and sanity-check the sidecar of an engine. ``path`` is the engine (its ``.json`` is
    read) or the sidecar itself. Missing files give FileNotFoundError naming the fix."""
    path = Path(path)
    if path.suffix == ".json":
        side, engine = path, path.with_name(path.name[: -len(".json")])
    else:
        side, engine = sidecar_path(path), path
        if not engine.exists():
            raise FileNotFoundError(f"TensorRT engine {engine} does not exist; build it from the exported ONNX "
                                    f"model with: {BUILD_COMMAND} MODEL.onnx --out {engine}")
    if not side.exists():
        raise FileNotFoundError(f"engine sidecar {side} does not exist, so {engine} cannot be checked against this "
                                f"TensorRT and GPU; rebuild the engine (which writes both) with: "
                                f"{BUILD_COMMAND} MODEL.onnx --out {engine}")
    try:
        data = json.loads(side.read_text())
    except (OSError, ValueError) as exc:
        raise EngineError(f"engine sidecar {side} is not readable JSON ({exc}); rebuild with "
                          f"{BUILD_COMMAND} MODEL.onnx --out {engine}") from exc
    if not isinstance(data, dict):
        raise EngineError(f"engine sidecar {side} holds {type(data).__name__}, expected a JSON object")
    missing = [k for k in REQUIRED_SIDECAR_KEYS if k not in data]
    if missing:
        raise EngineError(f"engine sidecar {side} is missing {missing}; rebuild with "
                          f"{rebuild_command(data, engine)}")
    return data


def check_engine_compatible(sidecar: dict, trt_version: str, gpu_name: str,
                            engine_path: str | Path | None = None) -> None:
    """Raise EngineMismatchError unless the engine was built with this exact TensorRT version on
    this GPU model. Every difference is named, with both values, plus the rebuild command."""
    diffs = []
    built_trt = str(sidecar.get("tensorrt_version"))
    if built_trt != str(trt_version):
        diffs.append(f"TensorRT version: built with {built_trt}, installed is {trt_version}")
    built_gpu = str(sidecar.get("gpu_name", "")).strip()
    if built_gpu != str(gpu_name).strip():
        diffs.append(f"GPU: built on {built_gpu!r}, present is {str(gpu_name).strip()!r}")
    if diffs:
        name = f"engine {engine_path}" if engine_path is not None else "the engine"
        raise EngineMismatchError(f"{name} does not match this machine ({'; '.join(diffs)}). TensorRT engines only "
                                  f"run with the TensorRT version and GPU they were built for; rebuild it here "
                                  f"with: {rebuild_command(sidecar, engine_path)}")


class TensorRTPoseBackend:
    """The pose CNN as a TensorRT engine: float32 crops [N, 3, S, S] (RGB 0..255) -> probs [N, K].

    Checks the sidecar before deserialising (so a wrong TensorRT or GPU gives a rebuild command, not
    a crash) and splits batches larger than the engine's profile maximum. One execution context is
    shared, guarded by a lock, because a context must not run two inferences at once.
    """

    def __init__(self, engine_path: str | Path, device: int = 0) -> None:
        self.engine_path = Path(engine_path)
        self.sidecar = load_engine_sidecar(self.engine_path)
        self.metadata: dict = dict(self.sidecar["carpose"])
        self.input_size: int = int(self.sidecar["input_size"])
        self.bins: int = int(self.sidecar["bins"])
        self.input_name: str = str(self.sidecar["input_name"])
        self.output_name: str = str(self.sidecar["output_name"])
        conv = self.metadata.get("convention_version")
        if conv is not None and (why := convention_mismatch(conv, f"{self.engine_path} (its model)")):
            raise EngineError(f"{why}. Export and build a model trained with the current convention")

        trt = import_tensorrt()
        import torch

        if not torch.cuda.is_available():
            raise EngineError(f"cannot run TensorRT engine {self.engine_path}: torch sees no CUDA GPU "
                              f"(check the NVIDIA driver and CUDA_VISIBLE_DEVICES)")
        self._torch = torch
        self.device = torch.device("cuda", device)
        check_engine_compatible(self.sidecar, trt.__version__, torch.cuda.get_device_name(self.device),
                                self.engine_path)

        blob = self.engine_path.read_bytes()
        expected_sha = self.sidecar.get("engine_sha256")
        if expected_sha and hashlib.sha256(blob).hexdigest() != expected_sha:
            raise EngineError(f"{self.engine_path} does not match its sidecar (sha256 differs: the engine was "
                              f"replaced without its .json); rebuild with: "
                              f"{rebuild_command(self.sidecar, self.engine_path)}")
        self._logger = trt.Logger(trt.Logger.WARNING)
        with torch.cuda.device(self.device):
            self._runtime = trt.Runtime(self._logger)
            self._engine = self._runtime.deserialize_cuda_engine(blob)
            if self._engine is None:
                raise EngineError(f"TensorRT {trt.__version__} could not deserialise {self.engine_path} (see the "
                                  f"TensorRT log above); rebuild with: "
                                  f"{rebuild_command(self.sidecar, self.engine_path)}")
            self._context = self._engine.create_execution_context()
            if self._context is None:
                raise EngineError(f"could not create an execution context for {self.engine_path} "
                                  f"(out of GPU memory?)")
            self._stream = torch.cuda.Stream(device=self.device)
        self._check_io(trt)
        shapes = self._engine.get_tensor_profile_shape(self.input_name, 0)
        self.min_batch, self.opt_batch, self.max_batch = (int(s[0]) for s in shapes)
        self._lock = threading.Lock()

    def _check_io(self, trt: Any) -> None:
        """Fail at load, not at the first frame, if the engine's tensors are not what the sidecar says."""
        names = {self._engine.get_tensor_name(i): self._engine.get_tensor_mode(self._engine.get_tensor_name(i))
                 for i in range(self._engine.num_io_tensors)}
        for name, mode in ((self.input_name, trt.TensorIOMode.INPUT), (self.output_name, trt.TensorIOMode.OUTPUT)):
            if names.get(name) != mode:
                raise EngineError(f"{self.engine_path} has no {mode.name.lower()} tensor {name!r} "
                                  f"(it has {sorted(names)})")
            if self._engine.get_tensor_dtype(name) != trt.float32:
                raise EngineError(f"{self.engine_path}: tensor {name!r} is {self._engine.get_tensor_dtype(name)}, "
                                  f"this backend feeds and reads float32")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """float32 [N, 3, S, S] (RGB 0..255) -> float32 probabilities [N, K]; any N >= 0."""
        x = np.asarray(batch)
        s = self.input_size
        if x.ndim != 4 or x.shape[1:] != (3, s, s):
            raise ValueError(f"TensorRT pose backend takes [N, 3, {s}, {s}] crops, got shape {x.shape}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        n = x.shape[0]
        if n == 0:
            return np.zeros((0, self.bins), np.float32)
        parts = [self._run(x[i:i + self.max_batch]) for i in range(0, n, self.max_batch)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        torch = self._torch
        n = chunk.shape[0]
        if n < self.min_batch:  # the profile cannot go below min: pad with blank crops, drop their rows
            pad = np.zeros((self.min_batch - n, *chunk.shape[1:]), np.float32)
            chunk = np.concatenate([chunk, pad], axis=0)
        with self._lock, torch.cuda.device(self.device), torch.cuda.stream(self._stream):
            x = torch.from_numpy(chunk).to(self.device)
            out = torch.empty((chunk.shape[0], self.bins), dtype=torch.float32, device=self.device)
            if not self._context.set_input_shape(self.input_name, tuple(x.shape)):
                raise EngineError(f"{self.engine_path} rejected input shape {tuple(x.shape)} "
                                  f"(profile batch {self.min_batch}..{self.max_batch})")
            got = tuple(self._context.get_tensor_shape(self.output_name))
            if got != tuple(out.shape):
                raise EngineError(f"{self.engine_path}: output {self.output_name!r} has shape {got}, "
                                  f"expected {tuple(out.shape)} ({self.bins} bins per the sidecar)")
            self._context.set_tensor_address(self.input_name, x.data_ptr())
            self._context.set_tensor_address(self.output_name, out.data_ptr())
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise EngineError(f"TensorRT failed to run {self.engine_path} (see the TensorRT log)")
            probs = out.cpu().numpy()  # blocking copy on this stream: waits for the engine
        return probs[:n]
