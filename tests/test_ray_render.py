"""carpose-render --ray on a real local Ray cluster: a head on 127.0.0.1 with 2 CPUs, started here.

Checks what a cluster run must keep from the local path: sample i is the same image and label,
a worker killed mid-run loses nothing (Ray retries its block), a half-done parts folder is resumed
(only the missing blocks are rendered), and a worker that cannot see <out>.parts hands its block
back to the driver.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

if importlib.util.find_spec("ray") is None:  # ray itself is imported only once the cluster's token is set
    pytest.skip("ray is not installed", allow_module_level=True)
psutil = pytest.importorskip("psutil")

from carpose.crop import CropSpec  # noqa: E402
from training.render.interference import InterferenceConfig  # noqa: E402
from training.render.jobs import ModelSpec, run_job  # noqa: E402
from training.render.sampling import RenderConfig  # noqa: E402

SPEC = ModelSpec(procedural=4)
CFG = RenderConfig(crop=CropSpec(size=48), interference=InterferenceConfig())
COUNT, BLOCK, SEED = 40, 4, 11
# The renderer itself is not bit-exact from one run to the next: two local one-process runs of this
# job differ in an occasional crop (measured: 1 of 40 crops, 177 values, up to 16 levels; the raw
# render differs by 1-2 levels in a few pixels, the JPEG interference amplifies it). Labels are exact.
MAX_PIXEL_DIFF, MAX_DIFF_SHARE, MIN_SAME_CROPS = 48, 0.01, 0.9


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """`ray start --head --block` on 127.0.0.1 with 2 CPUs in its own process group; stopped by
    signalling that group only (never `ray stop`, which would stop every Ray on the machine)."""
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="rayt", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    # Ray >= 2.5x authenticates with a token; this cluster gets its own (never ~/.ray/auth_token).
    token = Path(temp) / "auth_token"
    token.write_text(secrets.token_hex(32))
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), "RAY_USAGE_STATS_ENABLED": "0",
            # Loopback only: by default ray.init rewrites 127.0.0.1 to the machine's outward IP, so the
            # driver dialled eth0 (192.0.2.2) while the head had registered as 127.0.0.1; on a CI
            # machine that never connected (ConnectionError after 90 s). This switch is Ray's own
            # single-machine mode (its default on macOS and Windows): every address stays 127.0.0.1.
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    if "ray" in sys.modules:  # Ray reads these at import: set now, they would not reach this driver
        pytest.fail("ray was imported before this module's cluster set its token and loopback mode "
                    "(ultralytics' raytune callback does that unless training.detector.train switches it off)")
    saved = {k: os.environ.get(k) for k in auth}
    os.environ.update(auth)  # before this process first imports ray
    env = dict(os.environ, PYOPENGL_PLATFORM="egl")
    ray_bin = Path(sys.executable).with_name("ray")
    head = subprocess.Popen([str(ray_bin), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
                             f"--port={port}", "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false",
                             "--disable-usage-stats", f"--temp-dir={temp}"],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    address = f"127.0.0.1:{port}"
    try:
        import ray

        deadline = time.time() + 90
        while True:
            if head.poll() is not None:
                pytest.fail(f"ray start exited: {head.stderr.read().decode()[-2000:]}")
            try:
                ray.init(address=address, logging_level="ERROR")
                ray.shutdown()
                break
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(1.0)
        yield {"address": address, "head": head}
    finally:
        try:
            os.killpg(head.pid, signal.SIGTERM)
            head.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The same job rendered by the local one-process path."""
    out = tmp_path_factory.mktemp("ref") / "local.h5"
    run_job("crops", out, COUNT, SPEC, CFG, seed=SEED, block_size=BLOCK, progress=False)
    return out


def _assert_same(a: Path, b: Path) -> None:
    with h5py.File(a) as fa, h5py.File(b) as fb:
        assert sorted(fa) == sorted(fb)
        for k in fa:
            if not isinstance(fa[k], h5py.Dataset):
                continue
            x, y = fa[k][()], fb[k][()]
            assert x.shape == y.shape, k
            if k == "images":
                d = np.abs(x.astype(int) - y.astype(int))
                same = (d.reshape(len(d), -1).max(1) == 0).mean()
                assert same >= MIN_SAME_CROPS, f"only {same:.0%} of crops are identical"
                assert d.max() <= MAX_PIXEL_DIFF, f"images differ by up to {d.max()}"
                assert (d > 0).mean() <= MAX_DIFF_SHARE, f"{(d > 0).mean():.4%} of pixels differ"
            else:
                np.testing.assert_array_equal(x, y, err_msg=k)


def _render_workers(head_pid: int) -> list:
    """Ray worker processes of our head that are running a render task right now."""
    out = []
    for p in psutil.Process(head_pid).children(recursive=True):
        try:
            if "render_block_task" in " ".join(p.cmdline()):
                out.append(p)
        except psutil.Error:
            continue
    return out


def test_ray_matches_local_and_survives_a_killed_worker(cluster, reference, tmp_path):
    out = tmp_path / "ray.h5"
    parts = out.with_name(out.name + ".parts")
    killed: list[int] = []

    def killer() -> None:  # SIGKILL one worker while it renders, once a first block has landed
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            if any(parts.glob("block_*.npz")):
                for p in _render_workers(cluster["head"].pid):
                    p.send_signal(signal.SIGKILL)
                    killed.append(p.pid)
                    return
            time.sleep(0.05)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    blocks: list[int] = []
    run_job("crops", out, COUNT, SPEC, CFG, seed=SEED, block_size=BLOCK, progress=False,
            ray=cluster["address"], on_block=blocks.append)
    t.join(timeout=5)
    assert killed, "no render worker was caught mid-task to kill"
    assert not psutil.pid_exists(killed[0]) or psutil.Process(killed[0]).status() == psutil.STATUS_ZOMBIE
    assert sum(blocks) == COUNT and len(blocks) == COUNT // BLOCK  # every block once, none lost
    assert not parts.exists()  # merged exactly like the local path, parts removed
    _assert_same(out, reference)


def test_ray_resumes_a_half_done_job(cluster, reference, tmp_path):
    out = tmp_path / "resumed.h5"
    parts = out.with_name(out.name + ".parts")

    class Stop(Exception):
        pass

    def stop_after_three(n: int, seen: list[int] = []) -> None:  # noqa: B006 - a counter, on purpose
        seen.append(n)
        if len(seen) == 3:
            raise Stop

    with pytest.raises(Stop):  # a local run interrupted after 3 blocks
        run_job("crops", out, COUNT, SPEC, CFG, seed=SEED, block_size=BLOCK, progress=False,
                on_block=stop_after_three)
    kept = {p.name: p.stat().st_mtime_ns for p in parts.glob("block_*.npz")}
    assert len(kept) == 3
    rendered: list[int] = []
    run_job("crops", out, COUNT, SPEC, CFG, seed=SEED, block_size=BLOCK, progress=False,
            ray=cluster["address"], on_block=rendered.append)
    assert len(rendered) == COUNT // BLOCK - 3  # only the missing blocks went to the cluster
    _assert_same(out, reference)


def test_worker_without_shared_parts_returns_its_block(tmp_path):
    """A node that does not see <out>.parts (no shared mount) hands the arrays back to the driver."""
    from training.dataset.writer import BlockStore
    from training.render import jobs
    from training.render.ray_jobs import TOKEN_FILE, render_block_task

    store = BlockStore(tmp_path / "x.h5", {"kind": "crops"}, 8, 4)
    store.prepare()
    (store.parts / TOKEN_FILE).write_text("the-driver-token")
    args = ("crops", SPEC, CFG, None, None, SEED, store)
    try:
        # not our parts folder
        rows, arrays = render_block_task(jobs.job_block_arrays, args, 1, "k", "another-driver")
        assert rows == 4 and arrays["f:images"].shape == (4, 48, 48, 3)
        assert not store.block_path(1).exists()
        # shared: saved in place
        rows, arrays = render_block_task(jobs.job_block_arrays, args, 1, "k", "the-driver-token")
        assert rows == 4 and arrays is None and store.block_path(1).exists()
    finally:
        if "renderer" in jobs._W:
            jobs._W.pop("renderer").close()
        jobs._W.clear()
