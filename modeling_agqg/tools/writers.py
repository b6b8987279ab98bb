"""Crash-safe, resumable result files for `agqg score`.

CSV and JSON Lines files are appended one batch at a time with a single `os.write` of whole lines on an
unbuffered file, so once the call returns the rows are in the operating system's page cache and survive
Ctrl-C or kill -9 of the process. A kill or a full disk in the middle of that write can leave a torn last
record, cut at any byte; reopening a file drops it (truncating after the last whole record, quote-aware for CSV
file names with newlines) and returns the keys already written, which the run then skips. A failed write is
reported as `OutputWriteError`, naming the file. Parquet cannot be appended safely (its footer is written
last), so rows go to `<out>.partial.jsonl` and become Parquet, streamed in row groups, when the run finishes.
"""

from __future__ import annotations

import csv
import heapq
import io
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

OUTPUT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
ERROR_COLUMNS = ("path", "reason")
CHUNK_FIELD = "_chunk"


class OutputFileError(ValueError):
    """An existing output file that cannot be resumed (different columns, unreadable)."""


class OutputWriteError(OSError):
    """A result file could not be written (full disk, no permission, ...); the rows written before are kept.

    The message names the file; `errno` is the operating system's error number when there is one.
    """

    def __init__(self, path: str, error: BaseException) -> None:
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        super().__init__(f"cannot write {path}: {reason}")
        self.path = path
        self.errno = getattr(error, "errno", None)


def output_format(path: str) -> str:
    """ "csv", "jsonl" or "parquet" from the extension of `path`."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in OUTPUT_FORMATS:
        raise OutputFileError(f"--out {path!r}: unknown format; use .csv, .jsonl or .parquet")
    return OUTPUT_FORMATS[extension]


def result_columns(grade_names: Sequence[str]) -> list[str]:
    """path, score, grade, prob_<grade> for each grade (worst first), ability."""
    return ["path", "score", "grade", *[f"prob_{name}" for name in grade_names], "ability"]


_BLOCK_BYTES = 1 << 20
_QUOTE_OR_NEWLINE = re.compile(rb'["\n]')


def _whole_records_length(path: str, fmt: str) -> int:
    """Length in bytes of the longest prefix of `path` that holds only whole records.

    A JSON line cannot contain a raw newline (JSON escapes it), so the records end at the last newline. A CSV
    record can: a quoted field may hold newlines (file names may), so a newline ends a record only outside
    quotes. The csv module writes a quote only to open or close a quoted field or doubled inside one, so a
    newline is outside quotes exactly when an even number of quotes comes before it. Scanning forward in blocks
    keeps memory flat; blocks without quotes (the common case) cost one `rfind`.
    """
    if fmt == "jsonl":
        with open(path, "rb") as handle:
            position = handle.seek(0, os.SEEK_END)
            while position > 0:  # walk back to the last newline in blocks (the file can be large)
                start = max(0, position - _BLOCK_BYTES)
                handle.seek(start)
                newline = handle.read(position - start).rfind(b"\n")
                if newline >= 0:
                    return start + newline + 1
                position = start
        return 0
    end, offset, in_quotes = 0, 0, False
    with open(path, "rb") as handle:
        while block := handle.read(_BLOCK_BYTES):
            if not in_quotes and b'"' not in block:
                newline = block.rfind(b"\n")
                if newline >= 0:
                    end = offset + newline + 1
            else:
                for match in _QUOTE_OR_NEWLINE.finditer(block):
                    if match.group() == b'"':
                        in_quotes = not in_quotes
                    elif not in_quotes:
                        end = offset + match.start() + 1
            offset += len(block)
    return end


def _repair_torn_tail(path: str, fmt: str) -> None:
    """Truncates a partially written last record left by a killed writer or a full disk.

    A write can stop at any byte: in the middle of a line, or, in a CSV, right after a newline inside a quoted
    file name, where the bytes before it end in a newline but not in a whole record. Everything after the last
    whole record is dropped (its images are scored again on resume).
    """
    size = os.path.getsize(path)
    if size == 0:
        return
    whole = _whole_records_length(path, fmt)
    if whole < size:
        with open(path, "rb+") as handle:
            handle.truncate(whole)


class AppendOnlyTable:
    """A CSV or JSON Lines table written whole batches at a time.

    Args:
        path: The file.
        columns: Column names; a CSV's header (checked when resuming), the key order of JSON lines.
        fmt: "csv" or "jsonl".
        extra_fields: Fields written to JSON lines after `columns` (e.g. the chunk index of part files).
    """

    def __init__(self, path: str, columns: Sequence[str], fmt: str, extra_fields: Sequence[str] = ()) -> None:
        if fmt not in ("csv", "jsonl"):
            raise ValueError(f"fmt={fmt!r}")
        self.path = path
        self.columns = list(columns)
        self.fmt = fmt
        self.extra_fields = list(extra_fields)
        self._file: Any = None

    def iter_rows(self) -> Iterator[dict[str, Any]]:
        """Rows already in the file (after dropping a torn tail); CSV values come back as strings."""
        if not os.path.exists(self.path):
            return
        _repair_torn_tail(self.path, self.fmt)
        with open(self.path, encoding="utf-8", newline="") as handle:
            if self.fmt == "csv":
                reader = csv.reader(handle)
                header = next(reader, None)
                if header is None:
                    return
                if header != self.columns:
                    raise OutputFileError(
                        f"{self.path} exists with columns {header}, expected {self.columns}: it was written by "
                        "another model or command; pass --overwrite or choose another --out"
                    )
                for values in reader:
                    yield dict(zip(header, values, strict=False))
            else:
                for number, line in enumerate(handle, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as error:
                        raise OutputFileError(f"{self.path}, line {number}: not JSON ({error})") from error
                    if list(row)[: len(self.columns)] != self.columns:
                        raise OutputFileError(
                            f"{self.path}, line {number}: fields {list(row)}, expected {self.columns}: pass "
                            "--overwrite or choose another --out"
                        )
                    yield row

    def done_keys(self) -> set[str]:
        """The `path` values already written."""
        return {str(row[self.columns[0]]) for row in self.iter_rows()}

    def open(self) -> None:
        """Opens for appending, writing the CSV header to a new or empty file.

        Raises:
            OutputWriteError: the folder or the file cannot be created or written.
        """
        try:
            folder = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(folder, exist_ok=True)
            if os.path.exists(self.path):
                _repair_torn_tail(self.path, self.fmt)
            self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - closed in close()
        except OSError as error:
            raise OutputWriteError(self.path, error) from error
        if self.fmt == "csv" and self._file.tell() == 0:
            self._write_whole(self._csv_text([self.columns]))

    def _csv_text(self, rows: Iterable[Sequence[Any]]) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerows(rows)
        return buffer.getvalue()

    def _write_text(self, text: str) -> None:
        data = text.encode("utf-8")
        view = memoryview(data)
        while view:  # os.write may write less than asked on some file systems
            written = self._file.write(view)
            view = view[written:]

    def _write_whole(self, text: str) -> None:
        """Writes `text` or, when the write fails part way (a full disk), cuts the file back to where it was, so
        that it never ends in a torn record while the run reports the failure. (If even that fails, the next run
        drops the torn record when it reopens the file.)"""
        start = self._file.tell()
        try:
            self._write_text(text)
        except OSError as error:
            try:
                self._file.truncate(start)
            except OSError:
                pass
            raise OutputWriteError(self.path, error) from error

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        """Writes whole rows in one write call (a batch is on disk, or at most its last line is torn).

        Raises:
            OutputWriteError: the rows could not be written (nothing of them is left in the file).
        """
        if not rows:
            return
        if self._file is None:
            self.open()
        if self.fmt == "csv":
            text = self._csv_text([[row[column] for column in self.columns] for row in rows])
        else:
            fields = self.columns + self.extra_fields
            text = "".join(json.dumps({f: row[f] for f in fields}, ensure_ascii=False) + "\n" for row in rows)
        self._write_whole(text)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def parquet_done_keys(path: str) -> set[str]:
    """`path` values of an existing Parquet output."""
    if not os.path.exists(path):
        return set()
    import pyarrow.parquet as pq

    return {str(value) for value in pq.read_table(path, columns=["path"]).column("path").to_pylist()}


def _parquet_schema(columns: Sequence[str]) -> Any:
    import pyarrow as pa

    return pa.schema([(c, pa.string() if c in ("path", "grade") else pa.float64()) for c in columns])


def finalize_parquet(path: str, partial: AppendOnlyTable, rows_per_group: int = 16384) -> None:
    """Writes `path` = its existing rows (if any) followed by the partial JSON lines not already in it, streaming
    in row groups, then removes the partial file.

    Atomic: a temporary file replaces `path` at the end. A run killed between that replacement and the removal
    of the partial file leaves rows that are in both; they are written once.

    Raises:
        OutputWriteError: the Parquet file could not be written (the partial file and any earlier `path` are kept,
            so a rerun finishes it).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _parquet_schema(partial.columns)
    temporary = f"{path}.tmp"
    try:
        already = parquet_done_keys(path)
        with pq.ParquetWriter(temporary, schema) as writer:
            if os.path.exists(path):
                for group in pq.ParquetFile(path).iter_batches(batch_size=rows_per_group):
                    writer.write_batch(group)
            rows: list[dict[str, Any]] = []
            for row in partial.iter_rows():
                if str(row[partial.columns[0]]) in already:
                    continue
                rows.append({c: row[c] for c in partial.columns})
                if len(rows) == rows_per_group:
                    writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                    rows = []
            if rows:
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))
        os.replace(temporary, path)
    except OSError as error:  # pyarrow's IO errors are OSErrors too
        if os.path.exists(temporary):
            os.remove(temporary)
        raise OutputWriteError(path, error) from error
    if os.path.exists(partial.path):
        os.remove(partial.path)


def merge_parts(parts: Sequence[AppendOnlyTable], target: AppendOnlyTable, skip_keys: set[str]) -> int:
    """Appends the rows of per-process part files to `target` in chunk order, each key once.

    Each part holds increasing chunk indices (its process's chunks in order) and no two parts share a
    chunk, so a k-way merge on the chunk index restores input order while reading every file once, a
    line at a time. Rows whose key is in `skip_keys` (already merged by an interrupted earlier merge) are
    dropped. Returns the number of rows appended.
    """

    def keyed(part_index: int, part: AppendOnlyTable) -> Iterator[tuple[int, int, int, dict[str, Any]]]:
        for sequence, row in enumerate(part.iter_rows()):
            yield int(row[CHUNK_FIELD]), part_index, sequence, row

    merged = heapq.merge(*(keyed(i, part) for i, part in enumerate(parts)))
    written = 0
    pending: list[dict[str, Any]] = []
    for _, _, _, row in merged:
        key = str(row[target.columns[0]])
        if key in skip_keys:
            continue
        pending.append(row)
        if len(pending) == 1024:
            target.append(pending)
            written += len(pending)
            pending = []
    target.append(pending)
    return written + len(pending)
