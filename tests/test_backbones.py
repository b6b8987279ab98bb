"""Backbones beyond CLIP: SigLIP and SigLIP 2 (NaFlex) through `from_backbone`, their conventions (similarity scale
and bias, text padding and pooling, SigLIP 2's patch sequences, preprocessing) checked against the backbones' own
forward passes and image processors, every host preset with every backbone, and folders saved before backbones
existed (`clip.` weights, `clip_config`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import BACKBONES, make_tiny_model
from PIL import Image

from modeling_agqg import AGQGConfig, AGQGForImageQualityAssessment
from modeling_agqg.backbones_agqg import (
    BACKBONE_TYPES,
    adapter_for,
    backbone_classes,
    image_processor_class_for,
    patchify,
    supported_backbones,
)
from modeling_agqg.tools.offline import tiny_backbone, tiny_backbone_config
from modeling_agqg.views_agqg import PixelSpec, resized_view, rgb_pixel_values

LEGACY_FOLDER = Path(__file__).resolve().parent / "fixtures" / "agqg_main_clip_coop"
EXACT_ATOL = 1e-5  # float32 rounding only


def legacy_pixels() -> torch.Tensor:
    """The two 32x32 inputs the legacy fixture's expected scores were computed on."""
    y, x = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    pixels = torch.stack([torch.stack([x, y, x * y]), torch.stack([1 - x, (3 * y) % 1, x**2])])
    return (pixels - 0.5) / 0.25


def _image(height: int, width: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (max(height // 8, 2), max(width // 8, 2), 3), dtype=np.uint8)
    image = Image.fromarray(base).resize((width, height), Image.Resampling.BILINEAR)
    noise = rng.integers(-12, 12, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.int64) + noise, 0, 255).astype(np.uint8))


def no_bos_tokenizer():
    """A SigLIP-like tokenizer without a start token (`</s>` appended, `</s>` padding): the characters of each word
    are its tokens, spaces are dropped, case is kept."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "</s>": 1, **{chr(c): i + 2 for i, c in enumerate(range(32, 127))}}
    model = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    model.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split("", "isolated")]
    )
    model.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=model, eos_token="</s>", pad_token="</s>", unk_token="<unk>", model_max_length=64
    )


# --- construction ---------------------------------------------------------------------------------------------


def test_every_backbone_type_is_known_and_the_installed_ones_are_usable() -> None:
    assert BACKBONE_TYPES == ("clip", "siglip", "siglip2", "align")
    assert {"clip", "siglip", "align"} <= set(supported_backbones())
    with pytest.raises(ValueError, match="not supported"):
        backbone_classes("vit")
    with pytest.raises(ValueError, match="not supported"):
        AGQGConfig(backbone_config={"model_type": "bert"})


def _save_backbone_folder(backbone: str, tokenizer, folder: Path) -> torch.nn.Module:
    torch.manual_seed(0)
    model = tiny_backbone(backbone, tokenizer)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if backbone == "siglip2":  # the checkpoint's own NaFlex processor
        image_processor_class_for("Siglip2ImageProcessor")(patch_size=8, max_num_patches=16).save_pretrained(folder)
    else:
        adapter_for(backbone).default_image_processor(model.config).save_pretrained(folder)
    return model


@pytest.mark.parametrize("backbone", BACKBONES)
def test_from_backbone_folder_keeps_weights_tokenizer_and_preprocessing(tokenizer, tmp_path: Path, backbone: str):
    source = _save_backbone_folder(backbone, tokenizer, tmp_path / "backbone")
    model = AGQGForImageQualityAssessment.from_backbone(str(tmp_path / "backbone"), grading="softmax")
    assert model.config.backbone_type == backbone and type(model.backbone) is type(source)
    assert model.config.clip_config is model.config.backbone_config  # the old name still reads it
    for key, value in source.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value), key
    from transformers import AutoTokenizer

    # The tokenizer AutoTokenizer picks for the checkpoint (transformers 5 maps a siglip2 folder to Siglip2Tokenizer).
    assert type(model.tokenizer) is type(AutoTokenizer.from_pretrained(tmp_path / "backbone"))
    processor = model.image_processor
    expected = {
        "clip": "CLIPImageProcessor",
        "siglip": "SiglipImageProcessor",
        "siglip2": "SiglipImageProcessor",
        "align": "EfficientNetImageProcessor",
    }
    assert type(processor).__name__.removesuffix("Pil") == expected[backbone]
    spec = model.pixel_spec()
    assert spec is not None and spec.output_hw == (32, 32) and model.image_size == 32
    if backbone in ("siglip", "siglip2"):
        assert spec.mean == spec.std == (0.5, 0.5, 0.5) and spec.resize_hw == (32, 32) and spec.crop_hw is None
    if backbone == "align":  # x / 127.5 - 1: rescale_offset is one more unit of mean
        assert spec.rescale_factor == pytest.approx(1 / 127.5) and spec.mean == spec.std == (1.0, 1.0, 1.0)
    if backbone == "siglip2":
        assert spec.resample == int(Image.Resampling.BILINEAR)  # taken over from the NaFlex processor
    # from_clip is the same constructor under its CLIP name.
    again = AGQGForImageQualityAssessment.from_clip(str(tmp_path / "backbone"), grading="softmax")
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(again(pixels).score, model(pixels).score)


def test_from_backbone_refuses_what_is_not_a_dual_encoder(tokenizer) -> None:
    from transformers import CLIPVisionModel

    vision = CLIPVisionModel(tiny_backbone_config("clip", tokenizer).vision_config)
    with pytest.raises(TypeError, match="both towers"):
        AGQGForImageQualityAssessment.from_backbone(vision, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="tokenizer"):
        AGQGForImageQualityAssessment.from_backbone(tiny_backbone("siglip", tokenizer))


def test_config_records_the_backbone_type_and_reads_clip_config(tokenizer, tmp_path: Path) -> None:
    siglip = tiny_backbone_config("siglip", tokenizer)
    config = AGQGConfig(backbone_config=siglip, grade_names=["low", "high"])
    saved = config.to_dict()
    assert saved["backbone_config"]["model_type"] == "siglip" and "clip_config" not in saved
    config.save_pretrained(tmp_path)
    loaded = AGQGConfig.from_pretrained(tmp_path)
    assert loaded.backbone_type == "siglip" and loaded.backbone_config.to_dict() == siglip.to_dict()
    old_style = AGQGConfig(clip_config=tiny_backbone_config("clip", tokenizer).to_dict())
    assert old_style.backbone_type == "clip" and old_style.backbone_config.projection_dim == 32
    with pytest.raises(ValueError, match="not both"):
        AGQGConfig(backbone_config=siglip, clip_config=siglip)
    assert AGQGConfig().backbone_type == "clip"


# --- similarity scale and bias --------------------------------------------------------------------------------


def test_clip_temperature_is_clamped_at_100(tokenizer) -> None:
    model = make_tiny_model(tokenizer)
    with torch.no_grad():
        model.backbone.logit_scale.fill_(math.log(400.0))
    tau, bias = model.similarity_scale()
    assert float(tau.detach()) == pytest.approx(100.0) and bias is None


@pytest.mark.parametrize("backbone", ["siglip", pytest.param("siglip2", marks=BACKBONES[2].marks)])
@pytest.mark.parametrize("grading", ["agqg", "softmax"])
@pytest.mark.parametrize("hosts", ["plain", "multitask+ipce"])
def test_siglip_bias_cancels_and_its_scale_counts(tokenizer, backbone: str, grading: str, hosts: str) -> None:
    """tau s + beta: beta shifts every grade's logit alike, so softmax and centred logits (and so every score,
    probability and ability) ignore it; tau changes them."""
    overrides = {"grading": grading}
    if hosts == "multitask+ipce":
        overrides.update(multitask_scenes=["animal", "human"], multitask_distortions=["blur", "noise"])
        overrides["view_protocol"] = {"scheme": "ipce", "num_crops": 2, "short_side": 40}
    model = make_tiny_model(tokenizer, backbone=backbone, **overrides)
    tau, bias = model.similarity_scale()
    assert float(tau.detach()) == pytest.approx(math.exp(float(model.backbone.logit_scale.detach())))
    assert float(bias.detach()) == float(model.backbone.logit_bias.detach())
    pixels = torch.rand(2, 3, 48, 40)
    with torch.no_grad():
        model.backbone.logit_scale.fill_(math.log(5.0))
        reference = model.score_pixels(pixels)
        model.backbone.logit_bias.fill_(-16.0)
        shifted = model.score_pixels(pixels)
        model.backbone.logit_scale.fill_(math.log(20.0))
        rescaled = model.score_pixels(pixels)
    for name in ("score", "grade_probs", "ability", "grade_std"):
        assert torch.allclose(getattr(shifted, name), getattr(reference, name), atol=1e-5), name
    assert not torch.allclose(rescaled.grade_probs, reference.grade_probs, atol=1e-4)


# --- conventions against the backbones' own forward passes ------------------------------------------------------


def _backbone_image_inputs(backbone: str, model: AGQGForImageQualityAssessment, images: list) -> dict:
    """What the backbone's own processor gives for `images` (SigLIP 2: its NaFlex processor, patch sequences)."""
    if backbone == "siglip2":
        processor = image_processor_class_for("Siglip2ImageProcessor")(patch_size=8, max_num_patches=16)
        return dict(processor(images=images, return_tensors="pt"))
    return {"pixel_values": rgb_pixel_values(model.image_processor, images)}


@pytest.mark.parametrize("backbone", BACKBONES)
def test_similarities_equal_the_backbones_own_logits(tokenizer, backbone: str) -> None:
    """The backbone's own forward on the grade prompts (SigLIP: max_length padding, no mask) and its own
    processor's pixels (SigLIP 2: NaFlex patch sequences): logits_per_image = tau * similarities (+ beta)."""
    model = make_tiny_model(tokenizer, backbone=backbone)
    images = [_image(64, 64, seed=1), _image(32, 32, seed=2)]  # square: SigLIP 2's NaFlex size is 32x32 too
    inputs = _backbone_image_inputs(backbone, model, images)
    text = {"input_ids": model.grade_prompt_ids}
    if backbone in ("clip", "align"):  # towers that read the padding mask
        text["attention_mask"] = model.grade_prompt_mask
    if backbone != "clip":
        assert model.grade_prompt_ids.shape[1] == 64  # SigLIP's (and AlignProcessor's) length, every prompt padded
    with torch.no_grad():
        own = model.backbone(**text, **inputs).logits_per_image
        ours = model(pixel_values=rgb_pixel_values(model.image_processor, images))
        tau, bias = model.similarity_scale()
    assert torch.allclose(own, tau * ours.similarities + (bias if bias is not None else 0.0), atol=1e-4)


@pytest.mark.parametrize("backbone", ["siglip", pytest.param("siglip2", marks=BACKBONES[2].marks)])
def test_siglip_text_reads_the_padded_sequence_without_a_mask(tokenizer, backbone: str) -> None:
    model = make_tiny_model(tokenizer, backbone=backbone)
    ids, mask = model.grade_prompt_ids, model.grade_prompt_mask
    assert bool((mask[:, -1] == 0).all())  # the pooled last position is padding, as SigLIP was trained
    with torch.no_grad():
        assert torch.equal(model.encode_text(ids, mask), model.encode_text(ids))
        pooled = model.backbone.text_model(input_ids=ids).pooler_output
        assert torch.allclose(model.encode_text(ids, mask), F.normalize(pooled, dim=-1), atol=1e-6)


def test_siglip2_prompts_are_lowercased() -> None:
    if "siglip2" not in supported_backbones():
        pytest.skip("no Siglip2Model in this transformers")
    tokenizer = no_bos_tokenizer()  # case-sensitive, unlike CLIP's
    models = {}
    for backbone in ("siglip", "siglip2"):
        torch.manual_seed(0)
        models[backbone] = AGQGForImageQualityAssessment.from_backbone(
            tiny_backbone(backbone, tokenizer), tokenizer=tokenizer
        )
    for backbone, lowercased in (("siglip2", True), ("siglip", False)):
        upper = models[backbone].tokenize_alignment_prompts(tokenizer, ["A RED Car"])["input_ids"]
        lower = models[backbone].tokenize_alignment_prompts(tokenizer, ["a red car"])["input_ids"]
        assert torch.equal(upper, lower) == lowercased, backbone


# --- preprocessing ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("resample", [3, 2])  # SigLIP's default bicubic; bilinear (SigLIP 2's filter)
@pytest.mark.parametrize("size", [(224, 224), (300, 700), (701, 299), (100, 60), (1, 500), (31, 32)])
def test_pixel_spec_reproduces_the_siglip_processor(size: tuple[int, int], resample: int) -> None:
    processor = image_processor_class_for("SiglipImageProcessor")(size={"height": 96, "width": 96}, resample=resample)
    spec = PixelSpec.from_image_processor(processor)
    assert spec is not None and spec.resize_hw == (96, 96) and spec.mean == (0.5, 0.5, 0.5)
    image = _image(*size, seed=sum(size))
    reference = rgb_pixel_values(processor, image)[0]
    assert torch.allclose(resized_view(image, spec), reference, atol=EXACT_ATOL, rtol=0)


@pytest.mark.parametrize("size", [(346, 346), (300, 700), (701, 299), (31, 32)])
@pytest.mark.parametrize(
    "settings",
    [
        # kakaobrain/align-base's processor: resize, centre crop, x / 127.5 - 1 and no normalisation.
        {"size": {"height": 64, "width": 64}, "crop_size": {"height": 56, "width": 56}, "rescale_factor": 1 / 127.5},
        # The tiny ALIGN's (`AlignAdapter.default_image_processor`): a fixed bilinear resize, no crop.
        {"size": {"height": 32, "width": 32}, "do_center_crop": False, "rescale_factor": 1 / 127.5, "resample": 2},
        # The offset before a mean/std normalisation.
        {"size": {"height": 32, "width": 32}, "do_center_crop": False, "do_normalize": True, "resample": 3},
    ],
)
def test_pixel_spec_reproduces_the_efficientnet_processor(size: tuple[int, int], settings: dict) -> None:
    """ALIGN's `EfficientNetImageProcessor` with `rescale_offset` (x * rescale_factor - 1): reproduced exactly."""
    defaults = {"rescale_offset": True, "do_normalize": False, "include_top": False}
    processor = image_processor_class_for("EfficientNetImageProcessor")(**{**defaults, **settings})
    spec = PixelSpec.from_image_processor(processor)
    assert spec is not None
    image = _image(*size, seed=sum(size))
    reference = rgb_pixel_values(processor, image)[0]
    assert torch.allclose(resized_view(image, spec), reference, atol=EXACT_ATOL, rtol=0)
    # include_top divides by the std a second time: not reproduced, left to the processor.
    top = image_processor_class_for("EfficientNetImageProcessor")(**{**defaults, **settings, "include_top": True})
    assert PixelSpec.from_image_processor(top) is None


def test_align_embeddings_and_scale(tokenizer) -> None:
    """ALIGN: the image embedding is the spatial mean of the EfficientNet tower's last map (no projection), the text
    embedding the projection of the BERT tower's position 0, and tau = 1 / temperature; any view size encodes."""
    model = make_tiny_model(tokenizer, backbone="align")
    tau, bias = model.similarity_scale()
    assert float(tau.detach()) == pytest.approx(1 / float(model.backbone.temperature.detach())) and bias is None
    pixels = torch.rand(2, 3, 48, 40)
    with torch.no_grad():
        feature_map = model.backbone.vision_model(pixel_values=pixels).last_hidden_state
        assert feature_map.shape == (2, 32, 6, 5)  # output stride 8, projection_dim 32 channels
        assert torch.allclose(model.get_image_embeds(pixels), F.normalize(feature_map.mean((2, 3)), dim=-1), atol=1e-6)
        ids, mask = model.grade_prompt_ids, model.grade_prompt_mask
        hidden = model.backbone.text_model(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
        own = F.normalize(model.backbone.text_projection(hidden), dim=-1)
        assert torch.allclose(model.encode_text(ids, mask), own, atol=1e-6)


@pytest.mark.parametrize("side", [32, 64, 45])
def test_siglip2_patches_match_its_processor(tokenizer, side: int) -> None:
    """A square image (NaFlex size 32x32 for 16 patches of 8 pixels): the fixed-size processor + `patchify` give
    exactly `Siglip2ImageProcessor`'s patch sequence, mask and grid, and the same embedding."""
    if "siglip2" not in supported_backbones():
        pytest.skip("no Siglip2Model in this transformers")
    model = make_tiny_model(tokenizer, backbone="siglip2")
    naflex = image_processor_class_for("Siglip2ImageProcessor")(patch_size=8, max_num_patches=16)
    image = _image(side, side, seed=side)
    reference = naflex(images=[image], return_tensors="pt")
    views = rgb_pixel_values(model.image_processor, [image])
    patches, shapes = patchify(views, 8)
    assert patches.shape == reference["pixel_values"].shape == (1, 16, 3 * 8 * 8)
    assert torch.allclose(patches, reference["pixel_values"], atol=EXACT_ATOL, rtol=0)
    assert torch.equal(shapes, reference["spatial_shapes"]) and bool(reference["pixel_attention_mask"].all())
    with torch.no_grad():
        own = model.backbone.vision_model(
            reference["pixel_values"], reference["pixel_attention_mask"], reference["spatial_shapes"]
        ).pooler_output
        assert torch.allclose(model.get_image_embeds(views), F.normalize(own, dim=-1), atol=1e-5)
    with pytest.raises(ValueError, match="multiples of the patch size"):
        patchify(torch.zeros(1, 3, 30, 32), 8)


# --- host presets -----------------------------------------------------------------------------------------------

# The model options of the five host presets (training/configs/hosts/*.yaml; LIQE with short word lists).
HOSTS = {
    "clip-iqa": {"grade_names": ["bad", "good"], "grade_prompt_sets": [["Bad photo."], ["Good photo."]]},
    "liqe": {"multitask_scenes": ["animal", "human"], "multitask_distortions": ["blur", "noise", "other"]},
    "ipce": {"view_protocol": {"scheme": "ipce", "num_crops": 3, "short_side": 40}},
    "coop": {"prompt_templates": ["{grade} quality."], "prompt_learning": "coop", "num_context_tokens": 4},
    "maple": {
        "prompt_templates": ["{grade} quality."],
        "prompt_learning": "maple",
        "num_context_tokens": 2,
        "prompt_depth": 2,
    },
}


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("host", list(HOSTS))
@pytest.mark.parametrize("grading", ["agqg", "softmax"])
def test_every_host_preset_trains_saves_and_loads_with_every_backbone(
    tokenizer, tmp_path: Path, backbone: str, host: str, grading: str
) -> None:
    if backbone == "align" and host == "maple":
        with pytest.raises(ValueError, match="MaPLe's vision prompts are tokens of a ViT"):
            make_tiny_model(tokenizer, backbone=backbone, grading=grading, **HOSTS[host])
        return
    model = make_tiny_model(tokenizer, backbone=backbone, grading=grading, **HOSTS[host])
    protocol = model.view_protocol()
    pixels = torch.rand(2, 3, 48, 40)
    model.train()
    prompt = ["a red car", "a cat"] if host == "ipce" else None
    output = model.score_pixels(pixels, prompt=prompt, labels=torch.tensor([2.0, 4.0]))
    output.loss.backward()
    if model.prompt_learner is not None:
        assert float(model.prompt_learner.context.grad.abs().sum()) > 0
        if host == "maple":
            assert float(model.prompt_learner.vision_projections[0].weight.grad.abs().sum()) > 0
    assert protocol.num_views() == (4 if host == "ipce" else 1)
    model.eval()
    model.save_pretrained(tmp_path / "model")
    loaded = AGQGForImageQualityAssessment.from_pretrained(tmp_path / "model")
    with torch.no_grad():
        assert torch.allclose(loaded.score_pixels(pixels).score, model.score_pixels(pixels).score, atol=1e-5)


def test_prompt_learning_finds_the_context_after_any_start_token(tmp_path: Path) -> None:
    """SigLIP's tokenizer adds no start token: the context tokens sit at position 0, recorded in the config."""
    tokenizer = no_bos_tokenizer()
    torch.manual_seed(0)
    backbone = tiny_backbone("siglip", tokenizer)
    model = AGQGForImageQualityAssessment.from_backbone(backbone, tokenizer=tokenizer, **HOSTS["coop"])
    assert model.config.context_offset == 0 and model.prompt_learner.offset == 0
    placeholder = tokenizer("X", add_special_tokens=False)["input_ids"][0]
    assert bool((model.grade_prompt_ids[:, :4] == placeholder).all())
    model.save_pretrained(tmp_path / "model")
    loaded = AGQGForImageQualityAssessment.from_pretrained(tmp_path / "model")
    assert loaded.prompt_learner.offset == 0
    assert type(loaded.tokenizer).__name__ == type(tokenizer).__name__  # AutoTokenizer-style: the saved class
    assert torch.equal(loaded.grade_prompt_ids, model.grade_prompt_ids)
    pixels = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(pixels).score, model(pixels).score, atol=1e-6)
    left = no_bos_tokenizer()
    left.padding_side = "left"
    with pytest.raises(ValueError, match="pads on the left"):
        AGQGForImageQualityAssessment.from_backbone(tiny_backbone("siglip", left), tokenizer=left, **HOSTS["coop"])


# --- folders saved before backbones existed --------------------------------------------------------------------


def test_a_folder_saved_by_main_before_backbones_loads_unchanged(tmp_path: Path) -> None:
    """tests/fixtures/agqg_main_clip_coop was saved by main before this change (config `clip_config`, weights under
    `clip.`; a CoOp model): the new class loads every weight, scores it exactly as main did, and saves it with
    `backbone_config` (the weights keep their `clip.` names: the backbone is still the submodule `clip`)."""
    from safetensors import safe_open

    expected = json.loads((LEGACY_FOLDER / "expected_scores.json").read_text())
    config = json.loads((LEGACY_FOLDER / "config.json").read_text())
    assert "clip_config" in config and "backbone_config" not in config
    with safe_open(str(LEGACY_FOLDER / "model.safetensors"), "pt") as weights:
        legacy = {key: weights.get_tensor(key) for key in weights.keys()}  # noqa: SIM118
    assert any(key.startswith("clip.") for key in legacy)

    model = AGQGForImageQualityAssessment.from_pretrained(LEGACY_FOLDER)
    assert model.config.backbone_type == "clip" and model.config.context_offset == 1
    state = model.state_dict()
    assert set(state) == set(legacy) and model.backbone is model.clip
    for key, value in legacy.items():
        assert torch.equal(state[key], value), key
    pixels = legacy_pixels()
    with torch.no_grad():
        output = model(pixels)
        prompted = model(pixels, **model.tokenize_alignment_prompts(model.tokenizer, ["a red car", "a cat"]))
    assert output.score.tolist() == pytest.approx(expected["score"], abs=1e-5)
    assert output.grade_probs.tolist() == [pytest.approx(row, abs=1e-5) for row in expected["grade_probs"]]
    assert prompted.score.tolist() == pytest.approx(expected["prompted_score"], abs=1e-5)

    model.save_pretrained(tmp_path / "resaved")
    with safe_open(str(tmp_path / "resaved" / "model.safetensors"), "pt") as weights:
        assert set(weights.keys()) == set(legacy)
    saved_config = json.loads((tmp_path / "resaved" / "config.json").read_text())
    assert saved_config["backbone_config"]["model_type"] == "clip" and "clip_config" not in saved_config
    again = AGQGForImageQualityAssessment.from_pretrained(tmp_path / "resaved")
    with torch.no_grad():
        assert again(pixels).score.tolist() == pytest.approx(expected["score"], abs=1e-5)
