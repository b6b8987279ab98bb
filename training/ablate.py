# Copyright 2025 The agqg authors. Licensed under the Apache License, Version 2.0.
r"""The plug-in ablation: every host framework with its own softmax grading and with AGQG, on equal footing.

    python training/ablate.py --config training/configs/ablation/synthetic.yaml --output_dir runs/ablation
    python training/ablate.py --config my_grid.yaml --output_dir runs/ablation-agiqa3k -- --data_root /data/AGIQA-3K

Every run of the grid (split x host x grading) is one call of `training.train.train` (the one training loop,
with its best-on-validation model selection and its final evaluation); this file only lays out the grid and
summarises it. The grid file (YAML):

    hosts: [clip-iqa, liqe, ipce, coop, maple]    # shipped names or host YAML files
    gradings: [softmax, agqg]
    splits: ["1", "2", "3"]                       # the dataset's splits (synthetic: photo split n)
    seed: 0                                       # run seed = seed + the split's position (shared by both gradings)
    drift_tolerance: 1.0e-3
    num_threads: 1                                # torch threads (tiny models: 1 is fastest)
    options: {train.py options for every run}     # over each host's own options
    host_options: {ipce: {...}}                   # per host, over `options`

Flags after `--` are train.py flags for every run (over everything above). Both gradings of a host and split get
the same seed, hence the same CLIP, prompts, data order and views; only the grading head differs.

Reported per host and grading, mean ± std (sample std, ddof = 1) over the splits: SRCC, PLCC, KRCC on the test
part and the **semantic-drift fraction**, the share of test images whose K-grade distribution is multimodal. A
distribution p_1..p_K is multimodal when some grade j has a higher grade on both sides by more than epsilon:

    max_{i<j} p_i - p_j > epsilon   and   max_{i>j} p_i - p_j > epsilon.

(The softmax of the similarities for the baseline, the GRM probabilities for AGQG, which cannot be multimodal by
construction; for multi-view protocols the distribution of the whole-image view, as `training.evaluation`
reports it.) The paired difference AGQG - softmax per split is summarised by its mean and a 95% t-interval,
mean ± t_{0.975, n-1} s / sqrt(n) over the n paired splits. Where the data has `mos_std` (the synthetic set's
simulated raters do), the **spread SRCC** column is the Spearman correlation of the predicted `grade_std` with
`mos_std` on the test part: whether the grade distribution is wider where raters disagree more.

Outputs in `--output_dir`: one train() folder per run (`split_<s>/<host>_<grading>/`), `ablation.json` (every run
and the summary), `ablation.md` (the tables), `plots/<host>_metrics.png` and `plots/<host>_grade_distributions.png`.
Rerunning the same command reuses finished runs. Runs that fail are reported and skipped (exit code 1).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import shlex
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.hosts import GRADINGS, load_host
from training.options import CONFIG_DIR, SYNTHETIC, load_yaml_mapping, resolve_options
from training.results import EVAL_RESULTS_FILE, SPREAD_METRIC
from training.train import train

DEFAULT_DRIFT_TOLERANCE = 1e-3
REPORTED_METRICS = ("srcc", "plcc", "krcc")
SUMMARY_METRICS = (*REPORTED_METRICS, "drift", SPREAD_METRIC)
WIDTH_METRICS = ("mean_grade_std", "mean_mos_std")  # the distributions' mean width and the raters' (score units)
GRID_KEYS = ("hosts", "gradings", "splits", "seed", "drift_tolerance", "num_threads", "options", "host_options")
TEST_PART = "test"
GRID_DIR = CONFIG_DIR / "ablation"


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
# The grid
# ---------------------------------------------------------------------------------------------


@dataclass
class Grid:
    """What the ablation runs (the grid file's fields; see the module docstring)."""

    hosts: list[str] = field(default_factory=lambda: ["clip-iqa", "liqe", "ipce", "coop", "maple"])
    gradings: list[str] = field(default_factory=lambda: list(GRADINGS))
    splits: list[str] = field(default_factory=lambda: ["1", "2", "3"])
    seed: int = 0
    drift_tolerance: float = DEFAULT_DRIFT_TOLERANCE
    num_threads: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    host_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = "command line"


def read_grid(path: str | Path | None) -> Grid:
    """The grid of a YAML file (shipped ones by file name alone); errors name the file."""
    if path is None:
        return Grid()
    path, loaded = load_yaml_mapping(path, search_dir=GRID_DIR, what="grid")
    unknown = sorted(set(loaded) - set(GRID_KEYS))
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; a grid file holds {list(GRID_KEYS)}")
    grid = Grid(**loaded, source=str(path))
    grid.splits = [str(s) for s in grid.splits]
    bad = [g for g in grid.gradings if g not in GRADINGS]
    if bad:
        raise ValueError(f"{path}: gradings {bad}; expected among {list(GRADINGS)}")
    stray = sorted(set(grid.host_options) - set(grid.hosts))
    if stray:
        raise ValueError(f"{path}: host_options for {stray}, which are not among the hosts {grid.hosts}")
    return grid


def run_options(
    grid: Grid, host: str, grading: str, split: str, run_dir: Path, flags: Sequence[str], data_dir: Path
) -> Any:
    """The train.py options of one run: host file <- grid `options` <- grid `host_options[host]` <- the run's
    grading, split, seed and folder <- `flags`. The synthetic dataset of each split is cached once in `data_dir`
    (unless the options name a `data_root`) and shared by all runs of the split."""
    preset = load_host(host)
    layers = [(str(preset.path), preset.options), (f"{grid.source}: options", grid.options)]
    if host in grid.host_options:
        layers.append((f"{grid.source}: host_options.{host}", grid.host_options[host]))
    seed = grid.seed + grid.splits.index(split)
    run = {"grading": grading, "split": split, "seed": seed, "output_dir": str(run_dir)}
    layers.append(("the ablation grid", run))
    options = resolve_options(layers, list(flags))
    if options.data.dataset == SYNTHETIC and not options.data.data_root:
        options.data.data_root = str(data_dir / f"synthetic_split_{split}")
    return options


def read_predictions_csv(path: Path) -> dict[str, np.ndarray]:
    """`scores` (N,), `mos` (N,), `grade_probs` (N, K) and, where the CSV has them, `grade_std` and `mos_std` (N,)
    of a `predictions_<part>.csv` (training.results)."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    columns = [c for c in (rows[0].keys() if rows else []) if c.startswith("p_")]
    spreads = {
        column: np.array([float(r[column]) for r in rows])
        for column in ("grade_std", "mos_std")
        if rows and column in rows[0]
    }
    return {
        **spreads,
        "scores": np.array([float(r["prediction"]) for r in rows]),
        "mos": np.array([float(r["mos"]) for r in rows]),
        "grade_probs": np.array([[float(r[c]) for c in columns] for r in rows]).reshape(len(rows), len(columns)),
        "grade_names": [c[2:] for c in columns],
    }


def run_record(run_dir: Path, drift_tolerance: float) -> dict[str, Any]:
    """The metrics, drift and per-image test predictions of a finished run folder."""
    results = json.loads((run_dir / "model" / EVAL_RESULTS_FILE).read_text(encoding="utf-8"))
    tested = next((e for e in results["results"] if e["split"].split()[-1] == TEST_PART), results["results"][-1])
    predicted = read_predictions_csv(run_dir / f"predictions_{tested['split'].split()[-1]}.csv")
    metrics = {name: _number(tested["metrics"][name]) for name in REPORTED_METRICS}
    return {
        **metrics,
        "drift": semantic_drift_fraction(predicted["grade_probs"], drift_tolerance),
        # Spearman of the predicted grade_std with the raters' mos_std (NaN where the data has no mos_std).
        SPREAD_METRIC: _number(tested["metrics"].get(SPREAD_METRIC)),
        # How wide the grade distributions are, next to how much the raters disagreed (same images).
        "mean_grade_std": float(np.mean(predicted["grade_std"])) if "grade_std" in predicted else math.nan,
        "mean_mos_std": float(np.nanmean(predicted["mos_std"])) if "mos_std" in predicted else math.nan,
        "test_images": tested["num_images"],
        "grade_names": predicted["grade_names"],
        "scores": predicted["scores"].tolist(),
        "mos": predicted["mos"].tolist(),
        "grade_probs": predicted["grade_probs"].tolist(),
    }


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


# ---------------------------------------------------------------------------------------------
# Summary, tables, plots
# ---------------------------------------------------------------------------------------------


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample std (ddof = 1; 0 for one value) of the finite values, and their number."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return {"mean": math.nan, "std": math.nan, "n": 0}
    return {
        "mean": float(np.mean(finite)),
        "std": float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0,
        "n": len(finite),
    }


def paired_difference(differences: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """Mean of paired differences with the t-interval mean ± t_{(1+c)/2, n-1} s / sqrt(n) (NaN bounds for n < 2)."""
    from scipy import stats

    summary = mean_std(differences)
    n = summary["n"]
    if n < 2:
        return {**summary, "ci_low": math.nan, "ci_high": math.nan}
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * summary["std"] / math.sqrt(n)
    return {**summary, "ci_low": summary["mean"] - half, "ci_high": summary["mean"] + half}


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per host: per grading mean ± std of the metrics and drift over splits, and the paired differences
    AGQG - softmax (mean, std, 95% t-interval) over the splits where both ran."""
    summary: dict[str, Any] = {}
    for host in dict.fromkeys(r["host"] for r in records):
        by_grading = {g: {r["split"]: r for r in records if r["host"] == host and r["grading"] == g} for g in GRADINGS}
        entry: dict[str, Any] = {}
        for grading, runs in by_grading.items():
            if runs:
                entry[grading] = {
                    m: mean_std([r.get(m) for r in runs.values()]) for m in (*SUMMARY_METRICS, *WIDTH_METRICS)
                }
        paired = sorted(set(by_grading["softmax"]) & set(by_grading["agqg"]))
        if paired:
            entry["difference"] = {
                m: paired_difference([_paired(by_grading, s, m) for s in paired]) for m in SUMMARY_METRICS
            }
        summary[host] = entry
    return summary


def _paired(by_grading: Mapping[str, Mapping[str, Mapping[str, Any]]], split: str, metric: str) -> float:
    """AGQG - softmax of one metric on one split (NaN where either lacks it)."""
    values = [by_grading[g][split].get(metric) for g in ("agqg", "softmax")]
    return math.nan if any(v is None for v in values) else float(values[0]) - float(values[1])


def _cell(stats: Mapping[str, float] | None) -> str:
    if not stats or not math.isfinite(stats["mean"]):
        return "n/a"
    return f"{stats['mean']:.3f} ± {stats['std']:.3f}"


def _difference_cell(stats: Mapping[str, float] | None) -> str:
    if not stats or not math.isfinite(stats["mean"]):
        return "n/a"
    if not math.isfinite(stats["ci_low"]):
        return f"{stats['mean']:+.3f}"
    return f"{stats['mean']:+.3f} [{stats['ci_low']:+.3f}, {stats['ci_high']:+.3f}]"


def markdown_tables(summary: Mapping[str, Any]) -> str:
    """Two tables: per host and grading the metrics (mean ± std over splits); per host the paired differences
    AGQG - softmax with their 95% t-intervals."""
    lines = [
        "| host | grading | SRCC | PLCC | KRCC | drift | spread SRCC |",
        "|---|---|---|---|---|---|---|",
    ]
    for host, entry in summary.items():
        for grading in GRADINGS:
            if grading in entry:
                stats = entry[grading]
                cells = " | ".join(_cell(stats[m]) for m in SUMMARY_METRICS)
                lines.append(f"| {host} | {grading} | {cells} |")
    lines += [
        "",
        "| host | splits | ΔSRCC [95% CI] | ΔPLCC [95% CI] | ΔKRCC [95% CI] | Δdrift [95% CI] "
        "| Δspread SRCC [95% CI] |",
        "|---|---|---|---|---|---|---|",
    ]
    for host, entry in summary.items():
        difference = entry.get("difference")
        if difference:
            cells = " | ".join(_difference_cell(difference[m]) for m in SUMMARY_METRICS)
            lines.append(f"| {host} | {difference['srcc']['n']} | {cells} |")
    widths = [
        (host, grading, entry[grading])
        for host, entry in summary.items()
        for grading in GRADINGS
        if grading in entry and math.isfinite(entry[grading].get("mean_grade_std", {}).get("mean", math.nan))
    ]
    if widths:
        lines += ["", "| host | grading | mean grade_std | raters' mean mos_std |", "|---|---|---|---|"]
        for host, grading, stats in widths:
            lines.append(f"| {host} | {grading} | {_cell(stats['mean_grade_std'])} | {_cell(stats['mean_mos_std'])} |")
    return "\n".join(lines) + "\n"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_host_bars(host: str, entry: Mapping[str, Any], path: Path) -> Path:
    """Bar chart of SRCC, PLCC and KRCC (mean ± std over splits), softmax next to AGQG, for one host."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5.5, 3.5), dpi=100)
    width = 0.36
    positions = np.arange(len(REPORTED_METRICS))
    for offset, grading, colour in ((-width / 2, "softmax", "#8c8c8c"), (width / 2, "agqg", "#1f77b4")):
        stats = entry.get(grading)
        if not stats:
            continue
        means = [stats[m]["mean"] for m in REPORTED_METRICS]
        stds = [stats[m]["std"] for m in REPORTED_METRICS]
        axis.bar(positions + offset, means, width, yerr=stds, capsize=4, color=colour, label=grading)
        for x, y in zip(positions + offset, means, strict=True):
            if math.isfinite(y):
                axis.text(x, y, f"{y:.3f}", ha="center", va="bottom", fontsize=8)
    axis.set_xticks(positions, [m.upper() for m in REPORTED_METRICS])
    axis.set_ylabel("correlation with MOS (mean ± std over splits)")
    axis.set_title(f"{host}: softmax vs AGQG grading")
    axis.axhline(0, color="black", linewidth=0.6)
    axis.legend(loc="lower right", fontsize=8)
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


def plot_grade_distributions(host: str, runs: Mapping[str, Mapping[str, Any]], count: int, path: Path) -> Path:
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
                probs = runs[grading]["grade_probs"][index]
                axis.bar(np.arange(len(names)) + offset, probs, width, color=colour, label=grading)
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
    parser = argparse.ArgumentParser(
        description="Ablate softmax vs AGQG grading across host frameworks (every run is train.py's train()).",
        epilog="Flags after -- are train.py options for every run.",
    )
    parser.add_argument("--config", help="the grid file (YAML; see the module docstring)")
    parser.add_argument("--hosts", help="override the grid's hosts: comma list of names or host files")
    parser.add_argument("--gradings", help="override the grid's gradings: softmax,agqg")
    parser.add_argument("--splits", help="override the grid's splits: comma list (e.g. 1,2,3)")
    parser.add_argument("--examples", type=int, default=5, help="test images in the grade-distribution plots")
    parser.add_argument("--no_plots", action="store_true")
    parser.add_argument("--output_dir", default="runs/ablation")
    return parser


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(argv) if argv is not None else sys.argv[1:]
    own, flags = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    args = build_arg_parser().parse_args(own)
    output_dir = Path(args.output_dir)
    try:
        grid = read_grid(args.config)
        if args.hosts:
            grid.hosts = _comma_list(args.hosts)
        if args.gradings:
            grid.gradings = _comma_list(args.gradings)
        if args.splits:
            grid.splits = _comma_list(args.splits)
        bad = [g for g in grid.gradings if g not in GRADINGS]
        if bad:
            raise ValueError(f"--gradings {bad}: expected among {list(GRADINGS)}")
        for host in grid.hosts:  # every run's options are checked before the first one trains
            for grading in grid.gradings:
                run_options(grid, host, grading, grid.splits[0], output_dir / "check", flags, output_dir / "data")
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if grid.num_threads:
        import torch

        torch.set_num_threads(grid.num_threads)

    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    records: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for split in grid.splits:
        for host in grid.hosts:
            host_name = load_host(host).name
            for grading in grid.gradings:
                run_dir = output_dir / f"split_{split}" / f"{host_name}_{grading}"
                label = f"split {split} {host_name}/{grading}"
                try:
                    if not (run_dir / "model" / EVAL_RESULTS_FILE).is_file():
                        options = run_options(grid, host, grading, split, run_dir, flags, output_dir / "data")
                        result = train(options)
                        seconds = round(result.train_seconds, 1)
                    else:
                        print(f"{label}: already done ({run_dir}), reusing it", flush=True)
                        seconds = None
                    record = run_record(run_dir, grid.drift_tolerance)
                except Exception as error:  # noqa: BLE001 - report and go on with the other runs
                    failed.append({"split": split, "host": host_name, "grading": grading, "error": repr(error)})
                    print(f"{label}: FAILED {error}\n{traceback.format_exc()}", file=sys.stderr, flush=True)
                    continue
                record.update(host=host_name, grading=grading, split=split, train_seconds=seconds)
                records.append(record)
                print(
                    f"{label}: SRCC {record['srcc']:.4f} PLCC {record['plcc']:.4f} KRCC {record['krcc']:.4f} "
                    f"drift {record['drift']:.3f} spread SRCC {record[SPREAD_METRIC]:+.4f}",
                    flush=True,
                )
    elapsed = time.perf_counter() - started
    summary = summarize(records)
    command = "python training/ablate.py " + " ".join(shlex.quote(a) for a in argv)
    setup = (
        f"{len(records)} runs ({len(grid.hosts)} hosts x {len(grid.gradings)} gradings x {len(grid.splits)} splits), "
        f"{elapsed / 60:.1f} min wall-clock on a {os.cpu_count()}-core {platform.machine()} machine"
    )
    markdown = f"Command: `{command}`\n\n{setup}\n\n{markdown_tables(summary)}"
    markdown += (
        "\nMean ± sample std over splits; Δ = AGQG - softmax per split, mean and 95% t-interval over the paired "
        "splits; drift = share of test images with a multimodal grade distribution "
        f"(tolerance {grid.drift_tolerance:g}); spread SRCC = Spearman of the predicted grade_std with the raters' "
        "mos_std on the test part (n/a without mos_std)."
    )
    if failed:
        markdown += "\n\nFailed:\n" + "".join(f"- {json.dumps(f)}\n" for f in failed)
    (output_dir / "ablation.md").write_text(markdown + "\n", encoding="utf-8")
    payload = {"command": command, "setup": setup, "grid": grid.__dict__, "summary": summary, "runs": records,
               "failed": failed}  # fmt: skip
    (output_dir / "ablation.json").write_text(json.dumps(payload, indent=1, default=str) + "\n", encoding="utf-8")
    if not args.no_plots:
        for host, entry in summary.items():
            plot_host_bars(host, entry, output_dir / "plots" / f"{host}_metrics.png")
            first = {r["grading"]: r for r in records if r["host"] == host and r["split"] == records[0]["split"]}
            if first:
                path = output_dir / "plots" / f"{host}_grade_distributions.png"
                plot_grade_distributions(host, first, args.examples, path)
    print("\n" + markdown)
    print(f"results in {output_dir}: ablation.json, ablation.md" + ("" if args.no_plots else ", plots/*.png"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
