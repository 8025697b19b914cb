"""Shared physics checks (NequIP-style test mixins) for anything that gives
energies and forces: an ASE calculator, or a *subject* with
``energy_forces(atoms)``. Forces are −dE/dx; energies are invariant and forces
equivariant under rotation, translation and permutation; a batch equals its
frames; forces vanish exactly beyond the cutoff; far-apart molecules add up."""

import numpy as np
import pytest
from ase import Atoms
from scipy.spatial.transform import Rotation


def energy_forces(calc, atoms):
    """(E eV, F (N, 3) eV/Å) of `atoms` from an ASE calculator or a subject."""
    if hasattr(calc, "energy_forces"):
        return calc.energy_forces(atoms)
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


def apart(atoms_a: Atoms, atoms_b: Atoms, gap_A: float) -> Atoms:
    """`atoms_b` placed so that none of its atoms is within `gap_A` of `atoms_a`; no cell."""
    a, b = atoms_a.copy(), atoms_b.copy()
    b.positions += a.positions.max(0) - b.positions.min(0) + gap_A
    joined = a + b
    joined.pbc, joined.cell = False, np.zeros((3, 3))
    return joined


class PhysicsChecks:
    """Checks every force provider must pass. A subclass gives a fixture
    ``subject`` with ``energy_forces(atoms)``, ``structure(seed)`` (a periodic
    structure it accepts), ``molecule(seed)`` (an isolated molecule),
    ``dimer(distance_A)`` (two atoms, no cell), ``r_max_A`` (forces exactly zero
    beyond it; None where not known) and ``batch`` (frames -> (energies, forces) in one call), or None
    where a provider takes one frame at a time by design."""

    def test_forces_are_minus_the_energy_gradient(self, subject):
        assert_forces_are_minus_energy_gradient(subject, subject.structure(0))

    def test_energy_invariant_and_forces_equivariant(self, subject):
        assert_invariant_and_equivariant(subject, subject.structure(0))

    def test_a_batch_equals_its_frames_one_by_one(self, subject):
        if subject.batch is None:
            pytest.skip("this provider evaluates one frame at a time by design")
        frames = [subject.structure(seed) for seed in (1, 2)]
        energies, forces = subject.batch(frames)
        for k, atoms in enumerate(frames):
            e, f = subject.energy_forces(atoms)
            assert energies[k] == pytest.approx(e, abs=1e-10, rel=1e-12)
            np.testing.assert_allclose(forces[k], f, atol=1e-10, rtol=0)

    def test_forces_are_exactly_zero_beyond_r_max(self, subject):
        if subject.r_max_A is None:
            pytest.skip("an external calculator's cutoff is not known")
        inside = subject.energy_forces(subject.dimer(subject.r_max_A - 0.3))[1]
        beyond = subject.energy_forces(subject.dimer(subject.r_max_A + 0.01))[1]
        assert np.abs(inside).max() > 0  # the check below can fail
        np.testing.assert_array_equal(beyond, 0.0)

    def test_molecules_far_apart_add_up(self, subject):
        if subject.r_max_A is None:
            pytest.skip("an external calculator's cutoff is not known")
        a, b = subject.molecule(0), subject.molecule(1)
        e_a, f_a = subject.energy_forces(a)
        e_b, f_b = subject.energy_forces(b)
        e_ab, f_ab = subject.energy_forces(apart(a, b, subject.r_max_A + 0.5))
        assert e_ab == pytest.approx(e_a + e_b, abs=1e-10, rel=1e-12)
        np.testing.assert_allclose(f_ab, np.concatenate([f_a, f_b]), atol=1e-10, rtol=0)
