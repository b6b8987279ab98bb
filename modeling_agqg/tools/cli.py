"""The `agqg` command line: one entry point, one subcommand per job.

Each subcommand lives beside the code it drives and registers itself through an `add_parser(subparsers)`
function that sets `func` (taking the parsed namespace, returning the exit code). Only the module of the
subcommand that runs is imported: `agqg --help` and `agqg --version` import neither torch nor transformers, and
a broken optional module breaks only its own subcommand.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .. import __version__

# subcommand -> (module that registers it, one-line help shown by `agqg --help`)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "score": (
        "modeling_agqg.tools.scoring",
        "score many images (files, folders, globs, lists, saved datasets) into a CSV/JSONL/Parquet file",
    ),
    "explain": (
        "modeling_agqg.tools.explain",
        "print and plot one image's grade distribution, ability and difficulty thresholds",
    ),
    "demo": (
        "modeling_agqg.tools.demo",
        "a local web app: drop or paste images, see score, grade and the grade-distribution chart",
    ),
    "push": ("hub_cards.publish", "push a saved model folder to the Hugging Face Hub with a generated model card"),
}


def _overview_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agqg",
        description="AGQG image-quality scoring, explanation and publishing. `agqg COMMAND --help` for a command.",
    )
    parser.add_argument("--version", action="version", version=f"agqg {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        subparsers.add_parser(name, help=help_text, add_help=False)
    return parser


def build_parser(command: str) -> argparse.ArgumentParser:
    """The full parser of one subcommand (its module imported now)."""
    parser = argparse.ArgumentParser(prog="agqg")
    subparsers = parser.add_subparsers(dest="command", required=True)
    importlib.import_module(SUBCOMMANDS[command][0]).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SUBCOMMANDS:
        _overview_parser().parse_args(argv)  # --help, --version, or a usage error (exit 2)
        return 2
    args = build_parser(argv[0]).parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
