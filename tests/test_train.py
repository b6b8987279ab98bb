"""The training entry point: options (HfArgumentParser, YAML + flags, host files), what trains, the collators'
pure-function randomness, the data checks before training, progress bars, and complete tiny runs of `train()`."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, make_tiny_model
from PIL import Image

from training.modeling import (
    CachedEmbeddingScorer,
    build_model,
    image_embedding_trains,
    parameter_groups,
    set_train_mode,
    set_trainable,
)
from training.options import RunOptions, build_parser, option_names, save_options
from training.train import parse_args, train

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
QUIET_FLAGS = ["--report_to", "none", "--plots", "false", "--disable_tqdm", "true"]


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
    """`training/train.py ARGS` in a subprocess (the way the README runs it); raises with its output on failure."""
    command = [*(launcher or [sys.executable]), str(TRAIN_SCRIPT), *args]
    result = subprocess.run(
        command, cwd=tmp_path, env=subprocess_env(tmp_path / "hf_home"), capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result


def train_tiny(out: Path, data_root: Path, *extra: str):
    """`train()` in this process on the tiny settings (no tracking, plots or progress bars)."""
    return train(parse_args([*TINY_RUN_FLAGS, *QUIET_FLAGS, "--data_root", str(data_root), "--output_dir", str(out),
                             *extra]))  # fmt: skip


# --- options -------------------------------------------------------------------------------------


def test_yaml_then_flags_override_and_resolved_types(tmp_path: Path) -> None:
    config_file = tmp_path / "run.yaml"
    config_file.write_text(
        "learning_rate: 5e-3\nnum_train_epochs: 3\nloss_weights: {l1: 1.0, fidelity: 0.5}\nhflip: true\n"
        "grade_names: [awful, meh, fine]\nsplit: 2\n",
        encoding="utf-8",
    )
    options = parse_args(
        ["--config", str(config_file), "--num_train_epochs", "7", "--loss_weights", "mse=2,grm_nll=0.1", "--hflip",
         "no", "--score_range", "0", "4.5"]
    )  # fmt: skip
    assert options.training.learning_rate == 0.005  # from YAML ("5e-3" is a string to YAML)
    assert options.training.num_train_epochs == 7  # flag beats YAML
    assert options.training.loss_weights == {"mse": 2.0, "grm_nll": 0.1}
    assert options.data.hflip is False and options.data.split == "2"
    assert options.model.grade_names == ["awful", "meh", "fine"]
    assert options.model.score_range == [0.0, 4.5]
    assert options.training.per_device_train_batch_size == 32  # default kept
    assert parse_args(["--grade_names", "a,b,c"]).model.grade_names == ["a", "b", "c"]


def test_every_option_is_a_flag_with_help() -> None:
    parser = build_parser()
    actions = {action.dest: action for action in parser._actions}
    for name in option_names():
        assert name in actions, name
    assert "--host" in parser.format_help() and "--view_protocol" in parser.format_help()


def test_unknown_yaml_keys_and_bad_values_name_their_source(tmp_path: Path, capsys) -> None:
    config_file = tmp_path / "bad.yaml"
    config_file.write_text("learning_rat: 0.1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.yaml.*learning_rat"):
        parse_args(["--config", str(config_file)])
    config_file.write_text("num_train_epochs: many\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.yaml.*num_train_epochs"):
        parse_args(["--config", str(config_file)])
    config_file.write_text("loss_weights: {huber: 1}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.yaml.*huber"):
        parse_args(["--config", str(config_file)])
    with pytest.raises(SystemExit):
        parse_args(["--mixed_precision", "fp8"])
    assert "fp8" in capsys.readouterr().err
    with pytest.raises(ValueError, match="view scheme 'tiles'"):
        parse_args(["--view_protocol", "tiles"])
    with pytest.raises(ValueError, match="push_to_hub needs hub_model_id"):
        parse_args(["--push_to_hub", "true"])


def test_host_then_config_then_flags(tmp_path: Path) -> None:
    config_file = tmp_path / "run.yaml"
    config_file.write_text("host: coop\nlearning_rate: 1.0e-3\nnum_context_tokens: 3\n", encoding="utf-8")
    options = parse_args(["--config", str(config_file), "--num_context_tokens", "5"])
    assert options.model.prompt_learning == "coop" and options.training.freeze_backbone  # from the host file
    assert options.training.learning_rate == 1e-3  # the config beats the host
    assert options.model.num_context_tokens == 5  # the flag beats both
    assert parse_args(["--config", str(config_file), "--host", "liqe"]).model.prompt_learning is None
    assert parse_args(["--host", "ipce"]).model.view_protocol["scheme"] == "ipce"


def test_shipped_configs_resolve_and_resolved_options_round_trip(tmp_path: Path) -> None:
    configs = sorted((REPO_ROOT / "training" / "configs").glob("*.yaml"))
    assert configs, "no configs shipped"
    for path in configs:
        options = parse_args(["--config", str(path)])
        saved = save_options(options, tmp_path / f"{path.stem}.yaml")
        assert parse_args(["--config", str(saved)]) == options, path.name
    hosted = parse_args(["--host", "maple", "--grading", "softmax"])
    assert parse_args(["--config", str(save_options(hosted, tmp_path / "maple.yaml"))]) == hosted


# --- what trains ---------------------------------------------------------------------------------


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
    set_trainable(model, freeze_backbone=False, freeze_text_tower=True)
    assert not any(p.requires_grad for p in model.clip.text_model.parameters())
    assert all(p.requires_grad for p in model.clip.vision_model.parameters())
    assert image_embedding_trains(model)
    set_trainable(model, freeze_backbone=True, freeze_text_tower=False)
    groups = parameter_groups(model, head_lr=1e-3, backbone_lr=1e-5, weight_decay=0.0)
    assert {id(p) for g in groups for p in g["params"]} == {id(p) for p in model.head.parameters()}
    assert not image_embedding_trains(model)
    maple = make_tiny_model(tokenizer, prompt_learning="maple", prompt_depth=2)
    set_trainable(maple, freeze_backbone=True, freeze_text_tower=False)
    assert image_embedding_trains(maple), "MaPLe's vision prompts shape the image embedding"


@pytest.mark.parametrize("backbone", ["clip", "siglip", "align"])
def test_tiny_options_shape_the_tiny_backbone(backbone: str) -> None:
    """`--tiny_*` reach the tiny model of every family; the joint embedding size is `--tiny_projection_dim` where
    the family has a projection (CLIP's, ALIGN's image tower's last channels), the width for SigLIP."""
    options = parse_args(["--tiny_backbone", backbone, "--tiny_hidden_size", "48", "--tiny_projection_dim", "40"])
    model = build_model(options.model, (1.0, 5.0), seed=0)
    assert model.config.backbone_config.model_type == backbone
    assert model.config.backbone_config.text_config.hidden_size == 48
    assert model.grade_text_embeds.shape[1] == (48 if backbone == "siglip" else 40)
    with torch.no_grad():
        assert model.get_image_embeds(torch.rand(1, 3, 64, 64)).shape == (1, model.grade_text_embeds.shape[1])


def test_train_mode_keeps_frozen_batchnorm_statistics(tokenizer) -> None:
    """ALIGN's EfficientNet tower: frozen, its BatchNorm running statistics stay as they are through training-mode
    steps (and the frozen tower runs in eval mode); trainable, they move and the tower is in training mode."""
    model = make_tiny_model(tokenizer, backbone="align")
    norms = [m for m in model.clip.vision_model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms
    pixels = torch.rand(4, 3, 32, 32)
    for freeze_backbone in (True, False):
        set_trainable(model, freeze_backbone=freeze_backbone, freeze_text_tower=True)
        set_train_mode(model)
        assert model.training and model.head.training
        assert model.clip.text_model.training is False  # frozen text tower: no dropout
        before = [m.running_mean.clone() for m in norms]
        model.score_pixels(pixels, labels=torch.full((4,), 3.0)).loss.backward()
        moved = [not torch.equal(m.running_mean, b) for m, b in zip(norms, before, strict=True)]
        assert model.clip.vision_model.training is not freeze_backbone
        assert all(moved) if not freeze_backbone else not any(moved), freeze_backbone


@pytest.mark.parametrize("grading", ["agqg", "softmax"])
def test_cached_embedding_scorer_matches_the_full_forward(tokenizer, grading: str) -> None:
    model = make_tiny_model(tokenizer, grading=grading, score_range=(0.0, 4.5))
    pixel_values = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(pixel_values=pixel_values, num_views=2, view_aggregation="mean")
        cached = CachedEmbeddingScorer(model)(model.get_image_embeds(pixel_values), num_views=2)
    for key in ("score", "grade_probs", "ability", "similarities"):
        torch.testing.assert_close(getattr(cached, key), getattr(full, key), atol=1e-6, rtol=1e-6)


# --- collation: views and augmentation are pure functions of (seed, epoch, row) ----------------------


def _square_rows(count: int, size: int = 32, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {"image": Image.fromarray(rng.integers(0, 256, (size, size + 8 * (i % 2), 3), dtype=np.uint8)), "mos": 3.0,
         "row_index": i}
        for i in range(count)
    ]  # fmt: skip


def test_flips_and_rotations_are_functions_of_seed_epoch_and_row(tokenizer) -> None:
    from training.collate import ViewCollator

    model = make_tiny_model(tokenizer)
    collator = ViewCollator(model, model.view_protocol(), train=True, hflip=True, rot90=True, seed=3)
    collator.set_epoch(1)
    flips, turns = collator.flips(range(400)), collator.rotations(range(400))
    assert torch.equal(collator.flips(range(400)), flips) and torch.equal(collator.flips([5, 7]), flips[[5, 7]])
    assert torch.equal(collator.rotations([9]), turns[[9]]) and 120 < int(flips.sum()) < 280
    assert len({(bool(f), int(k)) for f, k in zip(flips, turns, strict=True)}) == 8  # all 8 orientations occur
    collator.set_epoch(2)
    assert not torch.equal(collator.flips(range(400)), flips)

    # The batch holds each row's resized view flipped (if drawn) and then turned k quarter turns.
    rows = _square_rows(1) * 8
    rows = [{**row, "row_index": i} for i, row in enumerate(rows)]
    collator.set_epoch(1)
    batch = collator(rows)["pixel_values"]
    plain = ViewCollator(model, model.view_protocol())(rows[:1])["pixel_values"][0]
    for i in range(8):
        expected = plain.flip(-1) if flips[i] else plain
        assert torch.equal(batch[i], torch.rot90(expected, int(turns[i]), dims=(-2, -1)))
    with pytest.raises(ValueError, match="row_index"):
        collator([{"image": rows[0]["image"], "mos": 3.0}])


@pytest.mark.parametrize(
    "protocol",
    [
        "crops:3",
        {
            "scheme": "ipce",
            "num_crops": 3,
            "train_crops": 2,
            "short_side": 40,
            "stride": 4,
            "large_stride": 8,
            "large_side": 80,
        },
    ],
)
def test_training_views_come_from_make_views_seeded_per_seed_epoch_and_row(tokenizer, protocol) -> None:
    from modeling_agqg.views_agqg import make_views
    from training.collate import ViewCollator

    model = make_tiny_model(tokenizer, view_protocol=protocol)
    views = model.view_protocol()
    collator = ViewCollator(model, views, train=True, seed=5)
    rows = _square_rows(4, size=48)
    collator.set_epoch(2)
    batch = collator(rows)["pixel_values"]
    per_image = views.num_views(train=True)
    assert batch.shape == (4 * per_image, 3, 32, 32)
    expected = make_views(rows[3]["image"], views, model.pixel_spec(), train=True, generator=collator.view_generator(3))
    torch.testing.assert_close(batch[3 * per_image :], expected, atol=0, rtol=0)
    assert torch.equal(collator(rows[2:])["pixel_values"], batch[2 * per_image :]), "independent of the batch"
    collator.set_epoch(3)
    assert not torch.equal(collator(rows)["pixel_values"], batch), "another epoch draws other views"
    test_batch = ViewCollator(model, views, train=False)(rows)["pixel_values"]
    assert test_batch.shape == (4 * views.num_views(), 3, 32, 32)


# --- data: checked before training, named by file and row ---------------------------------------------


AGIQA_HEADER = "name,prompt,adj1,adj2,style,mos_quality,std_quality,mos_align,std_align\n"


def agiqa_folder(root: Path, mos: list[float], splits: dict[str, list[int]]) -> Path:
    """A small AGIQA-3K folder in the official layout: `data.csv`, 24x24 PNGs and `splits/1/<part>.csv`."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    lines = [AGIQA_HEADER]
    for index, value in enumerate(mos):
        name = f"img_{index:02d}.png"
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(root / "images" / name)
        lines.append(f"{name},a photo number {index % 3},,,,{value},0.3,3.0,0.3\n")
    (root / "data.csv").write_text("".join(lines), encoding="utf-8")
    for part, indices in splits.items():
        folder = root / "splits" / "1"
        folder.mkdir(parents=True, exist_ok=True)
        rows = "".join(f"img_{i:02d}.png,{mos[i]}\n" for i in indices)
        (folder / f"{part}.csv").write_text("name,mos\n" + rows, encoding="utf-8")
    return root


def _agiqa_options(root: Path, tmp_path: Path, *extra: str) -> RunOptions:
    return parse_args([*TINY_RUN_FLAGS, *QUIET_FLAGS, "--dataset", "agiqa-3k", "--data_root", str(root), "--split", "1",
                       "--output_dir", str(tmp_path / "run"), *extra])  # fmt: skip


def test_empty_parts_fail_before_training_and_name_the_split_file(tmp_path: Path) -> None:
    mos = [1.0 + 0.15 * i for i in range(20)]
    root = agiqa_folder(tmp_path / "empty_val", mos, {"train": list(range(14)), "val": []})
    with pytest.raises(ValueError, match=r"validation part is empty \(split file .*splits/1/val\.csv\)"):
        train(_agiqa_options(root, tmp_path))
    assert not (tmp_path / "run" / "best_model").exists(), "nothing may train before the data is checked"
    root = agiqa_folder(tmp_path / "empty_train", mos, {"train": [], "val": list(range(5))})
    with pytest.raises(ValueError, match=r"train part is empty \(split file .*splits/1/train\.csv\)"):
        train(_agiqa_options(root, tmp_path))


@pytest.mark.parametrize("bad_value", [-3.5, 1e9])
def test_mos_far_outside_the_scale_names_the_file_and_rows(tmp_path: Path, bad_value: float) -> None:
    from training.run_data import load_run_data

    mos = [1.0 + 0.15 * i for i in range(20)]
    mos[3] = bad_value
    root = agiqa_folder(tmp_path / "agiqa", mos, {"train": list(range(14)), "val": list(range(14, 20))})
    with pytest.raises(ValueError, match=rf"data\.csv: 1 train row\(s\) with a MOS far outside the scale 0-5 .*"
                                         rf"row 5 \('img_03\.png'\) MOS {re.escape(f'{bad_value:g}')}"):  # fmt: skip
        train(_agiqa_options(root, tmp_path))
    data = load_run_data(_agiqa_options(root, tmp_path, "--data_on_bad_rows", "skip").data)
    assert len(data.train) == 13 and any("skipped" in note for note in data.notes)


def test_a_split_without_validation_validates_on_test_and_says_so(tmp_path: Path, capfd) -> None:
    mos = [1.0 + 0.15 * i for i in range(20)]
    root = agiqa_folder(tmp_path / "agiqa", mos, {"train": list(range(14)), "test": list(range(14, 20))})
    result = train(_agiqa_options(root, tmp_path, "--num_train_epochs", "1"))
    assert "has no validation part: its test part (split file" in capfd.readouterr().out
    assert [e["split"] for e in result.eval_results["results"]] == ["split 1 test"]
    assert "also selected the model" in result.eval_results["results"][0]["note"]
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert info["validation_images"] == 6 and info["test_images"] == 0 and info["data_notes"]


def test_splits_root_and_metadata_file_reach_the_loader(tmp_path: Path) -> None:
    from training.run_data import load_run_data

    mos = [1.0 + 0.15 * i for i in range(20)]
    root = agiqa_folder(tmp_path / "agiqa", mos, {"train": list(range(14)), "val": list(range(14, 20))})
    elsewhere = tmp_path / "my_splits"
    (root / "splits").rename(elsewhere)
    (root / "data.csv").rename(root / "quality.csv")
    options = _agiqa_options(root, tmp_path, "--splits_root", str(elsewhere), "--metadata_file", "quality.csv")
    data = load_run_data(options.data)
    assert (len(data.train), len(data.validation)) == (14, 6)


def test_progress_bars_show_no_nan_and_can_be_turned_off(tmp_path: Path, synthetic_cache: Path, capfd) -> None:
    flags = [*TINY_RUN_FLAGS, "--report_to", "none", "--plots", "false", "--data_root", str(synthetic_cache)]
    flags += ["--max_train_samples", "32", "--max_eval_samples", "8", "--num_train_epochs", "2"]
    train(parse_args([*flags, "--output_dir", str(tmp_path / "bars")]))
    shown = capfd.readouterr().err
    assert "training:" in shown and "loss=" in shown and "val_srcc=" in shown
    assert "nan" not in shown.lower()
    train(parse_args([*flags, "--output_dir", str(tmp_path / "quiet"), "--disable_tqdm", "true"]))
    assert "training:" not in capfd.readouterr().err


# --- complete runs --------------------------------------------------------------------------------


@pytest.mark.slow
def test_quickstart_prints_undefined_metrics_as_n_a() -> None:
    """A tiny run can predict one score for every image: its rank metrics are None in eval_results.json."""
    from training.quickstart import format_evaluation

    metrics = {"srcc": None, "krcc": None, "plcc": None, "plcc_logistic": None, "rmse": 0.7336}
    text = format_evaluation({"results": [{"split": "test", "num_images": 41, "metrics": metrics}]})
    assert text == "  test          41 images   SRCC   n/a   PLCC   n/a   KRCC   n/a   RMSE 0.734"


def test_quickstart_command_end_to_end(tmp_path: Path, capfd: pytest.CaptureFixture, monkeypatch) -> None:
    """`python training/quickstart.py` (shrunk by flags it passes on): `accelerate launch` training, a complete
    model folder saved with the native-resolution crop protocol, eval_results.json, plots, TensorBoard logs,
    rotated checkpoints, pipeline scoring, the full-size ranking table, one synthetic notice, consistent timing and
    the one-line change for real data."""
    import yaml

    from modeling_agqg.views_agqg import ViewProtocol
    from training.options import CONFIG_DIR
    from training.quickstart import RANKING_FILE, RANKING_LEVELS
    from training.quickstart import main as quickstart

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    code = quickstart(
        ["--output_dir", str(out), *TINY_RUN_FLAGS, "--num_train_epochs", "2", "--checkpointing_steps", "2",
         "--checkpoints_total_limit", "2"]
    )  # fmt: skip
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
    # train.py saved the protocol quickstart.yaml trains and evaluates with: native-resolution crops of the
    # model's input size (crop_size left open: 32 px in this shrunk run).
    protocol = ViewProtocol.from_dict(json.loads((model_dir / "config.json").read_text())["view_protocol"])
    configured = yaml.safe_load((CONFIG_DIR / "quickstart.yaml").read_text())["view_protocol"]
    assert protocol == ViewProtocol.parse(configured)
    assert (protocol.scheme, protocol.num_crops, protocol.train_crops, protocol.crop_size) == ("crops", 64, 1, None)
    results = json.loads((model_dir / "eval_results.json").read_text())
    assert results["synthetic"] is True and results["base_model"] is None
    assert results["model_name"] == "agqg-tiny-synthetic-quickstart"
    splits = {entry["split"]: entry for entry in results["results"]}
    assert set(splits) == {"validation", "test"}
    assert splits["validation"]["num_images"] == 41
    # The synthetic data has the simulated raters' mos_std, so the spread metric is reported too.
    assert set(splits["test"]["metrics"]) == {"srcc", "krcc", "plcc", "plcc_logistic", "rmse", "spread_srcc"}

    # The full-size ranking: the held-out test photos, every distortion at levels 0..5, a pooled Spearman each.
    ranking = json.loads((out / RANKING_FILE).read_text())
    assert ranking["view_protocol"] == protocol.with_crop_size(32).to_dict()
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
    resolved = parse_args(["--config", str(out / "train_config.yaml")])
    assert resolved.training.num_train_epochs == 2 and resolved.data.hflip and resolved.training.freeze_text_tower
    run_info = json.loads((out / "run_info.json").read_text())
    assert run_info["num_processes"] == 1 and run_info["view_protocol"] == protocol.with_crop_size(32).to_dict()
    samples = sorted((out / "samples").glob("*.png"))
    assert len(samples) == 6


def test_pooled_spearman_ranks_levels_across_all_photos() -> None:
    from training.quickstart import pooled_spearman

    assert pooled_spearman([[5, 4, 3, 2, 1, 0]]) == pytest.approx(-1.0)
    # Two photos, every score at a level above every score at the next: the most negative value two photos allow
    # (the levels are tied across photos, the scores are not).
    best_two = pooled_spearman([[5, 4, 3, 2, 1, 0], [4.5, 3.5, 2.5, 1.5, 0.5, -0.5]])
    assert best_two == pytest.approx(-0.98945, abs=1e-5)
    # Each photo ranked perfectly, but one photo scored far above the other: less than perfect.
    offset = pooled_spearman([[15, 14, 13, 12, 11, 10], [5, 4, 3, 2, 1, 0]])
    assert best_two < offset < -0.3
    assert pooled_spearman([[0, 1, 2, 3, 4, 5], [0.5, 1.5, 2.5, 3.5, 4.5, 5.5]]) == pytest.approx(-best_two)  # rising
    # No ties: 1 - 6 sum d^2 / (n (n^2 - 1)) over the n = 6 pooled (level, score) pairs.
    scores = [[3.0, 2.0, 2.5], [1.9, 1.0, 0.5]]
    level_ranks = np.array([1.5, 3.5, 5.5, 1.5, 3.5, 5.5])  # levels 0, 1, 2 twice: tied ranks averaged
    score_ranks = np.array([6, 4, 5, 3, 2, 1])
    assert pooled_spearman(scores) == pytest.approx(np.corrcoef(level_ranks, score_ranks)[0, 1])
    with pytest.raises(ValueError, match="at least 2 levels"):
        pooled_spearman([[1.0], [2.0]])


@pytest.mark.parametrize(("num_photos", "best"), [(1, "-1.00"), (2, "-0.98"), (3, "-0.97")])
def test_ranking_table_states_the_best_value_for_its_number_of_photos(num_photos: int, best: str) -> None:
    from training.quickstart import format_ranking, pooled_spearman

    photos = [f"photo{p}" for p in range(num_photos)]
    rows = {name: [3.0 - 0.1 * level - 0.01 * p for level in range(4)] for p, name in enumerate(photos)}
    ranking = {
        "photos": photos,
        "levels": {"blur": [0.0, 1.0, 2.0, 4.0]},
        "scores": {"blur": rows},
        "mean": {"blur": np.mean(list(rows.values()), axis=0).tolist()},
        "spearman": {"blur": pooled_spearman(list(rows.values()))},
    }
    legend = format_ranking(ranking, "crops").splitlines()[-1]  # 4 levels: the best value is not -0.99
    assert f"level 0-3, all photos ({best} = every level ranked): blur {best}" in legend


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
    assert Path(str(seen["out_dir"])) == tmp_path / "synthetic_data"


def test_frozen_backbone_trains_the_head_from_embeddings_computed_once(tmp_path: Path, synthetic_cache: Path) -> None:
    from safetensors.torch import load_file

    from training.modeling import build_model

    out = tmp_path / "frozen"
    options = parse_args([*TINY_RUN_FLAGS, "--seed", "5"])
    train_tiny(out, synthetic_cache, "--num_train_epochs", "2", "--freeze_backbone", "true", "--learning_rate", "1e-2",
               "--seed", "5")  # fmt: skip
    assert json.loads((out / "run_info.json").read_text())["cached_image_embeds"] is True
    trained = load_file(str(out / "model" / "model.safetensors"))
    initial = build_model(options.model, (1.0, 5.0), seed=5).state_dict()
    backbone_keys = [k for k in trained if k.startswith("clip.")]
    head_keys = [k for k in trained if k.startswith("head.")]
    assert backbone_keys and head_keys
    for key in backbone_keys:
        torch.testing.assert_close(trained[key], initial[key], atol=0, rtol=0, msg=f"{key} changed")
    assert any(not torch.equal(trained[k], initial[k]) for k in head_keys), "the head did not train"


def test_a_run_writes_its_view_protocol_into_the_model_and_evaluates_with_it(
    tmp_path: Path, synthetic_cache: Path
) -> None:
    """`--view_protocol crops:3`: the model folder's config records it, and the final numbers are the evaluation
    of the saved model with 3 crops + the resized view (the predictions CSV equals a fresh evaluation)."""
    from modeling_agqg import AGQGForImageQualityAssessment
    from training.evaluation import evaluate_dataset
    from training.run_data import load_run_data

    out = tmp_path / "crops"
    options_flags = ["--num_train_epochs", "1", "--max_train_samples", "32", "--max_eval_samples", "12"]
    result = train_tiny(out, synthetic_cache, *options_flags, "--view_protocol", "crops:3")
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["view_protocol"] == {"scheme": "crops", "num_crops": 3, "train_crops": 1, "crop_size": None,
                                       "include_resized": True}  # fmt: skip
    model = AGQGForImageQualityAssessment.from_pretrained(out / "model")
    data = load_run_data(parse_args(["--config", str(out / "train_config.yaml")]).data)
    fresh = evaluate_dataset(model, data.test, batch_size=5)
    np.testing.assert_allclose(result.predictions["test"].scores, fresh.scores, atol=1e-5)
    with (out / "predictions_test.csv").open() as handle:
        saved = [float(row["prediction"]) for row in csv.DictReader(handle)]
    np.testing.assert_allclose(saved, fresh.scores, atol=1e-5)


@pytest.mark.slow
def test_training_on_real_format_agiqa3k_files(tmp_path: Path, shared_data: Path) -> None:
    """The official AGIQA-3K data.csv and real 512x512 JPEGs (the fixture has 8 of the 2982 images; the rest
    are skipped and counted), a random image split, the MOS scale from the loader."""
    out = tmp_path / "agiqa3k"
    result = train_tiny(
        out, shared_data / "AGIQA-3K", "--dataset", "agiqa-3k", "--protocol", "random", "--split", "1",
        "--data_on_bad_rows", "skip", "--num_train_epochs", "2", "--per_device_train_batch_size", "2",
    )  # fmt: skip
    results = result.eval_results
    assert results["synthetic"] is False and results["results"][0]["dataset"] == "agiqa-3k"
    validation = results["results"][0]
    assert validation["split"] == "split 1 validation" and validation["num_images"] == 2
    # Two images cannot give a meaningful correlation: reported as null, and the run still saves a model.
    assert all(value is None for value in validation["metrics"].values())
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["score_range"][0] == pytest.approx(0.0) and 4.4 < config["score_range"][1] < 5.1


def test_synthetic_test_sources_fix_the_test_photos(tmp_path: Path) -> None:
    """`--synthetic_test_sources` (the ablation: the photos held out of pretraining) reaches the dataset builder;
    each split is still its own draw (crops, distortion noise, ratings) of those photos."""
    from training.run_data import load_run_data

    flags = ["--synthetic_image_size", "16", "--synthetic_crops_per_source", "1"]
    flags += ["--synthetic_test_sources", "astronaut", "chelsea", "--data_root", str(tmp_path / "data")]
    test_mos = {}
    for split in ("1", "2"):
        data = load_run_data(parse_args([*flags, "--split", split]).data)
        assert set(data.test["source"]) == {"astronaut", "chelsea"}
        assert not {"astronaut", "chelsea"} & (set(data.train["source"]) | set(data.validation["source"]))
        test_mos[split] = list(data.test["mos"])
    assert test_mos["1"] != test_mos["2"]


def test_synthetic_crop_geometry_options_reach_the_dataset() -> None:
    """train.py's synthetic_* options build the dataset they name (here: one native crop per photo, every training
    crop in all 20 conditions), and leaving them unset keeps the dataset's defaults."""
    from training.options import DataOptions
    from training.run_data import load_splits

    common = {"synthetic_image_size": 16, "synthetic_crops_per_source": 1, "synthetic_crop_scales": ["native"]}
    every_condition = load_splits(
        DataOptions(**common, synthetic_random_native_crops=0, synthetic_train_conditions=0, synthetic_context=0)
    )
    photos = len(set(every_condition["train"]["source"]))
    assert len(every_condition["train"]) == photos * 21  # 1 crop x (pristine + 5 distortions x 4 levels)
    assert set(every_condition["train"]["crop"]) == {0}
    defaults = load_splits(DataOptions(**common))  # 4 conditions per training crop, 21/5 times the crops
    assert len(defaults["train"]) != len(every_condition["train"])


def test_train_leaves_the_libraries_progress_bars_as_it_found_them(tmp_path: Path, synthetic_cache: Path) -> None:
    """`disable_tqdm: true` turns the libraries' bars off for the run only: a `train()` called from Python (a
    notebook, the ablation) does not silence transformers and datasets for the rest of the process."""
    import datasets
    from transformers.utils import logging as transformers_logging

    from training.train import parse_args, train

    assert transformers_logging.is_progress_bar_enabled() and datasets.is_progress_bar_enabled()
    flags = [*TINY_RUN_FLAGS, *QUIET_FLAGS, "--data_root", str(synthetic_cache), "--output_dir", str(tmp_path / "o")]
    train(parse_args([*flags, "--max_train_samples", "16", "--max_eval_samples", "8", "--num_train_epochs", "1"]))
    assert transformers_logging.is_progress_bar_enabled() and datasets.is_progress_bar_enabled()
