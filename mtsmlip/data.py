"""Reading reference frames, checking them, and splitting them.

Every problem with input data raises :class:`DataError` whose message names the
file, the frame (0-based index) and the field, so that a user can find it.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import ase.io
import numpy as np
from ase import Atoms

from .errors import DataError

# Closer than this no two atoms are in any structure MD or training should see
# (the shortest bond, H2, is 0.74 Å); the MD safety check uses the same limit.
MIN_DISTANCE_A = 0.5


def _where(path, frame=None, field=None) -> str:
    parts = [f"{path}"]
    if frame is not None:
        parts.append(f"frame {frame}")
    if field is not None:
        parts.append(f"field '{field}'")
    return ", ".join(parts)


def read_frames(path, index=":") -> list[Atoms]:
    """Read frames with energies and forces from anything ``ase.io.read`` reads.

    Returns a list of ``Atoms`` whose ``info['energy']`` (eV) and ``arrays['forces']``
    (eV/Å) hold the reference, detached from any calculator. Raises DataError for a
    missing or empty file, missing/NaN energy or forces, and mixed periodicity.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: file not found")
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: file is empty (holds no frames)")
    try:
        frames = _read_ase(path, index)
    except StopIteration:
        frames = []
    except Exception as exc:  # ase raises many types for unreadable files
        raise DataError(f"{path}: cannot be read by ase.io.read ({exc})") from exc
    if isinstance(frames, Atoms):
        frames = [frames]
    if len(frames) == 0:
        raise DataError(f"{path}: file holds no frames")
    labelled = [_labelled(atoms, path, i) for i, atoms in enumerate(frames)]
    check_consistent_periodicity(labelled, path)
    return labelled


@functools.lru_cache(maxsize=4)
def _cached_frames(path: str, mtime: float, size: int) -> tuple:
    return tuple(read_frames(path))


def frames_of(path) -> list:
    """All labelled frames of `path` (:func:`read_frames`, read once per process
    and file version)."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise DataError(f"{path}: file not found")
    return list(_cached_frames(path, os.path.getmtime(path), os.path.getsize(path)))


def read_structure(path) -> Atoms:
    """The starting structure for MD: the last frame of anything ``ase.io.read``
    reads (positions, cell, pbc and momenta if present); no labels needed."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: structure file not found")
    try:
        atoms = _read_ase(path, -1)
    except Exception as exc:  # ase raises many types for unreadable files
        raise DataError(f"{path}: cannot be read by ase.io.read ({exc})") from exc
    where = f"{path}, last frame"
    for field, values in (("positions", atoms.positions), ("momenta", atoms.get_momenta())):
        if not np.all(np.isfinite(values)):
            raise DataError(f"{where}, field '{field}': contains NaN or inf")
    check_min_distance(atoms, where)
    return atoms


def _read_ase(path: str, index):
    """ase.io.read, but a .gz file is decompressed into memory first: ASE seeks
    back and forth in the file, which in a gzip stream costs quadratic time
    (1593 water frames: 230 s against 1.4 s)."""
    if not path.endswith(".gz"):
        return ase.io.read(path, index=index)
    import gzip
    import io

    from ase.io.formats import filetype

    fmt = filetype(path)
    with gzip.open(path, "rt") as f:
        return ase.io.read(io.StringIO(f.read()), index=index, format=fmt)


def _labelled(atoms: Atoms, path, i) -> Atoms:
    """Copy of `atoms` with the reference energy/forces moved into info/arrays."""
    energy = _get_energy(atoms, path, i)
    forces = _get_forces(atoms, path, i)
    out = Atoms(
        numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc
    )
    if not np.all(np.isfinite(out.positions)):
        raise DataError(f"{_where(path, i, 'positions')}: contains NaN or inf")
    check_min_distance(out, _where(path, i))
    out.info["energy"] = energy
    out.arrays["forces"] = forces
    return out


def _get_energy(atoms, path, i) -> float:
    energy = atoms.info.get("energy")
    if energy is None and atoms.calc is not None:
        energy = atoms.calc.results.get("energy")
    if energy is None:
        raise DataError(f"{_where(path, i, 'energy')}: missing")
    energy = float(energy)
    if not np.isfinite(energy):
        raise DataError(f"{_where(path, i, 'energy')}: is {energy}")
    return energy


def _get_forces(atoms, path, i) -> np.ndarray:
    forces = atoms.arrays.get("forces")
    if forces is None and atoms.calc is not None:
        forces = atoms.calc.results.get("forces")
    if forces is None:
        raise DataError(f"{_where(path, i, 'forces')}: missing")
    forces = np.asarray(forces, dtype=float)
    if forces.shape != (len(atoms), 3):
        raise DataError(
            f"{_where(path, i, 'forces')}: shape {forces.shape}, expected ({len(atoms)}, 3)"
        )
    if not np.all(np.isfinite(forces)):
        bad = int(np.argwhere(~np.isfinite(forces))[0][0])
        raise DataError(f"{_where(path, i, 'forces')}: NaN or inf at atom {bad}")
    return forces


def closest_pair(positions, cell, pbc, cutoff_A: float):
    """(i, j, distance Å) of the two closest atoms closer than `cutoff_A`
    (periodic images included), or None. positions (N, 3) Å; cell (3, 3)."""
    from vesin import NeighborList

    box = np.asarray(cell, dtype=float) if np.any(pbc) else np.zeros((3, 3))
    nl = NeighborList(cutoff=float(cutoff_A), full_list=False)
    i, j, d = nl.compute(np.asarray(positions, dtype=float), box, [bool(p) for p in pbc], quantities="ijd")
    if len(d) == 0:
        return None
    k = int(np.argmin(d))
    return int(i[k]), int(j[k]), float(d[k])


def check_min_distance(atoms: Atoms, where: str, limit_A: float = MIN_DISTANCE_A) -> None:
    """DataError naming the two atoms if any pair is closer than `limit_A`
    (coincident or overlapping atoms: forces blow up, training turns to NaN)."""
    if len(atoms) < 2:
        return
    if atoms.pbc.any() and abs(atoms.cell.volume) < 1e-12:
        raise DataError(f"{where}, field 'cell': periodic structure without a cell")
    pair = closest_pair(atoms.positions, atoms.cell.array, atoms.pbc, limit_A)
    if pair is not None:
        i, j, d = pair
        raise DataError(f"{where}, field 'positions': atoms {i} and {j} are {d:.3f} Å apart "
                        f"(closer than {limit_A} Å: overlapping atoms)")


def check_consistent_periodicity(frames, path) -> None:
    """All frames periodic or all non-periodic: a model cannot learn both at once."""
    first = bool(frames[0].pbc.any())
    for i, atoms in enumerate(frames):
        if bool(atoms.pbc.any()) != first:
            raise DataError(
                f"{_where(path, i, 'pbc')}: pbc={atoms.pbc.tolist()} but frame 0 has "
                f"pbc={frames[0].pbc.tolist()}; periodic and non-periodic frames are mixed"
            )


def perpendicular_widths_A(cell) -> np.ndarray:
    """Distances between opposite faces of the cell (Å), shape (3,)."""
    inv = np.linalg.inv(np.asarray(cell, dtype=float))
    return 1.0 / np.linalg.norm(inv, axis=0)


def check_periodic_cell(atoms: Atoms, where: str) -> None:
    """Raise DataError if a periodic frame has no cell (zero volume). A cell
    narrower than a model's cutoff is fine: every periodic image within the
    cutoff is a neighbour (as in nequip's and vesin's neighbour lists), which is
    what small DFT cells of solids (primitive and strained cells) need."""
    if atoms.pbc.any() and abs(atoms.cell.volume) < 1e-12:
        raise DataError(f"{where}, field 'cell': periodic frame without a cell")


MAX_IMAGE_ATOMS = 50_000_000  # atoms of all periodic images a neighbour search may have to place


def check_image_count(atoms: Atoms, cutoff_A: float, where: str) -> None:
    """DataError if a periodic cell is so narrow against `cutoff_A` that the
    neighbour search would place more than :data:`MAX_IMAGE_ATOMS` image atoms
    (a 0.01 Å cell and a 5 Å cutoff would mean a billion images)."""
    check_periodic_cell(atoms, where)
    if not atoms.pbc.any():
        return
    widths = perpendicular_widths_A(atoms.cell.array)
    images = np.prod([2 * np.ceil(cutoff_A / w) + 1 for w, periodic in zip(widths, atoms.pbc) if periodic])
    if images * len(atoms) > MAX_IMAGE_ATOMS:
        raise DataError(f"{where}, field 'cell': widths {np.round(widths, 3).tolist()} Å against a {cutoff_A:g} Å "
                        f"cutoff mean {int(images)} periodic images of each of {len(atoms)} atoms: too narrow a "
                        "cell to search (replicate the structure instead)")


def check_species_known(atoms: Atoms, type_names, where: str) -> None:
    """Raise DataError naming species the model was never trained on."""
    unknown = sorted(set(atoms.get_chemical_symbols()) - set(type_names))
    if unknown:
        raise DataError(
            f"{where}, field 'numbers': species {unknown} unknown to the model "
            f"(trained on {list(type_names)})"
        )


def species_of(frames) -> list[str]:
    """Sorted chemical symbols present in `frames` (the model's type names)."""
    return sorted({s for atoms in frames for s in atoms.get_chemical_symbols()})


@dataclass(frozen=True)
class Split:
    """Indices into the frame list for train/validation/test, fixed by `seed`."""

    train: list[int]
    val: list[int]
    test: list[int]
    seed: int

    def as_dict(self) -> dict:
        return {"seed": self.seed, "train": self.train, "val": self.val, "test": self.test}


def make_split(n_frames: int, n_train: int, n_val: int, seed: int, n_test: int | None = None,
               test_split: str = "random") -> Split:
    """Train/validation/test indices into `n_frames` frames; same seed, same split.

    test_split "random": train and validation are drawn at random, the test set is
    the remaining frames (or the first `n_test` of them). "last": the test set is the
    last `n_test` frames of the file (the usual hold-out for time-ordered data such
    as the water set's last 200 frames); train and validation are drawn from the rest.
    """
    if test_split not in ("random", "last"):
        raise DataError(f"test_split must be 'random' or 'last' (got {test_split!r})")
    if n_train < 1 or n_val < 1:
        raise DataError(f"need at least 1 training and 1 validation frame (got {n_train}, {n_val})")
    held_out = int(n_test or 0) if test_split == "last" else 0
    if test_split == "last" and held_out < 1:
        raise DataError("test_split 'last' needs test_frames >= 1")
    pool = n_frames - held_out
    if n_train + n_val > pool:
        raise DataError(
            f"asked for {n_train} train + {n_val} validation frames but the data has {pool}"
            + (f" once the last {held_out} are held out" if held_out else "")
        )
    perm = np.random.default_rng(seed).permutation(pool).tolist()
    rest = list(range(pool, n_frames)) if held_out else perm[n_train + n_val :]
    test = rest if (n_test is None or held_out) else rest[:n_test]
    return Split(train=perm[:n_train], val=perm[n_train : n_train + n_val], test=test, seed=seed)
