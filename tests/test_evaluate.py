"""Evaluation (training/evaluation.py): the one evaluation of training and of the command, against the model
scoring every view protocol's views directly; the command's outputs and its `base_model`; the repeated-split
runner and its mean ± std table."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny_model
from PIL import Image
from test_train import TINY_RUN_FLAGS

from training.run_splits import parse_splits, summarize

PROTOCOLS = {
    "resize": "resize",
    "crops": {"scheme": "crops", "num_crops": 3, "train_crops": 1, "include_resized": True},
    "ipce": {"scheme": "ipce", "num_crops": 4, "train_crops": 2, "short_side": 48, "stride": 8, "large_stride": 12},
}


def _dataset(count: int = 7, seed: int = 1):
    import datasets

    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 256, (48 + 4 * i, 40, 3), dtype=np.uint8)) for i in range(count)]
    rows = datasets.Dataset.from_dict({"image": images, "mos": [float(i) for i in range(count)]})
    return rows.cast_column("image", datasets.Image()), images


@pytest.mark.parametrize("scheme", sorted(PROTOCOLS))
def test_evaluate_dataset_matches_the_model_on_make_views(tokenizer, scheme: str) -> None:
    from accelerate import Accelerator

    from modeling_agqg.views_agqg import make_views
    from training.evaluation import evaluate_dataset

    model = make_tiny_model(tokenizer, view_protocol=PROTOCOLS[scheme])
    rows, images = _dataset()
    protocol, spec = model.view_protocol(), model.pixel_spec()
    views = protocol.num_views()
    with torch.no_grad():
        expected = model(torch.cat([make_views(image, protocol, spec) for image in images]), num_views=views)
        whole = model(torch.cat([make_views(image, protocol, spec)[-1:] for image in images]))
    for accelerator in (None, Accelerator(cpu=True)):
        predictions = evaluate_dataset(model, rows, accelerator=accelerator, batch_size=3)
        np.testing.assert_allclose(predictions.scores, expected.score.numpy(), atol=1e-5)
        np.testing.assert_allclose(predictions.mos, np.arange(7))
        # The grade distribution reported is the whole-image view's (the only view for resize).
        np.testing.assert_allclose(predictions.grade_probs, whole.grade_probs.numpy(), atol=1e-5)
        assert predictions.names == [str(i) for i in range(7)] and len(predictions.grade_names) == 5


@pytest.mark.slow
def test_evaluation_command_writes_results_plot_and_predictions(
    tmp_path: Path, tokenizer, synthetic_cache: Path
) -> None:
    from training.evaluation import main

    model_dir = tmp_path / "model"
    make_tiny_model(tokenizer).save_pretrained(model_dir)
    out = tmp_path / "eval"
    args = ["--model", str(model_dir), "--dataset", "synthetic", "--data_root", str(synthetic_cache),
            "--synthetic_image_size", "32", "--which", "validation", "test", "--views", "crops:4", "--max_samples",
            "23", "--output_dir", str(out), "--disable_tqdm", "true"]  # fmt: skip
    assert main(args) == 0
    results = json.loads((out / "eval_results.json").read_text())
    assert results["synthetic"] is True and results["base_model"] is None  # a CLIP built in code
    assert [e["split"] for e in results["results"]] == ["validation", "test"]
    assert all(e["num_images"] == 23 for e in results["results"])
    assert (out / "scatter_test_crops.png").read_bytes()[:4] == b"\x89PNG"
    with (out / "predictions_validation_crops.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 23 and list(rows[0])[:3] == ["name", "mos", "prediction"] and "p_perfect" in rows[0]
    # The synthetic set has the simulated raters' mos_std: the spread metric is measured, from the CSV's columns.
    from scipy.stats import spearmanr

    test_metrics = results["results"][1]["metrics"]
    with (out / "predictions_test_crops.csv").open() as handle:
        test_rows = list(csv.DictReader(handle))
    expected = spearmanr([float(r["grade_std"]) for r in test_rows], [float(r["mos_std"]) for r in test_rows])
    assert math.isclose(test_metrics["spread_srcc"], expected.statistic, abs_tol=1e-6)
    assert math.isclose(sum(float(rows[0][f"p_{g}"]) for g in ("bad", "poor", "fair", "good", "perfect")), 1.0,
                        abs_tol=1e-4)  # fmt: skip


def test_base_model_is_the_clip_never_the_evaluated_model(tokenizer, tmp_path: Path) -> None:
    from modeling_agqg import AGQGForImageQualityAssessment
    from training.evaluation import base_model_of

    model = make_tiny_model(tokenizer)
    assert base_model_of(model, "someone/agqg-model") is None  # a CLIP built in code has no name
    model.config.clip_config._name_or_path = "openai/clip-vit-base-patch16"
    assert base_model_of(model, "someone/agqg-model") == "openai/clip-vit-base-patch16"
    model.config.clip_config._name_or_path = "someone/agqg-model"
    assert base_model_of(model, "someone/agqg-model") is None
    model.config.clip_config._name_or_path = str(tmp_path / "my-clip")
    model.save_pretrained(tmp_path / "saved")
    reloaded = AGQGForImageQualityAssessment.from_pretrained(tmp_path / "saved")
    assert base_model_of(reloaded, str(tmp_path / "saved")) == "<local path>/my-clip"


def test_evaluation_command_names_a_missing_part(tmp_path: Path, tokenizer, synthetic_cache: Path) -> None:
    from training.evaluation import main

    model_dir = tmp_path / "model"
    make_tiny_model(tokenizer).save_pretrained(model_dir)
    with pytest.raises(SystemExit, match="holdout"):
        main(["--model", str(model_dir), "--data_root", str(synthetic_cache), "--synthetic_image_size", "32",
              "--which", "holdout"])  # fmt: skip


# --- repeated splits ----------------------------------------------------------------------------


def test_parse_splits() -> None:
    assert parse_splits("1-3") == ["1", "2", "3"]
    assert parse_splits("2,5-6") == ["2", "5", "6"]
    with pytest.raises(ValueError):
        parse_splits("5-1")


def test_summary_is_mean_and_sample_std_per_kind() -> None:
    def payload(split: str, srcc: float, test_srcc: float) -> dict:
        metrics = {"srcc": srcc, "krcc": 0.5, "plcc": srcc, "plcc_logistic": srcc, "rmse": 1.0 - srcc}
        test_metrics = {**metrics, "srcc": test_srcc}
        return {
            "results": [
                {"dataset": "d", "split": f"split {split} validation", "num_images": 10, "metrics": metrics},
                {"dataset": "d", "split": f"split {split} test", "num_images": 10, "metrics": test_metrics},
            ]
        }

    srcc = [0.8, 0.9, 0.7]
    summary = summarize({str(i): payload(str(i), s, s / 2) for i, s in enumerate(srcc)})
    assert summary["validation"]["srcc"]["mean"] == pytest.approx(np.mean(srcc))
    assert summary["validation"]["srcc"]["std"] == pytest.approx(np.std(srcc, ddof=1))
    assert summary["test"]["srcc"]["mean"] == pytest.approx(np.mean(srcc) / 2)
    assert summary["validation"]["krcc"]["std"] == 0.0
    assert summary["validation"]["srcc"]["n"] == 3


@pytest.mark.slow
def test_run_splits_trains_each_split_and_tabulates(tmp_path: Path) -> None:
    from training.run_splits import main

    out = tmp_path / "splits"
    flags = [*TINY_RUN_FLAGS, "--num_train_epochs", "1", "--report_to", "none", "--plots", "false"]
    assert main(["--splits", "1-2", "--output_dir", str(out), "--", *flags]) == 0
    payload = json.loads((out / "summary.json").read_text())
    assert payload["splits"] == ["1", "2"] and payload["failed"] == {}
    per_split_srcc = [
        next(e for e in payload["per_split"][s]["results"] if e["split"].endswith("test"))["metrics"]["srcc"]
        for s in ("1", "2")
    ]
    assert payload["summary"]["test"]["srcc"]["mean"] == pytest.approx(np.mean(per_split_srcc))
    assert "± " in (out / "summary.md").read_text()
    configs = [json.loads((out / f"split_{s}" / "run_info.json").read_text()) for s in ("1", "2")]
    assert all(c["validation_images"] == 41 for c in configs)
    assert not math.isnan(payload["summary"]["validation"]["srcc"]["mean"])

    # Rerunning skips finished splits (no training: it returns at once with the same table).
    (out / "split_1" / "history.json").unlink()
    assert main(["--splits", "1-2", "--output_dir", str(out), "--", *flags]) == 0
    assert not (out / "split_1" / "history.json").exists()


def test_spread_metric_is_the_rank_correlation_of_predicted_spread_and_rater_disagreement() -> None:
    from training.results import SPREAD_METRIC, Predictions, spread_metrics

    rng = np.random.default_rng(0)
    disagreement = rng.uniform(0.2, 1.2, 60)

    def predictions(spread, mos_std=disagreement) -> Predictions:
        return Predictions(np.zeros(60), np.zeros(60), np.zeros((60, 5)), grade_std=spread, mos_std=mos_std)

    tracking = disagreement + rng.normal(0, 0.02, 60)
    assert spread_metrics(predictions(tracking))[SPREAD_METRIC] > 0.95
    assert spread_metrics(predictions(-tracking))[SPREAD_METRIC] < -0.95  # the sign is reported, not folded
    assert abs(spread_metrics(predictions(rng.permutation(tracking)))[SPREAD_METRIC]) < 0.35
    # Monotone maps of the spread do not change it (a rank correlation).
    assert spread_metrics(predictions(np.exp(3 * tracking)))[SPREAD_METRIC] == pytest.approx(
        spread_metrics(predictions(tracking))[SPREAD_METRIC]
    )
    assert spread_metrics(predictions(tracking, mos_std=None)) == {}  # no rater spread: no metric
    assert spread_metrics(predictions(np.ones(60))) == {}  # a constant spread ranks nothing
