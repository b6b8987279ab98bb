"""Model and dataset cards: rendered from a saved folder and `eval_results.json`, valid for huggingface_hub's card
classes, its eval-result reader and the Hub's metadata validation (through the test server), and honest about
synthetic models."""

from __future__ import annotations

import json
from pathlib import Path

import huggingface_hub
import pytest
from conftest import make_tiny_model
from hub_server import HubServer, use_hub_server, validate_card_metadata
from huggingface_hub import DatasetCard, ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results

from hub_cards import (
    CardError,
    check_model_card,
    load_eval_results,
    model_card_data,
    render_dataset_card,
    render_model_card,
    write_model_card,
)
from hub_cards.cards import BaseModelSource, base_model_source
from hub_cards.publish import validate_card_on_hub

REAL_RESULTS = {
    "model_name": "agqg-clip-b16-agiqa3k",
    "base_model": "openai/clip-vit-base-patch16",
    "synthetic": False,
    "results": [
        {
            "dataset": "AGIQA-3K",
            "split": "val-split1",
            "num_images": 596,
            "metrics": {"srcc": 0.86123, "krcc": 0.6712, "plcc": 0.90456, "plcc_logistic": 0.9111, "rmse": 0.3921},
        },
        {
            "dataset": "AIGCIQA2023",
            "split": "test",
            "num_images": 480,
            "metrics": {"srcc": 0.8333, "krcc": None, "plcc": 0.8444, "plcc_logistic": None, "rmse": None},
        },
    ],
}
SYNTHETIC_RESULTS = {
    "model_name": "agqg-quickstart",
    "base_model": None,
    "synthetic": True,
    "results": [
        {
            "dataset": "synthetic-distortions",
            "split": "test",
            "num_images": 96,
            "metrics": {"srcc": 0.9012, "krcc": 0.74, "plcc": 0.9123, "plcc_logistic": 0.92, "rmse": 0.31},
        }
    ],
}


def _saved(tokenizer, folder: Path, eval_results: dict | None = None, **overrides) -> Path:
    make_tiny_model(tokenizer, **overrides).save_pretrained(folder)
    if eval_results is not None:
        (folder / "eval_results.json").write_text(json.dumps(eval_results))
    return folder


def test_card_of_a_trained_model_shows_its_numbers_and_parses(tokenizer, tmp_path: Path) -> None:
    folder = _saved(tokenizer, tmp_path / "model", REAL_RESULTS)
    card = render_model_card(folder, repo_id="someone/agqg-agiqa3k")
    metadata = card.data.to_dict()

    assert metadata["license"] == "apache-2.0" and metadata["library_name"] == "transformers"
    assert metadata["pipeline_tag"] == "other"
    assert {"image-quality-assessment", "agiqa", "clip", "custom_code", "agqg"} <= set(metadata["tags"])
    assert metadata["base_model"] == "openai/clip-vit-base-patch16"
    assert metadata["datasets"] == ["AGIQA-3K", "AIGCIQA2023"]
    assert metadata["metrics"] == ["spearmanr", "pearsonr"]

    # The model-index reads back, with huggingface_hub's reader, as exactly the measured SRCC and PLCC.
    name, results = model_index_to_eval_results(metadata["model-index"])
    assert name == "agqg-clip-b16-agiqa3k"
    read_back = {(r.dataset_name, r.dataset_split, r.metric_type): r.metric_value for r in results}
    expected = {
        (result["dataset"], result["split"], metric_type): round(result["metrics"][key], 4)
        for result in REAL_RESULTS["results"]
        for key, metric_type in (("srcc", "spearmanr"), ("plcc", "pearsonr"))
    }
    assert read_back == expected
    assert len(check_model_card(card, expected_values=4)) == 4

    text = card.text
    assert "Synthetic demonstration" not in text
    assert "| AGIQA-3K | val-split1 | 596 | 0.8612 | 0.6712 | 0.9046 | 0.9111 | 0.3921 |" in text
    assert "| AIGCIQA2023 | test | 480 | 0.8333 | – | 0.8444 | – | – |" in text
    assert "**[1, 5]**" in text and "Higher is better" in text
    assert "`bad`, `poor`, `fair`, `good`, `perfect`" in text
    for snippet in (
        'AutoModel.from_pretrained("someone/agqg-agiqa3k", trust_remote_code=True',
        'AutoImageProcessor.from_pretrained("someone/agqg-agiqa3k"',
        'pipeline("image-quality", model="someone/agqg-agiqa3k", trust_remote_code=True',
        "agqg score images/ --model someone/agqg-agiqa3k",
        "revision=",
        "arXiv",
        "2512.22780",
        "a·d ≥ 1.0986",  # the unimodality bound ln 3 for K=5
    ):
        assert snippet in text, snippet
    assert validate_card_metadata(str(card), "model") == []


def test_card_of_a_synthetic_model_says_it_is_a_demonstration(tokenizer, tmp_path: Path) -> None:
    folder = _saved(tokenizer, tmp_path / "model", SYNTHETIC_RESULTS)
    card = render_model_card(folder, repo_id="someone/agqg-quickstart")
    assert "**Synthetic demonstration.**" in card.text
    assert "do not use its scores" in card.text
    assert "synthetic-demo" in card.data.tags
    assert card.data.base_model is None and card.data.datasets is None
    assert "trained from scratch (no pretrained base model)" in card.text
    assert "| synthetic-distortions | test | 96 | 0.9012 |" in card.text


@pytest.mark.parametrize("backbone", ["clip", "align"])
def test_card_names_the_backbone_and_its_vision_tower(tokenizer, tmp_path: Path, backbone: str) -> None:
    """The quickstart's model is a tiny ALIGN: its card says EfficientNet, not a ViT's patches."""
    card = render_model_card(_saved(tokenizer, tmp_path / "model", SYNTHETIC_RESULTS, backbone=backbone), repo_id="a/b")
    if backbone == "align":
        assert "**Backbone:** ALIGN, vision tower EfficientNet (convolutional), 3 base blocks, 32 channels" in card.text
    else:
        assert "**Backbone:** CLIP, vision tower ViT with 8-px patches, 2 layers, width 32" in card.text


def test_undefined_metrics_show_as_dashes_and_stay_out_of_the_model_index(tokenizer, tmp_path: Path) -> None:
    constant = json.loads(json.dumps(SYNTHETIC_RESULTS))
    constant["results"][0]["metrics"].update(srcc=None, krcc=None, plcc=None, plcc_logistic=None)
    constant["results"].append({**SYNTHETIC_RESULTS["results"][0], "split": "val"})
    card = render_model_card(_saved(tokenizer, tmp_path / "model", constant), repo_id="someone/constant")
    assert "| synthetic-distortions | test | 96 | – | – | – | – | 0.3100 |" in card.text
    _, results = model_index_to_eval_results(card.data.to_dict()["model-index"])
    assert {(r.dataset_split, r.metric_type) for r in results} == {("val", "spearmanr"), ("val", "pearsonr")}


def test_card_reads_the_eval_results_training_writes(tokenizer, tmp_path: Path) -> None:
    from training.results import write_eval_results

    folder = _saved(tokenizer, tmp_path / "model")
    metrics = {"srcc": float("nan"), "krcc": 0.25, "plcc": 0.5, "plcc_logistic": 0.625, "rmse": 0.75}
    write_eval_results(
        folder / "eval_results.json",
        model_name="from-training",
        base_model=None,
        synthetic=True,
        results=[{"dataset": "synthetic", "split": "test", "num_images": 5, "metrics": metrics}],
    )
    card = render_model_card(folder, repo_id="someone/from-training")
    assert "| synthetic | test | 5 | – | 0.2500 | 0.5000 | 0.6250 | 0.7500 |" in card.text
    assert [(r.metric_type, r.metric_value) for r in card.data.eval_results] == [("pearsonr", 0.5)]


def test_card_without_evaluation_results_has_no_model_index(tokenizer, tmp_path: Path) -> None:
    card = render_model_card(_saved(tokenizer, tmp_path / "model"), repo_id="someone/untested")
    assert "model-index" not in card.data.to_dict()
    assert "No evaluation results were provided" in card.text
    assert check_model_card(card) == []
    assert validate_card_metadata(str(card), "model") == []


def test_card_describes_softmax_grading_custom_grades_and_scale(tokenizer, tmp_path: Path) -> None:
    folder = _saved(
        tokenizer,
        tmp_path / "model",
        grading="softmax",
        num_grades=3,
        grade_names=["low", "medium", "high"],
        score_range=(0.0, 100.0),
    )
    text = render_model_card(folder, repo_id="someone/softmax").text
    assert "softmax aggregation" in text and "Graded Response Model head" not in text
    assert "**[0, 100]**" in text and "grade 3 (`high`) to 100" in text
    assert "probabilities of low, medium, high" in text


def test_base_model_comes_from_the_clip_checkpoint_when_it_is_a_hub_id(tmp_path: Path) -> None:
    hub_source = {"clip_config": {"_name_or_path": "openai/clip-vit-base-patch16"}}
    assert model_card_data(hub_source, None).base_model == "openai/clip-vit-base-patch16"
    local_folder = tmp_path / "clip"
    local_folder.mkdir()
    assert model_card_data({"clip_config": {"_name_or_path": str(local_folder)}}, None).base_model is None
    assert model_card_data({"clip_config": {"_name_or_path": ""}}, None).base_model is None
    assert model_card_data(hub_source, None, base_model="org/other").base_model == "org/other"


def test_base_model_source_records_only_hub_ids_and_names_local_checkpoints_by_folder(tmp_path: Path) -> None:
    local_folder = tmp_path / "clip-vit-b16"
    local_folder.mkdir()
    hub_id = "openai/clip-vit-base-patch16"
    cases = [
        ({"base_model": hub_id}, {}, BaseModelSource(hub_id=hub_id)),
        ({"base_model": str(local_folder)}, {}, BaseModelSource(local_name="clip-vit-b16")),
        ({"base_model": None}, {"_name_or_path": str(local_folder)}, BaseModelSource(local_name="clip-vit-b16")),
        (
            {"base_model": None},
            {"_name_or_path": "<local path>/clip-vit-b16"},
            BaseModelSource(local_name="clip-vit-b16"),
        ),
        ({"base_model": None}, {"_name_or_path": hub_id}, BaseModelSource(hub_id=hub_id)),
        ({"base_model": None}, {"_name_or_path": ""}, BaseModelSource()),  # a CLIP built in code: from scratch
        ({"base_model": "tiny"}, {}, BaseModelSource(local_name="tiny")),  # not an owner/name id
    ]
    for eval_results, clip_config, expected in cases:
        assert base_model_source({"clip_config": clip_config}, eval_results) == expected, (eval_results, clip_config)
    with pytest.raises(CardError, match="not a Hub model id"):
        base_model_source({}, None, base_model=str(local_folder))


def test_card_of_a_model_from_a_local_clip_folder_says_so_without_the_path(tokenizer, tmp_path: Path) -> None:
    clip_folder = tmp_path / "checkpoints" / "clip-local"
    results = {**REAL_RESULTS, "base_model": str(clip_folder)}  # what training writes for --clip <folder>
    card = render_model_card(_saved(tokenizer, tmp_path / "model", results), repo_id="someone/from-local")
    assert card.data.base_model is None
    assert "initialised from a local CLIP checkpoint (`clip-local`) that is not on the Hub" in card.text
    assert "trained from scratch" not in card.text and str(tmp_path) not in str(card)
    assert validate_card_metadata(str(card), "model") == []


def test_check_model_card_refuses_a_local_path_as_base_model(tmp_path: Path) -> None:
    with pytest.raises(CardError, match="'base_model' must name Hub models"):
        check_model_card(f"---\nlicense: mit\nbase_model: {tmp_path}\n---\n# m\n", require_agqg_fields=False)
    with pytest.raises(CardError, match="'base_model'"):
        check_model_card("---\nbase_model: [openai/clip-vit-base-patch16, ./clip]\n---\n", require_agqg_fields=False)
    check_model_card("---\nbase_model: openai/clip-vit-base-patch16\n---\n# m\n", require_agqg_fields=False)


def test_card_examples_pin_the_given_commits(tokenizer, tmp_path: Path) -> None:
    folder = _saved(tokenizer, tmp_path / "model", SYNTHETIC_RESULTS)
    model_sha, code_sha = "1" * 40, "2" * 40
    pinned = render_model_card(folder, repo_id="someone/pinned", revision=model_sha).text
    assert f'AutoModel.from_pretrained("someone/pinned", trust_remote_code=True, revision="{model_sha}")' in pinned
    assert (
        f'pipeline("image-quality", model="someone/pinned", trust_remote_code=True, revision="{model_sha}")' in pinned
    )
    assert 'revision="main"' not in pinned
    both = render_model_card(
        folder, repo_id="someone/w", code_repo="someone/code", revision=model_sha, code_revision=code_sha
    ).text
    assert f'revision="{model_sha}", code_revision="{code_sha}"' in both
    unpinned = render_model_card(folder, repo_id="someone/unpinned").text  # not pushed yet: no commit to pin
    assert 'revision="main")  # pin a commit sha' in unpinned


def test_write_model_card_saves_readme(tokenizer, tmp_path: Path) -> None:
    folder = _saved(tokenizer, tmp_path / "model", SYNTHETIC_RESULTS)
    path = write_model_card(folder, repo_id="someone/agqg-quickstart", license="mit")
    assert path == folder / "README.md"
    assert ModelCard.load(path).data.license == "mit"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.pop("model_name"), "'model_name'"),
        (lambda d: d.update(synthetic="yes"), "'synthetic'"),
        (lambda d: d.update(results={}), "'results'"),
        (lambda d: d["results"][0].pop("split"), "'results[0].split'"),
        (lambda d: d["results"][0].update(num_images=-3), "'results[0].num_images'"),
        (lambda d: d["results"][0].update(metrics=[0.9]), "'results[0].metrics'"),
        (lambda d: d["results"][0]["metrics"].update(rmse=float("nan")), "'results[0].metrics.rmse'"),
        (lambda d: d["results"][0]["metrics"].update(srcc="0.9"), "'results[0].metrics.srcc'"),
    ],
)
def test_bad_eval_results_name_the_file_and_field(tmp_path: Path, mutate, field: str) -> None:
    data = json.loads(json.dumps(SYNTHETIC_RESULTS))
    mutate(data)
    path = tmp_path / "eval_results.json"
    path.write_text(json.dumps(data))
    with pytest.raises(CardError) as error:
        load_eval_results(path)
    assert str(path) in str(error.value) and field in str(error.value)


def test_eval_results_that_are_not_json_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "eval_results.json"
    path.write_text("{not json")
    with pytest.raises(CardError, match="eval_results.json: cannot read"):
        load_eval_results(path)


def test_check_model_card_rejects_a_broken_model_index() -> None:
    text = "---\nlicense: mit\nmodel-index:\n- name: m\n  results:\n  - task: {type: other}\n---\n# m\n"
    with pytest.raises(CardError):
        check_model_card(text, require_agqg_fields=False)
    with pytest.raises(CardError, match="pipeline_tag|library_name"):
        check_model_card("---\nlicense: mit\n---\n# m\n")


def test_hub_validation_accepts_our_cards_and_rejects_bad_metadata(
    tokenizer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _saved(tokenizer, tmp_path / "model", REAL_RESULTS)
    card = render_model_card(folder, repo_id="someone/agqg")
    bad_task = str(card).replace("pipeline_tag: other", "pipeline_tag: image-quality")
    bad_licence = str(card).replace("license: apache-2.0", "license: apache2")
    with HubServer() as server:
        use_hub_server(monkeypatch, server, tmp_path / "hf_home")
        # POST /api/validate-yaml at the configured endpoint (what `push` asks before creating anything).
        validate_card_on_hub(str(card), "model")
        with pytest.raises(CardError, match=r"README\.md: the Hub refuses the card's metadata: .*pipeline_tag"):
            validate_card_on_hub(bad_task, "model", shown_as="README.md")
        with pytest.raises(CardError, match="license"):
            validate_card_on_hub(bad_licence.encode(), "model")
        if not huggingface_hub.__version__.startswith("0."):  # 0.x's own validate posts to huggingface.co
            card.validate()  # huggingface_hub's validation, the same request
            with pytest.raises(ValueError, match="pipeline_tag"):
                ModelCard(bad_task).validate()
        assert server.unhandled_requests == []
    # The same checks, offline, on malformed metadata the card classes would not even build.
    assert validate_card_metadata("---\ntags: [1, 2]\n---\n", "model")
    assert validate_card_metadata("---\nmodel-index: [{name: m, results: [{task: {type: other}}]}]\n---\n", "model")
    assert validate_card_metadata("---\n- a list\n---\n", "model") == ["metadata must be a YAML mapping"]
    assert validate_card_metadata("---\nlicense: other\n---\n", "model") == ['"license: other" needs "license_name"']


def test_dataset_card_describes_splits_columns_and_scale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    table = datasets.Dataset.from_dict({"mos": [1.5, 4.0, 3.0], "prompt": ["a", "b", "c"], "style": ["x", "y", "z"]})
    splits = datasets.DatasetDict({"train": table.select([0, 1]), "test": table.select([2])})
    card = render_dataset_card(
        splits,
        repo_id="someone/tiny-iqa",
        pretty_name="Tiny IQA",
        license="cc-by-nc-4.0",
        mos_range=(0, 5),
        source="Made up for a test.",
        citation="@misc{tiny, title={Tiny}}",
        column_meanings={"style": "the art style"},
    )
    text = str(card)
    assert "`train`: 2 images" in text and "`test`: 1 images" in text
    assert "| `mos` | float64 | mean opinion score (quality) |" in text
    assert "| `style` | string | the art style |" in text
    assert "`mos` is on **[0, 5]**, higher is better." in text
    assert "Made up for a test." in text and "@misc{tiny" in text
    assert "Synthetic demonstration" not in text
    assert card.data.license == "cc-by-nc-4.0" and card.data.size_categories == ["n<1K"]
    assert validate_card_metadata(text, "dataset") == []

    synthetic = render_dataset_card(table, repo_id="someone/syn", pretty_name="Syn", license="mit", synthetic=True)
    assert "Synthetic demonstration data" in str(synthetic) and "synthetic" in synthetic.data.tags
    assert "**[1.5, 4]**" in str(synthetic) and "observed range" in str(synthetic)
    with HubServer() as server:
        use_hub_server(monkeypatch, server, tmp_path / "hf_home")
        validate_card_on_hub(str(synthetic), "dataset")
        if not huggingface_hub.__version__.startswith("0."):
            DatasetCard(str(synthetic)).validate()
        assert server.unhandled_requests == []

    with pytest.raises(CardError, match="no 'mos' column"):
        render_dataset_card(table.remove_columns("mos"), repo_id="a/b", pretty_name="B", license="mit")
