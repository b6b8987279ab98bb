"""Cross-dataset evaluation (training/cross_dataset.py): the score map, the command line, and one end-to-end
run that trains the tiny offline CLIP on a small AGIQA-3K folder for a few steps and tests it on small AGIQA-1K
and AIGCIQA2023 (IPCE layout) folders."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_data_layouts import IPCE_HEADER, _csv_text, _write, _xlsx

from training.cross_dataset import main, map_scores, parse_test_spec
from training.metrics import compute_metrics
from training.run_splits import TRAIN_SCRIPT, train_command

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_map_scores_is_linear_between_the_recorded_ranges() -> None:
    scores = np.array([0.0, 1.25, 5.0])
    assert map_scores(scores, (0, 5), (0, 100)) == pytest.approx([0.0, 25.0, 100.0])
    assert map_scores(scores, (0, 5), (1, 5)) == pytest.approx([1.0, 2.0, 5.0])
    # Onto a lower-is-better scale (SIQAD's DMOS) the best score maps to the lowest value.
    assert map_scores(scores, (0, 5), (0, 100), reverse=True) == pytest.approx([100.0, 75.0, 0.0])
    with pytest.raises(ValueError, match="min < max"):
        map_scores(scores, (5, 0), (0, 100))


def test_test_specs_and_the_training_command() -> None:
    spec = parse_test_spec("aigciqa2023:correspondence=/data/AIGCIQA2023")
    assert (spec.name, str(spec.root), spec.target) == ("aigciqa2023", "/data/AIGCIQA2023", "correspondence")
    assert parse_test_spec("agiqa-1k=/d").target is None
    with pytest.raises(ValueError, match="expected NAME=ROOT"):
        parse_test_spec("agiqa-1k")
    command = train_command(["--config", "c.yaml"], output_dir="runs/x", split="3", launcher=["accelerate", "launch"])
    assert command == [
        "accelerate",
        "launch",
        str(TRAIN_SCRIPT),
        "--config",
        "c.yaml",
        "--split",
        "3",
        "--output_dir",
        "runs/x",
        "--resume_from_checkpoint",
        "latest",
    ]
    assert train_command([], output_dir="o", split=None)[:2] == [sys.executable, str(TRAIN_SCRIPT)]
    with pytest.raises(ValueError, match="--output_dir"):
        train_command(["--output_dir=elsewhere"], output_dir="o", split="1")
    with pytest.raises(SystemExit, match="--data_root"):
        main(["--train_dataset", "agiqa-3k", "--test", "agiqa-1k=/d", "--output_dir", "o", "--", "--data_root", "x"])


def test_evaluate_on_maps_onto_a_lower_is_better_split(tiny_model, tmp_path: Path) -> None:
    from training.cross_dataset import HeldOutDataset, evaluate_on

    root = tmp_path / "SIQAD"
    names = [f"cim1_{i}_1.bmp" for i in range(1, 9)]
    _write(root / "DMOS.txt", "".join(f"{name}\t{10.0 * i}\t5.0\n" for i, name in enumerate(names)))
    for i, name in enumerate(names):
        _grey(root / "DistortedImages" / name, 25 * i)
    _write(root / "splits" / "1" / "train.csv", "".join(f"{n},{10.0 * i}\n" for i, n in enumerate(names[:3])))
    _write(root / "splits" / "1" / "val.csv", "".join(f"{n},{10.0 * (i + 3)}\n" for i, n in enumerate(names[3:])))
    result, rows = evaluate_on(
        tiny_model,
        HeldOutDataset("siqad", root),
        source_range=(0.0, 5.0),
        source_higher_is_better=True,
        batch_size=2,
        test_split="1:validation",
    )
    assert result["split"] == "1:validation" and result["num_images"] == 5 and rows["name"] == names[3:]
    assert result["score_map"] == {"source_range": [0.0, 5.0], "target_range": [0.0, 100.0], "reversed": True}
    predicted, mapped = np.array(rows["predicted"]), np.array(rows["mapped"])
    assert mapped == pytest.approx(100.0 - 20.0 * predicted)  # the best score lands on the lowest DMOS
    recomputed = compute_metrics(mapped, np.array(rows["mos"]))
    assert result["metrics"]["srcc"] == pytest.approx(recomputed["srcc"], nan_ok=True)
    assert result["metrics"]["rmse"] == pytest.approx(np.sqrt(np.mean((mapped - np.array(rows["mos"])) ** 2)))


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _grey(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), (value, value, value)).save(path)


def _tiny_folders(base: Path) -> tuple[Path, Path, Path]:
    """AGIQA-3K (40 images, data.csv, CRLF), AGIQA-1K (12 images, the official xlsx) and AIGCIQA2023 (24
    images in IPCE's layout: all_set.csv, per-model folders); MOS grows with the image's brightness."""
    agiqa_3k = base / "AGIQA-3K"
    lines = ["name,prompt,adj1,adj2,style,mos_quality,std_quality,mos_align,std_align"]
    for i in range(40):
        name = f"sd1.5_normal_{i:03d}.jpg"
        _grey(agiqa_3k / "images" / name, 6 * i)
        lines.append(f'{name},"prompt {i}, a scene",,,,{i / 8:.3f},0.3,1.0,0.2')
    _write(agiqa_3k / "data.csv", "\n".join(lines) + "\n", newline="\r\n")
    agiqa_1k = base / "AGIQA-1K"
    rows = [["Image", "Prompt", "MOS"]]
    for i in range(12):
        rows.append([f"deepai_{i}_0_0_0.jpg", f"bird, city, style {i}", i * 0.4])
        _grey(agiqa_1k / "file" / rows[-1][0], 20 * i)
    _xlsx(agiqa_1k / "AIGC_MOS_Zscore.xlsx", rows)
    aigciqa = base / "AIGCIQA2023"
    ipce_rows = []
    for m, model in enumerate(("Controlnet", "DALLE", "Glide", "Lafite", "stable-diffusion", "Unidiffuser")):
        for sample in range(1, 5):
            level = m * 4 + sample
            ipce_rows.append([model, f"000-{sample}.png", level / 10, level / 8, level / 9, '"a corgi"'])
            _grey(aigciqa / model / f"000-{sample}.png", 9 * level)
    _write(aigciqa / "all_set.csv", _csv_text([IPCE_HEADER, *ipce_rows]))
    return agiqa_3k, agiqa_1k, aigciqa


TINY_TRAIN_FLAGS = [
    "--protocol", "random",
    "--tiny_image_size", "32",
    "--tiny_hidden_size", "32",
    "--tiny_projection_dim", "32",
    "--tiny_num_layers", "2",
    "--per_device_train_batch_size", "16",
    "--per_device_eval_batch_size", "16",
    "--max_train_steps", "3",
    "--mixed_precision", "no",
    "--report_to", "none",
    "--plots", "false",
    "--cpu", "true",
]  # fmt: skip


@pytest.mark.slow
def test_train_on_agiqa_3k_test_on_agiqa_1k_and_aigciqa2023(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    agiqa_3k, agiqa_1k, aigciqa = _tiny_folders(tmp_path / "data")
    # train.py runs in a subprocess: offline, its own HF cache, this repository importable, one thread.
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    out = tmp_path / "cross"
    argv = [
        "--train_dataset", "agiqa-3k",
        "--train_root", str(agiqa_3k),
        "--test", f"agiqa-1k={agiqa_1k}",
        "--test", f"aigciqa2023:authenticity={aigciqa}",
        "--output_dir", str(out),
        "--batch_size", "8",
        "--device", "cpu",
        "--", *TINY_TRAIN_FLAGS,
    ]  # fmt: skip
    assert main(argv) == 0
    payload = json.loads((out / "cross_dataset.json").read_text())
    assert payload["train"]["dataset"] == "agiqa-3k" and payload["train"]["score_range"] == [0.0, 5.0]
    assert (out / "train" / "model" / "eval_results.json").is_file()
    results = {r["dataset"]: r for r in payload["results"]}
    assert set(results) == {"agiqa-1k", "aigciqa2023"}
    assert results["agiqa-1k"]["num_images"] == 12 and results["aigciqa2023"]["num_images"] == 24
    assert results["aigciqa2023"]["score_map"] == {
        "source_range": [0.0, 5.0],
        "target_range": [0.0, 100.0],
        "reversed": False,
    }
    assert results["aigciqa2023"]["target"] == "authenticity"

    for dataset, factor in (("agiqa-1k", 1.0), ("aigciqa2023", 20.0)):
        suffix = "_authenticity" if dataset == "aigciqa2023" else ""
        rows = _read_csv(out / f"predictions_{dataset}{suffix}.csv")
        predicted = np.array([float(r["predicted"]) for r in rows])
        mapped = np.array([float(r["mapped"]) for r in rows])
        mos = np.array([float(r["mos"]) for r in rows])
        assert mapped == pytest.approx(predicted * factor)  # 0-5 onto 0-5, and onto 0-100
        recomputed = compute_metrics(mapped, mos)
        metrics = results[dataset]["metrics"]
        for name in ("srcc", "krcc", "plcc", "rmse"):
            assert metrics[name] == pytest.approx(recomputed[name], abs=1e-9)
        # Rank and correlation metrics are unchanged by the map; RMSE is on the test scale.
        raw = compute_metrics(predicted, mos)
        assert metrics["srcc"] == pytest.approx(raw["srcc"], abs=1e-9)
        assert metrics["rmse"] == pytest.approx(np.sqrt(np.mean((mapped - mos) ** 2)))
    aigciqa_rows = _read_csv(out / "predictions_aigciqa2023_authenticity.csv")
    assert aigciqa_rows[0]["name"] == "Controlnet/000-1.png"
    assert float(aigciqa_rows[0]["mos"]) == pytest.approx(1 / 8 * 20)  # mosz2 of the first image x 20
    table = (out / "cross_dataset.md").read_text()
    assert "| agiqa-1k | 12 |" in table and "| aigciqa2023 | 24 |" in table

    # A rerun reuses the finished training run.
    (out / "train" / "history.json").unlink()
    assert main(argv) == 0
    assert not (out / "train" / "history.json").exists()
    assert "already finished" in capsys.readouterr().out
