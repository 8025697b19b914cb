"""Hydrogen mass repartitioning (HMR): `amu` of mass moved from each bonded
heavy atom onto each of its hydrogens. The total mass, and so the
configurational (Boltzmann) distribution, is unchanged; the dynamics are not
(hydrogens move more slowly, so the O–H stretch that sets the resonance limit
of an outer step gets a longer period). Apply it to the baseline and to MTS alike."""

from __future__ import annotations

import numpy as np
from ase import Atoms

from ..errors import DataError

BOND_CUTOFF_A = 1.5  # an H is bonded to the nearest heavy atom closer than this


def repartitioned_masses(atoms: Atoms, amu: float) -> np.ndarray:
    """Masses (N,) amu with `amu` moved from each H's nearest heavy atom onto the H.
    DataError for an H with no heavy atom within BOND_CUTOFF_A, or a heavy atom
    left lighter than its hydrogens."""
    masses = atoms.get_masses().copy()
    if amu == 0:
        return masses
    if not (np.isfinite(amu) and amu > 0):
        raise DataError(f"hmr_amu must be a number >= 0 (got {amu})")
    for h, heavy in bonded_heavy_atoms(atoms).items():
        masses[h] += amu
        masses[heavy] -= amu
    light = np.flatnonzero((masses <= 1.0 + amu) & (atoms.numbers != 1))
    if len(light):
        raise DataError(f"hmr_amu {amu}: atom {light[0]} ({atoms[light[0]].symbol}) would keep only "
                        f"{masses[light[0]]:.3f} amu; use a smaller --hmr-amu")
    return masses


def bonded_heavy_atoms(atoms: Atoms) -> dict:
    """{H index: index of its nearest heavy atom} (periodic images included)."""
    from vesin import NeighborList

    box = atoms.cell.array if atoms.pbc.any() else np.zeros((3, 3))
    i, j, d = NeighborList(cutoff=BOND_CUTOFF_A, full_list=True).compute(
        atoms.positions, box, bool(atoms.pbc.any()), quantities="ijd")
    is_h = atoms.numbers == 1
    keep = is_h[i] & ~is_h[j]
    nearest = {}
    for k in np.argsort(d[keep], kind="stable"):  # nearest first: the first heavy atom seen per H wins
        nearest.setdefault(int(i[keep][k]), int(j[keep][k]))
    unbonded = sorted(set(np.flatnonzero(is_h)) - set(nearest))
    if unbonded:
        raise DataError(f"hydrogen mass repartitioning: H atom {unbonded[0]} has no heavy atom within "
                        f"{BOND_CUTOFF_A} Å")
    return nearest
