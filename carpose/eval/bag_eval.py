"""``carpose-bag-eval``: replay a rosbag2 bag through carpose and score it against ground truth.

    carpose-bag-eval data/drive_bag --mode live --rate 1.0 --out runs/bag_eval
    carpose-bag-eval data/drive_bag --mode both --rate 0      # node and Pipeline must agree
    carpose-bag-eval some_recording/ --image-topic /cam/front/image_raw/compressed   # no GT: timing + video

Modes:

- ``live``: starts the real node (``python -m carpose.ros.node``) as a subprocess on a private
  ROS_DOMAIN_ID (localhost discovery only) with a reliable image subscription, publishes the bag's
  images on their topic with fresh header stamps (set at publish time), collects ``/carpose/cars``
  and records it into ``<out>/result_bag``. ``--rate R`` replays at R x the recorded rate (frames the
  node cannot keep up with are dropped by its latest-frame-only mailbox, as with a camera);
  ``--rate 0`` publishes the next frame once the node answered the previous one (or
  ``--frame-timeout`` passed), so every frame is processed.
- ``offline``: runs :class:`carpose.pipeline.Pipeline` over the frames in this process (no ROS).
- ``both``: live, then offline, and checks that they give the same cars and azimuths on every
  frame both processed (same models, same thresholds: the numbers must agree).

Scoring (carpose.eval.scoring, the same code as ``carpose-det-eval``): predictions are matched to
ground truth by IoU >= 0.5 per frame; 'DontCare' ground truth is an ignore region. Detection
precision/recall (at the node's threshold) and AP@0.5 over its published detections; azimuth MedErr /
Acc@30 / Acc@15 on matched cars, also by distance (ground truth without a 3-D position, e.g. hand
labels of real frames, in an "unknown" row of its own) and by 30-degree azimuth bins; latency
p50/p95/p99 (live: receive time - input header stamp; offline: pipeline time); processed vs dropped
frames. Writes ``report.md``, ``report.json``, PNG plots and ``replay.mp4`` (annotated) to ``--out``.
Only processed frames are scored; a dropped frame is counted as dropped, not as missed cars.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from carpose.eval.bag_replay import GT_BOXES, NO_DETECTOR, EvalConfig, RunResult, run_live, run_offline
from carpose.eval.bag_report import summary_table, write_plots, write_report, write_video
from carpose.eval.bag_scoring import agreement, score_run
from carpose.eval.node_process import NodeError, NodeStartError
from carpose.pipeline import DEFAULT_DET_MODEL, DEFAULT_POSE_MODEL
from carpose.ros.bag import AUTO, GT_TOPIC, BagError, BagReader

MODES = ("live", "offline", "both")


def evaluate(cfg: EvalConfig) -> dict:
    """Run the evaluation; returns the report dict (also written to ``cfg.out``)."""
    if cfg.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {cfg.mode!r}")
    reader = BagReader(cfg.bag, cfg.image_topic, cfg.gt_topic)
    for name, p in (("pose model", cfg.pose_model), ("detector", cfg.det_model)):
        if p.lower() not in (NO_DETECTOR, GT_BOXES) and not Path(p).is_file():
            raise FileNotFoundError(f"{name} {p} does not exist" + (
                " (the shipped models are made by scripts/train_pose_model.sh and scripts/make_det_model.sh)"
                if Path(p).resolve() in (DEFAULT_POSE_MODEL.resolve(), DEFAULT_DET_MODEL.resolve()) else ""))
    if cfg.det_model.lower() == GT_BOXES and (cfg.mode != "offline" or reader.gt_topic is None):
        raise ValueError("--det-model gt needs --mode offline and a bag with ground truth")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    n = reader.num_frames if cfg.max_frames is None else min(cfg.max_frames, reader.num_frames)
    if n == 0:
        raise BagError(f"{reader.image_topic} in {reader.path} has no messages")
    stamps, times = [], []
    for log_ns, st, _ in reader.raw_images():
        stamps.append(st)
        times.append(log_ns)
    times_s = (np.array(times, np.float64) - times[0]) / 1e9
    gt_by_stamp = reader.ground_truth()
    gt = None if gt_by_stamp is None else {i: reader.gt_for(s) or [] for i, s in enumerate(stamps[:n])}
    runs: dict[str, RunResult] = {}
    notes = []
    if cfg.mode in ("live", "both"):
        try:
            runs["live"] = run_live(cfg, reader, n, out)
        except NodeStartError as exc:
            if not cfg.fallback_offline:
                raise
            notes.append(f"live mode failed, evaluated offline instead: {exc}")
            print(f"carpose-bag-eval: the node could not start, falling back to offline mode:\n{exc}", file=sys.stderr)
    if cfg.mode in ("offline", "both") or ("live" not in runs):
        runs["offline"] = run_offline(cfg, reader, n)
    scores = {m: score_run(r, gt, times_s) for m, r in runs.items()}
    for m, r in runs.items():
        scores[m]["_latencies"] = [o.latency_ms for o in r.outputs.values()]
    agree = agreement(runs["live"], runs["offline"]) if len(runs) == 2 else None
    files: dict[str, Path | None] = {}
    files.update(write_plots(out, scores, gt, times_s))
    if cfg.video:
        shown = runs.get("live") or runs["offline"]
        files["video"] = write_video(out / "replay.mp4", reader, n, shown, gt, 1.0 / reader.frame_period_s())
    if "live" in runs and runs["live"].extra.get("result_bag"):
        files["result_bag"] = Path(runs["live"].extra["result_bag"])
    report_md, report_json = write_report(out, cfg, reader, n, scores, agree, files)
    return {"scores": scores, "agreement": agree, "report_md": report_md, "report_json": report_json,
            "files": files, "notes": notes, "table": summary_table(scores)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="carpose-bag-eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bag", help="rosbag2 directory (MCAP or sqlite3)")
    p.add_argument("--image-topic", help="default: /camera/image_raw, or the bag's only image topic")
    p.add_argument("--gt-topic", default=AUTO,
                   help=f"carpose_msgs/CarPoseArray ground truth (default: {GT_TOPIC} if present; 'none': ignore)")
    p.add_argument("--mode", choices=MODES, default="live")
    p.add_argument("--rate", type=float, default=1.0,
                   help="live replay speed relative to the recording; 0 = next frame when the node answered")
    p.add_argument("--out", default="runs/bag_eval")
    p.add_argument("--pose-model", default=str(DEFAULT_POSE_MODEL))
    p.add_argument("--det-model", default=str(DEFAULT_DET_MODEL),
                   help="'none': every frame is one car; 'gt' (offline): ground-truth boxes, the pose CNN alone")
    p.add_argument("--det-conf", type=float, default=0.35)
    p.add_argument("--det-iou", type=float, default=0.5)
    p.add_argument("--det-imgsz", type=int, default=0, help="0: the detector's own input size")
    p.add_argument("--max-frames", type=int, help="only the first N frames")
    p.add_argument("--frame-timeout", type=float, default=10.0, help="back-pressure wait per frame (s)")
    p.add_argument("--start-timeout", type=float, default=180.0, help="wait for the node to become active (s)")
    p.add_argument("--domain-id", type=int, help="ROS_DOMAIN_ID for the node and the replay (default: private)")
    p.add_argument("--fallback-offline", action="store_true", help="if the node cannot start, evaluate offline")
    p.add_argument("--no-video", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--qos", choices=("best_effort", "reliable"), default="best_effort",
                   help="reliability of the replayed image stream (default: best effort, like camera drivers)")
    a = p.parse_args(argv)
    cfg = EvalConfig(a.bag, a.image_topic, None if a.gt_topic.lower() == "none" else a.gt_topic, a.mode, a.rate,
                     a.out, a.pose_model, a.det_model, a.det_conf, a.det_iou, a.det_imgsz, a.frame_timeout,
                     a.start_timeout, a.domain_id, a.max_frames, not a.no_video, a.fallback_offline, not a.quiet, a.qos)
    try:
        r = evaluate(cfg)
    except NodeError as exc:
        print(f"carpose-bag-eval: {exc}", file=sys.stderr)
        return 3
    except (BagError, FileNotFoundError, ValueError) as exc:
        print(f"carpose-bag-eval: {exc}", file=sys.stderr)
        return 2
    print(r["table"])
    if r["agreement"] is not None:
        ag = r["agreement"]
        print(f"live vs offline: max azimuth difference {ag['max_azimuth_diff_deg']:.4f} deg over "
              f"{ag['cars_compared']} cars: {'agree' if ag['agree'] else 'DISAGREE'}")
    for note in r["notes"]:
        print(f"note: {note.splitlines()[0]}")
    print(f"report: {r['report_md']}\njson:   {r['report_json']}")
    for name, path in r["files"].items():
        if path is not None:
            print(f"{name}: {path}")
    return 0 if r["agreement"] is None or r["agreement"]["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
