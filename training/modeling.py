# Copyright 2025 The agqg authors. Licensed under the Apache License, Version 2.0.
"""Building the model a run trains, choosing what trains, and the optimiser's parameter groups.

`build_model` makes the `AGQGForImageQualityAssessment` of the options, from one of three starting points:
a saved AGQG folder (`init_model`), a tiny random CLIP, SigLIP, SigLIP 2 or ALIGN built offline (`clip: tiny`,
`tiny_backbone`, through `modeling_agqg.tools.offline.tiny_agqg_model`, the one tiny-model builder), or a
checkpoint of any of them (`clip`/`backbone`: a Hub id, or a local folder such as the offline-pretrained tiny CLIP
of `training/pretrain_clip.py`) wrapped with `from_backbone`.
`set_trainable` freezes what the run keeps fixed, `set_train_mode` runs the frozen parts as at inference, and
`parameter_groups` gives the head and the backbone their own learning rates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from training.options import TINY_CLIP, ModelOptions

# LIQE's scene and distortion vocabularies (Zhang et al., CVPR 2023), used when `multitask: true`.
LIQE_SCENES = (
    "animal",
    "cityscape",
    "human",
    "indoor scene",
    "landscape",
    "night scene",
    "plant",
    "still-life",
    "others",
)
LIQE_DISTORTIONS = (
    "blur",
    "color-related",
    "contrast",
    "JPEG compression",
    "JPEG2000 compression",
    "noise",
    "overexposure",
    "quantization",
    "under-exposure",
    "spatially-localized",
    "other",
)


def agqg_config_overrides(options: ModelOptions, score_range: Sequence[float], clip_depth: int) -> dict[str, Any]:
    """The `AGQGConfig` fields of a run: the options' own, the MOS scale, LIQE's word lists when `multitask`,
    and MaPLe's `prompt_depth` capped at `clip_depth` (the shallower tower's number of layers)."""
    overrides = {**options.agqg_config_fields(), "score_range": [float(v) for v in score_range]}
    if options.multitask:
        overrides["multitask_scenes"] = list(LIQE_SCENES)
        overrides["multitask_distortions"] = list(LIQE_DISTORTIONS)
    if overrides.get("prompt_learning") == "maple" and overrides.get("prompt_depth", 1) > clip_depth:
        overrides["prompt_depth"] = clip_depth
    return overrides


def _tower_depth(clip_config: Any) -> int:
    return min(clip_config.text_config.num_hidden_layers, clip_config.vision_config.num_hidden_layers)


def build_model(options: ModelOptions, score_range: Sequence[float], *, seed: int) -> Any:
    """The model a run starts from, with the options' grading, prompts and view protocol and the MOS scale
    `score_range` (min, max). Randomly initialised parts (a tiny CLIP, the head, learnable prompts) are drawn
    from `seed`, so two runs that differ only in `grading` start from the same CLIP and prompts."""
    from modeling_agqg import AGQGForImageQualityAssessment

    if options.init_model:
        model = AGQGForImageQualityAssessment.from_pretrained(options.init_model)
        model.config.score_range = [float(v) for v in score_range]
        model.config.view_protocol = options.view_protocol
        return model
    if options.clip == TINY_CLIP:
        from modeling_agqg.tools.offline import tiny_agqg_model

        overrides = agqg_config_overrides(options, score_range, clip_depth=options.tiny_num_layers)
        return tiny_agqg_model(
            backbone=options.tiny_backbone, seed=seed, clip_shapes=options.tiny_clip_shapes(), **overrides
        )
    from transformers import AutoConfig

    clip_depth = _tower_depth(AutoConfig.from_pretrained(options.clip))
    overrides = agqg_config_overrides(options, score_range, clip_depth=clip_depth)
    torch.manual_seed(seed)  # the head and any learnable prompts
    return AGQGForImageQualityAssessment.from_backbone(options.clip, **overrides)


def set_trainable(model: Any, *, freeze_backbone: bool, freeze_text_tower: bool) -> None:
    """Chooses what trains, in place. `freeze_backbone`: the whole backbone (both towers, projections, scale)
    is frozen and only the grading head and any learnable prompts train. `freeze_text_tower`: the text tower and
    its projection are frozen, so the grade-text features are the cached buffers (no text pass per step)."""
    model.requires_grad_(True)
    if freeze_backbone:
        model.clip.requires_grad_(False)
    if freeze_text_tower:  # the text tower and its projection, whatever the backbone calls them
        for module in model.backbone_adapter.text_modules(model.clip):
            module.requires_grad_(False)


def set_train_mode(model: Any) -> None:
    """Training mode for what trains, inference mode for what is frozen: every module none of whose parameters
    trains (a frozen tower, a frozen projection) runs as at inference, so a frozen BatchNorm (ALIGN's image tower)
    keeps its running statistics and a frozen tower's dropout (BERT's) is off. `model.train()` alone would move
    a frozen tower's BatchNorm statistics at every step."""
    model.train()
    for module in model.modules():
        parameters = list(module.parameters())
        if parameters and not any(parameter.requires_grad for parameter in parameters):
            module.eval()


def image_embedding_trains(model: Any) -> bool:
    """Whether anything that shapes the image embedding trains: the vision tower or its projection, or MaPLe's
    vision prompts (learned from the text prompts). When nothing does, the embeddings can be computed once."""
    vision = [p for module in model.backbone_adapter.vision_modules(model.clip) for p in module.parameters()]
    if any(p.requires_grad for p in vision):
        return True
    learner = getattr(model, "prompt_learner", None)
    return bool(
        model.config.prompt_learning == "maple" and learner is not None
        and any(p.requires_grad for p in learner.parameters())
    )  # fmt: skip


def parameter_groups(model: Any, *, head_lr: float, backbone_lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: the backbone (`clip.*`) at `backbone_lr`, everything else (the grading head, learnable
    prompts) at `head_lr`; no weight decay on biases, norms and the logit scale (as the transformers examples do
    for biases and LayerNorm)."""
    groups: dict[tuple[str, bool], list[torch.nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        part = "backbone" if name.startswith("clip.") else "head"
        no_decay = parameter.ndim < 2 or "norm" in name.lower() or "logit_scale" in name
        groups.setdefault((part, no_decay), []).append(parameter)
    result = []
    for (part, no_decay), params in sorted(groups.items()):
        result.append(
            {
                "params": params,
                "lr": head_lr if part == "head" else backbone_lr,
                "weight_decay": 0.0 if no_decay else weight_decay,
                "name": f"{part}{'_no_decay' if no_decay else ''}",
            }
        )
    if not result:
        raise ValueError(
            "no trainable parameters: the backbone is frozen and the model has neither a grading head "
            "(softmax grading) nor learnable prompts"
        )
    return result


def make_adamw(groups: list[dict[str, Any]]) -> torch.optim.AdamW:
    """AdamW over the parameter groups, with the fused kernel where this torch build has one for the parameters'
    device (CPU and CUDA since torch 2.4): one pass over all parameters instead of several, about 4x faster
    for ViT-B/32's 88M parameters on this CPU. Same update rule; falls back to the default implementation."""
    try:
        return torch.optim.AdamW(groups, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups)


class CachedEmbeddingScorer(torch.nn.Module):
    """Scores cached image embeddings: everything `model(pixel_values)` computes after the vision tower.

    Given normalised image embeddings (B*V, D) from `model.get_image_embeds`, `forward` runs
    `model.score_image_embeds`: grade-text features (live when prompts or the text tower train), similarities,
    the grading head or the softmax baseline, the combination of each image's V views, the score. It is a module
    of its own (not a method call) so that Accelerate's data-parallel wrapper sees the call.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        image_embeds: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        num_views: int = 1,
    ) -> Any:
        return self.model.score_image_embeds(image_embeds, input_ids, attention_mask, num_views=num_views)
