"""How an image becomes model inputs: bounded image loading and the view protocol.

Read top to bottom: loading (any file -> 8-bit RGB, within a pixel budget) -> the pixel spec (the
processor's resize, crop and normalisation, read off the image processor) -> the view protocol (which views
of an image the model sees: `resize`, `crops` or `ipce`) -> `make_views`, the one function that cuts an image
into normalised views for training, evaluation, the pipeline, `score()` and `agqg score`.

How the model combines the views of one image into one grade distribution is the model's job
(`AGQGForImageQualityAssessment.forward(..., num_views=V)`, see `aggregate_view_outputs` there); views are
laid out image by image, and within an image the crops or patches first and the whole-image view last.

This file is Hub remote code: it imports only the standard library, torch, transformers and its
sibling files. PIL is reached through `transformers.image_utils`, which image processing requires
anyway, so it adds no dependency.
"""

from __future__ import annotations

import io
import json
import math
import os
import warnings
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from transformers.image_utils import PIL

Image = PIL.Image
ImageOps = PIL.ImageOps

# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------

DEFAULT_MAX_IMAGE_PIXELS = 64 * 2**20
"""The pixel budget: no image larger than this (64 Mi pixels, e.g. 8192 x 8192) is decoded, and no intermediate
image a view protocol makes may be larger. Set the environment variable `AGQG_MAX_IMAGE_PIXELS` to change it.
An 8-bit RGB image at the budget takes 192 MiB; with the float copies a view protocol makes, an image stays
well under 2 GB."""


class ImageLoadError(ValueError):
    """An input that cannot be scored; the message names the input and the reason."""


def max_image_pixels() -> int:
    """The pixel budget in force: `AGQG_MAX_IMAGE_PIXELS` if set, else `DEFAULT_MAX_IMAGE_PIXELS`."""
    value = os.environ.get("AGQG_MAX_IMAGE_PIXELS")
    if value is None or not value.strip():
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        budget = int(value)
    except ValueError as error:
        raise ValueError(f"AGQG_MAX_IMAGE_PIXELS={value!r} is not an integer") from error
    if budget < 1:
        raise ValueError(f"AGQG_MAX_IMAGE_PIXELS={value!r} must be positive")
    return budget


def _check_pixels(name: str, width: int, height: int, budget: int, what: str = "image") -> None:
    if width * height > budget:
        raise ImageLoadError(
            f"{name}: {what} of {width}x{height} = {width * height:,} pixels is over the pixel budget of {budget:,} "
            "(AGQG_MAX_IMAGE_PIXELS); skipped to bound memory"
        )


def load_image_file(
    source: Any,
    name: str | None = None,
    *,
    max_pixels: int | None = None,
    reduced_decode: Any = None,
) -> Any:
    """Opens an image as 8-bit RGB, whatever its storage, within the pixel budget.

    Accepts a path (str or `os.PathLike`), the encoded bytes of an image file, or a PIL image. EXIF
    orientation is applied; 16-bit and 32-bit greyscale are rescaled (not clipped) to 8 bits; transparency is
    composited onto white; palette, greyscale, CMYK and other modes are converted to RGB. The image's size is
    checked from its header before anything is decoded, so a decompression bomb (a small file that decodes to
    billions of pixels) costs nothing.

    Args:
        source: What to open.
        name: How error messages name the input (default: the path, or a description).
        max_pixels: Pixel budget (default `max_image_pixels()`).
        reduced_decode: Optional `(width, height) -> (min_width, min_height) | None`: for a JPEG, called with the
            size in its header; the decoder then scales down by 1/2, 1/4 or 1/8 in the DCT domain (PIL's draft
            mode) as far as it can while staying at least that large, and the pixel budget applies to the
            decoded size (see `load_view_image`).

    Raises:
        ImageLoadError: the file is missing, not an image, truncated, over the pixel budget, a URL, or
            otherwise unreadable; the message starts with the input's name.
    """
    budget = max_image_pixels() if max_pixels is None else max_pixels
    if isinstance(source, Image.Image):
        name = name or f"<PIL image {source.size[0]}x{source.size[1]} {source.mode}>"
        _check_pixels(name, source.width, source.height, budget)
        image = source
    elif isinstance(source, (str, os.PathLike, bytes, bytearray)):
        if isinstance(source, (bytes, bytearray)):
            name = name or f"<{len(source)} bytes>"
            opener: Any = io.BytesIO(source)
        else:
            path = os.fspath(source)
            name = name or path
            if path.startswith(("http://", "https://")):
                raise ImageLoadError(f"{name}: URLs are not fetched; download the image and pass its path")
            if not os.path.exists(path):
                raise ImageLoadError(f"{name}: file not found")
            if os.path.isdir(path):
                raise ImageLoadError(f"{name}: is a folder, not an image file")
            opener = path
        image = _open_within_budget(opener, name, budget, reduced_decode)
    else:
        raise ImageLoadError(f"cannot read an image from {type(source).__name__}: pass a file path or a PIL image")
    try:
        return _to_rgb(ImageOps.exif_transpose(image))
    except MemoryError as error:
        raise ImageLoadError(f"{name}: out of memory converting the image to RGB") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageLoadError(f"{name}: cannot convert to RGB ({error})") from error


def _open_within_budget(opener: Any, name: str, budget: int, reduced_decode: Any = None) -> Any:
    """Reads the header, sets up a reduced JPEG decode if asked, checks the size against the budget, decodes."""
    try:
        with warnings.catch_warnings():
            # The budget below replaces PIL's own warning threshold.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(opener)
            if reduced_decode is not None and image.format == "JPEG":
                least = reduced_decode(image.width, image.height)
                if least is not None:
                    image.draft("RGB" if image.mode in ("RGB", "YCbCr") else None, least)
            _check_pixels(name, image.width, image.height, budget)
            image.load()
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageLoadError(f"{name}: decompression bomb ({error}); skipped to bound memory") from error
    except PermissionError as error:
        raise ImageLoadError(f"{name}: cannot read the file ({error.strerror})") from error
    except PIL.UnidentifiedImageError as error:
        raise ImageLoadError(f"{name}: not an image file ({error})") from error
    except MemoryError as error:
        raise ImageLoadError(f"{name}: out of memory decoding the image") from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageLoadError(f"{name}: truncated or corrupt image ({error})") from error
    return image


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


def rgb_pixel_values(image_processor: Any, images: Any) -> torch.Tensor:
    """`image_processor(images)["pixel_values"]` (N, 3, H, W) for RGB PIL images (one or a list).

    Only used for image processors whose arithmetic `PixelSpec` does not reproduce. The channel layout is
    given, not guessed: transformers 4.x infers it from the array shape and takes a 1-pixel-tall (1, W, 3)
    image for channels-first, then fails ("mean must have 1 elements").
    """
    return image_processor(images=images, return_tensors="pt", input_data_format="channels_last")["pixel_values"]


# ---------------------------------------------------------------------------------------------
# The pixel spec: the image processor's arithmetic
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PixelSpec:
    """CLIP-style preprocessing read off an image processor (CLIP's, SigLIP's, EfficientNet's (ALIGN's) and other
    resize/crop/rescale/normalise processors; EfficientNet's `rescale_offset` (x * rescale_factor - 1) is one more
    unit of mean).

    `resized_view` reproduces the processor's own steps: PIL's resize of the shortest edge (or to a fixed
    size) with the processor's filter and transformers' rounding (`int(short_target * long / short)`), the
    centre crop (`top = (H - h) // 2`, zero padding when the image is smaller), then `(x * rescale_factor -
    mean) / std` in float32; it matches the processor within float32 rounding (tested).

    Attributes:
        shortest_edge: Resize so the shorter side has this length (aspect kept), or None.
        resize_hw: Resize to exactly (height, width) instead, or None. At most one of the two is set.
        crop_hw: Centre-crop size (height, width), or None for no crop.
        resample: PIL resampling filter of the resize.
        rescale_factor: Multiplier of the uint8 pixel values (1/255), or None.
        mean: Per-channel mean subtracted after rescaling, or None for no normalisation.
        std: Per-channel standard deviation divided by.
    """

    shortest_edge: int | None
    resize_hw: tuple[int, int] | None
    crop_hw: tuple[int, int] | None
    resample: int
    rescale_factor: float | None
    mean: tuple[float, float, float] | None
    std: tuple[float, float, float] | None

    @property
    def output_hw(self) -> tuple[int, int]:
        """(height, width) of the resized view: the crop size, else the fixed resize size."""
        if self.crop_hw is not None:
            return self.crop_hw
        if self.resize_hw is not None:
            return self.resize_hw
        raise ValueError("the image processor neither crops nor resizes to a fixed size: views would differ in size")

    @classmethod
    def from_image_processor(cls, processor: Any) -> PixelSpec | None:
        """The spec of a CLIP-like processor, or None when it does something this module does not reproduce
        (then the resized view comes from the processor itself)."""
        if processor is None or getattr(processor, "do_pad", False):
            return None
        size = _as_dict(getattr(processor, "size", None))
        crop = _as_dict(getattr(processor, "crop_size", None))
        shortest_edge = resize_hw = crop_hw = None
        if getattr(processor, "do_resize", False):
            if size.get("shortest_edge") and not size.get("longest_edge"):
                shortest_edge = int(size["shortest_edge"])
            elif size.get("height") and size.get("width") and not size.get("shortest_edge"):
                resize_hw = (int(size["height"]), int(size["width"]))
            else:
                return None
        if getattr(processor, "do_center_crop", False):
            if not (crop.get("height") and crop.get("width")):
                return None
            crop_hw = (int(crop["height"]), int(crop["width"]))
        if shortest_edge is None and resize_hw is None and crop_hw is None:
            return None
        resample = getattr(processor, "resample", Image.Resampling.BICUBIC)
        try:
            resample = (
                int(getattr(resample, "value", resample)) if resample is not None else int(Image.Resampling.BILINEAR)
            )
        except (TypeError, ValueError):  # e.g. a torchvision InterpolationMode: leave it to the processor
            return None
        if resample not in {int(r) for r in Image.Resampling}:
            return None
        if getattr(processor, "include_top", False):  # EfficientNet's second division by the std
            return None
        rescale = float(processor.rescale_factor) if getattr(processor, "do_rescale", False) else None
        mean = std = None
        if getattr(processor, "do_normalize", False):
            mean, std = _triple(processor.image_mean), _triple(processor.image_std)
            if mean is None or std is None:
                return None
        if rescale is not None and getattr(processor, "rescale_offset", False):
            # EfficientNet's (ALIGN's) x * rescale_factor - 1, before any normalisation: one more unit of mean.
            mean, std = tuple(1.0 + m for m in (mean or (0.0, 0.0, 0.0))), std or (1.0, 1.0, 1.0)
        return cls(shortest_edge, resize_hw, crop_hw, resample, rescale, mean, std)

    def resized_hw(self, height: int, width: int) -> tuple[int, int] | None:
        """Size after the processor's resize, with transformers' rounding; None when it does not resize."""
        if self.resize_hw is not None:
            return self.resize_hw
        if self.shortest_edge is None:
            return None
        short, long = min(height, width), max(height, width)
        new_short, new_long = self.shortest_edge, int(self.shortest_edge * long / short)
        return (new_long, new_short) if width <= height else (new_short, new_long)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 or float (..., 3, h, w) on the 0-255 scale -> float32 `(x * rescale_factor - mean) / std`."""
        values = pixels.float()
        if self.rescale_factor is not None:
            values = values * self.rescale_factor
        if self.mean is not None and self.std is not None:
            mean = torch.tensor(self.mean, dtype=torch.float32, device=values.device).view(3, 1, 1)
            std = torch.tensor(self.std, dtype=torch.float32, device=values.device).view(3, 1, 1)
            values = (values - mean) / std
        return values


def _as_dict(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    return {k: getattr(value, k, None) for k in ("shortest_edge", "longest_edge", "height", "width")}


def _triple(value: Any) -> tuple[float, float, float] | None:
    values = [float(v) for v in (value if isinstance(value, (list, tuple)) else [value] * 3)]
    return tuple(values) if len(values) == 3 else None  # type: ignore[return-value]


def _uint8_chw(image: Any) -> torch.Tensor:
    """RGB PIL image -> uint8 (3, H, W) without numpy."""
    data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return data.view(image.height, image.width, 3).permute(2, 0, 1)


def _centre_crop(pixels: torch.Tensor, crop_hw: tuple[int, int]) -> torch.Tensor:
    """transformers' centre crop of a (3, H, W) tensor, zero-padding images smaller than the crop."""
    height, width = pixels.shape[-2:]
    crop_h, crop_w = crop_hw
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    if top >= 0 and left >= 0:
        return pixels[:, top : top + crop_h, left : left + crop_w]
    new_h, new_w = max(crop_h, height), max(crop_w, width)
    padded = torch.zeros((pixels.shape[0], new_h, new_w), dtype=pixels.dtype)
    pad_top, pad_left = math.ceil((new_h - height) / 2), math.ceil((new_w - width) / 2)
    padded[:, pad_top : pad_top + height, pad_left : pad_left + width] = pixels
    top, left = (new_h - crop_h) // 2, (new_w - crop_w) // 2
    return padded[:, top : top + crop_h, left : left + crop_w]


def _resized_crop(image: Any, size_hw: tuple[int, int], box_hw: tuple[int, int, int, int], resample: int) -> Any:
    """The (top, left, height, width) window `box_hw` of `image` resized to `size_hw`, computed without
    resizing the whole image: PIL resamples only the source region under the window (same filter and scale,
    equal to crop-after-resize up to rounding). Used where the whole resized image would be over the budget
    (extreme aspect ratios)."""
    top, left, height, width = box_hw
    scale_y, scale_x = image.height / size_hw[0], image.width / size_hw[1]
    box = (left * scale_x, top * scale_y, (left + width) * scale_x, (top + height) * scale_y)
    return image.resize((width, height), resample=resample, box=box)


def resized_view(image: Any, spec: PixelSpec | None, processor: Any = None) -> torch.Tensor:
    """The image processor's view of an RGB PIL image (resize + centre crop + normalisation), float32
    (3, h, w). Without a spec (a processor this module does not reproduce) the processor itself runs."""
    if spec is None:
        if processor is None:
            raise ValueError("no image processor and no pixel spec: cannot make the resized view")
        return rgb_pixel_values(processor, [image])[0].float()
    target = spec.resized_hw(image.height, image.width)
    if target is not None and target != (image.height, image.width):
        budget = max_image_pixels()
        if (
            target[0] * target[1] > budget
            and spec.crop_hw is not None
            and all(t >= c for t, c in zip(target, spec.crop_hw, strict=True))
        ):
            # Extreme aspect ratio: resize only the window the centre crop keeps.
            crop_h, crop_w = spec.crop_hw
            box = ((target[0] - crop_h) // 2, (target[1] - crop_w) // 2, crop_h, crop_w)
            return spec.normalize(_uint8_chw(_resized_crop(image, target, box, spec.resample)))
        _check_pixels("image", target[1], target[0], budget, "the resized image")
        image = image.resize((target[1], target[0]), resample=spec.resample)
    pixels = _uint8_chw(image)
    if spec.crop_hw is not None:
        pixels = _centre_crop(pixels, spec.crop_hw)
    return spec.normalize(pixels)


# ---------------------------------------------------------------------------------------------
# The view protocol
# ---------------------------------------------------------------------------------------------

VIEW_SCHEMES = ("resize", "crops", "ipce")

# Values a scheme starts from; a stored protocol always spells out every field it uses.
_SCHEME_DEFAULTS: dict[str, dict[str, Any]] = {
    "resize": {},
    "crops": {"num_crops": 15, "train_crops": 1, "include_resized": True},
    "ipce": {
        "num_crops": 15,
        "train_crops": 8,
        "short_side": 512,
        "stride": 32,
        "large_stride": 48,
        "large_side": 1024,
    },
}
_SCHEME_FIELDS = {
    "resize": ("scheme",),
    "crops": ("scheme", "num_crops", "train_crops", "crop_size", "include_resized"),
    "ipce": ("scheme", "num_crops", "train_crops", "crop_size", "short_side", "stride", "large_stride", "large_side"),
}


@dataclass(frozen=True)
class ViewProtocol:
    r"""Which views of an image the model sees, and how they are combined. Stored in `AGQGConfig.view_protocol`.

    **resize** — one view: the image processor's resize of the shorter side and centre crop (CLIP's standard
    preprocessing; `PixelSpec`).

    **crops** — `num_crops` crops of `crop_size` x `crop_size` pixels (default: the model's input size) at the
    image's native resolution, followed by the resized view when `include_resized`. Images smaller than a crop
    are first enlarged (the processor's filter) until both sides fit. Test-time geometry (`crop_grid`): the
    crops sit on r = round(sqrt(N H / W)) rows (clamped to [1, N]), the first N mod r rows holding one crop
    more; along each axis the corners are evenly spaced from the first to the last valid position (the centre
    when there is one), so the crops cover the image edge to edge. Training: `train_crops` crops at uniformly
    random positions (plus the resized view when `include_resized`). Aggregation: the mean of the views' grade
    distributions (so the mean of their scores).

    **ipce** — IPCE's protocol (Peng et al., NTIRE 2024 AIGC quality winner). The image is brought to a shorter
    side of at least `short_side` (bilinear, aspect kept, `int(s * long / short)` rounding; images already that
    large keep their native resolution, as IPCE's adaptive resize does), normalised, and unfolded into
    P x P patches (P = `crop_size`, default the model's input size) with stride `stride`, or `large_stride` when
    a side of the brought-up image is >= `large_side`; the patches are numbered row by row. Test: with T
    patches, N = `num_crops` of them at indices 0, s, 2s, ..., (N-1)s, s = T // N (when T < N, floor(i T / N)).
    Training: `train_crops` indices drawn uniformly with replacement. Then the whole brought-up image resized
    to P x P (bilinear, no antialiasing, `align_corners=False`). Aggregation: the mean of the N patches'
    grade logits and the whole image's logits each give a grade distribution, and the grade distribution is
    their average, P = (softmax(mean_n z_n) + softmax(z_whole)) / 2; with AGQG grading the ability plays
    the logits' part, P = (GRM(mean_n theta_n) + GRM(theta_whole)) / 2 with the image's thresholds and
    discrimination.

    Views are laid out crops/patches first, the whole-image view last.
    """

    scheme: str = "resize"
    num_crops: int = 0
    train_crops: int = 0
    crop_size: int | None = None
    include_resized: bool = False
    short_side: int = 0
    stride: int = 0
    large_stride: int = 0
    large_side: int = 0

    def __post_init__(self) -> None:
        if self.scheme not in VIEW_SCHEMES:
            raise ValueError(f"view scheme {self.scheme!r}; expected one of {VIEW_SCHEMES}")
        if self.scheme == "resize":
            return
        if self.num_crops < 1 or self.train_crops < 1:
            raise ValueError(f"view scheme {self.scheme!r} needs num_crops >= 1 and train_crops >= 1, got {self}")
        if self.crop_size is not None and self.crop_size < 1:
            raise ValueError(f"crop_size={self.crop_size} must be >= 1 (or None for the model's input size)")
        if self.scheme == "ipce" and min(self.short_side, self.stride, self.large_stride, self.large_side) < 1:
            raise ValueError(f"the ipce scheme needs positive short_side, stride, large_stride, large_side: {self}")

    # --- construction and storage ----------------------------------------------------------------

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ViewProtocol:
        """A protocol from its stored form (`to_dict`); fields a scheme does not use are an error."""
        values = dict(values)
        scheme = values.get("scheme", "resize")
        if scheme not in VIEW_SCHEMES:
            raise ValueError(f"view scheme {scheme!r}; expected one of {VIEW_SCHEMES}")
        unknown = sorted(set(values) - set(_SCHEME_FIELDS[scheme]))
        if unknown:
            raise ValueError(
                f"view scheme {scheme!r} has no option(s) {unknown}; its options: {_SCHEME_FIELDS[scheme]}"
            )
        return cls(**{**_SCHEME_DEFAULTS[scheme], **values})

    @classmethod
    def parse(cls, value: Any) -> ViewProtocol:
        """A protocol from a `ViewProtocol`, its dict, a JSON object, or a short spec: `resize`, `crops`,
        `crops:N`, `ipce`, `ipce:N` (N test-time crops or patches)."""
        if isinstance(value, ViewProtocol):
            return value
        if isinstance(value, dict):
            return cls.from_dict(value)
        if not isinstance(value, str):
            raise ValueError(f"cannot read a view protocol from {type(value).__name__}: {value!r}")
        text = value.strip()
        if text.startswith("{"):
            return cls.from_dict(json.loads(text))
        scheme, _, count = text.partition(":")
        values: dict[str, Any] = {"scheme": scheme.strip()}
        if count.strip():
            if scheme.strip() == "resize":
                raise ValueError(f"view spec {value!r}: 'resize' takes no count")
            try:
                values["num_crops"] = int(count)
            except ValueError as error:
                raise ValueError(f"view spec {value!r}: expected SCHEME or SCHEME:N") from error
        return cls.from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able form stored in the model config: exactly the fields the scheme uses."""
        values = asdict(self)
        return {name: values[name] for name in _SCHEME_FIELDS[self.scheme]}

    def with_crop_size(self, crop_size: int) -> ViewProtocol:
        """The same protocol with the crop/patch size filled in (when it was left to the model's input size)."""
        return self if self.scheme == "resize" or self.crop_size is not None else replace(self, crop_size=crop_size)

    # --- what it produces --------------------------------------------------------------------------

    def num_views(self, train: bool = False) -> int:
        """Views per image: 1 (resize), N (+1 with the resized view) for crops, N + 1 for ipce."""
        if self.scheme == "resize":
            return 1
        count = self.train_crops if train else self.num_crops
        return count + (1 if self.scheme == "ipce" or self.include_resized else 0)

    @property
    def aggregation(self) -> str:
        """How the model combines an image's views: `none` (one view), `mean` or `ipce` (see the class doc)."""
        return {"resize": "none", "crops": "mean", "ipce": "ipce"}[self.scheme]

    def describe(self) -> str:
        """One line for logs and reports."""
        if self.scheme == "resize":
            return "resize (the image processor's resize + centre crop)"
        size = self.crop_size or "input-size"
        if self.scheme == "crops":
            whole = " + the resized view" if self.include_resized else ""
            return f"crops: {self.num_crops} grid crops of {size} px{whole} (training: {self.train_crops} random)"
        return (
            f"ipce: {self.num_crops} patches of {size} px (stride {self.stride}/{self.large_stride}, short side >= "
            f"{self.short_side}) + the whole image (training: {self.train_crops} random patches)"
        )


def crop_grid(height: int, width: int, crop_h: int, crop_w: int, count: int) -> list[tuple[int, int]]:
    """Top-left corners (top, left) of `count` crops spread evenly over a (height, width) image (the `crops`
    scheme's test-time geometry, see `ViewProtocol`)."""
    rows = min(max(round(math.sqrt(count * height / width)), 1), count)

    def spaced(positions: int, extent: int) -> list[int]:
        if positions == 1:
            return [extent // 2]
        return [round(i * extent / (positions - 1)) for i in range(positions)]

    corners = []
    for row, top in enumerate(spaced(rows, height - crop_h)):
        per_row = count // rows + (1 if row < count % rows else 0)
        corners.extend((top, left) for left in spaced(per_row, width - crop_w))
    return corners


def ipce_patch_indices(total: int, count: int, train: bool, generator: torch.Generator | None = None) -> list[int]:
    """Which of `total` patches the ipce scheme takes: `count` at a stride of total // count (test), or drawn
    uniformly with replacement (training)."""
    if train:
        return torch.randint(0, total, (count,), generator=generator).tolist()
    step = total // count
    if step == 0:
        return [i * total // count for i in range(count)]
    return [step * i for i in range(count)]


def crops_source_hw(height: int, width: int, size: int) -> tuple[int, int]:
    """(height, width) an image is brought to before the `crops` scheme cuts it: unchanged when both sides are at
    least the crop size `size`, else enlarged (aspect kept, sides rounded up) until they are."""
    scale = max(size / height, size / width, 1.0)
    if scale == 1.0:
        return height, width
    return max(size, math.ceil(height * scale)), max(size, math.ceil(width * scale))


def ipce_resized_hw(height: int, width: int, protocol: ViewProtocol) -> tuple[int, int]:
    """(height, width) the `ipce` scheme brings an image to: the shorter side up to `short_side` (aspect kept, the
    longer side truncated as IPCE's `int(...)` does) when it is shorter, else unchanged (never downscaled)."""
    short, long = min(height, width), max(height, width)
    if short >= protocol.short_side:
        return height, width
    new_short, new_long = protocol.short_side, int(protocol.short_side * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)


def ipce_patch_corners(
    resized_hw: tuple[int, int],
    protocol: ViewProtocol,
    size: int,
    train: bool,
    generator: torch.Generator | None = None,
) -> list[tuple[int, int]]:
    """Top-left corners (top, left) of the `ipce` patches of side `size` in the resized image (`ipce_resized_hw`):
    the grid at stride `stride` (`large_stride` when a side is >= `large_side`), of which `ipce_patch_indices`
    chooses `num_crops` (test) or `train_crops` (training)."""
    height, width = resized_hw
    stride = protocol.large_stride if max(height, width) >= protocol.large_side else protocol.stride
    rows, cols = (height - size) // stride + 1, (width - size) // stride + 1
    count = protocol.train_crops if train else protocol.num_crops
    chosen = ipce_patch_indices(rows * cols, count, train, generator)
    return [((i // cols) * stride, (i % cols) * stride) for i in chosen]


def make_views(
    image: Any,
    protocol: ViewProtocol,
    spec: PixelSpec | None,
    *,
    processor: Any = None,
    train: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Cuts an RGB PIL image into the protocol's views, normalised as the model expects.

    Args:
        image: An RGB PIL image (from `load_image_file`).
        protocol: The view protocol (usually the model's, `model.view_protocol()`).
        spec: The image processor's arithmetic (`PixelSpec.from_image_processor`); None falls back to calling
            `processor` for the resized view (the crop schemes need a spec).
        processor: The image processor (only used without a spec).
        train: Training-time views (random crops / patches) instead of test-time ones.
        generator: Randomness of the training-time views (seed it per image for reproducible runs).

    Returns:
        float32 (V, 3, S, S), V = `protocol.num_views(train)`, crops or patches first and the whole-image view last.
        Views of the same window may share memory (an image of the crop's size gives one window expanded to every
        crop): read them, or `.clone()` them before writing in place.

    Raises:
        ImageLoadError: an intermediate image of the protocol would be over the pixel budget.
    """
    if protocol.scheme == "resize":
        return resized_view(image, spec, processor).unsqueeze(0)
    if spec is None:
        raise ValueError(f"the {protocol.scheme!r} view scheme needs an image processor PixelSpec can read")
    size = protocol.crop_size or spec.output_hw[0]
    if protocol.scheme == "crops":
        return _crop_views(image, protocol, spec, size, train, generator)
    return _ipce_views(image, protocol, spec, size, train, generator)


def _crop_views(
    image: Any, protocol: ViewProtocol, spec: PixelSpec, size: int, train: bool, generator: torch.Generator | None
) -> torch.Tensor:
    original = image
    count = protocol.train_crops if train else protocol.num_crops
    height, width = crops_source_hw(image.height, image.width, size)
    enlarged = (height, width) != (image.height, image.width)
    if train:
        tops = torch.randint(0, height - size + 1, (count,), generator=generator).tolist()
        lefts = torch.randint(0, width - size + 1, (count,), generator=generator).tolist()
        corners = list(zip(tops, lefts, strict=True))
    else:
        corners = crop_grid(height, width, size, size, count)
    if enlarged and height * width > max_image_pixels():
        # Enlarging the whole image would be over the budget: resample only each crop's window.
        crops = [
            _uint8_chw(_resized_crop(image, (height, width), (top, left, size, size), spec.resample))
            for top, left in corners
        ]
        views = spec.normalize(torch.stack(crops))
    else:
        if enlarged:
            image = image.resize((width, height), resample=spec.resample)
        pixels = _uint8_chw(image)
        # On an image barely larger than a crop, grid positions coincide (on one of the crop's size, all do): each
        # distinct window is cut and normalised once and repeated in grid order.
        distinct = list(dict.fromkeys(corners))
        # When the crops hold more pixels than the image (a small image, overlapping crops), normalising the image
        # once is less work; the normalisation is elementwise, so the values are the same either way.
        image_first = height * width <= len(distinct) * size * size
        source = spec.normalize(pixels) if image_first else pixels
        views = torch.stack([source[:, top : top + size, left : left + size] for top, left in distinct])
        if not image_first:
            views = spec.normalize(views)
        if len(distinct) == 1:  # an image of the crop's size: one window, shared by every view (no copies)
            views = views.expand(len(corners), -1, -1, -1)
        elif len(distinct) < len(corners):
            position = {corner: index for index, corner in enumerate(distinct)}
            views = views[torch.tensor([position[corner] for corner in corners])]
    if protocol.include_resized:
        views = torch.cat([views, resized_view(original, spec).unsqueeze(0)])
    return views


def _ipce_views(
    image: Any, protocol: ViewProtocol, spec: PixelSpec, size: int, train: bool, generator: torch.Generator | None
) -> torch.Tensor:
    new_h, new_w = ipce_resized_hw(image.height, image.width, protocol)
    if (new_h, new_w) != (image.height, image.width):
        _check_pixels("image", new_w, new_h, max_image_pixels(), "the ipce-resized image")
        image = image.resize((new_w, new_h), resample=Image.Resampling.BILINEAR)
    if image.height < size or image.width < size:
        raise ImageLoadError(f"image: {image.width}x{image.height} is smaller than the ipce patch size {size}")
    whole = spec.normalize(_uint8_chw(image))
    corners = ipce_patch_corners((image.height, image.width), protocol, size, train, generator)
    patches = [whole[:, top : top + size, left : left + size] for top, left in corners]
    resized = F.interpolate(whole.unsqueeze(0), size=(size, size), mode="bilinear", align_corners=False)
    return torch.cat([torch.stack(patches), resized])


DRAFT_MARGIN = 2
"""A reduced JPEG decode keeps the decoded image at least this many times the resize target on both sides, so
the processor's bicubic resize still does most of the downscaling (DCT-domain scaling alone is not the
processor's filter)."""


def load_view_image(source: Any, protocol: ViewProtocol, spec: PixelSpec | None, name: str | None = None) -> Any:
    """`load_image_file` for `make_views(image, protocol, spec)`: the one loader the pipeline, `score()`,
    `agqg score` and training use for files and encoded bytes.

    When the protocol needs only the resized view (`resize`) and the spec resizes, JPEGs are decoded at the
    smallest DCT-domain scale (1, 1/2, 1/4 or 1/8) that keeps them at least `DRAFT_MARGIN` x the resize target:
    a 2048x2048 JPEG for a 224-pixel model decodes at 512x512. That is not bit-identical to a full decode
    followed by the same resize (the DCT scaling is a box-like filter); docs/scoring.md states the measured
    effect on scores. The crop schemes need native resolution and always decode in full.
    """
    reduced_decode = None
    if protocol.scheme == "resize" and spec is not None:

        def reduced_decode(width: int, height: int) -> tuple[int, int] | None:
            target = spec.resized_hw(height, width)
            if target is None:
                return None
            return DRAFT_MARGIN * target[1], DRAFT_MARGIN * target[0]

    return load_image_file(source, name, reduced_decode=reduced_decode)


# ---------------------------------------------------------------------------------------------
# Differentiable views: the same protocol on pixel tensors
# ---------------------------------------------------------------------------------------------

# PIL filters the torch path reproduces, and the `F.interpolate` mode of each.
_TORCH_MODES = {int(Image.Resampling.BILINEAR): "bilinear", int(Image.Resampling.BICUBIC): "bicubic"}


def _round_like_pil(values: torch.Tensor) -> torch.Tensor:
    """0-255 values rounded to 8 bits as PIL rounds (clipped, halves up) in the forward pass; the gradient passes
    straight through (that of the identity)."""
    return values + (torch.floor(values.clamp(0.0, 255.0) + 0.5) - values).detach()


def tensor_resize(
    pixels: torch.Tensor, size_hw: tuple[int, int], resample: int, quantize: bool = False
) -> torch.Tensor:
    """PIL's resize of (..., 3, H, W) float pixels in [0, 1] to `size_hw`, in torch and differentiable.

    `F.interpolate(mode=bilinear|bicubic, antialias=True, align_corners=False)` uses PIL's kernels (triangle;
    Keys cubic with a = -0.5), widened by the scale factor when shrinking, as PIL does. What differs: PIL works on
    8-bit images, rounding to 8 bits after each of its two passes and clipping to [0, 255]; by default everything
    here stays in float and only the bicubic overshoot is clipped to [0, 1], so the views differ from PIL's by
    rounding: about 0.3 of an 8-bit level on average, at most one to three (docs/differentiable.md).

    `quantize=True` runs PIL's two passes, horizontal first as Pillow's C code does, each rounded to 8 bits with
    straight-through gradients (`_round_like_pil`). For 8-bit input that reproduces PIL's bicubic output up to a
    few pixels in 10^4; some Pillow builds run the vertical pass first for some shapes, and then about a quarter of
    the pixels differ by one level. Sizes equal to the input's are a no-op.
    """
    if tuple(size_hw) == tuple(pixels.shape[-2:]):
        return pixels
    mode = _TORCH_MODES.get(int(resample))
    if mode is None:
        raise ValueError(
            f"differentiable views reproduce PIL's bilinear and bicubic resize, not filter {resample} "
            f"({Image.Resampling(int(resample)).name})"
        )
    leading = pixels.shape[:-3]
    flat = pixels.reshape(-1, *pixels.shape[-3:])
    if quantize:
        values = flat * 255.0
        if values.shape[-1] != size_hw[1]:  # horizontal pass
            size = (values.shape[-2], size_hw[1])
            values = _round_like_pil(F.interpolate(values, size=size, mode=mode, align_corners=False, antialias=True))
        if values.shape[-2] != size_hw[0]:  # vertical pass
            size = tuple(size_hw)
            values = _round_like_pil(F.interpolate(values, size=size, mode=mode, align_corners=False, antialias=True))
        resized = values / 255.0
    else:
        resized = F.interpolate(flat, size=tuple(size_hw), mode=mode, align_corners=False, antialias=True)
        if mode == "bicubic":
            resized = resized.clamp(0.0, 1.0)
    return resized.reshape(*leading, *resized.shape[-3:])


def tensor_centre_crop(pixels: torch.Tensor, crop_hw: tuple[int, int]) -> torch.Tensor:
    """transformers' centre crop of (..., 3, H, W) pixels (`top = (H - h) // 2`), zero-padding (black) images
    smaller than the crop as `_centre_crop` does."""
    height, width = pixels.shape[-2:]
    crop_h, crop_w = crop_hw
    if height < crop_h or width < crop_w:
        new_h, new_w = max(crop_h, height), max(crop_w, width)
        pad_top, pad_left = math.ceil((new_h - height) / 2), math.ceil((new_w - width) / 2)
        pixels = F.pad(pixels, (pad_left, new_w - width - pad_left, pad_top, new_h - height - pad_top))
        height, width = new_h, new_w
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return pixels[..., top : top + crop_h, left : left + crop_w]


def _tensor_resized_view(pixels: torch.Tensor, spec: PixelSpec, quantize: bool = False) -> torch.Tensor:
    """`resized_view` on (B, 3, H, W) pixels in [0, 1]: (B, 3, h, w) normalised."""
    target = spec.resized_hw(*pixels.shape[-2:])
    if target is not None:
        pixels = tensor_resize(pixels, target, spec.resample, quantize)
    if spec.crop_hw is not None:
        pixels = tensor_centre_crop(pixels, spec.crop_hw)
    return spec.normalize(pixels * 255.0)


def tensor_views(pixels: torch.Tensor, protocol: ViewProtocol, spec: PixelSpec, quantize: bool = False) -> torch.Tensor:
    """`make_views` (test-time views) for a batch of pixel tensors, in torch and differentiable end to end.

    The geometry is `make_views`': `resize` is the processor's resize, centre crop and normalisation; `crops`
    the `crop_grid` crops at native resolution (small images first enlarged with the processor's filter) and the
    resized view; `ipce` the shorter side brought up to `short_side` (bilinear), patches at the fixed indices of
    `ipce_patch_indices` (selecting them is indexing, so gradients reach exactly the pixels they cover) and the
    whole image through `F.interpolate(bilinear)`. Normalisation is `spec.normalize(255 x)`. Resizes use
    `tensor_resize` (PIL's kernels in float: see there for the difference to the PIL pipeline).

    Args:
        pixels: float (B, 3, H, W) RGB in [0, 1]; all images of the batch share H and W.
        protocol: The view protocol (with its crop size filled in, `model.view_protocol()`).
        spec: The image processor's arithmetic.
        quantize: Round each resize pass to 8 bits as PIL does (straight-through gradients; `tensor_resize`).

    Returns:
        float32 (B*V, 3, S, S), the V views of each image adjacent (crops or patches first, whole image last).
    """
    if pixels.dim() != 4 or pixels.shape[1] != 3:
        raise ValueError(f"pixels must be (B, 3, H, W), got {tuple(pixels.shape)}")
    if protocol.scheme == "resize":
        return _tensor_resized_view(pixels, spec, quantize)
    size = protocol.crop_size or spec.output_hw[0]
    height, width = pixels.shape[-2:]
    if protocol.scheme == "crops":
        source_hw = crops_source_hw(height, width, size)
        source = pixels
        if source_hw != (height, width):
            source = tensor_resize(pixels, source_hw, spec.resample, quantize)
        corners = crop_grid(source.shape[-2], source.shape[-1], size, size, protocol.num_crops)
        crops = torch.stack([source[..., top : top + size, left : left + size] for top, left in corners], dim=1)
        views = spec.normalize(crops * 255.0)
        if protocol.include_resized:
            views = torch.cat([views, _tensor_resized_view(pixels, spec, quantize).unsqueeze(1)], dim=1)
        return views.flatten(0, 1)
    resized_hw = ipce_resized_hw(height, width, protocol)
    image = pixels
    if resized_hw != (height, width):
        image = tensor_resize(pixels, resized_hw, int(Image.Resampling.BILINEAR), quantize)
    if resized_hw[0] < size or resized_hw[1] < size:
        raise ValueError(f"{resized_hw[1]}x{resized_hw[0]} is smaller than the ipce patch size {size}")
    whole = spec.normalize(image * 255.0)
    corners = ipce_patch_corners(resized_hw, protocol, size, train=False)
    patches = torch.stack([whole[..., top : top + size, left : left + size] for top, left in corners], dim=1)
    resized = F.interpolate(whole, size=(size, size), mode="bilinear", align_corners=False)
    return torch.cat([patches, resized.unsqueeze(1)], dim=1).flatten(0, 1)
