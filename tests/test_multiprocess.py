"""Two CPU processes: `accelerate launch --multi_gpu --num_processes 2 training/train.py ... --cpu true` (gloo)
really runs two processes for every host (alternating gradings), and `gather_for_metrics` evaluates every
validation image exactly once although the odd-sized part is padded to even shards.

(`accelerate launch --cpu --num_processes 2` would silently run a single process; see docs/training.md.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_hosts import host_run_flags
from test_resume import HOSTS_ALTERNATING_GRADINGS
from test_train import run_training


@pytest.mark.slow
@pytest.mark.parametrize(("host", "grading"), HOSTS_ALTERNATING_GRADINGS)
def test_two_process_cpu_run_counts_each_image_once(
    tmp_path: Path, synthetic_cache: Path, host: str, grading: str
) -> None:
    accelerate = shutil.which("accelerate")
    assert accelerate, "the accelerate console script is not on PATH"
    launcher = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]  # fmt: skip
    out = tmp_path / "ddp"
    flags = [*host_run_flags(host, grading, synthetic_cache, out), "--cpu", "true", "--max_eval_samples", "41"]
    if host == "clip-iqa":  # one run with TensorBoard tracking, whose end must not break the last barrier
        flags[flags.index("--report_to") + 1] = "tensorboard"
    result = run_training([*flags, "--checkpointing_steps", "epoch"], tmp_path, launcher=launcher)
    info = json.loads((out / "run_info.json").read_text())
    assert info["num_processes"] == 2, result.stdout[-2000:]
    assert "MULTI_CPU" in info["distributed_type"] and info["host"] == host and info["grading"] == grading
    assert info["steps_per_epoch"] == 2  # 48 training images / (2 processes x 16), the last batch evened out
    results = {e["split"]: e for e in json.loads((out / "model" / "eval_results.json").read_text())["results"]}
    # 41 images: shards of 21 + 21 with one repeat, which gather_for_metrics drops.
    assert results["validation"]["num_images"] == 41 and results["test"]["num_images"] == 41
    assert (out / "checkpoints" / "step_2").is_dir() and (out / "model" / "model.safetensors").is_file()
    with (out / "predictions_test.csv").open() as handle:
        assert sum(1 for _ in handle) == 42  # header + each test image once
    if host == "clip-iqa":
        assert list((out / "logs").rglob("events.out.tfevents.*")), "no TensorBoard event file"
