"""The offline quickstart: one command, no downloads, a few minutes on a laptop CPU.

    python training/quickstart.py            (or: python -m training.quickstart)

1. builds the synthetic quality dataset (real photographs shipped with scikit-image and matplotlib, distorted
   at graded strengths; MOS from simulated raters), holding out whole source photos for validation and test;
2. trains a tiny CLIP + AGQG from scratch with `accelerate launch training/train.py --config quickstart.yaml`;
3. evaluates the best model on the held-out photos and saves the complete remote-code folder;
4. scores a few held-out images through `pipeline("image-quality", model=folder, trust_remote_code=True)`;
5. prints SRCC/PLCC, says that this is a synthetic demonstration, and shows the one-line change for real data.

Extra flags are passed to `training/train.py` (e.g. `--num_train_epochs 5`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from training.options import CONFIG_DIR
from training.results import EVAL_RESULTS_FILE
from training.train import REAL_RUN_HINT, SYNTHETIC_NOTICE

TRAIN_SCRIPT = Path(__file__).resolve().parent / "train.py"


def launch_command(output_dir: Path, num_processes: int, extra: Sequence[str]) -> list[str]:
    """`accelerate launch` of the training script with the quickstart config. Two or more processes use the
    CPU data-parallel mode (`--multi_gpu` + `--cpu true`, gloo): `--cpu --num_processes 2` alone runs one."""
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--dynamo_backend", "no"]
    launcher += ["--mixed_precision", "no", "--num_processes", str(num_processes)]
    if num_processes > 1:
        launcher += ["--multi_gpu", "--main_process_port", "0"]
    # The synthetic dataset is cached in the run folder, so the scoring step below reuses it.
    train_args = ["--config", str(CONFIG_DIR / "quickstart.yaml"), "--output_dir", str(output_dir)]
    train_args += ["--data_root", str(output_dir / "synthetic_data")]
    if num_processes > 1:
        train_args += ["--cpu", "true"]
    return [*launcher, str(TRAIN_SCRIPT), *train_args, *extra]


def score_examples(model_dir: Path, output_dir: Path, count: int = 6) -> list[dict[str, object]]:
    """Saves `count` held-out test images (evenly spread over the MOS range) as PNG files and scores them by
    path through the public `image-quality` pipeline."""
    from transformers import pipeline

    from training.synthetic import build_synthetic_dataset

    resolved = _resolved_config(model_dir)
    # The same arguments as training (training.run_data.load_splits): synthetic split n is data seed n, so
    # the cached dataset is reused and the examples come from the photos that run held out.
    test = build_synthetic_dataset(
        output_dir / "synthetic_data",
        image_size=int(resolved.get("synthetic_image_size", 64)),
        seed=int(resolved.get("split") or 0),
        crops_per_source=int(resolved.get("synthetic_crops_per_source", 10)),
        distortions=resolved.get("synthetic_distortions"),
    )["test"]
    order = sorted(range(len(test)), key=lambda i: float(test[i]["mos"]))
    picks = [order[round(k * (len(order) - 1) / (count - 1))] for k in range(count)]
    sample_dir = output_dir / "samples"
    sample_dir.mkdir(parents=True, exist_ok=True)
    scorer = pipeline("image-quality", model=str(model_dir), trust_remote_code=True)
    rows = []
    for index in picks:
        row = test[index]
        path = sample_dir / row["name"]
        row["image"].save(path)
        result = scorer(str(path))
        rows.append({"file": str(path), "mos": float(row["mos"]), "score": result["score"], "grade": result["grade"]})
    return rows


def _resolved_config(model_dir: Path) -> dict[str, object]:
    import yaml

    path = model_dir / "train_config.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default="runs/quickstart", help="where the run and the model go")
    parser.add_argument("--num_processes", type=int, default=1, help="CPU processes (2 = data-parallel over gloo)")
    args, extra = parser.parse_known_args(argv)
    output_dir = Path(args.output_dir)
    print(SYNTHETIC_NOTICE + "\n", flush=True)
    started = time.perf_counter()
    command = launch_command(output_dir, args.num_processes, extra)
    print("$ " + " ".join(command), flush=True)
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    # The tiny model's matrix products are too small to share out: one thread per process trains it faster than
    # two (19.3 vs 17.8 steps/s on 2 cores) and gives the same weights. Set OMP_NUM_THREADS to override.
    env.setdefault("OMP_NUM_THREADS", "1")
    completed = subprocess.run(command, env=env)
    if completed.returncode != 0:
        print(f"training failed with exit code {completed.returncode}", file=sys.stderr)
        return completed.returncode
    train_seconds = time.perf_counter() - started

    model_dir = output_dir / "model"
    results = json.loads((model_dir / EVAL_RESULTS_FILE).read_text(encoding="utf-8"))
    examples = score_examples(model_dir, output_dir)
    total_seconds = time.perf_counter() - started

    print(f"\nHeld-out images scored with pipeline('image-quality', model={str(model_dir)!r}, trust_remote_code=True):")
    print(f"  {'file':<44} {'MOS':>5} {'score':>6}  grade")
    for row in examples:
        print(f"  {Path(str(row['file'])).name:<44} {row['mos']:5.2f} {row['score']:6.2f}  {row['grade']}")
    print("\nEvaluation of the best model (source photos never seen in training):")
    for entry in results["results"]:
        metrics = entry["metrics"]
        print(
            f"  {entry['split']:<11} {entry['num_images']:4d} images   SRCC {metrics['srcc']:.3f}   "
            f"PLCC {metrics['plcc']:.3f}   KRCC {metrics['krcc']:.3f}   RMSE {metrics['rmse']:.3f}"
        )
    print(f"\nTraining took {train_seconds:.0f} s, everything {total_seconds:.0f} s. Model folder: {model_dir}")
    print(f"TensorBoard: tensorboard --logdir {output_dir / 'logs'}   Plots: {output_dir / 'plots'}")
    print("\n" + SYNTHETIC_NOTICE)
    print(REAL_RUN_HINT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
