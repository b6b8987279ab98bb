"""The ablation command (training/ablate.py): semantic-drift measure, summary statistics, table, plots, and one
small end-to-end run on the offline synthetic dataset through `main([...])`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modeling_agqg import grm_grade_probs, min_scaled_gap_for_unimodality
from training.ablate import (
    example_indices,
    load_ablation_splits,
    main,
    markdown_table,
    multimodal_mask,
    semantic_drift_fraction,
    summarize,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_multimodal_mask_on_hand_made_distributions() -> None:
    probs = np.array(
        [
            [0.46, 0.03, 0.02, 0.03, 0.46],  # the two-tailed example
            [0.1, 0.2, 0.4, 0.2, 0.1],  # unimodal
            [0.2, 0.2, 0.2, 0.2, 0.2],  # flat: no strict valley
            [0.5, 0.3, 0.1, 0.05, 0.05],  # decreasing
            [0.3, 0.1, 0.3, 0.2, 0.1],  # valley at grade 2
            [0.3, 0.2995, 0.3005, 0.05, 0.05],  # a dip below the tolerance does not count
        ]
    )
    assert multimodal_mask(probs, tolerance=1e-3).tolist() == [True, False, False, False, True, False]
    assert semantic_drift_fraction(probs, tolerance=1e-3) == pytest.approx(2 / 6)
    assert multimodal_mask(np.array([[0.3, 0.7]])).tolist() == [False]  # two grades are always unimodal


@settings(max_examples=200, deadline=None)
@given(
    peak=st.integers(0, 6),
    steps=st.lists(st.floats(0.0, 1.0), min_size=7, max_size=7),
)
def test_sequences_that_rise_then_fall_are_never_multimodal(peak: int, steps: list[float]) -> None:
    values = np.empty(7)
    values[peak] = 10.0
    for index in range(peak - 1, -1, -1):
        values[index] = values[index + 1] - steps[index]
    for index in range(peak + 1, 7):
        values[index] = values[index - 1] - steps[index]
    probs = np.exp(values) / np.exp(values).sum()
    assert not multimodal_mask(probs[None], tolerance=0.0)[0]


@settings(max_examples=200, deadline=None)
@given(
    valley=st.integers(1, 5),
    depth=st.floats(0.01, 0.3),
    base=st.lists(st.floats(0.05, 1.0), min_size=7, max_size=7),
)
def test_a_valley_deeper_than_the_tolerance_is_detected(valley: int, depth: float, base: list[float]) -> None:
    values = np.array(base)
    values[valley] = min(values[:valley].max(), values[valley + 1 :].max()) - depth * values.sum()
    values = np.clip(values, 1e-9, None)
    probs = values / values.sum()
    gap = min(probs[:valley].max(), probs[valley + 1 :].max()) - probs[valley]
    assert multimodal_mask(probs[None], tolerance=gap / 2)[0]


@settings(max_examples=100, deadline=None)
@given(
    num_grades=st.integers(3, 8),
    theta=st.floats(-20, 20),
    spacing=st.floats(0.05, 3.0),
    excess=st.floats(0.0, 3.0),
)
def test_agqg_grade_distributions_never_count_as_drift(
    num_grades: int, theta: float, spacing: float, excess: float
) -> None:
    difficulties = (torch.arange(1, num_grades, dtype=torch.float64) - num_grades / 2) * spacing
    discrimination = torch.tensor((min_scaled_gap_for_unimodality(num_grades) + excess) / spacing, dtype=torch.float64)
    probs = grm_grade_probs(torch.tensor([theta], dtype=torch.float64), difficulties, discrimination)
    assert semantic_drift_fraction(probs.numpy(), tolerance=1e-9) == 0.0


def _record(host: str, grading: str, split: int, srcc: float, plcc: float, drift: float) -> dict:
    return {"host": host, "grading": grading, "split": split, "srcc": srcc, "plcc": plcc, "drift": drift}


def test_summary_means_stds_and_paired_differences() -> None:
    records = [
        _record("coop", "softmax", 1, 0.50, 0.60, 0.4),
        _record("coop", "softmax", 2, 0.70, 0.80, 0.2),
        _record("coop", "agqg", 1, 0.60, 0.65, 0.0),
        _record("coop", "agqg", 2, 0.90, 0.85, 0.0),
        _record("liqe", "agqg", 1, 0.3, 0.3, 0.0),
    ]
    summary = summarize(records)
    coop = summary["coop"]
    assert coop["softmax"]["srcc"]["mean"] == pytest.approx(0.6)
    assert coop["softmax"]["srcc"]["std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert coop["difference"]["srcc"]["mean"] == pytest.approx(0.15)
    assert coop["difference"]["srcc"]["std"] == pytest.approx(np.std([0.1, 0.2], ddof=1))
    assert coop["difference"]["drift"]["mean"] == pytest.approx(-0.3)
    assert "difference" not in summary["liqe"] and "softmax" not in summary["liqe"]
    table = markdown_table(summary)
    assert "| coop | 0.600 ± 0.141 | 0.750 ± 0.212 | +0.150 ± 0.071 |" in table
    assert "| liqe | n/a | 0.300 ± 0.000 | n/a |" in table


def test_commands_reject_unknown_hosts_with_a_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from training.hosts import main as hosts_main

    assert main(["--hosts", "coop,vpt", "--output_dir", str(tmp_path)]) == 2
    assert "host 'vpt'" in capsys.readouterr().err
    assert hosts_main(["--host", str(tmp_path / "missing.yaml"), "--output_dir", str(tmp_path)]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    assert main(["--gradings", "softmax,mean", "--output_dir", str(tmp_path)]) == 2
    assert "mean" in capsys.readouterr().err


def test_example_indices_spread_over_the_mos_range() -> None:
    mos = [3.0, 1.0, 5.0, 2.0, 4.0]
    assert example_indices(mos, 3) == [1, 0, 2]
    assert sorted(example_indices(mos, 10)) == [0, 1, 2, 3, 4]


@pytest.mark.slow
def test_ablation_end_to_end_on_the_synthetic_dataset(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    pytest.importorskip("matplotlib")
    # A host whose softmax run has nothing to train fails; the batch must report it and go on.
    broken = tmp_path / "frozen.yaml"
    broken.write_text("host: frozen\ngrading: agqg\ntrain: {trainable: prompts}\n")
    output = tmp_path / "ablation"
    code = main(
        [
            "--hosts",
            f"coop,clip-iqa,{broken}",
            "--splits",
            "2",
            "--steps",
            "2",
            "--batch_size",
            "8",
            "--max_train_samples",
            "24",
            "--max_eval_samples",
            "12",
            "--synthetic_image_size",
            "32",
            "--examples",
            "3",
            "--output_dir",
            str(output),
        ]
    )
    assert code == 1, "a skipped run makes the exit code non-zero"
    payload = json.loads((output / "ablation.json").read_text())
    runs = payload["runs"]
    assert {(r["host"], r["grading"], r["split"]) for r in runs} == {
        (host, grading, split) for host in ("coop", "clip-iqa") for grading in ("softmax", "agqg") for split in (1, 2)
    } | {("frozen", "agqg", 1), ("frozen", "agqg", 2)}
    assert [(s["host"], s["grading"]) for s in payload["skipped"]] == [("frozen", "softmax")] * 2
    assert "no trainable parameters" in payload["skipped"][0]["error"]
    for run in runs:
        assert run["train_images"] == 24 and run["test_images"] == 12
        assert math.isfinite(run["final_loss"]) and 0.0 <= run["drift"] <= 1.0
        assert len(run["grade_probs"]) == 12
        if run["grading"] == "agqg":
            assert run["drift"] == 0.0
    coop = payload["summary"]["coop"]
    assert coop["softmax"]["srcc"]["n"] == 2 and "difference" in coop
    markdown = (output / "ablation.md").read_text()
    assert "| coop |" in markdown and "| clip-iqa |" in markdown and "Skipped" in markdown
    assert "python training/ablate.py --hosts" in markdown
    for host in ("coop", "clip-iqa"):
        for name in (f"{host}_srcc_plcc.png", f"{host}_grade_distributions.png"):
            assert (output / "plots" / name).read_bytes()[:8] == PNG_MAGIC
    # Split 2 is another photo split, built from another seed.
    assert (output / "data" / "synthetic_seed1").is_dir()


@pytest.mark.slow
def test_hosts_command_trains_one_host_and_saves_a_loadable_model(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    from modeling_agqg import AGQGForImageQualityAssessment
    from training.hosts import main as hosts_main

    output = tmp_path / "coop"
    args = ["--host", "coop", "--grading", "softmax", "--steps", "2", "--batch_size", "8", "--output_dir", str(output)]
    args += ["--max_train_samples", "16", "--max_eval_samples", "8"]
    assert hosts_main(args) == 0
    results = json.loads((output / "results.json").read_text())
    assert results["host"] == "coop" and results["grading"] == "softmax" and results["test_images"] == 8
    model = AGQGForImageQualityAssessment.from_pretrained(output / "model")
    assert model.config.prompt_learning == "coop" and model.head is None


@pytest.mark.slow
def test_ablation_on_real_format_agiqa_3k_uses_the_generation_prompts(shared_data: Path, tmp_path: Path) -> None:
    """The AGIQA-3K fixtures (official data.csv, real images) through `--dataset agiqa-3k`: the IPCE host reads
    each image's generation prompt from the dataset's `prompt` column."""
    pytest.importorskip("datasets")
    import csv
    import shutil

    source = shared_data / "AGIQA-3K"
    root = tmp_path / "AGIQA-3K"
    (root / "images").mkdir(parents=True)
    present = {p.name for p in (source / "images").iterdir()}
    with (source / "data.csv").open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle)]
    kept = [rows[0]] + [row for row in rows[1:] if row[0] in present]
    if len(kept) < 6:
        pytest.skip(f"only {len(kept) - 1} AGIQA-3K images in the fixtures")
    with (root / "data.csv").open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(kept)
    for row in kept[1:]:
        shutil.copy(source / "images" / row[0], root / "images" / row[0])
    output = tmp_path / "ablation"
    code = main(
        ["--dataset", "agiqa-3k", "--data_root", str(root), "--protocol", "random", "--hosts", "ipce"]
        + ["--splits", "1", "--steps", "2", "--batch_size", "4", "--no_plots", "--output_dir", str(output)]
    )
    assert code == 0
    payload = json.loads((output / "ablation.json").read_text())
    assert {r["grading"] for r in payload["runs"]} == {"softmax", "agqg"}
    assert all(r["train_images"] + r["test_images"] == len(kept) - 1 for r in payload["runs"])
    from training.hosts import decode_rows, generation_prompt

    splits, score_range = load_ablation_splits("agiqa-3k", str(root), "1", seed=0, protocol="random")
    train_rows = decode_rows(splits["train"])
    prompts = {row[0]: row[1] for row in kept[1:]}
    assert all(generation_prompt(row) in prompts.values() for row in train_rows)
    assert score_range[1] > score_range[0]
