"""carpose as a ROS 2 user meets it: ``colcon build`` of this repository into a temporary install,
then the *installed* node (``install/carpose/lib/carpose/carpose_node``) run as a real process with
the launch file's parameter file, and the launch file's ``Node(package, executable)`` resolved
against that install the way ``launch_ros`` does. Nothing here imports the source tree's carpose
in the node process: it runs from the install, with the models the install carries.

``launch`` / ``launch_ros`` are not on PyPI, so the launch file is read with stand-ins (see
tests/test_node.py); the real ``ros2 launch`` was run by hand (README, "On a ROS 2 machine").
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")
from test_node import CAMERA, NodeProcess, RosClient, Session, load_launch_with_stubs

REPO = Path(__file__).resolve().parents[1]
COLCON = shutil.which("colcon") or str(Path(sys.executable).with_name("colcon"))
MSGS_INSTALL = REPO / "ros2_ws" / "install" / "carpose_msgs"

pytestmark = pytest.mark.skipif(not Path(COLCON).exists(), reason="colcon is not installed")


@pytest.fixture(scope="module")
def install(tmp_path_factory) -> Path:
    """``colcon build`` of the repository (package carpose) into a temporary install base."""
    base = tmp_path_factory.mktemp("colcon")
    cmd = [COLCON, "--log-base", str(base / "log"), "build", "--base-paths", str(REPO),
           "--packages-select", "carpose", "--build-base", str(base / "build"),
           "--install-base", str(base / "install"), "--event-handlers", "console_direct-"]
    done = subprocess.run(cmd, cwd=base, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"colcon build failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return base / "install" / "carpose"


def _site_packages(prefix: Path) -> Path:
    return prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def _installed_env(prefix: Path) -> dict[str, str]:
    """What ``source install/setup.bash`` gives: the install's Python path and ament prefix first,
    and no trace of this source tree on the Python path."""
    env = dict(os.environ)
    keep = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != REPO]
    env["PYTHONPATH"] = os.pathsep.join([str(_site_packages(prefix)), *keep])
    env["AMENT_PREFIX_PATH"] = os.pathsep.join(filter(None, [str(prefix), env.get("AMENT_PREFIX_PATH")]))
    return env


def test_install_has_executables_models_launch_and_config(install):
    node = install / "lib" / "carpose" / "carpose_node"
    assert node.is_file() and os.access(node, os.X_OK), "ros2 run/launch look for lib/carpose/carpose_node"
    for name in ("carpose_pose.onnx", "carpose_det.onnx"):
        shipped, installed = REPO / "models" / name, install / "share" / "carpose" / "models" / name
        assert installed.read_bytes() == shipped.read_bytes(), f"{name} is not installed as shipped"
    assert (install / "share" / "carpose" / "launch" / "pose.launch.py").is_file()
    assert (install / "share" / "carpose" / "config" / "carpose.yaml").is_file()
    # the node's Python code comes from the install, not from this checkout
    where = subprocess.run([sys.executable, "-c", "import carpose, carpose.shipped as s; "
                            "print(carpose.__file__); print(s.find_shipped_model('carpose_pose.onnx'))"],
                           env=_installed_env(install), cwd=install, capture_output=True, text=True, check=True)
    module, model = where.stdout.split()
    assert Path(module).is_relative_to(install) and Path(model).is_relative_to(install), where.stdout
    # every layer of the package is installed (setup.py packages=): core, ros, eval
    site = _site_packages(install)
    for mod in ("carpose/pipeline.py", "carpose/ros/node.py", "carpose/ros/bag.py", "carpose/eval/bag_eval.py"):
        assert (site / mod).is_file(), f"{mod} is not in the install"


def test_launch_file_node_resolves_in_the_install(install, monkeypatch):
    """launch_ros's ExecutableInPackage: <get_package_prefix(package)>/lib/<package>/<executable>
    must exist; the default params_file is the installed share/carpose/config/carpose.yaml."""
    from ament_index_python.packages import get_package_prefix

    monkeypatch.setenv("AMENT_PREFIX_PATH", _installed_env(install)["AMENT_PREFIX_PATH"])
    entities, classes = load_launch_with_stubs(monkeypatch, install / "share" / "carpose" / "launch" /
                                               "pose.launch.py")
    (node,) = [e for e in entities if isinstance(e, classes["Node"])]
    package, executable = node.kwargs["package"], node.kwargs["executable"]
    prefix = Path(get_package_prefix(package))
    assert prefix == install
    exe = prefix / "lib" / package / executable
    assert exe.is_file() and os.access(exe, os.X_OK), f"launch_ros would fail: {exe} does not exist"
    declared = {e.args[0]: e.kwargs.get("default_value") for e in entities
                if isinstance(e, classes["DeclareLaunchArgument"])}
    assert Path(declared["params_file"]) == install / "share" / "carpose" / "config" / "carpose.yaml"


@pytest.mark.timeout(180)
def test_installed_node_with_launch_params_publishes_cars(install, tmp_path):
    env = _installed_env(install)
    if MSGS_INSTALL.is_dir():  # carpose_msgs comes from its own colcon install (scripts/setup.sh)
        env["AMENT_PREFIX_PATH"] = os.pathsep.join([env["AMENT_PREFIX_PATH"], str(MSGS_INSTALL)])
    params = install / "share" / "carpose" / "config" / "carpose.yaml"
    proc = NodeProcess(["--params-file", str(params), "-p", "qos_reliable:=true", "-r", f"image:={CAMERA}"],
                       tmp_path / "node.log", command=[str(install / "lib" / "carpose" / "carpose_node")],
                       env=env, cwd=tmp_path)
    ros = RosClient()
    try:
        proc.wait_active(120)
        log = proc.output()
        assert f"pose {install / 'share' / 'carpose' / 'models' / 'carpose_pose.onnx'}" in log, log[-2000:]
        session = Session(ros, proc)
        frame = np.full((480, 640, 3), 90, np.uint8)
        out = session.send(session.frame_msg(frame), timeout=30, tries=3)
        assert out is not None, f"no ~/cars from the installed node; its log ends:\n{proc.output()[-2000:]}"
        assert out.header.frame_id == "test_cam"
    finally:
        ros.close()
        proc.stop()
