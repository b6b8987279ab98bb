"""How an image becomes model inputs: bounded image loading and the view protocol.

This file is Hub remote code: it imports only the standard library, torch, transformers and its
sibling files. PIL is reached through `transformers.image_utils`, which image processing requires
anyway, so it adds no dependency.
"""

from __future__ import annotations

import os
from typing import Any

import torch
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
