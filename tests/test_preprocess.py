"""The fast preprocessing path against transformers' CLIP image processor, and the multi-crop grid."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from transformers import CLIPImageProcessor

from modeling_agqg import rgb_pixel_values
from modeling_agqg.tools.preprocess import (
    PreprocessSpec,
    crop_grid,
    make_views,
    normalize_batch,
    open_image,
    processor_views,
)

# Stated tolerances. exact: float32 rounding only. fast (JPEG draft decoding, used only for JPEGs at least
# twice the resize target on both sides): in 0-255 pixel units, mean |difference| <= 1 and max <= 8.
EXACT_ATOL = 1e-5
FAST_MEAN_PIXELS = 1.0
FAST_MAX_PIXELS = 8.0


def _processor(**kwargs) -> CLIPImageProcessor:
    return CLIPImageProcessor(**kwargs)


def _reference(processor: CLIPImageProcessor, image: Image.Image) -> torch.Tensor:
    return rgb_pixel_values(processor, image)


def _ours(spec: PreprocessSpec, source, name: str = "x", draft: bool = False) -> torch.Tensor:
    image = open_image(source, name, spec if draft else None)
    return normalize_batch(make_views(image, spec, 0), spec)


def _smooth_image(height: int, width: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (max(height // 8, 2), max(width // 8, 2), 3), dtype=np.uint8)
    image = Image.fromarray(base).resize((width, height), Image.Resampling.BILINEAR)
    noise = rng.integers(-12, 12, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.int64) + noise, 0, 255).astype(np.uint8))


@pytest.mark.parametrize(
    "size",
    [(224, 224), (512, 512), (300, 700), (701, 299), (100, 60), (224, 225), (1, 500)],
)
@pytest.mark.parametrize("kwargs", [{}, {"size": {"height": 96, "width": 128}, "do_center_crop": False}])
def test_exact_mode_matches_the_image_processor(size: tuple[int, int], kwargs: dict) -> None:
    processor = _processor(**kwargs)
    spec = PreprocessSpec.from_image_processor(processor)
    assert spec is not None
    image = _smooth_image(*size, seed=sum(size))
    reference = _reference(processor, image)
    ours = _ours(spec, image)
    assert ours.shape == reference.shape
    assert torch.allclose(ours, reference, atol=EXACT_ATOL, rtol=0)


def test_exact_mode_matches_on_real_images(shared_data: Path) -> None:
    processor = _processor()
    spec = PreprocessSpec.from_image_processor(processor)
    files = sorted(shared_data.glob("*/images/*.jpg")) + sorted(shared_data.glob("*/*.jpg"))
    assert files
    for path in files:
        reference = _reference(processor, Image.open(path).convert("RGB"))
        assert torch.allclose(_ours(spec, str(path), draft=False), reference, atol=EXACT_ATOL, rtol=0), path
        # 512x512 and smaller are below the draft threshold: fast mode decodes them in full, so it is exact too.
        assert torch.allclose(_ours(spec, str(path), draft=True), reference, atol=EXACT_ATOL, rtol=0), path


def _pixel_difference(ours: torch.Tensor, reference: torch.Tensor, spec: PreprocessSpec) -> torch.Tensor:
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    return ((ours - reference) * std * 255).abs()


@pytest.mark.parametrize("side", [1024, 2048])
def test_fast_mode_is_within_tolerance_on_large_jpegs(side: int, shared_data: Path) -> None:
    processor = _processor()
    spec = PreprocessSpec.from_image_processor(processor)
    for path in sorted(shared_data.glob("AGIQA-3K/images/*.jpg")):
        large = Image.open(path).convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        large.save(buffer, "JPEG", quality=92)
        data = buffer.getvalue()
        reference = _reference(processor, Image.open(io.BytesIO(data)).convert("RGB"))
        difference = _pixel_difference(_ours(spec, data, draft=True), reference, spec)
        assert difference.mean() <= FAST_MEAN_PIXELS, (path, float(difference.mean()))
        assert difference.max() <= FAST_MAX_PIXELS, (path, float(difference.max()))
        drafted = Image.open(io.BytesIO(data))
        drafted.draft("RGB", (448, 448))
        assert drafted.size[0] < side  # the draft really decoded at reduced size


def test_unsupported_processor_settings_fall_back() -> None:
    assert PreprocessSpec.from_image_processor(None) is None
    assert PreprocessSpec.from_image_processor(_processor(size={"shortest_edge": 224, "longest_edge": 400})) is None
    spec = PreprocessSpec.from_image_processor(_processor(do_normalize=False))
    assert spec is not None and spec.mean is None


def test_processor_views_match_fast_views() -> None:
    processor = _processor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64})
    spec = PreprocessSpec.from_image_processor(processor)
    image = _smooth_image(120, 200, seed=3)
    ours = normalize_batch(make_views(image, spec, 5), spec)
    theirs = processor_views(image, processor, spec.output_hw, 5)
    assert ours.shape == theirs.shape == (6, 3, 64, 64)
    assert torch.allclose(ours, theirs, atol=EXACT_ATOL, rtol=0)


@settings(max_examples=200, deadline=None)
@given(
    height=st.integers(16, 600),
    width=st.integers(16, 600),
    crop=st.integers(8, 16),
    count=st.integers(1, 30),
)
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


def test_views_are_standard_view_then_crops() -> None:
    processor = _processor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    spec = PreprocessSpec.from_image_processor(processor)
    image = _smooth_image(96, 96, seed=1)
    views = make_views(image, spec, 4)
    assert views.shape == (5, 3, 32, 32) and views.dtype == torch.uint8
    assert torch.equal(views[0], make_views(image, spec, 0)[0])
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    assert torch.equal(views[1], pixels[:, :32, :32])  # first crop: top-left corner at native resolution
    assert torch.equal(views[-1], pixels[:, -32:, -32:])  # last crop: bottom-right corner
