"""The synthetic quickstart dataset: structure, honesty of the split, scores, distortions and caching."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from training import synthetic
from training.data import dataset_metadata, mos_range
from training.synthetic import (
    DISTORTIONS,
    apply_distortion,
    available_source_photos,
    build_synthetic_dataset,
    degradation_measures,
    measured_quality,
    parse_crop_scales,
    simulate_ratings,
    split_sources,
    true_quality,
)

SMALL = {"image_size": 24, "crops_per_source": 2, "num_raters": 9}
TRAIN_FACTOR = 21 / (1 + 4)  # the default train_conditions=4: 1 + 4 images per training crop, 21/5 as many crops


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
    # A held-out photo: its textured crops and the 8 random native crops, each pristine + 20 conditions. A training
    # photo: 21/5 times as many crops, each pristine + 4 random conditions.
    held_out = (SMALL["crops_per_source"] + 8) * 21
    training = (round(SMALL["crops_per_source"] * TRAIN_FACTOR) + round(8 * TRAIN_FACTOR)) * 5
    assert total == 3 * held_out + (len(photos) - 3) * training
    for name, split in small_dataset.items():
        per_photo = split.select_columns(["source"]).to_pandas().groupby("source").size()
        assert set(per_photo) == {training if name == "train" else held_out}, name


def test_no_source_photo_in_two_splits(small_dataset) -> None:
    sources = {name: set(split["source"]) for name, split in small_dataset.items()}
    assert sources["train"].isdisjoint(sources["validation"])
    assert sources["train"].isdisjoint(sources["test"])
    assert sources["validation"].isdisjoint(sources["test"])
    assert len(sources["test"]) == 2 and len(sources["validation"]) == 1


def test_scores_follow_distortion_strength(small_dataset) -> None:
    # The held-out photos: every crop in every condition (a training crop shows only some conditions).
    columns = ["mos", "mos_std", "distortion", "level", "true_quality"]
    table = pd.concat([small_dataset[name].select_columns(columns).to_pandas() for name in ("validation", "test")])
    assert table["mos"].between(1, 5).all()
    assert (table["mos_std"] >= 0).all() and table["mos_std"].mean() > 0.3  # raters disagree
    for kind in DISTORTIONS:
        rows = table[(table.distortion == kind) | (table.level == 0)]
        by_level = rows.groupby("level")
        assert np.all(np.diff(by_level["true_quality"].mean().to_numpy()) < 0), kind
        mos_by_level = by_level["mos"].mean().to_numpy()
        # Measured severe levels can lie within a tenth of a grade of each other, so the 9-rater MOS may swap them.
        assert np.all(np.diff(mos_by_level) < 0.1) and mos_by_level[4] < mos_by_level[1] - 0.3, kind
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


def test_textured_crops_are_textured_and_random_native_crops_are_not_chosen(small_dataset) -> None:
    pristine = small_dataset["test"].filter(lambda level: level == 0, input_columns="level")
    energy = {
        (source, crop): _gradient_energy(np.asarray(image))
        for source, crop, image in zip(pristine["source"], pristine["crop"], pristine["image"], strict=True)
    }
    textured = [value for (_, crop), value in energy.items() if crop < SMALL["crops_per_source"]]
    random_native = [value for (_, crop), value in energy.items() if crop >= SMALL["crops_per_source"]]
    assert len(textured) == 2 * SMALL["crops_per_source"] and len(random_native) == 2 * 8
    assert min(textured) > 2.0
    # Random positions at the photo's own resolution include smooth regions (hubble's sky, smooth tissue).
    assert min(random_native) < min(textured)


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


def test_split_sources_names_the_photos_of_each_split_of_the_dataset() -> None:
    names = list(available_source_photos())
    for seed in (0, 2):
        dataset = build_synthetic_dataset(seed=seed, image_size=16, crops_per_source=1, num_raters=3)
        splits = split_sources(names, seed=seed)
        assert {split: sorted(set(dataset[split]["source"])) for split in splits} == splits
        assert sorted(sum(splits.values(), [])) == sorted(names)  # every photo in exactly one split
    fixed = split_sources(names, num_val_sources=2, test_sources=["coffee"], seed=1)
    assert fixed["test"] == ["coffee"] and len(fixed["validation"]) == 2 and "coffee" not in fixed["train"]
    assert split_sources(list(reversed(names)), seed=1) == split_sources(names, seed=1)  # order does not matter
    with pytest.raises(ValueError, match="missing: \\['nowhere'\\]"):
        split_sources(names, test_sources=["nowhere"])
    with pytest.raises(ValueError, match="at least one photo for training"):
        split_sources(names[:3], num_val_sources=1, num_test_sources=2)


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="image_size >= 8"):
        build_synthetic_dataset(image_size=4)
    with pytest.raises(ValueError, match="at least one photo for training"):
        num_photos = len(available_source_photos())
        build_synthetic_dataset(image_size=16, crops_per_source=1, num_val_sources=1, num_test_sources=num_photos - 1)


def test_distortion_subset_and_optional_auto_levelling() -> None:
    small = {"image_size": 16, "crops_per_source": 1, "num_raters": 3, "random_native_crops": 0}
    subset = build_synthetic_dataset(**small, distortions=["noise", "blur"])
    test = subset["test"]
    assert set(test["distortion"]) == {"none", "blur", "noise"}
    assert len(test) == 2 * (1 + 2 * 4)  # 2 test photos x 1 crop x (pristine + 2 types x 4 levels)
    with pytest.raises(ValueError, match="non-empty subset"):
        build_synthetic_dataset(image_size=16, distortions=["sepia"])

    def pristine_luminance(dataset) -> list[np.ndarray]:
        rows = dataset["test"]
        return [
            np.asarray(image).astype(float) @ synthetic.LUMA_WEIGHTS
            for image, level in zip(rows["image"], rows["level"], strict=True)
            if level == 0
        ]

    # auto_level=True stretches each crop's 1st-99th luminance percentiles to 0-255; clipping the channels of
    # saturated dark pixels (immunohistochemistry's stains) lifts their luminance a little above 0 again.
    levelled = build_synthetic_dataset(**{**small, "crops_per_source": 2}, crop_scales=(4.0, 8.0), auto_level=True)
    for luminance in pristine_luminance(levelled):
        low, high = np.percentile(luminance, [1, 99])
        assert low < 24 and high - low > 200
    # By default the crops keep the photo's own levels (a dark sky stays dark).
    as_they_are = build_synthetic_dataset(**{**small, "crops_per_source": 2}, crop_scales=(4.0, 8.0))
    ranges = [np.subtract(*np.percentile(luminance, [99, 1])) for luminance in pristine_luminance(as_they_are)]
    assert min(ranges) < 150


def test_native_crops_are_cut_from_the_photo_as_it_is() -> None:
    """A held-out photo's native crops are its own pixels, unscaled and unlevelled."""
    dataset = build_synthetic_dataset(
        image_size=16, crops_per_source=1, crop_scales=("native",), random_native_crops=2, num_raters=3
    )
    test = dataset["test"].filter(lambda level: level == 0, input_columns="level")
    photos = available_source_photos()
    for source, image in zip(test["source"], test["image"], strict=True):
        crop, photo = np.asarray(image), photos[source]
        # Find the crop in the photo: its top-left pixel's candidates, then the whole crop.
        tops, lefts = np.nonzero(np.all(photo[:-15, :-15] == crop[0, 0], axis=-1))
        assert any(np.array_equal(photo[t : t + 16, x : x + 16], crop) for t, x in zip(tops, lefts, strict=True))
    with pytest.raises(ValueError, match="crop_scales"):
        build_synthetic_dataset(image_size=16, crop_scales=("half",))


def test_train_conditions_trade_conditions_for_content() -> None:
    dataset = build_synthetic_dataset(image_size=16, crops_per_source=2, random_native_crops=1, num_raters=3)
    train = dataset["train"].select_columns(["source", "crop", "distortion", "level"]).to_pandas()
    per_crop = train.groupby(["source", "crop"])
    assert set(per_crop.size()) == {5}  # pristine + 4 conditions
    assert (per_crop["level"].min() == 0).all()
    assert per_crop.ngroups == 6 * (round(2 * TRAIN_FACTOR) + round(1 * TRAIN_FACTOR))
    assert train.groupby(["distortion", "level"]).ngroups == 21  # every condition occurs somewhere
    held_out = dataset["test"].select_columns(["source", "crop"]).to_pandas().groupby(["source", "crop"]).size()
    assert set(held_out) == {21} and len(held_out) == 2 * 3
    every = build_synthetic_dataset(
        image_size=16, crops_per_source=2, random_native_crops=1, num_raters=3, train_conditions=None
    )
    assert len(every["train"]) == 6 * 3 * 21
    with pytest.raises(ValueError, match="train_conditions"):
        build_synthetic_dataset(image_size=16, train_conditions=21)


def test_window_mirrors_the_photo_border() -> None:
    photo = np.arange(10 * 12 * 3, dtype=np.uint8).reshape(10, 12, 3)
    window = synthetic._window(photo, 0, 8, 4, 3)
    assert window.shape == (10, 10, 3)
    assert np.array_equal(window[3:7, 3:7], photo[0:4, 8:12])  # the crop sits in the middle
    assert np.array_equal(window[2], window[3]) and np.array_equal(window[:, 7], window[:, 6])  # mirrored edges
    assert np.array_equal(synthetic._window(photo, 3, 3, 4, 0), photo[3:7, 3:7])


def test_crop_windows_keep_the_chosen_crop_and_put_the_jpeg_grid_anywhere() -> None:
    """Each window is shifted by 0-7 rows and 0-7 columns, drawn independently, and its crop is still the crop at
    the position drawn for it: only the 8x8 JPEG grid (anchored at the shifted window's corner) moves."""
    size, context = 16, 8
    rows, columns = np.meshgrid(np.arange(70), np.arange(90), indexing="ij")
    photo = np.stack([rows, columns, (rows + columns) % 256], axis=-1).astype(np.uint8)  # pixels name their place
    groups = synthetic._crop_groups(("native",), 0, 40)
    originals = synthetic._cut_windows(photo, size, groups, context, False, np.random.default_rng(3))
    windows = synthetic.cut_crop_windows(
        photo, size, np.random.default_rng(3), textured=0, random_native=40, crop_scales=("native",), context=context
    )
    cut = list(windows)
    assert len(cut) == len(originals) == 40
    phases = set()
    for window, original in zip(cut, originals, strict=True):
        assert np.array_equal(window.crop, original[context : context + size, context : context + size])
        down, right = (size + 2 * context - extent for extent in window.window.shape[:2])
        assert 0 <= down < 8 and 0 <= right < 8
        assert np.array_equal(window.window, original[down:, right:])
        phases.add(((context - down) % 8, (context - right) % 8))  # where the grid's lines cross the crop
    assert any(row != column for row, column in phases) and len(phases) > 16


def test_crop_scales_share_out_the_crops() -> None:
    small = {"image_size": 16, "crops_per_source": 3, "num_raters": 3, "random_native_crops": 0}
    multi = build_synthetic_dataset(**small, crop_scales=(2.0, 8.0))
    assert sorted(set(multi["test"]["crop"])) == [0, 1, 2]
    assert len(multi["test"]) == 2 * 3 * 21
    single = build_synthetic_dataset(**small, crop_scales=(4.0,))
    first_pristine = [np.asarray(d["test"][0]["image"]) for d in (multi, single)]
    assert not np.array_equal(*first_pristine)  # a different scale gives different content
    with pytest.raises(ValueError, match="crop_scales"):
        build_synthetic_dataset(image_size=16, crop_scales=(0.5,))


@pytest.mark.parametrize(
    ("values", "parsed"),
    [(["native"], ["native"]), (["2", 4, "native", 8.5], [2.0, 4.0, "native", 8.5]), ([1], [1.0])],
)
def test_parse_crop_scales_reads_numbers_written_as_text(values: list, parsed: list) -> None:
    assert parse_crop_scales(values) == parsed


@pytest.mark.parametrize("values", [[], ["half"], [0.5], ["nan"], [2.0, None], ["native", "-1"]])
def test_parse_crop_scales_names_the_bad_list(values: list) -> None:
    with pytest.raises(ValueError, match="crop_scales=.* must be non-empty, each a number >= 1"):
        parse_crop_scales(values)


def test_measured_quality_follows_the_visible_damage() -> None:
    rng = np.random.default_rng(0)
    crop = available_source_photos()["astronaut"][100:164, 200:264]
    assert measured_quality(crop, crop) == pytest.approx(synthetic.Q_PRISTINE)
    assert all(value == pytest.approx(0.0, abs=1e-9) for value in degradation_measures(crop, crop).values())
    for kind in DISTORTIONS:
        qualities = [measured_quality(crop, apply_distortion(crop, kind, level, rng)) for level in range(5)]
        # JPEG at quality 3 can measure slightly better than at 6; the dataset enforces monotonicity per crop.
        monotone_upto = 3 if kind == "jpeg" else 4
        assert all(a > b for a, b in zip(qualities[:monotone_upto], qualities[1 : monotone_upto + 1], strict=True)), (
            kind,
            qualities,
        )
        assert synthetic.Q_WORST < qualities[-1] < synthetic.Q_PRISTINE
    # Each measure reacts to its own distortion: colour loss leaves luminance untouched, contrast loss is not
    # counted a second time as lost sharpness or colour.
    grey = degradation_measures(crop, apply_distortion(crop, "colour", 4, rng))
    assert grey["colour"] == pytest.approx(1.0, abs=0.02) and grey["structure"] < 0.01 and grey["sharpness"] < 0.01
    flat = degradation_measures(crop, apply_distortion(crop, "contrast", 2, rng))
    assert flat["contrast"] == pytest.approx(0.6, abs=0.02) and flat["sharpness"] < 0.02 and flat["colour"] < 0.05
    # The same blur costs a smooth crop less quality than a textured one (labels follow visibility, not level).
    smooth = np.repeat(np.linspace(40, 210, 64)[None, :, None], 64, axis=0).repeat(3, axis=-1).astype(np.uint8)
    smooth_blurred = measured_quality(smooth, apply_distortion(smooth, "blur", 2, rng))
    assert smooth_blurred > measured_quality(crop, apply_distortion(crop, "blur", 2, rng)) + 1.0


def test_labels_are_measured_and_monotone_per_crop(small_dataset) -> None:
    for split in small_dataset.values():
        table = split.select_columns(["source", "crop", "distortion", "level", "true_quality"]).to_pandas()
        assert (table.loc[table.level == 0, "true_quality"] == np.float32(synthetic.Q_PRISTINE)).all()
        for _, group in table[table.level > 0].groupby(["source", "crop", "distortion"]):
            assert np.all(np.diff(group.sort_values("level")["true_quality"].to_numpy()) < 0)
        # Measured, not nominal: the same distortion and level gets different labels on different crops.
        assert table[table.level > 0].groupby(["distortion", "level"])["true_quality"].std().min() > 0.0


def test_quality_from_degradation_is_the_documented_monotone_curve() -> None:
    quality = synthetic.quality_from_degradation
    assert quality(0.0) == pytest.approx(synthetic.Q_PRISTINE)
    assert quality(synthetic.MEASURE_SCALE) == pytest.approx((synthetic.Q_PRISTINE + synthetic.Q_WORST) / 2)
    grid = np.linspace(0.0, 5.0, 201)
    values = np.array([quality(float(d)) for d in grid])
    assert np.all(np.diff(values) < 0)  # strictly decreasing in the damage
    assert synthetic.Q_WORST < values[-1] < synthetic.Q_WORST + 0.15  # towards the worst quality
    d = 0.5
    expected = synthetic.Q_WORST + (synthetic.Q_PRISTINE - synthetic.Q_WORST) / (
        1 + (d / synthetic.MEASURE_SCALE) ** synthetic.MEASURE_EXPONENT
    )
    assert quality(d) == pytest.approx(expected)
    with pytest.raises(ValueError, match="degradation"):
        quality(-0.1)


def test_invisible_changes_of_flat_content_are_not_total_losses() -> None:
    """Visibility floors: removing faint grain from a nearly flat crop, or the chroma grain of a dark one, is a
    small loss, while the same operations on a textured crop and added noise on the flat crop are large ones."""
    rng = np.random.default_rng(0)
    grain = np.clip(60 + rng.normal(0, 2.0, size=(16, 16, 3)), 0, 255).astype(np.uint8)
    smoothed = np.full_like(grain, 60)
    flat = degradation_measures(grain, smoothed)
    assert flat["sharpness"] < 0.6 and flat["contrast"] < 0.3 and flat["colour"] < 0.3
    textured = available_source_photos()["astronaut"][100:116, 200:216]
    blurred = apply_distortion(textured, "blur", 3, rng)
    assert degradation_measures(textured, blurred)["sharpness"] > 0.5
    assert measured_quality(grain, smoothed) > measured_quality(textured, blurred) + 0.5
    assert measured_quality(grain, apply_distortion(grain, "noise", 2, rng)) < 3.0


def test_distort_takes_any_parameter_and_size() -> None:
    rng = np.random.default_rng(0)
    photo = available_source_photos()["coffee"]
    assert synthetic.distort(photo, "blur", 8.0, rng).shape == photo.shape
    mild, strong = (synthetic.distort(photo, "jpeg", q, rng) for q in (90, 10))
    assert np.abs(mild.astype(float) - photo).mean() < np.abs(strong.astype(float) - photo).mean()
    crop = photo[:32, :32]
    assert np.array_equal(synthetic.distort(crop, "noise", 20.0, np.random.default_rng(1)),
                          apply_distortion(crop, "noise", 2, np.random.default_rng(1)))  # fmt: skip
    with pytest.raises(ValueError, match="unknown distortion"):
        synthetic.distort(crop, "sepia", 1.0, rng)


def test_measured_quality_falls_with_the_level_at_the_quickstart_size() -> None:
    """At 16 pixels (the quickstart's crops) every distortion still does measurable damage that grows with its
    level, on average over crops of several photos."""
    dataset = build_synthetic_dataset(image_size=16, crops_per_source=3, num_raters=3)
    table = dataset["train"].select_columns(["distortion", "level", "true_quality"]).to_pandas()
    for kind in DISTORTIONS:
        rows = table[(table.distortion == kind) | (table.level == 0)]
        means = rows.groupby("level")["true_quality"].mean().to_numpy()
        assert np.all(np.diff(means) < 0), (kind, means)
        assert means[1] < synthetic.Q_PRISTINE - 0.1, (kind, means)
