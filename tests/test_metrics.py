"""IQA metrics against scipy, the logistic fit, failure modes and the offline evaluate module."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from scipy import optimize, stats

from training.metrics import METRIC_KEYS, compute_metrics, load_metric, logistic_4


@pytest.mark.parametrize("seed", range(5))
def test_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    references = rng.uniform(1, 5, size=60)
    predictions = references + rng.normal(0, 0.8, size=60)
    result = compute_metrics(predictions, references)
    assert set(result) == set(METRIC_KEYS)
    assert result["srcc"] == pytest.approx(stats.spearmanr(predictions, references)[0], abs=1e-12)
    assert result["krcc"] == pytest.approx(stats.kendalltau(predictions, references)[0], abs=1e-12)
    assert result["plcc"] == pytest.approx(stats.pearsonr(predictions, references)[0], abs=1e-12)
    assert result["rmse"] == pytest.approx(np.sqrt(np.mean((predictions - references) ** 2)), abs=1e-12)


def test_ties_use_tau_b_and_average_ranks() -> None:
    predictions = [1.0, 1.0, 2.0, 3.0, 3.0, 4.0]
    references = [1.0, 2.0, 2.0, 3.0, 5.0, 5.0]
    result = compute_metrics(predictions, references)
    assert result["srcc"] == pytest.approx(stats.spearmanr(predictions, references)[0])
    assert result["krcc"] == pytest.approx(stats.kendalltau(predictions, references, variant="b")[0])


def test_logistic_fit_recovers_a_logistic_relation() -> None:
    x = np.linspace(-3, 3, 80)
    y = logistic_4(x, 4.5, 1.2, 0.3, 0.7)
    result = compute_metrics(x, y)
    assert result["srcc"] == pytest.approx(1.0)
    assert result["plcc"] < 0.98  # the raw relation is clearly non-linear
    assert result["plcc_logistic"] == pytest.approx(1.0, abs=1e-6)
    assert result["rmse_logistic"] == pytest.approx(0.0, abs=1e-4)


def test_logistic_fit_is_scale_invariant_and_handles_decreasing_predictions() -> None:
    rng = np.random.default_rng(1)
    references = rng.uniform(0, 100, size=100)
    predictions = np.tanh((references - 50) / 20) + rng.normal(0, 0.05, size=100)
    base = compute_metrics(predictions, references)
    scaled = compute_metrics(1000 * predictions + 7, references)
    flipped = compute_metrics(-predictions, references)
    assert scaled["plcc_logistic"] == pytest.approx(base["plcc_logistic"], abs=1e-6)
    # The fitted logistic may decrease, so a reversed predictor maps onto the MOS equally well.
    assert flipped["plcc_logistic"] == pytest.approx(base["plcc_logistic"], abs=1e-6)
    assert flipped["plcc"] == pytest.approx(-base["plcc"])
    assert base["plcc_logistic"] > base["plcc"]


def test_failed_fit_falls_back_to_linear(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def failing_fit(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Optimal parameters not found")

    monkeypatch.setattr(optimize, "curve_fit", failing_fit)
    predictions = np.array([1.0, 2.0, 4.0, 3.0, 6.0, 5.5, 7.0, 8.0, 7.5, 9.0, 10.0, 12.0])
    references = np.array([1.5, 2.0, 3.0, 3.5, 4.5, 4.0, 5.0, 5.5, 6.0, 6.5, 8.0, 7.0])
    with caplog.at_level(logging.WARNING):
        result = compute_metrics(predictions, references)
    assert "logistic fit failed" in caplog.text
    assert result["plcc_logistic"] == pytest.approx(result["plcc"])
    slope, intercept = np.polyfit(predictions, references, 1)
    expected = np.sqrt(np.mean((slope * predictions + intercept - references) ** 2))
    assert result["rmse_logistic"] == pytest.approx(expected)


def test_constant_predictions_give_nan_correlations() -> None:
    result = compute_metrics([2.0, 2.0, 2.0], [1.0, 2.0, 3.0])
    assert all(math.isnan(result[key]) for key in ("srcc", "krcc", "plcc", "plcc_logistic"))
    assert result["rmse"] == pytest.approx(np.sqrt(2 / 3))


@pytest.mark.parametrize(
    ("predictions", "references", "message"),
    [
        ([1.0, 2.0], [1.0, 2.0, 3.0], "predictions has 2 values but references has 3"),
        ([1.0], [1.0], "at least 2"),
        ([1.0, float("nan"), 2.0], [1.0, 2.0, 3.0], "predictions has 1 non-finite value.*index 1"),
        ([1.0, 2.0, 3.0], [1.0, 2.0, float("inf")], "references has 1 non-finite value.*index 2"),
    ],
)
def test_bad_inputs_raise(predictions: list[float], references: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compute_metrics(predictions, references)


def test_accepts_torch_tensors() -> None:
    predictions = torch.tensor([0.1, 0.4, 0.35, 0.8], requires_grad=True)
    references = torch.tensor([1.0, 2.0, 3.0, 4.0])
    result = compute_metrics(predictions, references)
    assert result == pytest.approx(compute_metrics(predictions.detach().numpy(), references.numpy()))


def test_evaluate_module_loads_offline_and_matches() -> None:
    metric = load_metric()
    rng = np.random.default_rng(3)
    references = rng.uniform(1, 5, size=40)
    predictions = references + rng.normal(0, 0.5, size=40)
    for start in range(0, 40, 16):  # the evaluation loop's add_batch path
        metric.add_batch(predictions=predictions[start : start + 16], references=references[start : start + 16])
    result = metric.compute()
    assert result == pytest.approx(compute_metrics(predictions, references))


def test_few_samples_use_the_linear_fit() -> None:
    # Six points with no rank correlation: a 4-parameter step could isolate the outlier; the linear fit cannot.
    predictions = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    references = [2.0, 1.0, 2.5, 0.5, 9.0, 0.0]
    result = compute_metrics(predictions, references)
    assert result["plcc_logistic"] == pytest.approx(result["plcc"])


def test_logistic_fit_with_fewer_points_than_parameters_falls_back() -> None:
    """scipy's curve_fit raises TypeError below 4 points; the fit must report failure, not crash."""
    from training.iqa_metrics.iqa_metrics import fit_logistic_4

    assert fit_logistic_4(np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0])) is None
