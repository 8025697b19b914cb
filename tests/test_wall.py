"""No holes at short range: a model built with the short-range wall (nequip's
ZBL) pushes every pair of species apart as they meet, steeply, whatever its
network does there; a pair trained with the defaults does too."""

import itertools

import numpy as np
import pytest
from ase import Atoms

from mtsmlip.models import LoadedModel, build_model, zbl_wall
from tests.systems import tiny_model_config

DISTANCES_A = (0.15, 0.25, 0.35, 0.5)


def dimer_energies(calc, a: str, b: str):
    """(energies eV, force on the second atom along the bond eV/Å) of the dimer a–b at DISTANCES_A."""
    energies, push = [], []
    for r in DISTANCES_A:
        dimer = Atoms(a + b, positions=[[0, 0, 0], [0, 0, r]], cell=np.eye(3) * 20.0, pbc=False)
        dimer.calc = calc
        energies.append(dimer.get_potential_energy())
        push.append(dimer.get_forces()[1, 2])
    return np.array(energies), np.array(push)


def assert_wall(calc, species):
    for a, b in itertools.combinations_with_replacement(species, 2):
        energies, push = dimer_energies(calc, a, b)
        assert np.all(np.diff(energies) < 0), (a, b, energies)  # closer is always higher
        assert energies[0] - energies[-1] > 5.0, (a, b, energies)  # steep: several eV within 0.35 Å
        assert np.all(push > 0), (a, b, push)  # the force pushes the atoms apart


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_an_untrained_model_with_the_wall_repels_every_species_pair(seed):
    config = tiny_model_config("fast", seed=seed)
    config["pair_potential"] = zbl_wall(config["type_names"])
    loaded = LoadedModel(build_model(config).eval(), config, {})
    assert_wall(loaded.calculator(), config["type_names"])


def test_the_wall_is_what_repels():
    """Without it the same network is not guaranteed to: the wall's energy at
    0.15 Å is what makes the difference (checked on one seed's H–H dimer)."""
    bare = tiny_model_config("fast", seed=0)
    walled = {**bare, "pair_potential": zbl_wall(bare["type_names"])}
    e_bare, _ = dimer_energies(LoadedModel(build_model(bare).eval(), bare, {}).calculator(), "H", "H")
    e_wall, _ = dimer_energies(LoadedModel(build_model(walled).eval(), walled, {}).calculator(), "H", "H")
    assert (e_wall - e_bare)[0] > 10 * abs(e_bare[0] - e_bare[-1])
