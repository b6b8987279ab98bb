r"""Ablation: every host framework with its original softmax grading and with AGQG, on equal footing.

    python training/ablate.py --dataset synthetic --hosts all --splits 3 --output_dir runs/ablation
    python training/ablate.py --dataset agiqa-3k --data_root /data/AGIQA-3K --clip openai/clip-vit-base-patch16 \
        --hosts all --splits 10 --steps 3000 --batch_size 32 --output_dir runs/ablation-agiqa3k

For each split and host, both gradings are trained from the same seed (same CLIP, same initial prompts, same
batches in the same order), with the same budget (`--steps` AdamW steps of `--batch_size` images) and the host's
own training settings (`training/configs/hosts/*.yaml`), then scored on the split's test images (the
`validation` split where a protocol has no test split; there is no model selection, the last step is scored).
Synthetic splits are different photo splits (seed = `--seed` + split index); real datasets use their
protocol's split files 1..N.

Reported per host and grading, mean ± std over splits: SRCC, PLCC and the **semantic-drift fraction**, the share
of test images whose K-grade distribution is multimodal. A distribution p_1..p_K is multimodal when some grade
j has a strictly higher grade on both sides by more than the tolerance epsilon:

    max_{i<j} p_i - p_j > epsilon   and   max_{i>j} p_i - p_j > epsilon.

(The softmax of the similarities for the baseline, the GRM probabilities for AGQG, which cannot be multimodal
by construction.) The differences AGQG - softmax are averaged per split (paired).

Outputs in `--output_dir`: `ablation.json` (every run and the summary), `ablation.md` (the table),
`plots/<host>_srcc_plcc.png` (bar chart softmax vs AGQG) and `plots/<host>_grade_distributions.png` (the grade
distributions of the same test images under both gradings). Runs that fail are reported and skipped.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __name__ == "__main__" and not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from training.common import ensure_package_importable

    ensure_package_importable(__file__)

import numpy as np
import torch

from training.hosts import (
    GRADINGS,
    HOST_NAMES,
    HostPreset,
    TinyClipOptions,
    build_host_model,
    decode_rows,
    load_host,
    predict_host,
    train_host,
)

DEFAULT_DRIFT_TOLERANCE = 1e-3
SYNTHETIC_NOTE = (
    "Synthetic demonstration: tiny random CLIPs trained from scratch on graded distortions of a few photographs. "
    "The numbers show the ablation machinery working; they say nothing about AGQG on real AI-generated images."
)


# ---------------------------------------------------------------------------------------------
# Semantic drift
# ---------------------------------------------------------------------------------------------


def multimodal_mask(grade_probs: np.ndarray, tolerance: float = DEFAULT_DRIFT_TOLERANCE) -> np.ndarray:
    """Which rows of `grade_probs` (N, K) are multimodal: some grade j has a higher grade on each side by more
    than `tolerance` (max_{i<j} p_i - p_j > tol and max_{i>j} p_i - p_j > tol). Returns (N,) booleans."""
    probs = np.asarray(grade_probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"grade_probs must be (N, K), got shape {probs.shape}")
    if probs.shape[1] < 3:
        return np.zeros(probs.shape[0], dtype=bool)
    left = np.maximum.accumulate(probs, axis=1)[:, :-2]  # max over i <= j-1, for j = 1..K-2
    right = np.maximum.accumulate(probs[:, ::-1], axis=1)[:, ::-1][:, 2:]  # max over i >= j+1
    middle = probs[:, 1:-1]
    return ((left - middle > tolerance) & (right - middle > tolerance)).any(axis=1)


def semantic_drift_fraction(grade_probs: np.ndarray, tolerance: float = DEFAULT_DRIFT_TOLERANCE) -> float:
    """Share of rows of `grade_probs` (N, K) that are multimodal (`multimodal_mask`); NaN when N = 0."""
    mask = multimodal_mask(grade_probs, tolerance)
    return float(mask.mean()) if mask.size else math.nan


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def load_ablation_splits(
    dataset: str,
    data_root: str | None,
    split: str | None,
    *,
    seed: int,
    cache_dir: str | Path | None = None,
    synthetic_image_size: int = 64,
    protocol: str | None = None,
) -> tuple[Any, tuple[float, float]]:
    """The `DatasetDict` of one split and its MOS range. `synthetic`: built with `seed` (a different photo
    split per seed) and cached in `cache_dir/synthetic_seed<seed>`; otherwise `training.data` loads the
    protocol's split `split` from `data_root` (`protocol`: see `training.data.load_split`, default its split files)."""
    from training.common import SYNTHETIC, TrainConfig, dataset_score_range, load_run_datasets

    root = data_root
    if dataset == SYNTHETIC and cache_dir is not None and data_root is None:
        root = str(Path(cache_dir) / f"synthetic_seed{seed}")
    config = TrainConfig(
        dataset=dataset,
        data_root=root,
        split=split,
        seed=seed,
        synthetic_image_size=synthetic_image_size,
        protocol=protocol,
    )
    splits = load_run_datasets(config)
    return splits, dataset_score_range(config, splits)


def _test_split_name(splits: Any) -> str:
    return "test" if "test" in splits else "validation"


# ---------------------------------------------------------------------------------------------
# One run
# ---------------------------------------------------------------------------------------------


def run_one(
    preset: HostPreset,
    splits: Any = None,
    *,
    score_range: Sequence[float],
    clip: str = "tiny",
    steps: int,
    batch_size: int = 32,
    seed: int = 0,
    tiny: TinyClipOptions | None = None,
    train_rows: list[dict[str, Any]] | None = None,
    test_rows: list[dict[str, Any]] | None = None,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    drift_tolerance: float = DEFAULT_DRIFT_TOLERANCE,
    save_to: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Builds `preset` (seeded), trains it for `steps`, scores the test rows and returns a record with the
    metrics (`srcc`, `plcc`, `krcc`, `rmse`), `drift`, timing and the per-image `scores`, `grade_probs`, `mos`.
    Rows already decoded (`train_rows`, `test_rows`) are used as they are, else read from `splits`."""
    from training.metrics import compute_metrics

    if train_rows is None:
        train_rows = decode_rows(splits["train"], max_train_samples)
    if test_rows is None:
        test_rows = decode_rows(splits[_test_split_name(splits)], max_eval_samples)
    started = time.perf_counter()
    model = build_host_model(preset, clip=clip, score_range=score_range, seed=seed, tiny=tiny)
    losses = train_host(model, preset, train_rows, steps=steps, batch_size=batch_size, seed=seed, progress=progress)
    train_seconds = time.perf_counter() - started
    predicted = predict_host(model, preset, test_rows, progress=progress)
    metrics = compute_metrics(predicted["score"], predicted["mos"])
    if save_to is not None:
        model.save_pretrained(save_to)
    return {
        "host": preset.host,
        "grading": preset.grading,
        "seed": seed,
        "steps": steps,
        "train_images": len(train_rows),
        "test_images": len(test_rows),
        "final_loss": float(np.mean(losses[-10:])),
        "train_seconds": round(train_seconds, 2),
        **{name: float(metrics[name]) for name in ("srcc", "plcc", "krcc", "rmse")},
        "drift": semantic_drift_fraction(predicted["grade_probs"], drift_tolerance),
        "grade_names": list(model.config.grade_names),
        "scores": predicted["score"].tolist(),
        "grade_probs": predicted["grade_probs"].tolist(),
        "mos": predicted["mos"].tolist(),
    }


# ---------------------------------------------------------------------------------------------
# Summary, table, plots
# ---------------------------------------------------------------------------------------------

SUMMARY_METRICS = ("srcc", "plcc", "drift")


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return {"mean": math.nan, "std": math.nan, "n": 0}
    return {
        "mean": float(np.mean(finite)),
        "std": float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0,
        "n": len(finite),
    }


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per host: per grading mean ± std (sample std over splits) of SRCC, PLCC and drift, and the paired
    difference AGQG - softmax over the splits where both ran."""
    summary: dict[str, Any] = {}
    hosts = list(dict.fromkeys(r["host"] for r in records))
    for host in hosts:
        entry: dict[str, Any] = {}
        by_grading = {g: {r["split"]: r for r in records if r["host"] == host and r["grading"] == g} for g in GRADINGS}
        for grading, runs in by_grading.items():
            if runs:
                entry[grading] = {m: _mean_std([r[m] for r in runs.values()]) for m in SUMMARY_METRICS}
        paired = sorted(set(by_grading["softmax"]) & set(by_grading["agqg"]))
        if paired:
            entry["difference"] = {
                m: _mean_std([by_grading["agqg"][s][m] - by_grading["softmax"][s][m] for s in paired])
                for m in SUMMARY_METRICS
            }
        summary[host] = entry
    return summary


def _cell(stats: dict[str, float] | None, signed: bool = False) -> str:
    if not stats or not math.isfinite(stats["mean"]):
        return "n/a"
    sign = "+" if signed and stats["mean"] >= 0 else ""
    return f"{sign}{stats['mean']:.3f} ± {stats['std']:.3f}"


def markdown_table(summary: dict[str, Any]) -> str:
    """The ablation table: one row per host; SRCC, PLCC and drift for softmax, AGQG and their difference."""
    header = (
        "| host | SRCC softmax | SRCC AGQG | ΔSRCC | PLCC softmax | PLCC AGQG | ΔPLCC | drift softmax | drift AGQG |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for host, entry in summary.items():
        soft, agqg, diff = entry.get("softmax", {}), entry.get("agqg", {}), entry.get("difference", {})
        lines.append(
            f"| {host} | {_cell(soft.get('srcc'))} | {_cell(agqg.get('srcc'))} | {_cell(diff.get('srcc'), True)} "
            f"| {_cell(soft.get('plcc'))} | {_cell(agqg.get('plcc'))} | {_cell(diff.get('plcc'), True)} "
            f"| {_cell(soft.get('drift'))} | {_cell(agqg.get('drift'))} |"
        )
    return header + "\n".join(lines) + "\n"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_host_bars(host: str, entry: dict[str, Any], path: Path) -> Path:
    """Bar chart of SRCC and PLCC (mean ± std over splits), softmax next to AGQG, for one host."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5, 3.5), dpi=100)
    width = 0.36
    for offset, grading, colour in ((-width / 2, "softmax", "#8c8c8c"), (width / 2, "agqg", "#1f77b4")):
        stats = entry.get(grading)
        if not stats:
            continue
        means = [stats[m]["mean"] for m in ("srcc", "plcc")]
        stds = [stats[m]["std"] for m in ("srcc", "plcc")]
        positions = np.arange(2) + offset
        axis.bar(positions, means, width, yerr=stds, capsize=4, color=colour, label=grading)
        for x, y in zip(positions, means, strict=True):
            if math.isfinite(y):
                axis.text(x, y, f"{y:.3f}", ha="center", va="bottom", fontsize=8)
    axis.set_xticks(np.arange(2), ["SRCC", "PLCC"])
    axis.set_ylabel("correlation with MOS (mean ± std over splits)")
    axis.set_title(f"{host}: softmax vs AGQG grading")
    axis.axhline(0, color="black", linewidth=0.6)
    axis.legend(loc="best", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def example_indices(mos: Sequence[float], count: int) -> list[int]:
    """`count` test images spread over the MOS range: the images at evenly spaced MOS quantiles."""
    order = np.argsort(np.asarray(mos), kind="stable")
    if count >= len(order):
        return order.tolist()
    return [int(order[i]) for i in np.linspace(0, len(order) - 1, count).round().astype(int)]


def plot_grade_distributions(host: str, runs: dict[str, dict[str, Any]], count: int, path: Path) -> Path:
    """The grade distributions of the same test images (one panel each) under softmax and AGQG grading."""
    plt = _pyplot()
    reference = runs.get("softmax") or runs["agqg"]
    indices = example_indices(reference["mos"], count)
    figure, axes = plt.subplots(1, len(indices), figsize=(2.6 * len(indices), 2.8), dpi=100, sharey=True)
    axes = np.atleast_1d(axes)
    names = reference["grade_names"]
    width = 0.4
    for axis, index in zip(axes, indices, strict=True):
        for offset, grading, colour in ((-width / 2, "softmax", "#8c8c8c"), (width / 2, "agqg", "#1f77b4")):
            if grading in runs:
                axis.bar(
                    np.arange(len(names)) + offset,
                    runs[grading]["grade_probs"][index],
                    width,
                    color=colour,
                    label=grading,
                )
        axis.set_xticks(np.arange(len(names)), names, rotation=45, fontsize=7)
        axis.set_title(f"MOS {reference['mos'][index]:.2f}", fontsize=9)
    axes[0].set_ylabel("P(grade)")
    axes[0].legend(fontsize=7)
    figure.suptitle(f"{host}: grade distributions of the same test images", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Ablate softmax vs AGQG grading across host frameworks.")
    parser.add_argument("--dataset", default="synthetic", help="'synthetic' or a dataset name known to training.data")
    parser.add_argument("--data_root", help="the dataset's folder (real datasets)")
    parser.add_argument(
        "--protocol", help="split protocol of a real dataset (training.data.load_split; default: files)"
    )
    parser.add_argument("--hosts", default="all", help=f"'all' or a comma list of {', '.join(HOST_NAMES)} / YAML files")
    parser.add_argument("--gradings", default="softmax,agqg", help="comma list of gradings to compare")
    parser.add_argument("--splits", type=int, default=3, help="number of splits (synthetic: seeds; real: split 1..N)")
    parser.add_argument("--seed", type=int, default=0, help="base seed; split i uses seed + i - 1")
    parser.add_argument("--clip", default="tiny", help="'tiny' (offline random CLIP) or a CLIP checkpoint")
    parser.add_argument("--tiny_image_size", type=int, default=32)
    parser.add_argument("--tiny_hidden_size", type=int, default=32)
    parser.add_argument("--tiny_num_layers", type=int, default=2)
    parser.add_argument("--synthetic_image_size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=150, help="optimiser steps per run (the shared budget)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument(
        "--backbone_learning_rate", type=float, help="override every host's backbone learning rate (e.g. from scratch)"
    )
    parser.add_argument("--max_train_samples", type=int)
    parser.add_argument("--max_eval_samples", type=int)
    parser.add_argument("--drift_tolerance", type=float, default=DEFAULT_DRIFT_TOLERANCE)
    parser.add_argument("--examples", type=int, default=5, help="test images in the grade-distribution plots")
    parser.add_argument("--num_threads", type=int, help="torch threads (default: 1 for tiny CLIPs, all otherwise)")
    parser.add_argument("--no_plots", action="store_true")
    parser.add_argument("--output_dir", default="runs/ablation")
    return parser


def _host_list(text: str) -> list[str]:
    return list(HOST_NAMES) if text.strip() == "all" else [h.strip() for h in text.split(",") if h.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_arg_parser().parse_args(argv)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    gradings = [g.strip() for g in args.gradings.split(",") if g.strip()]
    bad = [g for g in gradings if g not in GRADINGS]
    if bad:
        print(f"error: --gradings {bad}: expected among {GRADINGS}", file=sys.stderr)
        return 2
    overrides = {} if args.backbone_learning_rate is None else {"backbone_learning_rate": args.backbone_learning_rate}
    try:
        presets = [load_host(name, **overrides) for name in _host_list(args.hosts)]
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    tiny = TinyClipOptions(
        image_size=args.tiny_image_size,
        hidden_size=args.tiny_hidden_size,
        num_layers=args.tiny_num_layers,
        projection_dim=args.tiny_hidden_size,
    )
    # Tiny models are dominated by per-op overhead, which extra threads only add to (and which collapses when
    # the cores are shared); real CLIPs want every core.
    torch.set_num_threads(args.num_threads or (1 if args.clip == "tiny" else torch.get_num_threads()))
    started = time.perf_counter()
    records: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for split_index in range(1, args.splits + 1):
        seed = args.seed + split_index - 1
        split_name = None if args.dataset == "synthetic" else str(split_index)
        try:
            splits, score_range = load_ablation_splits(
                args.dataset,
                args.data_root,
                split_name,
                seed=seed,
                cache_dir=output_dir / "data",
                synthetic_image_size=args.synthetic_image_size,
                protocol=args.protocol,
            )
            train_rows = decode_rows(splits["train"], args.max_train_samples)
            test_rows = decode_rows(splits[_test_split_name(splits)], args.max_eval_samples)
        except Exception as error:  # noqa: BLE001 - a missing split must not stop the others
            skipped.append({"split": split_index, "error": f"{type(error).__name__}: {error}"})
            print(f"split {split_index}: skipped ({error})", file=sys.stderr)
            continue
        for preset in presets:
            for grading in gradings:
                label = f"split {split_index} {preset.host}/{grading}"
                try:
                    record = run_one(
                        preset.with_grading(grading),
                        score_range=score_range,
                        clip=args.clip,
                        steps=args.steps,
                        batch_size=args.batch_size,
                        seed=seed,
                        tiny=tiny,
                        train_rows=train_rows,
                        test_rows=test_rows,
                        drift_tolerance=args.drift_tolerance,
                    )
                except Exception as error:  # noqa: BLE001 - report and go on with the other runs
                    skipped.append(
                        {
                            "split": split_index,
                            "host": preset.host,
                            "grading": grading,
                            "error": f"{type(error).__name__}: {error}",
                        }
                    )
                    print(f"{label}: FAILED {error}\n{traceback.format_exc()}", file=sys.stderr)
                    continue
                record["split"] = split_index
                records.append(record)
                print(
                    f"{label}: SRCC {record['srcc']:.4f} PLCC {record['plcc']:.4f} drift {record['drift']:.3f} "
                    f"({record['train_seconds']:.1f} s)",
                    flush=True,
                )
    summary = summarize(records)
    table = markdown_table(summary)
    elapsed = time.perf_counter() - started
    command = "python training/ablate.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    setup = (
        f"{len(records)} runs, {args.splits} split(s), {args.steps} steps x batch {args.batch_size}, clip={args.clip}, "
        f"dataset={args.dataset}; {elapsed / 60:.1f} min wall-clock on a {os.cpu_count()}-core "
        f"{platform.machine()} machine, {torch.get_num_threads()} torch thread(s)"
    )
    note = SYNTHETIC_NOTE if args.dataset == "synthetic" else ""
    markdown = f"Command: `{command}`\n\n{setup}\n\n{table}"
    if note:
        markdown += f"\n{note}\n"
    if skipped:
        markdown += "\nSkipped:\n" + "".join(f"- {json.dumps(s)}\n" for s in skipped)
    (output_dir / "ablation.md").write_text(markdown, encoding="utf-8")
    payload = {
        "command": command,
        "setup": setup,
        "drift_tolerance": args.drift_tolerance,
        "summary": summary,
        "runs": records,
        "skipped": skipped,
        "note": note,
    }
    (output_dir / "ablation.json").write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    if not args.no_plots:
        for host, entry in summary.items():
            plot_host_bars(host, entry, output_dir / "plots" / f"{host}_srcc_plcc.png")
            first = {r["grading"]: r for r in records if r["host"] == host and r["split"] == records[0]["split"]}
            if first:
                plot_grade_distributions(
                    host, first, args.examples, output_dir / "plots" / f"{host}_grade_distributions.png"
                )
    print("\n" + markdown)
    print(f"results in {output_dir}: ablation.json, ablation.md" + ("" if args.no_plots else ", plots/*.png"))
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
