"""AGQG: a dual-encoder (CLIP, SigLIP, SigLIP 2) image-quality scorer whose grades come from a Graded Response Model.

Read top to bottom: GRM maths -> head (ability branch, difficulty branch) -> the model
(backbone -> text features -> head -> score) -> saving and loading. The host frameworks' text sides
(learnable CoOp/MaPLe prompts, LIQE multitask prompts) live in `prompt_learning_agqg.py`; what differs between
backbone families lives in `backbones_agqg.py`.

This file is Hub remote code: it imports only the standard library, torch, transformers and its
sibling files, and it never touches the network on its own (only `from_backbone`/`from_clip`/`from_pretrained`
of a Hub id download, as their callers ask).
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput, logging

from .backbones_agqg import (
    BackboneAdapter,
    adapter_for,
    backbone_classes,
    backbone_type_of,
    build_backbone,
    image_processor_class_for,
)
from .configuration_agqg import AGQGConfig
from .prompt_learning_agqg import PromptLearner, aggregate_variant_similarities
from .views_agqg import PixelSpec, ViewProtocol, tensor_views

logger = logging.get_logger(__name__)

PIPELINE_TASK = "image-quality"
PIPELINE_FILE = "pipeline_agqg.py"
# Every file that travels with the weights: transformers copies the config's and the model's modules (and what
# they import); the pipeline and what it imports are copied here, so the list is complete on its own.
REMOTE_CODE_FILES = (
    "configuration_agqg.py",
    "modeling_agqg.py",
    "backbones_agqg.py",
    "prompt_learning_agqg.py",
    "views_agqg.py",
    "pipeline_agqg.py",
)
PIPELINE_CLASS = "ImageQualityPipeline"

# Keeps d = softplus(.) + eps strictly positive even where softplus underflows to 0 in float32.
_MIN_SPACING = 1e-4


# ---------------------------------------------------------------------------------------------
# Graded Response Model maths
# ---------------------------------------------------------------------------------------------


def min_scaled_gap_for_unimodality(num_grades: int) -> float:
    r"""Smallest scaled spacing s = a*d for which the GRM grade distribution is unimodal for every ability.

    With thresholds b_k = b_1 + (k-1)d, write x = a(theta - b_1), q = e^{-s} and t = e^x. Then

        p_1 = 1 - sigma(x),  p_K = sigma(x - (K-2)s),
        p_k = sigma(x-(k-2)s) - sigma(x-(k-1)s) = (1-q) sigma(u) sigma(s-u),  u = x-(k-2)s,  1<k<K.

    The interior p_2..p_{K-1} samples the log-concave function u -> sigma(u)sigma(s-u) on an even grid,
    so it is unimodal by itself; a dip can only sit next to an open-ended tail grade.
    Let us compare the neighbours of grade 2 (grade K-1 is the mirror image):

    * p_1 >= p_2  <=>  t(1 - 2q) <= 1,
    * K >= 4: p_3 > p_2  <=>  q(1+t) > 1 + t q^2  <=>  t > 1/q.
      A dip (p_1 > p_2 < p_3) exists for some t iff 1/q < 1/(1-2q), i.e. q > 1/3: **s >= ln 3** is
      necessary and sufficient.
    * K = 3: p_3 = sigma(x - s) is the other tail; p_3 > p_2  <=>  t > (1-2q)/q. A dip exists iff
      (1-2q)^2 < q, i.e. (4q-1)(q-1) < 0, i.e. q > 1/4: **s >= ln 4**.
    * K = 2: two probabilities are always unimodal: s >= 0.

    If the interior starts falling (p_3 <= p_2) the sequence can only rise again at the top tail, the
    mirrored case; so these conditions cover every valley. At s equal to the bound ties are possible
    (a plateau), never a strict valley.
    """
    if num_grades < 2:
        raise ValueError(f"num_grades={num_grades} must be >= 2")
    if num_grades == 2:
        return 0.0
    if num_grades == 3:
        return math.log(4.0)
    return math.log(3.0)


def grm_grade_probs(ability: torch.Tensor, difficulties: torch.Tensor, discrimination: torch.Tensor) -> torch.Tensor:
    r"""Samejima's Graded Response Model category probabilities.

    P(grade >= k+1) = sigma(a (theta - b_k)) for k = 1..K-1, P(grade >= 1) = 1, P(grade >= K+1) = 0, and
    P(grade = k) = P(grade >= k) - P(grade >= k+1).

    Args:
        ability: theta, shape (B,).
        difficulties: increasing thresholds b, shape (K-1,) or (B, K-1).
        discrimination: a > 0, shape () or (B,).

    Returns:
        Grade probabilities, shape (B, K): non-negative (b increasing makes the cumulative curve
        non-increasing) and summing to 1 (the differences telescope).
    """
    # At least float32: differences of nearby sigmoids lose everything in half precision.
    dtype = torch.promote_types(torch.promote_types(ability.dtype, difficulties.dtype), torch.float32)
    ability, difficulties, discrimination = ability.to(dtype), difficulties.to(dtype), discrimination.to(dtype)
    if difficulties.dim() == 1:
        difficulties = difficulties.unsqueeze(0)
    if discrimination.dim() == 1:
        discrimination = discrimination.unsqueeze(-1)
    at_least = torch.sigmoid(discrimination * (ability.unsqueeze(-1) - difficulties))  # (B, K-1)
    ones = torch.ones_like(at_least[:, :1])
    upper = torch.cat([ones, at_least], dim=-1)
    lower = torch.cat([at_least, torch.zeros_like(ones)], dim=-1)
    return upper - lower


def expected_grade(grade_probs: torch.Tensor) -> torch.Tensor:
    """E[grade] with grades numbered 1..K, shape (B,). For GRM probabilities this equals
    1 + sum_k P(grade >= k+1), hence non-decreasing in the ability."""
    grades = torch.arange(1, grade_probs.shape[-1] + 1, device=grade_probs.device, dtype=grade_probs.dtype)
    return (grade_probs * grades).sum(-1)


def grade_to_score(
    grade: torch.Tensor, num_grades: int, score_range: tuple[float, float] | list[float]
) -> torch.Tensor:
    """Maps an expected grade in [1, K] linearly onto [min, max] of the MOS scale."""
    low, high = score_range
    return low + (grade - 1.0) / (num_grades - 1) * (high - low)


def grade_spread(
    grade_probs: torch.Tensor, score_range: tuple[float, float] | list[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The spread of a grade distribution: its standard deviation on the score scale and its entropy.

    With grades k = 1..K and probabilities p_k,

        Var[grade] = sum_k p_k k^2 - (sum_k p_k k)^2,
        grade_std  = sqrt(Var[grade]) * (max - min) / (K - 1)     (score units, like `score`),
        entropy    = -sum_k p_k ln p_k                             (nats, 0 ln 0 = 0; at most ln K).

    Both are differentiable (the square root's argument is clamped at the smallest normal float, so a point mass
    has a finite zero gradient).

    Args:
        grade_probs: (B, K) distributions.
        score_range: (min, max) of the score scale.

    Returns:
        (grade_std (B,), entropy (B,)), in at least float32.
    """
    probs = grade_probs.to(torch.promote_types(grade_probs.dtype, torch.float32))
    num_grades = probs.shape[-1]
    grades = torch.arange(1, num_grades + 1, device=probs.device, dtype=probs.dtype)
    mean = (probs * grades).sum(-1)
    variance = (probs * (grades - mean.unsqueeze(-1)) ** 2).sum(-1)
    low, high = score_range
    std = variance.clamp_min(torch.finfo(probs.dtype).tiny).sqrt() * ((high - low) / (num_grades - 1))
    entropy = -(probs * probs.clamp_min(torch.finfo(probs.dtype).tiny).log()).sum(-1)
    return std, entropy


def _inverse_softplus(value: float) -> float:
    return value + math.log(-math.expm1(-value))


VIEW_AGGREGATIONS = ("none", "mean", "ipce")


def aggregate_view_grades(
    aggregation: str,
    num_views: int,
    grade_probs: torch.Tensor,
    ability: torch.Tensor,
    logits: torch.Tensor,
    difficulties: torch.Tensor | None = None,
    discrimination: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Combines the V views of each image into one grade distribution and one ability.

    Inputs are per view, image by image (views of an image adjacent, the whole-image view last): `grade_probs`
    (B*V, K), `ability` (B*V,), `logits` (B*V, K) = tau * similarities. `difficulties` ((K-1,) or (B*V, K-1))
    and `discrimination` (() or (B*V,)) are given for AGQG grading and None for softmax grading.

    * `mean`: P = (1/V) sum_v P_v and theta = (1/V) sum_v theta_v. The score is linear in P, so the image's
      score is the mean of its views' scores.
    * `ipce` (IPCE's two-view rule): the first V-1 views are patches, the last the whole image.
      Softmax grading: P = (softmax(mean_n z_n) + softmax(z_whole)) / 2. AGQG grading: the ability takes the
      logits' place, P = (GRM(mean_n theta_n; b, a) + GRM(theta_whole; b, a)) / 2 with the image's thresholds
      b and discrimination a (the same for all its views); theta = (mean_n theta_n + theta_whole) / 2.
      With softmax grading the reported ability is the centred expected grade of P.

    Both rules average distributions, so P stays a distribution (non-negative, summing to 1); a mixture of
    unimodal GRM distributions is not always unimodal, which `mean` and `ipce` accept as the price of
    following the hosts' protocols.

    Returns:
        (grade_probs (B, K), ability (B,)).
    """
    if aggregation not in VIEW_AGGREGATIONS:
        raise ValueError(f"view aggregation {aggregation!r}; expected one of {VIEW_AGGREGATIONS}")
    if num_views == 1:
        return grade_probs, ability
    if grade_probs.shape[0] % num_views:
        raise ValueError(f"{grade_probs.shape[0]} views is not a multiple of num_views={num_views}")
    batch, num_grades = grade_probs.shape[0] // num_views, grade_probs.shape[-1]
    if aggregation in ("none", "mean"):
        return grade_probs.view(batch, num_views, num_grades).mean(1), ability.view(batch, num_views).mean(1)
    if difficulties is None:
        per_view = logits.view(batch, num_views, num_grades)
        probs = (per_view[:, :-1].mean(1).softmax(-1) + per_view[:, -1].softmax(-1)) / 2
        return probs, expected_grade(probs) - (num_grades + 1) / 2
    theta = ability.view(batch, num_views)
    theta_patches, theta_whole = theta[:, :-1].mean(1), theta[:, -1]
    if difficulties.dim() == 2:
        difficulties = difficulties.view(batch, num_views, -1)[:, 0]
    if discrimination is not None and discrimination.dim() == 1:
        discrimination = discrimination.view(batch, num_views)[:, 0]
    probs = (
        grm_grade_probs(theta_patches, difficulties, discrimination)
        + grm_grade_probs(theta_whole, difficulties, discrimination)
    ) / 2
    return probs, (theta_patches + theta_whole) / 2


# ---------------------------------------------------------------------------------------------
# Head
# ---------------------------------------------------------------------------------------------


class AGQGHead(nn.Module):
    r"""The AGQG grading head: a Graded Response Model over K ordered quality grades.

    Inputs are the normalised image embedding v (B, D), the normalised grade-text embeddings T
    ((K, D) shared, or (B, K, D) per image) and their cosine similarities s = v T^T (B, K).

    **Ability branch** (image side). With the backbone's own logits l = tau s + beta (tau its similarity scale,
    beta its logit bias: CLIP's exp(logit_scale) clamped at 100 and beta = 0; SigLIP's exp(logit_scale) and
    logit_bias), theta = theta_0 + f([z, v]), where the prior theta_0 = sum_k k softmax(l)_k - (K+1)/2 is the
    baseline's expected grade, centred, z = l - mean(l) are the centred logits and f is a two-layer MLP whose
    output starts near zero. The prior makes a fresh head grade like the softmax baseline it plugs into.

    A constant bias cancels in both: softmax(l) = softmax(tau s) and l - mean(l) = tau (s - mean(s)). So only
    tau matters, and with SigLIP the grading reads the grades' *relative* evidence: SigLIP's (learned, negative)
    bias sets its absolute, per-prompt match probability sigmoid(tau s_k + beta), which AGQG (like
    the softmax baseline) does not use. Scores are exactly invariant to `logit_bias` (tested).

    **Difficulty branch** (grade-text side, arithmetic). An MLP g reads the K text embeddings
    (flattened) and returns a centre c and a raw spacing r; the thresholds are

        d = softplus(r) + 1e-4 > 0,   b_k = c + (k - K/2) d,   k = 1..K-1,

    so b_1 < ... < b_{K-1} with the constant gap d, and their mean is c. At initialisation c = 0 and
    d = 1: the thresholds sit half-way between the centred grades, where theta_0 lives.

    **Discrimination.** The scaled gap s = a d = s_min + softplus(rho) (rho a learned scalar), and
    a = s / d > 0. s_min = ln 4 for K = 3 and ln 3 for K >= 4 is the smallest value that keeps the grade
    distribution unimodal for every theta (derivation in `min_scaled_gap_for_unimodality`), so
    unimodality holds by construction, not by hope.

    **Grades.** P(grade >= k+1) = sigma(a (theta - b_k)); P(grade = k) is the difference of consecutive
    cumulative probabilities (`grm_grade_probs`). The score is the expected grade mapped linearly onto the
    configured MOS range; it is non-decreasing in theta.
    """

    def __init__(self, config: AGQGConfig, embed_dim: int) -> None:
        super().__init__()
        self.num_grades = config.num_grades
        self.ability_source = config.ability_source
        self.init_std = config.head_init_std
        self.discrimination_init = config.discrimination_init
        self.min_scaled_gap = (
            min_scaled_gap_for_unimodality(config.num_grades)
            if config.min_scaled_gap is None
            else float(config.min_scaled_gap)
        )
        ability_in = {"similarities": 0, "embedding": embed_dim, "both": embed_dim}[self.ability_source]
        if self.ability_source in ("similarities", "both"):
            ability_in += config.num_grades
        self.ability_mlp = nn.Sequential(
            nn.Linear(ability_in, config.ability_hidden_size),
            nn.GELU(),
            nn.Linear(config.ability_hidden_size, 1),
        )
        self.difficulty_mlp = nn.Sequential(
            nn.Linear(config.num_grades * embed_dim, config.difficulty_hidden_size),
            nn.GELU(),
            nn.Linear(config.difficulty_hidden_size, 2),
        )
        self.raw_scaled_gap_excess = nn.Parameter(torch.zeros(()))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for mlp in (self.ability_mlp, self.difficulty_mlp):
            mlp[0].reset_parameters()
            nn.init.normal_(mlp[2].weight, std=self.init_std)
            nn.init.zeros_(mlp[2].bias)
        self.difficulty_mlp[2].bias[1] = _inverse_softplus(1.0 - _MIN_SPACING)
        excess = max(self.discrimination_init - self.min_scaled_gap, 1e-2)
        self.raw_scaled_gap_excess.fill_(_inverse_softplus(excess))

    def forward(
        self,
        image_embeds: torch.Tensor,
        text_embeds: torch.Tensor,
        similarities: torch.Tensor,
        logit_scale: torch.Tensor,
        logit_bias: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Returns `ability` (B,), `difficulties` (K-1,) or (B, K-1), `discrimination` () or (B,),
        `grade_probs` (B, K). `logit_scale` tau and `logit_bias` beta (or None) have shape ()."""
        dtype = self.ability_mlp[0].weight.dtype
        # The GRM runs in at least float32 whatever the weights' dtype (see grm_grade_probs).
        compute = torch.promote_types(dtype, torch.float32)
        logits = logit_scale.to(compute) * similarities.to(compute)
        if logit_bias is not None:
            logits = logits + logit_bias.to(compute)
        prior = expected_grade(logits.softmax(-1)) - (self.num_grades + 1) / 2

        # Ability branch: image side.
        features = []
        if self.ability_source in ("similarities", "both"):
            features.append(logits - logits.mean(-1, keepdim=True))
        if self.ability_source in ("embedding", "both"):
            features.append(image_embeds.to(compute))
        ability = prior + self.ability_mlp(torch.cat(features, -1).to(dtype)).squeeze(-1).to(compute)

        # Difficulty branch: grade-text side, arithmetic thresholds.
        centre, raw_spacing = self.difficulty_mlp(text_embeds.flatten(-2).to(dtype)).to(compute).unbind(-1)
        spacing = F.softplus(raw_spacing) + _MIN_SPACING
        offsets = torch.arange(1, self.num_grades, device=spacing.device, dtype=spacing.dtype) - self.num_grades / 2
        difficulties = centre.unsqueeze(-1) + offsets * spacing.unsqueeze(-1)

        scaled_gap = self.min_scaled_gap + F.softplus(self.raw_scaled_gap_excess.to(compute))
        discrimination = scaled_gap / spacing
        grade_probs = grm_grade_probs(ability, difficulties, discrimination)
        return {
            "ability": ability,
            "difficulties": difficulties,
            "discrimination": discrimination,
            "grade_probs": grade_probs,
        }


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


@dataclass
class AGQGOutput(ModelOutput):
    """Output of [`AGQGForImageQualityAssessment`]. B is the number of images; with `num_views=V` the model
    saw B*V views and every per-image field is already combined over each image's views
    (`aggregate_view_grades`).

    Args:
        loss: Score loss (L1 or MSE, see `config.loss_type`), shape (), when `labels` are given.
        score: Predicted quality on the configured MOS range, shape (B,).
        grade_probs: Probability of each of the K grades, shape (B, K).
        ability: GRM ability theta, shape (B,). With softmax grading: the centred expected grade.
        difficulties: Increasing GRM thresholds, shape (K-1,), or (B, K-1) with per-image prompts.
            `None` with softmax grading.
        discrimination: GRM discrimination a, shape () or (B,). `None` with softmax grading.
        similarities: Cosine similarities of the image to the K grade prompts, shape (B, K) (the mean over an
            image's views). With multitask prompts: the log-sum-exp pooled similarity of each grade
            (`aggregate_variant_similarities`).
        image_embeds: Normalised projected image embeddings, one per view, shape (B*V, D).
        grade_std: Spread of the grade distribution on the score scale, sqrt(Var[grade]) * (max - min)/(K - 1),
            shape (B,) (`grade_spread`; of the combined distribution when an image has several views).
        grade_entropy: Entropy of the grade distribution in nats, shape (B,).
    """

    loss: torch.FloatTensor | None = None
    score: torch.FloatTensor | None = None
    grade_probs: torch.FloatTensor | None = None
    ability: torch.FloatTensor | None = None
    difficulties: torch.FloatTensor | None = None
    discrimination: torch.FloatTensor | None = None
    similarities: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    grade_std: torch.FloatTensor | None = None
    grade_entropy: torch.FloatTensor | None = None


class AGQGPreTrainedModel(PreTrainedModel):
    config_class = AGQGConfig
    base_model_prefix = "agqg"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = True
    _no_split_modules = [
        "CLIPEncoderLayer",
        "SiglipEncoderLayer",
        "SiglipMultiheadAttentionPoolingHead",
        "Siglip2EncoderLayer",
        "Siglip2MultiheadAttentionPoolingHead",
    ]

    def _init_weights(self, module: nn.Module) -> None:
        # The backbone sub-model initialises its own modules (transformers dispatches to it).
        if isinstance(module, (AGQGHead, PromptLearner)):
            module.reset_parameters()


class AGQGForImageQualityAssessment(AGQGPreTrainedModel):
    """Dual encoder + AGQG grading head: `pixel_values` in, a quality score and a grade distribution out.

    The backbone (`model.backbone`) is a `CLIPModel`, `SiglipModel` or `Siglip2Model` (`config.backbone_config`
    records which); `backbones_agqg.BackboneAdapter` says how each gives embeddings and its similarity scale. It is
    registered as the submodule `clip` whatever its family: its weights keep the `clip.` state-dict prefix of every
    folder saved before other backbones existed, and code that addresses `model.clip` (accelerate checkpoints,
    name-based parameter groups) keeps working. `model.backbone` is the same module under a neutral name.

    The grade-prompt token ids and their text embeddings are buffers saved in `model.safetensors`,
    so scoring needs neither a tokenizer nor a text-tower pass. While the text tower trains, the
    embeddings are computed live and the stored copy is marked stale; it is refreshed before the next
    evaluation forward and before any `state_dict()`/`save_pretrained`, so a saved model never
    carries stale ones.

    Attributes `image_processor` and `tokenizer` (plain attributes, not modules) hold the
    preprocessing the backbone came with; `save_pretrained` writes them next to the weights.

    Host frameworks are configurations of this one class (see `AGQGConfig`): prompt sets per grade
    (CLIP-IQA's antonym pairs), LIQE's multitask prompts (buffer `grade_variant_embeds` (K, V, D) beside
    `grade_text_embeds`), and learnable prompts (`prompt_learner`, CoOp or MaPLe-style). Learnable text
    prompts follow the same rule as a trained text tower: live features while they train, fresh buffers
    in every saved model.
    """

    def __init__(self, config: AGQGConfig) -> None:
        super().__init__(config)
        self.clip = build_backbone(config.backbone_config)  # the backbone, any family (see the class docstring)
        embed_dim = self.backbone_adapter.embed_dim(config.backbone_config)
        # Its prompts come from a generator seeded with torch.initial_seed(): both gradings start from the same.
        self.prompt_learner: PromptLearner | None = None
        if config.prompt_learning is not None:
            self.prompt_learner = PromptLearner(
                config,
                config.backbone_config.text_config.hidden_size,
                getattr(config.backbone_config.vision_config, "hidden_size", None),  # None: no tokens (ALIGN)
            )
            self.prompt_learner.attach(self.backbone)
        self.head = AGQGHead(config, embed_dim) if config.grading == "agqg" else None

        num_prompts = config.num_grades * self._num_variants() * self._prompts_per_variant()
        max_length = self.backbone_adapter.text_max_length(config.backbone_config)
        self.register_buffer("grade_prompt_ids", torch.zeros(num_prompts, max_length, dtype=torch.long))
        self.register_buffer("grade_prompt_mask", torch.zeros(num_prompts, max_length, dtype=torch.long))
        self.register_buffer("grade_text_embeds", torch.zeros(config.num_grades, embed_dim))
        if self._num_variants() > 1:
            self.register_buffer(
                "grade_variant_embeds", torch.zeros(config.num_grades, self._num_variants(), embed_dim)
            )
        self._grade_embeds_stale = False
        self._grade_prompts_checked = False
        self.image_processor: Any = None
        self.tokenizer: Any = None
        self.post_init()

    # --- backbone --------------------------------------------------------------------------

    @property
    def backbone_adapter(self) -> BackboneAdapter:
        """How this model's backbone family gives embeddings and its similarity scale (`backbones_agqg`)."""
        return adapter_for(self.config.backbone_config.model_type)

    @property
    def backbone(self) -> nn.Module:
        """The backbone (`CLIPModel`, `SiglipModel` or `Siglip2Model`), registered as the submodule `clip`."""
        return self.clip

    @property
    def image_size(self) -> int:
        """The side of the square views the vision tower takes (SigLIP 2: sqrt(num_patches) * patch_size)."""
        return self.backbone_adapter.image_size(self.config.backbone_config)

    def text_tower_parameters(self) -> list[nn.Parameter]:
        """The backbone parameters the text embeddings depend on (CLIP: text tower and text projection; SigLIP:
        text tower with its head). Freeze these to keep the grade-text features fixed (and cached)."""
        return [p for module in self.backbone_adapter.text_modules(self.backbone) for p in module.parameters()]

    def vision_tower_parameters(self) -> list[nn.Parameter]:
        """The backbone parameters the image embeddings depend on (vision tower and, for CLIP, its projection)."""
        return [p for module in self.backbone_adapter.vision_modules(self.backbone) for p in module.parameters()]

    def get_image_embeds(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Normalised image embeddings, (B, 3, H, W) -> (B, D). SigLIP 2 views are patchified first
        (`backbones_agqg.patchify`)."""
        return F.normalize(self.backbone_adapter.image_features(self.backbone, pixel_values), dim=-1)

    def get_view_embeds(self, pixel_values: torch.Tensor, num_views: int = 1) -> torch.Tensor:
        """`get_image_embeds` of (B*V, 3, H, W) views, V = `num_views` per image, -> (B*V, D).

        When images come as V > 1 views each and nothing is differentiated (`torch.is_grad_enabled()` is False:
        evaluation, the pipeline, `score()`), `get_image_embeds` runs once per run of consecutive views that are
        equal pixel for pixel, and each view gets the embedding of its own pixels: the crop grid of an image no
        larger than a crop repeats one window N times (a 32-pixel crop under the quickstart's 64-crop protocol),
        and neighbouring grid positions coincide on an image barely larger than a crop. Training steps and
        `score_pixels` encode every view: their random crops rarely repeat, the check would cost a device
        synchronisation per step, and two equal windows from different places of an image have different pixels
        to send their gradients to."""
        if num_views < 2 or torch.is_grad_enabled() or pixel_values.shape[0] < 2:
            return self.get_image_embeds(pixel_values)
        # Elementwise comparisons (any device and dtype), not torch.unique_consecutive(dim=0).
        flat = pixel_values.flatten(1)
        starts = torch.ones(flat.shape[0], dtype=torch.bool, device=flat.device)
        starts[1:] = (flat[1:] != flat[:-1]).any(1)  # a view that differs from the one before starts a run
        if bool(starts.all()):
            return self.get_image_embeds(pixel_values)
        run_of_view = torch.cumsum(starts.long(), 0) - 1
        return self.get_image_embeds(pixel_values[starts])[run_of_view]

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised text embeddings, (N, L) -> (N, D). The mask reaches the tower only for backbones trained
        with one (CLIP); SigLIP reads the whole max_length-padded sequence, as it was trained."""
        mask = attention_mask if self.backbone_adapter.text_reads_attention_mask else None
        return F.normalize(self.backbone_adapter.text_features(self.backbone, input_ids, mask), dim=-1)

    def similarity_scale(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The backbone's own logit scale tau (shape ()) and logit bias (shape (), or None): CLIP's
        exp(logit_scale) clamped at 100 and no bias; SigLIP's exp(logit_scale) and logit_bias."""
        return self.backbone_adapter.logit_scale(self.backbone), self.backbone_adapter.logit_bias(self.backbone)

    # --- grade prompts and their cached text embeddings --------------------------------------

    def _num_variants(self) -> int:
        """V: prompts per grade whose similarities are pooled by log-sum-exp (LIQE's scene x distortion)."""
        if self.config.multitask_scenes is None:
            return 1
        return len(self.config.multitask_scenes) * len(self.config.multitask_distortions)

    def _prompts_per_variant(self) -> int:
        """T: synonymous prompts averaged into one text feature (templates, or a grade's prompt set)."""
        if self.config.grade_prompt_sets is not None:
            return len(self.config.grade_prompt_sets[0])
        if self.config.multitask_scenes is not None:
            return 1
        return len(self.config.prompt_templates)

    def grade_prompts(self) -> list[str]:
        """The K*V*T prompt strings, grade-major (all prompts of grade 1 first), each prefixed with the
        context placeholders when prompts are learned.

        Plain: every template per grade name. `grade_prompt_sets`: each grade's prompts as given. Multitask:
        `multitask_template` for every (scene, distortion) pair, scenes outer."""
        config = self.config
        if config.grade_prompt_sets is not None:
            texts = [prompt for prompts in config.grade_prompt_sets for prompt in prompts]
        elif config.multitask_scenes is not None:
            texts = [
                config.multitask_template.format(scene=scene, distortion=distortion, grade=grade)
                for grade in config.grade_names
                for scene in config.multitask_scenes
                for distortion in config.multitask_distortions
            ]
        else:
            texts = [t.format(grade=g) for g in config.grade_names for t in config.prompt_templates]
        if self.prompt_learner is not None:
            prefix = " ".join([config.context_placeholder] * config.num_context_tokens)
            texts = [f"{prefix} {text}" for text in texts]
        return texts

    def alignment_prompts(self, prompt: str) -> list[str]:
        """The K alignment prompts for one generation prompt, worst grade first."""
        return [
            self.config.alignment_template.format(grade=g, prompt=prompt) for g in self.config.alignment_grade_names
        ]

    def _tokenize(self, tokenizer: Any, texts: list[str]) -> dict[str, torch.Tensor]:
        """The backbone's text conventions: every prompt padded to the text tower's length (`padding="max_length"`,
        as CLIP and SigLIP were trained), truncated, lowercased for SigLIP 2; ids and mask (N, L)."""
        max_length = self.backbone_adapter.text_max_length(self.config.backbone_config)
        if self.backbone_adapter.lowercase_text:
            texts = [text.lower() for text in texts]
        tokens = tokenizer(
            texts,
            padding="max_length",
            truncation=True,
            max_length=max_length,
            return_attention_mask=True,
            return_tensors="pt",
        )
        return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}

    def tokenize_alignment_prompts(self, tokenizer: Any, prompts: list[str]) -> dict[str, torch.Tensor]:
        """Tokenises the K alignment prompts of each generation prompt: `input_ids`/`attention_mask` (B, K, L)."""
        if tokenizer is None:
            raise ValueError("generation-prompt conditioning needs a tokenizer; this model was saved without one")
        tokens = self._tokenize(tokenizer, [text for p in prompts for text in self.alignment_prompts(p)])
        return {k: v.view(len(prompts), self.config.num_grades, -1) for k, v in tokens.items()}

    def set_grade_prompts(self, tokenizer: Any) -> None:
        """Tokenises the grade prompts into the id buffers and computes their text embeddings."""
        tokens = self._tokenize(tokenizer, self.grade_prompts())
        device = self.grade_prompt_ids.device
        self.grade_prompt_ids.copy_(tokens["input_ids"].to(device))
        self.grade_prompt_mask.copy_(tokens["attention_mask"].to(device))
        if self.prompt_learner is not None:
            placeholder = tokenizer(self.config.context_placeholder, add_special_tokens=False)["input_ids"]
            self.config.context_offset = self.prompt_learner.check_placeholders(
                self.grade_prompt_ids, list(placeholder)
            )
        self._grade_prompts_checked = True
        self.refresh_grade_text_embeds()

    def _encode_grade_prompts(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Grade-text features from the current text side: (K, D), and (K, V, D) with multitask prompts."""
        if not self._grade_prompts_checked:
            if int(self.grade_prompt_mask.sum()) == 0:
                raise RuntimeError(
                    "the grade prompts were never tokenised: build the model with `from_backbone`, or call "
                    "`model.set_grade_prompts(tokenizer)` once"
                )
            self._grade_prompts_checked = True
        if self.prompt_learner is None:
            embeds = self.encode_text(self.grade_prompt_ids, self.grade_prompt_mask)
        else:
            with self.prompt_learner.prompting_text():
                embeds = self.encode_text(self.grade_prompt_ids, self.grade_prompt_mask)
        num_grades, num_variants = self.config.num_grades, self._num_variants()
        if num_variants == 1:
            embeds = embeds.view(num_grades, self._prompts_per_variant(), -1).mean(1)
            return F.normalize(embeds, dim=-1), None
        variants = F.normalize(embeds.view(num_grades, num_variants, self._prompts_per_variant(), -1).mean(2), dim=-1)
        return F.normalize(variants.mean(1), dim=-1), variants

    @torch.no_grad()
    def refresh_grade_text_embeds(self) -> None:
        """Recomputes the stored grade-text embeddings from the current text side (tower and prompts)."""
        embeds, variants = self._encode_grade_prompts()
        self.grade_text_embeds.copy_(embeds)
        if variants is not None:
            self.grade_variant_embeds.copy_(variants)
        self._grade_embeds_stale = False

    def _text_tower_trains(self) -> bool:
        text_params = self.text_tower_parameters()
        if self.prompt_learner is not None:
            text_params += self.prompt_learner.text_parameters()
        return self.training and torch.is_grad_enabled() and any(p.requires_grad for p in text_params)

    def _grade_text_side(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(K, D) grade-text features and the (K, V, D) multitask variants (or None): live while the text
        side trains, else the stored buffers (refreshed first when stale)."""
        if self._text_tower_trains():
            self._grade_embeds_stale = True
            return self._encode_grade_prompts()
        if self._grade_embeds_stale:
            self.refresh_grade_text_embeds()
        return self.grade_text_embeds, (self.grade_variant_embeds if self._num_variants() > 1 else None)

    def _grade_text_embeds(self) -> torch.Tensor:
        return self._grade_text_side()[0]

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if self._grade_embeds_stale:
            self.refresh_grade_text_embeds()
        return super().state_dict(*args, **kwargs)

    def _encode_unique_prompts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Normalised text embeddings of per-image prompts, (..., L) -> (..., D), running the text tower once per
        distinct (ids, mask) row: several views of one image, or images sharing a generation prompt, repeat
        the same K prompts."""
        flat_ids = input_ids.reshape(-1, input_ids.shape[-1])
        if attention_mask is None:
            unique_ids, inverse = torch.unique(flat_ids, dim=0, return_inverse=True)
            embeds = self.encode_text(unique_ids)
        else:
            rows = torch.cat([flat_ids, attention_mask.reshape(flat_ids.shape)], dim=1)
            unique_rows, inverse = torch.unique(rows, dim=0, return_inverse=True)
            length = flat_ids.shape[1]
            embeds = self.encode_text(unique_rows[:, :length], unique_rows[:, length:])
        return embeds[inverse].view(*input_ids.shape[:-1], -1)

    # --- forward -------------------------------------------------------------------------------

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        num_views: int = 1,
        view_aggregation: str | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> AGQGOutput | tuple:
        """Scores images, each seen through one or more views.

        Args:
            pixel_values: Preprocessed views, shape (B*V, 3, H, W): the V views of each image adjacent, as
                `views_agqg.make_views` lays them out (crops or patches first, the whole image last).
            input_ids: Optional grade prompts replacing the stored ones: (B, K, L) per image (e.g. from
                `tokenize_alignment_prompts` for generation-prompt conditioning; shared by the image's views)
                or (K, L) shared by all.
            attention_mask: Mask of `input_ids`, same shape.
            labels: Target scores on the configured MOS range, shape (B,).
            num_views: V, views per image.
            view_aggregation: How an image's views combine: `mean` or `ipce` (`aggregate_view_grades`). Default:
                the rule of `config.view_protocol` (`mean` when that protocol has a single view).
            return_dict: Return an `AGQGOutput` (default) or a tuple.
        """
        return_dict = return_dict if return_dict is not None else getattr(self.config, "return_dict", True)
        image_embeds = self.get_view_embeds(pixel_values, num_views=num_views)
        output = self.score_image_embeds(
            image_embeds, input_ids, attention_mask, labels, num_views=num_views, view_aggregation=view_aggregation
        )
        return output if return_dict else output.to_tuple()

    def score_image_embeds(
        self,
        image_embeds: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        num_views: int = 1,
        view_aggregation: str | None = None,
    ) -> AGQGOutput:
        """Everything `forward` does after the vision tower: grade-text features, similarities, grading, the
        combination of each image's views, score and loss. `image_embeds` (B*V, D) are normalised embeddings from
        `get_image_embeds`, e.g. cached ones for training with a frozen vision tower; the other arguments are
        `forward`'s.

        With multitask prompts the similarity of grade k is (1/tau) logsumexp_v(tau s_kv) over its V
        scene x distortion prompts (`aggregate_variant_similarities`)."""
        if num_views < 1 or image_embeds.shape[0] % num_views:
            raise ValueError(f"{image_embeds.shape[0]} views cannot be split into images of num_views={num_views}")
        aggregation = view_aggregation or self.view_protocol().aggregation
        variant_embeds = None
        if input_ids is None:
            text_embeds, variant_embeds = self._grade_text_side()
        else:
            if num_views > 1 and input_ids.dim() == 3:
                input_ids = input_ids.repeat_interleave(num_views, dim=0)
                if attention_mask is not None:
                    attention_mask = attention_mask.repeat_interleave(num_views, dim=0)
            text_embeds = self._encode_unique_prompts(input_ids, attention_mask)
            if text_embeds.shape[-2] != self.config.num_grades:
                raise ValueError(
                    f"input_ids has {text_embeds.shape[-2]} prompts per image, expected {self.config.num_grades}"
                )
        # Everything after the towers is cheap, and rounding there moves scores (CLIP's logit scale is 100):
        # run it in at least float32 even under autocast.
        with torch.autocast(device_type=image_embeds.device.type, enabled=False):
            compute = torch.promote_types(image_embeds.dtype, torch.float32)
            image_embeds = image_embeds.to(compute)
            text_embeds = text_embeds.to(compute)
            if variant_embeds is not None:
                variant_embeds = variant_embeds.to(compute)
            logit_scale, logit_bias = self.similarity_scale()
            logit_scale = logit_scale.to(compute)
            logit_bias = logit_bias.to(compute) if logit_bias is not None else None
            if variant_embeds is not None:
                similarities = aggregate_variant_similarities(image_embeds, variant_embeds, logit_scale)
            elif text_embeds.dim() == 2:
                similarities = image_embeds @ text_embeds.t()
            else:
                similarities = torch.einsum("bd,bkd->bk", image_embeds, text_embeds)

            logits = logit_scale * similarities + (logit_bias if logit_bias is not None else 0.0)
            if self.head is not None:
                graded = self.head(image_embeds, text_embeds, similarities, logit_scale, logit_bias)
                grade_probs, ability = graded["grade_probs"], graded["ability"]
                difficulties, discrimination = graded["difficulties"], graded["discrimination"]
            else:
                grade_probs = logits.softmax(-1)
                ability = expected_grade(grade_probs) - (self.config.num_grades + 1) / 2
                difficulties = discrimination = None
            grade_probs, ability = aggregate_view_grades(
                aggregation, num_views, grade_probs, ability, logits, difficulties, discrimination
            )
            if num_views > 1:
                batch = similarities.shape[0] // num_views
                similarities = similarities.view(batch, num_views, -1).mean(1)
                if difficulties is not None and difficulties.dim() == 2:
                    difficulties = difficulties.view(batch, num_views, -1)[:, 0]
                if discrimination is not None and discrimination.dim() == 1:
                    discrimination = discrimination.view(batch, num_views)[:, 0]
            score = grade_to_score(expected_grade(grade_probs), self.config.num_grades, self.config.score_range)
            grade_std, grade_entropy = grade_spread(grade_probs, self.config.score_range)

        loss = None
        if labels is not None:
            labels = labels.to(score.device, score.dtype).view(-1)
            loss = F.l1_loss(score, labels) if self.config.loss_type == "l1" else F.mse_loss(score, labels)

        return AGQGOutput(
            loss=loss,
            score=score,
            grade_probs=grade_probs,
            ability=ability,
            difficulties=difficulties,
            discrimination=discrimination,
            similarities=similarities.float(),
            image_embeds=image_embeds,
            grade_std=grade_std,
            grade_entropy=grade_entropy,
        )

    # --- views -------------------------------------------------------------------------------------

    def view_protocol(self, override: Any = None) -> ViewProtocol:
        """The view protocol in force: `override` (a `ViewProtocol`, its dict or a short spec such as
        `"crops:15"`) or the model's own `config.view_protocol`, with the crop size left open filled in with
        the vision tower's input size."""
        protocol = ViewProtocol.parse(override if override is not None else self.config.view_protocol)
        return protocol.with_crop_size(self.image_size)

    def pixel_spec(self) -> PixelSpec | None:
        """The arithmetic of this model's image processor (`PixelSpec`), or None when it cannot be reproduced."""
        return PixelSpec.from_image_processor(self.image_processor or self.default_image_processor())

    def score_pixels(
        self,
        pixels: torch.Tensor,
        prompt: str | list[str] | None = None,
        views: Any = None,
        quantize: bool = False,
        **forward_kwargs: Any,
    ) -> AGQGOutput:
        r"""Scores images given as pixel tensors, differentiably: a quality objective or reward.

        The view protocol (`config.view_protocol`, or `views`) and the image processor's arithmetic (`PixelSpec`:
        resize, centre crop, normalisation) run in torch (`views_agqg.tensor_views`), then `forward`; gradients
        flow from every output back to `pixels`. `resize` reproduces the processor, `crops` its grid crops and
        `ipce` IPCE's patches (the patch grid is fixed by the image size, so choosing patches is indexing).

        The resize is torch's antialiased `F.interpolate` with the processor's filter (bicubic for CLIP, SigLIP's
        own), modelled on PIL's: the pipeline's PIL resize rounds to 8 bits after each pass and clips overshoot,
        this one stays in float (overshoot clipped to [0, 1]) unless `quantize=True`, which rounds each pass to 8
        bits as PIL does (straight-through gradients). Where no resize happens (an image already at the processor's
        size) the two agree to float rounding; docs/differentiable.md measures the rest: trained models can react
        to the rounding by a few hundredths of a grade, which `quantize=True` mostly removes.

        Args:
            pixels: float (B, 3, H, W) RGB in [0, 1], any H and W (equal within the batch), on the model's device.
            prompt: Generation prompt(s) for alignment-aware grading: one string for the whole batch or one per
                image (needs the model's tokenizer).
            views: A view protocol spec overriding the model's (`"resize"`, `"crops:15"`, `"ipce"`, ...).
            quantize: Round resized pixels to 8 bits as the PIL pipeline does (forward only; gradients pass straight
                through): the pipeline's score for 8-bit images, where the default float path is smoother.
            **forward_kwargs: Passed to `forward` (e.g. `labels`).

        Returns:
            `forward`'s `AGQGOutput` for the B images (score, grade_probs, ability, grade_std, ...).
        """
        if pixels.dim() != 4 or pixels.shape[1] != 3 or not pixels.is_floating_point():
            raise ValueError(f"pixels must be a float (B, 3, H, W) tensor in [0, 1], got {tuple(pixels.shape)}")
        protocol = self.view_protocol(views)
        spec = self.pixel_spec()
        if spec is None:
            raise ValueError("score_pixels needs an image processor whose arithmetic PixelSpec reproduces")
        view_pixels = tensor_views(pixels, protocol, spec, quantize)
        if prompt is not None:
            prompts = [prompt] * pixels.shape[0] if isinstance(prompt, str) else list(prompt)
            if len(prompts) != pixels.shape[0]:
                raise ValueError(f"{len(prompts)} prompts for {pixels.shape[0]} images")
            tokens = self.tokenize_alignment_prompts(self.tokenizer, prompts)
            forward_kwargs.update({name: value.to(pixels.device) for name, value in tokens.items()})
        return self(
            pixel_values=view_pixels,
            num_views=protocol.num_views(),
            view_aggregation=protocol.aggregation,
            return_dict=True,
            **forward_kwargs,
        )

    # --- construction, saving and loading ---------------------------------------------------------

    def default_image_processor(self) -> Any:
        """The backbone family's standard preprocessing at this backbone's input size (CLIP: shorter-side resize
        and centre crop; SigLIP and SigLIP 2: fixed-size resize, see `BackboneAdapter.default_image_processor`)."""
        return self.backbone_adapter.default_image_processor(self.config.backbone_config)

    @classmethod
    def from_backbone(
        cls,
        name_or_path: str | Path | PreTrainedModel,
        *,
        image_processor: Any = None,
        tokenizer: Any = None,
        revision: str | None = None,
        cache_dir: str | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        **config_overrides: Any,
    ) -> AGQGForImageQualityAssessment:
        """Builds an AGQG scorer around a dual-encoder checkpoint, keeping its weights and preprocessing.

        Backbones: `CLIPModel`, `SiglipModel` (SigLIP and SigLIP 2's fixed-resolution checkpoints) and, where the
        installed transformers has it, `Siglip2Model` (SigLIP 2 NaFlex; its NaFlex processor becomes the fixed-size
        one of `Siglip2Adapter.adapt_image_processor`). The family is read from the checkpoint's config.

        The tokenizer is loaded with `AutoTokenizer` (the one transformers pairs with the checkpoint: CLIP's BPE,
        SigLIP's SentencePiece, SigLIP 2's Gemma tokenizer, ...), the image processor by its saved
        `image_processor_type`.

        Args:
            name_or_path: A Hub id (e.g. `"openai/clip-vit-base-patch16"`, `"google/siglip-base-patch16-224"`), a
                local folder, or a model instance (then pass `tokenizer`, and `image_processor` unless the
                family's default suits).
            image_processor: Overrides the processor the checkpoint came with.
            tokenizer: Overrides the tokenizer the checkpoint came with.
            revision: Hub revision of the checkpoint.
            cache_dir: Hub cache folder.
            token: Hub token.
            local_files_only: Never download.
            **config_overrides: `AGQGConfig` fields (`grading`, `score_range`, `grade_names`, ...).
        """
        hub_kwargs = {
            "revision": revision,
            "cache_dir": cache_dir,
            "token": token,
            "local_files_only": local_files_only,
        }
        if isinstance(name_or_path, nn.Module):
            backbone = name_or_path
            model_type = backbone_type_of(backbone)
        else:
            from transformers import AutoConfig

            model_type = AutoConfig.from_pretrained(name_or_path, **hub_kwargs).model_type
            backbone = backbone_classes(model_type)[1].from_pretrained(name_or_path, **hub_kwargs)
            image_processor = image_processor or _load_image_processor(name_or_path, hub_kwargs)
            tokenizer = tokenizer or _load_tokenizer(name_or_path, hub_kwargs, auto=True)
        if tokenizer is None:
            raise ValueError(f"no tokenizer found for {name_or_path!r}: pass tokenizer=... to build the grade prompts")
        config = AGQGConfig(backbone_config=backbone.config.to_dict(), **config_overrides)
        model = cls(config)
        model.backbone.load_state_dict(backbone.state_dict())
        adapter = adapter_for(model_type)
        model.image_processor = adapter.adapt_image_processor(image_processor, config.backbone_config)
        model.image_processor = model.image_processor or model.default_image_processor()
        model.tokenizer = tokenizer
        model.set_grade_prompts(tokenizer)
        model.eval()
        return model

    @classmethod
    def from_clip(cls, name_or_path: str | Path | PreTrainedModel, **kwargs: Any) -> AGQGForImageQualityAssessment:
        """`from_backbone` under its CLIP name (it accepts every supported backbone): a Hub id such as
        `"openai/clip-vit-base-patch16"`, a local folder, or a `CLIPModel` (then pass `tokenizer=`)."""
        return cls.from_backbone(name_or_path, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *args: Any, **kwargs: Any) -> Any:
        """`PreTrainedModel.from_pretrained`, then the image processor and tokenizer saved beside the weights.

        Folders saved before other backbones were supported (`clip_config`, weights under `clip.`) load as they
        are: the config reads `clip_config` into `backbone_config`, and the backbone is still the submodule `clip`."""
        loaded = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        hub_keys = ("revision", "cache_dir", "token", "local_files_only", "subfolder", "force_download", "proxies")
        hub_kwargs = {k: kwargs[k] for k in hub_keys if k in kwargs}
        model.image_processor = _load_image_processor(pretrained_model_name_or_path, hub_kwargs)
        model.tokenizer = _load_tokenizer(pretrained_model_name_or_path, hub_kwargs)
        return loaded

    def save_pretrained(self, save_directory: str | Path, *args: Any, **kwargs: Any) -> None:
        """Writes a complete remote-code folder: config with `auto_map` and `custom_pipelines`, every file of
        `REMOTE_CODE_FILES`, `model.safetensors` with fresh grade-text embeddings, the image-processor config and
        the tokenizer files when there is a tokenizer."""
        if self._grade_embeds_stale:
            self.refresh_grade_text_embeds()
        self.config.custom_pipelines = {
            PIPELINE_TASK: {
                "impl": f"{Path(PIPELINE_FILE).stem}.{PIPELINE_CLASS}",
                "pt": ["AutoModel"],
                "tf": [],
                "type": "image",
            }
        }
        super().save_pretrained(save_directory, *args, **kwargs)
        if not kwargs.get("is_main_process", True):
            return
        save_directory = Path(save_directory)
        for filename in REMOTE_CODE_FILES:
            # Contents only, into a new file: it gets the user's umask, as every other file here (shutil.copy
            # would give it the mode of the installed source file, and so does transformers 4.x's own copy of the
            # auto_map files, which copyfile into the existing file would keep).
            (save_directory / filename).unlink(missing_ok=True)
            shutil.copyfile(Path(__file__).with_name(filename), save_directory / filename)
        (self.image_processor or self.default_image_processor()).save_pretrained(save_directory)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(save_directory)
        _match_weight_file_modes(save_directory)


def _match_weight_file_modes(folder: Path) -> None:
    """Gives the weight files the permissions of `config.json`, i.e. of every other file of the folder.

    safetensors writes through a private temporary file, so `model.safetensors` came out 0600 while every other
    file followed the user's umask (0644 by default): a folder shared with a group, or served read-only, then had
    unreadable weights. `config.json` is written with a plain `open`, so its mode is what the umask gives.
    """
    config = folder / "config.json"
    if not config.is_file():
        return
    mode = config.stat().st_mode & 0o777
    for path in [*folder.glob("*.safetensors"), *folder.glob("*.safetensors.index.json")]:
        if path.stat().st_mode & 0o777 != mode:
            path.chmod(mode)


_IMAGE_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "spiece.model", "tokenizer.model")


def _has_any_file(name_or_path: Any, filenames: tuple[str, ...], hub_kwargs: dict[str, Any]) -> bool:
    folder = Path(name_or_path) / hub_kwargs.get("subfolder", "")
    if folder.is_dir():
        return any((folder / name).is_file() for name in filenames)
    from transformers.utils import cached_file

    for name in filenames:
        found = cached_file(
            name_or_path,
            name,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
            **hub_kwargs,
        )
        if found is not None:
            return True
    return False


def _read_json(name_or_path: Any, filename: str, hub_kwargs: dict[str, Any]) -> dict[str, Any] | None:
    import json

    from transformers.utils import cached_file

    path = cached_file(
        name_or_path,
        filename,
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
        **hub_kwargs,
    )
    if path is None:
        return None
    value = json.loads(Path(path).read_text(encoding="utf-8"))
    return value if isinstance(value, dict) else None


def _load_image_processor(name_or_path: Any, hub_kwargs: dict[str, Any]) -> Any:
    """The image processor saved with a checkpoint, by the class its `image_processor_type` names (CLIP's,
    SigLIP's, SigLIP 2's, ...; PIL-backed where transformers 5 has no torchvision); None when it has none.

    transformers 5 may save a whole processor as `processor_config.json` with the image processor nested under
    "image_processor", which transformers 4.x cannot read: that dict is read here."""
    if not _has_any_file(name_or_path, _IMAGE_PROCESSOR_FILES, hub_kwargs):
        return None
    settings = _read_json(name_or_path, "preprocessor_config.json", hub_kwargs)
    if settings is not None:
        klass = image_processor_class_for(settings.get("image_processor_type")) or _default_image_processor_class()
        try:
            return klass.from_pretrained(name_or_path, **hub_kwargs)
        except (OSError, ValueError, TypeError) as error:
            logger.warning(f"could not load {klass.__name__} from {name_or_path}: {error}")
    nested = (_read_json(name_or_path, "processor_config.json", hub_kwargs) or {}).get("image_processor")
    if not isinstance(nested, dict):
        return None
    klass = image_processor_class_for(nested.get("image_processor_type")) or _default_image_processor_class()
    return klass(**{k: v for k, v in nested.items() if k != "image_processor_type"})


def _default_image_processor_class() -> type:
    """CLIP's image processor class (PIL-backed where transformers 5 has no torchvision)."""
    return image_processor_class_for("CLIPImageProcessor")


def _load_tokenizer(name_or_path: Any, hub_kwargs: dict[str, Any], *, auto: bool = False) -> Any:
    """The tokenizer saved with a checkpoint; None when it has no tokenizer files.

    `auto=True` (a backbone checkpoint, `from_backbone`): `AutoTokenizer`, i.e. the tokenizer transformers pairs
    with that checkpoint (CLIP's BPE, SigLIP's SentencePiece, SigLIP 2's Gemma tokenizer, ...). Otherwise (an AGQG
    folder, whose config is remote code that `AutoTokenizer` would ask to run) the class its tokenizer_config.json
    names, the fast variant first where there is one; a class this transformers lacks falls back to the generic
    `PreTrainedTokenizerFast` over tokenizer.json, and a config naming none to CLIP's tokenizer classes.

    The files are looked for first: transformers 5 builds an empty tokenizer rather than fail when a folder has
    none."""
    if not _has_any_file(name_or_path, _TOKENIZER_FILES, hub_kwargs):
        return None
    from transformers import AutoTokenizer
    from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

    if auto:
        try:
            return AutoTokenizer.from_pretrained(name_or_path, **hub_kwargs)
        except (OSError, ValueError, TypeError, KeyError, ImportError) as error:
            logger.warning(f"could not load the tokenizer of {name_or_path} with AutoTokenizer: {error}")
    saved = (_read_json(name_or_path, "tokenizer_config.json", hub_kwargs) or {}).get("tokenizer_class")
    names = []
    if saved:
        base = saved.removesuffix("Fast")
        names += [f"{base}Fast", base, "PreTrainedTokenizerFast"]
    names += ["CLIPTokenizerFast", "CLIPTokenizer"]
    for name in dict.fromkeys(names):
        klass = tokenizer_class_from_name(name)
        if klass is None:
            continue
        try:
            return klass.from_pretrained(name_or_path, **hub_kwargs)
        except (OSError, ValueError, TypeError, KeyError, ImportError) as error:
            logger.warning(f"could not load {name} from {name_or_path}: {error}")
    return None


AGQGForImageQualityAssessment.register_for_auto_class("AutoModel")
