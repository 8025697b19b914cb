"""Full-speed path: same trajectory as the ASE class, skin lists exact, safety stops."""

import ase.io
import numpy as np
import pytest
import torch
from ase import units
from ase.md.verlet import VelocityVerlet

from mtsmlip.forces import md_providers
from mtsmlip.data import DataError
from mtsmlip.md import MultiTimeStep
from mtsmlip.md import Engine, MDInstability, RunFiles, RunSettings, SafetyLimits
from mtsmlip.forces import ModelForces
from tests.systems import small_water_box


def water(seed=0):
    return small_water_box(seed=seed, momenta=True)


def providers_for(pair, atoms, baseline=False, **kw):
    return md_providers(pair, atoms, baseline, **kw)


def engine_for(pair, atoms, out, settings, traj_every=10, slow=None, **kw):
    """An Engine on the tiny pair writing its run files into `out` every `traj_every` steps."""
    fast, model_slow = providers_for(pair, atoms, settings.baseline, skin_A=kw.pop("skin_A", 1.0))
    engine = Engine(atoms, fast, slow or model_slow, settings, **kw)
    RunFiles(out, traj_every).attach(engine)
    return engine


@pytest.fixture(scope="module")
def softer_pair(tmp_path_factory):
    """The tiny pair at a tenth of its energy scale: 24 inner steps of the untrained
    one can bring an O and an H within the safety limit, which ends the run early."""
    import mtsmlip
    from tests.systems import write_tiny_pair

    return mtsmlip.load(write_tiny_pair(tmp_path_factory.mktemp("softer"), energy_scale=0.1))


@pytest.mark.parametrize("thermostat", [None, "langevin", "bussi"])
def test_full_speed_path_equals_the_ase_class(softer_pair, tmp_path, thermostat):
    pair = softer_pair
    rates = {"friction_per_fs": 0.05} if thermostat == "langevin" else {"tau_fs": 50.0} if thermostat else {}
    settings = RunSettings(0.5, 3, thermostat, 300.0 if thermostat else None, **rates)
    engine = engine_for(pair, water(), tmp_path, settings, seed=7, traj_every=100)
    engine.run(8, progress=False)
    atoms = water()
    MultiTimeStep(atoms, pair.fast, pair.slow, 0.5, 3, temperature_K=settings.temperature_K,
                  thermostat=thermostat, rng=np.random.default_rng(7), **rates).run(8)
    np.testing.assert_allclose(engine.state.positions.numpy(), atoms.positions, atol=1e-10, rtol=0)
    np.testing.assert_allclose(engine.state.momenta.numpy(), atoms.get_momenta(), atol=1e-9, rtol=0)


def test_baseline_is_velocity_verlet_with_the_baseline_model(pair, tmp_path):
    engine = engine_for(pair, water(), tmp_path, RunSettings(0.5, 1, baseline=True), traj_every=100)
    engine.run(10, progress=False)
    atoms = water()
    atoms.calc = pair.baseline
    VelocityVerlet(atoms, timestep=0.5 * units.fs).run(10)
    np.testing.assert_allclose(engine.state.positions.numpy(), atoms.positions, atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", ["fast", "slow"])
def test_skin_list_gives_the_forces_of_a_fresh_list(pair, name):
    atoms = water()
    kept = ModelForces(pair.models[name], atoms, skin_A=1.0)
    x = torch.tensor(atoms.positions)
    rng = np.random.default_rng(0)
    for step in range(6):  # moves of up to ~0.35 Å per atom per step: rebuilds happen on the way
        x = x + torch.tensor(rng.uniform(-0.2, 0.2, x.shape))
        e_kept, f_kept = kept(x)
        e_fresh, f_fresh = ModelForces(pair.models[name], atoms, skin_A=0.0)(x)
        assert float(e_kept) == pytest.approx(float(e_fresh), abs=1e-12)
        np.testing.assert_allclose(f_kept.numpy(), f_fresh.numpy(), atol=1e-12, rtol=0)
    assert 1 < kept.neighbors.n_builds < 7


def test_full_speed_forces_equal_the_ase_calculator(pair):
    atoms = water()
    atoms.positions += 4.0  # outside the cell: periodic images must still be right
    e, f = ModelForces(pair.models["slow"], atoms)(torch.tensor(atoms.positions))
    atoms.calc = pair.slow
    assert float(e) == pytest.approx(atoms.get_potential_energy(), abs=1e-12)
    np.testing.assert_allclose(f.numpy(), atoms.get_forces(), atol=1e-12, rtol=0)


class Spoiled:
    """A force provider that turns bad at a given call (NaN forces or an energy jump)."""

    def __init__(self, inner, at_call, how):
        self.inner, self.at_call, self.how, self.calls = inner, at_call, how, 0

    def __call__(self, x):
        self.calls += 1
        e, f = self.inner(x)
        if self.calls >= self.at_call:
            return (e + 1000.0, f) if self.how == "jump" else (e, f * float("nan"))
        return e, f


@pytest.mark.parametrize("how, message", [("nan", "NaN or inf in forces_slow"),
                                          ("jump", "conserved energy jumped")])
def test_bad_forces_stop_the_run_and_keep_the_last_good_frame(pair, tmp_path, how, message):
    atoms = water()
    slow = Spoiled(providers_for(pair, atoms)[1], 5, how)
    engine = engine_for(pair, atoms, tmp_path, RunSettings(0.5, 2), traj_every=1, slow=slow)
    with pytest.raises(MDInstability, match=message):
        engine.run(10, progress=False)
    assert engine.step == 3  # call 1 is the initial state; call 5 ends step 4
    good = ase.io.read(tmp_path / "last_good.extxyz")
    np.testing.assert_allclose(good.positions, engine.state.positions.numpy(), atol=1e-7)  # text precision
    assert good.info["step"] == 3
    with np.load(tmp_path / "restart.npz") as restart:
        np.testing.assert_array_equal(restart["positions"], engine.state.positions.numpy())


def test_atoms_too_close_stop_the_run(pair, tmp_path):
    atoms = water()
    engine = engine_for(pair, atoms, tmp_path, RunSettings(0.5, 2), traj_every=5)
    engine.safety.limits = SafetyLimits(min_distance_A=1.2)  # O–H bonds are ~1 Å: the first step is refused
    with pytest.raises(MDInstability, match=r"atoms \d+ and \d+ are 0\.\d+ Å apart"):
        engine.run(3, progress=False)
    assert (tmp_path / "last_good.extxyz").is_file() and (tmp_path / "restart.npz").is_file()


def test_a_start_closer_than_the_limit_is_refused_before_step_0(pair, tmp_path):
    with pytest.raises(DataError, match=r"starting structure .*: atoms \d+ and \d+ are 0\.\d+ Å apart"):
        engine_for(pair, water(), tmp_path / "out", RunSettings(0.5, 2), limits=SafetyLimits(min_distance_A=1.2))
    assert not (tmp_path / "out").exists()


def test_bad_input_is_refused_before_any_step(pair, tmp_path):
    unknown = water()
    unknown[0].symbol = "C"
    with pytest.raises(DataError, match=r"\['C'\] unknown to the model"):
        providers_for(pair, unknown, baseline=False)
    no_cell = water()
    no_cell.cell = np.zeros((3, 3))
    with pytest.raises(DataError, match="periodic frame without a cell"):
        providers_for(pair, no_cell, baseline=False)
    for settings in (RunSettings(0.0, 2), RunSettings(-0.5, 2), RunSettings(0.5, 0)):
        with pytest.raises(DataError):
            engine_for(pair, water(), tmp_path / "x", settings)
    assert not (tmp_path / "x").exists()


def test_observers_run_at_their_interval_from_step_0_and_after_the_last_step(pair):
    atoms = water()
    engine = Engine(atoms, *providers_for(pair, atoms), RunSettings(0.5, 2))
    seen = []
    engine.attach(lambda e: seen.append(e.step), interval=3, final=True)
    engine.run(7, progress=False)
    assert seen == [0, 3, 6, 7]
    engine.run(2, progress=False)  # step 7 is not observed twice
    assert seen == [0, 3, 6, 7, 9]


def test_the_energy_jump_is_that_of_the_effective_conserved_energy(pair):
    """Strong friction towards 3000 K changes K + U by eV in one step; the
    thermostat's work balances it, so K + U − work (each state with its own
    work) barely moves and the run must not be stopped."""
    atoms = water()
    settings = RunSettings(0.25, 2, "langevin", 3000.0, friction_per_fs=1.0)
    limits = SafetyLimits(energy_jump_eV_per_atom=0.005)
    engine = Engine(atoms, *providers_for(pair, atoms), settings, seed=1, limits=limits)
    start = engine.state
    engine.run(3, progress=False)
    kinetic_change_eV = engine.kinetic_eV(engine.state) - engine.kinetic_eV(start)
    assert kinetic_change_eV > 20 * limits.energy_jump_eV_per_atom * len(atoms)
    assert abs(engine.conserved_eV(engine.state) - engine.conserved_eV(start)) < 0.1 * kinetic_change_eV


@pytest.mark.parametrize("periodic", [False, True])
def test_bussi_thermalises_the_degrees_of_freedom_the_dynamics_leaves_free(periodic):
    """Bussi's global rescaling and RESPA conserve total momentum and, for an
    isolated cluster, angular momentum: the kinetic energy is spread over 3N − 3
    (3N − 6) degrees of freedom, and the mean reported temperature is the target
    (counting 3N would make a 13-atom cluster's T read 15 % low and run 18 % hot)."""
    from ase.cluster import Icosahedron

    from mtsmlip.md.analytic import SplitLennardJones
    from mtsmlip.md.engine import degrees_of_freedom, initialise_momenta
    from mtsmlip.forces import CalculatorTensorForces
    from tests.systems import argon

    atoms = argon(repeat=1, rattle_A=0.05) if periodic else Icosahedron("Ar", 2, latticeconstant=5.26)
    atoms.set_momenta(np.zeros((len(atoms), 3)))
    target_K = 20.0
    initialise_momenta(atoms, target_K, seed=3)
    assert np.allclose(atoms.get_momenta().sum(0), 0, atol=1e-10)
    if not periodic:
        assert np.allclose(atoms.get_angular_momentum(), 0, atol=1e-8)
    n_dof = degrees_of_freedom(atoms, "bussi")
    assert n_dof == 3 * len(atoms) - (3 if periodic else 6) and degrees_of_freedom(atoms, "langevin") == 3 * len(atoms)
    providers = [CalculatorTensorForces(atoms, SplitLennardJones(part)) for part in ("fast", "slow")]
    settings = RunSettings(5.0, 2, "bussi", target_K, tau_fs=100.0)
    engine = Engine(atoms, *providers, settings, seed=1)
    engine.run(200, progress=False)
    kinetic = []
    engine.attach(lambda e: kinetic.append(e.kinetic_eV(e.state)))
    engine.run(3000, progress=False)
    mean_T = 2 * np.mean(kinetic) / (n_dof * units.kB)
    assert abs(mean_T / target_K - 1) < 0.05, mean_T
    assert abs(engine.temperature_K(engine.state) - 2 * kinetic[-1] / (n_dof * units.kB)) < 1e-9


def test_the_engine_sees_every_periodic_image_of_a_cell_narrower_than_the_cutoff(pair):
    """The engine's skin neighbour list gives a cell narrower than the cutoff the
    same forces as its 2×2×2 supercell, image by image, and the same as ASE's path."""
    from tests.test_models import small_cell_and_supercell

    small, supercell = small_cell_and_supercell()
    forces = {}
    for name, atoms in (("small", small), ("super", supercell)):
        fast, slow = providers_for(pair, atoms, baseline=False)
        x = torch.as_tensor(atoms.positions)
        (e_fast, f_fast), (e_slow, f_slow) = fast(x), slow(x)
        forces[name] = (float(e_fast + e_slow), (f_fast + f_slow).numpy())
    assert forces["super"][0] == pytest.approx(8 * forces["small"][0], rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(forces["super"][1], np.tile(forces["small"][1], (8, 1)), atol=1e-9)
    small.calc = pair.total
    np.testing.assert_allclose(small.get_forces(), forces["small"][1], atol=1e-9)
