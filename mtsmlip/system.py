"""What kind of system a structure is, and the defaults that follow from it.

Training and ``compare`` read the same few facts from the frames, so a user
never has to know the presets to get a sane first run:

* ``periodic``: a cell periodic in all three directions (liquid or crystal:
  which of the two is decided from MD, by whether atoms diffuse, see
  :func:`mtsmlip.analysis.mobile_species`); otherwise an isolated molecule
  (no cell, or not periodic), whose observables are distance, angle and
  energy distributions instead of g(r) and diffusion;
* ``bond_length_A``: the median nearest-neighbour distance (O-H 0.97 Å in
  water, C-H 1.09 Å in organic molecules, 2.35 Å in silicon);
* ``n_atoms`` and, for molecules, ``extent_A`` (the largest interatomic
  distance).

Defaults fitted to them (each one a user's config or option overrides):

* the fast model's cutoff: 3 bond lengths, within [3, 4] Å: the first and
  second neighbour shells, which carry the stiff bond and angle forces (3.0 Å
  for water: the cutoff the shipped pair's sweep chose; 3.3 Å for organic
  molecules; 4.0 Å for silicon);
* the batch size: about 32 atoms per optimiser step, within [1, 4] frames.
  Within a short budget the number of optimiser steps decides accuracy more
  than frames per step (ethanol, 300 frames, 10 epochs of stage 1: force RMSE
  159 / 224 / 458 meV/Å at 1 / 4 / 16 frames per step), but below ~32 atoms a
  step's fixed cost dominates (20 / 29 / 37 ms per step), so a few small
  molecules share a step almost for free: 4 frames of ethanol, 2 of aspirin,
  1 of the water box (what the shipped pair's recipe uses) or of a 64-atom
  crystal.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from ase import Atoms

from .errors import DataError

FAST_CUTOFF_BONDS = 3.0
FAST_CUTOFF_RANGE_A = (3.0, 4.0)
ATOMS_PER_BATCH = 32
BATCH_RANGE = (1, 4)


@dataclass(frozen=True)
class SystemProfile:
    """The facts about a structure that defaults and checks are chosen from."""

    periodic: bool
    n_atoms: int
    bond_length_A: float
    extent_A: float | None

    @property
    def kind(self) -> str:
        """'molecule' (isolated) or 'periodic' (liquid or crystal, told apart by MD)."""
        return "periodic" if self.periodic else "molecule"

    def as_dict(self) -> dict:
        return {"kind": self.kind, **asdict(self)}


def is_periodic(atoms: Atoms) -> bool:
    """Periodic in all three directions with a cell of non-zero volume."""
    return bool(np.all(atoms.pbc)) and abs(atoms.cell.volume) > 1e-12


def check_kind(atoms: Atoms, where: str) -> None:
    """A structure is either isolated (no periodic direction) or periodic in all
    three with a cell: slabs and wires (1 or 2 periodic directions) are not
    supported by compare's observables, and a periodic flag without a cell is
    a broken file."""
    pbc = np.asarray(atoms.pbc, bool)
    if pbc.any() and not is_periodic(atoms):
        raise DataError(f"{where}, field 'pbc': periodic in {int(pbc.sum())} of 3 directions "
                        f"(pbc={pbc.tolist()}, cell volume {abs(atoms.cell.volume):.3g} Å³); use an isolated "
                        "structure (pbc all False) or a full 3D cell")


def profile(frames, max_frames: int = 20) -> SystemProfile:
    """The :class:`SystemProfile` of `frames` (ase.Atoms; the first `max_frames`
    are looked at)."""
    from vesin import NeighborList

    frames = list(frames)[:max_frames]
    if not frames:
        raise DataError("no frames to take the system's profile from")
    first = frames[0]
    periodic = is_periodic(first)
    nearest = []
    for atoms in frames:
        cell = atoms.cell.array if periodic else np.zeros((3, 3))
        i, d = NeighborList(cutoff=6.0, full_list=True).compute(atoms.positions, cell, periodic, quantities="id")
        best = np.full(len(atoms), np.inf)
        np.minimum.at(best, i, d)
        nearest.append(best[np.isfinite(best)])
    nearest = np.concatenate(nearest)
    bond_A = float(np.median(nearest)) if len(nearest) else FAST_CUTOFF_RANGE_A[1] / FAST_CUTOFF_BONDS
    extent = None if periodic else float(largest_distance_A(first.positions))
    return SystemProfile(periodic=bool(periodic), n_atoms=len(first), bond_length_A=bond_A, extent_A=extent)


def shortest_distances_A(frames, cutoff_A: float) -> dict:
    """{(a, b) sorted symbols: the shortest distance between an a and a b in any
    of `frames`}, for the species pairs that come within `cutoff_A` somewhere
    (periodic images included: cells narrower than the cutoff work)."""
    from vesin import NeighborList

    found = {}
    for atoms in frames:
        periodic = is_periodic(atoms)
        cell = atoms.cell.array if periodic else np.zeros((3, 3))
        i, j, d = NeighborList(cutoff=float(cutoff_A), full_list=False).compute(
            atoms.positions, cell, periodic, quantities="ijd")
        symbols = np.asarray(atoms.get_chemical_symbols())
        for a, b, r in zip(symbols[i], symbols[j], d):
            key = tuple(sorted((str(a), str(b))))
            if r < found.get(key, np.inf):
                found[key] = float(r)
    return found


def largest_distance_A(positions) -> float:
    """The largest distance between any two of `positions` (N, 3), Å."""
    x = np.asarray(positions, float)
    return float(np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1)).max()) if len(x) > 1 else 0.0


def fast_cutoff_A(system: SystemProfile) -> float:
    """Cutoff of the fast model: FAST_CUTOFF_BONDS bond lengths, clipped to
    FAST_CUTOFF_RANGE_A and rounded to 0.1 Å."""
    low, high = FAST_CUTOFF_RANGE_A
    return round(float(np.clip(FAST_CUTOFF_BONDS * system.bond_length_A, low, high)), 1)


def batch_size(system: SystemProfile) -> int:
    """Frames per optimiser step: about ATOMS_PER_BATCH atoms, within BATCH_RANGE."""
    low, high = BATCH_RANGE
    return int(np.clip(round(ATOMS_PER_BATCH / max(system.n_atoms, 1)), low, high))


def fitted_defaults(system: SystemProfile) -> dict:
    """The defaults that follow from `system` (recorded in the manifest)."""
    return {"fast_r_max_A": fast_cutoff_A(system), "batch_size": batch_size(system)}
