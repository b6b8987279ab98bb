r"""The offline quickstart: one command, no downloads, a few minutes on a laptop CPU.

    python training/quickstart.py            (or: python -m training.quickstart)

1. builds the synthetic quality dataset (real photographs shipped with scikit-image and matplotlib, distorted
   at graded strengths; MOS from simulated raters), holding out whole source photos for validation and test;
2. trains a tiny ALIGN (a convolutional image tower and a BERT text tower) + AGQG from scratch with
   `accelerate launch training/train.py --config quickstart.yaml`;
3. evaluates the best model on the held-out photos and saves the complete remote-code folder with the view
   protocol it was trained and evaluated with (`view_protocol` in quickstart.yaml): any image is scored on
   crops of the model's input size at the image's own resolution, the resolution the training crops' pixels
   have;
4. scores a few held-out images through `pipeline("image-quality", model=folder, trust_remote_code=True)`;
5. scores the held-out photos *at their full size*, each made blurrier, noisier and more compressed in five steps
   (`RANKING_LEVELS`), through the same pipeline, and prints the mean score per distortion and level with the
   pooled Spearman correlation of score and level per distortion (`full_size_ranking`);
6. prints SRCC/PLCC, the time taken, says once that this is a synthetic demonstration, and shows the one-line
   change for real data.

**Pooled Spearman.** For one distortion, the pairs (l, s_{p,l}) of level l = 0..5 (0 = the photo as shipped)
and pipeline score s of every held-out photo p are pooled and ranked, ties averaged:

    rho = 1 - 6 sum_i d_i^2 / (n (n^2 - 1))   (no ties; scipy's spearmanr in general),

d_i the difference of the two ranks of pair i and n = 6 x (number of photos). rho is most negative when every
photo's score falls with the level *and* every photo's score at a level is above every photo's score at the next
one: -1 for one photo, -0.99 for two (-0.9895: the levels are tied across photos, the scores are not). A model
that ranks the levels of each photo but scores one photo far above another gets less. Level 0 is included, so the
pristine photo must score above its mildest distortion too.

Extra flags are passed to `training/train.py` (e.g. `--num_train_epochs 5`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from training.options import CONFIG_DIR
from training.results import EVAL_RESULTS_FILE
from training.train import REAL_RUN_HINT, SYNTHETIC_NOTICE

TRAIN_SCRIPT = Path(__file__).resolve().parent / "train.py"
RANKING_FILE = "full_size_ranking.json"

RANKING_LEVELS: dict[str, tuple[float, ...]] = {
    "blur": (0.5, 1.0, 2.0, 4.0, 8.0),
    "noise": (4.0, 8.0, 16.0, 32.0, 64.0),
    "jpeg": (60.0, 40.0, 25.0, 15.0, 8.0),
}
"""Levels 1..5 of the full-size check, pixel-scale parameters of `training.synthetic.distort` applied to the
whole photograph: Gaussian blur standard deviation in pixels and additive Gaussian noise standard deviation on the
0-255 scale, each doubling from level to level; PIL JPEG quality from 60 (artefacts hard to see) to 8 (blocks
everywhere). Below quality 8 dark areas turn into uniform 8x8 blocks that a small crop cannot tell from a
clean dark sky."""
RANKING_FORMATS = {"blur": "std {:g} px", "noise": "std {:g}", "jpeg": "quality {:g}"}  # parameters in the table


def launch_command(output_dir: Path, num_processes: int, extra: Sequence[str]) -> list[str]:
    """`accelerate launch` of the training script with the quickstart config. Two or more processes use the
    CPU data-parallel mode (`--multi_gpu` + `--cpu true`, gloo): `--cpu --num_processes 2` alone runs one."""
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--dynamo_backend", "no"]
    launcher += ["--mixed_precision", "no", "--num_processes", str(num_processes)]
    if num_processes > 1:
        launcher += ["--multi_gpu", "--main_process_port", "0"]
    # The synthetic dataset is cached in the run folder, so the scoring steps below reuse it.
    train_args = ["--config", str(CONFIG_DIR / "quickstart.yaml"), "--output_dir", str(output_dir)]
    train_args += ["--data_root", str(output_dir / "synthetic_data")]
    if num_processes > 1:
        train_args += ["--cpu", "true"]
    return [*launcher, str(TRAIN_SCRIPT), *train_args, *extra]


def run_training(command: Sequence[str], env: Mapping[str, str]) -> tuple[int, float | None]:
    """Runs the training command, passing its output through line by line except train.py's own copy of the
    synthetic notice (the quickstart prints it once, with the results). Returns the exit code and the seconds
    train.py reports for its training loop ("training took X s"), or None when it printed no such line."""
    loop_seconds = None
    with subprocess.Popen(command, env=dict(env), stdout=subprocess.PIPE, text=True, bufsize=1) as process:
        assert process.stdout is not None
        for line in process.stdout:
            if line.strip() == SYNTHETIC_NOTICE:
                continue
            found = re.match(r"training took ([0-9.]+) s", line.strip())
            if found:
                loop_seconds = float(found.group(1))
            sys.stdout.write(line)
            sys.stdout.flush()
    return process.returncode, loop_seconds


def held_out_test_split(model_dir: Path, output_dir: Path) -> Any:
    """The run's synthetic test split, loaded the way training loaded it (`training.run_data.load_splits` with
    the options saved in the model folder's `train_config.yaml`), from the run's cache in
    `output_dir/synthetic_data`: the same photos, crops and cache, whatever synthetic options the run had."""
    from training.options import check_options
    from training.run_data import load_splits

    config_path = model_dir / "train_config.yaml"
    options = check_options(_resolved_config(model_dir), str(config_path))
    options.data.data_root = str(output_dir / "synthetic_data")
    return load_splits(options.data)["test"]


def score_examples(scorer: Any, test: Any, output_dir: Path, count: int = 6) -> list[dict[str, object]]:
    """Saves `count` held-out test images (evenly spread over the MOS range) as PNG files and scores them by
    path through the `image-quality` pipeline `scorer`."""
    order = sorted(range(len(test)), key=lambda i: float(test[i]["mos"]))
    picks = [order[round(k * (len(order) - 1) / (count - 1))] for k in range(count)]
    sample_dir = output_dir / "samples"
    sample_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in picks:
        row = test[index]
        path = sample_dir / row["name"]
        row["image"].save(path)
        result = scorer(str(path))
        rows.append({"file": str(path), "mos": float(row["mos"]), "score": result["score"], "grade": result["grade"]})
    return rows


def full_size_ranking(
    scorer: Any,
    photo_names: Sequence[str],
    levels: Mapping[str, Sequence[float]] = RANKING_LEVELS,
    seed: int = 0,
) -> dict[str, Any]:
    """Scores each named source photo at its full size, as shipped (level 0) and distorted at each level of each
    distortion (`training.synthetic.distort`, pixel-scale parameters), through the pipeline `scorer` with the
    model's own view protocol; returns {"photos", "levels", "scores": {distortion: {photo: [score per level
    0..L]}}, "mean": {distortion: [mean over photos per level]}, "spearman": {distortion: pooled rho}} (pooled
    Spearman of (level, score) over all photos, level 0 included; see the module docstring)."""
    import numpy as np
    from PIL import Image

    from training.synthetic import available_source_photos, distort

    photos = available_source_photos()
    rng = np.random.default_rng(seed)
    scores: dict[str, dict[str, list[float]]] = {}
    for name in photo_names:
        pristine = float(scorer(Image.fromarray(photos[name]))["score"])
        for kind, parameters in levels.items():
            row = [pristine]
            for parameter in parameters:
                distorted = Image.fromarray(distort(photos[name], kind, parameter, rng))
                row.append(float(scorer(distorted)["score"]))
            scores.setdefault(kind, {})[name] = row
    result: dict[str, Any] = {
        "photos": list(photo_names),
        "levels": {kind: [0.0, *map(float, parameters)] for kind, parameters in levels.items()},
        "scores": scores,
        "mean": {},
        "spearman": {},
    }
    for kind, by_photo in scores.items():
        result["mean"][kind] = np.asarray(list(by_photo.values())).mean(axis=0).tolist()
        result["spearman"][kind] = pooled_spearman(list(by_photo.values()))
    return result


def pooled_spearman(scores_by_photo: Sequence[Sequence[float]]) -> float:
    """The pooled Spearman correlation of level and score (module docstring): `scores_by_photo[p][l]` is photo
    p's score at level l = 0..L (every photo the same number of levels); the pairs (l, score) of all photos are
    ranked together, ties averaged. Most negative (-1 for one photo, -0.9895 for two) when every score at a
    level is above every score at the next level."""
    import numpy as np
    from scipy.stats import spearmanr

    rows = np.asarray(scores_by_photo, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] < 2:
        raise ValueError(f"scores_by_photo must be photos x levels with at least 2 levels, got shape {rows.shape}")
    levels = np.tile(np.arange(rows.shape[1]), rows.shape[0])
    return float(spearmanr(levels, rows.reshape(-1))[0])


def format_evaluation(results: Mapping[str, Any]) -> str:
    """One line per evaluated split of an `eval_results.json` mapping: images, SRCC, PLCC, KRCC, RMSE; "n/a" where a
    metric is undefined (None: e.g. constant predictions have no rank correlation)."""
    lines = []
    for entry in results["results"]:
        metrics = {key: "  n/a" if value is None else f"{value:.3f}" for key, value in entry["metrics"].items()}
        lines.append(
            f"  {entry['split']:<11} {entry['num_images']:4d} images   SRCC {metrics['srcc']}   "
            f"PLCC {metrics['plcc']}   KRCC {metrics['krcc']}   RMSE {metrics['rmse']}"
        )
    return "\n".join(lines)


def format_ranking(ranking: Mapping[str, Any], protocol: str) -> str:
    """The printed ranking table: one row per distortion and level with its parameter, the mean score over the
    photos and each photo's score, then the pooled Spearman per distortion."""
    photos = list(ranking["photos"])
    lines = [
        f"Held-out photos at full size ({', '.join(photos)}), five increasing levels of each distortion,",
        f"scored through pipeline('image-quality') with the model's saved view protocol: {protocol}",
        f"  {'distortion':<10} {'level':>5}  {'parameter':<14} {'mean':>6}  "
        + "  ".join(f"{n[:20]:>20}" for n in photos),
    ]
    for kind, means in ranking["mean"].items():
        for level, mean in enumerate(means):
            value = ranking["levels"][kind][level]
            parameter = "as shipped" if level == 0 else RANKING_FORMATS.get(kind, "{:g}").format(value)
            per_photo = "  ".join(f"{ranking['scores'][kind][name][level]:20.2f}" for name in photos)
            lines.append(f"  {kind:<10} {level:5d}  {parameter:<14} {mean:6.2f}  {per_photo}")
    pooled = "   ".join(f"{kind} {rho:+.2f}" for kind, rho in ranking["spearman"].items())
    # The legend's best value depends on the number of photos (levels are tied across photos): a perfect table.
    num_levels = len(next(iter(ranking["mean"].values())))
    best = pooled_spearman([[-(level * len(photos) + p) for level in range(num_levels)] for p in range(len(photos))])
    lines.append(
        f"  Pooled Spearman of score and level 0-{num_levels - 1}, all photos ({best:+.2f} = every level ranked): "
        + pooled
    )
    return "\n".join(lines)


def _resolved_config(model_dir: Path) -> dict[str, Any]:
    import yaml

    path = model_dir / "train_config.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default="runs/quickstart", help="where the run and the model go")
    parser.add_argument("--num_processes", type=int, default=1, help="CPU processes (2 = data-parallel over gloo)")
    args, extra = parser.parse_known_args(argv)
    output_dir = Path(args.output_dir)
    started = time.perf_counter()
    command = launch_command(output_dir, args.num_processes, extra)
    print("$ " + " ".join(command), flush=True)
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONUNBUFFERED"] = "1"  # train.py's lines come through the pipe as they are printed
    # The tiny model's matrix products are too small to share out: one thread per process trains it faster than
    # two (19.3 vs 17.8 steps/s on 2 cores) and gives the same weights. Set OMP_NUM_THREADS to override.
    env.setdefault("OMP_NUM_THREADS", "1")
    returncode, loop_seconds = run_training(command, env)
    if returncode != 0:
        print(f"training failed with exit code {returncode}", file=sys.stderr)
        return returncode
    run_seconds = time.perf_counter() - started

    from transformers import pipeline

    model_dir = output_dir / "model"
    results = json.loads((model_dir / EVAL_RESULTS_FILE).read_text(encoding="utf-8"))
    scorer = pipeline("image-quality", model=str(model_dir), trust_remote_code=True)
    protocol = scorer.model.view_protocol()  # the saved protocol, its crop size filled in with the input size
    test = held_out_test_split(model_dir, output_dir)
    examples = score_examples(scorer, test, output_dir)
    ranking = full_size_ranking(scorer, sorted(set(test["source"])))
    report = {"view_protocol": protocol.to_dict(), **ranking}
    (output_dir / RANKING_FILE).write_text(json.dumps(report, indent=2) + "\n")
    total_seconds = time.perf_counter() - started

    print(f"\nHeld-out images scored with pipeline('image-quality', model={str(model_dir)!r}, trust_remote_code=True):")
    print(f"  {'file':<44} {'MOS':>5} {'score':>6}  grade")
    for row in examples:
        print(f"  {Path(str(row['file'])).name:<44} {row['mos']:5.2f} {row['score']:6.2f}  {row['grade']}")
    print("\n" + format_ranking(ranking, protocol.describe()))
    print("\nEvaluation of the best model on the synthetic crops (source photos never seen in training):")
    print(format_evaluation(results))
    print(f"\nWall-clock time: {total_seconds:.0f} s in all")
    print(
        f"  training run  {run_seconds:5.0f} s  accelerate launch of train.py: start-up, dataset, training loop, "
        "final evaluation, saving"
    )
    if loop_seconds is not None:
        print(f"    of which the training loop {loop_seconds:.0f} s (train.py's 'training took': epochs + validation)")
    print(f"  scoring       {total_seconds - run_seconds:5.0f} s  the examples and the full-size ranking (pipeline)")
    print(f"Model folder: {model_dir}")
    print(f"TensorBoard: tensorboard --logdir {output_dir / 'logs'}   Plots: {output_dir / 'plots'}")
    print("\n" + SYNTHETIC_NOTICE)
    print(REAL_RUN_HINT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
