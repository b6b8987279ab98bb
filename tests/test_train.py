"""Training entry point: configuration (YAML + flags), optimiser groups, freezing, the cached-embedding head
path, and a complete tiny run through `accelerate launch training/train.py`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, make_tiny_model

from training.common import (
    HeadOnlyScorer,
    TrainConfig,
    build_arg_parser,
    freeze_parameters,
    parameter_groups,
    resolve_config,
)

TRAIN_SCRIPT = REPO_ROOT / "training" / "train.py"

# A run small enough for tests: 32x32 synthetic crops, a 2-layer 32-wide CLIP, few images.
TINY_RUN_FLAGS = [
    "--synthetic_image_size", "32",
    "--tiny_image_size", "32",
    "--tiny_hidden_size", "32",
    "--tiny_projection_dim", "32",
    "--tiny_num_layers", "2",
    "--max_train_samples", "96",
    "--max_eval_samples", "41",
    "--per_device_train_batch_size", "16",
    "--per_device_eval_batch_size", "16",
    "--mixed_precision", "no",
]  # fmt: skip


def subprocess_env(hf_home: Path) -> dict[str, str]:
    """Environment of a training subprocess: offline, its own HF cache, the repository importable."""
    env = dict(os.environ)
    env.update(
        HF_HOME=str(hf_home),
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONPATH=str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"),
    )
    return env


def run_training(args: list[str], tmp_path: Path, *, launcher: list[str] | None = None, timeout: int = 300):
    command = [*(launcher or [sys.executable]), str(TRAIN_SCRIPT), *args]
    result = subprocess.run(
        command, cwd=tmp_path, env=subprocess_env(tmp_path / "hf_home"), capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result


# --- configuration -----------------------------------------------------------------------------


def test_yaml_then_flags_override_and_resolved_types(tmp_path: Path) -> None:
    config_file = tmp_path / "run.yaml"
    config_file.write_text(
        "learning_rate: 0.005\nnum_train_epochs: 3\nloss_weights: {l1: 1.0, fidelity: 0.5}\nhflip: true\n"
        "grade_names: [awful, meh, fine]\n",
        encoding="utf-8",
    )
    args = build_arg_parser().parse_args(
        [
            "--config",
            str(config_file),
            "--num_train_epochs",
            "7",
            "--loss_weights",
            "mse=2,grm_nll=0.1",
            "--hflip",
            "no",
        ]
    )
    config = resolve_config(args)
    assert config.learning_rate == 0.005  # from YAML
    assert config.num_train_epochs == 7  # flag beats YAML
    assert config.loss_weights == {"mse": 2.0, "grm_nll": 0.1}
    assert config.hflip is False
    assert config.grade_names == ["awful", "meh", "fine"]
    assert config.per_device_train_batch_size == TrainConfig().per_device_train_batch_size  # default kept


def test_every_option_is_a_flag() -> None:
    parser = build_arg_parser()
    flags = {action.dest for action in parser._actions}
    for field in TrainConfig.__dataclass_fields__:
        assert field in flags


def test_unknown_yaml_key_and_bad_value_name_their_source(tmp_path: Path) -> None:
    config_file = tmp_path / "bad.yaml"
    config_file.write_text("learning_rat: 0.1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.yaml.*learning_rat"):
        resolve_config({"config": str(config_file)})
    with pytest.raises(ValueError, match="num_train_epochs"):
        resolve_config({"num_train_epochs": "many"})
    with pytest.raises(ValueError, match="mixed_precision"):
        resolve_config({"mixed_precision": "fp8"})


def test_shipped_configs_resolve() -> None:
    configs = sorted((REPO_ROOT / "training" / "configs").glob("*.yaml"))
    assert configs, "no configs shipped"
    for path in configs:
        resolve_config({"config": str(path)})


# --- optimiser groups and freezing -----------------------------------------------------------


def test_parameter_groups_split_head_and_backbone(tokenizer) -> None:
    model = make_tiny_model(tokenizer)
    groups = parameter_groups(model, head_lr=1e-3, backbone_lr=1e-5, weight_decay=0.1)
    by_id = {id(p): g for g in groups for p in g["params"]}
    for name, parameter in model.named_parameters():
        group = by_id[id(parameter)]
        assert group["lr"] == (1e-5 if name.startswith("clip.") else 1e-3), name
        if parameter.ndim < 2:
            assert group["weight_decay"] == 0.0, name
    assert len(by_id) == sum(1 for _ in model.parameters())


def test_freezing_leaves_the_right_parameters_trainable(tokenizer) -> None:
    model = make_tiny_model(tokenizer)
    freeze_parameters(model, freeze_backbone=False, freeze_text_tower=True)
    assert not any(p.requires_grad for p in model.clip.text_model.parameters())
    assert all(p.requires_grad for p in model.clip.vision_model.parameters())
    groups = parameter_groups(model, head_lr=1e-3, backbone_lr=1e-5, weight_decay=0.0)
    trainable = {id(p) for g in groups for p in g["params"]}
    assert not trainable & {id(p) for p in model.clip.text_model.parameters()}

    freeze_parameters(model, freeze_backbone=True, freeze_text_tower=False)
    groups = parameter_groups(model, head_lr=1e-3, backbone_lr=1e-5, weight_decay=0.0)
    assert {id(p) for g in groups for p in g["params"]} == {id(p) for p in model.head.parameters()}


@pytest.mark.parametrize("grading", ["agqg", "softmax"])
def test_head_only_scorer_matches_the_full_forward(tokenizer, grading: str) -> None:
    model = make_tiny_model(tokenizer, grading=grading, score_range=(0.0, 4.5))
    pixel_values = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(pixel_values=pixel_values)
        cached = HeadOnlyScorer(model)(model.get_image_embeds(pixel_values))
    for key in ("score", "grade_probs", "ability", "similarities"):
        torch.testing.assert_close(getattr(cached, key), getattr(full, key), atol=1e-6, rtol=1e-6)


def test_head_only_scorer_trains_only_the_head(tokenizer) -> None:
    model = make_tiny_model(tokenizer)
    freeze_parameters(model, freeze_backbone=True, freeze_text_tower=False)
    embeds = model.get_image_embeds(torch.randn(4, 3, 32, 32)).detach()
    HeadOnlyScorer(model)(embeds).score.sum().backward()
    assert all(p.grad is not None for p in model.head.parameters())
    assert all(p.grad is None for p in model.clip.parameters())


# --- a complete run -----------------------------------------------------------------------------


@pytest.mark.slow
def test_quickstart_command_end_to_end(tmp_path: Path, capfd: pytest.CaptureFixture, monkeypatch) -> None:
    """`python training/quickstart.py` (shrunk by flags it passes on): `accelerate launch` training, a complete
    model folder saved with the native-resolution crop protocol, eval_results.json, plots, TensorBoard logs,
    rotated checkpoints, pipeline scoring, the full-size ranking table, one synthetic notice, consistent timing and
    the one-line change for real data."""
    from training.quickstart import QUICKSTART_VIEW_PROTOCOL, RANKING_FILE, RANKING_LEVELS
    from training.quickstart import main as quickstart

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    code = quickstart(
        [
            "--output_dir",
            str(out),
            *TINY_RUN_FLAGS,
            "--num_train_epochs",
            "2",
            "--checkpointing_steps",
            "2",
            "--checkpoints_total_limit",
            "2",
        ]  # fmt: skip
    )
    assert code == 0
    printed = capfd.readouterr().out
    assert printed.count("SYNTHETIC DEMONSTRATION") == 1  # once, with the results
    assert "--clip openai/clip-vit-base-patch16 --dataset agiqa-3k" in printed
    assert "pipeline('image-quality'" in printed and "SRCC" in printed and "PLCC" in printed
    # The timing names what each figure covers; the training loop's seconds are train.py's own figure.
    total = float(re.search(r"^Wall-clock time: ([0-9]+) s in all$", printed, flags=re.MULTILINE).group(1))
    run = float(re.search(r"^  training run +([0-9]+) s  accelerate launch", printed, flags=re.MULTILINE).group(1))
    scoring = float(re.search(r"^  scoring +([0-9]+) s  the examples", printed, flags=re.MULTILINE).group(1))
    loop = float(re.search(r"^training took ([0-9.]+) s", printed, flags=re.MULTILINE).group(1))
    assert f"of which the training loop {loop:.0f} s" in printed
    assert loop <= run <= total and abs(run + scoring - total) <= 1

    model_dir = out / "model"
    for name in ("config.json", "model.safetensors", "modeling_agqg.py", "configuration_agqg.py", "pipeline_agqg.py",
                 "views_agqg.py", "eval_results.json", "train_config.yaml"):  # fmt: skip
        assert (model_dir / name).is_file(), name
    # The saved model scores images on native-resolution crops of its input size (32 px in this shrunk run).
    protocol = json.loads((model_dir / "config.json").read_text())["view_protocol"]
    assert protocol == {**QUICKSTART_VIEW_PROTOCOL, "crop_size": 32}
    results = json.loads((model_dir / "eval_results.json").read_text())
    assert results["synthetic"] is True and results["base_model"] is None
    assert results["model_name"] == "agqg-tiny-synthetic-quickstart"
    splits = {entry["split"]: entry for entry in results["results"]}
    assert set(splits) == {"validation", "test"}
    assert splits["validation"]["num_images"] == 41
    assert set(splits["test"]["metrics"]) == {"srcc", "krcc", "plcc", "plcc_logistic", "rmse"}

    # The full-size ranking: the held-out test photos, every distortion at levels 0..5, a pooled Spearman each.
    ranking = json.loads((out / RANKING_FILE).read_text())
    assert ranking["view_protocol"] == protocol
    import datasets

    held_out = datasets.load_from_disk(str(out / "synthetic_data"))
    assert ranking["photos"] == sorted(set(held_out["test"]["source"])) and len(ranking["photos"]) == 2
    assert set(ranking["photos"]).isdisjoint(held_out["train"]["source"])
    assert set(ranking["spearman"]) == set(RANKING_LEVELS)
    assert all(-1.0 <= rho <= 1.0 for rho in ranking["spearman"].values())
    assert all(len(ranking["mean"][kind]) == len(RANKING_LEVELS[kind]) + 1 for kind in RANKING_LEVELS)
    assert "Held-out photos at full size" in printed and "Pooled Spearman of score and level 0-5" in printed
    for kind in RANKING_LEVELS:
        assert re.search(rf"^  {kind} +5 ", printed, flags=re.MULTILINE), kind

    # Rotation kept the newest two step checkpoints (96 images / 16 = 6 steps per epoch, 12 steps in all).
    checkpoints = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert checkpoints == ["step_10", "step_12"]
    assert (out / "plots" / "validation_epoch000.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "plots" / "final_test.png").is_file()
    assert list((out / "logs").rglob("events.out.tfevents.*")), "no TensorBoard event file"
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1]
    resolved = resolve_config({"config": str(out / "train_config.yaml")})
    assert resolved.num_train_epochs == 2 and resolved.hflip is True and resolved.freeze_text_tower is True
    info = json.loads((out / "run_info.json").read_text())
    assert info["num_processes"] == 1

    # The six example images were scored by path through the pipeline; their PNG files are there.
    samples = sorted((out / "samples").glob("*.png"))
    assert len(samples) == 6
    from transformers import pipeline

    scorer = pipeline("image-quality", model=str(model_dir), trust_remote_code=True)
    scores = [scorer(str(path))["score"] for path in samples[:2]]
    assert all(1.0 <= s <= 5.0 for s in scores)


@pytest.mark.parametrize(("split", "seed"), [(None, 0), ("1", 1), ("3", 3)])
def test_quickstart_examples_come_from_the_runs_own_held_out_photos(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, split: str | None, seed: int
) -> None:
    """The scored examples and the full-size ranking use the test split built with the training run's arguments
    (synthetic split n = data seed n), so the cached dataset is reused and `--split 1` does not score photos that
    split trained on."""
    import yaml

    import training.synthetic
    from training.quickstart import held_out_test_split

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    resolved = {"split": split, "synthetic_image_size": 16, "synthetic_crops_per_source": 4}
    (model_dir / "train_config.yaml").write_text(yaml.safe_dump(resolved), encoding="utf-8")
    seen: dict[str, object] = {}

    class Stop(Exception):
        pass

    def fake_build(out_dir: Path, **kwargs: object) -> None:
        seen.update(kwargs, out_dir=out_dir)
        raise Stop

    monkeypatch.setattr(training.synthetic, "build_synthetic_dataset", fake_build)
    with pytest.raises(Stop):
        held_out_test_split(model_dir, tmp_path)
    assert seen["seed"] == seed and seen["image_size"] == 16 and seen["crops_per_source"] == 4
    assert seen["out_dir"] == tmp_path / "synthetic_data"


@pytest.mark.slow
def test_frozen_backbone_trains_head_from_cached_embeddings(tmp_path: Path, synthetic_cache: Path, tokenizer) -> None:
    from safetensors.torch import load_file

    from training.common import build_model

    out = tmp_path / "frozen"
    run_training(
        [
            *TINY_RUN_FLAGS,
            "--data_root",
            str(synthetic_cache),
            "--output_dir",
            str(out),
            "--num_train_epochs",
            "2",
            "--freeze_backbone",
            "true",
            "--learning_rate",
            "1e-2",
            "--report_to",
            "none",
            "--seed",
            "5",
        ],  # fmt: skip
        tmp_path,
    )
    info = json.loads((out / "run_info.json").read_text())
    assert info["cached_image_embeds"] is True
    trained = load_file(str(out / "model" / "model.safetensors"))
    initial_config = TrainConfig(seed=5, tiny_image_size=32, tiny_hidden_size=32, tiny_projection_dim=32)
    initial = build_model(initial_config, (1.0, 5.0)).state_dict()
    backbone_keys = [k for k in trained if k.startswith("clip.")]
    head_keys = [k for k in trained if k.startswith("head.")]
    assert backbone_keys and head_keys
    for key in backbone_keys:
        torch.testing.assert_close(trained[key], initial[key], atol=0, rtol=0, msg=f"{key} changed")
    assert any(not torch.equal(trained[k], initial[k]) for k in head_keys), "the head did not train"


def test_flips_are_a_function_of_seed_epoch_and_row(tokenizer) -> None:
    from training.common import ImageBatchCollator

    collator = ImageBatchCollator(make_tiny_model(tokenizer).image_processor, hflip=True, seed=3)
    collator.set_epoch(1)
    first = collator.flips(range(200))
    assert torch.equal(collator.flips(range(200)), first)  # no hidden state: a resumed run flips alike
    assert torch.equal(collator.flips([5, 7]), first[[5, 7]])  # independent of batch composition
    assert 60 < int(first.sum()) < 140
    collator.set_epoch(2)
    assert not torch.equal(collator.flips(range(200)), first)


def test_rotations_are_a_function_of_seed_epoch_and_row_and_turn_the_pixels(tokenizer) -> None:
    import numpy as np
    from PIL import Image

    from training.common import ImageBatchCollator

    processor = make_tiny_model(tokenizer).image_processor
    collator = ImageBatchCollator(processor, hflip=True, rot90=True, seed=3)
    collator.set_epoch(1)
    turns = collator.rotations(range(400))
    assert torch.equal(collator.rotations(range(400)), turns) and torch.equal(collator.rotations([9]), turns[[9]])
    assert set(turns.tolist()) == {0, 1, 2, 3} and all(60 < int((turns == k).sum()) < 140 for k in range(4))
    flips = collator.flips(range(400))
    orientations = {(bool(f), int(k)) for f, k in zip(flips, turns, strict=True)}
    assert len(orientations) == 8  # flips and turns are drawn independently: all 8 orientations occur

    # The batch holds each row's processed image flipped (if drawn) and then turned k quarter turns.
    size = processor.crop_size["height"]
    pixels = np.random.default_rng(0).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    rows = [{"image": Image.fromarray(pixels), "mos": 3.0, "row_index": i} for i in range(8)]
    batch = collator(rows)["pixel_values"]
    plain = ImageBatchCollator(processor)(rows[:1])["pixel_values"][0]
    for i in range(8):
        expected = plain.flip(-1) if flips[i] else plain
        assert torch.equal(batch[i], torch.rot90(expected, int(turns[i]), dims=(-2, -1)))
    with pytest.raises(ValueError, match="row_index"):
        ImageBatchCollator(processor, rot90=True)([{"image": Image.fromarray(pixels), "mos": 3.0}])


@pytest.mark.slow
def test_training_on_real_format_agiqa3k_files(tmp_path: Path, shared_data: Path) -> None:
    """The official AGIQA-3K data.csv and real 512x512 JPEGs (the fixture has 8 of the 2982 images; the rest
    are skipped and counted), a random image split, the MOS scale from the loader."""
    out = tmp_path / "agiqa3k"
    result = run_training(
        [
            *TINY_RUN_FLAGS,
            "--dataset",
            "agiqa-3k",
            "--data_root",
            str(shared_data / "AGIQA-3K"),
            "--protocol",
            "random",
            "--split",
            "1",
            "--data_on_bad_rows",
            "skip",
            "--num_train_epochs",
            "2",
            "--report_to",
            "none",
            "--per_device_train_batch_size",
            "2",
            "--output_dir",
            str(out),
        ],  # fmt: skip
        tmp_path,
    )
    assert "SYNTHETIC" not in result.stdout
    results = json.loads((out / "model" / "eval_results.json").read_text())
    assert results["synthetic"] is False and results["results"][0]["dataset"] == "agiqa-3k"
    validation = results["results"][0]
    assert validation["split"] == "split 1 validation" and validation["num_images"] == 2
    # Two images cannot give a meaningful correlation: reported as null, and the run still saves a model.
    assert all(value is None for value in validation["metrics"].values())
    info = json.loads((out / "run_info.json").read_text())
    assert info["train_images"] + info["validation_images"] == 8
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["score_range"][0] == pytest.approx(0.0) and 4.4 < config["score_range"][1] < 5.1
