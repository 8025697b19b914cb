"""Observables of isolated molecules and crystals, where g(r) and diffusion do
not apply: distributions of interatomic distances, bond angles and dihedrals
(a molecule's structure), the potential energy's mean (its thermodynamics),
and for a crystal the atoms' vibration about their sites and the Lindemann
ratio (is the lattice still there).

Conventions: positions (T, N, 3) in Å, angles in degrees; a distribution is
(x (B,) bin centres, p (B,)) with ∫p dx = 1 over its bins, and two of them
on the same bins differ by half their L1 distance (0 the same, 1 disjoint).
Bonds come from the first frame by covalent radii (ASE's ``natural_cutoffs``,
× 1.2), so a molecule keeps the topology of its start.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
from ase import Atoms

from .frames import check_trajectory
from .structure import species_pairs

BOND_SCALE = 1.2
LINDEMANN_MELTED = 0.15  # RMS vibration / nearest-neighbour distance at which crystals melt (0.10-0.15)


@dataclass(frozen=True)
class BlockMean:
    """A time average, mean ± standard error over contiguous blocks."""

    mean: float
    stderr: float


def block_mean(per_frame, n_blocks: int = 4, where: str = "block_mean") -> BlockMean:
    """Mean of a per-frame series (T,) with the standard error of `n_blocks`
    contiguous block means (frames are correlated)."""
    x = np.asarray(per_frame, float)
    if x.ndim != 1 or len(x) < n_blocks or not np.all(np.isfinite(x)):
        raise _error(where, "values", f"need a finite series of at least {n_blocks} frames (got shape {x.shape})")
    means = [b.mean() for b in np.array_split(x, n_blocks)]
    return BlockMean(float(x.mean()), float(np.std(means, ddof=1) / np.sqrt(n_blocks)))


def _error(where: str, field: str, message: str):
    from ..errors import DataError

    return DataError(f"{where}, field '{field}': {message}")


# ---- topology ------------------------------------------------------------------
def bonded_pairs(atoms: Atoms, scale: float = BOND_SCALE) -> np.ndarray:
    """(B, 2) pairs i < j closer than `scale` × the sum of covalent radii."""
    from ase.neighborlist import natural_cutoffs, neighbor_list

    if len(atoms) < 2:
        raise _error("bonded_pairs", "atoms", f"a molecule needs at least 2 atoms (got {len(atoms)})")
    i, j = neighbor_list("ij", atoms, natural_cutoffs(atoms, mult=scale))
    keep = i < j
    return np.stack([i[keep], j[keep]], axis=1).reshape(-1, 2)


def _neighbours(pairs: np.ndarray, n_atoms: int) -> list[list[int]]:
    out = [[] for _ in range(n_atoms)]
    for i, j in pairs:
        out[i].append(int(j))
        out[j].append(int(i))
    return [sorted(n) for n in out]


def angle_triples(pairs: np.ndarray, n_atoms: int) -> np.ndarray:
    """(A, 3) bonded triples (a, centre, b), a < b."""
    triples = [(a, c, b) for c, nb in enumerate(_neighbours(pairs, n_atoms)) for a, b in combinations(nb, 2)]
    return np.array(triples, int).reshape(-1, 3)


def dihedral_quads(pairs: np.ndarray, n_atoms: int) -> np.ndarray:
    """(D, 4) bonded chains (a, b, c, d) around each bond b-c, a ≠ d."""
    nb = _neighbours(pairs, n_atoms)
    quads = [(a, b, c, d) for b, c in pairs for a in nb[b] if a != c for d in nb[c] if d not in (b, a)]
    return np.array(quads, int).reshape(-1, 4)


# ---- distributions -----------------------------------------------------------------
def _histogram(values, edges):
    counts, _ = np.histogram(values, bins=edges)
    width = np.diff(edges)
    total = counts.sum()
    return 0.5 * (edges[1:] + edges[:-1]), (counts / (total * width) if total else counts.astype(float))


def local_pairs(pairs: np.ndarray, n_atoms: int) -> np.ndarray:
    """(P, 2) pairs i < j bonded or bonded to a common atom (1-2 and 1-3): the
    distances a molecule's bonds and bond angles fix, which a few ps sample
    well, unlike the 1-4 and farther ones that follow its torsions."""
    triples = angle_triples(pairs, n_atoms)
    ends = np.sort(triples[:, [0, 2]], axis=1) if len(triples) else np.zeros((0, 2), int)
    both = np.concatenate([np.sort(np.asarray(pairs, int).reshape(-1, 2), axis=1), ends])
    return np.unique(both, axis=0)


def distance_distributions(positions_A, symbols, r_max_A: float, n_bins: int = 150, pairs=None) -> dict:
    """{(sym_a, sym_b): (r_A, p)}: the distribution of the intramolecular
    distances of each species pair over the frames, on [0, r_max_A]: all
    pairs of atoms, or only `pairs` ((P, 2) atom indices, e.g. :func:`local_pairs`)."""
    x = check_trajectory(positions_A, "distance_distributions", "positions_A", min_atoms=2)
    symbols = np.asarray(symbols)
    if len(symbols) != x.shape[1]:
        raise _error("distance_distributions", "symbols", f"{len(symbols)} symbols for {x.shape[1]} atoms")
    if not (np.isfinite(r_max_A) and r_max_A > 0) or int(n_bins) < 2:
        raise _error("distance_distributions", "r_max_A", f"need r_max_A > 0 and n_bins >= 2 "
                                                          f"(got {r_max_A}, {n_bins})")
    i, j = np.triu_indices(x.shape[1], 1) if pairs is None else np.asarray(pairs, int).reshape(-1, 2).T
    if len(i) and max(i.max(), j.max()) >= x.shape[1]:
        raise _error("distance_distributions", "pairs", f"atom index {max(i.max(), j.max())} for {x.shape[1]} atoms")
    d = np.linalg.norm(x[:, i] - x[:, j], axis=-1)
    edges = np.linspace(0.0, r_max_A, int(n_bins) + 1)
    out = {}
    for a, b in species_pairs(symbols.tolist()):
        select = ((symbols[i] == a) & (symbols[j] == b)) | ((symbols[i] == b) & (symbols[j] == a))
        if select.any():
            out[(a, b)] = _histogram(d[:, select], edges)
    return out


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def angle_distributions(positions_A, triples, symbols, n_bins: int = 90) -> dict:
    """{centre symbol: (angle_deg, p)}: bond angles a-c-b over the frames,
    pooled by the species of the centre atom, on [0, 180]."""
    x = check_trajectory(positions_A, "angle_distributions", "positions_A", min_atoms=3)
    triples, symbols = np.asarray(triples, int).reshape(-1, 3), np.asarray(symbols)
    if len(triples) and triples.max() >= x.shape[1]:
        raise _error("angle_distributions", "triples", f"atom index {triples.max()} for {x.shape[1]} atoms")
    a, c, b = triples.T
    cos = np.einsum("tki,tki->tk", _unit(x[:, a] - x[:, c]), _unit(x[:, b] - x[:, c]))
    angles = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    edges = np.linspace(0.0, 180.0, int(n_bins) + 1)
    return {s: _histogram(angles[:, symbols[c] == s], edges) for s in sorted(set(symbols[c].tolist()))}


def dihedral_distributions(positions_A, quads, symbols, n_bins: int = 72) -> dict:
    """{(sym_b, sym_c): (angle_deg, p)}: dihedrals a-b-c-d over the frames,
    pooled by the species of the central bond, on [-180, 180]."""
    x = check_trajectory(positions_A, "dihedral_distributions", "positions_A", min_atoms=4)
    quads, symbols = np.asarray(quads, int).reshape(-1, 4), np.asarray(symbols)
    if len(quads) and quads.max() >= x.shape[1]:
        raise _error("dihedral_distributions", "quads", f"atom index {quads.max()} for {x.shape[1]} atoms")
    a, b, c, d = quads.T
    b1, b2, b3 = x[:, b] - x[:, a], x[:, c] - x[:, b], x[:, d] - x[:, c]
    n1, n2 = np.cross(b1, b2), np.cross(b2, b3)
    m1 = np.cross(n1, _unit(b2))
    # IUPAC sign (as ase.Atoms.get_dihedral): clockwise looking down b -> c is positive
    phi = -np.degrees(np.arctan2(np.einsum("tki,tki->tk", m1, n2), np.einsum("tki,tki->tk", n1, n2)))
    keys = [tuple(sorted(k)) for k in zip(symbols[b].tolist(), symbols[c].tolist())]
    edges = np.linspace(-180.0, 180.0, int(n_bins) + 1)
    return {k: _histogram(phi[:, [q == k for q in keys]], edges) for k in sorted(set(keys))}


def distribution_difference(run, baseline, where: str = "distribution_difference") -> float:
    """Half the L1 distance ½∫|p_run − p_base| dx of two distributions (x, p)
    on the same bins: 0 for the same, 1 for disjoint ones."""
    (x_run, p_run), (x_base, p_base) = run, baseline
    if np.shape(x_run) != np.shape(x_base) or not np.allclose(x_run, x_base):
        raise _error(where, "bins", "the two distributions use different bins; compute both with the same range")
    width = np.gradient(np.asarray(x_base, float)) if len(x_base) > 1 else np.ones(1)
    return float(0.5 * np.sum(np.abs(np.asarray(p_run) - np.asarray(p_base)) * width))


def distributions_difference(run: dict, baseline: dict, where: str = "distributions_difference") -> dict:
    """:func:`distribution_difference` for every key of the baseline, plus
    ``"overall"`` = the largest (worst); a key missing in the run is an error."""
    missing = sorted(set(baseline) - set(run), key=str)
    if missing or not baseline:
        raise _error(where, "keys", f"run lacks {missing}" if missing else "the baseline holds no distribution")
    out = {k: distribution_difference(run[k], baseline[k], where) for k in baseline}
    out["overall"] = max(out.values())
    return out


# ---- crystals -----------------------------------------------------------------------
def vibration_amplitudes(positions_unwrapped_A, symbols, masses_amu, n_blocks: int = 4) -> dict:
    """{symbol: BlockMean of ⟨|x − x̄|²⟩ (Å²)}: each species' mean squared
    displacement from its atoms' average positions over the run (centre-of-mass
    drift removed): the plateau a crystal's MSD reaches instead of diffusing."""
    from .dynamics import remove_com_drift

    x = check_trajectory(positions_unwrapped_A, "vibration_amplitudes", "positions_unwrapped_A", min_frames=n_blocks)
    symbols = np.asarray(symbols)
    if len(symbols) != x.shape[1]:
        raise _error("vibration_amplitudes", "symbols", f"{len(symbols)} symbols for {x.shape[1]} atoms")
    x = remove_com_drift(x, masses_amu)
    u2 = ((x - x.mean(axis=0)) ** 2).sum(-1)  # (T, N)
    return {s: block_mean(u2[:, symbols == s].mean(axis=1), n_blocks, "vibration_amplitudes")
            for s in sorted(set(symbols.tolist()))}


def lindemann_ratio(positions_unwrapped_A, nearest_neighbour_A: float, masses_amu=None) -> float:
    """sqrt(⟨|x − x̄|²⟩) / nearest-neighbour distance over all atoms: below ~0.1
    a crystal vibrates about its sites; above LINDEMANN_MELTED it has melted."""
    from .dynamics import remove_com_drift

    x = check_trajectory(positions_unwrapped_A, "lindemann_ratio", "positions_unwrapped_A", min_frames=2)
    if not (np.isfinite(nearest_neighbour_A) and nearest_neighbour_A > 0):
        raise _error("lindemann_ratio", "nearest_neighbour_A", f"must be > 0 (got {nearest_neighbour_A})")
    x = remove_com_drift(x, masses_amu)
    return float(np.sqrt(((x - x.mean(axis=0)) ** 2).sum(-1).mean()) / nearest_neighbour_A)
