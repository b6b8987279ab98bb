# Copyright 2025 The agqg authors. Licensed under the Apache License, Version 2.0.
"""From dataset rows to model inputs: the views of every image, labels, generation prompts, cached embeddings.

Every image becomes views through `modeling_agqg.views_agqg.make_views`, the function the pipeline, `score()`
and `agqg score` use, with the run's view protocol (`resize`, `crops`, `ipce`): training views with
`train=True` (random crops or patches), evaluation views with `train=False`. A batch lays out the V views of each
image next to each other, and the model combines them (`model(pixel_values, num_views=V)`).

Randomness (training crops, flips, quarter turns) is a pure function of (seed, epoch, row): Accelerate's loaders
fetch one batch ahead, so a running generator's state at a checkpoint would already be past the next batch and a
resumed run would draw other views; a generator made afresh from (seed, epoch, row) for every image does not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

MODEL_INPUT_KEYS = ("pixel_values", "image_embeds", "input_ids", "attention_mask")


def generation_prompt(row: dict[str, Any]) -> str:
    """The image's generation prompt: the `prompt` column, else `source` (the synthetic dataset has no prompts;
    the name of its source photo stands in). Raises naming the columns when there is neither."""
    for column in ("prompt", "source"):
        value = row.get(column)
        if value is not None and str(value).strip():
            return str(value)
    raise ValueError(f"row has no generation prompt: need a non-empty 'prompt' column (columns: {sorted(row)})")


def with_row_index(dataset: Any) -> Any:
    """Adds an int column `row_index` = 0..N-1, the key of every per-image random draw."""
    return dataset.add_column("row_index", list(range(len(dataset))))


def model_inputs(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The entries of a batch the model (or `CachedEmbeddingScorer`) takes; labels and row keys stay out."""
    return {key: batch[key] for key in MODEL_INPUT_KEYS if key in batch}


def _label_tensors(rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """`labels` (B,) float32 MOS and `mos_std` (B,), NaN where a row has none."""
    labels = torch.tensor([float(row["mos"]) for row in rows], dtype=torch.float32)
    std = [row.get("mos_std") for row in rows]
    mos_std = torch.tensor([math.nan if s is None else float(s) for s in std], dtype=torch.float32)
    return {"labels": labels, "mos_std": mos_std}


class _PromptTokens:
    """`input_ids` / `attention_mask` (B, K, L) of each row's generation prompt, or nothing when off."""

    def __init__(self, model: Any, enabled: bool) -> None:
        self.tokenize = model.tokenize_alignment_prompts if enabled else None
        self.tokenizer = model.tokenizer

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if self.tokenize is None:
            return {}
        return self.tokenize(self.tokenizer, [generation_prompt(row) for row in rows])


class ViewCollator:
    """Rows `{"image": PIL or path, "mos", "mos_std"?, "prompt"?, "row_index"?}` -> one batch:

    * `pixel_values` (B*V, 3, S, S): the V views of each image (`make_views` with the protocol), adjacent;
    * `labels` (B,), `mos_std` (B,) (NaN where unknown);
    * with `generation_prompts`, `input_ids` / `attention_mask` (B, K, L) of each image's K alignment prompts.

    Training (`train=True`): random crops or patches drawn from a generator seeded by (seed, epoch, row); optional
    horizontal flips and quarter turns of all of an image's views alike (flip first, then k counter-clockwise
    quarter turns; with both, each of the 8 orientations has probability 1/8). Call `set_epoch` every epoch.
    Anything random needs the `row_index` column (`with_row_index`).
    """

    def __init__(
        self,
        model: Any,
        protocol: Any,
        *,
        train: bool = False,
        seed: int = 0,
        hflip: bool = False,
        rot90: bool = False,
        generation_prompts: bool = False,
    ) -> None:
        self.protocol = protocol
        self.spec = model.pixel_spec()
        self.processor = model.image_processor or model.default_image_processor()
        self.train = train
        self.seed = int(seed)
        self.hflip = hflip and train
        self.rot90 = rot90 and train
        self.epoch = 0
        self.num_views = protocol.num_views(train)
        self.prompt_tokens = _PromptTokens(model, generation_prompts)
        self.random_views = train and protocol.scheme != "resize"

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def view_generator(self, row_index: int) -> torch.Generator:
        """The generator of one image's random views in the current epoch: a pure function of (seed, epoch, row)."""
        state = np.random.SeedSequence([self.seed, self.epoch, int(row_index), 2]).generate_state(1)[0]
        return torch.Generator().manual_seed(int(state))

    def flips(self, row_indices: Sequence[int]) -> torch.Tensor:
        """Boolean (B,): whether each row is flipped in the current epoch."""
        draws = [np.random.default_rng([self.seed, self.epoch, int(i)]).random() for i in row_indices]
        return torch.tensor(draws) < 0.5

    def rotations(self, row_indices: Sequence[int]) -> torch.Tensor:
        """Int (B,): quarter turns (0..3) of each row in the current epoch, drawn independently of the flips."""
        draws = [int(np.random.default_rng([self.seed, self.epoch, int(i), 1]).integers(4)) for i in row_indices]
        return torch.tensor(draws, dtype=torch.long)

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        from modeling_agqg.views_agqg import load_image_file, make_views

        random = self.random_views or self.hflip or self.rot90
        if random and any("row_index" not in row for row in rows):
            raise ValueError("random training views, hflip and rot90 need a 'row_index' column (with_row_index)")
        row_indices = [int(row["row_index"]) for row in rows] if random else []
        views = []
        for position, row in enumerate(rows):
            generator = self.view_generator(row_indices[position]) if self.random_views else None
            image = load_image_file(row["image"])
            views.append(
                make_views(image, self.protocol, self.spec, processor=self.processor, train=self.train,
                           generator=generator)
            )  # fmt: skip
        pixel_values = torch.stack(views)  # (B, V, 3, S, S)
        if self.hflip:
            flip = self.flips(row_indices)
            pixel_values = torch.where(flip[:, None, None, None, None], pixel_values.flip(-1), pixel_values)
        if self.rot90:
            if pixel_values.shape[-1] != pixel_values.shape[-2]:
                raise ValueError(f"rot90 needs square views, got {tuple(pixel_values.shape[-2:])}")
            turns = self.rotations(row_indices)
            pixel_values = torch.stack(
                [torch.rot90(image, int(k), dims=(-2, -1)) for image, k in zip(pixel_values, turns, strict=True)]
            )
        return {"pixel_values": pixel_values.flatten(0, 1), **_label_tensors(rows), **self.prompt_tokens(rows)}


class EmbeddingCollator:
    """Rows with a cached `image_embeds` (D floats, from `add_image_embeds`) -> `image_embeds` (B, D), `labels`,
    `mos_std`, and with `generation_prompts` each row's `input_ids` / `attention_mask` (B, K, L)."""

    def __init__(self, model: Any, *, generation_prompts: bool = False) -> None:
        self.prompt_tokens = _PromptTokens(model, generation_prompts)
        self.num_views = 1

    def set_epoch(self, epoch: int) -> None:
        """Nothing is random here; present so the training loop treats both collators alike."""

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        embeds = torch.stack([torch.as_tensor(row["image_embeds"], dtype=torch.float32) for row in rows])
        return {"image_embeds": embeds, **_label_tensors(rows), **self.prompt_tokens(rows)}


@torch.no_grad()
def add_image_embeds(dataset: Any, model: Any, *, batch_size: int = 64, desc: str = "") -> Any:
    """The cached-embedding dataset: each image's normalised embedding (of its resized view, `make_views` with
    the `resize` protocol) computed once with `datasets.map` into a column `image_embeds` (D floats), the decoded
    images dropped. Training with a frozen image side, the ablation, the tests and the benchmarks all use it.

    Runs on the model's device and in its autocast context if the caller opened one.
    """
    from modeling_agqg.views_agqg import ViewProtocol, load_image_file, make_views

    model.eval()
    device = next(model.parameters()).device
    protocol, spec = ViewProtocol.parse("resize"), model.pixel_spec()
    processor = model.image_processor or model.default_image_processor()

    def embed(batch: dict[str, list[Any]]) -> dict[str, Any]:
        views = [make_views(load_image_file(image), protocol, spec, processor=processor) for image in batch["image"]]
        pixel_values = torch.cat(views).to(device)
        return {"image_embeds": model.get_image_embeds(pixel_values).float().cpu().numpy()}

    drop = [column for column in dataset.column_names if column in ("image", "file")]
    return dataset.map(
        embed,
        batched=True,
        batch_size=batch_size,
        remove_columns=drop,
        desc=desc or "caching image embeddings",
        load_from_cache_file=False,
    )
