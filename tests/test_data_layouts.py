"""Every published metadata layout of every dataset, loaded from a folder built in the real file's format (its
header, quoting, line endings and, for headerless lists, field order; values are generated), plus the choice of
the metadata file by content. `LAYOUT_TESTS` maps each (dataset, layout) of `training.data.layout_rows()` to
its test; `test_every_layout_has_a_test` and `test_docs_table_lists_every_layout_as_tested` keep the loader,
these tests and docs/datasets.md in step. Tests on the real files in ../shared/data are in test_data.py."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.data import (
    AmbiguousMetadataError,
    BadRowsError,
    dataset_metadata,
    layout_rows,
    load_iqa_dataset,
    load_split,
    mos_range,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
LAYOUT_TESTS: dict[tuple[str, str], Callable[[Path], None]] = {}


def covers(dataset: str, layout: str) -> Callable:
    """Registers a test function as the test of one (dataset, layout)."""

    def register(function: Callable[[Path], None]) -> Callable[[Path], None]:
        LAYOUT_TESTS[(dataset, layout)] = function
        return function

    return register


def _png_bytes(colour: tuple[int, int, int] = (90, 140, 200), size: int = 4) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png_bytes()


def _images(folder: Path, names: list[str] | tuple[str, ...]) -> None:
    """Tiny placeholder images (the same PNG bytes under every name; the loader only opens them lazily)."""
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(PNG)


def _write(path: Path, text: str, newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.replace("\n", newline).encode())
    return path


def _csv_text(rows: list[list[object]], newline: str = "\n") -> str:
    """Rows as CSV the way pandas / Excel exports write it: fields quoted only when needed, inner quotes
    doubled (a value `"a corgi"` becomes `\"\"\"a corgi\"\"\"`)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=newline).writerows(rows)
    return buffer.getvalue()


def _xlsx(path: Path, rows: list[list[object]]) -> Path:
    from openpyxl import Workbook

    workbook = Workbook()
    for row in rows:
        workbook.active.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook.save(path)
    return path


def _loaded_layout(data) -> str:
    return dataset_metadata(data)["layout"]


def _row(data, name: str) -> dict:
    """The first row whose key is `name`, without decoding its image."""
    return data.select_columns([c for c in data.column_names if c != "image"])[data["name"].index(name)]


# =============================================================================================
# AGIQA-3K
# =============================================================================================

AGIQA_3K_HEADER = "name,prompt,adj1,adj2,style,mos_quality,std_quality,mos_align,std_align"


@covers("agiqa-3k", "official-data-csv")
def layout_agiqa_3k_official(tmp_path: Path) -> None:
    root = tmp_path / "AGIQA-3K"
    rows = [
        "AttnGAN_normal_000.jpg,statue of a man,,,,0.965602553,0.223270101,0.40889324,0.615607722",
        'sd1.5_lowcorr_065.jpg,"an environmental concept art, anime style",,,anime style,2.2,0.66,2.85,0.81',
        'xl2.2_normal_294.jpg,"a shark in armor, long-shot, soft lighting",long-shot,soft lighting,,2.9,0.5,2.2,0.9',
        'midjourney_lowstep_001.jpg,"house, ""old"" and tall",,,,3.4,0.3,3.5,0.4',
    ]
    _write(root / "data.csv", "\n".join([AGIQA_3K_HEADER, *rows]) + "\n", newline="\r\n")
    names = [r.split(",", 1)[0] for r in rows]
    _images(root / "images", names)
    data = load_iqa_dataset("agiqa-3k", root)
    assert _loaded_layout(data) == "official-data-csv" and data["name"] == names
    assert data["prompt"][1:] == [
        "an environmental concept art, anime style",
        "a shark in armor, long-shot, soft lighting",
        'house, "old" and tall',
    ]
    assert data["adj1"] == [None, None, "long-shot", None] and data["std_align"][-1] == pytest.approx(0.4)
    assert data["model"] == ["AttnGAN", "sd1.5", "xl2.2", "midjourney"]
    assert data.features["mos_align"].dtype == "float64" and data["mos"][0] == pytest.approx(0.965602553)
    assert Path(dataset_metadata(data)["image_folder"]).name == "images"

    # ACL-IQA's copy (AIGC-3K_All.csv, LF) with MA-AGIQA's one-split folder data/agiqa/{train,test}.csv next to
    # it: the split files are not metadata candidates, and a splits_root holding them is used as is.
    acl = tmp_path / "ACL"
    _write(acl / "Database" / "AGIQA-3K" / "AIGC-3K_All.csv", "\n".join([AGIQA_3K_HEADER, *rows]) + "\n")
    _write(acl / "data" / "agiqa" / "train.csv", "\n".join([AGIQA_3K_HEADER, *rows[:3]]) + "\n")
    _write(acl / "data" / "agiqa" / "test.csv", "\n".join([AGIQA_3K_HEADER, rows[3]]) + "\n")
    _images(acl / "Database" / "AGIQA-3K", names)
    copy = load_iqa_dataset("agiqa-3k", acl)
    assert dataset_metadata(copy)["metadata_file"].endswith("AIGC-3K_All.csv") and copy["name"] == names
    split = load_split("agiqa-3k", acl, 1, splits_root=acl / "data" / "agiqa")
    assert set(split) == {"train", "test"} and split["test"]["name"] == [names[3]]

    # A mirror adding its own `mos` column keeps it as `source_mos`.
    mirror = tmp_path / "mirror"
    _write(mirror / "data.csv", f"{AGIQA_3K_HEADER},mos\n{rows[0]},1.5\n")
    mirrored = load_iqa_dataset("agiqa-3k", mirror, check_images=False)
    assert mirrored["source_mos"] == [1.5] and mirrored["mos"] == pytest.approx([0.965602553])


# =============================================================================================
# AGIQA-1K
# =============================================================================================

AGIQA_1K_ROWS = [
    ("deepai_0_0_0_0.jpg", "bird, driving aircraft, city, anime style", 2.8),
    ("dreamStudio_8_9_1_1.jpg", "man, wild, forest, realistic style", 0.4414),
    ("dreamStudio_8_9_1_1.jpg", "man, wild, forest, realistic style", 2.0841),
]


@covers("agiqa-1k", "official-xlsx")
def layout_agiqa_1k_xlsx(tmp_path: Path) -> None:
    root = tmp_path / "AGIQA-1K"
    _xlsx(root / "AIGC_MOS_Zscore.xlsx", [["Image", "Prompt", "MOS"], *map(list, AGIQA_1K_ROWS)])
    _images(root / "file", ["deepai_0_0_0_0.jpg", "dreamStudio_8_9_1_1.jpg"])
    data = load_iqa_dataset("agiqa-1k", root)
    assert _loaded_layout(data) == "official-xlsx"
    assert data["name"] == [r[0] for r in AGIQA_1K_ROWS] and data["mos"] == pytest.approx([2.8, 0.4414, 2.0841])
    assert data["source_row"] == [2, 3, 4] and data["model"] == ["deepai", "dreamStudio", "dreamStudio"]
    # IPCE split files (Image, Prompt, MOS) match a key listed twice by the MOS they give.
    split_rows = [["Image", "Prompt", "MOS"], list(AGIQA_1K_ROWS[0]), list(AGIQA_1K_ROWS[2])]
    _write(root / "splits" / "2" / "train.csv", _csv_text(split_rows))
    _write(root / "splits" / "2" / "val.csv", _csv_text([split_rows[0], list(AGIQA_1K_ROWS[1])]))
    split = load_split("agiqa-1k", root, 2)
    assert split["train"]["mos"] == pytest.approx([2.8, 2.0841]) and split["validation"]["mos"] == pytest.approx(
        [0.4414]
    )


@covers("agiqa-1k", "ipce-all-csv")
def layout_agiqa_1k_ipce(tmp_path: Path) -> None:
    root = tmp_path / "AGIQA-1K"
    _write(root / "all.csv", _csv_text([["Image", "Prompt", "MOS"], *map(list, AGIQA_1K_ROWS)]))
    _images(root / "file", ["deepai_0_0_0_0.jpg", "dreamStudio_8_9_1_1.jpg"])
    data = load_iqa_dataset("agiqa-1k", root)
    assert _loaded_layout(data) == "ipce-all-csv" and data["prompt"][0] == "bird, driving aircraft, city, anime style"
    # Next to the official xlsx with the same rows, the two agree and the official file is read.
    _xlsx(root / "AIGC_MOS_Zscore.xlsx", [["Image", "Prompt", "MOS"], *map(list, AGIQA_1K_ROWS)])
    assert _loaded_layout(load_iqa_dataset("agiqa-1k", root)) == "official-xlsx"
    # A different score in one of them makes the folder ambiguous.
    changed = [list(r) for r in AGIQA_1K_ROWS]
    changed[0][2] = 3.3
    _write(root / "all.csv", _csv_text([["Image", "Prompt", "MOS"], *changed]))
    with pytest.raises(AmbiguousMetadataError, match=r"AIGC_MOS_Zscore\.xlsx .*all\.csv .*deepai_0_0_0_0\.jpg"):
        load_iqa_dataset("agiqa-1k", root)


@covers("agiqa-1k", "official-score-csv")
def layout_agiqa_1k_score(tmp_path: Path) -> None:
    root = tmp_path / "AGIQA-1K"
    _write(root / "AIGC_all.csv", "Image,Score\ndeepai_0_0_0_0.jpg,3.1\ndreamStudio_8_9_1_.jpg,0.09\n", "\r\n")
    with pytest.raises(FileNotFoundError, match=r"AIGC_all\.csv \(official-score-csv\): read only when named"):
        load_iqa_dataset("agiqa-1k", root, check_images=False)
    data = load_iqa_dataset("agiqa-1k", root, metadata_file="AIGC_all.csv", check_images=False)
    assert _loaded_layout(data) == "official-score-csv" and data["mos"] == pytest.approx([3.1, 0.09])
    assert data["prompt"] == [None, None]


# =============================================================================================
# AIGCIQA2023
# =============================================================================================

AIGCIQA2023_MODELS = ("Controlnet", "DALLE", "Glide", "Lafite", "stable-diffusion", "Unidiffuser")
IPCE_HEADER = ["model", "image_name", "mosz1", "mosz2", "mosz3", "prompt"]


def _aigciqa2023_prompts() -> list[str]:
    """100 prompts wrapped in literal double quotes as IPCE publishes them, some with commas and inner
    quotes (the real file has e.g. `a cartoon of a dog saying ""I see what you did there""`)."""
    prompts = [f'"prompt {p:03d}, a small scene"' for p in range(100)]
    prompts[60] = '"a cartoon of a dog saying "hello there""'
    prompts[65] = '"Two cups, one with the word "LOVE" and one with "PEACE"."'
    return prompts


def _ipce_rows(seed: int = 0) -> list[list[object]]:
    """The 2400 rows of IPCE's all_set.csv: models in release order, prompts 000..099, samples 1..4."""
    rng = np.random.default_rng(seed)
    prompts = _aigciqa2023_prompts()
    rows = []
    for model in AIGCIQA2023_MODELS:
        for prompt in range(100):
            for sample in range(1, 5):
                scores = rng.uniform(1.4, 3.7, size=3)
                rows.append([model, f"{prompt:03d}-{sample}.png", *map(float, scores), prompts[prompt]])
    return rows


def _write_ipce_aigciqa2023(data_dir: Path, splits_dir: Path, *, num_splits: int = 10) -> list[list[object]]:
    """IPCE's data/AIGCIQA2023 (all.csv, all_norm.csv, all_set.csv, prompt.csv, images in per-model folders)
    and Database/AIGCIQA2023/<n>/{train,val}.csv: random 1920/480 splits by image whose floats are printed
    with 16 significant digits (the real split files differ from all_set.csv in the last digits)."""
    rows = _ipce_rows()
    _write(data_dir / "all.csv", _csv_text([IPCE_HEADER[:2], *[r[:2] for r in rows]]))
    _write(data_dir / "all_norm.csv", _csv_text([IPCE_HEADER[:5], *[r[:5] for r in rows]]))
    _write(data_dir / "all_set.csv", _csv_text([IPCE_HEADER, *rows]))
    _write(data_dir / "prompt.csv", _csv_text([["prompt"], *[[p] for p in _aigciqa2023_prompts()]]))
    _images(data_dir, [f"{r[0]}/{r[1]}" for r in rows])
    rng = np.random.default_rng(1)
    for split in range(1, num_splits + 1):
        order = rng.permutation(len(rows))
        reprinted = [[*rows[i][:2], *(float(f"{v:.16g}") for v in rows[i][2:5]), rows[i][5]] for i in order]
        _write(splits_dir / str(split) / "val.csv", _csv_text([IPCE_HEADER, *reprinted[:480]]))
        _write(splits_dir / str(split) / "train.csv", _csv_text([IPCE_HEADER, *reprinted[480:]]))
    return rows


@covers("aigciqa2023", "ipce-model-image-name")
def layout_aigciqa2023_ipce(tmp_path: Path) -> None:
    data_dir, splits_dir = tmp_path / "data" / "AIGCIQA2023", tmp_path / "Database" / "AIGCIQA2023"
    rows = _write_ipce_aigciqa2023(data_dir, splits_dir)
    data = load_iqa_dataset("aigciqa2023", data_dir)
    metadata = dataset_metadata(data)
    # all.csv (no scores) is never chosen; all_norm.csv and all_set.csv agree and the one with prompts is read.
    assert metadata["layout"] == "ipce-model-image-name" and metadata["metadata_file"].endswith("all_set.csv")
    assert len(data) == 2400 and len(set(data["name"])) == 2400  # 100 prompts x 6 models x 4, each pair once
    assert {m: data["model"].count(m) for m in AIGCIQA2023_MODELS} == dict.fromkeys(AIGCIQA2023_MODELS, 400)
    assert data["name"][:2] == ["Controlnet/000-1.png", "Controlnet/000-2.png"] and data["file"][0] == data["name"][0]
    assert data["image_name"].count("000-1.png") == 6  # the same image_name in each model folder
    first = _row(data, "Glide/060-3.png")
    expected = rows[2 * 400 + 60 * 4 + 2]
    assert first["mos"] == pytest.approx(expected[2] * 20, rel=1e-6) and first["mosz2"] == expected[3]
    assert first["prompt"] == 'a cartoon of a dog saying "hello there"'  # one wrapping pair of quotes removed
    assert (first["prompt_index"], first["sample"]) == (60, 3)
    assert data.features["mosz1"].dtype == "float64" and data.features["prompt_index"].dtype == "int64"
    assert mos_range(data) == (0.0, 100.0) and data[0]["image"].size == (4, 4)
    authenticity = load_iqa_dataset("aigciqa2023", data_dir, target="authenticity", check_images=False)
    assert authenticity["mos"][5] == pytest.approx(rows[5][3] * 20, rel=1e-6)

    for split in range(1, 11):
        splits = load_split("aigciqa2023", data_dir, split, splits_root=splits_dir)
        lines = {s: (splits_dir / str(split) / f"{s}.csv").read_text().count("\n") - 1 for s in ("train", "val")}
        assert (len(splits["train"]), len(splits["validation"])) == (lines["train"], lines["val"]) == (1920, 480)
        assert set(splits["train"]["name"]).isdisjoint(splits["validation"]["name"])
        assert len(set(splits["train"]["name"]) | set(splits["validation"]["name"])) == 2400

    # Without prompts (all_norm.csv alone) the rows are the same; a split row naming no image is reported.
    alone = tmp_path / "norm_only"
    _write(alone / "all_norm.csv", (data_dir / "all_norm.csv").read_text())
    norm = load_iqa_dataset("aigciqa2023", alone, check_images=False)
    assert norm["name"] == data["name"] and set(norm["prompt"]) == {None}
    _write(
        alone / "splits" / "1" / "train.csv", _csv_text([IPCE_HEADER, rows[0], ["DALLE", "100-1.png", 2, 2, 2, "x"]])
    )
    _write(alone / "splits" / "1" / "val.csv", _csv_text([IPCE_HEADER, rows[1]]))
    with pytest.raises(BadRowsError, match=r"train\.csv: 1 row\(s\) name images that are not .*row 3 \('DALLE/100-1"):
        load_split("aigciqa2023", alone, 1, check_images=False)


def test_aigciqa2023_ipce_folder_with_only_the_image_list_says_what_it_looked_for(tmp_path: Path) -> None:
    root = tmp_path / "AIGCIQA2023"
    _write(root / "all.csv", "model,image_name\nControlnet,000-1.png\n")
    _write(root / "prompt.csv", 'prompt\n"""a corgi"""\n')
    with pytest.raises(FileNotFoundError) as error:
        load_iqa_dataset("aigciqa2023", root)
    message = str(error.value)
    assert "no usable metadata file under" in message and "all_set.csv" in message and "mosz" in message
    assert "all.csv: no aigciqa2023 layout matches ['model', 'image_name']" in message


def test_aigciqa2023_acl_copy_agrees_and_a_changed_copy_is_ambiguous(tmp_path: Path) -> None:
    root = tmp_path / "AIGCIQA2023"
    rows = _ipce_rows()
    _write(root / "all_set.csv", _csv_text([IPCE_HEADER, *rows]))
    # ACL-IQA's AIGCIQA2023_All.csv: the same columns, rows shuffled, floats printed with fewer digits.
    order = np.random.default_rng(3).permutation(len(rows))
    acl = [[*rows[i][:2], *(float(f"{v:.15g}") for v in rows[i][2:5]), rows[i][5]] for i in order]
    _write(root / "ACL" / "AIGCIQA2023_All.csv", _csv_text([IPCE_HEADER, *acl]))
    data = load_iqa_dataset("aigciqa2023", root, check_images=False)
    assert len(data) == 2400 and sorted(data["name"]) == sorted(f"{r[0]}/{r[1]}" for r in rows)
    acl[7][2] = acl[7][2] + 0.5  # 10 points on the 0-100 scale
    _write(root / "ACL" / "AIGCIQA2023_All.csv", _csv_text([IPCE_HEADER, *acl]))
    with pytest.raises(AmbiguousMetadataError, match=r"2 usable metadata files .*AIGCIQA2023_All\.csv .*all_set\.csv"):
        load_iqa_dataset("aigciqa2023", root, check_images=False)
    chosen = load_iqa_dataset("aigciqa2023", root, metadata_file=root / "all_set.csv", check_images=False)
    assert len(chosen) == 2400


def test_aigciqa2023_two_column_keys_survive_imagefolder_and_parquet(tmp_path: Path) -> None:
    from training.data import load_imagefolder, load_parquet, save_imagefolder, save_parquet

    root = tmp_path / "AIGCIQA2023"
    rows = [r for r in _ipce_rows() if r[1] in ("000-1.png", "000-2.png")]  # 12 rows, each image_name 6 times
    _write(root / "all_set.csv", _csv_text([IPCE_HEADER, *rows]))
    for index, (model, name, *_) in enumerate(rows):
        path = root / model / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4), (index * 20, 0, 0)).save(path)
    data = load_iqa_dataset("aigciqa2023", root)
    folder = save_imagefolder(data, tmp_path / "folder")
    assert (folder / "Glide" / "000-2.png").is_file() and len(list(folder.rglob("*.png"))) == 12
    loaded = load_imagefolder(tmp_path / "folder")
    by_name = {row["name"]: row for row in loaded}
    assert sorted(by_name) == sorted(data["name"])
    assert np.asarray(by_name["Glide/000-2.png"]["image"])[0, 0, 0] == 20 * data["name"].index("Glide/000-2.png")
    assert load_parquet(save_parquet(data, tmp_path / "a.parquet"))["name"] == data["name"]


@covers("aigciqa2023", "official-mat")
def layout_aigciqa2023_official_mat(tmp_path: Path) -> None:
    from scipy import io as scipy_io

    root = tmp_path / "AIGCIQA2023"
    values = np.linspace(10, 90, 2400)
    for number in (1, 2, 3):
        (root / "DATA" / "MOS").mkdir(parents=True, exist_ok=True)
        (root / "DATA" / "STD").mkdir(parents=True, exist_ok=True)
        scipy_io.savemat(root / "DATA" / "MOS" / f"mosz{number}.mat", {"MOSz": (values + number).reshape(-1, 1)})
        scipy_io.savemat(root / "DATA" / "STD" / f"SD{number}.mat", {"SD": np.full((2400, 1), float(number))})
    prompts = [[f"prompt number {p}", "realistic", "animal"] for p in range(100)]
    _xlsx(root / "DATA" / "MOS" / "AIGCIQA2023_Prompts.xlsx", [["prompt", "style", "class"], *prompts])
    _images(root / "Image" / "allimg", [f"{n}.png" for n in range(2400)])
    data = load_iqa_dataset("aigciqa2023", root, target="authenticity")
    assert _loaded_layout(data) == "official-mat" and len(data) == 2400 and len(set(data["name"])) == 2400
    image = 2 * 400 + 37 * 4 + (3 - 1)  # model Glide, prompt 37, third sample
    row = data.select_columns(["name", "file", "mos", "mos_std", "prompt", "model", "prompt_index", "sample", "style"])
    assert row[image] == {
        "name": "Glide/037-3.png",  # the key IPCE's split files use
        "file": f"{image}.png",
        "mos": pytest.approx(values[image] + 2),
        "mos_std": 2.0,
        "prompt": "prompt number 37",
        "model": "Glide",
        "prompt_index": 37,
        "sample": 3,
        "style": "realistic",
    }
    assert Path(dataset_metadata(data)["image_folder"]).parts[-2:] == ("Image", "allimg")
    # IPCE split files match the official layout by key.
    header = IPCE_HEADER
    _write(root / "splits" / "1" / "train.csv", _csv_text([header, ["Glide", "037-3.png", 1, 2, 3, '"p"']]))
    _write(root / "splits" / "1" / "val.csv", _csv_text([header, ["Controlnet", "000-1.png", 1, 2, 3, '"p"']]))
    split = load_split("aigciqa2023", root, 1)
    assert split["train"]["file"] == [f"{image}.png"] and split["validation"]["file"] == ["0.png"]
    # A headerless prompt sheet: the prompt is the second column.
    _xlsx(root / "DATA" / "MOS" / "AIGCIQA2023_Prompts.xlsx", [[p + 1, f"text {p}"] for p in range(100)])
    assert load_iqa_dataset("aigciqa2023", root, check_images=False)["prompt"][image] == "text 37"


@covers("aigciqa2023", "all-in-one-csv")
def layout_aigciqa2023_all_in_one(tmp_path: Path) -> None:
    root = tmp_path / "AIGCIQA2023"
    header = ["", "name", "prompt", "style", "class", "quality_mos", "authenticity_mos", "correspondence_mos"]
    header += ["quality_std", "authenticity_std", "correspondence_std"]
    rows = []
    for number, index in enumerate((0, 1, 401, 2399)):
        scores = [61.5 - number, 55.0 + number, 70.25, 10.1, 11.2, 9.3]
        rows.append([number, f"{index}.png", f"a cat, number {number}", "realistic", "animal", *scores])
    _write(root / "DATA" / "MOS" / "AIGCIQA2023.csv", _csv_text([header, *rows]))
    _images(root / "Image" / "allimg", [r[1] for r in rows])
    data = load_iqa_dataset("aigciqa2023", root, target="authenticity")
    assert _loaded_layout(data) == "all-in-one-csv" and "Unnamed: 0" not in data.column_names
    assert data["name"] == ["Controlnet/000-1.png", "Controlnet/000-2.png", "DALLE/000-2.png", "Unidiffuser/099-4.png"]
    assert data["mos"] == pytest.approx([55.0, 56.0, 57.0, 58.0]) and data["mos_std"] == pytest.approx([11.2] * 4)
    assert data.features["quality_mos"].dtype == "float64" and data["quality_mos"][0] == 61.5  # numbers, not text
    assert data["prompt"][0] == "a cat, number 0" and data["style"][0] == "realistic"


# =============================================================================================
# AIGIQA-20K (NTIRE 2024 AIGCQA-30K-Image)
# =============================================================================================

AIGIQA_20K_ROWS = [("LCM_SD1.5_0001.png", "a city, at night", 3.2), ("SDXL_Turbo_0002.png", "saint\\'s halo", 4.1)]


@covers("aigiqa-20k", "ntire-info-xlsx")
def layout_aigiqa_20k_xlsx(tmp_path: Path) -> None:
    root = tmp_path / "AIGCQA-30K-Image"
    _xlsx(root / "info_train.xlsx", [["name", "prompt", "mos"], *map(list, AIGIQA_20K_ROWS)])
    _xlsx(root / "info_val.xlsx", [["name", "prompt"], ["Dream_0100.png", "no score"]])  # never a candidate
    _images(root / "train", [r[0] for r in AIGIQA_20K_ROWS])
    data = load_iqa_dataset("aigiqa-20k", root)
    assert _loaded_layout(data) == "ntire-info-xlsx" and data["model"] == ["LCM_SD1.5", "SDXL_Turbo"]
    assert data["mos"] == pytest.approx([3.2, 4.1]) and data["prompt"] == ["a city, at night", "saint\\'s halo"]


@covers("aigiqa-20k", "ntire-info-csv")
def layout_aigiqa_20k_csv(tmp_path: Path) -> None:
    root = tmp_path / "AIGCQA-30K-Image"
    _write(
        root / "info_train.csv", 'LCM_SD1.5_0001.png,"a city, at night",3.2\nSDXL_Turbo_0002.png,saint\\\'s halo,4.1'
    )
    _write(root / "info_val.csv", "Dream_0100.png,no score")
    _images(root / "train", [r[0] for r in AIGIQA_20K_ROWS])
    data = load_iqa_dataset("aigiqa-20k", root)
    assert _loaded_layout(data) == "ntire-info-csv" and data["source_row"] == [1, 2]
    assert data["prompt"] == ["a city, at night", "saint\\'s halo"]
    # IPCE's headerless split files, without a trailing newline; the first row is a sample, not a header.
    _write(root / "splits" / "1" / "train.csv", "LCM_SD1.5_0001.png,p,3.2")
    _write(root / "splits" / "1" / "val.csv", "SDXL_Turbo_0002.png,p,4.1\nMJ_0009.png,p,1.0")
    with pytest.raises(BadRowsError, match=r"val\.csv: 1 row\(s\) name images that are not .*row 2 \('MJ_0009"):
        load_split("aigiqa-20k", root, 1)
    splits = load_split("aigiqa-20k", root, 1, on_bad_rows="skip")
    assert splits["train"]["name"] == ["LCM_SD1.5_0001.png"] and splits["validation"]["name"] == ["SDXL_Turbo_0002.png"]


# =============================================================================================
# KonIQ-10k
# =============================================================================================

KONIQ_NAMES = ["10004473376.jpg", "10007357496.jpg", "10043785683.jpg"]


def _koniq_official_rows(last: str) -> list[list[object]]:
    header = ["image_name", "c1", "c2", "c3", "c4", "c5", "c_total", "MOS", "SD", last]
    fractions = [[0.0, 0.0, 0.25, 0.75, 0.0], [0.0, 0.5, 0.5, 0.0, 0.0], [0.1, 0.2, 0.4, 0.2, 0.1]]
    extra = {"set": ["training", "test", "validation"], "MOS_zscore": [1.2, -0.4, 0.1]}[last]
    pairs = enumerate(zip(KONIQ_NAMES, fractions, strict=True))
    return [header] + [[name, *f, 105, 77.38 - 10 * i, 0.527, extra[i]] for i, (name, f) in pairs]


@covers("koniq-10k", "official-distributions-sets")
def layout_koniq_sets(tmp_path: Path) -> None:
    root = tmp_path / "koniq10k"
    _write(root / "koniq10k_distributions_sets.csv", _csv_text(_koniq_official_rows("set")))
    _images(root / "1024x768", KONIQ_NAMES)
    data = load_iqa_dataset("koniq-10k", root)
    assert _loaded_layout(data) == "official-distributions-sets" and data["mos"] == pytest.approx([77.38, 67.38, 57.38])
    assert data["mos_std"] == pytest.approx([0.527 * 25] * 3) and data["set"] == ["training", "test", "validation"]
    assert data.features["c_total"].dtype == "int64" and data.features["c1"].dtype == "float64"
    five = load_iqa_dataset("koniq-10k", root, target="quality_5")
    assert five["mos"] == pytest.approx([3.75, 2.5, 3.0])
    by_set = load_split("koniq-10k", root, 1, protocol="set-column")
    assert {k: v["name"] for k, v in by_set.items()} == {
        "train": [KONIQ_NAMES[0]],
        "validation": [KONIQ_NAMES[2]],
        "test": [KONIQ_NAMES[1]],
    }


@covers("koniq-10k", "official-scores-distributions")
def layout_koniq_scores(tmp_path: Path) -> None:
    root = tmp_path / "koniq10k"
    _write(root / "koniq10k_scores_and_distributions.csv", _csv_text(_koniq_official_rows("MOS_zscore")))
    _images(root / "512x384", KONIQ_NAMES)
    data = load_iqa_dataset("koniq-10k", root)
    assert _loaded_layout(data) == "official-scores-distributions" and data["MOS_zscore"] == [1.2, -0.4, 0.1]
    assert Path(dataset_metadata(data)["image_folder"]).name == "512x384"


@covers("koniq-10k", "pyiqa-csv")
def layout_koniq_pyiqa_csv(tmp_path: Path) -> None:
    root = tmp_path / "koniq10k"
    header = ["img_name", "mos", "std", "split", "c1", "c2", "c3", "c4", "c5", "c_total"]
    rows = [
        [
            KONIQ_NAMES[0],
            77.3836206897,
            0.527277894494,
            "training",
            0.0,
            0.0,
            0.238095238095,
            0.695238095238,
            0.0667,
            105,
        ],
        [KONIQ_NAMES[1], 68.7285714286, 0.580003024795, "test", 0.0, 0.03125, 0.46875, 0.489583333333, 0.0104, 96],
    ]
    _write(root / "meta_info_KonIQ10kDataset.csv", _csv_text([header, *rows]))
    data = load_iqa_dataset("koniq-10k", root, check_images=False)
    assert _loaded_layout(data) == "pyiqa-csv" and data["mos"] == pytest.approx([77.3836206897, 68.7285714286])
    assert data["set"] == ["training", "test"] and data["mos_std"] == pytest.approx([0.527277894494 * 25, 14.5000756])
    assert load_iqa_dataset("koniq-10k", root, target="quality_5", check_images=False)["mos"][1] == pytest.approx(
        2 * 0.03125 + 3 * 0.46875 + 4 * 0.489583333333 + 5 * 0.0104
    )


@covers("koniq-10k", "pyiqa-txt")
def layout_koniq_pyiqa_txt(tmp_path: Path) -> None:
    root = tmp_path / "koniq10k"
    lines = [
        f"{KONIQ_NAMES[0]:<20}\t{'77.3836206897':<20}\t{'0.527277894494':<20}\t{'train':<10}",
        f"{KONIQ_NAMES[2]:<20}\t{'71.2043269231':<20}\t{'0.497974333332':<20}\t{'val':<10}",
    ]
    _write(root / "meta_info_KonIQ10kDataset.txt", "\n".join(lines) + "\n")
    data = load_iqa_dataset("koniq-10k", root, check_images=False)
    assert _loaded_layout(data) == "pyiqa-txt" and data["name"] == [KONIQ_NAMES[0], KONIQ_NAMES[2]]
    assert data["mos"] == pytest.approx([77.3836206897, 71.2043269231]) and data["set"] == ["train", "val"]
    by_set = load_split("koniq-10k", root, 1, protocol="set-column", check_images=False)
    assert set(by_set) == {"train", "validation"}
    with pytest.raises(FileNotFoundError, match=r"quality_5' needs the rating fractions"):
        load_iqa_dataset("koniq-10k", root, target="quality_5", check_images=False)


@covers("koniq-10k", "liqe-all-txt")
def layout_koniq_liqe(tmp_path: Path) -> None:
    root = tmp_path / "koniq-10k"
    _write(root / "koniq10k_all.txt", "1024x768/10004473376.jpg\t3.75\t0.5\n1024x768/10007357496.jpg\t2.5\t0.4\n")
    _images(root / "1024x768", KONIQ_NAMES[:2])
    data = load_iqa_dataset("koniq-10k", root)
    assert _loaded_layout(data) == "liqe-all-txt" and data["name"] == KONIQ_NAMES[:2]
    assert data["mos"] == pytest.approx([68.75, 37.5]) and data["mos_std"] == pytest.approx([12.5, 10.0])
    assert load_iqa_dataset("koniq-10k", root, target="quality_5")["mos"] == pytest.approx([3.75, 2.5])
    clip = "1024x768/{}\t{}\trealistic blur\tanimal\tinvalid\tinvalid\n"
    _write(root / "splits" / "1" / "koniq10k_train_clip.txt", clip.format(KONIQ_NAMES[0], 3.75))
    _write(root / "splits" / "1" / "koniq10k_test_clip.txt", clip.format(KONIQ_NAMES[1], 2.5))
    split = load_split("koniq-10k", root, 1)
    assert split["train"]["name"] == [KONIQ_NAMES[0]] and split["test"]["name"] == [KONIQ_NAMES[1]]
    # Next to the official file the LIQE list agrees on the 1-5 mean but not on the official 0-100 MOS.
    _write(root / "koniq10k_distributions_sets.csv", _csv_text(_koniq_official_rows("set")[:3]))
    assert _loaded_layout(load_iqa_dataset("koniq-10k", root, target="quality_5")) == "official-distributions-sets"
    with pytest.raises(AmbiguousMetadataError, match="scores differ for 2 image"):
        load_iqa_dataset("koniq-10k", root)


# =============================================================================================
# SPAQ
# =============================================================================================


@covers("spaq", "official-xlsx")
def layout_spaq_xlsx(tmp_path: Path) -> None:
    root = tmp_path / "SPAQ"
    header = ["Image name", "MOS", "Brightness", "Colorfulness", "Contrast", "Noisiness", "Sharpness"]
    _xlsx(root / "Annotations" / "MOS and Image attribute scores.xlsx", [header, ["00001.jpg", 42.5, 1, 2, 3, 4, 5]])
    _xlsx(root / "Annotations" / "Scene category labels.xlsx", [["Image name", "Animal"], ["00001.jpg", 1]])
    _images(root / "TestImage", ["00001.jpg"])
    data = load_iqa_dataset("spaq", root)
    assert _loaded_layout(data) == "official-xlsx" and data["mos"] == [42.5] and data["sharpness"] == [5.0]


@covers("spaq", "pyiqa-csv")
def layout_spaq_pyiqa(tmp_path: Path) -> None:
    root = tmp_path / "SPAQ"
    header = "Image name,MOS,Brightness,Colorfulness,Contrast,Noisiness,Sharpness,Animal,Brightness"
    _write(root / "meta_info_SPAQDataset.csv", f"{header}\n00001.jpg,48.86,47.43,40,41,42,43,0,-1.21\n", "\r\n")
    _images(root / "TestImage", ["00001.jpg"])
    data = load_iqa_dataset("spaq", root)
    assert _loaded_layout(data) == "pyiqa-csv" and data["mos"] == pytest.approx([48.86])
    assert data["brightness"] == pytest.approx([47.43]) and data["exif_brightness"] == pytest.approx([-1.21])


# =============================================================================================
# LIVE Challenge
# =============================================================================================

LIVEC_FILES = [f"t{i}.bmp" for i in range(1, 8)] + ["10.bmp", "611.JPG"]


@covers("livec", "official-mat")
def layout_livec_mat(tmp_path: Path) -> None:
    from scipy import io as scipy_io

    root = tmp_path / "ChallengeDB_release"
    (root / "Data").mkdir(parents=True)
    names = np.empty((len(LIVEC_FILES), 1), dtype=object)
    for i, name in enumerate(LIVEC_FILES):
        names[i, 0] = np.array([name])
    scipy_io.savemat(root / "Data" / "AllImages_release.mat", {"AllImages_release": names})
    scores = np.arange(len(LIVEC_FILES), dtype=float).reshape(1, -1) * 10
    scipy_io.savemat(root / "Data" / "AllMOS_release.mat", {"AllMOS_release": scores})
    scipy_io.savemat(root / "Data" / "AllStdDev_release.mat", {"AllStdDev_release": np.full((1, 9), 15.0)})
    _images(root / "Images", LIVEC_FILES)
    data = load_iqa_dataset("livec", tmp_path)  # the folder above ChallengeDB_release works too
    assert _loaded_layout(data) == "official-mat" and data["name"] == ["10.bmp", "611.JPG"]
    assert data["mos"] == pytest.approx([70.0, 80.0]) and data["mos_std"] == pytest.approx([15.0, 15.0])
    assert len(load_iqa_dataset("livec", root, include_training_images=True)) == 9


def _livec_liqe_lines(clip: bool) -> str:
    extra = "\trealistic blur\tanimal\tinvalid\tinvalid" if clip else "\t19.12"
    return "".join(f"Images/{name}\t{score}{extra}\n" for name, score in (("10.bmp", 70.0), ("611.JPG", 80.0)))


@covers("livec", "liqe-all-txt")
def layout_livec_liqe(tmp_path: Path) -> None:
    root = tmp_path / "ChallengeDB_release"
    _write(root / "clive_all.txt", _livec_liqe_lines(clip=False))
    _images(root / "Images", LIVEC_FILES)
    data = load_iqa_dataset("livec", root)
    assert _loaded_layout(data) == "liqe-all-txt" and data["name"] == ["10.bmp", "611.JPG"]
    assert data["file"] == ["Images/10.bmp", "Images/611.JPG"] and data["mos_std"] == pytest.approx([19.12, 19.12])
    for split_name, name in (("train", "10.bmp"), ("val", "611.JPG"), ("test", "611.JPG")):
        line = f"Images/{name}\t70.0\trealistic blur\tanimal\tinvalid\tinvalid\n"
        _write(root / "splits2" / "3" / f"clive_{split_name}_clip.txt", line)
    splits = load_split("livec", root, 3, splits_root=root / "splits2")
    assert {k: len(v) for k, v in splits.items()} == {"train": 1, "validation": 1, "test": 1}


@covers("livec", "liqe-all-clip-txt")
def layout_livec_liqe_clip(tmp_path: Path) -> None:
    root = tmp_path / "ChallengeDB_release"
    _write(root / "clive_all_clip.txt", _livec_liqe_lines(clip=True))
    data = load_iqa_dataset("livec", root, check_images=False)
    assert _loaded_layout(data) == "liqe-all-clip-txt" and data["distortion"] == ["realistic blur"] * 2
    assert data["scene1"] == ["animal"] * 2 and data["scene2"] == [None, None]
    # Next to clive_all.txt (same images and scores) the list with standard deviations is read.
    _write(root / "clive_all.txt", _livec_liqe_lines(clip=False))
    assert _loaded_layout(load_iqa_dataset("livec", root, check_images=False)) == "liqe-all-txt"


@covers("livec", "pyiqa-csv")
def layout_livec_pyiqa(tmp_path: Path) -> None:
    root = tmp_path / "ChallengeDB_release"
    body = "".join(f"{name},{10.0 * i},15.0\n" for i, name in enumerate(LIVEC_FILES))
    _write(root / "meta_info_LIVEChallengeDataset.csv", "img_name,mos,std\n" + body, "\r\n")
    _images(root / "Images", LIVEC_FILES)
    data = load_iqa_dataset("livec", root)
    assert _loaded_layout(data) == "pyiqa-csv" and data["name"] == ["10.bmp", "611.JPG"]
    assert load_iqa_dataset("livec", root, include_training_images=True)["name"][0] == "t1.bmp"


# =============================================================================================
# KADID-10k
# =============================================================================================

KADID_NAMES = ["I01_01_01.png", "I01_02_05.png"]


@covers("kadid-10k", "official-dmos-csv")
def layout_kadid_official(tmp_path: Path) -> None:
    root = tmp_path / "kadid10k"
    _write(
        root / "dmos.csv",
        "dist_img,ref_img,dmos,var\nI01_01_01.png,I01.png,4.57,0.25\nI01_02_05.png,I01.png,1.5,1.44\n",
    )
    _images(root / "images", [*KADID_NAMES, "I01.png"])
    data = load_iqa_dataset("kadid-10k", root)
    assert _loaded_layout(data) == "official-dmos-csv" and data["mos"] == pytest.approx([4.57, 1.5])
    assert data["mos_std"] == pytest.approx([0.5, 1.2]) and data["distortion_type"] == [1, 2]
    assert data["distortion_level"] == [1, 5] and data["reference"] == ["I01.png", "I01.png"]
    assert mos_range(data) == (1.0, 5.0)


@covers("kadid-10k", "pyiqa-csv")
def layout_kadid_pyiqa(tmp_path: Path) -> None:
    root = tmp_path / "kadid10k"
    _write(root / "meta_info_KADID10kDataset.csv", "ref_name,dist_name,dmos,std\nI02.png,I02_01_03.png,2.07,0.772\n")
    data = load_iqa_dataset("kadid-10k", root, check_images=False)
    assert _loaded_layout(data) == "pyiqa-csv" and data["name"] == ["I02_01_03.png"]
    assert data["mos_std"] == pytest.approx([math.sqrt(0.772)])  # LIQE lists 0.8786 for this image


@covers("kadid-10k", "liqe-all-txt")
def layout_kadid_liqe(tmp_path: Path) -> None:
    # As in LIQE's IQA_Database/kadid10k: splits2/ holds kadid10k_all.txt, a stray kadid10k_val_clip.txt and the
    # split folders; the images are in images/ next to it.
    root = tmp_path / "kadid10k"
    all_txt = "images/I01_01_01.png\t4.57\t0.704\nimages/I01_02_05.png\t1.5\t1.2\n"
    _write(root / "splits2" / "kadid10k_all.txt", all_txt)
    line = "images/{}\t{}\tgaussian blur\tlandscape\tinvalid\tinvalid\n"
    _write(root / "splits2" / "kadid10k_val_clip.txt", line.format(KADID_NAMES[0], 4.57))
    _images(root / "images", KADID_NAMES)
    data = load_iqa_dataset("kadid-10k", root)
    assert _loaded_layout(data) == "liqe-all-txt" and data["name"] == KADID_NAMES and data["reference"][0] == "I01.png"
    assert dataset_metadata(data)["metadata_file"].endswith("splits2/kadid10k_all.txt")
    # LIQE's KADID split 1 has train and test lists but no val list; the split folder is found under splits2/.
    _write(root / "splits2" / "1" / "kadid10k_train_clip.txt", line.format(KADID_NAMES[0], 4.57))
    _write(root / "splits2" / "1" / "kadid10k_test_clip.txt", line.format(KADID_NAMES[1], 1.5))
    split = load_split("kadid-10k", root, 1)
    assert set(split) == {"train", "test"} and split["test"]["name"] == [KADID_NAMES[1]]
    # The official dmos.csv next to it, with the same scores, agrees; it is the one read.
    _write(
        root / "dmos.csv",
        "dist_img,ref_img,dmos,var\nI01_01_01.png,I01.png,4.57,0.4956\nI01_02_05.png,I01.png,1.5,1.44\n",
    )
    assert _loaded_layout(load_iqa_dataset("kadid-10k", root)) == "official-dmos-csv"


# =============================================================================================
# Screen content: SIQAD, SCID (no public copy of their score files was found: formats inferred)
# =============================================================================================


@covers("siqad", "dmos-list")
def layout_siqad(tmp_path: Path) -> None:
    root = tmp_path / "SIQAD"
    _write(root / "DMOS.txt", "cim1_1_1.bmp,40.1,8.5\ncim1_1_2.bmp,oops\n")
    with pytest.raises(BadRowsError, match=r"DMOS\.txt, line 2: expected 'name score \[std\]'"):
        load_iqa_dataset("siqad", root, check_images=False)
    _write(root / "DMOS.txt", "cim1_1_1.bmp\t40.1\t8.5\ncim1_1_2.bmp\t55\n")
    _images(root / "DistortedImages", ["cim1_1_1.bmp", "cim1_1_2.bmp"])
    data = load_iqa_dataset("siqad", root)
    assert _loaded_layout(data) == "dmos-list" and data["mos"] == pytest.approx([40.1, 55.0])
    assert data["mos_std"][0] == pytest.approx(8.5) and math.isnan(data["mos_std"][1])
    assert dataset_metadata(data)["higher_is_better"] is False
    _xlsx(root / "DMOS.xlsx", [["cim1_1_1.bmp", 40.1, 8.5], ["cim1_1_2.bmp", 55, None]])
    assert load_iqa_dataset("siqad", root, metadata_file="DMOS.xlsx")["mos"] == pytest.approx([40.1, 55.0])


@covers("scid", "mos-list")
def layout_scid(tmp_path: Path) -> None:
    root = tmp_path / "SCID"
    _write(root / "MOS_SCID.txt", "image mos\nSCI01_1_1 55.2\nSCI01_2_3  30.75\n", newline="\r\n")
    _images(root / "DistortedSCIs", ["SCI01_1_1.bmp", "SCI01_2_3.bmp"])
    data = load_iqa_dataset("scid", root)
    assert _loaded_layout(data) == "mos-list" and data["name"] == ["SCI01_1_1.bmp", "SCI01_2_3.bmp"]
    assert data["mos"] == pytest.approx([55.2, 30.75]) and all(math.isnan(v) for v in data["mos_std"])


# =============================================================================================
# Every layout, tested and documented
# =============================================================================================


@pytest.mark.parametrize("dataset, layout", sorted(LAYOUT_TESTS))
def test_layout(dataset: str, layout: str, tmp_path: Path) -> None:
    LAYOUT_TESTS[(dataset, layout)](tmp_path)


def test_every_layout_has_a_test() -> None:
    declared = {(row["dataset"], row["layout"]) for row in layout_rows()}
    assert declared == set(LAYOUT_TESTS)


def test_docs_table_lists_every_layout_as_tested() -> None:
    text = (REPO_ROOT / "docs" / "datasets.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    for entry in layout_rows():
        prefix = f"| `{entry['dataset']}` | `{entry['layout']}` |"
        matching = [line for line in rows if line.startswith(prefix)]
        assert len(matching) == 1, f"docs/datasets.md has no single row for {prefix}"
        test_name = LAYOUT_TESTS[(entry["dataset"], entry["layout"])].__name__
        assert f"`{test_name}`" in matching[0], f"the row for {prefix} does not name its test {test_name}"


def test_no_metadata_and_unreadable_files_are_explained(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "AGIQA-3K"
    _write(root / "notes.txt", "downloaded from the official site\n")
    _write(root / "scores.csv", "name,prompt,mos\nx.jpg,p,1.0\n")
    with pytest.raises(FileNotFoundError) as error:
        load_iqa_dataset("agiqa-3k", root)
    message = str(error.value)
    assert "agiqa-3k: no usable metadata file under" in message and "Looked for: `data.csv`" in message
    assert "scores.csv: no agiqa-3k layout matches ['name', 'prompt', 'mos']" in message
    assert "Pass metadata_file=" in message
    with pytest.raises(ValueError, match=r"scores\.csv: not a metadata file of agiqa-3k .*first row \['name'"):
        load_iqa_dataset("agiqa-3k", root, metadata_file=root / "scores.csv")
    # A matching file whose score column is text is rejected with the column and row.
    _write(root / "data.csv", f"{AGIQA_3K_HEADER}\na.jpg,p,,,,high,0.1,low,0.2\nb.jpg,p,,,,high,0.1,low,0.2\n")
    with pytest.raises(
        FileNotFoundError, match=r"data\.csv \(official-data-csv\): column 'mos_quality' is not numeric"
    ):
        load_iqa_dataset("agiqa-3k", root)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="Found no table"):
        load_iqa_dataset("agiqa-3k", empty)
