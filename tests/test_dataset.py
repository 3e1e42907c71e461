"""HDF5 datasets: block store, merge, schema validation and clear errors (no rendering here)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from carpose.convention import CONVENTION_VERSION
from training.dataset.reader import CarposeDataset, DatasetError, validate
from training.dataset.schema import CROP_FIELDS
from training.dataset.writer import FRAME_PREFIX, BlockStore, JobMismatchError

ATTRS = {"kind": "crops", "convention_version": CONVENTION_VERSION, "seed": 3, "render_config": "{}",
         "models": [{"name": "m0"}], "split": {"split": "all", "heldout": [], "all_models": ["m0"]}}


def _block(rows: range) -> dict[str, np.ndarray]:
    n = len(rows)
    arrays = {FRAME_PREFIX + "images": np.stack([np.full((8, 8, 3), i % 256, np.uint8) for i in rows])}
    for k, (dtype, shape) in CROP_FIELDS.items():
        arrays[FRAME_PREFIX + k] = np.stack([np.full(shape, i, dtype) for i in rows]) if n else \
            np.zeros((0, *shape), dtype)
    return arrays


def _write(out, count=10, block=4, job=None):
    store = BlockStore(out, job or {"seed": 3}, count, block)
    for b in store.prepare():
        store.save_block(b, _block(store.block_range(b)))
    return store.finalize(ATTRS)


def test_round_trip_keeps_every_row_in_order(tmp_path):
    out = _write(tmp_path / "d.h5")
    assert not (tmp_path / "d.h5.parts").exists()
    with CarposeDataset(out) as ds:
        assert len(ds) == 10 and ds.kind == "crops" and ds.image_shape == (8, 8, 3)
        lab = ds.labels()
        np.testing.assert_array_equal(lab["azimuth_deg"], np.arange(10, dtype=np.float32))
        assert ds.image(7)[0, 0, 0] == 7
        assert ds.models == [{"name": "m0"}]
        assert ds.attrs["split"]["split"] == "all"


def test_resume_only_does_missing_blocks_and_rejects_other_jobs(tmp_path):
    out = tmp_path / "d.h5"
    store = BlockStore(out, {"seed": 3}, 10, 4)
    todo = store.prepare()
    assert todo == [0, 1, 2]
    store.save_block(0, _block(store.block_range(0)))
    (store.parts / "block_000001.tmp.npz").write_bytes(b"half a block")  # killed mid-write
    assert BlockStore(out, {"seed": 3}, 10, 4).prepare() == [1, 2]
    with pytest.raises(JobMismatchError, match="seed"):
        BlockStore(out, {"seed": 4}, 10, 4).prepare()
    with pytest.raises(RuntimeError, match="missing"):
        store.finalize(ATTRS)
    assert not out.exists()


def test_existing_output_needs_overwrite(tmp_path):
    out = _write(tmp_path / "d.h5")
    with pytest.raises(FileExistsError, match="--overwrite"):
        BlockStore(out, {"seed": 3}, 10, 4).prepare()
    assert BlockStore(out, {"seed": 3}, 10, 4).prepare(overwrite=True) == [0, 1, 2]


def test_missing_file_mentions_unfinished_parts(tmp_path):
    out = tmp_path / "d.h5"
    BlockStore(out, {"seed": 3}, 10, 4).prepare()
    with pytest.raises(FileNotFoundError, match="resume"):
        validate(out)


def test_truncated_and_foreign_files_give_clear_errors(tmp_path):
    out = _write(tmp_path / "d.h5")
    data = out.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        validate(cut)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x00" * 4096)
    with pytest.raises(DatasetError, match="not a readable HDF5"):
        validate(junk)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5["images"] = np.zeros((1, 4, 4, 3), np.uint8)
    with pytest.raises(DatasetError, match="not a carpose dataset"):
        validate(other)


def test_schema_mismatches_are_named(tmp_path):
    out = _write(tmp_path / "d.h5")
    with h5py.File(out, "a") as h5:
        h5.attrs["convention_version"] = CONVENTION_VERSION + 1
    with pytest.raises(DatasetError, match="azimuth convention"):
        validate(out)
    out = _write(tmp_path / "e.h5")
    with h5py.File(out, "a") as h5:
        del h5["bbox"]
        h5["bbox"] = np.zeros((10, 3), np.float32)
    with pytest.raises(DatasetError, match="'bbox'"):
        validate(out)
    out = _write(tmp_path / "f.h5")
    with h5py.File(out, "a") as h5:
        h5.attrs["count"] = 11
    with pytest.raises(DatasetError, match="rows"):
        validate(out)
    with h5py.File(out, "a") as h5:
        h5.attrs["count"] = 10
        h5.attrs["models"] = json.dumps([])
    validate(out)  # back to a valid file: the checks are not tripping on anything else
