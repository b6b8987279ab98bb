"""Offline building blocks: a CLIP tokenizer, tiny CLIP configurations and randomly initialised AGQG models,
all made in code.

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


def random_agqg_model(
    clip_config: CLIPConfig | dict[str, Any] | None = None,
    *,
    tokenizer: Any = None,
    seed: int = 0,
    **config_overrides: Any,
) -> Any:
    """An `AGQGForImageQualityAssessment` around a randomly initialised CLIP, seeded, in eval mode.

    The CLIP's weights are drawn after `torch.manual_seed(seed)`, and so are the head's and any learnable
    prompts', so two calls with the same arguments give identical models, and two calls that differ only in
    `grading` give the same CLIP and prompts.

    Args:
        clip_config: The CLIP shapes (a `CLIPConfig` or its dict); default `tiny_clip_config(tokenizer)`. A config
            whose text vocabulary is larger than the tokenizer's (e.g. `CLIPConfig()`, ViT-B/32 shapes) works:
            the tokenizer only uses the first 514 ids.
        tokenizer: The tokenizer of the grade prompts; default `clip_character_tokenizer()`.
        seed: Seed of the random weights.
        **config_overrides: `AGQGConfig` fields (`grading`, `score_range`, `view_protocol`, ...).
    """
    import torch
    from transformers import CLIPModel

    from ..modeling_agqg import AGQGForImageQualityAssessment

    tokenizer = tokenizer if tokenizer is not None else clip_character_tokenizer()
    if clip_config is None:
        clip_config = tiny_clip_config(tokenizer)
    elif isinstance(clip_config, dict):
        clip_config = CLIPConfig(**clip_config)
    torch.manual_seed(seed)
    clip = CLIPModel(clip_config)
    return AGQGForImageQualityAssessment.from_clip(clip, tokenizer=tokenizer, **config_overrides)


def tiny_agqg_model(
    *, tokenizer: Any = None, seed: int = 0, clip_shapes: Mapping[str, int] | None = None, **config_overrides: Any
) -> Any:
    """`random_agqg_model` around a tiny CLIP: the model of the tests, the offline quickstart and the synthetic
    ablation, in eval mode.

    Args:
        tokenizer: Default `clip_character_tokenizer()`.
        seed: Seed of the random weights.
        clip_shapes: `tiny_clip_config` keywords (`image_size`, `patch_size`, `hidden_size`, `num_hidden_layers`,
            `num_attention_heads`, `projection_dim`); the rest keep their defaults (32 px, patch 8, width 32, ...).
        **config_overrides: `AGQGConfig` fields.
    """
    tokenizer = tokenizer if tokenizer is not None else clip_character_tokenizer()
    clip_config = tiny_clip_config(tokenizer, **dict(clip_shapes or {}))
    return random_agqg_model(clip_config, tokenizer=tokenizer, seed=seed, **config_overrides)
