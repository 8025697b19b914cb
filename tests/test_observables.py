"""Scalar observables against known answers: the first peak of a Gaussian g(r),
the centroid of two-line and harmonic-oscillator spectra, the P2 correlation
time 1/(6 D_r) of rotational diffusion, X–H bonds across a periodic boundary,
and the mean bond lengths of a vibrating molecule."""

import math

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule

from mtsmlip import analysis as an
from mtsmlip.analysis.observables import (hydrogen_bonds, mean_bond_lengths_A, rdf_first_peak, rdf_first_peaks,
                                          reorientation_time_ps, species_vdos_centroids_cm1, vdos_centroid_cm1)
from mtsmlip.errors import DataError

# ---------------------------------------------------------------- g(r) first peak


def gaussian_peak(r, height, r0, sigma):
    return 1.0 + (height - 1.0) * np.exp(-(r - r0) ** 2 / (2 * sigma**2))


@pytest.mark.parametrize("r0", [2.785, 2.8, 2.8137])
def test_first_peak_of_a_gaussian_off_the_bins(r0):
    width = 0.05
    r = np.arange(0.5 * width, 8.0, width)  # centres at 0.025 + k·0.05: none at r0
    assert np.min(np.abs(r - r0)) > 0.1 * width
    height, position = rdf_first_peak(r, gaussian_peak(r, 3.0, r0, 0.15))
    assert abs(position - r0) < 0.1 * width
    assert height == pytest.approx(3.0, rel=0.01)


def test_no_peak_reaching_min_height_gives_none():
    r = np.linspace(0.05, 6.0, 120)
    assert rdf_first_peak(r, gaussian_peak(r, 1.15, 3.0, 0.2)) is None
    assert rdf_first_peak(r, gaussian_peak(r, 1.15, 3.0, 0.2), min_height=1.1) is not None


def test_small_bump_before_the_first_shell_is_skipped():
    r = np.arange(0.01, 8.0, 0.02)
    g = gaussian_peak(r, 2.5, 2.9, 0.15) + 0.1 * np.exp(-(r - 1.8) ** 2 / (2 * 0.05**2))
    assert g[np.argmin(np.abs(r - 1.8))] > g[np.argmin(np.abs(r - 1.9))]  # the bump is a local maximum
    height, position = rdf_first_peak(r, g)
    assert position == pytest.approx(2.9, abs=0.002)
    assert height == pytest.approx(2.5, rel=0.01)


def test_first_peaks_of_an_rdf_dict_leave_out_pairs_without_a_peak():
    r = np.linspace(0.05, 6.0, 120)
    rdf = {("H", "O"): (r, gaussian_peak(r, 1.8, 1.85, 0.1)), ("O", "O"): (r, gaussian_peak(r, 2.8, 2.8, 0.15)),
           ("H", "H"): (r, np.ones_like(r))}
    peaks = rdf_first_peaks(rdf)
    assert set(peaks) == {("H", "O"), ("O", "O")}
    assert peaks[("O", "O")][1] == pytest.approx(2.8, abs=0.005)
    assert peaks[("H", "O")][1] == pytest.approx(1.85, abs=0.005)


# ---------------------------------------------------------------- VDOS centroid


def test_centroid_of_two_equal_lines_is_their_midpoint():
    freq = np.linspace(0.0, 60.0, 6001)
    dos = np.exp(-(freq - 10.0) ** 2 / (2 * 0.2**2)) + np.exp(-(freq - 30.0) ** 2 / (2 * 0.2**2))
    assert vdos_centroid_cm1(freq, dos) == pytest.approx(20.0 * an.THZ_TO_CM1, rel=0.005)
    # unequal weights move it: 3:1 -> (3·10 + 30) / 4 = 15 THz
    dos_31 = 3 * np.exp(-(freq - 10.0) ** 2 / (2 * 0.2**2)) + np.exp(-(freq - 30.0) ** 2 / (2 * 0.2**2))
    assert vdos_centroid_cm1(freq, dos_31) == pytest.approx(15.0 * an.THZ_TO_CM1, rel=0.005)


def test_harmonic_oscillators_have_their_frequency_as_centroid():
    rng = np.random.default_rng(3)
    timestep_fs, n_frames = 1.0, 4000
    symbols = np.array(["O"] * 4 + ["H"] * 8)
    nu_THz = np.where(symbols == "H", 100.0, 20.0)  # an O–H stretch and a slow mode
    t_ps = np.arange(n_frames) * timestep_fs / 1000.0
    amplitude = rng.uniform(0.5, 1.5, (len(symbols), 3))
    phase = rng.uniform(0, 2 * np.pi, (len(symbols), 3))
    v = amplitude * np.cos(2 * np.pi * nu_THz[None, :, None] * t_ps[:, None, None] + phase)
    masses = np.where(symbols == "H", 1.008, 15.999)
    centroids = species_vdos_centroids_cm1(an.species_vdos(v, timestep_fs, symbols, masses))
    assert set(centroids) == {"H", "O"}
    assert centroids["H"] == pytest.approx(100.0 * an.THZ_TO_CM1, rel=0.03)
    assert centroids["O"] == pytest.approx(20.0 * an.THZ_TO_CM1, rel=0.03)


# ---------------------------------------------------------------- reorientation


def rotational_diffusion(rng, n_bonds, n_frames, dt_ps, D_r_per_ps):
    """Unit vectors (T, M, 3) rotated each step about a random axis by the
    Rodrigues formula, rotation vector ~ N(0, 2·D_r·dt) per component:
    C2(τ) = exp(−6 D_r τ)."""
    u = rng.normal(size=(n_bonds, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    w = rng.normal(scale=np.sqrt(2 * D_r_per_ps * dt_ps), size=(n_frames, n_bonds, 3))
    angle = np.linalg.norm(w, axis=-1, keepdims=True)
    axis, cos, sin = w / angle, np.cos(angle), np.sin(angle)
    out = np.empty((n_frames, n_bonds, 3))
    out[0] = u
    for t in range(1, n_frames):
        k = axis[t]
        u = u * cos[t] + np.cross(k, u) * sin[t] + k * np.sum(k * u, axis=1, keepdims=True) * (1 - cos[t])
        out[t] = u
    return out


def bonds_along(unit_vectors, bond_A, origins_A):
    """Positions (T, 2M, 3) of M bonds i -> i + M of length bond_A from origins_A (T, M, 3)."""
    n = unit_vectors.shape[1]
    positions = np.concatenate([origins_A, origins_A + bond_A * unit_vectors], axis=1)
    return positions, np.stack([np.arange(n), np.arange(n) + n], axis=1)


@pytest.fixture(scope="module")
def diffusing_bonds():
    rng = np.random.default_rng(11)
    u = rotational_diffusion(rng, n_bonds=128, n_frames=4000, dt_ps=0.01, D_r_per_ps=1.0 / 6.0)
    origins = rng.uniform(0, 20, (1, 128, 3)) + np.cumsum(rng.normal(scale=0.02, size=(4000, 128, 3)), axis=0)
    return bonds_along(u, 0.97, origins)


def test_rotational_diffusion_time_is_one_over_six_Dr(diffusing_bonds):
    positions, bonds = diffusing_bonds
    assert reorientation_time_ps(positions, bonds, frame_interval_ps=0.01) == pytest.approx(1.0, rel=0.10)
    # the same motion sampled 4x more sparsely: still 1/(6 D_r)
    assert reorientation_time_ps(positions[::4], bonds, frame_interval_ps=0.04) == pytest.approx(1.0, rel=0.10)


def test_c2_at_a_fixed_lag_is_exp_minus_six_Dr_lag(diffusing_bonds):
    """C2(0.5 ps) of rotational diffusion is exp(−6 D_r · 0.5 ps); a run shorter
    than the reorientation time (1 ps here: 200 frames of 0.01 ps = 2 ps, half
    of it 1 ps) still gives it, and sampled 4x more sparsely too."""
    positions, bonds = diffusing_bonds
    expected = math.exp(-6 * (1.0 / 6.0) * 0.5)
    assert an.reorientation_c2(positions, bonds, 0.01) == pytest.approx(expected, abs=0.02)
    assert an.reorientation_c2(positions[:200], bonds, 0.01) == pytest.approx(expected, abs=0.05)
    assert an.reorientation_c2(positions[::4], bonds, 0.04) == pytest.approx(expected, abs=0.02)
    assert an.reorientation_c2(positions, bonds, 0.01, lag_ps=0.1) > an.reorientation_c2(positions, bonds, 0.01)
    with pytest.raises(DataError, match="positions_A.*at most half the run"):
        an.reorientation_c2(positions[:90], bonds, 0.01)  # 0.5 ps is more than half of 0.89 ps


def test_c2_of_wrapped_bonds_uses_the_minimum_image():
    rng = np.random.default_rng(8)
    u = rotational_diffusion(rng, n_bonds=16, n_frames=300, dt_ps=0.01, D_r_per_ps=0.5)
    cell = np.diag([8.0, 9.0, 10.0])
    positions, bonds = bonds_along(u, 1.0, np.broadcast_to(rng.uniform(-0.5, 0.5, (16, 3)), u.shape).copy())
    frac = positions @ np.linalg.inv(cell)
    wrapped = (frac - np.floor(frac)) @ cell
    c2 = an.reorientation_c2(positions, bonds, 0.01)
    assert an.reorientation_c2(wrapped, bonds, 0.01, cell_A=cell) == pytest.approx(c2, abs=1e-12)


def test_faster_rotation_gives_a_shorter_time():
    rng = np.random.default_rng(5)
    u = rotational_diffusion(rng, n_bonds=64, n_frames=2000, dt_ps=0.01, D_r_per_ps=1.0 / 1.5)  # τ2 = 0.25 ps
    positions, bonds = bonds_along(u, 1.0, np.zeros_like(u))
    assert reorientation_time_ps(positions, bonds, 0.01, fit_start_ps=0.05) == pytest.approx(0.25, rel=0.10)


def test_rigid_bonds_never_decorrelate():
    rng = np.random.default_rng(2)
    u = rng.normal(size=(1, 16, 3))
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    drift = np.cumsum(rng.normal(scale=0.05, size=(400, 16, 3)), axis=0)  # translation only
    positions, bonds = bonds_along(np.broadcast_to(u, (400, 16, 3)), 1.1, drift)
    assert reorientation_time_ps(positions, bonds, 0.01) == math.inf


def test_bond_split_across_the_boundary_uses_the_minimum_image():
    rng = np.random.default_rng(7)
    u = rotational_diffusion(rng, n_bonds=32, n_frames=600, dt_ps=0.01, D_r_per_ps=1.0)
    cell = np.array([[9.0, 0.0, 0.0], [1.5, 8.0, 0.0], [0.5, 0.8, 10.0]])  # triclinic
    origins = np.broadcast_to(rng.uniform(-0.5, 0.5, (32, 3)), u.shape)  # around the corner at 0
    positions, bonds = bonds_along(u, 1.0, np.array(origins))  # atoms on both sides of the faces at 0
    frac = positions @ np.linalg.inv(cell)
    wrapped = (frac - np.floor(frac)) @ cell
    assert np.abs(wrapped - positions).max() > 5.0  # some bonds really are split across the boundary
    unwrapped_time = reorientation_time_ps(positions, bonds, 0.01)
    assert math.isfinite(unwrapped_time)
    assert reorientation_time_ps(wrapped, bonds, 0.01, cell_A=cell) == pytest.approx(unwrapped_time, rel=1e-9)
    assert reorientation_time_ps(wrapped, bonds, 0.01) != pytest.approx(unwrapped_time, rel=0.05)


def test_water_has_two_OH_bonds():
    water = molecule("H2O")
    pairs = hydrogen_bonds(water)
    symbols = np.array(water.get_chemical_symbols())
    assert pairs.shape == (2, 2)
    assert set(symbols[pairs[:, 0]]) == {"O"} and set(symbols[pairs[:, 1]]) == {"H"}
    assert sorted(pairs[:, 1].tolist()) == [i for i, s in enumerate(symbols) if s == "H"]


def test_hydrogen_across_the_boundary_is_bonded_to_its_oxygen():
    # O near x = 0, its H at x = 4.33 (0.97 Å away through the face), and a free H in the middle
    atoms = Atoms("OHH", positions=[[0.3, 2.5, 2.5], [4.33, 2.5, 2.5], [2.5, 2.5, 4.0]], cell=[5.0] * 3, pbc=True)
    assert hydrogen_bonds(atoms).tolist() == [[0, 1]]
    atoms.pbc = False  # without the periodic image the H is 4 Å away
    assert hydrogen_bonds(atoms).shape == (0, 2)


def test_hydrogen_bonds_pick_the_nearest_heavy_atom_and_none_without_one():
    atoms = Atoms("NHO", positions=[[0, 0, 0], [1.2, 0, 0], [2.2, 0, 0]])  # H 1.2 Å from N, 1.0 Å from O
    assert hydrogen_bonds(atoms).tolist() == [[2, 1]]
    assert hydrogen_bonds(molecule("H2")).shape == (0, 2)


# ---------------------------------------------------------------- bond lengths


def test_vibrating_molecule_has_its_equilibrium_bond_lengths():
    rng = np.random.default_rng(4)
    r_CH, r_CN = 1.07, 1.16
    n_frames, period = 400, 40  # 10 whole periods
    phase = 2 * np.pi * np.arange(n_frames) / period
    ch, cn = r_CH + 0.06 * np.sin(phase), r_CN + 0.04 * np.cos(phase)
    axis_positions = np.stack([np.zeros(n_frames), cn, -ch], axis=1)  # C, N, H on a line
    positions = np.zeros((n_frames, 3, 3))
    for t in range(n_frames):  # tumbling and drifting as a whole
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        positions[t] = axis_positions[t][:, None] * q[0] + rng.normal(size=3)
    hcn = Atoms("CNH", positions=positions[0])
    pairs = an.bonded_pairs(hcn)
    means = mean_bond_lengths_A(positions, pairs, hcn.get_chemical_symbols())
    assert set(means) == {("C", "H"), ("C", "N")}
    assert means[("C", "H")] == pytest.approx(r_CH, abs=1e-9)
    assert means[("C", "N")] == pytest.approx(r_CN, abs=1e-9)


def test_bond_lengths_pool_bonds_of_one_species_pair():
    water = molecule("H2O")
    positions = np.repeat(water.positions[None], 3, axis=0)
    means = mean_bond_lengths_A(positions, an.bonded_pairs(water), water.get_chemical_symbols())
    assert list(means) == [("H", "O")]
    assert means[("H", "O")] == pytest.approx(np.mean(water.get_distances(0, [1, 2])))


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("call, match", [
    (lambda: rdf_first_peak(np.arange(5.0), np.ones(4)), "rdf_first_peak, field 'g'"),
    (lambda: rdf_first_peak(np.arange(5.0)[::-1], np.ones(5)), "rdf_first_peak, field 'r_A'"),
    (lambda: rdf_first_peaks({("O", "O"): np.ones(5)}), "rdf_first_peaks, field 'rdf'"),
    (lambda: vdos_centroid_cm1(np.arange(5.0), np.zeros(5)), "vdos_centroid_cm1, field 'dos'"),
    (lambda: vdos_centroid_cm1(np.arange(5.0), np.ones((5, 2))), "vdos_centroid_cm1, field 'dos'"),
    (lambda: reorientation_time_ps(np.zeros((7, 2, 3)) + [[0, 0, 0], [1, 0, 0]], [[0, 1]], 0.1),
     "reorientation_time_ps, field 'positions_A'"),
    (lambda: reorientation_time_ps(np.zeros((100, 2)), [[0, 1]], 0.1), "reorientation_time_ps, field 'positions_A'"),
    (lambda: reorientation_time_ps(np.zeros((20, 2, 3)) + [[0, 0, 0], [1, 0, 0]], [[0, 1]], 0.01),
     "reorientation_time_ps, field 'positions_A'"),  # lags up to 0.1 ps: nothing beyond fit_start_ps
    (lambda: reorientation_time_ps(np.zeros((20, 2, 3)) + [[0, 0, 0], [1, 0, 0]], [[0, 2]], 0.1),
     "reorientation_time_ps, field 'bonds'"),
    (lambda: reorientation_time_ps(np.zeros((20, 2, 3)), [[0, 1]], 0.1), "reorientation_time_ps, field 'bonds'"),
    (lambda: reorientation_time_ps(np.zeros((20, 2, 3)) + [[0, 0, 0], [1, 0, 0]], np.zeros((0, 2), int), 0.1),
     "reorientation_time_ps, field 'bonds'"),
    (lambda: reorientation_time_ps(np.zeros((20, 2, 3)) + [[0, 0, 0], [1, 0, 0]], [[0, 1]], 0.0),
     "reorientation_time_ps, field 'frame_interval_ps'"),
    (lambda: reorientation_time_ps(np.zeros((20, 2, 3)) + [[0, 0, 0], [1, 0, 0]], [[0, 1]], 0.1,
                                   cell_A=np.zeros((3, 3))), "reorientation_time_ps, field 'cell_A'"),
    (lambda: hydrogen_bonds(np.zeros((3, 3))), "hydrogen_bonds, field 'atoms'"),
    (lambda: mean_bond_lengths_A(np.zeros((4, 3, 3)), [[0, 1]], ["O", "H"]), "mean_bond_lengths_A, field 'symbols'"),
    (lambda: mean_bond_lengths_A(np.zeros((4, 3, 3)), [[0, 3]], ["O", "H", "H"]), "mean_bond_lengths_A, field 'pairs'"),
    (lambda: mean_bond_lengths_A(np.zeros((4, 3)), [[0, 1]], ["O", "H", "H"]),
     "mean_bond_lengths_A, field 'positions_A'"),
])
def test_bad_input_names_function_and_field(call, match):
    with pytest.raises(DataError, match=match):
        call()
