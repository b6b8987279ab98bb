"""Offline building blocks: a CLIP tokenizer, tiny CLIP (SigLIP, SigLIP 2, ALIGN) configurations and randomly
initialised AGQG models, all made in code.

No CLIP weights or vocabularies can be downloaded in tests, CI or the offline quickstart, so these
helpers make a real `CLIPTokenizer` over CLIP's byte-level alphabet (no merges: every word is spelt
out character by character), tiny `CLIPConfig`s that match it, and `random_agqg_model` / `tiny_agqg_model`,
the one place where an AGQG model is built around a randomly initialised CLIP (training, the ablation, the
tests and the benchmarks all use it). Everything built from them works unchanged with real checkpoints such
as `openai/clip-vit-base-patch16`.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import transformers
from transformers import CLIPConfig

START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"


def _byte_alphabet() -> list[str]:
    """CLIP's (and GPT-2's) byte-to-unicode table: printable bytes stand for themselves, the other
    bytes for code points from 256 up, so every byte has a visible, non-space character."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for byte in range(256):
        if byte not in table:
            table[byte] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


def clip_character_tokenizer() -> Any:
    """A `CLIPTokenizer` whose vocabulary is CLIP's 256 byte symbols, each also with the end-of-word
    mark `</w>`, plus the start and end tokens (514 tokens). It is CLIP's own tokenisation with an
    empty merge table, so saved files load with stock transformers 4.x and 5.x."""
    alphabet = _byte_alphabet()
    vocab_list = alphabet + [symbol + "</w>" for symbol in alphabet] + [START_TOKEN, END_TOKEN]
    vocab = {token: index for index, token in enumerate(vocab_list)}
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
        (Path(folder) / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
        # Loading from files works on both major versions; transformers 5's constructor would take
        # file paths as a literal vocabulary.
        klass = (
            transformers.CLIPTokenizerFast if transformers.__version__.startswith("4.") else transformers.CLIPTokenizer
        )
        tokenizer = klass.from_pretrained(folder, model_max_length=77)
    return tokenizer


def tiny_clip_config(
    tokenizer: Any,
    *,
    image_size: int = 32,
    patch_size: int = 8,
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 2,
    projection_dim: int = 32,
    max_position_embeddings: int = 77,
) -> CLIPConfig:
    """A small randomly-initialisable `CLIPConfig` whose text side matches `tokenizer`.

    Args:
        tokenizer: The tokenizer whose vocabulary size and special tokens the text tower uses.
        image_size: Input resolution of the vision tower.
        patch_size: ViT patch size; `image_size` must be a multiple of it.
        hidden_size: Width of both towers.
        num_hidden_layers: Depth of both towers.
        num_attention_heads: Attention heads in both towers.
        projection_dim: Size of the joint embedding space.
        max_position_embeddings: Longest token sequence of the text tower.
    """
    tower = {
        "hidden_size": hidden_size,
        "intermediate_size": 4 * hidden_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": num_attention_heads,
    }
    text_config = {
        **tower,
        "vocab_size": len(tokenizer),
        "max_position_embeddings": max_position_embeddings,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    vision_config = {**tower, "image_size": image_size, "patch_size": patch_size}
    return CLIPConfig(text_config=text_config, vision_config=vision_config, projection_dim=projection_dim)


# ---------------------------------------------------------------------------------------------
# Tiny SigLIP and SigLIP 2 backbones
# ---------------------------------------------------------------------------------------------

TINY_BACKBONES = ("clip", "siglip", "siglip2", "align")


def _siglip_text_config(tokenizer: Any, tower: dict[str, int], max_position_embeddings: int) -> dict[str, Any]:
    return {
        **tower,
        "vocab_size": len(tokenizer),
        "max_position_embeddings": max_position_embeddings,
        "projection_size": tower["hidden_size"],
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def tiny_siglip_config(
    tokenizer: Any,
    *,
    image_size: int = 32,
    patch_size: int = 8,
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 2,
    max_position_embeddings: int = 64,
) -> Any:
    """A small randomly-initialisable `SiglipConfig` whose text side matches `tokenizer` (e.g.
    `clip_character_tokenizer()`: SigLIP's text tower reads any vocabulary, it pools the last position of the
    max_length-padded prompt). Both towers have width `hidden_size`, which is also the embedding size; the text
    tower is 64 positions long, as SigLIP's."""
    tower = {
        "hidden_size": hidden_size,
        "intermediate_size": 4 * hidden_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": num_attention_heads,
    }
    return transformers.SiglipConfig(
        text_config=_siglip_text_config(tokenizer, tower, max_position_embeddings),
        vision_config={**tower, "image_size": image_size, "patch_size": patch_size},
    )


def tiny_siglip2_config(
    tokenizer: Any,
    *,
    image_size: int = 32,
    patch_size: int = 8,
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 2,
    max_position_embeddings: int = 64,
) -> Any:
    """A small `Siglip2Config` (NaFlex) like `tiny_siglip_config`: its position-embedding grid is
    (image_size / patch_size)^2 patches, so its views are `image_size` pixels square. Needs transformers >= 4.49."""
    if image_size % patch_size:
        raise ValueError(f"image_size={image_size} must be a multiple of patch_size={patch_size}")
    tower = {
        "hidden_size": hidden_size,
        "intermediate_size": 4 * hidden_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": num_attention_heads,
    }
    return transformers.Siglip2Config(
        text_config=_siglip_text_config(tokenizer, tower, max_position_embeddings),
        vision_config={**tower, "patch_size": patch_size, "num_patches": (image_size // patch_size) ** 2},
    )


# ---------------------------------------------------------------------------------------------
# Tiny ALIGN backbone (a convolutional image tower)
# ---------------------------------------------------------------------------------------------

# CLIP's initial temperature (logit scale ln(1 / 0.07) = 2.659): ALIGN's own default of 1 would start the grade
# logits 14x flatter than the tiny CLIP's.
ALIGN_TINY_TEMPERATURE = 0.07


def tiny_align_config(
    tokenizer: Any,
    *,
    image_size: int = 32,
    patch_size: int | None = None,
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 2,
    projection_dim: int = 32,
    max_position_embeddings: int = 64,
) -> Any:
    """A small randomly-initialisable `AlignConfig`: a BERT text tower over `tokenizer`'s vocabulary (width
    `hidden_size`, `num_hidden_layers` layers, no dropout) and a three-stage EfficientNet image tower.

    The image tower: EfficientNet's stem (3x3 convolution, stride 2, 32 channels), then one mobile inverted
    bottleneck block per stage with 3x3 depthwise convolutions, squeeze-and-excitation and BatchNorm: stage 1
    (expansion 1, stride 1, 32 channels), stages 2 and 3 (expansion 4, stride 2, 3P/4 and P channels for P =
    `projection_dim`; 3P/4 rounded down to a multiple of 8). Its output stride is 8 (a 32-pixel view ends as a
    4x4 map), its spatial mean is the P-dimensional image embedding. It has no patches: `patch_size` is accepted
    and ignored (the tiny options of every backbone share one signature).

    Args:
        tokenizer: The tokenizer whose vocabulary size and pad token the text tower uses (the BERT tower pools
            position 0, so any tokenizer that starts every prompt with the same token fits, e.g.
            `clip_character_tokenizer()`).
        image_size: The side of the views (the processor's resize); any multiple of 8.
        hidden_size, num_hidden_layers, num_attention_heads: The text tower's shape.
        projection_dim: P, the embedding size (the image tower's last channels and the text projection's output).
        max_position_embeddings: Longest token sequence of the text tower.
    """
    if image_size % 8:
        raise ValueError(f"image_size={image_size} must be a multiple of 8, the EfficientNet tower's output stride")
    if projection_dim % 8:
        raise ValueError(f"projection_dim={projection_dim} must be a multiple of 8 (EfficientNet's channel rounding)")
    del patch_size  # no patches: the stride-2 stem and two stride-2 stages cut 8 x 8 pixels per output position
    stage_channels = (32, max(8, 3 * projection_dim // 32 * 8), projection_dim)
    vision_config = {
        "image_size": image_size,
        "width_coefficient": 1.0,
        "depth_coefficient": 1.0,
        "depth_divisor": 8,
        "kernel_sizes": [3, 3, 3],
        "in_channels": [32, stage_channels[0], stage_channels[1]],
        "out_channels": list(stage_channels),
        "strides": [1, 2, 2],
        "num_block_repeats": [1, 1, 1],
        "expand_ratios": [1, 4, 4],
        "depthwise_padding": [],
        "hidden_dim": max(128, image_size),  # the kernel of its mean pool, which must cover the last feature map
        "drop_connect_rate": 0.0,
        "batch_norm_momentum": 0.1,  # PyTorch's convention (ALIGN's 0.99 is TensorFlow's)
    }
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "intermediate_size": 4 * hidden_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": num_attention_heads,
        "max_position_embeddings": max_position_embeddings,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "pad_token_id": tokenizer.pad_token_id,
    }
    return transformers.AlignConfig(
        text_config=text_config,
        vision_config=vision_config,
        projection_dim=projection_dim,
        temperature_init_value=ALIGN_TINY_TEMPERATURE,
    )


def tiny_backbone_config(kind: str, tokenizer: Any, **options: Any) -> Any:
    """The tiny config of a backbone family (`"clip"`, `"siglip"`, `"siglip2"` or `"align"`), see the builders
    above."""
    builders = {
        "clip": tiny_clip_config,
        "siglip": tiny_siglip_config,
        "siglip2": tiny_siglip2_config,
        "align": tiny_align_config,
    }
    if kind not in builders:
        raise ValueError(f"backbone {kind!r}; expected one of {TINY_BACKBONES}")
    return builders[kind](tokenizer, **options)


def tiny_backbone(kind: str, tokenizer: Any, **options: Any) -> Any:
    """A randomly initialised tiny `CLIPModel`, `SiglipModel`, `Siglip2Model` or `AlignModel` (seed torch first for
    reproducible weights)."""
    from modeling_agqg.backbones_agqg import backbone_classes

    config = tiny_backbone_config(kind, tokenizer, **options)
    return backbone_classes(kind)[1](config)


def random_agqg_model(
    backbone_config: Any = None,
    *,
    tokenizer: Any = None,
    seed: int = 0,
    **config_overrides: Any,
) -> Any:
    """An `AGQGForImageQualityAssessment` around a randomly initialised dual encoder, seeded, in eval mode.

    The backbone's weights are drawn after `torch.manual_seed(seed)`, and so are the head's and any learnable
    prompts', so two calls with the same arguments give identical models, and two calls that differ only in
    `grading` give the same backbone and prompts.

    Args:
        backbone_config: The backbone's shapes: a `CLIPConfig`, `SiglipConfig`, `Siglip2Config` or `AlignConfig`
            (or a CLIP config's dict); default `tiny_clip_config(tokenizer)`. A config whose text vocabulary is
            larger than the tokenizer's (e.g. `CLIPConfig()`, ViT-B/32 shapes) works: the tokenizer only uses the
            first 514 ids.
        tokenizer: The tokenizer of the grade prompts; default `clip_character_tokenizer()`.
        seed: Seed of the random weights.
        **config_overrides: `AGQGConfig` fields (`grading`, `score_range`, `view_protocol`, ...).
    """
    import torch

    from ..backbones_agqg import backbone_classes
    from ..modeling_agqg import AGQGForImageQualityAssessment

    tokenizer = tokenizer if tokenizer is not None else clip_character_tokenizer()
    if backbone_config is None:
        backbone_config = tiny_clip_config(tokenizer)
    elif isinstance(backbone_config, dict):
        backbone_config = CLIPConfig(**backbone_config)
    torch.manual_seed(seed)
    backbone = backbone_classes(backbone_config.model_type)[1](backbone_config)
    return AGQGForImageQualityAssessment.from_backbone(backbone, tokenizer=tokenizer, **config_overrides)


def tiny_agqg_model(
    *,
    backbone: str = "clip",
    tokenizer: Any = None,
    seed: int = 0,
    clip_shapes: Mapping[str, int] | None = None,
    **config_overrides: Any,
) -> Any:
    """`random_agqg_model` around a tiny CLIP, SigLIP, SigLIP 2 or ALIGN: the model of the tests, the offline
    quickstart and the synthetic ablation, in eval mode.

    Args:
        backbone: `"clip"`, `"siglip"`, `"siglip2"` or `"align"` (`TINY_BACKBONES`).
        tokenizer: Default `clip_character_tokenizer()`.
        seed: Seed of the random weights.
        clip_shapes: `tiny_backbone_config` keywords (`image_size`, `patch_size`, `hidden_size`,
            `num_hidden_layers`, `num_attention_heads`, and for CLIP `projection_dim`); the rest keep their
            defaults (32 px, patch 8, width 32, ...).
        **config_overrides: `AGQGConfig` fields.
    """
    tokenizer = tokenizer if tokenizer is not None else clip_character_tokenizer()
    config = tiny_backbone_config(backbone, tokenizer, **dict(clip_shapes or {}))
    return random_agqg_model(config, tokenizer=tokenizer, seed=seed, **config_overrides)
