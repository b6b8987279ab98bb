"""Two CPU processes: `accelerate launch --multi_gpu --num_processes 2` with `--cpu true` (gloo) really runs two
processes, and `gather_for_metrics` evaluates every validation image exactly once although the odd-sized split
is padded to even shards.

(`accelerate launch --cpu --num_processes 2` would silently run a single process; see docs/training.md.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_train import TINY_RUN_FLAGS, run_training


@pytest.mark.slow
def test_two_process_cpu_run_counts_each_image_once(tmp_path: Path, synthetic_cache: Path) -> None:  # noqa: F811
    accelerate = shutil.which("accelerate")
    assert accelerate, "the accelerate console script is not on PATH"
    launcher = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]  # fmt: skip
    out = tmp_path / "ddp"
    result = run_training(
        [
            *TINY_RUN_FLAGS,
            "--cpu",
            "true",
            "--data_root",
            str(synthetic_cache),
            "--output_dir",
            str(out),
            "--num_train_epochs",
            "1",
            "--report_to",
            "none",
            "--checkpointing_steps",
            "epoch",
        ],  # fmt: skip
        tmp_path,
        launcher=launcher,
    )
    info = json.loads((out / "run_info.json").read_text())
    assert info["num_processes"] == 2, result.stdout[-2000:]
    assert "MULTI_CPU" in info["distributed_type"]
    # 96 training images / (2 processes x 16) = 3 steps per epoch.
    assert info["steps_per_epoch"] == 3
    results = {e["split"]: e for e in json.loads((out / "model" / "eval_results.json").read_text())["results"]}
    # 41 validation images: shards of 21 + 21 with one repeat, which gather_for_metrics drops.
    assert results["validation"]["num_images"] == 41
    test_size = len(__import__("datasets").load_from_disk(str(synthetic_cache))["test"])
    assert results["test"]["num_images"] == min(41, test_size)
    assert (out / "checkpoints" / "step_3").is_dir()
