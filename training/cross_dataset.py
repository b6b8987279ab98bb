"""Cross-dataset evaluation: train on one dataset, test on others (the second protocol AGIQA papers report).

    python training/cross_dataset.py --train_dataset agiqa-3k --train_root /data/AGIQA-3K \
        --test agiqa-1k=/data/AGIQA-1K --test aigciqa2023=/data/AIGCIQA2023 --output_dir runs/cross_agiqa3k -- \
        --config training/configs/agiqa3k.yaml --clip openai/clip-vit-base-patch16

Everything after `--` (or any flag this script does not know) goes to `training/train.py`, which is started the
way `training/run_splits.py` starts it (`run_splits.run_training`: one subprocess, `--launcher`, resumable) into
`OUTPUT_DIR/train/` on `--train_split` of the training dataset. The saved model (`OUTPUT_DIR/train/model`) then
scores every image of each test dataset (`--test NAME=ROOT`, or `NAME:TARGET=ROOT` for another target, e.g.
`aigciqa2023:correspondence=/data/AIGCIQA2023`; all of its images unless `--test_split` names a split).

**Score ranges.** The model predicts on the training dataset's scale: the `score_range` train.py recorded in its
config, which is the training dataset's recorded `mos_range` unless `--score_range` overrode it. Each test
dataset has its own scale (its recorded `mos_range`, e.g. AGIQA-3K 0-5, AIGCIQA2023 0-100). Predictions are
mapped linearly from the training scale onto the test scale, `y = t_lo + (x - s_lo) * (t_hi - t_lo) / (s_hi -
s_lo)`, or reversed (`y = t_hi - ...`) when exactly one of the two scales is "lower is better" (SIQAD's DMOS).
SRCC and KRCC are rank statistics and PLCC a correlation, so none of them changes under this increasing affine
map; RMSE does, and is computed after the mapping, on the test dataset's scale (as all the metrics are). The
4-parameter-logistic PLCC and RMSE are reported too.

Writes `OUTPUT_DIR/cross_dataset.json` (the training run, and per test dataset the number of images, the map
and SRCC/KRCC/PLCC/PLCC-logistic/RMSE), `OUTPUT_DIR/predictions_<dataset>[_<target>].csv` (name, MOS, raw and
mapped prediction) and `OUTPUT_DIR/cross_dataset.md` (a Markdown table), and prints the table. Rerunning the same
command reuses a finished training run.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.options import RESOLVED_OPTIONS_FILE
from training.results import EVAL_RESULTS_FILE
from training.run_splits import MODEL_SUBDIR, owned_flags, run_training

REPORTED_METRICS = ("srcc", "krcc", "plcc", "plcc_logistic", "rmse")
_SET_BY_THIS_SCRIPT = ("--dataset", "--data_root", "--split", "--output_dir")


@dataclass(frozen=True)
class HeldOutDataset:
    """One test dataset: its loader name, folder and target (None: the loader's default)."""

    name: str
    root: Path
    target: str | None = None


def parse_test_spec(text: str) -> HeldOutDataset:
    """`NAME=ROOT` or `NAME:TARGET=ROOT` -> HeldOutDataset."""
    if "=" not in text:
        raise ValueError(f"--test {text!r}: expected NAME=ROOT or NAME:TARGET=ROOT (e.g. agiqa-1k=/data/AGIQA-1K)")
    head, root = text.split("=", 1)
    name, _, target = head.partition(":")
    if not name.strip() or not root.strip():
        raise ValueError(f"--test {text!r}: the dataset name and the folder must not be empty")
    return HeldOutDataset(name.strip(), Path(root.strip()).expanduser(), target.strip() or None)


def map_scores(
    scores: np.ndarray,
    source_range: Sequence[float],
    target_range: Sequence[float],
    *,
    reverse: bool = False,
) -> np.ndarray:
    """Maps scores linearly from `source_range` (lo, hi) onto `target_range` (lo, hi): lo -> lo, hi -> hi, or
    lo -> hi, hi -> lo with `reverse` (when one scale is "lower is better"). Shape (N,) -> (N,)."""
    s_lo, s_hi = (float(v) for v in source_range)
    t_lo, t_hi = (float(v) for v in target_range)
    if not s_hi > s_lo or not t_hi > t_lo:
        raise ValueError(f"score ranges must be (min, max) with min < max: {source_range}, {target_range}")
    unit = (np.asarray(scores, dtype=np.float64) - s_lo) / (s_hi - s_lo)
    return t_hi - unit * (t_hi - t_lo) if reverse else t_lo + unit * (t_hi - t_lo)


def _higher_is_better(dataset: str) -> bool:
    """Whether a higher score is better on a dataset's scale (the synthetic dataset and every loader dataset
    but SIQAD's DMOS)."""
    from training.data import DATASETS
    from training.options import SYNTHETIC

    if dataset == SYNTHETIC:
        return True
    key = dataset.strip().lower()
    for spec in DATASETS.values():
        if key == spec.name or key in spec.aliases:
            return spec.higher_is_better
    raise ValueError(f"unknown training dataset {dataset!r}; expected one of {sorted(DATASETS)} or {SYNTHETIC!r}")


def predict_scores(model: Any, dataset: Any, *, batch_size: int, generation_prompts: bool = False) -> np.ndarray:
    """The model's score for every row of `dataset` (its `image` column, and its generation prompts when
    `generation_prompts`), shape (N,), in dataset order: `training.evaluation.evaluate_dataset` with the model's
    own view protocol, on the model's device."""
    from training.evaluation import evaluate_dataset

    if len(dataset) == 0:
        return np.zeros(0)
    predictions = evaluate_dataset(
        model, dataset, generation_prompts=generation_prompts, batch_size=batch_size, desc="scoring"
    )
    return predictions.scores.astype(np.float64)


def evaluate_on(
    model: Any,
    test: HeldOutDataset,
    *,
    source_range: Sequence[float],
    source_higher_is_better: bool,
    batch_size: int,
    generation_prompts: bool = False,
    test_split: str | None = None,
    max_samples: int | None = None,
    on_bad_rows: str = "error",
) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Scores a test dataset with a trained model and computes the metrics on the test dataset's scale.

    Returns:
        (result, rows): `result` = {dataset, target, split, num_images, score_map: {source_range, target_range,
        reversed}, metrics: {srcc, krcc, plcc, plcc_logistic, rmse}}; `rows` = columns name, mos, predicted
        (training scale) and mapped (test scale), one entry per image.
    """
    from training.data import dataset_metadata, load_iqa_dataset, load_split, mos_range
    from training.metrics import compute_metrics

    kwargs: dict[str, Any] = {"on_bad_rows": on_bad_rows}
    if test.target:
        kwargs["target"] = test.target
    if test_split is None:
        data = load_iqa_dataset(test.name, test.root, **kwargs)
    else:
        split_name, _, part = test_split.partition(":")
        splits = load_split(test.name, test.root, split_name, **kwargs)
        part = part or ("test" if "test" in splits else "validation")
        if part not in splits:
            raise ValueError(f"{test.name} split {split_name} has no {part!r} part; it has {list(splits)}")
        data = splits[part]
    if max_samples is not None and max_samples < len(data):
        data = data.select(range(max_samples))
    metadata = dataset_metadata(data)
    target_range = mos_range(data)
    reverse = bool(metadata.get("higher_is_better", True)) != bool(source_higher_is_better)
    raw = predict_scores(model, data, batch_size=batch_size, generation_prompts=generation_prompts)
    mapped = map_scores(raw, source_range, target_range, reverse=reverse)
    references = np.asarray(data["mos"], dtype=np.float64)
    computed = compute_metrics(mapped, references)
    result = {
        "dataset": metadata.get("name", test.name),
        "root": str(test.root),
        "target": metadata.get("target"),
        "split": test_split or "all",
        "num_images": int(len(references)),
        "score_map": {
            "source_range": [float(v) for v in source_range],
            "target_range": [float(v) for v in target_range],
            "reversed": reverse,
        },
        "metrics": {name: _json_number(computed[name]) for name in REPORTED_METRICS},
    }
    rows = {"name": list(data["name"]), "mos": references.tolist(), "predicted": raw.tolist()}
    rows["mapped"] = mapped.tolist()
    return result, rows


def _json_number(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def markdown_table(payload: dict[str, Any]) -> str:
    """The results as a Markdown table: one row per test dataset."""
    train = payload["train"]
    lines = [
        f"Trained on {train['dataset']} (split {train['split']}, scale {train['score_range']}).",
        "",
        "| test dataset | images | SRCC | KRCC | PLCC | PLCC (logistic) | RMSE (test scale) |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in payload["results"]:
        cells = ["n/a" if result["metrics"][m] is None else f"{result['metrics'][m]:.4f}" for m in REPORTED_METRICS]
        lines.append(f"| {result['dataset']} | {result['num_images']} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train on one dataset, evaluate on others (cross-dataset).")
    parser.add_argument("--train_dataset", required=True, help="loader name of the training dataset, e.g. agiqa-3k")
    parser.add_argument("--train_root", default=None, help="folder of the training dataset")
    parser.add_argument("--train_split", default="1", help="split of the training dataset train.py uses (--split)")
    parser.add_argument(
        "--test", action="append", required=True, type=parse_test_spec, help="NAME=ROOT or NAME:TARGET=ROOT; repeat"
    )
    parser.add_argument("--test_split", default=None, help="evaluate one split (N or N:part) instead of every image")
    parser.add_argument("--output_dir", required=True, help="training run in OUTPUT_DIR/train, results next to it")
    parser.add_argument("--launcher", default=None, help='how to start train.py, e.g. "accelerate launch"')
    parser.add_argument("--batch_size", type=int, default=32, help="images per forward pass when testing")
    parser.add_argument("--max_test_samples", type=int, default=None, help="test on the first N images only")
    parser.add_argument("--device", default=None, help="torch device for testing (default: cuda if available)")
    parser.add_argument("--on_bad_rows", default="error", choices=("error", "skip"))
    args, train_args = parser.parse_known_args(argv)
    train_args = [a for a in train_args if a != "--"]
    owned = owned_flags(train_args, _SET_BY_THIS_SCRIPT)
    if owned:
        raise SystemExit(f"{owned} are set by cross_dataset.py (--train_dataset, --train_root, --train_split)")

    import torch
    import yaml

    from modeling_agqg import AGQGForImageQualityAssessment

    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    train_dir = output_dir / "train"
    model_dir = train_dir / MODEL_SUBDIR
    if not (model_dir / EVAL_RESULTS_FILE).is_file():
        data_args = ["--dataset", args.train_dataset]
        if args.train_root:
            data_args += ["--data_root", args.train_root]
        launcher = shlex.split(args.launcher) if args.launcher else None
        code = run_training([*train_args, *data_args], output_dir=train_dir, split=args.train_split, launcher=launcher)
        if code != 0 or not (model_dir / EVAL_RESULTS_FILE).is_file():
            print(f"training failed with exit code {code}; rerun the same command to resume it", file=sys.stderr)
            return 1
    else:
        print(f"training run already finished ({model_dir}), reusing it")

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = AGQGForImageQualityAssessment.from_pretrained(model_dir).to(device).eval()
    trained = yaml.safe_load((model_dir / RESOLVED_OPTIONS_FILE).read_text(encoding="utf-8")) or {}
    source_range = [float(v) for v in model.config.score_range]
    source_higher_is_better = _higher_is_better(args.train_dataset)
    payload: dict[str, Any] = {
        "train": {
            "dataset": args.train_dataset,
            "root": args.train_root,
            "split": args.train_split,
            "score_range": source_range,
            "higher_is_better": source_higher_is_better,
            "model": str(model_dir),
            "flags": train_args,
        },
        "results": [],
    }
    for test in args.test:
        result, rows = evaluate_on(
            model,
            test,
            source_range=source_range,
            source_higher_is_better=source_higher_is_better,
            batch_size=args.batch_size,
            generation_prompts=bool(trained.get("generation_prompts", False)),
            test_split=args.test_split,
            max_samples=args.max_test_samples,
            on_bad_rows=args.on_bad_rows,
        )
        payload["results"].append(result)
        stem = f"predictions_{result['dataset']}" + (f"_{test.target}" if test.target else "")
        with open(output_dir / f"{stem}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["name", "mos", "predicted", "mapped"])
            writer.writerows(zip(rows["name"], rows["mos"], rows["predicted"], rows["mapped"], strict=True))
    (output_dir / "cross_dataset.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    table = markdown_table(payload)
    (output_dir / "cross_dataset.md").write_text(table, encoding="utf-8")
    print("\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
