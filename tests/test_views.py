"""The view protocol (`modeling_agqg/views_agqg.py`): the resized view against transformers' image processors,
the crop grid, IPCE's patches against a reference written from its published description, the aggregation of
views in the model, and bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_tiny_model
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from transformers import CLIPImageProcessor

from modeling_agqg import AGQGConfig, grm_grade_probs
from modeling_agqg.modeling_agqg import aggregate_view_grades, expected_grade
from modeling_agqg.views_agqg import (
    ImageLoadError,
    PixelSpec,
    ViewProtocol,
    crop_grid,
    crops_source_hw,
    load_image_file,
    make_views,
    resized_view,
    rgb_pixel_values,
)

EXACT_ATOL = 1e-5  # float32 rounding only
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _smooth_image(height: int, width: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (max(height // 8, 2), max(width // 8, 2), 3), dtype=np.uint8)
    image = Image.fromarray(base).resize((width, height), Image.Resampling.BILINEAR)
    noise = rng.integers(-12, 12, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.int64) + noise, 0, 255).astype(np.uint8))


def _spec(**kwargs) -> tuple[CLIPImageProcessor, PixelSpec]:
    processor = CLIPImageProcessor(**kwargs)
    spec = PixelSpec.from_image_processor(processor)
    assert spec is not None
    return processor, spec


# --- the resized view -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(224, 224), (512, 512), (300, 700), (701, 299), (100, 60), (224, 225), (1, 500)])
@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # CLIP: shortest edge 224, bicubic, centre crop
        {"size": {"height": 96, "width": 128}, "do_center_crop": False, "resample": 2},  # SigLIP-like fixed resize
    ],
)
def test_resized_view_matches_the_image_processor(size: tuple[int, int], kwargs: dict) -> None:
    processor, spec = _spec(**kwargs)
    image = _smooth_image(*size, seed=sum(size))
    reference = rgb_pixel_values(processor, image)[0]
    ours = resized_view(image, spec)
    assert ours.shape == reference.shape
    assert torch.allclose(ours, reference, atol=EXACT_ATOL, rtol=0)


def test_resized_view_matches_on_real_images(shared_data: Path) -> None:
    processor, spec = _spec()
    files = sorted(shared_data.glob("*/images/*.jpg")) + sorted(shared_data.glob("*/*.jpg"))
    assert files
    for path in files:
        image = load_image_file(path)
        assert torch.allclose(resized_view(image, spec), rgb_pixel_values(processor, image)[0], atol=EXACT_ATOL), path


def test_a_processor_that_cannot_be_reproduced_runs_itself() -> None:
    assert PixelSpec.from_image_processor(None) is None
    odd = CLIPImageProcessor(size={"shortest_edge": 32, "longest_edge": 40})
    assert PixelSpec.from_image_processor(odd) is None
    image = _smooth_image(50, 70, seed=0)
    assert torch.equal(make_views(image, ViewProtocol(), None, processor=odd)[0], rgb_pixel_values(odd, image)[0])
    with pytest.raises(ValueError, match="needs an image processor"):
        make_views(image, ViewProtocol.parse("crops:2"), None, processor=odd)


def test_extreme_aspect_ratio_resizes_only_the_kept_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over the pixel budget the resized view is computed from the window the centre crop keeps; it equals the
    full resize-then-crop up to rounding (within 4/255 in pixel units)."""
    processor, spec = _spec(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    image = _smooth_image(3, 900, seed=5)  # resized: 32 x 9600
    full = resized_view(image, spec)
    monkeypatch.setenv("AGQG_MAX_IMAGE_PIXELS", str(32 * 9600 - 1))
    windowed = resized_view(image, spec)
    pixels = (windowed - full).abs() * torch.tensor(CLIP_STD).view(3, 1, 1) * 255
    assert pixels.max() <= 4.0 and float(pixels.mean()) < 1.0


# --- protocols --------------------------------------------------------------------------------------------------


def test_protocol_specs_round_trip_through_the_config() -> None:
    assert ViewProtocol.parse(None if False else "resize").to_dict() == {"scheme": "resize"}
    crops = ViewProtocol.parse("crops:7")
    assert crops.to_dict() == {
        "scheme": "crops",
        "num_crops": 7,
        "train_crops": 1,
        "crop_size": None,
        "include_resized": True,
    }
    ipce = ViewProtocol.parse("ipce")
    assert (ipce.num_crops, ipce.train_crops, ipce.short_side, ipce.stride, ipce.large_stride) == (15, 8, 512, 32, 48)
    assert ipce.num_views() == 16 and ipce.num_views(train=True) == 9
    assert ViewProtocol.parse(json.dumps(crops.to_dict())) == crops
    config = AGQGConfig(view_protocol="ipce:4")
    assert AGQGConfig.from_dict(config.to_dict()).view_protocol == ViewProtocol.parse("ipce:4").to_dict()
    assert AGQGConfig().view_protocol == {"scheme": "resize"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tiles", "view scheme 'tiles'"),
        ("crops:x", "SCHEME:N"),
        ("resize:3", "takes no count"),
        ({"scheme": "crops", "stride": 3}, "no option"),
        ({"scheme": "crops", "num_crops": 0}, "num_crops >= 1"),
        (3, "cannot read a view protocol"),
    ],
)
def test_bad_protocols_are_refused_with_the_reason(spec, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ViewProtocol.parse(spec)


@settings(max_examples=200, deadline=None)
@given(height=st.integers(16, 600), width=st.integers(16, 600), crop=st.integers(8, 16), count=st.integers(1, 30))
def test_crop_grid_covers_the_image_evenly(height: int, width: int, crop: int, count: int) -> None:
    corners = crop_grid(height, width, crop, crop, count)
    assert len(corners) == count
    for top, left in corners:
        assert 0 <= top <= height - crop and 0 <= left <= width - crop
    if count >= 4 and height > crop and width > crop:
        tops = sorted({t for t, _ in corners})
        assert tops[0] == 0 or len(tops) == 1
        assert tops[-1] == height - crop or len(tops) == 1
    assert len(set(corners)) == len(corners) or height - crop < count or width - crop < count


def test_crops_are_native_resolution_crops_then_the_resized_view() -> None:
    _, spec = _spec(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    image = _smooth_image(96, 96, seed=1)
    views = make_views(image, ViewProtocol.parse("crops:4"), spec)
    assert views.shape == (5, 3, 32, 32) and views.dtype == torch.float32
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    assert torch.allclose(views[0], spec.normalize(pixels[:, :32, :32]))  # top-left corner at native resolution
    assert torch.allclose(views[3], spec.normalize(pixels[:, -32:, -32:]))  # bottom-right corner
    assert torch.equal(views[-1], resized_view(image, spec))
    no_whole = make_views(
        image, ViewProtocol.from_dict({"scheme": "crops", "num_crops": 4, "include_resized": False}), spec
    )
    assert torch.equal(no_whole, views[:4])


@pytest.mark.parametrize("height, width", [(32, 32), (33, 40), (40, 200), (96, 96), (20, 45)])
def test_crop_views_equal_each_grid_window_normalised(height: int, width: int) -> None:
    """Every view is its grid window's pixels, normalised, also where grid positions coincide (an image of the
    crop's size: one window for all 16; barely larger: a few), which `_crop_views` cuts once each."""
    _, spec = _spec(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    image = _smooth_image(height, width, seed=5)
    views = make_views(
        image, ViewProtocol.from_dict({"scheme": "crops", "num_crops": 16, "include_resized": False}), spec
    )
    source_h, source_w = crops_source_hw(height, width, 32)
    if (source_h, source_w) != (height, width):
        image = image.resize((source_w, source_h), resample=spec.resample)
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    corners = crop_grid(source_h, source_w, 32, 32, 16)
    expected = torch.stack([spec.normalize(pixels[:, top : top + 32, left : left + 32]) for top, left in corners])
    assert views.shape == (16, 3, 32, 32)
    torch.testing.assert_close(views, expected, rtol=0, atol=1e-6)


def test_small_images_are_enlarged_until_a_crop_fits() -> None:
    _, spec = _spec(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    views = make_views(_smooth_image(10, 50, seed=2), ViewProtocol.parse("crops:3"), spec)
    assert views.shape == (4, 3, 32, 32)


def test_training_views_are_random_but_reproducible() -> None:
    _, spec = _spec(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    image = _smooth_image(120, 90, seed=3)
    protocol = ViewProtocol.from_dict({"scheme": "crops", "train_crops": 3, "include_resized": False})

    def draw(seed: int) -> torch.Tensor:
        return make_views(image, protocol, spec, train=True, generator=torch.Generator().manual_seed(seed))

    assert draw(0).shape == (3, 3, 32, 32)
    assert torch.equal(draw(0), draw(0)) and not torch.equal(draw(0), draw(1))


def _ipce_reference(image: Image.Image, patch: int, count: int, short_side: int, strides=(32, 48), large=1024):
    """IPCE's test-time views, written from its published description: adaptive resize (bilinear, shorter side
    up to `short_side` when smaller), ToTensor + CLIP normalisation, unfold into patch x patch windows, N of
    them at a stride of (number of patches // N), and the whole image resized with F.interpolate."""
    width, height = image.size
    if min(width, height) < short_side:
        if width <= height:
            size = (short_side, int(short_side * height / width))
        else:
            size = (int(short_side * width / height), short_side)
        image = image.resize(size, Image.Resampling.BILINEAR)
    tensor = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    tensor = (tensor - torch.tensor(CLIP_MEAN).view(3, 1, 1)) / torch.tensor(CLIP_STD).view(3, 1, 1)
    tensor = tensor.unsqueeze(0)
    step = strides[1] if tensor.shape[2] >= large or tensor.shape[3] >= large else strides[0]
    patches = (
        tensor.unfold(2, patch, step).unfold(3, patch, step).permute(2, 3, 0, 1, 4, 5).reshape(-1, 3, patch, patch)
    )
    stride = patches.shape[0] // count
    chosen = patches[torch.arange(count) * stride]
    whole = F.interpolate(tensor, size=(patch, patch), mode="bilinear", align_corners=False)
    return torch.cat([chosen, whole])


@pytest.mark.parametrize(
    ("size", "protocol"),
    [
        ((60, 45), {"num_crops": 3, "short_side": 64, "large_side": 1024}),  # brought up to a 64 px shorter side
        ((300, 200), {"num_crops": 15, "short_side": 64, "large_side": 1024}),  # kept at native resolution
        ((150, 40), {"num_crops": 3, "short_side": 48, "large_side": 150}),  # long side >= large_side: stride 48
    ],
)
def test_ipce_views_match_the_published_protocol(size: tuple[int, int], protocol: dict) -> None:
    _, spec = _spec(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    image = _smooth_image(size[1], size[0], seed=size[0])
    ours = make_views(image, ViewProtocol.from_dict({"scheme": "ipce", "crop_size": 32, **protocol}), spec)
    reference = _ipce_reference(image, 32, protocol["num_crops"], protocol["short_side"], large=protocol["large_side"])
    assert ours.shape == reference.shape == (protocol["num_crops"] + 1, 3, 32, 32)
    assert torch.allclose(ours, reference, atol=1e-5), float((ours - reference).abs().max())


def test_ipce_with_fewer_patches_than_asked_spreads_them_with_repeats() -> None:
    from modeling_agqg.views_agqg import ipce_patch_indices

    assert ipce_patch_indices(100, 15, train=False) == [6 * i for i in range(15)]
    assert ipce_patch_indices(4, 6, train=False) == [0, 0, 1, 2, 2, 3]


def test_ipce_training_draws_patches_with_replacement() -> None:
    _, spec = _spec(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    protocol = ViewProtocol.from_dict({"scheme": "ipce", "crop_size": 32, "short_side": 64, "train_crops": 8})
    views = make_views(_smooth_image(64, 64, seed=4), protocol, spec, train=True, generator=torch.Generator())
    assert views.shape == (9, 3, 32, 32)


# --- aggregation in the model ---------------------------------------------------------------------------------


def test_mean_aggregation_is_the_mean_of_the_views_distributions() -> None:
    probs = torch.softmax(torch.randn(6, 5), -1)
    ability = torch.randn(6)
    combined, theta = aggregate_view_grades("mean", 3, probs, ability, torch.randn(6, 5))
    assert torch.allclose(combined, probs.view(2, 3, 5).mean(1)) and torch.allclose(theta, ability.view(2, 3).mean(1))


def test_ipce_aggregation_follows_the_two_view_rule() -> None:
    logits = torch.randn(8, 5) * 3
    probs, theta = aggregate_view_grades("ipce", 4, logits.softmax(-1), torch.zeros(8), logits)
    per_image = logits.view(2, 4, 5)
    expected = (per_image[:, :3].mean(1).softmax(-1) + per_image[:, 3].softmax(-1)) / 2
    assert torch.allclose(probs, expected)
    assert torch.allclose(theta, expected_grade(expected) - 3)
    # AGQG grading: the ability takes the logits' place.
    ability = torch.randn(8)
    b, a = torch.tensor([-1.0, 0.0, 1.0, 2.0]), torch.tensor(2.0)
    probs, theta = aggregate_view_grades("ipce", 4, grm_grade_probs(ability, b, a), ability, logits, b, a)
    views = ability.view(2, 4)
    expected = (grm_grade_probs(views[:, :3].mean(1), b, a) + grm_grade_probs(views[:, 3], b, a)) / 2
    assert torch.allclose(probs, expected) and torch.allclose(probs.sum(-1), torch.ones(2))
    assert torch.allclose(theta, (views[:, :3].mean(1) + views[:, 3]) / 2)


@pytest.mark.parametrize("grading", ["agqg", "softmax"])
@pytest.mark.parametrize("scheme", ["crops:3", "ipce:3"])
def test_the_model_combines_views_per_image_and_scores_the_combination(tokenizer, grading: str, scheme: str) -> None:
    model = make_tiny_model(tokenizer, grading=grading, view_protocol=scheme)
    protocol = model.view_protocol()
    spec = model.pixel_spec()
    images = [_smooth_image(40, 56, seed=s) for s in range(2)]
    pixels = torch.cat([make_views(image, protocol, spec) for image in images])
    labels = torch.tensor([2.0, 4.0])
    with torch.no_grad():
        output = model(pixel_values=pixels, num_views=protocol.num_views(), labels=labels)
        one = [model(pixel_values=make_views(i, protocol, spec), num_views=protocol.num_views()) for i in images]
    assert output.score.shape == (2,) and output.grade_probs.shape == (2, 5) and output.ability.shape == (2,)
    assert torch.allclose(output.score, torch.cat([o.score for o in one]), atol=1e-6)
    expected_score = model.config.score_range[0] + (expected_grade(output.grade_probs) - 1) / 4 * (
        model.config.score_range[1] - model.config.score_range[0]
    )
    assert torch.allclose(output.score, expected_score, atol=1e-5)
    assert torch.allclose(output.loss, (output.score - labels).abs().mean())


@pytest.mark.parametrize("size", [(32, 32), (32, 33), (47, 33)])
def test_repeated_views_are_encoded_once_with_the_same_result(tokenizer, size: tuple[int, int]) -> None:
    """An image of the crop's size gives the grid one window N times (the quickstart's 32-pixel test crops under
    64 crops); an image a few pixels larger repeats neighbouring positions. The vision tower runs once per run of
    equal consecutive views (`get_view_embeds`, in `forward` and in the evaluation), and every score is the one
    of encoding all views. With gradients enabled (a training step, views whose gradient is wanted) every view is
    encoded."""
    model = make_tiny_model(tokenizer, view_protocol="crops:16").eval()
    protocol, spec = model.view_protocol(), model.pixel_spec()
    images = [_smooth_image(*size, seed=s) for s in range(3)]
    pixels = torch.cat([make_views(image, protocol, spec) for image in images])
    distinct = int(torch.unique_consecutive(pixels, dim=0).shape[0])
    encoded: list[int] = []
    encode = model.get_image_embeds

    def counting(views: torch.Tensor) -> torch.Tensor:
        encoded.append(views.shape[0])
        return encode(views)

    model.get_image_embeds = counting  # type: ignore[method-assign]
    with torch.no_grad():
        output = model(pixel_values=pixels, num_views=protocol.num_views())
        reference = model.score_image_embeds(encode(pixels), num_views=protocol.num_views())  # no sharing
    assert encoded == [distinct] and distinct < pixels.shape[0]
    if size == (32, 32):
        assert distinct == len(images)  # one window per image
    assert torch.allclose(output.score, reference.score, atol=1e-6)
    assert torch.allclose(output.grade_probs, reference.grade_probs, atol=1e-6)

    encoded.clear()
    model(pixel_values=pixels, num_views=protocol.num_views(), labels=torch.ones(len(images))).loss.backward()
    assert encoded == [pixels.shape[0]]  # a training step: no check on the hot path

    encoded.clear()
    wanted = pixels.clone().requires_grad_(True)
    model(pixel_values=wanted, num_views=protocol.num_views()).score.sum().backward()
    assert encoded == [pixels.shape[0]] and wanted.grad is not None and bool((wanted.grad != 0).any(-1).all())


# --- bounded memory ----------------------------------------------------------------------------------------------


def _peak_rss_mb(code: str) -> float:
    probe = f"{code}\nimport resource\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return float(completed.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("scheme", ["resize", "crops:4"])
def test_extreme_shapes_do_not_take_all_memory(tmp_path: Path, scheme: str) -> None:
    """A 240 KB 40000x2 PNG once took 10 GB (the shorter side resized to 224 makes 4.5 billion pixels)."""
    path = tmp_path / "strip.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (2, 40000, 3), dtype=np.uint8)).save(path)
    baseline = _peak_rss_mb("import torch, transformers")
    peak = _peak_rss_mb(
        "from transformers import CLIPImageProcessor\n"
        "from modeling_agqg.views_agqg import PixelSpec, ViewProtocol, load_image_file, make_views\n"
        f"spec = PixelSpec.from_image_processor(CLIPImageProcessor())\n"
        f"views = make_views(load_image_file({str(path)!r}), ViewProtocol.parse({scheme!r}), spec)\n"
        "assert views.shape[1:] == (3, 224, 224)"
    )
    assert peak - baseline < 400, (peak, baseline)


def test_images_over_the_pixel_budget_are_refused_before_decoding(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "big.png"
    Image.new("1", (3000, 3000)).save(path)
    monkeypatch.setenv("AGQG_MAX_IMAGE_PIXELS", "1000000")
    with pytest.raises(ImageLoadError, match="pixel budget"):
        load_image_file(path)
    _, spec = _spec()
    monkeypatch.setenv("AGQG_MAX_IMAGE_PIXELS", "200000")
    with pytest.raises(ImageLoadError, match="ipce-resized image"):
        make_views(_smooth_image(2, 300, seed=0), ViewProtocol.parse("ipce"), spec)


# --- reduced JPEG decoding for the resize protocol --------------------------------------------------------------

# Stated tolerance of the reduced decode against a full decode, in 0-255 pixel units of the resized view.
DRAFT_MEAN_PIXELS = 1.0
DRAFT_MAX_PIXELS = 8.0


def _jpeg_bytes(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


@pytest.mark.parametrize("side", [1024, 2048])
def test_reduced_jpeg_decode_stays_within_the_stated_tolerance(side: int, shared_data: Path) -> None:
    from modeling_agqg.views_agqg import load_view_image

    _, spec = _spec()
    resize = ViewProtocol()
    files = sorted(shared_data.glob("AGIQA-3K/images/*.jpg"))
    assert files
    for path in files:
        data = _jpeg_bytes(load_image_file(path).resize((side, side), Image.Resampling.BICUBIC))
        full = resized_view(load_image_file(data), spec)
        reduced_image = load_view_image(data, resize, spec)
        assert reduced_image.size[0] < side  # the decoder really scaled down
        assert min(reduced_image.size) >= 2 * 224
        difference = (resized_view(reduced_image, spec) - full).abs() * torch.tensor(CLIP_STD).view(3, 1, 1) * 255
        assert float(difference.mean()) <= DRAFT_MEAN_PIXELS, (path, float(difference.mean()))
        assert float(difference.max()) <= DRAFT_MAX_PIXELS, (path, float(difference.max()))


def test_reduced_decode_only_for_the_resize_scheme_and_within_the_budget(monkeypatch) -> None:
    from modeling_agqg.views_agqg import load_view_image

    _, spec = _spec()
    data = _jpeg_bytes(_smooth_image(2048, 2048, seed=9))
    monkeypatch.setenv("AGQG_MAX_IMAGE_PIXELS", str(1_000_000))
    assert load_view_image(data, ViewProtocol(), spec).size == (512, 512)  # 1/4 scale: >= 2 x 224
    with pytest.raises(ImageLoadError, match="pixel budget"):
        load_view_image(data, ViewProtocol.parse("crops:4"), spec)  # crops need native resolution
    small = _jpeg_bytes(_smooth_image(300, 300, seed=9))
    assert load_view_image(small, ViewProtocol(), spec).size == (300, 300)  # nothing to gain: full decode
