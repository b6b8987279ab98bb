# Copyright 2025 The agqg authors. Licensed under the Apache License, Version 2.0.
"""The data of one run: load the split, check it before anything trains, choose what validates.

`load_run_data(options)` returns the train, validation and (where the protocol has one) test parts of the run's
split with the MOS scale. It fails early and plainly, naming the file and rows, where a run would otherwise fail
late or vaguely:

* an empty part (train, validation or test): the error names the split file the part came from;
* MOS values far outside the dataset's scale (more than `MOS_RANGE_TOLERANCE` of its width beyond either end,
  e.g. -3.5 or 1e9 on a 0-5 scale): the error names the metadata file and the rows (`source_row`); with
  `data_on_bad_rows: skip` they are dropped and counted instead;
* a split with a test part but no validation part (LIQE's KADID split 1, MA-AGIQA): the test part validates
  and selects the model, and the run says so (its test numbers are then not independent of the selection).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.options import SYNTHETIC, DataOptions

logger = logging.getLogger(__name__)

MOS_RANGE_TOLERANCE = 0.1
"""How far beyond the ends of the dataset's scale a MOS may lie, as a share of the scale's width (rater means of
rescaled scores can stray a little; a sign error or a wrong column strays far)."""
_EXAMPLES_SHOWN = 5


@dataclass
class RunData:
    """The parts of one split a run uses.

    Attributes:
        train: Training images (`datasets.Dataset` with `image`, `mos`, ...).
        validation: Images evaluated after every epoch (model selection on their SRCC).
        test: Held-out images evaluated once at the end, or None (no test part, or it validates).
        score_range: (min, max) of the MOS scale the model predicts on.
        validation_is_test: The split has no validation part, so `validation` is its test part.
        notes: What the run should tell the user about its data.
    """

    train: Any
    validation: Any
    test: Any | None
    score_range: tuple[float, float]
    validation_is_test: bool = False
    notes: list[str] = field(default_factory=list)


def load_splits(options: DataOptions) -> Any:
    """The `DatasetDict` of the run's split: the synthetic dataset (split n = the photos held out with seed n,
    cached in `data_root`), or `training.data.load_split` of a real dataset."""
    if options.dataset == SYNTHETIC:
        from training.synthetic import build_synthetic_dataset

        geometry: dict[str, Any] = (
            {"test_sources": options.synthetic_test_sources} if options.synthetic_test_sources else {}
        )
        if options.synthetic_crop_scales is not None:
            geometry["crop_scales"] = options.synthetic_crop_scales  # numbers as text are read by the dataset
        for name in ("random_native_crops", "context", "auto_level"):
            if getattr(options, f"synthetic_{name}") is not None:
                geometry[name] = getattr(options, f"synthetic_{name}")
        if options.synthetic_train_conditions is not None:  # 0: every condition (the dataset's None)
            geometry["train_conditions"] = options.synthetic_train_conditions or None
        return build_synthetic_dataset(
            options.data_root,
            image_size=options.synthetic_image_size,
            seed=int(options.split) if options.split else 0,
            crops_per_source=options.synthetic_crops_per_source,
            distortions=options.synthetic_distortions,
            **geometry,
        )
    from training.data import load_split

    if not options.data_root:
        raise ValueError(f"dataset={options.dataset!r} needs --data_root (the folder you downloaded)")
    kwargs: dict[str, Any] = {"on_bad_rows": options.data_on_bad_rows}
    for name in ("protocol", "target", "metadata_file", "splits_root"):
        if getattr(options, name):
            kwargs[name] = getattr(options, name)
    return load_split(options.dataset, options.data_root, options.split or "1", **kwargs)


def load_run_data(options: DataOptions, score_range: list[float] | None = None) -> RunData:
    """Loads the split (`load_splits`), checks every part (module docstring), chooses the validation part and
    limits the parts to `max_train_samples` / `max_eval_samples`.

    Args:
        options: The run's data options.
        score_range: (min, max) of the MOS scale; default the scale the loader recorded for the dataset.

    Raises:
        ValueError: a missing or empty part (naming its split file), or MOS far outside the scale (naming the
            metadata file and rows).
    """
    from training.data import mos_range

    splits = load_splits(options)
    described = _describe_split(options)
    if "train" not in splits:
        raise ValueError(f"{described} has no train part (it has {list(splits)})")
    notes = []
    validation_is_test = "validation" not in splits
    if validation_is_test:
        if "test" not in splits:
            raise ValueError(f"{described} has neither a validation nor a test part (it has {list(splits)})")
        notes.append(
            f"{described} has no validation part: its test part ({part_source(splits['test'])}) validates every "
            "epoch and selects the best model, so the final numbers on it are not independent of that selection"
        )
    low, high = (float(v) for v in (score_range or mos_range(splits["train"])))
    parts = {"train": splits["train"], "validation": splits["validation" if not validation_is_test else "test"]}
    if "test" in splits and not validation_is_test:
        parts["test"] = splits["test"]
    for name, part in parts.items():
        if len(part) == 0:
            raise ValueError(f"{described}: the {name} part is empty ({part_source(part)}); nothing to {_use(name)}")
        parts[name], note = _check_mos(part, name, (low, high), options.data_on_bad_rows)
        if note:
            notes.append(note)
        if len(parts[name]) == 0:
            raise ValueError(f"{described}: every row of the {name} part was skipped ({part_source(part)})")
    return RunData(
        train=_limit(parts["train"], options.max_train_samples),
        validation=_limit(parts["validation"], options.max_eval_samples),
        test=_limit(parts["test"], options.max_eval_samples) if "test" in parts else None,
        score_range=(low, high),
        validation_is_test=validation_is_test,
        notes=notes,
    )


def _describe_split(options: DataOptions) -> str:
    split = options.split or ("0" if options.dataset == SYNTHETIC else "1")
    return f"dataset {options.dataset!r} split {split}" + (f" ({options.data_root})" if options.data_root else "")


def _use(part: str) -> str:
    return {"train": "train on", "validation": "validate or select a model on", "test": "test on"}[part]


def part_source(part: Any) -> str:
    """Where a part's rows came from: its split file, else how it was split and the metadata file."""
    from training.data import dataset_metadata

    metadata = dataset_metadata(part)
    if metadata.get("split_file"):
        return f"split file {metadata['split_file']}"
    where = [str(metadata[key]) for key in ("split_source", "metadata_file") if metadata.get(key)]
    return "; ".join(where) or "no source recorded"


def _check_mos(part: Any, name: str, score_range: tuple[float, float], on_bad_rows: str) -> tuple[Any, str | None]:
    """Rows of a part whose MOS is not finite or lies more than `MOS_RANGE_TOLERANCE` of the scale's width beyond
    `score_range`: an error naming the metadata file and rows, or (`skip`) the part without them and a note."""
    from training.data import dataset_metadata

    low, high = score_range
    margin = MOS_RANGE_TOLERANCE * (high - low)
    mos = np.asarray(part["mos"], dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(mos) | (mos < low - margin) | (mos > high + margin))
    if not len(bad):
        return part, None
    metadata = dataset_metadata(part)
    source = metadata.get("metadata_file") or part_source(part)
    rows = part.select(bad[:_EXAMPLES_SHOWN])
    labels = rows["name"] if "name" in rows.column_names else [str(i) for i in bad[:_EXAMPLES_SHOWN]]
    where = rows["source_row"] if "source_row" in rows.column_names else [int(i) + 1 for i in bad[:_EXAMPLES_SHOWN]]
    shown = zip(where, labels, mos[bad[:_EXAMPLES_SHOWN]], strict=True)
    examples = ", ".join(f"row {int(r)} ({label!r}) MOS {m:g}" for r, label, m in shown)
    more = f" and {len(bad) - _EXAMPLES_SHOWN} more" if len(bad) > _EXAMPLES_SHOWN else ""
    problem = (
        f"{Path(str(source))}: {len(bad)} {name} row(s) with a MOS far outside the scale {low:g}-{high:g} "
        f"(allowed {low - margin:g} to {high + margin:g}): {examples}{more}"
    )
    if on_bad_rows != "skip":
        raise ValueError(
            f"{problem}. Fix the file, pass the right --score_range, or --data_on_bad_rows skip to drop them"
        )
    keep = np.setdiff1d(np.arange(len(mos)), bad)
    logger.warning("%s; skipped", problem)
    return part.select(keep), f"{problem}; skipped"


def _limit(dataset: Any, limit: int | None) -> Any:
    return dataset if limit is None or limit >= len(dataset) else dataset.select(range(limit))
