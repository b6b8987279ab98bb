"""Evaluation: multi-crop views, `evaluate_model` against direct scoring, the `training/evaluate.py` command,
the repeated-split runner and its mean ± std table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny_model
from PIL import Image
from test_train import TINY_RUN_FLAGS

from training.evaluate import MultiCropCollator, crop_boxes
from training.run_splits import parse_splits, summarize


@pytest.mark.parametrize("num_crops", [1, 2, 4, 5, 9, 15])
def test_crop_boxes_are_inside_evenly_spread_and_counted(num_crops: int) -> None:
    width, height, size = 300, 200, 64
    boxes = crop_boxes(width, height, size, num_crops)
    assert len(boxes) == num_crops
    for left, top, right, bottom in boxes:
        assert right - left == size and bottom - top == size
        assert 0 <= left and right <= width and 0 <= top and bottom <= height
    if num_crops >= 2:
        assert boxes[0][:2] == (0, 0)
        assert boxes[-1][2:] == (width, height)
    assert len(set(boxes)) == num_crops


def test_crop_boxes_reject_small_images() -> None:
    with pytest.raises(ValueError, match="smaller than the crop size"):
        crop_boxes(20, 100, 32, 4)


def test_multicrop_views_match_the_image_processor(tokenizer) -> None:
    model = make_tiny_model(tokenizer)
    processor = model.image_processor
    rng = np.random.default_rng(0)
    square = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    collator = MultiCropCollator(processor, crop_size=32, num_crops=3)
    views = collator.views(square)
    assert len(views) == 4
    expected = processor(images=square, return_tensors="pt")["pixel_values"][0]
    for view in views:  # every crop of a 32x32 image at size 32 is the whole image
        torch.testing.assert_close(view, expected, atol=1e-5, rtol=0)

    wide = Image.fromarray(rng.integers(0, 256, (40, 96, 3), dtype=np.uint8))
    views = collator.views(wide)
    left_crop = processor(images=wide.crop((0, 0, 32, 32)), return_tensors="pt")["pixel_values"][0]
    torch.testing.assert_close(views[0], left_crop, atol=1e-5, rtol=0)
    assert not torch.allclose(views[0], views[2])  # left and right crops differ

    small = Image.fromarray(rng.integers(0, 256, (16, 24, 3), dtype=np.uint8))
    assert all(v.shape == (3, 32, 32) for v in collator.views(small))  # upscaled before cropping


def test_evaluate_model_matches_direct_scoring(tokenizer) -> None:
    import datasets
    from accelerate import Accelerator

    from training.evaluate import evaluate_model

    model = make_tiny_model(tokenizer)
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)) for _ in range(7)]
    rows = datasets.Dataset.from_dict({"image": images, "mos": [float(i) for i in range(7)]})
    rows = rows.cast_column("image", datasets.Image())
    accelerator = Accelerator(cpu=True)

    predictions, references = evaluate_model(model, rows, accelerator=accelerator, batch_size=3)
    with torch.no_grad():
        direct = model(pixel_values=model.image_processor(images=images, return_tensors="pt")["pixel_values"]).score
    np.testing.assert_allclose(predictions, direct.numpy(), atol=1e-5)
    np.testing.assert_allclose(references, np.arange(7))

    predictions, _ = evaluate_model(model, rows, accelerator=accelerator, batch_size=3, crops=4)
    collator = MultiCropCollator(model.image_processor, crop_size=32, num_crops=4)
    with torch.no_grad():
        expected = [model(pixel_values=torch.stack(collator.views(image))).score.mean() for image in images]
    np.testing.assert_allclose(predictions, torch.stack(expected).numpy(), atol=1e-5)


@pytest.mark.slow
def test_evaluate_command_writes_results_plot_and_predictions(
    tmp_path: Path,
    tokenizer,
    synthetic_cache: Path,  # noqa: F811
) -> None:
    from training.evaluate import main

    model_dir = tmp_path / "model"
    make_tiny_model(tokenizer).save_pretrained(model_dir)
    out = tmp_path / "eval"
    code = main(
        [
            "--model",
            str(model_dir),
            "--dataset",
            "synthetic",
            "--data_root",
            str(synthetic_cache),
            "--synthetic_image_size",
            "32",
            "--which",
            "validation",
            "test",
            "--crops",
            "4",
            "--max_samples",
            "23",
            "--output_dir",
            str(out),
        ]  # fmt: skip
    )
    assert code == 0
    results = json.loads((out / "eval_results.json").read_text())
    assert results["synthetic"] is True
    assert [e["split"] for e in results["results"]] == ["validation", "test"]
    assert all(e["num_images"] == 23 for e in results["results"])
    assert (out / "scatter_test_crops4.png").read_bytes()[:4] == b"\x89PNG"
    lines = (out / "predictions_validation_crops4.csv").read_text().splitlines()
    assert lines[0] == "name,mos,prediction" and len(lines) == 24


def test_evaluate_command_names_a_missing_split(tmp_path: Path, tokenizer, synthetic_cache: Path) -> None:  # noqa: F811
    from training.evaluate import main

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
