"""The ROS 2 node under camera load: does an HD image stream reach the model, and how fast?

    python bench/node_bench.py [--sizes 640x480,1280x720,1920x1080] [--rates 10,30]
                               [--qos best_effort,reliable] [--seconds 10] [--transport recommended|default]

For each case a separate publisher process (like a camera driver: ``sensor_msgs/Image`` bgr8, real
road frames from ../shared/real resized to the size, else a rendered-looking procedural frame)
publishes at the rate for ``--seconds`` to a node started with its defaults (``carpose_node``:
shipped models, default QoS), and this process listens to ``~/cars`` and ``/diagnostics``.

Columns: frames published; received by the node (its ``frames_received``), as a share of those
published after discovery (the first frame that reached the node: before it, DDS was still
matching); processed; dropped by latest-frame-only (the node works on the newest frame and skips
the ones that arrived meanwhile: by design when frames come faster than the pipeline); node fps
while the stream ran; latency p50/p95 from the image's header stamp to ``~/cars`` arriving here;
the node's own pipeline p95 (its /diagnostics) for comparison.

``--transport recommended`` (default) runs both processes with carpose's DDS settings
(``carpose.ros.dds.recommended_env``: the Fast DDS profile config/fastdds_large_images.xml);
``default`` runs them with the RMW's defaults, to show what those settings buy;
``--pub-transport default`` gives only the publisher (the camera driver) the RMW's defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

REAL_FRAMES = REPO.parent / "shared" / "real" / "nuscenes_front" / "image_2"
TOPIC = "/bench_cam/image_raw"


def shown_path(value: str) -> str:
    """An absolute path inside this checkout as a repo-relative one, anything else as it is: the
    printed table goes into the README, which must not carry one machine's checkout location."""
    path = Path(value)
    if path.is_absolute() and path.resolve().is_relative_to(REPO):
        return str(path.resolve().relative_to(REPO))
    return value


# ---- the publisher process ---------------------------------------------------------------------------
def frame(width: int, height: int) -> np.ndarray:
    import cv2

    files = sorted(REAL_FRAMES.glob("*.png")) if REAL_FRAMES.is_dir() else []
    if files:
        return cv2.resize(cv2.imread(str(files[0])), (width, height), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(0)
    return cv2.GaussianBlur(rng.integers(0, 255, (height, width, 3), dtype=np.uint8), (0, 0), 3)


def publish(width: int, height: int, rate: float, seconds: float, qos_name: str) -> None:
    """Publish for ``seconds`` once the node's subscription is matched; print JSON stamps."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from carpose.ros.convert import cv2_to_imgmsg

    qos = qos_profile_sensor_data if qos_name == "best_effort" else QoSProfile(
        depth=10, reliability=ReliabilityPolicy.RELIABLE)
    rclpy.init()
    node = rclpy.create_node("bench_camera")
    pub = node.create_publisher(Image, TOPIC, qos)
    end = time.monotonic() + 30
    while pub.get_subscription_count() == 0 and time.monotonic() < end:
        time.sleep(0.05)
    msg = cv2_to_imgmsg(frame(width, height), "bgr8")
    msg.header.frame_id = "bench_cam"
    stamps: list[float] = []
    t0 = time.monotonic()
    for i in range(int(round(rate * seconds))):
        while time.monotonic() < t0 + i / rate:
            time.sleep(0.0005)
        now = time.time()
        msg.header.stamp.sec, msg.header.stamp.nanosec = int(now), int((now % 1) * 1e9)
        pub.publish(msg)
        stamps.append(round(now, 6))
    time.sleep(0.5)
    print(json.dumps({"stamps": stamps}))
    node.destroy_node()
    rclpy.shutdown()


# ---- one case ----------------------------------------------------------------------------------------
def run_case(width: int, height: int, rate: float, qos: str, seconds: float, env: dict[str, str],
             pub_env: dict[str, str], domain: int, workdir: Path) -> dict:
    import rclpy
    from carpose_msgs.msg import CarPoseArray
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    from carpose.eval.node_process import NodeProcess

    env = dict(env, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    node = NodeProcess(["-r", f"image:={TOPIC}", "-p", "debug_image:=false"], workdir / f"node_{domain}.log",
                       domain, env=env)
    # this listener joins with the node's discovery range and transports (read at rclpy.init)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    for k in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS", "CARPOSE_NO_DDS_DEFAULTS"):
        os.environ.pop(k, None)
        if k in env:
            os.environ[k] = env[k]
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain)
    me = rclpy.create_node("bench_listener", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(me)
    outputs: list[tuple[float, float]] = []  # (stamp, arrival)
    diag: dict[str, str] = {}

    def on_cars(m: CarPoseArray) -> None:
        outputs.append((m.header.stamp.sec + m.header.stamp.nanosec * 1e-9, time.time()))

    diag_at: list[float] = [0.0]  # arrival of the newest /carpose diagnostics

    def on_diag(m: DiagnosticArray) -> None:
        for st in m.status:
            if st.hardware_id == "/carpose":
                diag.clear()
                diag.update({kv.key: kv.value for kv in st.values})
                diag_at[0] = time.time()

    me.create_subscription(CarPoseArray, "/carpose/cars", on_cars, 50)
    me.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    try:
        node.wait_active(120)
        pub = subprocess.Popen([sys.executable, __file__, "--publish", f"{width}x{height}", str(rate), str(seconds),
                                qos], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env=dict(pub_env, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST"))
        while pub.poll() is None:
            ex.spin_once(timeout_sec=0.02)
        # the last outputs and a /diagnostics sent after them: a node still working through a backlog of
        # reliable frames (slower than the camera) counts them as it takes them, and its 1 s diagnostics
        # timer shares that executor, so a snapshot from mid-backlog would count too few
        start, end = time.monotonic(), time.monotonic() + 15.0
        while time.monotonic() < end:
            ex.spin_once(timeout_sec=0.02)
            last_out = outputs[-1][1] if outputs else 0.0
            if (time.monotonic() - start > 3.0 and time.time() - last_out > 1.5
                    and diag_at[0] > last_out):
                break
        out = pub.stdout.read()
        stamps = json.loads(out.strip().splitlines()[-1])["stamps"] if out.strip() else []
    finally:
        ex.shutdown()
        me.destroy_node()
        rclpy.try_shutdown(context=ctx)
        node.stop()
    received = int(diag.get("frames_received", 0))
    processed = int(diag.get("frames_processed", 0))
    first = min((s for s, _ in outputs), default=None)
    after = sum(1 for s in stamps if first is not None and s >= first - 1e-6)
    lat = np.array([(a - s) * 1000 for s, a in outputs])
    span = (max(a for _, a in outputs) - min(a for _, a in outputs)) if len(outputs) > 1 else 0.0
    return {"size": f"{width}x{height}", "rate": rate, "qos": qos, "published": len(stamps), "received": received,
            "after_discovery": after, "received_pct": 100.0 * received / after if after else 0.0,
            "processed": processed, "dropped": int(diag.get("frames_dropped", 0)),
            "fps": (len(outputs) - 1) / span if span > 0 else 0.0,
            "lat_p50": float(np.percentile(lat, 50)) if lat.size else float("nan"),
            "lat_p95": float(np.percentile(lat, 95)) if lat.size else float("nan"),
            "pipe_p95": float(diag.get("pipeline_ms_p95", "nan"))}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="640x480,1280x720,1920x1080")
    ap.add_argument("--rates", default="10,30")
    ap.add_argument("--qos", default="best_effort,reliable")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--transport", choices=("recommended", "default"), default="recommended")
    ap.add_argument("--pub-transport", choices=("same", "default"), default="same",
                    help="'default': the publisher (camera driver) runs with the RMW defaults whatever --transport")
    ap.add_argument("--publish", nargs=4, metavar=("WxH", "RATE", "SECONDS", "QOS"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.publish:
        w, h = map(int, a.publish[0].split("x"))
        publish(w, h, float(a.publish[1]), float(a.publish[2]), a.publish[3])
        return

    from carpose.ros.dds import NO_DDS_DEFAULTS, PROFILES_VAR, recommended_env

    env = dict(os.environ)
    if a.transport == "recommended":
        env.update(recommended_env(env))
    else:
        env.pop(PROFILES_VAR, None)
        env[NO_DDS_DEFAULTS] = "1"
    pub_env = dict(env)
    if a.pub_transport == "default":
        pub_env.pop(PROFILES_VAR, None)
        pub_env[NO_DDS_DEFAULTS] = "1"
    rmw = env.get("RMW_IMPLEMENTATION", "default")
    print(f"transport: {a.transport}, publisher {a.pub_transport} (RMW {rmw}, {PROFILES_VAR}="
          f"{shown_path(env.get(PROFILES_VAR, '-'))}); {a.seconds:g} s per case; source: "
          f"{'real frames' if REAL_FRAMES.is_dir() else 'procedural frames'}; {os.cpu_count()} CPUs")
    head = ("| size | Hz | publisher QoS | published | received (after discovery) | processed | dropped | node fps "
            "| latency p50 / p95 ms | pipeline p95 ms |")
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    domain = 60 + os.getpid() % 30
    with tempfile.TemporaryDirectory() as tmp:
        for size in a.sizes.split(","):
            w, h = map(int, size.split("x"))
            for rate in (float(r) for r in a.rates.split(",")):
                for qos in a.qos.split(","):
                    r = run_case(w, h, rate, qos, a.seconds, env, pub_env, domain, Path(tmp))
                    domain += 1
                    print(f"| {r['size']} | {r['rate']:g} | {r['qos']} | {r['published']} | {r['received']} "
                          f"({r['received_pct']:.0f} % of {r['after_discovery']}) | {r['processed']} | {r['dropped']} "
                          f"| {r['fps']:.1f} | {r['lat_p50']:.0f} / {r['lat_p95']:.0f} | {r['pipe_p95']:.0f} |",
                          flush=True)


if __name__ == "__main__":
    main()
