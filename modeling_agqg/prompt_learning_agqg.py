"""Host-framework text sides for AGQG: learnable prompts (CoOp, MaPLe) and LIQE-style multitask prompts.

The hosts AGQG plugs into differ only in how the K grade-text features and the image features are produced;
the grading (softmax baseline or AGQG head) is the same switch for all of them. This file holds the parts
that are not plain fixed prompts:

* `PromptLearner`: CoOp's learnable context tokens in front of the grade prompts, and MaPLe-style deep
  multi-modal prompts (learnable text prompts in the first J text layers, vision prompts in the first J
  vision layers, each vision prompt a learned linear projection of the text prompt of the same depth).
  It works through forward hooks on the stock backbone submodules (CLIP's, SigLIP's and SigLIP 2's towers share
  the layout `text_model.embeddings.token_embedding`, `{text,vision}_model.encoder.layers`,
  `vision_model.embeddings`; ALIGN's BERT text tower has `text_model.embeddings.word_embeddings`, so CoOp works
  there too, but its convolutional image tower has no tokens for MaPLe's vision prompts), so the backbones' own
  forward passes (which differ between transformers 4.x and 5.x) are reused unchanged.
* `aggregate_variant_similarities`: the per-grade similarity of multitask prompts (scene x distortion x
  grade), whose softmax is the quality marginal of the joint softmax.

This file is Hub remote code: it imports only the standard library, torch and transformers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle


def aggregate_variant_similarities(
    image_embeds: torch.Tensor, variant_embeds: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    r"""Per-grade similarity of multitask prompts.

    With V prompt variants per grade (LIQE: every scene x distortion pair), cosine similarities
    s_kv = v . t_kv and the backbone's logit scale tau, grade k's similarity is

        s_k = (1 / tau) log sum_v exp(tau s_kv),

    so that softmax_k(tau s_k) = sum_v softmax_{k,v}(tau s_kv): the softmax grading over s_k is exactly the
    quality marginal of the joint softmax over all K*V prompts, and tau s_k is the per-grade logit the AGQG
    head reads. It lies in [max_v s_kv, max_v s_kv + log(V) / tau].

    Args:
        image_embeds: Normalised image embeddings, (B, D).
        variant_embeds: Normalised prompt embeddings, (K, V, D).
        logit_scale: tau > 0, shape ().

    Returns:
        s_k, shape (B, K), in float32 or wider.
    """
    dtype = torch.promote_types(image_embeds.dtype, torch.float32)
    scale = logit_scale.to(dtype)
    similarities = torch.einsum("bd,kvd->bkv", image_embeds.to(dtype), variant_embeds.to(dtype))
    return torch.logsumexp(scale * similarities, dim=-1) / scale


class PromptLearner(nn.Module):
    r"""Learnable prompts for the backbone towers (CoOp and MaPLe-style), attached to a `CLIPModel`, `SiglipModel`
    or `Siglip2Model` by hooks.

    **CoOp** (`prompt_learning="coop"`). Every grade prompt is tokenised as
    `[SOS] X_1 ... X_M <grade prompt> [EOS]` with M placeholder words (from position `offset`, 1 after CLIP's
    start token, 0 for tokenizers without one such as SigLIP's); the token embeddings of the placeholders are
    replaced by M learnable context vectors c_1..c_M (shared by all grades), then the position embeddings and
    text transformer run as usual and the feature is read where the backbone reads it (CLIP: [EOS]; SigLIP: the
    last position of the max_length-padded sequence, which attends to the context bidirectionally).

    **MaPLe-style deep multi-modal prompts** (`prompt_learning="maple"`, depth J). The text side is CoOp at
    layer 0 plus fresh learnable prompts P^t_j (M x W_text) that replace the hidden states at the context
    positions at the input of text layers j = 1..J-1. The vision side appends M prompt tokens to the patch
    sequence (after CLIP's patch and position embeddings): P^v_0 = F_0(c) at the input, and P^v_j = F_j(P^t_j)
    replacing them at the input of vision layers j = 1..J-1, where F_j are learned linear maps
    W_text -> W_vision (the coupling that makes the prompts multi-modal). After layer J-1 the prompt tokens
    are processed like any other token. CLIP still reads the image feature at [CLS]; SigLIP's attention-pooling
    head pools over all tokens, the prompt tokens included. SigLIP 2's patch sequences carry no padding mask in
    AGQG (fixed-size views fill the sequence), so the appended tokens need no mask either.

    The text prompts only apply inside `prompting_text()` (the model encodes its grade prompts there), so
    other text inputs, e.g. per-image alignment prompts, go through the plain text tower. The vision prompts
    always apply (MaPLe only).

    Parameters: `context` (M, W_text); MaPLe: `deep_text_prompts` (J-1, M, W_text) and
    `vision_projections` (J linear maps).
    """

    def __init__(self, config: Any, text_width: int, vision_width: int | None) -> None:
        """`vision_width`: the ViT image tower's token width, None for a tower without tokens (ALIGN's)."""
        super().__init__()
        if config.prompt_learning == "maple" and vision_width is None:
            raise ValueError(
                "MaPLe's vision prompts are tokens of a ViT image tower (CLIP, SigLIP, SigLIP 2); this backbone's "
                f"image tower ({config.backbone_config.model_type}) is convolutional and has none: use coop"
            )
        self.method = config.prompt_learning
        self.num_tokens = config.num_context_tokens
        self.depth = config.prompt_depth
        self.init_std = config.context_init_std
        self.offset = int(getattr(config, "context_offset", 1))
        self.context = nn.Parameter(torch.empty(self.num_tokens, text_width))
        self.deep_text_prompts: nn.Parameter | None = None
        self.vision_projections: nn.ModuleList | None = None
        if self.method == "maple":
            self.deep_text_prompts = nn.Parameter(torch.empty(self.depth - 1, self.num_tokens, text_width))
            self.vision_projections = nn.ModuleList(nn.Linear(text_width, vision_width) for _ in range(self.depth))
        self._text_active = False
        self._handles: list[RemovableHandle] = []
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Normal(0, std) prompts and PyTorch's default linear init, drawn from a generator seeded with
        `torch.initial_seed()`: the same seed gives the same prompts whatever else was initialised before
        (with or without a grading head), so switching the grading never changes the prompts."""
        generator = torch.Generator(device="cpu").manual_seed(torch.initial_seed())
        tensors = [self.context] + ([self.deep_text_prompts] if self.deep_text_prompts is not None else [])
        for tensor in tensors:
            tensor.copy_(torch.randn(tensor.shape, generator=generator) * self.init_std)
        if self.vision_projections is not None:
            for projection in self.vision_projections:
                # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias.
                bound = 1.0 / math.sqrt(projection.in_features)
                for tensor in (projection.weight, projection.bias):
                    tensor.copy_((torch.rand(tensor.shape, generator=generator) * 2 - 1) * bound)

    def text_parameters(self) -> list[nn.Parameter]:
        """The parameters the grade-text features depend on (the vision projections are not among them)."""
        return [self.context] + ([self.deep_text_prompts] if self.deep_text_prompts is not None else [])

    # --- attaching to the backbone -------------------------------------------------------------------

    def attach(self, backbone: nn.Module) -> None:
        """Registers the hooks on `backbone`'s submodules (the learner keeps no reference to it, so the
        backbone's weights are not duplicated in the state dict)."""
        text_embeddings = backbone.text_model.embeddings
        # CLIP's and SigLIP's `token_embedding`; BERT's (ALIGN's text tower) `word_embeddings`.
        token_embedding = getattr(text_embeddings, "token_embedding", None) or text_embeddings.word_embeddings
        if self.method == "maple":
            text_layers, vision_layers = backbone.text_model.encoder.layers, backbone.vision_model.encoder.layers
            if self.depth > min(len(text_layers), len(vision_layers)):
                raise ValueError(
                    f"prompt_depth={self.depth} exceeds the towers' depth ({len(text_layers)} text, "
                    f"{len(vision_layers)} vision layers)"
                )
        for handle in self._handles:
            handle.remove()
        self._handles = [token_embedding.register_forward_hook(self._insert_context)]
        if self.method == "maple":
            for depth in range(1, self.depth):
                # partial(bound method) rather than a closure: deepcopy of the model rebinds it to the copy.
                self._handles.append(
                    text_layers[depth].register_forward_pre_hook(partial(self._text_layer_hook, depth))
                )
                self._handles.append(
                    vision_layers[depth].register_forward_pre_hook(partial(self._vision_layer_hook, depth))
                )
            self._handles.append(backbone.vision_model.embeddings.register_forward_hook(self._append_vision_prompts))

    @contextmanager
    def prompting_text(self) -> Iterator[None]:
        """Within this block, text passes use the learnable context (inputs must start with the placeholders)."""
        previous, self._text_active = self._text_active, True
        try:
            yield
        finally:
            self._text_active = previous

    def check_placeholders(self, input_ids: torch.Tensor, placeholder_ids: list[int]) -> int:
        """Finds the M placeholder tokens: they must be the placeholder's single token, at the same position of
        every prompt (after a start token, if the tokenizer adds one). Sets and returns that position (`offset`).
        A tokenizer that pads on the left puts them at a different position in every prompt: refused."""
        if len(placeholder_ids) != 1:
            raise ValueError(
                f"the context placeholder tokenises to {len(placeholder_ids)} tokens {placeholder_ids}; choose a "
                "context_placeholder that is a single token"
            )
        found = (input_ids[0] == placeholder_ids[0]).nonzero()
        offset = int(found[0, 0]) if len(found) else -1
        positions = input_ids[:, offset : offset + self.num_tokens] if offset >= 0 else input_ids[:, :0]
        if positions.shape[1] != self.num_tokens or not bool((positions == placeholder_ids[0]).all()):
            raise ValueError(
                "the tokenised grade prompts do not all start with the context placeholders at the same position "
                "(a tokenizer that pads on the left? set tokenizer.padding_side = 'right' for prompt learning)"
            )
        self.offset = offset
        return offset

    # --- hooks --------------------------------------------------------------------------------------

    def _replace_context(self, hidden: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        prompts = prompts.to(hidden.dtype).unsqueeze(0).expand(hidden.shape[0], -1, -1)
        start, end = self.offset, self.offset + self.num_tokens
        return torch.cat([hidden[:, :start], prompts, hidden[:, end:]], dim=1)

    def _insert_context(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor | None:
        if not self._text_active:
            return None
        return self._replace_context(output, self.context)

    def _text_layer_hook(self, depth: int, module: nn.Module, args: tuple) -> tuple | None:
        if not self._text_active or self.deep_text_prompts is None:
            return None
        return (self._replace_context(args[0], self.deep_text_prompts[depth - 1]), *args[1:])

    def _vision_prompts(self, depth: int) -> torch.Tensor:
        source = self.context if depth == 0 else self.deep_text_prompts[depth - 1]
        return self.vision_projections[depth](source)

    def _append_vision_prompts(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        prompts = self._vision_prompts(0).to(output.dtype).unsqueeze(0).expand(output.shape[0], -1, -1)
        return torch.cat([output, prompts], dim=1)

    def _vision_layer_hook(self, depth: int, module: nn.Module, args: tuple) -> tuple:
        hidden = args[0]
        prompts = self._vision_prompts(depth).to(hidden.dtype).unsqueeze(0).expand(hidden.shape[0], -1, -1)
        return (torch.cat([hidden[:, : -self.num_tokens], prompts], dim=1), *args[1:])
