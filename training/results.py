# Copyright 2025 The agqg authors. Licensed under the Apache License, Version 2.0.
"""What an evaluation reports: metrics, per-image predictions (CSV), scatter plots and `eval_results.json`.

`eval_results.json` is `{"model_name", "base_model", "synthetic", "results": [{"dataset", "split", "num_images",
"metrics": {srcc, krcc, plcc, plcc_logistic, rmse}}]}`; the Hub card (`hub_cards`) reads it. A metric that cannot
be computed (constant predictions, fewer than `MIN_IMAGES_FOR_METRICS` images) is written as null.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

EVAL_RESULTS_FILE = "eval_results.json"
METRIC_NAMES = ("srcc", "krcc", "plcc", "plcc_logistic", "rmse")
MIN_IMAGES_FOR_METRICS = 5


@dataclass
class Predictions:
    """One evaluated split, in dataset order. N images, K grades.

    Attributes:
        scores: (N,) predicted scores on the MOS scale (the model's combination of each image's views).
        mos: (N,) the labels.
        grade_probs: (N, K) each image's grade distribution: that of its whole-image view where the view protocol
            has one (the last view; a mean over crops would mix their modes), else the combined one.
        names: (N,) the images' names (the dataset's `name` column, else the row numbers).
        grade_names: the K grade names.
        grade_std: (N,) the spread of each image's combined grade distribution on the score scale (the model's
            `grade_std`), or None.
        mos_std: (N,) the raters' standard deviation of each image (the dataset's `mos_std` column), or None.
    """

    scores: np.ndarray
    mos: np.ndarray
    grade_probs: np.ndarray
    names: list[str] = field(default_factory=list)
    grade_names: list[str] = field(default_factory=list)
    grade_std: np.ndarray | None = None
    mos_std: np.ndarray | None = None


def metrics_for(predictions: np.ndarray, references: np.ndarray) -> dict[str, float]:
    """The five reported metrics (SRCC, KRCC, PLCC, logistic PLCC, RMSE) as plain floats.

    With fewer than `MIN_IMAGES_FOR_METRICS` images (the logistic fit has 4 parameters; a correlation of 2 or
    3 points says nothing) every metric is NaN, with a warning, instead of a number that looks meaningful.
    """
    from training.metrics import compute_metrics

    if len(predictions) < MIN_IMAGES_FOR_METRICS:
        warnings.warn(
            f"only {len(predictions)} images to evaluate; metrics need at least {MIN_IMAGES_FOR_METRICS}: "
            "reporting NaN",
            stacklevel=2,
        )
        return dict.fromkeys(METRIC_NAMES, math.nan)
    computed = compute_metrics(predictions, references)
    return {name: float(computed[name]) for name in METRIC_NAMES}


SPREAD_METRIC = "spread_srcc"
"""Spearman correlation of the predicted spread (`grade_std`) with the raters' `mos_std`: how well the grade
distribution's width predicts rater disagreement (positive = wider where raters disagree more)."""


def spread_metrics(predictions: Predictions) -> dict[str, float]:
    """`{SPREAD_METRIC: Spearman(grade_std, mos_std)}` when both are known for at least `MIN_IMAGES_FOR_METRICS`
    images with some variation in each, else `{}` (a dataset without `mos_std` has no such metric)."""
    from scipy.stats import spearmanr

    if predictions.grade_std is None or predictions.mos_std is None:
        return {}
    spread, disagreement = np.asarray(predictions.grade_std, float), np.asarray(predictions.mos_std, float)
    known = np.isfinite(spread) & np.isfinite(disagreement)
    if known.sum() < MIN_IMAGES_FOR_METRICS or np.ptp(spread[known]) == 0 or np.ptp(disagreement[known]) == 0:
        return {}
    return {SPREAD_METRIC: float(spearmanr(spread[known], disagreement[known]).statistic)}


def format_metrics(metrics: dict[str, float]) -> str:
    """`SRCC 0.8123 KRCC ... RMSE ...` (and the spread SRCC when measured) for logs."""
    text = "  ".join(f"{name.upper()} {metrics[name]:.4f}" for name in METRIC_NAMES)
    if SPREAD_METRIC in metrics:
        text += f"  spread-vs-mos_std SRCC {metrics[SPREAD_METRIC]:+.4f}"
    return text


def save_scatter_plot(
    predictions: np.ndarray, references: np.ndarray, metrics: dict[str, float], path: str | Path, title: str
) -> Path:
    """PNG of predicted score (y) against MOS (x) with the identity line and the metrics in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axis = plt.subplots(figsize=(5, 5), dpi=100)
    axis.scatter(references, predictions, s=10, alpha=0.6, edgecolors="none")
    low = float(min(np.min(references), np.min(predictions)))
    high = float(max(np.max(references), np.max(predictions)))
    axis.plot([low, high], [low, high], color="grey", linewidth=1, linestyle="--", label="y = x")
    axis.set_xlabel("MOS")
    axis.set_ylabel("predicted score")
    axis.set_title(f"{title}\nSRCC {metrics['srcc']:.3f}  PLCC {metrics['plcc']:.3f}  RMSE {metrics['rmse']:.3f}")
    axis.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def write_predictions_csv(path: str | Path, predictions: Predictions) -> Path:
    """Per-image predictions: `name, mos, prediction, [grade_std,] [mos_std,] p_<grade> ...` (the grade
    distribution of `Predictions`; the spread columns where known)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = len(predictions.scores)
    names = predictions.names or [str(i) for i in range(count)]
    spreads = {
        column: values
        for column, values in (("grade_std", predictions.grade_std), ("mos_std", predictions.mos_std))
        if values is not None
    }
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        grade_columns = [f"p_{grade}" for grade in predictions.grade_names]
        writer.writerow(["name", "mos", "prediction", *spreads, *grade_columns])
        for index in range(count):
            writer.writerow([
                names[index],
                f"{predictions.mos[index]:.6g}",
                f"{predictions.scores[index]:.8g}",
                *(f"{values[index]:.8g}" for values in spreads.values()),
                *(f"{p:.6g}" for p in predictions.grade_probs[index]),
            ])  # fmt: skip
    return path


def eval_result_entry(dataset: str, split: str, num_images: int, metrics: dict[str, float]) -> dict[str, Any]:
    """One entry of `eval_results.json`'s `results`."""
    return {
        "dataset": dataset,
        "split": split,
        "num_images": int(num_images),
        "metrics": {name: float(metrics[name]) for name in (*METRIC_NAMES, SPREAD_METRIC) if name in metrics},
    }


def write_eval_results(
    path: str | Path, *, model_name: str, base_model: str | None, synthetic: bool, results: list[dict[str, Any]]
) -> Path:
    """Writes `eval_results.json` (format in the module docstring); NaN metrics become null."""
    payload = {
        "model_name": model_name,
        "base_model": base_model,
        "synthetic": bool(synthetic),
        "results": [
            {**entry, "metrics": {k: (None if _is_nan(v) else v) for k, v in entry["metrics"].items()}}
            for entry in results
        ],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)
