"""Keeping this machine's paths off the Hub: redacted copies of the metadata files a model folder holds.

Training and `save_pretrained` record where things lived: `train_config.yaml` holds `output_dir`, `data_root`, `clip`
(a Hub id or a local CLIP folder), `init_model`; `config.json` holds `_name_or_path` at the top and inside
`clip_config`; `eval_results.json` holds `base_model`, which may be a local folder. `agqg push` uploads copies in which
every local path is replaced by `"<local path>/NAME"` (NAME: its base name; just `"<local path>"` for the home folder
or a folder above it), the same marker `AGQGConfig.to_dict` writes. Hub ids stay as they are; relative paths that do
not name a local folder (such as `output_dir: runs/agqg`) say nothing about the machine and stay too. The local files
are never changed.

What counts as a local path (`is_local_path`): an absolute POSIX or Windows path, a path from the home folder (`~`),
a `file:` URL. `_name_or_path`-style keys are stricter: anything that is not a Hub id (`is_hub_id`) is redacted,
relative local folders included.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from modeling_agqg.configuration_agqg import (
    LOCAL_PATH_MARKER,
    is_hub_id,
    public_name_or_path,
    redacted_local_path,
)

__all__ = [
    "LOCAL_PATH_MARKER",
    "REDACTED_FILES",
    "is_hub_id",
    "is_local_path",
    "local_path_leaks",
    "redact_file",
    "redacted_local_path",
]

# Keys whose value is where a checkpoint was loaded from: anything but a Hub id is redacted.
NAME_OR_PATH_KEYS = frozenset({"_name_or_path", "name_or_path"})
# tokenizer_config.json also holds token strings (which may well start with "/"): only these keys are paths there.
TOKENIZER_PATH_KEYS = NAME_OR_PATH_KEYS | {"tokenizer_file", "vocab_file", "merges_file"}
# File -> which string values are redacted: "all" (every local path, any key) or a set of keys.
REDACTED_FILES: dict[str, str | frozenset[str]] = {
    "config.json": "all",
    "generation_config.json": "all",
    "preprocessor_config.json": "all",
    "processor_config.json": "all",
    "eval_results.json": "all",
    "train_config.yaml": "all",
    "tokenizer_config.json": TOKENIZER_PATH_KEYS,
}
_WINDOWS_ABSOLUTE = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\)")
# A redacted value in a file's text: the marker and the base name behind it.
_REDACTED_VALUE = re.compile(re.escape(LOCAL_PATH_MARKER) + r"/[^\s\"',]*")


class RedactionError(ValueError):
    """A metadata file that must be redacted cannot be read (the message names it)."""


def is_local_path(value: str) -> bool:
    """Whether a string names a place on this machine: an absolute POSIX or Windows path, `~...`, a `file:` URL (or
    an already redacted value)."""
    return value.startswith(("/", "~", "file:", LOCAL_PATH_MARKER)) or bool(_WINDOWS_ABSOLUTE.match(value))


def redact_file(name: str, content: bytes) -> tuple[bytes, dict[str, str]]:
    """The content to publish for the folder's file `name` (a key of `REDACTED_FILES`), and what was redacted:
    `{location: original value}` (locations such as `"clip_config._name_or_path"`). The bytes are unchanged when
    nothing needed redacting.

    Raises:
        RedactionError: the file is not valid JSON/YAML (or PyYAML, needed for `train_config.yaml`, is missing).
    """
    is_yaml = name.endswith((".yaml", ".yml"))
    data = _parse(name, content, is_yaml)
    redacted: dict[str, str] = {}
    data = _redact(data, "", REDACTED_FILES[name], redacted)
    if not redacted:
        return content, {}
    if is_yaml:
        import yaml

        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    else:
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    return text.encode("utf-8"), redacted


def _parse(name: str, content: bytes, is_yaml: bool) -> Any:
    if not is_yaml:
        try:
            return json.loads(content.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            message = f"{name}: not valid JSON, so local paths cannot be removed from it ({error})"
            raise RedactionError(message) from error
    try:
        import yaml
    except ImportError as error:
        raise RedactionError(f"{name}: PyYAML is needed to remove local paths from it (pip install pyyaml)") from error
    try:
        return yaml.safe_load(content.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as error:
        message = " ".join(str(error).split())
        raise RedactionError(f"{name}: not valid YAML, so local paths cannot be removed from it ({message})") from error


def _redact(value: Any, where: str, keys: str | frozenset[str], redacted: dict[str, str]) -> Any:
    """`value` with local paths replaced, recursively; `redacted` collects `{location: original}`."""
    if isinstance(value, dict):
        return {
            key: _redact_entry(key, item, f"{where}.{key}" if where else str(key), keys, redacted)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_redact(item, f"{where}[{index}]", keys, redacted) for index, item in enumerate(value)]
    if isinstance(value, str) and keys == "all" and is_local_path(value):
        return _replace(value, redacted_local_path(value), where, redacted)
    return value


def _redact_entry(key: Any, value: Any, where: str, keys: str | frozenset[str], redacted: dict[str, str]) -> Any:
    if isinstance(value, str) and key in NAME_OR_PATH_KEYS:
        return _replace(value, public_name_or_path(value), where, redacted)
    if isinstance(value, str) and keys != "all":
        if key in keys and is_local_path(value):
            return _replace(value, redacted_local_path(value), where, redacted)
        return value
    return _redact(value, where, keys, redacted)


def _replace(original: str, public: str, where: str, redacted: dict[str, str]) -> str:
    if public != original:
        redacted[where] = original
    return public


def local_path_leaks(text: str, local_paths: Iterable[str]) -> list[str]:
    """The entries of `local_paths` that occur in `text` as whole paths: not inside a longer path (`/data` does not
    match `/mnt/data` or `/data2`) and not as the name of a redacted value (`<local path>/data`)."""
    text = _REDACTED_VALUE.sub(LOCAL_PATH_MARKER, text)
    found = []
    for path in sorted({p.rstrip("/\\") for p in local_paths if p and p.rstrip("/\\")}, key=len, reverse=True):
        if re.search(r"(?<![\w.\-/\\])" + re.escape(path) + r"(?![\w.-])", text):
            found.append(path)
    return found


def local_roots(model_dir: Path, redacted_values: Iterable[str]) -> set[str]:
    """The local paths an upload must not contain: the model folder (as given and resolved), the home folder (unless
    it is a top-level folder such as /root, whose name is too common to search for) and every value redacted from the
    metadata files."""
    home = Path.home()
    roots = {str(model_dir.absolute()), str(model_dir.resolve())}
    if len(home.parts) > 2:
        roots.add(str(home))
    for value in redacted_values:
        if is_local_path(value) and not value.startswith(LOCAL_PATH_MARKER):
            roots.add(str(Path(value.removeprefix("file://")).expanduser()))
    return {root for root in roots if len(Path(root).parts) > 1}
