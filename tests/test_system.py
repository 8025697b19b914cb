"""What kind of system a structure is, and the defaults fitted to it."""

import pytest
from ase.build import bulk, molecule

from mtsmlip import system
from mtsmlip.errors import DataError
from tests.systems import small_water_box


def test_a_molecule_is_isolated_and_its_bonds_set_the_fast_cutoff():
    ethanol = molecule("CH3CH2OH")
    profile = system.profile([ethanol])
    assert profile.kind == "molecule" and profile.n_atoms == 9
    assert profile.bond_length_A == pytest.approx(1.1, abs=0.05)  # C-H dominates the nearest neighbours
    assert profile.extent_A == pytest.approx(ethanol.get_all_distances().max())
    assert system.fitted_defaults(profile) == {"fast_r_max_A": 3.3, "batch_size": 4}


def test_periodic_systems_get_their_defaults_from_density_and_bonds():
    water = system.profile([small_water_box(n_side=4)])  # 192 atoms, O-H 0.97 Å
    silicon = system.profile([bulk("Si", cubic=True).repeat(2)])  # 64 atoms, Si-Si 2.35 Å
    assert water.kind == silicon.kind == "periodic"
    assert system.fitted_defaults(water) == {"fast_r_max_A": 3.0, "batch_size": 1}  # clipped up to 3 Å
    assert system.fitted_defaults(silicon) == {"fast_r_max_A": 4.0, "batch_size": 1}  # clipped down to 4 Å


def test_slabs_and_periodic_flags_without_a_cell_are_refused_by_name():
    slab = small_water_box(n_side=2)
    slab.pbc = [True, True, False]
    with pytest.raises(DataError, match="periodic in 2 of 3 directions"):
        system.check_kind(slab, "slab.extxyz")
    system.check_kind(molecule("H2O"), "water.xyz")  # isolated: fine
    with pytest.raises(DataError, match="no frames"):
        system.profile([])
