"""Loaders for IQA / AGIQA datasets from their official local layouts into `datasets.Dataset`.

`load_iqa_dataset(name, root)` reads the metadata files of one dataset as downloaded (the user points at the
folder) and returns a `datasets.Dataset` with an `image` column (`datasets.Image()`, decoded lazily from the
files), a float `mos`, `mos_std` (NaN where the dataset gives none), `prompt` (generation prompt, where the
dataset has one), `name` (the image's file name, the key split files use), `source_row` (the row's line or
row number in the metadata file, for error messages) and the dataset's own columns. The MOS scale, its
direction, the licence and where the rows came from are recorded as JSON in `dataset.info.description`
(`dataset_metadata`, `mos_range`).

`load_split(name, root, split)` returns a `DatasetDict` for one of the split protocols: the official / IPCE /
LIQE split files, prompt-disjoint random splits, a random split by image, or the dataset's own `set` column.

Bad rows are never dropped silently: a missing image, a non-finite score or a split row naming an unknown
image raises an error naming the file and row, or, with `on_bad_rows="skip"`, is skipped with a logged count
and the first few examples. The layouts are described in docs/datasets.md.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "DATASETS",
    "BadRowsError",
    "DatasetSpec",
    "dataset_metadata",
    "describe_dataset",
    "load_imagefolder",
    "load_iqa_dataset",
    "load_parquet",
    "load_split",
    "mos_range",
    "push_to_hub_if_allowed",
    "save_imagefolder",
    "save_parquet",
]

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
_EXAMPLES_SHOWN = 5


class BadRowsError(ValueError):
    """Rows of a metadata or split file that cannot be used (missing image, bad score, unknown name)."""


# ---------------------------------------------------------------------------------------------
# Metadata stored in dataset.info.description
# ---------------------------------------------------------------------------------------------


def describe_dataset(dataset: Any, *, mos_range: tuple[float, float], **metadata: Any) -> Any:
    """Records `mos_range` and other metadata as a JSON object in `dataset.info.description`; returns it."""
    low, high = (float(v) for v in mos_range)
    dataset.info.description = json.dumps({"mos_range": [low, high], **metadata}, sort_keys=True, default=str)
    return dataset


def dataset_metadata(dataset: Any) -> dict[str, Any]:
    """The metadata object stored by `describe_dataset` (empty dict when there is none)."""
    description = dataset.info.description or ""
    try:
        metadata = json.loads(description)
    except json.JSONDecodeError:
        return {}
    return metadata if isinstance(metadata, dict) else {}


def mos_range(dataset: Any) -> tuple[float, float]:
    """(min, max) of the dataset's MOS scale, as recorded in its info (raises when not recorded)."""
    metadata = dataset_metadata(dataset)
    if "mos_range" not in metadata:
        raise ValueError(
            "the dataset's info records no MOS range; load it with training.data.load_iqa_dataset, or pass the "
            "score range explicitly"
        )
    low, high = metadata["mos_range"]
    return float(low), float(high)


# ---------------------------------------------------------------------------------------------
# Reading tables
# ---------------------------------------------------------------------------------------------


@dataclass
class _Table:
    """Rows read from a dataset's metadata: `frame` has columns file (image path relative to the image
    folder), mos, mos_std, prompt, source_row and extras; `path` is the metadata file (for messages)."""

    frame: Any
    path: Path
    image_dirs: tuple[str, ...] = ("",)
    notes: dict[str, Any] = field(default_factory=dict)


def _pandas() -> Any:
    import pandas

    return pandas


def _first_existing(root: Path, candidates: Sequence[str], what: str) -> Path:
    for candidate in candidates:
        path = root / candidate
        if path.is_file():
            return path
    raise FileNotFoundError(f"{what}: none of {list(candidates)} found in {root}")


def _looks_like_header(values: Iterable[Any], expected: Sequence[str]) -> bool:
    cells = {str(v).strip().lower() for v in values}
    return any(name.lower() in cells for name in expected)


def _read_csv(path: Path, columns: Sequence[str] | None = None, *, sep: str = ",") -> Any:
    """Reads a CSV/TSV (UTF-8 with or without BOM, LF or CRLF, quoted fields). With `columns`, a file without a
    header row (detected by the first row not containing any expected name) gets those names."""
    pandas = _pandas()
    options: dict[str, Any] = {"sep": sep, "encoding": "utf-8-sig", "keep_default_na": False, "na_values": [""]}
    if columns is not None:
        first = pandas.read_csv(path, header=None, nrows=1, dtype=str, **options)
        if not _looks_like_header(first.iloc[0].tolist(), columns):
            frame = pandas.read_csv(path, header=None, dtype=str, **options)
            if frame.shape[1] < len(columns):
                raise ValueError(f"{path}: headerless file has {frame.shape[1]} columns, expected {list(columns)}")
            frame = frame.iloc[:, : len(columns)]
            frame.columns = list(columns)
            frame["source_row"] = np.arange(1, len(frame) + 1)
            return frame
    frame = pandas.read_csv(path, dtype=str, **options)
    frame.columns = [str(c).strip() for c in frame.columns]
    frame["source_row"] = np.arange(2, len(frame) + 2)  # line 1 is the header
    return frame


def _read_excel(path: Path, columns: Sequence[str] | None = None, *, header_names: Sequence[str] = ()) -> Any:
    """Reads the first sheet of an .xlsx (openpyxl). Without a header row (first row contains none of
    `header_names`) the columns are named `columns` (or 0..n-1)."""
    pandas = _pandas()
    raw = pandas.read_excel(path, header=None, dtype=object, engine="openpyxl")
    if len(raw) and header_names and _looks_like_header(raw.iloc[0].tolist(), header_names):
        frame = raw.iloc[1:].reset_index(drop=True)
        frame.columns = [str(c).strip() for c in raw.iloc[0].tolist()]
        frame["source_row"] = np.arange(2, len(frame) + 2)
        return frame
    frame = raw.copy()
    if columns is not None:
        if frame.shape[1] < len(columns):
            raise ValueError(f"{path}: sheet has {frame.shape[1]} columns, expected {list(columns)}")
        frame = frame.iloc[:, : len(columns)]
        frame.columns = list(columns)
    frame["source_row"] = np.arange(1, len(frame) + 1)
    return frame


def _read_table(path: Path, columns: Sequence[str]) -> Any:
    """An .xlsx, .csv or whitespace/tab-separated .txt file with or without a header row."""
    if path.suffix.lower() in (".xlsx", ".xlsm", ".xls"):
        return _read_excel(path, columns, header_names=columns)
    if path.suffix.lower() == ".txt":
        return _read_csv(path, columns, sep=r"\s+" if "\t" not in path.read_text()[:4096] else "\t")
    return _read_csv(path, columns)


def _require_columns(frame: Any, path: Path, required: Sequence[str]) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {list(frame.columns)}")


def _to_float(frame: Any, column: str) -> Any:
    pandas = _pandas()
    return pandas.to_numeric(frame[column], errors="coerce").astype(float)


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value)
    return text if text.strip() else None


def _basename(path: str) -> str:
    return str(path).replace("\\", "/").rsplit("/", 1)[-1]


# ---------------------------------------------------------------------------------------------
# Per-dataset readers: (root, target, metadata_file) -> _Table
# ---------------------------------------------------------------------------------------------


def _check_target(dataset: str, target: str, targets: Sequence[str]) -> None:
    if target not in targets:
        raise ValueError(f"{dataset}: target={target!r}; expected one of {list(targets)}")


def _read_agiqa_3k(root: Path, target: str, metadata_file: Path | None) -> _Table:
    _check_target("agiqa-3k", target, ("quality", "alignment"))
    path = metadata_file or _first_existing(root, ["data.csv", "AGIQA-3K.csv", "agiqa3k.csv"], "AGIQA-3K metadata")
    frame = _read_csv(path)
    _require_columns(frame, path, ["name", "prompt", "mos_quality", "std_quality", "mos_align", "std_align"])
    suffix = "quality" if target == "quality" else "align"
    for column in ("mos_quality", "std_quality", "mos_align", "std_align"):
        frame[column] = _to_float(frame, column)
    frame["file"] = frame["name"]
    frame["mos"] = frame[f"mos_{suffix}"]
    frame["mos_std"] = frame[f"std_{suffix}"]
    # <model>_<variant>_<NNN>.jpg; the model token itself may contain dots (sd1.5, xl2.2).
    frame["model"] = [name.rsplit("_", 2)[0] for name in frame["name"]]
    frame["variant"] = [name.rsplit("_", 2)[1] if name.count("_") >= 2 else None for name in frame["name"]]
    return _Table(frame, path, ("", "images", "image", "imgs", "AGIQA-3K", "AGIQA-3k", "data", "file"))


def _read_agiqa_1k(root: Path, target: str, metadata_file: Path | None) -> _Table:
    _check_target("agiqa-1k", target, ("quality",))
    path = metadata_file or _first_existing(
        root, ["AIGC_MOS_Zscore.xlsx", "ipce/all.csv", "all.csv"], "AGIQA-1K metadata"
    )
    frame = _read_table(path, ["Image", "Prompt", "MOS"])
    _require_columns(frame, path, ["Image", "Prompt", "MOS"])
    frame["file"] = frame["Image"].astype(str)
    frame["mos"] = _to_float(frame, "MOS")
    frame["prompt"] = frame["Prompt"]
    frame["model"] = [name.split("_", 1)[0] for name in frame["file"]]
    frame = frame.drop(columns=["Image", "Prompt", "MOS"])
    return _Table(frame, path, ("", "file", "images", "image", "AGIQA-1K", "AGIQA-1k", "AIGC_images"))


_AIGCIQA2023_MODELS = ("Controlnet", "DALLE", "Glide", "Lafite", "stable-diffusion", "Unidiffuser")
_AIGCIQA2023_TARGETS = ("quality", "authenticity", "correspondence")


def _read_aigciqa2023(root: Path, target: str, metadata_file: Path | None) -> _Table:
    _check_target("aigciqa2023", target, _AIGCIQA2023_TARGETS)
    target_number = _AIGCIQA2023_TARGETS.index(target) + 1
    image_dirs = ("", "Image/allimg", "allimg", "Image", "images")
    if metadata_file is None:
        csvs = sorted(p for p in root.glob("*.csv"))
        if csvs and not list(root.rglob("mosz1.mat")):
            metadata_file = csvs[0]
    if metadata_file is not None:
        frame = _read_csv(metadata_file)
        frame = frame.drop(columns=[c for c in frame.columns if c == "" or c.startswith("Unnamed")])
        if "mosz1" in frame.columns:  # IPCE split CSV: model, image_name, mosz1..3 (MOS / 20), prompt
            _require_columns(frame, metadata_file, ["image_name", "mosz1", "mosz2", "mosz3", "prompt"])
            frame["file"] = frame["image_name"].astype(str)
            for number in (1, 2, 3):
                frame[f"mosz{number}"] = _to_float(frame, f"mosz{number}")
            frame["mos"] = frame[f"mosz{target_number}"] * 20.0
            frame["mos_std"] = np.nan
            return _Table(frame, metadata_file, image_dirs, {"ipce_mosz_times_20": True})
        _require_columns(frame, metadata_file, ["name", f"{target}_mos"])
        frame["file"] = frame["name"].astype(str)
        frame["mos"] = _to_float(frame, f"{target}_mos")
        frame["mos_std"] = _to_float(frame, f"{target}_std") if f"{target}_std" in frame.columns else np.nan
        return _Table(frame, metadata_file, image_dirs)
    return _read_aigciqa2023_official(root, target_number, image_dirs)


def _load_mat_vector(path: Path) -> np.ndarray:
    from scipy import io as scipy_io

    contents = {k: v for k, v in scipy_io.loadmat(path).items() if not k.startswith("__")}
    arrays = [np.asarray(v) for v in contents.values() if np.asarray(v).dtype.kind in "fiu"]
    if len(arrays) != 1:
        raise ValueError(f"{path}: expected one numeric array, found {sorted(contents)}")
    return arrays[0].astype(float).reshape(-1)


def _read_aigciqa2023_official(root: Path, target_number: int, image_dirs: tuple[str, ...]) -> _Table:
    """The official release: mosz<t>.mat (and SD<t>.mat) with 2400 values, AIGCIQA2023_Prompts.xlsx."""
    pandas = _pandas()
    mos_files = sorted(root.rglob(f"mosz{target_number}.mat"))
    if not mos_files:
        raise FileNotFoundError(
            f"aigciqa2023: no mosz{target_number}.mat (official layout) and no CSV (all-in-one or IPCE) in {root}"
        )
    mos = _load_mat_vector(mos_files[0])
    std_files = sorted(
        p for p in root.rglob("*.mat") if re.fullmatch(rf"(sd|std)z?{target_number}", p.stem, re.IGNORECASE)
    )
    std = _load_mat_vector(std_files[0]) if std_files else np.full_like(mos, np.nan)
    expected = len(_AIGCIQA2023_MODELS) * 400
    if mos.size != expected or std.size != expected:
        raise ValueError(f"{mos_files[0]}: expected {expected} values (6 models x 100 prompts x 4), got {mos.size}")
    index = np.arange(expected)
    prompts: list[str | None] = [None] * expected
    prompt_files = sorted(root.rglob("AIGCIQA2023_Prompts.xlsx"))
    if prompt_files:
        table = _read_excel(prompt_files[0], header_names=("prompt",))
        texts = [_text(v) for v in table.iloc[:, 1].tolist()]
        if len(texts) != 100:
            raise ValueError(f"{prompt_files[0]}: expected 100 prompts, found {len(texts)}")
        prompts = [texts[(i % 400) // 4] for i in index]
    frame = pandas.DataFrame(
        {
            "file": [f"{i}.png" for i in index],
            "mos": mos,
            "mos_std": std,
            "prompt": prompts,
            "model": [_AIGCIQA2023_MODELS[i // 400] for i in index],
            "prompt_index": (index % 400) // 4,
            "sample": index % 4 + 1,
            "source_row": index + 1,
        }
    )
    return _Table(frame, mos_files[0], image_dirs)


def _read_aigiqa_20k(root: Path, target: str, metadata_file: Path | None) -> _Table:
    _check_target("aigiqa-20k", target, ("quality",))
    path = metadata_file or _first_existing(
        root, ["info_train.xlsx", "info_train.csv", "train.csv"], "AIGIQA-20K (AIGCQA-30K-Image) metadata"
    )
    frame = _read_table(path, ["name", "prompt", "mos"])
    _require_columns(frame, path, ["name", "prompt"])
    if "mos" not in frame.columns:
        raise ValueError(f"{path}: no mos column (the NTIRE validation/test info files carry no scores)")
    frame["file"] = frame["name"].astype(str)
    frame["mos"] = _to_float(frame, "mos")
    # <model>_<NNNN>.png where the model token may hold dots and underscores (LCM_SD1.5): split on the last "_".
    frame["model"] = [name.rsplit("_", 1)[0] for name in frame["file"]]
    return _Table(frame, path, ("", "train", "images", "image", "AIGCQA-30K-Image/train"))


_KONIQ_MOS_PER_GRADE = 25.0  # the 0-100 scale spans the 1-5 scale's 4 grade steps


def _read_koniq_10k(root: Path, target: str, metadata_file: Path | None) -> _Table:
    _check_target("koniq-10k", target, ("quality", "quality_5"))
    candidates = ["koniq10k_distributions_sets.csv", "koniq10k_scores_and_distributions.csv", "liqe/koniq10k_all.txt"]
    candidates += ["koniq10k_all.txt"]
    path = metadata_file or _first_existing(root, candidates, "KonIQ-10k metadata")
    image_dirs = ("", "1024x768", "512x384", "images", "koniq10k_1024x768/1024x768")
    if path.suffix == ".txt":  # LIQE list: relative_path mos(1-5) std, tab-separated, no header
        frame = _read_csv(path, ["file", "mos", "mos_std"], sep="\t")
        frame["mos"] = _to_float(frame, "mos")
        frame["mos_std"] = _to_float(frame, "mos_std")
        if target == "quality":  # put the 1-5 mean on the official 0-100 scale's nominal mapping
            frame["mos"] = (frame["mos"] - 1.0) * _KONIQ_MOS_PER_GRADE
            frame["mos_std"] = frame["mos_std"] * _KONIQ_MOS_PER_GRADE
        return _Table(frame, path, image_dirs, {"scale_from": "LIQE 1-5 list"})
    frame = _read_csv(path)
    _require_columns(frame, path, ["image_name", "c1", "c2", "c3", "c4", "c5", "MOS", "SD"])
    for column in ("c1", "c2", "c3", "c4", "c5", "c_total", "MOS", "SD"):
        if column in frame.columns:
            frame[column] = _to_float(frame, column)
    frame["file"] = frame["image_name"]
    if target == "quality":
        frame["mos"] = frame["MOS"]
        # SD is on the 1-5 scale: one grade step is 25 points of the nominal 0-100 scale (approximate: the
        # official MOS is not exactly an affine map of the 1-5 mean).
        frame["mos_std"] = frame["SD"] * _KONIQ_MOS_PER_GRADE
    else:
        fractions = frame[["c1", "c2", "c3", "c4", "c5"]].to_numpy(float)
        frame["mos"] = fractions @ np.arange(1, 6)
        frame["mos_std"] = frame["SD"]
    return _Table(frame, path, image_dirs)


def _read_spaq(root: Path, target: str, metadata_file: Path | None) -> _Table:
    _check_target("spaq", target, ("quality",))
    candidates = ["Annotations/MOS and Image attribute scores.xlsx", "MOS and Image attribute scores.xlsx"]
    candidates += ["meta_info_SPAQDataset.csv", "pyiqa/meta_info_SPAQDataset.csv"]
    path = metadata_file or _first_existing(root, candidates, "SPAQ metadata")
    if path.suffix.lower() == ".xlsx":
        frame = _read_excel(path, header_names=("Image name", "MOS"))
    else:
        frame = _read_csv(path)
    _require_columns(frame, path, ["Image name", "MOS"])
    # Two columns are named "Brightness" in the pyiqa file (attribute score, then EXIF); pandas renames the
    # second "Brightness.1". Column names become snake_case.
    renames = {"Brightness.1": "exif_brightness", "Image name": "image_name"}
    frame = frame.rename(columns=renames)
    frame.columns = [
        c if c == "source_row" else re.sub(r"[^0-9a-z]+", "_", c.lower()).strip("_") for c in frame.columns
    ]
    for column in frame.columns:
        if column not in ("image_name", "source_row"):
            frame[column] = _to_float(frame, column)
    frame["file"] = frame["image_name"].astype(str)
    frame = frame.rename(columns={"mos": "mos"})
    return _Table(frame, path, ("", "TestImage", "images", "SPAQ/TestImage"))


def _read_livec(root: Path, target: str, metadata_file: Path | None) -> _Table:
    _check_target("livec", target, ("quality",))
    pandas = _pandas()
    mat_dir = next((d for d in (root / "Data", root) if (d / "AllMOS_release.mat").is_file()), None)
    if metadata_file is None and mat_dir is not None:  # official ChallengeDB_release/Data/*.mat
        from scipy import io as scipy_io

        names = scipy_io.loadmat(mat_dir / "AllImages_release.mat")["AllImages_release"].reshape(-1)
        files = [str(np.asarray(n).reshape(-1)[0]) for n in names]
        mos = _load_mat_vector(mat_dir / "AllMOS_release.mat")
        std_path = mat_dir / "AllStdDev_release.mat"
        std = _load_mat_vector(std_path) if std_path.is_file() else np.full_like(mos, np.nan)
        frame = pandas.DataFrame({"file": files, "mos": mos, "mos_std": std, "source_row": np.arange(1, len(mos) + 1)})
        # The first 7 images (t1..t7.bmp) are the study's training images, excluded as in LIQE and pyiqa lists.
        frame["training_image"] = [bool(re.fullmatch(r"t\d+\.bmp", f)) for f in frame["file"]]
        return _Table(frame, mat_dir / "AllMOS_release.mat", ("Images", ""))
    candidates = ["liqe/clive_all.txt", "clive_all.txt", "pyiqa/meta_info_LIVEChallengeDataset.csv"]
    candidates += ["meta_info_LIVEChallengeDataset.csv"]
    path = metadata_file or _first_existing(root, candidates, "LIVE Challenge metadata")
    if path.suffix == ".txt":
        frame = _read_csv(path, ["file", "mos", "mos_std"], sep="\t")
    else:
        frame = _read_csv(path, ["img_name", "mos", "std"])
        frame = frame.rename(columns={"img_name": "file", "std": "mos_std"})
    frame["mos"] = _to_float(frame, "mos")
    frame["mos_std"] = _to_float(frame, "mos_std")
    frame["training_image"] = [bool(re.fullmatch(r"t\d+\.bmp", _basename(f))) for f in frame["file"]]
    return _Table(frame, path, ("", "Images", "ChallengeDB_release/Images"))


def _read_kadid_10k(root: Path, target: str, metadata_file: Path | None) -> _Table:
    _check_target("kadid-10k", target, ("quality",))
    path = metadata_file or _first_existing(
        root, ["dmos.csv", "liqe/kadid10k_all.txt", "kadid10k_all.txt"], "KADID-10k metadata"
    )
    if path.suffix == ".txt":  # LIQE list: images/<name> dmos std
        frame = _read_csv(path, ["file", "mos", "mos_std"], sep="\t")
        frame["mos_std"] = _to_float(frame, "mos_std")
    else:  # official: dist_img, ref_img, dmos, var (variance of the ratings)
        frame = _read_csv(path)
        _require_columns(frame, path, ["dist_img", "ref_img", "dmos", "var"])
        frame["file"] = frame["dist_img"]
        frame = frame.rename(columns={"dmos": "mos"})
        frame["mos_std"] = np.sqrt(_to_float(frame, "var"))
    frame["mos"] = _to_float(frame, "mos")
    parsed = [re.fullmatch(r"(I\d+)_(\d+)_(\d+)\.\w+", _basename(f)) for f in frame["file"]]
    frame["reference"] = [f"{m.group(1)}.png" if m else None for m in parsed]
    frame["distortion_type"] = [int(m.group(2)) if m else -1 for m in parsed]
    frame["distortion_level"] = [int(m.group(3)) if m else -1 for m in parsed]
    return _Table(frame, path, ("", "images"))


def _read_score_text(path: Path) -> Any:
    """A screen-content MOS/DMOS text file: one image per line, `name score [std]`, separated by whitespace,
    commas or tabs; a first line without a number is taken as a header."""
    pandas = _pandas()
    rows = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        fields = [f for f in re.split(r"[\s,;]+", line.strip()) if f]
        if not fields:
            continue
        try:
            values = [float(f) for f in fields[1:]]
        except ValueError:
            if not rows:
                continue  # header
            raise BadRowsError(
                f"{path}, line {line_number}: expected 'name score [std]', got {line.strip()!r}"
            ) from None
        if not values:
            raise BadRowsError(f"{path}, line {line_number}: no score after the image name {fields[0]!r}")
        rows.append(
            {
                "file": fields[0],
                "mos": values[0],
                "mos_std": values[1] if len(values) > 1 else np.nan,
                "source_row": line_number,
            }
        )
    if not rows:
        raise ValueError(f"{path}: no score rows")
    return pandas.DataFrame(rows)


def _screen_content_reader(dataset: str, candidates: Sequence[str], image_dirs: tuple[str, ...]) -> Callable:
    def read(root: Path, target: str, metadata_file: Path | None) -> _Table:
        _check_target(dataset, target, ("quality",))
        path = metadata_file or _first_existing(root, candidates, f"{dataset} score file")
        if path.suffix.lower() in (".xlsx", ".csv"):
            frame = _read_table(path, ["file", "mos", "mos_std"])
            frame["mos"] = _to_float(frame, "mos")
            frame["mos_std"] = _to_float(frame, "mos_std") if "mos_std" in frame.columns else np.nan
        else:
            frame = _read_score_text(path)
        return _Table(frame, path, image_dirs)

    return read


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSpec:
    """What the loader knows about one dataset. `licence` is what its authors state (None: nothing found);
    `redistributable` says whether that licence allows re-publishing the images (e.g. on the Hub)."""

    name: str
    reader: Callable[[Path, str, Path | None], _Table]
    mos_range: tuple[float, float]
    higher_is_better: bool
    licence: str | None
    redistributable: bool
    targets: tuple[str, ...] = ("quality",)
    aliases: tuple[str, ...] = ()
    split_file_patterns: tuple[str, ...] = ("{n}/train.csv",)
    has_prompts: bool = False
    score_note: str = ""


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "agiqa-3k",
            _read_agiqa_3k,
            (0.0, 5.0),
            True,
            "MIT",
            True,
            ("quality", "alignment"),
            ("agiqa3k", "agiqa_3k"),
            has_prompts=True,
            score_note="normalised MOS on 0-5 (observed 0-4.49)",
        ),
        DatasetSpec(
            "agiqa-1k",
            _read_agiqa_1k,
            (0.0, 5.0),
            True,
            "MIT",
            True,
            aliases=("agiqa1k", "agiqa_1k"),
            has_prompts=True,
            score_note="z-scored MOS rescaled to 0-5",
        ),
        DatasetSpec(
            "aigciqa2023",
            _read_aigciqa2023,
            (0.0, 100.0),
            True,
            None,
            False,
            _AIGCIQA2023_TARGETS,
            ("aigciqa-2023", "aigciqa_2023"),
            has_prompts=True,
            score_note="MOS on a roughly 0-100 scale (IPCE's mosz = MOS / 20 is multiplied back)",
        ),
        DatasetSpec(
            "aigiqa-20k",
            _read_aigiqa_20k,
            (0.0, 5.0),
            True,
            None,
            False,
            aliases=("aigiqa20k", "aigcqa-30k-image", "aigcqa-30k", "ntire2024-aigc"),
            split_file_patterns=("{n}/train.csv",),
            has_prompts=True,
            score_note="MOS on 0-5 (observed 0.12-4.98)",
        ),
        DatasetSpec(
            "koniq-10k",
            _read_koniq_10k,
            (0.0, 100.0),
            True,
            None,
            False,
            ("quality", "quality_5"),
            ("koniq", "koniq10k", "koniq_10k"),
            ("{n}/koniq10k_train_clip.txt", "{n}/koniq10k_train.txt"),
            score_note="target quality: official MOS 0-100; target quality_5: mean of the 1-5 ratings",
        ),
        DatasetSpec(
            "spaq",
            _read_spaq,
            (0.0, 100.0),
            True,
            None,
            False,
            score_note="MOS 0-100",
        ),
        DatasetSpec(
            "livec",
            _read_livec,
            (0.0, 100.0),
            True,
            None,
            False,
            aliases=("clive", "live-c", "live_challenge", "livechallenge", "live-challenge"),
            split_file_patterns=("{n}/clive_train_clip.txt", "{n}/clive_train.txt"),
            score_note="MOS 0-100",
        ),
        DatasetSpec(
            "kadid-10k",
            _read_kadid_10k,
            (1.0, 5.0),
            True,
            None,
            False,
            aliases=("kadid", "kadid10k", "kadid_10k"),
            split_file_patterns=("{n}/kadid10k_train_clip.txt", "{n}/kadid10k_train.txt"),
            score_note="KADID 'DMOS' on 1-5, higher is better",
        ),
        DatasetSpec(
            "siqad",
            _screen_content_reader(
                "siqad",
                ["DMOS.txt", "dmos.txt", "DMOS_SIQAD.txt", "SIQAD_DMOS.txt", "DMOS.xlsx", "DMOS.csv"],
                ("", "DistImgs", "distorted", "images"),
            ),
            (0.0, 100.0),
            False,
            None,
            False,
            score_note="DMOS (lower is better) on a roughly 0-100 scale",
        ),
        DatasetSpec(
            "scid",
            _screen_content_reader(
                "scid",
                ["MOS_SCID.txt", "mos_scid.txt", "SCID_MOS.txt", "MOS.txt", "MOS.csv"],
                ("", "DistortedSCIs", "distorted", "images"),
            ),
            (0.0, 100.0),
            True,
            None,
            False,
            score_note="MOS on a roughly 0-100 scale",
        ),
    )
}


def _spec(name: str) -> DatasetSpec:
    key = name.strip().lower()
    for spec in DATASETS.values():
        if key == spec.name or key in spec.aliases:
            return spec
    raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}")


# ---------------------------------------------------------------------------------------------
# Building the datasets.Dataset
# ---------------------------------------------------------------------------------------------


def _report_bad_rows(problem: str, table: _Table, rows: Any, on_bad_rows: str, hint: str = "") -> None:
    examples = ", ".join(
        f"row {int(r.source_row)} ({r.file!r})" for r in rows.head(_EXAMPLES_SHOWN).itertuples(index=False)
    )
    message = f"{table.path}: {len(rows)} row(s) {problem}: {examples}{' ...' if len(rows) > _EXAMPLES_SHOWN else ''}"
    if on_bad_rows == "error":
        raise BadRowsError(f"{message}{hint}. Pass on_bad_rows='skip' to skip them with a logged count.")
    logger.warning("%s; skipped %d row(s)", message, len(rows))


def _resolve_image_folder(table: _Table, root: Path, image_dir: str | Path | None) -> Path:
    if image_dir is not None:
        folder = Path(image_dir)
        return folder if folder.is_absolute() else root / folder
    best, best_count = root, -1
    for candidate in table.image_dirs:
        folder = root / candidate
        if not folder.is_dir():
            continue
        count = sum((folder / _resolve_extension(folder, f)).is_file() for f in table.frame["file"])
        if count > best_count:
            best, best_count = folder, count
        if count == len(table.frame):
            break
    return best


def _resolve_extension(folder: Path, file: str) -> str:
    """Screen-content lists sometimes give names without an extension: find the file on disk."""
    if Path(file).suffix.lower() in _IMAGE_SUFFIXES:
        return file
    for suffix in _IMAGE_SUFFIXES + tuple(s.upper() for s in _IMAGE_SUFFIXES):
        if (folder / f"{file}{suffix}").is_file():
            return f"{file}{suffix}"
    return file


def load_iqa_dataset(
    name: str,
    root: str | Path,
    *,
    target: str = "quality",
    image_dir: str | Path | None = None,
    metadata_file: str | Path | None = None,
    check_images: bool = True,
    on_bad_rows: str = "error",
    duplicates: str = "keep",
    include_training_images: bool = False,
) -> Any:
    """Loads one dataset from its official local layout.

    Args:
        name: One of `DATASETS` (agiqa-3k, agiqa-1k, aigciqa2023, aigiqa-20k, koniq-10k, spaq, livec, kadid-10k,
            siqad, scid) or an alias.
        root: The folder the user downloaded (metadata files at its top, or in the sub-folders listed in
            docs/datasets.md).
        target: Which score becomes `mos` (e.g. "quality" or "alignment" for AGIQA-3K; "quality",
            "authenticity" or "correspondence" for AIGCIQA2023; "quality_5" for KonIQ's 1-5 scale).
        image_dir: Image folder (relative to `root` or absolute). Default: the known sub-folder that holds the
            most listed images.
        metadata_file: Read this metadata file instead of the default one.
        check_images: Check that every image file exists (set False to work with metadata only).
        on_bad_rows: "error" (default) raises `BadRowsError` naming the file and rows; "skip" drops them and
            logs how many and which.
        duplicates: What to do with an image name listed more than once (AGIQA-1K has one with two MOS values):
            "keep" both rows (logged), "mean" (average, logged), "first" (logged) or "error".
        include_training_images: LIVE Challenge only: keep the 7 study-training images t1..t7.bmp.

    Returns:
        A `datasets.Dataset` (columns described in the module docstring); `mos_range(dataset)` gives the scale.
    """
    import datasets

    if on_bad_rows not in ("error", "skip"):
        raise ValueError(f"on_bad_rows={on_bad_rows!r}; expected 'error' or 'skip'")
    if duplicates not in ("keep", "mean", "first", "error"):
        raise ValueError(f"duplicates={duplicates!r}; expected 'keep', 'mean', 'first' or 'error'")
    spec = _spec(name)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{spec.name}: dataset folder {root} does not exist")
    table = spec.reader(root, target, Path(metadata_file) if metadata_file is not None else None)
    frame = table.frame.reset_index(drop=True)
    for column, default in (("mos_std", np.nan), ("prompt", None)):
        if column not in frame.columns:
            frame[column] = default
    frame["mos_std"] = _pandas().to_numeric(frame["mos_std"], errors="coerce").astype(float)
    frame["file"] = frame["file"].astype(str).str.strip()
    if "training_image" in frame.columns and not include_training_images:
        excluded = int(frame["training_image"].sum())
        if excluded:
            logger.info("%s: excluding the %d study-training images (t1..t7.bmp)", spec.name, excluded)
        frame = frame[~frame["training_image"]].reset_index(drop=True)
    table.frame = frame

    bad_scores = frame[~np.isfinite(frame["mos"].to_numpy(float))]
    if len(bad_scores):
        _report_bad_rows(f"have no finite '{target}' score", table, bad_scores, on_bad_rows)
        frame = frame.drop(index=bad_scores.index).reset_index(drop=True)
        table.frame = frame

    frame = _handle_duplicates(table, spec.name, duplicates)

    folder = _resolve_image_folder(table, root, image_dir)
    frame["file"] = [_resolve_extension(folder, f) for f in frame["file"]]
    paths = [str(folder / f) for f in frame["file"]]
    if check_images:
        exists = np.array([Path(p).is_file() for p in paths])
        if not exists.any() and len(frame):
            raise FileNotFoundError(
                f"{spec.name}: none of the {len(frame)} images listed in {table.path} is in {folder} (looked in "
                f"{[str(root / d) for d in table.image_dirs]}); pass image_dir= the folder holding e.g. "
                f"{frame['file'].iloc[0]!r}"
            )
        if not exists.all():
            missing = frame[~exists]
            _report_bad_rows(f"name an image missing from {folder}", table, missing, on_bad_rows)
            frame = frame[exists].reset_index(drop=True)
            paths = [p for p, ok in zip(paths, exists, strict=True) if ok]

    frame = frame.drop(columns=[c for c in ("name", "image") if c in frame.columns])  # replaced just below
    frame.insert(0, "image", paths)
    frame.insert(1, "name", [_basename(f) for f in frame["file"]])
    frame = frame.drop(columns=[c for c in ("training_image",) if c in frame.columns])
    leading = ["image", "name", "mos", "mos_std", "prompt"]
    trailing = ["file", "source_row"]
    ordered = leading + [c for c in frame.columns if c not in leading + trailing] + trailing
    features = {"image": datasets.Image(), "mos": datasets.Value("float32"), "mos_std": datasets.Value("float32")}
    features["prompt"] = datasets.Value("string")
    features["name"] = features["file"] = datasets.Value("string")
    features["source_row"] = datasets.Value("int64")
    # from_dict on Python lists keeps NaN as NaN (from_pandas would turn it into null / None).
    # Text columns: empty fields and NaN become None (pandas' string dtype would turn None back into NaN).
    is_numeric = _pandas().api.types.is_numeric_dtype
    columns = {
        c: frame[c].tolist() if is_numeric(frame[c]) and c != "prompt" else [_text(v) for v in frame[c]]
        for c in ordered
    }
    columns["image"] = paths
    dataset = datasets.Dataset.from_dict(columns)
    dataset = dataset.cast(datasets.Features({**dataset.features, **features}))
    return describe_dataset(
        dataset,
        name=spec.name,
        target=target,
        mos_range=spec.mos_range,
        higher_is_better=spec.higher_is_better,
        score_note=spec.score_note,
        licence=spec.licence,
        redistributable=spec.redistributable,
        metadata_file=str(table.path),
        image_folder=str(folder),
        **table.notes,
    )


def _handle_duplicates(table: _Table, dataset: str, duplicates: str) -> Any:
    frame = table.frame
    repeated = frame[frame.duplicated("file", keep=False)]
    if not len(repeated):
        return frame
    groups = repeated.groupby("file", sort=False)
    details = "; ".join(
        f"{file!r} at rows {group['source_row'].tolist()} with MOS {[round(v, 4) for v in group['mos']]}"
        for file, group in list(groups)[:_EXAMPLES_SHOWN]
    )
    message = f"{table.path}: {groups.ngroups} image name(s) listed more than once: {details}"
    if duplicates == "error":
        raise BadRowsError(f"{message}. Choose duplicates='keep', 'mean' or 'first'.")
    logger.warning("%s (%s: duplicates=%r)", message, dataset, duplicates)
    if duplicates == "keep":
        return frame
    if duplicates == "first":
        return frame.drop_duplicates("file", keep="first").reset_index(drop=True)
    means = frame.groupby("file", sort=False)["mos"].transform("mean")
    frame = frame.assign(mos=means).drop_duplicates("file", keep="first").reset_index(drop=True)
    table.frame = frame
    return frame


# ---------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------

_PROTOCOLS = ("files", "prompt-disjoint", "set-column", "random")
_SET_NAMES = {"training": "train", "train": "train", "validation": "validation", "val": "validation", "test": "test"}


def load_split(
    name: str,
    root: str | Path,
    split: str | int = 1,
    *,
    protocol: str = "files",
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    splits_root: str | Path | None = None,
    on_bad_rows: str = "error",
    **load_kwargs: Any,
) -> Any:
    """One train/validation(/test) split of a dataset as a `DatasetDict`.

    Protocols:
        * "files": the split files `<splits_root>/<split>/{train,val[,test]}.csv` (IPCE, official) or LIQE's
          `<splits_root>/<split>/<prefix>_{train,val,test}_clip.txt`. `splits_root` defaults to the first of
          `<root>/splits`, `<root>/liqe/splits`, `<root>` holding `<split>/`. Rows are matched to the dataset by
          image file name (and, for a name listed twice, by the MOS the split file gives). A split row naming
          an unknown image raises `BadRowsError` (or is skipped and counted with `on_bad_rows="skip"`).
        * "prompt-disjoint": a random split of the prompts; no prompt has images in two splits. `split` (an
          int) is added to `seed`, so splits 1..N are N different repetitions.
        * "random": a random split of the images, seeded likewise.
        * "set-column": the dataset's own `set` column (KonIQ-10k: training, validation, test).

    `load_kwargs` go to `load_iqa_dataset` (target, image_dir, check_images, ...).
    """
    import datasets

    if protocol not in _PROTOCOLS:
        raise ValueError(f"protocol={protocol!r}; expected one of {_PROTOCOLS}")
    if not 0 < val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError(f"val_fraction={val_fraction}, test_fraction={test_fraction} must leave images to train on")
    full = load_iqa_dataset(name, root, on_bad_rows=on_bad_rows, **load_kwargs)
    metadata = dataset_metadata(full)
    if protocol == "set-column":
        if "set" not in full.column_names:
            raise ValueError(f"{name}: protocol='set-column' needs a 'set' column; columns are {full.column_names}")
        indices: dict[str, list[int]] = {}
        names = full["name"]
        for index, value in enumerate(full["set"]):
            key = _SET_NAMES.get(str(value).strip().lower())
            if key is None:
                raise BadRowsError(f"{name}: row {index} ({names[index]!r}) has unknown set {value!r}")
            indices.setdefault(key, []).append(index)
        source = "set column"
    elif protocol == "files":
        indices, source = _split_from_files(full, _spec(name), Path(root), split, splits_root, on_bad_rows)
    else:
        offset = int(split) if str(split).isdigit() else 0
        rng = np.random.default_rng(seed + offset)
        if protocol == "prompt-disjoint":
            prompts = full["prompt"]
            if any(p is None for p in prompts):
                raise ValueError(f"{name}: protocol='prompt-disjoint' needs a prompt for every image")
            groups = sorted(set(prompts))
            keys = prompts
        else:
            groups = list(range(len(full)))
            keys = groups
        order = rng.permutation(len(groups))
        num_val = max(1, round(val_fraction * len(groups)))
        num_test = round(test_fraction * len(groups))
        assignment = {}
        for position, group_index in enumerate(order):
            split_name = "validation" if position < num_val else "test" if position < num_val + num_test else "train"
            assignment[groups[group_index]] = split_name
        indices = {}
        for index, key in enumerate(keys):
            indices.setdefault(assignment[key], []).append(index)
        source = f"{protocol} (seed {seed} + split {offset})"
    order = [s for s in ("train", "validation", "test") if s in indices]
    result = {}
    for split_name in order:
        subset = full.select(indices[split_name])
        result[split_name] = describe_dataset(subset, **{**metadata, "split": split_name, "split_source": source})
    return datasets.DatasetDict(result)


def _find_split_folder(spec: DatasetSpec, root: Path, split: str | int, splits_root: str | Path | None) -> Path:
    candidates = [Path(splits_root)] if splits_root is not None else [root / "splits", root / "liqe" / "splits", root]
    for base in candidates:
        folder = base / str(split)
        if folder.is_dir():
            return folder
    raise FileNotFoundError(
        f"{spec.name}: no split folder {split!r} under {[str(c) for c in candidates]} (pass splits_root=)"
    )


def _read_split_file(path: Path) -> Any:
    """Names (and MOS where given) from an IPCE CSV (with or without header) or a LIQE tab-separated list."""
    pandas = _pandas()
    if path.suffix == ".txt":
        frame = _read_csv(path, ["file", "mos"], sep="\t")
        return pandas.DataFrame(
            {"file": frame["file"], "mos": _to_float(frame, "mos"), "source_row": frame["source_row"]}
        )
    frame = _read_csv(path, ["name", "prompt", "mos"])
    name_column = next((c for c in ("name", "Image", "image_name", "img_name", "image") if c in frame.columns), None)
    if name_column is None:
        raise ValueError(f"{path}: no image-name column (name, Image, image_name); columns {list(frame.columns)}")
    mos_column = next((c for c in ("mos", "MOS", "mos_quality", "mosz1") if c in frame.columns), None)
    mos = _to_float(frame, mos_column) if mos_column else np.nan
    return pandas.DataFrame({"file": frame[name_column], "mos": mos, "source_row": frame["source_row"]})


def _split_files_in(folder: Path) -> dict[str, Path]:
    found = {}
    for split_name, stems in (
        ("train", ("train",)),
        ("validation", ("val", "valid", "validation")),
        ("test", ("test",)),
    ):
        for path in sorted(folder.iterdir()):
            stem = path.stem.lower()
            tokens = set(re.split(r"[_\-.]", stem))
            if path.suffix.lower() in (".csv", ".txt") and tokens & set(stems) and "domain" not in tokens:
                found.setdefault(split_name, path)
    return found


def _split_from_files(
    full: Any, spec: DatasetSpec, root: Path, split: str | int, splits_root: str | Path | None, on_bad_rows: str
) -> tuple[dict[str, list[int]], str]:
    folder = _find_split_folder(spec, root, split, splits_root)
    files = _split_files_in(folder)
    if "train" not in files or "validation" not in files:
        raise FileNotFoundError(f"{spec.name}: {folder} needs train and val split files; found {sorted(files)}")
    by_name: dict[str, list[int]] = {}
    for index, name in enumerate(full["name"]):
        by_name.setdefault(name, []).append(index)
    mos = np.asarray(full["mos"], dtype=float)
    metadata = dataset_metadata(full)
    ipce_scale = 20.0 if metadata.get("ipce_mosz_times_20") else 1.0
    indices: dict[str, list[int]] = {}
    for split_name, path in files.items():
        rows = _read_split_file(path)
        chosen: list[int] = []
        unknown = []
        used: set[int] = set()
        for row in rows.itertuples(index=False):
            candidates = by_name.get(_basename(row.file), [])
            if not candidates:
                unknown.append(row)
                continue
            if len(candidates) > 1 and math.isfinite(row.mos):
                # A name listed twice (AGIQA-1K): take the unused row whose MOS matches the split file's.
                free = [c for c in candidates if c not in used] or candidates
                candidates = [min(free, key=lambda c: abs(mos[c] - row.mos * ipce_scale))]
            chosen.extend(candidates)
            used.update(candidates)
        if unknown:
            unknown_frame = _pandas().DataFrame([r._asdict() for r in unknown])
            _report_bad_rows(
                "name images that are not in the dataset (or were skipped)",
                _Table(unknown_frame, path),
                unknown_frame,
                on_bad_rows,
            )
        indices[split_name] = chosen
    overlap = set(indices["train"]) & set(indices["validation"])
    if overlap:
        all_names = full["name"]
        names = sorted({all_names[i] for i in list(overlap)[:_EXAMPLES_SHOWN]})
        logger.warning("%s split %s: %d image(s) in both train and val, e.g. %s", spec.name, split, len(overlap), names)
    return indices, f"split files in {folder}"


# ---------------------------------------------------------------------------------------------
# Saving and loading: Parquet, imagefolder, Hub
# ---------------------------------------------------------------------------------------------

_PARQUET_METADATA_KEY = b"agqg_dataset_info"
_IMAGEFOLDER_INFO = "agqg_dataset_info.json"


def _embedded(dataset: Any) -> Any:
    """The dataset with image files read into the table (as `push_to_hub` does), so it stands alone."""
    from datasets.table import embed_table_storage

    format_ = dataset.format
    embedded = dataset.with_format("arrow").map(embed_table_storage, batched=True, desc="Embedding images")
    return embedded.with_format(**format_)


def save_parquet(dataset: Any, path: str | Path) -> Path:
    """Writes the dataset, images embedded as bytes, to one Parquet file; the info description is kept in the
    file's schema metadata so `load_parquet` restores the MOS range. Returns the path."""
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    embedded = _embedded(dataset).flatten_indices()
    table = embedded.data.table
    schema_metadata = dict(table.schema.metadata or {})
    schema_metadata[_PARQUET_METADATA_KEY] = (dataset.info.description or "").encode()
    pq.write_table(table.replace_schema_metadata(schema_metadata), path)
    return path


def load_parquet(path: str | Path) -> Any:
    """Reads a file written by `save_parquet` (any Parquet file with datasets features works too)."""
    import datasets
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no Parquet file at {path}")
    dataset = datasets.Dataset.from_parquet(str(path), keep_in_memory=True)
    description = (pq.read_schema(path).metadata or {}).get(_PARQUET_METADATA_KEY)
    if description:
        dataset.info.description = description.decode()
    return dataset


def save_imagefolder(dataset: Any, folder: str | Path, *, split: str = "train") -> Path:
    """Writes `<folder>/<split>/` with the image files and a `metadata.csv` (file_name plus every other column),
    readable by `datasets.load_dataset("imagefolder", data_dir=folder)` and by `load_imagefolder`. The info
    description goes to `<folder>/agqg_dataset_info.json`. Returns the split folder."""
    import datasets

    folder = Path(folder)
    split_folder = folder / split
    split_folder.mkdir(parents=True, exist_ok=True)
    raw = dataset.cast_column("image", datasets.Image(decode=False))
    names = raw["name"] if "name" in raw.column_names else [f"{i:06d}.png" for i in range(len(raw))]
    if len(set(names)) != len(names):  # duplicated names (AGIQA-1K) get the row number as a prefix
        names = [f"{i:06d}_{n}" for i, n in enumerate(names)]
    file_names = []
    for index, (image, name) in enumerate(zip(raw["image"], names, strict=True)):
        data = image.get("bytes")
        source = image.get("path")
        if data is None and source:
            data = Path(source).read_bytes()
        if data is None:
            raise ValueError(f"row {index} ({name!r}) has neither image bytes nor a readable path")
        suffix = Path(source or name).suffix or ".png"
        file_name = Path(name).stem + suffix.lower()
        (split_folder / file_name).write_bytes(data)
        file_names.append(file_name)
    table = dataset.remove_columns("image").to_pandas()
    table.insert(0, "file_name", file_names)
    table.to_csv(split_folder / "metadata.csv", index=False)
    (folder / _IMAGEFOLDER_INFO).write_text(dataset.info.description or "{}")
    return split_folder


def load_imagefolder(folder: str | Path, *, split: str = "train") -> Any:
    """Loads a folder written by `save_imagefolder` (through datasets' `imagefolder` builder, offline)."""
    import datasets

    folder = Path(folder)
    if not (folder / split / "metadata.csv").is_file():
        raise FileNotFoundError(f"no {split}/metadata.csv in {folder}")
    dataset = datasets.load_dataset("imagefolder", data_dir=str(folder / split), split="train")
    info_file = folder / _IMAGEFOLDER_INFO
    if info_file.is_file():
        dataset.info.description = info_file.read_text()
    return dataset


# Licences that allow re-publishing the data (SPDX-like ids, compared case-insensitively).
_REDISTRIBUTABLE_LICENCES = ("mit", "apache-2.0", "cc0-1.0", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-3.0", "public-domain")
_REDISTRIBUTABLE_LICENCES += ("bsd-3-clause", "bsd-2-clause", "odc-by", "pddl", "cc-by-2.0")


def push_to_hub_if_allowed(dataset: Any, repo_id: str, *, licence: str | None = None, **push_kwargs: Any) -> Any:
    """Pushes the dataset (images embedded) to the Hub, only if its licence allows redistribution.

    Args:
        dataset: A `Dataset` or `DatasetDict` from this module.
        repo_id: Target dataset repository.
        licence: The data's licence as an SPDX-like id (e.g. "mit", "cc-by-4.0"). Default: the licence recorded
            by the loader. Datasets whose licence is unknown, non-commercial, no-derivatives or custom are
            refused with `PermissionError` (publishing them would breach their terms).
        push_kwargs: Passed to `push_to_hub` (token, private, ...).

    Returns:
        The `CommitInfo` of the push.
    """
    splits = dict(dataset) if hasattr(dataset, "keys") else {"train": dataset}
    recorded = {dataset_metadata(d).get("licence") for d in splits.values()}
    chosen = licence if licence is not None else (recorded.pop() if len(recorded) == 1 else None)
    name = {dataset_metadata(d).get("name") for d in splits.values()}
    if chosen is None:
        raise PermissionError(
            f"dataset {sorted(map(str, name))} has no known licence; refusing to publish it. Pass licence= only "
            "if you know the data may be redistributed."
        )
    normalised = str(chosen).strip().lower().replace(" ", "-")
    if normalised not in _REDISTRIBUTABLE_LICENCES:
        raise PermissionError(
            f"licence {chosen!r} does not clearly allow redistribution (allowed: {_REDISTRIBUTABLE_LICENCES}); "
            "refusing to publish"
        )
    for split_dataset in splits.values():
        split_dataset.info.license = normalised
    return dataset.push_to_hub(repo_id, **push_kwargs)
