"""Scoring at scale: `agqg score`, `agqg explain` and the Python counterpart `score(...)`.

`agqg score INPUT... --model ID_OR_DIR --out results.csv` streams images from files, folders, globs, list
files or saved datasets (`inputs`) through DataLoader workers that decode images and cut them into the model's
views (`stream`, `views_agqg.make_views`) while the model scores the previous batch, and appends one row
per image (path, score, grade, one probability per grade, ability) to a CSV, JSON Lines or Parquet file a
batch at a time (`writers`). Unreadable inputs go to an errors file with the reason. Rerunning the
same command after Ctrl-C or kill -9 resumes: rows already written are skipped, the final file equals an
uninterrupted run's. Under `accelerate launch` the chunks of inputs are dealt out to the processes and
process 0 merges their part files in input order.

Speed: the grade-prompt text features are cached in the model, so a batch costs one vision-tower forward.
`--dtype auto` runs it under bf16 autocast on CPUs with native bf16 (AVX512-BF16 or AMX) and on GPUs with
bf16 (fp16 on older GPUs); `--dtype fp32` opts out.

Exit codes: 0 every input scored; 3 finished but some inputs were skipped (listed in the errors file);
1 aborted (`--on-error fail`, unusable or unwritable output file, interrupted); 2 bad command line, inputs or
`--model`.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import glob
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch

from ..views_agqg import ImageLoadError, ViewProtocol
from .inputs import InputError, ScoringItem, check_inputs, is_url, iter_items
from .progress import library_progress_bars, progress_disabled_by_env
from .stream import ChunkBatch, ScoringStream, StreamConfig, iter_chunks
from .writers import (
    CHUNK_FIELD,
    ERROR_COLUMNS,
    AppendOnlyTable,
    OutputFileError,
    finalize_parquet,
    merge_parts,
    output_format,
    parquet_done_keys,
    result_columns,
)

EXIT_OK = 0
EXIT_ABORTED = 1
EXIT_USAGE = 2
EXIT_SKIPPED = 3

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# Timing of the last `run_score` in this process (benchmarks/bench_scoring.py reads it): images scored, and the
# wall-clock and this process's CPU seconds of the scoring loop, from starting the DataLoader to the last row
# written (model loading excluded; DataLoader workers' CPU time is theirs, see RUSAGE_CHILDREN).
LAST_RUN: dict[str, float] = {}


# ---------------------------------------------------------------------------------------------
# Device, dtype and model
# ---------------------------------------------------------------------------------------------


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 matrix products natively (AMX tiles or AVX512-BF16).

    `torch.backends.cpu.get_cpu_capability()` only says "AVX512", so ask torch's feature probes, falling back
    to the kernel's CPU flags on builds without them.
    """
    probes = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    if any(probe is not None for probe in probes):
        return any(bool(probe()) for probe in probes if probe is not None)
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = handle.read()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


def resolve_device(name: str) -> torch.device:
    """ "cpu", "cuda" (or "cuda:N") or "auto" (CUDA when available)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is available to torch here")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """Compute dtype of the vision tower: "auto" is bf16 on CPUs with native bf16 and on bf16-capable GPUs,
    fp16 on other GPUs, fp32 otherwise."""
    if name != "auto":
        return DTYPES[name]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


class ModelLoadError(ValueError):
    """The model to score with cannot be loaded; the message says, in one line, what was tried and why it failed."""


# Exception class names (from requests, httpx, urllib3, huggingface_hub) that mean the Hub could not be reached.
_UNREACHABLE_ERRORS = {
    "ConnectError",
    "ConnectTimeout",
    "ConnectionError",
    "LocalEntryNotFoundError",
    "NameResolutionError",
    "OfflineModeIsEnabled",
    "ProxyError",
    "ReadTimeout",
    "Timeout",
}
_HUB_ID = re.compile(r"[A-Za-z0-9_][\w.-]*(/[A-Za-z0-9_][\w.-]*)?")


def _error_chain(error: BaseException) -> list[BaseException]:
    chain, seen = [], set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _hub_is_offline() -> bool:
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency of transformers
        return os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def _hub_endpoint() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.ENDPOINT)
    except ImportError:  # pragma: no cover
        return "https://huggingface.co"


def describe_model_load_error(name: str, revision: str | None, error: BaseException) -> str:
    """One line saying what loading `name` tried (a local folder, the Hub) and why it failed."""
    at = f" at revision {revision!r}" if revision else ""
    if os.path.isdir(name):
        return f"{name} is a folder but not a loadable AGQG model ({_first_line(error)})"
    if os.path.exists(name):
        return f"{name} is a file; pass the model's folder (the one with config.json) or a Hub repository id"
    if not _HUB_ID.fullmatch(name) or ".." in name or "--" in name:
        return f"no folder {name} (and it is not a Hub repository id)"
    chain = _error_chain(error)
    names = {type(link).__name__ for link in chain}
    tried = f"no local folder {name}, and the Hub repository {name}{at}"
    if _hub_is_offline():
        return (
            f"{tried} is not in the Hugging Face cache; the Hub is unreachable in offline mode (HF_HUB_OFFLINE=1): "
            "unset it to download, or pass a local folder"
        )
    if "RevisionNotFoundError" in names:
        return f"the Hub repository {name} has no revision {revision!r}"
    if "RepositoryNotFoundError" in names or "GatedRepoError" in names:
        return f"{tried} does not exist on {_hub_endpoint()} or needs a login (`hf auth login`) it does not have"
    if names & _UNREACHABLE_ERRORS or any(isinstance(link, (ConnectionError, TimeoutError)) for link in chain):
        reason = next((_first_line(link) for link in reversed(chain) if isinstance(link, OSError)), "no network")
        return f"{tried} is not in the Hugging Face cache, and the Hub at {_hub_endpoint()} is unreachable ({reason})"
    return f"{tried} could not be loaded ({_first_line(error)})"


def load_model(
    model: Any, device: torch.device | None = None, *, revision: str | None = None, progress: bool = True
) -> Any:
    """A model object as is, or `AutoModel.from_pretrained(path_or_hub_id, trust_remote_code=True, revision=...)`,
    in eval mode.

    Args:
        model: A model object, a local folder or a Hub repository id.
        device: Where to move the model (None: leave it).
        revision: Branch, tag or commit of a Hub repository (pin it when you do not control the repository: its
            code runs here); ignored for a model object or a local folder.
        progress: Show transformers' loading bars (also off when `TQDM_DISABLE` is set).

    Raises:
        ModelLoadError: `model` names neither a loadable folder nor a reachable Hub repository.
    """
    if isinstance(model, (str, os.PathLike)):
        from transformers import AutoModel

        name = os.fspath(model)
        try:
            with library_progress_bars(progress and not progress_disabled_by_env()):
                model = AutoModel.from_pretrained(name, trust_remote_code=True, revision=revision)
        except (OSError, ValueError, ImportError) as error:
            raise ModelLoadError(describe_model_load_error(name, revision, error)) from error
    if device is not None:
        model = model.to(device)
    return model.eval()


def compile_vision_tower(model: Any) -> Any:
    """Compiles the vision tower in place with `torch.compile` (opt-in: `agqg score --compile`, `score(...,
    compile=True)`): the first batches of each new shape pay the compile time (tens of seconds on CPU; measured
    in docs/scoring.md), later ones run faster. The weights and their names are unchanged."""
    model.clip.vision_model.compile()
    return model


def resolve_views(model: Any, views: Any = None, crops: int | None = None) -> ViewProtocol:
    """The view protocol a scoring run applies: `views` (a spec such as `"ipce"`, `"crops:15"`, a dict or a
    `ViewProtocol`), else `crops=N` as shorthand for `"crops:N"` (0: `"resize"`), else the model's own."""
    if views is not None and crops is not None:
        raise ValueError("give views= or crops=, not both")
    if crops is not None:
        if crops < 0:
            raise ValueError(f"crops={crops} must be >= 0")
        views = f"crops:{crops}" if crops else "resize"
    return model.view_protocol(views)


class Scorer:
    """Runs an AGQG model on batches of views; the model combines each image's views.

    Args:
        model: An `AGQGForImageQualityAssessment` (on `device`, eval mode).
        device: Where the forward runs.
        dtype: Autocast dtype (float32 = no autocast).
        protocol: The view protocol the batches were cut with (`make_views`).
    """

    def __init__(self, model: Any, device: torch.device, dtype: torch.dtype, protocol: ViewProtocol) -> None:
        self.model = model
        self.device = device
        self.dtype = dtype
        self.protocol = protocol
        self.views = protocol.num_views()
        self.grade_names = list(model.config.grade_names)
        self.columns = result_columns(self.grade_names)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    @torch.inference_mode()
    def __call__(self, pixel_values: torch.Tensor, prompts: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Scores B images given as (B * views, 3, h, w) normalised views.

        Returns float32 CPU tensors per image: `score` (B,), `grade_probs` (B, K), `ability` (B,), `grade_std` (B,),
        `grade_entropy` (B,).
        """
        inputs: dict[str, torch.Tensor] = {"pixel_values": pixel_values.to(self.device, non_blocking=True)}
        if prompts is not None:
            tokens = self.model.tokenize_alignment_prompts(getattr(self.model, "tokenizer", None), list(prompts))
            inputs.update({name: value.to(self.device) for name, value in tokens.items()})
        with self.autocast():
            output = self.model(**inputs, num_views=self.views, view_aggregation=self.protocol.aggregation)
        num_grades = output.grade_probs.shape[-1]
        spread = (getattr(output, "grade_std", None), getattr(output, "grade_entropy", None))
        if spread[0] is None:  # a model whose own (older) remote code does not report the spread
            from ..modeling_agqg import grade_spread

            spread = grade_spread(output.grade_probs, self.model.config.score_range)
        per_image = torch.cat(
            [
                output.score.float().unsqueeze(-1),
                output.grade_probs.float(),
                output.ability.float().unsqueeze(-1),
                *(value.float().unsqueeze(-1) for value in spread),
            ],
            -1,
        )
        per_image = per_image.cpu()  # one device-to-host copy per batch (each copy waits for the GPU)
        return {
            "score": per_image[:, 0],
            "grade_probs": per_image[:, 1 : 1 + num_grades],
            "ability": per_image[:, 1 + num_grades],
            "grade_std": per_image[:, 2 + num_grades],
            "grade_entropy": per_image[:, 3 + num_grades],
        }

    def rows(self, keys: Sequence[str], scored: dict[str, torch.Tensor]) -> list[dict[str, Any]]:
        """One output row per key: path, score, grade (most probable), prob_<grade>..., ability, grade_std,
        grade_entropy."""
        rows = []
        probs = scored["grade_probs"].tolist()
        spreads = zip(scored["grade_std"].tolist(), scored["grade_entropy"].tolist(), strict=True)
        for key, value, p, ability, (std, entropy) in zip(
            keys, scored["score"].tolist(), probs, scored["ability"].tolist(), spreads, strict=True
        ):
            row: dict[str, Any] = {
                "path": key,
                "score": value,
                "grade": self.grade_names[max(range(len(p)), key=p.__getitem__)],
            }
            row.update({f"prob_{name}": prob for name, prob in zip(self.grade_names, p, strict=True)})
            row["ability"] = ability
            row["grade_std"], row["grade_entropy"] = std, entropy
            rows.append(row)
        return rows


def stream_config(model: Any, protocol: ViewProtocol, inputs: Sequence[str], batch_size: int, **options: Any) -> Any:
    """The `StreamConfig` that cuts images into `protocol`'s views with `model`'s image processor."""
    processor = getattr(model, "image_processor", None) or model.default_image_processor()
    return StreamConfig(
        inputs=list(inputs),
        batch_size=batch_size,
        protocol=protocol,
        spec=model.pixel_spec(),
        image_processor=processor,
        **options,
    )


# ---------------------------------------------------------------------------------------------
# Python API
# ---------------------------------------------------------------------------------------------


def _api_items(images_or_paths: Any, prompts: Sequence[str] | None) -> Iterator[ScoringItem]:
    if isinstance(images_or_paths, (str, os.PathLike)) or hasattr(images_or_paths, "size"):
        images_or_paths = [images_or_paths]
    images_or_paths = list(images_or_paths)
    if prompts is not None and len(prompts) != len(images_or_paths):
        raise ValueError(f"got {len(prompts)} prompts for {len(images_or_paths)} images")
    for index, source in enumerate(images_or_paths):
        prompt = prompts[index] if prompts is not None else None
        if isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            if is_url(path):  # the loader says that URLs are not fetched
                yield ScoringItem(key=path, path=path, prompt=prompt)
            elif os.path.isfile(path) and not path.lower().endswith((".txt", ".lst", ".csv", ".tsv")):
                yield ScoringItem(key=path, path=path, prompt=prompt)
            elif os.path.exists(path) or any(c in path for c in "*?["):
                yield from iter_items([path])
            else:
                yield ScoringItem(key=path, error=f"{path}: file not found")
        else:
            yield ScoringItem(key=f"<image {index}>", image=source, prompt=prompt)


def score(
    images_or_paths: Any,
    model: Any,
    *,
    batch_size: int = 32,
    device: str = "auto",
    dtype: str = "auto",
    views: Any = None,
    crops: int | None = None,
    prompts: Sequence[str] | None = None,
    on_error: str = "skip",
    as_dataframe: bool = False,
    progress: bool = False,
    revision: str | None = None,
    compile: bool = False,  # noqa: A002 - the name of the CLI flag and of torch.compile
) -> list[dict[str, Any]] | Any:
    """Scores images in a notebook or script.

    Args:
        images_or_paths: A path, a PIL image, or a list of them; folders, globs, list files and saved datasets
            are expanded as by `agqg score`.
        model: An AGQG model object, or a local folder / Hub id loaded with
            `AutoModel.from_pretrained(..., trust_remote_code=True, revision=revision)`.
        batch_size: Images per forward (times the protocol's views per image).
        device: "auto" (a model object's own device; for a path, CUDA when available), "cpu" or "cuda".
        dtype: "auto", "fp32", "bf16" or "fp16" (see the module docstring).
        views: The view protocol: None for the model's own (`config.view_protocol`), or a spec such as
            `"resize"`, `"crops:15"`, `"ipce"`, a dict or a `ViewProtocol` (see `views_agqg.ViewProtocol`).
        crops: Shorthand for `views="crops:N"` (N grid crops plus the resized view; 0 means `"resize"`).
        prompts: One generation prompt per input (alignment scoring), or None.
        on_error: "skip" (the image's dict has an `error` and no score) or "raise".
        as_dataframe: Return a pandas DataFrame instead of a list of dicts.
        progress: Show progress bars (model loading and scoring; never when `TQDM_DISABLE` is set).
        revision: Branch, tag or commit when `model` is a Hub id (pin it: the repository's code runs here).
        compile: Compile the vision tower with `torch.compile` first (`compile_vision_tower`; worth it for large
            runs only: the first batch pays the compile time).

    Returns:
        One dict per image in input order: path, score, grade, prob_<grade>..., ability (or path, error: an
        unreadable image, a decompression bomb, an image over the pixel budget or a URL never stops the others).

    Raises:
        ModelLoadError: `model` cannot be loaded (the message says what was tried).
        ImageLoadError: with `on_error="raise"`, the first input that cannot be scored.
    """
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error={on_error!r}; expected 'skip' or 'raise'")
    was_training = getattr(model, "training", False)
    is_object = not isinstance(model, (str, os.PathLike))
    model = load_model(model, revision=revision, progress=progress)
    # A model object stays where the caller put it unless a device is asked for explicitly.
    torch_device = next(model.parameters()).device if is_object and device == "auto" else resolve_device(device)
    if next(model.parameters()).device != torch_device:
        model = model.to(torch_device)
    protocol = resolve_views(model, views, crops)
    stream = ScoringStream(stream_config(model, protocol, [], batch_size))
    if compile:
        compile_vision_tower(model)
    scorer = Scorer(model, torch_device, resolve_dtype(dtype, torch_device), protocol)
    results: list[dict[str, Any]] = []
    items = list(_api_items(images_or_paths, prompts))
    with_prompts = any(item.prompt is not None for item in items)
    bar = _progress_bar(len(items), enabled=progress)
    try:
        for index, chunk in iter_chunks(iter(items), batch_size):
            batch = stream.load_chunk(index, chunk)
            failed = dict(batch.errors)
            if failed and on_error == "raise":
                key, reason = batch.errors[0]
                raise ImageLoadError(f"{key}: {reason}")
            scored_rows = {}
            if batch.keys:
                chunk_prompts = [item.prompt or "" for item in chunk if item.key in set(batch.keys)]
                scored = scorer(batch.pixel_values, chunk_prompts if with_prompts else None)
                scored_rows = dict(zip(batch.keys, scorer.rows(batch.keys, scored), strict=True))
            for item in chunk:
                results.append(scored_rows.get(item.key) or {"path": item.key, "error": failed.get(item.key, "")})
            bar.update(len(chunk))
    finally:
        bar.close()
        if was_training:
            model.train()
    if as_dataframe:
        import pandas as pd

        return pd.DataFrame(results)
    return results


# ---------------------------------------------------------------------------------------------
# agqg score
# ---------------------------------------------------------------------------------------------


def _progress_bar(total: int | None, enabled: bool = True) -> Any:
    from tqdm.auto import tqdm

    disable = not enabled or progress_disabled_by_env()
    return tqdm(total=total, unit="img", disable=disable, dynamic_ncols=True, smoothing=0.05)


def default_errors_path(out: str) -> str:
    """`<out>.errors.csv`: named after the whole output name, so `a.csv` and `a.jsonl` never share one."""
    return f"{out}.errors.csv"


def legacy_errors_path(out: str) -> str:
    """`<out stem>.errors.csv`, the default name of earlier versions (shared by `a.csv` and `a.jsonl`)."""
    return f"{os.path.splitext(out)[0]}.errors.csv"


def choose_errors_path(out: str, errors: str | None, overwrite: bool) -> str:
    """The errors file of a run: `errors` if given, else `default_errors_path(out)`, except when resuming a run
    begun before errors files were named after the whole output name: then its old file, so that the images
    listed there are still skipped and listed once."""
    if errors:
        return errors
    new, legacy = default_errors_path(out), legacy_errors_path(out)
    started = os.path.exists(out) or os.path.exists(f"{out}.partial.jsonl") or glob.glob(glob.escape(out) + ".part*")
    if not overwrite and started and not os.path.exists(new) and os.path.exists(legacy) and legacy != new:
        return legacy
    return new


def _default_workers(device: torch.device) -> int:
    cores = os.cpu_count() or 1
    if device.type == "cuda":
        return min(8, max(cores - 1, 0))
    # On CPU the model already uses every core; one worker per four cores overlaps decoding without starving it.
    return 0 if cores <= 1 else min(4, max(1, cores // 4))


class _Distributed:
    """Process group helpers; a single process when not launched by `accelerate launch`/torchrun."""

    def __init__(self, device_name: str) -> None:
        self.state = None
        self.rank, self.world_size = 0, 1
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            from accelerate import PartialState

            self.state = PartialState(cpu=device_name == "cpu")
            self.rank, self.world_size = self.state.process_index, self.state.num_processes

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, name: str) -> torch.device:
        if self.state is not None and name == "auto":
            return self.state.device
        if self.state is not None and name.startswith("cuda"):
            return self.state.device
        return resolve_device(name)

    def barrier(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()

    def sum(self, values: list[float]) -> list[float]:
        if self.state is None:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.state.device)
        torch.distributed.all_reduce(tensor)
        return tensor.tolist()


def _part_paths(out: str, errors_path: str, rank: int, world: int) -> tuple[str, str]:
    return f"{out}.part{rank}-of-{world}.jsonl", f"{errors_path}.part{rank}-of-{world}.jsonl"


def _check_parts_world(out: str, world: int) -> None:
    for path in glob.glob(glob.escape(out) + ".part*-of-*.jsonl"):
        if not path.endswith(f"-of-{world}.jsonl"):
            raise OutputFileError(
                f"{path} is left from an interrupted run with another number of processes; resume with that "
                "number, or pass --overwrite"
            )


def _remove(paths: Iterable[str]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


class _Outputs:
    """The output and errors files of one process, and what they already hold."""

    def __init__(self, args: argparse.Namespace, columns: list[str], dist: _Distributed) -> None:
        self.out = args.out
        self.fmt = output_format(args.out)
        self.errors_path = choose_errors_path(args.out, args.errors, args.overwrite)
        self.dist = dist
        self.columns = columns
        self.partial = AppendOnlyTable(f"{args.out}.partial.jsonl", columns, "jsonl")
        final_table = self.partial if self.fmt == "parquet" else AppendOnlyTable(args.out, columns, self.fmt)
        self.final_results = final_table
        self.final_errors = AppendOnlyTable(self.errors_path, ERROR_COLUMNS, "csv")
        part_results, part_errors = _part_paths(args.out, self.errors_path, dist.rank, dist.world_size)
        if dist.world_size > 1:
            self.results = AppendOnlyTable(part_results, columns, "jsonl", extra_fields=[CHUNK_FIELD])
            self.errors = AppendOnlyTable(part_errors, ERROR_COLUMNS, "jsonl", extra_fields=[CHUNK_FIELD])
        else:
            self.results, self.errors = self.final_results, self.final_errors

    def all_paths(self) -> list[str]:
        parts = glob.glob(glob.escape(self.out) + ".part*-of-*.jsonl")
        parts += glob.glob(glob.escape(self.errors_path) + ".part*-of-*.jsonl")
        return [self.out, self.errors_path, self.partial.path, f"{self.out}.tmp", *parts]

    def done_keys(self) -> tuple[set[str], set[str]]:
        """(keys with a result row, keys with an error row) over final, partial and this process's part files."""
        scored = self.final_results.done_keys()
        if self.fmt == "parquet":
            scored |= parquet_done_keys(self.out)
        failed = self.final_errors.done_keys()
        if self.results is not self.final_results:
            scored |= self.results.done_keys()
            failed |= self.errors.done_keys()
        return scored, failed

    def merge(self) -> None:
        """Process 0, after every process finished: part files -> final files in input order, each row once."""
        world = self.dist.world_size
        if world > 1:
            parts = [_part_paths(self.out, self.errors_path, rank, world) for rank in range(world)]
            result_parts = [AppendOnlyTable(r, self.columns, "jsonl", [CHUNK_FIELD]) for r, _ in parts]
            error_parts = [AppendOnlyTable(e, ERROR_COLUMNS, "jsonl", [CHUNK_FIELD]) for _, e in parts]
            already = self.final_results.done_keys() | (parquet_done_keys(self.out) if self.fmt == "parquet" else set())
            merge_parts(result_parts, self.final_results, already)
            merge_parts(error_parts, self.final_errors, self.final_errors.done_keys())
            self.final_results.close()
            self.final_errors.close()
            _remove(path for pair in parts for path in pair)
        if self.fmt == "parquet" and (os.path.exists(self.partial.path) or not os.path.exists(self.out)):
            finalize_parquet(self.out, self.partial)
        elif self.fmt != "parquet" and not os.path.exists(self.out):
            # Nothing was scored (every input failed): still leave the file the summary line names, with its header.
            self.final_results.open()
            self.final_results.close()

    def count_errors(self) -> int:
        return sum(1 for _ in self.final_errors.iter_rows())


def _fix_glibc_mmap_threshold() -> None:
    """Keeps glibc's mmap threshold at its 128 KiB default for this process.

    glibc raises the threshold each time a large mmap-ed block is freed, after which the per-batch tensors
    (input copies, activations) come from the heap, which fragments: with DataLoader workers the scoring
    process then grew by ~3 KB per image (30 MB over 10,000 images in the benchmark) until the loader was
    torn down. A fixed threshold returns those blocks to the system on free; the memory benchmark then shows
    no growth. No-op where mallopt is unavailable (non-glibc systems).
    """
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD = -3
    except (OSError, AttributeError):
        pass


def _error(message: str) -> None:
    print(f"agqg score: error: {message}", file=sys.stderr)


def _write_failed(error: OSError, out: str) -> int:
    """Reports a failed write (which file, why, that a rerun resumes) in one line; returns the exit code."""
    hint = "free some disk space" if getattr(error, "errno", None) == errno.ENOSPC else "fix that"
    _error(f"{error}. The rows written so far are kept in {out}: {hint} and rerun the same command to resume")
    return EXIT_ABORTED


def run_score(args: argparse.Namespace) -> int:
    """`agqg score`: see the module docstring. Returns the exit code."""
    started = time.perf_counter()
    try:
        check_inputs(args.inputs)
        if args.batch_size < 1:
            raise InputError("--batch-size must be >= 1")
        output_format(args.out)
    except (InputError, OutputFileError) as error:
        _error(str(error))
        return EXIT_USAGE
    _fix_glibc_mmap_threshold()
    dist = _Distributed(args.device)
    try:
        device = dist.device(args.device)
    except ValueError as error:
        _error(str(error))
        return EXIT_USAGE
    try:
        model = load_model(args.model, device, revision=args.revision, progress=not args.quiet)
    except ModelLoadError as error:
        _error(f"cannot load --model {args.model}: {error}")
        return EXIT_USAGE
    dtype = resolve_dtype(args.dtype, device)
    try:
        protocol = resolve_views(model, args.views, args.crops)
    except ValueError as error:
        _error(str(error))
        return EXIT_USAGE
    if args.compile:
        compile_vision_tower(model)
    scorer = Scorer(model, device, dtype, protocol)
    outputs = _Outputs(args, scorer.columns, dist)

    try:
        if args.overwrite and dist.is_main:
            _remove(outputs.all_paths())
        dist.barrier()
        _check_parts_world(args.out, dist.world_size)
        scored_before, failed_before = outputs.done_keys()
    except OutputFileError as error:
        _error(str(error))
        return EXIT_ABORTED
    except OSError as error:  # e.g. no permission to repair a torn tail
        return _write_failed(error, args.out)
    if outputs.errors_path == legacy_errors_path(args.out) and not args.errors and dist.is_main:
        print(
            f"agqg score: resuming with the errors file {outputs.errors_path} of an earlier run (new runs write "
            f"{default_errors_path(args.out)})",
            file=sys.stderr,
        )

    config = stream_config(
        model,
        protocol,
        args.inputs,
        args.batch_size,
        root=args.root,
        path_column=args.path_column,
        prompt_column=args.prompt_column,
        image_column=args.image_column,
        rank=dist.rank,
        world_size=dist.world_size,
    )
    stream = ScoringStream(config, frozenset(scored_before | failed_before))
    try:
        total = stream.count_new_items()
    except InputError as error:
        _error(str(error))
        return EXIT_USAGE
    workers = _default_workers(device) if args.workers is None else args.workers
    loader = torch.utils.data.DataLoader(
        stream,
        batch_size=None,
        num_workers=workers,
        collate_fn=_identity,
        pin_memory=device.type == "cuda",
        prefetch_factor=(4 if protocol.num_views() == 1 else 2) if workers > 0 else None,
    )
    scored_count, skipped_count, score_sum = 0, 0, 0.0
    loop_started, loop_cpu_started = time.perf_counter(), time.process_time()
    bar = _progress_bar(total, enabled=dist.is_main and not args.quiet)
    try:
        for batch in loader:
            if batch.errors:
                outputs.errors.append([_error_row(key, reason, batch) for key, reason in batch.errors])
                skipped_count += len(batch.errors)
                if args.on_error == "fail":
                    key, reason = batch.errors[0]
                    _error(f"{key}: {reason} (--on-error fail; listed in {outputs.errors_path})")
                    return EXIT_ABORTED
            if batch.keys and any(batch.write):
                rows = scorer.rows(batch.keys, scorer(batch.pixel_values, batch.prompts))
                new_rows = [
                    dict(row, **{CHUNK_FIELD: batch.chunk}) for row, new in zip(rows, batch.write, strict=True) if new
                ]
                outputs.results.append(new_rows)
                scored_count += len(new_rows)
                score_sum += sum(row["score"] for row in new_rows)
            bar.update(batch.new_items)
    except KeyboardInterrupt:
        bar.close()
        print(
            f"\nagqg score: interrupted; rows so far are in {args.out}: rerun the same command to resume",
            file=sys.stderr,
        )
        return EXIT_ABORTED
    except (InputError, OutputFileError, ValueError) as error:
        bar.close()
        _error(str(error))
        return EXIT_ABORTED
    except OSError as error:  # a full disk or a lost folder: OutputWriteError names the file
        bar.close()
        return _write_failed(error, args.out)
    finally:
        outputs.results.close()
        outputs.errors.close()
    bar.close()
    LAST_RUN.update(
        images=scored_count,
        seconds=time.perf_counter() - loop_started,
        process_seconds=time.process_time() - loop_cpu_started,
    )

    totals = dist.sum([scored_count, skipped_count, score_sum])
    scored_count, skipped_count, score_sum = int(totals[0]), int(totals[1]), totals[2]
    dist.barrier()
    exit_code = EXIT_OK
    if dist.is_main:
        try:
            outputs.merge()
        except OSError as error:
            return _write_failed(error, args.out)
        errors_total = outputs.count_errors()
        exit_code = EXIT_SKIPPED if errors_total else EXIT_OK
        elapsed = time.perf_counter() - started
        mean = f"{score_sum / scored_count:.4f}" if scored_count else "n/a"
        resumed = f" (+{len(scored_before)} already done)" if scored_before else ""
        skipped = f", skipped {skipped_count}" + (f" ({errors_total} in all)" if errors_total != skipped_count else "")
        where = f" -> {args.out}" + (f", errors -> {outputs.errors_path}" if errors_total else "")
        print(
            f"agqg score: scored {scored_count} images{resumed}{skipped}, mean score {mean}, {elapsed:.1f} s "
            f"({scored_count / max(elapsed, 1e-9):.1f} images/s, {device.type} {str(dtype).removeprefix('torch.')})"
            f"{where}",
            file=sys.stderr,
        )
    dist.barrier()
    return exit_code


def _identity(batch: ChunkBatch) -> ChunkBatch:
    return batch


def _error_row(key: str, reason: str, batch: ChunkBatch) -> dict[str, Any]:
    return {"path": key, "reason": reason, CHUNK_FIELD: batch.chunk}


# ---------------------------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------------------------


_SCORE_DESCRIPTION = """Scores images with an AGQG model and writes one row per image (path, score, grade, one
probability per grade, ability) to a CSV, JSON Lines or Parquet file, a batch at a time.

INPUT: image files, folders (recursive), globs (quote them), .txt/.lst lists of paths, .csv/.tsv lists (with
--path-column / --prompt-column), or datasets saved with `save_to_disk` (with --image-column).

Unreadable inputs go to the errors file with the reason. Rerun the same command after Ctrl-C or kill -9 to
resume: rows already written are skipped and the final file equals an uninterrupted run's. Under
`accelerate launch ... -m modeling_agqg score ...` the inputs are split across processes and merged once."""

_SCORE_EPILOG = """exit codes: 0 every input scored; 3 finished, some inputs skipped (see the errors file);
1 aborted (--on-error fail, unusable or unwritable output file, Ctrl-C); 2 bad command line, inputs or --model.

environment: AGQG_MAX_IMAGE_PIXELS (pixel budget: larger images are skipped, default 67108864 = 8192x8192),
TQDM_DISABLE=1 (no progress bars), HF_HUB_OFFLINE=1 (no Hub: local folders and the cache only)."""


def _add_common(parser: argparse.ArgumentParser) -> None:
    """The options `agqg score` and `agqg explain` share: which model, where and how it runs, which views."""
    parser.add_argument("--model", required=True, help="AGQG model folder or Hub id (loaded with trust_remote_code)")
    parser.add_argument(
        "--revision",
        default=None,
        help="branch, tag or commit of a Hub --model; pin it for repositories you do not control, their code runs "
        "here (default: the repository's default branch; ignored for a local folder)",
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto, CUDA if available)")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", *DTYPES],
        help="vision-tower compute dtype; auto = bf16 on CPUs with native bf16 and on bf16 GPUs, fp16 on other "
        "GPUs, else fp32 (default: auto)",
    )
    parser.add_argument(
        "--views",
        default=None,
        help="view protocol: resize, crops[:N], ipce[:N] or a JSON object (default: the model's own, from its "
        "config's view_protocol)",
    )
    parser.add_argument(
        "--crops",
        type=int,
        default=None,
        help="shorthand for --views crops:N, N grid crops plus the resized view; 0 means resize (default: unset, "
        "the model's own view protocol)",
    )


def add_parser(subparsers: Any) -> None:
    """Registers `agqg score`."""
    parser = subparsers.add_parser(
        "score",
        help="score many images (files, folders, globs, lists, saved datasets) into a CSV/JSONL/Parquet file",
        description=_SCORE_DESCRIPTION,
        epilog=_SCORE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="what to score (see above)")
    _add_common(parser)
    parser.add_argument(
        "--out", default="scores.csv", help="output file: .csv, .jsonl or .parquet (default: scores.csv)"
    )
    parser.add_argument("--errors", default=None, help="errors file (path, reason) (default: <out>.errors.csv)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward (default: 32)")
    parser.add_argument("--prompt-column", default=None, help="generation-prompt column of a CSV list or dataset")
    parser.add_argument("--path-column", default=None, help="image-path column of a CSV list (default: guessed)")
    parser.add_argument("--image-column", default="image", help="image column of a saved dataset (default: image)")
    parser.add_argument("--root", default=None, help="base folder of relative paths in lists (default: the list's)")
    parser.add_argument(
        "--on-error",
        default="skip",
        choices=["skip", "fail"],
        help="an input that cannot be scored: list it in the errors file and go on (skip), or stop with exit code "
        "1 (fail) (default: skip)",
    )
    parser.add_argument("--workers", type=int, default=None, help="DataLoader worker processes (default: by device)")
    parser.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the vision tower first (faster on long runs; the first batch pays the compile time)",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bars (model loading included); TQDM_DISABLE=1 does the same"
    )
    parser.set_defaults(func=run_score)


__all__ = [
    "ModelLoadError",
    "Scorer",
    "add_parser",
    "cpu_has_native_bf16",
    "load_model",
    "resolve_dtype",
    "score",
]
