"""Publishing a saved AGQG model folder to the Hugging Face Hub: `push` and the `agqg push` command.

`push` uploads the complete remote-code folder in **one commit** through `HfApi.create_commit`: `config.json` (with
`auto_map` and `custom_pipelines`), the remote-code files (`configuration_agqg.py`, `modeling_agqg.py`,
`pipeline_agqg.py` and any sibling module they import, i.e. every top-level `.py` file), `model.safetensors`, the
image-processor config, the tokenizer files, the `README.md` model card and `eval_results.json`. (`model.push_to_hub`
would leave out the pipeline file, and a card it never writes.)

One commit keeps the repository consistent: a failed or interrupted upload commits nothing, so the repository never
holds a config that points at missing weights. The local folder is only read, never written. After a failure `push`
compares the folder with what the Hub holds and reports the files that did not go up; running it again completes the
upload, re-sending only what is missing (the Hub reports unchanged files and already stored large files, which the
client skips).

Code-repository mode (`code_repo="org/agqg-code"`): the code files go to one code repository that many weight
repositories share, and the weights repository's config refers to it (`"org/agqg-code--modeling_agqg.Class"` in
`auto_map` and `custom_pipelines`), as jina-clip and nomic-embed do. The local config is left as it is; the uploaded
copy is rewritten.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError

from .cards import EVAL_RESULTS_FILE, CardError, check_model_card, load_eval_results, render_model_card

CODE_FILES = ("configuration_agqg.py", "modeling_agqg.py", "pipeline_agqg.py")  # at least; see `code_files`
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
TOKENIZER_FILES = ("tokenizer_config.json",)
# Local artefacts that are not part of a published model (training checkpoints, logs, caches).
DEFAULT_EXCLUDES = (
    ".git/*", "*/__pycache__/*", "__pycache__/*", "*.pyc", ".cache/*", ".ipynb_checkpoints/*",
    "checkpoint*/*", "checkpoints/*", "runs/*", "logs/*", "*.lock",
)  # fmt: skip


class ModelFolderError(ValueError):
    """The folder is not a complete saved AGQG model; the message names the folder and the missing files."""


class PushError(RuntimeError):
    """An upload failed; `report` says which files are on the Hub and which are not."""

    def __init__(self, message: str, report: PushReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class PushReport:
    """What a push did. Paths are relative to the repository root."""

    repo_id: str
    revision: str
    uploaded: list[str] = field(default_factory=list)  # sent and committed by this push
    unchanged: list[str] = field(default_factory=list)  # already identical on the Hub
    not_uploaded: list[str] = field(default_factory=list)  # after a failure: missing or outdated on the Hub
    remote_only: list[str] = field(default_factory=list)  # on the Hub but not in the folder (left as they are)
    commit_url: str | None = None
    commit_oid: str | None = None
    code_repo: str | None = None
    error: str | None = None
    space: Any = None  # the `hub_cards.space.SpaceReport` of a push with `space=`

    def summary(self) -> str:
        lines = [f"{self.repo_id}@{self.revision}: {len(self.uploaded)} uploaded, {len(self.unchanged)} unchanged"]
        if self.commit_url:
            lines.append(f"commit: {self.commit_url}")
        if self.code_repo:
            lines.append(f"remote code served from {self.code_repo}")
        if self.remote_only:
            lines.append(f"on the Hub but not in the folder (kept): {', '.join(self.remote_only)}")
        if self.space is not None:
            lines.append(self.space.summary())
        if self.error:
            lines.append(f"FAILED: {self.error}")
            lines.append(f"not on the Hub ({len(self.not_uploaded)}): {', '.join(self.not_uploaded) or '-'}")
            lines.append("the local folder is unchanged; run the same command again to finish the upload")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Folder checks and the files to upload
# ---------------------------------------------------------------------------------------------


def check_model_folder(model_dir: str | os.PathLike) -> dict[str, Any]:
    """Checks that `model_dir` is a complete saved AGQG folder and returns its config.

    Required: `config.json` of model_type "agqg" with `auto_map` (AutoConfig, AutoModel) and the "image-quality"
    entry of `custom_pipelines`, the code files (`CODE_FILES` and every module those references name),
    `model.safetensors` (or a sharded index), and
    `preprocessor_config.json` (or `processor_config.json`). Tokenizer files are needed only for
    generation-prompt (alignment) scoring; their absence is reported by `missing_tokenizer`.

    Raises:
        ModelFolderError: naming the folder and every missing file or config field.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelFolderError(f"{model_dir}: not a folder")
    problems = [name for name in CODE_FILES if not (model_dir / name).is_file()]
    if not any((model_dir / name).is_file() for name in WEIGHT_FILES):
        problems.append("model.safetensors")
    if not any((model_dir / name).is_file() for name in PROCESSOR_FILES):
        problems.append("preprocessor_config.json")
    config: dict[str, Any] = {}
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        problems.append("config.json")
    else:
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ModelFolderError(f"{config_path}: not valid JSON ({error})") from error
        if config.get("model_type") != "agqg":
            problems.append(f"config.json: model_type is {config.get('model_type')!r}, expected 'agqg'")
        auto_map = config.get("auto_map") or {}
        for key in ("AutoConfig", "AutoModel"):
            if key not in auto_map:
                problems.append(f"config.json: auto_map has no {key}")
        if "image-quality" not in (config.get("custom_pipelines") or {}):
            problems.append("config.json: custom_pipelines has no 'image-quality' entry")
        problems.extend(
            f"{module}.py (named in config.json)"
            for module in sorted(_referenced_modules(config))
            if not (model_dir / f"{module}.py").is_file() and f"{module}.py" not in CODE_FILES
        )
    if problems:
        raise ModelFolderError(
            f"{model_dir} is not a complete AGQG model folder (save it with model.save_pretrained): "
            + "; ".join(problems)
        )
    return config


def _referenced_modules(config: dict[str, Any]) -> set[str]:
    """Modules of this repository named by `auto_map` / `custom_pipelines` ("module.Class", no "repo--" prefix)."""
    references: list[Any] = list((config.get("auto_map") or {}).values())
    references += [task.get("impl") for task in (config.get("custom_pipelines") or {}).values()]
    flat = [r for ref in references for r in (ref if isinstance(ref, list) else [ref]) if isinstance(r, str)]
    return {ref.rsplit(".", 1)[0] for ref in flat if "--" not in ref and "." in ref}


def code_files(model_dir: str | os.PathLike) -> list[str]:
    """The remote-code files of a folder: every top-level `.py` file (the modules `auto_map` names and the sibling
    modules they import, which transformers fetches from the same repository)."""
    return sorted(path.name for path in Path(model_dir).glob("*.py") if path.is_file())


def missing_tokenizer(model_dir: str | os.PathLike) -> bool:
    """Whether the folder lacks tokenizer files (then generation-prompt scoring is unavailable from the Hub)."""
    model_dir = Path(model_dir)
    has_vocab = (model_dir / "tokenizer.json").is_file() or (model_dir / "vocab.json").is_file()
    return not ((model_dir / "tokenizer_config.json").is_file() and has_vocab)


def _folder_files(model_dir: Path, excludes: Iterable[str]) -> list[str]:
    patterns = [*DEFAULT_EXCLUDES, *excludes]
    files = []
    for path in sorted(model_dir.rglob("*")):
        relative = path.relative_to(model_dir).as_posix()
        if path.is_file() and not any(fnmatch.fnmatch(relative, p) for p in patterns):
            files.append(relative)
    return files


def code_repo_config(config: dict[str, Any], code_repo: str) -> dict[str, Any]:
    """The config with every `auto_map` and `custom_pipelines` reference pointing at `code_repo`
    (`"module.Class"` -> `"code_repo--module.Class"`); references that already name a repository are kept."""

    def point(reference: Any) -> Any:
        if isinstance(reference, str):
            return reference if "--" in reference else f"{code_repo}--{reference}"
        if isinstance(reference, list):  # tokenizer entries are [slow, fast] pairs that may hold None
            return [point(item) if item is not None else None for item in reference]
        return reference

    config = json.loads(json.dumps(config))
    config["auto_map"] = {key: point(value) for key, value in (config.get("auto_map") or {}).items()}
    for task in (config.get("custom_pipelines") or {}).values():
        task["impl"] = point(task["impl"])
    return config


# ---------------------------------------------------------------------------------------------
# Comparing local files with the Hub
# ---------------------------------------------------------------------------------------------


def _git_blob_oid(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _file_digests(content_source: Path | bytes) -> tuple[str, str, int]:
    """(git blob oid, sha256, size) of a file or bytes; streamed for files."""
    sha256 = hashlib.sha256()
    if isinstance(content_source, bytes):
        sha256.update(content_source)
        return _git_blob_oid(content_source), sha256.hexdigest(), len(content_source)
    size = content_source.stat().st_size
    sha1 = hashlib.sha1(b"blob %d\0" % size)
    with open(content_source, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha1.update(chunk)
            sha256.update(chunk)
    return sha1.hexdigest(), sha256.hexdigest(), size


def _remote_files(api: HfApi, repo_id: str, revision: str, token: str | None) -> dict[str, Any]:
    """`{path: RepoFile}` at `revision`; empty when the repository or branch does not exist yet."""
    try:
        entries = api.list_repo_tree(repo_id, revision=revision, recursive=True, token=token)
        return {entry.path: entry for entry in entries if hasattr(entry, "blob_id")}
    except (RepositoryNotFoundError, EntryNotFoundError):
        return {}
    except HfHubHTTPError as error:
        if error.response is not None and error.response.status_code == 404:  # revision not found
            return {}
        raise


def _matches(remote: Any, digests: tuple[str, str, int]) -> bool:
    git_oid, sha256, size = digests
    if remote is None or remote.size != size:
        return False
    return remote.lfs.sha256 == sha256 if remote.lfs is not None else remote.blob_id == git_oid


# ---------------------------------------------------------------------------------------------
# push
# ---------------------------------------------------------------------------------------------


def push(
    model_dir: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    code_repo: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    license: str = "apache-2.0",  # noqa: A002 - the card field's name
    regenerate_card: bool = False,
    exclude: Iterable[str] = (),
    space: str | None = None,
) -> PushReport:
    """Publishes a saved AGQG model folder as one commit (see the module docstring).

    Args:
        model_dir: The folder written by `model.save_pretrained` (and training, which adds `eval_results.json`).
        repo_id: Target model repository, `"namespace/name"`; created when missing.
        private: Create the repository as private (an existing repository keeps its visibility).
        revision: Branch to commit to; created from `main` when missing. Default `main`.
        commit_message: Commit title. Default "Upload AGQG model".
        code_repo: Serve the remote code from this repository (created when missing) instead of the weights
            repository.
        token: Hub token; default the logged-in one (`HF_TOKEN` or `hf auth login`).
        endpoint: Hub endpoint; default `HF_ENDPOINT` or https://huggingface.co.
        license: Licence id written into a generated card.
        regenerate_card: Render the card even when the folder has a `README.md` (else that file is uploaded as is).
        exclude: Extra glob patterns (relative paths) to leave out, on top of `DEFAULT_EXCLUDES`.
        space: Also create or update this Gradio Space (`"namespace/name"`), whose app demos the model at the commit
            just pushed (see `hub_cards.space`); a generated model card links to it.

    Returns:
        A `PushReport` of what was uploaded and what was already there (`space`: the Space's report).

    Raises:
        ModelFolderError: the folder is incomplete (nothing is uploaded).
        CardError: the card or `eval_results.json` is invalid (nothing is uploaded).
        PushError: the upload failed or was interrupted; `error.report.not_uploaded` lists what is not on the Hub.
    """
    model_dir = Path(model_dir)
    config = check_model_folder(model_dir)
    revision = revision or "main"
    api = HfApi(endpoint=endpoint, token=token)
    if (model_dir / EVAL_RESULTS_FILE).is_file():
        load_eval_results(model_dir / EVAL_RESULTS_FILE)  # fail before any upload, naming the bad field

    # Contents to upload: path -> local file, or bytes for the generated card and a rewritten config.
    contents: dict[str, Path | bytes] = {name: model_dir / name for name in _folder_files(model_dir, exclude)}
    if regenerate_card or "README.md" not in contents:
        card = render_model_card(model_dir, repo_id=repo_id, license=license, code_repo=code_repo, space=space)
        contents["README.md"] = str(card).encode()
    else:
        check_model_card((model_dir / "README.md").read_text(encoding="utf-8"), require_agqg_fields=False)
    if code_repo is not None:
        for name in code_files(model_dir):
            contents.pop(name, None)
        contents["config.json"] = (json.dumps(code_repo_config(config, code_repo), indent=2) + "\n").encode()

    report = PushReport(repo_id=repo_id, revision=revision, code_repo=code_repo)
    digests = {path: _file_digests(source) for path, source in contents.items()}
    try:
        if code_repo is not None:
            _push_code(api, code_repo, model_dir, private=private, token=token)
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model", token=token)
        if revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True, token=token)
        remote = _remote_files(api, repo_id, revision, token)
        report.unchanged = sorted(p for p in contents if _matches(remote.get(p), digests[p]))
        report.remote_only = sorted(set(remote) - set(contents) - {".gitattributes"})
        to_upload = sorted(p for p in contents if p not in report.unchanged)
        if to_upload:
            operations = [
                CommitOperationAdd(path_in_repo=path, path_or_fileobj=_source(contents[path])) for path in to_upload
            ]
            info = api.create_commit(
                repo_id,
                operations=operations,
                commit_message=commit_message or "Upload AGQG model",
                revision=revision,
                token=token,
            )
            report.commit_url, report.commit_oid = info.commit_url, info.oid
        report.uploaded = to_upload
    except BaseException as error:  # also Ctrl-C: say what did not go up, then let it propagate
        report.error = " ".join(f"{type(error).__name__}: {error}".split())[:1000]
        report.not_uploaded = _not_uploaded(api, repo_id, revision, token, digests)
        if isinstance(error, Exception):
            raise PushError(report.summary(), report) from error
        print(report.summary(), file=sys.stderr)
        raise

    # Verify: everything in the folder is now on the Hub, byte for byte (by oid).
    remote = _remote_files(api, repo_id, revision, token)
    mismatched = sorted(p for p in contents if not _matches(remote.get(p), digests[p]))
    if mismatched:
        report.error, report.not_uploaded = "the Hub does not hold the pushed content", mismatched
        raise PushError(report.summary(), report)
    if space is not None:
        from .space import push_space_of

        report.space = push_space_of(api, space, report, private=private, token=token, license=license)
    return report


def push_dataset(
    dataset: Any,
    repo_id: str,
    *,
    card: Any = None,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    **push_to_hub_kwargs: Any,
) -> Any:
    """Publishes a `datasets.Dataset`/`DatasetDict` with its dataset card (see `cards.render_dataset_card`).

    The card goes up first so that `dataset.push_to_hub`, which merges its `dataset_info` and `configs` metadata into
    an existing `README.md`, keeps the card's text. Check that the data's licence allows redistribution.

    Returns:
        What `dataset.push_to_hub` returns (the commit info).
    """
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True, token=token)
    if card is not None:
        # Through this HfApi (not `card.push_to_hub`, whose client is fixed when huggingface_hub is imported); the
        # commit validates the card's metadata with the Hub first.
        api.upload_file(
            path_or_fileobj=str(card).encode(),
            path_in_repo="README.md",
            repo_id=repo_id,
            repo_type="dataset",
            token=token,
            commit_message="Add dataset card",
        )
    return dataset.push_to_hub(
        repo_id, private=private, token=token, commit_message=commit_message or "Upload dataset", **push_to_hub_kwargs
    )


def _source(content_source: Path | bytes) -> str | bytes:
    return content_source if isinstance(content_source, bytes) else str(content_source)


def _not_uploaded(
    api: HfApi, repo_id: str, revision: str, token: str | None, digests: dict[str, tuple[str, str, int]]
) -> list[str]:
    """Local files that the Hub does not hold at `revision` (all of them when the Hub cannot be asked)."""
    try:
        remote = _remote_files(api, repo_id, revision, token)
    except Exception:  # the Hub is unreachable: nothing is confirmed
        return sorted(digests)
    return sorted(p for p, d in digests.items() if not _matches(remote.get(p), d))


def _push_code(api: HfApi, code_repo: str, model_dir: Path, *, private: bool, token: str | None) -> None:
    """Uploads the code files to the code repository (unchanged files are skipped by the Hub client)."""
    api.create_repo(code_repo, private=private, exist_ok=True, repo_type="model", token=token)
    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(model_dir / name)) for name in code_files(model_dir)
    ]
    api.create_commit(code_repo, operations=operations, commit_message="Upload AGQG remote code", token=token)


# ---------------------------------------------------------------------------------------------
# Command line: agqg push MODEL_DIR REPO_ID
# ---------------------------------------------------------------------------------------------


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Registers `agqg push`."""
    parser = subparsers.add_parser(
        "push",
        help="publish a saved model folder to the Hugging Face Hub",
        description=(
            "Uploads a saved AGQG model folder (config, remote code, weights, image processor, tokenizer, model card, "
            "eval_results.json) to a Hub model repository in one commit. A failed upload commits nothing and lists "
            "the files that are not on the Hub; run the same command again to finish it. Uses HF_TOKEN / "
            "`hf auth login` and HF_ENDPOINT."
        ),
    )
    parser.add_argument("model_dir", type=Path, help="folder written by save_pretrained / training")
    parser.add_argument("repo_id", help="target repository, namespace/name (created when missing)")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--revision", metavar="BRANCH", help="branch to commit to (created from main when missing)")
    parser.add_argument("--commit-message", default=None, help="commit title")
    parser.add_argument(
        "--code-repo",
        metavar="ORG/NAME",
        help="serve the remote code from this shared code repository (auto_map entries ORG/NAME--module.Class)",
    )
    parser.add_argument("--license", default="apache-2.0", help="licence id of the weights for a generated card")
    parser.add_argument("--regenerate-card", action="store_true", help="render README.md even if the folder has one")
    parser.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="leave out matching files")
    parser.add_argument(
        "--space",
        metavar="ORG/NAME",
        help="also create/update this Gradio Space, a demo of the model pinned to the pushed commit",
    )
    parser.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the saved login)")
    parser.set_defaults(func=_run_push)
    return parser


def _run_push(args: argparse.Namespace) -> int:
    try:
        if missing_tokenizer(args.model_dir) and args.model_dir.is_dir():
            print(
                f"warning: {args.model_dir} has no tokenizer files; alignment scoring will be unavailable",
                file=sys.stderr,
            )
        report = push(
            args.model_dir,
            args.repo_id,
            private=args.private,
            revision=args.revision,
            commit_message=args.commit_message,
            code_repo=args.code_repo,
            token=args.token,
            license=args.license,
            regenerate_card=args.regenerate_card,
            exclude=args.exclude,
            space=args.space,
        )
    except (ModelFolderError, CardError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except PushError as error:
        print(error.report.summary(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # `push` has printed what did not go up
        return 130
    print(report.summary())
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m hub_cards.publish MODEL_DIR REPO_ID ...`: the same as `agqg push ...`."""
    parser = argparse.ArgumentParser(prog="python -m hub_cards.publish")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_parser(subparsers)
    args = parser.parse_args(["push", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
