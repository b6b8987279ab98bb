"""Fine-tune an AGQG image-quality model with Accelerate.

    accelerate launch training/train.py --config training/configs/quickstart.yaml [--key value ...]
    python training/train.py --config training/configs/agiqa3k.yaml --data_root /data/AGIQA-3K --split 1

Follows the conventions of transformers' `*_no_trainer.py` examples: one `Accelerator` (gradient
accumulation, mixed precision, TensorBoard tracking, project folder), `accelerator.prepare`, `accumulate()`,
gradient clipping when gradients sync, AdamW with separate learning rates for the CLIP backbone and the grading
head, a warmup + cosine schedule, `save_state`/`load_state` checkpoints that resume mid-epoch.

Outputs in `output_dir`: `train_config.yaml` (the resolved options), `checkpoints/step_N` (rotated),
`best_model/` (best validation SRCC so far), `model/` (the final complete remote-code folder with
`eval_results.json`), `plots/*.png` (predicted score vs MOS for every evaluation), `logs/` (TensorBoard),
`history.json` (the per-epoch validation metrics).
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __name__ == "__main__" and not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from training.common import ensure_package_importable

    ensure_package_importable(__file__)

import numpy as np
import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from training.common import (
    EVAL_RESULTS_FILE,
    RESOLVED_CONFIG_FILE,
    SYNTHETIC,
    TINY_CLIP,
    EmbeddingBatchCollator,
    HeadOnlyScorer,
    ImageBatchCollator,
    TrainConfig,
    add_image_embeds,
    dataset_score_range,
    eval_result_entry,
    freeze_parameters,
    limit_samples,
    load_run_datasets,
    make_adamw,
    metrics_for,
    parameter_groups,
    parse_config,
    resolve_mixed_precision,
    save_config,
    save_scatter_plot,
    with_row_index,
    write_eval_results,
)
from training.speed import speed_up_vision_training

logger = get_logger(__name__)

CHECKPOINT_PREFIX = "step_"
SYNTHETIC_NOTICE = (
    "NOTE: this is a SYNTHETIC DEMONSTRATION: a tiny CLIP trained from scratch on distorted copies of a few "
    "photographs, whose MOS follows the distortion strength. Its numbers say the pipeline works, not how well "
    "AGQG grades AI-generated images."
)
REAL_RUN_HINT = (
    "To train on real data, point the same command at a CLIP checkpoint and a dataset folder, e.g.:\n"
    "  accelerate launch training/train.py --config training/configs/agiqa3k.yaml "
    "--clip openai/clip-vit-base-patch16 --dataset agiqa-3k --data_root /path/to/AGIQA-3K --split 1"
)


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


def _save_model_atomically(model: Any, folder: Path) -> None:
    partial = folder.with_name(f".partial_{folder.name}")
    if partial.exists():
        shutil.rmtree(partial)
    model.save_pretrained(partial)
    if folder.exists():
        shutil.rmtree(folder)
    partial.rename(folder)


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def predict(
    accelerator: Accelerator,
    score_batch: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    loader: Any,
    *,
    desc: str = "evaluating",
) -> tuple[np.ndarray, np.ndarray]:
    """Scores every batch of a prepared (sharded) loader and gathers predictions and labels from all processes
    with `gather_for_metrics`, which drops the samples repeated to even out the last batch, so each image
    counts once. Returns (predictions (N,), MOS (N,)) on every process."""
    predictions, references = [], []
    for batch in tqdm(loader, desc=desc, leave=False, disable=not accelerator.is_local_main_process):
        with accelerator.autocast():
            scores = score_batch(batch).float()
        gathered_scores, gathered_labels = accelerator.gather_for_metrics((scores, batch["labels"].float()))
        predictions.append(gathered_scores.cpu())
        references.append(gathered_labels.cpu())
    return torch.cat(predictions).numpy(), torch.cat(references).numpy()


def _score_fn(model: Any, use_embeds: bool) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    if use_embeds:
        return lambda batch: model(batch["image_embeds"]).score
    return lambda batch: model(pixel_values=batch["pixel_values"]).score


def _tracker_config(config: TrainConfig) -> dict[str, Any]:
    # TensorBoard's hparams take scalars only.
    flat = {}
    for key, value in vars(config).items():
        flat[key] = value if isinstance(value, (int, float, str, bool)) else json.dumps(value)
    return flat


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def train(config: TrainConfig) -> dict[str, Any]:
    """Runs one training job; returns the `eval_results.json` payload (also written to `output_dir/model`)."""
    output_dir = Path(config.output_dir)
    mixed_precision = resolve_mixed_precision(config.mixed_precision, config.cpu)
    tracking = config.with_tracking and config.report_to != "none"
    accelerator = Accelerator(
        cpu=config.cpu,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        mixed_precision=mixed_precision,
        log_with=config.report_to if tracking else None,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        # A sampler reseeded from (seed + epoch) gives the same order on every process and after a resume.
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=config.seed),
    )
    set_seed(config.seed)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, output_dir / RESOLVED_CONFIG_FILE)
    accelerator.wait_for_everyone()

    # --- data and model ------------------------------------------------------------------------
    # The main process builds (and, with a data_root, caches) the data first; the others then load the cache.
    with accelerator.main_process_first():
        splits = load_run_datasets(config)
    train_images = limit_samples(splits["train"], config.max_train_samples)
    eval_images = limit_samples(splits["validation"], config.max_eval_samples)
    score_range = dataset_score_range(config, splits)
    model = build_model_for(config, score_range)
    freeze_parameters(model, freeze_backbone=config.freeze_backbone, freeze_text_tower=config.freeze_text_tower)
    image_processor = model.image_processor or model.default_image_processor()
    if config.fast_cpu_kernels and accelerator.device.type == "cpu" and not config.freeze_backbone:
        applied = speed_up_vision_training(model)
        if applied:
            accelerator.print(f"CPU training speed-ups (exact): {', '.join(applied)}")

    # Cached embeddings are exact only when nothing but the grading head trains (a host with learnable prompts
    # has trainable parameters outside it, which need the full forward).
    head_only = all(name.startswith("head.") for name, p in model.named_parameters() if p.requires_grad)
    augment = config.hflip or config.rot90
    use_embeds = config.freeze_backbone and config.cache_image_embeds and not augment and head_only
    if use_embeds:
        # The frozen vision tower runs once per image here, never again in any epoch.
        model.to(accelerator.device)
        with accelerator.autocast():
            train_rows = add_image_embeds(train_images, model, image_processor, desc="caching train embeddings")
            eval_rows = add_image_embeds(eval_images, model, image_processor, desc="caching validation embeddings")
        trainable: torch.nn.Module = HeadOnlyScorer(model)
        collate: Any = EmbeddingBatchCollator()
        eval_collate: Any = collate
    else:
        train_rows, eval_rows, trainable = train_images, eval_images, model
        if augment:
            train_rows = with_row_index(train_rows)
        collate = ImageBatchCollator(image_processor, hflip=config.hflip, rot90=config.rot90, seed=config.seed)
        eval_collate = ImageBatchCollator(image_processor)

    train_loader = DataLoader(
        train_rows,
        shuffle=True,
        batch_size=config.per_device_train_batch_size,
        collate_fn=collate,
        num_workers=config.num_workers,
    )
    eval_loader = DataLoader(
        eval_rows, batch_size=config.per_device_eval_batch_size, collate_fn=eval_collate, num_workers=config.num_workers
    )
    train_loader, eval_loader = accelerator.prepare(train_loader, eval_loader)

    optimizer = make_adamw(
        parameter_groups(
            model,
            head_lr=config.learning_rate,
            backbone_lr=config.backbone_learning_rate,
            weight_decay=config.weight_decay,
        )
    )
    steps_per_epoch = math.ceil(len(train_loader) / config.gradient_accumulation_steps)
    max_train_steps = config.max_train_steps or config.num_train_epochs * steps_per_epoch
    num_epochs = math.ceil(max_train_steps / steps_per_epoch)
    warmup_steps = config.num_warmup_steps or int(config.warmup_ratio * max_train_steps)
    # A prepared scheduler steps once per process at every optimiser step (the transformers examples scale alike).
    lr_scheduler = get_scheduler(
        config.lr_scheduler_type,
        optimizer=optimizer,
        num_warmup_steps=warmup_steps * accelerator.num_processes,
        num_training_steps=max_train_steps * accelerator.num_processes,
    )
    trainable, optimizer, lr_scheduler = accelerator.prepare(trainable, optimizer, lr_scheduler)
    progress = TrainingProgress()
    accelerator.register_for_checkpointing(progress)

    if tracking:
        accelerator.init_trackers("agqg", config=_tracker_config(config))
    if accelerator.is_main_process:
        run_info = {
            "num_processes": accelerator.num_processes,
            "distributed_type": str(accelerator.distributed_type),
            "mixed_precision": accelerator.mixed_precision,
            "device": str(accelerator.device),
            "cached_image_embeds": use_embeds,
            "train_images": len(train_rows),
            "validation_images": len(eval_rows),
            "steps_per_epoch": steps_per_epoch,
            "max_train_steps": max_train_steps,
        }
        (output_dir / "run_info.json").write_text(json.dumps(run_info, indent=2) + "\n", encoding="utf-8")

    # --- resume --------------------------------------------------------------------------------
    resume_batches = 0
    if config.resume_from_checkpoint:
        resume_path = resolve_resume_path(config.resume_from_checkpoint, output_dir)
        if resume_path is None:
            accelerator.print(f"no checkpoint in {output_dir / 'checkpoints'} yet: starting from scratch")
        else:
            accelerator.load_state(str(resume_path))
            resume_batches = progress.batches_in_epoch
            accelerator.print(
                f"resumed from {resume_path}: step {progress.global_step}, epoch {progress.epoch}, "
                f"batch {resume_batches} of {len(train_loader)}"
            )

    # --- loop ----------------------------------------------------------------------------------
    checkpoint_every = int(config.checkpointing_steps) if str(config.checkpointing_steps).isdigit() else None
    loss_weights = dict(config.loss_weights)
    num_grades = model.config.num_grades
    score_batch = _score_fn(trainable, use_embeds)
    bar = tqdm(
        total=max_train_steps,
        initial=progress.global_step,
        desc="training",
        disable=not accelerator.is_local_main_process,
    )
    last_srcc = progress.history[-1]["srcc"] if progress.history else math.nan
    started = time.perf_counter()
    for epoch in range(progress.epoch, num_epochs):
        if progress.global_step >= max_train_steps:
            break
        trainable.train()
        train_loader.set_epoch(epoch)
        if isinstance(collate, ImageBatchCollator):
            collate.set_epoch(epoch)
        if resume_batches:
            epoch_loader = accelerator.skip_first_batches(train_loader, resume_batches)
            resume_batches = 0
        else:
            epoch_loader = train_loader
        window: list[float] = []
        for batch in epoch_loader:
            with accelerator.accumulate(trainable):
                if use_embeds:
                    output = trainable(batch["image_embeds"])
                else:
                    output = trainable(pixel_values=batch["pixel_values"])
                mos_std = batch["mos_std"] if bool(torch.isfinite(batch["mos_std"]).any()) else None
                loss, parts = compute_loss_for(output, batch["labels"], mos_std, loss_weights, score_range, num_grades)
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(trainable.parameters(), config.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            progress.batches_in_epoch += 1
            window.append(float(parts["loss"]))
            if not accelerator.sync_gradients:
                continue
            progress.global_step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(window[-20:]):.4f}", val_srcc=f"{last_srcc:.3f}", refresh=False)
            if tracking:
                logs = {f"train/{name}": float(value) for name, value in parts.items()}
                for group in optimizer.param_groups:
                    logs[f"lr/{group.get('name', 'group')}"] = group["lr"]
                accelerator.log(logs, step=progress.global_step)
            if checkpoint_every and progress.global_step % checkpoint_every == 0:
                save_checkpoint(accelerator, output_dir, progress.global_step, config.checkpoints_total_limit)
            if progress.global_step >= max_train_steps:
                break

        # --- epoch end: validation, best model, checkpoint ------------------------------------
        trainable.eval()
        predictions, references = predict(accelerator, score_batch, eval_loader, desc=f"validation epoch {epoch}")
        metrics = metrics_for(predictions, references)
        last_srcc = metrics["srcc"]
        record = {"epoch": epoch, "step": progress.global_step, "train_loss": float(np.mean(window or [math.nan]))}
        record.update(metrics)
        progress.history.append(record)
        progress.epoch = epoch + 1
        progress.batches_in_epoch = 0
        improved = math.isfinite(metrics["srcc"]) and metrics["srcc"] > progress.best_srcc
        if improved:
            progress.best_srcc, progress.best_epoch = metrics["srcc"], epoch
        if accelerator.is_main_process:
            # Without a finite SRCC yet (e.g. a validation set too small to measure), keep the latest model as a
            # provisional best so the run still ends with a model; any finite SRCC replaces it.
            provisional = not math.isfinite(progress.best_srcc)
            if improved or provisional:
                _save_model_atomically(_unwrap_full_model(accelerator, trainable), output_dir / "best_model")
            if config.plots:
                save_scatter_plot(
                    predictions,
                    references,
                    metrics,
                    output_dir / "plots" / f"validation_epoch{epoch:03d}.png",
                    f"validation, epoch {epoch}",
                )
            (output_dir / "history.json").write_text(json.dumps(progress.history, indent=2) + "\n", encoding="utf-8")
        if tracking:
            accelerator.log({f"eval/{name}": value for name, value in metrics.items()}, step=progress.global_step)
        accelerator.print(
            f"epoch {epoch}: validation SRCC {metrics['srcc']:.4f} PLCC {metrics['plcc']:.4f} "
            f"KRCC {metrics['krcc']:.4f} RMSE {metrics['rmse']:.4f}" + ("  (best so far)" if improved else "")
        )
        if config.checkpointing_steps == "epoch":
            save_checkpoint(accelerator, output_dir, progress.global_step, config.checkpoints_total_limit)
    bar.close()
    accelerator.wait_for_everyone()
    train_seconds = time.perf_counter() - started

    # --- final model: best validation SRCC, evaluated on validation and test ---------------------
    results = finalize(accelerator, config, splits, output_dir, eval_images)
    if tracking:
        accelerator.end_training()
    if accelerator.is_main_process:
        accelerator.print(f"training took {train_seconds:.1f} s; final model in {output_dir / 'model'}")
        if config.dataset == SYNTHETIC:
            accelerator.print(SYNTHETIC_NOTICE)
        if config.push_to_hub:
            _push(output_dir / "model", config)
    accelerator.wait_for_everyone()
    return results


def build_model_for(config: TrainConfig, score_range: tuple[float, float]) -> Any:
    from training.common import build_model

    return build_model(config, score_range)


def compute_loss_for(
    output: Any,
    labels: torch.Tensor,
    mos_std: torch.Tensor | None,
    weights: dict[str, float],
    score_range: Sequence[float],
    num_grades: int,
) -> tuple[torch.Tensor, dict[str, float]]:
    from training.losses import compute_loss

    return compute_loss(
        output, labels, mos_std=mos_std, weights=weights, score_range=score_range, num_grades=num_grades
    )


def _unwrap_full_model(accelerator: Accelerator, trainable: torch.nn.Module) -> Any:
    unwrapped = accelerator.unwrap_model(trainable)
    return unwrapped.model if isinstance(unwrapped, HeadOnlyScorer) else unwrapped


def finalize(
    accelerator: Accelerator, config: TrainConfig, splits: Any, output_dir: Path, eval_images: Any
) -> dict[str, Any]:
    """Loads the best model, evaluates it on the validation split and the test split (when there is one), and
    writes `model/` (complete folder), `model/eval_results.json` and the scatter plots."""
    from modeling_agqg import AGQGForImageQualityAssessment
    from modeling_agqg.configuration_agqg import public_name_or_path
    from training.evaluate import evaluate_model

    best_dir = output_dir / "best_model"
    if not best_dir.is_dir():
        raise RuntimeError(f"{best_dir} is missing: the run evaluated no epoch")
    model = AGQGForImageQualityAssessment.from_pretrained(best_dir).to(accelerator.device).eval()
    dataset_name = config.dataset
    split_label = f"split {config.split}" if config.split else ""
    to_evaluate = [("validation", eval_images)]
    if "test" in splits:
        to_evaluate.append(("test", limit_samples(splits["test"], config.max_eval_samples)))
    entries = []
    for split_name, rows in to_evaluate:
        label = f"{split_label} {split_name}".strip()
        predictions, references = evaluate_model(
            model,
            rows,
            accelerator=accelerator,
            batch_size=config.per_device_eval_batch_size,
            crops=config.eval_crops,
            num_workers=config.num_workers,
            desc=f"final {split_name}",
        )
        metrics = metrics_for(predictions, references)
        entries.append(eval_result_entry(dataset_name, label, len(predictions), metrics))
        if accelerator.is_main_process and config.plots:
            save_scatter_plot(
                predictions,
                references,
                metrics,
                output_dir / "plots" / f"final_{split_name}.png",
                f"{dataset_name} {label} (best model)",
            )
        accelerator.print(
            f"final {split_name} ({len(predictions)} images): SRCC {metrics['srcc']:.4f} PLCC {metrics['plcc']:.4f} "
            f"KRCC {metrics['krcc']:.4f} PLCC(logistic) {metrics['plcc_logistic']:.4f} RMSE {metrics['rmse']:.4f}"
        )
    payload: dict[str, Any] = {}
    if accelerator.is_main_process:
        final_dir = output_dir / "model"
        _save_model_atomically(model, final_dir)
        base_model = None if config.clip == TINY_CLIP and not config.init_model else (config.init_model or config.clip)
        if base_model is not None:
            base_model = public_name_or_path(base_model)  # a Hub id, or "<local path>/NAME": never this machine's path
        path = write_eval_results(
            final_dir / EVAL_RESULTS_FILE,
            model_name=config.model_name or output_dir.name,
            base_model=base_model,
            synthetic=config.dataset == SYNTHETIC,
            results=entries,
        )
        shutil.copy(output_dir / RESOLVED_CONFIG_FILE, final_dir / RESOLVED_CONFIG_FILE)
        payload = json.loads(path.read_text(encoding="utf-8"))
    accelerator.wait_for_everyone()
    if not payload:
        payload = {"results": entries}
    return payload


def _push(model_dir: Path, config: TrainConfig) -> None:
    if not config.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id (e.g. your-name/agqg-agiqa3k)")
    from hub_cards.publish import main as push_main

    code = push_main([str(model_dir), config.hub_model_id])
    if code:
        raise RuntimeError(
            f"agqg push {model_dir} {config.hub_model_id} failed with exit code {code}; the trained model is saved "
            f"in {model_dir}: rerun that command to finish the upload"
        )


def main(argv: Sequence[str] | None = None) -> int:
    train(parse_config(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
