r"""An offline stand-in for a pretrained CLIP: a tiny CLIP pretrained contrastively on captioned, graded
distortions of real photographs, so that the frozen-backbone hosts (zero-shot CLIP-IQA, CoOp, MaPLe) have a
backbone whose text and image sides already agree about quality.

    python training/pretrain_clip.py --output_dir runs/tiny-clip            # pretrain, save, zero-shot report
    python training/pretrain_clip.py --output_dir runs/tiny-clip --steps 300 --disable_tqdm true

The folder it writes is a normal CLIP folder (`CLIPModel.save_pretrained`, the tokenizer, a `CLIPImageProcessor`
with the input size, mean and std used in pretraining): `AGQGForImageQualityAssessment.from_clip(folder)`,
`CLIPModel.from_pretrained(folder)` and `--clip <folder>` take it exactly like `openai/clip-vit-base-patch16`.

**Model.** `tiny_clip_config` shapes; by default 16 px input in 2-pixel patches (64 tokens), width 64, 2 layers and
2 heads per tower, 64-d joint space (0.25 M parameters): the synthetic distortions live at the pixel scale, and on
the auto-levelled crops of downscaled photos pretrained here a tiny model learnt them best from 16 px crops in
2-pixel patches (docs/pretrained_clip.md). Build the synthetic dataset at the same size.

**Pairs.** The photographs of `training.synthetic` (scikit-image and matplotlib samples) except
`HELD_OUT_PHOTOS`, whose pixels are never read: `crops_per_photo` textured (and `random_native_crops` random) crops
per photo, cut and distorted like the synthetic dataset's training crops by the same function
(`training.synthetic.cut_crop_windows`), by default as in the plug-in ablation's data: auto-levelled crops of the
photo downscaled to 2, 4 and 8 x the input size, distorted without context, one random orientation and channel
permutation per crop), each kept pristine, with every distortion type at levels 1..4 and
with `combined_per_crop` random pairs of two different distortion types applied one after the other. The quality
q of each image is *measured* against its pristine crop
(`training.synthetic.measured_quality`, 4.6 pristine .. 1.3 worst; made strictly decreasing in the level of a
single distortion, as in the synthetic dataset).

**Captions** are drawn afresh for every pair each time it is used (`caption_for`), from five families:

==========  ==========================================================  =====================================
family      templates (examples)                                        words from
==========  ==========================================================  =====================================
distortion  "a heavily blurred, slightly noisy photo of a rocket."      the applied distortions and levels
            "a sharp photo of a rocket." (pristine)
quality     "a photo with poor quality.", "poor quality.",              one simulated rating r of q:
            "a poor quality photo of a rocket."                         bad / poor / fair / good / perfect
binary      "Bad photo.", "Good photo.", "a good photo of a rocket."    good with probability p(q)
alignment   "a photo that poorly matches 'rocket'"                      r: badly / poorly / fairly / well /
                                                                        perfectly
combined    "a fair quality photo, slightly noisy."                     r and the distortions
==========  ==========================================================  =====================================

The quality words are what one simulated rater would say: r = clip(round(q + e), 1, 5) with
e ~ N(0, RATING_ERROR_STD^2) (the synthetic dataset's rating noise), and "Good photo." is drawn with probability
p(q) = (q - Q_WORST) / (Q_PRISTINE - Q_WORST). Because the words are sampled, the contrastive optimum is a
graded (calibrated) preference, so the zero-shot softmax over "Bad photo." / "Good photo." or over the five
LIQE prompts ranks images by quality instead of thresholding it. The templates contain the exact grade prompts of
the five hosts (CLIP-IQA "Bad photo." / "Good photo.", LIQE "a photo with {grade} quality.", IPCE
"a photo that {adverb} matches '{prompt}'" with the photo's name as the prompt, CoOp / MaPLe
"{grade} quality."). Strength words name the applied level: 1 slightly, 2 moderately, 3 heavily, 4 extremely.

**Batches.** `batch_size / images_per_crop` crops with `images_per_crop` of each crop's images
(`GroupedBatchSampler`): inside a group the content words are equal, so only the distortion and quality words tell
the captions apart (hard negatives). Each use turns an image by one of the 8 rotations/reflections.

**Loss.** CLIP's symmetric InfoNCE with the learned logit scale tau = exp(t) (clamped at 100), over the B images
of a batch and the U <= B *distinct* captions among theirs (the same caption is often drawn for several images):
with s_iu the cosine similarity of image i and caption u and c(i) the caption of image i,

    L = 1/2 [ -1/B sum_i log softmax_u(tau s_iu)[c(i)]  -  1/U sum_u 1/|P_u| sum_{i in P_u} log softmax_i(tau s_iu) ],

P_u = {i : c(i) = u}. With all captions distinct this is exactly CLIP's loss.

**Held-out photos.** `HELD_OUT_PHOTOS` = astronaut and chelsea (a cat) never enter pretraining, not even as
crops; `build_synthetic_dataset(..., test_sources=HELD_OUT_PHOTOS)` makes them the test photos of the synthetic
quality dataset (synthetic seed 4 happens to hold out the same two), so a host trained on the other photos is
tested on photos neither pretraining nor training has seen. `zero_shot_report` measures the zero-shot scores there.

Measured pretraining time and zero-shot numbers: docs/pretrained_clip.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from training.synthetic import (
    DISTORTIONS,
    MONOTONE_MARGIN,
    NUM_LEVELS,
    Q_PRISTINE,
    Q_WORST,
    RATING_ERROR_STD,
    available_source_photos,
    cut_crop_windows,
    measured_quality,
    parse_crop_scales,
)

logger = logging.getLogger(__name__)

ABLATION_CROP_SCALES: tuple[float, ...] = (2.0, 4.0, 8.0)
"""Where the pretraining crops are cut by default: the photo downscaled to 2, 4 and 8 x the input size, as in the
plug-in ablation's data."""

HELD_OUT_PHOTOS: tuple[str, ...] = ("astronaut", "chelsea")
"""Photos that never enter pretraining (the test photos of the plug-in ablation)."""

DEFAULT_OUTPUT_DIR = "runs/tiny-clip"
PRETRAINING_FILE = "pretraining.json"
"""Written last into a finished folder: the arguments, their cache key, the pair counts, timing, metrics."""

# CLIP's (OpenAI) normalisation, also the default of `CLIPImageProcessor`.
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)

GRADE_WORDS = ("bad", "poor", "fair", "good", "perfect")
ALIGNMENT_WORDS = ("badly", "poorly", "fairly", "well", "perfectly")
STRENGTH_WORDS = {1: "slightly", 2: "moderately", 3: "heavily", 4: "extremely"}
DISTORTION_WORDS = {
    "blur": "blurred",
    "noise": "noisy",
    "jpeg": "compressed",
    "contrast": "low-contrast",
    "colour": "desaturated",
}
PRISTINE_WORDS = ("sharp", "clean", "pristine")
PHOTO_CONTENT = {
    "astronaut": "an astronaut",
    "coffee": "a cup of coffee",
    "chelsea": "a cat",
    "rocket": "a rocket",
    "hubble_deep_field": "galaxies",
    "immunohistochemistry": "stained tissue",
    "retina": "a retina",
    "motorcycle": "a motorcycle",
    "grace_hopper": "a woman",
}
"""What each source photo shows, in the captions (`source` names are the photo names of `training.synthetic`)."""

MAX_TOKENS = 77
CAPTION_FAMILIES = ("distortion", "quality", "binary", "alignment", "combined")
_FORMAT_VERSION = 3  # bump whenever the folder a given set of arguments produces changes

__all__ = [
    "CAPTION_FAMILIES",
    "DEFAULT_OUTPUT_DIR",
    "HELD_OUT_PHOTOS",
    "MAX_TOKENS",
    "PHOTO_CONTENT",
    "PRETRAINING_FILE",
    "ZERO_SHOT_PROMPTS",
    "GroupedBatchSampler",
    "PretrainClipArguments",
    "PretrainingPairs",
    "build_pretrained_clip",
    "build_pretraining_pairs",
    "caption_for",
    "contrastive_loss",
    "format_report",
    "is_complete",
    "pixel_values_of",
    "pretrain",
    "zero_shot_report",
]


@dataclass
class PretrainClipArguments:
    """Every option of the pretraining (`HfArgumentParser` fields of the command line). The fields from
    `image_size` to `seed` make the cache key of the output folder."""

    output_dir: str = field(default=DEFAULT_OUTPUT_DIR, metadata={"help": "the CLIP folder to write (or reuse)"})
    image_size: int = field(default=16, metadata={"help": "input side in pixels (crops are cut at this size)"})
    patch_size: int = field(default=2, metadata={"help": "ViT patch side; image_size / patch_size squared tokens"})
    hidden_size: int = field(default=64, metadata={"help": "width of both towers"})
    num_layers: int = field(default=2, metadata={"help": "depth of both towers"})
    num_heads: int = field(default=2, metadata={"help": "attention heads of both towers"})
    projection_dim: int = field(default=64, metadata={"help": "joint embedding size"})
    crops_per_photo: int = field(default=60, metadata={"help": "textured crops cut from each pretraining photo"})
    random_native_crops: int = field(
        default=0, metadata={"help": "further crops per photo at its own resolution and random positions"}
    )
    crop_scales: list[str] = field(
        default_factory=lambda: [str(scale) for scale in ABLATION_CROP_SCALES],
        metadata={"help": "short side of the resized photo / image_size, or 'native'"},
    )
    auto_level: bool = field(default=True, metadata={"help": "stretch each crop's luminance levels"})
    context: int = field(default=0, metadata={"help": "pixels of the photo around a crop while it is distorted"})
    combined_per_crop: int = field(default=8, metadata={"help": "images per crop with two distortions"})
    family_weights: list[float] = field(
        default_factory=lambda: [0.3, 0.3, 0.15, 0.1, 0.15],
        metadata={"help": f"sampling weights of the caption families {', '.join(CAPTION_FAMILIES)}"},
    )
    steps: int = field(default=1600, metadata={"help": "AdamW steps"})
    batch_size: int = field(default=128, metadata={"help": "images per step"})
    images_per_crop: int = field(
        default=8,
        metadata={"help": "a batch is batch_size / images_per_crop crops with this many of each crop's images"},
    )
    learning_rate: float = field(default=2e-3, metadata={"help": "peak learning rate (warmup, then cosine to 0)"})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay of the matrices"})
    warmup_ratio: float = field(default=0.05, metadata={"help": "share of the steps with a linear warmup"})
    held_out_photos: list[str] = field(
        default_factory=lambda: list(HELD_OUT_PHOTOS), metadata={"help": "photos never used in pretraining"}
    )
    seed: int = field(default=0, metadata={"help": "seeds the pairs, the captions, the weights and the batches"})
    overwrite: bool = field(default=False, metadata={"help": "pretrain again even when the folder is complete"})
    disable_tqdm: bool = field(default=False, metadata={"help": "no progress bar"})
    num_threads: int = field(default=1, metadata={"help": "torch threads (1 is fastest for a model this small)"})
    evaluate: bool = field(default=True, metadata={"help": "zero-shot report on the held-out photos afterwards"})
    eval_crops_per_source: int = field(default=30, metadata={"help": "crops per photo of the report's dataset"})
    eval_seed: int = field(default=0, metadata={"help": "data seed of the report's dataset (same for every seed)"})
    eval_data_dir: str | None = field(default=None, metadata={"help": "cache folder of the report's dataset"})

    def key_fields(self) -> dict[str, Any]:
        """The arguments that determine the weights (everything but where, whether and how verbosely)."""
        skip = {"output_dir", "overwrite", "disable_tqdm", "num_threads", "evaluate", "eval_crops_per_source"}
        skip |= {"eval_data_dir", "eval_seed"}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}

    def cache_key(self) -> str:
        payload = {"format_version": _FORMAT_VERSION, **self.key_fields()}
        payload["held_out_photos"] = sorted(payload["held_out_photos"])
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


# --- pairs ---------------------------------------------------------------------------------------------


@dataclass
class PretrainingPairs:
    """The images of pretraining and what was done to them (captions are drawn per use with `caption_for`).

    Attributes:
        images: uint8 (N, S, S, 3).
        sources: (N,) photo names.
        applied: N tuples of (distortion, level) pairs, empty for a pristine crop.
        quality: float (N,), measured quality in [Q_WORST, Q_PRISTINE].
        crop_ids: int (N,), the crop each image was made from (0..C-1, in order).
    """

    images: np.ndarray
    sources: list[str]
    applied: list[tuple[tuple[str, int], ...]]
    quality: np.ndarray
    crop_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.sources)


def build_pretraining_pairs(
    *,
    image_size: int = 16,
    crops_per_photo: int = 60,
    random_native_crops: int = 0,
    crop_scales: Sequence[float | str] = ABLATION_CROP_SCALES,
    auto_level: bool = True,
    context: int = 0,
    combined_per_crop: int = 8,
    held_out_photos: Sequence[str] = HELD_OUT_PHOTOS,
    seed: int = 0,
    photos: Mapping[str, np.ndarray] | None = None,
) -> PretrainingPairs:
    """Cuts, distorts and measures the pretraining images (module docstring).

    Args:
        image_size: Crop side S in pixels.
        crops_per_photo: Textured crops per photo, shared out between `crop_scales` as in `training.synthetic`.
        random_native_crops: Further crops per photo at its own resolution and random positions.
        crop_scales: Short side of the resized photo in units of `image_size`, or `"native"`.
        auto_level: Stretch each crop's 1st-99th luminance percentiles to 0-255.
        context: Pixels of the photo kept around each crop while it is distorted.
        (The defaults are the crops of the plug-in ablation's data, `training/configs/ablation/synthetic.yaml`:
        auto-levelled textured crops of the downscaled photos, distorted without context.)
        combined_per_crop: Images per crop with two different distortion types (each at a random level 1..4).
        held_out_photos: Photo names that are skipped before their pixels are read.
        seed: Seeds crops, orientations, noise and the combinations.
        photos: name -> RGB uint8 photo (H, W, 3); default `training.synthetic.available_source_photos()`.

    Returns:
        `PretrainingPairs` of N = photos x (crops_per_photo + random_native_crops) x (1 + 4 x 5 + combined_per_crop)
        images. The crops are cut, augmented and distorted as the synthetic dataset's training crops
        (`training.synthetic.cut_crop_windows`: native and downscaled crops, distorted with the photo around them).
    """
    photos = available_source_photos() if photos is None else photos
    held_out = set(held_out_photos)
    names = sorted(name for name in photos if name not in held_out)
    if not names:
        raise ValueError(f"no pretraining photo left: all of {sorted(photos)} are held out")
    unknown = sorted(set(names) - set(PHOTO_CONTENT))
    if unknown:
        raise ValueError(f"photos {unknown} have no PHOTO_CONTENT entry to caption them")
    kinds = list(DISTORTIONS)
    rng = np.random.default_rng(seed)
    images: list[np.ndarray] = []
    sources: list[str] = []
    applied: list[tuple[tuple[str, int], ...]] = []
    quality: list[float] = []
    crop_ids: list[int] = []
    for name in names:
        windows = cut_crop_windows(
            photos[name],
            image_size,
            rng,
            textured=crops_per_photo,
            random_native=random_native_crops,
            crop_scales=crop_scales,
            context=context,
            auto_level=auto_level,
            augment=True,
        )
        for window in windows:
            crop = window.crop
            first_image, crop_id = len(images), (crop_ids[-1] + 1 if crop_ids else 0)
            images.append(crop)
            sources.append(name)
            applied.append(())
            quality.append(Q_PRISTINE)
            for kind in kinds:
                previous = Q_PRISTINE
                for level in range(1, NUM_LEVELS + 1):
                    distorted = window.distorted([(kind, level)], rng)
                    # A stronger setting of one distortion never scores better (as in the synthetic dataset).
                    cap = previous - MONOTONE_MARGIN if level > 1 else Q_PRISTINE
                    measured = min(measured_quality(crop, distorted), cap)
                    previous = measured
                    images.append(distorted)
                    sources.append(name)
                    applied.append(((kind, level),))
                    quality.append(measured)
            for _ in range(combined_per_crop):
                first, second = rng.choice(len(kinds), size=2, replace=False)
                levels = rng.integers(1, NUM_LEVELS + 1, size=2)
                steps = ((kinds[first], int(levels[0])), (kinds[second], int(levels[1])))
                distorted = window.distorted(steps, rng)
                images.append(distorted)
                sources.append(name)
                applied.append(steps)
                quality.append(measured_quality(crop, distorted))
            crop_ids += [crop_id] * (len(images) - first_image)
    return PretrainingPairs(
        np.stack(images), sources, applied, np.asarray(quality, dtype=np.float64), np.asarray(crop_ids, dtype=np.int64)
    )


def _describe(applied: tuple[tuple[str, int], ...], rng: np.random.Generator) -> str:
    """'sharp' (or another pristine word) or 'heavily blurred, slightly noisy'."""
    if not applied:
        return PRISTINE_WORDS[int(rng.integers(len(PRISTINE_WORDS)))]
    return ", ".join(f"{STRENGTH_WORDS[level]} {DISTORTION_WORDS[kind]}" for kind, level in applied)


def _rating(quality: float, rng: np.random.Generator) -> int:
    """One simulated rating, 1..5: clip(round(q + e), 1, 5), e ~ N(0, RATING_ERROR_STD^2)."""
    return int(np.clip(np.rint(quality + rng.normal(0.0, RATING_ERROR_STD)), 1, 5))


def caption_for(
    source: str,
    applied: tuple[tuple[str, int], ...],
    quality: float,
    rng: np.random.Generator,
    family: str | None = None,
    family_weights: Sequence[float] = (0.3, 0.3, 0.15, 0.1, 0.15),
) -> str:
    """One caption of an image of `source` with the distortions `applied` ((kind, level) pairs) and measured
    quality `quality`, from `family` (default: drawn with `family_weights` over `CAPTION_FAMILIES`); see the
    module docstring for the grammar."""
    if family is None:
        weights = np.asarray(family_weights, dtype=np.float64)
        family = CAPTION_FAMILIES[int(rng.choice(len(CAPTION_FAMILIES), p=weights / weights.sum()))]
    content = PHOTO_CONTENT[source]
    if family == "distortion":
        description = _describe(applied, rng)
        if rng.random() < 0.5:
            return f"a {description} photo of {content}."
        return f"a photo of {content}, {description}."
    if family == "quality":
        grade = GRADE_WORDS[_rating(quality, rng) - 1]
        templates = (
            f"a photo with {grade} quality.",
            f"{grade} quality.",
            f"a {grade} quality photo of {content}.",
            f"a photo of {content} with {grade} quality.",
        )
        return templates[int(rng.integers(len(templates)))]
    if family == "binary":
        good = rng.random() < (quality - Q_WORST) / (Q_PRISTINE - Q_WORST)
        word = "good" if good else "bad"
        templates = (f"{word.capitalize()} photo.", f"a {word} photo of {content}.", f"a {word} photo.")
        return templates[int(rng.integers(len(templates)))]
    if family == "alignment":
        prompt = source if rng.random() < 0.5 else content
        return f"a photo that {ALIGNMENT_WORDS[_rating(quality, rng) - 1]} matches '{prompt}'"
    if family == "combined":
        grade = GRADE_WORDS[_rating(quality, rng) - 1]
        return f"a {grade} quality photo, {_describe(applied, rng)}."
    raise ValueError(f"unknown caption family {family!r}; expected one of {CAPTION_FAMILIES}")


# --- model and loss ------------------------------------------------------------------------------------


def contrastive_loss(
    image_embeds: torch.Tensor, text_embeds: torch.Tensor, caption_index: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """CLIP's symmetric InfoNCE over B images and U distinct captions (module docstring).

    Args:
        image_embeds: (B, D), L2-normalised.
        text_embeds: (U, D), L2-normalised, one row per distinct caption.
        caption_index: long (B,), the row of each image's caption; every row 0..U-1 occurs.
        logit_scale: scalar tau (already exponentiated).

    Returns:
        Scalar loss 1/2 (image->caption cross-entropy + caption->image multi-positive cross-entropy).
    """
    logits = logit_scale * image_embeds @ text_embeds.t()  # (B, U)
    image_to_text = F.cross_entropy(logits, caption_index)
    positives = (caption_index[None, :] == torch.arange(text_embeds.shape[0], device=logits.device)[:, None]).to(
        logits.dtype
    )  # (U, B)
    log_probs = logits.t().log_softmax(-1)
    text_to_image = -((log_probs * positives).sum(-1) / positives.sum(-1)).mean()
    return 0.5 * (image_to_text + text_to_image)


def _image_processor(image_size: int) -> Any:
    """A stock CLIP image processor at `image_size` with CLIP's mean and std (transformers 5 without torchvision
    has only the PIL class; both save `image_processor_type: CLIPImageProcessor`)."""
    import importlib.util

    import transformers

    klass = transformers.CLIPImageProcessor
    if importlib.util.find_spec("torchvision") is None and hasattr(transformers, "CLIPImageProcessorPil"):
        klass = transformers.CLIPImageProcessorPil
    return klass(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=list(IMAGE_MEAN),
        image_std=list(IMAGE_STD),
    )


def pixel_values_of(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, S, S, 3) -> float (N, 3, S, S), (x / 255 - mean) / std: what the saved processor gives for
    images already at the input size (its resize and centre crop leave them as they are)."""
    pixels = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    return (pixels - mean) / std


def _dihedral(pixel_values: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Each image (B, 3, S, S) turned by one of the 8 rotations/reflections (codes in 0..7: bit 2 flips
    horizontally, bits 0-1 are quarter turns); the measured quality does not change under them."""
    out = torch.empty_like(pixel_values)
    for code in range(8):
        rows = (codes == code).nonzero().flatten()
        if rows.numel():
            chosen = pixel_values[rows]
            chosen = chosen.flip(-1) if code >= 4 else chosen
            out[rows] = torch.rot90(chosen, code % 4, dims=(-2, -1))
    return out


def _optimizer(model: torch.nn.Module, learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on the matrices only (not biases, LayerNorm gains, embeddings or the logit scale)."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        is_matrix = parameter.ndim >= 2 and "embedding" not in name
        (decay if is_matrix else no_decay).append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=learning_rate, betas=(0.9, 0.98), eps=1e-6)


def _learning_rate_factor(step: int, total: int, warmup: int) -> float:
    """Linear warmup over `warmup` steps, then cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def pretrain(args: PretrainClipArguments, pairs: PretrainingPairs | None = None) -> tuple[Any, Any, dict[str, Any]]:
    """Pretrains the tiny CLIP in memory; returns (CLIPModel in eval mode, tokenizer, statistics)."""
    from tqdm.auto import tqdm
    from transformers import CLIPModel

    from modeling_agqg.tools.offline import clip_character_tokenizer, tiny_clip_config

    if args.image_size % args.patch_size:
        raise ValueError(f"image_size={args.image_size} must be a multiple of patch_size={args.patch_size}")
    if len(args.family_weights) != len(CAPTION_FAMILIES) or min(args.family_weights) < 0:
        raise ValueError(f"family_weights={args.family_weights}: {len(CAPTION_FAMILIES)} weights >= 0 expected")
    started = time.perf_counter()
    if pairs is None:
        pairs = build_pretraining_pairs(
            image_size=args.image_size,
            crops_per_photo=args.crops_per_photo,
            random_native_crops=args.random_native_crops,
            crop_scales=args.crop_scales,
            auto_level=args.auto_level,
            context=args.context,
            combined_per_crop=args.combined_per_crop,
            held_out_photos=args.held_out_photos,
            seed=args.seed,
        )
    pairs_seconds = time.perf_counter() - started
    tokenizer = clip_character_tokenizer()
    config = tiny_clip_config(
        tokenizer,
        image_size=args.image_size,
        patch_size=args.patch_size,
        hidden_size=args.hidden_size,
        num_hidden_layers=args.num_layers,
        num_attention_heads=args.num_heads,
        projection_dim=args.projection_dim,
    )
    torch.manual_seed(args.seed)
    model = CLIPModel(config)
    model.train()
    pixel_values = pixel_values_of(pairs.images)
    optimizer = _optimizer(model, args.learning_rate, args.weight_decay)
    warmup = max(1, round(args.warmup_ratio * args.steps))
    rng = np.random.default_rng([args.seed, 1])
    token_cache: dict[str, list[int]] = {}
    sampler = GroupedBatchSampler(pairs.crop_ids, args.batch_size, args.images_per_crop, rng)
    losses: list[float] = []
    train_started = time.perf_counter()
    for step in tqdm(range(args.steps), desc="pretraining CLIP", disable=args.disable_tqdm, mininterval=2.0):
        batch = sampler.next_batch()
        captions = [
            caption_for(pairs.sources[i], pairs.applied[i], float(pairs.quality[i]), rng, None, args.family_weights)
            for i in batch
        ]
        distinct = sorted(set(captions))
        position = {caption: row for row, caption in enumerate(distinct)}
        caption_index = torch.tensor([position[c] for c in captions])
        for caption in distinct:
            if caption not in token_cache:
                token_cache[caption] = _tokenize(tokenizer, caption)
        codes = torch.from_numpy(rng.integers(8, size=len(batch)))
        images = _dihedral(pixel_values[torch.from_numpy(batch)], codes)
        for group in optimizer.param_groups:
            group["lr"] = args.learning_rate * _learning_rate_factor(step, args.steps, warmup)
        image_embeds = _image_embeddings(model, images)
        text_embeds = _text_embeddings(model, [token_cache[c] for c in distinct], tokenizer.pad_token_id)
        loss = contrastive_loss(image_embeds, text_embeds, caption_index, model.logit_scale.exp().clamp(max=100.0))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0.0, math.log(100.0))
        losses.append(loss.item())
    model.eval()
    statistics = {
        "num_pairs": len(pairs),
        "num_photos": len(set(pairs.sources)),
        "photos": sorted(set(pairs.sources)),
        "pairs_seconds": round(pairs_seconds, 1),
        "train_seconds": round(time.perf_counter() - train_started, 1),
        "final_loss": float(np.mean(losses[-50:])) if losses else math.nan,
        "logit_scale": float(model.logit_scale.detach().exp()),
    }
    return model, tokenizer, statistics


class GroupedBatchSampler:
    """Batches of `batch_size / images_per_crop` crops, each with `images_per_crop` of its images (drawn without
    replacement; a crop with fewer images gives all of them). Images of one crop share their content words, so
    within such a group only the distortion and quality words tell the captions apart: hard negatives that make
    the towers learn the distortions rather than the content. Crops are visited in a fresh random order each
    pass; `images_per_crop = 1` gives uniform batches over all images."""

    def __init__(self, crop_ids: np.ndarray, batch_size: int, images_per_crop: int, rng: np.random.Generator) -> None:
        if images_per_crop < 1 or batch_size % images_per_crop:
            raise ValueError(f"batch_size={batch_size} must be a multiple of images_per_crop={images_per_crop} >= 1")
        self.rng = rng
        self.batch_size = batch_size
        self.images_per_crop = images_per_crop
        self.members = [np.flatnonzero(crop_ids == crop) for crop in np.unique(crop_ids)]
        self.order: list[int] = []

    def next_batch(self) -> np.ndarray:
        """Image indices (batch_size,) of the next batch (fewer only when the crops are too small)."""
        if self.images_per_crop == 1:
            everything = np.concatenate(self.members)
            picks = []
            while len(picks) < self.batch_size:
                if not self.order:
                    self.order = list(self.rng.permutation(everything))
                picks.append(self.order.pop())
            return np.asarray(picks, dtype=np.int64)
        groups = []
        for _ in range(self.batch_size // self.images_per_crop):
            if not self.order:
                self.order = list(self.rng.permutation(len(self.members)))
            members = self.members[self.order.pop()]
            groups.append(self.rng.choice(members, size=min(self.images_per_crop, len(members)), replace=False))
        return np.concatenate(groups).astype(np.int64)


def _tokenize(tokenizer: Any, caption: str) -> list[int]:
    """Token ids of a caption; a caption longer than CLIP's 77 tokens is an error (never silently truncated)."""
    ids = tokenizer(caption)["input_ids"]
    if len(ids) > MAX_TOKENS:
        raise ValueError(f"caption {caption!r} has {len(ids)} tokens, more than {MAX_TOKENS}")
    return ids


def _image_embeddings(model: Any, pixel_values: torch.Tensor) -> torch.Tensor:
    """L2-normalised projected image embeddings (B, D) of a `CLIPModel` (tower, pooled output, projection: the
    same on transformers 4.x and 5.x)."""
    return F.normalize(model.visual_projection(model.vision_model(pixel_values=pixel_values).pooler_output), dim=-1)


def _text_embeddings(model: Any, sequences: list[list[int]], pad_id: int, bucket: int = 32) -> torch.Tensor:
    """L2-normalised projected text embeddings (U, D) of token-id lists, run in buckets of `bucket` sequences of
    similar length, each padded to its own longest (character-level captions vary from 12 to 77 tokens), and
    returned in the input order."""
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    chunks = []
    for start in range(0, len(order), bucket):
        rows = order[start : start + bucket]
        input_ids, attention_mask = _pad([sequences[i] for i in rows], pad_id)
        chunks.append(model.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output)
    pooled = torch.cat(chunks)[torch.argsort(torch.tensor(order))]
    return F.normalize(model.text_projection(pooled), dim=-1)


def _pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pads token id lists to (U, L) `input_ids` and the matching `attention_mask`."""
    length = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        input_ids[row, : len(sequence)] = torch.tensor(sequence)
        attention_mask[row, : len(sequence)] = 1
    return input_ids, attention_mask


# --- the folder ----------------------------------------------------------------------------------------


def _arguments(output_dir: str | Path, overrides: Mapping[str, Any]) -> PretrainClipArguments:
    names = {f.name for f in dataclasses.fields(PretrainClipArguments)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"unknown pretraining options {unknown}; expected some of {sorted(names)}")
    args = PretrainClipArguments(output_dir=str(output_dir), **overrides)
    args.crop_scales = parse_crop_scales(args.crop_scales)
    args.family_weights = [float(v) for v in args.family_weights]
    args.held_out_photos = sorted(str(v) for v in args.held_out_photos)
    return args


def is_complete(folder: str | Path, cache_key: str | None = None) -> bool:
    """Whether `folder` is a finished pretraining folder (with the given cache key, when one is given)."""
    record = Path(folder) / PRETRAINING_FILE
    if not record.is_file() or not (Path(folder) / "config.json").is_file():
        return False
    return cache_key is None or json.loads(record.read_text(encoding="utf-8")).get("cache_key") == cache_key


def build_pretrained_clip(output_dir: str | Path = DEFAULT_OUTPUT_DIR, *, seed: int = 0, **options: Any) -> Path:
    """Pretrains the tiny CLIP and saves it as a CLIP folder, or reuses `output_dir` when it already holds one
    pretrained with the same arguments.

    Args:
        output_dir: The folder; it gets `config.json` + `model.safetensors` (`CLIPModel`), the tokenizer files,
            `preprocessor_config.json` and, written last, `pretraining.json` (arguments, cache key, pair counts,
            timing and the zero-shot report when `evaluate=True`).
        seed: Seeds everything; equal arguments give identical weights (on the same thread count).
        **options: Other `PretrainClipArguments` fields (`steps`, `image_size`, `overwrite`, `evaluate`, ...).

    Returns:
        `Path(output_dir)`. The folder is built in a temporary sibling and renamed into place, so an interrupted
        run never leaves a folder that looks complete; a folder from other arguments is replaced, any other
        non-empty folder is an error.
    """
    args = _arguments(output_dir, {**options, "seed": seed})
    output_dir = Path(output_dir)
    key = args.cache_key()
    if not args.overwrite and is_complete(output_dir, key):
        logger.info("pretrained CLIP: reusing %s (cache key %s)", output_dir, key)
        return output_dir
    if output_dir.exists() and any(output_dir.iterdir()) and not is_complete(output_dir):
        raise FileExistsError(
            f"{output_dir} exists, is not empty and is not a pretrained-CLIP folder; not replacing it"
        )
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(args.num_threads)
    try:
        started = time.perf_counter()
        model, tokenizer, statistics = pretrain(args)
        staging = output_dir.parent / f".{output_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
        staging.mkdir(parents=True)
        try:
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            _image_processor(args.image_size).save_pretrained(staging)
            record: dict[str, Any] = {
                "cache_key": key,
                "format_version": _FORMAT_VERSION,
                "arguments": args.key_fields(),
                "statistics": statistics,
                "num_threads": args.num_threads,
                "pretraining_seconds": round(time.perf_counter() - started, 1),
            }
            if args.evaluate:
                record["zero_shot"] = zero_shot_report(
                    staging,
                    held_out_photos=args.held_out_photos,
                    seed=args.eval_seed,
                    crops_per_source=args.eval_crops_per_source,
                    data_dir=args.eval_data_dir,
                    # The test crops are cut as the pretraining crops were (the ablation's data).
                    crop_geometry={
                        "crop_scales": args.crop_scales,
                        "random_native_crops": args.random_native_crops,
                        "context": args.context,
                        "auto_level": args.auto_level,
                    },
                )
            record["total_seconds"] = round(time.perf_counter() - started, 1)
            (staging / PRETRAINING_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
            _replace_folder(staging, output_dir)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    finally:
        torch.set_num_threads(previous_threads)
    logger.info("pretrained CLIP: saved to %s", output_dir)
    return output_dir


def _replace_folder(staging: Path, target: Path) -> None:
    """Renames `staging` to `target`; an existing `target` is moved aside first and removed afterwards."""
    if target.exists():
        aside = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(target, aside)
        os.replace(staging, target)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(staging, target)


# --- zero-shot evaluation ------------------------------------------------------------------------------

ZERO_SHOT_PROMPTS: dict[str, dict[str, Any]] = {
    "clip-iqa": {"grade_names": ["bad", "good"], "grade_prompt_sets": [["Bad photo."], ["Good photo."]]},
    "liqe": {"grade_names": list(GRADE_WORDS), "prompt_templates": ["a photo with {grade} quality."]},
    "coop-template": {"grade_names": list(GRADE_WORDS), "prompt_templates": ["{grade} quality."]},
    "ipce": {
        "alignment_grade_names": list(ALIGNMENT_WORDS),
        "alignment_template": "a photo that {grade} matches '{prompt}'",
    },
}
"""The hosts' grade prompts, as `from_clip` overrides; `ipce` takes each image's photo name as its prompt."""


@torch.no_grad()
def zero_shot_report(
    clip_folder: str | Path,
    *,
    held_out_photos: Sequence[str] = HELD_OUT_PHOTOS,
    seed: int = 0,
    crops_per_source: int = 30,
    data_dir: str | Path | None = None,
    batch_size: int = 256,
    crop_geometry: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """SRCC / PLCC of zero-shot scores against the synthetic MOS on the held-out photos' crops.

    The synthetic dataset is built at the folder's input size with `test_sources=held_out_photos` (data seed
    `seed`; cached in `data_dir` when given; `crop_geometry`: `build_synthetic_dataset`'s `crop_scales`,
    `random_native_crops`, `context`, `auto_level`, default the dataset's own) and every test image is scored by
    `from_clip(folder, grading="softmax", **ZERO_SHOT_PROMPTS[host])` (nothing trained): the score is the
    expected grade of softmax(tau s) on the 1-5 scale. Also reported: a linear probe, ridge regression of the MOS
    on the frozen image embeddings, fitted on the training photos (the penalty picked on the validation photo).

    Returns:
        {"num_images", "photos", "hosts": {host: {"srcc", "plcc", "per_distortion": {kind: {"srcc", "plcc"}},
        "per_photo": {photo: {"srcc", "plcc"}}}}, "linear_probe": {...}}; per distortion, the pristine crops
        are included with the distorted ones.
    """
    from modeling_agqg import AGQGForImageQualityAssessment
    from training.synthetic import SYNTHETIC_MOS_RANGE, build_synthetic_dataset

    clip_folder = Path(clip_folder)
    image_size = int(json.loads((clip_folder / "config.json").read_text())["vision_config"]["image_size"])
    splits = build_synthetic_dataset(
        data_dir,
        image_size=image_size,
        seed=seed,
        crops_per_source=crops_per_source,
        test_sources=list(held_out_photos),
        **dict(crop_geometry or {}),
    )
    test = splits["test"]
    mos = np.asarray(test["mos"], dtype=np.float64)
    meta = {"distortion": list(test["distortion"]), "source": list(test["source"])}
    report: dict[str, Any] = {"num_images": len(test), "photos": sorted(set(meta["source"])), "hosts": {}}
    processor = None
    embeddings: dict[str, np.ndarray] = {}
    for host, overrides in ZERO_SHOT_PROMPTS.items():
        model = AGQGForImageQualityAssessment.from_clip(
            clip_folder, grading="softmax", score_range=SYNTHETIC_MOS_RANGE, **overrides
        )
        processor = model.image_processor
        if not embeddings:
            embeddings = {name: _embed(model, processor, splits[name], batch_size) for name in splits}
        image_embeds = torch.from_numpy(embeddings["test"])
        scores = []
        for start in range(0, len(test), batch_size):
            chunk = image_embeds[start : start + batch_size]
            kwargs: dict[str, Any] = {}
            if host == "ipce":
                kwargs = dict(
                    model.tokenize_alignment_prompts(model.tokenizer, meta["source"][start : start + len(chunk)])
                )
            scores.append(model.score_image_embeds(chunk, **kwargs).score.numpy())
        report["hosts"][host] = _correlations(np.concatenate(scores), mos, meta)
    report["linear_probe"] = _linear_probe(embeddings, splits, meta)
    return report


def _embed(model: Any, processor: Any, split: Any, batch_size: int) -> np.ndarray:
    """Normalised image embeddings (N, D) of a synthetic split through the saved processor."""
    out = []
    for start in range(0, len(split), batch_size):
        images = split[start : start + batch_size]["image"]
        pixel_values = processor(images=images, return_tensors="pt", input_data_format="channels_last")["pixel_values"]
        out.append(model.get_image_embeds(pixel_values).float().numpy())
    return np.concatenate(out)


def _correlations(scores: np.ndarray, mos: np.ndarray, meta: Mapping[str, list[str]]) -> dict[str, Any]:
    from scipy.stats import pearsonr, spearmanr

    def pair(mask: np.ndarray) -> dict[str, float]:
        return {
            "srcc": round(float(spearmanr(scores[mask], mos[mask])[0]), 4),
            "plcc": round(float(pearsonr(scores[mask], mos[mask])[0]), 4),
        }

    distortion = np.asarray(meta["distortion"])
    source = np.asarray(meta["source"])
    result: dict[str, Any] = pair(np.ones_like(mos, dtype=bool))
    result["per_distortion"] = {
        kind: pair((distortion == kind) | (distortion == "none")) for kind in DISTORTIONS if (distortion == kind).any()
    }
    result["per_photo"] = {str(photo): pair(source == photo) for photo in sorted(set(source))}
    return result


def _linear_probe(embeddings: Mapping[str, np.ndarray], splits: Any, meta: Mapping[str, list[str]]) -> dict[str, Any]:
    """Ridge regression MOS ~ w . x + b on frozen embeddings: fitted on train, penalty chosen on validation by
    SRCC, scored on test."""
    from scipy.stats import spearmanr

    def fit(x: np.ndarray, y: np.ndarray, penalty: float) -> np.ndarray:
        design = np.hstack([x, np.ones((len(x), 1))])
        regulariser = penalty * np.eye(design.shape[1])
        regulariser[-1, -1] = 0.0
        return np.linalg.solve(design.T @ design + regulariser, design.T @ y)

    def predict(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return np.hstack([x, np.ones((len(x), 1))]) @ weights

    targets = {name: np.asarray(splits[name]["mos"], dtype=np.float64) for name in splits}
    penalties = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
    validation_srcc = [
        spearmanr(
            predict(embeddings["validation"], fit(embeddings["train"], targets["train"], p)), targets["validation"]
        )[0]
        for p in penalties
    ]
    penalty = penalties[int(np.nanargmax(validation_srcc))]
    weights = fit(embeddings["train"], targets["train"], penalty)
    result = _correlations(predict(embeddings["test"], weights), targets["test"], meta)
    return {"penalty": penalty, **result}


# --- command line --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    from transformers import HfArgumentParser

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = HfArgumentParser(PretrainClipArguments, description=__doc__.split("\n\n")[0])
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    options = {f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.name != "output_dir"}
    started = time.perf_counter()
    folder = build_pretrained_clip(args.output_dir, **options)
    record = json.loads((folder / PRETRAINING_FILE).read_text(encoding="utf-8"))
    print(f"pretrained CLIP folder: {folder} ({time.perf_counter() - started:.0f} s in this call)")
    print(json.dumps({k: record[k] for k in ("statistics", "pretraining_seconds") if k in record}, indent=2))
    if "zero_shot" in record:
        print(format_report(record["zero_shot"]))
    return 0


def format_report(report: Mapping[str, Any]) -> str:
    """The zero-shot report as a Markdown table: host, SRCC, PLCC, SRCC per distortion."""
    kinds = [k for k in DISTORTIONS if k in report["hosts"]["clip-iqa"]["per_distortion"]]
    header = f"| scores | SRCC | PLCC | {' | '.join(kinds)} |"
    lines = [
        f"held-out photos {', '.join(report['photos'])}: {report['num_images']} images (SRCC per distortion)",
        header,
        "|" + "---|" * (3 + len(kinds)),
    ]
    rows = {**{f"zero-shot {h}": r for h, r in report["hosts"].items()}, "linear probe": report["linear_probe"]}
    for name, result in rows.items():
        per = " | ".join(f"{result['per_distortion'][k]['srcc']:.3f}" for k in kinds)
        lines.append(f"| {name} | {result['srcc']:.3f} | {result['plcc']:.3f} | {per} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
