"""Where the shipped models and config are found (carpose.shipped), and what a user is told when
they are nowhere; and the DDS settings derived from them (carpose.ros.dds)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from carpose import shipped
from carpose.ros import dds

REPO = Path(__file__).resolve().parents[1]


def test_source_tree_model_is_found_from_a_checkout(monkeypatch):
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    assert shipped.find_shipped_model(shipped.POSE_MODEL) == REPO / "models" / shipped.POSE_MODEL


def test_package_share_comes_first(monkeypatch, tmp_path):
    prefix = tmp_path / "install" / "carpose"
    (prefix / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (prefix / "share" / "ament_index" / "resource_index" / "packages" / "carpose").write_text("")
    (prefix / "share" / "carpose" / "models").mkdir(parents=True)
    model = prefix / "share" / "carpose" / "models" / shipped.DET_MODEL
    model.write_bytes(b"onnx")
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    assert shipped.find_shipped_model(shipped.DET_MODEL) == model
    assert shipped.model_dirs()[0] == prefix / "share" / "carpose" / "models"


def test_missing_model_names_every_place_tried(monkeypatch, tmp_path):
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    monkeypatch.setattr(shipped, "SOURCE_ROOT", tmp_path / "checkout")
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    with pytest.raises(FileNotFoundError) as err:
        shipped.find_shipped_model(shipped.POSE_MODEL)
    msg = str(err.value)
    assert str(tmp_path / "venv" / "share" / "carpose" / "models" / shipped.POSE_MODEL) in msg
    assert str(tmp_path / "checkout" / "models" / shipped.POSE_MODEL) in msg
    # the runtime's own error for a missing default says the same
    from carpose.pose import open_backend

    with pytest.raises(FileNotFoundError, match=r"looked for in: .*venv/share/carpose/models"):
        open_backend(tmp_path / "checkout" / "models" / shipped.POSE_MODEL)


def test_dds_profile_only_where_fast_dds_is_unconfigured():
    base = {"RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"}
    add = dds.recommended_env(base)
    assert Path(add[dds.PROFILES_VAR]) == REPO / "config" / dds.PROFILE_NAME
    assert "<segment_size>" in Path(add[dds.PROFILES_VAR]).read_text()
    assert dds.recommended_env({}) == add  # no RMW named: Fast DDS is the default
    for own in ({dds.PROFILES_VAR: "/my.xml"}, {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"},
                {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}, {dds.NO_DDS_DEFAULTS: "1"}):
        assert dds.recommended_env(base | own) == {}, own
    env = dict(base)
    assert dds.apply_recommended(env) == add and env[dds.PROFILES_VAR] == add[dds.PROFILES_VAR]
