"""Weighted box fusion: one set of boxes from several detectors' boxes for the same image.

Why: a teacher made of several detectors labels real photos better than any one of them (issue 22:
on KITTI the a45a3c5 detector and the round-1 student fused reach precision 0.81 at recall 0.47
where the better of the two alone has 0.79 at 0.40), because a car two detectors agree on is surer
than a car one of them boxes. Non-maximum suppression would keep one detector's box and its
score; fusion averages the boxes (weighted by score) and scores a cluster by how many detectors
found it: a box only one of N detectors saw gets at most 1/N.

Written here rather than taken from ``ensemble-boxes`` (Solovyev et al.'s reference code): that
package pulls numba and pandas into the training environment for about forty lines of numpy.
"""

from __future__ import annotations

import numpy as np

from carpose.track import iou_matrix


def fuse_boxes(per_model: list[tuple[np.ndarray, np.ndarray]], iou: float = 0.55) -> tuple[np.ndarray, np.ndarray]:
    """Fuse ``[(xyxy (N_i, 4), scores (N_i,)), ...]``, one entry per detector, into (M, 4) boxes and
    (M,) scores, best first.

    Boxes are taken in falling score; each joins the cluster whose fused box it overlaps most, by
    more than ``iou``, among those holding no box of its own detector (each detector ran its own
    NMS: two of its boxes are two cars), the cluster's box becoming the score-weighted mean of its
    members, or starts one. A cluster's score is the sum over detectors of each detector's best score in it, divided
    by the number of detectors (a detector that missed the car adds 0)."""
    n_models = len(per_model)
    if n_models == 0:
        raise ValueError("fuse_boxes needs at least one detector's boxes")
    entries = [(float(s), np.asarray(b, np.float64), m)
               for m, (xyxy, scores) in enumerate(per_model)
               for b, s in zip(np.asarray(xyxy, np.float64).reshape(-1, 4), np.asarray(scores).reshape(-1),
                               strict=True)]
    entries.sort(key=lambda e: -e[0])
    fused: list[np.ndarray] = []
    weight: list[float] = []  # the sum of member scores: the weights of the running mean
    best: list[dict[int, float]] = []  # per cluster: detector -> its best score there
    for score, box, model in entries:
        if fused:
            overlap = iou_matrix(box[None], np.stack(fused))[0]
            overlap[[model in b for b in best]] = -1.0  # a detector's own boxes are already suppressed (NMS)
            j = int(np.argmax(overlap))
            if overlap[j] > iou:
                fused[j] = (fused[j] * weight[j] + box * score) / max(weight[j] + score, 1e-12)
                weight[j] += score
                best[j][model] = max(best[j].get(model, 0.0), score)
                continue
        fused.append(box.copy())
        weight.append(score)
        best.append({model: score})
    if not fused:
        return np.zeros((0, 4)), np.zeros(0)
    scores = np.array([sum(b.values()) / n_models for b in best])
    order = np.argsort(-scores, kind="stable")
    return np.stack(fused)[order], scores[order]
