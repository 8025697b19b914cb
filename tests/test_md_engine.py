"""Full-speed path: same trajectory as the ASE class, skin lists exact, safety stops."""

import ase.io
import numpy as np
import pytest
import torch
from ase import units
from ase.md.verlet import VelocityVerlet

from mtsmlip import load
from mtsmlip.data import DataError
from mtsmlip.md import MultiTimeStep
from mtsmlip.md.engine import Engine, MDInstability, RunSettings, SafetyLimits, providers_for
from mtsmlip.md.torch_forces import ModelForces
from mtsmlip.models import FAST_PRESET, SLOW_PRESET, build_model, model_config, write_model_dir
from tests.physics import small_water_box


def tiny_config(preset, r_max, seed):
    overrides = {"r_max": r_max, "avg_num_neighbors": 10.0}
    if "nequip" in preset["_target_"]:
        overrides.update(num_layers=2, num_features=8, radial_mlp_width=16)
    return model_config(preset, ["H", "O"], seed=seed, model_dtype="float64", **overrides)


def write_tiny_pair(directory):
    """A model directory like `mtsmlip train` writes: tiny float64 fast/slow/baseline."""
    configs = {"fast": tiny_config(FAST_PRESET, 3.0, 0), "slow": tiny_config(SLOW_PRESET, 3.5, 1),
               "baseline": tiny_config(SLOW_PRESET, 3.5, 2)}
    models = {name: (build_model(cfg).eval(), cfg) for name, cfg in configs.items()}
    write_model_dir(directory, models, {"note": "tiny untrained pair for tests"})
    return directory


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return load(write_tiny_pair(tmp_path_factory.mktemp("pair")))


def water(seed=0):
    atoms = small_water_box(seed=seed)
    rng = np.random.default_rng(seed)
    atoms.set_momenta(rng.normal(0, 0.05, (len(atoms), 3)) * np.sqrt(atoms.get_masses())[:, None])
    return atoms


def engine_for(pair, atoms, out, settings, **kw):
    fast, slow = providers_for(pair, atoms, settings.baseline, skin_A=kw.pop("skin_A", 1.0))
    return Engine(atoms, fast, slow, settings, out, **kw)


@pytest.mark.parametrize("thermostat", [None, "langevin"])
def test_full_speed_path_equals_the_ase_class(pair, tmp_path, thermostat):
    settings = RunSettings(0.5, 3, thermostat, 300.0 if thermostat else None, 0.05)
    engine = engine_for(pair, water(), tmp_path, settings, seed=7, traj_every=100)
    engine.run(8, progress=False)
    atoms = water()
    MultiTimeStep(atoms, pair.fast, pair.slow, 0.5, 3, temperature_K=settings.temperature_K,
                  thermostat=thermostat, friction_per_fs=0.05, rng=np.random.default_rng(7)).run(8)
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
    fast, slow = providers_for(pair, atoms, baseline=False)
    engine = Engine(atoms, fast, Spoiled(slow, 5, how), RunSettings(0.5, 2), tmp_path, traj_every=1)
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
    engine.limits = SafetyLimits(min_distance_A=1.2)  # O–H bonds are ~1 Å: the first step is refused
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
    small = water()
    small.cell = small.cell * 0.5
    with pytest.raises(DataError, match="smaller than the model cutoff"):
        providers_for(pair, small, baseline=False)
    no_cell = water()
    no_cell.cell = np.zeros((3, 3))
    with pytest.raises(DataError, match="periodic frame without a cell"):
        providers_for(pair, no_cell, baseline=False)
    for settings in (RunSettings(0.0, 2), RunSettings(-0.5, 2), RunSettings(0.5, 0)):
        with pytest.raises(DataError):
            engine_for(pair, water(), tmp_path / "x", settings)
    assert not (tmp_path / "x").exists()
