"""Where a car model comes from: its collection, repository, commit and licence.

Why: the datasets we render are only as shareable as the meshes in them (ApolloCar3D and ShapeNet
are non-commercial research terms, the others CC0 / CC BY), so every model's licence must travel
with it into the HDF5 attributes. The facts live in ``SOURCES.tsv`` beside the collection folders
(``../shared/cars_more/SOURCES.tsv``); the per-collection registry ``car_sources.json`` (native
axes, real-world size, models left out) supplies a fallback licence for collections without a
SOURCES.tsv row (ShapeNet in ``../shared/cars``).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from fnmatch import fnmatch
from functools import lru_cache
from pathlib import Path

SOURCES_FILE = "SOURCES.tsv"
REGISTRY: dict = json.loads(Path(__file__).with_name("car_sources.json").read_text())


@dataclass(frozen=True)
class SourceInfo:
    """One collection of car models (a row of SOURCES.tsv, or a registry fallback)."""

    collection: str  # e.g. "apollocar3d", "shapenet"; the held-out split is stratified by it
    repository: str
    commit: str = ""
    path_there: str = ""
    licence: str = ""
    notes: str = ""

    @property
    def origin(self) -> str:
        """One-line provenance: repository@commit:path."""
        at = f"@{self.commit}" if self.commit else ""
        there = f":{self.path_there}" if self.path_there else ""
        return f"{self.repository}{at}{there}"


@lru_cache(maxsize=16)
def _read_sources(tsv: Path) -> tuple[dict, ...]:
    with open(tsv, newline="", encoding="utf-8") as f:
        return tuple(csv.DictReader(f, delimiter="\t"))


def _find_tsv(path: Path) -> Path | None:
    for parent in path.resolve().parents:
        tsv = parent / SOURCES_FILE
        if tsv.is_file():
            return tsv
    return None


def source_row(path: str | Path) -> tuple[dict, Path] | None:
    """The SOURCES.tsv row whose ``folder`` pattern (e.g. ``kenney/*``) matches ``path``, with the
    TSV's folder; None if no SOURCES.tsv above the file or no row matches."""
    path = Path(path)
    tsv = _find_tsv(path)
    if tsv is None:
        return None
    rel = path.resolve().relative_to(tsv.parent.resolve())
    for row in _read_sources(tsv):
        pattern = row.get("folder", "")
        if pattern and (fnmatch(rel.as_posix(), pattern) or fnmatch(rel.parts[0] + "/*", pattern)):
            return row, tsv.parent
    return None


def collection_of(path: str | Path) -> str | None:
    """Collection (first folder below SOURCES.tsv) of a model file, or None when not under one."""
    found = source_row(path)
    if found is None:
        return None
    return found[0]["folder"].split("/")[0]


def source_info(path: str | Path, collection: str | None = None) -> SourceInfo | None:
    """Provenance of the model file ``path``: its SOURCES.tsv row, else the registry entry of
    ``collection`` (e.g. "shapenet" for the ShapeNet ids of known_models.json), else None."""
    found = source_row(path)
    if found is not None:
        row = found[0]
        return SourceInfo(collection=row["folder"].split("/")[0], repository=row.get("source repository", ""),
                          commit=row.get("commit", ""), path_there=row.get("path there", ""),
                          licence=row.get("licence as stated", ""), notes=row.get("notes", ""))
    entry = REGISTRY.get(collection or "")
    if isinstance(entry, dict) and "licence" in entry:
        return SourceInfo(collection=collection or "", repository=entry.get("repository", ""),
                          licence=entry["licence"])
    return None
