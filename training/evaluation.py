# Copyright 2025 The agqg authors. Licensed under the Apache License, Version 2.0.
"""Evaluate a saved AGQG model on a dataset split: the evaluation training runs after every epoch and at the
end, and a command of its own.

    python training/evaluation.py --model runs/quickstart/model --dataset synthetic --which test
    accelerate launch training/evaluation.py --model runs/agiqa3k/model --dataset agiqa-3k \
        --data_root /data/AGIQA-3K --split 1 --which validation test [--views crops:15]

Every image is cut into views with `make_views(..., train=False)` and the model's view protocol
(`config.view_protocol`, which training records; `--views` overrides it), and scored with
`model(..., num_views=V)`: the same numbers as `pipeline("image-quality")`, `score()` and `agqg score`.

Writes to `--output_dir` (default `<model>/eval`): `eval_results.json` (the format training writes),
`predictions_<split>.csv` (name, MOS, prediction, the grade distribution) and `scatter_<split>.png`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from training.collate import ViewCollator, model_inputs
from training.options import (
    RESOLVED_OPTIONS_FILE,
    SYNTHETIC,
    DataOptions,
    progress_bars_disabled,
    resolve_mixed_precision,
)
from training.results import (
    EVAL_RESULTS_FILE,
    Predictions,
    eval_result_entry,
    format_metrics,
    metrics_for,
    save_scatter_plot,
    spread_metrics,
    write_eval_results,
    write_predictions_csv,
)


def has_whole_image_view(protocol: Any) -> bool:
    """Whether the protocol's last view of an image is the whole image (resize; crops with the resized view;
    ipce)."""
    return protocol.scheme in ("resize", "ipce") or bool(protocol.include_resized)


def score_batch(
    model: Any, batch: dict[str, Any], protocol: Any, num_views: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores of a batch of B images (B*V views, or B cached embeddings), their grade distributions and spreads.

    The vision tower runs once (`get_view_embeds`: once per run of repeated views); `score_image_embeds` then
    combines each image's views with the protocol's rule, exactly as `model(pixel_values, num_views=V)` does, and,
    where the protocol has a whole-image view, gives that view's grade distribution on its own (a mean over crops
    would mix their modes).

    Returns:
        scores (B,), grade_probs (B, K) and grade_std (B,: the spread of the combined distribution, the pipeline's
        `grade_std`), float32.
    """
    inputs = model_inputs(batch)
    embeds = inputs.pop("image_embeds", None)
    if embeds is None:
        embeds = model.get_view_embeds(inputs.pop("pixel_values"), num_views=num_views)
    prompts = {key: inputs[key] for key in ("input_ids", "attention_mask") if key in inputs}
    output = model.score_image_embeds(embeds, num_views=num_views, view_aggregation=protocol.aggregation, **prompts)
    grade_probs = output.grade_probs
    if num_views > 1 and has_whole_image_view(protocol):
        whole = model.score_image_embeds(embeds[num_views - 1 :: num_views], num_views=1, **prompts)
        grade_probs = whole.grade_probs
    return output.score.float(), grade_probs.float(), output.grade_std.float()


@torch.no_grad()
def predict(
    accelerator: Any,
    model: Any,
    loader: Any,
    *,
    protocol: Any,
    num_views: int,
    desc: str = "evaluating",
    disable_tqdm: bool = False,
) -> Predictions:
    """Scores every batch of a loader with `score_batch` and returns scores, grade distributions and labels in
    dataset order.

    With an `accelerator` the loader is a prepared (sharded) one and the results of all processes are gathered
    with `gather_for_metrics`, which drops the samples repeated to even out the last batch, so each image counts
    once, on every process. Without one (None) the batches run on the model's device in this process.

    Args:
        model: The unwrapped `AGQGForImageQualityAssessment` (in eval mode).
        loader: Batches from `ViewCollator(train=False)` or `EmbeddingCollator`.
        protocol: The view protocol the batches were cut with; `num_views` its views per image.
    """
    device = next(model.parameters()).device
    main_process = accelerator is None or accelerator.is_local_main_process
    scores, probs, spreads, references = [], [], [], []
    for batch in tqdm(loader, desc=desc, leave=False, disable=disable_tqdm or not main_process):
        if accelerator is None:
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        with accelerator.autocast() if accelerator is not None else contextlib.nullcontext():
            batch_scores, batch_probs, batch_spreads = score_batch(model, batch, protocol, num_views)
        gathered = (batch_scores, batch_probs, batch_spreads, batch["labels"].float())
        if accelerator is not None:
            gathered = accelerator.gather_for_metrics(gathered)
        scores.append(gathered[0].cpu())
        probs.append(gathered[1].cpu())
        spreads.append(gathered[2].cpu())
        references.append(gathered[3].cpu())
    if not scores:
        raise ValueError(f"{desc}: no images to evaluate")
    return Predictions(
        scores=torch.cat(scores).numpy(),
        mos=torch.cat(references).numpy(),
        grade_probs=torch.cat(probs).numpy(),
        grade_names=list(model.config.grade_names),
        grade_std=torch.cat(spreads).numpy(),
    )


def evaluate_dataset(
    model: Any,
    dataset: Any,
    *,
    accelerator: Any = None,
    protocol: Any = None,
    generation_prompts: bool = False,
    batch_size: int = 32,
    num_workers: int = 0,
    desc: str = "evaluating",
    disable_tqdm: bool = False,
) -> Predictions:
    """Scores a dataset with `image` and `mos` columns: test-time views of `protocol` (default the model's own,
    `model.view_protocol()`), each image's generation prompt when `generation_prompts`; with an `accelerator` the
    loader is sharded over its processes. Returns `Predictions` in dataset order (names from the `name` column)."""
    from torch.utils.data import DataLoader

    protocol = model.view_protocol(protocol)
    collate = ViewCollator(model, protocol, train=False, generation_prompts=generation_prompts)
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate, num_workers=num_workers)
    if accelerator is not None:
        loader = accelerator.prepare(loader)
    model.eval()
    predictions = predict(
        accelerator, model, loader, protocol=protocol, num_views=collate.num_views, desc=desc, disable_tqdm=disable_tqdm
    )
    names = dataset["name"] if "name" in dataset.column_names else [str(i) for i in range(len(dataset))]
    predictions.names = [str(name) for name in names]
    if "mos_std" in dataset.column_names:  # rater disagreement: the spread metric (results.spread_metrics)
        predictions.mos_std = np.asarray(dataset["mos_std"], dtype=np.float64)
    return predictions


def evaluate_parts(
    model: Any,
    parts: Sequence[tuple[str, Any]],
    *,
    accelerator: Any,
    dataset_name: str,
    split: str | None,
    output_dir: Path,
    protocol: Any = None,
    generation_prompts: bool = False,
    batch_size: int = 32,
    num_workers: int = 0,
    plot_prefix: str | None = "scatter_",
    file_suffix: str = "",
    note: str | None = None,
    disable_tqdm: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, Predictions]]:
    """Evaluates each (part name, dataset) with `evaluate_dataset` and reports it: a log line, an
    `eval_results.json` entry labelled `split N <part>` (with `note` when given), and on the main process
    `output_dir/predictions_<part><suffix>.csv` and (unless `plot_prefix` is None) the scatter plot
    `output_dir/<plot_prefix><part><suffix>.png`. Training's final evaluation and the command both use it.

    Returns:
        The entries and the predictions of each part.
    """
    protocol = model.view_protocol(protocol)
    entries, predictions_by_part = [], {}
    for part, rows in parts:
        predictions = evaluate_dataset(
            model,
            rows,
            accelerator=accelerator,
            protocol=protocol,
            generation_prompts=generation_prompts,
            batch_size=batch_size,
            num_workers=num_workers,
            desc=part,
            disable_tqdm=disable_tqdm,
        )
        predictions_by_part[part] = predictions
        metrics = {**metrics_for(predictions.scores, predictions.mos), **spread_metrics(predictions)}
        label = f"split {split} {part}" if split else part
        entry = eval_result_entry(dataset_name, label, len(predictions.scores), metrics)
        entries.append({**entry, "note": note} if note else entry)
        accelerator.print(f"{dataset_name} {label} ({len(predictions.scores)} images, {protocol.describe()}): "
                          f"{format_metrics(metrics)}")  # fmt: skip
        if accelerator.is_main_process:
            write_predictions_csv(output_dir / f"predictions_{part}{file_suffix}.csv", predictions)
            if plot_prefix is not None:
                path = output_dir / f"{plot_prefix}{part}{file_suffix}.png"
                save_scatter_plot(predictions.scores, predictions.mos, metrics, path, f"{dataset_name} {label}")
    return entries, predictions_by_part


# ---------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------


@dataclass
class EvaluationOptions:
    """Options of the evaluation command (the data options are train.py's)."""

    model: str = field(metadata={"help": "saved model folder or Hub id"})
    which: list[str] = field(default_factory=lambda: ["validation"], metadata={"help": "parts: train validation test"})
    views: str | None = field(default=None, metadata={"help": "view protocol override (default: the model's own)"})
    batch_size: int = field(default=32, metadata={"help": "images per forward pass and process"})
    max_samples: int | None = field(default=None, metadata={"help": "score only the first N images of each part"})
    output_dir: str | None = field(default=None, metadata={"help": "where results go (default: <model>/eval)"})
    mixed_precision: Literal["no", "bf16", "fp16", "auto"] = field(default="no", metadata={"help": "precision"})
    cpu: bool = field(default=False, metadata={"help": "run on the CPU even with a GPU"})
    disable_tqdm: bool = field(default=False, metadata={"help": "no progress bars (also: TQDM_DISABLE=1)"})


def _trained_options(model_dir: str) -> dict[str, Any]:
    """The options the model was trained with (its `train_config.yaml`), or {} for a model without one."""
    import yaml

    path = Path(model_dir) / RESOLVED_OPTIONS_FILE
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.is_file() else {}


def base_model_of(model: Any, model_id: str) -> str | None:
    """The model the evaluated one was built from, for `eval_results.json`: the CLIP checkpoint its config records
    (a Hub id as it is, a local folder as `<local path>/NAME`), never the evaluated model itself; None for a CLIP
    built in code."""
    from modeling_agqg.configuration_agqg import public_name_or_path

    backbone_config = model.config.backbone_config
    name = backbone_config.get("_name_or_path") if isinstance(backbone_config, dict) else backbone_config._name_or_path
    if not name or name == model_id:
        return None
    return public_name_or_path(str(name))


def parse_evaluation_args(argv: Sequence[str] | None) -> tuple[EvaluationOptions, DataOptions]:
    """`EvaluationOptions` and `DataOptions` from the command line; `generation_prompts` defaults to what the
    model was trained with."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser((EvaluationOptions, DataOptions), description="Evaluate a saved AGQG model.")
    args = list(argv) if argv is not None else sys.argv[1:]
    model_flag = argparse.ArgumentParser(add_help=False)
    model_flag.add_argument("--model")
    model_dir = model_flag.parse_known_args(args)[0].model
    if model_dir:
        trained = _trained_options(model_dir)
        parser.set_defaults(generation_prompts=bool(trained.get("generation_prompts", False)))
    evaluation, data = parser.parse_args_into_dataclasses(args=args, look_for_args_file=False)
    return evaluation, data


def main(argv: Sequence[str] | None = None) -> int:
    from accelerate import Accelerator

    from modeling_agqg import AGQGForImageQualityAssessment
    from training.run_data import load_splits, part_source

    evaluation, data = parse_evaluation_args(argv)
    accelerator = Accelerator(
        cpu=evaluation.cpu, mixed_precision=resolve_mixed_precision(evaluation.mixed_precision, evaluation.cpu)
    )
    splits = load_splits(data)
    unknown = [name for name in evaluation.which if name not in splits]
    if unknown:
        raise SystemExit(f"part(s) {unknown} not in {data.dataset!r} split {data.split or 1}; it has {list(splits)}")
    parts = []
    for part in evaluation.which:
        rows = splits[part]
        if evaluation.max_samples is not None:
            rows = rows.select(range(min(evaluation.max_samples, len(rows))))
        if len(rows) == 0:
            raise SystemExit(f"the {part} part is empty ({part_source(splits[part])})")
        parts.append((part, rows))
    model = AGQGForImageQualityAssessment.from_pretrained(evaluation.model).to(accelerator.device)
    protocol = model.view_protocol(evaluation.views)
    output_dir = Path(evaluation.output_dir) if evaluation.output_dir else Path(evaluation.model) / "eval"
    entries, _ = evaluate_parts(
        model,
        parts,
        accelerator=accelerator,
        dataset_name=data.dataset,
        split=data.split,
        output_dir=output_dir,
        protocol=protocol,
        generation_prompts=data.generation_prompts,
        batch_size=evaluation.batch_size,
        num_workers=data.num_workers,
        file_suffix=f"_{protocol.scheme}" if evaluation.views else "",
        disable_tqdm=progress_bars_disabled(evaluation.disable_tqdm),
    )
    if accelerator.is_main_process:
        write_eval_results(
            output_dir / EVAL_RESULTS_FILE,
            model_name=Path(evaluation.model).name if Path(evaluation.model).exists() else evaluation.model,
            base_model=base_model_of(model, evaluation.model),
            synthetic=data.dataset == SYNTHETIC,
            results=entries,
        )
        accelerator.print(f"results in {output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
