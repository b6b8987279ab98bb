"""The `image-quality` pipeline of AGQG models.

`pipeline("image-quality", model=folder_or_repo, trust_remote_code=True)` loads this file from the
model's `custom_pipelines`. A remote-code config is not in transformers' processor mappings, so the
pipeline takes its image processor and tokenizer from the model (which loads them from the same
folder) instead of relying on `pipeline()` to find them.

This file is Hub remote code: it imports only the standard library, torch, transformers and its
sibling files. PIL is reached through `transformers.image_utils`, which image processing requires
anyway, so it adds no dependency.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from transformers import Pipeline
from transformers.image_utils import PIL

Image = PIL.Image
ImageOps = PIL.ImageOps


class ImageLoadError(ValueError):
    """An input that cannot be scored; the message names the input."""


def load_image_file(source: Any) -> Any:
    """Opens an image as 8-bit RGB, whatever its storage.

    Accepts a path (str or `os.PathLike`) or a PIL image. EXIF orientation is applied; 16-bit and
    32-bit greyscale are rescaled (not clipped) to 8 bits; transparency is composited onto white;
    palette, greyscale, CMYK and other modes are converted to RGB.

    Raises:
        ImageLoadError: the file is missing, not an image, truncated or otherwise unreadable.
    """
    if isinstance(source, Image.Image):
        image, name = source, f"<PIL image {source.size[0]}x{source.size[1]} {source.mode}>"
    elif isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        if not os.path.exists(name):
            raise ImageLoadError(f"{name}: file not found")
        if os.path.isdir(name):
            raise ImageLoadError(f"{name}: is a folder, not an image file")
        try:
            image = Image.open(name)
            image.load()
        except PIL.UnidentifiedImageError as error:
            raise ImageLoadError(f"{name}: not an image file ({error})") from error
        except (OSError, SyntaxError, ValueError) as error:
            raise ImageLoadError(f"{name}: truncated or corrupt image ({error})") from error
    else:
        raise ImageLoadError(f"cannot read an image from {type(source).__name__}: pass a file path or a PIL image")
    try:
        return _to_rgb(ImageOps.exif_transpose(image))
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageLoadError(f"{name}: cannot convert to RGB ({error})") from error


def rgb_pixel_values(image_processor: Any, images: Any) -> torch.Tensor:
    """`image_processor(images)["pixel_values"]` (N, 3, H, W) for RGB PIL images (one or a list).

    The channel layout is given, not guessed: transformers 4.x infers it from the array shape and takes a
    1-pixel-tall (1, W, 3) image for channels-first, then fails ("mean must have 1 elements").
    """
    return image_processor(images=images, return_tensors="pt", input_data_format="channels_last")["pixel_values"]


def _to_rgb(image: Any) -> Any:
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit PNGs open as I;16 (or I); a plain convert would clip everything above 255 to white.
        high = 65535.0 if image.mode.startswith("I;16") or image.getextrema()[1] > 255 else 255.0
        image = image.convert("I").point(lambda v: v * (255.0 / high)).convert("L")
    elif image.mode == "F":
        low, high = image.getextrema()
        scale = 255.0 / (high - low) if high > low else 0.0
        image = image.point(lambda v: (v - low) * scale).convert("L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


class ImageQualityPipeline(Pipeline):
    """Scores images with an AGQG model.

    Inputs: a file path or PIL image, a `{"image": ..., "prompt": ...}` dict (the generation prompt
    turns on alignment-aware grading), or a list of these. Use `batch_size=N` to batch.

    Output per image: `{"score": float, "grade": str, "grade_probs": {grade_name: float}, "ability": float}`.
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("task", "image-quality")
        super().__init__(*args, **kwargs)
        if self.image_processor is None:
            self.image_processor = getattr(self.model, "image_processor", None) or self.model.default_image_processor()
        if self.tokenizer is None:
            self.tokenizer = getattr(self.model, "tokenizer", None)

    def _sanitize_parameters(self, **kwargs: Any) -> tuple[dict, dict, dict]:
        return {}, {}, {}

    def preprocess(self, inputs: Any) -> dict[str, torch.Tensor]:
        prompt = None
        if isinstance(inputs, dict):
            if "image" not in inputs:
                raise ImageLoadError(f"input dict has no 'image' key (keys: {sorted(inputs)})")
            inputs, prompt = inputs["image"], inputs.get("prompt")
        image = load_image_file(inputs)
        model_inputs = {"pixel_values": rgb_pixel_values(self.image_processor, image)}
        if prompt is not None:
            model_inputs.update(self.model.tokenize_alignment_prompts(self.tokenizer, [str(prompt)]))
        return model_inputs

    def _forward(self, model_inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        output = self.model(**model_inputs)
        return {"score": output.score, "grade_probs": output.grade_probs, "ability": output.ability}

    def postprocess(self, model_outputs: dict[str, torch.Tensor]) -> dict[str, Any]:
        names = self.model.config.grade_names
        probs = model_outputs["grade_probs"].reshape(-1).float().tolist()
        return {
            "score": float(model_outputs["score"].reshape(-1)[0]),
            "grade": names[max(range(len(probs)), key=probs.__getitem__)],
            "grade_probs": dict(zip(names, probs, strict=True)),
            "ability": float(model_outputs["ability"].reshape(-1)[0]),
        }
