"""Hydrogen mass repartitioning: total mass kept, each H heavier by the amount,
the configurational distribution of a harmonic bond unchanged, clear errors."""

import numpy as np
import pytest
from ase import Atoms, units
from ase.calculators.calculator import Calculator, all_changes

from mtsmlip.errors import DataError
from mtsmlip.md import Langevin, MultiTimeStep
from mtsmlip.md.masses import repartitioned_masses
from mtsmlip.md.settings import RunSettings
from tests.systems import small_water_box


def test_mass_moves_from_each_oxygen_onto_its_hydrogens_and_the_total_is_kept():
    atoms = small_water_box()
    masses = repartitioned_masses(atoms, 1.5)
    natural = atoms.get_masses()
    assert masses.sum() == pytest.approx(natural.sum(), abs=1e-12)
    h, o = atoms.numbers == 1, atoms.numbers == 8
    np.testing.assert_allclose(masses[h], natural[h] + 1.5)
    np.testing.assert_allclose(masses[o], natural[o] - 3.0)


def test_a_hydrogen_without_a_bonded_heavy_atom_is_named():
    atoms = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [5.0, 0, 0]])
    with pytest.raises(DataError, match="H atom 2 has no heavy atom within 1.5 Å"):
        repartitioned_masses(atoms, 1.0)
    with pytest.raises(DataError, match="would keep only"):
        repartitioned_masses(Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.96, 0, 0]]), 7.5)


class Springs(Calculator):
    """Harmonic bonds between atoms 2k and 2k+1: E = k/2 (r − r0)²."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, k_eV_per_A2=10.0, r0_A=1.0):
        super().__init__()
        self.k, self.r0 = k_eV_per_A2, r0_A

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        d = self.atoms.positions[1::2] - self.atoms.positions[0::2]
        r = np.linalg.norm(d, axis=1)
        pull = (self.k * (r - self.r0) / r)[:, None] * d  # force on the first atom of each bond
        forces = np.zeros((len(self.atoms), 3))
        forces[0::2], forces[1::2] = pull, -pull
        self.results = {"energy": float(0.5 * self.k * ((r - self.r0) ** 2).sum()), "forces": forces}


class Nothing(Springs):
    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        Calculator.calculate(self, atoms, properties, system_changes)
        self.results = {"energy": 0.0, "forces": np.zeros((len(self.atoms), 3))}


@pytest.mark.parametrize("hmr_amu", [0.0, 3.0])
def test_the_configurational_distribution_of_a_harmonic_bond_is_unchanged(hmr_amu):
    """<(r − r0)²> = kT/k for 64 O–H springs under Langevin, with or without HMR."""
    pairs = 64
    positions = np.zeros((2 * pairs, 3))
    positions[0::2, 0] = np.arange(pairs) * 20.0
    positions[1::2] = positions[0::2] + [1.0, 0.0, 0.0]
    atoms = Atoms("OH" * pairs, positions=positions)
    atoms.set_masses(repartitioned_masses(atoms, hmr_amu))
    spring = Springs()
    md = MultiTimeStep(atoms, spring, Nothing(), 0.25, 1, thermostat=Langevin(300.0, 0.05, np.random.default_rng(4)))
    md.run(400)
    samples = []
    for _ in range(150):
        md.run(20)
        d = atoms.positions[1::2] - atoms.positions[0::2]
        samples.append(np.linalg.norm(d, axis=1) - spring.r0)
    variance = np.mean(np.square(samples))
    assert variance == pytest.approx(units.kB * 300.0 / spring.k, rel=0.06)


def test_run_settings_carry_the_repartitioning():
    assert RunSettings(0.5, 2, hmr_amu=1.0) != RunSettings(0.5, 2)
