"""Azimuth as a distribution over bins: circular soft labels for training, decoding for inference.

Why bins instead of regressing an angle: a car seen from the front and from the rear looks alike in
silhouette, so the network is often torn between two far-apart angles. A regressed angle would land
in between (wrong for both); a distribution keeps both modes, the arg-max picks one, and the spread
of the distribution tells how sure the network is. Decoding takes the circular mean of the
probabilities *around the arg-max only* (sub-bin precision without averaging the two modes), and the
confidence is the mean resultant length R of the whole distribution (1 = one sharp peak, near 0 =
spread out or split between opposite views).

Plain NumPy: the runtime decodes with it, the trainer builds its targets with it.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from carpose.convention import angular_difference, bin_centers, bin_width, wrap_deg

#: Default head: 72 bins of 5 deg, soft labels with a 7.5 deg wrapped Gaussian.
DEFAULT_BINS = 72
DEFAULT_SIGMA_DEG = 7.5
#: Bins either side of the arg-max that take part in the decoded mean (3 x 5 deg = +-15 deg).
DEFAULT_DECODE_HALF_WINDOW = 3


def soft_labels(azimuth_deg: ArrayLike, num_bins: int = DEFAULT_BINS,
                sigma_deg: float = DEFAULT_SIGMA_DEG) -> np.ndarray:
    """(N, K) float32 targets: a Gaussian in angular distance to each bin centre, summing to 1.

    The distance is taken the short way round, so 359 deg puts weight on bins 0 and 71 alike.
    ``sigma_deg = 0`` gives one-hot labels on the nearest bin.
    """
    az = np.atleast_1d(np.asarray(azimuth_deg, dtype=np.float64))
    if not np.all(np.isfinite(az)):
        raise ValueError("soft_labels: azimuths must be finite")
    centers = bin_centers(num_bins)
    if sigma_deg <= 0:
        out = np.zeros((az.size, num_bins), np.float32)
        idx = (np.floor(wrap_deg(az) / bin_width(num_bins) + 0.5).astype(np.int64)) % num_bins
        out[np.arange(az.size), idx] = 1.0
        return out
    d = np.asarray(angular_difference(az[:, None], centers[None, :]))
    w = np.exp(-0.5 * (d / sigma_deg) ** 2)
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def decode(probs: ArrayLike, half_window: int = DEFAULT_DECODE_HALF_WINDOW
           ) -> tuple[np.ndarray, np.ndarray]:
    """Bin probabilities (N, K) -> (azimuth_deg (N,) in [0, 360), confidence (N,) in [0, 1]).

    Azimuth: circular mean of the probabilities in the ``2*half_window+1`` bins around the arg-max.
    Confidence: mean resultant length of the full distribution.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"decode needs (N, K>=2) probabilities, got shape {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("decode: probabilities contain NaN or inf")
    n, k = p.shape
    centers = np.deg2rad(bin_centers(k))
    hw = max(0, min(int(half_window), (k - 1) // 2))
    top = np.argmax(p, axis=1)
    offsets = np.arange(-hw, hw + 1)
    idx = (top[:, None] + offsets[None, :]) % k
    w = np.take_along_axis(p, idx, axis=1)
    ang = centers[idx]
    s, c = (w * np.sin(ang)).sum(axis=1), (w * np.cos(ang)).sum(axis=1)
    # An all-zero window cannot happen after a softmax; fall back to the arg-max centre if it does.
    az = np.where(np.hypot(s, c) > 0, np.rad2deg(np.arctan2(s, c)), np.rad2deg(centers[top]))
    total = p.sum(axis=1)
    total = np.where(total > 0, total, 1.0)
    conf = np.hypot((p * np.sin(centers)).sum(axis=1), (p * np.cos(centers)).sum(axis=1)) / total
    return np.asarray(wrap_deg(az), dtype=np.float64).reshape(n), np.clip(conf, 0.0, 1.0)


def softmax(logits: ArrayLike) -> np.ndarray:
    """Numerically stable softmax over the last axis (backends that return logits use it)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
