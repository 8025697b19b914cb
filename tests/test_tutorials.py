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
from tests.tutorials import STAND_INS, TUTORIALS, runnable_blocks, run_page


def test_every_tutorial_is_in_the_site_and_has_runnable_blocks():
    nav = (REPO / "mkdocs.yml").read_text()
    pages = sorted(TUTORIALS.glob("*.md"))
    assert {p.name for p in pages} >= {"own-data.md", "distill.md", "ipi.md", "lammps.md"}
    for page in pages:
        assert f"tutorials/{page.name}" in nav, page.name
        blocks = runnable_blocks(page)
        assert blocks and any(b.language == "bash" for b in blocks), page.name
        # every command the page shows in a bash block is one a test runs
        shown = re.findall(r"```bash\n(.*?)```", page.read_text(), re.S)
        unrun = [code for code in shown if code not in {b.code for b in blocks}]
        assert all("pip install" in code or "git clone" in code for code in unrun), (page.name, unrun)


def test_a_replacement_that_the_page_lacks_is_an_error():
    with pytest.raises(ValueError, match="no runnable block contains"):
        runnable_blocks(TUTORIALS / "own-data.md", {"--no-such-option": "x"})


def test_the_own_data_tutorial_runs_end_to_end(tmp_path):
    run_page(TUTORIALS / "own-data.md", tmp_path, replace=STAND_INS["own-data.md"])
    manifest = json.loads((tmp_path / "runs/cu/manifest.json").read_text())
    assert manifest["complete"] and set(manifest["model_files"]) == {"fast", "slow", "baseline"}
    comparison = json.loads((tmp_path / "runs/cu-cmp/compare.json").read_text())
    assert comparison["repeats"] == 2 and comparison["system_kind"] == "crystal"
    assert {c["n_inner"] for c in comparison["integrator_error"]} >= {2, 4}
    assert (tmp_path / "runs/cu-eval/parity.png").stat().st_size > 0
    frames = ase.io.read(tmp_path / "runs/cu-md/trajectory.extxyz", ":")
    assert len(frames) >= 2 and np.isfinite(frames[-1].positions).all()


def test_the_distill_tutorial_runs_end_to_end(tmp_path):
    run_page(TUTORIALS / "distill.md", tmp_path, replace=STAND_INS["distill.md"])
    manifest = json.loads((tmp_path / "runs/cu-dmts/manifest.json").read_text())
    assert manifest["kind"] == "distilled" and manifest["teacher"]["spec"] == "ase.calculators.emt:EMT"
    comparison = json.loads((tmp_path / "runs/cu-dmts-cmp/compare.json").read_text())
    assert comparison["repeats"] == 2
    frames = ase.io.read(tmp_path / "runs/cu-dmts-md/trajectory.extxyz", ":")
    assert len(frames) >= 2


def test_the_ipi_tutorial_runs_end_to_end(tmp_path):
    run_page(TUTORIALS / "ipi.md", tmp_path, replace=STAND_INS["ipi.md"])
    for run, outer_steps in (("ipi-mts", 20), ("ipi-pimd", 10)):
        rows = np.loadtxt(tmp_path / "runs" / run / "simulation.out", ndmin=2)
        assert rows[-1, 0] == outer_steps and np.isfinite(rows).all(), run  # column 0: the outer step
