"""Shared pieces of the training scripts: the run configuration (YAML + flags), model construction,
data preparation, the evaluation loop's bookkeeping, scatter plots and `eval_results.json`.

Every option of `TrainConfig` can be set in a YAML file (`--config file.yaml`) and overridden by a flag of
the same name (`--learning_rate 3e-4`); the resolved configuration is saved next to the outputs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
TINY_CLIP = "tiny"
SYNTHETIC = "synthetic"
EVAL_RESULTS_FILE = "eval_results.json"
RESOLVED_CONFIG_FILE = "train_config.yaml"
METRIC_NAMES = ("srcc", "krcc", "plcc", "plcc_logistic", "rmse")


def ensure_package_importable(script_file: str) -> None:
    """Lets `python training/<script>.py` and `accelerate launch training/<script>.py` import `training.*`.

    Running a file puts its folder first on `sys.path`, where `training/evaluate.py` would shadow the
    `evaluate` library (which the metrics module loads); so the folder is replaced by the repository root.
    """
    here = Path(script_file).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or os.getcwd()).resolve() != here]
    root = str(here.parent)
    if root not in sys.path:
        sys.path.insert(0, root)


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """All options of `training/train.py`. YAML keys and flags carry these names."""

    # Run
    output_dir: str = "runs/agqg"
    model_name: str | None = None
    seed: int = 42

    # Model
    clip: str = TINY_CLIP
    """`tiny` (a small random CLIP built offline) or a CLIP checkpoint: Hub id or local folder."""
    init_model: str | None = None
    """A saved AGQG model folder to continue from (instead of building one from `clip`)."""
    grading: str = "agqg"
    grade_names: list[str] | None = None
    prompt_templates: list[str] | None = None
    ability_source: str = "both"
    score_range: list[float] | None = None
    """(min, max) of the MOS scale; by default the scale the dataset loader records."""
    tiny_image_size: int = 64
    tiny_patch_size: int = 8
    tiny_hidden_size: int = 64
    tiny_num_layers: int = 2
    tiny_num_heads: int = 2
    tiny_projection_dim: int = 64

    # Data
    dataset: str = SYNTHETIC
    data_root: str | None = None
    split: str | None = None
    protocol: str | None = None
    target: str | None = None
    synthetic_image_size: int = 64
    synthetic_crops_per_source: int = 10
    """Crops cut from each source photo (each gives 21 images); more crops = more content variety."""
    synthetic_distortions: list[str] | None = None
    """Subset of the synthetic distortions (blur, noise, jpeg, contrast, colour); default all."""
    data_on_bad_rows: str = "error"
    """`error` stops at a missing image or bad score naming the file and row; `skip` drops them and reports a count."""
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    hflip: bool = False
    """Random horizontal flips while training (disables cached image embeddings)."""
    rot90: bool = False
    """Random rotations by 0, 90, 180 or 270 degrees while training (square inputs; with `hflip` all 8
    orientations). Only for labels that do not depend on orientation; disables cached image embeddings."""
    num_workers: int = 0

    # Optimisation
    num_train_epochs: int = 10
    max_train_steps: int | None = None
    per_device_train_batch_size: int = 32
    per_device_eval_batch_size: int = 64
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-3
    """Learning rate of the grading head."""
    backbone_learning_rate: float = 1e-5
    """Learning rate of the CLIP towers."""
    weight_decay: float = 0.01
    lr_scheduler_type: str = "cosine"
    num_warmup_steps: int = 0
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0
    loss_weights: dict[str, float] = field(default_factory=lambda: {"l1": 1.0})
    freeze_backbone: bool = False
    freeze_text_tower: bool = False
    cache_image_embeds: bool = True
    """With a frozen backbone and no augmentation, train the head from image embeddings computed once."""
    mixed_precision: str | None = None
    """`no`, `bf16`, `fp16`, `auto` (bf16 where the CPU or GPU supports it) or unset (the launcher decides)."""
    cpu: bool = False
    fast_cpu_kernels: bool = True
    """On CPU, train the vision tower through exact faster re-formulations (`training/speed.py`)."""

    # Evaluation, checkpoints, logging
    eval_crops: int = 0
    """Multi-crop testing for the final evaluation: N evenly spaced crops plus the whole image (0: off)."""
    checkpointing_steps: str | None = "epoch"
    """`epoch`, an integer number of optimiser steps, or `none`."""
    checkpoints_total_limit: int | None = 2
    resume_from_checkpoint: str | None = None
    """A checkpoint folder or `latest`."""
    report_to: str = "tensorboard"
    """`tensorboard` or `none`."""
    with_tracking: bool = True
    plots: bool = True
    push_to_hub: bool = False
    hub_model_id: str | None = None


_FLAG_ONLY = ("config",)


def _field_kind(annotation: Any) -> str:
    text = str(annotation)
    if "dict" in text:
        return "dict"
    if "list[float]" in text:
        return "float_list"
    if "list" in text:
        return "str_list"
    if text.startswith("bool"):
        return "bool"
    if text.startswith("int"):
        return "int"
    if text.startswith("float"):
        return "float"
    return "str"


def _parse_bool(text: str) -> bool:
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _coerce(name: str, kind: str, value: Any, where: str) -> Any:
    """Converts a YAML value or a flag string to the field's type; errors name the option and its source."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "~")):
        return None
    try:
        if kind == "bool":
            return value if isinstance(value, bool) else _parse_bool(value)
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind in ("str_list", "float_list"):
            if isinstance(value, str):
                value = json.loads(value) if value.strip().startswith("[") else [v for v in value.split(",") if v]
            cast = float if kind == "float_list" else str
            return [cast(v) for v in value]
        if kind == "dict":
            if isinstance(value, str):
                if value.strip().startswith("{"):
                    value = json.loads(value)
                else:
                    value = dict(item.split("=", 1) for item in value.split(",") if item)
            return {str(k): float(v) for k, v in value.items()}
        return str(value)
    except (ValueError, TypeError, AttributeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"{where}: option {name!r} has an invalid value {value!r} ({kind} expected): {error}"
        ) from error


def _config_fields() -> dict[str, str]:
    return {f.name: _field_kind(f.type) for f in dataclasses.fields(TrainConfig)}


def build_arg_parser(
    description: str = "Train an AGQG image-quality model with Accelerate.",
) -> argparse.ArgumentParser:
    """`--config FILE.yaml` plus one flag per `TrainConfig` field (defaults left unset, so a flag given on the
    command line is the only thing that overrides the YAML)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", help="YAML file with any of the options below")
    for name, kind in _config_fields().items():
        default = getattr(TrainConfig(), name)
        parser.add_argument(f"--{name}", default=argparse.SUPPRESS, help=f"{kind}, default {default!r}")
    return parser


def resolve_config(args: argparse.Namespace | dict[str, Any]) -> TrainConfig:
    """Defaults <- YAML file (`config`) <- explicit flags. Unknown YAML keys are an error naming the file."""
    given = dict(vars(args) if isinstance(args, argparse.Namespace) else args)
    kinds = _config_fields()
    values: dict[str, Any] = {}
    config_path = given.pop("config", None)
    if config_path:
        path = Path(config_path)
        if not path.is_file() and (CONFIG_DIR / path.name).is_file():
            path = CONFIG_DIR / path.name
        if not path.is_file():
            raise FileNotFoundError(f"config file {config_path} not found")
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of option: value, got {type(loaded).__name__}")
        unknown = sorted(set(loaded) - set(kinds))
        if unknown:
            raise ValueError(f"{path}: unknown option(s) {unknown}; valid options are {sorted(kinds)}")
        values.update({k: _coerce(k, kinds[k], v, str(path)) for k, v in loaded.items()})
    for name, value in given.items():
        if name not in kinds:
            raise ValueError(f"unknown option {name!r}")
        values[name] = _coerce(name, kinds[name], value, "command line")
    if "report_to" in values and values["report_to"] is None:
        values["report_to"] = "none"
    config = TrainConfig(**values)
    _validate(config)
    return config


def _validate(config: TrainConfig) -> None:
    if config.lr_scheduler_type not in ("cosine", "linear", "constant", "constant_with_warmup"):
        raise ValueError(f"lr_scheduler_type={config.lr_scheduler_type!r}: use cosine, linear or constant")
    if config.report_to not in ("tensorboard", "none"):
        raise ValueError(f"report_to={config.report_to!r}: use tensorboard or none")
    if config.mixed_precision not in (None, "no", "bf16", "fp16", "auto"):
        raise ValueError(f"mixed_precision={config.mixed_precision!r}: use no, bf16, fp16 or auto")
    steps = config.checkpointing_steps
    if steps is not None and steps != "epoch" and not str(steps).isdigit():
        raise ValueError(f"checkpointing_steps={steps!r}: use 'epoch', a number of steps or none")
    if config.score_range is not None and (
        len(config.score_range) != 2 or config.score_range[0] >= config.score_range[1]
    ):
        raise ValueError(f"score_range={config.score_range}: expected [min, max] with min < max")
    if config.data_on_bad_rows not in ("error", "skip"):
        raise ValueError(f"data_on_bad_rows={config.data_on_bad_rows!r}: use error or skip")
    if not config.loss_weights:
        raise ValueError("loss_weights is empty: give at least one loss, e.g. l1=1")
    if config.push_to_hub and not config.hub_model_id:  # checked before training, not after it
        raise ValueError("push_to_hub needs hub_model_id (e.g. --hub_model_id your-name/agqg-agiqa3k)")


def parse_config(argv: Sequence[str] | None = None) -> TrainConfig:
    return resolve_config(build_arg_parser().parse_args(argv))


def save_config(config: TrainConfig, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(dataclasses.asdict(config), sort_keys=False), encoding="utf-8")


def resolve_mixed_precision(requested: str | None, use_cpu: bool) -> str | None:
    """`auto` -> `bf16` on a CUDA GPU with bf16 or on a CPU with AMX/AVX512-BF16 (where autocast pays off),
    else `no`. `None` leaves the choice to `accelerate launch`/its config."""
    if requested != "auto":
        return requested
    if torch.cuda.is_available() and not use_cpu:
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_fast_bf16() else "no"


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bf16 matrix products natively (AMX or AVX512-BF16)."""
    capability = str(torch.backends.cpu.get_cpu_capability()).upper()
    if "AMX" in capability:
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="ignore")
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


def build_model(config: TrainConfig, score_range: Sequence[float]) -> Any:
    """The AGQG model a run starts from: a saved AGQG folder (`init_model`), a tiny random CLIP built
    offline (`clip: tiny`), or a real CLIP checkpoint wrapped with `from_clip`."""
    from transformers import CLIPModel

    from modeling_agqg import AGQGForImageQualityAssessment
    from modeling_agqg.tools.offline import clip_character_tokenizer, tiny_clip_config

    overrides: dict[str, Any] = {
        "grading": config.grading,
        "score_range": [float(v) for v in score_range],
        "ability_source": config.ability_source,
    }
    if config.grade_names:
        overrides["grade_names"] = config.grade_names
    if config.prompt_templates:
        overrides["prompt_templates"] = config.prompt_templates
    if config.init_model:
        model = AGQGForImageQualityAssessment.from_pretrained(config.init_model)
        model.config.score_range = overrides["score_range"]
        return model
    if config.clip == TINY_CLIP:
        tokenizer = clip_character_tokenizer()
        clip_config = tiny_clip_config(
            tokenizer,
            image_size=config.tiny_image_size,
            patch_size=config.tiny_patch_size,
            hidden_size=config.tiny_hidden_size,
            num_hidden_layers=config.tiny_num_layers,
            num_attention_heads=config.tiny_num_heads,
            projection_dim=config.tiny_projection_dim,
        )
        torch.manual_seed(config.seed)
        return AGQGForImageQualityAssessment.from_clip(CLIPModel(clip_config), tokenizer=tokenizer, **overrides)
    return AGQGForImageQualityAssessment.from_clip(config.clip, **overrides)


def freeze_parameters(model: Any, *, freeze_backbone: bool, freeze_text_tower: bool) -> None:
    """`freeze_backbone`: the whole CLIP (both towers, projections, logit scale) is frozen and only the head
    trains. `freeze_text_tower`: the text tower and its projection are frozen, so the grade-text features are
    the cached buffers (no text pass per step)."""
    if freeze_backbone:
        model.clip.requires_grad_(False)
    if freeze_text_tower:
        model.clip.text_model.requires_grad_(False)
        model.clip.text_projection.requires_grad_(False)


def parameter_groups(model: Any, *, head_lr: float, backbone_lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: head and backbone (CLIP) at their own learning rates; no weight decay on biases, norms,
    embeddings' positions and the logit scale (as the transformers examples do for biases and LayerNorm)."""
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
        raise ValueError("no trainable parameters: the backbone is frozen and the model has no head (softmax grading)")
    return result


def make_adamw(groups: list[dict[str, Any]]) -> torch.optim.AdamW:
    """AdamW over the parameter groups, with the fused kernel where this torch build has one for the parameters'
    device (CPU and CUDA since torch 2.4): one pass over all parameters instead of several, about 4x faster
    for ViT-B/32's 88M parameters on this CPU. Same update rule; falls back to the default implementation."""
    try:
        return torch.optim.AdamW(groups, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups)


class HeadOnlyScorer(torch.nn.Module):
    """Scores cached image embeddings with a frozen backbone: only the grading head runs.

    Given normalised image embeddings v (B, D) from `model.get_image_embeds`, this runs
    `model.score_image_embeds`: what `model(pixel_values)` computes after the vision tower (grade-text
    features, similarities, the head or the softmax baseline, the score). It is tested to match
    `model(pixel_values)` exactly.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, image_embeds: torch.Tensor) -> Any:
        # The model's own post-vision-tower path, so learned or multitask prompts are honoured too.
        return self.model.score_image_embeds(image_embeds)


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def load_run_datasets(config: TrainConfig, cache_dir: str | Path | None = None) -> Any:
    """The run's `DatasetDict` with `train`, `validation` and (where the protocol has one) `test` splits."""
    if config.dataset == SYNTHETIC:
        from training.synthetic import build_synthetic_dataset

        out_dir = config.data_root or (str(Path(cache_dir) / "synthetic") if cache_dir else None)
        # Synthetic "split n" holds out the photos chosen with seed n (the repeated-split protocol); no split is
        # split 0. The training seed does not change the data.
        data_seed = int(config.split) if config.split else 0
        splits = build_synthetic_dataset(
            out_dir,
            image_size=config.synthetic_image_size,
            seed=data_seed,
            crops_per_source=config.synthetic_crops_per_source,
            distortions=config.synthetic_distortions,
        )
    else:
        from training.data import load_split

        if not config.data_root:
            raise ValueError(f"dataset={config.dataset!r} needs --data_root (the folder you downloaded)")
        kwargs: dict[str, Any] = {"on_bad_rows": config.data_on_bad_rows}
        if config.protocol:
            kwargs["protocol"] = config.protocol
        if config.target:
            kwargs["target"] = config.target
        splits = load_split(config.dataset, config.data_root, config.split or "1", **kwargs)
    missing = [name for name in ("train", "validation") if name not in splits]
    if missing:
        raise ValueError(f"dataset {config.dataset!r} split {config.split!r} has no {missing} split(s): {list(splits)}")
    return splits


def dataset_score_range(config: TrainConfig, splits: Any) -> tuple[float, float]:
    if config.score_range is not None:
        return float(config.score_range[0]), float(config.score_range[1])
    from training.data import mos_range

    low, high = mos_range(splits["train"])
    return float(low), float(high)


def limit_samples(dataset: Any, limit: int | None) -> Any:
    return dataset if limit is None or limit >= len(dataset) else dataset.select(range(limit))


class ImageBatchCollator:
    """Turns rows `{"image": PIL, "mos": float, "mos_std": float?, "row_index": int?}` into a batch:
    `pixel_values` (B, 3, S, S) from the model's image processor, `labels` (B,), `mos_std` (B,) (NaN where
    unknown), with optional random horizontal flips and rotations by multiples of 90 degrees (flip first, then
    rotate counter-clockwise k times, k in 0..3: with both, each of the 8 orientations has probability 1/8).

    A flip or rotation is a pure function of (seed, epoch, row_index), not a draw from a running generator:
    Accelerate's loaders fetch one batch ahead, so a generator's state at a checkpoint is already past the next
    batch and a resumed run would augment differently. Call `set_epoch` at the start of every epoch.
    """

    def __init__(self, image_processor: Any, *, hflip: bool = False, rot90: bool = False, seed: int = 0) -> None:
        self.image_processor = image_processor
        self.hflip = hflip
        self.rot90 = rot90
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def flips(self, row_indices: Sequence[int]) -> torch.Tensor:
        """Boolean (B,): whether each row is flipped in the current epoch."""
        draws = [np.random.default_rng([self.seed, self.epoch, int(i)]).random() for i in row_indices]
        return torch.tensor(draws) < 0.5

    def rotations(self, row_indices: Sequence[int]) -> torch.Tensor:
        """Int (B,): quarter turns (0..3) of each row in the current epoch, drawn independently of the flips."""
        draws = [int(np.random.default_rng([self.seed, self.epoch, int(i), 1]).integers(4)) for i in row_indices]
        return torch.tensor(draws, dtype=torch.long)

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        from modeling_agqg import load_image_file, rgb_pixel_values

        images = [load_image_file(row["image"]) for row in rows]
        pixel_values = rgb_pixel_values(self.image_processor, images)
        row_indices: list[int] = []
        if self.hflip or self.rot90:
            if any("row_index" not in row for row in rows):
                raise ValueError("hflip and rot90 need a 'row_index' column (add it with with_row_index)")
            row_indices = [row["row_index"] for row in rows]
        if self.hflip:
            flip = self.flips(row_indices)
            pixel_values = torch.where(flip[:, None, None, None], pixel_values.flip(-1), pixel_values)
        if self.rot90:
            if pixel_values.shape[-1] != pixel_values.shape[-2]:
                raise ValueError(f"rot90 needs square inputs, got {tuple(pixel_values.shape[-2:])}")
            turns = self.rotations(row_indices)
            pixel_values = torch.stack(
                [torch.rot90(image, int(k), dims=(-2, -1)) for image, k in zip(pixel_values, turns, strict=True)]
            )
        return {"pixel_values": pixel_values, **_label_tensors(rows)}


def with_row_index(dataset: Any) -> Any:
    """Adds an int column `row_index` = 0..N-1 (the key of per-sample augmentation decisions)."""
    return dataset.add_column("row_index", list(range(len(dataset))))


class EmbeddingBatchCollator:
    """Rows with a cached `image_embeds` list -> `image_embeds` (B, D), `labels` (B,), `mos_std` (B,)."""

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        embeds = torch.stack([torch.as_tensor(row["image_embeds"], dtype=torch.float32) for row in rows])
        return {"image_embeds": embeds, **_label_tensors(rows)}


def _label_tensors(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    labels = torch.tensor([float(row["mos"]) for row in rows], dtype=torch.float32)
    std = [row.get("mos_std") for row in rows]
    mos_std = torch.tensor([math.nan if s is None else float(s) for s in std], dtype=torch.float32)
    return {"labels": labels, "mos_std": mos_std}


@torch.no_grad()
def add_image_embeds(dataset: Any, model: Any, image_processor: Any, *, batch_size: int = 64, desc: str = "") -> Any:
    """Computes each image's normalised embedding once with `datasets.map` (column `image_embeds`, D floats)
    and drops the decoded images, so a frozen-backbone run never runs the vision tower again."""
    from modeling_agqg import load_image_file, rgb_pixel_values

    model.eval()
    device = next(model.parameters()).device

    def embed(batch: dict[str, list[Any]]) -> dict[str, Any]:
        images = [load_image_file(image) for image in batch["image"]]
        pixel_values = rgb_pixel_values(image_processor, images).to(device)
        return {"image_embeds": model.get_image_embeds(pixel_values).float().cpu().numpy()}

    keep = {"mos", "mos_std", "image_embeds"}
    return dataset.map(
        embed,
        batched=True,
        batch_size=batch_size,
        remove_columns=[c for c in dataset.column_names if c not in keep],
        desc=desc or "caching image embeddings",
        load_from_cache_file=False,
    )


# ---------------------------------------------------------------------------------------------
# Results: metrics, plots, eval_results.json
# ---------------------------------------------------------------------------------------------


MIN_IMAGES_FOR_METRICS = 5


def metrics_for(predictions: np.ndarray, references: np.ndarray) -> dict[str, float]:
    """The five reported metrics (SRCC, KRCC, PLCC, logistic PLCC, RMSE) as plain floats.

    With fewer than `MIN_IMAGES_FOR_METRICS` images (the logistic fit has 4 parameters; a correlation of 2 or
    3 points says nothing) every metric is NaN, with a warning, instead of a number that looks meaningful.
    """
    from training.metrics import compute_metrics

    if len(predictions) < MIN_IMAGES_FOR_METRICS:
        warnings.warn(
            f"only {len(predictions)} images to evaluate; metrics need at least {MIN_IMAGES_FOR_METRICS}: "
            "reporting NaN",
            stacklevel=2,
        )
        return dict.fromkeys(METRIC_NAMES, math.nan)
    computed = compute_metrics(predictions, references)
    return {name: float(computed[name]) for name in METRIC_NAMES}


def save_scatter_plot(
    predictions: np.ndarray, references: np.ndarray, metrics: dict[str, float], path: str | Path, title: str
) -> Path:
    """PNG of predicted score (y) against MOS (x) with the identity line and the metrics in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axis = plt.subplots(figsize=(5, 5), dpi=100)
    axis.scatter(references, predictions, s=10, alpha=0.6, edgecolors="none")
    low = float(min(np.min(references), np.min(predictions)))
    high = float(max(np.max(references), np.max(predictions)))
    axis.plot([low, high], [low, high], color="grey", linewidth=1, linestyle="--", label="y = x")
    axis.set_xlabel("MOS")
    axis.set_ylabel("predicted score")
    axis.set_title(f"{title}\nSRCC {metrics['srcc']:.3f}  PLCC {metrics['plcc']:.3f}  RMSE {metrics['rmse']:.3f}")
    axis.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def eval_result_entry(dataset: str, split: str, num_images: int, metrics: dict[str, float]) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "split": split,
        "num_images": int(num_images),
        "metrics": {name: float(metrics[name]) for name in METRIC_NAMES},
    }


def write_eval_results(
    path: str | Path, *, model_name: str, base_model: str | None, synthetic: bool, results: list[dict[str, Any]]
) -> Path:
    """Writes `eval_results.json`: `{"model_name", "base_model", "synthetic", "results": [{"dataset", "split",
    "num_images", "metrics": {srcc, krcc, plcc, plcc_logistic, rmse}}]}` (the Hub-card helper reads it).
    NaN metrics (constant predictions) are written as null, which JSON can represent."""
    payload = {
        "model_name": model_name,
        "base_model": base_model,
        "synthetic": bool(synthetic),
        "results": [
            {**entry, "metrics": {k: (None if _is_nan(v) else v) for k, v in entry["metrics"].items()}}
            for entry in results
        ],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)
