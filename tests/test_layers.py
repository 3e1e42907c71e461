"""The layers the tree shows, as tests: every import points down.

    carpose/         core: no ROS, no evaluation, no training
    carpose/ros/     ROS 2 adapters        (may import the core)
    carpose/eval/    evaluation tools      (may import the core and carpose.ros)
    training/        offline data + models (may import all of the above)

Static checks read every module's imports with ``ast`` (lazy imports inside functions included) so
a violation is caught even on a code path no test runs; the runtime check imports every core module
in a fresh interpreter where ``rclpy``, the ROS message packages, ``rosbags``, ``ament_index_python``
and ``training`` cannot be imported, and runs the pose model once, as a pip install without ROS would.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("core", "ros", "eval", "training")  # bottom to top
#: Top-level packages that are ROS (or only exist with ROS): the core never imports them.
ROS_PACKAGES = ("rclpy", "rosbags", "launch", "launch_ros", "ament_index_python", "rosidl_runtime_py")
ROS_SUFFIXES = ("_msgs", "_srvs", "_interfaces")
#: The one ROS name the core may touch: carpose.shipped asks the ament index where the package share
#: is, inside ``try: ... except ImportError`` (a pip install without ROS falls back to the prefix).
CORE_ROS_ALLOWED = {"carpose.shipped": {"ament_index_python"}}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def our_modules() -> dict[str, Path]:
    files = [*sorted((REPO / "carpose").rglob("*.py")), *sorted((REPO / "training").rglob("*.py"))]
    return {module_name(f): f for f in files}


def layer(module: str) -> str:
    if module == "training" or module.startswith("training."):
        return "training"
    if module.startswith("carpose.ros.") or module == "carpose.ros":
        return "ros"
    if module.startswith("carpose.eval.") or module == "carpose.eval":
        return "eval"
    return "core"


def imports_of(path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """(imported module, line) for every import in the file, at any depth. ``from a import b`` counts
    as ``a.b`` when that is a module of ours (``from carpose.ros import dds``), else as ``a``."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for a in node.names:
                full = f"{base}.{a.name}"
                out.append((full if full in modules else base, node.lineno))
    return out


def is_ros(name: str) -> bool:
    top = name.split(".")[0]
    return top in ROS_PACKAGES or top.endswith(ROS_SUFFIXES)


def ours(name: str) -> bool:
    return name.split(".")[0] in ("carpose", "training")


@pytest.fixture(scope="module")
def graph() -> dict[str, list[tuple[str, int]]]:
    mods = our_modules()
    return {m: imports_of(p, mods) for m, p in mods.items()}


def test_every_import_points_down(graph):
    """core < ros < eval < training: a module imports only its own layer and the ones below."""
    bad = []
    for mod, imps in graph.items():
        for name, line in imps:
            if ours(name) and LAYERS.index(layer(name)) > LAYERS.index(layer(mod)):
                bad.append(f"{graph_path(mod)}:{line}: {layer(mod)} module {mod} imports {layer(name)} {name}")
    assert not bad, "imports that point up a layer:\n" + "\n".join(bad)


def test_nothing_under_carpose_imports_training(graph):
    bad = [f"{graph_path(m)}:{line}: {m} imports {name}" for m, imps in graph.items() if layer(m) != "training"
           for name, line in imps if layer(name) == "training" and ours(name)]
    assert not bad, "the installed runtime must not need training/:\n" + "\n".join(bad)


def test_core_imports_no_ros(graph):
    bad = [f"{graph_path(m)}:{line}: {m} imports {name}" for m, imps in graph.items() if layer(m) == "core"
           for name, line in imps if is_ros(name) and name.split(".")[0] not in CORE_ROS_ALLOWED.get(m, ())]
    assert not bad, "the core imports no ROS (README, Layout):\n" + "\n".join(bad)


def test_imports_have_no_cycles(graph):
    """No modules of ours (carpose and training) import each other in a loop, not even lazily: a
    lazy import hides a cycle from the interpreter, not from the reader who has to know which of
    the two modules comes first."""
    edges = {m: sorted({n for n, _ in imps if n in graph and n != m}) for m, imps in graph.items()}
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in edges.get(m, []):
            if state.get(n) == 1:
                return [*stack[stack.index(n):], n]
            if n not in state and (cycle := visit(n)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state and (cycle := visit(m)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def graph_path(module: str) -> str:
    return str(our_modules()[module].relative_to(REPO))


# ---- at run time --------------------------------------------------------------------------------
_BLOCKER = """
import importlib.abc, json, sys
BLOCKED = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in BLOCKED or top.endswith({suffixes!r}):
            raise ImportError(f"{{name}} is blocked in this test (no ROS, no training)")
        return None
sys.meta_path.insert(0, Block())
for k in [k for k in sys.modules if k.split(".")[0] in BLOCKED]:
    del sys.modules[k]
"""


def run_blocked(code: str, blocked: tuple[str, ...]) -> dict:
    """Run ``code`` (which prints one JSON line last) with ``blocked`` packages unimportable."""
    prog = _BLOCKER.format(blocked=blocked, suffixes=ROS_SUFFIXES) + textwrap.dedent(code)
    done = subprocess.run([sys.executable, "-c", prog], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"subprocess failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def core_modules() -> list[str]:
    return sorted(m for m in our_modules() if layer(m) == "core")


def test_core_imports_and_runs_with_rclpy_and_training_unimportable():
    mods = core_modules()
    assert {"carpose.pipeline", "carpose.pose", "carpose.detect", "carpose.convention"} <= set(mods)
    out = run_blocked(f"""
        import importlib, traceback
        failed = {{}}
        for m in {mods!r}:
            try:
                importlib.import_module(m)
            except Exception:
                failed[m] = traceback.format_exc(limit=3)
        n = 0
        if not failed:  # the shipped pose model runs too
            import numpy as np
            from carpose.pose import PoseEstimator
            from carpose.shipped import POSE_MODEL, find_shipped_model
            pose = PoseEstimator(find_shipped_model(POSE_MODEL), backend="onnxruntime", device="cpu")
            n = len(pose.predict(np.zeros((1, pose.input_size, pose.input_size, 3), np.uint8)).azimuth_deg)
        loaded = sorted({{k.split(".")[0] for k in sys.modules}} & set(BLOCKED))
        print(json.dumps({{"failed": failed, "loaded": loaded, "n": n}}))
    """, (*ROS_PACKAGES, "training"))
    assert out["failed"] == {}, "core modules that need ROS or training:\n" + "\n".join(out["failed"].values())
    assert out["loaded"] == [] and out["n"] == 1


def test_pip_only_ros_pieces_import_without_rclpy():
    """Bag I/O (rosbags), image conversion and the DDS settings work without rclpy (offline
    carpose-bag-eval, the launch file's DDS settings); the node itself needs rclpy."""
    out = run_blocked("""
        import importlib
        ok = {}
        for m in ("carpose.ros.bag", "carpose.ros.convert", "carpose.ros.dds", "carpose.ros.node"):
            try:
                importlib.import_module(m)
                ok[m] = True
            except ImportError:
                ok[m] = False
        print(json.dumps(ok))
    """, ("rclpy", "ament_index_python", "training"))
    assert out == {"carpose.ros.bag": True, "carpose.ros.convert": True, "carpose.ros.dds": True,
                   "carpose.ros.node": False}
