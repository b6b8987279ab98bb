"""Properties of the graded-response maths and of the AGQG head built on it."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modeling_agqg import (
    AGQGConfig,
    AGQGHead,
    expected_grade,
    grade_to_score,
    grm_grade_probs,
    min_scaled_gap_for_unimodality,
)


def valley_depth(probs: torch.Tensor) -> torch.Tensor:
    """How far the deepest interior grade lies below both a higher grade on its left and one on its
    right (0 for a unimodal distribution). probs (B, K) -> (B,)."""
    if probs.shape[-1] < 3:
        return torch.zeros(probs.shape[0], dtype=probs.dtype)
    prefix_max = torch.cummax(probs, dim=-1).values
    suffix_max = torch.flip(torch.cummax(torch.flip(probs, [-1]), dim=-1).values, [-1])
    walls = torch.minimum(prefix_max[:, :-2], suffix_max[:, 2:])
    return (walls - probs[:, 1:-1]).clamp(min=0).amax(-1)


def arithmetic_grm(ability: torch.Tensor, first: float, spacing: float, a: float, num_grades: int) -> torch.Tensor:
    difficulties = first + spacing * torch.arange(num_grades - 1, dtype=torch.float64)
    return grm_grade_probs(ability.double(), difficulties.double(), torch.tensor(a, dtype=torch.float64))


def test_issue_example_is_bimodal_without_the_bound() -> None:
    probs = grm_grade_probs(torch.zeros(1), torch.tensor([-0.15, -0.05, 0.05, 0.15]), torch.tensor(1.0))
    assert torch.allclose(probs[0], torch.tensor([0.4625, 0.025, 0.025, 0.025, 0.4625]), atol=2e-3)
    assert valley_depth(probs) > 0.4


@pytest.mark.parametrize("num_grades", [2, 3, 4, 5, 7, 10])
def test_bound_is_sufficient_and_tight(num_grades: int) -> None:
    """At s = s_min no theta produces a valley; 2% below it some theta does (the bound is the smallest)."""
    bound = min_scaled_gap_for_unimodality(num_grades)
    theta = torch.linspace(-60.0, 60.0, 200_001, dtype=torch.float64)
    at_bound = arithmetic_grm(theta, first=0.0, spacing=bound, a=1.0, num_grades=num_grades)
    assert valley_depth(at_bound).max() < 1e-12
    if num_grades > 2:
        below = arithmetic_grm(theta, first=0.0, spacing=0.98 * bound, a=1.0, num_grades=num_grades)
        assert valley_depth(below).max() > 1e-5


def test_bound_values() -> None:
    assert min_scaled_gap_for_unimodality(2) == 0.0
    assert min_scaled_gap_for_unimodality(3) == pytest.approx(math.log(4))
    for k in (4, 5, 12):
        assert min_scaled_gap_for_unimodality(k) == pytest.approx(math.log(3))
    with pytest.raises(ValueError):
        min_scaled_gap_for_unimodality(1)


def _random_head(num_grades: int, seed: int, embed_dim: int = 8) -> tuple[AGQGHead, torch.Tensor]:
    """A head with random (not initial) parameters and random unit text embeddings."""
    names = [f"g{k}" for k in range(num_grades)]
    config = AGQGConfig(
        clip_config={"projection_dim": embed_dim}, grade_names=names, ability_hidden_size=8, difficulty_hidden_size=8
    )
    head = AGQGHead(config, embed_dim).double()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in head.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.float64) * 3)
    text = torch.nn.functional.normalize(
        torch.randn(num_grades, embed_dim, generator=generator, dtype=torch.float64), dim=-1
    )
    return head, text


def _head_distribution(head: AGQGHead, text: torch.Tensor, theta: torch.Tensor) -> dict[str, torch.Tensor]:
    """Runs the head's difficulty branch and GRM with a given ability (bypassing the ability branch)."""
    image = torch.nn.functional.normalize(torch.ones(1, text.shape[-1], dtype=torch.float64), dim=-1)
    out = head(image, text, image @ text.t(), torch.tensor(100.0, dtype=torch.float64))
    return {
        "difficulties": out["difficulties"],
        "discrimination": out["discrimination"],
        "grade_probs": grm_grade_probs(theta, out["difficulties"], out["discrimination"]),
    }


@settings(max_examples=60, deadline=None)
@given(num_grades=st.integers(2, 9), seed=st.integers(0, 10_000))
def test_head_distribution_properties_for_random_parameters(num_grades: int, seed: int) -> None:
    head, text = _random_head(num_grades, seed)
    theta = torch.linspace(-50.0, 50.0, 2001, dtype=torch.float64)
    out = _head_distribution(head, text, theta)
    difficulties, probs = out["difficulties"], out["grade_probs"]
    assert difficulties.shape == (num_grades - 1,)
    gaps = difficulties.diff()
    assert (gaps > 0).all(), "thresholds must increase strictly"
    assert torch.allclose(gaps, gaps[:1].expand_as(gaps)), "thresholds must be arithmetic"
    assert out["discrimination"] > 0
    assert (probs >= 0).all()
    assert torch.allclose(probs.sum(-1), torch.ones(len(theta), dtype=torch.float64), atol=1e-12)
    assert valley_depth(probs).max() < 1e-9, "grade distribution must be unimodal for every ability"
    score = grade_to_score(expected_grade(probs), num_grades, (0.0, 4.5))
    assert (score >= 0.0).all() and (score <= 4.5).all()
    assert (score.diff() >= -1e-12).all(), "score must be non-decreasing in the ability"


def test_expected_grade_equals_one_plus_cumulative_sum() -> None:
    theta = torch.linspace(-4, 4, 17)
    difficulties = torch.tensor([-1.5, -0.5, 0.5, 1.5])
    probs = grm_grade_probs(theta, difficulties, torch.tensor(2.0))
    cumulative = torch.sigmoid(2.0 * (theta[:, None] - difficulties))
    assert torch.allclose(expected_grade(probs), 1 + cumulative.sum(-1), atol=1e-6)


def test_grade_to_score_maps_ends_of_the_grade_scale() -> None:
    grades = torch.tensor([1.0, 3.0, 5.0])
    assert torch.allclose(grade_to_score(grades, 5, (0.0, 4.0)), torch.tensor([0.0, 2.0, 4.0]))


def test_per_sample_difficulties() -> None:
    difficulties = torch.tensor([[-1.0, 0.0, 1.0], [0.0, 1.0, 2.0]])
    probs = grm_grade_probs(torch.zeros(2), difficulties, torch.tensor([3.0, 3.0]))
    assert probs.shape == (2, 4)
    assert expected_grade(probs)[0] > expected_grade(probs)[1], "harder thresholds give lower grades"


def test_gradients_reach_both_branches(tiny_model) -> None:
    tiny_model.train()
    out = tiny_model(torch.randn(4, 3, 32, 32), labels=torch.tensor([1.0, 2.0, 4.0, 5.0]))
    out.loss.backward()
    head = tiny_model.head
    for name, parameter in head.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert tiny_model.clip.visual_projection.weight.grad.abs().sum() > 0
    assert tiny_model.clip.text_projection.weight.grad.abs().sum() > 0, (
        "text tower trains through the difficulty branch"
    )


def test_fresh_head_grades_like_the_softmax_baseline(tokenizer) -> None:
    """The ability prior makes an untrained AGQG head agree with the softmax aggregation it plugs into."""
    from conftest import make_tiny_model

    agqg = make_tiny_model(tokenizer, head_init_std=0.0)
    softmax = make_tiny_model(tokenizer, grading="softmax")
    pixels = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        a, s = agqg(pixels), softmax(pixels)
    assert torch.allclose(a.similarities, s.similarities)
    assert torch.allclose(a.score, s.score, atol=0.1)


def test_softmax_grading_reproduces_hand_computed_example(tokenizer) -> None:
    from conftest import make_tiny_model

    model = make_tiny_model(tokenizer, grading="softmax", score_range=(0.0, 4.0))
    similarities = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.2])
    generator = torch.Generator().manual_seed(1)
    direction = torch.nn.functional.normalize(torch.randn(32, generator=generator), dim=0)
    others = torch.randn(5, 32, generator=generator)
    others = torch.nn.functional.normalize(others - (others @ direction)[:, None] * direction, dim=-1)
    # Unit text embeddings whose cosine with `direction` is exactly `similarities`.
    text = similarities[:, None] * direction + (1 - similarities[:, None] ** 2).sqrt() * others
    with torch.no_grad():
        model.clip.logit_scale.fill_(math.log(10.0))
        model.grade_text_embeds.copy_(text)
        model.get_image_embeds = lambda pixel_values: direction.expand(pixel_values.shape[0], -1)
        out = model(torch.zeros(1, 3, 32, 32))
    # By hand: logits 10*s = [1, 2, 3, 4, 2]; p = e^l / sum e^l; E[grade] = sum k p_k = 3.613480; score on [0, 4].
    assert out.similarities[0].tolist() == pytest.approx(similarities.tolist(), abs=1e-5)
    assert out.grade_probs[0].tolist() == pytest.approx([0.029489, 0.080159, 0.217895, 0.592299, 0.080159], abs=1e-5)
    assert out.score.item() == pytest.approx(2.613480, abs=1e-5)
    assert out.ability.item() == pytest.approx(3.613480 - 3.0, abs=1e-5)
    assert out.difficulties is None and out.discrimination is None
