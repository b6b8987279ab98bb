"""How well the predicted spread of the grade distribution predicts rater disagreement.

AGQG's grade distribution P(grade = k) has a spread: `grade_std`, its standard deviation on the score scale
(sqrt(Var[grade]) * (max - min) / (K - 1)), and `grade_entropy` in nats (`AGQGOutput`, `modeling_agqg.grade_spread`).
Datasets with per-image rater standard deviations (`mos_std`: KonIQ-10k, SPAQ, KADID-10k, AGIQA-3K, the synthetic
set) say how much raters disagreed. `spread_disagreement` is the Spearman rank correlation between the two over the
images that have a `mos_std`: positive when the model is less certain where raters disagree more.

Evaluation calls `uncertainty_metrics(grade_std, grade_entropy, mos_std)` once per test split, with the model's
outputs and the dataset's `mos_std` column (NaN where a dataset gives none), and reports its values next to
SRCC/PLCC. Only numpy is needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["rankdata", "spearman", "spread_disagreement", "uncertainty_metrics"]

# Fewer images than this give no correlation (NaN).
MIN_IMAGES = 3


def rankdata(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank (scipy's `rankdata(method="average")`)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_values = values[order]
    start = 0
    while start < len(values):
        end = start + 1
        while end < len(values) and sorted_values[end] == sorted_values[start]:
            end += 1
        ranks[order[start:end]] = (start + end + 1) / 2.0  # mean of the 1-based ranks start+1 .. end
        start = end
    return ranks


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman's rank correlation: the Pearson correlation of the (average-tie) ranks. NaN when either side is
    constant or there are fewer than `MIN_IMAGES` pairs."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"spearman needs two 1-d arrays of equal length, got {x.shape} and {y.shape}")
    if len(x) < MIN_IMAGES:
        return math.nan
    rx, ry = rankdata(x) - (len(x) + 1) / 2, rankdata(y) - (len(y) + 1) / 2
    denominator = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return float(rx @ ry) / denominator if denominator > 0 else math.nan


def spread_disagreement(predicted_spread: Any, mos_std: Any) -> dict[str, float]:
    """Spearman correlation of a predicted spread (per image) with the raters' standard deviation.

    Args:
        predicted_spread: (N,) e.g. `grade_std` or `grade_entropy` (any array-like, torch tensors included).
        mos_std: (N,) rater standard deviations; NaN (or None) where unknown. Those images are left out, as are
            images with a NaN spread.

    Returns:
        `{"srcc": rho, "n": images used}`; rho is NaN with fewer than 3 images or a constant side.
    """
    spread = _as_array(predicted_spread)
    disagreement = _as_array(mos_std)
    if spread.shape != disagreement.shape:
        raise ValueError(f"{spread.shape[0]} predicted spreads for {disagreement.shape[0]} mos_std values")
    keep = np.isfinite(spread) & np.isfinite(disagreement)
    return {"srcc": spearman(spread[keep], disagreement[keep]), "n": int(keep.sum())}


def uncertainty_metrics(grade_std: Any, grade_entropy: Any, mos_std: Any) -> dict[str, float]:
    """The evaluation's uncertainty columns: `spread_srcc_std` (Spearman of `grade_std` with `mos_std`),
    `spread_srcc_entropy` (of `grade_entropy`), `spread_n` (images with a `mos_std`), `mean_grade_std` and
    `mean_mos_std` (over those images, on the score scale: how wide the model is compared with the raters)."""
    std = spread_disagreement(grade_std, mos_std)
    entropy = spread_disagreement(grade_entropy, mos_std)
    known = np.isfinite(_as_array(mos_std))
    return {
        "spread_srcc_std": std["srcc"],
        "spread_srcc_entropy": entropy["srcc"],
        "spread_n": std["n"],
        "mean_grade_std": float(np.mean(_as_array(grade_std)[known])) if known.any() else math.nan,
        "mean_mos_std": float(np.mean(_as_array(mos_std)[known])) if known.any() else math.nan,
    }


def _as_array(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().float().cpu().numpy()
    return np.asarray([math.nan if v is None else v for v in np.asarray(values, dtype=object).ravel()], np.float64)
