"""Langevin friction per species: each species' momenta forget themselves at its
own rate and reach the same temperature; the option is checked and resumes."""

import numpy as np
import pytest
from ase import Atoms, units

from mtsmlip.cli import main
from mtsmlip.errors import DataError
from mtsmlip.md import Engine, RunSettings
from mtsmlip.forces import zero_forces
from mtsmlip.md.thermostats import Langevin, make_thermostat, per_atom_friction_per_fs


def free_gas(n=4000, seed=0):
    """n/2 H and n/2 O atoms, far apart, at 300 K."""
    rng = np.random.default_rng(seed)
    atoms = Atoms("HO" * (n // 2), positions=rng.uniform(0, 1000.0, size=(n, 3)))
    masses = atoms.get_masses()
    atoms.set_momenta(rng.standard_normal((n, 3)) * np.sqrt(masses * units.kB * 300.0)[:, None])
    return atoms


def test_each_species_decorrelates_at_its_own_friction_and_reaches_the_target_temperature():
    """Free particles under the exact Ornstein–Uhlenbeck update: <p(t)·p(0)>/<p²> = exp(−γt)."""
    atoms = free_gas()
    friction = {"H": 0.1, "O": 0.01}
    run = RunSettings(0.5, 2, "langevin", 300.0, friction_per_fs=0.01, species_friction_per_fs=(("H", 0.1),))
    engine = Engine(atoms, zero_forces, zero_forces, run, seed=3)
    p0 = engine.state.momenta.numpy().copy()
    symbols = np.array(atoms.get_chemical_symbols())
    engine.run(10, progress=False)  # 10 fs
    p = engine.state.momenta.numpy()
    for symbol, gamma in friction.items():
        select = symbols == symbol
        correlation = np.sum(p[select] * p0[select]) / np.sum(p0[select] ** 2)
        assert correlation == pytest.approx(np.exp(-gamma * 10.0), abs=0.05)  # ± 4 sigma of 6000 components
    temperatures = {s: [] for s in friction}
    for _ in range(40):
        engine.run(20, progress=False)
        p, m = engine.state.momenta.numpy(), engine.state.masses.numpy()
        for s in friction:
            select = symbols == s
            temperatures[s].append(np.sum(p[select] ** 2 / m[select]) / (3 * select.sum() * units.kB))
    for s in friction:
        assert np.mean(temperatures[s][5:]) == pytest.approx(300.0, rel=0.03)


def test_per_atom_friction_names_the_missing_species_and_refuses_other_thermostats():
    assert per_atom_friction_per_fs(["H", "O"], 0.02) == 0.02
    np.testing.assert_allclose(per_atom_friction_per_fs(["H", "O", "H"], None, (("H", 0.1),)), [0.1, 0.01, 0.1])
    with pytest.raises(DataError, match="names Si, which the structure does not contain"):
        per_atom_friction_per_fs(["H", "O"], None, (("Si", 0.1),))
    with pytest.raises(DataError, match="Langevin thermostat only"):
        make_thermostat("bussi", 300.0, np.array([0.1, 0.1]), None)
    with pytest.raises(DataError, match="positive for every atom"):
        Langevin(300.0, np.array([0.1, 0.0]))
    with pytest.raises(DataError, match="needs --thermostat langevin"):
        RunSettings(0.5, 2, "bussi", 300.0, species_friction_per_fs=(("H", 0.1),)).check()




def md(md_inputs, out, *extra):
    model, structure = md_inputs
    return main(["md", "--model", str(model), "--structure", str(structure), "--timestep-fs", "0.25",
                 "--n-inner", "2", "--temperature-K", "100", "--seed", "3", "--no-progress", "--out", str(out),
                 "--thermostat", "langevin", *extra])


def test_md_with_species_friction_resumes_bit_for_bit(md_inputs, tmp_path):
    extra = ("--species-friction-per-fs", "H=0.2", "--traj-every", "2")
    assert md(md_inputs, tmp_path / "a", "--steps", "6", *extra) == 0
    assert md(md_inputs, tmp_path / "b", "--steps", "3", *extra) == 0
    assert md(md_inputs, tmp_path / "b", "--steps", "6", "--resume", *extra) == 0
    with np.load(tmp_path / "a" / "restart.npz") as a, np.load(tmp_path / "b" / "restart.npz") as b:
        np.testing.assert_array_equal(a["momenta"], b["momenta"])
    assert md(md_inputs, tmp_path / "b", "--steps", "8", "--resume", "--traj-every", "2") == 2  # other friction


@pytest.mark.parametrize("value, said", [("H", "SYMBOL=RATE"), ("Xx=0.1", "SYMBOL=RATE"), ("H=-1", "finite number"),
                                         ("H=0.1,H=0.2", "named twice")])
def test_bad_species_friction_is_refused_by_name(md_inputs, tmp_path, capsys, value, said):
    assert md(md_inputs, tmp_path, "--steps", "2", "--species-friction-per-fs", value) == 2
    err = capsys.readouterr().err
    assert "argument --species-friction-per-fs" in err and said in err
