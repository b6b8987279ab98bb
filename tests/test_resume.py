"""Checkpoints: a run of `training/train.py` killed with SIGKILL mid-epoch and resumed with
`--resume_from_checkpoint latest` reaches the same weights and metrics (1e-6) as an uninterrupted run with the
same seed, for every host (alternating gradings): random flips and quarter turns, IPCE's random patches, cached
embeddings (CoOp) and learnable prompts all resume exactly."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_hosts import host_run_flags
from test_train import TRAIN_SCRIPT, run_training, subprocess_env

from training.train import complete_checkpoints, parse_args, resolve_resume_path, train

# Each host alternates the grading, so both gradings are resumed across the five hosts.
HOSTS_ALTERNATING_GRADINGS = [
    ("clip-iqa", "agqg"),
    ("liqe", "softmax"),
    ("ipce", "agqg"),
    ("coop", "softmax"),
    ("maple", "agqg"),
]
# 96 training images / 16 per batch = 6 optimiser steps per epoch; a checkpoint every 2 steps lands mid-epoch.
RESUME_FLAGS = [
    "--max_train_samples", "96",
    "--num_train_epochs", "3",
    "--checkpointing_steps", "2",
    "--checkpoints_total_limit", "3",
    "--loss_weights", "l1=1,fidelity=0.5,grm_nll=0.1",
    "--seed", "7",
]  # fmt: skip


def _final_state(out: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    results = json.loads((out / "model" / "eval_results.json").read_text())
    return results, load_file(str(out / "model" / "model.safetensors"))


@pytest.mark.slow
@pytest.mark.parametrize(("host", "grading"), HOSTS_ALTERNATING_GRADINGS)
def test_sigkill_then_resume_matches_an_uninterrupted_run(
    tmp_path: Path, synthetic_cache: Path, host: str, grading: str
) -> None:
    augment = ["--hflip", "true", "--rot90", "true"] if host in ("clip-iqa", "maple") else []
    flags = [*RESUME_FLAGS, *augment]
    reference = tmp_path / "reference"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocesses run (OMP_NUM_THREADS=1): the same float summation order
    try:
        train(parse_args([*host_run_flags(host, grading, synthetic_cache, reference), *flags]))
    finally:
        torch.set_num_threads(threads)

    killed = tmp_path / "killed"
    command = [sys.executable, str(TRAIN_SCRIPT), *host_run_flags(host, grading, synthetic_cache, killed), *flags]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=subprocess_env(tmp_path / "hf_home"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while not complete_checkpoints(killed) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before it could be killed"
    assert complete_checkpoints(killed), "no checkpoint appeared in time"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert not (killed / "model").exists(), "the killed run had already finished"

    resume = ["--resume_from_checkpoint", "latest"]
    resumed = run_training([*host_run_flags(host, grading, synthetic_cache, killed), *flags, *resume], tmp_path)
    match = re.search(r"resumed from .*step_(\d+): step (\d+), epoch (\d+), batch (\d+) of (\d+)", resumed.stdout)
    assert match, resumed.stdout[-2000:]
    step, batch, per_epoch = int(match.group(2)), int(match.group(4)), int(match.group(5))
    assert step > 0 and 0 < batch < per_epoch, f"expected a mid-epoch resume, got {match.group(0)}"

    reference_results, reference_weights = _final_state(reference)
    resumed_results, resumed_weights = _final_state(killed)
    for expected, got in zip(reference_results["results"], resumed_results["results"], strict=True):
        assert got["split"] == expected["split"] and got["num_images"] == expected["num_images"]
        for name, value in expected["metrics"].items():
            assert got["metrics"][name] == pytest.approx(value, abs=1e-6), (got["split"], name)
    assert reference_weights.keys() == resumed_weights.keys()
    for key, tensor in reference_weights.items():
        torch.testing.assert_close(resumed_weights[key], tensor, atol=1e-6, rtol=0, msg=key)
    history_reference = json.loads((reference / "history.json").read_text())
    history_resumed = json.loads((killed / "history.json").read_text())
    assert [h["srcc"] for h in history_resumed] == pytest.approx([h["srcc"] for h in history_reference], abs=1e-6)


def test_latest_ignores_partial_checkpoints(tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    for name in ("step_4", "step_12", ".partial_step_16", "step_x"):
        (checkpoints / name).mkdir(parents=True)
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["step_4", "step_12"]
    assert resolve_resume_path("latest", tmp_path) == checkpoints / "step_12"
    assert resolve_resume_path("latest", tmp_path / "fresh") is None
    with pytest.raises(FileNotFoundError, match="step_99"):
        resolve_resume_path(str(checkpoints / "step_99"), tmp_path)
