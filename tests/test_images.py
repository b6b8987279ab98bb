"""Every kind of image file a user might score, and the errors for files that cannot be scored."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from modeling_agqg import ImageLoadError, load_image_file


@pytest.fixture(scope="module")
def pipe(tokenizer):
    from conftest import make_tiny_model
    from transformers import pipeline

    model = make_tiny_model(tokenizer)
    return pipeline("image-quality", model=model, image_processor=model.image_processor, tokenizer=tokenizer)


def _gradient(size: tuple[int, int] = (40, 30)) -> Image.Image:
    width, height = size
    pixels = torch.stack(torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij"), -1)
    rgb = torch.cat([pixels * 4, (pixels[..., :1] + pixels[..., 1:]) * 2], -1).clamp(0, 255).to(torch.uint8)
    return Image.fromarray(rgb.numpy(), "RGB")


def _write_kinds(folder: Path) -> dict[str, Path]:
    base = _gradient()
    paths = {}
    paths["grayscale"] = folder / "gray.png"
    base.convert("L").save(paths["grayscale"])
    paths["rgba"] = folder / "rgba.png"
    rgba = base.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(paths["rgba"])
    paths["palette"] = folder / "palette.gif"
    base.convert("P", palette=Image.Palette.ADAPTIVE).save(paths["palette"])
    paths["16bit"] = folder / "deep.png"
    deep = (torch.arange(30 * 40).reshape(30, 40) * 50).to(torch.int32)
    Image.fromarray(deep.numpy().astype("uint16")).save(paths["16bit"])
    paths["cmyk"] = folder / "cmyk.jpg"
    base.convert("CMYK").save(paths["cmyk"], quality=95)
    paths["exif"] = folder / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    base.save(paths["exif"], exif=exif, quality=95)
    return paths


def test_every_image_kind_is_scored(pipe, tmp_path: Path) -> None:
    paths = _write_kinds(tmp_path)
    results = pipe([str(p) for p in paths.values()], batch_size=3)
    assert len(results) == len(paths)
    for kind, result in zip(paths, results, strict=True):
        assert 1.0 <= result["score"] <= 5.0, kind
        assert sum(result["grade_probs"].values()) == pytest.approx(1.0, abs=1e-5), kind


def test_conversions_keep_the_picture(tmp_path: Path) -> None:
    paths = _write_kinds(tmp_path)
    for kind, path in paths.items():
        assert load_image_file(path).mode == "RGB", kind
    assert load_image_file(paths["exif"]).size == (30, 40), "EXIF orientation must be applied"
    deep = load_image_file(paths["16bit"]).convert("L")
    assert deep.getextrema()[1] > 200 and deep.getextrema()[0] == 0, "16-bit range must be rescaled, not clipped"
    assert deep.getpixel((39, 29)) < 255 and deep.getpixel((20, 15)) > deep.getpixel((5, 5))
    rgba = load_image_file(paths["rgba"])
    assert rgba.getpixel((0, 0)) == pytest.approx((127, 127, 127), abs=2), "half-transparent black over white is grey"


def test_pil_images_are_accepted(pipe) -> None:
    assert 1.0 <= pipe(_gradient().convert("LA"))["score"] <= 5.0


@pytest.mark.parametrize("size", [(500, 1), (1, 500), (1, 1), (3, 2)])
def test_extreme_shapes_are_scored_like_any_image(pipe, size: tuple[int, int]) -> None:
    """Degenerate sizes: transformers 4.x guesses the channel axis of a 1-pixel-tall array wrongly unless told."""
    from modeling_agqg import rgb_pixel_values

    image = _gradient(size)
    pixel_values = rgb_pixel_values(pipe.image_processor, image)
    assert pixel_values.shape == (1, 3, 32, 32)
    result = pipe(image)
    assert 1.0 <= result["score"] <= 5.0
    with torch.no_grad():
        expected = pipe.model(pixel_values=pixel_values).score.item()
    assert result["score"] == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "file not found"),
        ("text", "not an image"),
        ("truncated", "truncated or corrupt"),
        ("folder", "folder"),
    ],
)
def test_bad_inputs_name_the_file(pipe, tmp_path: Path, kind: str, message: str) -> None:
    path = tmp_path / f"bad_{kind}.jpg"
    if kind == "text":
        path.write_text("this is not an image")
    elif kind == "truncated":
        full = tmp_path / "full.jpg"
        _gradient((256, 256)).save(full, quality=95)
        data = full.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "folder":
        path.mkdir()
    with pytest.raises(ImageLoadError, match=message) as error:
        pipe(str(path))
    assert str(path) in str(error.value)


def test_wrong_input_types_are_explained(pipe) -> None:
    with pytest.raises(ImageLoadError, match="'image' key"):
        pipe({"picture": "x.jpg"})
    with pytest.raises(ImageLoadError, match="int"):
        load_image_file(42)


def test_real_dataset_images_are_scored(pipe, shared_data: Path) -> None:
    """Real AGIQA-3K JPEGs (including the all-black one), a KADID PNG and a downscaled SPAQ photo."""
    paths = sorted((shared_data / "AGIQA-3K" / "images").glob("*.jpg"))
    paths += sorted((shared_data / "KADID-10k" / "images").glob("*.png"))
    paths += sorted((shared_data / "SPAQ" / "images").glob("*.jpg"))
    assert len(paths) >= 3
    results = pipe([str(p) for p in paths], batch_size=4)
    assert all(1.0 <= r["score"] <= 5.0 for r in results)
    black = [r for p, r in zip(paths, results, strict=True) if p.name == "DALLE2_normal_253.jpg"]
    assert black and all(v == v for v in black[0]["grade_probs"].values()), "all-black image gives finite probabilities"
