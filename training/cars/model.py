"""In-memory car model: the one representation every car source (mesh files, procedural) produces.

Why a small dataclass of tagged parts rather than a raw trimesh.Scene: the renderer needs to know
which parts are *paint* (recoloured per sample), glass, lights and tyres, regardless of where the
model came from, and tests need the normalised frame to be explicit.

Normalised car frame (see docs/conventions.md): metres, front of the car along +X, up +Z,
left side of the car along +Y, bounding box centred on the origin in X and Y, wheels resting on z=0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import trimesh

#: Roles a part can play. ``textured`` parts keep their own texture/material from the file;
#: ``paint`` parts get the per-sample paint colour; the others get role-specific materials.
PART_ROLES = ("paint", "glass", "tyre", "rim", "trim", "light_front", "light_rear", "textured")


@dataclass
class CarPart:
    """One renderable mesh of a car with its role and base RGBA colour (0-1 floats)."""

    mesh: trimesh.Trimesh
    role: str = "trim"
    color: tuple[float, float, float, float] = (0.5, 0.5, 0.5, 1.0)

    def __post_init__(self) -> None:
        if self.role not in PART_ROLES:
            raise ValueError(f"unknown part role {self.role!r}; expected one of {PART_ROLES}")


@dataclass
class CarModel:
    """A car in the normalised frame plus a record of how it got there.

    ``transform`` is the 4x4 matrix that maps the source file's native coordinates to the
    normalised frame (identity for procedural cars), so any label can be traced back to the file.
    """

    name: str
    parts: list[CarPart]
    source: str = "procedural"
    transform: np.ndarray = field(default_factory=lambda: np.eye(4))
    meta: dict = field(default_factory=dict)

    @property
    def bounds(self) -> np.ndarray:
        """(2, 3) array: min and max corner of all parts together."""
        lo = np.min([p.mesh.bounds[0] for p in self.parts], axis=0)
        hi = np.max([p.mesh.bounds[1] for p in self.parts], axis=0)
        return np.stack([lo, hi])

    @property
    def extents(self) -> np.ndarray:
        """Length (X), width (Y), height (Z) in metres."""
        b = self.bounds
        return b[1] - b[0]

    @property
    def face_count(self) -> int:
        return int(sum(len(p.mesh.faces) for p in self.parts))
