r"""A small synthetic image-quality dataset built offline from real photographs, for the quickstart and tests.

**Sources.** The 9 real colour photographs shipped inside installed packages: scikit-image's `skimage.data`
samples (astronaut, coffee, chelsea, rocket, hubble_deep_field, immunohistochemistry, retina and the left view of
stereo_motorcycle; public domain or CC0) and matplotlib's `grace_hopper.jpg` (public domain) when matplotlib is
installed. (scikit-image's other samples are greyscale, binary, synthetic or microscopy stacks.)

**Crops.** Square crops of side `image_size` are cut at two kinds of resolution (since format 5):

- `crops_per_source` *textured* crops, shared out between `crop_scales`: by default the photo resized to a short
  side of 2, 4 and 8 times `image_size`, and the photo at its own resolution (`"native"`). Candidates are ranked
  by gradient energy plus colourfulness (flat crops would hide blur and noise, grey crops colour loss);
- `random_native_crops` crops at the photo's own resolution and uniformly random positions, flat regions
  included.

The native crops are what a crop-grid view protocol (`modeling_agqg.views_agqg.ViewProtocol`, scheme `crops`)
cuts from a full-size photograph, so a model trained on them scores whole photographs as it was trained (a model
trained on downscaled crops alone took the sensor grain of a full-size photo for detail and added noise for
more detail); the downscaled crops carry most of the texture. Crops are kept as they are: stretching each
crop's luminance to 0-255 (`auto_level=True`, what format 4 did so that lost contrast was not confused with dim
content) makes them unlike the crops of a photo scored as it is, and a model trained on stretched crops next to
native ones did not learn either (docs/training.md).

Each crop is distorted inside a window with `context` pixels of the photo around it (the photo's border
mirrored), then cut out: blur near the crop's edges sees its real neighbours, and a random shift of the window by
0-7 rows and 0-7 columns (drawn separately; format 6) puts the 8x8 JPEG grid anywhere on the crop, as on a crop of
a compressed photo. Training crops are turned by a random one of the 8 rotations/reflections and get their RGB
channels randomly permuted before they are distorted (more varied content from few photos); validation and test
crops are left as they are.

**Distortions.** Every validation and test crop appears once pristine (distortion "none", level 0) and once for
each of five distortion types at levels 1..4 (level 1 is already visible at 64 pixels, level 4 is severe; milder
levels were not learnable by a tiny from-scratch ViT, see docs/datasets.md). A training crop appears pristine
and in `train_conditions` of the 20 conditions drawn at random, and each training photo gives
21 / (1 + `train_conditions`) times as many crops: about as many training images as with every condition, and
several times the content. `distort` applies a distortion with any pixel-scale parameter, to a photograph of any
size (the quickstart's full-size check).

=========  ==========================================  =====================
type       operation                                    parameter at level 1..4
=========  ==========================================  =====================
blur       Gaussian blur, std in pixels                 1.0, 1.8, 2.8, 4.0
noise      additive white Gaussian noise (0-255 scale)  10, 20, 35, 55
jpeg       JPEG re-compression, PIL quality             25, 12, 6, 3
contrast   x -> m + alpha (x - m), m = mean luminance   0.60, 0.40, 0.25, 0.12
colour     x -> g + beta (x - g), g = pixel luminance   0.50, 0.25, 0.08, 0.0
=========  ==========================================  =====================

**Quality.** The noise-free quality `true_quality` of a distorted crop is *measured* against its pristine
crop, not read off the nominal level (the same level is invisible on one crop and severe on another, so
nominal labels do not transfer between photos). Four full-reference measures m_k in [0, 1]
(`degradation_measures`), each the share of a property of the pristine crop that the distortion lost:
structure loss 1 - SSIM (luminance, Gaussian window sigma 1.5), contrast loss 1 - c with c the kept luminance
standard deviation, sharpness loss for the mean absolute luminance gradient beyond what the contrast loss
explains, and colour loss for the Hasler-Suesstrunk colourfulness of the locally averaged colours (the SSIM
window: chroma grain, which JPEG and blur remove, is not colour), likewise beyond the contrast loss. A property
x is kept as 1 - max(0, x_r - x_d) / max(x_r, k): the capped ratio x_d / x_r, except that on nearly flat
content (x_r below a visibility floor k: 0.03 x 255 for the standard deviation and colourfulness, 0.02 x 255 for
the gradient) a loss counts relative to k, so the invisible changes of a flat crop are not total losses. With
d = 1.0 structure + 0.5 sharpness + 0.8 colour + 0.5 contrast,

    q = Q_WORST + (Q_PRISTINE - Q_WORST) / (1 + (d / 0.35) ** 1.5),     Q_PRISTINE = 4.6, Q_WORST = 1.3,

(`quality_from_degradation`), so q = 4.6 for pristine crops and q falls as the damage grows; on each crop q is
made strictly decreasing in the level of each distortion (q_l <= q_m - 0.02 (l - m), m the next lower level
labelled on the crop: very low JPEG qualities can measure slightly better than the next one).
`true_quality(distortion, level)` is the nominal curve 4.6 - 3.3 (l / 4) ** gamma (gamma 0.9 blur, 0.8 noise,
1.0 jpeg, 1.2 contrast, 1.4 colour) that earlier versions used as labels.

**Ratings.** `num_raters` simulated raters each give an integer grade r = clip(round(q + b_j + e), 1, 5), with a
fixed per-rater bias b_j ~ N(0, 0.25^2) and a per-rating error e ~ N(0, 0.6^2). `mos` is the mean of the ratings
(1-5 scale) and `mos_std` their sample standard deviation, as in a real subjective study. `true_quality` keeps q
for analysis; do not train on it.

**Splits.** Photos (not crops) are split: `num_test_sources` photos for `test`, `num_val_sources` for
`validation`, the rest for `train`, chosen with `seed`; no photo appears in two splits. `test_sources` fixes the
test photos instead (e.g. `training.pretrain_clip.HELD_OUT_PHOTOS`, the photos the offline pretrained CLIP never
saw); the validation photos are then drawn from the others with `seed`.

This is a synthetic demonstration: it shows the pipeline working end to end, it says nothing about real
AI-generated-image quality.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

logger = logging.getLogger(__name__)

SYNTHETIC_MOS_RANGE = (1.0, 5.0)
Q_PRISTINE = 4.6
Q_WORST = 1.3
NUM_LEVELS = 4
NATIVE = "native"  # a crop scale: crops at the photo's own resolution
DEFAULT_CROP_SCALES: tuple[float | str, ...] = (2.0, 4.0, 8.0, NATIVE)
DEFAULT_CONTEXT = 16  # pixels of the photo kept around a crop while it is distorted
DISTORTIONS: dict[str, dict[str, Any]] = {
    "blur": {"parameters": (1.0, 1.8, 2.8, 4.0), "gamma": 0.9},
    "noise": {"parameters": (10.0, 20.0, 35.0, 55.0), "gamma": 0.8},
    "jpeg": {"parameters": (25, 12, 6, 3), "gamma": 1.0},
    "contrast": {"parameters": (0.60, 0.40, 0.25, 0.12), "gamma": 1.2},
    "colour": {"parameters": (0.50, 0.25, 0.08, 0.0), "gamma": 1.4},
}
RATER_BIAS_STD = 0.25
RATING_ERROR_STD = 0.6
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])  # luminance Y = RGB @ LUMA_WEIGHTS (ITU-R BT.601)
_FORMAT_VERSION = 6  # bump whenever the images or scores a given set of arguments produces change

__all__ = [
    "DISTORTIONS",
    "LUMA_WEIGHTS",
    "SYNTHETIC_MOS_RANGE",
    "apply_distortion",
    "available_source_photos",
    "build_synthetic_dataset",
    "cut_crop_windows",
    "parse_crop_scales",
    "degradation_measures",
    "measured_quality",
    "quality_from_degradation",
    "simulate_ratings",
    "split_sources",
    "true_quality",
]


# --- source photographs -------------------------------------------------------------------------------


def _skimage_photo(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        return np.asarray(getattr(data, name)())

    return load


def _skimage_motorcycle() -> np.ndarray:
    """The left view of scikit-image's stereo motorcycle pair (the right view shows the same scene: not used)."""
    from skimage import data

    return np.asarray(data.stereo_motorcycle()[0])


def _matplotlib_photo(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from matplotlib import cbook

        with cbook.get_sample_data(filename) as handle:
            return np.asarray(Image.open(handle).convert("RGB"))

    return load


_SOURCE_PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage_photo("astronaut"),
    "coffee": _skimage_photo("coffee"),
    "chelsea": _skimage_photo("chelsea"),
    "rocket": _skimage_photo("rocket"),
    "hubble_deep_field": _skimage_photo("hubble_deep_field"),
    "immunohistochemistry": _skimage_photo("immunohistochemistry"),
    "retina": _skimage_photo("retina"),
    "motorcycle": _skimage_motorcycle,
    "grace_hopper": _matplotlib_photo("grace_hopper.jpg"),
}


def available_source_photos() -> dict[str, np.ndarray]:
    """The source photos that load offline here, name -> RGB uint8 array (H, W, 3), read-only.

    A photo whose package or data file is missing is skipped with a warning naming it.
    """
    return dict(_load_source_photos())


@functools.lru_cache(maxsize=1)
def _load_source_photos() -> dict[str, np.ndarray]:
    photos = {}
    for name, load in _SOURCE_PHOTOS.items():
        try:
            photo = load()
        except Exception as error:  # noqa: BLE001 - any failure just means this photo is unavailable
            logger.warning("synthetic dataset: source photo %r unavailable (%s); skipped", name, error)
            continue
        photo = np.ascontiguousarray(photo[..., :3].astype(np.uint8))
        photo.flags.writeable = False  # shared by every call through the cache
        photos[name] = photo
    return photos


# --- distortions and scores ---------------------------------------------------------------------------


def apply_distortion(image: np.ndarray, distortion: str, level: int, rng: np.random.Generator) -> np.ndarray:
    """Applies `distortion` at `level` (0 = none, 1..4) to an RGB uint8 image (H, W, 3); returns uint8."""
    if level == 0 or distortion == "none":
        return image.copy()
    if distortion not in DISTORTIONS:
        raise ValueError(f"unknown distortion {distortion!r}; expected one of {sorted(DISTORTIONS)}")
    if not 1 <= level <= NUM_LEVELS:
        raise ValueError(f"level={level} must be in 0..{NUM_LEVELS}")
    return distort(image, distortion, DISTORTIONS[distortion]["parameters"][level - 1], rng)


def distort(image: np.ndarray, distortion: str, parameter: float, rng: np.random.Generator) -> np.ndarray:
    """Applies `distortion` with its pixel-scale `parameter` (the table in the module docstring: blur std in
    pixels, noise std on the 0-255 scale, JPEG quality, contrast alpha, colour beta) to an RGB uint8 image
    (H, W, 3) of any size; returns uint8 of the same shape."""
    if distortion not in DISTORTIONS:
        raise ValueError(f"unknown distortion {distortion!r}; expected one of {sorted(DISTORTIONS)}")
    pixels = image.astype(np.float64)
    if distortion == "blur":
        return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius=float(parameter))))
    if distortion == "noise":
        pixels = pixels + rng.normal(0.0, float(parameter), size=pixels.shape)
    elif distortion == "jpeg":
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=int(parameter))
        buffer.seek(0)
        # np.asarray drops the PIL "JPEG" format tag, so datasets later stores the pixels losslessly as PNG.
        return np.asarray(Image.open(buffer).convert("RGB")).copy()
    elif distortion == "contrast":
        mean_luminance = (pixels @ LUMA_WEIGHTS).mean()
        pixels = mean_luminance + parameter * (pixels - mean_luminance)
    elif distortion == "colour":
        luminance = (pixels @ LUMA_WEIGHTS)[..., None]
        pixels = luminance + parameter * (pixels - luminance)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def true_quality(distortion: str, level: int) -> float:
    """q = Q_PRISTINE - (Q_PRISTINE - Q_WORST) (level / 4) ** gamma (module docstring)."""
    if level == 0 or distortion == "none":
        return Q_PRISTINE
    gamma = DISTORTIONS[distortion]["gamma"]
    return Q_PRISTINE - (Q_PRISTINE - Q_WORST) * (level / NUM_LEVELS) ** gamma


def simulate_ratings(quality: np.ndarray, rater_bias: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Integer 1..5 ratings, shape (N, R), of N images with true quality `quality` (N,) by R raters with
    biases `rater_bias` (R,): clip(round(q + b_j + e), 1, 5), e ~ N(0, RATING_ERROR_STD^2)."""
    errors = rng.normal(0.0, RATING_ERROR_STD, size=(quality.shape[0], rater_bias.shape[0]))
    return np.clip(np.rint(quality[:, None] + rater_bias[None, :] + errors), 1, 5)


# --- measured (full-reference) quality ----------------------------------------------------------------

_SSIM_C1 = (0.01 * 255.0) ** 2
_SSIM_C2 = (0.03 * 255.0) ** 2


def _gaussian_smooth(image: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """Separable Gaussian smoothing of a 2-D float array with reflected borders."""
    radius = max(1, int(round(3 * sigma)))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(image, radius, mode="reflect")
    rows = sum(w * padded[:, radius + o : padded.shape[1] - radius + o] for w, o in zip(kernel, offsets, strict=True))
    return sum(w * rows[radius + o : rows.shape[0] - radius + o, :] for w, o in zip(kernel, offsets, strict=True))


def _ssim(reference: np.ndarray, distorted: np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004, Gaussian window sigma 1.5) of two luminance images (H, W) on 0-255."""
    mu_x, mu_y = _gaussian_smooth(reference), _gaussian_smooth(distorted)
    var_x = _gaussian_smooth(reference**2) - mu_x**2
    var_y = _gaussian_smooth(distorted**2) - mu_y**2
    cov = _gaussian_smooth(reference * distorted) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + _SSIM_C1) * (2 * cov + _SSIM_C2)) / (
        (mu_x**2 + mu_y**2 + _SSIM_C1) * (var_x + var_y + _SSIM_C2)
    )
    return float(ssim_map.mean())


def _gradient_energy_of(luminance: np.ndarray) -> float:
    return float(np.abs(np.diff(luminance, axis=0)).mean() + np.abs(np.diff(luminance, axis=1)).mean())


def _smooth_channels(pixels: np.ndarray) -> np.ndarray:
    """Each channel of a float image (H, W, 3) smoothed like the SSIM window (Gaussian std 1.5 px)."""
    return np.stack([_gaussian_smooth(pixels[..., channel]) for channel in range(3)], axis=-1)


def _colourfulness_of(pixels: np.ndarray) -> float:
    red_green = pixels[..., 0] - pixels[..., 1]
    yellow_blue = 0.5 * (pixels[..., 0] + pixels[..., 1]) - pixels[..., 2]
    return float(np.hypot(red_green.std(), yellow_blue.std()) + 0.3 * np.hypot(red_green.mean(), yellow_blue.mean()))


VISIBLE_STD = 0.03 * 255.0
VISIBLE_GRADIENT = 0.02 * 255.0
VISIBLE_COLOURFULNESS = 0.03 * 255.0


def degradation_measures(reference: np.ndarray, distorted: np.ndarray) -> dict[str, float]:
    """Full-reference degradation of `distorted` against `reference` (both RGB uint8 (H, W, 3)), each 0 (none)
    to 1 (total). With s the luminance standard deviation, G the mean absolute luminance gradient (rows plus
    columns) and C the Hasler-Suesstrunk colourfulness, a property x kept by the distortion is

        kept(x_d, x_r, k) = 1 - max(0, x_r - x_d) / max(x_r, k),

    the ratio x_d / x_r capped at 1 whenever the pristine value x_r is at least the visibility floor k; on nearly
    flat content (x_r < k) a loss counts only relative to k, so invisible changes of flat crops (blurring the grain
    of a night sky) are not total losses. With c = kept(s_d, s_r, `VISIBLE_STD`) the kept contrast:
    `structure` = 1 - SSIM of luminance, `contrast` = 1 - c, `sharpness` = 1 - kept(G_d, c G_r, `VISIBLE_GRADIENT`)
    (gradient lost beyond what the contrast loss explains) and `colour` = 1 - kept(C_d, c C_r,
    `VISIBLE_COLOURFULNESS`) (likewise), C measured on each image's channels smoothed like the SSIM window
    (Gaussian std 1.5 px), so removing chroma grain is not a loss of colour."""
    ref, dist = reference.astype(np.float64), distorted.astype(np.float64)
    ref_luma, dist_luma = ref @ LUMA_WEIGHTS, dist @ LUMA_WEIGHTS

    def kept(measured: float, pristine: float, floor: float) -> float:
        return 1.0 - max(0.0, pristine - measured) / max(pristine, floor)

    contrast_kept = max(kept(float(dist_luma.std()), float(ref_luma.std()), VISIBLE_STD), 1e-3)
    sharpness_kept = kept(
        _gradient_energy_of(dist_luma), contrast_kept * _gradient_energy_of(ref_luma), VISIBLE_GRADIENT
    )
    colour_kept = kept(
        _colourfulness_of(_smooth_channels(dist)),
        contrast_kept * _colourfulness_of(_smooth_channels(ref)),
        VISIBLE_COLOURFULNESS,
    )
    return {
        "structure": max(0.0, 1.0 - _ssim(ref_luma, dist_luma)),
        "contrast": 1.0 - contrast_kept,
        "sharpness": 1.0 - sharpness_kept,
        "colour": 1.0 - colour_kept,
    }


MEASURE_WEIGHTS = {"structure": 1.0, "sharpness": 0.5, "colour": 0.8, "contrast": 0.5}
MEASURE_SCALE = 0.35
MEASURE_EXPONENT = 1.5
MONOTONE_MARGIN = 0.02


def quality_from_degradation(degradation: float) -> float:
    """The quality of a total measured degradation d >= 0 (a log-logistic fall from pristine to worst):

        q(d) = Q_WORST + (Q_PRISTINE - Q_WORST) / (1 + (d / MEASURE_SCALE) ** MEASURE_EXPONENT),

    so q(0) = Q_PRISTINE, q is strictly decreasing in d, q(MEASURE_SCALE) is halfway and q -> Q_WORST as d grows."""
    if not degradation >= 0.0:
        raise ValueError(f"degradation={degradation} must be >= 0")
    return float(Q_WORST + (Q_PRISTINE - Q_WORST) / (1.0 + (degradation / MEASURE_SCALE) ** MEASURE_EXPONENT))


def measured_quality(reference: np.ndarray, distorted: np.ndarray) -> float:
    """Noise-free quality from the measured degradation: q(d) of `quality_from_degradation` with
    d = sum_k w_k m_k, m_k the `degradation_measures` of `distorted` against `reference` and w_k the
    `MEASURE_WEIGHTS`."""
    measures = degradation_measures(reference, distorted)
    return quality_from_degradation(sum(MEASURE_WEIGHTS[key] * value for key, value in measures.items()))


# --- crops --------------------------------------------------------------------------------------------


def _resize_short_side(photo: np.ndarray, short_side: int) -> np.ndarray:
    height, width = photo.shape[:2]
    scale = short_side / min(height, width)
    size = (max(short_side, round(width * scale)), max(short_side, round(height * scale)))
    return np.asarray(Image.fromarray(photo).resize(size, Image.Resampling.LANCZOS))


def _crop_scores(crops: np.ndarray) -> np.ndarray:
    """Rank-sum of gradient energy and Hasler-Suesstrunk colourfulness of crops (N, S, S, 3); higher is better."""
    pixels = crops.astype(np.float64)
    luminance = pixels @ LUMA_WEIGHTS
    gradient = np.abs(np.diff(luminance, axis=1)).mean(axis=(1, 2)) + np.abs(np.diff(luminance, axis=2)).mean(
        axis=(1, 2)
    )
    red_green = pixels[..., 0] - pixels[..., 1]
    yellow_blue = 0.5 * (pixels[..., 0] + pixels[..., 1]) - pixels[..., 2]
    colourfulness = np.sqrt(red_green.std(axis=(1, 2)) ** 2 + yellow_blue.std(axis=(1, 2)) ** 2) + 0.3 * np.sqrt(
        red_green.mean(axis=(1, 2)) ** 2 + yellow_blue.mean(axis=(1, 2)) ** 2
    )
    return gradient.argsort().argsort() + colourfulness.argsort().argsort()


def _select_positions(
    photo: np.ndarray, size: int, count: int, rng: np.random.Generator, textured: bool = True
) -> list[tuple[int, int]]:
    """Top-left corners of `count` crops (size, size) of `photo`. Textured: drawn from the better-scoring half of
    8*count random candidates (`_crop_scores`), at most half overlapping pairwise where the photo allows it.
    Otherwise uniformly random, as a test-time crop grid falls on flat and textured regions alike."""
    height, width = photo.shape[:2]
    if not textured:
        tops = rng.integers(0, height - size + 1, size=count)
        lefts = rng.integers(0, width - size + 1, size=count)
        return [(int(t), int(left)) for t, left in zip(tops, lefts, strict=True)]
    num_candidates = 8 * count
    tops = rng.integers(0, height - size + 1, size=num_candidates)
    lefts = rng.integers(0, width - size + 1, size=num_candidates)
    candidates = np.stack([photo[t : t + size, left : left + size] for t, left in zip(tops, lefts, strict=True)])
    order = np.argsort(-_crop_scores(candidates), kind="stable")
    chosen: list[int] = []
    for index in order:
        far_enough = all(
            abs(tops[index] - tops[other]) >= size // 2 or abs(lefts[index] - lefts[other]) >= size // 2
            for other in chosen
        )
        if far_enough:
            chosen.append(int(index))
        if len(chosen) == count:
            break
    for index in order:  # small photos: allow overlap rather than return fewer crops
        if len(chosen) == count:
            break
        if int(index) not in chosen:
            chosen.append(int(index))
    return [(int(tops[i]), int(lefts[i])) for i in chosen]


def _window(photo: np.ndarray, top: int, left: int, size: int, margin: int) -> np.ndarray:
    """The crop at (top, left) with `margin` pixels of the photo around it on every side, (size + 2 margin)^2 x 3;
    where the photo ends, its border is mirrored (`np.pad` "symmetric")."""
    height, width = photo.shape[:2]
    y0, y1 = top - margin, top + size + margin
    x0, x1 = left - margin, left + size + margin
    inside = photo[max(y0, 0) : min(y1, height), max(x0, 0) : min(x1, width)]
    pads = ((max(-y0, 0), max(y1 - height, 0)), (max(-x0, 0), max(x1 - width, 0)), (0, 0))
    return np.pad(inside, pads, mode="symmetric") if any(a or b for a, b in pads[:2]) else inside.copy()


def _auto_level(window: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """Stretches the 1st-99th luminance percentiles of `reference` (default: the image itself) to 0-255 and
    applies the same stretch to all of `window` (all channels alike), so every pristine crop uses the full range
    and lost contrast is visible in the pixels rather than confused with dim content."""
    luminance = (window if reference is None else reference).astype(np.float64) @ LUMA_WEIGHTS
    low, high = np.percentile(luminance, [1, 99])
    if high - low < 1.0:
        return window
    stretched = (window.astype(np.float64) - low) * (255.0 / (high - low))
    return np.clip(np.rint(stretched), 0, 255).astype(np.uint8)


def _random_orientation_and_channels(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of the 8 rotations/reflections of the crop, with its RGB channels randomly permuted."""
    turned = np.rot90(crop, k=int(rng.integers(4)))
    if rng.random() < 0.5:
        turned = turned[:, ::-1]
    return np.ascontiguousarray(turned[..., rng.permutation(3)])


def _crop_groups(
    crop_scales: Sequence[float | str], textured: int, random_native: int
) -> list[tuple[float | str, bool, int]]:
    """(scale, textured, count) of each group of crops of one photo: `textured` crops shared out between the
    scales (the first `textured % len(crop_scales)` get one more), then `random_native` random native crops."""
    groups: list[tuple[float | str, bool, int]] = [
        (scale, True, textured // len(crop_scales) + (index < textured % len(crop_scales)))
        for index, scale in enumerate(crop_scales)
    ]
    return [*groups, (NATIVE, False, random_native)]


def _cut_windows(
    photo: np.ndarray,
    size: int,
    groups: Sequence[tuple[float | str, bool, int]],
    context: int,
    auto_level: bool,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """The windows (`_window`: crop plus `context` pixels on every side) of a photo's crops, group by group
    (`_crop_groups`): at scale s the photo is resized to a short side of s * size, at `NATIVE` it is kept as it
    is; textured groups pick their positions with `_select_positions`, the others uniformly."""
    windows = []
    for scale, textured, count in groups:
        if not count:
            continue
        resized = photo if scale == NATIVE else _resize_short_side(photo, round(float(scale) * size))
        for top, left in _select_positions(resized, size, count, rng, textured=textured):
            window = _window(resized, top, left, size, context)
            if auto_level:
                window = _auto_level(window, window[context : context + size, context : context + size])
            windows.append(window)
    return windows


@dataclass
class CropWindow:
    """One crop of a photo with the photo around it: distort `window`, then cut `window[inner]`, so blur and JPEG
    see the crop's surroundings and the 8x8 JPEG grid falls anywhere on the crop.

    Attributes:
        window: (S + 2c - down, S + 2c - right, 3) uint8 pixels around the crop, the window cut with `c` pixels of
            context on every side less its first `down` rows and `right` columns (each drawn independently from
            0 to min(7, c)).
        inner: The (rows, columns) slices of the S x S crop inside `window`.
    """

    window: np.ndarray
    inner: tuple[slice, slice]

    @property
    def crop(self) -> np.ndarray:
        return self.window[self.inner]

    def distorted(self, steps: Sequence[tuple[str, int]], rng: np.random.Generator) -> np.ndarray:
        """The crop after `apply_distortion` of each (distortion, level) in turn, applied to the whole window."""
        window = self.window
        for distortion, level in steps:
            window = apply_distortion(window, distortion, level, rng)
        return np.ascontiguousarray(window[self.inner])


def cut_crop_windows(
    photo: np.ndarray,
    image_size: int,
    rng: np.random.Generator,
    *,
    textured: int,
    random_native: int,
    crop_scales: Sequence[float | str] = DEFAULT_CROP_SCALES,
    context: int = DEFAULT_CONTEXT,
    auto_level: bool = False,
    augment: bool = False,
) -> Iterator[CropWindow]:
    """The crops of one RGB photo as `build_synthetic_dataset` cuts them (and `training/pretrain_clip.py`, so the
    pretrained CLIP sees the same kind of crops): `textured` crops shared out between `crop_scales`, then
    `random_native` crops at the photo's own resolution and uniformly random positions, each with `context` pixels
    of the photo around it, shifted by 0-7 pixels (the JPEG grid); with `augment` each window is first turned by
    one of the 8 rotations/reflections and has its channels permuted.

    A generator: the crop positions are drawn first, each window's orientation and shift when it is taken, so a
    caller that draws from `rng` between windows (the distortions) gets reproducible streams."""
    windows = _cut_windows(
        photo, image_size, _crop_groups(crop_scales, textured, random_native), context, auto_level, rng
    )
    for window in windows:
        if augment:  # more varied content for the few training photos; labels are measured anyway
            window = _random_orientation_and_channels(window, rng)
        # A random 0-7 pixel shift of the window puts the 8x8 JPEG grid anywhere on the crop, as on the crops a
        # test-time grid cuts from a compressed photo.
        down, right = (int(rng.integers(0, min(8, context + 1))) for _ in range(2))
        inner = (
            slice(context - down, context - down + image_size),
            slice(context - right, context - right + image_size),
        )
        yield CropWindow(window[down:, right:], inner)


# --- the dataset --------------------------------------------------------------------------------------


def split_sources(
    names: Sequence[str],
    *,
    num_val_sources: int = 1,
    num_test_sources: int = 2,
    seed: int = 0,
    test_sources: Sequence[str] | None = None,
) -> dict[str, list[str]]:
    """The photos of each split, {"train", "validation", "test"} -> sorted names, as `build_synthetic_dataset`
    splits `names` with the same arguments (module docstring, "Splits"): `num_test_sources` test and
    `num_val_sources` validation photos drawn with `seed`, or the fixed `test_sources` and validation photos drawn
    from the others. Raises ValueError when a split would be empty or a test photo is not among `names`."""
    names, num_val, num_test = list(names), num_val_sources, num_test_sources
    if test_sources is not None:
        missing = sorted(set(test_sources) - set(names))
        if missing or not test_sources or num_val < 1 or len(names) < len(set(test_sources)) + num_val + 1:
            raise ValueError(
                f"test_sources={list(test_sources)} with num_val_sources={num_val}: need test photos among the "
                f"available ones ({sorted(names)}; missing: {missing}), one validation photo and one for training"
            )
        rest = list(np.random.default_rng(seed).permutation(sorted(set(names) - set(test_sources))))
        test = sorted({str(name) for name in test_sources})
        return {"test": test, "validation": sorted(rest[:num_val]), "train": sorted(rest[num_val:])}
    if num_val < 1 or num_test < 1 or len(names) < num_val + num_test + 1:
        raise ValueError(
            f"{len(names)} source photos available ({names}); need num_val_sources={num_val} >= 1, "
            f"num_test_sources={num_test} >= 1 and at least one photo for training"
        )
    order = list(np.random.default_rng(seed).permutation(sorted(names)))
    return {
        "test": sorted(order[:num_test]),
        "validation": sorted(order[num_test : num_test + num_val]),
        "train": sorted(order[num_test + num_val :]),
    }


def parse_crop_scales(values: Sequence[float | str]) -> list[float | str]:
    """Crop scales as `build_synthetic_dataset` and `cut_crop_windows` take them: each a number >= 1 (the photo's
    short side in units of the crop size; numbers written as text, as YAML files and flags give them, are read as
    numbers) or `NATIVE`. Raises ValueError for an empty list or anything else."""
    problem = f"crop_scales={list(values)} must be non-empty, each a number >= 1 (the crop must fit) or {NATIVE!r}"
    parsed: list[float | str] = []
    for value in values:
        if value == NATIVE:
            parsed.append(NATIVE)
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not number >= 1:
            raise ValueError(problem)
        parsed.append(number)
    if not parsed:
        raise ValueError(problem)
    return parsed


def build_synthetic_dataset(
    out_dir: str | Path | None = None,
    *,
    image_size: int = 64,
    seed: int = 0,
    crops_per_source: int = 10,
    crop_scales: Sequence[float | str] = DEFAULT_CROP_SCALES,
    random_native_crops: int = 8,
    context: int = DEFAULT_CONTEXT,
    auto_level: bool = False,
    train_conditions: int | None = 4,
    num_raters: int = 25,
    num_val_sources: int = 1,
    num_test_sources: int = 2,
    distortions: Sequence[str] | None = None,
    test_sources: Sequence[str] | None = None,
    overwrite: bool = False,
) -> Any:
    """Builds (or loads from the cache in `out_dir`) the synthetic quality dataset described above.

    Args:
        out_dir: Cache folder. When it holds a dataset built with the same arguments it is loaded
            (`datasets.load_from_disk`); otherwise the dataset is built and saved there with `save_to_disk`.
            `None` builds in memory.
        image_size: Side of the square crops in pixels.
        seed: Seeds the split, crop positions, noise and ratings; equal arguments give identical datasets.
        crops_per_source: Textured crops per held-out photo, shared out between `crop_scales` (the first
            `crops_per_source % len(crop_scales)` scales get one more); each gives 1 + 5 * 4 = 21 images.
        crop_scales: Where the textured crops are cut: a number s resizes the photo to a short side of
            `s * image_size`, `"native"` (`NATIVE`) keeps the photo's own resolution.
        random_native_crops: Further crops per held-out photo at its own resolution and uniformly random
            positions (flat regions included), like the crops a test-time crop grid cuts from a photo.
        context: Pixels of the photo kept around each crop while it is distorted (blur and JPEG see the crop's
            surroundings, and the JPEG grid falls anywhere on the crop); 0 distorts the bare crop.
        auto_level: Stretch every crop's 1st-99th luminance percentiles to 0-255 before distorting it (the
            format-4 data). Off by default: a model that scores the crops of a photo as it is must learn from
            crops as they are.
        train_conditions: Each training crop appears pristine and with this many of the 20 (distortion, level)
            conditions drawn at random (not all 20), and each training photo gives 21 / (1 + train_conditions)
            times as many crops (counts rounded): about as many training images, several times the content.
            `None`: every condition, like validation and test.
        num_raters: Simulated raters per image.
        num_val_sources, num_test_sources: Photos held out for validation and test.
        distortions: The distortion types to include (default: all five, in `DISTORTIONS` order).
        test_sources: Fixed test photos (names of `available_source_photos`; `num_test_sources` is then
            ignored); validation and training photos are drawn from the others with `seed`. Default: drawn too.
        overwrite: Rebuild even when a matching cache exists.

    Returns:
        `datasets.DatasetDict` with splits train, validation, test and columns `image` (Image), `mos`
        (float32, 1-5), `mos_std` (float32), `source`, `crop` (int), `distortion`, `level` (int),
        `true_quality` (float32) and `name`. Each split's `info.description` is a JSON object with the MOS
        range (see `training.data.mos_range`).
    """
    import datasets

    from training.data import describe_dataset

    distortions = list(DISTORTIONS) if distortions is None else list(distortions)
    unknown = sorted(set(distortions) - set(DISTORTIONS))
    if unknown or not distortions:
        raise ValueError(f"distortions={distortions}; expected a non-empty subset of {list(DISTORTIONS)}")
    crop_scales = parse_crop_scales(crop_scales)
    parameters = {
        "format_version": _FORMAT_VERSION,
        "distortions": [kind for kind in DISTORTIONS if kind in distortions],
        "image_size": int(image_size),
        "seed": int(seed),
        "crops_per_source": int(crops_per_source),
        "crop_scales": crop_scales,
        "random_native_crops": int(random_native_crops),
        "context": int(context),
        "auto_level": bool(auto_level),
        "train_conditions": None if train_conditions is None else int(train_conditions),
        "num_raters": int(num_raters),
        "num_val_sources": int(num_val_sources),
        "num_test_sources": int(num_test_sources),
    }
    if test_sources is not None:  # only then: the cache keys of the other datasets stay as they were
        parameters["test_sources"] = sorted({str(name) for name in test_sources})
    if image_size < 8 or crops_per_source < 1 or num_raters < 2 or random_native_crops < 0 or context < 0:
        raise ValueError(
            "need image_size >= 8, crops_per_source >= 1, num_raters >= 2, random_native_crops >= 0 and "
            f"context >= 0, got {parameters}"
        )
    num_conditions = 1 + NUM_LEVELS * len(parameters["distortions"])
    if train_conditions is not None and not 1 <= train_conditions <= num_conditions - 1:
        raise ValueError(f"train_conditions={train_conditions} must be in 1..{num_conditions - 1} (or None)")
    cache_key = hashlib.sha256(json.dumps(parameters, sort_keys=True).encode()).hexdigest()[:16]
    if out_dir is not None:
        out_dir = Path(out_dir)
        key_file = out_dir / "synthetic_parameters.json"
        if not overwrite and key_file.is_file() and (out_dir / "dataset_dict.json").is_file():
            cached = json.loads(key_file.read_text())
            if cached.get("cache_key") == cache_key:
                logger.info("synthetic dataset: loading cached copy from %s", out_dir)
                return datasets.load_from_disk(str(out_dir))
            logger.info("synthetic dataset: cache in %s was built with other arguments; rebuilding", out_dir)

    photos = available_source_photos()
    test_photos = parameters.get("test_sources")
    photos_by_split = split_sources(
        list(photos),
        num_val_sources=num_val_sources,
        num_test_sources=num_test_sources,
        seed=seed,
        test_sources=test_photos,
    )
    rng = np.random.default_rng(seed)
    rater_bias = rng.normal(0.0, RATER_BIAS_STD, size=num_raters)
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "mos": datasets.Value("float32"),
            "mos_std": datasets.Value("float32"),
            "source": datasets.Value("string"),
            "crop": datasets.Value("int32"),
            "distortion": datasets.Value("string"),
            "level": datasets.Value("int32"),
            "true_quality": datasets.Value("float32"),
            "name": datasets.Value("string"),
        }
    )
    conditions = [("none", 0)] + [
        (kind, level) for kind in parameters["distortions"] for level in range(1, NUM_LEVELS + 1)
    ]
    splits = {}
    for split, names in photos_by_split.items():
        rows: dict[str, list[Any]] = {key: [] for key in features}
        for name in names:
            # Training photos give more crops when each crop is shown in fewer conditions (`train_conditions`).
            factor = len(conditions) / (1 + train_conditions) if split == "train" and train_conditions else 1.0
            cut = cut_crop_windows(
                photos[name],
                image_size,
                rng,
                textured=round(crops_per_source * factor),
                random_native=round(random_native_crops * factor),
                crop_scales=parameters["crop_scales"],
                context=context,
                auto_level=auto_level,
                augment=split == "train",
            )
            for crop_index, crop_window in enumerate(cut):
                crop = crop_window.crop
                chosen = conditions
                if split == "train" and train_conditions is not None:
                    picks = np.sort(rng.choice(len(conditions) - 1, size=train_conditions, replace=False)) + 1
                    chosen = [conditions[0]] + [conditions[int(i)] for i in picks]
                previous: dict[str, tuple[int, float]] = {}  # distortion -> (level, quality) last labelled
                for distortion, level in chosen:
                    distorted = crop_window.distorted([(distortion, level)], rng)
                    quality = Q_PRISTINE
                    if level:
                        # A stronger setting of the same distortion never scores better on the same crop (very low
                        # JPEG qualities can measure slightly better than the next-higher one).
                        quality = measured_quality(crop, distorted)
                        if distortion in previous:  # the last lower level of this distortion labelled on the crop
                            last_level, last_quality = previous[distortion]
                            quality = min(quality, last_quality - MONOTONE_MARGIN * (level - last_level))
                        previous[distortion] = (level, quality)
                    rows["image"].append(Image.fromarray(distorted))
                    rows["source"].append(name)
                    rows["crop"].append(crop_index)
                    rows["distortion"].append(distortion)
                    rows["level"].append(level)
                    rows["true_quality"].append(quality)
                    rows["name"].append(f"{name}_crop{crop_index:02d}_{distortion}_{level}.png")
        ratings = simulate_ratings(np.asarray(rows["true_quality"]), rater_bias, rng)
        rows["mos"] = ratings.mean(axis=1).tolist()
        rows["mos_std"] = ratings.std(axis=1, ddof=1).tolist()
        dataset = datasets.Dataset.from_dict(rows, features=features)
        splits[split] = describe_dataset(
            dataset,
            name="synthetic-distortions",
            mos_range=SYNTHETIC_MOS_RANGE,
            higher_is_better=True,
            licence="cc0-1.0",
            licence_note="source photos are public domain or CC0 (scikit-image and matplotlib samples)",
            redistributable=True,
            split=split,
            sources=names,
            parameters=parameters,
            note="Synthetic demonstration data: graded distortions of sample photos with simulated ratings.",
        )
    dataset_dict = datasets.DatasetDict({split: splits[split] for split in ("train", "validation", "test")})
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        dataset_dict.save_to_disk(str(out_dir))
        (out_dir / "synthetic_parameters.json").write_text(
            json.dumps({"cache_key": cache_key, **parameters}, indent=2) + "\n"
        )
        logger.info("synthetic dataset: saved to %s", out_dir)
    return dataset_dict
