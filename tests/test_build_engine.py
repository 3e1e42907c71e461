"""TensorRT engine builder and runtime backend.

Everything that needs no TensorRT runs everywhere: ONNX metadata (on a real exported ONNX file),
the input profile, INT8 calibration batches (on a real crops HDF5 file), the sidecar, the
compatibility checks and the CLI's behaviour without TensorRT. The tests marked ``needs_tensorrt``
build real engines and compare them with onnxruntime; they skip where ``tensorrt`` cannot be
imported (no NVIDIA GPU), and run on a GPU machine with ``pip install tensorrt-cu12``.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from carpose.convention import CONVENTION_VERSION
from carpose.trt_backend import (
    EngineError,
    EngineMismatchError,
    TensorRTPoseBackend,
    TensorRTUnavailableError,
    check_engine_compatible,
    load_engine_sidecar,
    sidecar_path,
    tensorrt_available,
)
from training import build_engine as be
from training.dataset.schema import CROP_FIELDS
from training.dataset.writer import FRAME_PREFIX, BlockStore

REPO = Path(__file__).resolve().parents[1]
SIZE, BINS = 16, 6
META = {"input_size": SIZE, "bins": BINS, "convention_version": CONVENTION_VERSION, "model_version": "tiny-test-1",
        "arch": "tiny"}
needs_tensorrt = pytest.mark.skipif(not tensorrt_available(),
                                    reason="tensorrt not importable (needs an NVIDIA GPU; pip install tensorrt-cu12)")


def _set_meta(src: Path, dst: Path, meta: dict | str | None) -> Path:
    """Copy an ONNX file with its ``carpose`` metadata replaced (dict -> JSON, str -> raw, None -> removed)."""
    import onnx

    model = onnx.load(str(src))
    keep = [(p.key, p.value) for p in model.metadata_props if p.key != "carpose"]
    del model.metadata_props[:]
    for k, v in keep:
        model.metadata_props.add(key=k, value=v)
    if meta is not None:
        model.metadata_props.add(key="carpose", value=meta if isinstance(meta, str) else json.dumps(meta))
    onnx.save(model, str(dst))
    return dst


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory) -> Path:
    """A real exported pose-like CNN: image [N,3,16,16] -> softmax probs [N,6], dynamic batch, no metadata
    (``bare.onnx``) and with carpose metadata (``tiny.onnx``); plus a 24px export (``big.onnx``)."""
    import torch

    d = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, BINS), torch.nn.Softmax(dim=-1)).eval()
    with torch.no_grad():  # inputs are 0..255: keep the logits in a sane range
        model[0].weight.mul_(1.0 / 255.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter warns that it is legacy
        for name, size in (("bare.onnx", SIZE), ("big_bare.onnx", 24)):
            torch.onnx.export(model, (torch.zeros(1, 3, size, size),), str(d / name), input_names=["image"],
                              output_names=["probs"], dynamic_axes={"image": {0: "N"}, "probs": {0: "N"}},
                              opset_version=17, dynamo=False)
    _set_meta(d / "bare.onnx", d / "tiny.onnx", META)
    return d


@pytest.fixture()
def tiny_onnx(onnx_dir: Path) -> Path:
    return onnx_dir / "tiny.onnx"


def _write_crops(out: Path, count: int = 40, size: int = SIZE) -> Path:
    """A valid carpose crops file whose pixels encode (row, channel): value = (3 * row + c) % 256."""
    store = BlockStore(out, {"seed": 0}, count, 16)
    for b in store.prepare():
        rows = store.block_range(b)
        imgs = np.stack([np.broadcast_to(np.array([(3 * i + c) % 256 for c in range(3)], np.uint8), (size, size, 3))
                         for i in rows])
        arrays = {FRAME_PREFIX + "images": imgs}
        for k, (dtype, shape) in CROP_FIELDS.items():
            arrays[FRAME_PREFIX + k] = np.zeros((len(rows), *shape), dtype)
        store.save_block(b, arrays)
    attrs = {"kind": "crops", "convention_version": CONVENTION_VERSION, "seed": 0, "render_config": "{}",
             "models": [{"name": "m0"}], "split": {"split": "all", "heldout": [], "all_models": ["m0"]}}
    return store.finalize(attrs)


def _fake_sidecar(engine: Path, **over) -> dict:
    profile = be.make_profile(SIZE, 1, 4, 8)
    side = be.make_sidecar(onnx_path=engine.with_suffix(".onnx"), onnx_sha256="ab" * 32, metadata=META,
                           profile=profile, precision="fp16", tensorrt_version="10.3.0",
                           gpu={"gpu_name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0",
                                "cuda_driver": "12.4", "cuda_runtime": "12.4"},
                           engine_sha256=hashlib.sha256(engine.read_bytes()).hexdigest() if engine.exists() else "",
                           engine_bytes=engine.stat().st_size if engine.exists() else 0,
                           rebuild_command=be.build_command_line(engine.with_suffix(".onnx"), engine, "fp16", profile))
    side.update(over)
    return side


# ---------------------------------------------------------------------------------------------- ONNX metadata


def test_metadata_is_read_from_a_real_onnx_file(tiny_onnx):
    meta = be.read_onnx_metadata(tiny_onnx)
    assert meta == META
    assert be.file_sha256(tiny_onnx) == hashlib.sha256(tiny_onnx.read_bytes()).hexdigest()


def test_missing_or_broken_metadata_gives_clear_errors(onnx_dir, tmp_path):
    with pytest.raises(be.EngineBuildError, match="no 'carpose' entry"):
        be.read_onnx_metadata(onnx_dir / "bare.onnx")
    no_bins = {k: v for k, v in META.items() if k != "bins"}
    with pytest.raises(be.EngineBuildError, match=r"lacks \['bins'\]"):
        be.read_onnx_metadata(_set_meta(onnx_dir / "bare.onnx", tmp_path / "a.onnx", no_bins))
    with pytest.raises(be.EngineBuildError, match="not valid JSON"):
        be.read_onnx_metadata(_set_meta(onnx_dir / "bare.onnx", tmp_path / "b.onnx", "{input_size: 16"))
    with pytest.raises(be.EngineBuildError, match="azimuth convention"):
        be.read_onnx_metadata(_set_meta(onnx_dir / "bare.onnx", tmp_path / "c.onnx",
                                        dict(META, convention_version=CONVENTION_VERSION + 1)))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        be.read_onnx_metadata(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff\x00 definitely not protobuf" * 10)
    with pytest.raises(be.EngineBuildError, match="not a readable ONNX"):
        be.read_onnx_metadata(junk)


def test_metadata_must_agree_with_the_graph(onnx_dir, tmp_path):
    with pytest.raises(be.EngineBuildError, match=r"input 'image' has shape .* input_size=16"):
        be.read_onnx_metadata(_set_meta(onnx_dir / "big_bare.onnx", tmp_path / "a.onnx", META))
    with pytest.raises(be.EngineBuildError, match=r"output 'probs' .* bins=10"):
        be.read_onnx_metadata(_set_meta(onnx_dir / "bare.onnx", tmp_path / "b.onnx", dict(META, bins=10)))
    with pytest.raises(be.EngineBuildError, match="positive integer"):
        be.read_onnx_metadata(_set_meta(onnx_dir / "bare.onnx", tmp_path / "c.onnx", dict(META, input_size="16")))


# ---------------------------------------------------------------------------------------------- profile


def test_profile_shapes_and_validation():
    p = be.make_profile(SIZE, 1, 8, 64)
    assert (p.min_shape, p.opt_shape, p.max_shape) == ((1, 3, 16, 16), (8, 3, 16, 16), (64, 3, 16, 16))
    assert p.input_name == "image" and p.as_dict()["max"] == [64, 3, 16, 16]
    assert be.make_profile(SIZE, 4, 4, 4).opt_shape[0] == 4
    with pytest.raises(be.EngineBuildError, match=r"min <= opt <= max.*min=9, opt=8"):
        be.make_profile(SIZE, 9, 8, 64)
    with pytest.raises(be.EngineBuildError, match="opt=65, max=64"):
        be.make_profile(SIZE, 1, 65, 64)
    with pytest.raises(be.EngineBuildError, match="min batch must be an integer >= 1"):
        be.make_profile(SIZE, 0, 8, 64)
    with pytest.raises(be.EngineBuildError, match="input_size"):
        be.make_profile(0)


# ---------------------------------------------------------------------------------------------- calibration


def test_calibration_batches_stream_real_crops(tmp_path):
    h5 = _write_crops(tmp_path / "crops.h5", count=40)
    cal = be.CalibrationBatches(h5, SIZE, batch_size=8, num_batches=3)
    assert len(cal) == 3 and cal.shape == (8, 3, SIZE, SIZE)
    batches = list(cal)
    assert all(b.dtype == np.float32 and b.shape == (8, 3, SIZE, SIZE) and b.flags.c_contiguous for b in batches)
    rows = cal.rows.ravel()
    assert len(set(rows.tolist())) == rows.size  # no crop used twice
    for b, r in zip(batches, cal.rows, strict=True):  # NCHW, RGB order, 0..255 (no normalisation)
        np.testing.assert_array_equal(b[:, :, 3, 5], np.stack([(3 * r + c) % 256 for c in range(3)], 1))
    again = be.CalibrationBatches(h5, SIZE, batch_size=8, num_batches=3)
    np.testing.assert_array_equal(again.rows, cal.rows)  # deterministic
    np.testing.assert_array_equal(again.batch(1), batches[1])
    assert len(be.CalibrationBatches(h5, SIZE, batch_size=8, num_batches=100)) == 5  # capped by the file


def test_calibration_errors_are_clear(tmp_path):
    h5 = _write_crops(tmp_path / "crops.h5", count=10)
    with pytest.raises(be.EngineBuildError, match=r"16x16 but the model takes 32x32.*--size 32"):
        be.CalibrationBatches(h5, 32)
    with pytest.raises(be.EngineBuildError, match="fewer than one batch of 16"):
        be.CalibrationBatches(h5, SIZE, batch_size=16)
    with pytest.raises(FileNotFoundError):
        be.CalibrationBatches(tmp_path / "none.h5", SIZE)
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        be.crops_to_nchw(np.zeros((2, 4, 4), np.uint8))


# ---------------------------------------------------------------------------------------------- sidecar


def test_sidecar_round_trip_and_atomic_write(tmp_path):
    engine = tmp_path / "pose.engine"
    engine.write_bytes(b"not really an engine")
    side = _fake_sidecar(engine)
    path = be.write_sidecar(engine, side)
    assert path == sidecar_path(engine) == tmp_path / "pose.engine.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pose.engine", "pose.engine.json"]  # no temp left
    assert load_engine_sidecar(engine) == side
    assert load_engine_sidecar(path) == side
    assert side["input_shapes"]["max"] == [8, 3, SIZE, SIZE] and side["carpose"] == META
    for key in ("tensorrt_version", "gpu_name", "compute_capability", "precision", "input_name", "bins",
                "input_size", "source_onnx", "created", "builder"):
        assert key in side
    cmd = shlex.split(side["rebuild_command"])
    assert cmd[0] == "carpose-build-engine" and cmd[cmd.index("--out") + 1] == str(engine.resolve())
    del side["bins"]
    be.write_sidecar(engine, side)
    with pytest.raises(EngineError, match=r"missing \['bins'\]"):
        load_engine_sidecar(engine)


def test_missing_engine_or_sidecar_is_file_not_found(tmp_path):
    engine = tmp_path / "pose.engine"
    with pytest.raises(FileNotFoundError, match=r"engine .*pose.engine does not exist.*carpose-build-engine"):
        load_engine_sidecar(engine)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TensorRTPoseBackend(engine)  # fails on the file before it ever needs TensorRT
    engine.write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match=r"sidecar .*pose.engine.json does not exist.*carpose-build-engine"):
        load_engine_sidecar(engine)


def test_mismatch_checks_name_both_sides_and_the_rebuild_command(tmp_path):
    engine = tmp_path / "pose.engine"
    engine.write_bytes(b"x")
    side = _fake_sidecar(engine)
    check_engine_compatible(side, "10.3.0", "NVIDIA H100 80GB HBM3")  # same machine: fine
    with pytest.raises(EngineMismatchError) as e:
        check_engine_compatible(side, "10.7.0", "NVIDIA H100 80GB HBM3", engine)
    msg = str(e.value)
    assert "built with 10.3.0" in msg and "installed is 10.7.0" in msg and "GPU:" not in msg
    assert side["rebuild_command"] in msg and isinstance(e.value, EngineError)
    with pytest.raises(EngineMismatchError, match=r"built on 'NVIDIA H100 80GB HBM3', present is 'Orin'"):
        check_engine_compatible(side, "10.3.0", "Orin")
    with pytest.raises(EngineMismatchError, match=r"10\.3\.0.*10\.0\.1.*H100.*'NVIDIA A10'"):
        check_engine_compatible(side, "10.0.1", "NVIDIA A10")
    bare = {k: v for k, v in side.items() if k != "rebuild_command"}
    with pytest.raises(EngineMismatchError, match=r"carpose-build-engine .*pose.onnx --out .*pose.engine"):
        check_engine_compatible(bare, "9.0", "NVIDIA H100 80GB HBM3", engine)


# ---------------------------------------------------------------------------------------------- without TensorRT


@pytest.fixture()
def no_tensorrt(monkeypatch):
    """Make ``import tensorrt`` fail, as on a machine without it (also on one that has it)."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)


def test_backend_and_availability_without_tensorrt(no_tensorrt, tmp_path):
    assert tensorrt_available() is False
    engine = tmp_path / "pose.engine"
    engine.write_bytes(b"x")
    be.write_sidecar(engine, _fake_sidecar(engine))
    with pytest.raises(TensorRTUnavailableError, match="pip install tensorrt-cu12"):
        TensorRTPoseBackend(engine)


def test_cli_without_tensorrt_exits_cleanly(no_tensorrt, tiny_onnx, tmp_path, capsys):
    out = tmp_path / "pose.engine"
    assert be.main([str(tiny_onnx), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("carpose-build-engine: error: TensorRT is not installed")
    assert "pip install tensorrt-cu12" in err and "Traceback" not in err
    assert not out.exists() and not sidecar_path(out).exists()


def test_cli_rejects_bad_options_before_needing_a_gpu(no_tensorrt, tiny_onnx, tmp_path, capsys):
    out = str(tmp_path / "e.engine")
    cases = [([str(tiny_onnx), "--out", out, "--precision", "int8"], "needs calibration crops"),
             ([str(tiny_onnx), "--out", out, "--calib", "x.h5"], "only used with --precision int8"),
             ([str(tiny_onnx), "--out", out, "--min-batch", "9", "--opt-batch", "8"], "min <= opt <= max"),
             ([str(tmp_path / "none.onnx"), "--out", out], "does not exist"),
             ([str(tiny_onnx), "--out", out, "--precision", "int8", "--calib", str(_write_crops(
                 tmp_path / "c24.h5", count=4, size=24))], "--size 16")]
    for argv, expected in cases:
        assert be.main(argv) == 1, argv
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err, (argv, err)
    with pytest.raises(SystemExit) as e:
        be.main([str(tiny_onnx), "--out", out, "--precision", "fp8"])
    assert e.value.code == 2


def test_recorded_rebuild_command_is_accepted_by_the_cli(no_tensorrt, tiny_onnx, tmp_path, capsys):
    h5 = _write_crops(tmp_path / "crops.h5", count=20)
    cmd = be.build_command_line(tiny_onnx, tmp_path / "p.engine", "int8", be.make_profile(SIZE, 2, 4, 16), h5, 2,
                                8, tmp_path / "timing.cache", 512)
    argv = shlex.split(cmd)
    assert argv[0] == "carpose-build-engine"
    assert be.main(argv[1:]) == 1  # every option valid: it gets as far as importing TensorRT
    assert "TensorRT is not installed" in capsys.readouterr().err


@pytest.mark.skipif(tensorrt_available(), reason="checks the no-TensorRT path of the real entry point")
def test_module_entry_point_without_tensorrt(tiny_onnx, tmp_path):
    r = subprocess.run([sys.executable, "-m", "training.build_engine", str(tiny_onnx), "--out",
                        str(tmp_path / "p.engine")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "TensorRT is not installed" in r.stderr and "Traceback" not in r.stderr


# ---------------------------------------------------------------------------------------------- with TensorRT + GPU


@pytest.fixture()
def gpu() -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("tensorrt is installed but torch sees no CUDA GPU")


def _reference_probs(onnx_path: Path, x: np.ndarray) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return sess.run(["probs"], {"image": x})[0]


@needs_tensorrt
@pytest.mark.parametrize(("precision", "atol"), [("fp32", 1e-4), ("fp16", 1e-2)])
def test_engine_matches_onnxruntime(gpu, tiny_onnx, tmp_path, precision, atol):
    out = tmp_path / f"tiny.{precision}.engine"
    cache = tmp_path / "timing.cache"
    side = be.build_engine(tiny_onnx, out, precision=precision, profile=be.make_profile(SIZE, 1, 4, 8),
                           timing_cache=cache, log=lambda s: None)
    assert out.exists() and cache.exists() and load_engine_sidecar(out) == side
    backend = TensorRTPoseBackend(out)
    assert (backend.input_size, backend.bins, backend.max_batch) == (SIZE, BINS, 8)
    assert backend.metadata == META
    x = np.random.default_rng(0).uniform(0, 255, (19, 3, SIZE, SIZE)).astype(np.float32)  # 19 > max: split
    got = backend.infer(x)
    assert got.shape == (19, BINS) and got.dtype == np.float32
    np.testing.assert_allclose(got, _reference_probs(tiny_onnx, x), atol=atol)
    assert backend.infer(x[:0]).shape == (0, BINS)
    with pytest.raises(ValueError, match=r"\[N, 3, 16, 16\]"):
        backend.infer(x[:, :, :8])


@needs_tensorrt
def test_int8_engine_with_calibration(gpu, tiny_onnx, tmp_path):
    h5 = _write_crops(tmp_path / "crops.h5", count=32)
    out = tmp_path / "tiny.int8.engine"
    side = be.build_engine(tiny_onnx, out, precision="int8", profile=be.make_profile(SIZE, 1, 4, 8),
                           calib=be.CalibrationBatches(h5, SIZE, batch_size=8, num_batches=4), log=lambda s: None)
    assert side["calibration"]["batches"] == 4 and side["precision"] == "int8"
    probs = TensorRTPoseBackend(out).infer(be.crops_to_nchw(np.full((3, SIZE, SIZE, 3), 100, np.uint8)))
    assert probs.shape == (3, BINS)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=2e-2)


@needs_tensorrt
def test_backend_refuses_an_engine_from_another_tensorrt(gpu, tiny_onnx, tmp_path):
    out = tmp_path / "tiny.engine"
    side = be.build_engine(tiny_onnx, out, precision="fp32", profile=be.make_profile(SIZE, 1, 2, 4),
                           log=lambda s: None)
    be.write_sidecar(out, dict(side, tensorrt_version="0.0.1"))
    with pytest.raises(EngineMismatchError, match=r"built with 0\.0\.1.*carpose-build-engine"):
        TensorRTPoseBackend(out)
