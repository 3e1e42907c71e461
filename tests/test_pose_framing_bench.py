"""bench/pose_framing_bench.py: the framings move the edges they name, the table counts a car as newly
flipped only when it was read right at its label box, and a run on a real source prints every framing."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_script

from carpose.eval.real_sources import resolve_sources

bench = load_script("bench/pose_framing_bench.py")


def test_framings_move_the_named_edges_by_shares_of_the_box():
    box = np.array([[100.0, 50.0, 200.0, 150.0]])  # 100 x 100
    np.testing.assert_allclose(bench.framed(box, bench.FRAMINGS["label box"]), box)
    np.testing.assert_allclose(bench.framed(box, bench.FRAMINGS["top edge down 5 %"]), [[100, 55, 200, 150]])
    np.testing.assert_allclose(bench.framed(box, bench.FRAMINGS["right edge in 4 %"]), [[100, 50, 196, 150]])
    np.testing.assert_allclose(bench.framed(box, bench.FRAMINGS["grown 4 % a side"]), [[96, 46, 204, 154]])
    wide = np.array([[0.0, 0.0, 200.0, 50.0]])  # shares follow each side: width for x, height for y
    np.testing.assert_allclose(bench.framed(wide, bench.FRAMINGS["shrunk 3 % a side"]), [[6, 1.5, 194, 48.5]])


def test_summary_counts_new_flips_only_for_cars_right_at_the_label_box():
    names = ["label box", "a", "b"]
    errors = np.array([[5.0, 170.0, 10.0],     # right at the box, flips under a: a new flip
                       [175.0, 178.0, 20.0],   # already flipped at the box: not new under a
                       [40.0, 35.0, 160.0]])   # wrong (not a flip) at the box, flips under b: new
    rows = {r["framing"]: r for r in bench.summarise(errors, names)}
    assert rows["label box"]["flips"] == 1 and rows["label box"]["acc_30"] == pytest.approx(1 / 3)
    assert (rows["a"]["flips"], rows["a"]["new_flips"]) == (2, 1)
    assert (rows["b"]["flips"], rows["b"]["new_flips"]) == (1, 1)
    assert rows["b"]["acc_30"] == pytest.approx(2 / 3)


def test_a_real_source_prints_every_framing(capsys):
    ok, _ = resolve_sources(["kitti_val"])
    if not ok:
        pytest.skip("kitti_val not in ../shared/real here")
    assert bench.main(["--sources", "kitti_val", "--min-height", "60"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| kitti_val |")]
    assert [r.split(" | ")[1] for r in rows] == [*bench.FRAMINGS, "**any framing**"]
    n = {int(r.split(" | ")[2]) for r in rows}
    assert len(n) == 1 and n.pop() > 0  # every framing reads the same cars
