"""Repeated-split protocol: train and evaluate on N train/validation splits, then tabulate mean ± std.

    python training/run_splits.py --splits 1-10 --output_dir runs/agiqa3k_10splits -- \
        --config training/configs/agiqa3k.yaml --clip openai/clip-vit-base-patch16 --data_root /data/AGIQA-3K

Everything after `--` (or any flag this script does not know) goes to `training/train.py`. Each split runs in
its own process (`--launcher`, default the current Python; e.g. `--launcher "accelerate launch --num_processes 2
--multi_gpu"`) into `OUTPUT_DIR/split_<n>/`, with `--resume_from_checkpoint latest`, so rerunning the same
command after an interruption resumes the unfinished split and skips the finished ones.

Writes `OUTPUT_DIR/summary.json` (per-split results and mean/std per split kind and metric) and
`OUTPUT_DIR/summary.md` (a Markdown table), and prints the table.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from training.results import EVAL_RESULTS_FILE, METRIC_NAMES

TRAIN_SCRIPT = Path(__file__).resolve().parent / "train.py"
MODEL_SUBDIR = "model"  # train.py saves the final model (and its eval_results.json) in <output_dir>/model
TRAIN_OWNED_FLAGS = ("--split", "--output_dir")  # set per run by train_command


def owned_flags(train_args: Sequence[str], flags: Sequence[str] = TRAIN_OWNED_FLAGS) -> list[str]:
    """Which of `flags` appear in `train_args` (as `--flag value` or `--flag=value`)."""
    return [f for f in flags if any(a == f or a.startswith(f"{f}=") for a in train_args)]


def train_command(
    train_args: Sequence[str], *, output_dir: str | Path, split: str | None, launcher: Sequence[str] | None = None
) -> list[str]:
    """The command line that trains one run with `training/train.py`: the user's training flags, then the run's
    `--split` (when given) and `--output_dir`, and `--resume_from_checkpoint latest` so a rerun resumes.

    This is the one place that builds train.py's command line (its options are `training.options`, parsed by
    `transformers.HfArgumentParser`: `--name value`, lists as `--name a b`, mappings as `name=value,...`).

    Args:
        train_args: Flags for train.py (e.g. `--config ... --data_root ...`), without `--split`/`--output_dir`.
        output_dir: The run's folder; train.py writes `<output_dir>/model/eval_results.json` when it finishes.
        split: The split name for `--split`, or None to leave it to the flags / config.
        launcher: How to start train.py (default: the current Python), e.g. `["accelerate", "launch"]`.
    """
    owned = owned_flags(train_args)
    if owned:
        raise ValueError(f"{owned} are set per run; remove them from the training flags")
    command = [*(launcher or [sys.executable]), str(TRAIN_SCRIPT), *train_args]
    if split is not None:
        command += ["--split", str(split)]
    return [*command, "--output_dir", str(output_dir), "--resume_from_checkpoint", "latest"]


def run_training(
    train_args: Sequence[str], *, output_dir: str | Path, split: str | None, launcher: Sequence[str] | None = None
) -> int:
    """Runs `train_command(...)` in a subprocess (printing it first); returns its exit code."""
    command = train_command(train_args, output_dir=output_dir, split=split, launcher=launcher)
    tqdm.write("$ " + " ".join(shlex.quote(c) for c in command))
    return subprocess.run(command).returncode


def parse_splits(text: str) -> list[str]:
    """`1-10`, `1,3,5` or `2` -> split names."""
    names: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            first, last = (int(v) for v in part.split("-", 1))
            if last < first:
                raise ValueError(f"split range {part!r} runs backwards")
            names.extend(str(n) for n in range(first, last + 1))
        else:
            names.append(part)
    if not names:
        raise ValueError(f"no splits in {text!r}")
    return names


def summarize(per_split: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof=1; 0 for one split) of each metric, per kind of evaluated split
    (the last word of each result's `split`, e.g. `validation`, `test`).

    Args:
        per_split: split name -> that split's `eval_results.json` payload.
    """
    values: dict[str, dict[str, list[float]]] = {}
    for payload in per_split.values():
        for entry in payload["results"]:
            kind = entry["split"].split()[-1]
            for name in METRIC_NAMES:
                value = entry["metrics"].get(name)
                values.setdefault(kind, {}).setdefault(name, []).append(np.nan if value is None else float(value))
    table: dict[str, Any] = {}
    for kind, metrics in values.items():
        table[kind] = {}
        for name, series in metrics.items():
            array = np.asarray(series, dtype=np.float64)
            table[kind][name] = {
                "mean": float(np.nanmean(array)) if np.isfinite(array).any() else None,
                "std": float(np.nanstd(array, ddof=1)) if np.isfinite(array).sum() > 1 else 0.0,
                "n": int(np.isfinite(array).sum()),
            }
    return table


def markdown_table(summary: dict[str, Any], num_splits: int) -> str:
    lines = [
        f"| split kind | splits | {' | '.join(n.upper() for n in METRIC_NAMES)} |",
        "|---|---|" + "---|" * len(METRIC_NAMES),
    ]
    for kind, metrics in summary.items():
        cells = []
        for name in METRIC_NAMES:
            entry = metrics.get(name)
            cells.append("n/a" if not entry or entry["mean"] is None else f"{entry['mean']:.4f} ± {entry['std']:.4f}")
        lines.append(f"| {kind} | {num_splits} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train and evaluate on N splits; write a mean ± std table.")
    parser.add_argument("--splits", default="1-10", help="split names: 1-10, 1,2,5, ...")
    parser.add_argument("--output_dir", required=True, help="one subfolder per split, plus the summary")
    parser.add_argument("--launcher", default=None, help='how to start train.py, e.g. "accelerate launch"')
    args, train_args = parser.parse_known_args(argv)
    train_args = [a for a in train_args if a != "--"]
    owned = owned_flags(train_args)
    if owned:
        raise SystemExit(f"{owned[0]} is set per split by run_splits.py; remove it from the training flags")
    splits = parse_splits(args.splits)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    launcher = shlex.split(args.launcher) if args.launcher else [sys.executable]

    per_split: dict[str, dict[str, Any]] = {}
    failed: dict[str, int] = {}
    for split in tqdm(splits, desc="splits"):
        split_dir = output_dir / f"split_{split}"
        results_file = split_dir / MODEL_SUBDIR / EVAL_RESULTS_FILE
        if not results_file.is_file():
            code = run_training(train_args, output_dir=split_dir, split=split, launcher=launcher)
            if code != 0 or not results_file.is_file():
                # Keep going: the other splits are still worth having; the failure is reported at the end.
                failed[split] = code
                tqdm.write(f"split {split} failed with exit code {code}; continuing")
                continue
        else:
            tqdm.write(f"split {split}: already done ({results_file}), skipping")
        per_split[split] = json.loads(results_file.read_text(encoding="utf-8"))

    summary = summarize(per_split) if per_split else {}
    payload = {"splits": list(per_split), "failed": failed, "summary": summary, "per_split": per_split}
    (output_dir / "summary.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    table = markdown_table(summary, len(per_split)) if per_split else "no split finished\n"
    (output_dir / "summary.md").write_text(table, encoding="utf-8")
    print("\n" + table)
    if failed:
        print(f"failed splits: {failed} (rerun the same command to retry them)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
