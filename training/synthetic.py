r"""A small synthetic image-quality dataset built offline from real photographs, for the quickstart and tests.

**Sources.** The 9 real colour photographs shipped inside installed packages: scikit-image's `skimage.data`
samples (astronaut, coffee, chelsea, rocket, hubble_deep_field, immunohistochemistry, retina and the left view of
stereo_motorcycle; public domain or CC0) and matplotlib's `grace_hopper.jpg` (public domain) when matplotlib is
installed. (scikit-image's other samples are greyscale, binary, synthetic or microscopy stacks.) Each photo is
resized (short side `scale * image_size` for each of `crop_scales`) and `crops_per_source` textured, colourful
square crops of side `image_size` are cut from it (candidates are ranked by gradient energy plus colourfulness;
flat crops would hide blur and noise, grey crops would hide colour loss). Each crop is then auto-levelled (its
1st-99th luminance percentiles stretched to 0-255) so that lost contrast is not confused with dim content. By
default the crops are shared out between three resizings (short side 2, 4 and 8 times `image_size`). Training
crops are turned by a random one of the 8 rotations/reflections and get their RGB channels randomly permuted
before they are distorted (more varied content from few photos); validation and test crops are left as they are.

**Distortions.** Every crop appears once pristine (distortion "none", level 0) and once for each of five
distortion types at levels 1..4 (level 1 is already visible at 64 pixels, level 4 is severe; milder levels
were not learnable by a tiny from-scratch ViT, see docs/datasets.md):

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
(`degradation_measures`): structure loss 1 - SSIM (luminance, Gaussian window sigma 1.5), contrast loss
1 - s_d / s_r (luminance standard deviation), sharpness loss 1 - G_d / (c G_r) (mean absolute luminance gradient
beyond what the contrast loss c = s_d / s_r explains) and colour loss 1 - C_d / (c C_r) (Hasler-Suesstrunk
colourfulness, likewise), each ratio capped at 1. With d = 1.0 structure + 0.5 sharpness + 0.8 colour + 0.5
contrast,

    q = Q_WORST + (Q_PRISTINE - Q_WORST) / (1 + (d / 0.35) ** 1.5),     Q_PRISTINE = 4.6, Q_WORST = 1.3,

(`quality_from_degradation`), so q = 4.6 for pristine crops and q falls as the damage grows; on each crop q is
made strictly decreasing in the level of each distortion (q_l <= q_(l-1) - 0.02: very low JPEG qualities can
measure slightly better than the next one). `true_quality(distortion, level)` is the nominal curve
4.6 - 3.3 (l / 4) ** gamma (gamma 0.9 blur, 0.8 noise, 1.0 jpeg, 1.2 contrast, 1.4 colour) that earlier versions
used as labels.

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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

logger = logging.getLogger(__name__)

SYNTHETIC_MOS_RANGE = (1.0, 5.0)
Q_PRISTINE = 4.6
Q_WORST = 1.3
NUM_LEVELS = 4
DISTORTIONS: dict[str, dict[str, Any]] = {
    "blur": {"parameters": (1.0, 1.8, 2.8, 4.0), "gamma": 0.9},
    "noise": {"parameters": (10.0, 20.0, 35.0, 55.0), "gamma": 0.8},
    "jpeg": {"parameters": (25, 12, 6, 3), "gamma": 1.0},
    "contrast": {"parameters": (0.60, 0.40, 0.25, 0.12), "gamma": 1.2},
    "colour": {"parameters": (0.50, 0.25, 0.08, 0.0), "gamma": 1.4},
}
RATER_BIAS_STD = 0.25
RATING_ERROR_STD = 0.6
_LUMA = np.array([0.299, 0.587, 0.114])
_FORMAT_VERSION = 4  # bump whenever the images or scores a given set of arguments produces change

__all__ = [
    "DISTORTIONS",
    "SYNTHETIC_MOS_RANGE",
    "apply_distortion",
    "available_source_photos",
    "build_synthetic_dataset",
    "cut_source_crops",
    "degradation_measures",
    "measured_quality",
    "quality_from_degradation",
    "random_orientation_and_channels",
    "simulate_ratings",
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
    parameter = DISTORTIONS[distortion]["parameters"][level - 1]
    pixels = image.astype(np.float64)
    if distortion == "blur":
        return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius=parameter)))
    if distortion == "noise":
        pixels = pixels + rng.normal(0.0, parameter, size=pixels.shape)
    elif distortion == "jpeg":
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=int(parameter))
        buffer.seek(0)
        # np.asarray drops the PIL "JPEG" format tag, so datasets later stores the pixels losslessly as PNG.
        return np.asarray(Image.open(buffer).convert("RGB")).copy()
    elif distortion == "contrast":
        mean_luminance = (pixels @ _LUMA).mean()
        pixels = mean_luminance + parameter * (pixels - mean_luminance)
    elif distortion == "colour":
        luminance = (pixels @ _LUMA)[..., None]
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


def _colourfulness_of(pixels: np.ndarray) -> float:
    red_green = pixels[..., 0] - pixels[..., 1]
    yellow_blue = 0.5 * (pixels[..., 0] + pixels[..., 1]) - pixels[..., 2]
    return float(np.hypot(red_green.std(), yellow_blue.std()) + 0.3 * np.hypot(red_green.mean(), yellow_blue.mean()))


def degradation_measures(reference: np.ndarray, distorted: np.ndarray) -> dict[str, float]:
    """Full-reference degradation of `distorted` against `reference` (both RGB uint8 (H, W, 3)), each 0 (none)
    to about 1 (total). With s the luminance standard deviation, G the mean absolute luminance gradient, C the
    Hasler-Suesstrunk colourfulness and c = min(1, s_d / s_r) the kept contrast:
    `structure` = 1 - SSIM of luminance, `contrast` = 1 - c, `sharpness` = 1 - min(1, G_d / (c G_r)) (gradient
    lost beyond what the contrast loss explains), `colour` = 1 - min(1, C_d / (c C_r)) (likewise)."""
    ref, dist = reference.astype(np.float64), distorted.astype(np.float64)
    ref_luma, dist_luma = ref @ _LUMA, dist @ _LUMA

    def kept(measured: float, pristine: float) -> float:
        return float(min(1.0, measured / pristine)) if pristine > 1e-6 else 1.0

    contrast_kept = max(kept(float(dist_luma.std()), float(ref_luma.std())), 1e-3)
    return {
        "structure": max(0.0, 1.0 - _ssim(ref_luma, dist_luma)),
        "contrast": 1.0 - contrast_kept,
        "sharpness": 1.0 - kept(_gradient_energy_of(dist_luma), contrast_kept * _gradient_energy_of(ref_luma)),
        "colour": 1.0 - kept(_colourfulness_of(dist), contrast_kept * _colourfulness_of(ref)),
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
    luminance = pixels @ _LUMA
    gradient = np.abs(np.diff(luminance, axis=1)).mean(axis=(1, 2)) + np.abs(np.diff(luminance, axis=2)).mean(
        axis=(1, 2)
    )
    red_green = pixels[..., 0] - pixels[..., 1]
    yellow_blue = 0.5 * (pixels[..., 0] + pixels[..., 1]) - pixels[..., 2]
    colourfulness = np.sqrt(red_green.std(axis=(1, 2)) ** 2 + yellow_blue.std(axis=(1, 2)) ** 2) + 0.3 * np.sqrt(
        red_green.mean(axis=(1, 2)) ** 2 + yellow_blue.mean(axis=(1, 2)) ** 2
    )
    return gradient.argsort().argsort() + colourfulness.argsort().argsort()


def _select_crops(photo: np.ndarray, size: int, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """`count` crops (size, size, 3) drawn from the better-scoring half of 8*count random candidates,
    at most half overlapping pairwise where the photo allows it."""
    height, width = photo.shape[:2]
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
    return [_auto_level(candidates[i]) for i in chosen]


def _auto_level(crop: np.ndarray) -> np.ndarray:
    """Stretches the crop's 1st-99th luminance percentiles to 0-255 (all channels alike), so every pristine
    crop uses the full range and lost contrast is visible in the pixels rather than confused with dim content."""
    luminance = crop.astype(np.float64) @ _LUMA
    low, high = np.percentile(luminance, [1, 99])
    if high - low < 1.0:
        return crop
    stretched = (crop.astype(np.float64) - low) * (255.0 / (high - low))
    return np.clip(np.rint(stretched), 0, 255).astype(np.uint8)


def _random_orientation_and_channels(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of the 8 rotations/reflections of the crop, with its RGB channels randomly permuted."""
    turned = np.rot90(crop, k=int(rng.integers(4)))
    if rng.random() < 0.5:
        turned = turned[:, ::-1]
    return np.ascontiguousarray(turned[..., rng.permutation(3)])


def random_orientation_and_channels(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of the 8 rotations/reflections of an RGB crop (S, S, 3), with its channels randomly permuted (the
    augmentation of the training crops)."""
    return _random_orientation_and_channels(crop, rng)


def cut_source_crops(
    photo: np.ndarray, image_size: int, count: int, crop_scales: Sequence[float], rng: np.random.Generator
) -> list[np.ndarray]:
    """`count` auto-levelled, textured, colourful crops (image_size, image_size, 3) of an RGB photo, shared out
    between the resizings of the photo to a short side of `scale * image_size` for each of `crop_scales` (the
    first `count % len(crop_scales)` scales get one more), exactly as `build_synthetic_dataset` cuts them."""
    crops: list[np.ndarray] = []
    for scale_index, scale in enumerate(crop_scales):
        scale_count = count // len(crop_scales) + (scale_index < count % len(crop_scales))
        resized = _resize_short_side(photo, round(scale * image_size))
        crops += _select_crops(resized, image_size, scale_count, rng) if scale_count else []
    return crops


# --- the dataset --------------------------------------------------------------------------------------


def _split_sources(
    names: list[str], num_val: int, num_test: int, seed: int, test_sources: Sequence[str] | None = None
) -> dict[str, list[str]]:
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


def build_synthetic_dataset(
    out_dir: str | Path | None = None,
    *,
    image_size: int = 64,
    seed: int = 0,
    crops_per_source: int = 10,
    crop_scales: Sequence[float] = (2.0, 4.0, 8.0),
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
        crops_per_source: Crops per photo; each gives 1 + 5 * 4 = 21 images.
        crop_scales: The photo is resized to a short side of `scale * image_size` for each scale and the crops
            are shared out between the scales (more scales: more varied content per photo).
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
    parameters = {
        "format_version": _FORMAT_VERSION,
        "distortions": [kind for kind in DISTORTIONS if kind in distortions],
        "image_size": int(image_size),
        "seed": int(seed),
        "crops_per_source": int(crops_per_source),
        "crop_scales": [float(scale) for scale in crop_scales],
        "num_raters": int(num_raters),
        "num_val_sources": int(num_val_sources),
        "num_test_sources": int(num_test_sources),
    }
    if test_sources is not None:  # only then: the cache keys of the other datasets stay as they were
        parameters["test_sources"] = sorted({str(name) for name in test_sources})
    if not crop_scales or min(crop_scales) < 1:
        raise ValueError(f"crop_scales={list(crop_scales)} must be non-empty and >= 1 (the crop must fit)")
    if image_size < 8 or crops_per_source < 1 or num_raters < 2:
        raise ValueError(f"need image_size >= 8, crops_per_source >= 1 and num_raters >= 2, got {parameters}")
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
    split_sources = _split_sources(list(photos), num_val_sources, num_test_sources, seed, test_photos)
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
    for split, names in split_sources.items():
        rows: dict[str, list[Any]] = {key: [] for key in features}
        for name in names:
            crops = cut_source_crops(photos[name], image_size, crops_per_source, parameters["crop_scales"], rng)
            for crop_index, crop in enumerate(crops):
                if split == "train":  # more varied content for the few training photos; labels are measured anyway
                    crop = _random_orientation_and_channels(crop, rng)
                previous_quality = Q_PRISTINE
                for distortion, level in conditions:
                    distorted = apply_distortion(crop, distortion, level, rng)
                    quality = Q_PRISTINE
                    if level:
                        # A stronger setting of the same distortion never scores better on the same crop (very low
                        # JPEG qualities can measure slightly better than the next-higher one).
                        quality = measured_quality(crop, distorted)
                        if level > 1:
                            quality = min(quality, previous_quality - MONOTONE_MARGIN)
                        previous_quality = quality
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
