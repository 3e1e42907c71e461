"""scripts/det_hours_plot.py: every scored checkpoint of a run lands at the hours its epoch ended."""

from __future__ import annotations

import json

from conftest import load_script


def _scores(name: str, mean_ap: float) -> dict:
    row = {"ap50": mean_ap, "precision": 0.9, "recall": 0.5}
    return {"weights": f"/x/weights/{name}", "sources": {"a": row}, "union": row, "mean_ap": mean_ap}


def test_checkpoints_are_placed_at_their_epoch_end_and_last_at_the_run_end(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "train").mkdir(parents=True)
    (run / "train" / "results.csv").write_text("epoch,          time,x\n1,900,0\n2,1800,0\n")
    (run / "det_train.json").write_text(json.dumps({"train_minutes": 33.0, "selection": [
        _scores("last.pt", 0.60), _scores("epoch1.pt", 0.62), _scores("epoch0.pt", 0.61)]}))
    mod = load_script("scripts/det_hours_plot.py")
    pts = mod.run_points(run)
    assert [(round(h, 3), n) for h, n, _ in pts] == [(0.25, "epoch0"), (0.5, "epoch1"), (0.55, "last")]
    start = tmp_path / "select.json"
    start.write_text(json.dumps({"scores": [_scores("shipped.onnx", 0.7)]}))
    out = tmp_path / "p.png"
    assert mod.main(["--start", str(start), f"n={run}", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| start | shipped.onnx | 0.00 | 0.700 |" in text and "| n | epoch1 | 0.50 | 0.620 |" in text
    assert out.stat().st_size > 1000


def test_a_resumed_run_still_going_adds_up_its_parts(tmp_path):
    """A run cut off by a session's end and resumed: ultralytics' clock starts again at the resume, and
    the run has no det_train.json yet, only its epochs scored by carpose-det-select."""
    run = tmp_path / "run"
    (run / "train").mkdir(parents=True)
    (run / "train" / "results.csv").write_text("epoch,time\n1,1800\n2,3700\n3,1900\n")  # resumed after epoch 2
    (run / "select").mkdir()
    (run / "select" / "select.json").write_text(json.dumps({"scores": [
        _scores("epoch2.pt", 0.72), _scores("epoch0.pt", 0.70), _scores("last.pt", 0.72)]}))
    mod = load_script("scripts/det_hours_plot.py")
    pts = mod.run_points(run)
    assert [(round(h, 3), n) for h, n, _ in pts] == [(0.5, "epoch0"), (1.556, "epoch2")]
    (run / "select" / "select.json").unlink()
    try:
        mod.run_points(run)
    except ValueError as exc:
        assert "select.json" in str(exc)
    else:
        raise AssertionError("a run with no scores was read")
