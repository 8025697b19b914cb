"""Turning a trajectory (a list of ``ase.Atoms``) into arrays, with checks.

Every array helper checks that all frames hold the same atoms in the same order
and raises :class:`mtsmlip.data.DataError` naming the frame and field otherwise.
"""

from __future__ import annotations

from typing import Sequence

import ase.units
import numpy as np
from ase import Atoms

from ..errors import DataError


def check_same_atoms(frames: Sequence[Atoms], where: str = "trajectory") -> None:
    """Raise DataError unless every frame has the atomic numbers of frame 0."""
    if len(frames) == 0:
        raise DataError(f"{where}: holds no frames")
    numbers = frames[0].numbers
    for i, atoms in enumerate(frames):
        if len(atoms) != len(numbers) or np.any(atoms.numbers != numbers):
            raise DataError(f"{where}, frame {i}, field 'numbers': atoms differ from frame 0")


def positions_A(frames: Sequence[Atoms]) -> np.ndarray:
    """Positions as stored (possibly wrapped), shape (T, N, 3), Å."""
    check_same_atoms(frames)
    return np.stack([atoms.positions for atoms in frames])


def cells_A(frames: Sequence[Atoms]) -> np.ndarray:
    """Cell matrices (rows are lattice vectors), shape (T, 3, 3), Å."""
    check_same_atoms(frames)
    for i, atoms in enumerate(frames):
        if abs(atoms.cell.volume) < 1e-12:
            raise DataError(f"trajectory, frame {i}, field 'cell': zero volume (no periodic cell)")
    return np.stack([atoms.cell[:] for atoms in frames])


def velocities_A_per_fs(frames: Sequence[Atoms]) -> np.ndarray:
    """Velocities in Å/fs, shape (T, N, 3) (ASE stores Å per ASE time unit)."""
    check_same_atoms(frames)
    for i, atoms in enumerate(frames):
        if "momenta" not in atoms.arrays:
            raise DataError(f"trajectory, frame {i}, field 'momenta': missing (no velocities)")
    return np.stack([atoms.get_velocities() for atoms in frames]) * ase.units.fs


def forces_eV_per_A(frames: Sequence[Atoms]) -> np.ndarray:
    """Forces from ``arrays['forces']`` or the attached calculator, shape (T, N, 3)."""
    check_same_atoms(frames)
    return np.stack([_frame_forces(atoms, i) for i, atoms in enumerate(frames)])


def _frame_forces(atoms: Atoms, i: int) -> np.ndarray:
    if "forces" in atoms.arrays:
        return atoms.arrays["forces"]
    if atoms.calc is not None:
        return atoms.get_forces()
    raise DataError(f"trajectory, frame {i}, field 'forces': missing")


def chemical_symbols(frames: Sequence[Atoms]) -> np.ndarray:
    """Chemical symbols of frame 0, shape (N,)."""
    check_same_atoms(frames)
    return np.array(frames[0].get_chemical_symbols())
