"""--n-inner auto (mtsmlip.probe): the probe's two checks on systems whose answer
is known, and the choice kept by `mtsmlip md` and `mtsmlip compare`."""

import json

import numpy as np
import pytest
import torch
from ase import Atoms

from mtsmlip.cli import main
from mtsmlip.errors import DataError
from mtsmlip.md.engine import Engine, initialise_momenta
from mtsmlip.md.settings import RunSettings
from mtsmlip.probe import ProbeResult, ProbeSettings, probe_n_inner


class Bonds:
    """E = k/2 (r − r0)² for the bonds (2i, 2i+1), on torch tensors (eV, Å)."""

    def __init__(self, k_eV_per_A2, r0_A=0.74):
        self.k, self.r0 = k_eV_per_A2, r0_A

    def __call__(self, x):
        d = x[1::2] - x[0::2]
        r = d.norm(dim=1)
        pull = (self.k * (r - self.r0) / r)[:, None] * d
        forces = torch.zeros_like(x)
        forces[0::2], forces[1::2] = pull, -pull
        return (0.5 * self.k * ((r - self.r0) ** 2).sum()).detach(), forces


class Tether:
    """A soft harmonic tether of every atom to its start: a slow force."""

    def __init__(self, k_eV_per_A2, x0):
        self.k, self.x0 = k_eV_per_A2, torch.as_tensor(x0)

    def __call__(self, x):
        d = x - self.x0
        return (0.5 * self.k * (d**2).sum()).detach(), -self.k * d


def hydrogen_dimers(pairs=32):
    positions = np.zeros((2 * pairs, 3))
    positions[0::2, 0] = np.arange(pairs) * 5.0
    positions[0::2, 1] = (np.arange(pairs) % 4) * 5.0  # not on one line: rotation is defined
    positions[1::2] = positions[0::2] + [0.74, 0.0, 0.0]
    atoms = Atoms("H" * (2 * pairs), positions=positions)
    initialise_momenta(atoms, 300.0, 0)
    return atoms


def probe(fast, slow, timestep_fs, candidates):
    atoms = hydrogen_dimers()
    return probe_n_inner(lambda a, run: Engine(a, fast, slow, run, seed=0), atoms, RunSettings(timestep_fs, 1),
                         ProbeSettings(candidates=candidates, nve_fs=100.0), say=lambda line: None)


def test_auto_picks_n_1_when_the_slow_force_is_as_fast_as_the_fast_one():
    """Each bond's stiffness split in half: the slow force moves exactly as fast
    as the fast one, so no outer step longer than δt is safe. Its spectrum lies
    far below 1/(3Δt) at n = 2 (δt resolves the bond 40 times per period), so it
    is the energy check that refuses n = 2."""
    result = probe(Bonds(20.0), Bonds(20.0), 0.25, (1, 2, 4))
    assert result.n_inner == 1
    first, second = result.candidates[:2]
    assert second.slow_power_above <= 1e-3
    assert second.fluctuation_ratio > max(2.0 * first.fluctuation_ratio, 0.02)
    assert "ΔE/ΔK" in second.failed


def test_auto_takes_long_outer_steps_for_a_slow_tether():
    result = probe(Bonds(20.0), Tether(0.2, hydrogen_dimers().positions), 0.5, (1, 2, 4))
    assert result.n_inner == 4
    assert all(c.failed is None for c in result.candidates)
    assert all(c.fluctuation_ratio < 1.5 * result.candidates[0].fluctuation_ratio for c in result.candidates)


def test_the_spectrum_stops_the_outer_step_before_a_third_of_the_bond_period():
    """A weak slow force that follows the bond (1 % of its stiffness, period
    ≈ 10 fs, 100 THz): harmless to the energy at n = 4, but at n = 8
    (Δt = 4 fs, 1/(3Δt) = 83 THz) its power lies above the limit."""
    result = probe(Bonds(20.0), Bonds(0.2), 0.5, (1, 2, 4, 8))
    assert result.n_inner == 4
    last = result.candidates[-1]
    assert last.n_inner == 8 and last.slow_power_above > 0.5 and "power lies above" in last.failed
    assert last.fluctuation_ratio is None  # not run: the cheap check already said no
    text = "\n".join(result.lines())
    assert "chose n = 4" in text and "n = 8" in text
    assert ProbeResult.from_dict(json.loads(json.dumps(result.as_dict()))).lines() == result.lines()


def test_probe_settings_need_n_1_as_the_reference():
    with pytest.raises(DataError, match="1 among them"):
        ProbeSettings(candidates=(2, 4)).check()




def md(md_inputs, out, *extra):
    model, structure = md_inputs
    return main(["md", "--model", str(model), "--structure", str(structure), "--timestep-fs", "0.25",
                 "--n-inner", "auto", "--probe-fs", "5", "--seed", "3", "--no-progress", "--out", str(out), *extra])


def test_md_n_inner_auto_says_why_keeps_the_choice_and_resumes_with_it(md_inputs, tmp_path, capsys):
    assert md(md_inputs, tmp_path, "--temperature-K", "100", "--steps", "4", "--traj-every", "2") == 0
    said = capsys.readouterr().err
    chosen = json.loads((tmp_path / "n_inner_auto.json").read_text())
    n = chosen["n_inner"]
    assert f"chose n = {n}" in said
    log = (tmp_path / "md.log").read_text().splitlines()
    assert log[0].startswith("# step ") and any(f"chose n = {n}" in line for line in log[1:] if line.startswith("#"))
    rows = np.loadtxt(tmp_path / "md.log", ndmin=2)
    np.testing.assert_allclose(rows[1, 1] - rows[0, 1], 2 * n * 0.25e-3)  # two outer steps of n·δt
    assert md(md_inputs, tmp_path, "--temperature-K", "100", "--steps", "6", "--traj-every", "2", "--resume") == 0
    assert "n-inner auto" not in capsys.readouterr().err  # the saved choice, not a new probe
    assert np.loadtxt(tmp_path / "md.log", ndmin=2)[-1, 0] == 6


def test_md_n_inner_auto_refuses_atoms_at_rest(md_inputs, tmp_path, capsys):
    assert md(md_inputs, tmp_path, "--steps", "2") == 2
    assert "give --temperature-K" in capsys.readouterr().err
