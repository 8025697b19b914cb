"""Unwrapping, mean-squared displacement, self-diffusion, energy drift.

Conventions: positions (T, N, 3) in Å, T frames equally spaced by
``frame_interval_ps``; D in Å²/ps (1 Å²/ps = 1e-8 m²/s = 1e-4 cm²/s).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from ase import Atoms

from ..errors import DataError
from . import frames as _frames
from .frames import check_per_atom, check_positive, check_trajectory
from .spectra import autocorrelation


def unwrap_positions(positions_wrapped_A: np.ndarray, cells_A: np.ndarray) -> np.ndarray:
    """Undo periodic wrapping: (T, N, 3) wrapped -> (T, N, 3) continuous paths.

    cells_A: (3, 3) or (T, 3, 3), rows are lattice vectors. Works in fractional
    coordinates, so triclinic cells are fine. Assumes no atom moves more than
    half a box length between consecutive frames.
    """
    positions_wrapped_A = check_trajectory(positions_wrapped_A, "unwrap_positions", "positions_wrapped_A")
    cells_A = np.asarray(cells_A, float)
    if cells_A.shape not in ((3, 3), (len(positions_wrapped_A), 3, 3)) or abs(np.linalg.det(cells_A)).min() < 1e-12:
        raise DataError(f"unwrap_positions, field 'cells_A': need a (3, 3) or (T, 3, 3) cell of non-zero volume "
                        f"(got shape {cells_A.shape}); an isolated molecule has no cell: its positions need no unwrapping")
    cells_A = np.broadcast_to(cells_A, (len(positions_wrapped_A), 3, 3))
    frac = np.einsum("tni,tij->tnj", positions_wrapped_A, np.linalg.inv(cells_A))
    step = np.diff(frac, axis=0)
    step -= np.round(step)
    frac_unwrapped = frac[0] + np.concatenate([np.zeros_like(frac[:1]), np.cumsum(step, axis=0)])
    return np.einsum("tnj,tji->tni", frac_unwrapped, cells_A)


def unwrapped_positions_A(frames: Sequence[Atoms]) -> np.ndarray:
    """Continuous positions (T, N, 3), Å, from a trajectory of (possibly wrapped) frames."""
    return unwrap_positions(_frames.positions_A(frames), _frames.cells_A(frames))


def remove_com_drift(positions_A: np.ndarray, masses_amu=None) -> np.ndarray:
    """Subtract each frame's centre-of-mass displacement from frame 0: (T, N, 3)."""
    positions_A = check_trajectory(positions_A, "remove_com_drift", "positions_A")
    if masses_amu is not None:
        check_per_atom(masses_amu, positions_A.shape[1], "remove_com_drift", "masses_amu")
    weights = np.ones(positions_A.shape[1]) if masses_amu is None else np.asarray(masses_amu, float)
    com_A = np.einsum("tni,n->ti", positions_A, weights / weights.sum())
    return positions_A - (com_A - com_A[0])[:, None, :]


def msd(positions_unwrapped_A, frame_interval_ps, masses_amu=None, select=None,
        remove_com=True, max_lag=None, per_axis=False):
    """Mean-squared displacement averaged over atoms and all time origins.

    positions_unwrapped_A: (T, N, 3). masses_amu: (N,) for the centre-of-mass
    correction (equal masses if None). select: boolean mask or indices of the
    atoms to average over (all if None); the COM uses all atoms.
    Returns lag_time_ps (L,), msd_A2 (L,), L = max_lag + 1 (default T // 2 + 1);
    per_axis: msd_A2 (L, 3), the MSD along x, y and z (their sum is the MSD).
    Uses the FFT algorithm, O(T log T): MSD(m) = S1(m) − 2 S2(m).
    """
    x = check_trajectory(positions_unwrapped_A, "msd", "positions_unwrapped_A", min_frames=2)
    check_positive(frame_interval_ps, "msd", "frame_interval_ps")
    if max_lag is not None and not 0 <= int(max_lag) < len(x):
        raise DataError(f"msd, field 'max_lag': must be in [0, {len(x) - 1}] for {len(x)} frames (got {max_lag})")
    if remove_com:
        x = remove_com_drift(x, masses_amu)
    if select is not None:
        x = x[:, select]
    x = x - x[0]  # displacements only; keeps S1 − 2·S2 free of cancellation for far-off origins
    if x.shape[1] == 0:
        raise DataError("msd, field 'select': selects no atom")
    n_lags = (len(x) // 2 if max_lag is None else max_lag) + 1
    if per_axis:
        msd_A2 = np.stack([_msd_fft(x[:, :, axis], n_lags) for axis in range(3)], axis=1) / x.shape[1]
    else:
        msd_A2 = _msd_fft(x.reshape(len(x), -1), n_lags) / x.shape[1]
    return np.arange(n_lags) * frame_interval_ps, msd_A2


def _msd_fft(x: np.ndarray, n_lags: int) -> np.ndarray:
    """Σ over columns of x (T, M) of <|x(t+m) − x(t)|²>_t, for m < n_lags."""
    T = len(x)
    sq = np.sum(x**2, axis=1)
    prefix = np.concatenate([[0.0], np.cumsum(sq)])[:n_lags]
    suffix = np.concatenate([[0.0], np.cumsum(sq[::-1])])[:n_lags]
    s1 = (2 * sq.sum() - prefix - suffix) / (T - np.arange(n_lags))
    s2 = autocorrelation(x, n_lags).sum(axis=1)
    return s1 - 2 * s2


@dataclass(frozen=True)
class DiffusionEstimate:
    """Self-diffusion coefficient, mean ± standard error of the estimates of
    groups of atoms along x, y and z (per_group: group 1's x, y, z, group 2's...), Å²/ps."""

    D_A2_per_ps: float
    stderr_A2_per_ps: float
    per_group_A2_per_ps: tuple[float, ...]


# Lags the MSD is fitted over, as fractions of the run, of at most FIT_SPAN_PS of it.
# The MSD of a liquid grows linearly only past the velocity's memory. In water at
# 300 K (the shipped baseline, 2 ps, Bussi) the MSD's local slope gives D = 0.50,
# 0.39, then 0.18-0.28 Å²/ps at lags 0.05-0.15, 0.15-0.3, then 0.3-1 ps, for O and H
# alike: the ballistic start, the cage's rattling and the librations take the first
# 0.3 ps, so runs of 1.5 ps and more are fitted past them (compare's report notes a
# fit that starts earlier). Lags past half the run average over too few time origins.
# The span's cap keeps the window at 1-2.5 ps in longer runs, so that their error
# falls as 1/√(run length) (with the window growing with the run, it would not).
FIT_FRACTION = (0.2, 0.5)
FIT_SPAN_PS = 5.0


def diffusion_from_msd(lag_time_ps, msd_A2, fit_start_ps, fit_end_ps, n_dims=3) -> float:
    """D = slope / (2·n_dims) of a straight line (free intercept) through the MSD
    for lag times in [fit_start_ps, fit_end_ps]. Shapes: (L,), (L,). Å²/ps."""
    window = (lag_time_ps >= fit_start_ps) & (lag_time_ps <= fit_end_ps)
    if window.sum() < 2:
        raise DataError(f"diffusion_from_msd, field 'fit window': [{fit_start_ps}, {fit_end_ps}] ps holds fewer "
                        "than 2 MSD points (a run too short for a diffusion coefficient)")
    slope, _ = np.polyfit(lag_time_ps[window], msd_A2[window], 1)
    return float(slope / (2 * n_dims))


def diffusion_groups(positions_unwrapped_A, frame_interval_ps, n_groups=8, fit_fraction=FIT_FRACTION,
                     masses_amu=None, select=None) -> DiffusionEstimate:
    """D with an error bar from the whole run (T, N, 3): the MSD over every time
    origin of the run (centre-of-mass drift of all atoms removed), fitted over
    lags ``fit_fraction`` × the run's duration (:data:`FIT_FRACTION`; runs longer
    than :data:`FIT_SPAN_PS` at the lags of a run of that length, widened to hold
    at least :data:`MIN_FIT_LAGS` saved frames), D = slope / 2 along each
    Cartesian direction of each of ``n_groups`` groups of the selected atoms
    (contiguous in index, so that a molecule's atoms mostly share one; at most
    one group per atom). Returns the mean of those estimates ± their standard
    error: 3·n_groups estimates, 3 even for one atom (an isotropic liquid's
    directions move independently).

    Fitting the whole run's MSD, not the MSDs of short time blocks, keeps the fit
    at lags where the motion diffuses: blocks of a 1.5 ps run are 0.4 ps long,
    and their fits at 0.04-0.19 ps measured mostly the cage's rattling and the
    hydrogens' librations. The error bar misses what the groups share (the
    run's collective motion, a global thermostat's kicks); independent repeats
    (``compare --repeats``) see that too."""
    x = check_trajectory(positions_unwrapped_A, "diffusion_groups", "positions_unwrapped_A", min_frames=8)
    check_positive(frame_interval_ps, "diffusion_groups", "frame_interval_ps")
    if int(n_groups) < 1:
        raise DataError(f"diffusion_groups, field 'n_groups': need at least 1 group (got {n_groups})")
    f0, f1 = fit_fraction
    if not 0 <= f0 < f1 <= 0.5:
        raise DataError(f"diffusion_groups, field 'fit_fraction': need 0 ≤ start < end ≤ 0.5 (got {fit_fraction})")
    atoms = np.arange(x.shape[1]) if select is None else np.arange(x.shape[1])[select]
    if len(atoms) == 0:
        raise DataError("diffusion_groups, field 'select': selects no atom")
    start_ps, end_ps = fit_lags_ps(len(x), frame_interval_ps, fit_fraction)
    x = remove_com_drift(x, masses_amu)
    max_lag = min(frames_within(end_ps, frame_interval_ps), len(x) // 2)
    estimates = []
    for group in np.array_split(atoms, min(int(n_groups), len(atoms))):
        lag_ps, msd_A2 = msd(x, frame_interval_ps, select=group, remove_com=False, max_lag=max_lag, per_axis=True)
        estimates += [diffusion_from_msd(lag_ps, msd_A2[:, axis], start_ps, end_ps, n_dims=1) for axis in range(3)]
    stderr = float(np.std(estimates, ddof=1) / np.sqrt(len(estimates)))
    return DiffusionEstimate(float(np.mean(estimates)), stderr, tuple(estimates))


MIN_FIT_LAGS = 5


def frames_within(lag_ps: float, frame_interval_ps: float) -> int:
    """The last saved lag (in frames) at or before `lag_ps`, forgiving rounding."""
    return int(lag_ps / frame_interval_ps + 1e-9)


def fit_lags_ps(n_frames: int, frame_interval_ps: float, fit_fraction=FIT_FRACTION) -> tuple[float, float]:
    """The lags (start, end) ps over which :func:`diffusion_groups` fits the MSD
    of a run of `n_frames` saved every `frame_interval_ps`; DataError naming the
    field when the window would hold fewer than 2 saved lags."""
    run_ps = (n_frames - 1) * frame_interval_ps
    span_ps = min(run_ps, max(FIT_SPAN_PS, MIN_FIT_LAGS * frame_interval_ps / (fit_fraction[1] - fit_fraction[0])))
    start_ps, end_ps = fit_fraction[0] * span_ps, fit_fraction[1] * span_ps
    if frames_within(end_ps, frame_interval_ps) - int(np.ceil(start_ps / frame_interval_ps - 1e-9)) < 1:
        raise DataError(f"diffusion_groups, field 'frame_interval_ps': {n_frames} frames {frame_interval_ps:g} ps "
                        f"apart put fewer than 2 saved lags in the fit window {start_ps:g}-{end_ps:g} ps "
                        f"(fit_fraction {tuple(fit_fraction)}); save frames more often or run longer")
    return start_ps, end_ps


def diffusion_by_species(frames: Sequence[Atoms], frame_interval_ps, n_groups=8, fit_fraction=FIT_FRACTION):
    """{symbol: DiffusionEstimate} for each species of a (wrapped) trajectory."""
    return species_diffusion(unwrapped_positions_A(frames), _frames.chemical_symbols(frames),
                             frames[0].get_masses(), frame_interval_ps, n_groups, fit_fraction)


def species_diffusion(positions_unwrapped_A, symbols, masses_amu, frame_interval_ps, n_groups=8,
                      fit_fraction=FIT_FRACTION) -> dict:
    """{symbol: DiffusionEstimate} from unwrapped positions (T, N, 3) Å; symbols (N,)."""
    x = check_trajectory(positions_unwrapped_A, "species_diffusion", "positions_unwrapped_A")
    symbols = check_per_atom(symbols, x.shape[1], "species_diffusion", "symbols")
    return {s: diffusion_groups(positions_unwrapped_A, frame_interval_ps, n_groups, fit_fraction, masses_amu,
                                symbols == s) for s in sorted(set(symbols.tolist()))}


# A species diffuses when its atoms' mean |x(end) − x(0)|² exceeds this. A crystal's
# atoms stay near 6<u²> (0.04 Å² for H at 300 K, ~0.2 Å² near melting, where the
# Lindemann ratio reaches 0.15); liquid water moved 0.77-2.6 Å² in 1.5 ps runs at
# 300 K (1.0 Å², the first choice, called two of four such runs a crystal).
MOBILE_MSD_A2 = 0.25


def mobile_species(positions_unwrapped_A, symbols, masses_amu=None, min_msd_A2: float = MOBILE_MSD_A2) -> list[str]:
    """Species whose atoms moved, on average, farther than sqrt(min_msd_A2) from
    where they started (mean |x(end) − x(0)|² over the species, centre-of-mass
    drift removed): those that diffuse. Atoms vibrating in a crystal (or a
    molecule's atoms in place) stay far below 1 Å², so their "diffusion" (the
    slope of a plateaued MSD) is not a diffusion and is not judged."""
    x = check_trajectory(positions_unwrapped_A, "mobile_species", "positions_unwrapped_A", min_frames=2)
    check_per_atom(symbols, x.shape[1], "mobile_species", "symbols")
    x = remove_com_drift(x, masses_amu)
    squared = ((x[-1] - x[0]) ** 2).sum(-1)
    symbols = np.asarray(symbols)
    return [s for s in sorted(set(symbols.tolist())) if float(squared[symbols == s].mean()) > min_msd_A2]


@dataclass(frozen=True)
class TemperatureEstimate:
    """Kinetic temperature of a set of atoms, mean ± standard error over blocks, K."""

    mean_K: float
    stderr_K: float


def species_temperatures(velocities_A_per_fs, symbols, masses_amu, n_blocks=4) -> dict:
    """{symbol: TemperatureEstimate}: each species' kinetic temperature
    Σ m v² / (3 N_s k_B) per frame, averaged over the frames, with the standard
    error of ``n_blocks`` contiguous block means (frames are correlated, so not
    the frame-to-frame spread). velocities (T, N, 3) Å/fs, masses (N,) amu.
    Equipartition makes every species' temperature the same in equilibrium; a
    species that runs hot is the first sign of integrator resonance."""
    from ase import units

    v = check_trajectory(velocities_A_per_fs, "species_temperatures", "velocities_A_per_fs",
                         min_frames=n_blocks) / units.fs  # ASE velocity units: eV, amu
    symbols = check_per_atom(symbols, v.shape[1], "species_temperatures", "symbols")
    masses = check_per_atom(masses_amu, v.shape[1], "species_temperatures", "masses_amu").astype(float)
    out = {}
    for symbol in sorted(set(symbols.tolist())):
        select = symbols == symbol
        twice_kinetic_eV = np.einsum("tnk,tnk,n->t", v[:, select], v[:, select], masses[select])
        per_frame_K = twice_kinetic_eV / (3 * select.sum() * units.kB)
        block_means = [b.mean() for b in np.array_split(per_frame_K, n_blocks)]
        out[symbol] = TemperatureEstimate(float(per_frame_K.mean()),
                                          float(np.std(block_means, ddof=1) / np.sqrt(n_blocks)))
    return out


def drift_meV_per_atom_per_ps(time_ps, conserved_eV, n_atoms) -> float:
    """Slope of a least-squares line through the conserved energy, per atom,
    in meV/atom/ps. Shapes: time_ps (T,), conserved_eV (T,)."""
    t, e = np.asarray(time_ps, float), np.asarray(conserved_eV, float)
    if t.ndim != 1 or t.shape != e.shape or len(t) < 2 or np.ptp(t) <= 0:
        raise DataError(f"drift_meV_per_atom_per_ps, field 'time_ps': need at least 2 times spanning a non-zero "
                        f"interval, one energy each (got shapes {t.shape}, {e.shape})")
    if not np.all(np.isfinite(e)):
        raise DataError("drift_meV_per_atom_per_ps, field 'conserved_eV': holds NaN or infinite values")
    check_positive(n_atoms, "drift_meV_per_atom_per_ps", "n_atoms")
    slope_eV_per_ps, _ = np.polyfit(t, e, 1)
    return float(slope_eV_per_ps * 1000.0 / n_atoms)


def energy_fluctuation_ratio(time_ps, conserved_eV, kinetic_eV) -> float:
    """Tuckerman's ΔE/ΔK of an NVE trace: the RMS of the conserved energy about
    its least-squares line over the RMS fluctuation of the kinetic energy. It
    grows as Δt² for a well-resolved integrator and jumps near a resonance; a
    few per cent is accurate. Shapes: (T,) each."""
    t, e, k = (np.asarray(a, float) for a in (time_ps, conserved_eV, kinetic_eV))
    if t.ndim != 1 or t.shape != e.shape or t.shape != k.shape or len(t) < 3 or np.ptp(t) <= 0:
        raise DataError(f"energy_fluctuation_ratio, field 'time_ps': need at least 3 times spanning a non-zero "
                        f"interval, one conserved and one kinetic energy each (got shapes {t.shape}, {e.shape}, "
                        f"{k.shape})")
    if not (np.all(np.isfinite(e)) and np.all(np.isfinite(k))):
        raise DataError("energy_fluctuation_ratio, field 'conserved_eV': holds NaN or infinite values")
    slope, intercept = np.polyfit(t, e, 1)
    spread = float(np.std(k))
    return float(np.std(e - (slope * t + intercept)) / spread) if spread > 0 else float("inf")
