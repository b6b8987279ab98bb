"""Publishing through a Hub-compatible test server (`tests/hub_server.py`): `agqg push`, then loading the repository in
fresh processes with `AutoModel`, `AutoImageProcessor` and `pipeline("image-quality")`; code-repository mode; failed,
interrupted and repeated uploads; and a dataset `push_to_hub` + `load_dataset` round trip."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny_model
from hub_server import HubServer, use_hub_server
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
# AGQG_CROSS_PYTHON names another environment's interpreter (CI: transformers 4.x with huggingface_hub 0.x beside
# 5.x/2.x): pushed repositories are also loaded by it, through its own Hub client.
LOADERS = [sys.executable] + ([os.environ["AGQG_CROSS_PYTHON"]] if os.environ.get("AGQG_CROSS_PYTHON") else [])
# What every published AGQG repository must hold (the folder may have more, e.g. further remote-code modules).
REQUIRED_FILES = {
    "config.json",
    "configuration_agqg.py",
    "modeling_agqg.py",
    "pipeline_agqg.py",
    "model.safetensors",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "README.md",
    "eval_results.json",
}
EVAL_RESULTS = {
    "model_name": "agqg-tiny-test",
    "base_model": None,
    "synthetic": True,
    "results": [
        {
            "dataset": "synthetic-distortions",
            "split": "test",
            "num_images": 48,
            "metrics": {"srcc": 0.8765, "krcc": 0.7012, "plcc": 0.8891, "plcc_logistic": 0.9012, "rmse": 0.4321},
        }
    ],
}

# Runs in a fresh interpreter that never imports the local package: everything comes from the Hub repository.
LOADER = r"""
import json, sys
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModel, pipeline

repo_id, revision, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
model = AutoModel.from_pretrained(repo_id, revision=revision, trust_remote_code=True)
processor = AutoImageProcessor.from_pretrained(repo_id, revision=revision)
with torch.no_grad():
    auto_scores = model(**processor(images=[Image.open(p).convert("RGB") for p in paths], return_tensors="pt")).score
scorer = pipeline("image-quality", model=repo_id, revision=revision, trust_remote_code=True)
print("RESULT " + json.dumps({
    "auto": auto_scores.tolist(),
    "pipeline": [out["score"] for out in scorer(paths)],
    "grades": [out["grade"] for out in scorer(paths)],
    "local_package_imported": "modeling_agqg" in sys.modules or "hub_cards" in sys.modules,
}))
"""


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A running test Hub that this process and its subprocesses use; fails the test on any unimplemented route."""
    from huggingface_hub import HfFileSystem

    with HubServer() as server:
        server.env = use_hub_server(monkeypatch, server, tmp_path / "hf_home")
        yield server
    HfFileSystem.clear_instance_cache()  # fsspec keeps instances, which would keep this server's endpoint
    assert server.unhandled_requests == [], (
        f"the client called routes the test server lacks: {server.unhandled_requests}"
    )


@pytest.fixture
def model_dir(tokenizer, tmp_path: Path) -> Path:
    folder = tmp_path / "tiny-model"
    make_tiny_model(tokenizer).save_pretrained(folder)
    (folder / "eval_results.json").write_text(json.dumps(EVAL_RESULTS, indent=2))
    return folder


@pytest.fixture
def image_paths(tmp_path: Path) -> list[str]:
    rng = np.random.default_rng(7)
    paths = []
    for index, size in enumerate([(40, 48), (64, 32), (33, 33)]):
        path = tmp_path / f"image_{index}.png"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def _local_scores(model_dir: Path, paths: list[str]) -> list[float]:
    from modeling_agqg import AGQGForImageQualityAssessment

    model = AGQGForImageQualityAssessment.from_pretrained(model_dir).eval()
    images = [Image.open(p).convert("RGB") for p in paths]
    with torch.no_grad():
        return model(**model.image_processor(images=images, return_tensors="pt")).score.tolist()


def _published_files(model_dir: Path) -> set[str]:
    """The files a push of `model_dir` puts in the repository: the whole folder plus the generated card."""
    return {p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file()} | {"README.md"}


def _folder_digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*")}


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "modeling_agqg", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _load_in_fresh_process(
    repo_id: str, revision: str, paths: list[str], env: dict[str, str], cwd: Path, python: str = sys.executable
) -> dict:
    result = subprocess.run(
        [python, "-c", LOADER, repo_id, revision, *paths],
        env={k: v for k, v in env.items() if k != "HF_TOKEN"},  # a public repository needs no token
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))[7:])


# ---------------------------------------------------------------------------------------------
# The test server itself answers like the Hub does
# ---------------------------------------------------------------------------------------------


def test_server_repo_files_and_errors_behave_like_the_hub(hub: HubServer, tmp_path: Path) -> None:
    from huggingface_hub import HfApi, HfFileSystem, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    api = HfApi()
    assert api.endpoint == hub.url
    api.create_repo("agqg-tester/files")
    with pytest.raises(HfHubHTTPError) as conflict:
        api.create_repo("agqg-tester/files")
    assert conflict.value.response.status_code == 409
    api.create_repo("agqg-tester/files", exist_ok=True)

    weights = os.urandom(3000)
    api.upload_file(path_or_fileobj=b"hello\n", path_in_repo="notes/a.txt", repo_id="agqg-tester/files")
    api.upload_file(path_or_fileobj=weights, path_in_repo="w.safetensors", repo_id="agqg-tester/files")
    assert any(path.startswith("/lfs-upload/") for _, path, _ in hub.request_log), "binary file went through LFS"

    cache = tmp_path / "cache"
    assert Path(hf_hub_download("agqg-tester/files", "w.safetensors", cache_dir=cache)).read_bytes() == weights
    assert Path(hf_hub_download("agqg-tester/files", "notes/a.txt", cache_dir=cache)).read_text() == "hello\n"
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("agqg-tester/files", "missing.json", cache_dir=cache)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("agqg-tester/no-such-repo", "config.json", cache_dir=cache)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("agqg-tester/files", "notes/a.txt", revision="no-such-branch", cache_dir=cache)
    assert not api.file_exists("agqg-tester/files", "missing.json")

    top = {entry.path for entry in api.list_repo_tree("agqg-tester/files")}
    assert top == {".gitattributes", "notes", "w.safetensors"}
    everything = {entry.path: entry for entry in api.list_repo_tree("agqg-tester/files", recursive=True)}
    assert everything["w.safetensors"].lfs.sha256 == hashlib.sha256(weights).hexdigest()
    assert everything["notes/a.txt"].lfs is None and everything["notes/a.txt"].size == 6
    info = api.get_paths_info("agqg-tester/files", ["notes/a.txt", "notes", "absent"])
    assert [entry.path for entry in info] == ["notes/a.txt", "notes"]
    # Byte ranges, as HfFileSystem reads them (from the LFS storage host behind the redirect).
    with HfFileSystem().open("agqg-tester/files/w.safetensors", "rb", block_size=1024) as handle:
        handle.seek(1000)
        assert handle.read(100) == weights[1000:1100]

    assert api.model_info("agqg-tester/files").sha == api.list_repo_refs("agqg-tester/files").branches[0].target_commit
    api.delete_file("notes/a.txt", repo_id="agqg-tester/files")
    assert not api.file_exists("agqg-tester/files", "notes/a.txt")

    # Unknown routes fail loudly and are recorded (the fixture fails any test that leaves one behind).
    with pytest.raises(HfHubHTTPError) as unknown:
        api.list_repo_commits("agqg-tester/files")
    assert unknown.value.response.status_code == 501
    assert hub.unhandled_requests and "/commits/" in hub.unhandled_requests[0]
    hub.unhandled_requests.clear()


def test_server_rejects_writes_without_token_and_hides_private_repos(hub: HubServer) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    HfApi().create_repo("agqg-tester/secret", private=True)
    anonymous = HfApi(token=False)
    with pytest.raises(RepositoryNotFoundError):
        anonymous.model_info("agqg-tester/secret")
    with pytest.raises(HfHubHTTPError) as unauthorised:
        anonymous.create_repo("agqg-tester/other")
    assert unauthorised.value.response.status_code == 401
    assert HfApi().model_info("agqg-tester/secret").private is True


# ---------------------------------------------------------------------------------------------
# agqg push -> fresh-process loading
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_agqg_push_then_fresh_process_loads_identical_scores(
    hub: HubServer, model_dir: Path, image_paths: list[str], tmp_path: Path
) -> None:
    from huggingface_hub import ModelCard

    pushed = _cli(["push", str(model_dir), "agqg-tester/tiny-agqg"], hub.env, tmp_path)
    assert pushed.returncode == 0, pushed.stderr[-4000:]
    assert f"{len(_published_files(model_dir))} uploaded" in pushed.stdout

    files = hub.files("agqg-tester/tiny-agqg")
    assert REQUIRED_FILES <= set(files) and set(files) == _published_files(model_dir) | {".gitattributes"}
    for name in _published_files(model_dir) - {"README.md"}:
        assert files[name] == (model_dir / name).read_bytes(), f"{name} differs from the local folder"
    config = json.loads(files["config.json"])
    assert config["auto_map"]["AutoModel"] == "modeling_agqg.AGQGForImageQualityAssessment"
    assert config["custom_pipelines"]["image-quality"]["impl"] == "pipeline_agqg.ImageQualityPipeline"

    card = ModelCard(files["README.md"].decode())
    assert "Synthetic demonstration" in card.text
    measured = {(r.dataset_name, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert measured == {("synthetic-distortions", "spearmanr"): 0.8765, ("synthetic-distortions", "pearsonr"): 0.8891}
    assert "| synthetic-distortions | test | 48 | 0.8765 | 0.7012 | 0.8891 | 0.9012 | 0.4321 |" in card.text

    pin = _pinned_commit(hub, "agqg-tester/tiny-agqg")  # what the card tells readers to load
    local = _local_scores(model_dir, image_paths)
    assert len(set(np.round(local, 6))) == len(local), "distinct images must score differently for a meaningful check"
    for python in LOADERS:
        env = {**hub.env, "HF_HOME": str(tmp_path / f"hf_home_{LOADERS.index(python)}")}  # a clean cache each
        loaded = _load_in_fresh_process("agqg-tester/tiny-agqg", pin, image_paths, env, tmp_path, python)
        assert not loaded["local_package_imported"]
        np.testing.assert_allclose(loaded["auto"], local, atol=1e-5, err_msg=python)
        np.testing.assert_allclose(loaded["pipeline"], local, atol=1e-5, err_msg=python)


@pytest.mark.slow
def test_train_py_push_to_hub_publishes_the_trained_model(
    hub: HubServer, synthetic_cache: Path, image_paths: list[str], tmp_path: Path
) -> None:
    """`training/train.py --push_to_hub true --hub_model_id ...`: the run's final model folder goes up with its
    card and results, and a fresh process scores with it exactly as the local folder does."""
    from test_train import TINY_RUN_FLAGS, TRAIN_SCRIPT

    out = tmp_path / "run"
    flags = [*TINY_RUN_FLAGS, "--data_root", str(synthetic_cache), "--num_train_epochs", "1", "--report_to", "none"]
    flags += ["--plots", "false", "--output_dir", str(out), "--push_to_hub", "true"]
    env = {**hub.env, "PYTHONPATH": str(TRAIN_SCRIPT.parents[1]), "OMP_NUM_THREADS": "1"}

    def train(*extra: str) -> subprocess.CompletedProcess:
        command = [sys.executable, str(TRAIN_SCRIPT), *flags, *extra]
        return subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)

    missing_id = train()
    assert missing_id.returncode != 0 and "push_to_hub needs hub_model_id" in missing_id.stderr
    assert not out.exists(), "the missing repository id must be caught before training starts"
    trained = train("--hub_model_id", "agqg-tester/trained")
    assert trained.returncode == 0, trained.stderr[-4000:]

    model_dir = out / "model"
    files = hub.files("agqg-tester/trained")
    assert REQUIRED_FILES <= set(files) and "eval_results.json" in files and "train_config.yaml" in files
    assert [name for name, content in files.items() if str(tmp_path).encode() in content] == [], "no local paths"
    assert files["model.safetensors"] == (model_dir / "model.safetensors").read_bytes()
    assert "Synthetic demonstration" in files["README.md"].decode()
    local = _local_scores(model_dir, image_paths)
    loaded = _load_in_fresh_process("agqg-tester/trained", "main", image_paths, hub.env, tmp_path)
    np.testing.assert_allclose(loaded["pipeline"], local, atol=1e-5)


@pytest.mark.slow
def test_code_repo_mode_serves_code_from_one_repository(
    hub: HubServer, model_dir: Path, image_paths: list[str], tmp_path: Path
) -> None:
    from modeling_agqg.tools.cli import main

    original_config = (model_dir / "config.json").read_bytes()
    args = ["push", str(model_dir), "agqg-tester/tiny-weights", "--code-repo", "agqg-tester/agqg-code"]
    assert main([*args, "--revision", "v1"]) == 0
    assert (model_dir / "config.json").read_bytes() == original_config, "the local config must stay as it was"

    weights = hub.files("agqg-tester/tiny-weights", revision="v1")
    code = {p.name for p in model_dir.glob("*.py")}
    assert {"configuration_agqg.py", "modeling_agqg.py", "pipeline_agqg.py"} <= code
    assert not code & set(weights)
    assert set(hub.files("agqg-tester/agqg-code")) == code | {".gitattributes"}
    assert set(weights) == _published_files(model_dir) - code | {".gitattributes"}
    config = json.loads(weights["config.json"])
    assert config["auto_map"] == {
        "AutoConfig": "agqg-tester/agqg-code--configuration_agqg.AGQGConfig",
        "AutoModel": "agqg-tester/agqg-code--modeling_agqg.AGQGForImageQualityAssessment",
    }
    assert (
        config["custom_pipelines"]["image-quality"]["impl"]
        == "agqg-tester/agqg-code--pipeline_agqg.ImageQualityPipeline"
    )
    assert set(hub.files("agqg-tester/tiny-weights", revision="main")) == {".gitattributes"}, "v1 only"
    pin = _pinned_commit(hub, "agqg-tester/tiny-weights", revision="v1")
    code_head = hub.repos[("model", "agqg-tester/agqg-code")].branches["main"]
    assert re.findall(r'code_revision="([0-9a-f]{40})"', weights["README.md"].decode()) == [code_head] * 2

    loaded = _load_in_fresh_process("agqg-tester/tiny-weights", pin, image_paths, hub.env, tmp_path)
    np.testing.assert_allclose(loaded["pipeline"], _local_scores(model_dir, image_paths), atol=1e-5)
    np.testing.assert_allclose(loaded["auto"], loaded["pipeline"], atol=1e-6)


def test_push_of_unchanged_folder_uploads_nothing(hub: HubServer, model_dir: Path) -> None:
    from hub_cards.publish import push

    first = push(model_dir, "agqg-tester/again")
    assert set(first.uploaded) == _published_files(model_dir) and first.unchanged == []
    commits_before = len(hub.repos[("model", "agqg-tester/again")].commits)
    second = push(model_dir, "agqg-tester/again")
    assert second.uploaded == [] and set(second.unchanged) == _published_files(model_dir) and second.commit_url is None
    assert len(hub.repos[("model", "agqg-tester/again")].commits) == commits_before

    (model_dir / "eval_results.json").write_text(json.dumps({**EVAL_RESULTS, "model_name": "renamed"}))
    third = push(model_dir, "agqg-tester/again")
    assert third.uploaded == ["README.md", "eval_results.json"], "only the changed files go up"

    (model_dir / "eval_results.json").unlink()
    fourth = push(model_dir, "agqg-tester/again")
    assert (
        fourth.remote_only == ["eval_results.json"]
        and "not in the folder (kept): eval_results.json" in fourth.summary()
    )


def test_private_push_to_a_branch(hub: HubServer, model_dir: Path) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    from modeling_agqg.tools.cli import main

    assert (
        main(["push", str(model_dir), "agqg-tester/hidden", "--private", "--revision", "dev", "--commit-message", "v0"])
        == 0
    )
    repo = hub.repos[("model", "agqg-tester/hidden")]
    card_commit = repo.commits[repo.branches["dev"]]
    assert repo.private and repo.commits[card_commit.parent].title == "v0"  # the model's files, then the card
    assert card_commit.title == f"v0: model card, examples pin {card_commit.parent}"
    assert REQUIRED_FILES <= set(hub.files("agqg-tester/hidden", revision="dev"))
    assert set(hub.files("agqg-tester/hidden", revision="main")) == {".gitattributes"}
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token=False).model_info("agqg-tester/hidden")


# ---------------------------------------------------------------------------------------------
# Failures: nothing half-committed, the local folder intact, a clear report, a retry completes
# ---------------------------------------------------------------------------------------------


def test_failed_commit_reports_files_and_retry_completes(
    hub: HubServer, model_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    from modeling_agqg.tools.cli import main

    before = _folder_digest(model_dir)
    hub.fail_next("POST", r"/commit/main$", status=500)
    assert main(["push", str(model_dir), "agqg-tester/flaky"]) == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "run the same command again" in err
    for name in _published_files(model_dir):
        assert name in err, f"the report must name {name} as not uploaded"
    assert _folder_digest(model_dir) == before, "a failed push must not touch the local folder"
    assert set(hub.files("agqg-tester/flaky")) == {".gitattributes"}, "nothing may be half-committed"

    assert main(["push", str(model_dir), "agqg-tester/flaky"]) == 0
    assert REQUIRED_FILES <= set(hub.files("agqg-tester/flaky"))
    weight_uploads = [
        p for m, p, s in hub.request_log if m == "PUT" and p.startswith("/lfs-upload/model/agqg-tester/flaky")
    ]
    assert len(weight_uploads) == 1, "the retry must not re-send large files the Hub already stored"
    assert _folder_digest(model_dir) == before


def test_failed_large_file_upload_then_retry(hub: HubServer, model_dir: Path) -> None:
    from hub_cards.publish import PushError, push

    hub.fail_next("PUT", r"^/lfs-upload/", status=403)  # not retried by the client, unlike 5xx
    with pytest.raises(PushError) as failure:
        push(model_dir, "agqg-tester/lfs-fail")
    assert set(failure.value.report.not_uploaded) == _published_files(model_dir)
    assert "model.safetensors" in str(failure.value)
    report = push(model_dir, "agqg-tester/lfs-fail")
    assert set(report.uploaded) == _published_files(model_dir)
    assert hub.files("agqg-tester/lfs-fail")["model.safetensors"] == (model_dir / "model.safetensors").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_push_interrupted_mid_upload_then_retry_completes(
    hub: HubServer, model_dir: Path, tmp_path: Path, stop_signal: signal.Signals
) -> None:
    before = _folder_digest(model_dir)
    held = hub.hold_next("PUT", r"^/lfs-upload/")
    process = subprocess.Popen(
        [sys.executable, "-m", "modeling_agqg", "push", str(model_dir), "agqg-tester/killed"],
        env=hub.env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell starts background jobs with Ctrl-C ignored and children inherit that (Python then never raises
        # KeyboardInterrupt): give the push the terminal's default, whatever the test run inherited.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert held.reached.wait(timeout=120), "the push never reached the large-file upload"
        os.kill(process.pid, stop_signal)
        _, err = process.communicate(timeout=60)
    finally:
        held.release.set()
        if process.poll() is None:
            process.kill()
    if stop_signal == signal.SIGINT:  # Ctrl-C: the report of what is not on the Hub, then exit code 130
        assert process.returncode == 130, err[-2000:]
        assert "not on the Hub" in err and "model.safetensors" in err and "run the same command again" in err
    assert set(hub.files("agqg-tester/killed")) == {".gitattributes"}
    assert _folder_digest(model_dir) == before

    from hub_cards.publish import push

    report = push(model_dir, "agqg-tester/killed")
    assert set(report.uploaded) == _published_files(model_dir)
    assert REQUIRED_FILES <= set(hub.files("agqg-tester/killed"))


def test_incomplete_folder_is_refused_before_any_upload(
    hub: HubServer, model_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    from modeling_agqg.tools.cli import main

    (model_dir / "pipeline_agqg.py").unlink()
    assert main(["push", str(model_dir), "agqg-tester/broken"]) == 2
    err = capsys.readouterr().err
    assert str(model_dir) in err and "pipeline_agqg.py" in err
    assert hub.repos == {} and not [r for r in hub.request_log if r[0] != "GET"]


def test_bad_eval_results_are_refused_before_any_upload(
    hub: HubServer, model_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    from modeling_agqg.tools.cli import main

    broken = json.loads(json.dumps(EVAL_RESULTS))
    broken["results"][0]["metrics"]["srcc"] = "high"
    (model_dir / "eval_results.json").write_text(json.dumps(broken))
    assert main(["push", str(model_dir), "agqg-tester/bad-eval"]) == 2
    err = capsys.readouterr().err
    assert "eval_results.json" in err and "results[0].metrics.srcc" in err
    assert hub.repos == {}


# ---------------------------------------------------------------------------------------------
# What goes up: exactly the model's files, no local paths, a card the Hub accepts, pinned examples
# ---------------------------------------------------------------------------------------------

# Contents that must never reach the Hub: a dotenv file, a token file, a cached login and a file outside the folder.
SECRETS = ("HF_TOKEN=hf_from_dotenv", "hf_plain_token_file", "hf_cached_login_token", "OUTSIDE-THE-FOLDER")
# A card's pinned commits: revision="<sha>" (and code_revision="<sha>", which the lookbehind leaves out).
PINNED_REVISION = re.compile(r'(?<![\w])revision="([0-9a-f]{40})"')


def _push(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """`agqg push ARGS` through its entry point: (exit code, stdout, stderr)."""
    from hub_cards.publish import main

    capsys.readouterr()  # only this push's output (not, say, progress bars of a save before it)
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _model_from_local_clip(tokenizer, tmp_path: Path) -> tuple[Path, Path]:
    """(CLIP folder, model folder): `from_clip(<local CLIP folder>)` saved, with the `eval_results.json` and
    `train_config.yaml` that training writes for `--clip <folder>` (local paths included)."""
    import yaml

    from modeling_agqg import AGQGForImageQualityAssessment

    clip_dir = tmp_path / "clip-local"
    tiny = make_tiny_model(tokenizer)
    tiny.clip.save_pretrained(clip_dir)
    tokenizer.save_pretrained(clip_dir)
    tiny.image_processor.save_pretrained(clip_dir)
    run_dir = tmp_path / "run"
    model_dir = run_dir / "model"
    AGQGForImageQualityAssessment.from_clip(str(clip_dir)).save_pretrained(model_dir)
    results = json.loads(json.dumps(EVAL_RESULTS))
    results.update(base_model=str(clip_dir), synthetic=False)  # training/train.py: base_model = init_model or clip
    results["results"][0]["dataset"] = "AGIQA-3K"
    (model_dir / "eval_results.json").write_text(json.dumps(results, indent=2))
    train_config = {
        "output_dir": str(run_dir),
        "model_name": None,
        "clip": str(clip_dir),
        "init_model": None,
        "dataset": "agiqa3k",
        "data_root": str(tmp_path / "data" / "AGIQA-3K"),
        "split": "1",
        "loss_weights": {"l1": 1.0},
        "resume_from_checkpoint": str(run_dir / "checkpoints" / "step_10"),
        "logging_dir": "/logs",  # a one-component path: its redacted copy "<local path>/logs" is not a leak
    }
    (model_dir / "train_config.yaml").write_text(yaml.safe_dump(train_config, sort_keys=False))
    return clip_dir, model_dir


def test_push_sends_only_model_files_and_lists_what_it_left_out(
    hub: HubServer, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    model_files = _published_files(model_dir)
    outside = tmp_path / "elsewhere" / "notes.txt"
    outside.parent.mkdir()
    outside.write_text(SECRETS[3])
    (model_dir / ".env").write_text(SECRETS[0] + "\n")
    (model_dir / "token").write_text(SECRETS[1])
    (model_dir / ".huggingface").mkdir()
    (model_dir / ".huggingface" / "token").write_text(SECRETS[2])
    (model_dir / "notes.txt").symlink_to(outside)
    (model_dir / "merges.txt").unlink(missing_ok=True)  # transformers 4.x's tokenizer saves one
    (model_dir / "merges.txt").symlink_to(outside)  # a tokenizer file's name does not make a link outside safe
    (model_dir / "checkpoints" / "step_1").mkdir(parents=True)
    (model_dir / "checkpoints" / "step_1" / "optimizer.pt").write_bytes(b"optimizer state")
    (model_dir / "scratch.py").write_text("API_KEY = 'not imported by the remote code'\n")
    (model_dir / "train.log").write_text("step 1 loss 0.5\n")
    (model_dir / "tokenizer.json").rename(model_dir / "tokenizer-v1.json")
    (model_dir / "tokenizer.json").symlink_to("tokenizer-v1.json")  # a link inside the folder is followed

    code, out, err = _push([str(model_dir), "agqg-tester/clean"], capsys)
    assert code == 0, err
    files = hub.files("agqg-tester/clean")
    assert set(files) == (model_files - {"merges.txt"}) | {".gitattributes"}  # the link's target stays home
    assert files["tokenizer.json"] == (model_dir / "tokenizer-v1.json").read_bytes()
    for name, content in files.items():
        assert not [secret for secret in SECRETS if secret.encode() in content], name
    left_out = {
        ".env": "hidden",
        ".huggingface": "hidden",
        "token": "not a file a model repository needs",
        "notes.txt": "outside the folder",
        "merges.txt": "outside the folder",
        "checkpoints": "folder",
        "scratch.py": "not imported by the remote code",
        "train.log": "not a file a model repository needs",
        "tokenizer-v1.json": "not a file a model repository needs",
    }
    lines = out.splitlines()
    for name, reason in left_out.items():
        assert [line for line in lines if line.strip().startswith(f"{name}:") and reason in line], (name, out)


def _resave_sharded_then_delete_a_shard(model_dir: Path, tmp_path: Path) -> None:
    from modeling_agqg import AGQGForImageQualityAssessment

    AGQGForImageQualityAssessment.from_pretrained(model_dir).save_pretrained(model_dir, max_shard_size="100KB")
    (model_dir / "model.safetensors").unlink(missing_ok=True)
    index = json.loads((model_dir / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1
    (model_dir / shards[-1]).unlink()


def _weights_as_a_link_outside(model_dir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.safetensors"
    (model_dir / "model.safetensors").rename(elsewhere)
    (model_dir / "model.safetensors").symlink_to(elsewhere)


@pytest.mark.parametrize(
    ("break_folder", "named"),
    [
        (lambda folder, _: (folder / "prompt_learning_agqg.py").unlink(), "prompt_learning_agqg.py"),
        (_resave_sharded_then_delete_a_shard, "model-0000"),
        (_weights_as_a_link_outside, "model.safetensors (a symlink to a file outside the folder)"),
    ],
    ids=["module-the-code-imports", "weight-shard", "weights-linked-from-outside"],
)
def test_push_refuses_a_folder_without_a_file_the_repository_needs(
    hub: HubServer, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, break_folder, named: str
) -> None:
    break_folder(model_dir, tmp_path)
    code, _, err = _push([str(model_dir), "agqg-tester/refused"], capsys)
    assert code == 2
    assert named in err and str(model_dir) in err and len(err.strip().splitlines()) == 1, err
    assert hub.repos == {} and not [r for r in hub.request_log if r[0] != "GET"]


def test_sharded_weights_go_up_with_their_index(hub: HubServer, model_dir: Path, capsys: pytest.CaptureFixture) -> None:
    from modeling_agqg import AGQGForImageQualityAssessment

    AGQGForImageQualityAssessment.from_pretrained(model_dir).save_pretrained(model_dir, max_shard_size="100KB")
    (model_dir / "model.safetensors").unlink(missing_ok=True)
    shards = set(json.loads((model_dir / "model.safetensors.index.json").read_text())["weight_map"].values())
    code, _, err = _push([str(model_dir), "agqg-tester/sharded"], capsys)
    assert code == 0, err
    files = hub.files("agqg-tester/sharded")
    assert shards | {"model.safetensors.index.json"} <= set(files) and "model.safetensors" not in files
    for shard in shards:
        assert files[shard] == (model_dir / shard).read_bytes()


def test_pushed_files_carry_no_local_paths(
    hub: HubServer, tokenizer, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import yaml

    clip_dir, model_dir = _model_from_local_clip(tokenizer, tmp_path)
    saved_config = json.loads((model_dir / "config.json").read_text())
    assert str(tmp_path) not in json.dumps(saved_config), "save_pretrained must not record local folders"
    assert saved_config["backbone_config"]["_name_or_path"] == "<local path>/clip-local"
    # Folders saved before that (and transformers 4.x, which also writes the top-level one) hold the local paths.
    saved_config["_name_or_path"] = str(model_dir)
    saved_config["backbone_config"]["_name_or_path"] = str(clip_dir)
    (model_dir / "config.json").write_text(json.dumps(saved_config, indent=2))
    before = _folder_digest(model_dir)

    code, out, err = _push([str(model_dir), "agqg-tester/no-paths"], capsys)
    assert code == 0, err
    files = hub.files("agqg-tester/no-paths")
    assert "train_config.yaml" in files and "eval_results.json" in files
    assert [name for name, content in files.items() if str(tmp_path).encode() in content] == []
    config = json.loads(files["config.json"])
    assert config["_name_or_path"] == "<local path>/model"
    assert config["backbone_config"]["_name_or_path"] == "<local path>/clip-local"
    train_config = yaml.safe_load(files["train_config.yaml"])
    assert train_config == {
        "output_dir": "<local path>/run",
        "model_name": None,
        "clip": "<local path>/clip-local",
        "init_model": None,
        "dataset": "agiqa3k",
        "data_root": "<local path>/AGIQA-3K",
        "split": "1",
        "loss_weights": {"l1": 1.0},
        "resume_from_checkpoint": "<local path>/step_10",
        "logging_dir": "<local path>/logs",
    }
    assert json.loads(files["eval_results.json"])["base_model"] == "<local path>/clip-local"
    assert "train_config.yaml: output_dir, clip, data_root, resume_from_checkpoint, logging_dir" in out, out
    assert _folder_digest(model_dir) == before, "the local files stay as they are"


def test_model_from_a_local_clip_folder_is_published_with_an_honest_card(
    hub: HubServer, tokenizer, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from huggingface_hub import ModelCard

    _, model_dir = _model_from_local_clip(tokenizer, tmp_path)
    eval_path = model_dir / "eval_results.json"
    results = json.loads(eval_path.read_text())
    # eval_results.json's base_model as training may write it: the local CLIP folder, null, or a Hub id.
    for repo_id, base_model in (("local-path", results["base_model"]), ("null", None), ("hub-id", "openai/clip-b16")):
        eval_path.write_text(json.dumps({**results, "base_model": base_model}))
        code, _, err = _push([str(model_dir), f"agqg-tester/{repo_id}"], capsys)
        assert code == 0, err
        card = ModelCard(hub.files(f"agqg-tester/{repo_id}")["README.md"].decode())
        if base_model == "openai/clip-b16":
            assert card.data.base_model == "openai/clip-b16" and "initialised from [`openai/clip-b16`]" in card.text
        else:
            assert card.data.base_model is None, repo_id
            assert "initialised from a local CLIP checkpoint (`clip-local`)" in card.text, repo_id
        assert "trained from scratch" not in card.text


@pytest.mark.parametrize(
    ("metadata", "fields"),
    [
        ("license: mit\nbase_model: /home/someone/models/clip-vit-b16", ["base_model"]),
        ("license: apache2\npipeline_tag: image-quality", ["license", "pipeline_tag"]),  # the Hub's validation
    ],
    ids=["local-base-model", "hub-validation"],
)
def test_invalid_card_is_refused_before_any_repository_is_created(
    hub: HubServer, model_dir: Path, capsys: pytest.CaptureFixture, metadata: str, fields: list[str]
) -> None:
    (model_dir / "README.md").write_text(f"---\n{metadata}\n---\n# my model\n")
    code, _, err = _push([str(model_dir), "agqg-tester/bad-card"], capsys)
    assert code == 2
    assert "README.md" in err and all(field in err for field in fields) and len(err.strip().splitlines()) == 1, err
    assert hub.repos == {}, "nothing may be created for a card the Hub would refuse"
    code, _, err = _push([str(model_dir), "agqg-tester/bad-card", "--regenerate-card"], capsys)
    assert code == 0, err
    assert "README.md" in hub.files("agqg-tester/bad-card")
    assert (model_dir / "README.md").read_text().startswith(f"---\n{metadata}"), "the local card is untouched"


def _pinned_commit(hub: HubServer, repo_id: str, revision: str = "main") -> str:
    """The commit the card at `revision` pins, checked to hold exactly the code and weights of `revision`."""
    repo = hub.repos[("model", repo_id)]
    pins = set(PINNED_REVISION.findall(hub.files(repo_id, revision=revision)["README.md"].decode()))
    assert len(pins) == 1, pins
    pin = pins.pop()
    assert pin in repo.commits, "the card must pin a commit of the repository"
    head = repo.commits[repo.branches[revision]]

    def model_files(commit) -> dict:
        return {path: stored for path, stored in commit.files.items() if path != "README.md"}

    assert model_files(repo.commits[pin]) == model_files(head), "the pinned commit must hold the published files"
    return pin


def test_card_pins_the_commit_that_holds_the_code_and_weights(
    hub: HubServer, model_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    code, out, err = _push([str(model_dir), "agqg-tester/pinned"], capsys)
    assert code == 0, err
    pin = _pinned_commit(hub, "agqg-tester/pinned")
    assert pin in out
    repo = hub.repos[("model", "agqg-tester/pinned")]
    commits = len(repo.commits)
    code, out, err = _push([str(model_dir), "agqg-tester/pinned"], capsys)
    assert code == 0 and len(repo.commits) == commits, "an unchanged folder converges: no new commit"
    assert _pinned_commit(hub, "agqg-tester/pinned") == pin

    (model_dir / "eval_results.json").write_text(json.dumps({**EVAL_RESULTS, "model_name": "renamed"}))
    assert _push([str(model_dir), "agqg-tester/pinned"], capsys)[0] == 0
    assert _pinned_commit(hub, "agqg-tester/pinned") not in (pin, repo.branches["main"])


def test_push_interrupted_before_the_card_commit_converges_on_rerun(
    hub: HubServer, model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from huggingface_hub import HfApi

    create_commit = HfApi.create_commit

    def drop_connection_at_the_card_commit(self, *args, **kwargs):
        if [operation.path_in_repo for operation in kwargs["operations"]] == ["README.md"]:
            raise ConnectionError("connection reset by peer")
        return create_commit(self, *args, **kwargs)

    monkeypatch.setattr(HfApi, "create_commit", drop_connection_at_the_card_commit)
    code, _, err = _push([str(model_dir), "agqg-tester/half"], capsys)
    assert code == 1 and "README.md" in err and "run the same command again" in err, err
    repo = hub.repos[("model", "agqg-tester/half")]
    model_commit = repo.branches["main"]
    assert "README.md" not in hub.files("agqg-tester/half") and "model.safetensors" in hub.files("agqg-tester/half")

    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    code, _, err = _push([str(model_dir), "agqg-tester/half"], capsys)
    assert code == 0, err
    assert _pinned_commit(hub, "agqg-tester/half") == model_commit
    commits = len(repo.commits)
    assert _push([str(model_dir), "agqg-tester/half"], capsys)[0] == 0 and len(repo.commits) == commits


# ---------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------


def test_dataset_push_to_hub_and_load_dataset_round_trip(hub: HubServer, tmp_path: Path) -> None:
    import datasets

    from hub_cards import render_dataset_card
    from hub_cards.publish import push_dataset

    rng = np.random.default_rng(3)
    images = [Image.fromarray(rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)) for i in range(8)]
    mos = [float(v) for v in rng.uniform(1, 5, size=8)]
    table = datasets.Dataset.from_dict(
        {"image": images, "mos": mos, "prompt": [f"a cat number {i}" for i in range(8)]},
        features=datasets.Features(
            {"image": datasets.Image(), "mos": datasets.Value("float32"), "prompt": datasets.Value("string")}
        ),
    )
    splits = datasets.DatasetDict({"train": table.select(range(6)), "test": table.select(range(6, 8))})
    card = render_dataset_card(
        splits, repo_id="agqg-tester/tiny-iqa", pretty_name="Tiny IQA", license="cc-by-4.0", mos_range=(1, 5)
    )
    push_dataset(splits, "agqg-tester/tiny-iqa", card=card)

    readme = hub.files("agqg-tester/tiny-iqa", repo_type="dataset")["README.md"].decode()
    assert "# Tiny IQA" in readme and "`mos` is on **[1, 5]**" in readme, "the card text survives push_to_hub"
    assert "configs:" in readme and "dataset_info:" in readme, "push_to_hub adds its metadata to the card"

    loaded = datasets.load_dataset("agqg-tester/tiny-iqa", cache_dir=str(tmp_path / "datasets_cache"))
    assert {name: split.num_rows for name, split in loaded.items()} == {"train": 6, "test": 2}
    for split_name, indices in (("train", range(6)), ("test", range(6, 8))):
        for row, index in zip(loaded[split_name], indices, strict=True):
            np.testing.assert_array_equal(np.asarray(row["image"]), np.asarray(images[index]))
            assert row["mos"] == pytest.approx(mos[index], rel=1e-6)
            assert row["prompt"] == f"a cat number {index}"


def test_dataset_push_with_a_refused_card_creates_nothing(hub: HubServer) -> None:
    import datasets

    from hub_cards import CardError, render_dataset_card
    from hub_cards.publish import push_dataset

    table = datasets.Dataset.from_dict({"mos": [1.5, 4.0], "prompt": ["a", "b"]})
    card = render_dataset_card(table, repo_id="agqg-tester/refused", pretty_name="R", license="mit", mos_range=(1, 5))
    refused = type(card)(str(card).replace("license: mit", "license: not-a-licence"))
    with pytest.raises(CardError, match="the dataset card: the Hub refuses the card's metadata: .*license"):
        push_dataset(table, "agqg-tester/refused", card=refused)
    assert ("dataset", "agqg-tester/refused") not in hub.repos


def _accepts_connections(url: str) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", int(url.rsplit(":", 1)[1]))) == 0


def test_server_binds_localhost_and_stops_and_frees_its_ports() -> None:
    with HubServer() as server:
        assert server.url.startswith("http://127.0.0.1:") and server.storage_url.startswith("http://127.0.0.1:")
        assert _accepts_connections(server.url) and _accepts_connections(server.storage_url)
    assert not server.running
    assert not _accepts_connections(server.url) and not _accepts_connections(server.storage_url)


def test_server_stops_itself_when_idle() -> None:
    server = HubServer(idle_timeout=0.3).start()
    deadline = time.monotonic() + 10
    while server.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not server.running and not _accepts_connections(server.url)
