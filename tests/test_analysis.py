"""Analysis library against known answers: ideal gas and crystal g(r), ballistic
and random-walk MSD, harmonic VDOS, linear drift, two-sine force spectrum, and
the tolerance verdict."""

import dataclasses

import ase.units
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.neighborlist import neighbor_list

from mtsmlip import analysis as an
from mtsmlip.analysis import plots
from mtsmlip.data import DataError, read_frames

# ---------------------------------------------------------------- structure


def ideal_gas_frames(rng, n_a=120, n_b=60, box_A=14.0, n_frames=20):
    symbols = ["Ar"] * n_a + ["Kr"] * n_b
    return [Atoms(symbols, positions=rng.uniform(0, box_A, (n_a + n_b, 3)), cell=[box_A] * 3, pbc=True)
            for _ in range(n_frames)]


def test_ideal_gas_rdf_is_one_within_counting_noise_for_all_pairs():
    frames = ideal_gas_frames(np.random.default_rng(0))
    result = an.rdf(frames, r_max_A=6.5, n_bins=26)
    assert set(result) == {("Ar", "Ar"), ("Ar", "Kr"), ("Kr", "Kr")}
    for pair, (r_A, g) in result.items():
        expected_counts = _expected_pair_counts(frames, pair, r_A)
        sigma = 1 / np.sqrt(expected_counts)  # Poisson noise of g per bin
        assert np.all(np.abs(g - 1) < 5 * sigma + 1e-12), pair
        far = r_A > 2.0
        assert abs(np.average(g[far], weights=expected_counts[far]) - 1) < 0.03, pair


def _expected_pair_counts(frames, pair, r_A):
    width_A = r_A[1] - r_A[0]
    shell_A3 = 4 / 3 * np.pi * ((r_A + width_A / 2) ** 3 - (r_A - width_A / 2) ** 3)
    n_a = frames[0].get_chemical_symbols().count(pair[0])
    return len(frames) * n_a * an.partner_density_per_A3(frames, pair) * shell_A3


def test_ideal_gas_rdf_of_few_atoms_counts_partners_without_self():
    frames = ideal_gas_frames(np.random.default_rng(2), n_a=4, n_b=3, box_A=10.0, n_frames=1000)
    for pair, (r_A, g) in an.rdf(frames, r_max_A=5.0, n_bins=5).items():
        weights = _expected_pair_counts(frames, pair, r_A)
        assert np.average(g, weights=weights) == pytest.approx(1.0, abs=0.05), pair  # N_b instead of N_b-1: 0.67


def test_ideal_gas_rdf_beyond_half_box_uses_periodic_images():
    frames = ideal_gas_frames(np.random.default_rng(1), n_a=60, n_b=0, box_A=8.0, n_frames=10)
    r_A, g = an.rdf(frames, r_max_A=9.0, n_bins=9)[("Ar", "Ar")]
    assert np.all(np.abs(g[r_A > 4.0] - 1) < 0.1)  # 9 Å > half of the 8 Å box


def test_fcc_rdf_first_peak_at_nearest_neighbour_with_12_neighbours():
    a_A = 3.61
    crystal = bulk("Cu", "fcc", a=a_A, cubic=True).repeat(3)
    r_A, g = an.rdf([crystal], r_max_A=4.5, n_bins=90)[("Cu", "Cu")]
    assert r_A[np.argmax(g)] == pytest.approx(a_A / np.sqrt(2), abs=0.05)
    n_of_r = an.running_coordination(r_A, g, an.partner_density_per_A3([crystal], ("Cu", "Cu")))
    assert n_of_r[np.searchsorted(r_A, 3.0)] == pytest.approx(12.0)  # between 1st (2.55) and 2nd (3.61) shell


def test_rocksalt_cross_and_like_pair_coordination():
    a_A = 5.64
    crystal = bulk("NaCl", "rocksalt", a=a_A, cubic=True).repeat(2)
    result = an.rdf([crystal], r_max_A=4.5, n_bins=90)
    r_A, g = result[("Cl", "Na")]
    assert r_A[np.argmax(g)] == pytest.approx(a_A / 2, abs=0.05)
    n_cross = an.running_coordination(r_A, g, an.partner_density_per_A3([crystal], ("Cl", "Na")))
    assert n_cross[np.searchsorted(r_A, 3.5)] == pytest.approx(6.0)
    r_A, g = result[("Na", "Na")]
    n_like = an.running_coordination(r_A, g, an.partner_density_per_A3([crystal], ("Na", "Na")))
    assert n_like[np.searchsorted(r_A, 4.3)] == pytest.approx(12.0)  # a/√2 = 3.99 Å


def test_water_rdf_coordination_matches_ase_neighbour_count(water_file):
    frames = read_frames(water_file, index="6:12")  # cells of different volume
    assert len({round(atoms.get_volume(), 3) for atoms in frames}) > 1
    result = an.rdf(frames, r_max_A=6.0, n_bins=240)
    r_A, g = result[("O", "O")]
    assert 2.7 < r_A[np.argmax(g)] < 2.9  # the hydrogen-bond peak of liquid water
    r_A, g = result[("H", "O")]
    upper_A = r_A + (r_A[1] - r_A[0]) / 2
    k = np.searchsorted(upper_A, 1.25)
    n_of_r = an.running_coordination(r_A, g, an.partner_density_per_A3(frames, ("H", "O")))
    direct = np.mean([_count_neighbours(atoms, "H", "O", upper_A[k]) for atoms in frames])
    assert n_of_r[k] == pytest.approx(direct, rel=1e-9)
    assert 0.95 < direct < 1.05  # one covalent O per H


def _count_neighbours(atoms, a, b, r_A):
    i, j = neighbor_list("ij", atoms, r_A)
    symbols = np.array(atoms.get_chemical_symbols())
    return np.sum((symbols[i] == a) & (symbols[j] == b)) / np.sum(symbols == a)


def test_rdf_rejects_changing_atoms_and_non_periodic_frames():
    crystal = bulk("Cu", "fcc", a=3.61, cubic=True)
    with pytest.raises(DataError, match="frame 1"):
        an.rdf([crystal, crystal.repeat(2)], 3.0, 10)
    with pytest.raises(DataError, match="cell"):
        an.rdf([Atoms("Cu2", positions=[[0, 0, 0], [2, 0, 0]])], 3.0, 10)


def test_rdf_difference_is_zero_for_same_and_rms_for_shifted_curves():
    r_A = np.linspace(0, 6, 121)
    g = 1 + np.exp(-((r_A - 3) ** 2))
    assert an.rdf_difference(g, g, r_A) == 0.0
    assert an.rdf_difference(g, g + 0.1, r_A) == pytest.approx(0.1)
    diffs = an.rdf_differences({("H", "H"): (r_A, g), ("H", "O"): (r_A, g)},
                               {("H", "H"): (r_A, g + 0.02), ("H", "O"): (r_A, g + 0.2)})
    assert diffs[("H", "H")] == pytest.approx(0.02)
    assert diffs["overall"] == pytest.approx(0.2)


# ---------------------------------------------------------------- dynamics


def test_msd_of_ballistic_particles_is_vt_squared():
    t_ps = np.arange(50) * 0.01
    v_A_per_ps = np.array([[3.0, 0, 0], [0, -4.0, 0], [1.0, 2.0, 2.0]])  # |v| = 3, 4, 3
    x_A = t_ps[:, None, None] * v_A_per_ps[None]
    lag_ps, msd_A2 = an.msd(x_A, 0.01, remove_com=False)
    np.testing.assert_allclose(msd_A2, np.mean([9, 16, 9]) * lag_ps**2, atol=1e-10)


def test_msd_per_axis_splits_the_ballistic_msd_by_direction():
    t_ps = np.arange(50) * 0.01
    v_A_per_ps = np.array([[3.0, 0, 0], [0, -4.0, 0], [1.0, 2.0, 2.0]])
    x_A = t_ps[:, None, None] * v_A_per_ps[None]
    lag_ps, per_axis_A2 = an.msd(x_A, 0.01, remove_com=False, per_axis=True)
    assert per_axis_A2.shape == (50 // 2 + 1, 3)
    np.testing.assert_allclose(per_axis_A2, np.mean(v_A_per_ps**2, axis=0)[None] * lag_ps[:, None] ** 2, atol=1e-10)
    _, total_A2 = an.msd(x_A, 0.01, remove_com=False)
    np.testing.assert_allclose(per_axis_A2.sum(1), total_A2, atol=1e-10)
    with pytest.raises(DataError, match="'select': selects no atom"):
        an.msd(x_A, 0.01, select=np.zeros(3, bool))


def test_msd_removes_centre_of_mass_drift():
    t_ps = np.arange(40) * 0.01
    x_A = np.zeros((40, 4, 3)) + t_ps[:, None, None] * np.array([2.0, 0, 0])  # all atoms drift together
    _, msd_A2 = an.msd(x_A, 0.01)
    np.testing.assert_allclose(msd_A2, 0.0, atol=1e-12)


def random_walk_A(rng, D_A2_per_ps, dt_ps, n_steps, n_atoms):
    steps = rng.normal(0.0, np.sqrt(2 * D_A2_per_ps * dt_ps), (n_steps, n_atoms, 3))
    return np.cumsum(steps, axis=0)


def test_random_walk_diffusion_recovered_within_error_bar():
    D_true, dt_ps, n_atoms = 0.25, 0.01, 200
    x_A = random_walk_A(np.random.default_rng(7), D_true, dt_ps, 4000, n_atoms)
    estimate = an.diffusion_groups(x_A, dt_ps, n_groups=8)
    D_expected = D_true * (1 - 1 / n_atoms)  # COM removal takes one atom's worth of motion
    assert abs(estimate.D_A2_per_ps - D_expected) < 3 * estimate.stderr_A2_per_ps
    assert estimate.stderr_A2_per_ps < 0.05 * D_true
    assert len(estimate.per_group_A2_per_ps) == 8 * 3  # each group along x, y and z


def test_diffusion_is_fitted_where_the_motion_diffuses_not_where_it_rattles():
    """Atoms that diffuse and also oscillate fast (a libration of 0.4 Å at a 60 fs
    period, each atom at its own phase), over a run of 1.5 ps: the diffusion
    coefficient is the random walk's, within 5 %. Fitted at the lags the old
    time blocks used (37.5-187.5 fs: 10-50 % of a quarter of the run), the
    oscillation's rise and fall moves it by more than 10 %."""
    rng = np.random.default_rng(11)
    D_true, dt_ps, n_atoms, n_frames = 0.25, 0.005, 2000, 301
    walk_A = random_walk_A(rng, D_true, dt_ps, n_frames, n_atoms)
    t_ps = np.arange(n_frames)[:, None, None] * dt_ps
    phase = rng.uniform(0, 2 * np.pi, (1, n_atoms, 3))
    x_A = walk_A + 0.4 * np.sin(2 * np.pi * t_ps / 0.060 + phase)
    D_expected = D_true * (1 - 1 / n_atoms)
    estimate = an.diffusion_groups(x_A, dt_ps)
    assert an.fit_lags_ps(n_frames, dt_ps) == pytest.approx((0.3, 0.75))
    assert estimate.D_A2_per_ps == pytest.approx(D_expected, rel=0.05)
    assert abs(estimate.D_A2_per_ps - D_expected) < 4 * estimate.stderr_A2_per_ps
    short_lags = an.diffusion_groups(x_A, dt_ps, fit_fraction=(0.025, 0.125)).D_A2_per_ps
    assert abs(short_lags - D_expected) > 0.1 * D_expected


def test_diffusion_of_one_atom_has_an_error_bar_from_its_three_directions():
    x_A = random_walk_A(np.random.default_rng(12), 0.5, 0.01, 200, 3)
    for select in ([1], np.array([False, True, False])):
        estimate = an.diffusion_groups(x_A, 0.01, select=select)
        assert len(estimate.per_group_A2_per_ps) == 3 and 0 < estimate.stderr_A2_per_ps < np.inf


def test_diffusion_of_a_long_run_saved_sparsely_is_fitted_where_it_has_frames():
    """A 200 ps run saved every 2 ps: the fit's span grows past FIT_SPAN_PS to hold
    enough saved lags, and D is the walk's."""
    x_A = random_walk_A(np.random.default_rng(13), 0.25, 2.0, 101, 500)
    start_ps, end_ps = an.fit_lags_ps(101, 2.0)
    assert (end_ps - start_ps) / 2.0 >= 5
    assert an.diffusion_groups(x_A, 2.0).D_A2_per_ps == pytest.approx(0.25, rel=0.1)


def test_unwrapping_across_boundaries_restores_the_path():
    rng = np.random.default_rng(3)
    cell_A = np.array([[6.0, 0, 0], [1.5, 5.0, 0], [0.5, 0.7, 7.0]])  # triclinic
    x_A = random_walk_A(rng, 2.0, 0.01, 500, 5) + 3.0  # crosses the box many times
    frames = [Atoms("H5", positions=x, cell=cell_A, pbc=True) for x in x_A]
    for atoms in frames:
        atoms.wrap()
    assert not np.allclose(an.positions_A(frames), x_A)
    np.testing.assert_allclose(an.unwrapped_positions_A(frames), x_A - x_A[0] + frames[0].positions, atol=1e-9)


def test_diffusion_by_species_from_wrapped_frames():
    rng = np.random.default_rng(4)
    fast, slow = random_walk_A(rng, 1.0, 0.01, 1000, 30), random_walk_A(rng, 0.1, 0.01, 1000, 30)
    x_A = np.concatenate([fast, slow], axis=1)
    frames = [Atoms("H30O30", positions=x, cell=[8.0] * 3, pbc=True) for x in x_A]
    for atoms in frames:
        atoms.wrap()
    d = an.diffusion_by_species(frames, 0.01)
    assert set(d) == {"H", "O"}
    assert d["H"].D_A2_per_ps == pytest.approx(1.0, rel=0.15)
    assert d["O"].D_A2_per_ps == pytest.approx(0.1, rel=0.25)


def test_drift_of_noisy_linear_energy_trace_recovers_slope():
    rng = np.random.default_rng(5)
    n_atoms, slope_meV_per_atom_per_ps = 192, 0.3
    t_ps = np.arange(2000) * 0.005
    energy_eV = -1000 + slope_meV_per_atom_per_ps * n_atoms / 1000 * t_ps + rng.normal(0, 0.02, t_ps.size)
    drift = an.drift_meV_per_atom_per_ps(t_ps, energy_eV, n_atoms)
    assert drift == pytest.approx(slope_meV_per_atom_per_ps, abs=0.01)


def test_velocities_from_frames_are_in_angstrom_per_fs():
    atoms = Atoms("H2O", positions=np.zeros((3, 3)), cell=[5.0] * 3, pbc=True)
    atoms.set_velocities(np.full((3, 3), 2.0) / ase.units.fs)  # 2 Å/fs in ASE units
    np.testing.assert_allclose(an.velocities_A_per_fs([atoms, atoms]), 2.0)
    with pytest.raises(DataError, match="momenta"):
        an.velocities_A_per_fs([Atoms("H")])


# ---------------------------------------------------------------- spectra


def harmonic_velocities(rng, freq_THz, dt_fs, n_steps, n_atoms):
    t_fs = np.arange(n_steps) * dt_fs
    omega_per_fs = 2 * np.pi * freq_THz / 1000
    phase = rng.uniform(0, 2 * np.pi, (n_atoms, 3))
    return -omega_per_fs * np.sin(omega_per_fs * t_fs[:, None, None] + phase[None])


def test_vacf_and_vdos_of_harmonic_oscillator_peak_at_its_frequency():
    freq_THz, dt_fs = 50.0, 0.5  # 50 THz = 1668 cm^-1
    v = harmonic_velocities(np.random.default_rng(6), freq_THz, dt_fs, 2000, 4)
    lag_fs, c = an.vacf(v, dt_fs)
    np.testing.assert_allclose(c, np.cos(2 * np.pi * freq_THz / 1000 * lag_fs), atol=0.05)
    f_THz, f_cm1, dos = an.vdos(v, dt_fs, masses_amu=[1.0, 2.0, 3.0, 4.0])
    resolution_THz = f_THz[1] - f_THz[0]
    assert f_THz[np.argmax(dos)] == pytest.approx(freq_THz, abs=resolution_THz)
    assert f_cm1[np.argmax(dos)] == pytest.approx(freq_THz * 33.356, abs=resolution_THz * 33.4)
    assert np.trapezoid(dos, f_THz) == pytest.approx(1.0)


def two_sine_forces(dt_fs, n_steps, f1_THz, f2_THz, a1, a2):
    t_fs = np.arange(n_steps) * dt_fs
    signal = a1 * np.sin(2 * np.pi * f1_THz / 1000 * t_fs) + a2 * np.sin(2 * np.pi * f2_THz / 1000 * t_fs + 1.0)
    return np.broadcast_to(signal[:, None, None], (n_steps, 3, 3)) + 0.7  # constant offset is removed


def test_force_spectrum_puts_right_power_fraction_above_cut():
    dt_fs, a1, a2 = 0.5, 1.0, 0.5
    forces = two_sine_forces(dt_fs, 4000, 5.0, 80.0, a1, a2)
    f_THz, power = an.force_spectrum(forces, dt_fs)
    cut_THz = an.nyquist_THz(10.0)  # a 10 fs outer step: 1/(2·10 fs) = 50 THz, between the sines
    assert cut_THz == pytest.approx(50.0)
    expected = a2**2 / (a1**2 + a2**2)
    assert an.power_above_frequency_fraction(f_THz, power, cut_THz) == pytest.approx(expected, abs=0.01)
    assert an.power_above_frequency_fraction(f_THz, power, 100.0) < 1e-3


def test_force_autocorrelation_of_single_sine_is_cosine():
    dt_fs = 0.5
    forces = two_sine_forces(dt_fs, 4000, 20.0, 80.0, 1.0, 0.0)
    lag_fs, c = an.force_autocorrelation(forces, dt_fs, max_lag=200)
    np.testing.assert_allclose(c, np.cos(2 * np.pi * 20.0 / 1000 * lag_fs), atol=0.02)


# ---------------------------------------------------------------- verdict


def flat_rdf(offset=0.0):
    r_A = np.linspace(0.5, 6, 56)
    return {("H", "O"): (r_A, np.ones_like(r_A) + offset), ("O", "O"): (r_A, np.ones_like(r_A))}


def metrics(drift=0.1, rdf_offset=0.0, D=0.2, err=0.01, T_H=300.0, fluctuation=0.01):
    return an.RunMetrics(drift_meV_per_atom_per_ps=drift, fluctuation_ratio=fluctuation, rdf=flat_rdf(rdf_offset),
                         diffusion={"O": an.DiffusionEstimate(D, err, (D,))},
                         temperature={"H": an.TemperatureEstimate(T_H, 1.0), "O": an.TemperatureEstimate(300.0, 1.0)},
                         vdos={"H": peak(100.0), "O": peak(20.0)})


def peak(f_THz, width_THz=5.0):
    f = np.linspace(0.0, 500.0, 1001)
    return f, np.exp(-0.5 * ((f - f_THz) / width_THz) ** 2)


def test_verdict_accepts_a_run_within_all_tolerances():
    ok, reasons = an.verdict(metrics(D=0.22), metrics(), an.Tolerance())
    assert ok and reasons == []


@pytest.mark.parametrize("run, word", [
    (metrics(drift=-3.0), "drift"),
    (metrics(rdf_offset=0.2), "H-O"),
    (metrics(D=0.3), "diffusion O"),
    (metrics(T_H=315.0), "temperature H"),
    (metrics(fluctuation=0.025), "ΔE/ΔK 0.025 > max(2 × baseline's 0.01, 0.02)"),
    (an.RunMetrics(drift_meV_per_atom_per_ps=0.1, fluctuation_ratio=0.01, rdf=flat_rdf(), diffusion=None,
                   temperature=metrics().temperature, vdos=metrics().vdos), "missing"),
])
def test_verdict_rejects_and_names_the_reason(run, word):
    ok, reasons = an.verdict(run, metrics(), an.Tolerance())
    assert not ok
    assert len(reasons) == 1 and word in reasons[0]


def test_verdict_skips_disabled_checks_and_collects_all_failures():
    bad = metrics(drift=5.0, rdf_offset=0.3, D=1.0, T_H=330.0, fluctuation=0.5)
    bad.vdos["H"] = peak(110.0)
    assert len(an.verdict(bad, metrics(), an.Tolerance())[1]) == 6
    off = an.Tolerance(drift_meV_per_atom_per_ps=None, fluctuation_growth=None, rdf_diff=None, diffusion_sigma=None,
                       temperature_sigma=None, vdos_diff=None)
    assert an.verdict(bad, metrics(), off) == (True, [])


def test_sampling_is_judged_by_structure_and_temperature_only():
    """Changed dynamics (drift, fluctuation, diffusion, VDOS) fail a run for
    dynamics but not for sampling; a changed structure or a hot species fails both."""
    moving = metrics(drift=5.0, D=1.0, fluctuation=0.5)
    moving.vdos["H"] = peak(110.0)
    assert not an.verdict(moving, metrics(), an.Tolerance())[0]
    assert an.verdict(moving, metrics(), an.Tolerance(), purpose="sampling") == (True, [])
    for wrong, word in ((metrics(rdf_offset=0.3), "rdf"), (metrics(T_H=330.0), "temperature H")):
        ok, reasons = an.verdict(wrong, metrics(), an.Tolerance(), purpose="sampling")
        assert not ok and word in reasons[0]
    assert set(an.failed_checks(moving, metrics(), an.Tolerance())) == {"drift", "fluctuation", "diffusion", "vdos"}
    with pytest.raises(ValueError, match="purpose"):
        an.verdict(moving, metrics(), an.Tolerance(), purpose="speed")


def test_energy_fluctuation_ratio_is_the_conserved_spread_over_the_kinetic_spread():
    t_ps = np.linspace(0.0, 0.2, 401)
    kinetic = 10.0 + np.sin(2 * np.pi * 30.0 * t_ps)          # RMS spread 1/√2
    conserved = 5.0 + 0.3 * t_ps + 0.01 * np.sin(2 * np.pi * 90.0 * t_ps)  # a drift, then RMS 0.01/√2
    assert an.energy_fluctuation_ratio(t_ps, conserved, kinetic) == pytest.approx(0.01, rel=0.02)
    with pytest.raises(DataError, match="NaN"):
        an.energy_fluctuation_ratio(t_ps, np.full_like(t_ps, np.nan), kinetic)


def test_temperature_check_allows_the_noise_and_one_percent():
    base = metrics()
    assert an.verdict(metrics(T_H=302.9), base, an.Tolerance())[0]  # within 1 % of 300 K
    hot = metrics(T_H=310.0)
    assert not an.verdict(hot, base, an.Tolerance())[0]  # 10 K > 3·sqrt(1² + 1²) = 4.2 K
    hot.temperature["H"] = an.TemperatureEstimate(310.0, 4.0)
    assert an.verdict(hot, base, an.Tolerance())[0]  # 10 K < 3·sqrt(4² + 1²) = 12.4 K: noise


def test_vdos_difference_is_zero_for_the_same_spectrum_and_one_for_disjoint_ones():
    assert an.vdos_difference(peak(100.0), peak(100.0)) == pytest.approx(0.0, abs=1e-12)
    assert an.vdos_difference(peak(100.0), peak(300.0)) == pytest.approx(1.0, abs=1e-6)
    shifted = an.vdos_difference(peak(100.0), peak(103.0))
    assert 0.1 < shifted < an.vdos_difference(peak(100.0), peak(110.0)) < 1.0
    # a run sampled more coarsely: compared up to its Nyquist frequency, on the baseline's grid
    f = np.linspace(0.0, 125.0, 126)
    coarse = (f, np.exp(-0.5 * ((f - 100.0) / 5.0) ** 2))
    assert an.vdos_difference(coarse, peak(100.0)) == pytest.approx(0.0, abs=5e-3)  # interpolation only


def test_species_vdos_finds_each_species_frequency():
    t_fs = np.arange(2000) * 0.5
    rng = np.random.default_rng(1)
    phases = rng.uniform(0, 2 * np.pi, size=(1, 6, 3))
    freqs_THz = np.array([100.0, 100.0, 20.0, 100.0, 100.0, 20.0])[None, :, None]
    v = np.sin(2 * np.pi * freqs_THz * t_fs[:, None, None] / 1000.0 + phases)
    spectra = an.species_vdos(v, 0.5, ["H", "H", "O", "H", "H", "O"], np.array([1.0, 1.0, 16.0] * 2))
    for symbol, expected in (("H", 100.0), ("O", 20.0)):
        f, g = spectra[symbol]
        assert f[np.argmax(g)] == pytest.approx(expected, abs=2.5)  # 0.4 ps segments: 2.5 THz resolution


def test_species_temperatures_from_maxwell_boltzmann_velocities():
    from ase import units

    rng = np.random.default_rng(0)
    masses = np.array([1.008, 1.008, 15.999] * 40)
    symbols = ["H", "H", "O"] * 40
    sigma_A_per_fs = np.sqrt(units.kB * 300.0 / masses)[None, :, None] * units.fs
    v = rng.normal(size=(400, len(masses), 3)) * sigma_A_per_fs
    t = an.species_temperatures(v, symbols, masses)
    for symbol in ("H", "O"):
        assert t[symbol].mean_K == pytest.approx(300.0, abs=4 * t[symbol].stderr_K + 1.0)
        assert 0 < t[symbol].stderr_K < 3.0
    v[:, np.array(symbols) == "H"] *= 2.0
    assert an.species_temperatures(v, symbols, masses)["H"].mean_K == pytest.approx(4 * t["H"].mean_K)
    with pytest.raises(ValueError, match="at least 4 frames"):
        an.species_temperatures(v[:2], symbols, masses)


def test_largest_n_within_tolerance_stops_at_first_failure():
    assert an.largest_n_within_tolerance({1: True, 2: True, 4: True, 8: False}) == 4
    assert an.largest_n_within_tolerance({8: (True, []), 2: (True, []), 4: (False, ["drift"]), 16: (True, [])}) == 2
    assert an.largest_n_within_tolerance({1: False, 2: True}) is None
    assert an.largest_n_within_tolerance({}) is None


# ---------------------------------------------------------------- plots


def test_plot_helpers_write_png_files(tmp_path):
    r = flat_rdf()
    t_ps = np.linspace(0, 1, 20)
    f_THz = np.linspace(0, 100, 50)
    paths = [tmp_path / name for name in ("rdf.png", "msd.png", "vdos.png", "energy.png", "forces.png")]
    plots.plot_rdf({"baseline": r, "mts n=4": flat_rdf(0.1)}, paths[0])
    plots.plot_msd({"baseline": (t_ps, 6 * t_ps)}, paths[1])
    plots.plot_vdos({"baseline": (f_THz * an.THZ_TO_CM1, np.exp(-f_THz / 20))}, paths[2])
    plots.plot_energy({"baseline": (t_ps, 1e-3 * t_ps)}, paths[3], per_atom_n=192)
    plots.plot_force_spectrum({"slow": (f_THz, 1 + np.exp(-f_THz / 10))}, paths[4], nyquist_THz=25.0)
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)  # no temp files left


def test_only_atoms_that_diffuse_count_as_mobile():
    """A crystal's atoms vibrate in place (well under 1 Å² of mean squared
    displacement); random walkers with D = 0.5 Å²/ps over 2 ps move ~6 Å²."""
    from mtsmlip.analysis import mobile_species

    rng = np.random.default_rng(0)
    n_frames, dt_ps = 400, 0.005
    lattice = rng.uniform(0, 10, (32, 3))
    vibrating = lattice + rng.normal(0, 0.1, (n_frames, 32, 3))  # <u²> = 0.03 Å²
    steps = rng.normal(0, np.sqrt(2 * 0.5 * dt_ps), (n_frames, 32, 3))
    walking = rng.uniform(0, 10, (32, 3)) + np.cumsum(steps, axis=0)
    positions = np.concatenate([vibrating, walking], axis=1)
    symbols = ["Si"] * 32 + ["Li"] * 32
    assert mobile_species(positions, symbols) == ["Li"]
    assert mobile_species(vibrating, ["Si"] * 32) == []


def test_the_verdict_ignores_the_diffusion_of_species_that_do_not_diffuse():
    from mtsmlip.analysis import DiffusionEstimate, RunMetrics, Tolerance, verdict
    from mtsmlip.compare_report import judged_only

    tolerance = Tolerance(drift_meV_per_atom_per_ps=None, fluctuation_growth=None, rdf_diff=None, temperature_sigma=None, vdos_diff=None)
    base = RunMetrics(diffusion={"Si": DiffusionEstimate(-0.027, 0.001, ()), "Li": DiffusionEstimate(0.5, 0.01, ())})
    run = RunMetrics(diffusion={"Si": DiffusionEstimate(-0.030, 0.001, ()), "Li": DiffusionEstimate(0.5, 0.01, ())})
    ok, reasons = verdict(run, base, tolerance)
    assert not ok and "diffusion Si" in reasons[0]  # judged, the plateau's slope "fails"
    assert verdict(run, judged_only(base, ["Li"]), tolerance) == (True, [])
    faster = RunMetrics(diffusion={"Si": DiffusionEstimate(-0.030, 0.001, ()), "Li": DiffusionEstimate(0.7, 0.01, ())})
    ok, reasons = verdict(faster, judged_only(base, ["Li"]), tolerance)
    assert not ok and reasons[0].startswith("diffusion Li")  # a diffusing species is still judged


# ---------------------------------------------------------------- molecules and crystals


def test_distance_and_angle_distributions_of_a_rigid_molecule_peak_at_its_geometry():
    from ase.build import molecule

    water = molecule("H2O")
    x = np.repeat(water.positions[None], 5, axis=0)
    symbols = water.get_chemical_symbols()
    dist = an.distance_distributions(x, symbols, r_max_A=3.0)
    r_oh = water.get_distance(0, 1)
    r, p = dist[("H", "O")]
    assert abs(r[np.argmax(p)] - r_oh) < 3.0 / 150 and np.trapezoid(p, r) == pytest.approx(1.0, rel=0.02)
    assert set(dist) == {("H", "H"), ("H", "O")}  # no O-O pair in one molecule
    pairs = an.bonded_pairs(water)
    triples = an.angle_triples(pairs, len(water))
    assert sorted(map(tuple, pairs)) == [(0, 1), (0, 2)] and triples.tolist() == [[1, 0, 2]]
    theta, p = an.angle_distributions(x, triples, symbols)["O"]
    assert abs(theta[np.argmax(p)] - water.get_angle(1, 0, 2)) <= 1.0
    assert len(an.dihedral_quads(pairs, len(water))) == 0  # three atoms: no dihedral


def test_dihedrals_agree_with_ase():
    from ase.build import molecule

    peroxide = molecule("H2O2")
    pairs = an.bonded_pairs(peroxide)
    quads = an.dihedral_quads(pairs, len(peroxide))
    assert len(quads) == 1  # H-O-O-H, counted once
    a, b, c, d = quads[0]
    phi, p = an.dihedral_distributions(peroxide.positions[None], quads, peroxide.get_chemical_symbols(), 360)[("O", "O")]
    expected = (peroxide.get_dihedral(a, b, c, d) + 180.0) % 360.0 - 180.0
    assert abs(phi[np.argmax(p)] - expected) <= 1.0


def test_distribution_difference_is_zero_for_the_same_and_one_for_disjoint():
    x = np.linspace(0.05, 9.95, 100)
    one, other = (x, np.where(np.abs(x - 2) < 0.5, 1.0, 0.0)), (x, np.where(np.abs(x - 6) < 0.5, 1.0, 0.0))
    assert an.distribution_difference(one, one) == 0.0
    assert an.distribution_difference(one, other) == pytest.approx(1.0)
    with pytest.raises(DataError, match="different bins"):
        an.distribution_difference(one, (x + 0.1, one[1]))


def test_vibration_amplitude_and_lindemann_ratio_of_harmonic_motion():
    rng = np.random.default_rng(0)
    sites = np.array(list(np.ndindex(3, 3, 3)), float) * 2.5
    sigma_A = 0.1
    x = sites + rng.normal(0, sigma_A, (4000, 27, 3))
    symbols = ["Si"] * 27
    u2 = an.vibration_amplitudes(x, symbols, np.ones(27))["Si"]
    expected_A2 = 3 * sigma_A**2 * (1 - 1 / 27)  # removing the centre-of-mass motion takes 3 of 81 components
    assert u2.mean == pytest.approx(expected_A2, rel=0.01) and u2.stderr < 0.01 * u2.mean
    assert an.lindemann_ratio(x, 2.5) == pytest.approx(np.sqrt(expected_A2) / 2.5, rel=0.01)


def molecule_metrics(shift_A=0.0, energy=-100.0):
    r = np.linspace(0.01, 5.99, 300)
    return an.RunMetrics(drift_meV_per_atom_per_ps=0.1, fluctuation_ratio=0.01, temperature=metrics().temperature, vdos=metrics().vdos,
                         distances={("H", "O"): (r, np.exp(-0.5 * ((r - 1.0 - shift_A) / 0.03) ** 2) / 0.0752)},
                         angles={"O": (np.linspace(1, 179, 90), np.full(90, 1 / 180.0))}, dihedrals={},
                         potential_energy_meV_per_atom=an.BlockMean(energy, 0.05))


@pytest.mark.parametrize("run, word", [(molecule_metrics(shift_A=0.1), "distances"),
                                       (molecule_metrics(energy=-99.0), "energy")])
def test_a_molecule_is_judged_by_its_distributions_and_energy(run, word):
    tolerance = an.Tolerance().for_kind("molecule")
    assert an.verdict(molecule_metrics(shift_A=0.001), molecule_metrics(), tolerance) == (True, [])
    ok, reasons = an.verdict(run, molecule_metrics(), tolerance)
    assert not ok and len(reasons) == 1 and reasons[0].startswith(word)
    assert "rdf" not in tolerance.checks and "diffusion" not in tolerance.checks


def test_a_crystal_is_judged_by_its_vibration_and_lattice_not_diffusion():
    tolerance = an.Tolerance().for_kind("crystal")
    assert tolerance.checks == ["drift", "fluctuation", "temperature", "vdos", "rdf", "vibration", "lattice"]
    base = dataclasses.replace(metrics(), diffusion=None, vibration={"O": an.BlockMean(0.02, 0.0005)}, lindemann=0.05)
    assert an.verdict(dataclasses.replace(base, diffusion={"O": an.DiffusionEstimate(9.0, 0.1, (9.0,))}),
                      base, tolerance) == (True, [])  # a crystal's "diffusion" is not judged
    hot = dataclasses.replace(base, vibration={"O": an.BlockMean(0.03, 0.0005)})
    melted = dataclasses.replace(base, lindemann=0.3)
    assert an.verdict(hot, base, tolerance)[1][0].startswith("vibration O")
    assert an.verdict(melted, base, tolerance)[1][0].startswith("lattice")


def _positions(frames=10, atoms=4):
    return np.random.default_rng(0).normal(size=(frames, atoms, 3))


@pytest.mark.parametrize("call, where, field", [
    (lambda: an.msd(np.zeros((5, 3)), 0.01), "msd", "positions_unwrapped_A"),
    (lambda: an.msd(_positions(), 0.0), "msd", "frame_interval_ps"),
    (lambda: an.unwrap_positions(_positions(), np.zeros((3, 3))), "unwrap_positions", "cells_A"),
    (lambda: an.remove_com_drift(_positions(), np.ones(3)), "remove_com_drift", "masses_amu"),
    (lambda: an.diffusion_groups(_positions(frames=6), 0.01), "diffusion_groups", "positions_unwrapped_A"),
    (lambda: an.diffusion_groups(_positions(frames=40), 0.01, n_groups=0), "diffusion_groups", "n_groups"),
    (lambda: an.diffusion_groups(_positions(frames=8), 0.01, fit_fraction=(0.45, 0.5)), "diffusion_groups",
     "frame_interval_ps"),
    (lambda: an.diffusion_groups(_positions(frames=40), 0.01, fit_fraction=(0.3, 0.8)), "diffusion_groups",
     "fit_fraction"),
    (lambda: an.species_diffusion(_positions(frames=40), ["H"] * 3, None, 0.01), "species_diffusion", "symbols"),
    (lambda: an.mobile_species(_positions(frames=1), ["H"] * 4), "mobile_species", "positions_unwrapped_A"),
    (lambda: an.species_temperatures(_positions(frames=2), ["H"] * 4, np.ones(4)), "species_temperatures",
     "velocities_A_per_fs"),
    (lambda: an.drift_meV_per_atom_per_ps([0.0], [1.0], 3), "drift_meV_per_atom_per_ps", "time_ps"),
    (lambda: an.drift_meV_per_atom_per_ps([0.0, 1.0], [1.0, np.nan], 3), "drift_meV_per_atom_per_ps",
     "conserved_eV"),
    (lambda: an.vacf(_positions() * np.nan, 1.0), "vacf", "velocities_A_per_fs"),
    (lambda: an.vdos(_positions(), -1.0), "power_spectrum", "timestep_fs"),
    (lambda: an.species_vdos(_positions(), 1.0, ["H"] * 4, np.ones(5)), "species_vdos", "masses_amu"),
    (lambda: an.force_spectrum(_positions(frames=1), 1.0), "power_spectrum", "signal"),
    (lambda: an.power_above_frequency_fraction([1.0, 2.0], [0.0, 0.0], 1.5), "power_above_frequency_fraction",
     "power"),
    (lambda: an.rdf([Atoms("H2", positions=[[0, 0, 0], [1, 0, 0]])], 3.0, 10), "frame 0", "cell"),
    (lambda: an.rdf([Atoms("H2", cell=np.eye(3) * 5, pbc=True)], 0.0, 10), "rdf", "r_max_A"),
    (lambda: an.rdf_differences(flat_rdf(), {("C", "C"): flat_rdf()[("O", "O")]}), "rdf_differences", "pairs"),
    (lambda: an.distance_distributions(_positions(atoms=1), ["H"], 3.0), "distance_distributions", "positions_A"),
    (lambda: an.distance_distributions(_positions(), ["H"] * 3, 3.0), "distance_distributions", "symbols"),
    (lambda: an.angle_distributions(_positions(), [[0, 1, 7]], ["H"] * 4), "angle_distributions", "triples"),
    (lambda: an.bonded_pairs(Atoms("H")), "bonded_pairs", "atoms"),
    (lambda: an.vibration_amplitudes(_positions(frames=2), ["H"] * 4, None), "vibration_amplitudes",
     "positions_unwrapped_A"),
    (lambda: an.lindemann_ratio(_positions(), 0.0), "lindemann_ratio", "nearest_neighbour_A"),
    (lambda: an.distributions_difference({}, {"O": (np.ones(2), np.ones(2))}), "distributions_difference", "keys"),
])
def test_each_analysis_refuses_unusable_input_by_name(call, where, field):
    with pytest.raises(DataError) as error:
        call()
    assert where in str(error.value) and f"'{field}'" in str(error.value), str(error.value)
