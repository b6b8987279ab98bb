"""The spread of the grade distribution (`grade_std`, `grade_entropy`) in the model, the pipeline and `score()`, and
the metric of how well it predicts rater disagreement (`modeling_agqg.tools.uncertainty`)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import BACKBONES, make_tiny_model

from modeling_agqg.modeling_agqg import expected_grade, grade_spread
from modeling_agqg.tools.uncertainty import rankdata, spearman, spread_disagreement, uncertainty_metrics


def test_grade_spread_formulas() -> None:
    probs = torch.tensor([[0.1, 0.2, 0.4, 0.2, 0.1], [0.0, 0.0, 1.0, 0.0, 0.0], [0.2] * 5, [0.5, 0, 0, 0, 0.5]])
    std, entropy = grade_spread(probs, (0.0, 100.0))
    grades = torch.arange(1.0, 6.0)
    mean = expected_grade(probs)
    variance = (probs * grades**2).sum(-1) - mean**2
    assert torch.allclose(std, variance.clamp_min(0).sqrt() * 25.0, atol=1e-4)
    assert std[1] < 1e-15 and entropy[1] == 0.0  # a point mass
    assert std[2] == pytest.approx(math.sqrt((25 - 1) / 12) * 25.0, rel=1e-6)  # uniform: sqrt((K^2-1)/12) grades
    assert entropy[2] == pytest.approx(math.log(5), rel=1e-6)
    assert std[3] == pytest.approx(2.0 * 25.0) and entropy[3] == pytest.approx(math.log(2))
    # Differentiable everywhere, the point mass included.
    logits = torch.tensor([[0.0, 0.0, 60.0, 0.0, 0.0], [0.3, -0.2, 0.1, 0.0, 0.5]], requires_grad=True)
    std, entropy = grade_spread(logits.softmax(-1), (1.0, 5.0))
    (std.sum() + entropy.sum()).backward()
    assert bool(torch.isfinite(logits.grad).all())


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("grading", ["agqg", "softmax"])
@pytest.mark.parametrize("views", ["resize", "crops:3", "ipce:3"])
def test_model_reports_the_spread_of_the_combined_distribution(tokenizer, backbone: str, grading: str, views: str):
    model = make_tiny_model(tokenizer, backbone=backbone, grading=grading, score_range=(0.0, 10.0))
    num_views = model.view_protocol(views).num_views()
    aggregation = model.view_protocol(views).aggregation
    with torch.no_grad():
        output = model(torch.randn(2 * num_views, 3, 32, 32), num_views=num_views, view_aggregation=aggregation)
    std, entropy = grade_spread(output.grade_probs, (0.0, 10.0))
    assert output.grade_std.shape == output.grade_entropy.shape == (2,)
    assert torch.allclose(output.grade_std, std) and torch.allclose(output.grade_entropy, entropy)
    assert bool((output.grade_entropy <= math.log(5) + 1e-6).all())
    tuple_output = model(torch.randn(num_views, 3, 32, 32), num_views=num_views, return_dict=False)
    assert tuple_output[-2].shape == (1,)  # grade_std, grade_entropy come last in the tuple


def test_pipeline_and_score_report_the_spread(tiny_model, tmp_path) -> None:
    from PIL import Image
    from transformers import pipeline

    from modeling_agqg import score

    paths = []
    for index in range(2):
        path = tmp_path / f"{index}.png"
        Image.fromarray((np.random.default_rng(index).random((40, 36, 3)) * 255).astype(np.uint8)).save(path)
        paths.append(str(path))
    scorer = pipeline("image-quality", model=tiny_model, trust_remote_code=True)
    results = scorer(paths)
    rows = score(paths, model=tiny_model, batch_size=2, dtype="fp32")
    for path, result, row in zip(paths, results, rows, strict=True):
        assert row["path"] == path
        assert result["grade_std"] == pytest.approx(row["grade_std"], abs=1e-5)
        assert result["grade_entropy"] == pytest.approx(row["grade_entropy"], abs=1e-5)
        probs = torch.tensor([list(result["grade_probs"].values())])
        std, entropy = grade_spread(probs, tiny_model.config.score_range)
        assert result["grade_std"] == pytest.approx(float(std), abs=1e-5)
        assert result["grade_entropy"] == pytest.approx(float(entropy), abs=1e-5)


def test_scorer_computes_the_spread_for_models_whose_code_does_not(tiny_model) -> None:
    """`agqg score` on a folder saved before the spread existed runs that folder's own (older) forward."""
    from modeling_agqg.tools.scoring import Scorer

    protocol = tiny_model.view_protocol()
    scorer = Scorer(tiny_model, torch.device("cpu"), torch.float32, protocol)
    pixels = torch.randn(3, 3, 32, 32)
    expected = scorer(pixels)
    forward = tiny_model.forward

    def old_forward(*args, **kwargs):
        output = forward(*args, **kwargs)
        output.grade_std = output.grade_entropy = None
        return output

    tiny_model.forward = old_forward
    fallback = scorer(pixels)
    for name in ("score", "grade_probs", "ability", "grade_std", "grade_entropy"):
        assert torch.allclose(fallback[name], expected[name], atol=1e-6), name
    rows = scorer.rows(["a", "b", "c"], fallback)
    assert list(rows[0])[-3:] == ["ability", "grade_std", "grade_entropy"]


def test_spearman_matches_scipy_with_ties() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.integers(0, 6, 40).astype(float)
        y = rng.normal(size=40).round(1)
        assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
        assert np.array_equal(rankdata(x), stats.rankdata(x))
    assert math.isnan(spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])) and math.isnan(spearman([1.0, 2.0], [2.0, 1.0]))


def test_spread_disagreement_drops_unknown_mos_std_and_keeps_the_sign() -> None:
    disagreement = [0.1, 0.5, None, 0.9, float("nan"), 0.3]
    result = spread_disagreement(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 1.5]), disagreement)
    assert result == {"srcc": pytest.approx(1.0), "n": 4}
    assert spread_disagreement([4.0, 3.0, 2.0, 1.0], [0.1, 0.2, 0.3, 0.4])["srcc"] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="mos_std"):
        spread_disagreement([1.0, 2.0], [1.0])
    metrics = uncertainty_metrics([0.2, 0.4, 0.6, 9.0], [1.0, 1.1, 1.2, 0.0], [0.1, 0.2, 0.3, None])
    assert metrics["spread_srcc_std"] == pytest.approx(1.0) and metrics["spread_srcc_entropy"] == pytest.approx(1.0)
    assert metrics["spread_n"] == 3 and metrics["mean_grade_std"] == pytest.approx(0.4)
    assert metrics["mean_mos_std"] == pytest.approx(0.2)
