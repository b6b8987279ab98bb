"""Host frameworks (training/hosts.py + the model's host options): presets, prompt learning, multitask prompts,
training a few steps, and the saved folders through `trust_remote_code` and `pipeline("image-quality")`.

Runs under transformers 5.x and 4.x (no datasets/accelerate needed)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from modeling_agqg import AGQGConfig
from modeling_agqg.prompt_learning_agqg import aggregate_variant_similarities
from training.hosts import (
    HOST_NAMES,
    HostCollator,
    HostPreset,
    TinyClipOptions,
    build_host_model,
    generation_prompt,
    load_host,
    predict_host,
    train_host,
)

TINY = TinyClipOptions(image_size=32, hidden_size=32, num_layers=2, projection_dim=32)


def _rows(count: int, seed: int = 0, size: int = 40) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for index in range(count):
        level = index % 5
        base = torch.rand(size, size, 3, generator=generator) * (40 + 50 * level)
        image = Image.fromarray(base.clamp(0, 255).to(torch.uint8).numpy())
        rows.append({"image": image, "mos": 1.0 + level, "mos_std": 0.5, "prompt": f"a scene number {index % 3}"})
    return rows


def _build(host: str, grading: str = "agqg", seed: int = 0, **preset_overrides: Any) -> tuple[HostPreset, Any]:
    preset = load_host(host, grading=grading, **preset_overrides)
    return preset, build_host_model(preset, score_range=(1.0, 5.0), seed=seed, tiny=TINY)


# ---------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", HOST_NAMES)
def test_every_shipped_host_is_a_valid_configuration(host: str) -> None:
    preset = load_host(host)
    assert preset.host == host and preset.description
    config = AGQGConfig(**preset.model_overrides())
    assert config.num_grades >= 2
    for grading in ("softmax", "agqg"):
        assert load_host(host, grading=grading).model_overrides()["grading"] == grading


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("host: x\ncolour: red\n", "unknown key"),
        ("host: x\ntrain: {trainable: everything}\n", "train.trainable"),
        ("host: x\ntrain: {loss_weights: {huber: 1}}\n", "huber"),
        ("host: x\nmodel: {prompt_learning: vpt}\n", "prompt_learning"),
        ("host: x\nmodel: {grade_names: [a, b], grade_prompt_sets: [[a], [b, c]]}\n", "grade_prompt_sets"),
        ("host: x\ngrading: mean\n", "grading"),
        ("description: no name\n", "host"),
    ],
)
def test_bad_host_files_name_the_file_and_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad_host.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as error:
        load_host(path)
    assert "bad_host.yaml" in str(error.value)


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
    from training.hosts import LIQE_DISTORTIONS, LIQE_SCENES

    preset, model = _build("liqe", multitask=True)
    prompts = model.grade_prompts()
    assert len(prompts) == 5 * len(LIQE_SCENES) * len(LIQE_DISTORTIONS)
    assert prompts[0] == "a photo of a animal with blur artifacts, which is of bad quality."
    assert model.grade_variant_embeds.shape == (5, len(LIQE_SCENES) * len(LIQE_DISTORTIONS), TINY.projection_dim)


def test_hosts_command_lists_the_hosts(capsys: pytest.CaptureFixture[str]) -> None:
    from training.hosts import main

    assert main(["--list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == list(HOST_NAMES)


def test_hosts_build_around_a_local_clip_checkpoint(tokenizer: Any, tmp_path: Path) -> None:
    from transformers import CLIPModel

    from modeling_agqg.tools.offline import tiny_clip_config

    clip = CLIPModel(tiny_clip_config(tokenizer, num_hidden_layers=3))
    clip.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    model = build_host_model(load_host("maple"), clip=str(tmp_path), score_range=(0.0, 100.0))
    assert model.config.prompt_depth == 3 and model.config.score_range == [0.0, 100.0]
    for key, value in clip.state_dict().items():
        assert torch.equal(model.clip.state_dict()[key], value), key


def test_maple_depth_is_capped_at_the_towers_depth() -> None:
    preset, model = _build("maple")
    assert preset.model["prompt_depth"] > TINY.num_layers
    assert model.config.prompt_depth == TINY.num_layers


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
    from transformers import CLIPModel

    from modeling_agqg import AGQGForImageQualityAssessment
    from modeling_agqg.tools.offline import tiny_clip_config

    config = tiny_clip_config(tokenizer)
    config.vision_config.hidden_size, config.vision_config.intermediate_size = 48, 192  # ViT-B: 512 text, 768 vision
    torch.manual_seed(0)
    model = AGQGForImageQualityAssessment.from_clip(
        CLIPModel(config), tokenizer=tokenizer, prompt_learning="maple", prompt_depth=2, num_context_tokens=3
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


def test_ipce_views_random_crop_and_whole_at_training_multi_crop_at_test() -> None:
    preset, model = _build("ipce")
    rows = _rows(3, size=48)
    train_batch = HostCollator(model, preset, train=True, generator=torch.Generator().manual_seed(0))(rows)
    assert train_batch["views"] == 2 and train_batch["pixel_values"].shape == (6, 3, 32, 32)
    assert train_batch["input_ids"].shape[:2] == (6, 5)
    test_batch = HostCollator(model, preset, train=False)(rows)
    assert test_batch["views"] == preset.eval_crops + 1
    assert test_batch["pixel_values"].shape == (3 * (preset.eval_crops + 1), 3, 32, 32)
    # The last view of each image is the whole image resized, the same at training and at test.
    assert torch.allclose(train_batch["pixel_values"][1], test_batch["pixel_values"][preset.eval_crops], atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Training, saving, reloading
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["coop", "maple"])
def test_learnable_prompts_train_live_and_are_saved_fresh(host: str, tmp_path: Path) -> None:
    from modeling_agqg import AGQGForImageQualityAssessment

    preset, model = _build(host)
    initial_context = model.prompt_learner.context.detach().clone()
    initial_embeds = model.grade_text_embeds.clone()
    frozen = {k: v.clone() for k, v in model.clip.state_dict().items()}
    losses = train_host(model, preset, _rows(16), steps=3, batch_size=8, progress=False)
    assert all(math.isfinite(loss) for loss in losses)
    assert not torch.equal(model.prompt_learner.context, initial_context)
    for key, value in model.clip.state_dict().items():
        assert torch.equal(value, frozen[key]), f"frozen CLIP weight {key} changed"
    model.save_pretrained(tmp_path)
    saved = AGQGForImageQualityAssessment.from_pretrained(tmp_path).grade_text_embeds
    with torch.no_grad():
        fresh, _ = model._encode_grade_prompts()
    assert not torch.allclose(saved, initial_embeds)
    assert torch.allclose(saved, fresh, atol=1e-6)


FRESH_PROCESS = r"""
import json, sys
import torch
from transformers import AutoModel, pipeline
from PIL import Image

jobs = json.loads(sys.argv[1])
assert "modeling_agqg" not in sys.modules and "training" not in sys.modules
results = {}
for host, job in jobs.items():
    model = AutoModel.from_pretrained(job["folder"], trust_remote_code=True).eval()
    pipe = pipeline("image-quality", model=job["folder"], trust_remote_code=True)
    plain = [r["score"] for r in pipe(job["images"], batch_size=2)]
    prompted = pipe({"image": job["images"][0], "prompt": "a scene number 1"})["score"]
    results[host] = {"plain": plain, "prompted": prompted, "prompt_learning": model.config.prompt_learning,
                     "class": type(model).__name__}
print(json.dumps(results))
"""


@pytest.mark.slow
def test_every_host_trains_saves_and_reloads_through_remote_code_and_the_pipeline(tmp_path: Path) -> None:
    from modeling_agqg import load_image_file

    rows = _rows(12)
    images = []
    for index in range(3):
        path = tmp_path / f"image_{index}.png"
        rows[index * 4]["image"].save(path)
        images.append(str(path))
    jobs, expected = {}, {}
    for host in HOST_NAMES:
        preset, model = _build(host, backbone_learning_rate=1e-3)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        losses = train_host(model, preset, rows, steps=2, batch_size=6, progress=False)
        assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses), host
        changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
        assert changed, f"{host}: training changed nothing"
        folder = tmp_path / host
        model.save_pretrained(folder)
        assert (folder / "prompt_learning_agqg.py").is_file()
        pixels = model.image_processor(images=[load_image_file(p) for p in images], return_tensors="pt")
        with torch.no_grad():
            plain = model(pixels["pixel_values"]).score.tolist()
            tokens = model.tokenize_alignment_prompts(model.tokenizer, ["a scene number 1"])
            prompted = model(pixels["pixel_values"][:1], **tokens).score.item()
        expected[host] = {"plain": plain, "prompted": prompted, "prompt_learning": model.config.prompt_learning}
        jobs[host] = {"folder": str(folder), "images": images}
    # Also the host's own evaluation path (multi-crop for IPCE) runs on the trained model.
    predicted = predict_host(model, preset, rows[:4], progress=False)
    assert predicted["score"].shape == (4,) and predicted["grade_probs"].shape == (4, 5)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PYTHONPATH"))}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    # AGQG_CROSS_PYTHON (CI: the transformers 4.x environment) also loads the folders saved here.
    loaders = [sys.executable] + ([os.environ["AGQG_CROSS_PYTHON"]] if os.environ.get("AGQG_CROSS_PYTHON") else [])
    for python in loaders:
        result = subprocess.run(
            [python, "-c", FRESH_PROCESS, json.dumps(jobs)],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-4000:]
        got = json.loads(result.stdout.strip().splitlines()[-1])
        for host in HOST_NAMES:
            assert got[host]["class"] == "AGQGForImageQualityAssessment"
            assert got[host]["prompt_learning"] == expected[host]["prompt_learning"]
            assert got[host]["plain"] == pytest.approx(expected[host]["plain"], abs=1e-5), (python, host)
            assert got[host]["prompted"] == pytest.approx(expected[host]["prompted"], abs=1e-5), (python, host)
