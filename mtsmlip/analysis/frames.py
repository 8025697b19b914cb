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


def check_trajectory(array, where: str, field: str, min_frames: int = 1, min_atoms: int = 1) -> np.ndarray:
    """`array` as a float (T, N, 3) array of finite numbers with T ≥ min_frames
    and N ≥ min_atoms, or a DataError naming the function (`where`) and the
    argument (`field`): every analysis refuses what it cannot use by name."""
    try:
        x = np.asarray(array, dtype=float)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}, field '{field}': not an array of numbers ({exc})") from None
    if x.ndim != 3 or x.shape[2] != 3:
        raise DataError(f"{where}, field '{field}': need shape (T frames, N atoms, 3), got {x.shape}")
    if len(x) < min_frames or x.shape[1] < min_atoms:
        raise DataError(f"{where}, field '{field}': need at least {min_frames} frames of at least {min_atoms} atoms, "
                        f"got {x.shape[0]} frames of {x.shape[1]}")
    if not np.all(np.isfinite(x)):
        raise DataError(f"{where}, field '{field}': holds NaN or infinite values (frame {np.argwhere(~np.isfinite(x))[0][0]})")
    return x


def check_positive(value, where: str, field: str) -> float:
    """`value` as a finite float > 0, or a DataError naming function and argument."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not (np.isfinite(number) and number > 0):
        raise DataError(f"{where}, field '{field}': must be a positive number (got {value!r})")
    return number


def check_per_atom(values, n_atoms: int, where: str, field: str) -> np.ndarray:
    """`values` (symbols or masses) with one entry per atom, or a DataError."""
    values = np.asarray(values)
    if values.shape != (n_atoms,):
        raise DataError(f"{where}, field '{field}': need one value per atom ({n_atoms}), got shape {values.shape}")
    return values
