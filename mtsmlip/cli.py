"""Command-line entry point. Thin: each subcommand parses its arguments and
calls the library; the subcommands live beside the code they drive."""

from __future__ import annotations

import argparse
import importlib
import sys

from .data import DataError

# subcommand name -> module that defines `add_arguments(parser)` and `run(args)`
SUBCOMMANDS = {
    "train": "mtsmlip.training_cli",
    "eval": "mtsmlip.evaluate",
    "md": "mtsmlip.md.cli",
    "compare": "mtsmlip.compare",
    "demo": "mtsmlip.demo",
}


def build_parser(available: dict) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtsmlip",
        description="Learned multiple-time-step MD for machine-learning interatomic potentials.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in available.items():
        p = sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def available_subcommands() -> dict:
    """Subcommands whose module is present (the package grows one room at a time)."""
    found = {}
    for name, path in SUBCOMMANDS.items():
        try:
            found[name] = importlib.import_module(path)
        except ModuleNotFoundError as exc:
            if not path.startswith(exc.name or "\0"):
                raise
    return found


def main(argv=None) -> int:
    args = build_parser(available_subcommands()).parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (DataError, FileNotFoundError) as exc:
        print(f"mtsmlip {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
