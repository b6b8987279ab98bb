"""The streaming dataset behind `agqg score`: chunks of inputs decoded and preprocessed in DataLoader workers.

The input stream (`_scoring_inputs.iter_items`) is cut into chunks of `batch_size` consecutive items; chunk
`j` always holds the same items, whatever was done before, so a chunk's batch tensor (and hence every score
in it, bit for bit) is the same in a resumed run as in an uninterrupted one. Chunks are dealt out
round-robin: to processes (`j % world_size == rank`) and, within a process, to DataLoader workers in turn,
which is the order in which the DataLoader hands batches back, so rows come out in input order.

Each worker walks the input stream itself (cheap: names only), decodes only its own chunks and skips chunks
whose every item is already in the output or errors file. It yields one `ChunkBatch` per chunk, empty when
the chunk was already done, so the DataLoader's round-robin never gets out of step.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..views_agqg import ImageLoadError, PixelSpec, ViewProtocol, load_view_image, make_views
from .inputs import DatasetRef, ScoringItem, dataset_splits, iter_items


@dataclass
class ChunkBatch:
    """The decoded images of one chunk.

    Attributes:
        chunk: Index of the chunk in the whole input stream.
        keys: Keys of the images that decoded, in input order.
        write: For each of `keys`, whether its row is still missing from the output (resume).
        pixel_values: float32 (len(keys) * views, 3, h, w) from `make_views`, the views of one image adjacent.
        prompts: Generation prompts of `keys` (None without a prompt column).
        errors: (key, reason) of the chunk's items that could not be read and are not yet in the errors file.
        new_items: Number of this chunk's items not done before this run (for the progress bar).
    """

    chunk: int
    keys: list[str] = field(default_factory=list)
    write: list[bool] = field(default_factory=list)
    pixel_values: torch.Tensor | None = None
    prompts: list[str] | None = None
    errors: list[tuple[str, str]] = field(default_factory=list)
    new_items: int = 0


def iter_chunks(items: Iterator[ScoringItem], chunk_size: int) -> Iterator[tuple[int, list[ScoringItem]]]:
    """(chunk index, items) for consecutive runs of `chunk_size` items."""
    chunk: list[ScoringItem] = []
    index = 0
    for item in items:
        chunk.append(item)
        if len(chunk) == chunk_size:
            yield index, chunk
            chunk, index = [], index + 1
    if chunk:
        yield index, chunk


class _DatasetRowReader:
    """Reads rows of saved datasets with images left encoded (decoded here, so failures are per row)."""

    def __init__(self) -> None:
        self._tables: dict[tuple[str, str | None, str], Any] = {}

    def _table(self, ref: DatasetRef) -> Any:
        key = (ref.folder, ref.split, ref.image_column)
        if key not in self._tables:
            import datasets

            for split, table in dataset_splits(datasets.load_from_disk(ref.folder)):
                if isinstance(table.features.get(ref.image_column), datasets.Image):
                    table = table.cast_column(ref.image_column, datasets.Image(decode=False))
                self._tables[(ref.folder, split, ref.image_column)] = table
        return self._tables[key]

    def read(self, ref: DatasetRef) -> tuple[Any, str | None]:
        """(image source: bytes, a path or a PIL image, prompt) of one row."""
        row = self._table(ref)[ref.index]
        value = row[ref.image_column]
        prompt = row[ref.prompt_column] if ref.prompt_column is not None else None
        if isinstance(value, dict):
            if value.get("bytes"):
                return value["bytes"], prompt
            if value.get("path"):
                path = value["path"]
                return (path if os.path.isabs(path) else os.path.join(ref.folder, path)), prompt
            raise ImageLoadError("image cell holds neither bytes nor a path")
        if isinstance(value, str):
            return (value if os.path.isabs(value) else os.path.join(ref.folder, value)), prompt
        if value is None:
            raise ImageLoadError("image cell is empty")
        return value, prompt


@dataclass
class StreamConfig:
    """Everything a worker needs (picklable)."""

    inputs: Sequence[str]
    batch_size: int
    protocol: ViewProtocol = field(default_factory=ViewProtocol)
    spec: PixelSpec | None = None
    image_processor: Any = None
    root: str | None = None
    path_column: str | None = None
    prompt_column: str | None = None
    image_column: str = "image"
    rank: int = 0
    world_size: int = 1


class ScoringStream(IterableDataset):
    """Yields one `ChunkBatch` per chunk assigned to this process and DataLoader worker.

    Args:
        config: Inputs, chunking and preprocessing.
        done_keys: Keys already in the output or errors file (skipped, chunk by chunk).
    """

    def __init__(self, config: StreamConfig, done_keys: frozenset[str] | set[str] = frozenset()) -> None:
        super().__init__()
        self.config = config
        self.done_keys = done_keys

    def items(self) -> Iterator[ScoringItem]:
        config = self.config
        return iter_items(
            config.inputs,
            root=config.root,
            path_column=config.path_column,
            prompt_column=config.prompt_column,
            image_column=config.image_column,
        )

    def my_chunks(self, worker: int = 0, num_workers: int = 1) -> Iterator[tuple[int, list[ScoringItem]]]:
        """The chunks of this process (`rank`) and worker, in order."""
        config = self.config
        local = 0
        for index, chunk in iter_chunks(self.items(), config.batch_size):
            if index % config.world_size != config.rank:
                continue
            if local % num_workers == worker:
                yield index, chunk
            local += 1

    def count_new_items(self) -> int:
        """Items of this process not yet done (the progress bar's total); walks names only."""
        return sum(sum(item.key not in self.done_keys for item in chunk) for _, chunk in self.my_chunks())

    def __iter__(self) -> Iterator[ChunkBatch]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        reader = _DatasetRowReader()
        for index, chunk in self.my_chunks(worker, num_workers):
            yield self.load_chunk(index, chunk, reader)

    def load_chunk(self, index: int, chunk: list[ScoringItem], reader: _DatasetRowReader | None = None) -> ChunkBatch:
        """Decodes and preprocesses every readable item of a chunk unless all of them are done already."""
        batch = ChunkBatch(chunk=index)
        pending = [item.key not in self.done_keys for item in chunk]
        batch.new_items = sum(pending)
        if not any(pending):
            return batch
        reader = reader or _DatasetRowReader()
        views: list[torch.Tensor] = []
        prompts: list[str] = []
        for item, is_new in zip(chunk, pending, strict=True):
            try:
                pixels, prompt = self._load_item(item, reader)
            except (ImageLoadError, OSError, ValueError, MemoryError) as error:
                if is_new:
                    batch.errors.append((item.key, _reason(error, item.key)))
                continue
            views.append(pixels)
            prompts.append("" if prompt is None else str(prompt))
            batch.keys.append(item.key)
            batch.write.append(is_new)
        if views:
            batch.pixel_values = torch.cat(views)
        if self.config.prompt_column is not None:
            batch.prompts = prompts
        return batch

    def _load_item(self, item: ScoringItem, reader: _DatasetRowReader) -> tuple[torch.Tensor, str | None]:
        config = self.config
        if item.error is not None:
            raise ImageLoadError(item.error)
        prompt = item.prompt
        if item.image is not None:
            source: Any = item.image
        elif item.dataset_row is not None:
            source, prompt = reader.read(item.dataset_row)
        else:
            source = item.path
        image = load_view_image(source, config.protocol, config.spec, item.key)
        return make_views(image, config.protocol, config.spec, processor=config.image_processor), prompt


def _reason(error: Exception, key: str) -> str:
    text = str(error) or type(error).__name__
    # Errors from load_image_file start with the input's name; the errors file has it in its own column.
    for prefix in (f"{key}: ", f"{key}:"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    return text.replace("\n", " ").strip()
