"""Host frameworks: the host files (training/configs/hosts), the model's host options (prompt sets, multitask
prompts, learnable prompts), and every host x grading trained by the one loop (`training.train.train`), saved, and
loaded in a fresh process through `trust_remote_code` and `pipeline("image-quality")`."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import BACKBONES
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from modeling_agqg import AGQGConfig
from modeling_agqg.prompt_learning_agqg import aggregate_variant_similarities
from training.collate import ViewCollator, generation_prompt
from training.hosts import HOST_NAMES, load_host
from training.modeling import build_model
from training.train import parse_args

TINY_MODEL_FLAGS = ["--tiny_image_size", "32", "--tiny_hidden_size", "32", "--tiny_projection_dim", "32",
                    "--tiny_num_layers", "2"]  # fmt: skip
# IPCE's protocol scaled to 32-pixel synthetic images and a 32-pixel CLIP (IPCE's own: short side 512, stride 32,
# 224-pixel patches): the image brought to 40 pixels, 32-pixel patches at stride 4.
TINY_IPCE_VIEWS = json.dumps(
    {"scheme": "ipce", "num_crops": 3, "train_crops": 2, "short_side": 40, "stride": 4, "large_stride": 8,
     "large_side": 80}
)  # fmt: skip
EVERY_HOST_AND_GRADING = [(host, grading) for host in HOST_NAMES for grading in ("softmax", "agqg")]


def _rows(count: int, seed: int = 0, size: int = 40) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for index in range(count):
        level = index % 5
        base = torch.rand(size, size, 3, generator=generator) * (40 + 50 * level)
        image = Image.fromarray(base.clamp(0, 255).to(torch.uint8).numpy())
        rows.append({"image": image, "mos": 1.0 + level, "mos_std": 0.5, "prompt": f"a scene number {index % 3}",
                     "row_index": index})  # fmt: skip
    return rows


def _build(host: str, grading: str = "agqg", seed: int = 0, *flags: str) -> tuple[Any, Any]:
    options = parse_args(["--host", host, "--grading", grading, *TINY_MODEL_FLAGS, *flags])
    return options, build_model(options.model, (1.0, 5.0), seed=seed)


# ---------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", HOST_NAMES)
def test_every_shipped_host_is_a_set_of_train_options(host: str) -> None:
    preset = load_host(host)
    assert preset.name == host and preset.description and preset.options["host"] == host
    for grading in ("softmax", "agqg"):
        options = parse_args(["--host", host, "--grading", grading])
        assert options.model.host == host and options.model.grading == grading
        config = AGQGConfig(**options.model.agqg_config_fields())
        assert config.num_grades >= 2 and config.grading == grading
    assert parse_args(["--host", "ipce"]).model.view_protocol["scheme"] == "ipce"
    assert parse_args(["--host", "ipce"]).data.generation_prompts


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("host: x\ncolour: red\n", "unknown key"),
        ("host: x\nfreeze_backbone: maybe\n", "freeze_backbone"),
        ("host: x\nloss_weights: {huber: 1}\n", "huber"),
        ("host: x\nprompt_learning: vpt\n", "prompt_learning"),
        ("host: x\ngrade_names: [a, b]\ngrade_prompt_sets: [[a], [b, c]]\n", "grade_prompt_sets"),
        ("host: x\ngrading: mean\n", "grading"),
        ("host: x\nview_protocol: tiles\n", "tiles"),
        ("description: no name\n", "host"),
    ],
)
def test_bad_host_files_name_the_file_and_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad_host.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as error:
        load_host(path)
    assert "bad_host.yaml" in str(error.value)


def test_a_host_file_outside_the_shipped_ones_trains_by_path(tmp_path: Path) -> None:
    path = tmp_path / "my_host.yaml"
    path.write_text("host: mine\ndescription: CoOp with 2 tokens\nprompt_learning: coop\nnum_context_tokens: 2\n"
                    "freeze_backbone: true\n")  # fmt: skip
    options = parse_args(["--host", str(path)])
    assert options.model.host == str(path) and options.model.num_context_tokens == 2


def test_unknown_host_lists_the_shipped_ones() -> None:
    with pytest.raises(FileNotFoundError, match="clip-iqa, liqe, ipce, coop, maple"):
        load_host("vpt")


@pytest.mark.parametrize("host", HOST_NAMES)
def test_switching_grading_changes_only_the_head(host: str) -> None:
    _, agqg = _build(host, "agqg")
    _, softmax = _build(host, "softmax")
    agqg_state, softmax_state = agqg.state_dict(), softmax.state_dict()
    assert {k for k in agqg_state if not k.startswith("head.")} == set(softmax_state)
    for key, value in softmax_state.items():
        assert torch.equal(agqg_state[key], value), key
    assert agqg.head is not None and softmax.head is None


def test_liqe_multitask_uses_liqes_scene_and_distortion_words() -> None:
    from training.modeling import LIQE_DISTORTIONS, LIQE_SCENES

    _, model = _build("liqe", "agqg", 0, "--multitask", "true")
    prompts = model.grade_prompts()
    assert len(prompts) == 5 * len(LIQE_SCENES) * len(LIQE_DISTORTIONS)
    assert prompts[0] == "a photo of a animal with blur artifacts, which is of bad quality."
    assert model.grade_variant_embeds.shape == (5, len(LIQE_SCENES) * len(LIQE_DISTORTIONS), 32)


def test_hosts_command_lists_and_shows_the_hosts(capsys: pytest.CaptureFixture[str]) -> None:
    from training.hosts import main

    assert main(["--list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()[: len(HOST_NAMES)]]
    assert listed == list(HOST_NAMES)
    assert main(["--show", "coop"]) == 0
    assert "prompt_learning: coop" in capsys.readouterr().out
    assert main(["--show", "vpt"]) == 2


def test_hosts_build_around_a_local_clip_checkpoint(tokenizer: Any, tmp_path: Path) -> None:
    from transformers import CLIPModel

    from modeling_agqg.tools.offline import tiny_clip_config

    clip = CLIPModel(tiny_clip_config(tokenizer, num_hidden_layers=3))
    clip.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    options = parse_args(["--host", "maple", "--clip", str(tmp_path)])
    model = build_model(options.model, (0.0, 100.0), seed=0)
    assert model.config.prompt_depth == 3 and model.config.score_range == [0.0, 100.0]
    for key, value in clip.state_dict().items():
        assert torch.equal(model.clip.state_dict()[key], value), key


def test_maple_depth_is_capped_at_the_towers_depth() -> None:
    options, model = _build("maple")
    assert options.model.prompt_depth > 2
    assert model.config.prompt_depth == 2


# ---------------------------------------------------------------------------------------------
# Text sides of the hosts
# ---------------------------------------------------------------------------------------------


def test_clip_iqa_softmax_is_the_probability_of_the_good_prompt() -> None:
    _, model = _build("clip-iqa", "softmax")
    pixels = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        out = model(pixels)
        image = model.get_image_embeds(pixels)
        texts = torch.nn.functional.normalize(
            model.encode_text(model.grade_prompt_ids, model.grade_prompt_mask), dim=-1
        )
    tau = model.clip.logit_scale.exp()
    p_good = (tau * image @ texts.t()).softmax(-1)[:, 1]
    assert model.grade_prompts() == ["Bad photo.", "Good photo."]
    assert torch.allclose(out.score, 1.0 + 4.0 * p_good, atol=1e-5)


def test_multitask_softmax_grading_is_the_quality_marginal_of_the_joint_softmax(tokenizer: Any) -> None:
    from conftest import make_tiny_model

    scenes, distortions = ["animal", "city"], ["blur", "noise", "jpeg"]
    model = make_tiny_model(tokenizer, grading="softmax", multitask_scenes=scenes, multitask_distortions=distortions)
    assert len(model.grade_prompts()) == 5 * 2 * 3
    assert model.grade_prompts()[1] == "a photo of a animal with noise artifacts, which is of bad quality."
    pixels = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        out = model(pixels)
        image = model.get_image_embeds(pixels)
        texts = torch.nn.functional.normalize(
            model.encode_text(model.grade_prompt_ids, model.grade_prompt_mask), dim=-1
        )
    joint = (model.clip.logit_scale.exp() * image @ texts.t()).softmax(-1)  # (B, K*V), grade-major
    marginal = joint.view(4, 5, 6).sum(-1)
    assert torch.allclose(out.grade_probs, marginal, atol=1e-6)
    assert model.grade_variant_embeds.shape == (5, 6, 32)
    agqg = make_tiny_model(tokenizer, multitask_scenes=scenes, multitask_distortions=distortions)
    with torch.no_grad():
        assert torch.allclose(agqg(pixels).similarities, out.similarities, atol=1e-6)


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    variants=st.integers(1, 12),
    log_tau=st.floats(0.0, math.log(100.0)),
)
def test_variant_similarity_lies_between_the_max_and_max_plus_log_v_over_tau(
    seed: int, variants: int, log_tau: float
) -> None:
    generator = torch.Generator().manual_seed(seed)
    image = torch.nn.functional.normalize(torch.randn(3, 8, generator=generator), dim=-1)
    texts = torch.nn.functional.normalize(torch.randn(4, variants, 8, generator=generator), dim=-1)
    tau = torch.tensor(math.exp(log_tau))
    pooled = aggregate_variant_similarities(image, texts, tau)
    maximum = torch.einsum("bd,kvd->bkv", image, texts).amax(-1)
    assert (pooled >= maximum - 1e-5).all()
    assert (pooled <= maximum + math.log(variants) / tau + 1e-5).all()
    softmax = (tau * pooled).softmax(-1)
    joint = (tau * torch.einsum("bd,kvd->bkv", image, texts)).flatten(1).softmax(-1).view(3, 4, variants).sum(-1)
    assert torch.allclose(softmax, joint, atol=1e-5)


@pytest.mark.parametrize("host", ["coop", "maple"])
def test_learnable_prompts_use_the_context_only_for_grade_prompts(host: str) -> None:
    _, model = _build(host)
    learner = model.prompt_learner
    with torch.no_grad():
        prompted, _ = model._encode_grade_prompts()
        learner.context.add_(torch.randn_like(learner.context))
        moved, _ = model._encode_grade_prompts()
        plain = model.encode_text(model.grade_prompt_ids, model.grade_prompt_mask)
    assert not torch.allclose(prompted, moved), "the context tokens must reach the text features"
    with torch.no_grad():
        again = model.encode_text(model.grade_prompt_ids, model.grade_prompt_mask)
    assert torch.equal(plain, again), "outside prompting_text() the text tower is the plain one"
    ids = model.grade_prompt_ids[:, : 1 + model.config.num_context_tokens]
    placeholder = model.tokenizer(model.config.context_placeholder, add_special_tokens=False)["input_ids"][0]
    assert (ids[:, 1:] == placeholder).all()


def test_maple_vision_prompts_change_image_features_and_learn() -> None:
    preset, model = _build("maple")
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model.get_image_embeds(pixels)
        model.prompt_learner.vision_projections[0].weight.mul_(3.0)
        after = model.get_image_embeds(pixels)
    assert not torch.allclose(before, after), "the vision prompts must reach the image features"
    model.train()
    model.requires_grad_(True)
    out = model(pixels, labels=torch.tensor([1.0, 5.0]))
    out.loss.backward()
    for name, parameter in model.prompt_learner.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_maple_couples_towers_of_different_widths(tokenizer: Any) -> None:
    from modeling_agqg.tools.offline import random_agqg_model, tiny_clip_config

    config = tiny_clip_config(tokenizer)
    config.vision_config.hidden_size, config.vision_config.intermediate_size = 48, 192  # ViT-B: 512 text, 768 vision
    model = random_agqg_model(
        config, tokenizer=tokenizer, prompt_learning="maple", prompt_depth=2, num_context_tokens=3
    )
    assert model.prompt_learner.vision_projections[1].weight.shape == (48, 32)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.score.shape == (2,) and torch.isfinite(out.score).all()


def test_a_deep_copy_prompts_with_its_own_parameters() -> None:
    import copy

    _, model = _build("maple")
    clone = copy.deepcopy(model)
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model(pixels).score
        clone.prompt_learner.vision_projections[1].weight.mul_(5.0)
        clone.prompt_learner.deep_text_prompts.mul_(5.0)
        clone.refresh_grade_text_embeds()
        assert torch.equal(model(pixels).score, before), "the original must not use the copy's prompts"
        assert not torch.allclose(clone(pixels).score, before), "the copy must use its own prompts"


def test_prompt_options_are_validated_naming_the_field(tokenizer: Any) -> None:
    from conftest import make_tiny_model

    with pytest.raises(ValueError, match="prompt_depth"):
        make_tiny_model(tokenizer, prompt_learning="maple", prompt_depth=3)
    with pytest.raises(ValueError, match="single token"):
        make_tiny_model(tokenizer, prompt_learning="coop", context_placeholder="XYZ")
    with pytest.raises(ValueError, match="multitask_distortions"):
        AGQGConfig(multitask_scenes=["animal"])
    with pytest.raises(ValueError, match="prompt_depth"):
        AGQGConfig(prompt_learning="coop", prompt_depth=2)
    config = AGQGConfig(prompt_learning="maple", prompt_depth=3, multitask_scenes=["a"], multitask_distortions=["b"])
    assert AGQGConfig.from_dict(config.to_dict()).to_dict() == config.to_dict()


def test_repeated_generation_prompts_are_encoded_once_with_the_same_result(tokenizer: Any) -> None:
    from conftest import make_tiny_model

    model = make_tiny_model(tokenizer)
    prompts = ["a red car", "a cat", "a red car", "a red car"]
    tokens = model.tokenize_alignment_prompts(tokenizer, prompts)
    pixels = torch.randn(4, 3, 32, 32)
    calls = []
    handle = model.clip.text_model.register_forward_hook(
        lambda module, args, kwargs, output: calls.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    with torch.no_grad():
        together = model(pixels, **tokens)
    handle.remove()
    with torch.no_grad():
        one_by_one = [
            model(pixels[i : i + 1], **model.tokenize_alignment_prompts(tokenizer, [p])) for i, p in enumerate(prompts)
        ]
    assert calls == [2 * 5], "two distinct prompts x K grades"
    assert torch.allclose(together.score, torch.cat([o.score for o in one_by_one]), atol=1e-6)
    assert torch.allclose(together.difficulties, torch.cat([o.difficulties for o in one_by_one]), atol=1e-6)


def test_generation_prompt_falls_back_to_the_source_and_names_missing_columns() -> None:
    assert generation_prompt({"prompt": "a red car", "source": "x"}) == "a red car"
    assert generation_prompt({"prompt": "", "source": "astronaut"}) == "astronaut"
    with pytest.raises(ValueError, match="columns: \\['image', 'mos'\\]"):
        generation_prompt({"image": None, "mos": 1.0})


def test_ipce_views_patches_and_whole_image_with_each_images_prompt() -> None:
    options, model = _build("ipce", "agqg", 0, "--view_protocol", TINY_IPCE_VIEWS)
    protocol = model.view_protocol()
    rows = _rows(3, size=48)
    train_batch = ViewCollator(model, protocol, train=True, seed=0, generation_prompts=True)(rows)
    assert train_batch["pixel_values"].shape == (3 * 3, 3, 32, 32)  # 2 random patches + the whole image
    assert train_batch["input_ids"].shape[:2] == (3, 5)  # one prompt per image, shared by its views
    test_batch = ViewCollator(model, protocol, train=False, generation_prompts=True)(rows)
    assert test_batch["pixel_values"].shape == (3 * 4, 3, 32, 32)  # 3 evenly spaced patches + the whole image
    # The last view of each image is the whole image, the same at training and at test.
    torch.testing.assert_close(train_batch["pixel_values"][2], test_batch["pixel_values"][3], atol=0, rtol=0)


# ---------------------------------------------------------------------------------------------
# Every host x grading through the one training loop, saved, and loaded in a fresh process
# ---------------------------------------------------------------------------------------------


FRESH_PROCESS = r"""
import json, sys
from transformers import AutoModel, pipeline

jobs = json.loads(sys.argv[1])
assert "modeling_agqg" not in sys.modules and "training" not in sys.modules
results = {}
for name, job in jobs.items():
    model = AutoModel.from_pretrained(job["folder"], trust_remote_code=True).eval()
    pipe = pipeline("image-quality", model=job["folder"], trust_remote_code=True)
    pairs = zip(job["images"], job["prompts"])
    inputs = [{"image": path, "prompt": prompt} if prompt else path for path, prompt in pairs]
    results[name] = {"scores": [r["score"] for r in pipe(inputs, batch_size=2)], "class": type(model).__name__,
                     "prompt_learning": model.config.prompt_learning, "views": model.config.view_protocol["scheme"]}
print(json.dumps(results))
"""


def host_run_flags(
    host: str, grading: str, data_root: Path, out: Path, model_flags: Sequence[str] = TINY_MODEL_FLAGS
) -> list[str]:
    """A tiny run of one host: 48 training images, 1 epoch of 3 steps, IPCE's protocol scaled to 32 pixels."""
    flags = ["--host", host, "--grading", grading, *model_flags, "--data_root", str(data_root)]
    flags += ["--synthetic_image_size", "32", "--max_train_samples", "48", "--max_eval_samples", "8"]
    flags += ["--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "8", "--num_train_epochs", "1"]
    flags += ["--backbone_learning_rate", "1e-3", "--mixed_precision", "no", "--report_to", "none", "--plots", "false"]
    flags += ["--disable_tqdm", "true", "--output_dir", str(out)]
    return flags + (["--view_protocol", TINY_IPCE_VIEWS] if host == "ipce" else [])


@pytest.fixture(scope="module")
def trained_hosts(tmp_path_factory: pytest.TempPathFactory, synthetic_cache: Path) -> dict[str, dict[str, Any]]:
    """Every host x grading trained by `train()` (the one loop: what trains, views, prompts, loss) into a complete
    model folder, then every folder scored in one fresh process (and by AGQG_CROSS_PYTHON, CI's transformers 4.x
    environment) through `AutoModel` and `pipeline("image-quality")`. Per host/grading: what training checked and
    what each fresh process scored."""
    import datasets

    from modeling_agqg import AGQGForImageQualityAssessment
    from training.train import train

    tmp_path = tmp_path_factory.mktemp("hosts")
    test_rows = datasets.load_from_disk(str(synthetic_cache))["test"].select(range(3))
    images, sources = [], []
    for index, row in enumerate(test_rows):
        path = tmp_path / f"test_{index}.png"
        row["image"].save(path)  # PNG: the pixels the run evaluated
        images.append(str(path))
        sources.append(generation_prompt(row))
    jobs, runs = {}, {}
    for host, grading in EVERY_HOST_AND_GRADING:
        out = tmp_path / f"{host}_{grading}"
        options = parse_args(host_run_flags(host, grading, synthetic_cache, out))
        initial = build_model(options.model, (1.0, 5.0), seed=options.training.seed).state_dict()
        result = train(options)
        trained = AGQGForImageQualityAssessment.from_pretrained(out / "model")
        prompts_fresh = True
        if options.model.prompt_learning:
            with torch.no_grad():
                fresh, _ = trained._encode_grade_prompts()
            prompts_fresh = torch.allclose(trained.grade_text_embeds, fresh, atol=1e-6)
        runs[f"{host}/{grading}"] = {
            "options": options,
            "changed": [k for k, v in trained.state_dict().items() if not torch.equal(v, initial[k])],
            "prompts_fresh": prompts_fresh,
            "view_scheme": trained.config.view_protocol["scheme"],
            "scores": result.predictions["test"].scores[:3].tolist(),
            "fresh": {},
        }
        prompts = sources if options.data.generation_prompts else [None] * len(images)
        jobs[f"{host}/{grading}"] = {"folder": str(out / "model"), "images": images, "prompts": prompts}

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PYTHONPATH"))}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    loaders = [sys.executable] + ([os.environ["AGQG_CROSS_PYTHON"]] if os.environ.get("AGQG_CROSS_PYTHON") else [])
    for python in loaders:
        loaded = subprocess.run(
            [python, "-c", FRESH_PROCESS, json.dumps(jobs)], cwd=workdir, env=env, capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
        assert loaded.returncode == 0, loaded.stderr[-4000:]
        for name, got in json.loads(loaded.stdout.strip().splitlines()[-1]).items():
            runs[name]["fresh"][python] = got
    return runs


@pytest.mark.slow
@pytest.mark.parametrize(("host", "grading"), EVERY_HOST_AND_GRADING)
def test_host_trains_saves_and_loads_in_a_fresh_process(
    trained_hosts: dict[str, dict[str, Any]], host: str, grading: str
) -> None:
    """One host and grading through the one loop: training changed the model (never a frozen CLIP weight), learnable
    prompts are saved fresh, the folder records the views it trained with, and a fresh process (also the
    transformers 4.x one in CI) scores the run's test images exactly as the run's own final evaluation (1e-4)."""
    run = trained_hosts[f"{host}/{grading}"]
    options = run["options"]
    assert run["changed"], "training changed nothing"
    if options.training.freeze_backbone:
        assert not [k for k in run["changed"] if k.startswith("clip.")], "the frozen CLIP changed"
    assert run["prompts_fresh"], "the saved grade-prompt features are stale"
    assert run["view_scheme"] == options.model.view_protocol["scheme"] == ("ipce" if host == "ipce" else "resize")
    assert all(math.isfinite(v) for v in run["scores"])
    assert run["fresh"], "no fresh process ran"
    for python, got in run["fresh"].items():
        assert got["class"] == "AGQGForImageQualityAssessment", python
        assert got["prompt_learning"] == options.model.prompt_learning and got["views"] == run["view_scheme"]
        assert got["scores"] == pytest.approx(run["scores"], abs=1e-4), python


@pytest.mark.slow
@pytest.mark.parametrize("backbone", [b for b in BACKBONES if b != "clip"])
@pytest.mark.parametrize("host", HOST_NAMES)
def test_every_host_trains_through_train_py_around_every_backbone(
    tmp_path: Path, synthetic_cache: Path, host: str, backbone: str
) -> None:
    """`train.py --tiny_backbone siglip|siglip2|align`: every host trains around every other backbone family (frozen
    parts stay frozen, whatever the towers are called; MaPLe refuses ALIGN's convolutional image tower with a clear
    error), and the saved folder scores the run's images exactly as the run did."""
    from transformers import AutoModel

    from training.train import train

    out = tmp_path / "run"
    options = parse_args([*host_run_flags(host, "agqg", synthetic_cache, out), "--tiny_backbone", backbone])
    if backbone == "align" and host == "maple":  # a convolutional image tower has no tokens to prompt
        with pytest.raises(ValueError, match="MaPLe's vision prompts are tokens of a ViT"):
            train(options)
        return
    initial = build_model(options.model, (1.0, 5.0), seed=options.training.seed).state_dict()
    assert initial.keys() == build_model(options.model, (1.0, 5.0), seed=0).state_dict().keys()
    result = train(options)
    loaded = AutoModel.from_pretrained(out / "model", trust_remote_code=True)
    assert loaded.config.backbone_config.model_type == backbone
    changed = {k for k, v in loaded.state_dict().items() if not torch.equal(v, initial[k])}
    assert changed, "training changed nothing"
    frozen = loaded.backbone_adapter.text_modules(loaded.clip) if options.training.freeze_text_tower else []
    if options.training.freeze_backbone:
        frozen = [loaded.clip]
    frozen_ids = {id(p) for module in frozen for p in module.parameters()}
    frozen_names = {name for name, p in loaded.named_parameters() if id(p) in frozen_ids}
    assert not frozen_names & changed, sorted(frozen_names & changed)[:5]
    assert all(math.isfinite(v) for v in result.predictions["test"].scores)


def test_train_py_backbone_option_wraps_a_saved_siglip_folder(
    tokenizer: Any, tmp_path: Path, synthetic_cache: Path
) -> None:
    """`--backbone <folder>` (the name that fits SigLIP; `--clip` is the same option) builds the host around the
    checkpoint, keeping its weights, and a frozen backbone is still those weights after training."""
    from modeling_agqg import AGQGForImageQualityAssessment
    from modeling_agqg.tools.offline import tiny_backbone
    from training.train import train

    torch.manual_seed(3)
    siglip = tiny_backbone("siglip", tokenizer)
    siglip.save_pretrained(tmp_path / "siglip")
    tokenizer.save_pretrained(tmp_path / "siglip")
    out = tmp_path / "run"
    flags = host_run_flags("coop", "agqg", synthetic_cache, out, model_flags=[])
    options = parse_args([*flags, "--backbone", str(tmp_path / "siglip")])
    assert options.model.clip == str(tmp_path / "siglip") and options.training.freeze_backbone
    train(options)
    trained = AGQGForImageQualityAssessment.from_pretrained(out / "model")
    assert trained.config.backbone_config.model_type == "siglip"
    for key, value in siglip.state_dict().items():
        assert torch.equal(trained.clip.state_dict()[key], value), key
    with pytest.raises(ValueError, match="give one of them"):
        parse_args(["--backbone", str(tmp_path / "siglip"), "--clip", "openai/clip-vit-base-patch16"])
