"""Time correlations and spectra: VACF, vibrational density of states, and the
scale-separation analysis of forces along a trajectory.

Frequencies are ordinary (not angular): ν in THz (1/ps) and wavenumbers in
cm⁻¹ (1 THz = 33.356 cm⁻¹). Sampled every ``timestep_fs``, the highest
frequency a signal can carry is its Nyquist frequency 1/(2·timestep) — which
for r-RESPA's outer step Δt is :func:`nyquist_THz`; slow-force power above it
is what the outer step cannot follow (aliasing / resonance).
"""

from __future__ import annotations

import numpy as np
import scipy.signal

from ..errors import DataError
from .frames import check_per_atom, check_positive, check_trajectory

THZ_TO_CM1 = 1e12 / 2.99792458e10  # 1 THz in cm^-1 (ν / c)
PER_FS_TO_THZ = 1000.0


def nyquist_THz(timestep_fs: float) -> float:
    """Nyquist frequency 1/(2·timestep) of a signal sampled every ``timestep_fs``."""
    return PER_FS_TO_THZ / (2.0 * timestep_fs)


def autocorrelation(x: np.ndarray, n_lags: int) -> np.ndarray:
    """Unbiased time autocorrelation C(m) = Σ_t x(t)·x(t+m) / (T − m), per
    column, by FFT. x: (T, ...) -> (n_lags, ...), n_lags ≤ T."""
    T = len(x)
    spectrum = np.fft.rfft(x, n=2 * T, axis=0)
    corr = np.fft.irfft(spectrum * np.conj(spectrum), n=2 * T, axis=0)[:n_lags]
    return corr / (T - np.arange(n_lags)).reshape((-1,) + (1,) * (x.ndim - 1))


def _atom_average(per_atom: np.ndarray, weights) -> np.ndarray:
    """(L, N, 3) -> (L,): sum over components, weighted mean over atoms."""
    w = np.ones(per_atom.shape[1]) if weights is None else np.asarray(weights, float)
    return np.einsum("lni,n->l", per_atom, w / w.sum())


def _correlation(signal, timestep_fs, weights, max_lag, normalize, where="_correlation", field="signal"):
    signal = check_trajectory(signal, where, field, min_frames=2)
    check_positive(timestep_fs, where, "timestep_fs")
    if weights is not None:
        check_per_atom(weights, signal.shape[1], where, "masses_amu")
    if max_lag is not None and not 0 <= int(max_lag) < len(signal):
        raise DataError(f"{where}, field 'max_lag': must be in [0, {len(signal) - 1}] (got {max_lag})")
    n_lags = (len(signal) // 2 if max_lag is None else max_lag) + 1
    c = _atom_average(autocorrelation(np.asarray(signal, float), n_lags), weights)
    return np.arange(n_lags) * timestep_fs, (c / c[0] if normalize else c)


def vacf(velocities_A_per_fs, timestep_fs, masses_amu=None, max_lag=None, normalize=True):
    """Velocity autocorrelation <v_i(0)·v_i(t)>, averaged over atoms (mass-weighted
    Σ m_i <v_i(0)·v_i(t)> / Σ m_i when masses are given) and time origins.

    velocities_A_per_fs: (T, N, 3). Returns lag_time_fs (L,), C (L,) with
    L = max_lag + 1 (default T // 2 + 1); C(0) = 1 if normalize, else Å²/fs².
    """
    return _correlation(velocities_A_per_fs, timestep_fs, masses_amu, max_lag, normalize, "vacf", "velocities_A_per_fs")


def force_autocorrelation(forces_eV_per_A, timestep_fs, max_lag=None, normalize=True):
    """Autocorrelation of force fluctuations (each atom's mean force removed),
    averaged over atoms and components. forces: (T, N, 3).
    Returns lag_time_fs (L,), C (L,) (C(0) = 1 if normalize, else (eV/Å)²)."""
    forces = check_trajectory(forces_eV_per_A, "force_autocorrelation", "forces_eV_per_A", min_frames=2)
    return _correlation(forces - forces.mean(axis=0), timestep_fs, None, max_lag, normalize,
                        "force_autocorrelation", "forces_eV_per_A")


def power_spectrum(signal, timestep_fs, weights=None, segment_length=None, detrend="constant"):
    """One-sided power spectral density of (T, N, 3) signals (Welch, Hann window),
    summed over components and weighted-averaged over atoms.

    segment_length: frames per Welch segment (default all T: one windowed
    periodogram; shorter segments trade resolution for less noise).
    detrend: 'constant' removes each series' mean (scipy.signal.welch), False keeps it.
    Returns freq_THz (F,), power (F,) in signal units² / THz.
    """
    signal = check_trajectory(signal, "power_spectrum", "signal", min_frames=2)
    check_positive(timestep_fs, "power_spectrum", "timestep_fs")
    if weights is not None:
        check_per_atom(weights, signal.shape[1], "power_spectrum", "weights")
    nperseg = len(signal) if segment_length is None else segment_length
    if not 2 <= int(nperseg) <= len(signal):
        raise DataError(f"power_spectrum, field 'segment_length': must be in [2, {len(signal)}] (got {nperseg})")
    freq_per_fs, psd = scipy.signal.welch(signal, fs=1.0 / timestep_fs, window="hann", nperseg=nperseg,
                                          detrend=detrend, scaling="density", axis=0)
    return freq_per_fs * PER_FS_TO_THZ, _atom_average(psd, weights) / PER_FS_TO_THZ


def vdos(velocities_A_per_fs, timestep_fs, masses_amu=None, segment_length=None):
    """Vibrational density of states: power spectrum of the velocities (the
    Fourier transform of the VACF, Wiener–Khinchin), mass-weighted if masses
    are given, normalised to unit area over THz. velocities: (T, N, 3).
    Returns freq_THz (F,), freq_cm1 (F,), dos (F,) in 1/THz."""
    freq_THz, power = power_spectrum(velocities_A_per_fs, timestep_fs, masses_amu, segment_length, detrend=False)
    dos = power / np.trapezoid(power, freq_THz)
    return freq_THz, freq_THz * THZ_TO_CM1, dos


VDOS_SEGMENT_FS = 400.0  # Welch segments of 0.4 ps: 2.5 THz (83 cm⁻¹) resolution, several segments per ps


def species_vdos(velocities_A_per_fs, timestep_fs, symbols, masses_amu, segment_fs=VDOS_SEGMENT_FS) -> dict:
    """{symbol: (freq_THz, dos)}: each species' VDOS (mass-weighted, unit area)
    from Welch segments of ``segment_fs`` (fewer if the run is shorter), so that
    runs sampled at different steps have the same frequency resolution."""
    v = check_trajectory(velocities_A_per_fs, "species_vdos", "velocities_A_per_fs", min_frames=2)
    symbols = check_per_atom(symbols, v.shape[1], "species_vdos", "symbols")
    masses = check_per_atom(masses_amu, v.shape[1], "species_vdos", "masses_amu").astype(float)
    segment = max(2, min(len(v), int(round(segment_fs / timestep_fs))))
    out = {}
    for symbol in sorted(set(symbols.tolist())):
        select = symbols == symbol
        freq_THz, _, dos = vdos(v[:, select], timestep_fs, masses[select], segment)
        out[symbol] = (freq_THz, dos)
    return out


def vdos_difference(run, baseline) -> float:
    """Half the L1 distance between two VDOS (freq_THz, dos), ½∫|g_run − g_base| dν,
    over the frequencies both resolve (up to the lower Nyquist frequency; each
    renormalised to unit area there): 0 for the same spectrum, 1 for spectra that
    do not overlap. A run sampled every Δt folds power above 1/(2Δt) back below
    it, so the comparison is meaningful only while 1/(2Δt) lies above the
    highest vibration (O–H stretch ≈ 110 THz: Δt ≤ 4.5 fs)."""
    f_run, g_run = (np.asarray(a, float) for a in run)
    f_base, g_base = (np.asarray(a, float) for a in baseline)
    top = min(f_run[-1], f_base[-1])
    grid = f_base[f_base <= top]
    if len(grid) < 2:
        raise DataError("vdos_difference, field 'freq_THz': the two spectra share fewer than two frequencies")
    a, b = np.interp(grid, f_run, g_run), g_base[: len(grid)]
    a, b = a / np.trapezoid(a, grid), b / np.trapezoid(b, grid)
    return float(0.5 * np.trapezoid(np.abs(a - b), grid))


def force_spectrum(forces_eV_per_A, timestep_fs, segment_length=None):
    """Power spectrum of the force fluctuations along a trajectory (mean force
    per atom removed), averaged over atoms, summed over components.
    forces: (T, N, 3) sampled every ``timestep_fs``.
    Returns freq_THz (F,), power (F,) in (eV/Å)²/THz."""
    return power_spectrum(forces_eV_per_A, timestep_fs, None, segment_length, detrend="constant")


def power_above_frequency_fraction(freq_THz, power, f_cut_THz) -> float:
    """Fraction of the total power at frequencies strictly above ``f_cut_THz``
    (uniform frequency grid, as from :func:`force_spectrum`). Use
    ``f_cut_THz = nyquist_THz(outer_timestep_fs)`` for the r-RESPA outer step."""
    freq_THz, power = np.asarray(freq_THz, float), np.asarray(power, float)
    if freq_THz.ndim != 1 or freq_THz.shape != power.shape or not power.sum() > 0:
        raise DataError(f"power_above_frequency_fraction, field 'power': need a spectrum with positive total power, "
                        f"one value per frequency (got shapes {freq_THz.shape}, {power.shape})")
    return float(power[freq_THz > f_cut_THz].sum() / power.sum())
