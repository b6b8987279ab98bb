"""The synthetic quickstart dataset: structure, honesty of the split, scores, distortions and caching."""

from __future__ import annotations

import io

import numpy as np
import pytest

from training import synthetic
from training.data import dataset_metadata, mos_range
from training.synthetic import (
    DISTORTIONS,
    apply_distortion,
    available_source_photos,
    build_synthetic_dataset,
    simulate_ratings,
    true_quality,
)

SMALL = {"image_size": 24, "crops_per_source": 2, "num_raters": 9}


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory: pytest.TempPathFactory):
    return build_synthetic_dataset(tmp_path_factory.mktemp("synthetic") / "cache", **SMALL)


def _gradient_energy(image: np.ndarray) -> float:
    luminance = image.astype(np.float64).mean(-1)
    return float(np.abs(np.diff(luminance, axis=0)).mean() + np.abs(np.diff(luminance, axis=1)).mean())


def test_structure_and_columns(small_dataset) -> None:
    assert list(small_dataset) == ["train", "validation", "test"]
    columns = {"image", "mos", "mos_std", "source", "crop", "distortion", "level", "true_quality", "name"}
    photos = available_source_photos()
    assert len(photos) >= 7  # scikit-image ships 7 of them
    total = 0
    for split in small_dataset.values():
        assert columns <= set(split.column_names)
        assert split.features["image"].__class__.__name__ == "Image"
        assert split.features["mos"].dtype == "float32" and split.features["mos_std"].dtype == "float32"
        assert mos_range(split) == (1.0, 5.0)
        assert dataset_metadata(split)["redistributable"] is True
        total += len(split)
        image = split[0]["image"]
        assert image.size == (24, 24) and image.mode == "RGB"
    assert total == len(photos) * SMALL["crops_per_source"] * 21


def test_no_source_photo_in_two_splits(small_dataset) -> None:
    sources = {name: set(split["source"]) for name, split in small_dataset.items()}
    assert sources["train"].isdisjoint(sources["validation"])
    assert sources["train"].isdisjoint(sources["test"])
    assert sources["validation"].isdisjoint(sources["test"])
    assert len(sources["test"]) == 2 and len(sources["validation"]) == 1


def test_scores_follow_distortion_strength(small_dataset) -> None:
    train = small_dataset["train"].select_columns(["mos", "mos_std", "distortion", "level", "true_quality"])
    table = train.to_pandas()
    assert table["mos"].between(1, 5).all()
    assert (table["mos_std"] >= 0).all() and table["mos_std"].mean() > 0.3  # raters disagree
    for kind in DISTORTIONS:
        rows = table[(table.distortion == kind) | (table.level == 0)]
        by_level = rows.groupby("level")
        assert np.all(np.diff(by_level["true_quality"].mean().to_numpy()) < 0), kind
        assert np.all(np.diff(by_level["mos"].mean().to_numpy()) < 0), kind
    # The MOS estimates the noise-free quality closely (it is a mean over raters).
    assert np.corrcoef(table["mos"], table["true_quality"])[0, 1] > 0.95


def test_true_quality_formula() -> None:
    assert true_quality("none", 0) == synthetic.Q_PRISTINE
    for kind, spec in DISTORTIONS.items():
        values = [true_quality(kind, level) for level in range(5)]
        assert all(a > b for a, b in zip(values, values[1:], strict=False)), kind
        assert values[4] == pytest.approx(synthetic.Q_WORST)
        expected = synthetic.Q_PRISTINE - (synthetic.Q_PRISTINE - synthetic.Q_WORST) * 0.5 ** spec["gamma"]
        assert values[2] == pytest.approx(expected)


def test_simulated_ratings_are_integer_grades_centred_on_the_quality() -> None:
    rng = np.random.default_rng(0)
    quality = np.array([1.0, 3.0, 4.6])
    ratings = simulate_ratings(quality, np.zeros(4000), rng)
    assert set(np.unique(ratings)) <= {1, 2, 3, 4, 5}
    assert ratings[1].mean() == pytest.approx(3.0, abs=0.05)
    assert ratings[1].std() == pytest.approx(np.sqrt(synthetic.RATING_ERROR_STD**2 + 1 / 12), abs=0.05)
    assert ratings[0].mean() < ratings[1].mean() < ratings[2].mean()


def test_distortions_change_pixels_as_named() -> None:
    rng = np.random.default_rng(0)
    crop = available_source_photos()["astronaut"][100:164, 200:264]
    assert np.array_equal(apply_distortion(crop, "none", 0, rng), crop)
    blur = [_gradient_energy(apply_distortion(crop, "blur", level, rng)) for level in range(5)]
    assert all(a > b for a, b in zip(blur, blur[1:], strict=False))
    noise = [np.abs(apply_distortion(crop, "noise", level, rng).astype(float) - crop).mean() for level in range(5)]
    assert all(a < b for a, b in zip(noise, noise[1:], strict=False))
    jpeg = [np.abs(apply_distortion(crop, "jpeg", level, rng).astype(float) - crop).mean() for level in range(5)]
    assert all(a < b for a, b in zip(jpeg, jpeg[1:], strict=False))
    contrast = [apply_distortion(crop, "contrast", level, rng).astype(float).std() for level in range(5)]
    assert all(a > b for a, b in zip(contrast, contrast[1:], strict=False))
    saturation = [
        np.ptp(apply_distortion(crop, "colour", level, rng).astype(float), axis=-1).mean() for level in range(5)
    ]
    assert all(a > b for a, b in zip(saturation, saturation[1:], strict=False)) and saturation[4] <= 1.0
    with pytest.raises(ValueError, match="unknown distortion 'sepia'"):
        apply_distortion(crop, "sepia", 1, rng)
    with pytest.raises(ValueError, match="level=7"):
        apply_distortion(crop, "blur", 7, rng)


def test_images_are_stored_losslessly(small_dataset) -> None:
    from datasets import Image as ImageFeature

    raw = small_dataset["train"].cast_column("image", ImageFeature(decode=False))
    jpeg_rows = [i for i, kind in enumerate(raw["distortion"]) if kind == "jpeg"]
    stored = raw[jpeg_rows[0]]["image"]["bytes"]
    assert stored[:8] == b"\x89PNG\r\n\x1a\n"  # JPEG artefacts are not compressed a second time
    assert io.BytesIO(stored).getbuffer().nbytes > 0


def test_crops_are_textured(small_dataset) -> None:
    pristine = small_dataset["test"].filter(lambda level: level == 0, input_columns="level")
    for image in pristine["image"]:
        assert _gradient_energy(np.asarray(image)) > 2.0


def test_cache_is_reused_and_rebuilt_when_arguments_change(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = build_synthetic_dataset(tmp_path / "cache", seed=3, **SMALL)
    assert (tmp_path / "cache" / "dataset_dict.json").is_file()

    def no_photos() -> dict:
        raise AssertionError("the cached dataset should have been loaded")

    monkeypatch.setattr(synthetic, "available_source_photos", no_photos)
    cached = build_synthetic_dataset(tmp_path / "cache", seed=3, **SMALL)
    assert cached["train"]["mos"] == first["train"]["mos"]
    assert cached["train"]["name"] == first["train"]["name"]
    with pytest.raises(AssertionError, match="should have been loaded"):
        build_synthetic_dataset(tmp_path / "cache", seed=4, **SMALL)


def test_same_seed_same_data_other_seed_other_split() -> None:
    one = build_synthetic_dataset(seed=0, image_size=16, crops_per_source=1, num_raters=3)
    two = build_synthetic_dataset(seed=0, image_size=16, crops_per_source=1, num_raters=3)
    assert one["test"]["mos"] == two["test"]["mos"]
    assert np.array_equal(np.asarray(one["test"][5]["image"]), np.asarray(two["test"][5]["image"]))
    splits = {
        tuple(
            sorted(
                set(build_synthetic_dataset(seed=s, image_size=16, crops_per_source=1, num_raters=3)["test"]["source"])
            )
        )
        for s in range(4)
    }
    assert len(splits) > 1


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="image_size >= 8"):
        build_synthetic_dataset(image_size=4)
    with pytest.raises(ValueError, match="at least one photo for training"):
        build_synthetic_dataset(image_size=16, crops_per_source=1, num_val_sources=4, num_test_sources=4)


def test_distortion_subset_and_auto_levelled_crops() -> None:
    subset = build_synthetic_dataset(image_size=16, crops_per_source=1, num_raters=3, distortions=["noise", "blur"])
    test = subset["test"]
    assert set(test["distortion"]) == {"none", "blur", "noise"}
    assert len(test) == 2 * (1 + 2 * 4)  # 2 test photos x 1 crop x (pristine + 2 types x 4 levels)
    pristine = [
        np.asarray(im).astype(float) @ synthetic._LUMA
        for im, lv in zip(test["image"], test["level"], strict=True)
        if lv == 0
    ]
    for luminance in pristine:  # auto-levelling stretches the 1st-99th percentiles to (nearly, after clipping) 0-255
        low, high = np.percentile(luminance, [1, 99])
        assert low < 16 and high - low > 200
    with pytest.raises(ValueError, match="non-empty subset"):
        build_synthetic_dataset(image_size=16, distortions=["sepia"])


def test_crop_scales_share_out_the_crops() -> None:
    multi = build_synthetic_dataset(image_size=16, crops_per_source=3, num_raters=3, crop_scales=(2.0, 8.0))
    assert sorted(set(multi["test"]["crop"])) == [0, 1, 2]
    assert len(multi["test"]) == 2 * 3 * 21
    single = build_synthetic_dataset(image_size=16, crops_per_source=3, num_raters=3)
    first_pristine = [np.asarray(d["test"][0]["image"]) for d in (multi, single)]
    assert not np.array_equal(*first_pristine)  # a different scale gives different content
    with pytest.raises(ValueError, match="crop_scales"):
        build_synthetic_dataset(image_size=16, crop_scales=(0.5,))
