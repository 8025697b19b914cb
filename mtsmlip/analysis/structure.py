"""Radial distribution functions per species pair, and how much two differ.

Distances come from vesin's periodic neighbour list (minimum image and, for
``r_max_A`` beyond half the box, further periodic images), so any triclinic cell
works. Normalisation, for a pair (a, b) over F frames of volumes V_f:

    g_ab(r) = Σ_f n_ab,f(r) / (N_a · ρ_b · F · 4π/3 · (r_hi³ − r_lo³)),
    ρ_b = (N_b − δ_ab) · mean_f(1/V_f),

where n_ab,f counts ordered pairs i∈a, j∈b (j ≠ i) in frame f whose distance
falls in the bin [r_lo, r_hi). For an ideal gas g = 1 at every r, exactly in
expectation, also when the cell changes between frames; and integrating g with
the same ρ_b (:func:`running_coordination`) gives the exact mean number of b
neighbours of an a.
"""

from __future__ import annotations

from itertools import combinations_with_replacement
from typing import Sequence

import numpy as np
from ase import Atoms
from vesin import NeighborList

from ..errors import DataError
from .frames import check_same_atoms

Pair = tuple[str, str]
RDF = dict[Pair, tuple[np.ndarray, np.ndarray]]


def species_pairs(symbols: Sequence[str]) -> list[Pair]:
    """All unordered species pairs, alphabetical: ['H','O'] -> [(H,H), (H,O), (O,O)]."""
    return list(combinations_with_replacement(sorted(set(symbols)), 2))


def rdf(frames: Sequence[Atoms], r_max_A: float, n_bins: int, pairs=None) -> RDF:
    """Frame-averaged g(r) for each species pair.

    frames: list of periodic ``ase.Atoms`` with the same atoms in each.
    Returns {(sym_a, sym_b): (r_A (n_bins,) bin centres, g (n_bins,))}.
    """
    check_same_atoms(frames)
    if not (np.isfinite(r_max_A) and r_max_A > 0) or int(n_bins) < 2:
        raise DataError(f"rdf, field 'r_max_A': need r_max_A > 0 and n_bins >= 2 (got {r_max_A}, {n_bins})")
    pairs = species_pairs(frames[0].get_chemical_symbols()) if pairs is None else pairs
    edges_A = np.linspace(0.0, r_max_A, n_bins + 1)
    neighbours = NeighborList(cutoff=float(r_max_A), full_list=True)
    counts = {pair: np.zeros(n_bins) for pair in pairs}
    for i, atoms in enumerate(frames):
        for pair, n in _frame_counts(atoms, i, neighbours, edges_A, pairs).items():
            counts[pair] += n
    r_A = 0.5 * (edges_A[1:] + edges_A[:-1])
    return {pair: (r_A, n / _ideal_gas_counts(frames, pair, edges_A)) for pair, n in counts.items()}


def _ideal_gas_counts(frames, pair, edges_A) -> np.ndarray:
    """Expected histogram (n_bins,) summed over frames if the atoms were uncorrelated."""
    shell_A3 = 4.0 / 3.0 * np.pi * np.diff(edges_A**3)
    return _count(frames[0], pair[0]) * partner_density_per_A3(frames, pair) * len(frames) * shell_A3


def _frame_counts(atoms: Atoms, index: int, neighbours, edges_A, pairs) -> dict:
    """{pair: histogram (n_bins,) of ordered i∈a, j∈b distances} in one frame."""
    _check_periodic(atoms, index)
    i, j, d = neighbours.compute(atoms.positions, atoms.cell[:], atoms.pbc, quantities="ijd")
    symbols = np.array(atoms.get_chemical_symbols())
    for a, b in pairs:
        if _count(atoms, a) == 0 or _count(atoms, b) - (a == b) < 1:
            raise DataError(f"trajectory, frame {index}, field 'symbols': pair {a}-{b} has too few atoms")
    return {(a, b): np.histogram(d[(symbols[i] == a) & (symbols[j] == b)], bins=edges_A)[0]
            for a, b in pairs}


def _count(atoms: Atoms, symbol: str) -> int:
    return atoms.get_chemical_symbols().count(symbol)


def _check_periodic(atoms: Atoms, index: int) -> None:
    if not np.all(atoms.pbc) or abs(atoms.cell.volume) < 1e-12:
        raise DataError(f"trajectory, frame {index}, field 'cell': g(r) needs a fully periodic cell; an isolated "
                        "molecule's structure is its distance distributions (analysis.distance_distributions)")


def partner_density_per_A3(frames: Sequence[Atoms], pair: Pair) -> float:
    """ρ_b = (N_b − δ_ab) · mean(1/V) over frames, 1/Å³: the density that
    normalises g_ab (see module doc) and that :func:`running_coordination` needs."""
    a, b = pair
    inverse_volume = np.mean([1.0 / abs(atoms.cell.volume) for atoms in frames])
    return (_count(frames[0], b) - (a == b)) * inverse_volume


def running_coordination(r_A: np.ndarray, g: np.ndarray, partner_density_per_A3: float) -> np.ndarray:
    """n(r) = ρ_b ∫_0^r g(r') 4π r'² dr': mean number of b around an a within r.

    Integrates bin by bin with exact shell volumes (uniform bins assumed);
    returns n at each bin's upper edge, shape like r_A.
    """
    width_A = r_A[1] - r_A[0]
    upper_A = r_A + 0.5 * width_A
    shell_A3 = 4.0 / 3.0 * np.pi * (upper_A**3 - (upper_A - width_A) ** 3)
    return partner_density_per_A3 * np.cumsum(g * shell_A3)


def rdf_difference(g_a: np.ndarray, g_b: np.ndarray, r_A: np.ndarray) -> float:
    """RMS difference of two g(r) over the radial range, uniform weight in r:

        Δ = sqrt( ∫ (g_a − g_b)² dr / (r_end − r_start) ).

    Dimensionless; 0 for identical curves, ≈ the typical |Δg| per bin otherwise
    (sampling noise alone gives a small positive Δ). Shapes: all (n_bins,).
    """
    r_A = np.asarray(r_A)
    if len(r_A) < 2:
        raise DataError("rdf_difference, field 'r_A': needs at least two r bins")
    diff_sq = (np.asarray(g_a) - np.asarray(g_b)) ** 2
    return float(np.sqrt(np.trapezoid(diff_sq, r_A) / np.ptp(r_A)))


def rdf_differences(rdf_a: RDF, rdf_b: RDF) -> dict:
    """:func:`rdf_difference` for every pair the two RDFs share, plus
    ``"overall"`` = the largest (worst) pair value. Both need the same r grid."""
    shared = [pair for pair in rdf_a if pair in rdf_b]
    if not shared:
        raise DataError("rdf_differences, field 'pairs': the two RDFs share no species pair")
    out = {pair: _pair_difference(rdf_a[pair], rdf_b[pair], pair) for pair in shared}
    out["overall"] = max(out.values())
    return out


def _pair_difference(curve_a, curve_b, pair) -> float:
    (r_a, g_a), (r_b, g_b) = curve_a, curve_b
    if r_a.shape != r_b.shape or not np.allclose(r_a, r_b):
        raise DataError(f"rdf_differences, field 'r_A': RDFs of pair {pair} use different r grids; compute both "
                        "with the same r_max_A, n_bins")
    return rdf_difference(g_a, g_b, r_a)
