"""Evaluation metrics for quality scores: SRCC, KRCC, PLCC (raw and logistic-fitted) and RMSE.

The formulas live in the self-contained `evaluate` module `training/iqa_metrics/iqa_metrics.py`; this module
re-exports them and loads that module offline (the Hub's `spearmanr`/`pearsonr` metrics need the network).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.iqa_metrics.iqa_metrics import fit_logistic_4, iqa_correlations, logistic_4

METRIC_DIR = Path(__file__).resolve().parent / "iqa_metrics"
METRIC_KEYS = ("srcc", "krcc", "plcc", "plcc_logistic", "rmse", "rmse_logistic")

__all__ = ["METRIC_DIR", "METRIC_KEYS", "compute_metrics", "fit_logistic_4", "load_metric", "logistic_4"]


def compute_metrics(
    predictions: Sequence[float] | np.ndarray, references: Sequence[float] | np.ndarray
) -> dict[str, float]:
    """SRCC, KRCC, PLCC, PLCC after the 4-parameter logistic fit, RMSE and RMSE after the fit.

    Args:
        predictions: Predicted scores, shape (N,) (torch tensors and lists are accepted).
        references: MOS, shape (N,).

    Returns:
        A dict with the keys in `METRIC_KEYS`. Correlations are NaN when an input is constant.
    """
    return iqa_correlations(_as_numpy(predictions), _as_numpy(references))


def load_metric(**kwargs: Any) -> Any:
    """The shipped `iqa_metrics` evaluate module, loaded from this package's folder (works offline)."""
    import evaluate

    return evaluate.load(str(METRIC_DIR), **kwargs)


def _as_numpy(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # torch tensors, without importing torch here
        values = values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float64).reshape(-1)
