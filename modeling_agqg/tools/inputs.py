"""Input discovery for `agqg score`: turns the command's INPUT arguments into a lazy stream of items.

An INPUT is one of

* an image file (any extension: a file named explicitly is always tried);
* a folder, walked recursively for files with an image extension (`IMAGE_EXTENSIONS`);
* a glob pattern (`renders/**/*.png`, recursive);
* a list file: `.txt`/`.lst` (one path per line, `#` comments) or `.csv`/`.tsv` (a path column and
  optionally a generation-prompt column); relative paths resolve against `--root`, else the list's folder;
* a dataset saved with `datasets.Dataset.save_to_disk` (a folder with `dataset_info.json`/`state.json`,
  or `dataset_dict.json` for several splits) with an image column.

Everything is a generator: a folder of 100k files is walked entry by entry (in `os.scandir` order, which
is stable for an unchanged folder), a list file is read row by row, a dataset is indexed lazily. The only
state that grows with the number of inputs is the set of keys already seen, used to drop duplicates when
inputs overlap (a folder and a glob over it).
"""

from __future__ import annotations

import csv
import glob
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

IMAGE_EXTENSIONS = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".webp",
        ".bmp",
        ".gif",
        ".tif",
        ".tiff",
        ".ppm",
        ".pgm",
        ".pbm",
        ".pnm",
        ".tga",
    }
)
LIST_EXTENSIONS = frozenset({".txt", ".lst", ".csv", ".tsv"})
PATH_COLUMN_CANDIDATES = ("path", "image_path", "image", "file", "filename", "file_name", "name", "image_name")


class InputError(ValueError):
    """A command-line input that cannot be used at all (missing, empty glob, bad list file)."""


@dataclass(frozen=True)
class DatasetRef:
    """Row `index` of split `split` (None for a plain `Dataset`) of the dataset saved in `folder`."""

    folder: str
    split: str | None
    index: int
    image_column: str
    prompt_column: str | None


@dataclass(frozen=True)
class ScoringItem:
    """One thing to score.

    Attributes:
        key: The unique name written to the `path` column (a file path, or `folder#split/index` for
            dataset rows, or `<image i>` for in-memory images).
        path: File to read, when the item is a file.
        dataset_row: Where to read the image (and prompt), when the item is a dataset row.
        image: An in-memory PIL image (Python API only).
        prompt: The generation prompt for alignment scoring, if any.
        error: A reason the item cannot be scored, known before reading it (an empty list entry).
    """

    key: str
    path: str | None = None
    dataset_row: DatasetRef | None = None
    image: Any = field(default=None, compare=False)
    prompt: str | None = None
    error: str | None = None


def is_saved_dataset(folder: str) -> bool:
    """Whether `folder` holds a `save_to_disk` dataset (one split or a `DatasetDict`)."""
    names = ("dataset_dict.json", "state.json")
    return any(os.path.isfile(os.path.join(folder, name)) for name in names)


def _walk_images(folder: str) -> Iterator[str]:
    """Image files under `folder`, depth first, one directory listing open per level (never a full list)."""
    try:
        entries = os.scandir(folder)
    except OSError:
        return
    with entries:
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    yield from _walk_images(entry.path)
                elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS and entry.is_file():
                    yield entry.path
            except OSError:
                continue


def _has_glob_magic(text: str) -> bool:
    return any(char in text for char in "*?[")


def is_url(text: str) -> bool:
    """Whether `text` is an http(s) URL (never fetched: the loader refuses it, naming the reason)."""
    return text.lower().startswith(("http://", "https://"))


def _resolve(path: str, base: str) -> str:
    if is_url(path):  # kept as it is, so that its error says it is a URL rather than a missing file
        return path
    path = os.path.expanduser(path)
    return path if os.path.isabs(path) else os.path.join(base, path)


def _pick_column(columns: Sequence[str], wanted: str | None, candidates: Sequence[str], source: str, role: str) -> str:
    by_lower = {column.strip().lower(): column for column in columns}
    if wanted is not None:
        if wanted in columns:
            return wanted
        if wanted.lower() in by_lower:
            return by_lower[wanted.lower()]
        raise InputError(f"{source}: no {role} column {wanted!r}; columns are {list(columns)}")
    for candidate in candidates:
        if candidate in by_lower:
            return by_lower[candidate]
    raise InputError(
        f"{source}: cannot tell which column holds the {role}; pass --path-column (columns: {list(columns)})"
    )


def _iter_list_file(
    list_file: str, root: str | None, path_column: str | None, prompt_column: str | None
) -> Iterator[ScoringItem]:
    base = root if root is not None else os.path.dirname(os.path.abspath(list_file))
    extension = os.path.splitext(list_file)[1].lower()
    if extension in (".txt", ".lst"):
        if prompt_column is not None:
            raise InputError(f"{list_file}: --prompt-column needs a CSV/TSV list; this is a plain list of paths")
        with open(list_file, encoding="utf-8-sig") as handle:
            for line in handle:
                text = line.strip()
                if text and not text.startswith("#"):
                    yield ScoringItem(key=_resolve(text, base), path=_resolve(text, base))
        return
    delimiter = "\t" if extension == ".tsv" else ","
    with open(list_file, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        if not reader.fieldnames:
            raise InputError(f"{list_file}: empty list file (no header row)")
        path_key = _pick_column(reader.fieldnames, path_column, PATH_COLUMN_CANDIDATES, list_file, "image path")
        prompt_key = None
        if prompt_column is not None:
            prompt_key = _pick_column(reader.fieldnames, prompt_column, (), list_file, "prompt")
        for row in reader:
            value = (row.get(path_key) or "").strip()
            prompt = row.get(prompt_key) if prompt_key is not None else None
            if not value:
                line = reader.line_num
                yield ScoringItem(key=f"{list_file}:{line}", error=f"{list_file}, line {line}: empty {path_key!r}")
                continue
            yield ScoringItem(key=_resolve(value, base), path=_resolve(value, base), prompt=prompt)


def _load_dataset(folder: str) -> Any:
    try:
        import datasets
    except ImportError as error:  # pragma: no cover - datasets is in the train/test extras
        raise InputError(f"{folder} is a saved dataset; reading it needs `pip install datasets`") from error
    return datasets.load_from_disk(folder)


def dataset_splits(dataset: Any) -> list[tuple[str | None, Any]]:
    """[(split name or None, Dataset)] for a `Dataset` or a `DatasetDict`."""
    if hasattr(dataset, "keys") and not hasattr(dataset, "features"):
        return [(name, dataset[name]) for name in dataset.keys()]
    return [(None, dataset)]


def _iter_dataset(folder: str, image_column: str, prompt_column: str | None) -> Iterator[ScoringItem]:
    for split, table in dataset_splits(_load_dataset(folder)):
        where = f"{folder}" + (f" (split {split!r})" if split else "")
        if image_column not in table.column_names:
            raise InputError(f"{where}: no image column {image_column!r}; columns are {table.column_names}")
        if prompt_column is not None and prompt_column not in table.column_names:
            raise InputError(f"{where}: no prompt column {prompt_column!r}; columns are {table.column_names}")
        prefix = f"{folder}#{split}/" if split else f"{folder}#"
        for index in range(table.num_rows):
            ref = DatasetRef(folder, split, index, image_column, prompt_column)
            yield ScoringItem(key=f"{prefix}{index}", dataset_row=ref)


def _iter_one_input(
    spec: str,
    root: str | None,
    path_column: str | None,
    prompt_column: str | None,
    image_column: str,
) -> Iterator[ScoringItem]:
    if os.path.isdir(spec):
        if is_saved_dataset(spec):
            yield from _iter_dataset(spec, image_column, prompt_column)
        else:
            for path in _walk_images(spec):
                yield ScoringItem(key=path, path=path)
    elif os.path.isfile(spec):
        if os.path.splitext(spec)[1].lower() in LIST_EXTENSIONS:
            yield from _iter_list_file(spec, root, path_column, prompt_column)
        else:
            yield ScoringItem(key=spec, path=spec)
    elif _has_glob_magic(spec):
        for match in glob.iglob(os.path.expanduser(spec), recursive=True):
            if os.path.isdir(match):
                for path in _walk_images(match):
                    yield ScoringItem(key=path, path=path)
            elif os.path.splitext(match)[1].lower() in IMAGE_EXTENSIONS:
                yield ScoringItem(key=match, path=match)
    else:
        raise InputError(f"input {spec!r} does not exist (not a file, a folder or a glob pattern)")


def check_inputs(inputs: Sequence[str]) -> None:
    """Fails early, naming the input, when an INPUT is neither a file, a folder with an image file in it (or a
    saved dataset), nor a glob matching something; and for URLs, which are not fetched."""
    for spec in inputs:
        if is_url(spec):
            raise InputError(f"input {spec!r} is a URL: URLs are not fetched; download the image and pass its path")
        if os.path.isdir(spec):
            if not is_saved_dataset(spec) and next(_walk_images(spec), None) is None:
                raise InputError(
                    f"input {spec!r} is a folder with no image files in it (looked for "
                    f"{' '.join(sorted(IMAGE_EXTENSIONS))}, recursively)"
                )
            continue
        if os.path.exists(spec):
            continue
        if not _has_glob_magic(spec):
            raise InputError(f"input {spec!r} does not exist (not a file, a folder or a glob pattern)")
        if next(glob.iglob(os.path.expanduser(spec), recursive=True), None) is None:
            raise InputError(f"glob {spec!r} matches nothing")


def iter_items(
    inputs: Sequence[str],
    *,
    root: str | None = None,
    path_column: str | None = None,
    prompt_column: str | None = None,
    image_column: str = "image",
) -> Iterator[ScoringItem]:
    """All items of all INPUTs in order, each key once (later duplicates are dropped).

    Args:
        inputs: The INPUT arguments (files, folders, globs, list files, saved datasets).
        root: Base folder for relative paths in list files (default: the list file's folder).
        path_column: Column of a CSV/TSV list holding the image paths (default: guessed).
        prompt_column: Column (CSV/TSV list or dataset) holding the generation prompt.
        image_column: Image column of saved datasets.
    """
    seen: set[str] = set()
    for spec in inputs:
        for item in _iter_one_input(spec, root, path_column, prompt_column, image_column):
            key = os.path.normpath(item.key) if item.path is not None else item.key
            if key in seen:
                continue
            seen.add(key)
            yield item
