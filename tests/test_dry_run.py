"""The AGIQA-3K dry run (`benchmarks/agiqa3k_dry_run.py`), scaled down: the first 300 rows of the real `data.csv`
with IPCE's split files filtered to them and 64-pixel generated JPEGs, 2 splits of 6 steps through the documented
`training/run_splits.py` command with a tiny CLIP and the scaled IPCE protocol, killed with SIGKILL after split 2's
first checkpoint and rerun. Skipped when the real-format fixtures (`shared/data/AGIQA-3K`) are absent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from PIL import Image
from test_train import subprocess_env

from training.data import dataset_metadata, load_split

SCRIPT = REPO_ROOT / "benchmarks" / "agiqa3k_dry_run.py"
ROWS, SPLITS = 300, ["1", "2"]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> tuple[Path, dict]:
    source = shared_data / "AGIQA-3K"
    if not (source / "data.csv").is_file():
        pytest.skip(f"AGIQA-3K fixtures not found at {source}")
    out = tmp_path_factory.mktemp("dry_run")
    command = [
        sys.executable, str(SCRIPT), "--out", str(out), "--source", str(source),
        "--rows", str(ROWS), "--size", "64", "--splits", "1-2", "--steps", "6", "--checkpointing_steps", "2",
        "--kill-at-checkpoint", "2:2",
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=out, env=subprocess_env(out / "hf_home"), capture_output=True, text=True, timeout=600
    )
    logs = "\n".join(p.read_text() for p in sorted((out / "logs").glob("*.log")))
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}\n{logs[-5000:]}"
    return out, json.loads((out / "dry_run_report.json").read_text())


@pytest.mark.slow
def test_folder_has_the_official_format(dry_run: tuple[Path, dict], shared_data: Path) -> None:
    out, report = dry_run
    data, source = out / "AGIQA-3K", shared_data / "AGIQA-3K"
    real = (source / "data.csv").read_bytes().split(b"\r\n")
    written = (data / "data.csv").read_bytes()
    assert written == b"\r\n".join(real[: ROWS + 1]) + b"\r\n"  # header + first rows, byte for byte (CRLF, quotes)
    splits = load_split("agiqa-3k", data, 1)
    assert len(splits["train"]) + len(splits["validation"]) == ROWS
    assert report["folder"]["split_rows"]["1"] == {"train": len(splits["train"]), "val": len(splits["validation"])}
    assert dataset_metadata(splits["train"])["image_folder"] == str(data)  # IPCE's layout: images by data.csv
    with Image.open(data / "AttnGAN_normal_000.jpg") as image:
        assert (image.format, image.size) == ("JPEG", (64, 64))


@pytest.mark.slow
def test_every_split_trained_and_evaluated_with_ipce_views(dry_run: tuple[Path, dict]) -> None:
    out, report = dry_run
    runs = out / "runs"
    assert report["finished_splits"] == SPLITS
    for split in SPLITS:
        entry = report["per_split"][split]
        for key in ("run_info_view_protocol", "config_view_protocol"):
            protocol = entry[key]
            assert protocol["scheme"] == "ipce" and (protocol["num_crops"], protocol["train_crops"]) == (15, 8), key
        assert entry["max_train_steps"] == 6
        assert entry["predictions"] == ["predictions_validation.csv"]
        assert {"validation_epoch000.png", "final_validation.png"} <= set(entry["plots"])
        assert [r["split"] for r in entry["results"]] == [f"split {split} validation"]
        folder = runs / f"split_{split}"
        assert (folder / "model" / "model.safetensors").is_file()
        assert len((folder / "predictions_validation.csv").read_text().splitlines()) == 1 + entry["validation_images"]
    summary = json.loads((runs / "summary.json").read_text())
    assert summary["splits"] == SPLITS and not summary["failed"]
    assert summary["summary"]["validation"]["srcc"]["n"] == 2
    assert (runs / "summary.md").read_text().startswith("| split kind | splits | SRCC")
    assert "| validation | 2 |" in report["summary_table"]
    assert report["disk"]["data"]["files"] >= ROWS and report["disk"]["runs"]["apparent_bytes"] > 0
    assert all(phase["peak_group_rss_bytes"] > 0 for phase in report["phases"])


@pytest.mark.slow
def test_killed_run_resumes(dry_run: tuple[Path, dict]) -> None:
    _, report = dry_run
    killed, rerun = report["phases"]
    assert killed["killed"] and killed["exit_code"] == -9 and rerun["exit_code"] == 0
    resume = report["resume"]
    assert resume["ok"], resume
    assert resume["finished_before_kill"] == ["1"] and resume["skipped_on_rerun"] == ["1"]
    assert resume["interrupted_split"] == "2"
    step = resume["expected_resume_step"]
    assert step is not None and step in resume["checkpoints_at_kill"]["complete"]
    assert resume["resume_line"].endswith(f"step_{step}: step {step}, epoch 0, batch {step} of 15")
    assert list(rerun["split_starts"]) == ["2"]  # split 1 was not trained again
