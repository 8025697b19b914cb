"""Every tutorial runs: its runnable blocks, in order, in a fresh folder, and
each leaves what the page says it leaves. The pages are sized for a reader (a
few minutes each: benchmarks/tutorials.py times them as written); here their
budgets are cut, through named stand-ins, to what checks that the commands,
options and files still fit together. (The LAMMPS tutorial runs in
tests/test_lammps.py, beside the plugin and compiled models it shares.)"""

import json
import re

import ase.io
import numpy as np
import pytest

from tests.conftest import REPO
from tests.tutorials import BASH_BLOCK, STAND_INS, TUTORIALS, commands, runnable_blocks, run_page


def test_every_tutorial_is_in_the_site_and_has_runnable_blocks():
    nav = (REPO / "mkdocs.yml").read_text()
    pages = sorted(TUTORIALS.glob("*.md"))
    assert {p.name for p in pages} >= {"own-data.md", "distill.md", "ipi.md", "lammps.md"}
    for page in pages:
        assert f"tutorials/{page.name}" in nav, page.name
        blocks = runnable_blocks(page)
        assert blocks and any(b.language == "bash" for b in blocks), page.name
        # every command the page shows in a bash block is one a test runs
        shown = BASH_BLOCK.findall(page.read_text())
        unrun = [code for code in shown if code not in {b.code for b in blocks}]
        assert all("pip install" in code or "git clone" in code for code in unrun), (page.name, unrun)


def test_every_command_of_every_tutorial_parses_and_every_option_named_exists():
    """As written and with the tests' stand-ins; and every --option the prose
    names belongs to some command (what the suite does not run still parses)."""
    from mtsmlip.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if hasattr(a, "choices") and isinstance(a.choices, dict))
    options = {o for p in sub.choices.values() for a in p._actions for o in a.option_strings}
    for page in sorted(TUTORIALS.glob("*.md")):
        found = commands(page, STAND_INS.get(page.name))
        assert found, page.name
        for argv in found:
            try:
                parser.parse_args(argv)
            except SystemExit:
                pytest.fail(f"{page.name}: `mtsmlip {' '.join(argv)}` does not parse")
        prose = re.sub(r"`[^`]*benchmarks/[^`]*`", "", page.read_text())  # a benchmark's options are its own
        named = set(re.findall(r"(?<![\w-])(--[A-Za-z][A-Za-z0-9-]*)", prose))
        assert not named - options, (page.name, named - options)


@pytest.mark.parametrize("replace, count", [({"--no-such-option": "x"}, 0), ({"--max-minutes 1": "x"}, 1),
                                            ({"--steps 20": "x"}, 0), ({"--model runs/cu": "x"}, 3)])
def test_a_stand_in_must_match_exactly_once_as_whole_words(replace, count):
    if count == 1:
        assert "x --check-fs" in runnable_blocks(TUTORIALS / "own-data.md", replace)[1].code
    else:
        with pytest.raises(ValueError, match=f"{count} runnable blocks' occurrences"):
            runnable_blocks(TUTORIALS / "own-data.md", replace)


def test_the_own_data_tutorial_runs_end_to_end(tmp_path):
    run_page(TUTORIALS / "own-data.md", tmp_path, replace=STAND_INS["own-data.md"])
    manifest = json.loads((tmp_path / "runs/cu/manifest.json").read_text())
    assert manifest["complete"] and set(manifest["model_files"]) == {"fast", "slow", "baseline"}
    comparison = json.loads((tmp_path / "runs/cu-cmp/compare.json").read_text())
    assert comparison["repeats"] == 2 and comparison["system_kind"] == "crystal"
    assert {c["n_inner"] for c in comparison["integrator_error"]} >= {2, 4}
    assert "## Tolerances" in (tmp_path / "runs/cu-cmp/report.md").read_text()
    assert (tmp_path / "runs/cu-eval/parity.png").stat().st_size > 0
    frames = ase.io.read(tmp_path / "runs/cu-md/trajectory.extxyz", ":")
    assert len(frames) >= 2 and np.isfinite(frames[-1].positions).all()
    assert (tmp_path / "runs/cu-md/restart.npz").is_file() and "ns_per_day" in (tmp_path / "runs/cu-md/md.log").read_text()


def test_the_distill_tutorial_runs_end_to_end(tmp_path):
    run_page(TUTORIALS / "distill.md", tmp_path, replace=STAND_INS["distill.md"])
    manifest = json.loads((tmp_path / "runs/cu-dmts/manifest.json").read_text())
    assert manifest["kind"] == "distilled" and manifest["teacher"]["spec"] == "ase.calculators.emt:EMT"
    assert len(ase.io.read(tmp_path / "runs/cu-dmts/teacher_labels.extxyz", ":")) == 20  # --frames, as tested
    assert (tmp_path / "runs/cu-dmts-eval/parity.png").stat().st_size > 0
    comparison = json.loads((tmp_path / "runs/cu-dmts-cmp/compare.json").read_text())
    assert comparison["repeats"] == 2
    frames = ase.io.read(tmp_path / "runs/cu-dmts-md/trajectory.extxyz", ":")
    assert len(frames) >= 2


def test_the_ipi_tutorial_runs_end_to_end(tmp_path):
    run_page(TUTORIALS / "ipi.md", tmp_path, replace=STAND_INS["ipi.md"])
    for run, outer_steps in (("ipi-mts", 20), ("ipi-pimd", 10)):
        rows = np.loadtxt(tmp_path / "runs" / run / "simulation.out", ndmin=2)
        assert rows[-1, 0] == outer_steps and np.isfinite(rows).all(), run  # column 0: the outer step
        assert len(ase.io.read(tmp_path / "runs" / run / "simulation.pos_0.extxyz", ":")) >= 2
        assert re.search(r"<nmts>\s*\[1, 4\]\s*</nmts>", (tmp_path / "runs" / run / "input.xml").read_text())
    pimd = (tmp_path / "runs/ipi-pimd/input.xml").read_text()
    assert re.search(r"<force[^>]*forcefield=.slow.[^>]*nbeads=.1.|<force[^>]*nbeads=.1.[^>]*forcefield=.slow.", pimd)
    assert rows.shape[1] == 8  # the PIMD run adds kinetic_cv(H) and kinetic_cv(O)
