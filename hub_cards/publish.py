"""Publishing a saved AGQG model folder to the Hugging Face Hub: `push` and the `agqg push` command.

**What goes up** (`plan_upload`): exactly the files a model repository needs, from the top level of the folder:
`config.json`; the weights (`model.safetensors`, or `model.safetensors.index.json` and every shard it names); the
remote-code modules that `auto_map` / `custom_pipelines` name and every sibling module they import (`from .x import`),
transitively, which transformers fetches from the same repository; the image-processor config; the tokenizer files; a
`generation_config.json`; the `README.md` model card; `eval_results.json` and `train_config.yaml`. Nothing else: no
dotfiles (`.env`, `.huggingface/`), no folders (checkpoints, logs), no unknown files, and nothing reached through a
symlink that points outside the folder. Every file left out is reported with the reason. When a file the repository
needs is missing (or is, say, a link to outside the folder), nothing is sent and the error names it.

**No local paths** (`redaction`): `config.json` (`_name_or_path`, nested too), `train_config.yaml` (`output_dir`,
`data_root`, a local `clip` folder, ...), `eval_results.json` (`base_model`) and the processor/tokenizer configs go up
as copies in which local paths read `"<local path>/NAME"`; a final check refuses an upload in which any text file still
contains the model folder's, the home folder's or a redacted path.

**The card** is checked before anything is created on the Hub: offline (`check_model_card`: metadata, Hub ids as
`base_model`, the model-index) and by the Hub's own validator (`/api/validate-yaml`, which creates nothing).

**Two commits.** The model's files go up in one commit (`HfApi.create_commit`); then the generated card goes up in a
second commit whose examples pin the first one (`revision="<sha>"`), the commit holding the code and weights the card
describes. One commit per step keeps the repository consistent: a failed or interrupted upload commits nothing of that
step, so the repository never holds a config that points at missing weights. The local folder is only read, never
written. After a failure `push` compares the folder with what the Hub holds and reports the files that did not go up;
running it again completes the upload, re-sending only what is missing (unchanged files and already stored large files
are skipped), and converges: when the model's files are already on the Hub, the card pins the commit that its current
version on the Hub pins if that commit still holds the same files, else the branch head (which does).

Code-repository mode (`code_repo="org/agqg-code"`): the code files go to one code repository that many weight
repositories share, and the weights repository's config refers to it (`"org/agqg-code--modeling_agqg.Class"` in
`auto_map` and `custom_pipelines`), as jina-clip and nomic-embed do. The card then also pins `code_revision=`. The
local config is left as it is; the uploaded copy is rewritten.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import hashlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError

from .cards import EVAL_RESULTS_FILE, CardError, check_model_card, load_eval_results, render_model_card
from .push_report import PushError, PushReport, git_blob_oid
from .redaction import REDACTED_FILES, RedactionError, local_path_leaks, local_roots, redact_file

CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
CODE_FILES = ("configuration_agqg.py", "modeling_agqg.py", "pipeline_agqg.py")  # at least; see `plan_upload`
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json",
    "merges.txt", "vocab.txt", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model", "chat_template.jinja",
    "chat_template.json",
)  # fmt: skip
# Published when present: the card, the measured numbers, and the resolved training options (redacted).
OPTIONAL_FILES = ("generation_config.json", CARD_FILE, EVAL_RESULTS_FILE, "train_config.yaml")
# Never read for the local-path check: weights are binary, and large.
_NOT_TEXT_SUFFIXES = (".safetensors", ".bin", ".model")
_UNKNOWN_FILE = "not a file a model repository needs"
# The commit a card pins: revision="<sha>" (not code_revision="<sha>").
_PINNED_REVISION = re.compile(r'(?<![\w])revision="([0-9a-f]{40})"')


class ModelFolderError(ValueError):
    """The folder is not a complete saved AGQG model; the message names the folder and the missing files."""


# ---------------------------------------------------------------------------------------------
# The files to upload
# ---------------------------------------------------------------------------------------------


@dataclass
class UploadPlan:
    """What a push of a folder publishes (see `plan_upload`)."""

    files: dict[str, Path]  # repository path -> the local file it is read from (inside the folder)
    code_files: list[str]  # the remote-code modules among `files`
    left_out: list[tuple[str, str]]  # (name, reason) for every top-level entry of the folder not published
    config: dict[str, Any]  # config.json, as saved


def plan_upload(model_dir: str | os.PathLike, exclude: Iterable[str] = ()) -> UploadPlan:
    """Checks that `model_dir` is a complete saved AGQG folder and chooses the files to publish (module docstring).

    Required: `config.json` of model_type "agqg" with `auto_map` (AutoConfig, AutoModel) and the "image-quality"
    entry of `custom_pipelines`; the code files (`CODE_FILES`, every module those references name and every sibling
    module they import); `model.safetensors`, or a sharded index and all its shards; `preprocessor_config.json` (or
    `processor_config.json`). Tokenizer files are needed only for generation-prompt (alignment) scoring; their absence
    is reported by `missing_tokenizer`.

    Args:
        model_dir: The folder written by `save_pretrained` (and training).
        exclude: Glob patterns of top-level names to leave out as well.

    Raises:
        ModelFolderError: naming the folder and every missing (or unusable) file or config field.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelFolderError(f"{model_dir}: not a folder")
    usable, unusable = _scan_folder(model_dir, tuple(exclude))

    def absent(name: str, why: str = "") -> str:
        return f"{name} ({unusable.get(name, 'missing')}{why})"

    problems: list[str] = []
    config: dict[str, Any] = {}
    if CONFIG_FILE in usable:
        config = _read_json_object(usable[CONFIG_FILE], model_dir / CONFIG_FILE)
        problems += _config_problems(config)
    else:
        problems.append(absent(CONFIG_FILE))

    code_files, code_problems = _remote_code_files(model_dir, config, usable, absent)
    problems += code_problems
    weight_files: list[str] = []
    if WEIGHTS_INDEX_FILE in usable:
        index = _read_json_object(usable[WEIGHTS_INDEX_FILE], model_dir / WEIGHTS_INDEX_FILE)
        shards = sorted({str(s) for s in (index.get("weight_map") or {}).values()})
        problems += [absent(s, f", named in {WEIGHTS_INDEX_FILE}") for s in shards if s not in usable]
        weight_files += [WEIGHTS_INDEX_FILE, *(s for s in shards if s in usable)]
    if WEIGHTS_FILE in usable:
        weight_files.append(WEIGHTS_FILE)
    elif WEIGHTS_INDEX_FILE not in usable:
        problems.append(absent(WEIGHTS_FILE))
    if not any(name in usable for name in PROCESSOR_FILES):
        problems.append(absent(PROCESSOR_FILES[0]))
    if problems:
        raise ModelFolderError(
            f"{model_dir} is not a complete AGQG model folder (save it with model.save_pretrained): "
            + "; ".join(problems)
        )

    wanted = [CONFIG_FILE, *code_files, *weight_files, *PROCESSOR_FILES, *TOKENIZER_FILES, *OPTIONAL_FILES]
    files = {name: usable[name] for name in dict.fromkeys(wanted) if name in usable}
    left_out = list(unusable.items())
    left_out += [
        (name, "a Python file not imported by the remote code" if name.endswith(".py") else _UNKNOWN_FILE)
        for name in usable
        if name not in files
    ]
    return UploadPlan(files=files, code_files=code_files, left_out=sorted(left_out), config=config)


def check_model_folder(model_dir: str | os.PathLike) -> dict[str, Any]:
    """Checks that `model_dir` is a complete saved AGQG folder (see `plan_upload`) and returns its config.

    Raises:
        ModelFolderError: naming the folder and every missing file or config field.
    """
    return plan_upload(model_dir).config


def _scan_folder(model_dir: Path, exclude: tuple[str, ...]) -> tuple[dict[str, Path], dict[str, str]]:
    """The folder's top-level entries: `({name: file to read}, {name: why it cannot be published})`.

    Only top-level regular files can be published; a symlink is followed only to a file inside the folder (its
    content is what goes up), never out of it, so a link cannot smuggle a file from elsewhere onto the Hub."""
    root = model_dir.resolve()
    usable: dict[str, Path] = {}
    unusable: dict[str, str] = {}
    for entry in sorted(model_dir.iterdir(), key=lambda path: path.name):
        name = entry.name
        pattern = next((p for p in exclude if fnmatch.fnmatch(name, p)), None)
        if name.startswith("."):
            unusable[name] = "hidden; dotfiles and dot-folders are never published"
        elif pattern is not None:
            unusable[name] = f"matches --exclude {pattern}"
        elif entry.is_symlink():
            target = entry.resolve()
            if not target.is_relative_to(root):
                unusable[name] = f"a symlink to {'a file ' if target.is_file() else ''}outside the folder"
            elif any(part.startswith(".") for part in target.relative_to(root).parts):
                unusable[name] = "a symlink to a hidden file"
            elif not target.is_file():
                unusable[name] = "a symlink to a folder" if target.is_dir() else "a broken symlink"
            else:
                usable[name] = target
        elif entry.is_dir():
            unusable[name] = "a folder; a model repository holds only the folder's top-level files"
        elif not entry.is_file():
            unusable[name] = "not a regular file"
        else:
            usable[name] = entry
    return usable, unusable


def _config_problems(config: dict[str, Any]) -> list[str]:
    problems = []
    if config.get("model_type") != "agqg":
        problems.append(f"config.json: model_type is {config.get('model_type')!r}, expected 'agqg'")
    auto_map = config.get("auto_map") or {}
    problems += [f"config.json: auto_map has no {key}" for key in ("AutoConfig", "AutoModel") if key not in auto_map]
    if "image-quality" not in (config.get("custom_pipelines") or {}):
        problems.append("config.json: custom_pipelines has no 'image-quality' entry")
    return problems


def _remote_code_files(
    model_dir: Path, config: dict[str, Any], usable: dict[str, Path], absent: Callable[..., str]
) -> tuple[list[str], list[str]]:
    """(the remote-code modules to publish, problems): `CODE_FILES`, the modules `config` names, and every sibling
    module they import, followed transitively through the modules that are there."""
    reasons = {name: "" for name in CODE_FILES}
    reasons.update({f"{module}.py": ", named in config.json" for module in sorted(_referenced_modules(config))})
    pending = list(reasons)
    found: list[str] = []
    problems: list[str] = []
    while pending:
        name = pending.pop(0)
        if name in found:
            continue
        if name not in usable:
            problems.append(absent(name, reasons.get(name, "")))
            continue
        found.append(name)
        for imported in _relative_imports(usable[name], model_dir / name):
            reasons.setdefault(imported, f", imported by {name}")
            pending.append(imported)
    return sorted(found), problems


def _referenced_modules(config: dict[str, Any]) -> set[str]:
    """Modules of this repository named by `auto_map` / `custom_pipelines` ("module.Class", no "repo--" prefix)."""
    references: list[Any] = list((config.get("auto_map") or {}).values())
    references += [task.get("impl") for task in (config.get("custom_pipelines") or {}).values()]
    flat = [r for ref in references for r in (ref if isinstance(ref, list) else [ref]) if isinstance(r, str)]
    return {ref.rsplit(".", 1)[0] for ref in flat if "--" not in ref and "." in ref}


def _relative_imports(path: Path, shown_as: Path) -> list[str]:
    """The sibling modules a remote-code file imports (`from .x import ...`, `from . import x`), as file names.

    transformers fetches exactly these from the repository, so they must be published; a deeper relative import
    (`from ..x`, `from .x.y`) cannot work as remote code and is refused."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(shown_as))
    except (SyntaxError, ValueError) as error:
        raise ModelFolderError(f"{shown_as}: not valid Python ({error})") from error
    modules: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or node.level == 0:
            continue
        spelled = "." * node.level + (node.module or "")
        if node.level > 1 or (node.module and "." in node.module):
            raise ModelFolderError(
                f"{shown_as}: `from {spelled} import` is not a sibling module; remote code can import only modules "
                "next to it"
            )
        modules += [f"{node.module}.py"] if node.module else [f"{alias.name}.py" for alias in node.names]
    return modules


def code_files(model_dir: str | os.PathLike) -> list[str]:
    """The remote-code files a push publishes: the modules `auto_map`/`custom_pipelines` name and the sibling modules
    they import, transitively (transformers fetches those from the same repository)."""
    return plan_upload(model_dir).code_files


def missing_tokenizer(model_dir: str | os.PathLike) -> bool:
    """Whether the folder lacks tokenizer files (then generation-prompt scoring is unavailable from the Hub)."""
    model_dir = Path(model_dir)
    has_vocab = (model_dir / "tokenizer.json").is_file() or (model_dir / "vocab.json").is_file()
    return not ((model_dir / "tokenizer_config.json").is_file() and has_vocab)


def _read_json_object(path: Path, shown_as: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFolderError(f"{shown_as}: not valid JSON ({error})") from error
    if not isinstance(data, dict):
        raise ModelFolderError(f"{shown_as}: expected a JSON object")
    return data


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
# The contents to upload: redacted metadata, checked for local paths
# ---------------------------------------------------------------------------------------------


def _public_contents(model_dir: Path, plan: UploadPlan) -> tuple[dict[str, Path | bytes], dict[str, dict[str, str]]]:
    """`(contents, redactions)`: what to upload for each planned file (the file itself, or the redacted bytes of a
    metadata file that held local paths) and, per redacted file, `{field: original value}`."""
    contents: dict[str, Path | bytes] = dict(plan.files)
    redactions: dict[str, dict[str, str]] = {}
    for name, path in plan.files.items():
        if name not in REDACTED_FILES:
            continue
        try:
            public, redacted = redact_file(name, path.read_bytes())
        except RedactionError as error:
            raise ModelFolderError(f"{model_dir / name}: {str(error).removeprefix(name + ': ')}") from error
        if redacted:
            contents[name], redactions[name] = public, redacted
    return contents, redactions


def _refuse_local_paths(contents: dict[str, Path | bytes], local_paths: set[str]) -> None:
    """Refuses an upload in which a text file still holds a local path (a user-written card, a code file, ...).

    Raises:
        ModelFolderError: naming the file and the path.
    """
    for name, source in sorted(contents.items()):
        if name.endswith(_NOT_TEXT_SUFFIXES):
            continue
        try:
            text = (source if isinstance(source, bytes) else source.read_bytes()).decode("utf-8")
        except UnicodeDecodeError:
            continue
        leaks = local_path_leaks(text, local_paths)
        if leaks:
            raise ModelFolderError(
                f"{name} contains the local path {leaks[0]}: remove it from the file (or leave the file out with "
                "--exclude; for README.md, --regenerate-card writes a card without it)"
            )


# ---------------------------------------------------------------------------------------------
# Comparing local files with the Hub
# ---------------------------------------------------------------------------------------------


def _file_digests(content_source: Path | bytes) -> tuple[str, str, int]:
    """(git blob oid, sha256, size) of a file or bytes; streamed for files."""
    sha256 = hashlib.sha256()
    if isinstance(content_source, bytes):
        sha256.update(content_source)
        return git_blob_oid(content_source), sha256.hexdigest(), len(content_source)
    size = content_source.stat().st_size
    sha1 = hashlib.sha1(b"blob %d\0" % size)
    with open(content_source, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha1.update(chunk)
            sha256.update(chunk)
    return sha1.hexdigest(), sha256.hexdigest(), size


def _remote_files(api: HfApi, repo_id: str, revision: str, token: str | None) -> dict[str, Any]:
    """`{path: RepoFile}` at `revision` (a branch or a commit); empty when the repository or revision does not
    exist (yet)."""
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
    """Publishes a saved AGQG model folder (see the module docstring): its files in one commit, then the generated
    card, pinned to that commit, in a second one.

    Args:
        model_dir: The folder written by `model.save_pretrained` (and training, which adds `eval_results.json`).
        repo_id: Target model repository, `"namespace/name"`; created when missing.
        private: Create the repository as private (an existing repository keeps its visibility).
        revision: Branch to commit to; created from `main` when missing. Default `main`.
        commit_message: Title of the commit of the model's files. Default "Upload AGQG model".
        code_repo: Serve the remote code from this repository (created when missing) instead of the weights
            repository.
        token: Hub token; default the logged-in one (`HF_TOKEN` or `hf auth login`).
        endpoint: Hub endpoint; default `HF_ENDPOINT` or https://huggingface.co.
        license: Licence id written into a generated card.
        regenerate_card: Render the card even when the folder has a `README.md` (else that file is uploaded as is,
            unpinned).
        exclude: Glob patterns of top-level names to leave out as well (only files a repository needs are published
            in any case).
        space: Also create or update this Gradio Space (`"namespace/name"`), whose app demos the model at the commit
            just pushed (see `hub_cards.space`); a generated model card links to it.

    Returns:
        A `PushReport` of what was uploaded, left out, redacted and pinned (`space`: the Space's report).

    Raises:
        ModelFolderError: the folder is incomplete or a file would publish a local path (nothing is created).
        CardError: the card or `eval_results.json` is invalid, or the Hub refuses the card (nothing is created).
        PushError: the upload failed or was interrupted; `error.report.not_uploaded` lists what is not on the Hub.
    """
    model_dir = Path(model_dir)
    plan = plan_upload(model_dir, exclude)
    revision = revision or "main"
    api = HfApi(endpoint=endpoint, token=token)
    eval_results = None
    if EVAL_RESULTS_FILE in plan.files:
        load_eval_results(model_dir / EVAL_RESULTS_FILE)  # fail before any upload, naming the bad field
    contents, redactions = _public_contents(model_dir, plan)
    if EVAL_RESULTS_FILE in contents:
        eval_results = json.loads(_read(contents[EVAL_RESULTS_FILE]))  # the redacted copy: the card shows no path

    generated_card = regenerate_card or CARD_FILE not in contents
    if generated_card:
        contents.pop(CARD_FILE, None)

        def card_for(pinned: str | None, code_pinned: str | None) -> bytes:
            card = render_model_card(
                model_dir,
                repo_id=repo_id,
                license=license,
                code_repo=code_repo,
                eval_results=eval_results,
                revision=pinned,
                code_revision=code_pinned,
                space=space,
            )
            return str(card).encode()

        card = card_for(None, None)  # checked offline by render_model_card; the pinned one differs only in the sha
    else:
        card = _read(contents[CARD_FILE])
        try:
            check_model_card(card.decode("utf-8"), require_agqg_fields=False)
        except (CardError, UnicodeDecodeError) as error:
            raise CardError(f"{model_dir / CARD_FILE}: {error}") from error
    originals = [value for fields in redactions.values() for value in fields.values()]
    _refuse_local_paths({**contents, CARD_FILE: card}, local_roots(model_dir, originals))
    if code_repo is not None:
        code = {name: contents.pop(name) for name in plan.code_files}
        config = json.loads(_read(contents[CONFIG_FILE]))
        contents[CONFIG_FILE] = (json.dumps(code_repo_config(config, code_repo), indent=2) + "\n").encode()

    report = PushReport(repo_id=repo_id, revision=revision, code_repo=code_repo)
    report.left_out = [f"{name}: {reason}" for name, reason in plan.left_out]
    report.redacted = [f"{name}: {', '.join(fields)}" for name, fields in sorted(redactions.items())]
    digests = {path: _file_digests(source) for path, source in contents.items()}
    try:
        shown_as = model_dir / CARD_FILE if not generated_card else "the generated README.md"
        validate_card_on_hub(card, "model", endpoint=api.endpoint, shown_as=shown_as)
        if code_repo is not None:
            report.code_revision = _push_code(api, code_repo, code, private=private, token=token)
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model", token=token)
        if revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True, token=token)
        remote = _remote_files(api, repo_id, revision, token)
        published = set(contents) | {CARD_FILE}
        report.remote_only = sorted(set(remote) - published - {".gitattributes"})
        changed = sorted(p for p in contents if not _matches(remote.get(p), digests[p]))
        report.unchanged = sorted(set(contents) - set(changed))
        model_commit = None
        if changed:
            model_commit = _commit(api, repo_id, revision, changed, contents, commit_message, token)
            report.commit_url, report.commit_oid, report.uploaded = model_commit.commit_url, model_commit.oid, changed
        if generated_card:
            report.pinned_revision = (
                model_commit.oid if model_commit else _pinned_commit(api, repo_id, revision, token, remote, digests)
            )
            card = card_for(report.pinned_revision, report.code_revision)
            contents[CARD_FILE], digests[CARD_FILE] = card, _file_digests(card)
            if _matches(remote.get(CARD_FILE), digests[CARD_FILE]):
                report.unchanged = sorted([*report.unchanged, CARD_FILE])
            else:
                message = f"{commit_message or 'Upload AGQG model'}: model card, examples pin {report.pinned_revision}"
                info = _commit(api, repo_id, revision, [CARD_FILE], contents, message, token, parent=model_commit)
                report.commit_url, report.commit_oid = info.commit_url, info.oid
                report.uploaded = sorted([*report.uploaded, CARD_FILE])
    except CardError:
        raise
    except BaseException as error:  # also Ctrl-C: say what did not go up, then let it propagate
        report.error = " ".join(f"{type(error).__name__}: {error}".split())[:1000]
        report.not_uploaded = _not_uploaded(api, repo_id, revision, token, {**digests, CARD_FILE: _file_digests(card)})
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


def _read(source: Path | bytes) -> bytes:
    return source if isinstance(source, bytes) else source.read_bytes()


def _commit(
    api: HfApi,
    repo_id: str,
    revision: str,
    paths: list[str],
    contents: dict[str, Path | bytes],
    commit_message: str | None,
    token: str | None,
    parent: Any = None,
) -> Any:
    """Commits `paths` in one commit (on top of `parent`, the commit just made, when given) and returns its info."""
    operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=_source(contents[path])) for path in paths]
    return api.create_commit(
        repo_id,
        operations=operations,
        commit_message=commit_message or "Upload AGQG model",
        revision=revision,
        token=token,
        parent_commit=parent.oid if parent is not None else None,
    )


def _pinned_commit(
    api: HfApi, repo_id: str, revision: str, token: str | None, remote: dict[str, Any], digests: dict[str, Any]
) -> str:
    """The commit a card should pin when the model's files are already on the Hub (nothing new was committed):
    the commit that the card on the Hub pins, if it still holds exactly these files (so an unchanged folder makes no
    new commit), else the branch head (which holds them, as this push found)."""
    head = api.repo_info(repo_id, revision=revision, token=token).sha
    if CARD_FILE not in remote:
        return head
    with tempfile.TemporaryDirectory() as folder:
        card_path = api.hf_hub_download(repo_id, CARD_FILE, revision=head, token=token, local_dir=folder)
        match = _PINNED_REVISION.search(Path(card_path).read_text(encoding="utf-8", errors="replace"))
    if match is None or match.group(1) == head:
        return head
    at_pin = _remote_files(api, repo_id, match.group(1), token)
    same = all(_matches(at_pin.get(path), digest) for path, digest in digests.items() if path != CARD_FILE)
    return match.group(1) if same else head


def validate_card_on_hub(
    card: str | bytes,
    repo_type: str = "model",
    *,
    endpoint: str | None = None,
    shown_as: str | os.PathLike = "the card",
) -> None:
    """Asks the Hub whether it accepts a card's metadata: `POST {endpoint}/api/validate-yaml`, what
    `RepoCard.validate` calls, but at `endpoint` (default: huggingface_hub's, i.e. `HF_ENDPOINT`), which
    huggingface_hub 0.x's `validate` ignores (it posts to huggingface.co). It creates nothing, so `push` and
    `push_dataset` call it before creating a repository: a refused card leaves no empty repository behind.

    Args:
        card: The card's text (README.md with its YAML metadata).
        repo_type: `model`, `dataset` or `space`: the Hub checks each kind's metadata.
        endpoint: The Hub to ask.
        shown_as: How a refusal names the card (a path, or a description).

    Raises:
        CardError: the Hub refuses the metadata (the message is the Hub's, on one line).
        HfHubHTTPError: the Hub could not be asked.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session, hf_raise_for_status

    text = card.decode("utf-8", errors="replace") if isinstance(card, bytes) else card
    response = get_session().post(
        f"{(endpoint or constants.ENDPOINT).rstrip('/')}/api/validate-yaml",
        json={"repoType": repo_type, "content": text},
        headers={"Accept": "text/plain"},
    )
    if response.status_code == 400:
        raise CardError(f"{shown_as}: the Hub refuses the card's metadata: {' '.join(response.text.split())}")
    hf_raise_for_status(response)


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

    The card's metadata is validated by the Hub before the repository is created (`validate_card_on_hub`), and
    the card goes up first so that `dataset.push_to_hub`, which merges its `dataset_info` and `configs` metadata
    into an existing `README.md`, keeps the card's text. Check that the data's licence allows redistribution.

    Returns:
        What `dataset.push_to_hub` returns (the commit info).

    Raises:
        CardError: the Hub refuses the card's metadata (nothing was created).
    """
    api = HfApi(token=token)
    if card is not None:
        validate_card_on_hub(str(card), "dataset", endpoint=api.endpoint, shown_as="the dataset card")
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


def _push_code(api: HfApi, code_repo: str, code: dict[str, Path | bytes], *, private: bool, token: str | None) -> str:
    """Uploads the code files that differ to the code repository's `main` and returns the commit that holds them
    (the new commit, or the head when the Hub already had them), which the card pins as `code_revision`."""
    api.create_repo(code_repo, private=private, exist_ok=True, repo_type="model", token=token)
    remote = _remote_files(api, code_repo, "main", token)
    changed = sorted(name for name, source in code.items() if not _matches(remote.get(name), _file_digests(source)))
    if changed:
        return _commit(api, code_repo, "main", changed, code, "Upload AGQG remote code", token).oid
    return api.repo_info(code_repo, revision="main", token=token).sha


# ---------------------------------------------------------------------------------------------
# Command line: agqg push MODEL_DIR REPO_ID
# ---------------------------------------------------------------------------------------------


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Registers `agqg push`."""
    parser = subparsers.add_parser(
        "push",
        help="publish a saved model folder to the Hugging Face Hub",
        description=(
            "Uploads the files a model repository needs from a saved AGQG folder (config, remote code and the modules "
            "it imports, weights, image processor, tokenizer, model card, eval_results.json, train_config.yaml) in "
            "one commit, then the generated model card, whose examples pin that commit, in a second one. Dotfiles, "
            "folders, unknown files and symlinks to outside the folder are left out and listed; local paths in the "
            "metadata are replaced by '<local path>/NAME'. The card is validated before anything is created. A "
            "failed upload lists the files that are not on the Hub; run the same command again to finish it. Uses "
            "HF_TOKEN / `hf auth login` and HF_ENDPOINT."
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
    parser.add_argument(
        "--exclude", action="append", default=[], metavar="GLOB", help="also leave out top-level files matching GLOB"
    )
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
