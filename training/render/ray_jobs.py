"""Render blocks as Ray tasks: the same blocks, seeds and merge as the local path, on a cluster.

Why Ray tasks and no scheduler of our own: a block is already an idempotent unit (sample ``i``
depends only on the seed and ``i``; a block appears under ``<out>.parts`` only once complete), so
the cluster only has to run each missing block once. Ray retries a task whose worker dies or that
raises (``MAX_RETRIES``), resubmits nothing that finished, and the driver resumes from the parts
folder like the local path does.

Where a block goes: when the worker sees the driver's ``<out>.parts`` (shared storage, or one
machine) it writes the ``.npz`` there itself, so no image crosses the network twice. A worker that
does not see it (a node without the shared mount) returns the arrays and the driver writes them.
The driver tells the two apart with a token file only this run wrote: a same-named folder on
another node cannot be mistaken for the real one.

Each worker process builds its renderer once per job and keeps it for every later task of that job.
Ray never phones home from here: usage stats are off and a private cluster has no dashboard.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Renders block ``b`` of the job ``args`` on a worker that keeps its renderer per ``job_key``:
#: ``(args, b, job_key) -> arrays`` (training.render.jobs.job_block_arrays). Passed in rather than
#: imported, so the driver's jobs module imports this one and not the other way round.
BlockArrays = Callable[[tuple, int, str], dict]

MAX_RETRIES = 4  # per task, on a dead worker (node lost, OOM-killed, preempted) or an exception
TOKEN_FILE = "ray_driver.token"
_LOCAL = "local"


def connect(address: str, num_cpus: int | None = None) -> bool:
    """Join the cluster at ``address`` ('auto', 'HOST:PORT', 'ray://HOST:PORT') or start a private
    one ('local', ``num_cpus`` CPUs, default all). Returns True when this call connected (so the
    caller disconnects), False when Ray was already initialised by the caller."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if ray.is_initialized():
        return False
    if address == _LOCAL:
        ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)
    else:
        ray.init(address=address, logging_level=logging.WARNING)
    return True


def render_block_task(block_arrays: BlockArrays, args: tuple, b: int, job_key: str,
                      token: str) -> tuple[int, dict | None]:
    """One block on a Ray worker: (rows, None) when saved into the shared parts folder, else
    (rows, arrays) for the driver to save."""
    store = args[-1]
    arrays = block_arrays(args, b, job_key)
    rows = len(arrays["f:images"])
    token_file = store.parts / TOKEN_FILE
    try:
        shared = token_file.read_text() == token
    except OSError:
        shared = False
    if shared:
        store.save_block(b, arrays)
        return rows, None
    return rows, arrays


def run_blocks_on_ray(address: str, block_arrays: BlockArrays, args: tuple, todo: list[int],
                      finished: Callable[[int], None], num_cpus: int | None = None) -> None:
    """Render the blocks ``todo`` of the job ``args`` as Ray tasks, each by ``block_arrays(args, b,
    job_key)`` on a worker (training.render.jobs.job_block_arrays; ``args[-1]`` is the job's
    BlockStore); ``finished(rows)`` is called on the driver as each block lands in ``<out>.parts``."""
    if not todo:
        return
    store = args[-1]
    owns = connect(address, num_cpus)
    import ray

    token = uuid.uuid4().hex
    token_path = store.parts / TOKEN_FILE
    token_path.write_text(token)
    job_key = f"{store.parts.resolve()}:{token}"
    remote = ray.remote(num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=True)(render_block_task)
    args_ref = ray.put(args)
    queue = list(todo)
    pending: dict = {}
    try:
        while queue or pending:
            # Keep about two tasks per cluster CPU in flight: workers never idle between blocks, the
            # driver's object store holds few results, and CPUs that join later are used.
            window = max(4, 2 * int(ray.cluster_resources().get("CPU", 1)))
            while queue and len(pending) < window:
                b = queue.pop(0)
                pending[remote.remote(block_arrays, args_ref, b, job_key, token)] = b
            done, _ = ray.wait(list(pending), num_returns=1, timeout=5.0)
            for ref in done:
                b = pending.pop(ref)
                rows, arrays = ray.get(ref)
                if arrays is not None:
                    store.save_block(b, arrays)
                elif not store.block_path(b).exists():
                    raise RuntimeError(f"a Ray worker saved block {b} but {store.block_path(b)} is not there")
                finished(rows)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        token_path.unlink(missing_ok=True)
        if owns:
            ray.shutdown()
