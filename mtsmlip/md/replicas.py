"""Several independent copies of a small molecule in one engine.

A model call on a 9-atom molecule costs about as much as on 100 atoms (fixed
per-call cost: neighbour lists, graph, many small kernels), so users of small
molecules run many copies at once. :func:`replicate` lays K copies out on a
cubic grid, each rotated at random, with at least `gap_A` between any two
copies; with `gap_A` above every model's cutoff plus the neighbour-list skin
they never interact, so one engine call advances K independent trajectories.
Each copy conserves its own momentum and angular momentum in NVE and under
Bussi, so :func:`mtsmlip.md.engine.degrees_of_freedom` counts 3N − 6K (the
count is kept in ``atoms.info[REPLICAS_KEY]``); Langevin thermalises each atom
(3N) and keeps the copies statistically independent: the right thermostat for
replicas. :func:`split_replicas` cuts a frame back into its copies.
"""

from __future__ import annotations

import math

import numpy as np
from ase import Atoms
from scipy.spatial.transform import Rotation

from ..errors import DataError

REPLICAS_KEY = "mtsmlip_replicas"


def replicate(molecule: Atoms, count: int, gap_A: float, seed: int = 0) -> Atoms:
    """`count` randomly rotated copies of an isolated `molecule` on a grid, at
    least `gap_A` apart (closest atoms of two copies). Momenta are not copied."""
    if molecule.pbc.any():
        raise DataError(f"replicas: the structure must be an isolated molecule (pbc={molecule.pbc.tolist()})")
    if int(count) < 1:
        raise DataError(f"replicas: need at least 1 copy (got {count})")
    if not (math.isfinite(gap_A) and gap_A > 0):
        raise DataError(f"replicas: the gap between copies must be positive (got {gap_A} Å)")
    x = molecule.positions - molecule.get_center_of_mass()
    radius_A = float(np.linalg.norm(x, axis=1).max())
    spacing_A = 2 * radius_A + gap_A
    side = math.ceil(round(count ** (1 / 3), 9))
    rotations = Rotation.random(int(count), random_state=seed).as_matrix() if count > 1 else [np.eye(3)]
    out = Atoms()
    for k, ijk in zip(range(int(count)), np.ndindex(side, side, side)):
        copy = Atoms(numbers=molecule.numbers, positions=x @ np.asarray(rotations[k]).T + np.array(ijk) * spacing_A)
        out += copy
    out.set_masses(np.tile(molecule.get_masses(), int(count)))
    out.info[REPLICAS_KEY] = int(count)
    return out


def replica_count(atoms: Atoms) -> int:
    return int(atoms.info.get(REPLICAS_KEY, 1))


def split_replicas(atoms: Atoms, count: int | None = None) -> list[Atoms]:
    """The copies of a replicated frame (positions, momenta, forces if present)."""
    count = replica_count(atoms) if count is None else int(count)
    if count < 1 or len(atoms) % count:
        raise DataError(f"replicas: {len(atoms)} atoms do not split into {count} equal copies")
    size = len(atoms) // count
    return [atoms[k * size:(k + 1) * size] for k in range(count)]


def zero_momentum_per_replica(atoms: Atoms, count: int) -> None:
    """Zero each copy's total and angular momentum (so that each conserves them)."""
    from ase.md.velocitydistribution import Stationary, ZeroRotation

    size = len(atoms) // count
    momenta = atoms.get_momenta()
    for k in range(count):
        part = atoms[k * size:(k + 1) * size]
        Stationary(part)
        if size > 2:
            ZeroRotation(part)
        momenta[k * size:(k + 1) * size] = part.get_momenta()
    atoms.set_momenta(momenta)
