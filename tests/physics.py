"""Shared physics checks for anything that is an ASE calculator (NequIP-style
test mixins): forces are -dE/dx, energies are invariant and forces equivariant
under rotation, translation and permutation."""

import numpy as np
from ase import Atoms
from ase.build import molecule
from scipy.spatial.transform import Rotation


def small_water_box(n_side=2, spacing_A=3.1, seed=0, vacuum=False) -> Atoms:
    """n_side**3 randomly oriented, slightly distorted water molecules on a cubic
    lattice; periodic unless `vacuum`. Deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    atoms = Atoms()
    for ijk in np.ndindex(n_side, n_side, n_side):
        w = molecule("H2O")
        w.positions = w.positions @ Rotation.random(random_state=int(rng.integers(1 << 30))).as_matrix().T
        w.positions += np.array(ijk) * spacing_A + rng.normal(0, 0.05, (3, 3))
        atoms += w
    if vacuum:
        atoms.center(vacuum=6.0)
        atoms.pbc = False
    else:
        atoms.cell = np.eye(3) * n_side * spacing_A
        atoms.pbc = True
    return atoms


def energy_forces(calc, atoms):
    a = atoms.copy()
    a.calc = calc
    return a.get_potential_energy(), a.get_forces()


def assert_forces_are_minus_energy_gradient(calc, atoms, n_checks=6, h=1e-4, rtol=1e-4, atol=1e-6, seed=0):
    """Central finite differences of E against F on a few random components."""
    _, forces = energy_forces(calc, atoms)
    rng = np.random.default_rng(seed)
    for _ in range(n_checks):
        i, k = int(rng.integers(len(atoms))), int(rng.integers(3))
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[i, k] += h
        minus.positions[i, k] -= h
        fd = -(energy_forces(calc, plus)[0] - energy_forces(calc, minus)[0]) / (2 * h)
        np.testing.assert_allclose(forces[i, k], fd, rtol=rtol, atol=atol, err_msg=f"atom {i} dir {k}")


def assert_invariant_and_equivariant(calc, atoms, atol=1e-8, seed=0):
    """Rotate (cell too), translate and permute: E unchanged, F rotated/permuted."""
    e0, f0 = energy_forces(calc, atoms)
    rng = np.random.default_rng(seed)
    rot = Rotation.random(random_state=seed).as_matrix()
    moved = atoms.copy()
    moved.positions = atoms.positions @ rot.T + rng.normal(size=3)
    moved.cell = atoms.cell.array @ rot.T
    e1, f1 = energy_forces(calc, moved)
    np.testing.assert_allclose(e1, e0, atol=atol * len(atoms), rtol=0)
    np.testing.assert_allclose(f1, f0 @ rot.T, atol=atol * 10, rtol=0)
    perm = rng.permutation(len(atoms))
    e2, f2 = energy_forces(calc, atoms[perm])
    np.testing.assert_allclose(e2, e0, atol=atol * len(atoms), rtol=0)
    np.testing.assert_allclose(f2, f0[perm], atol=atol * 10, rtol=0)
