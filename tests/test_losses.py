"""Losses: hand-computed values, properties and gradients, through `compute_loss` and the term functions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import make_tiny_model
from scipy import stats

from modeling_agqg.modeling_agqg import AGQGOutput, expected_grade, grade_to_score
from training.losses import (
    LOSS_NAMES,
    compute_loss,
    correlation_loss,
    fidelity_loss,
    grm_nll_loss,
    soft_grade_labels,
    soft_ranks,
)

RANGE = (1.0, 5.0)


def _output(scores: list[float], grade_probs: torch.Tensor | None = None) -> AGQGOutput:
    return AGQGOutput(score=torch.tensor(scores, dtype=torch.float32), grade_probs=grade_probs)


def test_l1_and_mse_are_in_units_of_the_score_range() -> None:
    output = _output([2.0, 4.0, 5.0])
    labels = torch.tensor([1.0, 5.0, 3.0])
    _, terms = compute_loss(output, labels, weights={"l1": 1.0, "mse": 1.0}, score_range=RANGE, num_grades=5)
    assert terms["l1"] == pytest.approx((1 + 1 + 2) / 3 / 4)
    assert terms["mse"] == pytest.approx((1 + 1 + 4) / 3 / 16)
    _, terms_100 = compute_loss(
        _output([25.0, 75.0, 100.0]),
        torch.tensor([0.0, 100.0, 50.0]),
        weights={"l1": 1.0, "mse": 1.0},
        score_range=(0.0, 100.0),
        num_grades=5,
    )
    assert terms_100["l1"] == pytest.approx(terms["l1"])
    assert terms_100["mse"] == pytest.approx(terms["mse"])


def test_total_is_the_weighted_sum() -> None:
    output = _output([2.0, 4.0, 3.5, 1.0])
    labels = torch.tensor([1.0, 5.0, 3.0, 2.0])
    weights = {"l1": 0.5, "mse": 2.0, "fidelity": 1.5, "correlation": 0.25}
    total, terms = compute_loss(output, labels, weights=weights, score_range=RANGE, num_grades=5)
    assert float(total) == pytest.approx(sum(weights[name] * terms[name] for name in weights))
    assert terms["loss"] == pytest.approx(float(total))


def test_fidelity_hand_computed_binary_and_thurstone_labels() -> None:
    scores = torch.tensor([3.0, 1.0])
    labels = torch.tensor([4.0, 2.0])
    predicted = stats.norm.cdf(2.0 / math.sqrt(2.0))  # tau = 1
    # Binary label p = 1: L = 1 - sqrt(p_hat).
    assert float(fidelity_loss(scores, labels, scale=1.0)) == pytest.approx(1 - math.sqrt(predicted), abs=1e-6)
    # Thurstone label from the rater spread: p = Phi(2 / sqrt(1^2 + 2^2)).
    target = stats.norm.cdf(2.0 / math.sqrt(5.0))
    expected = 1 - math.sqrt(target * predicted) - math.sqrt((1 - target) * (1 - predicted))
    value = fidelity_loss(scores, labels, mos_std=torch.tensor([1.0, 2.0]), scale=1.0)
    assert float(value) == pytest.approx(expected, abs=1e-6)
    # compute_loss uses tau = (hi - lo) / 4 = 1 on the 1-5 scale.
    _, terms = compute_loss(_output([3.0, 1.0]), labels, weights={"fidelity": 1}, score_range=RANGE, num_grades=5)
    assert terms["fidelity"] == pytest.approx(1 - math.sqrt(predicted), abs=1e-6)


def test_fidelity_properties() -> None:
    labels = torch.tensor([1.0, 2.0, 3.0, 4.0])
    ordered = fidelity_loss(torch.tensor([1.0, 2.0, 3.0, 4.0]), labels)
    wider = fidelity_loss(torch.tensor([0.0, 2.0, 4.0, 6.0]), labels)
    reversed_ = fidelity_loss(torch.tensor([4.0, 3.0, 2.0, 1.0]), labels)
    assert 0 <= float(wider) < float(ordered) < float(reversed_) <= 1
    # A tied pair's label is 1/2, and equal scores predict exactly 1/2: zero loss.
    assert float(fidelity_loss(torch.tensor([2.0, 2.0]), torch.tensor([3.0, 3.0]))) == pytest.approx(0.0, abs=1e-3)
    # Unknown (NaN) or zero spreads fall back to the binary label.
    binary = fidelity_loss(torch.tensor([3.0, 1.0]), torch.tensor([4.0, 2.0]))
    fallback = fidelity_loss(torch.tensor([3.0, 1.0]), torch.tensor([4.0, 2.0]), mos_std=torch.tensor([math.nan, 0.0]))
    assert float(fallback) == pytest.approx(float(binary))
    one = torch.tensor([2.0], requires_grad=True)
    assert fidelity_loss(one, torch.tensor([1.0])).item() == 0.0


def test_correlation_loss_values() -> None:
    labels = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    assert float(correlation_loss(2 * labels + 1, labels)) == pytest.approx(0.0, abs=1e-6)
    assert float(correlation_loss(-labels, labels)) == pytest.approx(1.0, abs=1e-6)
    monotone = labels.pow(3)
    plcc = stats.pearsonr(monotone.numpy(), labels.numpy())[0]
    assert float(correlation_loss(monotone, labels)) == pytest.approx((1 - plcc) / 2, abs=1e-6)
    assert float(correlation_loss(monotone, labels, kind="srcc", rank_temperature=1e-3)) == pytest.approx(0, abs=1e-4)
    both = correlation_loss(monotone, labels, kind="plcc+srcc", rank_temperature=1e-3)
    assert float(both) == pytest.approx((1 - plcc) / 4, abs=1e-4)
    with pytest.raises(ValueError, match="correlation kind"):
        correlation_loss(labels, labels, kind="kendall")


def test_soft_ranks_tend_to_scipy_ranks() -> None:
    values = torch.tensor([0.3, -1.0, 2.0, 0.3, 5.0])
    ranks = stats.rankdata(values.numpy())  # ties share the mean rank
    assert soft_ranks(values, 1e-4).numpy() == pytest.approx(ranks, abs=1e-4)
    smooth = soft_ranks(values, 1.0)
    assert np.all(np.diff(smooth.numpy()[np.argsort(values.numpy(), kind="stable")]) >= 0)


def test_soft_grade_labels_hand_computed() -> None:
    labels = torch.tensor([3.0, 1.0])
    targets = soft_grade_labels(labels, torch.tensor([0.5, 1.0]), score_range=RANGE, num_grades=5)
    phi = stats.norm.cdf
    # y = 3, sigma = 0.5: grade edges 1.5, 2.5, 3.5, 4.5 are at -3, -1, 1, 3 standard deviations.
    expected_first = [phi(-3), phi(-1) - phi(-3), phi(1) - phi(-1), phi(3) - phi(1), 1 - phi(3)]
    # y = 1, sigma = 1: edges at 0.5, 1.5, 2.5, 3.5 standard deviations.
    expected_second = [phi(0.5), phi(1.5) - phi(0.5), phi(2.5) - phi(1.5), phi(3.5) - phi(2.5), 1 - phi(3.5)]
    assert targets[0].numpy() == pytest.approx(expected_first, abs=1e-6)
    assert targets[1].numpy() == pytest.approx(expected_second, abs=1e-6)


def test_soft_grade_labels_properties() -> None:
    labels = torch.linspace(0.0, 100.0, 41)
    targets = soft_grade_labels(labels, None, score_range=(0.0, 100.0), num_grades=5)
    assert torch.all(targets >= 0)
    assert targets.sum(-1).numpy() == pytest.approx(np.ones(41), abs=1e-6)
    mean_grade = expected_grade(targets)
    assert torch.all(mean_grade.diff() > 0)  # the labels move up with the MOS
    # Interior MOS values are matched by the labels' mean on the score scale (symmetric intervals).
    assert float(grade_to_score(mean_grade[20], 5, (0.0, 100.0))) == pytest.approx(50.0, abs=1e-4)
    # Default sigma is half a grade step; NaN falls back to it; a tiny sigma is floored.
    half_step = soft_grade_labels(labels[:3], torch.full((3,), 12.5), score_range=(0.0, 100.0), num_grades=5)
    nan_std = soft_grade_labels(labels[:3], torch.full((3,), math.nan), score_range=(0.0, 100.0), num_grades=5)
    assert targets[:3].numpy() == pytest.approx(half_step.numpy(), abs=1e-6)
    assert nan_std.numpy() == pytest.approx(half_step.numpy(), abs=1e-6)
    tiny = soft_grade_labels(torch.tensor([50.0]), torch.tensor([1e-9]), score_range=(0.0, 100.0), num_grades=5)
    floor = soft_grade_labels(torch.tensor([50.0]), torch.tensor([2.5]), score_range=(0.0, 100.0), num_grades=5)
    assert tiny.numpy() == pytest.approx(floor.numpy())
    # A wider spread moves mass away from the nearest grade.
    narrow, wide = soft_grade_labels(
        torch.tensor([3.0, 3.0]), torch.tensor([0.3, 1.5]), score_range=RANGE, num_grades=5
    )
    assert float(narrow[2]) > float(wide[2])


def test_grm_nll_is_minimised_by_the_soft_labels() -> None:
    labels = torch.tensor([1.7, 3.2, 4.9])
    mos_std = torch.tensor([0.4, 0.8, 0.3])
    targets = soft_grade_labels(labels, mos_std, score_range=RANGE, num_grades=5)
    entropy = -torch.special.xlogy(targets, targets).sum(-1).mean()
    at_targets = grm_nll_loss(targets, labels, mos_std, score_range=RANGE, num_grades=5)
    assert float(at_targets) == pytest.approx(float(entropy), abs=1e-5)
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        other = torch.randn(3, 5, generator=generator).softmax(-1)
        assert float(grm_nll_loss(other, labels, mos_std, score_range=RANGE, num_grades=5)) > float(at_targets)
    # Gradient with respect to logits is (p - q) / B: zero at p = q.
    logits = targets.log().clone().requires_grad_(True)
    grm_nll_loss(logits.softmax(-1), labels, mos_std, score_range=RANGE, num_grades=5).backward()
    assert logits.grad.abs().max().item() < 1e-5


def test_grm_nll_hand_computed_and_finite_with_zero_probabilities() -> None:
    probs = torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0]], requires_grad=True)
    labels = torch.tensor([3.0])
    value = grm_nll_loss(probs, labels, torch.tensor([0.5]), score_range=RANGE, num_grades=5)
    phi = stats.norm.cdf
    mass_elsewhere = 1 - (phi(1) - phi(-1))
    assert value.item() == pytest.approx(mass_elsewhere * -math.log(1e-12), rel=1e-4)
    value.backward()
    assert torch.isfinite(probs.grad).all()
    with pytest.raises(ValueError, match="grade_probs has 5 grades but num_grades=3"):
        grm_nll_loss(probs, labels, score_range=RANGE, num_grades=3)


def test_gradcheck_of_pairwise_losses() -> None:
    generator = torch.Generator().manual_seed(1)
    scores = torch.randn(6, dtype=torch.float64, generator=generator).requires_grad_(True)
    labels = torch.randn(6, dtype=torch.float64, generator=generator)
    mos_std = torch.rand(6, dtype=torch.float64, generator=generator) + 0.1
    assert torch.autograd.gradcheck(lambda s: fidelity_loss(s, labels, mos_std=mos_std), (scores,))
    assert torch.autograd.gradcheck(lambda s: correlation_loss(s, labels), (scores,))
    assert torch.autograd.gradcheck(lambda s: correlation_loss(s, labels, kind="srcc", rank_temperature=0.5), (scores,))


@pytest.fixture(scope="module")
def tiny_models() -> dict:
    """One tiny model per grading, shared by the parametrised cases (each case clears the gradients)."""
    from modeling_agqg.tools.offline import clip_character_tokenizer

    tokenizer = clip_character_tokenizer()
    return {grading: make_tiny_model(tokenizer, grading=grading) for grading in ("agqg", "softmax")}


@pytest.mark.parametrize("grading", ["agqg", "softmax"])
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_every_loss_trains_a_tiny_model(tiny_models: dict, grading: str, name: str) -> None:
    model = tiny_models[grading]
    model.train()
    model.zero_grad(set_to_none=True)
    pixel_values = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([1.5, 4.0, 2.5, 3.0])
    output = model(pixel_values=pixel_values)
    total, terms = compute_loss(
        output,
        labels,
        mos_std=torch.tensor([0.5, math.nan, 0.7, 0.6]),
        weights={name: 1.0},
        score_range=tuple(model.config.score_range),
        num_grades=model.config.num_grades,
    )
    assert set(terms) == {name, "loss"} and math.isfinite(terms[name])
    total.backward()
    gradients = [p.grad for p in model.parameters() if p.grad is not None]
    assert gradients and all(torch.isfinite(g).all() for g in gradients)
    assert any(g.abs().sum() > 0 for g in gradients)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"huber": 1.0}, "unknown loss name"),
        ({"l1": -1.0}, "finite and >= 0"),
        ({"l1": 0.0}, "no loss has a positive weight"),
    ],
)
def test_bad_weights_raise(weights: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compute_loss(_output([1.0, 2.0]), torch.tensor([1.0, 2.0]), weights=weights, score_range=RANGE, num_grades=5)


def test_bad_labels_and_missing_grades_raise() -> None:
    with pytest.raises(ValueError, match="non-finite values at batch positions \\[1\\]"):
        compute_loss(
            _output([1.0, 2.0]), torch.tensor([1.0, math.nan]), weights={"l1": 1}, score_range=RANGE, num_grades=5
        )
    with pytest.raises(ValueError, match="needs output.grade_probs"):
        compute_loss(
            _output([1.0, 2.0]), torch.tensor([1.0, 2.0]), weights={"grm_nll": 1}, score_range=RANGE, num_grades=5
        )
    with pytest.raises(ValueError, match="labels have shape"):
        compute_loss(
            _output([1.0, 2.0]), torch.tensor([1.0, 2.0, 3.0]), weights={"l1": 1}, score_range=RANGE, num_grades=5
        )
