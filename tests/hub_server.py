"""A small Hugging Face Hub-compatible HTTP server for tests: a test double of the Hub's public API.

The Hub cannot be reached from the machines these tests run on, so the publishing tests point `HF_ENDPOINT`
(or `HfApi(endpoint=...)`) at this server instead. It implements the routes that `huggingface_hub` (2.x, and 0.x
for downloads), `transformers` and `datasets` call to create a repository, upload to it and download from it,
written from those clients' behaviour (request shapes and the response fields and headers they read), not from
the Hub's own code:

* `POST /api/repos/create`, `GET /api/{models,datasets,spaces}/{repo}[/revision/{rev}]` (repo info),
  `POST .../branch/{name}` and `GET .../refs`; a Space needs an `sdk` and starts with the Hub's default README;
* `POST .../preupload/{rev}` (regular or LFS upload mode, the stored oid so unchanged files are skipped);
* the git-LFS batch API (`POST /{repo}.git/info/lfs/objects/batch`) with single-part `PUT` uploads and a
  verify step, as used when Xet is disabled (`HF_HUB_DISABLE_XET=1`);
* `POST .../commit/{rev}` (NDJSON: header, inline `file`, `lfsFile`, `deletedFile`, `deletedFolder`), atomic;
* `GET|HEAD /{repo}/resolve/{rev}/{path}` with `X-Repo-Commit`/`ETag`, a redirect to the LFS object for LFS
  files (`X-Linked-Etag`, `X-Linked-Size`), byte ranges, and the Hub's 404 error codes (`RepoNotFound`,
  `RevisionNotFound`, `EntryNotFound`);
* `GET .../tree/{rev}[/{path}]` and `POST .../paths-info/{rev}`;
* `POST /api/validate-yaml`: the card metadata checks listed in `validate_card_metadata` (also those of a Space's
  README: `sdk`, `sdk_version`, `app_file`, colours, `short_description`, `models`);
* `GET /api/agent-harnesses`: the registry huggingface_hub reads for its user agent (empty here).

Like the Hub, large files live on a second origin (a storage host): LFS uploads and downloads go to pre-signed
URLs there, which carry their own grant instead of a token. `fail_next` injects HTTP errors and `hold_next` stalls
a request, so tests can break or kill a client in the middle of an upload.

Deliberate simplifications (each documented where it happens): one user who owns every namespace, any
non-empty bearer token is that user, no pagination (every listing fits one page), no pull requests, no
Xet. Any other route answers 501 and is recorded in `HubServer.unhandled_requests`, so a test that
reaches an unimplemented part of the API fails loudly instead of passing against a guess.

It binds 127.0.0.1 on ephemeral ports, serves from daemon threads, and stops on `stop()` / leaving the `with`
block (and with the process that started it).
"""

from __future__ import annotations

import base64
import datetime as _dt
import fnmatch
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

USER = "agqg-tester"
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}

# The Hub decides "lfs" vs "regular" from the repository's .gitattributes and the file's content; this double
# uses the patterns of the Hub's default .gitattributes that matter here, a size limit and a binary sniff.
LFS_PATTERNS = (
    "*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.onnx", "*.msgpack", "*.npy", "*.npz",
    "*.arrow", "*.parquet", "*.zip", "*.gz", "*.tar", "*.zst",
    "*.png", "*.jpg", "*.jpeg", "*.webp", "*.gif", "*.bmp", "*.tiff",
)  # fmt: skip
REGULAR_FILE_MAX_BYTES = 10 * 1024 * 1024

# Licence ids and pipeline tags the Hub accepts (from its public documentation), restricted to what a card
# validator needs to reject typos; "other" is the Hub's catch-all for both.
KNOWN_LICENSES = {
    "apache-2.0", "mit", "openrail", "openrail++", "bigscience-openrail-m", "creativeml-openrail-m", "bsd-3-clause",
    "bsd-2-clause", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0", "cc-by-nc-sa-4.0", "cc-by-nc-nd-4.0", "cc0-1.0",
    "gpl-3.0", "lgpl-3.0", "agpl-3.0", "mpl-2.0", "llama2", "llama3", "gemma", "unknown", "other",
}  # fmt: skip
KNOWN_PIPELINE_TAGS = {
    "text-classification", "token-classification", "table-question-answering", "question-answering",
    "zero-shot-classification", "translation", "summarization", "feature-extraction", "text-generation",
    "fill-mask", "sentence-similarity", "text-to-speech", "text-to-audio", "automatic-speech-recognition",
    "audio-to-audio", "audio-classification", "voice-activity-detection", "depth-estimation",
    "image-classification", "object-detection", "image-segmentation", "text-to-image", "image-to-text",
    "image-to-image", "image-to-video", "unconditional-image-generation", "video-classification",
    "reinforcement-learning", "robotics", "tabular-classification", "tabular-regression", "text-to-video",
    "image-text-to-text", "visual-question-answering", "document-question-answering",
    "zero-shot-image-classification", "graph-ml", "mask-generation", "zero-shot-object-detection", "text-to-3d",
    "image-to-3d", "image-feature-extraction", "video-text-to-text", "keypoint-detection", "any-to-any", "other",
}  # fmt: skip
# Space metadata the Hub accepts (from its Spaces configuration reference).
SPACE_SDKS = {"gradio", "streamlit", "docker", "static"}
SPACE_COLORS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
SPACE_SHORT_DESCRIPTION_MAX = 60
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")


def git_blob_oid(content: bytes) -> str:
    """Git's object id of a blob: sha1(b"blob <size>\\0" + content)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-LFS pointer file stored in git in place of a large file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True)
class StoredFile:
    """One file of a commit: inline content (regular) or a reference to an LFS object."""

    size: int
    git_oid: str  # id of the git blob: the content, or the LFS pointer
    sha256: str | None = None  # set for LFS files
    content: bytes | None = None  # set for regular files

    @property
    def is_lfs(self) -> bool:
        return self.sha256 is not None


@dataclass
class Commit:
    oid: str
    parent: str | None
    title: str
    files: dict[str, StoredFile]
    date: str


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit oid
    commits: dict[str, Commit] = field(default_factory=dict)
    lfs_objects: dict[str, bytes] = field(default_factory=dict)  # sha256 -> content


class HubError(Exception):
    """An HTTP error answer with the Hub's error headers."""

    def __init__(self, status: int, message: str, error_code: str | None = None, commit: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.error_code, self.commit = status, message, error_code, commit


@dataclass
class InjectedFailure:
    """Makes the next `times` requests matching `method` and `path_regex` fail with `status`."""

    method: str
    path_regex: str
    status: int = 500
    times: int = 1


@dataclass
class HeldRequest:
    """Holds the next request matching `method` and `path_regex` (after its body is received) until `release` is
    set, then answers 503: lets a test kill a client in the middle of an upload."""

    method: str
    path_regex: str
    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    used: bool = False


def validate_card_metadata(content: str, repo_type: str) -> list[str]:
    """The checks of this double's `/api/validate-yaml` (a subset of the Hub's): returns error messages.

    YAML front matter between `---` lines that parses to a mapping; `license` a known id (or `other` with
    `license_name`); `tags`, `datasets`, `metrics`, `language` strings or lists of strings; `pipeline_tag` a
    known task; `base_model` Hub repo ids; `model-index` a list of `{name, results: [{task: {type}, dataset:
    {type, name}, metrics: [{type, value}]}]}` with numeric values.
    """
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, flags=re.DOTALL)
    if match is None:
        return [] if not content.startswith("---") else ["metadata block is not closed by a '---' line"]
    try:
        metadata = yaml.safe_load(match.group(1))
    except yaml.YAMLError as error:
        return [f"metadata is not valid YAML: {error}"]
    if metadata is None:
        return []
    if not isinstance(metadata, dict):
        return ["metadata must be a YAML mapping"]
    errors: list[str] = []
    license_id = metadata.get("license")
    if license_id is not None:
        for lic in license_id if isinstance(license_id, list) else [license_id]:
            if lic not in KNOWN_LICENSES:
                errors.append(f'"license" must be a known license id, got {lic!r}')
        if license_id == "other" and "license_name" not in metadata:
            errors.append('"license: other" needs "license_name"')
    for key in ("tags", "datasets", "metrics", "language", "base_model"):
        value = metadata.get(key)
        values = value if isinstance(value, list) else [value]
        if value is not None and not all(isinstance(v, str) and v for v in values):
            errors.append(f'"{key}" must be a string or a list of non-empty strings')
    for base in metadata.get("base_model") or [] if isinstance(metadata.get("base_model"), list) else []:
        if isinstance(base, str) and not _REPO_ID.match(base):
            errors.append(f'"base_model" {base!r} is not a Hub repo id')
    if isinstance(metadata.get("base_model"), str) and not _REPO_ID.match(metadata["base_model"]):
        errors.append(f'"base_model" {metadata["base_model"]!r} is not a Hub repo id')
    pipeline_tag = metadata.get("pipeline_tag")
    if pipeline_tag is not None and (repo_type != "model" or pipeline_tag not in KNOWN_PIPELINE_TAGS):
        errors.append(f'"pipeline_tag" must be a known task of a model repo, got {pipeline_tag!r}')
    if "model-index" in metadata:
        errors.extend(_model_index_errors(metadata["model-index"]))
    if repo_type == "space":
        errors.extend(_space_metadata_errors(metadata))
    return errors


def _space_metadata_errors(metadata: dict[str, Any]) -> list[str]:
    """A Space README: a known `sdk`; `sdk_version`, `app_file`, `title`, `emoji`, `python_version` strings; known
    thumbnail colours; `short_description` of at most 60 characters; `pinned` a boolean; `models` Hub repo ids."""
    errors = []
    if metadata.get("sdk") not in SPACE_SDKS:
        errors.append(f'"sdk" must be one of {sorted(SPACE_SDKS)}, got {metadata.get("sdk")!r}')
    for key in ("sdk_version", "app_file", "title", "emoji", "python_version", "short_description"):
        if key in metadata and not (isinstance(metadata[key], str) and metadata[key]):
            errors.append(f'"{key}" must be a non-empty string, got {metadata[key]!r}')
    for key in ("colorFrom", "colorTo"):
        if key in metadata and metadata[key] not in SPACE_COLORS:
            errors.append(f'"{key}" must be one of {sorted(SPACE_COLORS)}, got {metadata[key]!r}')
    if len(str(metadata.get("short_description", ""))) > SPACE_SHORT_DESCRIPTION_MAX:
        errors.append(f'"short_description" must be at most {SPACE_SHORT_DESCRIPTION_MAX} characters')
    if "pinned" in metadata and not isinstance(metadata["pinned"], bool):
        errors.append(f'"pinned" must be a boolean, got {metadata["pinned"]!r}')
    models = metadata.get("models")
    for model in models if isinstance(models, list) else [models] if models is not None else []:
        if not isinstance(model, str) or not _REPO_ID.match(model):
            errors.append(f'"models" entry {model!r} is not a Hub repo id')
    return errors


def default_space_readme(name: str, sdk: str) -> bytes:
    """The README the Hub puts in a new Space: its metadata and a pointer to the configuration reference."""
    return (
        f"---\ntitle: {name}\nemoji: 🚀\ncolorFrom: blue\ncolorTo: green\nsdk: {sdk}\npinned: false\n---\n\n"
        "Check out the configuration reference at https://huggingface.co/docs/hub/spaces-config-reference\n"
    ).encode()


def _model_index_errors(model_index: Any) -> list[str]:
    if not isinstance(model_index, list) or not model_index:
        return ['"model-index" must be a non-empty list']
    errors = []
    for entry in model_index:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            errors.append('"model-index" entries need a "name"')
            continue
        for result in entry.get("results") or []:
            where = f'"model-index" result of {entry["name"]!r}'
            if not isinstance((result.get("task") or {}).get("type"), str):
                errors.append(f"{where} needs task.type")
            dataset = result.get("dataset") or {}
            if not isinstance(dataset.get("type"), str) or not isinstance(dataset.get("name"), str):
                errors.append(f"{where} needs dataset.type and dataset.name")
            metrics = result.get("metrics")
            if not isinstance(metrics, list) or not metrics:
                errors.append(f"{where} needs a list of metrics")
                continue
            for metric in metrics:
                if not isinstance(metric.get("type"), str) or not isinstance(metric.get("value"), (int, float)):
                    errors.append(f"{where}: each metric needs a type and a numeric value, got {metric}")
    return errors


class HubServer:
    """The server; use as a context manager or call `start()`/`stop()`. `url` is the value for `HF_ENDPOINT`."""

    def __init__(self, idle_timeout: float | None = 600.0) -> None:
        """`idle_timeout`: seconds without a request after which the server stops itself (None: never), so a
        server a test forgot to stop does not outlive its purpose."""
        self.repos: dict[tuple[str, str], Repo] = {}
        self.unhandled_requests: list[str] = []
        self.request_log: list[tuple[str, str, int]] = []
        self.failures: list[InjectedFailure] = []
        self.holds: list[HeldRequest] = []
        self._lock = threading.RLock()
        self._commit_counter = 0
        self._secret = secrets.token_bytes(16)
        # Two origins, like the Hub: the API and git routes, and a separate storage host that LFS downloads are
        # redirected to (clients treat a redirect to another origin as "metadata is on the redirect response").
        self._httpds = [
            ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self, storage)) for storage in (False, True)
        ]
        for httpd in self._httpds:
            httpd.daemon_threads = True
        self.url, self.storage_url = (f"http://127.0.0.1:{httpd.server_address[1]}" for httpd in self._httpds)
        self._threads = [
            threading.Thread(target=h.serve_forever, args=(0.05,), name="hub-test-server", daemon=True)
            for h in self._httpds
        ]
        self.idle_timeout = idle_timeout
        self.last_request = time.monotonic()
        self._stopped = threading.Event()  # stop() has begun
        self._closed = threading.Event()  # the sockets are closed

    def start(self) -> HubServer:
        for thread in self._threads:
            thread.start()
        if self.idle_timeout is not None:
            threading.Thread(target=self._stop_when_idle, name="hub-test-server-watchdog", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._stopped.is_set():  # stopping already (e.g. the idle watchdog): wait until it is done
            self._closed.wait(timeout=10)
            return
        self._stopped.set()
        for httpd in self._httpds:
            httpd.shutdown()
            httpd.server_close()
        self._closed.set()

    @property
    def running(self) -> bool:
        """False once the server has stopped and closed its sockets."""
        return not self._closed.is_set()

    def _stop_when_idle(self) -> None:
        assert self.idle_timeout is not None
        while not self._stopped.wait(min(self.idle_timeout, 1.0) / 2):
            if time.monotonic() - self.last_request > self.idle_timeout:
                self.stop()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def signature(self, path: str) -> str:
        return hmac.new(self._secret, path.encode(), hashlib.sha256).hexdigest()

    def signed_url(self, origin: str, path: str) -> str:
        """A URL carrying its own grant, like the Hub's pre-signed storage URLs (clients send no token there)."""
        return f"{origin}{path}?signature={self.signature(path)}"

    def fail_next(self, method: str, path_regex: str, status: int = 500, times: int = 1) -> None:
        """Injects `times` failures (HTTP `status`) into matching requests, e.g. to interrupt a commit."""
        with self._lock:
            self.failures.append(InjectedFailure(method.upper(), path_regex, status, times))

    def hold_next(self, method: str, path_regex: str) -> HeldRequest:
        """Holds the next matching request until the returned object's `release` is set (see `HeldRequest`)."""
        held = HeldRequest(method.upper(), path_regex)
        with self._lock:
            self.holds.append(held)
        return held

    def files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict[str, bytes]:
        """The content of every file at `revision` (for assertions)."""
        repo = self.repos[(repo_type, repo_id)]
        commit = repo.commits[repo.branches[revision]]
        return {
            path: f.content if f.content is not None else repo.lfs_objects[f.sha256] for path, f in commit.files.items()
        }

    # --- the API -------------------------------------------------------------------------------------

    def _take_failure(self, method: str, path: str) -> InjectedFailure | None:
        with self._lock:
            for failure in self.failures:
                if failure.method == method and re.search(failure.path_regex, path) and failure.times > 0:
                    failure.times -= 1
                    return failure
        return None

    def _take_hold(self, method: str, path: str) -> HeldRequest | None:
        with self._lock:
            for held in self.holds:
                if held.method == method and re.search(held.path_regex, path) and not held.used:
                    held.used = True
                    return held
        return None

    def _repo(self, repo_type: str, repo_id: str, token: str | None) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        # Like the Hub, a private repository is indistinguishable from a missing one without credentials.
        if repo is None or (repo.private and not token):
            raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return repo

    @staticmethod
    def _require_token(token: str | None) -> None:
        if not token:
            raise HubError(401, "Invalid credentials in Authorization header")

    def _commit_oid(self, revision: str, repo: Repo) -> str:
        if revision in repo.branches:
            return repo.branches[revision]
        if re.fullmatch(r"[0-9a-f]{40}", revision) and revision in repo.commits:
            return revision
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def _new_commit(self, repo: Repo, parent: str | None, title: str, files: dict[str, StoredFile]) -> Commit:
        self._commit_counter += 1
        oid = hashlib.sha1(f"{repo.repo_id}:{self._commit_counter}:{title}".encode()).hexdigest()
        commit = Commit(
            oid, parent, title, files, _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        )
        repo.commits[oid] = commit
        return commit

    def create_repo(self, payload: dict[str, Any], token: str | None) -> tuple[int, dict[str, Any]]:
        self._require_token(token)
        repo_type = payload.get("type") or "model"
        name, organization = payload.get("name"), payload.get("organization")
        repo_id = f"{organization or USER}/{name}"
        if repo_type not in URL_PREFIXES or not isinstance(name, str) or not _REPO_ID.match(repo_id):
            raise HubError(400, f"invalid repository type or name: {repo_type!r} {repo_id!r}")
        if repo_type == "space" and payload.get("sdk") not in SPACE_SDKS:
            raise HubError(400, f"a Space needs an sdk, one of {sorted(SPACE_SDKS)}; got {payload.get('sdk')!r}")
        url = f"{self.url}/{URL_PREFIXES[repo_type]}{repo_id}"
        with self._lock:
            if (repo_type, repo_id) in self.repos:
                return 409, {"error": "You already created this repo", "url": url}
            private = payload.get("visibility") == "private" or bool(payload.get("private"))
            repo = Repo(repo_type, repo_id, private)
            # A new Hub repo has one commit holding .gitattributes.
            gitattributes = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()
            files = {
                ".gitattributes": StoredFile(len(gitattributes), git_blob_oid(gitattributes), content=gitattributes)
            }
            if repo_type == "space":  # ... and a new Space a README with its metadata
                readme = default_space_readme(name, payload["sdk"])
                files["README.md"] = StoredFile(len(readme), git_blob_oid(readme), content=readme)
            repo.branches["main"] = self._new_commit(repo, None, "initial commit", files).oid
            self.repos[(repo_type, repo_id)] = repo
        return 200, {"url": url, "name": repo_id, "id": repo_id}

    def repo_info(self, repo: Repo, revision: str) -> dict[str, Any]:
        commit = repo.commits[self._commit_oid(revision, repo)]
        info: dict[str, Any] = {
            "id": repo.repo_id,
            "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
            "author": repo.repo_id.split("/")[0],
            "sha": commit.oid,
            "lastModified": commit.date,
            "createdAt": repo.commits[next(iter(repo.commits))].date,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": [{"rfilename": path} for path in sorted(commit.files)],
        }
        readme = commit.files.get("README.md")
        if readme is not None and readme.content is not None:
            card_data = _front_matter(readme.content.decode())
            if card_data:
                info["cardData"] = card_data
                info["tags"] = list(card_data.get("tags") or [])
        if repo.repo_type == "model":
            config = commit.files.get("config.json")
            if config is not None and config.content is not None:
                parsed = json.loads(config.content)
                info["config"] = {k: parsed[k] for k in ("architectures", "model_type", "auto_map") if k in parsed}
            info["library_name"] = (info.get("cardData") or {}).get("library_name")
        if repo.repo_type == "space":
            info["sdk"] = (info.get("cardData") or {}).get("sdk")
        return info

    def preupload(self, repo: Repo, revision: str, payload: dict[str, Any]) -> dict[str, Any]:
        commit = repo.commits[self._commit_oid(revision, repo)]
        answers = []
        for item in payload.get("files", []):
            path, size = item["path"], int(item["size"])
            sample = base64.b64decode(item.get("sample", ""))
            lfs = (
                any(fnmatch.fnmatch(path.rsplit("/", 1)[-1], p) for p in LFS_PATTERNS)
                or size > REGULAR_FILE_MAX_BYTES
                or b"\0" in sample
            )
            existing = commit.files.get(path)
            # The client compares this oid with its own: sha256 for LFS files, the git blob id otherwise.
            oid = None if existing is None else (existing.sha256 if existing.is_lfs else existing.git_oid)
            answers.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        return {"files": answers, "commitOid": commit.oid}

    def lfs_batch(self, repo: Repo, payload: dict[str, Any]) -> dict[str, Any]:
        if payload.get("operation") != "upload" or "basic" not in payload.get("transfers", ["basic"]):
            raise HubError(400, "only the 'upload' operation with the 'basic' transfer is implemented")
        objects = []
        for obj in payload.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            if oid in repo.lfs_objects:
                objects.append({"oid": oid, "size": size})  # no actions: already stored
                continue
            prefix = f"{repo.repo_type}/{repo.repo_id}"
            objects.append(
                {
                    "oid": oid,
                    "size": size,
                    "authenticated": True,
                    "actions": {
                        # Like the Hub's pre-signed storage URLs: no token needed, the signature is the grant.
                        "upload": {"href": self.signed_url(self.url, f"/lfs-upload/{prefix}/{oid}/{size}")},
                        "verify": {"href": f"{self.url}/lfs-verify/{prefix}"},
                    },
                }
            )
        return {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}

    def lfs_upload(self, repo: Repo, oid: str, size: int, content: bytes) -> None:
        if len(content) != size or hashlib.sha256(content).hexdigest() != oid:
            raise HubError(400, f"uploaded content does not match oid {oid} / size {size}")
        with self._lock:
            repo.lfs_objects[oid] = content

    def commit(self, repo: Repo, revision: str, lines: list[dict[str, Any]], token: str | None) -> dict[str, Any]:
        self._require_token(token)
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "the first NDJSON line of a commit must be its header")
        header = lines[0]["value"]
        with self._lock:
            head = self._commit_oid(revision, repo)
            if revision not in repo.branches:
                raise HubError(400, f"can only commit to a branch, not {revision}")
            if header.get("parentCommit") not in (None, head):
                raise HubError(412, f"parentCommit {header['parentCommit']} is not the head of {revision} ({head})")
            files = dict(repo.commits[head].files)
            for line in lines[1:]:
                key, value = line.get("key"), line.get("value") or {}
                path = value.get("path", "")
                if key == "file":
                    if value.get("encoding") != "base64":
                        raise HubError(400, f"{path}: only base64 inline content is implemented")
                    content = base64.b64decode(value["content"])
                    if path == "README.md":
                        errors = validate_card_metadata(content.decode(), repo.repo_type)
                        if errors:
                            raise HubError(400, "Invalid metadata in README.md: " + "; ".join(errors))
                    files[path] = StoredFile(len(content), git_blob_oid(content), content=content)
                elif key == "lfsFile":
                    oid = value.get("oid")
                    if value.get("algo") != "sha256" or oid not in repo.lfs_objects:
                        raise HubError(400, f"{path}: LFS object {oid} was never uploaded")
                    size = len(repo.lfs_objects[oid])
                    files[path] = StoredFile(size, git_blob_oid(lfs_pointer(oid, size)), sha256=oid)
                elif key == "deletedFile":
                    if files.pop(path, None) is None:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                elif key == "deletedFolder":
                    prefix = path.rstrip("/") + "/"
                    for existing in [p for p in files if p.startswith(prefix)]:
                        del files[existing]
                else:
                    raise HubError(400, f"commit operation {key!r} is not implemented")
            commit = self._new_commit(repo, head, header.get("summary") or "update", files)
            repo.branches[revision] = commit.oid
        prefix = f"{self.url}/{URL_PREFIXES[repo.repo_type]}{repo.repo_id}"
        return {
            "success": True,
            "commitOid": commit.oid,
            "commitUrl": f"{prefix}/commit/{commit.oid}",
            "pullRequestUrl": None,
        }

    def create_branch(self, repo: Repo, branch: str, payload: dict[str, Any], token: str | None) -> None:
        self._require_token(token)
        with self._lock:
            if branch in repo.branches:
                raise HubError(409, f"Reference already exists: refs/heads/{branch}")
            repo.branches[branch] = self._commit_oid(payload.get("startingPoint") or "main", repo)

    def tree_entries(self, repo: Repo, commit: Commit, path: str, recursive: bool) -> list[dict[str, Any]]:
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        if prefix and not any(p.startswith(prefix) for p in commit.files):
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", commit.oid)
        entries: dict[str, dict[str, Any]] = {}
        for file_path in sorted(commit.files):
            if not file_path.startswith(prefix):
                continue
            parts = file_path[len(prefix) :].split("/")
            for depth in range(1, len(parts)):
                folder = prefix + "/".join(parts[:depth])
                if depth == 1 or recursive:
                    entries.setdefault(folder, self._folder_entry(commit, folder))
                if not recursive:
                    break
            if len(parts) == 1 or recursive:
                entries[file_path] = self._file_entry(commit.files[file_path], file_path)
        return list(entries.values())

    @staticmethod
    def _file_entry(stored: StoredFile, path: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "oid": stored.git_oid, "size": stored.size, "path": path}
        if stored.is_lfs:
            entry["lfs"] = {
                "oid": stored.sha256,
                "size": stored.size,
                "pointerSize": len(lfs_pointer(stored.sha256, stored.size)),
            }
        return entry

    @staticmethod
    def _folder_entry(commit: Commit, folder: str) -> dict[str, Any]:
        inside = "".join(f"{p}:{f.git_oid}" for p, f in sorted(commit.files.items()) if p.startswith(folder + "/"))
        return {"type": "directory", "oid": hashlib.sha1(inside.encode()).hexdigest(), "size": 0, "path": folder}

    def paths_info(self, commit: Commit, paths: list[str]) -> list[dict[str, Any]]:
        answers = []
        for path in paths:
            path = path.strip("/")
            if path in commit.files:
                answers.append(self._file_entry(commit.files[path], path))
            elif any(p.startswith(path + "/") for p in commit.files):
                answers.append(self._folder_entry(commit, path))
        return answers


def _front_matter(text: str) -> dict[str, Any] | None:
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, flags=re.DOTALL)
    if match is None:
        return None
    try:
        parsed = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return None
    return parsed if isinstance(parsed, dict) else None


# Routes: (method, regex over the raw path, handler name). Repo ids are "namespace/name"; revisions are
# URL-quoted by the clients (a branch "a/b" arrives as "a%2Fb"), so they never contain a raw "/".
_ID = r"(?P<repo_id>[^/]+/[^/]+?)"
_API = r"^/api/(?P<kind>models|datasets|spaces)/" + _ID
_GIT_PREFIX = r"^/(?:(?P<kind>datasets|spaces)/)?" + _ID
ROUTES: list[tuple[str, str, str]] = [
    ("POST", r"^/api/repos/create$", "_create_repo"),
    ("POST", r"^/api/validate-yaml$", "_validate_yaml"),
    ("GET", r"^/api/agent-harnesses$", "_agent_harnesses"),
    ("GET", _API + r"(?:/revision/(?P<revision>[^/]+))?$", "_repo_info"),
    ("GET", _API + r"/refs$", "_refs"),
    ("POST", _API + r"/branch/(?P<branch>[^/]+)$", "_create_branch"),
    ("POST", _API + r"/preupload/(?P<revision>[^/]+)$", "_preupload"),
    ("POST", _API + r"/commit/(?P<revision>[^/]+)$", "_commit"),
    ("GET", _API + r"/tree/(?P<revision>[^/]+)(?:/(?P<path>.*))?$", "_tree"),
    ("POST", _API + r"/paths-info/(?P<revision>[^/]+)$", "_paths_info"),
    ("POST", _GIT_PREFIX + r"\.git/info/lfs/objects/batch$", "_lfs_batch"),
    ("PUT", r"^/lfs-upload/(?P<type>\w+)/" + _ID + r"/(?P<oid>[0-9a-f]{64})/(?P<size>\d+)$", "_lfs_upload"),
    ("POST", r"^/lfs-verify/(?P<type>\w+)/" + _ID + r"$", "_lfs_verify"),
    ("GET", r"^/lfs-objects/(?P<type>\w+)/" + _ID + r"/(?P<oid>[0-9a-f]{64})$", "_lfs_object"),
    ("HEAD", r"^/lfs-objects/(?P<type>\w+)/" + _ID + r"/(?P<oid>[0-9a-f]{64})$", "_lfs_object"),
    ("GET", _GIT_PREFIX + r"/resolve/(?P<revision>[^/]+)/(?P<path>.+)$", "_resolve"),
    ("HEAD", _GIT_PREFIX + r"/resolve/(?P<revision>[^/]+)/(?P<path>.+)$", "_resolve"),
]
_STORAGE_ROUTES = {"_lfs_object"}


def _make_handler(server: HubServer, storage: bool) -> type[BaseHTTPRequestHandler]:
    """The request handler of the API origin, or (`storage=True`) of the LFS storage origin."""
    routes = [route for route in ROUTES if (route[2] in _STORAGE_ROUTES) == storage]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass  # requests are recorded in `server.request_log` instead of stderr

        # --- plumbing ------------------------------------------------------------------------------

        def do_GET(self) -> None:  # noqa: N802 - the base class's naming
            self._dispatch("GET")

        def do_HEAD(self) -> None:  # noqa: N802
            self._dispatch("HEAD")

        def do_POST(self) -> None:  # noqa: N802
            self._dispatch("POST")

        def do_PUT(self) -> None:  # noqa: N802
            self._dispatch("PUT")

        def do_DELETE(self) -> None:  # noqa: N802
            self._dispatch("DELETE")

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        @property
        def _token(self) -> str | None:
            authorization = self.headers.get("Authorization") or ""
            return authorization[7:].strip() or None if authorization.lower().startswith("bearer ") else None

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})

        def _dispatch(self, method: str) -> None:
            server.last_request = time.monotonic()
            try:
                self._answer(method)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client went away (e.g. a test killed it mid-upload)

        def _answer(self, method: str) -> None:
            raw_path = urlsplit(self.path).path
            self.query = parse_qs(urlsplit(self.path).query)
            body = self._body() if method in ("POST", "PUT") else b""
            status = 500
            try:
                held = server._take_hold(method, raw_path)
                if held is not None:
                    held.reached.set()
                    held.release.wait(timeout=120)
                    raise HubError(503, f"held request {method} {raw_path} released")
                failure = server._take_failure(method, raw_path)
                if failure is not None:
                    raise HubError(failure.status, f"injected failure for {method} {raw_path}")
                for route_method, pattern, handler_name in routes:
                    match = re.match(pattern, raw_path)
                    if route_method == method and match:
                        params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                        status = getattr(self, handler_name)(body=body, **params) or 200
                        break
                else:
                    server.unhandled_requests.append(f"{method} {self.path}")
                    status = 501
                    self._json(501, {"error": f"hub test server: {method} {raw_path} is not implemented"})
            except HubError as error:
                status = error.status
                headers = {"X-Error-Message": error.message}
                if error.error_code:
                    headers["X-Error-Code"] = error.error_code
                if error.commit:
                    headers["X-Repo-Commit"] = error.commit
                self._json(error.status, {"error": error.message}, headers)
            server.request_log.append((method, self.path, status))

        def _signed_repo(self, repo_type: str, repo_id: str) -> Repo:
            """The repository of a pre-signed storage URL: the signature, not a token, grants access."""
            signature = (self.query.get("signature") or [""])[0]
            if not hmac.compare_digest(signature, server.signature(urlsplit(self.path).path)):
                raise HubError(403, "invalid or missing URL signature")
            repo = server.repos.get((repo_type, repo_id))
            if repo is None:
                raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
            return repo

        def _repo_for(self, kind: str | None, repo_id: str) -> Repo:
            repo_type = REPO_TYPES.get(kind, kind) if kind else "model"
            return server._repo(repo_type, repo_id, self._token)

        # --- routes --------------------------------------------------------------------------------

        def _create_repo(self, body: bytes) -> int:
            status, payload = server.create_repo(json.loads(body), self._token)
            self._json(status, payload)
            return status

        def _validate_yaml(self, body: bytes) -> int:
            payload = json.loads(body)
            errors = validate_card_metadata(payload.get("content", ""), payload.get("repoType") or "model")
            status = 400 if errors else 200
            if "text/plain" in (self.headers.get("Accept") or ""):
                self._send(status, "\n".join(errors).encode(), {"Content-Type": "text/plain"})
            else:
                self._json(status, {"errors": [{"message": e} for e in errors], "warnings": []})
            return status

        def _agent_harnesses(self, body: bytes) -> None:
            # huggingface_hub reads this registry to tag its user agent; this double knows no agent harness.
            self._json(200, {"standardEnvVars": [], "harnesses": {}})

        def _repo_info(self, body: bytes, kind: str, repo_id: str, revision: str = "main") -> None:
            self._json(200, server.repo_info(self._repo_for(kind, repo_id), revision))

        def _refs(self, body: bytes, kind: str, repo_id: str) -> None:
            repo = self._repo_for(kind, repo_id)
            branches = [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": c} for n, c in repo.branches.items()]
            self._json(200, {"branches": branches, "converts": [], "tags": []})

        def _create_branch(self, body: bytes, kind: str, repo_id: str, branch: str) -> None:
            server.create_branch(self._repo_for(kind, repo_id), branch, json.loads(body or b"{}"), self._token)
            self._json(200, {})

        def _preupload(self, body: bytes, kind: str, repo_id: str, revision: str) -> None:
            self._json(200, server.preupload(self._repo_for(kind, repo_id), revision, json.loads(body)))

        def _commit(self, body: bytes, kind: str, repo_id: str, revision: str) -> None:
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            self._json(200, server.commit(self._repo_for(kind, repo_id), revision, lines, self._token))

        def _tree(self, body: bytes, kind: str, repo_id: str, revision: str, path: str = "") -> None:
            repo = self._repo_for(kind, repo_id)
            commit = repo.commits[server._commit_oid(revision, repo)]
            recursive = (self.query.get("recursive") or ["False"])[0].lower() in ("1", "true")
            self._json(200, server.tree_entries(repo, commit, path, recursive))

        def _paths_info(self, body: bytes, kind: str, repo_id: str, revision: str) -> None:
            repo = self._repo_for(kind, repo_id)
            commit = repo.commits[server._commit_oid(revision, repo)]
            form = parse_qs(body.decode())
            self._json(200, server.paths_info(commit, form.get("paths", [])))

        def _lfs_batch(self, body: bytes, repo_id: str, kind: str | None = None) -> None:
            server._require_token(self._token)
            answer = server.lfs_batch(self._repo_for(kind, repo_id), json.loads(body))
            self._send(200, json.dumps(answer).encode(), {"Content-Type": "application/vnd.git-lfs+json"})

        def _lfs_upload(self, body: bytes, type: str, repo_id: str, oid: str, size: str) -> None:  # noqa: A002
            server.lfs_upload(self._signed_repo(type, repo_id), oid, int(size), body)
            self._send(200)

        def _lfs_verify(self, body: bytes, type: str, repo_id: str) -> None:  # noqa: A002
            payload = json.loads(body)
            if payload.get("oid") not in self._repo_for(type, repo_id).lfs_objects:
                raise HubError(404, f"LFS object {payload.get('oid')} not found")
            self._json(200, {})

        def _resolve(self, body: bytes, repo_id: str, revision: str, path: str, kind: str | None = None) -> int:
            repo = self._repo_for(kind, repo_id)
            commit = repo.commits[server._commit_oid(revision, repo)]
            stored = commit.files.get(path)
            if stored is None:
                raise HubError(404, f"Entry not found: {path}", "EntryNotFound", commit.oid)
            headers = {"X-Repo-Commit": commit.oid}
            if stored.is_lfs:
                # Like the Hub, large files redirect to their storage; the linked headers describe the target.
                headers.update(
                    {
                        "Location": server.signed_url(
                            server.storage_url, f"/lfs-objects/{repo.repo_type}/{repo.repo_id}/{stored.sha256}"
                        ),
                        "X-Linked-Etag": f'"{stored.sha256}"',
                        "X-Linked-Size": str(stored.size),
                        "ETag": f'"{stored.git_oid}"',
                    }
                )
                self._send(302, b"", headers)
                return 302
            headers["ETag"] = f'"{stored.git_oid}"'
            return self._send_content(stored.content or b"", headers)

        def _lfs_object(self, body: bytes, type: str, repo_id: str, oid: str) -> int:  # noqa: A002
            content = self._signed_repo(type, repo_id).lfs_objects.get(oid)
            if content is None:
                raise HubError(404, f"LFS object {oid} not found")
            return self._send_content(content, {"ETag": f'"{oid}"'})

        def _send_content(self, content: bytes, headers: dict[str, str]) -> int:
            headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes", **headers}
            range_header = self.headers.get("Range")
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", range_header or "")
            if match is None or not any(match.groups()):
                self._send(200, content, headers)
                return 200
            start_text, end_text = match.groups()
            if start_text:
                start, end = int(start_text), min(int(end_text) if end_text else len(content) - 1, len(content) - 1)
            else:  # suffix range: the last N bytes
                start, end = max(len(content) - int(end_text), 0), len(content) - 1
            if start >= len(content) and len(content) > 0:
                self._send(416, b"", {"Content-Range": f"bytes */{len(content)}"})
                return 416
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
            self._send(206, content[start : end + 1], headers)
            return 206

    return Handler


# ---------------------------------------------------------------------------------------------
# Pointing the Hub clients of this process (and its subprocesses) at a server
# ---------------------------------------------------------------------------------------------

TEST_TOKEN = "hf_agqg_test_token"


_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class ForeignHostError(RuntimeError):
    """A test's Hub request went somewhere other than the test server (a stale endpoint somewhere)."""


def _refuse_other_hosts(monkeypatch: Any, server: HubServer) -> None:
    """Makes huggingface_hub's HTTP client (2.x: one shared `httpx` client from a factory) refuse every request that
    carries credentials to a host other than this machine's, recording it in `server.unhandled_requests`: a stale
    endpoint fails at once and by name, instead of sending the test token to huggingface.co and retrying for
    minutes offline. Requests without credentials (datasets probes a public S3 bucket and carries on when that
    fails) go their way and fail as they would offline. huggingface_hub 0.x (requests) has no such factory and is
    left as it is."""
    from huggingface_hub.utils import _http as hub_http

    if not hasattr(hub_http, "set_client_factory"):
        return
    make_client = hub_http._GLOBAL_CLIENT_FACTORY

    def refuse(request: Any) -> None:
        host = request.url.host
        # Hosts named after the test endpoint (datasets asks "datasets-server.<endpoint host>") never resolve.
        ours = host in _LOOPBACK_HOSTS or host.endswith(tuple("." + name for name in _LOOPBACK_HOSTS))
        if not ours and "authorization" in request.headers:
            server.unhandled_requests.append(f"{request.method} {request.url} (not the test Hub)")
            raise ForeignHostError(f"a test request went to {request.url}; only the test Hub at {server.url} may")

    def guarded_client() -> Any:
        client = make_client()
        client.event_hooks = {**client.event_hooks, "request": [refuse, *client.event_hooks["request"]]}
        return client

    hub_http.close_session()  # the next request makes a guarded client
    monkeypatch.setattr(hub_http, "_GLOBAL_CLIENT_FACTORY", guarded_client)


def use_hub_server(monkeypatch: Any, server: HubServer, hf_home: str | os.PathLike) -> dict[str, str]:
    """Points huggingface_hub, datasets and subprocesses at `server` for one test, with `monkeypatch`.

    huggingface_hub and datasets read `HF_ENDPOINT`, `HF_HUB_OFFLINE` and `HF_HUB_DISABLE_XET` once, at import, into
    module constants (`huggingface_hub.constants.ENDPOINT`, `datasets.config.HF_ENDPOINT`, ...), so setting the
    environment is not enough in a process that imported them already (the test session sets `HF_HUB_OFFLINE=1`):
    the constants are patched too. Xet is disabled because this double speaks the plain LFS protocol.
    Subprocesses inherit the environment; `hf_home` gives them an empty cache.

    Returns:
        The environment for subprocesses (a copy of `os.environ` after the changes).
    """
    import huggingface_hub.constants as hub_constants
    import huggingface_hub.hf_api as hub_api
    from huggingface_hub import HfFileSystem

    env = {
        "HF_ENDPOINT": server.url,
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_DATASETS_OFFLINE": "0",
        "HF_HUB_DISABLE_XET": "1",
        "HF_TOKEN": TEST_TOKEN,
        "HF_HOME": str(hf_home),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(hub_constants, "ENDPOINT", server.url)
    monkeypatch.setattr(
        hub_constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_constants, "HF_HUB_DISABLE_XET", True)
    # huggingface_hub 0.x (under transformers 4.x) also copies the URL template into `file_download` at import, and
    # transformers 4.x copies the offline flag into `transformers.utils.hub`: patch those copies where they exist.
    import huggingface_hub.file_download as hub_file_download

    if hasattr(hub_file_download, "HUGGINGFACE_CO_URL_TEMPLATE"):
        monkeypatch.setattr(hub_file_download, "HUGGINGFACE_CO_URL_TEMPLATE", hub_constants.HUGGINGFACE_CO_URL_TEMPLATE)
    try:
        import transformers.utils.hub as transformers_hub
    except ImportError:
        transformers_hub = None
    if transformers_hub is not None and hasattr(transformers_hub, "_is_offline_mode"):
        monkeypatch.setattr(transformers_hub, "_is_offline_mode", False)
    # transformers >= 5.24 keeps one HfApi for the process (`transformers.utils.hub.hf_api()`), made with the endpoint
    # of its first call: an earlier test would leave it pointing at huggingface.co. Start a fresh one for this test.
    if transformers_hub is not None and hasattr(transformers_hub, "_hf_api"):
        monkeypatch.setattr(transformers_hub, "_hf_api", None)
    _refuse_other_hosts(monkeypatch, server)
    # fsspec reuses HfFileSystem instances made with the same arguments, which would keep an earlier endpoint.
    HfFileSystem.clear_instance_cache()
    # huggingface_hub's module-level functions (`upload_file`, `create_repo`, ...) are methods of one HfApi made at
    # import; `RepoCard.push_to_hub` and other helpers use it.
    monkeypatch.setattr(hub_api.api, "endpoint", server.url)
    try:
        import datasets.config as datasets_config
    except ImportError:
        datasets_config = None
    if datasets_config is not None:
        monkeypatch.setattr(datasets_config, "HF_ENDPOINT", server.url)
        monkeypatch.setattr(
            datasets_config, "HUB_DATASETS_URL", server.url + "/datasets/{repo_id}/resolve/{revision}/{path}"
        )
        monkeypatch.setattr(datasets_config, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(datasets_config, "HF_DATASETS_OFFLINE", False, raising=False)
    return dict(os.environ)
