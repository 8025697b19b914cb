"""The runnable blocks of the tutorials (docs/tutorials/*.md).

A block marked `<!-- runnable -->` is run as a reader would run it: in page
order, in one working folder, python blocks as scripts and bash blocks with
`set -euo pipefail`. The tests run them (tests/test_tutorials.py,
tests/test_lammps.py) and benchmarks/tutorials.py times them."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO

TUTORIALS = REPO / "docs" / "tutorials"
RUNNABLE = re.compile(r"<!-- runnable -->\n```(python|bash)\n(.*?)```", re.S)
BASH_BLOCK = re.compile(r"```bash\n(.*?)```", re.S)

# What the tests swap in: the pages are sized for a reader (a few minutes each),
# the suite only checks that commands, options and files still fit together.
SHORT_COMPARE = "--equilibrate-ps 0.005 --nve-ps 0.01 --spectrum-ps 0.005 --block-fs 5"
STAND_INS = {
    "own-data.md": {"--max-minutes 1 --check-fs 100": "--max-minutes 0.15 --check-fs 0",
                    "--ps 0.1 --n-inner 2,4": f"--ps 0.02 --n-inner 2,4 {SHORT_COMPARE}",
                    "--steps 200": "--steps 20"},
    "distill.md": {"--frames 60": "--frames 20", "--max-minutes 0.5 --check-fs 100": "--max-minutes 0.1 --check-fs 0",
                   "--ps 0.1 --n-inner 2,4": f"--ps 0.02 --n-inner 2,4 {SHORT_COMPARE}",
                   "--steps 100": "--steps 20"},
    "ipi.md": {},
    # the LAMMPS page's stand-ins (the checkout, a tiny pair) come from tests/test_lammps.py
}


@dataclass(frozen=True)
class Block:
    page: str
    index: int
    language: str
    code: str


def runnable_blocks(page: Path, replace: dict[str, str] | None = None) -> list[Block]:
    """The page's runnable blocks, each `old` of `replace` swapped for its `new`
    (a test's stand-in for what it cannot run as written, such as a model that
    would take minutes to compile). Each `old` must occur exactly once in the
    page's runnable blocks as written, as whole words ("--steps 200" does not
    match "--steps 2000"), so a stand-in cannot outlive the text it was written for."""
    text = page.read_text()
    blocks = [Block(page.name, k, language, code) for k, (language, code) in enumerate(RUNNABLE.findall(text))]
    patterns = {old: re.compile(r"(?<![\w.-])" + re.escape(old) + r"(?![\w.])") for old in (replace or {})}
    for old, pattern in patterns.items():
        count = sum(len(pattern.findall(b.code)) for b in blocks)
        if count != 1:
            raise ValueError(f"{page.name}: {count} runnable blocks' occurrences of {old!r}, not exactly one")
    return [Block(b.page, b.index, b.language, _replaced(b.code, patterns, replace)) for b in blocks]


def _replaced(code: str, patterns: dict, replace: dict) -> str:
    for old, pattern in patterns.items():
        code = pattern.sub(lambda _m, new=replace[old]: new, code)
    return code


def commands(page: Path, replace: dict[str, str] | None = None) -> list[list[str]]:
    """Every `mtsmlip ...` command of the page's bash blocks (runnable or not, each
    as written, and the runnable ones with `replace` applied), as argument lists."""
    text = page.read_text()
    codes = BASH_BLOCK.findall(text) + [b.code for b in runnable_blocks(page, replace)]
    found = []
    for code in codes:
        for line in code.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "mtsmlip":
                found.append(words[1:])
    return found


def run_block(block: Block, work: Path, env: dict | None = None, timeout_s: float = 600) -> float:
    """Run one block in `work`; its wall time (s). A failure raises with the
    block's code and the end of its output."""
    if block.language == "python":
        script = work / f"{Path(block.page).stem}-block{block.index}.py"
        script.write_text(block.code)
        command = [sys.executable, script.name]
    else:
        command = ["bash", "-euo", "pipefail", "-c", block.code]
    clock = time.perf_counter()
    # the mtsmlip beside this Python first, as for a reader whose environment is active
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    done = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=timeout_s,
                          env={**os.environ, "PATH": path, **(env or {})})
    wall_s = time.perf_counter() - clock
    if done.returncode != 0:
        raise AssertionError(f"{block.page}, runnable block {block.index} exited {done.returncode}:\n{block.code}\n"
                             f"--- stdout ---\n{done.stdout[-2000:]}\n--- stderr ---\n{done.stderr[-4000:]}")
    return wall_s


def run_page(page: Path, work: Path, replace: dict[str, str] | None = None, env: dict | None = None) -> list[float]:
    """Run every runnable block of `page` in order in `work`; the wall time of each (s)."""
    work.mkdir(parents=True, exist_ok=True)
    return [run_block(block, work, env) for block in runnable_blocks(page, replace)]
