"""Host frameworks AGQG plugs into, as documented configurations of the one model class.

    python training/hosts.py --list
    python training/hosts.py --host coop --grading softmax --dataset synthetic --steps 200 --output_dir runs/coop

Each host is a YAML file in `training/configs/hosts/` (or any file of the same shape):

    host: coop                      # name
    description: "..."
    grading: agqg                   # softmax | agqg: the only switch between the baseline and AGQG
    model: {AGQGConfig fields}      # prompt sets, multitask prompts, learnable prompts ...
    multitask: false                # LIQE only: scene x distortion x quality prompts (LIQE's word lists)
    train:
      trainable: all | vision | prompts   # full fine-tuning / frozen text tower / frozen CLIP (prompts + head)
      loss_weights: {l1: 1.0}             # training.losses.compute_loss names (fidelity = LIQE's loss)
      train_views: resize | crop+resize   # crop+resize: a random crop and the resized whole image (IPCE)
      eval_crops: 0                       # N > 0: N evenly spaced crops + the resized whole image (IPCE)
      generation_prompts: false           # per-image alignment prompts from the `prompt` column (IPCE)
      learning_rate: 2.0e-3               # head and learnable prompts
      backbone_learning_rate: 1.0e-5      # CLIP towers, where they train

The five shipped hosts are `clip-iqa`, `liqe`, `ipce`, `coop` and `maple` (see `docs/hosts.md`). Switching
`grading` changes only the grading head: the same seed gives the same CLIP, prompts and data order.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __name__ == "__main__" and not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from training.common import ensure_package_importable

    ensure_package_importable(__file__)

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

HOST_CONFIG_DIR = Path(__file__).resolve().parent / "configs" / "hosts"
HOST_NAMES = ("clip-iqa", "liqe", "ipce", "coop", "maple")
GRADINGS = ("softmax", "agqg")
TRAINABLE = ("all", "vision", "prompts")
TRAIN_VIEWS = ("resize", "crop+resize")
# LIQE's scene and distortion vocabularies (Zhang et al., CVPR 2023), used when a host sets `multitask: true`.
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
_TOP_LEVEL_KEYS = {"host", "description", "grading", "model", "multitask", "train"}


@dataclass
class HostPreset:
    """One host framework: the model options and the training-side settings (fields as in the YAML files)."""

    host: str
    description: str = ""
    grading: str = "agqg"
    model: dict[str, Any] = field(default_factory=dict)
    multitask: bool = False
    trainable: str = "all"
    loss_weights: dict[str, float] = field(default_factory=lambda: {"l1": 1.0})
    train_views: str = "resize"
    eval_crops: int = 0
    generation_prompts: bool = False
    learning_rate: float = 2e-3
    backbone_learning_rate: float = 1e-5

    def with_grading(self, grading: str) -> HostPreset:
        """The same host with another grading; nothing else changes."""
        if grading not in GRADINGS:
            raise ValueError(f"grading={grading!r}; expected one of {GRADINGS}")
        return dataclasses.replace(self, grading=grading)

    def model_overrides(self) -> dict[str, Any]:
        """`AGQGConfig` fields of this host (without `score_range`, which comes from the dataset)."""
        overrides = {**self.model, "grading": self.grading}
        if self.multitask:
            overrides.setdefault("multitask_scenes", list(LIQE_SCENES))
            overrides.setdefault("multitask_distortions", list(LIQE_DISTORTIONS))
        return overrides

    def vision_trains(self) -> bool:
        """Whether the image embeddings change while training (then they cannot be cached)."""
        return self.trainable in ("all", "vision") or self.model.get("prompt_learning") == "maple"


_TRAIN_KEYS = {f.name for f in dataclasses.fields(HostPreset)} - _TOP_LEVEL_KEYS


def load_host(name_or_path: str | Path, **overrides: Any) -> HostPreset:
    """Reads a host YAML: a shipped name (`coop`) or a file path. `overrides` replace fields (e.g. `grading`).

    Raises:
        FileNotFoundError: no such host or file (the message lists the shipped hosts).
        ValueError: an unknown key or a bad value; the message names the file and the field.
    """
    path = Path(name_or_path)
    if not path.suffix:
        path = HOST_CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"host {name_or_path!r}: {path} not found; shipped hosts are {', '.join(HOST_NAMES)}")
    loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a mapping, got {type(loaded).__name__}")
    unknown = sorted(set(loaded) - _TOP_LEVEL_KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; expected among {sorted(_TOP_LEVEL_KEYS)}")
    train = loaded.pop("train", None) or {}
    if not isinstance(train, dict):
        raise ValueError(f"{path}: 'train' must be a mapping")
    unknown = sorted(set(train) - _TRAIN_KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown train key(s) {unknown}; expected among {sorted(_TRAIN_KEYS)}")
    if "host" not in loaded:
        raise ValueError(f"{path}: missing 'host' (the host's name)")
    preset = HostPreset(**loaded, **train)
    preset = dataclasses.replace(preset, **overrides)
    _validate(preset, path)
    return preset


def _validate(preset: HostPreset, source: Path | str) -> None:
    if preset.grading not in GRADINGS:
        raise ValueError(f"{source}: grading={preset.grading!r}; expected one of {GRADINGS}")
    if preset.trainable not in TRAINABLE:
        raise ValueError(f"{source}: train.trainable={preset.trainable!r}; expected one of {TRAINABLE}")
    if preset.train_views not in TRAIN_VIEWS:
        raise ValueError(f"{source}: train.train_views={preset.train_views!r}; expected one of {TRAIN_VIEWS}")
    if int(preset.eval_crops) < 0:
        raise ValueError(f"{source}: train.eval_crops={preset.eval_crops} must be >= 0")
    if not isinstance(preset.model, dict):
        raise ValueError(f"{source}: 'model' must be a mapping of AGQGConfig fields")
    from training.losses import LOSS_NAMES

    unknown = sorted(set(preset.loss_weights) - set(LOSS_NAMES))
    if unknown:
        raise ValueError(f"{source}: train.loss_weights has unknown loss(es) {unknown}; expected among {LOSS_NAMES}")
    from modeling_agqg import AGQGConfig

    try:
        AGQGConfig(**preset.model_overrides())
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source}: model: {error}") from error


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


@dataclass
class TinyClipOptions:
    """Shapes of the tiny random CLIP built offline (`clip="tiny"`)."""

    image_size: int = 32
    patch_size: int = 8
    hidden_size: int = 32
    num_layers: int = 2
    num_heads: int = 2
    projection_dim: int = 32


def build_host_model(
    preset: HostPreset,
    *,
    clip: str = "tiny",
    score_range: Sequence[float] = (1.0, 5.0),
    seed: int = 0,
    tiny: TinyClipOptions | None = None,
    tokenizer: Any = None,
) -> Any:
    """An `AGQGForImageQualityAssessment` configured as `preset`, around a tiny random CLIP (`clip="tiny"`,
    seeded by `seed`) or a CLIP checkpoint (Hub id or folder). MaPLe's `prompt_depth` is capped at the towers'
    depth. The same seed gives the same CLIP and prompts under either grading."""
    from transformers import CLIPConfig, CLIPModel

    from modeling_agqg import AGQGForImageQualityAssessment
    from modeling_agqg.tools.offline import clip_character_tokenizer, tiny_clip_config

    overrides = {**preset.model_overrides(), "score_range": [float(v) for v in score_range]}
    if clip == "tiny":
        tiny = tiny or TinyClipOptions()
        tokenizer = tokenizer or clip_character_tokenizer()
        clip_config = tiny_clip_config(
            tokenizer,
            image_size=tiny.image_size,
            patch_size=tiny.patch_size,
            hidden_size=tiny.hidden_size,
            num_hidden_layers=tiny.num_layers,
            num_attention_heads=tiny.num_heads,
            projection_dim=tiny.projection_dim,
        )
    else:
        clip_config = CLIPConfig.from_pretrained(clip)
    depth = min(clip_config.text_config.num_hidden_layers, clip_config.vision_config.num_hidden_layers)
    if overrides.get("prompt_learning") == "maple" and overrides.get("prompt_depth", 1) > depth:
        overrides["prompt_depth"] = depth
    torch.manual_seed(seed)
    if clip == "tiny":
        return AGQGForImageQualityAssessment.from_clip(CLIPModel(clip_config), tokenizer=tokenizer, **overrides)
    return AGQGForImageQualityAssessment.from_clip(clip, tokenizer=tokenizer, **overrides)


def apply_trainable(model: Any, preset: HostPreset) -> None:
    """Freezes what the host keeps fixed: `vision` freezes the text tower (cached prompt features), `prompts`
    the whole CLIP (the learnable prompts and the grading head train)."""
    from training.common import freeze_parameters

    model.requires_grad_(True)
    freeze_parameters(
        model, freeze_backbone=preset.trainable == "prompts", freeze_text_tower=preset.trainable == "vision"
    )


# ---------------------------------------------------------------------------------------------
# Data: views and generation prompts
# ---------------------------------------------------------------------------------------------


def generation_prompt(row: dict[str, Any]) -> str:
    """The image's generation prompt: the `prompt` column, else `source` (the synthetic dataset has no
    prompts; its source photo's name stands in). Raises naming the columns when there is neither."""
    for column in ("prompt", "source"):
        value = row.get(column)
        if value is not None and str(value).strip():
            return str(value)
    raise ValueError(f"row has no generation prompt: need a non-empty 'prompt' column (columns: {sorted(row)})")


class HostCollator:
    """Rows `{"image": PIL, "mos", "mos_std"?, "prompt"?}` -> one batch of views for `preset`.

    Views per image: `resize` -> the model's image processor (1 view); training with `crop+resize` -> a random
    S x S crop (images smaller than S are upscaled first) and the whole image resized to S x S (2 views);
    evaluation with `eval_crops = N > 0` -> N evenly spaced crops and the resized whole image (N + 1 views,
    `training.evaluate.MultiCropCollator`). The last view of an image is always the whole image.

    Returns `pixel_values` (B * views, 3, S, S), `labels` and `mos_std` (B,), `views` (int), and with generation
    prompts `input_ids`/`attention_mask` (B * views, K, L).
    """

    def __init__(
        self, model: Any, preset: HostPreset, *, train: bool, generator: torch.Generator | None = None
    ) -> None:
        from training.evaluate import MultiCropCollator

        self.model = model
        self.preset = preset
        self.processor = model.image_processor or model.default_image_processor()
        self.size = int(model.config.clip_config.vision_config.image_size)
        self.generator = generator
        if train:
            self.views = 2 if preset.train_views == "crop+resize" else 1
        else:
            self.views = int(preset.eval_crops) + 1 if preset.eval_crops else 1
        self.multi_crop = MultiCropCollator(self.processor, self.size, max(int(preset.eval_crops), 1))
        self.train = train
        self.mean = torch.tensor(self.processor.image_mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(self.processor.image_std, dtype=torch.float32).view(3, 1, 1)

    def _normalise(self, image: Any) -> torch.Tensor:
        array = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32).copy()).permute(2, 0, 1)
        return (array / 255.0 - self.mean) / self.std

    def _random_crop_and_whole(self, image: Any) -> list[torch.Tensor]:
        from modeling_agqg.views_agqg import Image

        size, shorter = self.size, min(image.size)
        if shorter < size:
            scale = size / shorter
            image = image.resize((max(size, round(image.width * scale)), max(size, round(image.height * scale))))
        left = int(torch.randint(0, image.width - size + 1, (1,), generator=self.generator))
        top = int(torch.randint(0, image.height - size + 1, (1,), generator=self.generator))
        crop = image.crop((left, top, left + size, top + size))
        return [self._normalise(crop), self._normalise(image.resize((size, size), Image.BICUBIC))]

    def _processed(self, rows: list[dict[str, Any]]) -> torch.Tensor:
        """The image processor's output per row, (B, 3, S, S). Rows made by `decode_rows` keep it (key
        `_pixels_<S>`), so runs that share rows preprocess each image once."""
        from modeling_agqg import load_image_file, rgb_pixel_values

        key = f"_pixels_{self.size}"
        cacheable = all(row.get("_cache_pixels") for row in rows)
        missing = [row for row in rows if not cacheable or key not in row]
        if missing:
            images = [load_image_file(row["image"]) for row in missing]
            computed = rgb_pixel_values(self.processor, images)
            if not cacheable:
                return computed
            for row, pixels in zip(missing, computed, strict=True):
                row[key] = pixels
        return torch.stack([row[key] for row in rows])

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        from modeling_agqg import load_image_file

        if self.views == 1:
            pixel_values = self._processed(rows)
        else:
            images = [load_image_file(row["image"]) for row in rows]
            make_views = self._random_crop_and_whole if self.train else self.multi_crop.views
            pixel_values = torch.stack([view for image in images for view in make_views(image)])
        std = [row.get("mos_std") for row in rows]
        batch: dict[str, Any] = {
            "pixel_values": pixel_values,
            "labels": torch.tensor([float(row["mos"]) for row in rows], dtype=torch.float32),
            "mos_std": torch.tensor([math.nan if s is None else float(s) for s in std], dtype=torch.float32),
            "views": self.views,
        }
        if self.preset.generation_prompts:
            prompts = [generation_prompt(row) for row in rows for _ in range(self.views)]
            batch.update(self.model.tokenize_alignment_prompts(self.model.tokenizer, prompts))
        return batch


def _model_inputs(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {k: batch[k] for k in ("pixel_values", "input_ids", "attention_mask") if k in batch}


# ---------------------------------------------------------------------------------------------
# Training and prediction
# ---------------------------------------------------------------------------------------------


def _can_cache_image_embeds(preset: HostPreset) -> bool:
    return not preset.vision_trains() and preset.train_views == "resize" and not preset.generation_prompts


def train_host(
    model: Any,
    preset: HostPreset,
    rows: Sequence[dict[str, Any]],
    *,
    steps: int,
    batch_size: int = 32,
    seed: int = 0,
    weight_decay: float = 0.01,
    warmup_ratio: float = 0.1,
    max_grad_norm: float = 1.0,
    progress: bool = True,
) -> list[float]:
    """Trains `model` as `preset` says for `steps` AdamW steps (cosine schedule with warmup) on `rows`.

    Batches are drawn from a seeded permutation per epoch, so two runs with the same seed see the same data
    in the same order whatever the grading. With a frozen vision tower (and no crops or per-image prompts)
    the image embeddings are computed once and only the text side and head run per step. The loss is
    `training.losses.compute_loss` with the host's weights; with several views per image each view carries the
    image's label. Returns the loss of every step.
    """
    from transformers import get_scheduler

    from training.common import parameter_groups
    from training.losses import compute_loss

    if steps < 1 or not rows:
        raise ValueError(f"train_host needs steps >= 1 and training rows, got steps={steps}, {len(rows)} rows")
    apply_trainable(model, preset)
    groups = parameter_groups(
        model,
        head_lr=preset.learning_rate,
        backbone_lr=preset.backbone_learning_rate,
        weight_decay=weight_decay,
    )
    optimizer = torch.optim.AdamW(groups)
    scheduler = get_scheduler(
        "cosine", optimizer=optimizer, num_warmup_steps=int(warmup_ratio * steps), num_training_steps=steps
    )
    generator = torch.Generator().manual_seed(seed)
    collate = HostCollator(model, preset, train=True, generator=generator)
    cached = None
    if _can_cache_image_embeds(preset):
        model.eval()
        with torch.no_grad():
            cached = torch.cat(
                [
                    model.get_image_embeds(collate(list(rows[i : i + 128]))["pixel_values"])
                    for i in range(0, len(rows), 128)
                ]
            )
    labels_all = torch.tensor([float(row["mos"]) for row in rows])
    std_all = torch.tensor([math.nan if row.get("mos_std") is None else float(row["mos_std"]) for row in rows])
    score_range, num_grades = model.config.score_range, model.config.num_grades
    model.train()
    losses: list[float] = []
    order = torch.empty(0, dtype=torch.long)
    bar = tqdm(range(steps), desc=f"training {preset.host}/{preset.grading}", leave=False, disable=not progress)
    for _ in bar:
        if len(order) < batch_size:
            order = torch.cat([order, torch.randperm(len(rows), generator=generator)])
        index, order = order[:batch_size], order[batch_size:]
        if cached is not None:
            output = model.score_image_embeds(cached[index])
            labels, mos_std = labels_all[index], std_all[index]
        else:
            batch = collate([rows[i] for i in index.tolist()])
            output = model(**_model_inputs(batch))
            labels = batch["labels"].repeat_interleave(batch["views"])
            mos_std = batch["mos_std"].repeat_interleave(batch["views"])
        mos_std = mos_std if bool(torch.isfinite(mos_std).any()) else None
        loss, _ = compute_loss(
            output, labels, mos_std=mos_std, weights=preset.loss_weights, score_range=score_range, num_grades=num_grades
        )
        optimizer.zero_grad()
        loss.backward()
        if max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], max_grad_norm)
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
    model.eval()
    return losses


@torch.no_grad()
def predict_host(
    model: Any, preset: HostPreset, rows: Sequence[dict[str, Any]], *, batch_size: int = 64, progress: bool = True
) -> dict[str, np.ndarray]:
    """Scores `rows` as the host evaluates (multi-crop where `eval_crops` > 0).

    Returns `score` (N,), the mean over an image's views; `grade_probs` (N, K) of the resized whole image
    (the last view: averaging distributions over crops would blur modes into each other); `mos` (N,).
    """
    model.eval()
    collate = HostCollator(model, preset, train=False)
    scores, probs, labels = [], [], []
    for start in tqdm(range(0, len(rows), batch_size), desc="predicting", leave=False, disable=not progress):
        batch = collate(list(rows[start : start + batch_size]))
        output = model(**_model_inputs(batch))
        views = batch["views"]
        scores.append(output.score.float().view(-1, views).mean(1))
        probs.append(output.grade_probs.float().view(-1, views, output.grade_probs.shape[-1])[:, -1])
        labels.append(batch["labels"])
    return {
        "score": torch.cat(scores).numpy(),
        "grade_probs": torch.cat(probs).numpy(),
        "mos": torch.cat(labels).numpy(),
    }


def decode_rows(
    dataset: Any, limit: int | None = None, columns: Sequence[str] = ("mos", "mos_std", "prompt", "source")
) -> list[dict[str, Any]]:
    """The rows of a `datasets.Dataset` as dicts with decoded RGB images, read once (the ablation reuses them
    for every host and grading, and `HostCollator` keeps their preprocessed pixels)."""
    from modeling_agqg import load_image_file

    count = len(dataset) if limit is None else min(limit, len(dataset))
    keep = [c for c in columns if c in dataset.column_names]
    rows = []
    for index in range(count):
        row = dataset[index]
        rows.append({"image": load_image_file(row["image"]), "_cache_pixels": True, **{c: row[c] for c in keep}})
    return rows


# ---------------------------------------------------------------------------------------------
# Command line: train one host
# ---------------------------------------------------------------------------------------------


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Train one host framework (softmax or AGQG grading) and save it.")
    parser.add_argument("--list", action="store_true", help="list the shipped hosts and exit")
    parser.add_argument("--host", help=f"one of {', '.join(HOST_NAMES)} or a host YAML file")
    parser.add_argument("--grading", choices=GRADINGS, help="override the host's grading")
    parser.add_argument("--clip", default="tiny", help="'tiny' (offline random CLIP) or a CLIP checkpoint")
    parser.add_argument("--dataset", default="synthetic", help="'synthetic' or a dataset name for training.data")
    parser.add_argument("--data_root", help="dataset folder (real datasets)")
    parser.add_argument("--split", help="split name/number of the dataset's protocol")
    parser.add_argument("--output_dir", required=False, help="where the model folder and results go")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backbone_learning_rate", type=float, help="override the host's backbone learning rate")
    parser.add_argument("--max_train_samples", type=int)
    parser.add_argument("--max_eval_samples", type=int)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_arg_parser().parse_args(argv)
    if args.list:
        for name in HOST_NAMES:
            preset = load_host(name)
            print(f"{name:9s} {preset.description}")
        return 0
    if not args.host or not args.output_dir:
        print("error: --host and --output_dir are required (or --list)", file=sys.stderr)
        return 2
    overrides: dict[str, Any] = {}
    if args.grading:
        overrides["grading"] = args.grading
    if args.backbone_learning_rate is not None:
        overrides["backbone_learning_rate"] = args.backbone_learning_rate
    try:
        preset = load_host(args.host, **overrides)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from training.ablate import load_ablation_splits, run_one

    splits, score_range = load_ablation_splits(
        args.dataset, args.data_root, args.split, seed=args.seed, cache_dir=Path(args.output_dir) / "data"
    )
    record = run_one(
        preset,
        splits,
        score_range=score_range,
        clip=args.clip,
        steps=args.steps,
        batch_size=args.batch_size,
        seed=args.seed,
        max_train_samples=args.max_train_samples,
        max_eval_samples=args.max_eval_samples,
        save_to=Path(args.output_dir) / "model",
    )
    summary = {k: v for k, v in record.items() if k not in ("grade_probs", "scores", "mos")}
    (Path(args.output_dir) / "results.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
