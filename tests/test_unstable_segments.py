"""An MD instability outside the production runs of `mtsmlip compare` (the NVE
segment of a run, the force-spectrum segment, the `--n-inner auto` probe) fails
the n it belongs to, and the comparison goes on to its report; `mtsmlip demo`
with an unstable pair ends with a message and an exit code, not a traceback.

The pair is made of harmonic springs (cheap, and unstable for real): the fast
and the slow force each hold every bond of a molecule with a spring, and
impulse r-RESPA blows up once the outer step is too long for the bond's period.
"""

import json

import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms

from mtsmlip.cli import main
from mtsmlip.md.engine import Engine
from mtsmlip import forces
from tests.systems import write_tiny_pair


class Springs:
    """E = k/2 (r − r0)² for the given atom pairs (minimum image in a cubic cell
    when `box_A` is given), on torch tensors (eV, Å)."""

    def __init__(self, pairs, r0_A, k_eV_per_A2, box_A=None):
        self.i, self.j = torch.as_tensor(pairs[:, 0]), torch.as_tensor(pairs[:, 1])
        self.r0, self.k = torch.as_tensor(r0_A), k_eV_per_A2
        self.box = None if box_A is None else torch.as_tensor(box_A)

    def __call__(self, x):
        d = x[self.j] - x[self.i]
        if self.box is not None:
            d = d - self.box * torch.round(d / self.box)
        r = d.norm(dim=1)
        pull = (self.k * (r - self.r0) / r)[:, None] * d
        forces = torch.zeros_like(x)
        forces.index_add_(0, self.i, pull)
        forces.index_add_(0, self.j, -pull)
        return (0.5 * self.k * ((r - self.r0) ** 2).sum()).detach(), forces


def spring_providers(size, k_fast, k_slow, k_baseline):
    """A stand-in for mtsmlip.forces.md_providers: springs between every two atoms of
    each molecule (`size` consecutive atoms), at their lengths in the first
    structure it is given; the pair has k_fast and k_slow, the baseline k_baseline."""
    bonds = {}

    def providers(models, atoms, baseline=False, skin_A=None, device="cpu"):
        from mtsmlip.forces import zero_forces

        if not bonds:
            pairs = np.array([(a, b) for m in range(0, len(atoms), size)
                              for a in range(m, m + size) for b in range(a + 1, m + size)])
            box = np.diag(atoms.cell.array).copy() if atoms.pbc.all() else None
            d = atoms.positions[pairs[:, 1]] - atoms.positions[pairs[:, 0]]
            if box is not None:
                d -= box * np.round(d / box)
            bonds.update(pairs=pairs, r0=np.linalg.norm(d, axis=1), box=box)

        def springs(k):
            return Springs(bonds["pairs"], bonds["r0"], k, bonds["box"])

        return (springs(k_baseline), zero_forces) if baseline else (springs(k_fast), springs(k_slow))

    return providers


def hydrogen_dimers(n=8):
    """`n` H₂ molecules 4 Å apart, in vacuum (an isolated system: compare judges it as a molecule)."""
    x = np.zeros((2 * n, 3))
    x[0::2, 0] = np.arange(n) * 4.0
    x[0::2, 1] = (np.arange(n) % 3) * 4.0
    x[1::2] = x[0::2] + [0.74, 0.0, 0.0]
    return Atoms("H" * (2 * n), positions=x)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """(model directory, dimers file): compare needs a model directory; its models'
    forces are replaced by springs in each test."""
    root = tmp_path_factory.mktemp("unstable")
    ase.io.write(root / "dimers.extxyz", hydrogen_dimers())
    return write_tiny_pair(root / "pair"), root / "dimers.extxyz"


def compare(inputs, out, *extra):
    model, structure = inputs
    return main(["compare", "--model", str(model), "--structure", str(structure), "--ps", "0.008",
                 "--timestep-fs", "0.5", "--temperature-K", "50", "--equilibrate-ps", "0.01", "--nve-ps", "0.1",
                 "--spectrum-ps", "0.004", "--no-progress", "--out", str(out), "--repeats", "1", *extra])


def no_more_md(monkeypatch):
    monkeypatch.setattr(Engine, "run", lambda *a, **k: pytest.fail("a finished comparison ran MD again"))


def test_an_mts_run_that_blows_up_in_its_nve_segment_fails_its_n_and_the_comparison_goes_on(
        inputs, tmp_path, monkeypatch, capsys):
    """Springs of 9.6 eV/Å² in each force: at δt = 0.5 fs, n = 2 is stable and
    n = 8 (Δt = 4 fs, most of half the fast spring's period) grows by about
    1.6× a step: its 2-step production survives, its 25-step NVE segment does not."""
    monkeypatch.setattr(forces, "md_providers", spring_providers(2, 9.6, 9.6, 19.2))
    assert compare(inputs, tmp_path, "--n-inner", "2,8") == 0
    assert "Traceback" not in capsys.readouterr().err
    result = json.loads((tmp_path / "compare.json").read_text())
    runs = {r["n_inner"]: r for r in result["runs"]}
    assert runs[8]["within_tolerance"] is False and runs[8]["sampling_ok"] is False
    assert "NVE" in runs[8]["reasons"][0] and "stopped" in runs[8]["unstable"]
    assert runs[8]["simulated_ps"] == pytest.approx(0.008)  # its production finished
    assert "unstable" not in runs[2]  # judged like any run
    assert np.isfinite(runs[2]["drift_meV_per_atom_per_ps"]) and isinstance(runs[2]["within_tolerance"], bool)
    assert result["largest_n_within_tolerance"] in (None, 2)
    saved = tmp_path / "runs" / "mts_n8"
    assert not (saved / "nve.npz").exists()
    assert json.loads((saved / "nve_unstable.json").read_text())["unstable"] == runs[8]["unstable"]
    assert "n=8" in (tmp_path / "report.md").read_text() and "FAIL: unstable in its NVE" in \
        (tmp_path / "report.md").read_text()
    no_more_md(monkeypatch)  # a rerun re-analyses what was saved, the NVE failure included
    assert compare(inputs, tmp_path, "--n-inner", "2,8") == 0
    assert json.loads((tmp_path / "compare.json").read_text()) == result


def test_a_pair_unstable_in_the_probe_and_the_spectrum_segment_fails_there_and_the_comparison_goes_on(
        inputs, tmp_path, monkeypatch, capsys):
    """A pair too stiff for δt even at n = 1 (the baseline is not): the probe's
    n = 1 segment fails, so n = 1 is what auto adds; the force-spectrum segment
    (the pair at n = 1) fails too; the report says both and judges the runs."""
    monkeypatch.setattr(forces, "md_providers", spring_providers(2, 1000.0, 1000.0, 19.2))
    assert compare(inputs, tmp_path, "--n-inner", "2,auto", "--probe-fs", "5") == 0
    assert "Traceback" not in capsys.readouterr().err
    probe = json.loads((tmp_path / "n_inner_auto.json").read_text())
    assert probe["n_inner"] == 1
    assert probe["candidates"][0]["n_inner"] == 1 and "unstable in NVE" in probe["candidates"][0]["failed"]
    result = json.loads((tmp_path / "compare.json").read_text())
    assert result["n_inner_auto"] == probe
    assert sorted(r["n_inner"] for r in result["runs"]) == [1, 2]
    assert all(r["within_tolerance"] is False and r["unstable"] for r in result["runs"])
    assert result["largest_n_within_tolerance"] is None
    assert "stopped" in result["scale_separation"]["unstable"]
    assert json.loads((tmp_path / "force_series_unstable.json").read_text())["unstable"] == \
        result["scale_separation"]["unstable"]
    report = (tmp_path / "report.md").read_text()
    assert "no n passed" in report and "Not measured" in report
    no_more_md(monkeypatch)
    assert compare(inputs, tmp_path, "--n-inner", "2,auto", "--probe-fs", "5") == 0
    assert json.loads((tmp_path / "compare.json").read_text()) == result


def test_md_n_inner_auto_still_refuses_a_pair_unstable_at_n_1(inputs, tmp_path, monkeypatch, capsys):
    """`mtsmlip md` has no report to go on to: the probe's n = 1 failure stays an error that says why."""
    monkeypatch.setattr(forces, "md_providers", spring_providers(2, 1000.0, 1000.0, 19.2))
    model, structure = inputs
    assert main(["md", "--model", str(model), "--structure", str(structure), "--timestep-fs", "0.5",
                 "--n-inner", "auto", "--probe-fs", "5", "--temperature-K", "50", "--steps", "2", "--no-progress",
                 "--out", str(tmp_path)]) == 2
    assert "unstable already at n = 1" in capsys.readouterr().err


def test_demo_with_an_unstable_baseline_ends_with_a_message_and_exit_code_3(inputs, tmp_path, monkeypatch, capsys):
    """Springs far too stiff for δt = 0.5 fs in the baseline model: the
    equilibration blows up; demo says so and returns 3 (no traceback)."""
    monkeypatch.setattr(forces, "md_providers", spring_providers(3, 10.0, 10.0, 5000.0))
    model, _ = inputs
    code = main(["demo", "--model", str(model), "--molecules", "8", "--ps", "0.01", "--n-inner", "2",
                 "--equilibrate-ps", "0.01", "--temperature-K", "50", "--no-progress", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 3
    assert "mtsmlip demo: unstable:" in err and "equilibration" in err and "Traceback" not in err
    assert not (tmp_path / "compare.json").exists()
