"""Offline building blocks: a CLIP tokenizer and tiny CLIP configurations made in code.

No CLIP weights or vocabularies can be downloaded in tests, CI or the offline quickstart, so these
helpers make a real `CLIPTokenizer` over CLIP's byte-level alphabet (no merges: every word is spelt
out character by character) and tiny `CLIPConfig`s that match it. Everything built from them works
unchanged with real checkpoints such as `openai/clip-vit-base-patch16`.
"""

from __future__ import annotations

import json
import tempfile
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
