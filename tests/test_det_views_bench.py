"""bench/det_views_bench.py: the test-time views it scores map their boxes back to the frame as the
frame is, so the lever table it prints compares views and not mapping errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import REPO, load_script

from carpose.track import iou_matrix

SHIPPED_DET = REPO / "models" / "carpose_det.onnx"
bench = load_script("bench/det_views_bench.py")


def test_tiles_cover_the_frame_and_overlap():
    (a0, a1), (b0, b1) = bench.tile_windows(1242)
    assert a0 == 0 and b1 == 1242 and a1 - a0 == b1 - b0 == 745
    assert b0 < a1  # they overlap, so a car in the middle is whole in at least one tile


def test_merge_tiles_moves_boxes_drops_inner_cuts_and_keeps_overlap_cars_once():
    windows = [(0, 600), (400, 1000)]
    left = (np.array([[100, 50, 200, 120],     # a car in the left tile only
                      [520, 60, 580, 110],     # a car in the overlap (frame x 520-580)
                      [550, 40, 600, 130]]),   # cut by the left tile's inner edge (x 600)
            np.array([0.9, 0.8, 0.7]))
    right = (np.array([[120, 61, 180, 111],    # the overlap car again, in right-tile pixels (frame 520-580)
                       [0, 40, 60, 130],       # cut by the right tile's inner edge (frame x 400)
                       [500, 50, 600, 150]]),  # at the frame's own right edge: a real cut car, kept
             np.array([0.6, 0.95, 0.5]))
    boxes, scores = bench.merge_tiles([left, right], windows, 1000, iou=0.5)
    got = sorted(map(tuple, np.round(boxes).astype(int).tolist()))
    assert got == [(100, 50, 200, 120), (520, 60, 580, 110), (900, 50, 1000, 150)]
    assert sorted(scores.tolist()) == [0.5, 0.8, 0.9]  # the overlap car keeps its best score


def test_mirror_boxes_is_its_own_inverse():
    b = np.array([[10.0, 5.0, 60.0, 40.0], [0.0, 0.0, 100.0, 20.0]])
    m = bench.mirror_boxes(b, 100)
    np.testing.assert_allclose(m, [[40, 5, 90, 40], [0, 0, 100, 20]])
    np.testing.assert_allclose(bench.mirror_boxes(m, 100), b)


def test_nms_keeps_the_best_of_overlapping_boxes():
    b = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]], float)
    keep = bench.nms(b, np.array([0.5, 0.9, 0.3]), iou=0.5)
    assert keep.tolist() == [1, 2]


def test_bad_view_specs_are_refused():
    with pytest.raises(ValueError, match="merge with"):
        bench.ViewDetector("own+ownf:mean", SHIPPED_DET)
    with pytest.raises(ValueError, match="unknown view"):
        bench.ViewDetector("big", SHIPPED_DET)
    with pytest.raises(ValueError, match="no --model r18"):
        bench.ViewDetector("own+own@r18:wbf", SHIPPED_DET)


def _photo_with_a_car(det) -> tuple[np.ndarray, list]:
    """The first real road photo (../shared/real_unlabelled) where ``det`` boxes a car above 0.5, and its
    boxes; skips where there is none."""
    photos = sorted((REPO.parent / "shared" / "real_unlabelled").rglob("*.jpg"))
    if not photos or not SHIPPED_DET.is_file():
        pytest.skip("needs ../shared/real_unlabelled and the shipped detector")
    for path in photos[:40]:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        found = det.detect(img)
        if any(d.score > 0.5 for d in found):
            return img, found
    pytest.skip("no car found in the first photos")


def test_tagged_pass_runs_its_own_file_and_fuses_with_the_others():
    """'own@TAG' runs the file given for TAG; fused by WBF with a pass that saw the same boxes, the
    boxes stay and the scores are the mean of the passes (a car one of two files missed gets half)."""
    int8 = REPO / "models" / "carpose_det_int8.onnx"
    if not int8.is_file():
        pytest.skip("needs the INT8 twin")
    img, float_boxes = _photo_with_a_car(bench.ViewDetector("own", SHIPPED_DET))
    twin = bench.ViewDetector("own@q", SHIPPED_DET, models={"q": int8})
    twin_boxes = twin.detect(img)
    assert [d.score for d in twin_boxes] != [d.score for d in float_boxes]  # the other file ran
    same = bench.ViewDetector("own+own@self:wbf", SHIPPED_DET, models={"self": SHIPPED_DET}).detect(img)
    assert len(same) == len(float_boxes)
    np.testing.assert_allclose(sorted(d.score for d in same), sorted(d.score for d in float_boxes), atol=1e-6)


def test_mirrored_view_finds_the_mirrored_frames_boxes_in_frame_pixels():
    """'ownf' on a frame = 'own' on the mirrored frame, mirrored back; with the shipped detector on a
    real road photo (skipped where ../shared is absent)."""
    det = bench.ViewDetector("own", SHIPPED_DET)
    flipped = bench.ViewDetector("ownf", SHIPPED_DET)
    img, own = _photo_with_a_car(det)
    w = img.shape[1]
    mirrored_own = np.array([d.box_xyxy for d in det.detect(np.ascontiguousarray(img[:, ::-1]))])
    via_view = np.array([d.box_xyxy for d in flipped.detect(img)])
    assert via_view.shape == mirrored_own.shape
    np.testing.assert_allclose(via_view, bench.mirror_boxes(mirrored_own, w), atol=1e-6)
    # and they lie on the frame's cars, not on their mirror images: the flipped view's best box is
    # one of the cars the frame's own view finds
    sure_own = np.array([d.box_xyxy for d in own if d.score > 0.3])
    best_flip = max(flipped.detect(img), key=lambda d: d.score).box_xyxy
    assert iou_matrix(best_flip[None], sure_own)[0].max() > 0.5
