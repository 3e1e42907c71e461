"""The venv scripts/setup.sh makes: one OpenCV, the pinned one.

ultralytics declares opencv-python (the GUI build); installed beside opencv-python-headless, two
distributions own one ``cv2`` folder and the one pip unpacked last is the cv2 that runs, whatever
the pin says. setup.sh installs ultralytics without its declared dependencies
(requirements/no-deps.txt) and removes an OpenCV left from an older setup; a venv where this test
fails needs ``bash scripts/setup.sh`` again.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def pinned(name: str) -> str:
    text = (REPO / "requirements" / "base.txt").read_text()
    m = re.search(rf"^{re.escape(name)}==(\S+)$", text, re.MULTILINE | re.IGNORECASE)
    assert m, f"{name} is not pinned in requirements/base.txt"
    return m.group(1)


def test_one_opencv_distribution_the_pinned_headless_one():
    found = sorted({(d.metadata["Name"] or "").lower(): d.version for d in importlib.metadata.distributions()
                    if (d.metadata["Name"] or "").lower().startswith("opencv")}.items())
    want = [("opencv-python-headless", pinned("opencv-python-headless"))]
    assert found == want, (f"OpenCV distributions installed: {found}, want exactly {want} "
                           "(several share one cv2 folder); run: bash scripts/setup.sh")


def test_cv2_is_the_pinned_build():
    import cv2

    version = pinned("opencv-python-headless")
    assert version.startswith(cv2.__version__ + "."), f"cv2 {cv2.__version__} is not the pinned {version}"
    # headless: no GUI backend compiled in (the GUI build would answer with GTK/QT here)
    gui = re.search(r"^[ \t]*GUI:[ \t]*(\S+)", cv2.getBuildInformation(), re.MULTILINE)
    assert gui is None or gui.group(1).upper() in ("NONE", "NO"), f"cv2 has a GUI backend: {gui.group(0)}"
