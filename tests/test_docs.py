"""The front page and the user guide stay true: the site builds in strict mode
(broken links and bad references fail), its command-line reference is the
parser's, and the README's two commands are the ones CI runs."""

import os
import subprocess
import sys

from tests.conftest import REPO
from tests.tutorials import BASH_BLOCK

README = REPO / "README.md"


def readme_blocks() -> list[str]:
    return BASH_BLOCK.findall(README.read_text())


def test_the_site_builds_in_strict_mode_with_every_command_and_option(tmp_path):
    from mtsmlip.cli import SUBCOMMANDS, build_parser

    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    cli = (tmp_path / "site" / "cli" / "index.html").read_text()
    sub = next(a for a in build_parser()._actions if hasattr(a, "choices") and isinstance(a.choices, dict))
    for name in SUBCOMMANDS:
        assert f'id="{name}"' in cli, name
        for action in sub.choices[name]._actions:
            for option in [] if action.dest == "help" else action.option_strings:
                assert f"<code>{option}</code>" in cli, (name, option)
    front = (tmp_path / "site" / "index.html").read_text()
    assert "Two commands on a fresh machine" in front  # the home page is the README
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "MultiTimeStep" in api and "Engine" in api  # the API reference rendered from docstrings


def test_the_readme_is_a_front_page_whose_commands_are_cis():
    lines = README.read_text().splitlines()
    assert len(lines) <= 150, len(lines)
    install_and_demo, tests = readme_blocks()[:2]
    ci = (REPO / ".ci" / "run").read_text()
    assert tests.strip() in ci
    for command in install_and_demo.strip().split(" && "):
        if command.startswith("pip install"):
            assert command.replace("pip install", "python -m pip install -q") in ci, command
    assert install_and_demo.strip().endswith("mtsmlip demo")
