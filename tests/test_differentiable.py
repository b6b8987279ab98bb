"""`model.score_pixels`: the view protocol and the processor's arithmetic in torch, differentiable, against the
PIL pipeline; gradients reach the pixels; the documented gradient-ascent example raises the score."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import BACKBONES, make_tiny_model
from PIL import Image

from modeling_agqg.views_agqg import PixelSpec, ViewProtocol, make_views, tensor_resize, tensor_views

REPO_ROOT = Path(__file__).resolve().parents[1]
# Views small enough for the tiny 32-pixel models (ipce: a 64-pixel shorter side instead of 512).
PROTOCOLS = {
    "resize": "resize",
    "crops": "crops:3",
    "ipce": {"scheme": "ipce", "num_crops": 3, "short_side": 64, "large_side": 1024},
}


def _image(height: int, width: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (max(height // 8, 2), max(width // 8, 2), 3), dtype=np.uint8)
    image = Image.fromarray(base).resize((width, height), Image.Resampling.BILINEAR)
    noise = rng.integers(-12, 12, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.int64) + noise, 0, 255).astype(np.uint8))


def _pixels(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).unsqueeze(0).float() / 255


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("scheme", list(PROTOCOLS))
def test_score_pixels_equals_the_pipeline(tokenizer, tmp_path: Path, backbone: str, scheme: str) -> None:
    """Same image, same protocol: the pipeline (PIL) and score_pixels (torch) agree to 1e-3 on the score, and to
    float rounding where nothing is resized (an image at the model's size); with PIL's 8-bit rounding
    (`quantize=True`) too."""
    from transformers import pipeline

    model = make_tiny_model(tokenizer, backbone=backbone, view_protocol=PROTOCOLS[scheme])
    scorer = pipeline("image-quality", model=model, trust_remote_code=True)
    for size in [(32, 32), (45, 38), (120, 90), (20, 70)]:
        image = _image(*size, seed=sum(size))
        path = tmp_path / f"{size[0]}x{size[1]}.png"
        image.save(path)
        expected = scorer(str(path))
        with torch.no_grad():
            ours = model.score_pixels(_pixels(image))
            quantized = model.score_pixels(_pixels(image), quantize=True)
        exact = size == (32, 32) and scheme != "ipce"  # ipce enlarges every 32-pixel image
        tolerance = 1e-5 if exact else 1e-3
        assert ours.score.item() == pytest.approx(expected["score"], abs=tolerance), size
        assert ours.grade_std.item() == pytest.approx(expected["grade_std"], abs=tolerance)
        assert quantized.score.item() == pytest.approx(expected["score"], abs=tolerance), size


PROCESSORS = {
    "clip": ("CLIPImageProcessor", {"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}}),
    "siglip": ("SiglipImageProcessor", {"size": {"height": 32, "width": 32}}),  # bicubic, SigLIP's default
    "siglip2": ("SiglipImageProcessor", {"size": {"height": 32, "width": 32}, "resample": 2}),  # bilinear
    "align": (  # the tiny ALIGN's: bilinear, x / 127.5 - 1
        "EfficientNetImageProcessor",
        {
            "size": {"height": 32, "width": 32},
            "resample": 2,
            "do_center_crop": False,
            "rescale_factor": 1 / 127.5,
            "rescale_offset": True,
            "do_normalize": False,
            "include_top": False,
        },
    ),
}


@pytest.mark.parametrize("processor", list(PROCESSORS))
@pytest.mark.parametrize("scheme", list(PROTOCOLS))
def test_tensor_views_reproduce_make_views(processor: str, scheme: str) -> None:
    """View by view, in 8-bit units: within about one level of PIL's views (PIL rounds to 8 bits after each
    resize pass), 0.3 levels on average; equal where nothing is resized. With `quantize=True` (PIL's rounding,
    horizontal pass first) most views are equal, and none is further from PIL's than the float one."""
    from modeling_agqg.backbones_agqg import image_processor_class_for

    name, settings = PROCESSORS[processor]
    spec = PixelSpec.from_image_processor(image_processor_class_for(name)(**settings))
    protocol = ViewProtocol.parse(PROTOCOLS[scheme]).with_crop_size(32)
    std = torch.tensor(spec.std).view(3, 1, 1)  # levels: differences on the 0-255 scale
    for size in [(45, 38), (150, 100), (20, 70), (32, 32)]:
        image = _image(*size, seed=size[0])
        reference = make_views(image, protocol, spec)
        ours = tensor_views(_pixels(image), protocol, spec)
        assert ours.shape == reference.shape
        levels = (ours - reference).abs() * std / spec.rescale_factor
        assert float(levels.max()) < 1.5 and float(levels.mean()) < 0.4, (size, float(levels.max()))
        if size == (32, 32) and scheme != "ipce":
            assert float(levels.max()) < 1e-3
        quantized = (
            (tensor_views(_pixels(image), protocol, spec, quantize=True) - reference).abs() * std / spec.rescale_factor
        )
        assert float(quantized.max()) < 1.0 + 1e-3 and float(quantized.mean()) <= float(levels.mean()) + 1e-3
        if processor == "clip" or scheme == "ipce":  # horizontal-first images: PIL's pixels to a few in 10^3
            assert float((quantized > 1e-3).float().mean()) < 0.01, size


def test_tensor_resize_handles_both_filters_and_refuses_others() -> None:
    pixels = torch.rand(2, 3, 20, 30)
    assert tensor_resize(pixels, (20, 30), 3) is pixels
    assert tensor_resize(pixels, (10, 15), 2).shape == (2, 3, 10, 15)
    bicubic = tensor_resize(pixels, (40, 60), 3)
    assert float(bicubic.min()) >= 0.0 and float(bicubic.max()) <= 1.0  # overshoot clipped as PIL clips
    with pytest.raises(ValueError, match="LANCZOS"):
        tensor_resize(pixels, (10, 15), 1)


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("scheme", list(PROTOCOLS))
def test_gradients_reach_the_pixels(tokenizer, backbone: str, scheme: str) -> None:
    model = make_tiny_model(tokenizer, backbone=backbone, view_protocol=PROTOCOLS[scheme])
    model.requires_grad_(False)
    pixels = torch.rand(2, 3, 40, 52, requires_grad=True)
    output = model.score_pixels(pixels, prompt=["a red car", "a cat"])
    assert output.score.shape == (2,) and output.grade_std.shape == (2,)
    (output.score.sum() + output.grade_std.sum() + output.grade_entropy.sum()).backward()
    assert pixels.grad is not None and bool(torch.isfinite(pixels.grad).all())
    assert float(pixels.grad[0].abs().sum()) > 0 and float(pixels.grad[1].abs().sum()) > 0
    # PIL's rounding passes the gradient straight through.
    float_grad, pixels.grad = pixels.grad, None
    model.score_pixels(pixels, prompt=["a red car", "a cat"], quantize=True).score.sum().backward()
    assert bool(torch.isfinite(pixels.grad).all()) and float(pixels.grad.abs().sum()) > 0
    assert float_grad.shape == pixels.grad.shape
    # Image 0's score does not depend on image 1's pixels.
    pixels.grad = None
    model.score_pixels(pixels).score[0].backward()
    assert float(pixels.grad[1].abs().sum()) == 0.0


def test_score_pixels_equals_forward_on_the_views(tiny_model) -> None:
    pixels = torch.rand(3, 3, 50, 41)
    protocol = tiny_model.view_protocol()
    with torch.no_grad():
        direct = tiny_model(tensor_views(pixels, protocol, tiny_model.pixel_spec()))
        through = tiny_model.score_pixels(pixels)
    for name in ("score", "grade_probs", "ability", "grade_std", "grade_entropy"):
        assert torch.equal(getattr(direct, name), getattr(through, name)), name
    with pytest.raises(ValueError, match="float"):
        tiny_model.score_pixels(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="prompts"):
        tiny_model.score_pixels(pixels, prompt=["one", "two"])


def _example():
    spec = importlib.util.spec_from_file_location("quality_ascent", REPO_ROOT / "examples" / "quality_ascent.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("backbone", BACKBONES)
def test_thirty_steps_of_gradient_ascent_raise_the_score(backbone: str) -> None:
    """The documented example (examples/quality_ascent.py): 30 Adam steps on the pixels raise the score."""
    example = _example()
    model = example.tiny_model(backbone)
    pixels = example.generated_image()
    final, history = example.ascend(model, pixels, steps=30)
    assert len(history) == 31 and final.shape == pixels.shape
    assert 0.0 <= float(final.min()) and float(final.max()) <= 1.0
    assert history[-1] > history[0] + 0.01, history
    assert all(not p.requires_grad for p in model.parameters())
