"""Loaders for IQA / AGIQA datasets from their official local layouts into `datasets.Dataset`.

(Metadata helpers; the loaders follow.)
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["dataset_metadata", "describe_dataset", "mos_range"]


def describe_dataset(dataset: Any, *, mos_range: tuple[float, float], **metadata: Any) -> Any:
    """Records `mos_range` and other metadata as a JSON object in `dataset.info.description`; returns it."""
    low, high = (float(v) for v in mos_range)
    dataset.info.description = json.dumps({"mos_range": [low, high], **metadata}, sort_keys=True)
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
        raise ValueError("the dataset's info records no MOS range; load it with training.data.load_iqa_dataset")
    low, high = metadata["mos_range"]
    return float(low), float(high)
