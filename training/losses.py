r"""Training losses for quality scores, selectable and combinable with weights.

`compute_loss(output, labels, weights={"l1": 1.0, "fidelity": 0.5, ...}, score_range=..., num_grades=...)`
returns the weighted sum and the value of every term. Notation: a batch of B images with predicted scores
s_i (`output.score`, on the MOS scale), MOS y_i, rater standard deviations sigma_i (`mos_std`, on the MOS
scale) and predicted grade probabilities p_ik (`output.grade_probs`, K grades). [lo, hi] is `score_range`.

* ``l1``  : mean_i |s_i - y_i| / (hi - lo)
* ``mse`` : mean_i ((s_i - y_i) / (hi - lo))^2

  Both are measured in units of the score range, so the same weights work on a 0-1, 1-5 or 0-100 scale.

* ``fidelity`` (pairwise Thurstone fidelity loss of LIQE / UNIQUE): for every pair i < j,

      p_hat_ij = Phi((s_i - s_j) / (sqrt(2) tau)),     tau = `fidelity_scale` (default (hi - lo) / 4),
      p_ij     = Phi((y_i - y_j) / sqrt(sigma_i^2 + sigma_j^2))    with standard deviations, else
      p_ij     = 1[y_i > y_j] + 0.5 * 1[y_i = y_j]                  (LIQE's binary label),
      L_ij     = 1 - sqrt(p_ij p_hat_ij) - sqrt((1 - p_ij)(1 - p_hat_ij)),

  averaged over the B(B-1)/2 pairs. Phi is the standard normal CDF. With tau = 1 on a 1-5 scale this is
  Thurstone's Case V model with unit-variance scores, as in LIQE. L_ij is in [0, 1] and 0 iff p_hat = p.

* ``correlation``: (1 - rho) / 2 with rho the Pearson correlation of (s, y) (``correlation_kind="plcc"``),
  of soft ranks of s with the ranks of y (``"srcc"``), or the mean of both (``"plcc+srcc"``). Soft ranks are
  r_i = 1/2 + sum_j sigmoid((s_i - s_j) / t) with temperature t = `rank_temperature` * (hi - lo); they tend
  to the ordinary ranks as t -> 0. The loss is in [0, 1] and 0 when the relation is perfectly linear
  (respectively monotone).

* ``grm_nll``: cross-entropy of the predicted grades against soft grade labels,

      L_i = -sum_k q_ik log p_ik,    q_ik = P(c_{k-1/2} < Y <= c_{k+1/2}),  Y ~ Normal(y_i, sigma_i^2),

  where c_k = lo + (k-1)(hi-lo)/(K-1) is grade k's point on the score scale and the interval edges are the
  midpoints between neighbouring grades (the outer edges are -inf and +inf), so q_i sums to 1. It is the
  expected negative log-likelihood of one rater's grade under the model's Graded Response Model; its
  minimum over p is at p = q (where it equals the entropy of q). sigma_i falls back to `default_mos_std`
  (default: half a grade step, (hi-lo)/(2(K-1))) where `mos_std` is missing or NaN, and is floored at
  `min_mos_std` (default a tenth of a grade step) so the labels never collapse to a hard one-hot.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

LOSS_NAMES = ("l1", "mse", "fidelity", "correlation", "grm_nll")
CORRELATION_KINDS = ("plcc", "srcc", "plcc+srcc")
_EPS = 1e-8

__all__ = [
    "CORRELATION_KINDS",
    "LOSS_NAMES",
    "compute_loss",
    "correlation_loss",
    "fidelity_loss",
    "grm_nll_loss",
    "l1_loss",
    "mse_loss",
    "soft_grade_labels",
    "soft_ranks",
]


def _range_width(score_range: tuple[float, float] | list[float]) -> float:
    low, high = (float(v) for v in score_range)
    if not high > low:
        raise ValueError(f"score_range={tuple(score_range)} must be (min, max) with min < max")
    return high - low


def _normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def l1_loss(scores: torch.Tensor, labels: torch.Tensor, score_range: tuple[float, float]) -> torch.Tensor:
    """mean |s - y| / (hi - lo). scores, labels: (B,). Returns a scalar."""
    return (scores - labels).abs().mean() / _range_width(score_range)


def mse_loss(scores: torch.Tensor, labels: torch.Tensor, score_range: tuple[float, float]) -> torch.Tensor:
    """mean ((s - y) / (hi - lo))^2. scores, labels: (B,). Returns a scalar."""
    return ((scores - labels) / _range_width(score_range)).pow(2).mean()


def fidelity_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    mos_std: torch.Tensor | None = None,
    scale: float = 1.0,
) -> torch.Tensor:
    """Pairwise Thurstone fidelity loss (formula in the module docstring), averaged over pairs i < j.

    Args:
        scores: s, (B,). labels: y, (B,). mos_std: sigma, (B,) or None (binary pair labels then).
            Pairs whose sigma_i^2 + sigma_j^2 is 0 or NaN use the binary label.
        scale: tau, the score difference that counts as one unit of Thurstone's unit-variance scale.

    Returns:
        A scalar; 0 (with a gradient path) when B < 2.
    """
    if scale <= 0:
        raise ValueError(f"fidelity scale={scale} must be > 0")
    batch = scores.shape[0]
    if batch < 2:
        return scores.sum() * 0.0
    rows, cols = torch.triu_indices(batch, batch, offset=1, device=scores.device)
    predicted = _normal_cdf((scores[rows] - scores[cols]) / (math.sqrt(2.0) * scale))
    label_diff = labels[rows] - labels[cols]
    target = (label_diff > 0).to(scores.dtype) + 0.5 * (label_diff == 0).to(scores.dtype)
    if mos_std is not None:
        pair_var = mos_std[rows].pow(2) + mos_std[cols].pow(2)
        usable = torch.isfinite(pair_var) & (pair_var > 0)
        soft = _normal_cdf(label_diff / torch.where(usable, pair_var, torch.ones_like(pair_var)).sqrt())
        target = torch.where(usable, soft, target)
    # The labels carry no gradient, so sqrt(p * p_hat) = sqrt(p) sqrt(p_hat) with p_hat kept off 0 and 1: the
    # gradient of sqrt stays finite. The clamp never binds for scores inside the range (|z| <= 2 sqrt(2)).
    predicted = predicted.clamp(1e-6, 1 - 1e-6)
    fidelity = target.sqrt() * predicted.sqrt() + (1 - target).sqrt() * (1 - predicted).sqrt()
    return (1.0 - fidelity).mean()


def soft_ranks(values: torch.Tensor, temperature: float) -> torch.Tensor:
    """Differentiable ranks r_i = 1/2 + sum_j sigmoid((v_i - v_j) / t), shape (B,) -> (B,).

    With distinct values and t -> 0 they tend to the 1-based ranks (the j = i term adds 1/2).
    """
    differences = (values.unsqueeze(1) - values.unsqueeze(0)) / temperature
    return 0.5 + torch.sigmoid(differences).sum(dim=1)


def _pearson(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x_centred = x - x.mean()
    y_centred = y - y.mean()
    return (x_centred * y_centred).sum() / (x_centred.norm() * y_centred.norm() + _EPS)


def correlation_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    kind: str = "plcc",
    rank_temperature: float = 0.01,
) -> torch.Tensor:
    """(1 - rho) / 2 with rho a PLCC or soft-rank SRCC (module docstring). scores, labels: (B,).

    `rank_temperature` is t in score units. Returns a scalar; 0 (with a gradient path) when B < 2.
    """
    if kind not in CORRELATION_KINDS:
        raise ValueError(f"correlation kind={kind!r}; expected one of {CORRELATION_KINDS}")
    if scores.shape[0] < 2:
        return scores.sum() * 0.0
    terms = []
    if kind in ("plcc", "plcc+srcc"):
        terms.append(_pearson(scores, labels))
    if kind in ("srcc", "plcc+srcc"):
        label_ranks = soft_ranks(labels, 1e-6).detach()  # exact ranks (ties share the mean rank)
        terms.append(_pearson(soft_ranks(scores, rank_temperature), label_ranks))
    rho = torch.stack(terms).mean()
    return (1.0 - rho) / 2.0


def soft_grade_labels(
    labels: torch.Tensor,
    mos_std: torch.Tensor | None,
    *,
    score_range: tuple[float, float],
    num_grades: int,
    default_mos_std: float | None = None,
    min_mos_std: float | None = None,
) -> torch.Tensor:
    """Soft grade labels q (B, K): the mass Normal(y_i, sigma_i^2) puts on each grade's interval.

    Grade k (1..K) sits at c_k = lo + (k-1)(hi-lo)/(K-1); its interval runs between the midpoints to its
    neighbours, with -inf / +inf outside the first / last grade, so every row sums to 1.
    """
    if num_grades < 2:
        raise ValueError(f"num_grades={num_grades} must be >= 2")
    low = float(score_range[0])
    step = _range_width(score_range) / (num_grades - 1)
    default_mos_std = step / 2 if default_mos_std is None else float(default_mos_std)
    min_mos_std = step / 10 if min_mos_std is None else float(min_mos_std)
    if default_mos_std <= 0 or min_mos_std <= 0:
        raise ValueError(f"default_mos_std={default_mos_std} and min_mos_std={min_mos_std} must be > 0")
    labels = labels.float()
    sigma = torch.full_like(labels, default_mos_std)
    if mos_std is not None:
        mos_std = mos_std.to(labels.device, labels.dtype).view(-1)
        sigma = torch.where(torch.isfinite(mos_std), mos_std, sigma)
    sigma = sigma.clamp(min=min_mos_std)
    edges = low + step * (torch.arange(1, num_grades, device=labels.device, dtype=labels.dtype) - 0.5)  # (K-1,)
    below = _normal_cdf((edges.unsqueeze(0) - labels.unsqueeze(1)) / sigma.unsqueeze(1))  # P(Y <= edge), (B, K-1)
    zeros = torch.zeros_like(below[:, :1])
    ones = torch.ones_like(zeros)
    return torch.cat([below, ones], dim=1) - torch.cat([zeros, below], dim=1)


def grm_nll_loss(
    grade_probs: torch.Tensor,
    labels: torch.Tensor,
    mos_std: torch.Tensor | None = None,
    *,
    score_range: tuple[float, float],
    num_grades: int,
    default_mos_std: float | None = None,
    min_mos_std: float | None = None,
) -> torch.Tensor:
    """mean_i -sum_k q_ik log p_ik (module docstring). grade_probs: (B, K); labels, mos_std: (B,)."""
    if grade_probs.shape[-1] != num_grades:
        raise ValueError(f"grade_probs has {grade_probs.shape[-1]} grades but num_grades={num_grades}")
    targets = soft_grade_labels(
        labels,
        mos_std,
        score_range=score_range,
        num_grades=num_grades,
        default_mos_std=default_mos_std,
        min_mos_std=min_mos_std,
    )
    # Clamping keeps log finite for a grade the model rules out completely (its gradient then stops there).
    log_probs = grade_probs.float().clamp(min=1e-12).log()
    return -(targets * log_probs).sum(-1).mean()


def compute_loss(
    output: Any,
    labels: torch.Tensor,
    *,
    mos_std: torch.Tensor | None = None,
    weights: Mapping[str, float],
    score_range: tuple[float, float] | list[float],
    num_grades: int,
    correlation_kind: str = "plcc",
    rank_temperature: float = 0.01,
    fidelity_scale: float | None = None,
    default_mos_std: float | None = None,
    min_mos_std: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the selected losses.

    Args:
        output: An `AGQGOutput` (uses `.score` (B,) and, for ``grm_nll``, `.grade_probs` (B, K)).
        labels: MOS on the `score_range` scale, shape (B,).
        mos_std: Rater standard deviations on the same scale, (B,), NaN where unknown; optional.
        weights: Loss name -> weight, names among `LOSS_NAMES`; zero-weight terms are skipped.
        score_range: (lo, hi) of the MOS scale (the model's `config.score_range`).
        num_grades: K (the model's `config.num_grades`).
        correlation_kind: "plcc", "srcc" or "plcc+srcc" for the ``correlation`` term.
        rank_temperature: Soft-rank temperature as a fraction of the score range (``srcc`` kinds).
        fidelity_scale: tau of the fidelity loss in score units; default (hi - lo) / 4.
        default_mos_std, min_mos_std: sigma fallback and floor of ``grm_nll`` (see `soft_grade_labels`).

    Returns:
        (total, terms): the weighted sum, a scalar tensor with gradients, and every used term's unweighted
        value as a float, plus ``"loss"`` (the total).
    """
    unknown = sorted(set(weights) - set(LOSS_NAMES))
    if unknown:
        raise ValueError(f"unknown loss name(s) {unknown}; expected among {LOSS_NAMES}")
    negative = {name: w for name, w in weights.items() if w < 0 or not math.isfinite(w)}
    if negative:
        raise ValueError(f"loss weights must be finite and >= 0, got {negative}")
    active = {name: float(w) for name, w in weights.items() if w > 0}
    if not active:
        raise ValueError(f"no loss has a positive weight in {dict(weights)}")
    scores = output.score.float().view(-1)
    labels = labels.to(scores.device).float().view(-1)
    if labels.shape != scores.shape:
        raise ValueError(f"labels have shape {tuple(labels.shape)} but scores {tuple(scores.shape)}")
    if not torch.isfinite(labels).all():
        positions = torch.nonzero(~torch.isfinite(labels)).view(-1).tolist()
        raise ValueError(f"labels contain non-finite values at batch positions {positions}")
    if mos_std is not None:
        mos_std = mos_std.to(scores.device).float().view(-1)
    width = _range_width(score_range)
    terms: dict[str, torch.Tensor] = {}
    if "l1" in active:
        terms["l1"] = l1_loss(scores, labels, score_range)
    if "mse" in active:
        terms["mse"] = mse_loss(scores, labels, score_range)
    if "fidelity" in active:
        scale = width / 4 if fidelity_scale is None else fidelity_scale
        terms["fidelity"] = fidelity_loss(scores, labels, mos_std=mos_std, scale=scale)
    if "correlation" in active:
        terms["correlation"] = correlation_loss(
            scores, labels, kind=correlation_kind, rank_temperature=rank_temperature * width
        )
    if "grm_nll" in active:
        if getattr(output, "grade_probs", None) is None:
            raise ValueError("the grm_nll loss needs output.grade_probs")
        terms["grm_nll"] = grm_nll_loss(
            output.grade_probs,
            labels,
            mos_std,
            score_range=score_range,
            num_grades=num_grades,
            default_mos_std=default_mos_std,
            min_mos_std=min_mos_std,
        )
    total = sum(active[name] * value for name, value in terms.items())
    values = {name: float(value.detach()) for name, value in terms.items()}
    values["loss"] = float(total.detach())
    return total, values
