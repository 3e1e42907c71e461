"""Render jobs: which car models, which split, and the parallel, resumable loop over blocks.

Why processes and not threads: pyrender needs one EGL context per thread of control and the
numpy/OpenCV work holds the GIL in places; one process per core, each with its own renderer,
scales. Workers write their blocks straight to disk (training.dataset.writer), so no image crosses
a pipe.
"""

from __future__ import annotations

import hashlib
import logging
import math
import multiprocessing as mp
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from carpose.convention import CONVENTION_VERSION
from training.cars.loader import load_car_folder
from training.cars.model import CarModel
from training.cars.procedural import generate_fleet, generate_panel_vans
from training.dataset.schema import CROP_FIELDS, LAYER_FIELDS
from training.dataset.writer import CAR_PREFIX, FRAME_PREFIX, BlockStore
from training.render.backgrounds import BackgroundSource
from training.render.sampling import RenderConfig, sample_rng
from training.render.scenes import SceneConfig

log = logging.getLogger(__name__)

SPLITS = ("all", "train", "heldout")
KINDS = ("crops", "layers", "scenes")
DEFAULT_PROCEDURAL = 48  # cars generated when no model folder is given


@dataclass(frozen=True)
class ModelSpec:
    """Where the cars come from and which of them this job may use."""

    models_dir: str | tuple[str, ...] | None = None  # one folder, or several (loaded in this order)
    procedural: int | None = None  # None: DEFAULT_PROCEDURAL without models_dir, else 0
    fleet_seed: int = 0
    #: Procedural panel vans added to the cars (``generate_panel_vans``; not in the default fleet).
    panel_vans: int = 0
    split: str = "all"
    heldout_fraction: float = 0.25
    heldout: tuple[str, ...] = ()  # explicit held-out model names (overrides the fraction)

    @property
    def model_dirs(self) -> tuple[str, ...]:
        """The model folders as a tuple (``models_dir`` may be one string for old callers)."""
        if not self.models_dir:
            return ()
        return (self.models_dir,) if isinstance(self.models_dir, str) else tuple(self.models_dir)

    @property
    def procedural_count(self) -> int:
        if self.procedural is not None:
            return self.procedural
        return 0 if self.models_dir else DEFAULT_PROCEDURAL


def heldout_names(names: list[str], fraction: float, explicit: tuple[str, ...] = (),
                  groups: dict[str, str] | None = None) -> set[str]:
    """Deterministic held-out set: explicit names, else per group the ceil(fraction * n) names that
    come first in the order of their SHA-1 (stable across runs, machines and model order).

    Why per group: the held-out cars must test every kind of car the model trains on, so whole models
    are held out from EVERY collection (apollocar3d, gazebo, kenney, pgdrive, shapenet, procedural),
    not e.g. 20 ApolloCar3D cars and nothing else. ``groups`` maps a name to its collection; without
    it procedural ("proc_*") and file models are the two groups. A group of one model is not split.
    """
    if explicit:
        unknown = set(explicit) - set(names)
        if unknown:
            raise ValueError(f"held-out models {sorted(unknown)} are not among the loaded models")
        return set(explicit)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"held-out fraction must be in [0, 1), got {fraction}")
    by_group: dict[str, list[str]] = {}
    for n in names:
        group = groups[n] if groups is not None else ("procedural" if n.startswith("proc_") else "files")
        by_group.setdefault(group, []).append(n)
    out: set[str] = set()
    for members in by_group.values():
        k = math.ceil(fraction * len(members)) if len(members) > 1 else 0
        out |= set(sorted(members, key=lambda n: hashlib.sha1(n.encode()).hexdigest())[:k])
    return out


def build_models(spec: ModelSpec) -> tuple[list[CarModel], dict]:
    """Load/generate every car, then keep the split's part. Returns models and the split record."""
    if spec.split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {spec.split!r}")
    models: list[CarModel] = []
    for folder in spec.model_dirs:
        models += load_car_folder(folder)
    if spec.procedural_count:
        models += generate_fleet(spec.procedural_count, seed=spec.fleet_seed)
    if spec.panel_vans:
        models += generate_panel_vans(spec.panel_vans, seed=spec.fleet_seed)
    if not models:
        raise ValueError("no car models: give --models DIR and/or --procedural N > 0")
    names = [m.name for m in models]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"car model names must be unique (labels refer to models by name): {dupes[:8]}; "
                         "is a folder given twice?")
    groups = {m.name: m.collection for m in models}
    held = heldout_names(names, spec.heldout_fraction, spec.heldout, groups)
    keep = {"all": lambda n: True, "train": lambda n: n not in held, "heldout": lambda n: n in held}[spec.split]
    chosen = [m for m in models if keep(m.name)]
    if not chosen:
        raise ValueError(f"split {spec.split!r} leaves no car models (held out: {sorted(held)})")
    split = {"split": spec.split, "heldout": sorted(held), "fraction": spec.heldout_fraction,
             "all_models": names, "collections": {c: sum(g == c for g in groups.values())
                                                  for c in sorted(set(groups.values()))}}
    return chosen, split


def model_records(models: list[CarModel]) -> list[dict]:
    """One record per model for the HDF5 ``models`` attribute: the file, the native-to-car-frame
    transform, and where it comes from and on which terms (collection, origin, licence), so a
    dataset says which third-party models (and which licences) it contains."""
    return [{"name": m.name, "source": m.source, "collection": m.collection, "origin": m.origin,
             "licence": m.licence, "transform": m.transform.round(9).tolist(),
             "meta": {k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in m.meta.items()}}
            for m in models]


# ---------------------------------------------------------------- worker side
_W: dict = {}


def _init_worker(kind: str, spec: ModelSpec, cfg: RenderConfig, scfg: SceneConfig | None,
                 backgrounds: str | None, seed: int, store: BlockStore) -> None:
    from training.render.renderer import CarRenderer

    models, _ = build_models(spec)
    from training.render.crops import layer_canvas

    side = layer_canvas(cfg) if kind == "layers" else int(round(cfg.crop.size * cfg.render_scale))
    renderer = CarRenderer(scfg.width if scfg else side, scfg.height if scfg else side)
    bg = (BackgroundSource.from_folder(backgrounds, labels=cfg.background_labels,
                                       procedural_fraction=cfg.procedural_backgrounds,
                                       bottom_margin=cfg.background_bottom_margin if cfg.background_labels else 0.0)
          if backgrounds else BackgroundSource.procedural())
    negatives = []
    if scfg is not None and scfg.negatives > 0:
        from training.render.negatives import load_negatives

        negatives = load_negatives(scfg.negative_dirs, seed=seed, skip=scfg.skip_negatives)
    _W.update(kind=kind, models=models, cfg=cfg, scfg=scfg, renderer=renderer, bg=bg, seed=seed, store=store,
              negatives=negatives)


def job_block_arrays(args: tuple, b: int, job_key: str) -> dict:
    """Block ``b`` of the job ``args`` (``_init_worker``'s arguments) in a long-lived worker that runs
    blocks of several jobs (a Ray worker): the renderer is built once per ``job_key`` and kept for
    that job's later blocks. Handed to training.render.ray_jobs as a function, so that module needs
    nothing from this one."""
    if _W.get("job_key") != job_key:
        if "renderer" in _W:
            _W.pop("renderer").close()
        _init_worker(*args)
        _W["job_key"] = job_key
    return _block_arrays(b)


def _render_block(b: int) -> int:
    """Render block ``b`` and save it under ``<out>.parts`` (the local worker path)."""
    arrays = _block_arrays(b)
    _W["store"].save_block(b, arrays)
    return len(arrays[FRAME_PREFIX + "images"])


def _block_arrays(b: int) -> dict:
    """Render block ``b`` with this process's renderer: the arrays of one ``.npz`` part."""
    import numpy as np

    from training.render.crops import make_crop, render_layers
    from training.render.scenes import make_scene

    store: BlockStore = _W["store"]
    rows = store.block_range(b)
    if _W["kind"] in ("crops", "layers"):
        if _W["kind"] == "crops":
            samples = [make_crop(sample_rng(_W["seed"], i), _W["models"], _W["renderer"], _W["bg"], _W["cfg"])
                       for i in rows]
        else:
            samples = [render_layers(sample_rng(_W["seed"], i), _W["models"], _W["renderer"], _W["cfg"]) for i in rows]
        fields = CROP_FIELDS if _W["kind"] == "crops" else LAYER_FIELDS
        arrays = {FRAME_PREFIX + "images": np.stack([s.image for s in samples])}
        for k, (dtype, _) in fields.items():
            arrays[FRAME_PREFIX + k] = np.asarray([getattr(s, k) for s in samples], dtype=dtype)
    else:
        scenes = [make_scene(sample_rng(_W["seed"], i), _W["models"], _W["renderer"], _W["bg"], _W["cfg"],
                             _W["scfg"], _W["negatives"]) for i in rows]
        counts = np.array([len(s.cars["model_id"]) for s in scenes], dtype=np.int32)
        arrays = {FRAME_PREFIX + "images": np.stack([s.image for s in scenes]),
                  FRAME_PREFIX + "K": np.stack([s.K for s in scenes]),
                  FRAME_PREFIX + "car_count": counts,
                  FRAME_PREFIX + "car_start": (np.cumsum(counts) - counts).astype(np.int64),
                  CAR_PREFIX + "frame": np.repeat(np.arange(len(scenes), dtype=np.int64), counts)}
        for k in scenes[0].cars:
            arrays[CAR_PREFIX + k] = np.concatenate([s.cars[k] for s in scenes])
    return arrays


# ---------------------------------------------------------------- driver
def run_job(kind: str, out: str | Path, count: int, spec: ModelSpec, cfg: RenderConfig,
            scfg: SceneConfig | None = None, backgrounds: str | None = None, seed: int = 0,
            workers: int = 1, block_size: int = 64, overwrite: bool = False, progress: bool = True,
            on_block: Callable[[int], None] | None = None, ray: str | None = None) -> Path:
    """Render ``count`` samples of ``kind`` ('crops', 'layers' or 'scenes') into the HDF5 file ``out``.
    A layers file holds each car with its coverage and shadow and no background (``backgrounds`` must be
    None): training composites it (training/pose/composite.py).

    Re-running the same command after an interruption resumes where it stopped. ``on_block`` is
    called with the sample count of every finished block (benchmarks time the steady state with it).
    ``ray``: render the blocks as Ray tasks on the cluster at this address ('auto', 'HOST:PORT', or
    'local' for a private one-machine cluster of ``workers`` CPUs); see training.render.ray_jobs.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind == "layers" and (backgrounds or cfg.background_labels):
        raise ValueError("a layers file has no backgrounds: give them to carpose-train --composite-backgrounds")
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if kind == "scenes" and scfg is None:
        scfg = SceneConfig()
    models, split = build_models(spec)  # fail early, in the parent, on bad models
    if backgrounds:
        BackgroundSource.from_folder(backgrounds)  # likewise for a bad background folder
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    job = {"kind": kind, "seed": seed, "render_config": cfg.to_json(), "models": asdict(spec),
           "scene_config": asdict(scfg) if scfg else None, "backgrounds": str(backgrounds)}
    store = BlockStore(out, job, count, block_size)
    todo = store.prepare(overwrite=overwrite)
    done = count - sum(len(store.block_range(b)) for b in todo)
    if done:
        log.info("resuming %s: %d of %d samples already rendered", out, done, count)
    bar = tqdm(total=count, initial=done, unit=kind[:-1], desc=f"render {kind}", disable=not progress,
               dynamic_ncols=True)
    args = (kind, spec, cfg, scfg, backgrounds, seed, store)

    def finished(n: int) -> None:
        bar.update(n)
        if on_block:
            on_block(n)

    try:
        if ray is not None:
            from training.render.ray_jobs import run_blocks_on_ray

            run_blocks_on_ray(ray, job_block_arrays, args, todo, finished,
                              num_cpus=workers if workers > 1 else None)
        elif workers <= 1:
            _init_worker(*args)
            for b in todo:
                finished(_render_block(b))
        else:
            ctx = mp.get_context("spawn")  # fresh processes: no EGL state inherited by fork
            with ctx.Pool(workers, initializer=_init_worker, initargs=args) as pool:
                for n in pool.imap_unordered(_render_block, todo):
                    finished(n)
    finally:
        bar.close()
        if ray is None and workers <= 1 and "renderer" in _W:
            _W.pop("renderer").close()
    attrs = {"kind": kind, "convention_version": CONVENTION_VERSION, "seed": seed,
             "render_config": cfg.to_json(), "models": model_records(models), "split": split,
             # a layers file has none ("None": provenance.background_folders lists no folder for it)
             "backgrounds": "None" if kind == "layers" else str(backgrounds or "procedural"),
             "crop_size": cfg.crop.size}
    if scfg:
        attrs["scene_config"] = str(asdict(scfg))
    return store.finalize(attrs)
