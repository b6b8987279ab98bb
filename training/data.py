"""Loaders for IQA / AGIQA datasets from their published local layouts into `datasets.Dataset`.

`load_iqa_dataset(name, root)` reads the metadata of one dataset as downloaded (the user points at the folder)
and returns a `datasets.Dataset` with an `image` column (`datasets.Image()`, decoded lazily from the files), a
float `mos`, `mos_std` (NaN where the dataset gives none), `prompt` (generation prompt, where the dataset has
one), `name` (the image's row key, which split files are matched on: the file name, or `<model>/<image_name>`
where the release names an image by two columns), `file` (its path relative to the image folder), `source_row`
(the row's line or row number in the metadata file, for error messages) and the dataset's own columns, numbers
as numbers. The MOS scale, its direction, the licence, the metadata file and its layout are recorded as JSON
in `dataset.info.description` (`dataset_metadata`, `mos_range`).

Every dataset knows the metadata layouts its official release and the widely used code bases publish
(`DatasetSpec.layouts`: official files, IPCE / NTIRE-2024 champion, LIQE, pyiqa, ACL-IQA, MA-AGIQA). Without
`metadata_file=` the loader looks at the tables under `root` and chooses **by content**: a file is usable when
its columns (or, for headerless lists, its first rows) match a layout and its score column is numeric. Several
usable files are fine when they list the same images with the same scores (the most informative one is read);
when they disagree the loader raises `AmbiguousMetadataError` listing them, and when there is none it says what
it looked for and why each table was rejected.

`load_split(name, root, split)` returns a `DatasetDict` for one of the split protocols: the official / IPCE /
LIQE split files, prompt-disjoint random splits, a random split by image, or the dataset's own `set` column.

Bad rows are never dropped silently: a missing image, a non-finite score or a split row naming an unknown
image raises an error naming the file and row, or, with `on_bad_rows="skip"`, is skipped with a logged count
and the first few examples. The layouts are described in docs/datasets.md.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "DATASETS",
    "AmbiguousMetadataError",
    "BadRowsError",
    "DatasetSpec",
    "Layout",
    "dataset_metadata",
    "describe_dataset",
    "layout_rows",
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


class AmbiguousMetadataError(ValueError):
    """A dataset folder holds several usable metadata files that disagree (different images or scores)."""


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
    """Rows read from a dataset's metadata. `frame` has the columns `file` (image path relative to the image
    folder), `key` (the row key split files are matched on; default: the file's base name), `mos`, `mos_std`,
    `prompt`, `source_row` and the dataset's own columns; `path` is the metadata file (for messages);
    `image_dirs` are the folders (relative to the dataset root or to any folder between it and `path`) that
    may hold the images; `mos_column` names the column the score came from (for messages)."""

    frame: Any
    path: Path
    image_dirs: tuple[str, ...] = ("",)
    notes: dict[str, Any] = field(default_factory=dict)
    mos_column: str = "mos"


def _pandas() -> Any:
    import pandas

    return pandas


def _looks_like_header(values: Iterable[Any], expected: Sequence[str]) -> bool:
    cells = {str(v).strip().lower() for v in values}
    return any(name.lower() in cells for name in expected)


def _is_number(text: Any) -> bool:
    try:
        float(str(text).strip())
    except ValueError:
        return False
    return True


def _first_row_is_header(cells: Sequence[Any]) -> bool:
    """A first row is a header when none of its cells is a number or an image file name."""
    for cell in cells:
        text = str(cell).strip()
        if _is_number(text) or text.lower().endswith(_IMAGE_SUFFIXES):
            return False
    return True


def _read_csv(path: Path, columns: Sequence[str] | None = None, *, sep: str = ",") -> Any:
    """Reads a CSV/TSV (UTF-8 with or without BOM, LF or CRLF, quoted fields) as text. With `columns`, a file
    without a header row (detected by the first row not containing any expected name) gets those names."""
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


def _split_text_line(line: str) -> list[str]:
    """Fields of one line of a text list: tab-separated when the line holds a tab (LIQE, pyiqa, whose fields
    may be padded with spaces), else separated by whitespace, commas or semicolons."""
    if "\t" in line:
        return [f.strip() for f in line.strip("\r\n").split("\t") if f.strip()]
    return [f for f in re.split(r"[\s,;]+", line.strip()) if f]


def _read_text_lines(path: Path, names: Sequence[str], min_fields: int) -> Any:
    """A headerless text list as a frame with columns `names` (missing trailing fields are empty, extra ones
    dropped) and `source_row` (the line number). A line with fewer than `min_fields` fields raises."""
    pandas = _pandas()
    rows = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        fields = _split_text_line(line)
        if not fields:
            continue
        if len(fields) < min_fields:
            raise BadRowsError(
                f"{path}, line {line_number}: expected at least {min_fields} fields ({list(names)[:min_fields]}), "
                f"got {line.strip()!r}"
            )
        padded = (fields + [None] * len(names))[: len(names)]
        rows.append({**dict(zip(names, padded, strict=True)), "source_row": line_number})
    if not rows:
        raise ValueError(f"{path}: no rows")
    return pandas.DataFrame(rows)


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


def _load_mat_vector(path: Path, variable: str | None = None) -> np.ndarray:
    """The numeric array of a .mat file (the named variable, or the only numeric one), flattened."""
    from scipy import io as scipy_io

    contents = {k: v for k, v in scipy_io.loadmat(path).items() if not k.startswith("__")}
    if variable is not None and variable in contents:
        return np.asarray(contents[variable]).astype(float).reshape(-1)
    arrays = [np.asarray(v) for v in contents.values() if np.asarray(v).dtype.kind in "fiu"]
    if len(arrays) != 1:
        raise ValueError(f"{path}: expected one numeric array, found {sorted(contents)}")
    return arrays[0].astype(float).reshape(-1)


# ---------------------------------------------------------------------------------------------
# Layouts: the published metadata formats, recognised by content
# ---------------------------------------------------------------------------------------------

_METADATA_SUFFIXES = (".csv", ".txt", ".xlsx", ".mat")
_SEARCH_DEPTH = 3  # sub-folder levels below the dataset root searched for metadata files
_SPLIT_STEMS = ("train", "val", "valid", "validation", "test")


@dataclass(frozen=True)
class _Probe:
    """The first rows of a candidate metadata file as text cells (`rows`; for a .mat file, `variables` maps its
    variable names to shapes). `error` says why the file could not be peeked at."""

    path: Path
    rows: tuple[tuple[str, ...], ...] = ()
    variables: tuple[tuple[str, tuple[int, ...]], ...] = ()
    error: str | None = None

    @property
    def suffix(self) -> str:
        return self.path.suffix.lower()

    @property
    def header(self) -> tuple[str, ...]:
        return self.rows[0] if self.rows else ()

    def has(self, *columns: str) -> bool:
        return set(columns) <= set(self.header)


def _peek(path: Path, num_rows: int = 3) -> _Probe:
    """Reads the first `num_rows` rows of a table (cells stripped; None -> "") or the variables of a .mat."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".mat":
            from scipy import io as scipy_io

            variables = tuple((name, tuple(shape)) for name, shape, _ in scipy_io.whosmat(path))
            return _Probe(path, variables=variables)
        if suffix in (".xlsx", ".xls"):
            from openpyxl import load_workbook

            workbook = load_workbook(path, read_only=True, data_only=True)
            try:
                sheet = workbook.worksheets[0]
                rows = []
                for row in sheet.iter_rows(max_row=num_rows, values_only=True):
                    rows.append(tuple("" if v is None else str(v).strip() for v in row))
            finally:
                workbook.close()
            return _Probe(path, rows=tuple(rows))
        with open(path, encoding="utf-8-sig", newline="") as handle:
            head = [line for _, line in zip(range(num_rows), handle, strict=False)]
        if suffix == ".txt":
            return _Probe(path, rows=tuple(tuple(_split_text_line(line)) for line in head if line.strip()))
        delimiter = "\t" if head and "\t" in head[0] and "," not in head[0] else ","
        parsed = csv.reader(io.StringIO("".join(head)), delimiter=delimiter)
        return _Probe(path, rows=tuple(tuple(c.strip() for c in row) for row in parsed if row))
    except Exception as error:  # noqa: BLE001 - any unreadable file is reported as such, not raised
        return _Probe(path, error=f"unreadable ({type(error).__name__}: {error})")


Matcher = Callable[[_Probe, str], bool]
Reader = Callable[[Path, Path, str], _Table]


@dataclass(frozen=True)
class Layout:
    """One published metadata format of a dataset.

    Attributes:
        key: A stable id, e.g. `ipce-model-image-name` (recorded as `layout` in the dataset's info).
        source: Who publishes it: `official`, `IPCE`, `LIQE`, `pyiqa`, `ACL-IQA`, `MA-AGIQA`, ...
        files: Where it is published and under which file names (documentation and messages).
        columns: What the file holds and how a row names its image (documentation and messages).
        matches: (probe, target) -> whether a file has this layout, from its first rows or .mat variables.
        read: (metadata file, dataset root, target) -> the rows as a `_Table`.
        auto: Considered when no `metadata_file=` is given (False: read only when named explicitly).
    """

    key: str
    source: str
    files: str
    columns: str
    matches: Matcher
    read: Reader
    auto: bool = True


def _has_columns(*columns: str, suffixes: Sequence[str] | None = None, lacking: Sequence[str] = ()) -> Matcher:
    """Matches tables whose header holds `columns` (and none of `lacking`), optionally only with `suffixes`."""

    def match(probe: _Probe, target: str) -> bool:
        if suffixes is not None and probe.suffix not in suffixes:
            return False
        return probe.has(*columns) and not any(c in probe.header for c in lacking)

    return match


def _headerless(
    fields: tuple[int, int],
    numeric: Sequence[int],
    *,
    suffixes: Sequence[str] = (".txt",),
    name: str | None = None,
    cell: Callable[[Sequence[str]], bool] | None = None,
) -> Matcher:
    """Matches headerless lists whose first row has between fields[0] and fields[1] fields, numbers at the
    `numeric` positions and a first field that is an image path (or matches the regex `name`)."""

    def match(probe: _Probe, target: str) -> bool:
        if probe.suffix not in suffixes or not probe.rows:
            return False
        row = probe.rows[0]  # only the first row: the reader reports a bad later line by its number
        if not fields[0] <= len(row) <= fields[1] or not all(_is_number(row[i]) for i in numeric):
            return False
        named = re.fullmatch(name, row[0], re.IGNORECASE) if name else row[0].lower().endswith(_IMAGE_SUFFIXES)
        return bool(named) and (cell is None or cell(row))

    return match


def _mat_named(stem: Callable[[str], str]) -> Matcher:
    """Matches a .mat file whose stem (case-insensitive) is `stem(target)` and that holds a variable."""

    def match(probe: _Probe, target: str) -> bool:
        return probe.suffix == ".mat" and probe.path.stem.lower() == stem(target).lower() and bool(probe.variables)

    return match


def _is_split_file(path: Path) -> bool:
    """Split files (train/val/test lists) are not metadata candidates: `train.csv`, `val_domain.csv`,
    LIQE's `koniq10k_train_clip.txt`. NTIRE's `info_train.xlsx` is the training metadata, not a split."""
    stem = path.stem.lower()
    if stem in _SPLIT_STEMS or re.fullmatch(r"(train|val|valid|validation|test)_domain", stem):
        return True
    return bool(re.fullmatch(r".+_(train|val|valid|validation|test)(_clip|_score)?", stem)) and not stem.startswith(
        "info_"
    )


def _is_split_folder(name: str) -> bool:
    """Per-split folders (`1`, `2`, ...). LIQE's `splits2/` itself is searched: it holds `<db>_all.txt`."""
    return name.isdigit()


def _candidate_files(root: Path) -> list[Path]:
    """Table and .mat files under `root` (up to `_SEARCH_DEPTH` folder levels deep), leaving out hidden
    entries, per-split folders (`1`, `2`, ...) and split files."""
    found: list[Path] = []

    def walk(folder: Path, depth: int) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                if depth < _SEARCH_DEPTH and not _is_split_folder(entry.name):
                    walk(Path(entry.path), depth + 1)
            elif entry.name.lower().endswith(_METADATA_SUFFIXES) and not _is_split_file(Path(entry.path)):
                found.append(Path(entry.path))

    walk(root, 0)
    return found


# ---------------------------------------------------------------------------------------------
# Per-dataset readers: (metadata file, root, target) -> _Table
# ---------------------------------------------------------------------------------------------


def _check_target(dataset: str, target: str, targets: Sequence[str]) -> None:
    if target not in targets:
        raise ValueError(f"{dataset}: target={target!r}; expected one of {list(targets)}")


_AGIQA_3K_COLUMNS = ("name", "prompt", "mos_quality", "std_quality", "mos_align", "std_align")
_AGIQA_3K_IMAGE_DIRS = ("", "images", "image", "imgs", "AGIQA-3K", "AGIQA-3k", "ACGIQA-3K", "data", "file")


def _read_agiqa_3k(path: Path, root: Path, target: str) -> _Table:
    frame = _read_csv(path)
    _require_columns(frame, path, _AGIQA_3K_COLUMNS)
    if "mos" in frame.columns:  # a mirror adds its own `mos` column; keep it under another name
        frame = frame.rename(columns={"mos": "source_mos"})
    suffix = "quality" if target == "quality" else "align"
    for column in ("mos_quality", "std_quality", "mos_align", "std_align"):
        frame[column] = _to_float(frame, column)
    frame["file"] = frame["name"]
    frame["mos"] = frame[f"mos_{suffix}"]
    frame["mos_std"] = frame[f"std_{suffix}"]
    # <model>_<variant>_<NNN>.jpg; the model token itself may contain dots (sd1.5, xl2.2).
    frame["model"] = [name.rsplit("_", 2)[0] for name in frame["name"]]
    frame["variant"] = [name.rsplit("_", 2)[1] if name.count("_") >= 2 else None for name in frame["name"]]
    return _Table(frame, path, _AGIQA_3K_IMAGE_DIRS, mos_column=f"mos_{suffix}")


_AGIQA_1K_IMAGE_DIRS = ("", "file", "images", "image", "AGIQA-1K", "AGIQA-1k", "AIGC_images")


def _read_agiqa_1k(path: Path, root: Path, target: str) -> _Table:
    frame = _read_table(path, ["Image", "Prompt", "MOS"])
    _require_columns(frame, path, ["Image", "Prompt", "MOS"])
    frame["file"] = frame["Image"].astype(str)
    frame["mos"] = _to_float(frame, "MOS")
    frame["prompt"] = frame["Prompt"]
    frame["model"] = [name.split("_", 1)[0] for name in frame["file"]]
    frame = frame.drop(columns=["Image", "Prompt", "MOS"])
    return _Table(frame, path, _AGIQA_1K_IMAGE_DIRS, mos_column="MOS")


def _read_agiqa_1k_score(path: Path, root: Path, target: str) -> _Table:
    """The second official file `AIGC_all.csv` (Image, Score): not described in the README, its Score is on
    another scale than the README's MOS and a few names differ; read only when named explicitly."""
    frame = _read_csv(path)
    _require_columns(frame, path, ["Image", "Score"])
    logger.warning(
        "%s: 'Score' is not the MOS described by the AGIQA-1K README (AIGC_MOS_Zscore.xlsx); its scale and a few "
        "image names differ from that file",
        path,
    )
    frame["file"] = frame["Image"].astype(str)
    frame["mos"] = _to_float(frame, "Score")
    frame["model"] = [name.split("_", 1)[0] for name in frame["file"]]
    frame = frame.drop(columns=["Image", "Score"])
    return _Table(frame, path, _AGIQA_1K_IMAGE_DIRS, mos_column="Score")


_AIGCIQA2023_MODELS = ("Controlnet", "DALLE", "Glide", "Lafite", "stable-diffusion", "Unidiffuser")
_AIGCIQA2023_TARGETS = ("quality", "authenticity", "correspondence")
_AIGCIQA2023_SIZE = len(_AIGCIQA2023_MODELS) * 100 * 4  # 6 models x 100 prompts x 4 images
_AIGCIQA2023_IPCE_SCALE = 20.0  # IPCE's mosz columns hold MOS / 20
_AIGCIQA2023_INDEX_DIRS = ("Image/allimg", "allimg", "Image", "images", "")


def _aigciqa2023_key(index: int) -> str:
    """Row key of official image `index` (0..2399): `<model>/<prompt:03d>-<sample>.png`, IPCE's relative path."""
    model = _AIGCIQA2023_MODELS[index // 400]
    return f"{model}/{(index % 400) // 4:03d}-{index % 4 + 1}.png"


def _aigciqa2023_index_columns(frame: Any, indices: Sequence[int | None]) -> Any:
    frame["model"] = [_AIGCIQA2023_MODELS[i // 400] if i is not None else None for i in indices]
    frame["prompt_index"] = [(i % 400) // 4 if i is not None else None for i in indices]
    frame["sample"] = [i % 4 + 1 if i is not None else None for i in indices]
    return frame


def _unquote_prompt(value: Any) -> str | None:
    """AIGCIQA2023 prompts are published wrapped in literal double quotes (`"a corgi"`); one wrapping pair is
    removed, inner quotes are kept."""
    text = _text(value)
    if text is not None and len(text) >= 2 and text.startswith('"') and text.endswith('"'):
        text = text[1:-1]
    return text


def _aigciqa2023_target_number(target: str) -> int:
    return _AIGCIQA2023_TARGETS.index(target) + 1


def _read_aigciqa2023_ipce(path: Path, root: Path, target: str) -> _Table:
    """IPCE's `all_set.csv` / `all_norm.csv` / split files and ACL-IQA's `AIGCIQA2023_All.csv`: model,
    image_name, mosz1..3 (MOS / 20) and, in all_set, a prompt; the image is `<model>/<image_name>`."""
    frame = _read_csv(path)
    _require_columns(frame, path, ["model", "image_name", "mosz1", "mosz2", "mosz3"])
    number = _aigciqa2023_target_number(target)
    for column in ("mosz1", "mosz2", "mosz3"):
        frame[column] = _to_float(frame, column)
    models, names = frame["model"].astype(str), frame["image_name"].astype(str)
    frame["file"] = [f"{m}/{n}" for m, n in zip(models, names, strict=True)]
    frame["key"] = frame["file"]
    frame["mos"] = frame[f"mosz{number}"] * _AIGCIQA2023_IPCE_SCALE
    frame["mos_std"] = np.nan
    if "prompt" in frame.columns:
        frame["prompt"] = [_unquote_prompt(p) for p in frame["prompt"]]
    parsed = [re.fullmatch(r"(\d+)-(\d+)\.\w+", str(n)) for n in frame["image_name"]]
    frame["prompt_index"] = [int(m.group(1)) if m else None for m in parsed]
    frame["sample"] = [int(m.group(2)) if m else None for m in parsed]
    notes = {"ipce_mosz_times_20": True}
    return _Table(frame, path, ("", "Image", "images"), notes, mos_column=f"mosz{number}")


def _read_aigciqa2023_all_in_one(path: Path, root: Path, target: str) -> _Table:
    """The all-in-one CSV a public preprocessing script writes from the official .mat files with pandas
    (`,name,prompt,style,class,quality_mos,...,correspondence_std`, an unnamed index column first); image
    `<n>.png` is official image n."""
    frame = _read_csv(path)
    frame = frame.drop(columns=[c for c in frame.columns if c == "" or c.startswith("Unnamed")])
    _require_columns(frame, path, ["name", f"{target}_mos"])
    frame["file"] = frame["name"].astype(str)
    indices = [int(m.group(1)) if (m := re.fullmatch(r"(\d+)\.\w+", f)) else None for f in frame["file"]]
    indices = [i if i is not None and i < _AIGCIQA2023_SIZE else None for i in indices]
    frame["key"] = [_aigciqa2023_key(i) if i is not None else f for i, f in zip(indices, frame["file"], strict=True)]
    frame = _aigciqa2023_index_columns(frame, indices)
    frame["mos"] = _to_float(frame, f"{target}_mos")
    frame["mos_std"] = _to_float(frame, f"{target}_std") if f"{target}_std" in frame.columns else np.nan
    if "prompt" in frame.columns:
        frame["prompt"] = [_unquote_prompt(p) for p in frame["prompt"]]
    return _Table(frame, path, _AIGCIQA2023_INDEX_DIRS, mos_column=f"{target}_mos")


def _nearest(root: Path, start: Path, pattern: Callable[[Path], bool]) -> Path | None:
    """The file matching `pattern` closest to `start` (its folder, then its parents up to `root`, then anywhere
    under `root`)."""
    folder = start.parent
    while True:
        hits = sorted(p for p in folder.iterdir() if p.is_file() and pattern(p)) if folder.is_dir() else []
        for sibling in sorted(d for d in folder.iterdir() if d.is_dir()) if folder.is_dir() else []:
            hits += sorted(p for p in sibling.iterdir() if p.is_file() and pattern(p))
        if hits:
            return hits[0]
        if folder == root or root not in folder.parents:
            break
        folder = folder.parent
    matches = sorted(p for p in root.rglob("*") if p.is_file() and pattern(p))
    return matches[0] if matches else None


def _read_aigciqa2023_prompts(path: Path) -> dict[str, list[Any]]:
    """`AIGCIQA2023_Prompts.xlsx` (or .csv): 100 rows; the `prompt` column (with `style`, `class` where present),
    else the second column of a headerless sheet."""
    if path.suffix.lower() == ".csv":
        table = _read_csv(path)
    else:
        table = _read_excel(path, header_names=("prompt",))
    columns = {str(c).strip().lower(): c for c in table.columns if c != "source_row"}
    result: dict[str, list[Any]] = {}
    if "prompt" in columns:
        result["prompt"] = [_unquote_prompt(v) for v in table[columns["prompt"]]]
        for extra in ("style", "class"):
            if extra in columns:
                result[extra] = [_text(v) for v in table[columns[extra]]]
    else:
        data_columns = [c for c in table.columns if c != "source_row"]
        result["prompt"] = [_unquote_prompt(v) for v in table[data_columns[min(1, len(data_columns) - 1)]]]
    if len(result["prompt"]) != 100:
        raise ValueError(f"{path}: expected 100 prompts, found {len(result['prompt'])}")
    return result


def _read_aigciqa2023_mat(path: Path, root: Path, target: str) -> _Table:
    """The official release: `DATA/MOS/mosz<t>.mat` (variable MOSz, 2400 values), `DATA/STD/SD<t>.mat`
    (variable SD) and `AIGCIQA2023_Prompts.xlsx`; image n is `Image/allimg/<n>.png`, n = model * 400 +
    prompt * 4 + (sample - 1)."""
    pandas = _pandas()
    number = _aigciqa2023_target_number(target)
    mos = _load_mat_vector(path, "MOSz")
    std_file = _nearest(root, path, lambda p: re.fullmatch(rf"(sd|std)z?{number}\.mat", p.name, re.IGNORECASE))
    std = _load_mat_vector(std_file, "SD") if std_file else np.full_like(mos, np.nan)
    if mos.size != _AIGCIQA2023_SIZE or std.size != _AIGCIQA2023_SIZE:
        raise ValueError(
            f"{path}: expected {_AIGCIQA2023_SIZE} values (6 models x 100 prompts x 4), got {mos.size}"
            + (f" (and {std.size} in {std_file})" if std_file else "")
        )
    index = np.arange(_AIGCIQA2023_SIZE)
    frame = pandas.DataFrame(
        {
            "file": [f"{i}.png" for i in index],
            "key": [_aigciqa2023_key(int(i)) for i in index],
            "mos": mos,
            "mos_std": std,
            "source_row": index + 1,
        }
    )
    frame = _aigciqa2023_index_columns(frame, [int(i) for i in index])
    prompt_file = _nearest(root, path, lambda p: p.stem.lower() == "aigciqa2023_prompts" and p.suffix != ".mat")
    if prompt_file is not None:
        prompts = _read_aigciqa2023_prompts(prompt_file)
        for column, values in prompts.items():
            frame[column] = [values[i] for i in frame["prompt_index"]]
    return _Table(frame, path, _AIGCIQA2023_INDEX_DIRS, {"std_file": str(std_file) if std_file else None}, "MOSz")


def _read_aigiqa_20k(path: Path, root: Path, target: str) -> _Table:
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
_KONIQ_IMAGE_DIRS = ("", "1024x768", "512x384", "images", "koniq10k_1024x768/1024x768")


def _koniq_scores(frame: Any, target: str, mos: str, sd: str, path: Path) -> Any:
    """`mos` / `mos_std` for KonIQ tables with a 0-100 MOS, an SD on the 1-5 scale and (where present) the
    fractions c1..c5 of ratings at each grade."""
    for column in ("c1", "c2", "c3", "c4", "c5", mos, sd):
        if column in frame.columns:
            frame[column] = _to_float(frame, column)
    if target == "quality":
        frame["mos"] = frame[mos]
        # SD is on the 1-5 scale: one grade step is 25 points of the nominal 0-100 scale (approximate: the
        # official MOS is not exactly an affine map of the 1-5 mean).
        frame["mos_std"] = frame[sd] * _KONIQ_MOS_PER_GRADE
    else:
        if not {"c1", "c2", "c3", "c4", "c5"} <= set(frame.columns):
            raise ValueError(f"{path}: target='quality_5' needs the rating fractions c1..c5, which this file lacks")
        fractions = frame[["c1", "c2", "c3", "c4", "c5"]].to_numpy(float)
        frame["mos"] = fractions @ np.arange(1, 6)
        frame["mos_std"] = frame[sd]
    return frame


def _read_koniq_official(path: Path, root: Path, target: str) -> _Table:
    frame = _read_csv(path)
    _require_columns(frame, path, ["image_name", "c1", "c2", "c3", "c4", "c5", "MOS", "SD"])
    frame["file"] = frame["image_name"]
    frame = _koniq_scores(frame, target, "MOS", "SD", path)
    return _Table(frame, path, _KONIQ_IMAGE_DIRS, mos_column="MOS")


def _read_koniq_pyiqa_csv(path: Path, root: Path, target: str) -> _Table:
    """pyiqa `meta_info_KonIQ10kDataset.csv`: img_name, mos (0-100), std (1-5 scale), split, c1..c5, c_total."""
    frame = _read_csv(path)
    _require_columns(frame, path, ["img_name", "mos", "std", "split"])
    frame = frame.rename(columns={"img_name": "file", "mos": "MOS", "std": "SD", "split": "set"})
    frame = _koniq_scores(frame, target, "MOS", "SD", path)
    return _Table(frame, path, _KONIQ_IMAGE_DIRS, mos_column="mos")


def _read_koniq_pyiqa_txt(path: Path, root: Path, target: str) -> _Table:
    """pyiqa's earlier `meta_info_KonIQ10kDataset.txt`: name, mos (0-100), std (1-5 scale), train/val/test,
    tab-separated fields padded with spaces, no header."""
    frame = _read_text_lines(path, ["file", "MOS", "SD", "set"], 3)
    frame = _koniq_scores(frame, target, "MOS", "SD", path)
    return _Table(frame, path, _KONIQ_IMAGE_DIRS, mos_column="mos (field 2)")


def _read_koniq_liqe(path: Path, root: Path, target: str) -> _Table:
    """LIQE `koniq10k_all.txt`: relative_path, mos (1-5 scale), std; tab-separated, no header."""
    frame = _read_text_lines(path, ["file", "mos", "mos_std"], 2)
    frame["mos"] = _to_float(frame, "mos")
    frame["mos_std"] = _to_float(frame, "mos_std")
    if target == "quality":  # put the 1-5 mean on the official 0-100 scale's nominal mapping
        frame["mos"] = (frame["mos"] - 1.0) * _KONIQ_MOS_PER_GRADE
        frame["mos_std"] = frame["mos_std"] * _KONIQ_MOS_PER_GRADE
    return _Table(frame, path, _KONIQ_IMAGE_DIRS, {"scale_from": "LIQE 1-5 list"}, "mos (field 2)")


_SPAQ_IMAGE_DIRS = ("", "TestImage", "images", "SPAQ/TestImage")


def _read_spaq(path: Path, root: Path, target: str) -> _Table:
    if path.suffix.lower() in (".xlsx", ".xls"):
        frame = _read_excel(path, header_names=("Image name", "MOS"))
    else:
        frame = _read_csv(path)
    _require_columns(frame, path, ["Image name", "MOS"])
    # Two columns are named "Brightness" in the pyiqa file (attribute score, then EXIF); pandas renames the
    # second "Brightness.1". Column names become snake_case.
    frame = frame.rename(columns={"Brightness.1": "exif_brightness", "Image name": "image_name"})
    frame.columns = [
        c if c == "source_row" else re.sub(r"[^0-9a-z]+", "_", str(c).lower()).strip("_") for c in frame.columns
    ]
    for column in frame.columns:
        if column not in ("image_name", "source_row"):
            frame[column] = _to_float(frame, column)
    frame["file"] = frame["image_name"].astype(str)
    return _Table(frame, path, _SPAQ_IMAGE_DIRS, mos_column="MOS")


_LIVEC_IMAGE_DIRS = ("", "Images", "ChallengeDB_release/Images")


def _livec_training_flags(frame: Any) -> Any:
    # The 7 study-training images t1..t7.bmp are excluded by default, as in the LIQE and pyiqa lists.
    frame["training_image"] = [bool(re.fullmatch(r"t\d+\.bmp", _basename(f))) for f in frame["file"]]
    return frame


def _read_livec_mat(path: Path, root: Path, target: str) -> _Table:
    """Official `Data/AllMOS_release.mat` with `AllImages_release.mat` (and `AllStdDev_release.mat`)."""
    from scipy import io as scipy_io

    pandas = _pandas()
    names_file = path.with_name("AllImages_release.mat")
    if not names_file.is_file():
        raise FileNotFoundError(f"{path}: no AllImages_release.mat next to it (the image names)")
    names = scipy_io.loadmat(names_file)["AllImages_release"].reshape(-1)
    files = [str(np.asarray(n).reshape(-1)[0]) for n in names]
    mos = _load_mat_vector(path, "AllMOS_release")
    std_path = path.with_name("AllStdDev_release.mat")
    std = _load_mat_vector(std_path, "AllStdDev_release") if std_path.is_file() else np.full_like(mos, np.nan)
    if len(files) != mos.size:
        raise ValueError(f"{path}: {mos.size} scores but {len(files)} names in {names_file}")
    frame = pandas.DataFrame({"file": files, "mos": mos, "mos_std": std, "source_row": np.arange(1, len(mos) + 1)})
    return _Table(_livec_training_flags(frame), path, _LIVEC_IMAGE_DIRS, mos_column="AllMOS_release")


def _read_livec_liqe(path: Path, root: Path, target: str) -> _Table:
    """LIQE `clive_all.txt`: Images/<name>, mos (0-100), std; tab-separated, no header."""
    frame = _read_text_lines(path, ["file", "mos", "mos_std"], 2)
    frame["mos"] = _to_float(frame, "mos")
    frame["mos_std"] = _to_float(frame, "mos_std")
    return _Table(_livec_training_flags(frame), path, _LIVEC_IMAGE_DIRS, mos_column="mos (field 2)")


def _liqe_clip_columns(frame: Any) -> Any:
    for column in ("scene1", "scene2", "scene3"):
        frame[column] = [None if v in (None, "invalid") else v for v in frame[column]]
    return frame


def _read_livec_liqe_clip(path: Path, root: Path, target: str) -> _Table:
    """LIQE `clive_all_clip.txt`: Images/<name>, mos, distortion label, scene1..3 (`invalid` = none)."""
    frame = _read_text_lines(path, ["file", "mos", "distortion", "scene1", "scene2", "scene3"], 2)
    frame["mos"] = _to_float(frame, "mos")
    frame = _liqe_clip_columns(frame)
    return _Table(_livec_training_flags(frame), path, _LIVEC_IMAGE_DIRS, mos_column="mos (field 2)")


def _read_livec_pyiqa(path: Path, root: Path, target: str) -> _Table:
    frame = _read_csv(path)
    _require_columns(frame, path, ["img_name", "mos", "std"])
    frame = frame.rename(columns={"img_name": "file", "std": "mos_std"})
    frame["mos"] = _to_float(frame, "mos")
    frame["mos_std"] = _to_float(frame, "mos_std")
    return _Table(_livec_training_flags(frame), path, _LIVEC_IMAGE_DIRS, mos_column="mos")


def _kadid_columns(frame: Any) -> Any:
    parsed = [re.fullmatch(r"(I\d+)_(\d+)_(\d+)\.\w+", _basename(f)) for f in frame["file"]]
    frame["reference"] = [f"{m.group(1)}.png" if m else None for m in parsed]
    frame["distortion_type"] = [int(m.group(2)) if m else -1 for m in parsed]
    frame["distortion_level"] = [int(m.group(3)) if m else -1 for m in parsed]
    return frame


def _read_kadid_official(path: Path, root: Path, target: str) -> _Table:
    """Official `dmos.csv`: dist_img, ref_img, dmos, var (the variance of the ratings: mos_std = sqrt(var))."""
    frame = _read_csv(path)
    _require_columns(frame, path, ["dist_img", "ref_img", "dmos", "var"])
    frame["file"] = frame["dist_img"]
    frame["mos"] = _to_float(frame, "dmos")
    frame["var"] = _to_float(frame, "var")
    frame["mos_std"] = np.sqrt(frame["var"])
    frame = frame.drop(columns=["dmos"])
    return _Table(_kadid_columns(frame), path, ("", "images"), mos_column="dmos")


def _read_kadid_pyiqa(path: Path, root: Path, target: str) -> _Table:
    """pyiqa `meta_info_KADID10kDataset.csv`: ref_name, dist_name, dmos, std. Its `std` holds the variance
    (the official `var`; its square root is LIQE's std), so mos_std = sqrt(std)."""
    frame = _read_csv(path)
    _require_columns(frame, path, ["ref_name", "dist_name", "dmos", "std"])
    frame = frame.rename(columns={"std": "var"})
    frame["file"] = frame["dist_name"]
    frame["mos"] = _to_float(frame, "dmos")
    frame["var"] = _to_float(frame, "var")
    frame["mos_std"] = np.sqrt(frame["var"])
    frame = frame.drop(columns=["dmos"])
    return _Table(_kadid_columns(frame), path, ("", "images"), mos_column="dmos")


def _read_kadid_liqe(path: Path, root: Path, target: str) -> _Table:
    """LIQE `kadid10k_all.txt`: images/<name>, dmos (1-5, higher is better), std; tab-separated, no header."""
    frame = _read_text_lines(path, ["file", "mos", "mos_std"], 2)
    frame["mos"] = _to_float(frame, "mos")
    frame["mos_std"] = _to_float(frame, "mos_std")
    return _Table(_kadid_columns(frame), path, ("", "images"), mos_column="mos (field 2)")


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


def _read_screen_content(path: Path, root: Path, target: str) -> _Table:
    if path.suffix.lower() in (".xlsx", ".xls", ".csv"):
        frame = _read_table(path, ["file", "mos", "mos_std"])
        frame["mos"] = _to_float(frame, "mos")
        frame["mos_std"] = _to_float(frame, "mos_std") if "mos_std" in frame.columns else np.nan
    else:
        frame = _read_score_text(path)
    return _Table(frame, path, ("", "DistImgs", "DistortedImages", "DistortedSCIs", "distorted", "images"))


def _screen_content_matcher(name: str) -> Matcher:
    """Lines `name score [std]` whose names match `name` (a header line is allowed), in .txt, .csv or .xlsx."""
    text_match = _headerless((2, 3), [1], suffixes=(".txt", ".csv", ".xlsx", ".xls"), name=name)

    def match(probe: _Probe, target: str) -> bool:
        if probe.rows and probe.rows[0] and not _is_number(probe.rows[0][-1]):
            probe = _Probe(probe.path, rows=probe.rows[1:])  # a header line
        return text_match(probe, target)

    return match


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSpec:
    """What the loader knows about one dataset. `licence` is what its authors state (None: nothing found);
    `redistributable` says whether that licence allows re-publishing the images (e.g. on the Hub); `layouts`
    are the metadata formats it can be read from (the preferred first, among files that agree)."""

    name: str
    layouts: tuple[Layout, ...]
    mos_range: tuple[float, float]
    higher_is_better: bool
    licence: str | None
    redistributable: bool
    targets: tuple[str, ...] = ("quality",)
    aliases: tuple[str, ...] = ()
    has_prompts: bool = False
    score_note: str = ""


_IMAGE_PATH = r".+\.(jpe?g|png|bmp|tiff?|webp|gif)"
_NUMERIC_MAT = "a .mat file"

_AGIQA_3K_LAYOUTS = (
    Layout(
        "official-data-csv",
        "official; IPCE, ACL-IQA, MA-AGIQA copies",
        "`data.csv` (lcysyzxdxc/AGIQA-3k-Database, IPCE `data/AGIQA-3K/data.csv`), ACL-IQA `AIGC-3K_All.csv`, "
        "MA-AGIQA `data/agiqa/{train,test}.csv`, mirrors with an extra `mos` column",
        "name, prompt, adj1, adj2, style, mos_quality, std_quality, mos_align, std_align (CRLF, quoted prompts, "
        "empty fields); image = `name`",
        _has_columns(*_AGIQA_3K_COLUMNS),
        _read_agiqa_3k,
    ),
)

_AGIQA_1K_LAYOUTS = (
    Layout(
        "official-xlsx",
        "official",
        "`AIGC_MOS_Zscore.xlsx` (lcysyzxdxc/AGIQA-1k-Database; IPCE copy)",
        "sheet 1: Image, Prompt, MOS (0-5); image = `Image`",
        _has_columns("Image", "Prompt", "MOS", suffixes=(".xlsx", ".xls")),
        _read_agiqa_1k,
    ),
    Layout(
        "ipce-all-csv",
        "IPCE",
        "IPCE `data/AGIQA-1K/all.csv`",
        "Image, Prompt, MOS (the xlsx exported, LF, quoted prompts); image = `Image`",
        _has_columns("Image", "Prompt", "MOS", suffixes=(".csv",)),
        _read_agiqa_1k,
    ),
    Layout(
        "official-score-csv",
        "official (undocumented)",
        "`AIGC_all.csv` (lcysyzxdxc/AGIQA-1k-Database); read only with metadata_file=",
        "Image, Score (CRLF; Score is not the README's MOS, some names differ); image = `Image`",
        _has_columns("Image", "Score", lacking=("MOS",)),
        _read_agiqa_1k_score,
        auto=False,
    ),
)

_AIGCIQA2023_LAYOUTS = (
    Layout(
        "official-mat",
        "official",
        "`DATA/MOS/mosz{1,2,3}.mat` (variable MOSz), `DATA/STD/SD{1,2,3}.mat` (variable SD), "
        "`AIGCIQA2023_Prompts.xlsx`, images `Image/allimg/<n>.png`",
        "2400 scores per target in image order n = model*400 + prompt*4 + (sample-1); row key "
        "`<model>/<prompt:03d>-<sample>.png`",
        _mat_named(lambda target: f"mosz{_aigciqa2023_target_number(target)}"),
        _read_aigciqa2023_mat,
    ),
    Layout(
        "ipce-model-image-name",
        "IPCE; ACL-IQA",
        "IPCE `data/AIGCIQA2023/all_set.csv` (with prompts) and `all_norm.csv` (without), ACL-IQA "
        "`Database/AIGCIQA2023/AIGCIQA2023_All.csv`; images `<model>/<image_name>`",
        "model, image_name, mosz1, mosz2, mosz3[, prompt] (mosz = MOS / 20, prompts wrapped in literal quotes); "
        "row key `<model>/<image_name>`",
        _has_columns("model", "image_name", "mosz1", "mosz2", "mosz3"),
        _read_aigciqa2023_ipce,
    ),
    Layout(
        "all-in-one-csv",
        "public preprocessing script",
        "`DATA/MOS/AIGCIQA2023.csv` written by pandas from the official .mat files",
        "(index), name, prompt, style, class, quality_mos, authenticity_mos, correspondence_mos, quality_std, "
        "authenticity_std, correspondence_std; `name` = `<n>.png` of `Image/allimg`",
        _has_columns("name", "quality_mos", "authenticity_mos", "correspondence_mos"),
        _read_aigciqa2023_all_in_one,
    ),
)

_AIGIQA_20K_LAYOUTS = (
    Layout(
        "ntire-info-xlsx",
        "official (NTIRE 2024); IPCE, MA-AGIQA copies",
        "`info_train.xlsx` (AIGCQA-30K-Image)",
        "name, prompt, mos (0-5); image = `name`; `info_val`/`info_test` carry no mos and are not used",
        _has_columns("name", "prompt", "mos"),
        _read_aigiqa_20k,
    ),
    Layout(
        "ntire-info-csv",
        "official (NTIRE 2024); IPCE, MA-AGIQA copies",
        "`info_train.csv`",
        "no header, no trailing newline: name, prompt, mos; prompts keep a literal `\\'`",
        _headerless((3, 3), [2], suffixes=(".csv",)),
        _read_aigiqa_20k,
    ),
)

_KONIQ_LAYOUTS = (
    Layout(
        "official-distributions-sets",
        "official",
        "`koniq10k_distributions_sets.csv` (subpic/koniq)",
        "image_name, c1..c5 (rating fractions), c_total, MOS (0-100), SD (1-5 scale), set",
        _has_columns("image_name", "c1", "c5", "MOS", "SD", "set"),
        _read_koniq_official,
    ),
    Layout(
        "official-scores-distributions",
        "official",
        "`koniq10k_scores_and_distributions.csv` (the KonIQ download)",
        "image_name, c1..c5, c_total, MOS (0-100), SD, MOS_zscore",
        _has_columns("image_name", "c1", "c5", "MOS", "SD", lacking=("set",)),
        _read_koniq_official,
    ),
    Layout(
        "pyiqa-csv",
        "pyiqa",
        "`meta_info_KonIQ10kDataset.csv`",
        "img_name, mos (0-100), std (1-5 scale), split (training/validation/test), c1..c5, c_total",
        _has_columns("img_name", "mos", "std", "split"),
        _read_koniq_pyiqa_csv,
    ),
    Layout(
        "pyiqa-txt",
        "pyiqa (earlier)",
        "`meta_info_KonIQ10kDataset.txt`",
        "no header, tab-separated padded fields: name, mos (0-100), std (1-5 scale), train/val/test",
        _headerless((4, 4), [1, 2], cell=lambda row: row[3].lower() in ("train", "val", "test")),
        _read_koniq_pyiqa_txt,
    ),
    Layout(
        "liqe-all-txt",
        "LIQE",
        "`IQA_Database/koniq-10k/splits2/koniq10k_all.txt`",
        "no header, tab-separated: `1024x768/<name>`, mos (1-5 scale), std",
        _headerless((3, 3), [1, 2]),
        _read_koniq_liqe,
    ),
)

_SPAQ_LAYOUTS = (
    Layout(
        "official-xlsx",
        "official",
        "`Annotations/MOS and Image attribute scores.xlsx`",
        "Image name, MOS (0-100), Brightness, Colorfulness, Contrast, Noisiness, Sharpness",
        _has_columns("Image name", "MOS", suffixes=(".xlsx", ".xls")),
        _read_spaq,
    ),
    Layout(
        "pyiqa-csv",
        "pyiqa",
        "`meta_info_SPAQDataset.csv`",
        "Image name, MOS, the 5 attribute scores, 9 scene fractions, EXIF (a second `Brightness`); CRLF",
        _has_columns("Image name", "MOS", suffixes=(".csv",)),
        _read_spaq,
    ),
)

_LIVEC_LAYOUTS = (
    Layout(
        "official-mat",
        "official",
        "`ChallengeDB_release/Data/AllMOS_release.mat`, `AllImages_release.mat`, `AllStdDev_release.mat`",
        "1169 scores (0-100) and names; images in `Images/`; t1..t7.bmp are the study's training images",
        _mat_named(lambda target: "AllMOS_release"),
        _read_livec_mat,
    ),
    Layout(
        "liqe-all-txt",
        "LIQE",
        "`IQA_Database/ChallengeDB_release/splits2/clive_all.txt`",
        "no header, tab-separated: `Images/<name>`, mos (0-100), std; 1162 images (no t1..t7)",
        _headerless((3, 3), [1, 2]),
        _read_livec_liqe,
    ),
    Layout(
        "pyiqa-csv",
        "pyiqa",
        "`meta_info_LIVEChallengeDataset.csv`",
        "img_name, mos, std (CRLF); 1169 rows including t1..t7.bmp",
        _has_columns("img_name", "mos", "std"),
        _read_livec_pyiqa,
    ),
    Layout(
        "liqe-all-clip-txt",
        "LIQE",
        "`IQA_Database/ChallengeDB_release/splits2/clive_all_clip.txt`",
        "no header, tab-separated: `Images/<name>`, mos, distortion label, scene1..3 (`invalid` = none)",
        _headerless((6, 6), [1]),
        _read_livec_liqe_clip,
    ),
)

_KADID_LAYOUTS = (
    Layout(
        "official-dmos-csv",
        "official",
        "`kadid10k/dmos.csv`",
        "dist_img, ref_img, dmos (1-5, higher is better), var (variance of the ratings)",
        _has_columns("dist_img", "ref_img", "dmos", "var"),
        _read_kadid_official,
    ),
    Layout(
        "pyiqa-csv",
        "pyiqa",
        "`meta_info_KADID10kDataset.csv`",
        "ref_name, dist_name, dmos, std (which holds the variance: mos_std = sqrt)",
        _has_columns("ref_name", "dist_name", "dmos", "std"),
        _read_kadid_pyiqa,
    ),
    Layout(
        "liqe-all-txt",
        "LIQE",
        "`IQA_Database/kadid10k/splits2/kadid10k_all.txt`",
        "no header, tab-separated: `images/<name>`, dmos, std",
        _headerless((3, 3), [1, 2]),
        _read_kadid_liqe,
    ),
)

_SIQAD_LAYOUTS = (
    Layout(
        "dmos-list",
        "official (format inferred)",
        "`DMOS.txt` (or .csv / .xlsx)",
        "one image per line: `cim<r>_<t>_<l>[.bmp]` DMOS [std], whitespace/comma/tab separated, optional header",
        _screen_content_matcher(r"cim\d+_\d+_\d+(\.\w+)?"),
        _read_screen_content,
    ),
)

_SCID_LAYOUTS = (
    Layout(
        "mos-list",
        "official (format inferred)",
        "`MOS_SCID.txt` (or .csv / .xlsx)",
        "one image per line: `SCI<r>_<t>_<l>[.bmp]` MOS [std], whitespace/comma/tab separated, optional header; "
        "names without extension are found on disk",
        _screen_content_matcher(r"SCI\d+_\d+_\d+(\.\w+)?"),
        _read_screen_content,
    ),
)


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "agiqa-3k",
            _AGIQA_3K_LAYOUTS,
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
            _AGIQA_1K_LAYOUTS,
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
            _AIGCIQA2023_LAYOUTS,
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
            _AIGIQA_20K_LAYOUTS,
            (0.0, 5.0),
            True,
            None,
            False,
            aliases=("aigiqa20k", "aigcqa-30k-image", "aigcqa-30k", "ntire2024-aigc"),
            has_prompts=True,
            score_note="MOS on 0-5 (observed 0.12-4.98)",
        ),
        DatasetSpec(
            "koniq-10k",
            _KONIQ_LAYOUTS,
            (0.0, 100.0),
            True,
            None,
            False,
            ("quality", "quality_5"),
            ("koniq", "koniq10k", "koniq_10k"),
            score_note="target quality: official MOS 0-100; target quality_5: mean of the 1-5 ratings",
        ),
        DatasetSpec("spaq", _SPAQ_LAYOUTS, (0.0, 100.0), True, None, False, score_note="MOS 0-100"),
        DatasetSpec(
            "livec",
            _LIVEC_LAYOUTS,
            (0.0, 100.0),
            True,
            None,
            False,
            aliases=("clive", "live-c", "live_challenge", "livechallenge", "live-challenge"),
            score_note="MOS 0-100",
        ),
        DatasetSpec(
            "kadid-10k",
            _KADID_LAYOUTS,
            (1.0, 5.0),
            True,
            None,
            False,
            aliases=("kadid", "kadid10k", "kadid_10k"),
            score_note="KADID 'DMOS' on 1-5, higher is better",
        ),
        DatasetSpec(
            "siqad",
            _SIQAD_LAYOUTS,
            (0.0, 100.0),
            False,
            None,
            False,
            score_note="DMOS (lower is better) on a roughly 0-100 scale",
        ),
        DatasetSpec("scid", _SCID_LAYOUTS, (0.0, 100.0), True, None, False, score_note="MOS on a roughly 0-100 scale"),
    )
}


def _spec(name: str) -> DatasetSpec:
    key = name.strip().lower()
    for spec in DATASETS.values():
        if key == spec.name or key in spec.aliases:
            return spec
    raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}")


def layout_rows() -> list[dict[str, Any]]:
    """One row per (dataset, layout): `dataset`, `layout` (key), `source`, `files`, `columns`, `auto` — the
    table docs/datasets.md prints."""
    return [
        {
            "dataset": spec.name,
            "layout": layout.key,
            "source": layout.source,
            "files": layout.files,
            "columns": layout.columns,
            "auto": layout.auto,
        }
        for spec in DATASETS.values()
        for layout in spec.layouts
    ]


# ---------------------------------------------------------------------------------------------
# Choosing the metadata file
# ---------------------------------------------------------------------------------------------


@dataclass
class _Candidate:
    layout: Layout
    order: int
    table: _Table


def _layout_list(spec: DatasetSpec) -> str:
    return "; ".join(f"{layout.files} ({layout.columns})" for layout in spec.layouts if layout.auto)


def _usable_reason(table: _Table) -> str | None:
    """Why a table read with a matching layout cannot be used (None: usable): no rows, or a score column that
    is not numeric."""
    scores = table.frame["mos"].to_numpy(float) if len(table.frame) else np.array([])
    finite = np.isfinite(scores)
    if not len(scores):
        return "no rows"
    if finite.mean() < 0.5:
        first_bad = int(table.frame[~finite].iloc[0]["source_row"])
        count = f"{int((~finite).sum())} of {len(scores)} rows"
        return f"column {table.mos_column!r} is not numeric ({count}, e.g. row {first_bad})"
    return None


def _comparable(table: _Table, include_training_images: bool) -> Any:
    frame = table.frame
    if "training_image" in frame.columns and not include_training_images:
        frame = frame[~frame["training_image"].astype(bool)]
    keys = frame["key"] if "key" in frame.columns else frame["file"].astype(str).map(_basename)
    pandas = _pandas()
    return pandas.DataFrame({"key": keys.astype(str).to_numpy(), "mos": frame["mos"].to_numpy(float)}).sort_values(
        ["key", "mos"], kind="stable"
    )


def _disagreement(first: _Table, second: _Table, tolerance: float, include_training_images: bool) -> str | None:
    """None when two tables list the same images with the same scores (within `tolerance`), else why not."""
    a = _comparable(first, include_training_images)
    b = _comparable(second, include_training_images)
    only_a = sorted(set(a["key"]) - set(b["key"]))
    only_b = sorted(set(b["key"]) - set(a["key"]))
    if only_a or only_b or len(a) != len(b):
        return (
            f"{first.path.name} lists {len(a)} rows and {second.path.name} {len(b)}; "
            f"{len(only_a)} image(s) only in the first (e.g. {only_a[:3]}), {len(only_b)} only in the second "
            f"(e.g. {only_b[:3]})"
        )
    difference = np.abs(a["mos"].to_numpy() - b["mos"].to_numpy())
    difference = np.where(np.isnan(difference), np.inf, difference)
    if (difference > tolerance).any():
        worst = int(np.argmax(difference))
        return (
            f"scores differ for {int((difference > tolerance).sum())} image(s), by up to {difference[worst]:.4g} "
            f"(e.g. {a['key'].iloc[worst]!r}: {a['mos'].iloc[worst]:.6g} vs {b['mos'].iloc[worst]:.6g}) on the "
            f"dataset's scale"
        )
    return None


def _select_table(
    spec: DatasetSpec, root: Path, target: str, metadata_file: Path | None, include_training_images: bool
) -> tuple[_Table, Layout]:
    """The metadata table to read: `metadata_file` (recognised by its content) or the one usable file under
    `root`; several usable files must agree, else `AmbiguousMetadataError`."""
    if metadata_file is not None:
        path = metadata_file if metadata_file.is_absolute() or metadata_file.exists() else root / metadata_file
        if not path.is_file():
            raise FileNotFoundError(f"{spec.name}: metadata file {path} does not exist")
        probe = _peek(path)
        for layout in spec.layouts:
            if layout.matches(probe, target):
                return layout.read(path, root, target), layout
        found = probe.error or (
            f"variables {[v for v, _ in probe.variables]}" if probe.variables else f"first row {list(probe.header)}"
        )
        raise ValueError(
            f"{path}: not a metadata file of {spec.name} for target {target!r} ({found}); expected one of: "
            + "; ".join(f"{layout.files}: {layout.columns}" for layout in spec.layouts)
        )

    usable: list[_Candidate] = []
    rejected: list[str] = []
    for path in _candidate_files(root):
        probe = _peek(path)
        if probe.error:
            rejected.append(f"{path.relative_to(root)}: {probe.error}")
            continue
        matched = False
        for order, layout in enumerate(spec.layouts):
            if not layout.matches(probe, target):
                continue
            matched = True
            if not layout.auto:
                rejected.append(f"{path.relative_to(root)} ({layout.key}): read only when named with metadata_file=")
                break
            try:
                table = layout.read(path, root, target)
            except BadRowsError:
                raise
            except (ValueError, KeyError, OSError, IndexError) as error:
                rejected.append(f"{path.relative_to(root)} ({layout.key}): {error}")
                continue
            reason = _usable_reason(table)
            if reason:
                rejected.append(f"{path.relative_to(root)} ({layout.key}): {reason}")
            else:
                usable.append(_Candidate(layout, order, table))
            break
        if not matched:
            shown = f"variables {[v for v, _ in probe.variables]}" if probe.variables else f"{list(probe.header)[:8]}"
            rejected.append(f"{path.relative_to(root)}: no {spec.name} layout matches {shown}")
    if not usable:
        examined = "; ".join(rejected[:10]) + (f"; ... ({len(rejected) - 10} more)" if len(rejected) > 10 else "")
        raise FileNotFoundError(
            f"{spec.name}: no usable metadata file under {root} (searched {_SEARCH_DEPTH} folder levels, split "
            f"folders and files left out). Looked for: {_layout_list(spec)}. "
            + (f"Examined: {examined}. " if rejected else "Found no table or .mat file. ")
            + "Pass metadata_file= to name one."
        )
    usable.sort(key=lambda c: (c.order, -len(c.table.frame.columns), str(c.table.path)))
    chosen = usable[0]
    low, high = spec.mos_range
    tolerance = 1e-3 * (high - low)
    for other in usable[1:]:
        reason = _disagreement(chosen.table, other.table, tolerance, include_training_images)
        if reason:
            listed = ", ".join(f"{c.table.path} ({c.layout.key}, {len(c.table.frame)} rows)" for c in usable)
            raise AmbiguousMetadataError(
                f"{spec.name}: {len(usable)} usable metadata files under {root} disagree: {listed}. {reason}. "
                "Pass metadata_file= to choose one."
            )
    if len(usable) > 1:
        logger.info(
            "%s: %d metadata files agree; reading %s (%s), not %s",
            spec.name,
            len(usable),
            chosen.table.path,
            chosen.layout.key,
            [str(c.table.path) for c in usable[1:]],
        )
    return chosen.table, chosen.layout


# ---------------------------------------------------------------------------------------------
# Building the datasets.Dataset
# ---------------------------------------------------------------------------------------------


def _report_bad_rows(problem: str, table: _Table, rows: Any, on_bad_rows: str, hint: str = "") -> None:
    def label(row: Any) -> str:
        key = getattr(row, "key", None)
        return str(key) if isinstance(key, str) and key else str(row.file)

    examples = ", ".join(
        f"row {int(r.source_row)} ({label(r)!r})" for r in rows.head(_EXAMPLES_SHOWN).itertuples(index=False)
    )
    message = f"{table.path}: {len(rows)} row(s) {problem}: {examples}{' ...' if len(rows) > _EXAMPLES_SHOWN else ''}"
    if on_bad_rows == "error":
        raise BadRowsError(f"{message}{hint}. Pass on_bad_rows='skip' to skip them with a logged count.")
    logger.warning("%s; skipped %d row(s)", message, len(rows))


_IMAGE_FOLDER_SAMPLE = 300  # listed files checked per candidate image folder when choosing one


def _image_folder_candidates(table: _Table, root: Path) -> list[Path]:
    """`table.image_dirs` under the root and under every folder between the root and the metadata file."""
    bases = [root]
    try:
        relative = table.path.parent.relative_to(root)
    except ValueError:
        relative = None
    if relative is not None:
        for depth in range(1, len(relative.parts) + 1):
            bases.append(root.joinpath(*relative.parts[:depth]))
    candidates: list[Path] = []
    for base in bases:
        for folder in table.image_dirs:
            path = base / folder if folder else base
            if path not in candidates:
                candidates.append(path)
    return candidates


def _resolve_image_folder(table: _Table, root: Path, image_dir: str | Path | None) -> Path:
    if image_dir is not None:
        folder = Path(image_dir)
        return folder if folder.is_absolute() else root / folder
    everything = table.frame["file"].tolist()
    folders = [f for f in _image_folder_candidates(table, root) if f.is_dir()]
    sample = everything
    if len(everything) > _IMAGE_FOLDER_SAMPLE:
        step = len(everything) / _IMAGE_FOLDER_SAMPLE
        sample = [everything[int(i * step)] for i in range(_IMAGE_FOLDER_SAMPLE)]
    for files in (sample, everything) if sample is not everything else (everything,):
        best, best_count = root, 0
        for folder in folders:
            count = sum((folder / _resolve_extension(folder, f)).is_file() for f in files)
            if count > best_count:
                best, best_count = folder, count
            if count == len(files):
                break
        if best_count:
            return best
    return root


def _resolve_extension(folder: Path, file: str) -> str:
    """Screen-content lists sometimes give names without an extension: find the file on disk."""
    if Path(file).suffix.lower() in _IMAGE_SUFFIXES:
        return file
    for suffix in _IMAGE_SUFFIXES + tuple(s.upper() for s in _IMAGE_SUFFIXES):
        if (folder / f"{file}{suffix}").is_file():
            return f"{file}{suffix}"
    return file


_TEXT_COLUMNS = ("file", "key", "name", "prompt", "image")
_SCORE_COLUMN = re.compile(r"(^|_)(mos|mosz\d*|dmos|std|sd|var|score)(_|$|\d)", re.IGNORECASE)


def _numbers_as_numbers(frame: Any) -> Any:
    """Pass-through text columns whose every non-empty value is a number become numeric: score-like columns
    (mos, std, sd, var, score, ...) float64, integral columns without gaps int64, others float64."""
    pandas = _pandas()
    for column in frame.columns:
        if column in _TEXT_COLUMNS or pandas.api.types.is_numeric_dtype(frame[column]):
            continue
        values = frame[column]
        present = values.notna() & (values.astype(str).str.strip() != "")
        if not present.any() or values.map(lambda v: isinstance(v, bool)).any():
            continue
        numbers = pandas.to_numeric(values.where(present), errors="coerce")
        if numbers[present].isna().any():
            continue  # some value is not a number: a text column
        integral = bool(present.all() and np.all(np.mod(numbers.to_numpy(float), 1) == 0))
        if integral and not _SCORE_COLUMN.search(str(column)):
            frame[column] = numbers.astype("int64")
        else:
            frame[column] = numbers.astype("float64")
    return frame


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
    """Loads one dataset from a published local layout.

    Args:
        name: One of `DATASETS` (agiqa-3k, agiqa-1k, aigciqa2023, aigiqa-20k, koniq-10k, spaq, livec, kadid-10k,
            siqad, scid) or an alias.
        root: The folder the user downloaded. Metadata files are searched for in it and its sub-folders (three
            levels, split folders left out) and chosen by content (see the module docstring).
        target: Which score becomes `mos` (e.g. "quality" or "alignment" for AGIQA-3K; "quality",
            "authenticity" or "correspondence" for AIGCIQA2023; "quality_5" for KonIQ's 1-5 scale).
        image_dir: Image folder (relative to `root` or absolute). Default: the known sub-folder (of the root or
            of a folder between it and the metadata file) that holds the most listed images.
        metadata_file: Read this metadata file (relative to `root` or absolute) instead of choosing one; it must
            still have one of the dataset's layouts.
        check_images: Check that every image file exists (set False to work with metadata only).
        on_bad_rows: "error" (default) raises `BadRowsError` naming the file and rows; "skip" drops them and
            logs how many and which.
        duplicates: What to do with a row key listed more than once (AGIQA-1K has one with two MOS values):
            "keep" both rows (logged), "mean" (average, logged), "first" (logged) or "error".
        include_training_images: LIVE Challenge only: keep the 7 study-training images t1..t7.bmp.

    Returns:
        A `datasets.Dataset` (columns described in the module docstring); `mos_range(dataset)` gives the scale.

    Raises:
        FileNotFoundError: No usable metadata file (the message lists what was looked for and what was found),
            or no listed image exists.
        AmbiguousMetadataError: Several usable metadata files that disagree (listed; pass `metadata_file=`).
        BadRowsError: Bad rows with `on_bad_rows="error"`.
    """
    import datasets

    if on_bad_rows not in ("error", "skip"):
        raise ValueError(f"on_bad_rows={on_bad_rows!r}; expected 'error' or 'skip'")
    if duplicates not in ("keep", "mean", "first", "error"):
        raise ValueError(f"duplicates={duplicates!r}; expected 'keep', 'mean', 'first' or 'error'")
    spec = _spec(name)
    _check_target(spec.name, target, spec.targets)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{spec.name}: dataset folder {root} does not exist")
    table, layout = _select_table(
        spec, root, target, Path(metadata_file) if metadata_file is not None else None, include_training_images
    )
    frame = table.frame.reset_index(drop=True)
    for column, default in (("mos_std", np.nan), ("prompt", None)):
        if column not in frame.columns:
            frame[column] = default
    frame["mos"] = _pandas().to_numeric(frame["mos"], errors="coerce").astype(float)
    frame["mos_std"] = _pandas().to_numeric(frame["mos_std"], errors="coerce").astype(float)
    frame["file"] = frame["file"].astype(str).str.strip()
    keyed = "key" in frame.columns  # else the key is the file's base name (set again once extensions are found)
    if not keyed:
        frame["key"] = [_basename(f) for f in frame["file"]]
    if "training_image" in frame.columns and not include_training_images:
        excluded = int(frame["training_image"].sum())
        if excluded:
            logger.info("%s: excluding the %d study-training images (t1..t7.bmp)", spec.name, excluded)
        frame = frame[~frame["training_image"].astype(bool)].reset_index(drop=True)
    table.frame = frame

    bad_scores = frame[~np.isfinite(frame["mos"].to_numpy(float))]
    if len(bad_scores):
        _report_bad_rows(f"have no finite '{target}' score", table, bad_scores, on_bad_rows)
        frame = frame.drop(index=bad_scores.index).reset_index(drop=True)
        table.frame = frame

    frame = _handle_duplicates(table, spec.name, duplicates)

    folder = _resolve_image_folder(table, root, image_dir)
    frame["file"] = [_resolve_extension(folder, f) for f in frame["file"]]
    if not keyed:
        frame["key"] = [_basename(f) for f in frame["file"]]
    paths = [str(folder / f) for f in frame["file"]]
    if check_images:
        exists = np.array([Path(p).is_file() for p in paths])
        if not exists.any() and len(frame):
            looked = [str(p) for p in _image_folder_candidates(table, root)]
            raise FileNotFoundError(
                f"{spec.name}: none of the {len(frame)} images listed in {table.path} is in {folder} (looked in "
                f"{looked}); pass image_dir= the folder holding e.g. {frame['file'].iloc[0]!r}"
            )
        if not exists.all():
            missing = frame[~exists]
            _report_bad_rows(f"name an image missing from {folder}", table, missing, on_bad_rows)
            frame = frame[exists].reset_index(drop=True)
            paths = [p for p, ok in zip(paths, exists, strict=True) if ok]

    frame = frame.drop(columns=[c for c in ("name", "image") if c in frame.columns])  # replaced just below
    frame.insert(0, "image", paths)
    frame.insert(1, "name", frame.pop("key").astype(str))
    frame = frame.drop(columns=[c for c in ("training_image",) if c in frame.columns])
    frame = _numbers_as_numbers(frame)
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
        layout=layout.key,
        layout_source=layout.source,
        image_folder=str(folder),
        **table.notes,
    )


def _handle_duplicates(table: _Table, dataset: str, duplicates: str) -> Any:
    frame = table.frame
    repeated = frame[frame.duplicated("key", keep=False)]
    if not len(repeated):
        return frame
    groups = repeated.groupby("key", sort=False)
    details = "; ".join(
        f"{key!r} at rows {group['source_row'].tolist()} with MOS {[round(v, 4) for v in group['mos']]}"
        for key, group in list(groups)[:_EXAMPLES_SHOWN]
    )
    message = f"{table.path}: {groups.ngroups} image name(s) listed more than once: {details}"
    if duplicates == "error":
        raise BadRowsError(f"{message}. Choose duplicates='keep', 'mean' or 'first'.")
    logger.warning("%s (%s: duplicates=%r)", message, dataset, duplicates)
    if duplicates == "keep":
        return frame
    if duplicates == "first":
        return frame.drop_duplicates("key", keep="first").reset_index(drop=True)
    means = frame.groupby("key", sort=False)["mos"].transform("mean")
    frame = frame.assign(mos=means).drop_duplicates("key", keep="first").reset_index(drop=True)
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
          `<splits_root>/<split>/<prefix>_{train,val,test}_clip.txt`; a train file and a val and/or test file
          are needed. `splits_root` defaults to the first of `<root>/splits`, `<root>/liqe/splits`, `<root>`
          holding `<split>/`, else the one folder named `<split>` with split files under `root` (3 levels);
          a `splits_root` that holds the split files itself (MA-AGIQA's `train.csv`/`test.csv`) is used as is.
          Rows are matched to the dataset by row key (`<model>/<image_name>` where the file has both columns,
          else the image's base name) and, for a key listed twice, by the MOS the split file gives. A split row
          naming an unknown image raises `BadRowsError` (or is skipped and counted with `on_bad_rows="skip"`).
        * "prompt-disjoint": a random split of the prompts; no prompt has images in two splits. `split` (an
          int) is added to `seed`, so splits 1..N are N different repetitions.
        * "random": a random split of the images, seeded likewise.
        * "set-column": the dataset's own `set` column (KonIQ-10k: training, validation, test).

    `load_kwargs` go to `load_iqa_dataset` (target, image_dir, check_images, metadata_file, ...).
    """
    import datasets

    if protocol not in _PROTOCOLS:
        raise ValueError(f"protocol={protocol!r}; expected one of {_PROTOCOLS}")
    if not 0 < val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError(f"val_fraction={val_fraction}, test_fraction={test_fraction} must leave images to train on")
    full = load_iqa_dataset(name, root, on_bad_rows=on_bad_rows, **load_kwargs)
    metadata = dataset_metadata(full)
    part_files: dict[str, Path] = {}
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
        indices, source, part_files = _split_from_files(full, _spec(name), Path(root), split, splits_root, on_bad_rows)
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
        part = {"split": split_name, "split_source": source}
        if split_name in part_files:
            part["split_file"] = str(part_files[split_name])  # training names it when the part is empty
        result[split_name] = describe_dataset(subset, **{**metadata, **part})
    return datasets.DatasetDict(result)


def _has_split_files(folder: Path) -> bool:
    files = _split_files_in(folder)
    return "train" in files and ("validation" in files or "test" in files)


def _find_split_folder(spec: DatasetSpec, root: Path, split: str | int, splits_root: str | Path | None) -> Path:
    name = str(split)
    if splits_root is not None:
        base = Path(splits_root)
        if (base / name).is_dir():
            return base / name
        if base.is_dir() and _has_split_files(base):
            return base  # a folder holding one split's files (MA-AGIQA: train.csv, test.csv)
        raise FileNotFoundError(f"{spec.name}: no split folder {name!r} in {base}, and no split files in it")
    candidates = [root / "splits", root / "liqe" / "splits", root]
    for base in candidates:
        if (base / name).is_dir():
            return base / name
    found: list[Path] = []

    def walk(folder: Path, depth: int) -> None:
        try:
            entries = sorted(
                (e for e in os.scandir(folder) if e.is_dir() and not e.name.startswith(".")), key=lambda e: e.name
            )
        except OSError:
            return
        for entry in entries:
            path = Path(entry.path)
            if entry.name == name and _has_split_files(path):
                found.append(path)
            elif depth < _SEARCH_DEPTH and not entry.name.isdigit():
                walk(path, depth + 1)

    walk(root, 0)
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise ValueError(f"{spec.name}: several split folders {name!r} under {root}: {found}; pass splits_root=")
    raise FileNotFoundError(
        f"{spec.name}: no split folder {name!r} under {[str(c) for c in candidates]} or deeper in {root} "
        "(pass splits_root=)"
    )


_SPLIT_NAME_COLUMNS = ("name", "image", "image_name", "img_name", "dist_img", "dist_name", "image name", "file")
_SPLIT_MOS_COLUMNS = ("mos", "mos_quality", "mosz1", "dmos", "score")


def _read_split_file(path: Path) -> Any:
    """Row keys (and MOS where given) of a split file: an IPCE / official CSV with or without header (a first
    row without numbers and image names is the header) or a LIQE tab-separated list. Returns a frame with
    `key`, `file`, `mos` (NaN where absent) and `source_row`."""
    pandas = _pandas()
    if path.suffix.lower() == ".txt":
        frame = _read_text_lines(path, ["file", "mos"], 1)
        return pandas.DataFrame(
            {
                "key": [_basename(f) for f in frame["file"]],
                "file": frame["file"],
                "mos": _to_float(frame, "mos"),
                "source_row": frame["source_row"],
            }
        )
    options: dict[str, Any] = {"encoding": "utf-8-sig", "keep_default_na": False, "na_values": [""], "dtype": str}
    raw = pandas.read_csv(path, header=None, **options)
    if len(raw) and _first_row_is_header(raw.iloc[0].tolist()):
        frame = raw.iloc[1:].reset_index(drop=True)
        frame.columns = [str(c).strip() for c in raw.iloc[0].tolist()]
        source_row = np.arange(2, len(frame) + 2)
    else:
        frame = raw
        frame.columns = [str(c) for c in frame.columns]
        source_row = np.arange(1, len(frame) + 1)
    lower = {c.lower(): c for c in frame.columns}
    if "model" in lower and "image_name" in lower:
        files = [f"{m}/{n}" for m, n in zip(frame[lower["model"]], frame[lower["image_name"]], strict=True)]
        keys = files
    else:
        column = next((lower[c] for c in _SPLIT_NAME_COLUMNS if c in lower), None)
        if column is None:
            if "0" not in frame.columns:
                raise ValueError(f"{path}: no image-name column ({list(_SPLIT_NAME_COLUMNS)}); columns {list(lower)}")
            column = "0"  # headerless: the first column names the image
        files = frame[column].astype(str).tolist()
        keys = [_basename(f) for f in files]
    mos_column = next((lower[c] for c in _SPLIT_MOS_COLUMNS if c in lower), None)
    if mos_column is None and "0" in frame.columns:  # headerless: the first numeric column after the name
        numeric = [c for c in frame.columns[1:] if pandas.to_numeric(frame[c], errors="coerce").notna().all()]
        mos_column = numeric[0] if numeric else None
    mos = _to_float(frame, mos_column) if mos_column else np.full(len(frame), np.nan)
    return pandas.DataFrame({"key": keys, "file": files, "mos": mos, "source_row": source_row})


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
) -> tuple[dict[str, list[int]], str, dict[str, Path]]:
    """Row indices of each part of one split, a description of where they came from, and each part's file."""
    folder = _find_split_folder(spec, root, split, splits_root)
    files = _split_files_in(folder)
    if "train" not in files or not ({"validation", "test"} & set(files)):
        raise FileNotFoundError(
            f"{spec.name}: {folder} needs a train split file and a val and/or test one; found {sorted(files)}"
        )
    by_key: dict[str, list[int]] = {}
    for index, key in enumerate(full["name"]):
        by_key.setdefault(key, []).append(index)
    mos = np.asarray(full["mos"], dtype=float)
    metadata = dataset_metadata(full)
    ipce_scale = _AIGCIQA2023_IPCE_SCALE if metadata.get("ipce_mosz_times_20") else 1.0
    indices: dict[str, list[int]] = {}
    for split_name, path in files.items():
        rows = _read_split_file(path)
        chosen: list[int] = []
        unknown = []
        used: set[int] = set()
        for row in rows.itertuples(index=False):
            candidates = by_key.get(row.key, [])
            if not candidates:
                unknown.append(row)
                continue
            if len(candidates) > 1 and math.isfinite(row.mos):
                # A key listed twice (AGIQA-1K): take the unused row whose MOS matches the split file's.
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
    all_names = full["name"]
    for held_out in ("validation", "test"):
        overlap = set(indices["train"]) & set(indices.get(held_out, []))
        if overlap:
            names = sorted({all_names[i] for i in list(overlap)[:_EXAMPLES_SHOWN]})
            logger.warning(
                "%s split %s: %d image(s) in both train and %s, e.g. %s",
                spec.name,
                split,
                len(overlap),
                held_out,
                names,
            )
    return indices, f"split files in {folder}", files


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
    # Row keys may hold a folder (AIGCIQA2023: <model>/<image_name>): it is kept as a sub-folder.
    paths = [
        PurePosixPath(*[p for p in str(n).replace("\\", "/").split("/") if p not in ("", ".", "..")]) for n in names
    ]
    if len(set(paths)) != len(paths):  # duplicated names (AGIQA-1K) get the row number as a prefix
        paths = [p.with_name(f"{i:06d}_{p.name}") for i, p in enumerate(paths)]
    file_names = []
    for index, (image, relative) in enumerate(zip(raw["image"], paths, strict=True)):
        data = image.get("bytes")
        source = image.get("path")
        if data is None and source:
            data = Path(source).read_bytes()
        if data is None:
            raise ValueError(f"row {index} ({names[index]!r}) has neither image bytes nor a readable path")
        suffix = Path(source or relative.name).suffix or ".png"
        file_name = str(relative.with_name(Path(relative.name).stem + suffix.lower()))
        (split_folder / file_name).parent.mkdir(parents=True, exist_ok=True)
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
