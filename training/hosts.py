# Copyright 2025 The agqg authors. Licensed under the Apache License, Version 2.0.
"""Host frameworks AGQG plugs into: each is a set of training options, nothing more.

    python training/hosts.py --list
    accelerate launch training/train.py --host coop --grading softmax [--config ...] [--key value ...]

A host file (`training/configs/hosts/<name>.yaml`, or any YAML file of the same shape) holds the host's name,
a one-line description and options of `training/train.py`, with the names train.py takes:

    host: coop
    description: "CoOp / CLIP-AGIQA: learnable context tokens before the grade names, frozen CLIP"
    grading: agqg                       # softmax | agqg: the only switch between the baseline and AGQG
    prompt_templates: ["{grade} quality."]
    prompt_learning: coop               # AGQGConfig fields: prompt sets, multitask prompts, prompt learning
    num_context_tokens: 8
    freeze_backbone: true               # which parts train
    loss_weights: {l1: 1.0}
    learning_rate: 2.0e-3
    view_protocol: resize               # the views of training and evaluation

`train.py --host NAME` takes these as defaults; `--config` and flags override them. The shipped hosts are
`clip-iqa`, `liqe`, `ipce`, `coop` and `maple` (docs/hosts.md). Switching `grading` changes only the grading
head: the same seed gives the same CLIP, prompts and data order.

This module is what a host *is*: the presets, their validation, the listing. Training is `training/train.py`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from training.options import CONFIG_DIR, check_options, load_yaml_mapping, option_names

HOST_CONFIG_DIR = CONFIG_DIR / "hosts"
HOST_NAMES = ("clip-iqa", "liqe", "ipce", "coop", "maple")
GRADINGS = ("softmax", "agqg")
HOST_ONLY_KEYS = ("description",)  # keys a host file has besides the options (`host` is itself an option)


@dataclass(frozen=True)
class HostPreset:
    """One host framework: its name, description, the file it came from and its training options."""

    name: str
    description: str
    path: Path
    options: dict[str, Any] = field(default_factory=dict)


def load_host(name_or_path: str | Path) -> HostPreset:
    """Reads and checks a host file, a shipped name (`coop`) or a path: a mapping with `host` (its name), an
    optional `description` and train.py options, whose values must be valid ones.

    Raises:
        FileNotFoundError: no such host (the message lists the shipped hosts).
        ValueError: a missing name, an unknown key or a bad value; the message names the file and the key.
    """
    file = f"{name_or_path}.yaml" if not Path(name_or_path).suffix else name_or_path
    try:
        path, loaded = load_yaml_mapping(file, search_dir=HOST_CONFIG_DIR, what="host")
    except FileNotFoundError as error:
        shipped = ", ".join(HOST_NAMES)
        raise FileNotFoundError(f"host {str(name_or_path)!r}: {error}; shipped hosts are {shipped}") from None
    if not loaded.get("host"):
        raise ValueError(f"{path}: missing 'host' (the host's name)")
    unknown = sorted(set(loaded) - set(option_names()) - set(HOST_ONLY_KEYS))
    if unknown:
        raise ValueError(
            f"{path}: unknown key(s) {unknown}; a host file holds 'description' and train.py options "
            f"({sorted(option_names())})"
        )
    options = {key: value for key, value in loaded.items() if key not in HOST_ONLY_KEYS}
    options["host"] = str(path) if path.parent != HOST_CONFIG_DIR else path.stem
    check_options(options, str(path))  # every value is one train.py accepts; errors name the file and option
    return HostPreset(name=str(loaded["host"]), description=str(loaded.get("description", "")), path=path,
                      options=options)  # fmt: skip


def list_hosts() -> list[HostPreset]:
    """The shipped hosts, in `HOST_NAMES` order."""
    return [load_host(name) for name in HOST_NAMES]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The host frameworks AGQG plugs into (train them with train.py).")
    parser.add_argument("--list", action="store_true", help="list the shipped hosts")
    parser.add_argument("--show", metavar="HOST", help="print a host's options")
    args = parser.parse_args(argv)
    if args.show:
        try:
            preset = load_host(args.show)
        except (FileNotFoundError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(yaml.safe_dump(preset.options, sort_keys=False), end="")
        return 0
    for preset in list_hosts():
        print(f"{preset.name:9s} {preset.description}")
    print("\ntrain one: accelerate launch training/train.py --host NAME --grading {softmax,agqg} [--key value ...]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
