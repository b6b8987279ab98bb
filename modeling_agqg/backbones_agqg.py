"""The dual-encoder backbones AGQG grades with: CLIP, SigLIP, SigLIP 2 and ALIGN behind one small interface.

The AGQG head needs three things from a backbone: a normalised image embedding v, normalised text embeddings
t_k of the grade prompts, and the backbone's own similarity scale (the temperature tau that turns cosine
similarities into logits, and for SigLIP a bias). `BackboneAdapter` says how each family provides them and
which conventions its text and image sides were trained with:

* `clip` (`CLIPModel`): image `visual_projection([CLS])`, text `text_projection([EOS])`; tau = exp(logit_scale)
  clamped at 100, no bias; the text tower reads the padding mask.
* `siglip` (`SiglipModel`): image from the attention-pooling head, text `head(last position)`; tau =
  exp(logit_scale) and bias logit_bias; prompts padded to `max_length` and read without a mask, as trained.
* `siglip2` (`Siglip2Model`, NaFlex): as SigLIP, the vision tower reading patch sequences; prompts lowercased.
* `align` (`AlignModel`): a convolutional image tower (EfficientNet: BatchNorm, depthwise convolutions) whose
  spatial mean is the image embedding, text `text_projection([CLS])` of a BERT tower (position 0, reading the
  padding mask); tau = 1 / temperature, no bias.

SigLIP 2's FixRes checkpoints (`google/siglip2-*-patch16-224` and the like) are `SiglipModel`s and use the
`siglip` adapter; `Siglip2Model` is the NaFlex variant, whose vision tower reads a sequence of flattened
patches. AGQG feeds it fixed-size views (the view protocol's), patchified here exactly as
`Siglip2ImageProcessor` does for an image of that size (`patchify`).

This file is Hub remote code: it imports only the standard library, torch and transformers.
"""

from __future__ import annotations

import importlib.util
import math
from typing import Any

import torch
import transformers
from torch import nn
from transformers import PretrainedConfig

# model_type -> (config class, dual-encoder model class), looked up by name: SigLIP 2 needs transformers >= 4.49.
_CLASS_NAMES = {
    "clip": ("CLIPConfig", "CLIPModel"),
    "siglip": ("SiglipConfig", "SiglipModel"),
    "siglip2": ("Siglip2Config", "Siglip2Model"),
    "align": ("AlignConfig", "AlignModel"),
}
BACKBONE_TYPES = tuple(_CLASS_NAMES)

# CLIP clamps its learned temperature at 100 while training (`logit_scale.clamp(max=log(100))` in its loss).
CLIP_MAX_LOGIT_SCALE = 100.0


def supported_backbones() -> tuple[str, ...]:
    """The backbone types the installed transformers provides (SigLIP 2 needs transformers >= 4.49)."""
    return tuple(kind for kind, names in _CLASS_NAMES.items() if all(hasattr(transformers, n) for n in names))


def backbone_classes(model_type: str) -> tuple[type, type]:
    """(config class, model class) of a backbone type, with a clear error for unknown or unavailable ones."""
    if model_type not in _CLASS_NAMES:
        raise ValueError(
            f"backbone model_type {model_type!r} is not supported; AGQG wraps {', '.join(BACKBONE_TYPES)} "
            "dual encoders (CLIPModel, SiglipModel, Siglip2Model, AlignModel)"
        )
    if model_type not in supported_backbones():
        raise ImportError(
            f"the {model_type!r} backbone needs a newer transformers than the installed {transformers.__version__} "
            f"(no {' / '.join(_CLASS_NAMES[model_type])}); upgrade transformers"
        )
    config_name, model_name = _CLASS_NAMES[model_type]
    return getattr(transformers, config_name), getattr(transformers, model_name)


def backbone_type_of(backbone: Any) -> str:
    """The backbone type of a model instance (`CLIPModel`, `SiglipModel`, `Siglip2Model`, `AlignModel`), or a clear
    error for anything else (a single tower, a classifier, another architecture)."""
    model_type = getattr(getattr(backbone, "config", None), "model_type", None)
    if model_type in _CLASS_NAMES and model_type in supported_backbones():
        if isinstance(backbone, backbone_classes(model_type)[1]):
            return model_type
    raise TypeError(
        f"{type(backbone).__name__} is not a supported backbone: AGQG needs both towers of a dual encoder, one of "
        f"{', '.join(_CLASS_NAMES[t][1] for t in supported_backbones())}"
    )


def build_backbone_config(value: dict[str, Any] | PretrainedConfig | None) -> PretrainedConfig:
    """A typed backbone config from its dict (its `model_type` says the family; no `model_type` means CLIP, the
    layout of folders saved before other backbones existed), a config object, or None (CLIP's defaults)."""
    if value is None:
        return backbone_classes("clip")[0]()
    if isinstance(value, PretrainedConfig):
        value = value.to_dict()
    model_type = value.get("model_type") or "clip"
    return backbone_classes(model_type)[0](**value)


def build_backbone(config: PretrainedConfig) -> nn.Module:
    """A randomly initialised backbone of the config's type (weights are loaded afterwards)."""
    return backbone_classes(config.model_type)[1](config)


def _image_processor_class(name: str) -> type:
    """transformers' image processor class `name` (e.g. `"SiglipImageProcessor"`). transformers 5's default
    classes want torchvision and otherwise fall back to the PIL class with a warning (even on `import`); ask for
    the PIL class directly then. Both save `image_processor_type: <name>`, so folders load everywhere."""
    if importlib.util.find_spec("torchvision") is None and hasattr(transformers, f"{name}Pil"):
        return getattr(transformers, f"{name}Pil")
    return getattr(transformers, name)


def image_processor_class_for(image_processor_type: str | None) -> type | None:
    """The class to load a saved `image_processor_type` with (`"CLIPImageProcessorFast"`, `"SiglipImageProcessor"`,
    ...): the base class, PIL-backed where transformers 5 has no torchvision; None when transformers lacks it."""
    if not image_processor_type:
        return None
    base = image_processor_type
    for suffix in ("Fast", "Pil"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    if importlib.util.find_spec("torchvision") is None and hasattr(transformers, f"{base}Pil"):
        return getattr(transformers, f"{base}Pil")  # before touching `base`, which warns without torchvision
    return getattr(transformers, base, None)


def patchify(pixel_values: torch.Tensor, patch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Fixed-size images as SigLIP 2 (NaFlex) patch sequences, exactly as `Siglip2ImageProcessor` lays them out.

    (B, C, H, W) with H = h p and W = w p becomes (B, h w, p p C): patches row by row, each flattened as
    (row within the patch, column within the patch, channel), i.e. `x.reshape(B, C, h, p, w, p)
    .permute(0, 2, 4, 3, 5, 1)`. The processor pads the sequence to `max_num_patches` and masks the padding; a
    fixed-size view fills the sequence (no padding), so the mask is all ones and is not needed.

    Returns:
        (patches (B, h w, p p C), spatial_shapes (B, 2) long tensor of (h, w)).
    """
    batch, channels, height, width = pixel_values.shape
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"SigLIP 2 views must be multiples of the patch size {patch_size}, got {height}x{width}: use the model's "
            "image processor (a fixed-size resize to the backbone's input size)"
        )
    rows, cols = height // patch_size, width // patch_size
    patches = pixel_values.reshape(batch, channels, rows, patch_size, cols, patch_size)
    patches = patches.permute(0, 2, 4, 3, 5, 1).reshape(batch, rows * cols, patch_size * patch_size * channels)
    shapes = torch.tensor([[rows, cols]], dtype=torch.long, device=pixel_values.device).expand(batch, 2)
    return patches, shapes


class BackboneAdapter:
    """How one backbone family provides what the AGQG head needs. Stateless: the methods take the backbone module
    (or its config); `adapter_for(model_type)` gives the instance.

    Attributes:
        model_type: The backbone config's `model_type`.
        text_reads_attention_mask: Whether the text tower is given the padding mask (CLIP). SigLIP was trained
            with `padding="max_length"` and no mask and pools the last position, so its tower gets none.
        lowercase_text: Whether prompts are lowercased before tokenising (SigLIP 2 was trained on lowercased text).
    """

    model_type = "clip"
    text_reads_attention_mask = True
    lowercase_text = False

    # --- shapes ----------------------------------------------------------------------------------

    def embed_dim(self, config: PretrainedConfig) -> int:
        """D, the size of the joint embedding space."""
        return int(config.projection_dim)

    def image_size(self, config: PretrainedConfig) -> int:
        """The side of the square views the vision tower is trained for."""
        return int(config.vision_config.image_size)

    def text_max_length(self, config: PretrainedConfig) -> int:
        """The token length prompts are padded (and truncated) to."""
        return int(config.text_config.max_position_embeddings)

    # --- features --------------------------------------------------------------------------------

    def image_features(self, backbone: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
        """Unnormalised image embeddings, (B, 3, H, W) -> (B, D)."""
        dtype = backbone.visual_projection.weight.dtype
        pooled = backbone.vision_model(pixel_values=pixel_values.to(dtype)).pooler_output
        return backbone.visual_projection(pooled)

    def text_features(
        self, backbone: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Unnormalised text embeddings, (N, L) -> (N, D)."""
        pooled = backbone.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        return backbone.text_projection(pooled)

    def logit_scale(self, backbone: nn.Module) -> torch.Tensor:
        """tau, shape (): exp(logit_scale), clamped at 100 as CLIP trains it."""
        return backbone.logit_scale.exp().clamp(max=CLIP_MAX_LOGIT_SCALE).reshape(())

    def logit_bias(self, backbone: nn.Module) -> torch.Tensor | None:
        """The backbone's additive logit bias, shape (), or None."""
        return None

    # --- parameters --------------------------------------------------------------------------------

    def text_modules(self, backbone: nn.Module) -> list[nn.Module]:
        """The modules the text embeddings depend on."""
        return [backbone.text_model, backbone.text_projection]

    def vision_modules(self, backbone: nn.Module) -> list[nn.Module]:
        """The modules the image embeddings depend on."""
        return [backbone.vision_model, backbone.visual_projection]

    # --- preprocessing -----------------------------------------------------------------------------

    def default_image_processor(self, config: PretrainedConfig) -> Any:
        """CLIP's standard preprocessing at this backbone's input size: bicubic resize of the shorter side, centre
        crop, CLIP's mean and std."""
        size = self.image_size(config)
        return _image_processor_class("CLIPImageProcessor")(
            size={"shortest_edge": size}, crop_size={"height": size, "width": size}
        )

    def adapt_image_processor(self, processor: Any, config: PretrainedConfig) -> Any:
        """The processor a checkpoint came with, as AGQG uses it (unchanged except for SigLIP 2)."""
        return processor


class SiglipAdapter(BackboneAdapter):
    """SigLIP (`SiglipModel`): embeddings are the towers' pooled outputs (the vision tower's attention-pooling
    head; the text tower's `head` applied to the last position), with no separate projections; logits are
    exp(logit_scale) * cos + logit_bias, unclamped."""

    model_type = "siglip"
    text_reads_attention_mask = False

    def embed_dim(self, config: PretrainedConfig) -> int:
        vision = int(config.vision_config.hidden_size)
        text = int(getattr(config.text_config, "projection_size", None) or config.text_config.hidden_size)
        if vision != text:
            raise ValueError(f"SigLIP towers disagree on the embedding size: vision {vision}, text {text}")
        if not getattr(config.vision_config, "vision_use_head", True):
            raise ValueError("a SigLIP vision tower without its pooling head (vision_use_head=False) has no embedding")
        return vision

    def image_features(self, backbone: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
        dtype = backbone.vision_model.embeddings.patch_embedding.weight.dtype
        return backbone.vision_model(pixel_values=pixel_values.to(dtype)).pooler_output

    def text_features(
        self, backbone: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        # No mask: SigLIP pools the last position of a max_length-padded sequence, as it was trained.
        return backbone.text_model(input_ids=input_ids).pooler_output

    def logit_scale(self, backbone: nn.Module) -> torch.Tensor:
        return backbone.logit_scale.exp().reshape(())

    def logit_bias(self, backbone: nn.Module) -> torch.Tensor | None:
        return backbone.logit_bias.reshape(())

    def text_modules(self, backbone: nn.Module) -> list[nn.Module]:
        return [backbone.text_model]

    def vision_modules(self, backbone: nn.Module) -> list[nn.Module]:
        return [backbone.vision_model]

    def default_image_processor(self, config: PretrainedConfig) -> Any:
        """SigLIP's preprocessing at this backbone's input size: resize to size x size (SigLIP's default filter),
        mean and std 0.5."""
        size = self.image_size(config)
        return _image_processor_class("SiglipImageProcessor")(size={"height": size, "width": size})


class Siglip2Adapter(SiglipAdapter):
    """SigLIP 2 NaFlex (`Siglip2Model`): SigLIP's text side (prompts lowercased) and similarity; the vision tower
    reads patch sequences with their grid shape, so the fixed-size views are patchified (`patchify`). Its input
    size is the position-embedding grid: sqrt(num_patches) * patch_size (256 px for the base patch-16 models)."""

    model_type = "siglip2"
    lowercase_text = True

    def image_size(self, config: PretrainedConfig) -> int:
        vision = config.vision_config
        return math.isqrt(int(vision.num_patches)) * int(vision.patch_size)

    def image_features(self, backbone: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
        vision = backbone.vision_model
        patches, shapes = patchify(pixel_values, int(vision.config.patch_size))
        dtype = vision.embeddings.patch_embedding.weight.dtype
        # Positional: the mask argument is `attention_mask` in transformers 4.x, `pixel_attention_mask` in 5.x.
        # The views fill the sequence, so the all-ones mask the processor would give is left out (None).
        return vision(patches.to(dtype), None, shapes).pooler_output

    def default_image_processor(self, config: PretrainedConfig) -> Any:
        """A fixed-size SigLIP processor with SigLIP 2's settings (bilinear, mean and std 0.5): for an image whose
        NaFlex size is size x size (any square image, with max_num_patches = (size / patch)^2) it gives exactly
        the pixels `Siglip2ImageProcessor` gives, in image layout."""
        size = self.image_size(config)
        return _image_processor_class("SiglipImageProcessor")(
            size={"height": size, "width": size},
            resample=2,  # PIL's BILINEAR, Siglip2ImageProcessor's filter
            image_mean=[0.5, 0.5, 0.5],
            image_std=[0.5, 0.5, 0.5],
        )

    def adapt_image_processor(self, processor: Any, config: PretrainedConfig) -> Any:
        """A NaFlex `Siglip2ImageProcessor` (aspect-preserving, variable patch count) becomes the fixed-size
        processor of `default_image_processor` with the checkpoint's filter, rescale factor, mean and std."""
        if processor is None or not hasattr(processor, "max_num_patches"):
            return processor
        size = self.image_size(config)
        resample = getattr(processor, "resample", 2)
        return _image_processor_class("SiglipImageProcessor")(
            size={"height": size, "width": size},
            resample=int(getattr(resample, "value", resample)),
            do_rescale=getattr(processor, "do_rescale", True),
            rescale_factor=getattr(processor, "rescale_factor", 1 / 255),
            do_normalize=getattr(processor, "do_normalize", True),
            image_mean=list(getattr(processor, "image_mean", [0.5, 0.5, 0.5])),
            image_std=list(getattr(processor, "image_std", [0.5, 0.5, 0.5])),
        )


class AlignAdapter(BackboneAdapter):
    """ALIGN (`AlignModel`): the image embedding is the EfficientNet tower's pooled output (the spatial mean of its
    last feature map, no projection; its channels are the embedding size), the text embedding `text_projection`
    of the BERT tower's first position ([CLS]); logits are cos / temperature (tau = 1 / temperature), unclamped,
    no bias. The vision tower is convolutional: any view size works, and its BatchNorm layers normalise with
    running statistics in eval mode (training keeps a frozen tower in eval mode, `training.modeling`)."""

    model_type = "align"

    def text_max_length(self, config: PretrainedConfig) -> int:
        """64 tokens (`AlignProcessor` pads prompts to `max_length=64`), or the tower's length if shorter."""
        return min(64, int(config.text_config.max_position_embeddings))

    def image_features(self, backbone: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
        vision = backbone.vision_model
        pooled = vision(pixel_values=pixel_values.to(vision.embeddings.convolution.weight.dtype)).pooler_output
        return pooled.reshape(pooled.shape[0], -1)

    def text_features(
        self, backbone: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        hidden = backbone.text_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return backbone.text_projection(hidden[:, 0, :])

    def logit_scale(self, backbone: nn.Module) -> torch.Tensor:
        """tau, shape (): 1 / temperature (ALIGN divides the cosine similarities by its learned temperature)."""
        return backbone.temperature.reciprocal().reshape(())

    def vision_modules(self, backbone: nn.Module) -> list[nn.Module]:
        return [backbone.vision_model]

    def default_image_processor(self, config: PretrainedConfig) -> Any:
        """ALIGN's pixel conventions at this backbone's input size: resize to size x size (bilinear), pixels
        rescaled to [-1, 1] (x / 127.5 - 1, no mean/std normalisation), as `kakaobrain/align-base`'s
        `EfficientNetImageProcessor` does after its resize and centre crop."""
        size = self.image_size(config)
        return _image_processor_class("EfficientNetImageProcessor")(
            size={"height": size, "width": size},
            resample=2,  # PIL's BILINEAR
            do_center_crop=False,
            rescale_factor=1 / 127.5,
            rescale_offset=True,
            do_normalize=False,
            include_top=False,
        )


_ADAPTERS: dict[str, BackboneAdapter] = {
    "clip": BackboneAdapter(),
    "siglip": SiglipAdapter(),
    "siglip2": Siglip2Adapter(),
    "align": AlignAdapter(),
}


def adapter_for(model_type: str) -> BackboneAdapter:
    """The adapter of a backbone type (`"clip"`, `"siglip"`, `"siglip2"`, `"align"`)."""
    if model_type not in _ADAPTERS:
        backbone_classes(model_type)  # raises the explanatory error
    return _ADAPTERS[model_type]
