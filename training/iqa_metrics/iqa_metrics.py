"""IQA correlation metrics (SRCC, KRCC, PLCC, PLCC after a 4-parameter logistic fit, RMSE) as an `evaluate` module.

Load it offline with `evaluate.load("<path to this folder>")` or `training.metrics.load_metric()`.
The file is self-contained (numpy, scipy, datasets, evaluate) so the folder can be copied anywhere,
including to a Hub Space.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence

import datasets
import evaluate
import numpy as np
from scipy import optimize, stats

logger = logging.getLogger(__name__)

_DESCRIPTION = """\
Correlation between predicted quality scores and mean opinion scores (MOS), as used in image quality
assessment (IQA): Spearman rank-order (SRCC), Kendall rank-order (KRCC, tau-b), Pearson linear (PLCC) on the
raw predictions and after the standard VQEG 4-parameter logistic mapping, and root mean squared error (RMSE),
raw and after the logistic mapping.
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions: predicted scores, list of floats.
    references: mean opinion scores, list of floats (same length, at least 2).
Returns:
    srcc, krcc, plcc, plcc_logistic, rmse, rmse_logistic (floats). A correlation is NaN when one of the two
    inputs is constant (it is undefined there).
Examples:
    >>> metric = evaluate.load("training/iqa_metrics")
    >>> metric.compute(predictions=[1.0, 2.0, 3.5], references=[1.2, 2.0, 3.0])["srcc"]
    1.0
"""

_CITATION = """\
@techreport{vqeg2003,
  title = {Final Report from the Video Quality Experts Group on the Validation of Objective Models of Video
           Quality Assessment, Phase II},
  author = {{Video Quality Experts Group}},
  year = {2003}
}
"""


# Four parameters fitted to a handful of points can isolate single outliers with a step and report a high
# PLCC for a predictor with no rank correlation at all; below this many samples the linear fit is used.
MIN_SAMPLES_FOR_LOGISTIC = 10


def logistic_4(x: np.ndarray, beta1: float, beta2: float, beta3: float, beta4: float) -> np.ndarray:
    r"""VQEG 4-parameter logistic: f(x) = (beta1 - beta2) / (1 + exp(-(x - beta3) / |beta4|)) + beta2.

    beta1 and beta2 are the upper and lower asymptotes, beta3 the midpoint, |beta4| the slope's scale;
    f is monotone (increasing when beta1 > beta2).
    """
    z = np.clip(-(x - beta3) / (abs(beta4) + 1e-12), -500.0, 500.0)
    return (beta1 - beta2) / (1.0 + np.exp(z)) + beta2


def fit_logistic_4(predictions: np.ndarray, references: np.ndarray) -> np.ndarray | None:
    """Least-squares fit of `logistic_4` mapping predictions onto references.

    Returns the mapped predictions, shape (N,), or `None` when there are fewer than
    `MIN_SAMPLES_FOR_LOGISTIC` samples, or the fit does not converge or gives non-finite values (the caller
    then falls back to a linear fit).
    """
    x = np.asarray(predictions, dtype=np.float64)
    y = np.asarray(references, dtype=np.float64)
    x_std = x.std()
    if x_std == 0 or y.std() == 0:
        return None
    if x.size < MIN_SAMPLES_FOR_LOGISTIC:
        logger.info("only %d samples: 4-parameter logistic fit skipped, linear fit used", x.size)
        return None
    # Standardising x makes the initial guess (midpoint 0, scale ~1) well conditioned whatever the scale.
    x_z = (x - x.mean()) / x_std
    sign = 1.0 if np.corrcoef(x_z, y)[0, 1] >= 0 else -1.0
    high, low = (y.max(), y.min()) if sign > 0 else (y.min(), y.max())
    initial = [high, low, 0.0, 1.0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params, _ = optimize.curve_fit(logistic_4, x_z, y, p0=initial, maxfev=20000)
    except (RuntimeError, ValueError, TypeError, optimize.OptimizeWarning) as error:  # TypeError: < 4 points
        logger.warning("4-parameter logistic fit failed (%s); falling back to a linear fit", error)
        return None
    mapped = logistic_4(x_z, *params)
    if not np.all(np.isfinite(mapped)):
        logger.warning("4-parameter logistic fit gave non-finite values; falling back to a linear fit")
        return None
    return mapped


def _linear_fit(predictions: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Least-squares line y = a x + b through the points; constant predictions map to mean(y)."""
    if predictions.std() == 0:
        return np.full_like(references, references.mean())
    slope, intercept = np.polyfit(predictions, references, 1)
    return slope * predictions + intercept


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if x.std() == 0 or y.std() == 0:
        return math.nan
    return float(stats.pearsonr(x, y)[0])


def _rank_correlations(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    if x.std() == 0 or y.std() == 0:
        return math.nan, math.nan
    return float(stats.spearmanr(x, y)[0]), float(stats.kendalltau(x, y)[0])


def iqa_correlations(predictions: Sequence[float] | np.ndarray, references: Sequence[float] | np.ndarray) -> dict:
    """All IQA metrics of one set of predictions against the MOS.

    SRCC, KRCC (tau-b) and PLCC are the usual sample statistics. `plcc_logistic` and `rmse_logistic` are
    computed after mapping the predictions through the fitted 4-parameter logistic (`logistic_4`); when the
    fit fails they use the least-squares line instead (PLCC is invariant to it, so `plcc_logistic == plcc`).
    The fitted mapping may be decreasing, so `plcc_logistic` is normally >= 0 even for a reversed predictor
    (as in the VQEG protocol); the sign of `srcc`/`plcc` tells the direction.
    `rmse` is the raw root mean squared error, meaningful when predictions are on the MOS scale.

    Raises:
        ValueError: lengths differ, fewer than 2 pairs, or a non-finite value (the message names its index).
    """
    x = np.asarray(predictions, dtype=np.float64).reshape(-1)
    y = np.asarray(references, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"predictions has {x.size} values but references has {y.size}")
    if x.size < 2:
        raise ValueError(f"need at least 2 prediction/reference pairs, got {x.size}")
    for name, values in (("predictions", x), ("references", y)):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise ValueError(f"{name} has {bad.size} non-finite value(s), first at index {bad[0]}: {values[bad[0]]}")
    srcc, krcc = _rank_correlations(x, y)
    mapped = fit_logistic_4(x, y)
    if mapped is None:
        mapped = _linear_fit(x, y)
    return {
        "srcc": srcc,
        "krcc": krcc,
        "plcc": _pearson(x, y),
        "plcc_logistic": _pearson(mapped, y),
        "rmse": float(np.sqrt(np.mean((x - y) ** 2))),
        "rmse_logistic": float(np.sqrt(np.mean((mapped - y) ** 2))),
    }


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class IqaMetrics(evaluate.Metric):
    """`evaluate` wrapper of `iqa_correlations`."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
            reference_urls=["https://www.its.bldrdoc.gov/vqeg/projects/frtv-phase-ii.aspx"],
        )

    def _compute(self, predictions: list[float], references: list[float]) -> dict:
        return iqa_correlations(predictions, references)
