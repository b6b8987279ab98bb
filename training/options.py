# Copyright 2025 The agqg authors. Licensed under the Apache License, Version 2.0.
"""The options of a training run: three dataclasses parsed by `transformers.HfArgumentParser`.

    ModelOptions     what model is built: the CLIP, the host, AGQGConfig fields, the view protocol
    DataOptions      which data it learns from and how the images are augmented
    TrainingOptions  optimisation, precision, checkpoints, logging, publishing

Every field is a YAML key and a flag of the same name. Values are layered, later layers winning:

    dataclass defaults  <-  host file (`--host coop`, training/configs/hosts/coop.yaml)  <-  `--config run.yaml`
                        <-  flags on the command line

`resolve_options` does the layering: each YAML layer is checked (an unknown key or a bad value is an error
naming the file), becomes the parser's defaults, and `HfArgumentParser.parse_args_into_dataclasses` parses the
flags over them. The resolved options are written to `train_config.yaml` (`save_options`), which is itself a
valid `--config` file, so a run can be repeated from it.

This module knows nothing of hosts' files (that is `training/hosts.py`); it only layers what it is given.
"""

from __future__ import annotations

import dataclasses
import json
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from modeling_agqg.tools.progress import progress_disabled_by_env

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
TINY_CLIP = "tiny"
SYNTHETIC = "synthetic"
RESOLVED_OPTIONS_FILE = "train_config.yaml"
_NONE_WORDS = ("none", "null", "~", "")


# ---------------------------------------------------------------------------------------------
# The three option groups
# ---------------------------------------------------------------------------------------------


@dataclass
class ModelOptions:
    """What model is built: the CLIP it wraps, the host framework, the `AGQGConfig` fields hosts set, the views."""

    host: str | None = field(
        default=None,
        metadata={"help": "host preset (clip-iqa, liqe, ipce, coop, maple) or a host YAML file; its options are "
                  "the defaults that --config and flags override"},
    )  # fmt: skip
    clip: str = field(
        default=TINY_CLIP,
        metadata={"help": "'tiny' (a small random dual encoder built offline) or a CLIP, SigLIP or SigLIP 2 "
                  "checkpoint: Hub id or local folder"},
    )  # fmt: skip
    backbone: str | None = field(
        default=None, metadata={"help": "the same as --clip, under the name that fits SigLIP checkpoints"}
    )
    init_model: str | None = field(default=None, metadata={"help": "a saved AGQG folder to continue from"})
    grading: Literal["agqg", "softmax"] = field(
        default="agqg", metadata={"help": "agqg (graded-response head) or softmax (the host's own aggregation)"}
    )
    grade_names: list[str] | None = field(default=None, metadata={"help": "grade words, worst first"})
    prompt_templates: list[str] | None = field(default=None, metadata={"help": "templates with a {grade} field"})
    grade_prompt_sets: list[list[str]] | str | None = field(
        default=None, metadata={"help": "explicit prompts per grade: K lists (JSON on the command line)"}
    )
    multitask: bool = field(
        default=False, metadata={"help": "LIQE's scene x distortion x quality prompts with LIQE's word lists"}
    )
    prompt_learning: Literal["coop", "maple"] | None = field(
        default=None, metadata={"help": "learnable prompts: coop (context tokens) or maple (deep text+vision)"}
    )
    num_context_tokens: int | None = field(default=None, metadata={"help": "M learnable context tokens"})
    prompt_depth: int | None = field(default=None, metadata={"help": "MaPLe depth J, capped at the towers' depth"})
    alignment_grade_names: list[str] | None = field(
        default=None, metadata={"help": "grade adverbs of the generation-prompt template, worst first"}
    )
    alignment_template: str | None = field(
        default=None, metadata={"help": "template with {grade} and {prompt} for generation prompts"}
    )
    ability_source: Literal["both", "similarities", "image"] = field(
        default="both", metadata={"help": "what AGQG's ability branch reads"}
    )
    score_range: list[float] | None = field(
        default=None, metadata={"help": "MIN MAX of the MOS scale (default: the scale the dataset loader records)"}
    )
    view_protocol: dict[str, Any] | str | None = field(
        default="resize",
        metadata={"help": "views per image: resize, crops[:N], ipce[:N] or a JSON mapping (see views_agqg)"},
    )
    tiny_backbone: Literal["clip", "siglip", "siglip2", "align"] = field(
        default="clip", metadata={"help": "clip: tiny: the family of the random dual encoder"}
    )
    tiny_image_size: int = field(default=64, metadata={"help": "tiny CLIP: input size"})
    tiny_patch_size: int = field(default=8, metadata={"help": "tiny CLIP: patch size (ALIGN has none: ignored)"})
    tiny_hidden_size: int = field(default=64, metadata={"help": "tiny CLIP: width of both towers"})
    tiny_num_layers: int = field(default=2, metadata={"help": "tiny CLIP: depth of both towers"})
    tiny_num_heads: int = field(default=2, metadata={"help": "tiny CLIP: attention heads"})
    tiny_projection_dim: int = field(default=64, metadata={"help": "tiny CLIP: joint embedding size"})

    def __post_init__(self) -> None:
        _coerce_scalars(self)
        if self.backbone is not None:  # --backbone is --clip's other name; one value, stored under `clip`
            if self.clip not in (TINY_CLIP, self.backbone):
                raise ValueError(f"--backbone {self.backbone!r} and --clip {self.clip!r}: give one of them")
            self.clip, self.backbone = self.backbone, None
        if isinstance(self.grade_prompt_sets, str):
            self.grade_prompt_sets = _json_value("grade_prompt_sets", self.grade_prompt_sets)
        if self.score_range is not None and (len(self.score_range) != 2 or self.score_range[0] >= self.score_range[1]):
            raise ValueError(f"score_range={self.score_range}: expected MIN MAX with MIN < MAX")
        from modeling_agqg.views_agqg import ViewProtocol

        # Stored resolved (every field of the scheme spelt out), so train_config.yaml says exactly what ran.
        self.view_protocol = ViewProtocol.parse(self.view_protocol or "resize").to_dict()
        from modeling_agqg import AGQGConfig

        AGQGConfig(**self.agqg_config_fields())  # validates the model fields now, not after the data is loaded

    def tiny_clip_shapes(self) -> dict[str, int]:
        """The `tiny_*` options as `modeling_agqg.tools.offline.tiny_backbone_config` keywords (SigLIP's without
        `projection_dim`)."""
        names = {"num_layers": "num_hidden_layers", "num_heads": "num_attention_heads"}
        return {
            names.get(f.name[len("tiny_") :], f.name[len("tiny_") :]): getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name.startswith("tiny_")
            and f.name != "tiny_backbone"
            # SigLIP towers project to their own width: the joint size is the width, no projection_dim.
            and not (f.name == "tiny_projection_dim" and self.tiny_backbone in ("siglip", "siglip2"))
        }

    def agqg_config_fields(self) -> dict[str, Any]:
        """The `AGQGConfig` fields these options set (without `score_range` and the LIQE word lists, which the
        model builder adds)."""
        fields: dict[str, Any] = {"grading": self.grading, "ability_source": self.ability_source}
        for name in (
            "grade_names",
            "prompt_templates",
            "grade_prompt_sets",
            "prompt_learning",
            "num_context_tokens",
            "prompt_depth",
            "alignment_grade_names",
            "alignment_template",
        ):
            value = getattr(self, name)
            if value is not None:
                fields[name] = value
        fields["view_protocol"] = self.view_protocol
        return fields


@dataclass
class DataOptions:
    """Which data the run learns from, how it is split and checked, and how training images are augmented."""

    dataset: str = field(default=SYNTHETIC, metadata={"help": "'synthetic' or a dataset of training/data.py"})
    data_root: str | None = field(default=None, metadata={"help": "the dataset folder (synthetic: its cache)"})
    split: str | None = field(default=None, metadata={"help": "split of the protocol (synthetic: photo split n)"})
    protocol: str | None = field(default=None, metadata={"help": "split protocol of training.data.load_split"})
    target: str | None = field(default=None, metadata={"help": "target column (e.g. quality, align)"})
    metadata_file: str | None = field(default=None, metadata={"help": "the metadata file to read (relative to root)"})
    splits_root: str | None = field(default=None, metadata={"help": "folder holding the split folders"})
    synthetic_image_size: int = field(default=64, metadata={"help": "side of the synthetic crops"})
    synthetic_crops_per_source: int = field(default=10, metadata={"help": "crops per source photo (21 images each)"})
    synthetic_distortions: list[str] | None = field(default=None, metadata={"help": "subset of the distortions"})
    synthetic_test_sources: list[str] | None = field(
        default=None, metadata={"help": "fixed test photos (e.g. those held out of pretraining); default by split"}
    )
    # The synthetic dataset's crop geometry (training.synthetic.build_synthetic_dataset; None keeps its default).
    synthetic_crop_scales: list[str] | None = field(
        default=None, metadata={"help": "where textured crops are cut: short side / image size, or 'native'"}
    )
    synthetic_random_native_crops: int | None = field(
        default=None, metadata={"help": "crops per photo at native resolution and random positions"}
    )
    synthetic_context: int | None = field(default=None, metadata={"help": "pixels around a crop while distorting"})
    synthetic_auto_level: bool | None = field(default=None, metadata={"help": "stretch each crop's levels"})
    synthetic_train_conditions: int | None = field(
        default=None, metadata={"help": "conditions per training crop (0: all 20)"}
    )
    data_on_bad_rows: Literal["error", "skip"] = field(
        default="error", metadata={"help": "error: stop naming the file and row; skip: drop and count them"}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "train on the first N images"})
    max_eval_samples: int | None = field(default=None, metadata={"help": "evaluate on the first N images"})
    hflip: bool = field(default=False, metadata={"help": "random horizontal flips of training views"})
    rot90: bool = field(
        default=False, metadata={"help": "random quarter turns of training views (orientation-free labels only)"}
    )
    generation_prompts: bool = field(
        default=False, metadata={"help": "grade each image against its generation prompt (the `prompt` column)"}
    )
    num_workers: int = field(default=0, metadata={"help": "data-loader worker processes"})

    def __post_init__(self) -> None:
        _coerce_scalars(self)
        if self.split is not None:
            self.split = str(self.split)
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}={value} must be >= 1")


@dataclass
class TrainingOptions:
    """Optimisation, precision, evaluation, checkpoints, logging and publishing."""

    output_dir: str = field(default="runs/agqg", metadata={"help": "where everything the run writes goes"})
    model_name: str | None = field(default=None, metadata={"help": "name in eval_results.json (default: folder)"})
    seed: int = field(default=42, metadata={"help": "seeds weights, data order and augmentation"})
    num_train_epochs: int = field(default=10, metadata={"help": "epochs (unless max_train_steps is set)"})
    max_train_steps: int | None = field(default=None, metadata={"help": "optimiser steps; overrides the epochs"})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "images per process and step"})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "images per process when evaluating"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "batches per optimiser step"})
    learning_rate: float = field(default=1e-3, metadata={"help": "the grading head and learnable prompts"})
    backbone_learning_rate: float = field(default=1e-5, metadata={"help": "the CLIP towers"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (not on biases and norms)"})
    lr_scheduler_type: Literal["cosine", "linear", "constant", "constant_with_warmup"] = field(default="cosine")
    num_warmup_steps: int = field(default=0, metadata={"help": "warmup steps (or warmup_ratio)"})
    warmup_ratio: float = field(default=0.0, metadata={"help": "warmup as a share of the steps"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping (0: off)"})
    loss_weights: dict[str, float] | str | None = field(
        default_factory=lambda: {"l1": 1.0},
        metadata={"help": "loss=weight,...: l1, mse, fidelity, correlation, grm_nll (training/losses.py)"},
    )
    freeze_backbone: bool = field(
        default=False, metadata={"help": "freeze CLIP: only the head and learnable prompts train"}
    )
    freeze_text_tower: bool = field(
        default=False, metadata={"help": "freeze the text tower: grade-prompt features are cached buffers"}
    )
    cache_image_embeds: bool = field(
        default=True,
        metadata={"help": "when nothing that shapes the image embedding trains, compute embeddings once"},
    )
    mixed_precision: Literal["no", "bf16", "fp16", "auto"] | None = field(
        default=None, metadata={"help": "no, bf16, fp16, auto (bf16 where supported); unset: the launcher decides"}
    )
    cpu: bool = field(default=False, metadata={"help": "run on the CPU (with --multi_gpu: processes over gloo)"})
    fast_cpu_kernels: bool = field(
        default=True, metadata={"help": "exact faster CPU re-formulations of the vision tower (training/speed.py)"}
    )
    checkpointing_steps: str | None = field(
        default="epoch", metadata={"help": "'epoch', a number of optimiser steps, or 'none'"}
    )
    checkpoints_total_limit: int | None = field(default=2, metadata={"help": "keep the newest N checkpoints"})
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": "a checkpoint folder or 'latest'"})
    report_to: Literal["tensorboard", "none"] = field(default="tensorboard", metadata={"help": "experiment tracker"})
    with_tracking: bool = field(default=True, metadata={"help": "log losses, learning rates and metrics"})
    plots: bool = field(default=True, metadata={"help": "scatter plots of predicted score vs MOS"})
    disable_tqdm: bool = field(default=False, metadata={"help": "no progress bars (also: TQDM_DISABLE=1)"})
    push_to_hub: bool = field(default=False, metadata={"help": "publish the final model folder with agqg push"})
    hub_model_id: str | None = field(default=None, metadata={"help": "the Hub repository for push_to_hub"})

    def __post_init__(self) -> None:
        _coerce_scalars(self)
        self.loss_weights = _loss_weights(self.loss_weights)
        from training.losses import LOSS_NAMES

        unknown = sorted(set(self.loss_weights) - set(LOSS_NAMES))
        if unknown:
            raise ValueError(f"loss_weights has unknown loss(es) {unknown}; expected among {list(LOSS_NAMES)}")
        if self.checkpointing_steps is not None:
            steps = str(self.checkpointing_steps).strip().lower()
            if steps in _NONE_WORDS:
                self.checkpointing_steps = None
            elif steps != "epoch" and not steps.isdigit():
                raise ValueError(f"checkpointing_steps={steps!r}: use 'epoch', a number of steps or none")
            else:
                self.checkpointing_steps = steps
        positive = ("num_train_epochs", "per_device_train_batch_size", "per_device_eval_batch_size")
        for name in (*positive, "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.max_train_steps is not None and self.max_train_steps < 1:
            raise ValueError(f"max_train_steps={self.max_train_steps} must be >= 1")
        if self.push_to_hub and not self.hub_model_id:  # checked before training, not after it
            raise ValueError("push_to_hub needs hub_model_id (e.g. --hub_model_id your-name/agqg-agiqa3k)")

    @property
    def checkpoint_every(self) -> int | None:
        """Optimiser steps between checkpoints, or None (per epoch, or never)."""
        return int(self.checkpointing_steps) if str(self.checkpointing_steps).isdigit() else None


@dataclass
class RunOptions:
    """The three option groups of one run, as `train()` takes them."""

    model: ModelOptions = field(default_factory=ModelOptions)
    data: DataOptions = field(default_factory=DataOptions)
    training: TrainingOptions = field(default_factory=TrainingOptions)

    def to_dict(self) -> dict[str, Any]:
        """All options in one flat mapping (the form of YAML files and of `train_config.yaml`)."""
        return {**dataclasses.asdict(self.model), **dataclasses.asdict(self.data), **dataclasses.asdict(self.training)}


OPTION_GROUPS = (ModelOptions, DataOptions, TrainingOptions)


def option_names() -> list[str]:
    """Every option name, in the order of the groups."""
    return [f.name for group in OPTION_GROUPS for f in dataclasses.fields(group)]


# ---------------------------------------------------------------------------------------------
# Parsing: YAML layers, then flags
# ---------------------------------------------------------------------------------------------


def build_parser() -> Any:
    """The `HfArgumentParser` of the three groups, plus `--config FILE.yaml`."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(OPTION_GROUPS, description="Train an AGQG image-quality model with Accelerate.")
    parser.add_argument("--config", default=None, help="YAML file of options (flags override it)")
    return parser


def load_yaml_mapping(path: str | Path, *, search_dir: Path = CONFIG_DIR, what: str = "config") -> tuple[Path, dict]:
    """(the file, its mapping) of a YAML file; a shipped file can be named by file name alone (looked up in
    `search_dir`). Used for option files, host files and ablation grids.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a mapping; the message names it.
    """
    path = Path(path)
    if not path.is_file() and (search_dir / path.name).is_file():
        path = search_dir / path.name
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} not found")
    loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a mapping of key: value, got {type(loaded).__name__}")
    return path, loaded


def read_yaml_options(path: str | Path) -> dict[str, Any]:
    """The option mapping of a YAML file (`--config`; shipped ones by file name alone, `--config quickstart.yaml`).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a mapping, or keys that are not options; the message names the file.
    """
    path, loaded = load_yaml_mapping(path)
    unknown = sorted(set(loaded) - set(option_names()))
    if unknown:
        raise ValueError(f"{path}: unknown option(s) {unknown}; valid options are {sorted(option_names())}")
    return loaded


def check_options(values: Mapping[str, Any], source: str) -> RunOptions:
    """Builds the options from a mapping (defaults for the rest); any error names `source`."""
    unknown = sorted(set(values) - set(option_names()))
    if unknown:
        raise ValueError(f"{source}: unknown option(s) {unknown}; valid options are {sorted(option_names())}")
    try:
        groups = build_parser().parse_dict(dict(values))
    except (ValueError, TypeError) as error:
        raise ValueError(f"{source}: {error}") from error
    return RunOptions(*groups)


def resolve_options(layers: Sequence[tuple[str, Mapping[str, Any]]], argv: Sequence[str] | None) -> RunOptions:
    """Defaults <- each (source, values) layer in turn <- the flags in `argv` (`--config` is ignored here: the
    caller has read it into a layer).

    Every layer is checked on its own first, so an error names the file it came from.
    """
    parser = build_parser()
    merged: dict[str, Any] = {}
    for source, values in layers:
        check_options(values, source)
        merged.update(values)
    check_options(merged, " + ".join(source for source, _ in layers) or "defaults")
    parser.set_defaults(**merged)
    *groups, _extra = parser.parse_args_into_dataclasses(
        args=list(argv) if argv is not None else None, look_for_args_file=False
    )
    return RunOptions(*groups)


def save_options(options: RunOptions, path: str | Path) -> Path:
    """Writes the resolved options as YAML (a valid `--config` file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(options.to_dict(), sort_keys=False), encoding="utf-8")
    return path


def resolve_mixed_precision(requested: str | None, use_cpu: bool) -> str | None:
    """The `mixed_precision` option for `Accelerator`: `auto` -> `bf16` on a CUDA GPU with bf16 (else `fp16`) or
    on a CPU with AMX/AVX512-BF16 (where autocast pays off), else `no`; None leaves it to `accelerate launch`."""
    if requested != "auto":
        return requested
    import torch

    if torch.cuda.is_available() and not use_cpu:
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_fast_bf16() else "no"


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bf16 matrix products natively (AMX or AVX512-BF16)."""
    import torch

    capability = str(torch.backends.cpu.get_cpu_capability()).upper()
    if "AMX" in capability:
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="ignore")
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


def progress_bars_disabled(disable_tqdm: bool) -> bool:
    """Whether progress bars are off: the `disable_tqdm` option or the environment's `TQDM_DISABLE`
    (`modeling_agqg.tools.progress.progress_disabled_by_env`; tqdm itself ignores it when a caller passes
    `disable=` explicitly, as the training loop does)."""
    return disable_tqdm or progress_disabled_by_env()


# ---------------------------------------------------------------------------------------------
# Value coercion: YAML and flags give strings, ints for floats, comma lists
# ---------------------------------------------------------------------------------------------


def _parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in ("1", "true", "yes", "on", "t", "y"):
        return True
    if lowered in ("0", "false", "no", "off", "f", "n"):
        return False
    raise ValueError(f"option {name!r}: expected true or false, got {value!r}")


def _scalar(name: str, kind: Any, value: Any) -> Any:
    if kind is bool:
        return _parse_bool(name, value)
    if kind in (int, float):
        if isinstance(value, bool):
            raise ValueError(f"option {name!r}: expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError) as error:
            raise ValueError(f"option {name!r}: expected a number, got {value!r}") from error
        if kind is int:
            if number != int(number):
                raise ValueError(f"option {name!r}: expected a whole number, got {value!r}")
            return int(number)
        return number
    if kind is str:
        return str(value)
    if get_origin(kind) is Literal:
        if value not in get_args(kind):
            raise ValueError(f"option {name!r}={value!r}; expected one of {list(get_args(kind))}")
        return value
    return value


def _coerce_scalars(options: Any) -> None:
    """Converts every scalar or list-of-scalars field of a dataclass to its annotated type, in place:
    numbers written as strings (`1e-3` is a string to YAML), `true`/`false` strings, `none` for optional fields,
    and comma-separated lists (`--grade_names bad,poor,fair`). Mapping-typed fields are left to the dataclass."""
    hints = get_type_hints(type(options))
    for option in dataclasses.fields(options):
        annotation, value = hints[option.name], getattr(options, option.name)
        members = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
        nullable = type(None) in members
        members = tuple(m for m in members if m is not type(None))
        if value is None or (nullable and isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
            if not nullable:
                raise ValueError(f"option {option.name!r} cannot be empty")
            setattr(options, option.name, None)
            continue
        if len(members) != 1:
            continue  # mapping-or-string fields: handled by the dataclass
        kind = members[0]
        if get_origin(kind) is list and get_args(kind)[0] in (str, int, float):
            item = get_args(kind)[0]
            if isinstance(value, str):
                value = [v for v in value.split(",") if v.strip()]
            flat = [v for entry in value for v in (str(entry).split(",") if item is str else [entry])]
            setattr(options, option.name, [_scalar(option.name, item, v.strip() if isinstance(v, str) else v)
                                           for v in flat])  # fmt: skip
        elif get_origin(kind) is not list:
            setattr(options, option.name, _scalar(option.name, kind, value))


def _json_value(name: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"option {name!r}: expected JSON, got {text!r} ({error})") from error


def _loss_weights(value: Any) -> dict[str, float]:
    """`{l1: 1, fidelity: 0.5}`, `l1=1,fidelity=0.5` or a JSON object -> {name: weight}; must not be empty."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            value = _json_value("loss_weights", text)
        else:
            try:
                value = dict(item.split("=", 1) for item in text.split(",") if item.strip())
            except ValueError as error:
                raise ValueError(f"loss_weights={text!r}: expected name=weight,name=weight") from error
    if not isinstance(value, Mapping) or not value:
        raise ValueError(f"loss_weights={value!r}: give at least one loss, e.g. l1=1")
    try:
        return {str(name).strip(): float(weight) for name, weight in value.items()}
    except (TypeError, ValueError) as error:
        raise ValueError(f"loss_weights={value!r}: weights must be numbers") from error
