"""Where a dataset's real photos came from, and the refusal to train on renders over validation frames.

Render jobs record the photo folder they composited onto (HDF5 attribute ``backgrounds``, and
``render_config.background_labels``). A model trained on renders whose backgrounds were validation
frames has seen those streets, so its figures there are not a test of an unseen camera: training
refuses such files (``refuse_leaky_datasets``) and records the background folders of what it trained
on in the model's metadata (``train_backgrounds``), where ``carpose-benchmark`` reads them back.
"""

from __future__ import annotations

from pathlib import Path

from carpose.eval.real_sources import ValidationLeakError, leaked_folder, real_photo_leaks
from training.dataset.reader import CarposeDataset


def background_folders(path: str | Path) -> list[str]:
    """The real photo folders a dataset file records for its backgrounds (empty: procedural only)."""
    with CarposeDataset(path) as ds:
        attrs = ds.attrs
    out = []
    bg = attrs.get("backgrounds")
    if isinstance(bg, str) and bg not in ("", "None", "procedural"):
        out.append(bg)
    labels = (attrs.get("render_config") or {}).get("background_labels")
    if isinstance(labels, str) and labels:
        out.append(labels)
    elif isinstance(labels, list):  # several label folders (carpose-render --background-labels A B)
        out.extend(str(f) for f in labels if f)
    return out


def real_photo_records(path: str | Path) -> list[dict]:
    """The labelled-photos records of a dataset file (``carpose-real-crops``: folder, part, classes), or []."""
    with CarposeDataset(path) as ds:
        rec = (ds.attrs.get("render_config") or {}).get("real_photos")
    return [rec] if isinstance(rec, dict) else []


def refuse_leaky_datasets(paths: list[str | Path]) -> list[str]:
    """The background folders of ``paths``; raises ValidationLeakError when any is validation data, or when a
    file of labelled real photos holds a photo of the validation part (``real_photo_leaks``)."""
    folders = []
    for p in paths:
        for rec in real_photo_records(p):
            if why := real_photo_leaks(rec):
                raise ValidationLeakError(f"{p}: {why}: make it again with carpose-real-crops (training part only)")
        for f in background_folders(p):
            if (hit := leaked_folder(f)) is not None:
                raise ValidationLeakError(f"{p} was rendered over real validation frames ({f}; {hit}): re-render it "
                                          f"with backgrounds from ../shared/real_unlabelled")
            folders.append(f)
    return sorted(set(folders))
