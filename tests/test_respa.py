"""RESPA exactness and thermostats on an analytic split Lennard-Jones (float64)."""

import numpy as np
import pytest
from ase import units
from ase.calculators.mixing import SumCalculator
from ase.md.verlet import VelocityVerlet

from mtsmlip.data import DataError
from mtsmlip.md import MultiTimeStep
from mtsmlip.md.analytic import SplitLennardJones
from mtsmlip.md.respa import drift, kick, kinetic_energy_eV
from mtsmlip.md.thermostats import Bussi, Langevin
from tests.systems import argon

FAST, SLOW = SplitLennardJones("fast"), SplitLennardJones("slow")


def run_mts(atoms, steps, fast=FAST, slow=SLOW, timestep_fs=5.0, n_inner=4, **kw):
    md = MultiTimeStep(atoms, fast, slow, timestep_fs, n_inner, **kw)
    md.run(steps)
    return md


def conserved_energy_series(atoms, steps, timestep_fs, n_inner, **kw):
    """K + E_fast + E_slow (− thermostat work) after every outer step, eV."""
    md = MultiTimeStep(atoms, FAST, SLOW, timestep_fs, n_inner, **kw)
    series = []
    md.attach(lambda: series.append(atoms.get_total_energy() - md.work_eV))
    md.run(steps)
    return np.array(series)


def test_kick_and_drift_are_the_plain_updates():
    p, f, m, x = np.ones((2, 3)), np.full((2, 3), 2.0), np.array([[1.0], [4.0]]), np.zeros((2, 3))
    np.testing.assert_array_equal(kick(p, f, 0.5), np.full((2, 3), 2.0))
    np.testing.assert_array_equal(drift(x, p, m, 2.0), [[2.0] * 3, [0.5] * 3])


def test_one_inner_step_is_velocity_verlet_on_the_sum():
    a, b = argon(), argon()
    run_mts(a, 40, n_inner=1)
    b.calc = SumCalculator([SplitLennardJones("fast"), SplitLennardJones("slow")])
    VelocityVerlet(b, timestep=5.0 * units.fs).run(40)
    np.testing.assert_allclose(a.positions, b.positions, atol=1e-12, rtol=0)
    np.testing.assert_allclose(a.get_momenta(), b.get_momenta(), atol=1e-12, rtol=0)


def test_zero_slow_force_is_velocity_verlet_at_the_inner_step():
    zero = SplitLennardJones("slow", epsilon=0.0)
    a, b = argon(), argon()
    run_mts(a, 10, slow=zero, n_inner=4)
    b.calc = SplitLennardJones("fast")
    VelocityVerlet(b, timestep=5.0 * units.fs).run(40)
    np.testing.assert_allclose(a.positions, b.positions, atol=1e-12, rtol=0)
    np.testing.assert_allclose(a.get_momenta(), b.get_momenta(), atol=1e-12, rtol=0)


def test_time_reversible():
    atoms = argon()
    start = atoms.positions.copy()
    run_mts(atoms, 30)
    assert np.abs(atoms.positions - start).max() > 0.05
    atoms.set_momenta(-atoms.get_momenta())
    run_mts(atoms, 30)
    np.testing.assert_allclose(atoms.positions, start, atol=1e-9, rtol=0)


def test_energy_error_scales_as_outer_step_squared():
    total_fs, n = 2000.0, 4
    rms = {}
    for outer_fs in (20.0, 10.0):
        series = conserved_energy_series(argon(), int(total_fs / outer_fs), outer_fs / n, n)
        rms[outer_fs] = np.std(series)
    assert 3.0 < rms[20.0] / rms[10.0] < 5.0, rms


def test_slow_force_is_smooth_enough_for_the_test_to_mean_something():
    atoms = argon()
    for part, lo, hi in (("fast", 0.05, 10.0), ("slow", 1e-4, 0.05)):
        atoms.calc = SplitLennardJones(part)
        assert lo < np.abs(atoms.get_forces()).max() < hi, part


@pytest.mark.parametrize("kind", ["langevin", "bussi"])
def test_thermostat_mean_temperature(kind):
    target_K = 60.0
    atoms = argon(repeat=4, temperature_K=target_K, rattle_A=0.0)
    rng = np.random.default_rng(1)
    thermostat = Langevin(target_K, 0.02, rng) if kind == "langevin" else Bussi(target_K, tau_fs=50.0, rng=rng)
    md = MultiTimeStep(atoms, FAST, SLOW, 5.0, 2, thermostat=thermostat)
    md.run(200)  # 2 ps to equilibrate
    temps = []
    md.attach(lambda: temps.append(atoms.get_temperature()))
    md.run(1000)
    assert abs(np.mean(temps) / target_K - 1) < 0.02, np.mean(temps)
    assert abs(np.std(temps) / target_K - np.sqrt(2 / (3 * len(atoms)))) < 0.03  # canonical spread


def test_bussi_effective_conserved_energy_is_flat():
    atoms = argon(temperature_K=20.0)
    series = conserved_energy_series(atoms, 400, 5.0, 4, thermostat=Bussi(120.0, tau_fs=100.0,
                                                                          rng=np.random.default_rng(2)))
    heat_eV = abs(series[-1] - series[0])
    kinetic_gain_eV = atoms.get_kinetic_energy() - 1.5 * len(atoms) * units.kB * 20.0
    assert kinetic_gain_eV > 0.1  # the thermostat did real work ...
    assert np.ptp(series) < 1e-3 * kinetic_gain_eV  # ... and the bookkeeping balances it
    assert heat_eV < 1e-3 * kinetic_gain_eV


def test_langevin_o_step_keeps_the_canonical_distribution():
    rng = np.random.default_rng(0)
    masses = np.full((20000, 1), 40.0)
    kT = units.kB * 300.0
    p = rng.standard_normal((20000, 3)) * np.sqrt(masses * kT)
    new, _ = Langevin(300.0, 0.05, rng).inner(p, masses, 10 * units.fs)
    assert kinetic_energy_eV(new, masses) / (1.5 * 20000 * kT) == pytest.approx(1.0, abs=0.02)
    assert np.corrcoef(p.ravel(), new.ravel())[0, 1] == pytest.approx(np.exp(-0.5), abs=0.02)


def test_langevin_o_step_on_the_device_keeps_the_canonical_distribution():
    """The device path (its own generator, seeded once from the host's rng) draws
    the same distribution as the host's noise, and nothing from the host's rng
    after the seed."""
    import torch

    rng = np.random.default_rng(0)
    masses = torch.full((20000, 1), 40.0, dtype=torch.float64)
    kT = units.kB * 300.0
    p = torch.from_numpy(rng.standard_normal((20000, 3))) * (masses * kT).sqrt()
    thermostat = Langevin(300.0, 0.05, rng)
    thermostat.on_device = True
    new, work = thermostat.inner(p, masses, 10 * units.fs)
    after_seed = rng.bit_generator.state
    new2, _ = thermostat.inner(new, masses, 10 * units.fs)
    assert rng.bit_generator.state == after_seed  # the second draw came from the device generator alone
    assert float(kinetic_energy_eV(new, masses)) / (1.5 * 20000 * kT) == pytest.approx(1.0, abs=0.02)
    assert np.corrcoef(p.numpy().ravel(), new.numpy().ravel())[0, 1] == pytest.approx(np.exp(-0.5), abs=0.02)
    sigma = (masses * kT * (1 - np.exp(-1.0))).sqrt()
    noise1, noise2 = (new - np.exp(-0.5) * p) / sigma, (new2 - np.exp(-0.5) * new) / sigma
    assert float((noise1 - noise2).abs().max()) > 1.0  # fresh noise each call (the same would differ by rounding)
    assert torch.is_tensor(work) and work.ndim == 0


def test_langevin_device_noise_resumes_from_a_saved_state():
    """get_state through JSON (as a restart file holds it) into a fresh
    thermostat gives the same noise as the uninterrupted one."""
    import json

    import torch

    from mtsmlip.md.thermostats import portable_state

    masses, p = torch.ones((50, 1), dtype=torch.float64), torch.zeros((50, 3), dtype=torch.float64)
    first = Langevin(300.0, 0.01, np.random.default_rng(5))
    first.on_device = True
    p1, _ = first.inner(p, masses, units.fs)
    saved = json.loads(json.dumps(portable_state(first.get_state())))
    expected, _ = first.inner(p1, masses, units.fs)
    resumed = Langevin(300.0, 0.01, np.random.default_rng(99))
    resumed.on_device = True
    resumed.set_state(saved)
    before_first_draw = resumed.get_state()  # (the engine keeps such a state to redo a batch)
    again, _ = resumed.inner(p1, masses, units.fs)
    assert torch.equal(again, expected)
    resumed.set_state(before_first_draw)
    redone, _ = resumed.inner(p1, masses, units.fs)
    assert torch.equal(redone, expected)
    assert saved["device_rng"] is not None and Langevin(300.0).get_state()["device_rng"] is None
    # a state of another kind of generator (a GPU's is 16 bytes) is named when first used
    other = Langevin(300.0, 0.01, np.random.default_rng(1))
    other.on_device = True
    other.set_state({**saved, "device_rng": list(range(16))})
    with pytest.raises(DataError, match="field 'thermostat.device_rng': not the state of a generator on cpu"):
        other.check_device_state(p1)
    with pytest.raises(DataError, match="field 'thermostat.device_rng': not the state of a generator on cpu"):
        other.inner(p1, masses, units.fs)


def test_bussi_rescaling_targets_the_canonical_kinetic_energy():
    rng = np.random.default_rng(0)
    masses = np.ones((100, 1))
    thermo = Bussi(300.0, tau_fs=1.0, rng=rng)  # tau = 1 fs ≪ dt: draws K afresh each time
    p = rng.standard_normal((100, 3))
    kin = [kinetic_energy_eV(thermo.outer(p, masses, 50 * units.fs)[0], masses) for _ in range(2000)]
    expected = 1.5 * 100 * units.kB * 300.0
    assert np.mean(kin) == pytest.approx(expected, rel=0.01)
    assert np.std(kin) == pytest.approx(expected * np.sqrt(2 / 300), rel=0.1)


@pytest.mark.parametrize("bad", [dict(timestep_fs=0.0), dict(timestep_fs=-1.0), dict(n_inner=0),
                                 dict(n_inner=1.5), dict(thermostat="nose"),
                                 dict(thermostat="langevin", temperature_K=None)])
def test_bad_settings_are_refused_before_any_step(bad):
    kw = dict(timestep_fs=1.0, n_inner=2, temperature_K=300.0, thermostat=None) | bad
    with pytest.raises(DataError):
        MultiTimeStep(argon(repeat=1), FAST, SLOW, kw.pop("timestep_fs"), kw.pop("n_inner"), **kw)
