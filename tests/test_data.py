"""Dataset loaders: the real-format fixtures in ../shared/data (skipped when absent), bad input, split
protocols and saving. Every published layout is also loaded from a folder built in its format in
test_data_layouts.py."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.data import (
    DATASETS,
    AmbiguousMetadataError,
    BadRowsError,
    dataset_metadata,
    load_imagefolder,
    load_iqa_dataset,
    load_parquet,
    load_split,
    mos_range,
    push_to_hub_if_allowed,
    save_imagefolder,
    save_parquet,
)


def _image(path: Path, colour: tuple[int, int, int] = (200, 30, 30), size: int = 12) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path)


def _row(data, name: str) -> dict:
    """The first row named `name`, without decoding its image."""
    return data.select_columns([c for c in data.column_names if c != "image"])[data["name"].index(name)]


def _write(path: Path, text: str, newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.replace("\n", newline).encode())
    return path


# =============================================================================================
# Real-format fixtures
# =============================================================================================


@pytest.fixture(scope="module")
def agiqa_3k_metadata(shared_data: Path):
    return load_iqa_dataset("agiqa-3k", shared_data / "AGIQA-3K", check_images=False)


def test_agiqa_3k_official_csv(agiqa_3k_metadata, shared_data: Path) -> None:
    data = agiqa_3k_metadata
    assert len(data) == 2982
    assert data.column_names[:5] == ["image", "name", "mos", "mos_std", "prompt"]
    assert {"adj1", "adj2", "style", "mos_align", "std_align", "model", "source_row"} <= set(data.column_names)
    assert mos_range(data) == (0.0, 5.0)
    assert dataset_metadata(data)["licence"] == "MIT"
    row = data.select_columns([c for c in data.column_names if c != "image"])[0]
    assert row["name"] == "AttnGAN_normal_000.jpg" and row["prompt"] == "statue of a man"
    assert row["adj1"] is None and row["style"] is None  # empty fields
    assert row["mos"] == pytest.approx(0.965602553) and row["mos_std"] == pytest.approx(0.223270101)
    assert row["source_row"] == 2  # line 2 of data.csv (after the header)
    # CRLF line endings leave no carriage return in the last column; quoted prompts keep their commas.
    assert not any("\r" in str(v) for v in data["std_align"][:50])
    prompts = data["prompt"]
    assert sum("," in p for p in prompts) > 2000
    assert max(data["mos"]) == pytest.approx(4.4887, abs=1e-4)
    counts = {model: data["model"].count(model) for model in set(data["model"])}
    assert counts["midjourney"] == 592 and counts["sd1.5"] == 1200 and counts["DALLE2"] == 290
    alignment = load_iqa_dataset("agiqa-3k", shared_data / "AGIQA-3K", target="alignment", check_images=False)
    assert alignment["mos"][:5] == pytest.approx(data["mos_align"][:5])
    assert dataset_metadata(alignment)["target"] == "alignment"


def test_agiqa_3k_real_images(shared_data: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(
        BadRowsError, match=r"data\.csv: 2974 row\(s\) name an image missing .*row 2 \('AttnGAN_normal_000"
    ):
        load_iqa_dataset("agiqa-3k", shared_data / "AGIQA-3K")
    with caplog.at_level(logging.WARNING):
        data = load_iqa_dataset("agiqa-3k", shared_data / "AGIQA-3K", on_bad_rows="skip")
    assert "skipped 2974 row(s)" in caplog.text
    assert len(data) == 8
    best = data.filter(lambda name: name == "midjourney_normal_065.jpg", input_columns="name")[0]
    assert best["mos"] == pytest.approx(4.4887, abs=1e-4)
    assert best["image"].size == (512, 512)
    black = data.filter(lambda name: name == "glide_normal_101.jpg", input_columns="name")[0]
    assert np.asarray(black["image"]).max() == 0  # the all-black image loads like any other


def test_agiqa_3k_ipce_splits_are_prompt_disjoint(shared_data: Path) -> None:
    expected = {1: (2382, 600), 4: (2385, 597), 10: (2388, 594)}
    for split, (num_train, num_val) in expected.items():
        splits = load_split("agiqa-3k", shared_data / "AGIQA-3K", split, check_images=False)
        assert (len(splits["train"]), len(splits["validation"])) == (num_train, num_val)
        assert set(splits["train"]["prompt"]).isdisjoint(splits["validation"]["prompt"])
        assert mos_range(splits["train"]) == (0.0, 5.0)
        assert "split files" in dataset_metadata(splits["validation"])["split_source"]


def test_agiqa_1k_duplicate_is_reported(shared_data: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = shared_data / "AGIQA-1K"
    with caplog.at_level(logging.WARNING):
        data = load_iqa_dataset("agiqa-1k", root, check_images=False)
    assert len(data) == 1080
    assert "'dreamStudio_8_9_1_1.jpg' at rows [1080, 1081] with MOS [0.4414, 2.0841]" in caplog.text
    assert data["prompt"][0] == "bird, driving aircraft, city, anime style"
    assert mos_range(data) == (0.0, 5.0)
    with pytest.raises(BadRowsError, match="dreamStudio_8_9_1_1.jpg"):
        load_iqa_dataset("agiqa-1k", root, check_images=False, duplicates="error")
    merged = load_iqa_dataset("agiqa-1k", root, check_images=False, duplicates="mean")
    assert len(merged) == 1079
    row = _row(merged, "dreamStudio_8_9_1_1.jpg")
    assert row["mos"] == pytest.approx((0.4414 + 2.0841) / 2, abs=1e-3)
    # The IPCE CSV export has the same rows and values as the official xlsx: the two agree, the xlsx is read.
    assert dataset_metadata(data)["layout"] == "official-xlsx"
    exported = load_iqa_dataset("agiqa-1k", root, metadata_file=root / "ipce" / "all.csv", check_images=False)
    assert exported["name"] == data["name"]
    assert exported["mos"] == pytest.approx(data["mos"])
    # The undocumented official AIGC_all.csv (Image, Score) is never chosen on its own; named, it loads its
    # Score (another scale: 0.09-5.0) under the names it gives, typo included.
    with caplog.at_level(logging.WARNING):
        scores = load_iqa_dataset("agiqa-1k", root, metadata_file="AIGC_all.csv", check_images=False)
    assert dataset_metadata(scores)["layout"] == "official-score-csv" and len(scores) == 1080
    assert min(scores["mos"]) == pytest.approx(0.0909, abs=1e-4) and max(scores["mos"]) == pytest.approx(5.0)
    assert "dreamStudio_8_9_1_.jpg" in scores["name"] and "is not the MOS described" in caplog.text


def test_agiqa_1k_split_with_the_duplicate_in_both_halves(shared_data: Path) -> None:
    splits = load_split("agiqa-1k", shared_data / "AGIQA-1K", 2, check_images=False)
    assert (len(splits["train"]), len(splits["validation"])) == (864, 216)
    train = [
        m
        for n, m in zip(splits["train"]["name"], splits["train"]["mos"], strict=True)
        if n == "dreamStudio_8_9_1_1.jpg"
    ]
    val = [
        m
        for n, m in zip(splits["validation"]["name"], splits["validation"]["mos"], strict=True)
        if n == "dreamStudio_8_9_1_1.jpg"
    ]
    # Split 2 puts one rating in each half: each row is matched by the MOS the split file gives.
    assert len(train) == 1 and len(val) == 1
    assert sorted(train + val) == pytest.approx([0.4414, 2.0841], abs=1e-3)


def test_aigiqa_20k_xlsx_and_headerless_csv_agree(shared_data: Path) -> None:
    root = shared_data / "AIGIQA-20K"
    from_xlsx = load_iqa_dataset("aigiqa-20k", root, check_images=False)
    from_csv = load_iqa_dataset("aigiqa-20k", root, metadata_file=root / "info_train.csv", check_images=False)
    assert len(from_xlsx) == len(from_csv) == 14000
    assert from_csv["name"] == from_xlsx["name"]
    assert from_csv["mos"] == pytest.approx(from_xlsx["mos"], abs=1e-6)
    assert from_csv["prompt"] == from_xlsx["prompt"]
    assert from_csv["source_row"][0] == 1  # no header: the first line is data
    assert any("saint\\'s halo" in p for p in from_csv["prompt"])  # the literal backslash is kept as published
    models = from_xlsx["model"]
    assert models.count("LCM_SD1.5") == 700 and models.count("SDXL_Turbo") == 700 and models.count("SD1.5") == 1400
    assert mos_range(from_xlsx) == (0.0, 5.0)
    splits = load_split("aigiqa-20k", root, 1, check_images=False)
    assert (len(splits["train"]), len(splits["validation"])) == (12600, 1400)  # the first row is not dropped
    with pytest.raises(ValueError, match=r"info_val\.xlsx: not a metadata file of aigiqa-20k .*\['name', 'prompt'\]"):
        load_iqa_dataset("aigiqa-20k", root, metadata_file=root / "info_val.xlsx", check_images=False)


def test_koniq_official_csv_liqe_list_and_splits(shared_data: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = shared_data / "KonIQ-10k"
    official_file = root / "koniq10k_distributions_sets.csv"
    # The official MOS (0-100) and LIQE's 1-5 mean mapped to 0-100 differ by up to 12 points: the folder holding
    # both is ambiguous for the official target, and the error names both files.
    with pytest.raises(
        AmbiguousMetadataError, match=r"koniq10k_distributions_sets\.csv .*koniq10k_all\.txt .*up to 11\.99"
    ):
        load_iqa_dataset("koniq-10k", root, check_images=False)
    official = load_iqa_dataset("koniq-10k", root, metadata_file=official_file, check_images=False)
    assert len(official) == 10073 and mos_range(official) == (0.0, 100.0)
    assert official["mos_std"][0] == pytest.approx(0.527277894494 * 25, rel=1e-6)
    assert official.features["c_total"].dtype == "int64" and official.features["MOS"].dtype == "float64"
    by_set = load_split("koniq-10k", root, 1, protocol="set-column", metadata_file=official_file, check_images=False)
    assert {k: len(v) for k, v in by_set.items()} == {"train": 7058, "validation": 1000, "test": 2015}
    # On the 1-5 scale the two agree to 1e-6, so without metadata_file the official file is read.
    five = load_iqa_dataset("koniq-10k", root, target="quality_5", check_images=False)
    assert dataset_metadata(five)["layout"] == "official-distributions-sets"
    liqe = load_iqa_dataset(
        "koniq-10k", root, metadata_file=root / "liqe" / "koniq10k_all.txt", target="quality_5", check_images=False
    )
    liqe_mos = dict(zip(liqe["name"], liqe["mos"], strict=True))
    assert [liqe_mos[n] for n in five["name"][:200]] == pytest.approx(five["mos"][:200], abs=1e-5)
    liqe_splits = load_split("koniq-10k", root, 1, metadata_file=official_file, check_images=False)
    assert {k: len(v) for k, v in liqe_splits.items()} == {"train": 7051, "validation": 1007, "test": 2015}
    with caplog.at_level(logging.WARNING):
        real = load_iqa_dataset("koniq-10k", root, metadata_file=official_file, image_dir="images", on_bad_rows="skip")
    assert len(real) == 1 and real[0]["mos"] == pytest.approx(32.7133, abs=1e-4)
    assert real[0]["image"].size == (1024, 768)
    assert real[0]["set"] == "training"


def test_livec_liqe_list_pyiqa_csv_and_ten_splits(shared_data: Path) -> None:
    root = shared_data / "LIVEC"
    # clive_all.txt, clive_all_clip.txt and the pyiqa CSV list the same 1162 images with the same MOS (to 1e-3):
    # they agree, and LIQE's list with standard deviations is read.
    liqe = load_iqa_dataset("livec", root, check_images=False)
    assert dataset_metadata(liqe)["layout"] == "liqe-all-txt" and liqe["mos_std"][0] > 0
    pyiqa = load_iqa_dataset(
        "livec", root, metadata_file=root / "pyiqa" / "meta_info_LIVEChallengeDataset.csv", check_images=False
    )
    assert len(liqe) == len(pyiqa) == 1162  # t1..t7.bmp are excluded by default
    with_training = load_iqa_dataset(
        "livec",
        root,
        metadata_file=root / "pyiqa" / "meta_info_LIVEChallengeDataset.csv",
        check_images=False,
        include_training_images=True,
    )
    assert len(with_training) == 1169 and with_training["name"][0] == "t1.bmp"
    pyiqa_mos = dict(zip(pyiqa["name"], pyiqa["mos"], strict=True))
    assert [pyiqa_mos[n] for n in liqe["name"][:100]] == pytest.approx(liqe["mos"][:100], abs=1e-3)
    assert mos_range(liqe) == (0.0, 100.0)
    for split in (1, 10):
        splits = load_split("livec", root, split, check_images=False)
        assert {k: len(v) for k, v in splits.items()} == {"train": 813, "validation": 116, "test": 233}


def test_spaq_duplicate_brightness_columns_and_image(shared_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "SPAQ"
    shutil.copytree(shared_data / "SPAQ" / "pyiqa", root / "pyiqa")
    (root / "TestImage").mkdir()
    shutil.copy(shared_data / "SPAQ" / "images" / "SPAQ_10241.jpg", root / "TestImage" / "10241.jpg")
    data = load_iqa_dataset("spaq", root, check_images=False)
    assert len(data) == 11125 and mos_range(data) == (0.0, 100.0)
    assert {"brightness", "exif_brightness", "colorfulness", "night_scene", "f_number"} <= set(data.column_names)
    first = data.select_columns(["brightness", "exif_brightness", "mos"])[0]
    assert first == pytest.approx({"brightness": 47.43, "exif_brightness": -1.21, "mos": 48.86})
    real = load_iqa_dataset("spaq", root, on_bad_rows="skip")
    assert len(real) == 1 and real[0]["mos"] == pytest.approx(36.11) and real[0]["image"].size == (810, 1080)


def test_kadid_liqe_list_and_image(shared_data: Path) -> None:
    data = load_iqa_dataset("kadid-10k", shared_data / "KADID-10k", on_bad_rows="skip")
    assert len(data) == 1
    row = data[0]
    assert row["name"] == "I02_01_03.png" and row["mos"] == pytest.approx(2.07, abs=1e-5)
    assert row["mos_std"] == pytest.approx(0.8786, abs=1e-4)
    assert (row["reference"], row["distortion_type"], row["distortion_level"]) == ("I02.png", 1, 3)
    assert row["image"].size == (512, 384)
    assert mos_range(data) == (1.0, 5.0)


# =============================================================================================
# Bad input, on a small AGIQA-3K folder
# =============================================================================================

_AGIQA_3K_CSV = """name,prompt,adj1,adj2,style,mos_quality,std_quality,mos_align,std_align
sd1.5_normal_000.jpg,statue of a man,,,,0.45,0.2,0.68,0.5
midjourney_lowstep_001.jpg,"a girl, blue dress, blurred detail",blurred detail,,anime style,3.4,0.3,3.5,0.4
xl2.2_normal_002.jpg,"house, ""old"" and tall",,,,3.1,0.25,3.4,0.3
"""


@pytest.fixture
def agiqa_3k_folder(tmp_path: Path) -> Path:
    root = tmp_path / "AGIQA-3K"
    _write(root / "data.csv", _AGIQA_3K_CSV, newline="\r\n")
    for index, name in enumerate(["sd1.5_normal_000.jpg", "midjourney_lowstep_001.jpg", "xl2.2_normal_002.jpg"]):
        _image(root / "images" / name, (40 * index, 10, 10))
    return root


def test_mimic_agiqa_3k_crlf_quotes_and_empty_fields(agiqa_3k_folder: Path) -> None:
    data = load_iqa_dataset("agiqa-3k", agiqa_3k_folder)
    assert data["prompt"] == ["statue of a man", "a girl, blue dress, blurred detail", 'house, "old" and tall']
    assert data["adj1"] == [None, "blurred detail", None]
    assert data["std_align"] == pytest.approx([0.5, 0.4, 0.3])  # no stray "\r"
    assert data["model"] == ["sd1.5", "midjourney", "xl2.2"] and data["variant"] == ["normal", "lowstep", "normal"]
    assert np.asarray(data[2]["image"])[0, 0].tolist() == [80, 10, 10]
    assert Path(dataset_metadata(data)["image_folder"]).name == "images"


def test_missing_image_error_names_file_and_row(agiqa_3k_folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    (agiqa_3k_folder / "images" / "midjourney_lowstep_001.jpg").unlink()
    with pytest.raises(
        BadRowsError, match=r"data\.csv: 1 row\(s\) name an image missing .* row 3 \('midjourney_lowstep_001\.jpg'\)"
    ):
        load_iqa_dataset("agiqa-3k", agiqa_3k_folder)
    with caplog.at_level(logging.WARNING):
        data = load_iqa_dataset("agiqa-3k", agiqa_3k_folder, on_bad_rows="skip")
    assert len(data) == 2 and "skipped 1 row(s)" in caplog.text
    shutil.rmtree(agiqa_3k_folder / "images")
    with pytest.raises(FileNotFoundError, match="none of the 3 images listed in .*data.csv.*image_dir="):
        load_iqa_dataset("agiqa-3k", agiqa_3k_folder)


def test_nan_score_error_names_row(agiqa_3k_folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    _write(agiqa_3k_folder / "data.csv", _AGIQA_3K_CSV.replace(",3.4,0.3,", ",,0.3,"), newline="\r\n")
    with pytest.raises(
        BadRowsError, match=r"1 row\(s\) have no finite 'quality' score: row 3 \('midjourney_lowstep_001"
    ):
        load_iqa_dataset("agiqa-3k", agiqa_3k_folder)
    with caplog.at_level(logging.WARNING):
        data = load_iqa_dataset("agiqa-3k", agiqa_3k_folder, on_bad_rows="skip")
    assert len(data) == 2 and "skipped 1 row(s)" in caplog.text
    # The alignment score of that row is fine, so it stays.
    assert len(load_iqa_dataset("agiqa-3k", agiqa_3k_folder, target="alignment")) == 3


def test_bad_arguments_and_layouts(agiqa_3k_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset 'tid2013'"):
        load_iqa_dataset("tid2013", agiqa_3k_folder)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_iqa_dataset("agiqa-3k", tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"agiqa-3k: no usable metadata file under .*Looked for: `data\.csv`"):
        load_iqa_dataset("agiqa-3k", tmp_path / "empty")
    with pytest.raises(ValueError, match="target='aesthetics'"):
        load_iqa_dataset("agiqa-3k", agiqa_3k_folder, target="aesthetics")
    _write(agiqa_3k_folder / "data.csv", "name,prompt,mos\nx.jpg,p,1.0\n")
    with pytest.raises(FileNotFoundError, match=r"data\.csv: no agiqa-3k layout matches \['name', 'prompt', 'mos'\]"):
        load_iqa_dataset("agiqa-3k", agiqa_3k_folder)
    assert load_iqa_dataset  # aliases resolve to the same spec
    assert {
        "agiqa-3k",
        "agiqa-1k",
        "aigciqa2023",
        "aigiqa-20k",
        "koniq-10k",
        "spaq",
        "livec",
        "kadid-10k",
        "siqad",
        "scid",
    } == set(DATASETS)


# =============================================================================================
# Split protocols
# =============================================================================================


@pytest.fixture
def prompt_folder(tmp_path: Path) -> Path:
    root = tmp_path / "AGIQA-3K"
    lines = ["name,prompt,adj1,adj2,style,mos_quality,std_quality,mos_align,std_align"]
    for prompt in range(20):
        for model in ("sd1.5_normal", "midjourney_normal", "xl2.2_normal"):
            lines.append(f'{model}_{prompt:03d}.jpg,"prompt {prompt}, detail",,,,{prompt / 5:.2f},0.3,1.0,0.2')
    _write(root / "data.csv", "\n".join(lines) + "\n")
    return root


def test_prompt_disjoint_and_random_splits(prompt_folder: Path) -> None:
    first = load_split("agiqa-3k", prompt_folder, 1, protocol="prompt-disjoint", check_images=False, val_fraction=0.25)
    assert len(first["validation"]) == 15 and len(first["train"]) == 45
    assert set(first["train"]["prompt"]).isdisjoint(first["validation"]["prompt"])
    again = load_split("agiqa-3k", prompt_folder, 1, protocol="prompt-disjoint", check_images=False, val_fraction=0.25)
    assert again["validation"]["name"] == first["validation"]["name"]
    second = load_split("agiqa-3k", prompt_folder, 2, protocol="prompt-disjoint", check_images=False, val_fraction=0.25)
    assert set(second["validation"]["prompt"]) != set(first["validation"]["prompt"])
    three = load_split(
        "agiqa-3k",
        prompt_folder,
        1,
        protocol="prompt-disjoint",
        check_images=False,
        val_fraction=0.2,
        test_fraction=0.2,
    )
    assert set(three) == {"train", "validation", "test"}
    assert set(three["test"]["prompt"]).isdisjoint(set(three["train"]["prompt"]) | set(three["validation"]["prompt"]))
    random = load_split("agiqa-3k", prompt_folder, 1, protocol="random", check_images=False)
    assert len(random["validation"]) == 12 and len(random["train"]) == 48
    with pytest.raises(ValueError, match="protocol='folds'"):
        load_split("agiqa-3k", prompt_folder, 1, protocol="folds", check_images=False)
    with pytest.raises(FileNotFoundError, match="no split folder '7' under"):
        load_split("agiqa-3k", prompt_folder, 7, check_images=False)


def test_prompt_disjoint_needs_prompts_and_set_column_needs_known_sets(tmp_path: Path) -> None:
    root = tmp_path / "koniq"
    _write(
        root / "koniq10k_distributions_sets.csv",
        "image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,set\n1.jpg,0,0,1,0,0,5,50,0.1,training\n2.jpg,0,0,0,1,0,5,75,0.1,holdout\n",
    )
    with pytest.raises(ValueError, match="needs a prompt for every image"):
        load_split("koniq-10k", root, 1, protocol="prompt-disjoint", check_images=False)
    with pytest.raises(BadRowsError, match="row 1 \\('2.jpg'\\) has unknown set 'holdout'"):
        load_split("koniq-10k", root, 1, protocol="set-column", check_images=False)


# =============================================================================================
# Saving and loading
# =============================================================================================


def test_parquet_round_trip_embeds_images(agiqa_3k_folder: Path, tmp_path: Path) -> None:
    data = load_iqa_dataset("agiqa-3k", agiqa_3k_folder)
    path = save_parquet(data, tmp_path / "out" / "agiqa3k.parquet")
    shutil.rmtree(agiqa_3k_folder / "images")  # the Parquet file must stand alone
    loaded = load_parquet(path)
    assert loaded.column_names == data.column_names
    assert loaded["mos"] == pytest.approx(data["mos"]) and loaded["prompt"] == data["prompt"]
    assert mos_range(loaded) == (0.0, 5.0) and dataset_metadata(loaded)["name"] == "agiqa-3k"
    assert np.asarray(loaded[2]["image"])[0, 0].tolist() == [80, 10, 10]
    with pytest.raises(FileNotFoundError, match="no Parquet file"):
        load_parquet(tmp_path / "missing.parquet")


def test_imagefolder_round_trip(agiqa_3k_folder: Path, tmp_path: Path) -> None:
    import datasets

    data = load_iqa_dataset("agiqa-3k", agiqa_3k_folder)
    split_folder = save_imagefolder(data, tmp_path / "folder", split="train")
    assert (split_folder / "metadata.csv").is_file() and (split_folder / "xl2.2_normal_002.jpg").is_file()
    loaded = load_imagefolder(tmp_path / "folder")
    assert sorted(loaded["mos"]) == pytest.approx(sorted(data["mos"]))
    assert mos_range(loaded) == (0.0, 5.0)
    plain = datasets.load_dataset("imagefolder", data_dir=str(split_folder), split="train")
    row = plain.filter(lambda n: n == "xl2.2_normal_002.jpg", input_columns="name")[0]
    assert row["prompt"] == 'house, "old" and tall' and row["image"].size == (12, 12)


def test_synthetic_dataset_round_trips_through_parquet(tmp_path: Path) -> None:
    from training.synthetic import build_synthetic_dataset

    synthetic = build_synthetic_dataset(image_size=16, crops_per_source=1, num_raters=3)["test"]
    loaded = load_parquet(save_parquet(synthetic, tmp_path / "synthetic.parquet"))
    assert mos_range(loaded) == (1.0, 5.0)
    assert np.array_equal(np.asarray(loaded[7]["image"]), np.asarray(synthetic[7]["image"]))


def test_push_to_hub_only_when_the_licence_allows(
    agiqa_3k_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datasets

    pushed = []
    monkeypatch.setattr(
        datasets.Dataset, "push_to_hub", lambda self, repo_id, **kw: pushed.append((repo_id, self.info.license))
    )
    mit = load_iqa_dataset("agiqa-3k", agiqa_3k_folder)
    push_to_hub_if_allowed(mit, "someone/agiqa-3k")
    assert pushed == [("someone/agiqa-3k", "mit")]
    with pytest.raises(PermissionError, match="'cc-by-nc-4.0' does not clearly allow redistribution"):
        push_to_hub_if_allowed(mit, "someone/agiqa-3k", licence="cc-by-nc-4.0")
    koniq = tmp_path / "koniq"
    _write(koniq / "koniq10k_all.txt", "1024x768/1.jpg\t3.0\t0.5\n")
    unknown = load_iqa_dataset("koniq-10k", koniq, check_images=False)
    with pytest.raises(PermissionError, match=r"\['koniq-10k'\] has no known licence"):
        push_to_hub_if_allowed(unknown, "someone/koniq")
    assert len(pushed) == 1


def test_mos_range_needs_recorded_metadata() -> None:
    import datasets

    with pytest.raises(ValueError, match="records no MOS range"):
        mos_range(datasets.Dataset.from_dict({"mos": [1.0]}))
