"""The model through its public entry points: config, from_clip, forward, the text-feature cache, saving."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_model
from transformers import CLIPModel

from modeling_agqg import AGQGConfig, AGQGForImageQualityAssessment
from modeling_agqg.tools.offline import tiny_clip_config

COMPLETE_FOLDER = {
    "config.json",
    "configuration_agqg.py",
    "modeling_agqg.py",
    "pipeline_agqg.py",
    "prompt_learning_agqg.py",
    "model.safetensors",
    "preprocessor_config.json",
    "tokenizer_config.json",
}


def test_config_round_trip(tmp_path: Path) -> None:
    config = AGQGConfig(
        clip_config={"projection_dim": 16},
        grade_names=["low", "mid", "high"],
        prompt_templates=["a {grade} quality image", "a photo of {grade} quality"],
        grading="softmax",
        score_range=(0.0, 100.0),
        ability_source="similarities",
        loss_type="mse",
    )
    config.save_pretrained(tmp_path)
    loaded = AGQGConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == {**config.to_dict(), "transformers_version": loaded.to_dict()["transformers_version"]}
    assert loaded.num_grades == 3 and loaded.alignment_grade_names == ["low", "mid", "high"]
    assert loaded.clip_config.projection_dim == 16
    assert AGQGConfig.from_dict(config.to_dict()).to_dict() == config.to_dict()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"grading": "mean"}, "grading"),
        ({"num_grades": 4}, "grade_names"),
        ({"score_range": (5.0, 1.0)}, "score_range"),
        ({"prompt_templates": ["no field"]}, "prompt template"),
        ({"loss_type": "huber"}, "loss_type"),
        ({"alignment_grade_names": ["a", "b"]}, "alignment_grade_names"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        AGQGConfig(**kwargs)


@pytest.mark.parametrize("grading", ["agqg", "softmax"])
def test_forward_shapes_and_loss(tokenizer, grading: str) -> None:
    model = make_tiny_model(tokenizer, grading=grading, score_range=(0.0, 4.5))
    labels = torch.tensor([0.5, 2.0, 4.0])
    out = model(torch.randn(3, 3, 32, 32), labels=labels)
    assert out.score.shape == (3,) and out.ability.shape == (3,)
    assert out.grade_probs.shape == (3, 5) and out.similarities.shape == (3, 5)
    assert ((out.score >= 0) & (out.score <= 4.5)).all()
    assert out.loss.item() == pytest.approx(torch.nn.functional.l1_loss(out.score, labels).item())
    if grading == "agqg":
        assert out.difficulties.shape == (4,) and out.discrimination.shape == ()
    mse = make_tiny_model(tokenizer, grading=grading, loss_type="mse")
    out = mse(torch.randn(3, 3, 32, 32), labels=labels)
    assert out.loss.item() == pytest.approx(torch.nn.functional.mse_loss(out.score, labels).item())
    assert isinstance(model(torch.randn(1, 3, 32, 32), return_dict=False), tuple)


def test_switching_grading_changes_only_the_head(tokenizer) -> None:
    agqg = make_tiny_model(tokenizer, grading="agqg").state_dict()
    softmax = make_tiny_model(tokenizer, grading="softmax").state_dict()
    assert {k for k in agqg if not k.startswith("head.")} == set(softmax)
    for key, value in softmax.items():
        assert torch.equal(agqg[key], value), key


def test_generation_prompt_conditioning_gives_per_image_difficulties(tiny_model, tokenizer) -> None:
    prompts = ["a red car", "statue of a man"]
    tokens = tiny_model.tokenize_alignment_prompts(tokenizer, prompts)
    assert tokens["input_ids"].shape[:2] == (2, 5)
    decoded = tokenizer.decode(tokens["input_ids"][1, 4], skip_special_tokens=True).replace(" ", "")
    assert decoded == "aphotothatperfectlymatches'statueofaman'"
    out = tiny_model(torch.randn(2, 3, 32, 32), **tokens)
    assert out.difficulties.shape == (2, 4) and out.discrimination.shape == (2,)
    # Per-sample prompts equal to the stored ones reproduce the cached scoring.
    grade_tokens = {"input_ids": tiny_model.grade_prompt_ids, "attention_mask": tiny_model.grade_prompt_mask}
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(tiny_model(pixels, **grade_tokens).score, tiny_model(pixels).score, atol=1e-6)


def test_text_embeds_are_cached_and_never_stale(tiny_model, tmp_path: Path) -> None:
    before = tiny_model.grade_text_embeds.clone()
    with torch.no_grad():
        tiny_model(torch.randn(2, 3, 32, 32))
    assert torch.equal(before, tiny_model.grade_text_embeds), "scoring must not re-encode the prompts"
    # Train the text side for a step: the live embeddings move, the stored copy is refreshed afterwards.
    tiny_model.train()
    optimizer = torch.optim.SGD(tiny_model.parameters(), lr=1.0)
    tiny_model(torch.randn(4, 3, 32, 32), labels=torch.tensor([1.0, 2.0, 3.0, 5.0])).loss.backward()
    optimizer.step()
    expected = tiny_model.encode_text(tiny_model.grade_prompt_ids, tiny_model.grade_prompt_mask).detach()
    expected = torch.nn.functional.normalize(expected, dim=-1)
    tiny_model.save_pretrained(tmp_path)
    saved = AGQGForImageQualityAssessment.from_pretrained(tmp_path).grade_text_embeds
    assert not torch.allclose(saved, before), "the saved model must carry the trained text embeddings"
    assert torch.allclose(saved, expected, atol=1e-6)
    # A frozen text tower never marks the cache stale.
    for parameter in tiny_model.clip.text_model.parameters():
        parameter.requires_grad_(False)
    tiny_model.clip.text_projection.weight.requires_grad_(False)
    tiny_model(torch.randn(2, 3, 32, 32))
    assert not tiny_model._grade_embeds_stale


def test_state_dict_refreshes_stale_embeds(tiny_model) -> None:
    tiny_model.train()
    out = tiny_model(torch.randn(2, 3, 32, 32), labels=torch.tensor([1.0, 5.0]))
    out.loss.backward()
    with torch.no_grad():
        tiny_model.clip.text_projection.weight.mul_(-1)
    state = tiny_model.state_dict()
    fresh = torch.nn.functional.normalize(
        tiny_model.encode_text(tiny_model.grade_prompt_ids, tiny_model.grade_prompt_mask), dim=-1
    )
    assert torch.allclose(state["grade_text_embeds"], fresh.detach(), atol=1e-6)


def test_model_without_prompts_says_what_to_do(tokenizer) -> None:
    model = AGQGForImageQualityAssessment(AGQGConfig(clip_config=tiny_clip_config(tokenizer).to_dict())).eval()
    model._grade_embeds_stale = True
    with pytest.raises(RuntimeError, match="set_grade_prompts"):
        model(torch.randn(1, 3, 32, 32))


def test_from_clip_local_folder_keeps_weights_and_preprocessing(tokenizer, tmp_path: Path) -> None:
    torch.manual_seed(0)
    clip = CLIPModel(tiny_clip_config(tokenizer))
    clip_dir = tmp_path / "clip"
    clip.save_pretrained(clip_dir)
    tokenizer.save_pretrained(clip_dir)
    processor = make_tiny_model(tokenizer).default_image_processor()
    processor.save_pretrained(clip_dir)

    model = AGQGForImageQualityAssessment.from_clip(str(clip_dir), grading="softmax", score_range=(0, 1))
    assert model.config.grading == "softmax" and model.config.score_range == [0.0, 1.0]
    for key, value in clip.state_dict().items():
        assert torch.equal(model.clip.state_dict()[key], value), key
    assert model.tokenizer is not None and model.image_processor.crop_size["height"] == 32
    assert int(model.grade_prompt_mask.sum()) > 0


def test_from_clip_reads_a_nested_processor_config(tokenizer, tmp_path: Path) -> None:
    """A CLIP folder saved by transformers 5 as a `CLIPProcessor` has only `processor_config.json`."""
    clip_dir = tmp_path / "clip"
    CLIPModel(tiny_clip_config(tokenizer)).save_pretrained(clip_dir)
    tokenizer.save_pretrained(clip_dir)
    nested = {
        "image_processor": {
            "image_processor_type": "CLIPImageProcessor",
            "crop_size": {"height": 32, "width": 32},
            "size": {"shortest_edge": 40},
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.25, 0.25, 0.25],
        },
        "processor_class": "CLIPProcessor",
    }
    (clip_dir / "processor_config.json").write_text(json.dumps(nested))
    model = AGQGForImageQualityAssessment.from_clip(str(clip_dir))
    assert model.image_processor.size["shortest_edge"] == 40
    assert list(model.image_processor.image_mean) == [0.5, 0.5, 0.5]


def test_from_clip_without_tokenizer_fails_clearly(tokenizer, tmp_path: Path) -> None:
    clip_dir = tmp_path / "clip"
    CLIPModel(tiny_clip_config(tokenizer)).save_pretrained(clip_dir)
    with pytest.raises(ValueError, match="tokenizer"):
        AGQGForImageQualityAssessment.from_clip(str(clip_dir))


def test_save_pretrained_writes_a_complete_folder_twice(tiny_model, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    tiny_model.save_pretrained(first)
    assert COMPLETE_FOLDER <= {p.name for p in first.iterdir()}
    config = json.loads((first / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_agqg.AGQGConfig",
        "AutoModel": "modeling_agqg.AGQGForImageQualityAssessment",
    }
    assert config["custom_pipelines"]["image-quality"]["impl"] == "pipeline_agqg.ImageQualityPipeline"
    loaded = AGQGForImageQualityAssessment.from_pretrained(first)
    loaded.save_pretrained(second)
    assert COMPLETE_FOLDER <= {p.name for p in second.iterdir()}
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(pixels).score, tiny_model(pixels).score, atol=1e-6)


def test_grading_runs_in_float32_under_autocast(tiny_model) -> None:
    """The towers may run in bf16; similarities, head and score must not be rounded to it."""
    pixels = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        reference = tiny_model(pixels)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = tiny_model(pixels)
    for name in ("score", "grade_probs", "ability", "similarities", "difficulties"):
        assert getattr(mixed, name).dtype == torch.float32, name
    assert torch.allclose(mixed.score, reference.score, atol=0.02)
