"""Rosbag replay evaluation: bag round trips, drive labels, scoring, and replays through the node.

The live test runs the real node (``python -m carpose.ros.node``) with a tiny pose ONNX (``pose_run``
fixture) and no detector, so it checks plumbing: every frame in gives one result out, the result
bag is written, node and Pipeline agree. The accuracy test needs the shipped models and skips
without them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from carpose.convention import angular_error, view_from_camera_position
from carpose.results import CarPoseResult
from carpose.ros.bag import (
    CAR_POSE_ARRAY,
    CARS_TOPIC,
    COMPRESSED_TYPE,
    GT_TOPIC,
    IMAGE_TOPIC,
    BagError,
    BagReader,
    BagWriter,
    GtCar,
    car_pose_array_to_results,
    stamp_ns,
    typestore,
)

REPO = Path(__file__).resolve().parents[1]
SHIPPED_POSE = REPO / "models" / "carpose_pose.onnx"
SHIPPED_DET = REPO / "models" / "carpose_det.onnx"
needs_shipped = pytest.mark.skipif(not (SHIPPED_POSE.is_file() and SHIPPED_DET.is_file()),
                                   reason="needs the shipped models/carpose_pose.onnx and models/carpose_det.onnx")
T0 = 1_000_000_000_000


def _frames(n: int = 4, h: int = 48, w: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def _gt(i: int) -> list[GtCar]:
    return [GtCar(np.array([1.0 + i, 2.0, 30.5, 40.25]), 123.5 + i, 7, False, np.array([1.0, 0.5, 20.0 + i]), 0.25),
            GtCar(np.array([3.0, 4.0, 10.0, 12.0]), 10.0, 8, True)]


def _write_bag(path: Path, storage: str = "mcap", frames: list[np.ndarray] | None = None, gt: bool = True) -> Path:
    frames = _frames() if frames is None else frames
    K = np.array([[50.0, 0, 32], [0, 50, 24], [0, 0, 1]])
    with BagWriter(path, storage) as w:
        for i, img in enumerate(frames):
            w.write_frame(T0 + i * 100_000_000, img, K, _gt(i) if gt else None)
    return path


# ---- bags -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_round_trip_frames_and_ground_truth_identical(tmp_path, storage):
    frames = _frames()
    bag = _write_bag(tmp_path / "bag", storage, frames)
    r = BagReader(bag)
    assert (r.storage, r.image_topic, r.gt_topic, r.num_frames) == (storage, IMAGE_TOPIC, GT_TOPIC, 4)
    assert r.frame_period_s() == pytest.approx(0.1)
    got = list(r.frames())
    assert [f.stamp_ns for f in got] == [T0 + i * 100_000_000 for i in range(4)] == [f.log_ns for f in got]
    for f in got:
        assert f.encoding == "bgr8" and np.array_equal(f.image, frames[f.index])
        want = _gt(f.index)
        assert len(f.gt) == 2
        for a, b in zip(f.gt, want, strict=True):
            assert np.allclose(a.box_xyxy, b.box_xyxy) and a.azimuth_deg == pytest.approx(b.azimuth_deg)
            assert (a.track_id, a.ignore) == (b.track_id, b.ignore)
        assert np.allclose(f.gt[0].position, want[0].position) and f.gt[0].rotation_y == pytest.approx(0.25)
        assert f.gt[0].distance_m == pytest.approx(np.linalg.norm(want[0].position))
        assert f.gt[1].position is None and math.isnan(f.gt[1].distance_m)
    # the GT messages themselves are byte-identical to what was written
    from carpose.ros.bag import gt_msgs

    ts = typestore()
    raws = [raw for _, _, raw in r._messages([GT_TOPIC])]
    for i, raw in enumerate(raws):
        arr, _ = gt_msgs(_gt(i), T0 + i * 100_000_000, "camera_optical_frame", 64, 48)
        assert bytes(raw) == bytes(ts.serialize_cdr(arr, "carpose_msgs/msg/CarPoseArray"))


def test_compressed_images_are_found_and_decoded(tmp_path):
    ts = typestore()
    img = _frames(1)[0]
    ok, png = cv2.imencode(".png", img)
    assert ok
    from carpose.ros.bag import _header

    msg = ts.types[COMPRESSED_TYPE](header=_header(T0, "cam"), format="png", data=png.reshape(-1))
    with BagWriter(tmp_path / "bag", "sqlite3") as w:
        w.write("/front/image_raw/compressed", COMPRESSED_TYPE, T0, msg)
    r = BagReader(tmp_path / "bag")
    assert (r.image_topic, r.compressed, r.gt_topic) == ("/front/image_raw/compressed", True, None)
    (f,) = list(r.frames())
    assert np.array_equal(f.image, img) and f.gt is None and f.stamp_ns == T0


def test_clear_errors_for_bad_bags_and_topics(tmp_path):
    with pytest.raises(BagError, match="does not exist"):
        BagReader(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match=r"no metadata\.yaml"):
        BagReader(tmp_path / "empty")
    bag = _write_bag(tmp_path / "bag", gt=False)
    with pytest.raises(BagError, match=r"image topic /other is not in .*image topics there: \['/camera/image_raw'\]"):
        BagReader(bag, image_topic="/other")
    with pytest.raises(BagError, match="is sensor_msgs/msg/CameraInfo, not"):
        BagReader(bag, image_topic="/camera/camera_info")
    with pytest.raises(BagError, match="ground-truth topic /gt is not in"):
        BagReader(bag, gt_topic="/gt")
    assert BagReader(bag).gt_topic is None  # the default topic is optional
    with pytest.raises(FileExistsError):
        BagWriter(bag)
    storage_file = next(bag.glob("*.mcap"))
    assert BagReader(storage_file).path == bag  # the storage file of a bag works too


# ---- the synthetic drive --------------------------------------------------------------------------
def _footprint(pose: np.ndarray, length: float = 4.5, width: float = 1.8) -> np.ndarray:
    c = np.array([[x, y, 0, 1] for x, y in ((length / 2, width / 2), (-length / 2, width / 2),
                                             (-length / 2, -width / 2), (length / 2, -width / 2))])
    return (pose @ c.T).T[:, :2]


def _overlap(a: np.ndarray, b: np.ndarray, margin: float = 0.3) -> bool:
    """Separating-axis test of two convex quads (with a margin)."""
    for poly in (a, b):
        for k in range(4):
            e = poly[(k + 1) % 4] - poly[k]
            n = np.array([-e[1], e[0]]) / np.linalg.norm(e)
            pa, pb = a @ n, b @ n
            if pa.max() + margin < pb.min() or pb.max() + margin < pa.min():
                return False
    return True


def _view(drive, actor, t: float) -> float:
    cam = drive.camera_pose(t)
    pose = drive.car_pose(actor, t)
    return view_from_camera_position((np.linalg.inv(pose) @ cam[:, 3])[:3], (0, 0, 0.7))[0]


def test_drive_geometry_labels_and_no_collisions():
    from training.render.drive import Drive, DriveConfig
    from training.render.renderer import trimesh_box_car

    box = [trimesh_box_car()]
    d = Drive(DriveConfig(frames=40, cars=6), box)
    by = {a.role: a for a in d.actors}
    assert angular_error(_view(d, by["lead"], 0.0), 180.0) < 5  # ahead, driving away: its rear
    assert angular_error(_view(d, by["oncoming"], 0.0), 0.0) < 10  # coming towards us: its front
    assert angular_error(_view(d, by["crossing"], 2.0), 90.0) < 30  # crossing right-to-left: its left side
    # the turning car turns through 90 deg, the parked one stays put
    h0, h1 = (math.degrees(math.atan2(d.car_pose(by["turning"], t)[1, 0], d.car_pose(by["turning"], t)[0, 0]))
              for t in (0.0, 4.0))
    assert angular_error(h0 - h1, 90.0) < 5
    assert np.allclose(d.car_pose(by["parked"], 0.0), d.car_pose(by["parked"], 3.9))
    # smooth: no car's azimuth jumps by more than 15 deg between frames while it is in front of us
    for a in d.actors:
        az = [_view(d, a, i / 10) for i in range(40)]
        ahead = [(np.linalg.inv(d.camera_pose(i / 10)) @ d.car_pose(a, i / 10)[:, 3])[2] < -3 for i in range(40)]
        jumps = [angular_error(x, y) for x, y, k in zip(az, az[1:], ahead[1:], strict=False) if k]
        assert max(jumps) < 15, (a.role, max(jumps))
    # footprints never intersect, for several lengths and seeds
    for frames, seed in ((20, 0), (40, 1), (60, 2), (120, 3)):
        dd = Drive(DriveConfig(frames=frames, cars=6, seed=seed), box)
        for i in range(frames):
            fp = [_footprint(dd.car_pose(a, i / 10)) for a in dd.actors]
            for j in range(6):
                for k in range(j + 1, 6):
                    assert not _overlap(fp[j], fp[k]), (frames, seed, i, dd.actors[j].role, dd.actors[k].role)


def test_drive_render_labels_agree_with_the_image_and_are_deterministic():
    """Box cars: one mesh each, so no coplanar parts and the pixels must repeat exactly."""
    from training.render.drive import Drive, DriveConfig
    from training.render.renderer import trimesh_box_car

    cfg = DriveConfig(frames=10, width=160, height=120, cars=3, seed=4)
    f0, f5 = list(Drive(cfg, [trimesh_box_car()]).frames(0, 6))[::5]
    again = next(Drive(cfg, [trimesh_box_car()]).frames(5, 6))
    assert np.array_equal(f5.image_bgr, again.image_bgr) and f5.image_bgr.shape == (120, 160, 3)
    lead = next(c for c in f0.cars if c["role"] == "lead")
    assert angular_error(lead["azimuth_deg"], 180.0) < 5 and not lead["ignore"]
    x1, y1, x2, y2 = lead["bbox"]
    assert abs((x1 + x2) / 2 - 80) < 15 and 10 < lead["distance_m"] < 20  # straight ahead, ~14 m
    assert np.linalg.norm(lead["centre_cam"]) == pytest.approx(lead["distance_m"], rel=1e-6)
    # the box holds the car: grey box-car pixels differ from the road behind them
    car_pixels = f0.image_bgr[int(y1):int(y2), int(x1):int(x2)]
    assert car_pixels.size and np.ptp(car_pixels.reshape(-1, 3), axis=0).max() > 20


def test_make_bag_writes_a_complete_bag_or_nothing(tmp_path, monkeypatch):
    from training.render import drive, drive_bag

    out = tmp_path / "bag"
    assert drive_bag.main([str(out), "--frames", "3", "--width", "64", "--height", "48", "--procedural", "10",
                          "--storage", "sqlite3", "--quiet"]) == 0
    r = BagReader(out)
    assert (r.storage, r.num_frames, r.gt_topic) == ("sqlite3", 3, GT_TOPIC)
    assert json.loads(r.custom_data["carpose.drive"])["roles"][:3] == ["lead", "oncoming", "turning"]
    assert drive_bag.main([str(out), "--quiet"]) == 2  # exists: refuses without --overwrite

    orig = drive.Drive.frames

    def interrupted(self, start=0, stop=None):
        for i, f in enumerate(orig(self, start, stop)):
            if i == 2:
                raise KeyboardInterrupt
            yield f

    monkeypatch.setattr(drive.Drive, "frames", interrupted)
    with pytest.raises(KeyboardInterrupt):
        drive_bag.make_bag(out, frames=3, width=64, height=48, procedural=10, overwrite=True, progress=False)
    assert BagReader(out).num_frames == 3  # the old bag is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag"]  # no half-written bag or staging dir
    with pytest.raises(KeyboardInterrupt):
        drive_bag.make_bag(tmp_path / "new", frames=3, width=64, height=48, procedural=10, progress=False)
    assert not (tmp_path / "new").exists()


# ---- scoring --------------------------------------------------------------------------------------
def _car(box, az, score=0.9) -> CarPoseResult:
    return CarPoseResult(np.array(box, float), score, 2, "car", az, 0.9, 64)


def test_scoring_hand_made_cases():
    from carpose.eval.bag_replay import FrameOut, RunResult
    from carpose.eval.bag_scoring import agreement, score_run

    gt = {0: [GtCar(np.array([0, 0, 100, 50.0]), 10.0, 1, False, np.array([0, 0, 8.0])),
              GtCar(np.array([200, 0, 220, 10.0]), 90.0, 2, True)],
          1: [GtCar(np.array([0, 0, 100, 50.0]), 350.0, 1, False, np.array([0, 0, 35.0]))],
          2: [GtCar(np.array([0, 0, 100, 50.0]), 180.0, 1, False)]}
    run = RunResult("offline", 3, 3, {
        0: FrameOut(0, [_car([2, 1, 101, 50], 20.0), _car([201, 0, 220, 10], 45.0), _car([400, 0, 450, 40], 0.0, 0.4)],
                    5.0, 4.0),
        1: FrameOut(1, [_car([0, 0, 100, 50], 5.0)], 7.0, 6.0)})  # frame 2 dropped: not scored
    s = score_run(run, gt, np.array([0.0, 0.1, 0.2]))
    assert (s["processed"], s["dropped"]) == (2, 1)
    d = s["detection"]
    assert (d["tp"], d["fp"], d["fn"]) == (2, 1, 0)  # the DontCare hit counts neither way
    assert d["precision"] == pytest.approx(2 / 3) and d["recall"] == 1.0
    assert d["ap50"] == pytest.approx(1.0)  # the FP has the lowest score
    assert s["azimuth"]["n"] == 2 and s["azimuth"]["med_err_deg"] == pytest.approx(12.5)  # errors 10 and 15
    assert s["azimuth"]["acc_15"] == 1.0 and s["azimuth"]["acc_30"] == 1.0
    dist = {(b["from_m"], b["to_m"]): (b["gt"], b["recall"], b["n"]) for b in s["by_distance"]}
    assert dist[(0.0, 10.0)] == (1, 1.0, 1) and dist[(30.0, 50.0)] == (1, 1.0, 1) and dist[(10.0, 20.0)][0] == 0
    az = {b["from_deg"]: b["n"] for b in s["by_azimuth"]}
    assert az[0] == 1 and az[330] == 1
    assert s["latency_ms"]["p50"] == pytest.approx(6.0)
    same = agreement(run, run)
    assert same["agree"] and same["max_azimuth_diff_deg"] == 0.0 and same["cars_compared"] == 4
    other = RunResult("live", 3, 3, {0: FrameOut(0, [_car([2, 1, 101, 50], 21.0), _car([201, 0, 220, 10], 45.0),
                                                     _car([400, 0, 450, 40], 0.0, 0.4)], 1, 1)})
    diff = agreement(other, run)
    assert not diff["agree"] and diff["max_azimuth_diff_deg"] == pytest.approx(1.0)


# ---- replays --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_pose(pose_run, tmp_path_factory) -> Path:
    from training.pose.export import export_onnx

    return export_onnx(pose_run / "best.pt", tmp_path_factory.mktemp("bag_models") / "pose.onnx")


def test_live_replay_plumbing_with_tiny_models(tmp_path, tiny_pose):
    pytest.importorskip("rclpy")
    pytest.importorskip("carpose_msgs.msg")
    from carpose.eval.bag_eval import evaluate
    from carpose.eval.bag_replay import EvalConfig

    bag = _write_bag(tmp_path / "bag", "sqlite3", _frames(5, 96, 128))
    out = tmp_path / "eval"
    r = evaluate(EvalConfig(str(bag), mode="both", rate=0, out=str(out), pose_model=str(tiny_pose),
                            det_model="none", progress=False))
    live = r["scores"]["live"]
    assert (live["published"], live["processed"], live["dropped"]) == (5, 5, 0), live.get("node_log")
    assert live["latency_ms"]["n"] == 5 and live["latency_ms"]["p50"] > 0
    assert r["agreement"]["agree"] and r["agreement"]["cars_compared"] == 5
    ts = typestore()
    counts = _topics(out / "result_bag")
    assert counts[CARS_TOPIC] == 5 and counts[GT_TOPIC] == 5
    cars = [ts.deserialize_cdr(raw, CAR_POSE_ARRAY) for raw in _raw(out / "result_bag", CARS_TOPIC)]
    assert all(len(car_pose_array_to_results(m)) == 1 for m in cars)  # no detector: one car per frame
    gts = [ts.deserialize_cdr(raw, CAR_POSE_ARRAY) for raw in _raw(out / "result_bag", GT_TOPIC)]
    assert sorted(stamp_ns(m.header) for m in cars) == sorted(stamp_ns(m.header) for m in gts)  # re-stamped GT
    for name in ("report.md", "report.json", "replay.mp4", "latency_histogram.png", "azimuth_over_time.png"):
        assert (out / name).is_file(), name
    js = json.loads((out / "report.json").read_text())
    assert js["runs"]["live"]["detection"]["fp"] == 5  # whole-frame 'cars' never match the GT boxes
    assert "| frames processed / published | 5 / 5 | 5 / 5 |" in r["table"]


def test_offline_on_ground_truth_boxes_scores_the_pose_cnn_alone(tmp_path, tiny_pose):
    from carpose.eval.bag_eval import main
    from training.render.drive_bag import main as make_main

    bag = tmp_path / "drive"
    assert make_main([str(bag), "--frames", "3", "--width", "128", "--height", "96", "--procedural", "10",
                      "--quiet"]) == 0
    out = tmp_path / "eval"
    assert main([str(bag), "--mode", "offline", "--det-model", "gt", "--pose-model", str(tiny_pose), "--out",
                 str(out), "--quiet", "--no-video"]) == 0
    s = json.loads((out / "report.json").read_text())["runs"]["offline"]
    n_gt = sum(1 for f in BagReader(bag).frames() for g in f.gt if not g.ignore)
    assert n_gt > 0 and s["detection"]["tp"] == n_gt == s["azimuth"]["n"]
    assert s["detection"]["precision"] == s["detection"]["recall"] == 1.0
    assert main([str(bag), "--mode", "live", "--det-model", "gt", "--pose-model", str(tiny_pose)]) == 2


def _topics(bag: Path) -> dict[str, int]:
    from rosbags.rosbag2 import Reader

    with Reader(bag) as rd:
        return {c.topic: c.msgcount for c in rd.connections}


def _raw(bag: Path, topic: str) -> list[bytes]:
    from rosbags.rosbag2 import Reader

    with Reader(bag) as rd:
        return [raw for c, _, raw in rd.messages(connections=[c for c in rd.connections if c.topic == topic])]


def _shipped_replay(bag: Path, out: Path, frames: int) -> list[dict]:
    """Replay ``bag`` through the node and in-process with the shipped models; check that both saw
    every frame and agree, and return both modes' scores."""
    from carpose.eval.bag_eval import evaluate
    from carpose.eval.bag_replay import EvalConfig

    r = evaluate(EvalConfig(str(bag), mode="both", rate=0, out=str(out), video=False, progress=False))
    assert r["agreement"]["agree"], r["agreement"]
    for mode in ("live", "offline"):
        assert r["scores"][mode]["processed"] == frames, (mode, r["scores"][mode].get("node_log"))
    return [r["scores"]["live"], r["scores"]["offline"]]


@needs_shipped
def test_shipped_models_on_a_synthetic_drive(tmp_path):
    """The shipped models through the node and in-process on 6 frames of held-out procedural cars on
    a drawn road, where the ground truth is exact: node and Pipeline agree, every frame is processed,
    hardly a false car is found and every car found gets its azimuth. The drawn look is not what the
    shipped detector is for (real road photos; its real-frame bounds are those of
    test_shipped_models_on_real_frames_through_the_node): here it finds 17-60 % of the cars
    (precision 1.0, drive seeds 1, 2, 0; models/README.md, "On the drawn synthetic drive"), a known
    gap. Seed 0, 2026-12-06, round-3 detector: recall 0.60 (15 of 25; the round-2 one 0.48),
    MedErr 0.9 deg, Acc@30 100 %. The recall bounds below leave seven cars and two cars."""
    pytest.importorskip("rclpy")
    from training.render.drive_bag import main as make_main

    bag = tmp_path / "drive"
    assert make_main([str(bag), "--frames", "6", "--fps", "5", "--seed", "0", "--quiet"]) == 0
    for s in _shipped_replay(bag, tmp_path / "eval", 6):
        assert s["detection"]["precision"] >= 0.8 and s["detection"]["recall"] >= 0.3, (s["mode"], s["detection"])
        assert s["azimuth"]["med_err_deg"] <= 15 and s["azimuth"]["acc_30"] >= 0.8, (s["mode"], s["azimuth"])
        near = [b for b in s["by_distance"] if b["to_m"] is not None and b["to_m"] <= 20 and b["gt"]]
        assert near and all(b["recall"] >= 0.5 for b in near), near


@needs_shipped
def test_shipped_models_on_real_frames_through_the_node(tmp_path):
    """What the product is for: the 50 hand-labelled nuScenes frames (1600x900, ../shared)
    replayed through the real node (DDS at full frame size) and in-process, shipped models. Every
    labelled car counts, none is ignored. Measured 2026-12-06 with the round-4 detector at 352x640
    (`DEMO=real bash scripts/demo.sh`): precision 0.955 (42 cars, 2 false boxes), recall 0.532 (42 of
    79 cars), Acc@30 100 %, MedErr 6.1 deg of the cars found (round 3: 0.896, 0.544, 100 %, 6.1 deg;
    round 2: 0.896, 0.544, 97.7 %, 6.0 deg); the bounds leave five false boxes and two cars. The
    synthetic drive above cannot stand for this: its drawn look is not what the detector is for."""
    pytest.importorskip("rclpy")
    from carpose.eval.real_sources import source_from_spec
    from training.render.drive_bag import main as make_main

    src = source_from_spec("nuscenes_front")
    if src.missing():
        pytest.skip(f"nuscenes_front: {src.missing()} (../shared is optional)")
    bag = tmp_path / "real"
    assert make_main(["--from-kitti", str(src.labels), str(bag), "--images", str(src.images), "--quiet"]) == 0
    for s in _shipped_replay(bag, tmp_path / "eval", 50):
        assert s["detection"]["precision"] >= 0.85 and s["detection"]["recall"] >= 0.5, (s["mode"], s["detection"])
        assert s["azimuth"]["acc_30"] >= 0.9 and s["azimuth"]["med_err_deg"] <= 8, (s["mode"], s["azimuth"])
