"""MkDocs hooks of mtsmlip's site: pages made from the code, so they cannot drift.

* ``index.md`` is the README, with its ``docs/`` links made relative to the site;
* ``cli.md`` is every command and option, read from the argparse definitions
  (:func:`mtsmlip.cli.build_parser`): the same text ``--help`` prints."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from mkdocs.structure.files import File

REPO = Path(__file__).resolve().parents[2]


def readme_page() -> str:
    text = (REPO / "README.md").read_text()
    return re.sub(r"\]\(docs/", "](", text)


def option_row(action: argparse.Action) -> str:
    names = ", ".join(f"`{name}`" for name in action.option_strings) or f"`{action.dest}`"
    if action.option_strings and action.nargs != 0:
        names += f" `{action.metavar or action.dest.upper()}`"
    default = action.default
    shown = "" if default in (None, False, argparse.SUPPRESS) else f"`{default}`"
    if getattr(action, "required", False):
        shown = "required"
    choices = f" One of: {', '.join(f'`{c}`' for c in action.choices)}." if action.choices else ""
    text = (action.help or "").replace("|", "\\|").replace("\n", " ")
    return f"| {names} | {shown} | {text}{choices} |"


def cli_page() -> str:
    from mtsmlip.cli import SUBCOMMANDS, build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    lines = ["# Command-line reference", "",
             "Generated from the options' definitions when the site is built: it is what "
             "`mtsmlip COMMAND --help` prints, as tables.", ""]
    lines += [f"- [`mtsmlip {name}`](#{name}): {summary}" for name, (summary, _, _) in SUBCOMMANDS.items()]
    for name, (summary, _, _) in SUBCOMMANDS.items():
        command = sub.choices[name]
        lines += ["", f"## {name}", "", summary[0].upper() + summary[1:] + ".", "",
                  "```text", command.format_usage().strip(), "```", "",
                  "| option | default | meaning |", "|---|---|---|"]
        lines += [option_row(a) for a in command._actions if not isinstance(a, argparse._HelpAction)]
    return "\n".join(lines) + "\n"


def on_files(files, config):
    for uri, content in (("index.md", readme_page()), ("cli.md", cli_page())):
        existing = files.get_file_from_path(uri)
        if existing is not None:
            files.remove(existing)
        files.append(File.generated(config, uri, content=content))
    return files
