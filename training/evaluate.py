"""Evaluate a saved AGQG model on a dataset split, optionally with IPCE-style multi-crop testing.

    python training/evaluate.py --model runs/quickstart/model --dataset synthetic --which test
    accelerate launch training/evaluate.py --model runs/agiqa3k/model --dataset agiqa-3k \
        --data_root /data/AGIQA-3K --split 1 --which validation --crops 15

Writes `eval_results.json` (the format training writes), `predictions.csv` and a scatter plot of predicted score
against MOS (PNG) per split into `--output_dir`.

Multi-crop testing (`--crops N`): each image is scored on N crops of the model's input size, evenly spaced
over the image at its own resolution, plus the whole image resized to the input size; the score is the mean
over these N + 1 views. All views of a batch go through the model in one forward pass.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __name__ == "__main__" and not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from training.common import ensure_package_importable

    ensure_package_importable(__file__)

import numpy as np
import torch
from torch.utils.data import DataLoader

from training.common import (
    EVAL_RESULTS_FILE,
    SYNTHETIC,
    ImageBatchCollator,
    TrainConfig,
    eval_result_entry,
    load_run_datasets,
    metrics_for,
    resolve_mixed_precision,
    save_scatter_plot,
    write_eval_results,
)


def crop_boxes(width: int, height: int, crop_size: int, num_crops: int) -> list[tuple[int, int, int, int]]:
    """`num_crops` boxes (left, top, right, bottom) of side `crop_size`, evenly spaced over a width x height image.

    The positions lie on a g x g grid with g = ceil(sqrt(num_crops)) whose first and last positions touch the
    image borders; when num_crops < g^2, the crops are taken at evenly spaced grid indices (raster order), so
    they still cover the whole image. Requires width, height >= crop_size.
    """
    if num_crops < 1:
        raise ValueError(f"num_crops={num_crops} must be >= 1")
    if width < crop_size or height < crop_size:
        raise ValueError(f"image {width}x{height} is smaller than the crop size {crop_size}")
    grid = math.ceil(math.sqrt(num_crops))
    lefts = np.linspace(0, width - crop_size, grid).round().astype(int)
    tops = np.linspace(0, height - crop_size, grid).round().astype(int)
    positions = [(int(left), int(top)) for top in tops for left in lefts]
    chosen = np.linspace(0, len(positions) - 1, num_crops).round().astype(int)
    return [
        (positions[i][0], positions[i][1], positions[i][0] + crop_size, positions[i][1] + crop_size) for i in chosen
    ]


class MultiCropCollator:
    """Rows -> `pixel_values` (B * (N + 1), 3, S, S): per image N evenly spaced S x S crops (after upscaling
    images whose shorter side is below S) and the whole image resized to S x S, normalised like the model's
    image processor (rescale to [0, 1], then (x - mean) / std); plus `labels` (B,) and `views` = N + 1."""

    def __init__(self, image_processor: Any, crop_size: int, num_crops: int) -> None:
        self.mean = torch.tensor(image_processor.image_mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(image_processor.image_std, dtype=torch.float32).view(3, 1, 1)
        self.crop_size = int(crop_size)
        self.num_crops = int(num_crops)

    def _to_tensor(self, image: Any) -> torch.Tensor:
        array = torch.from_numpy(np.asarray(image, dtype=np.float32).copy()).permute(2, 0, 1) / 255.0
        return (array - self.mean) / self.std

    def views(self, image: Any) -> list[torch.Tensor]:
        """The N crops then the resized whole image, each (3, S, S)."""
        from modeling_agqg.views_agqg import Image

        size = self.crop_size
        shorter = min(image.size)
        if shorter < size:
            scale = size / shorter
            image = image.resize(
                (max(size, round(image.width * scale)), max(size, round(image.height * scale))), Image.BICUBIC
            )
        crops = [image.crop(box) for box in crop_boxes(image.width, image.height, size, self.num_crops)]
        crops.append(image.resize((size, size), Image.BICUBIC))
        return [self._to_tensor(view) for view in crops]

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        from modeling_agqg import load_image_file

        pixel_values = torch.stack([view for row in rows for view in self.views(load_image_file(row["image"]))])
        labels = torch.tensor([float(row["mos"]) for row in rows], dtype=torch.float32)
        return {"pixel_values": pixel_values, "labels": labels}


def _model_input_size(model: Any) -> int:
    return int(model.config.clip_config.vision_config.image_size)


@torch.no_grad()
def evaluate_model(
    model: Any,
    rows: Any,
    *,
    accelerator: Any,
    batch_size: int = 32,
    crops: int = 0,
    num_workers: int = 0,
    desc: str = "evaluating",
) -> tuple[np.ndarray, np.ndarray]:
    """Scores a dataset with `image` and `mos` columns. The loader is sharded over the accelerator's
    processes and results are gathered with `gather_for_metrics` (no duplicate from uneven sharding).

    Returns:
        (predictions (N,), MOS (N,)) in dataset order, on every process.
    """
    from training.train import predict

    image_processor = model.image_processor or model.default_image_processor()
    num_views = crops + 1 if crops > 0 else 1
    collate: Any = (
        MultiCropCollator(image_processor, _model_input_size(model), crops)
        if crops > 0
        else ImageBatchCollator(image_processor)
    )
    loader = accelerator.prepare(DataLoader(rows, batch_size=batch_size, collate_fn=collate, num_workers=num_workers))
    model.eval()

    def score_batch(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        scores = model(pixel_values=batch["pixel_values"]).score
        return scores.view(-1, num_views).mean(1)

    return predict(accelerator, score_batch, loader, desc=desc)


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Evaluate a saved AGQG model on a dataset split.")
    parser.add_argument("--model", required=True, help="saved model folder (or Hub id)")
    parser.add_argument("--dataset", default=SYNTHETIC, help="dataset name (synthetic, agiqa-3k, ...)")
    parser.add_argument("--data_root", help="the dataset's folder")
    parser.add_argument("--split", help="split number of the protocol (e.g. 1)")
    parser.add_argument("--protocol", help="split protocol (see docs/training.md)")
    parser.add_argument("--target", help="target column (e.g. quality or align for AGIQA-3K)")
    parser.add_argument("--which", nargs="+", default=["validation"], help="splits to score: train validation test")
    parser.add_argument("--crops", type=int, default=0, help="multi-crop testing: N crops + the whole image")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_samples", type=int, help="score only the first N images of each split")
    parser.add_argument("--synthetic_image_size", type=int, default=64)
    parser.add_argument("--output_dir", help="where to write results (default: <model>/eval)")
    parser.add_argument("--mixed_precision", default="no", help="no, bf16, fp16 or auto")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even with a GPU")
    parser.add_argument("--num_workers", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from accelerate import Accelerator

    from modeling_agqg import AGQGForImageQualityAssessment

    args = build_arg_parser().parse_args(argv)
    accelerator = Accelerator(cpu=args.cpu, mixed_precision=resolve_mixed_precision(args.mixed_precision, args.cpu))
    data_config = TrainConfig(
        dataset=args.dataset,
        data_root=args.data_root,
        split=args.split,
        protocol=args.protocol,
        target=args.target,
        synthetic_image_size=args.synthetic_image_size,
    )
    splits = load_run_datasets(data_config)
    unknown = [name for name in args.which if name not in splits]
    if unknown:
        raise SystemExit(f"split(s) {unknown} not in dataset {args.dataset!r}; it has {list(splits)}")
    model = AGQGForImageQualityAssessment.from_pretrained(args.model).to(accelerator.device)
    output_dir = Path(args.output_dir) if args.output_dir else Path(args.model) / "eval"
    entries = []
    for split_name in args.which:
        rows = splits[split_name]
        if args.max_samples is not None:
            rows = rows.select(range(min(args.max_samples, len(rows))))
        predictions, references = evaluate_model(
            model,
            rows,
            accelerator=accelerator,
            batch_size=args.batch_size,
            crops=args.crops,
            num_workers=args.num_workers,
            desc=split_name,
        )
        metrics = metrics_for(predictions, references)
        label = f"split {args.split} {split_name}" if args.split else split_name
        entries.append(eval_result_entry(args.dataset, label, len(predictions), metrics))
        accelerator.print(
            f"{args.dataset} {label} ({len(predictions)} images, {args.crops or 'no'} crops): "
            + "  ".join(f"{k.upper()} {v:.4f}" for k, v in metrics.items())
        )
        if accelerator.is_main_process:
            suffix = f"_crops{args.crops}" if args.crops else ""
            save_scatter_plot(
                predictions,
                references,
                metrics,
                output_dir / f"scatter_{split_name}{suffix}.png",
                f"{args.dataset} {label}" + (f", {args.crops} crops + whole" if args.crops else ""),
            )
            _write_predictions(output_dir / f"predictions_{split_name}{suffix}.csv", rows, predictions, references)
    if accelerator.is_main_process:
        config = getattr(model.config, "_name_or_path", None)
        write_eval_results(
            output_dir / EVAL_RESULTS_FILE,
            model_name=Path(args.model).name if Path(args.model).exists() else args.model,
            base_model=None if not config or Path(config).exists() else config,
            synthetic=args.dataset == SYNTHETIC,
            results=entries,
        )
        accelerator.print(f"results in {output_dir}")
    return 0


def _write_predictions(path: Path, rows: Any, predictions: np.ndarray, references: np.ndarray) -> None:
    names = rows["name"] if "name" in rows.column_names else [str(i) for i in range(len(predictions))]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "mos", "prediction"])
        for name, mos, prediction in zip(names, references, predictions, strict=True):
            writer.writerow([name, f"{mos:.6g}", f"{prediction:.6g}"])


if __name__ == "__main__":
    sys.exit(main())
