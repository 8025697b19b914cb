"""Scalar observables of one MD run, so that independent repeats of a run can
be compared with confidence intervals (mean ± t·s/√n over repeats), where the
curves of :mod:`.structure`, :mod:`.spectra` and :mod:`.geometry` can only be
compared by a distance.

- g(r) first peak: height and position of the first coordination shell;
- VDOS centroid: the spectrum's mean frequency ∫ν g dν / ∫g dν, in cm⁻¹;
- reorientation time: the P2 rotational correlation time of bond vectors
  (water O–H, molecular rotation), from C2(τ) = ⟨P2(u(t)·u(t+τ))⟩;
- mean bond lengths of an isolated molecule, per species pair.

Conventions as in the rest of :mod:`mtsmlip.analysis`: positions (T, N, 3) in
Å, T frames equally spaced by ``frame_interval_ps``; frequencies in THz
(ordinary, not angular) in, cm⁻¹ out; species pairs as alphabetically sorted
symbol tuples.
"""

from __future__ import annotations

import math

import numpy as np
from ase import Atoms

from ..errors import DataError
from .frames import check_per_atom, check_positive, check_trajectory
from .spectra import THZ_TO_CM1, autocorrelation

C2_END = 0.1  # the reorientation fit stops where C2(τ) first drops below this (noise dominates beyond)
XH_BOND_A = 1.3  # an H is bonded to its nearest heavy atom if closer than this
_CORRELATION_CHUNK = 4_000_000  # floats per FFT block in reorientation_time_ps (bounds memory)


def _curve(x, y, where: str, x_field: str, y_field: str, min_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Two finite 1-D float arrays of the same length ≥ min_points, x strictly increasing."""
    try:
        x, y = np.asarray(x, float), np.asarray(y, float)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}, field '{y_field}': not an array of numbers ({exc})") from None
    if x.ndim != 1 or x.shape != y.shape or len(x) < min_points:
        raise DataError(f"{where}, field '{y_field}': need 1-D arrays {x_field}, {y_field} of the same length "
                        f"≥ {min_points} (got shapes {x.shape}, {y.shape})")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise DataError(f"{where}, field '{y_field}': holds NaN or infinite values")
    if np.any(np.diff(x) <= 0):
        raise DataError(f"{where}, field '{x_field}': must be strictly increasing")
    return x, y


def _index_pairs(pairs, n_atoms: int, where: str, field: str) -> np.ndarray:
    """`pairs` as an (M, 2) int array of atom indices in [0, n_atoms), or a DataError."""
    p = np.asarray(pairs)
    if p.size == 0:
        return np.zeros((0, 2), int)
    if p.ndim != 2 or p.shape[1] != 2 or not np.issubdtype(p.dtype, np.integer):
        raise DataError(f"{where}, field '{field}': need an (M, 2) integer array of atom indices "
                        f"(got shape {p.shape}, dtype {p.dtype})")
    if p.min() < 0 or p.max() >= n_atoms:
        raise DataError(f"{where}, field '{field}': atom index {p.min() if p.min() < 0 else p.max()} "
                        f"for {n_atoms} atoms")
    return p.astype(int)


# ---- g(r) ---------------------------------------------------------------------------
def rdf_first_peak(r_A: np.ndarray, g: np.ndarray, min_height: float = 1.2) -> tuple[float, float] | None:
    """(height, position_A) of the first peak of one g(r): the first local maximum
    (g[k−1] ≤ g[k] > g[k+1]) with g[k] ≥ min_height, refined by the parabola
    through bins k−1, k, k+1: with p(r) = a r² + b r + c, position −b/2a and
    height p(−b/2a). For uniform bins of width h this is the vertex offset
    δ = h·(g[k−1] − g[k+1]) / (2(g[k−1] − 2g[k] + g[k+1])) from r[k].

    r_A: bin centres (B,), strictly increasing; g: (B,). None if no bin reaches
    min_height (or the only bins that do are rising to the end of the range).
    Local maxima below min_height (noise, a shoulder at contact) are skipped.
    """
    r, g = _curve(r_A, g, "rdf_first_peak", "r_A", "g", min_points=3)
    above = g >= min_height
    maxima = (g[1:-1] >= g[:-2]) & (g[1:-1] > g[2:]) & above[1:-1]
    if not maxima.any():
        return None
    k = int(np.argmax(maxima)) + 1
    x, y = r[k - 1:k + 2] - r[k], g[k - 1:k + 2]
    a, b, c = np.polyfit(x, y, 2)
    if not a < 0:  # numerically flat top: the bin itself
        return float(g[k]), float(r[k])
    vertex = float(np.clip(-b / (2 * a), x[0], x[2]))
    return float(np.polyval((a, b, c), vertex)), float(r[k] + vertex)


def rdf_first_peaks(rdf: dict, min_height: float = 1.2) -> dict:
    """{pair: (height, position_A)}: :func:`rdf_first_peak` of every curve of an
    RDF dict {(sym_a, sym_b): (r_A, g)} (as :func:`mtsmlip.analysis.rdf` returns);
    pairs whose g never reaches min_height (no first shell, e.g. H–H of a
    dilute solute) are left out."""
    if not isinstance(rdf, dict):
        raise DataError(f"rdf_first_peaks, field 'rdf': need a dict {{pair: (r_A, g)}} (got {type(rdf).__name__})")
    out = {}
    for pair, curve in rdf.items():
        try:
            r_A, g = curve
        except (TypeError, ValueError):
            raise DataError(f"rdf_first_peaks, field 'rdf': pair {pair} holds no (r_A, g) curve") from None
        peak = rdf_first_peak(r_A, g, min_height)
        if peak is not None:
            out[pair] = peak
    return out


# ---- spectra ------------------------------------------------------------------------
def vdos_centroid_cm1(freq_THz: np.ndarray, dos: np.ndarray, max_THz: float | None = None) -> float:
    """Mean frequency of a spectrum, ⟨ν⟩ = ∫ν g(ν) dν / ∫g(ν) dν (trapezoid rule
    over the given grid, up to `max_THz` if given), converted to cm⁻¹ (× THZ_TO_CM1).
    Runs sampled at different steps reach different Nyquist frequencies: compare
    their centroids over a common band (the lowest Nyquist frequency of the runs).

    freq_THz: (F,) strictly increasing; dos: (F,) with positive area (any
    normalisation, e.g. :func:`mtsmlip.analysis.vdos`). A run whose integrator
    shifts the vibrations (too long a time step blue-shifts them) moves ⟨ν⟩."""
    freq, dos = _curve(freq_THz, dos, "vdos_centroid_cm1", "freq_THz", "dos", min_points=2)
    if max_THz is not None:
        keep = freq <= max_THz
        if keep.sum() < 2:
            raise DataError(f"vdos_centroid_cm1, field 'max_THz': {max_THz:g} THz leaves fewer than 2 frequencies")
        freq, dos = freq[keep], dos[keep]
    area = np.trapezoid(dos, freq)
    if not area > 0:
        raise DataError(f"vdos_centroid_cm1, field 'dos': need a spectrum with positive area (got {area:g})")
    return float(np.trapezoid(freq * dos, freq) / area * THZ_TO_CM1)


def species_vdos_centroids_cm1(species_vdos: dict, max_THz: float | None = None) -> dict:
    """{symbol: :func:`vdos_centroid_cm1`} for {symbol: (freq_THz, dos)} as
    :func:`mtsmlip.analysis.species_vdos` returns."""
    if not isinstance(species_vdos, dict):
        raise DataError(f"species_vdos_centroids_cm1, field 'species_vdos': need a dict {{symbol: (freq_THz, dos)}} "
                        f"(got {type(species_vdos).__name__})")
    out = {}
    for symbol, spectrum in species_vdos.items():
        try:
            freq_THz, dos = spectrum
        except (TypeError, ValueError):
            raise DataError(f"species_vdos_centroids_cm1, field 'species_vdos': {symbol!r} holds no "
                            "(freq_THz, dos) spectrum") from None
        out[symbol] = vdos_centroid_cm1(freq_THz, dos, max_THz)
    return out


# ---- reorientation -------------------------------------------------------------------
def bond_unit_vectors(positions_A: np.ndarray, bonds: np.ndarray, cell_A: np.ndarray | None = None,
                      where: str = "bond_unit_vectors") -> np.ndarray:
    """u_b(t) = (x_j − x_i) / |x_j − x_i| for bonds (M, 2) = (i, j): (T, M, 3).

    With a (3, 3) cell (rows lattice vectors) each bond vector d is taken to its
    minimum image, d − round(d·C⁻¹)·C (exact for bonds shorter than half the
    cell's narrowest width), so wrapped positions are fine."""
    x = check_trajectory(positions_A, where, "positions_A", min_atoms=2)
    bonds = _index_pairs(bonds, x.shape[1], where, "bonds")
    if len(bonds) == 0:
        raise DataError(f"{where}, field 'bonds': holds no bond")
    d = x[:, bonds[:, 1]] - x[:, bonds[:, 0]]
    if cell_A is not None:
        cell = np.asarray(cell_A, float)
        if cell.shape != (3, 3) or not np.all(np.isfinite(cell)) or abs(np.linalg.det(cell)) < 1e-12:
            raise DataError(f"{where}, field 'cell_A': need a constant (3, 3) cell of non-zero volume "
                            f"(got shape {cell.shape}); leave it None for unwrapped positions or a molecule")
        frac = d @ np.linalg.inv(cell)
        d = (frac - np.round(frac)) @ cell
    length = np.linalg.norm(d, axis=-1, keepdims=True)
    if not np.all(length > 1e-8):
        t, b = np.argwhere(length[..., 0] <= 1e-8)[0]
        raise DataError(f"{where}, field 'bonds': bond {b} ({bonds[b, 0]}, {bonds[b, 1]}) has zero length "
                        f"in frame {t}")
    return d / length


def p2_correlation(unit_vectors: np.ndarray, n_lags: int) -> np.ndarray:
    """C2(m) = ⟨P2(u(t)·u(t+m))⟩ over bonds and time origins, P2(x) = (3x² − 1)/2,
    for unit vectors (T, M, 3) and lags m = 0 … n_lags − 1: (n_lags,).

    Since (u·u')² = Σ_ab Q_ab Q'_ab with Q_ab = u_a u_b, C2 = (3 Σ_ab w_ab
    ⟨Q_ab(t) Q_ab(t+m)⟩ − 1)/2 over the 6 independent components (w = 1 on the
    diagonal, 2 off it), each an unbiased FFT autocorrelation (O(T log T));
    bonds go in blocks so that memory stays bounded."""
    u = unit_vectors
    T, M = u.shape[:2]
    a, b = np.array([0, 1, 2, 0, 0, 1]), np.array([0, 1, 2, 1, 2, 2])
    weights = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 2.0])
    total = np.zeros(n_lags)
    block = max(1, _CORRELATION_CHUNK // (12 * T))
    for start in range(0, M, block):
        q = u[:, start:start + block, a] * u[:, start:start + block, b]  # (T, m, 6)
        total += np.einsum("lmk,k->l", autocorrelation(q, n_lags), weights)
    return 1.5 * total / M - 0.5


def reorientation_time_ps(positions_A: np.ndarray, bonds: np.ndarray, frame_interval_ps: float,
                          fit_start_ps: float = 0.1, cell_A: np.ndarray | None = None) -> float:
    """Rotational (P2) correlation time of the bond vectors, ps.

    C2(τ) = ⟨P2(u(t)·u(t+τ))⟩ over bonds (M, 2) and time origins
    (:func:`p2_correlation`), u from :func:`bond_unit_vectors` (positions
    (T, N, 3) unwrapped, or wrapped with the constant ``cell_A`` for the minimum
    image). For rotational diffusion C2 = exp(−6 D_r τ), so the time is
    τ2 = −1/slope of a least-squares line ln C2(τ) = c + slope·τ over the lags
    fit_start_ps ≤ τ ≤ τ_end, where τ_end is the last lag before C2 first drops
    below C2_END = 0.1, or half the run, whichever comes first (skipping the fast
    libration before fit_start_ps and the noise of the tail). Bonds that do not
    rotate (slope ≥ 0, or a decay of under 1e-6 over the fit) give math.inf.

    Needs ≥ 8 frames and at least 2 lags in [fit_start_ps, half the run].
    """
    where = "reorientation_time_ps"
    x = check_trajectory(positions_A, where, "positions_A", min_frames=8, min_atoms=2)
    dt = check_positive(frame_interval_ps, where, "frame_interval_ps")
    if not (np.isfinite(fit_start_ps) and fit_start_ps >= 0):
        raise DataError(f"{where}, field 'fit_start_ps': must be a finite number ≥ 0 (got {fit_start_ps!r})")
    n_lags = len(x) // 2 + 1
    lag_ps = np.arange(n_lags) * dt
    if np.count_nonzero(lag_ps >= fit_start_ps - 1e-9 * dt) < 2:
        raise DataError(f"{where}, field 'positions_A': {len(x)} frames every {dt:g} ps reach lags up to "
                        f"{lag_ps[-1]:g} ps (half the run), too short to fit from fit_start_ps = {fit_start_ps:g} ps")
    c2 = p2_correlation(bond_unit_vectors(x, bonds, cell_A, where), n_lags)
    below = np.flatnonzero(c2 < C2_END)
    end = below[0] if len(below) else n_lags  # first lag left out
    fit = np.arange(n_lags)[(lag_ps >= fit_start_ps - 1e-9 * dt) & (np.arange(n_lags) < end)]
    if len(fit) < 2:
        raise DataError(f"{where}, field 'fit_start_ps': C2 drops below {C2_END} at {lag_ps[end]:g} ps, before "
                        f"two lags from fit_start_ps = {fit_start_ps:g} ps; lower fit_start_ps or save frames "
                        "more often")
    slope = np.polyfit(lag_ps[fit], np.log(c2[fit]), 1)[0]
    if slope >= 0 or -slope * (lag_ps[fit[-1]] - lag_ps[fit[0]]) < 1e-6:
        return math.inf
    return float(-1.0 / slope)


C2_LAG_PS = 0.5  # the fixed lag of reorientation_c2: past water's libration, within half a 1.5 ps run


def reorientation_c2(positions_A: np.ndarray, bonds: np.ndarray, frame_interval_ps: float,
                     lag_ps: float = C2_LAG_PS, cell_A: np.ndarray | None = None) -> float:
    """C2 at one lag: ⟨P2(u(t)·u(t+lag))⟩ over the bonds (M, 2) and every time
    origin (:func:`p2_correlation`, the same u as :func:`reorientation_time_ps`).

    A short run cannot fit a reorientation time that is longer than itself
    (water at 300 K: 2-3 ps; over 1.5 ps C2 only falls to about 0.6, and fitted
    times of four repeats spread from 2 to 7 ps), but it does measure C2 at a
    lag well inside it, averaged over many origins: that is what this gives.
    For rotational diffusion it is exp(−6 D_r·lag). The lag is rounded to whole
    frames and must be at most half the run (else a DataError)."""
    where = "reorientation_c2"
    x = check_trajectory(positions_A, where, "positions_A", min_frames=3, min_atoms=2)
    dt = check_positive(frame_interval_ps, where, "frame_interval_ps")
    lag = check_positive(lag_ps, where, "lag_ps")
    m = int(round(lag / dt))
    if m < 1 or m > (len(x) - 1) // 2:
        raise DataError(f"{where}, field 'positions_A': {len(x)} frames every {dt:g} ps cannot give C2 at "
                        f"{lag:g} ps (it needs 1 to {(len(x) - 1) // 2} frames of lag: at most half the run)")
    return float(p2_correlation(bond_unit_vectors(x, bonds, cell_A, where), m + 1)[m])


def hydrogen_bonds(atoms: Atoms) -> np.ndarray:
    """(M, 2) int pairs (heavy atom, H): every H with its nearest non-H atom, if
    that is closer than XH_BOND_A = 1.3 Å (minimum image along periodic
    directions, via ASE's neighbour list): the X–H bonds (water O–H, C–H, N–H)
    whose reorientation :func:`reorientation_time_ps` measures. Sorted by H
    index; an empty (0, 2) array if there is none."""
    from ase.neighborlist import neighbor_list

    if not isinstance(atoms, Atoms):
        raise DataError(f"hydrogen_bonds, field 'atoms': need an ase.Atoms (got {type(atoms).__name__})")
    symbols = np.array(atoms.get_chemical_symbols())
    if len(atoms) < 2 or not np.any(symbols == "H"):
        return np.zeros((0, 2), int)
    i, j, d = neighbor_list("ijd", atoms, XH_BOND_A)
    keep = (symbols[i] == "H") & (symbols[j] != "H")
    i, j, d = i[keep], j[keep], d[keep]
    order = np.lexsort((d, i))  # by H, nearest partner first
    i, j = i[order], j[order]
    first = np.r_[True, i[1:] != i[:-1]] if len(i) else np.zeros(0, bool)
    return np.stack([j[first], i[first]], axis=1).astype(int).reshape(-1, 2)


# ---- molecules ----------------------------------------------------------------------
def mean_bond_lengths_A(positions_A: np.ndarray, pairs: np.ndarray, symbols) -> dict:
    """{(sym_a, sym_b) alphabetical: ⟨|x_i − x_j|⟩ over frames and the bonded pairs
    (i, j) of that species pair}, Å, for an isolated molecule (no cell).

    positions_A: (T, N, 3); pairs: (M, 2) as :func:`mtsmlip.analysis.bonded_pairs`
    returns; symbols: (N,). An empty `pairs` gives an empty dict."""
    where = "mean_bond_lengths_A"
    x = check_trajectory(positions_A, where, "positions_A", min_atoms=2)
    symbols = check_per_atom(symbols, x.shape[1], where, "symbols").astype(str)
    pairs = _index_pairs(pairs, x.shape[1], where, "pairs")
    d = np.linalg.norm(x[:, pairs[:, 0]] - x[:, pairs[:, 1]], axis=-1)  # (T, M)
    keys = [tuple(sorted(k)) for k in zip(symbols[pairs[:, 0]].tolist(), symbols[pairs[:, 1]].tolist())]
    return {k: float(d[:, [key == k for key in keys]].mean()) for k in sorted(set(keys))}
