"""The `agqg` command line: one entry point, one subcommand per job.

Each subcommand lives beside the code it drives and registers itself through an
`add_parser(subparsers)` function that sets `func` (taking the parsed namespace, returning the exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (module, what it provides); modules are imported lazily so `agqg --help` stays fast.
SUBCOMMAND_MODULES = (
    "modeling_agqg.scoring",  # score, explain
    "hub_cards.publish",  # push
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agqg", description="AGQG image-quality scoring, explanation and publishing.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
