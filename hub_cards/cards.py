"""Model and dataset cards for the Hub, filled from a saved model folder and its evaluation results.

A model card is rendered from `templates/model_card.md` (a Jinja template for `huggingface_hub.ModelCard`): its YAML
metadata comes from the folder's `config.json` and `eval_results.json`; the body states what the score means, the
preprocessing, usage, the evaluation protocol with the measured numbers, limitations, versions and the citation.

`eval_results.json` (written by training next to the saved model)::

    {"model_name": str, "base_model": str | null, "synthetic": bool,
     "results": [{"dataset": str, "split": str, "num_images": int,
                  "metrics": {"srcc": float, "krcc": float, "plcc": float, "plcc_logistic": float, "rmse": float}}]}

Every metric may be null (training writes NaN, e.g. the correlation of constant predictions, as null): the card then
shows "–" and leaves that value out of its `model-index`, which holds SRCC and PLCC.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData, EvalResult, ModelCard, ModelCardData
from huggingface_hub.repocard_data import model_index_to_eval_results

from .redaction import LOCAL_PATH_MARKER, is_hub_id, redacted_local_path

TEMPLATES = Path(__file__).with_name("templates")
MODEL_CARD_TEMPLATE = TEMPLATES / "model_card.md"
DATASET_CARD_TEMPLATE = TEMPLATES / "dataset_card.md"
EVAL_RESULTS_FILE = "eval_results.json"
HUB_URL = "https://huggingface.co"  # card links are for readers on the Hub, whatever endpoint the card is pushed to

# The Hub has no image-quality (image regression) task. An image task tag such as image-classification would make
# the Hub's widget and Inference API call a stock transformers pipeline this model does not implement, so the card
# says "other" and the custom task "image-quality" is documented in the body and found through the tags.
PIPELINE_TAG = "other"
MODEL_TAGS = ("image-quality-assessment", "agiqa", "clip", "custom_code", "agqg")
DATASET_TAGS = ("image-quality-assessment", "mos")
# Hub metric ids (evaluate's names) of the two correlations reported in model-index.
INDEX_METRICS = (("srcc", "spearmanr", "SRCC"), ("plcc", "pearsonr", "PLCC"))
TABLE_METRICS = ("srcc", "krcc", "plcc", "plcc_logistic", "rmse")


class CardError(ValueError):
    """A card input or a rendered card is invalid; the message names the file and field."""


# ---------------------------------------------------------------------------------------------
# eval_results.json
# ---------------------------------------------------------------------------------------------


def load_eval_results(path: str | os.PathLike) -> dict[str, Any]:
    """Reads and checks an `eval_results.json` (format in the module docstring).

    Raises:
        CardError: the file is not JSON or a field is missing or of the wrong type (the message names both).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CardError(f"{path}: cannot read evaluation results ({error})") from error
    if not isinstance(data, dict):
        raise CardError(f"{path}: expected a JSON object, got {type(data).__name__}")
    _expect(path, "model_name", data.get("model_name"), str)
    if data.get("base_model") is not None:
        _expect(path, "base_model", data["base_model"], str)
    _expect(path, "synthetic", data.get("synthetic"), bool)
    results = data.get("results")
    if not isinstance(results, list):
        raise CardError(f"{path}: field 'results' must be a list, got {results!r}")
    for index, result in enumerate(results):
        where = f"results[{index}]"
        if not isinstance(result, dict):
            raise CardError(f"{path}: {where} must be an object, got {result!r}")
        _expect(path, f"{where}.dataset", result.get("dataset"), str)
        _expect(path, f"{where}.split", result.get("split"), str)
        num_images = result.get("num_images")
        if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 0:
            raise CardError(f"{path}: field '{where}.num_images' must be a non-negative integer, got {num_images!r}")
        metrics = result.get("metrics")
        if not isinstance(metrics, dict):
            raise CardError(f"{path}: field '{where}.metrics' must be an object, got {metrics!r}")
        for name in TABLE_METRICS:
            value = metrics.get(name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise CardError(f"{path}: field '{where}.metrics.{name}' must be a finite number, got {value!r}")
    return data


def _expect(path: Path, field: str, value: Any, kind: type) -> None:
    if not isinstance(value, kind) or (kind is str and not value):
        raise CardError(f"{path}: field '{field}' must be a non-empty {kind.__name__}, got {value!r}")


# ---------------------------------------------------------------------------------------------
# Model card
# ---------------------------------------------------------------------------------------------


def model_card_data(
    config: Mapping[str, Any],
    eval_results: Mapping[str, Any] | None,
    *,
    license: str = "apache-2.0",  # noqa: A002 - the card field's name
    base_model: str | None = None,
    datasets: Sequence[str] | None = None,
    model_name: str | None = None,
) -> ModelCardData:
    """The YAML metadata of a model card: licence, library, pipeline tag, tags, base model, datasets, metrics and a
    `model-index` with SRCC and PLCC per evaluated dataset/split (values rounded to 4 decimals; null ones left out).

    Args:
        config: The model's `config.json` as a dict (the base model falls back to its CLIP checkpoint's Hub id).
        eval_results: A checked `eval_results.json` (see `load_eval_results`), or None.
        license: The weights' licence id.
        base_model: Overrides the base model (must be a Hub model id).
        datasets: Overrides the dataset list (default: the evaluated datasets, none for synthetic data).
        model_name: Overrides the model-index name (default: `eval_results["model_name"]`).

    Raises:
        CardError: `base_model` is given and is not a Hub model id.
    """
    results = list((eval_results or {}).get("results", []))
    synthetic = bool((eval_results or {}).get("synthetic", False))
    name = model_name or (eval_results or {}).get("model_name") or "agqg-model"
    base = base_model_source(config, eval_results, base_model).hub_id
    if datasets is None:
        # Synthetic data has no Hub dataset to link; real datasets are listed by the names evaluation used.
        datasets = [] if synthetic else list(dict.fromkeys(r["dataset"] for r in results))
    eval_entries = [
        EvalResult(
            task_type=PIPELINE_TAG,
            task_name="Image Quality Assessment",
            dataset_type=result["dataset"],
            dataset_name=result["dataset"],
            dataset_split=result["split"],
            metric_type=metric_type,
            metric_name=metric_name,
            metric_value=round(float(result["metrics"][key]), 4),
            verified=False,
        )
        for result in results
        for key, metric_type, metric_name in INDEX_METRICS
        if result["metrics"].get(key) is not None
    ]
    return ModelCardData(
        license=license,
        library_name="transformers",
        pipeline_tag=PIPELINE_TAG,
        tags=[*MODEL_TAGS, *(["synthetic-demo"] if synthetic else [])],
        base_model=base,
        datasets=list(datasets) or None,
        metrics=[metric_type for _, metric_type, _ in INDEX_METRICS],
        model_name=name if eval_entries else None,
        eval_results=eval_entries or None,
    )


@dataclass(frozen=True)
class BaseModelSource:
    """Where the backbone's starting weights came from, as the card states it.

    `hub_id`: a Hub model id, recorded as the card's `base_model`. `local_name`: set (possibly to "" when only a
    marker is known) for a checkpoint that is not on the Hub, such as a local CLIP folder; the card names only its
    base name. Neither: no pretrained checkpoint is recorded, the backbone was trained from scratch.
    """

    hub_id: str | None = None
    local_name: str | None = None


def is_hub_model_id(value: Any) -> bool:
    """Whether `value` can be a card's `base_model`: an "owner/name" Hub id that is not a path on this machine."""
    return isinstance(value, str) and "/" in value and is_hub_id(value)


BACKBONE_NAMES = {"clip": "CLIP", "siglip": "SigLIP", "siglip2": "SigLIP 2", "align": "ALIGN"}


def _vision_summary(model_type: str, vision: dict[str, Any]) -> str:
    """The vision tower in a few words: a ViT's patch size, depth and width; ALIGN's EfficientNet blocks and output
    channels (before the width multiplier)."""
    if model_type == "align":
        blocks = sum(vision.get("num_block_repeats") or [])
        channels = (vision.get("out_channels") or ["?"])[-1]
        return f"EfficientNet (convolutional), {blocks} base blocks, {channels} channels"
    return (
        f"ViT with {vision.get('patch_size', 32)}-px patches, {vision.get('num_hidden_layers', 12)} layers, "
        f"width {vision.get('hidden_size', 768)}"
    )


def backbone_config_of(config: dict[str, Any]) -> dict[str, Any]:
    """The backbone's config dict in a saved AGQG config.json: `backbone_config`, or `clip_config` in folders saved
    before other backbones were supported."""
    return config.get("backbone_config") or config.get("clip_config") or {}


def base_model_source(
    config: Mapping[str, Any], eval_results: Mapping[str, Any] | None, base_model: str | None = None
) -> BaseModelSource:
    """The base model of a saved folder: `base_model` when given, else `eval_results.json`'s `base_model` (training
    writes the CLIP checkpoint or `init_model` there: a Hub id, a local path or null), else the CLIP config's
    `_name_or_path` (a Hub id, a redacted "<local path>/NAME", or, in folders saved before redaction, a local path).

    Raises:
        CardError: `base_model` is given and is not a Hub model id.
    """
    if base_model is not None:
        if not is_hub_model_id(base_model):
            raise CardError(f"base_model {base_model!r} is not a Hub model id (owner/name) or is a local path")
        return BaseModelSource(hub_id=base_model)
    candidates = ((eval_results or {}).get("base_model"), backbone_config_of(config).get("_name_or_path"))
    for candidate in candidates:
        if not isinstance(candidate, str) or not candidate:
            continue
        if is_hub_model_id(candidate):
            return BaseModelSource(hub_id=candidate)
        redacted = redacted_local_path(candidate)  # "<local path>/NAME" or the bare marker
        return BaseModelSource(local_name=redacted[len(LOCAL_PATH_MARKER) :].lstrip("/"))
    return BaseModelSource()


def render_model_card(
    model_dir: str | os.PathLike,
    *,
    repo_id: str,
    license: str = "apache-2.0",  # noqa: A002
    base_model: str | None = None,
    datasets: Sequence[str] | None = None,
    code_repo: str | None = None,
    eval_results: Mapping[str, Any] | None = None,
    revision: str | None = None,
    code_revision: str | None = None,
    space: str | None = None,
) -> ModelCard:
    """Renders the model card of a saved AGQG folder (reads `config.json`, `preprocessor_config.json` and, when
    present, `eval_results.json`).

    Args:
        model_dir: The folder written by `save_pretrained` (and training).
        repo_id: The Hub repository the card is for (used in the usage snippets).
        license: The weights' licence id.
        base_model: Overrides the base model read from `eval_results.json` / the config (a Hub model id).
        datasets: Overrides the training/evaluation dataset ids of the metadata.
        code_repo: The code repository serving this model's remote code, if any.
        eval_results: Overrides `eval_results.json` (already loaded and checked).
        revision: The commit of `repo_id` that holds this model's code and weights: the usage examples pin it. `None`
            (not pushed yet): they say `revision="main"` and ask the reader to pin a commit.
        code_revision: The commit of `code_repo` that holds the code, pinned likewise.
        space: The Gradio Space (`"namespace/name"`) that demos this model, if any: the card links to it.

    Raises:
        CardError: a file is missing or malformed, or the rendered card does not validate.
    """
    import huggingface_hub
    import torch
    import transformers

    model_dir = Path(model_dir)
    config = _read_json(model_dir / "config.json")
    processor = _read_json(_processor_file(model_dir))
    processor = processor.get("image_processor", processor)  # transformers 5 nests it in processor_config.json
    if eval_results is None and (model_dir / EVAL_RESULTS_FILE).is_file():
        eval_results = load_eval_results(model_dir / EVAL_RESULTS_FILE)
    card_data = model_card_data(config, eval_results, license=license, base_model=base_model, datasets=datasets)
    source = base_model_source(config, eval_results, base_model)
    clip_config = backbone_config_of(config)
    vision, text = clip_config.get("vision_config") or {}, clip_config.get("text_config") or {}
    grade_names = list(config.get("grade_names") or [])
    score_min, score_max = (float(v) for v in config.get("score_range", (1.0, 5.0)))
    crop = processor.get("crop_size") or {}
    size = processor.get("size") or {}
    card = ModelCard.from_template(
        card_data,
        template_path=str(MODEL_CARD_TEMPLATE),
        model_name=(eval_results or {}).get("model_name") or repo_id.split("/")[-1],
        repo_id=repo_id,
        endpoint=HUB_URL,
        code_repo=code_repo,
        space=space,
        synthetic=bool((eval_results or {}).get("synthetic", False)),
        base_model=source.hub_id,
        local_base_model=source.local_name is not None,
        local_base_name=source.local_name,
        revision=revision,
        code_revision=code_revision,
        license=license,
        grading=config.get("grading", "agqg"),
        grading_title=_grading_title(config),
        grading_description=_grading_description(config),
        vision_summary=_vision_summary(clip_config.get("model_type", "clip"), vision),
        text_summary=f"{text.get('num_hidden_layers', 12)} layers, width {text.get('hidden_size', 512)}",
        projection_dim=clip_config.get("projection_dim", vision.get("hidden_size", 512)),
        backbone_name=BACKBONE_NAMES.get(clip_config.get("model_type", "clip"), clip_config.get("model_type")),
        prompt_templates=list(config.get("prompt_templates") or []),
        grade_names=grade_names,
        num_grades=len(grade_names),
        alignment_template=config.get("alignment_template", ""),
        alignment_grade_names=list(config.get("alignment_grade_names") or []),
        score_min=_number(score_min),
        score_max=_number(score_max),
        resize_size=size.get("shortest_edge", size.get("height", "?")),
        crop_size=f"{crop.get('width', '?')}x{crop.get('height', '?')}",
        image_mean=[round(v, 4) for v in processor.get("image_mean", [])],
        image_std=[round(v, 4) for v in processor.get("image_std", [])],
        results=[_table_row(r) for r in (eval_results or {}).get("results", [])],
        saved_with=config.get("transformers_version", "unknown"),
        published_with=transformers.__version__,
        torch_version=torch.__version__.split("+")[0],
        hub_version=huggingface_hub.__version__,
    )
    check_model_card(card, expected_values=len(card_data.eval_results or []))
    return card


def write_model_card(model_dir: str | os.PathLike, *, repo_id: str, **kwargs: Any) -> Path:
    """Renders the model card (see `render_model_card`) and saves it as `README.md` in `model_dir`."""
    path = Path(model_dir) / "README.md"
    render_model_card(model_dir, repo_id=repo_id, **kwargs).save(path)
    return path


def check_model_card(
    card: ModelCard | str, expected_values: int | None = None, *, require_agqg_fields: bool = True
) -> list[EvalResult]:
    """Checks a model card offline: its YAML parses into `ModelCardData`, it carries the required fields, every
    `base_model` is a Hub model id (not a local path), and its `model-index` parses with huggingface_hub's eval-result
    reader (`model_index_to_eval_results`). (The Hub's own validation, `/api/validate-yaml`, needs the Hub: `push`
    asks it before creating anything.)

    Args:
        card: The card or its text.
        expected_values: The number of metric values the model-index must hold.
        require_agqg_fields: Also require the fields and tags of a generated card (off for a user-written card).

    Returns:
        The evaluation results read back from `model-index` (empty without one).

    Raises:
        CardError: a required field is missing or the model-index does not parse or has the wrong size.
    """
    try:
        card = ModelCard(str(card) if not isinstance(card, ModelCard) else card.content)
    except (ValueError, TypeError) as error:  # YAML that does not parse, or a model-index that ModelCardData rejects
        raise CardError(f"model card metadata is invalid: {error}") from error
    metadata = card.data.to_dict()
    required = ("license", "library_name", "pipeline_tag", "tags", "metrics") if require_agqg_fields else ()
    for field in required:
        if not metadata.get(field):
            raise CardError(f"model card metadata has no '{field}'")
    base_models = metadata.get("base_model")
    if base_models is not None and not isinstance(base_models, list):
        base_models = [base_models]
    for base in base_models or []:
        if not is_hub_model_id(base):
            raise CardError(
                f"model card metadata field 'base_model' must name Hub models (owner/name), got {base!r}"
                + (" (a local path)" if isinstance(base, str) and os.path.exists(base) else "")
            )
    missing_tags = set(MODEL_TAGS) - set(metadata.get("tags") or [])
    if require_agqg_fields and missing_tags:
        raise CardError(f"model card metadata lacks the tags {sorted(missing_tags)}")
    model_index = metadata.get("model-index")
    if model_index is None:
        if expected_values:
            raise CardError(f"model card has no model-index but {expected_values} evaluation values")
        return []
    try:
        _, parsed = model_index_to_eval_results(model_index)
    except (KeyError, TypeError, ValueError) as error:
        raise CardError(f"model-index does not parse with huggingface_hub's reader: {error!r}") from error
    if expected_values is not None and len(parsed) != expected_values:
        raise CardError(f"model-index holds {len(parsed)} metric values, expected {expected_values}")
    return parsed


def _grading_title(config: Mapping[str, Any]) -> str:
    return "a Graded Response Model head" if config.get("grading", "agqg") == "agqg" else "softmax aggregation"


def _grading_description(config: Mapping[str, Any]) -> str:
    if config.get("grading", "agqg") != "agqg":
        return (
            "the baseline aggregation: softmax over the K grade similarities scaled by CLIP's logit scale, then the "
            "expected grade."
        )
    from modeling_agqg import min_scaled_gap_for_unimodality

    num_grades = int(config.get("num_grades", 5))
    gap = config.get("min_scaled_gap")
    gap = min_scaled_gap_for_unimodality(num_grades) if gap is None else float(gap)
    return (
        f"Samejima's Graded Response Model. An ability branch estimates the image's ability θ from "
        f"{_ABILITY_SOURCES.get(config.get('ability_source', 'both'), 'the image side')}; a difficulty branch builds "
        f"K-1 = {num_grades - 1} arithmetically spaced thresholds b_k = b_1 + (k-1)d from the grade-text features; "
        f"P(grade ≥ k+1) = σ(a(θ − b_k)) with discrimination a > 0, and the score is the expected grade. The "
        f"scaled spacing a·d ≥ {gap:.4f} keeps the grade distribution unimodal for every θ."
    )


_ABILITY_SOURCES = {
    "similarities": "its similarities to the grade texts",
    "embedding": "its image embedding",
    "both": "its image embedding and its similarities to the grade texts",
}


def _table_row(result: Mapping[str, Any]) -> dict[str, Any]:
    metrics = result["metrics"]
    row = {"dataset": result["dataset"], "split": result["split"], "num_images": result["num_images"]}
    row.update({name: "–" if metrics.get(name) is None else f"{metrics[name]:.4f}" for name in TABLE_METRICS})
    return row


def _number(value: float) -> str:
    return f"{value:g}"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CardError(f"{path}: cannot read ({error})") from error
    if not isinstance(data, dict):
        raise CardError(f"{path}: expected a JSON object")
    return data


def _processor_file(model_dir: Path) -> Path:
    for name in ("preprocessor_config.json", "processor_config.json"):
        if (model_dir / name).is_file():
            return model_dir / name
    raise CardError(f"{model_dir}: no preprocessor_config.json (save the model with save_pretrained)")


# ---------------------------------------------------------------------------------------------
# Dataset card
# ---------------------------------------------------------------------------------------------

_COLUMN_MEANINGS = {
    "image": "the image",
    "mos": "mean opinion score (quality)",
    "mos_std": "standard deviation of the opinion scores",
    "prompt": "the generation prompt",
    "name": "file name in the original release",
}


def render_dataset_card(
    dataset: Any,
    *,
    repo_id: str,
    pretty_name: str,
    license: str,  # noqa: A002
    mos_range: tuple[float, float] | None = None,
    description: str = "",
    source: str | None = None,
    license_note: str | None = None,
    citation: str | None = None,
    synthetic: bool = False,
    column_meanings: Mapping[str, str] | None = None,
) -> DatasetCard:
    """Renders the card of an image-quality dataset (`datasets.Dataset` or `DatasetDict`) with a `mos` column.

    Args:
        dataset: The data; its splits, sizes and columns are described in the card.
        repo_id: The Hub dataset repository.
        pretty_name: Display name.
        license: Licence id of the data (check the original release allows redistribution).
        mos_range: Nominal (min, max) of the MOS scale; `None` states the observed range instead.
        description: A paragraph on what the data is.
        source: Where the data comes from (paper, URL).
        license_note: Extra licence terms.
        citation: BibTeX of the original dataset.
        synthetic: Marks synthetic demonstration data.
        column_meanings: Descriptions of extra columns.
    """
    splits = dict(dataset.items()) if hasattr(dataset, "items") else {"train": dataset}
    first = next(iter(splits.values()))
    if "mos" not in first.column_names:
        raise CardError(f"dataset for {repo_id} has no 'mos' column (columns: {first.column_names})")
    meanings = {**_COLUMN_MEANINGS, **(column_meanings or {})}
    mos_source = None
    if mos_range is None:
        values = [v for split in splits.values() for v in split["mos"]]
        mos_range, mos_source = (min(values), max(values)), "observed range; the nominal scale was not given"
    total = sum(split.num_rows for split in splits.values())
    card_data = DatasetCardData(
        license=license,
        pretty_name=pretty_name,
        tags=[*DATASET_TAGS, *(["synthetic"] if synthetic else [])],
        size_categories=[_size_category(total)],
    )
    return DatasetCard.from_template(
        card_data,
        template_path=str(DATASET_CARD_TEMPLATE),
        repo_id=repo_id,
        pretty_name=pretty_name,
        description=description or f"{pretty_name}: images with mean opinion scores (MOS) of their quality.",
        synthetic=synthetic,
        splits=[{"name": name, "num_rows": split.num_rows} for name, split in splits.items()],
        columns=[
            {"name": name, "dtype": _feature_type(feature), "meaning": meanings.get(name, "")}
            for name, feature in first.features.items()
        ],
        mos_min=_number(float(mos_range[0])),
        mos_max=_number(float(mos_range[1])),
        mos_source=mos_source,
        source=source,
        license=license,
        license_note=license_note,
        citation=citation,
    )


def _feature_type(feature: Any) -> str:
    return getattr(feature, "dtype", None) or type(feature).__name__


def _size_category(num_rows: int) -> str:
    """The Hub's `size_categories` bucket of a row count."""
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if num_rows < limit:
            return label
    return "n>1M"
