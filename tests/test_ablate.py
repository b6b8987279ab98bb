"""The ablation (training/ablate.py): the semantic-drift measure, summary statistics with paired 95% t-intervals,
the grid file, and a tiny version of the whole grid (5 hosts x 2 gradings x 2 splits, every run a call of
`train()`), which CI runs so the ablation cannot rot."""

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
    main,
    markdown_tables,
    multimodal_mask,
    paired_difference,
    read_grid,
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


def _record(host: str, grading: str, split: str, srcc: float, plcc: float, drift: float) -> dict:
    return {"host": host, "grading": grading, "split": split, "srcc": srcc, "plcc": plcc, "krcc": srcc / 2,
            "drift": drift}  # fmt: skip


def test_summary_means_stds_and_paired_differences_with_t_intervals() -> None:
    records = [
        _record("coop", "softmax", "1", 0.50, 0.60, 0.4),
        _record("coop", "softmax", "2", 0.70, 0.80, 0.2),
        _record("coop", "agqg", "1", 0.60, 0.65, 0.0),
        _record("coop", "agqg", "2", 0.90, 0.85, 0.0),
        _record("liqe", "agqg", "1", 0.3, 0.3, 0.0),
    ]
    summary = summarize(records)
    coop = summary["coop"]
    assert coop["softmax"]["srcc"]["mean"] == pytest.approx(0.6)
    assert coop["softmax"]["srcc"]["std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    difference = coop["difference"]["srcc"]
    assert difference["mean"] == pytest.approx(0.15) and difference["std"] == pytest.approx(np.std([0.1, 0.2], ddof=1))
    # t_{0.975, 1} = 12.706: the interval of two paired splits is wide, as it should be.
    half = 12.7062047 * np.std([0.1, 0.2], ddof=1) / np.sqrt(2)
    assert (difference["ci_low"], difference["ci_high"]) == pytest.approx((0.15 - half, 0.15 + half), abs=1e-6)
    assert coop["difference"]["drift"]["mean"] == pytest.approx(-0.3)
    assert "difference" not in summary["liqe"] and "softmax" not in summary["liqe"]
    tables = markdown_tables(summary)
    assert "| coop | softmax | 0.600 ± 0.141 | 0.700 ± 0.141 | 0.300 ± 0.071 | 0.300 ± 0.141 |" in tables
    assert f"| coop | 2 | +0.150 [{0.15 - half:+.3f}, {0.15 + half:+.3f}] |" in tables
    assert "| liqe | agqg | 0.300 ± 0.000 |" in tables


def test_paired_difference_of_one_split_has_no_interval() -> None:
    single = paired_difference([0.2])
    assert single["mean"] == pytest.approx(0.2) and math.isnan(single["ci_low"])
    # Mean 0.1, s = sqrt(0.02 / 3), n = 4, t_{0.975, 3} = 3.182446: half-width 0.129923.
    four = paired_difference([0.0, 0.1, 0.2, 0.1])
    assert four["n"] == 4
    assert (four["ci_low"], four["ci_high"]) == pytest.approx((0.1 - 0.129923, 0.1 + 0.129923), abs=1e-6)


def test_bad_grids_and_hosts_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text("hosts: [coop]\nsteps: 3\n")
    with pytest.raises(ValueError, match=r"grid\.yaml.*steps"):
        read_grid(grid)
    grid.write_text("hosts: [coop]\nhost_options: {liqe: {learning_rate: 1}}\n")
    with pytest.raises(ValueError, match="host_options for \\['liqe'\\]"):
        read_grid(grid)
    assert main(["--hosts", "coop,vpt", "--output_dir", str(tmp_path)]) == 2
    assert "host 'vpt'" in capsys.readouterr().err
    assert main(["--gradings", "softmax,mean", "--output_dir", str(tmp_path)]) == 2
    assert "mean" in capsys.readouterr().err
    grid.write_text("hosts: [coop]\noptions: {learning_rat: 1}\n")
    assert main(["--config", str(grid), "--output_dir", str(tmp_path)]) == 2
    assert "learning_rat" in capsys.readouterr().err


def test_example_indices_spread_over_the_mos_range() -> None:
    mos = [3.0, 1.0, 5.0, 2.0, 4.0]
    assert example_indices(mos, 3) == [1, 0, 2]
    assert sorted(example_indices(mos, 10)) == [0, 1, 2, 3, 4]


TINY_GRID = """
hosts: [clip-iqa, liqe, ipce, coop, maple, {broken}]
gradings: [softmax, agqg]
splits: ["1", "2"]
seed: 3
num_threads: 1
options:
  tiny_image_size: 32
  tiny_hidden_size: 32
  tiny_projection_dim: 32
  synthetic_image_size: 32
  synthetic_crops_per_source: 2
  max_train_samples: 16
  max_eval_samples: 8
  per_device_train_batch_size: 16
  per_device_eval_batch_size: 16
  num_train_epochs: 1
  backbone_learning_rate: 1.0e-3
  mixed_precision: "no"
  report_to: none
  plots: false
  disable_tqdm: true
  checkpointing_steps: none
host_options:
  ipce:
    view_protocol: {{scheme: ipce, num_crops: 2, train_crops: 1, short_side: 40, stride: 8, large_stride: 16,
                    large_side: 80}}
"""


def test_tiny_ablation_grid_end_to_end(tmp_path: Path) -> None:
    """Every host x grading x 2 splits through `train()` in seconds: the records, the summary, the tables, the
    plots, a failing run reported while the others go on, and a rerun that reuses the finished runs."""
    # A host whose softmax run has nothing to train fails; the grid must report it and go on.
    broken = tmp_path / "frozen.yaml"
    broken.write_text("host: frozen\nfreeze_backbone: true\n")
    grid = tmp_path / "grid.yaml"
    grid.write_text(TINY_GRID.format(broken=broken))
    output = tmp_path / "ablation"
    threads = torch.get_num_threads()
    try:
        code = main(["--config", str(grid), "--examples", "3", "--output_dir", str(output)])
    finally:
        torch.set_num_threads(threads)
    assert code == 1, "a failed run makes the exit code non-zero"
    payload = json.loads((output / "ablation.json").read_text())
    hosts = ("clip-iqa", "liqe", "ipce", "coop", "maple")
    expected = {(h, g, s) for h in hosts for g in ("softmax", "agqg") for s in ("1", "2")}
    expected |= {("frozen", "agqg", "1"), ("frozen", "agqg", "2")}
    assert {(r["host"], r["grading"], r["split"]) for r in payload["runs"]} == expected
    assert [(f["host"], f["grading"]) for f in payload["failed"]] == [("frozen", "softmax")] * 2
    assert "no trainable parameters" in payload["failed"][0]["error"]
    for run in payload["runs"]:
        assert run["test_images"] == 8 and len(run["grade_probs"]) == 8 and 0.0 <= run["drift"] <= 1.0
        if run["grading"] == "agqg":
            assert run["drift"] == 0.0, run["host"]  # unimodal by construction
    coop = payload["summary"]["coop"]
    assert coop["softmax"]["srcc"]["n"] == 2 and set(coop["difference"]["srcc"]) >= {"ci_low", "ci_high"}
    # The synthetic data has the simulated raters' mos_std: every run measures the spread metric.
    assert all(isinstance(run["spread_srcc"], float) for run in payload["runs"])
    assert any(math.isfinite(run["spread_srcc"]) for run in payload["runs"])
    markdown = (output / "ablation.md").read_text()
    assert "spread SRCC" in markdown and "mean grade_std" in markdown
    assert all(run["mean_grade_std"] > 0 and run["mean_mos_std"] > 0 for run in payload["runs"])
    assert "| coop | softmax |" in markdown and "| maple | 2 |" in markdown and "Failed" in markdown
    for host in hosts:
        for name in (f"{host}_metrics.png", f"{host}_grade_distributions.png"):
            assert (output / "plots" / name).read_bytes()[:8] == PNG_MAGIC
    run_info = json.loads((output / "split_2" / "ipce_agqg" / "run_info.json").read_text())
    assert run_info["view_protocol"]["short_side"] == 40 and run_info["grading"] == "agqg"
    assert json.loads((output / "split_1" / "coop_softmax" / "run_info.json").read_text())["cached_image_embeds"]
    # Both gradings of a split share the seed (hence the CLIP, prompts and data order); splits differ.
    seeds = {(r, s): json.loads((output / f"split_{s}" / f"{r}" / "run_info.json").read_text())
             for r in ("liqe_softmax", "liqe_agqg") for s in ("1", "2")}  # fmt: skip
    assert all(info["train_images"] == 16 for info in seeds.values())
    assert (output / "data" / "synthetic_split_2").is_dir()

    # A rerun reuses every finished run (only the failing ones are tried again).
    before = (output / "split_1" / "liqe_agqg" / "model" / "model.safetensors").stat().st_mtime_ns
    assert main(["--config", str(grid), "--hosts", "liqe", "--no_plots", "--output_dir", str(output)]) == 0
    assert (output / "split_1" / "liqe_agqg" / "model" / "model.safetensors").stat().st_mtime_ns == before


def test_the_shipped_grid_resolves_for_every_run(tmp_path: Path) -> None:
    from training.ablate import run_options

    grid = read_grid("synthetic.yaml")
    assert grid.hosts == ["clip-iqa", "liqe", "ipce", "coop", "maple"] and len(grid.splits) >= 3
    for host in grid.hosts:
        for grading in grid.gradings:
            options = run_options(grid, host, grading, grid.splits[-1], tmp_path / "run", [], tmp_path / "data")
            assert options.model.clip == "runs/tiny-clip" and options.model.grading == grading
            assert options.data.synthetic_test_sources == ["astronaut", "chelsea"]
            assert options.training.seed == grid.seed + len(grid.splits) - 1
    ipce = run_options(grid, "ipce", "agqg", "1", tmp_path / "run", [], tmp_path / "data")
    assert ipce.model.view_protocol["short_side"] == 37 and ipce.data.generation_prompts
    # The data the pretrained CLIP saw: auto-levelled textured crops of the downscaled photos, no native crops.
    data = ipce.data
    assert [float(v) for v in data.synthetic_crop_scales] == [2.0, 4.0, 8.0] and data.synthetic_auto_level
    assert data.synthetic_random_native_crops == 0 and data.synthetic_context == 0


def test_the_shipped_grm_nll_grid_adds_the_likelihood_to_every_run(tmp_path: Path) -> None:
    from training.ablate import run_options

    grid = read_grid("synthetic_grm_nll.yaml")
    for host in grid.hosts:
        for grading in grid.gradings:
            options = run_options(grid, host, grading, "1", tmp_path / "run", [], tmp_path / "data")
            assert options.training.loss_weights == {"l1": 1.0, "grm_nll": 1.0}
            assert len(options.model.grade_names or ["bad", "poor", "fair", "good", "perfect"]) == 5
