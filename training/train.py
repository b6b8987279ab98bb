# Copyright 2025 The agqg authors. Licensed under the Apache License, Version 2.0.
"""Train an AGQG image-quality model (any host framework, either grading) with Accelerate.

    accelerate launch training/train.py --config training/configs/quickstart.yaml [--key value ...]
    accelerate launch training/train.py --host coop --grading agqg --clip openai/clip-vit-base-patch16 \
        --dataset agiqa-3k --data_root /data/AGIQA-3K --split 1
    accelerate launch --multi_gpu --num_processes 2 training/train.py ... --cpu true   # 2 CPU processes (gloo)
    python training/train.py ...                                                         # one process

This is the one training loop: every host (`--host clip-iqa | liqe | ipce | coop | maple`, see
`training/hosts.py`) is a set of options for it, and the ablation (`training/ablate.py`) calls `train()`.
It follows transformers' `run_*_no_trainer.py` examples: one `Accelerator` (gradient accumulation, mixed
precision, TensorBoard, project folder), `accelerator.prepare`, `accumulate()`, clipping when gradients sync,
AdamW with one learning rate for the grading head and learnable prompts and one for CLIP, a warmup + cosine
schedule, `save_state` / `load_state` checkpoints that resume mid-epoch to the same weights.

`train()` reads top to bottom as its steps: accelerator -> data -> model -> batches -> optimiser -> resume ->
epochs (train, then validate: best model, checkpoint) -> final evaluation of the best model -> model folder.

Outputs in `output_dir`: `train_config.yaml` (the resolved options), `run_info.json`, `checkpoints/step_N`
(rotated), `best_model/` (best validation SRCC so far), `model/` (the final complete remote-code folder with
`eval_results.json` and `train_config.yaml`), `predictions_<split>.csv`, `plots/*.png`, `logs/` (TensorBoard),
`history.json` (the per-epoch validation metrics).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import ProjectConfiguration, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from modeling_agqg.tools.progress import library_progress_bars
from training.collate import EmbeddingCollator, ViewCollator, add_image_embeds, model_inputs, with_row_index
from training.evaluation import evaluate_parts, predict
from training.hosts import load_host
from training.losses import compute_loss
from training.modeling import (
    CachedEmbeddingScorer,
    build_model,
    image_embedding_trains,
    make_adamw,
    parameter_groups,
    set_train_mode,
    set_trainable,
)
from training.options import (
    RESOLVED_OPTIONS_FILE,
    SYNTHETIC,
    TINY_CLIP,
    RunOptions,
    progress_bars_disabled,
    read_yaml_options,
    resolve_mixed_precision,
    resolve_options,
    save_options,
)
from training.results import (
    EVAL_RESULTS_FILE,
    Predictions,
    format_metrics,
    metrics_for,
    save_scatter_plot,
    write_eval_results,
)
from training.run_data import RunData, load_run_data
from training.speed import speed_up_vision_training

CHECKPOINT_PREFIX = "step_"
SYNTHETIC_NOTICE = (
    "NOTE: this is a SYNTHETIC DEMONSTRATION: a tiny model trained on distorted copies of a few photographs, whose "
    "MOS follows the measured distortion. Its numbers say the pipeline works, not how well AGQG grades AI-generated "
    "images."
)
REAL_RUN_HINT = (
    "To train on real data, point the same command at a CLIP checkpoint and a dataset folder, e.g.:\n"
    "  accelerate launch training/train.py --config training/configs/agiqa3k.yaml "
    "--clip openai/clip-vit-base-patch16 --dataset agiqa-3k --data_root /path/to/AGIQA-3K --split 1"
)


# ---------------------------------------------------------------------------------------------
# Options: host file <- --config file <- flags
# ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> RunOptions:
    """The run's options: defaults, then the host file (`--host`, or `host:` in the config file), then the
    `--config` YAML file, then the flags. An unknown key or a bad value is an error naming its file."""
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--config")
    first.add_argument("--host")
    known, _ = first.parse_known_args(argv)
    config = read_yaml_options(known.config) if known.config else {}
    host = known.host or config.get("host")
    layers = []
    if host:
        preset = load_host(host)
        layers.append((str(preset.path), preset.options))
    if known.config:
        layers.append((known.config, config))
    return resolve_options(layers, argv)


# ---------------------------------------------------------------------------------------------
# Run state, saved in every checkpoint
# ---------------------------------------------------------------------------------------------


class TrainingProgress:
    """Where the run is, saved inside every checkpoint (`register_for_checkpointing`) so a resumed run continues
    at the same optimiser step and batch, with the same best-so-far model and history."""

    def __init__(self) -> None:
        self.global_step = 0
        self.epoch = 0
        self.batches_in_epoch = 0
        self.best_srcc = -math.inf
        self.best_epoch = -1
        self.history: list[dict[str, Any]] = []

    def state_dict(self) -> dict[str, Any]:
        return {
            "global_step": self.global_step,
            "epoch": self.epoch,
            "batches_in_epoch": self.batches_in_epoch,
            "best_srcc": self.best_srcc,
            "best_epoch": self.best_epoch,
            "history": self.history,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


@dataclass
class RunResult:
    """What `train()` returns (on every process).

    Attributes:
        eval_results: The `eval_results.json` payload of the final model.
        predictions: Per-image predictions of the final model for each evaluated part (`validation`, `test`).
        output_dir: The run's folder; the model folder is `output_dir / "model"`.
        train_seconds: Wall-clock seconds of the epochs (data, model and final evaluation excluded).
    """

    eval_results: dict[str, Any]
    predictions: dict[str, Predictions] = field(default_factory=dict)
    output_dir: Path = Path(".")
    train_seconds: float = 0.0


@dataclass
class Batches:
    """The loaders of a run and the module the training loop calls (the model, or `CachedEmbeddingScorer` over
    it when image embeddings are computed once)."""

    train_loader: Any
    eval_loader: Any
    train_collate: Any
    trainable: torch.nn.Module
    protocol: Any
    train_views: int
    eval_views: int
    cached_embeds: bool


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """Finished checkpoints `checkpoints/step_N`, oldest first. A checkpoint is written to a temporary folder
    and renamed when complete, so one cut short by a kill is never listed."""
    folder = Path(output_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX)]
    found = [p for p in found if p.name[len(CHECKPOINT_PREFIX) :].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]))


def resolve_resume_path(resume_from_checkpoint: str, output_dir: str | Path) -> Path | None:
    """`latest` -> the newest complete checkpoint of this run (None when there is none yet, so the same
    command starts fresh or resumes); otherwise the given folder, which must exist."""
    if resume_from_checkpoint == "latest":
        found = complete_checkpoints(output_dir)
        return found[-1] if found else None
    path = Path(resume_from_checkpoint)
    if not path.is_dir():
        raise FileNotFoundError(f"--resume_from_checkpoint {path}: no such checkpoint folder")
    return path


def save_checkpoint(accelerator: Accelerator, output_dir: Path, step: int, total_limit: int | None) -> Path:
    """`save_state` into `checkpoints/step_N` via a temporary folder, then removes the oldest beyond `total_limit`."""
    final = output_dir / "checkpoints" / f"{CHECKPOINT_PREFIX}{step}"
    partial = output_dir / "checkpoints" / f".partial_{CHECKPOINT_PREFIX}{step}"
    if accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        partial.rename(final)
        if total_limit is not None and total_limit > 0:
            for old in complete_checkpoints(output_dir)[:-total_limit]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def save_model_atomically(model: Any, folder: Path) -> None:
    """`save_pretrained` into a temporary folder renamed when complete (a kill never leaves half a model)."""
    partial = folder.with_name(f".partial_{folder.name}")
    if partial.exists():
        shutil.rmtree(partial)
    model.save_pretrained(partial)
    if folder.exists():
        shutil.rmtree(folder)
    partial.rename(folder)


# ---------------------------------------------------------------------------------------------
# The steps of a run
# ---------------------------------------------------------------------------------------------


def make_accelerator(options: RunOptions) -> Accelerator:
    """One `Accelerator` for the run: device, processes, mixed precision, gradient accumulation, tracking, and a
    sampler reseeded from (seed + epoch), which gives the same data order on every process and after a resume."""
    training, output_dir = options.training, Path(options.training.output_dir)
    tracking = training.with_tracking and training.report_to != "none"
    return Accelerator(
        cpu=training.cpu,
        gradient_accumulation_steps=training.gradient_accumulation_steps,
        mixed_precision=resolve_mixed_precision(training.mixed_precision, training.cpu),
        log_with=training.report_to if tracking else None,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=training.seed),
    )


def make_batches(accelerator: Accelerator, model: Any, data: RunData, options: RunOptions) -> Batches:
    """The training and validation loaders, with the run's views.

    When nothing that shapes the image embedding trains (a frozen backbone without MaPLe's vision prompts), the
    protocol has one view and no augmentation changes the pixels, each image's embedding is computed once
    (`add_image_embeds`) and the loop trains on those (`CachedEmbeddingScorer`): the vision tower never runs again.
    """
    data_options, training = options.data, options.training
    protocol = model.view_protocol()
    augment = data_options.hflip or data_options.rot90
    one_fixed_view = protocol.scheme == "resize" and not augment
    cached = training.cache_image_embeds and one_fixed_view and not image_embedding_trains(model)
    if cached:
        model.to(accelerator.device)
        with accelerator.autocast():
            train_rows = add_image_embeds(data.train, model, desc="caching train embeddings")
            eval_rows = add_image_embeds(data.validation, model, desc="caching validation embeddings")
        train_collate: Any = EmbeddingCollator(model, generation_prompts=data_options.generation_prompts)
        eval_collate: Any = train_collate
        trainable: torch.nn.Module = CachedEmbeddingScorer(model)
    else:
        random_views = protocol.scheme != "resize" or augment
        train_rows = with_row_index(data.train) if random_views else data.train
        eval_rows = data.validation
        common = {"seed": training.seed, "generation_prompts": data_options.generation_prompts}
        train_collate = ViewCollator(
            model, protocol, train=True, hflip=data_options.hflip, rot90=data_options.rot90, **common
        )
        eval_collate = ViewCollator(model, protocol, train=False, **common)
        trainable = model
    train_loader = DataLoader(
        train_rows,
        shuffle=True,
        batch_size=training.per_device_train_batch_size,
        collate_fn=train_collate,
        num_workers=data_options.num_workers,
    )
    eval_loader = DataLoader(
        eval_rows,
        batch_size=training.per_device_eval_batch_size,
        collate_fn=eval_collate,
        num_workers=data_options.num_workers,
    )
    return Batches(
        train_loader=train_loader,
        eval_loader=eval_loader,
        train_collate=train_collate,
        trainable=trainable,
        protocol=protocol,
        train_views=train_collate.num_views,
        eval_views=eval_collate.num_views,
        cached_embeds=cached,
    )


@dataclass
class Schedule:
    """How long the run is: optimiser steps per epoch, in all, and epochs."""

    steps_per_epoch: int
    max_train_steps: int
    num_epochs: int
    warmup_steps: int


def make_schedule(options: RunOptions, batches_per_epoch: int) -> Schedule:
    training = options.training
    steps_per_epoch = math.ceil(batches_per_epoch / training.gradient_accumulation_steps)
    max_train_steps = training.max_train_steps or training.num_train_epochs * steps_per_epoch
    warmup = training.num_warmup_steps or int(training.warmup_ratio * max_train_steps)
    return Schedule(steps_per_epoch, max_train_steps, math.ceil(max_train_steps / steps_per_epoch), warmup)


def make_optimizer(model: Any, options: RunOptions, schedule: Schedule, num_processes: int) -> tuple[Any, Any]:
    """AdamW (head and learnable prompts at `learning_rate`, CLIP at `backbone_learning_rate`) and the warmup +
    decay schedule. A prepared scheduler steps once per process at every optimiser step, so its lengths are
    scaled by the number of processes (as the transformers examples do)."""
    training = options.training
    optimizer = make_adamw(
        parameter_groups(
            model,
            head_lr=training.learning_rate,
            backbone_lr=training.backbone_learning_rate,
            weight_decay=training.weight_decay,
        )
    )
    lr_scheduler = get_scheduler(
        training.lr_scheduler_type,
        optimizer=optimizer,
        num_warmup_steps=schedule.warmup_steps * num_processes,
        num_training_steps=schedule.max_train_steps * num_processes,
    )
    return optimizer, lr_scheduler


def resume(accelerator: Accelerator, options: RunOptions, progress: TrainingProgress, batches_per_epoch: int) -> int:
    """Loads the checkpoint `resume_from_checkpoint` names (model, optimiser, scheduler, RNG states, progress);
    returns how many batches of the current epoch it had already trained (0 when starting fresh)."""
    output_dir = Path(options.training.output_dir)
    if not options.training.resume_from_checkpoint:
        return 0
    resume_path = resolve_resume_path(options.training.resume_from_checkpoint, output_dir)
    if resume_path is None:
        accelerator.print(f"no checkpoint in {output_dir / 'checkpoints'} yet: starting from scratch")
        return 0
    accelerator.load_state(str(resume_path))
    accelerator.print(
        f"resumed from {resume_path}: step {progress.global_step}, epoch {progress.epoch}, "
        f"batch {progress.batches_in_epoch} of {batches_per_epoch}"
    )
    return progress.batches_in_epoch


def train_one_epoch(
    accelerator: Accelerator,
    batches: Batches,
    optimizer: Any,
    lr_scheduler: Any,
    progress: TrainingProgress,
    options: RunOptions,
    *,
    epoch: int,
    skip_batches: int,
    schedule: Schedule,
    score_range: Sequence[float],
    num_grades: int,
    bar: Any,
) -> list[float]:
    """One pass over the training loader (from batch `skip_batches` when resuming mid-epoch); returns the
    batches' losses. The loss is `training.losses.compute_loss` of each image's combined score against its MOS."""
    training = options.training
    trainable = batches.trainable
    set_train_mode(trainable)
    batches.train_loader.set_epoch(epoch)
    batches.train_collate.set_epoch(epoch)
    loader = batches.train_loader
    if skip_batches:
        loader = accelerator.skip_first_batches(batches.train_loader, skip_batches)
    tracking = training.with_tracking and training.report_to != "none"
    losses: list[float] = []
    for batch in loader:
        with accelerator.accumulate(trainable):
            output = trainable(**model_inputs(batch), num_views=batches.train_views)
            mos_std = batch["mos_std"] if bool(torch.isfinite(batch["mos_std"]).any()) else None
            loss, parts = compute_loss(
                output,
                batch["labels"],
                mos_std=mos_std,
                weights=training.loss_weights,
                score_range=score_range,
                num_grades=num_grades,
            )
            accelerator.backward(loss)
            if accelerator.sync_gradients and training.max_grad_norm > 0:
                accelerator.clip_grad_norm_(trainable.parameters(), training.max_grad_norm)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad()
        progress.batches_in_epoch += 1
        losses.append(float(parts["loss"]))
        if not accelerator.sync_gradients:
            continue
        progress.global_step += 1
        bar.update(1)
        postfix = {"loss": f"{np.mean(losses[-20:]):.4f}"}
        if progress.history:  # nothing to show before the first evaluation
            postfix["val_srcc"] = f"{progress.history[-1]['srcc']:.3f}"
        bar.set_postfix(postfix, refresh=False)
        if tracking:
            logs = {f"train/{name}": float(value) for name, value in parts.items()}
            for group in optimizer.param_groups:
                logs[f"lr/{group.get('name', 'group')}"] = group["lr"]
            accelerator.log(logs, step=progress.global_step)
        if training.checkpoint_every and progress.global_step % training.checkpoint_every == 0:
            save_checkpoint(
                accelerator, Path(training.output_dir), progress.global_step, training.checkpoints_total_limit
            )
        if progress.global_step >= schedule.max_train_steps:
            break
    return losses


def validate_epoch(
    accelerator: Accelerator,
    batches: Batches,
    progress: TrainingProgress,
    options: RunOptions,
    *,
    epoch: int,
    losses: list[float],
) -> None:
    """Evaluates the validation part, records the epoch in the history, keeps the best model so far (validation
    SRCC) in `best_model/`, plots, logs and, with `checkpointing_steps: epoch`, saves a checkpoint."""
    training, output_dir = options.training, Path(options.training.output_dir)
    model = unwrap_full_model(accelerator, batches.trainable)
    batches.trainable.eval()
    predictions = predict(
        accelerator,
        model,
        batches.eval_loader,
        protocol=batches.protocol,
        num_views=batches.eval_views,
        desc=f"validation epoch {epoch}",
        disable_tqdm=progress_bars_disabled(training.disable_tqdm),
    )
    metrics = metrics_for(predictions.scores, predictions.mos)
    record = {"epoch": epoch, "step": progress.global_step, "train_loss": float(np.mean(losses or [math.nan]))}
    record.update(metrics)
    progress.history.append(record)
    progress.epoch = epoch + 1
    progress.batches_in_epoch = 0
    improved = math.isfinite(metrics["srcc"]) and metrics["srcc"] > progress.best_srcc
    if improved:
        progress.best_srcc, progress.best_epoch = metrics["srcc"], epoch
    if accelerator.is_main_process:
        # Without a finite SRCC yet (a validation part too small to measure), keep the latest model as a
        # provisional best so the run still ends with a model; any finite SRCC replaces it.
        if improved or not math.isfinite(progress.best_srcc):
            save_model_atomically(model, output_dir / "best_model")
        if training.plots:
            save_scatter_plot(
                predictions.scores,
                predictions.mos,
                metrics,
                output_dir / "plots" / f"validation_epoch{epoch:03d}.png",
                f"validation, epoch {epoch}",
            )
        (output_dir / "history.json").write_text(json.dumps(progress.history, indent=2) + "\n", encoding="utf-8")
    if training.with_tracking and training.report_to != "none":
        accelerator.log({f"eval/{name}": value for name, value in metrics.items()}, step=progress.global_step)
    accelerator.print(f"epoch {epoch}: validation {format_metrics(metrics)}" + ("  (best so far)" if improved else ""))
    if training.checkpointing_steps == "epoch":
        save_checkpoint(accelerator, output_dir, progress.global_step, training.checkpoints_total_limit)


def unwrap_full_model(accelerator: Accelerator, trainable: torch.nn.Module) -> Any:
    """The `AGQGForImageQualityAssessment` inside a prepared (possibly data-parallel) trainable module."""
    unwrapped = accelerator.unwrap_model(trainable)
    return unwrapped.model if isinstance(unwrapped, CachedEmbeddingScorer) else unwrapped


def finalize(accelerator: Accelerator, options: RunOptions, data: RunData) -> RunResult:
    """Loads the best model, evaluates it on the validation part and the test part (when there is one) with the
    run's test-time views, and writes `model/` (complete folder), `model/eval_results.json`,
    `model/train_config.yaml`, `predictions_<part>.csv` and the final scatter plots."""
    from modeling_agqg import AGQGForImageQualityAssessment
    from modeling_agqg.configuration_agqg import public_name_or_path

    output_dir = Path(options.training.output_dir)
    best_dir = output_dir / "best_model"
    if not best_dir.is_dir():
        raise RuntimeError(f"{best_dir} is missing: the run evaluated no epoch")
    model = AGQGForImageQualityAssessment.from_pretrained(best_dir).to(accelerator.device).eval()
    parts = [("test" if data.validation_is_test else "validation", data.validation)]
    if data.test is not None:
        parts.append(("test", data.test))
    note = None
    if data.validation_is_test:
        note = "the split has no validation part: this test part also selected the model"
    entries, predictions = evaluate_parts(
        model,
        parts,
        accelerator=accelerator,
        dataset_name=options.data.dataset,
        split=options.data.split,
        output_dir=output_dir,
        generation_prompts=options.data.generation_prompts,
        batch_size=options.training.per_device_eval_batch_size,
        num_workers=options.data.num_workers,
        plot_prefix="plots/final_" if options.training.plots else None,
        note=note,
        disable_tqdm=progress_bars_disabled(options.training.disable_tqdm),
    )
    payload: dict[str, Any] = {"results": entries}
    if accelerator.is_main_process:
        final_dir = output_dir / "model"
        save_model_atomically(model, final_dir)
        base = options.model.init_model or (None if options.model.clip == TINY_CLIP else options.model.clip)
        path = write_eval_results(
            final_dir / EVAL_RESULTS_FILE,
            model_name=options.training.model_name or output_dir.name,
            base_model=public_name_or_path(base) if base else None,  # a Hub id, or "<local path>/NAME"
            synthetic=options.data.dataset == SYNTHETIC,
            results=entries,
        )
        shutil.copy(output_dir / RESOLVED_OPTIONS_FILE, final_dir / RESOLVED_OPTIONS_FILE)
        payload = json.loads(path.read_text(encoding="utf-8"))
    accelerator.wait_for_everyone()
    return RunResult(eval_results=payload, predictions=predictions, output_dir=output_dir)


def _tracker_config(options: RunOptions) -> dict[str, Any]:
    # TensorBoard's hparams take scalars only.
    flat = {}
    for key, value in options.to_dict().items():
        flat[key] = value if isinstance(value, (int, float, str, bool)) else json.dumps(value)
    return flat


def write_run_info(
    accelerator: Accelerator, options: RunOptions, data: RunData, batches: Batches, schedule: Schedule
) -> None:
    """`run_info.json`: what actually ran (processes, precision, device, host, views, cached embeddings, image
    counts, steps, data notes), for checking a launch did what its command meant."""
    info = {
        "num_processes": accelerator.num_processes,
        "distributed_type": str(accelerator.distributed_type),
        "mixed_precision": accelerator.mixed_precision,
        "device": str(accelerator.device),
        "host": options.model.host,
        "grading": options.model.grading,
        "view_protocol": batches.protocol.to_dict(),
        "cached_image_embeds": batches.cached_embeds,
        "train_images": len(data.train),
        "validation_images": len(data.validation),
        "test_images": len(data.test) if data.test is not None else 0,
        "steps_per_epoch": schedule.steps_per_epoch,
        "max_train_steps": schedule.max_train_steps,
        "data_notes": data.notes,
    }
    path = Path(options.training.output_dir) / "run_info.json"
    path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


def train(options: RunOptions) -> RunResult:
    """Runs one training job and returns its final evaluation (also written to `output_dir/model`)."""
    disable_bars = progress_bars_disabled(options.training.disable_tqdm)
    with library_progress_bars(not disable_bars, datasets=True):
        return _train(options, disable_bars)


def _train(options: RunOptions, disable_bars: bool) -> RunResult:
    training = options.training
    output_dir = Path(training.output_dir)

    # 1. Accelerator, seed, the resolved options.
    accelerator = make_accelerator(options)
    set_seed(training.seed)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        save_options(options, output_dir / RESOLVED_OPTIONS_FILE)
    accelerator.wait_for_everyone()

    # 2. Data, checked before anything trains. The main process builds (and caches) it first; the others load it.
    with accelerator.main_process_first():
        data = load_run_data(options.data, options.model.score_range)
    for note in data.notes:
        accelerator.print(f"NOTE: {note}")

    # 3. Model: what it is, what trains, the exact CPU speed-ups of the vision tower.
    model = build_model(options.model, data.score_range, seed=training.seed)
    set_trainable(model, freeze_backbone=training.freeze_backbone, freeze_text_tower=training.freeze_text_tower)
    if training.fast_cpu_kernels and accelerator.device.type == "cpu" and image_embedding_trains(model):
        applied = speed_up_vision_training(model)
        if applied:
            accelerator.print(f"CPU training speed-ups (exact): {', '.join(applied)}")

    # 4. Batches (views of every image, or embeddings computed once), optimiser and schedule.
    batches = make_batches(accelerator, model, data, options)
    batches.train_loader, batches.eval_loader = accelerator.prepare(batches.train_loader, batches.eval_loader)
    schedule = make_schedule(options, len(batches.train_loader))
    optimizer, lr_scheduler = make_optimizer(model, options, schedule, accelerator.num_processes)
    batches.trainable, optimizer, lr_scheduler = accelerator.prepare(batches.trainable, optimizer, lr_scheduler)
    progress = TrainingProgress()
    accelerator.register_for_checkpointing(progress)

    tracking = training.with_tracking and training.report_to != "none"
    if tracking:
        accelerator.init_trackers("agqg", config=_tracker_config(options))
    if accelerator.is_main_process:
        write_run_info(accelerator, options, data, batches, schedule)

    # 5. Resume (the same command starts fresh when there is no checkpoint yet).
    skip_batches = resume(accelerator, options, progress, len(batches.train_loader))

    # 6. Epochs: train, then validate (best model, history, checkpoint).
    bar = tqdm(
        total=schedule.max_train_steps,
        initial=progress.global_step,
        desc="training",
        disable=disable_bars or not accelerator.is_local_main_process,
    )
    started = time.perf_counter()
    for epoch in range(progress.epoch, schedule.num_epochs):
        if progress.global_step >= schedule.max_train_steps:
            break
        losses = train_one_epoch(
            accelerator,
            batches,
            optimizer,
            lr_scheduler,
            progress,
            options,
            epoch=epoch,
            skip_batches=skip_batches,
            schedule=schedule,
            score_range=data.score_range,
            num_grades=model.config.num_grades,
            bar=bar,
        )
        skip_batches = 0
        validate_epoch(accelerator, batches, progress, options, epoch=epoch, losses=losses)
    bar.close()
    accelerator.wait_for_everyone()
    train_seconds = time.perf_counter() - started

    # 7. The best model on validation SRCC, evaluated on validation and test, saved as a complete folder.
    result = finalize(accelerator, options, data)
    result.train_seconds = train_seconds
    if accelerator.is_main_process:
        accelerator.print(f"training took {train_seconds:.1f} s; final model in {output_dir / 'model'}")
        if options.data.dataset == SYNTHETIC:
            accelerator.print(SYNTHETIC_NOTICE)
        if training.push_to_hub:
            push(output_dir / "model", training.hub_model_id)
    accelerator.wait_for_everyone()
    if tracking:
        # Last: accelerate's end_training() also destroys the process group, after which no barrier works.
        accelerator.end_training()
    return result


def push(model_dir: Path, hub_model_id: str | None) -> None:
    """Publishes the final model folder with `agqg push` (`hub_cards.publish`)."""
    if not hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id (e.g. your-name/agqg-agiqa3k)")
    from hub_cards.publish import main as push_main

    code = push_main([str(model_dir), hub_model_id])
    if code:
        raise RuntimeError(
            f"agqg push {model_dir} {hub_model_id} failed with exit code {code}; the trained model is saved "
            f"in {model_dir}: rerun that command to finish the upload"
        )


def main(argv: Sequence[str] | None = None) -> int:
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
