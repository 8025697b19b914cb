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


# ---- the data-gated wall (the default) -------------------------------------
SHORTEST_A = {("H", "H"): 1.4, ("H", "O"): 0.9, ("O", "O"): 2.3}


def walled_fast(seed=0, shortest=SHORTEST_A):
    from mtsmlip.models import data_wall

    config = tiny_model_config("fast", seed=seed)
    config["pair_potential"] = data_wall(config["type_names"], shortest, config["r_max"])
    bare = {k: v for k, v in config.items() if k != "pair_potential"}
    return (LoadedModel(build_model(config).eval(), config, {}).calculator(),
            LoadedModel(build_model(bare).eval(), bare, {}).calculator())


@pytest.mark.parametrize("seed", [0, 1])
def test_the_data_gated_wall_repels_every_species_pair(seed):
    walled, _ = walled_fast(seed)
    assert_wall(walled, ["H", "O"])


def test_the_data_gated_wall_is_negligible_over_the_data_and_steep_below_it():
    """The wall's own energy (walled − bare, same weights) is 1e-4 eV at each
    pair's shortest data distance, smaller beyond, and rises as r^-24 below."""
    walled, bare = walled_fast(0)
    for (a, b), r_min in SHORTEST_A.items():
        def wall_at(r):
            dimer = Atoms(a + b, positions=[[0, 0, 0], [0, 0, r]], cell=np.eye(3) * 20.0, pbc=False)
            dimer.calc = walled
            e = dimer.get_potential_energy()
            dimer.calc = bare
            return e - dimer.get_potential_energy()

        assert wall_at(r_min) == pytest.approx(1e-4, rel=1e-3), (a, b)  # the cutoff envelope included
        assert wall_at(1.2 * r_min) < 2e-6, (a, b)
        assert wall_at(0.7 * r_min) > 0.3 and wall_at(0.6 * r_min) > 15.0, (a, b)


def test_shortest_distances_per_species_pair_include_periodic_images():
    from mtsmlip.system import shortest_distances_A

    molecule = Atoms("OH2", positions=[[0, 0, 0], [0.95, 0, 0], [-0.3, 0.9, 0]])
    found = shortest_distances_A([molecule], 3.0)
    assert found[("H", "O")] == pytest.approx(0.9, abs=0.06) and ("O", "O") not in found
    narrow = Atoms("Mo", positions=[[0, 0, 0]], cell=np.eye(3) * 2.7, pbc=True)  # one atom, images only
    assert shortest_distances_A([narrow], 3.0) == {("Mo", "Mo"): pytest.approx(2.7)}


def test_a_pair_trained_with_the_defaults_carries_the_wall_at_its_data():
    """The defaults put the wall on the fast model at the training frames' shortest
    distances, and the trained pair (fast + slow) meets it for every species pair."""
    import mtsmlip
    from mtsmlip.evaluate import select_frames
    from mtsmlip.models import wall_distances_A
    from mtsmlip.system import shortest_distances_A
    from tests.training_helpers import data_file, trained_dir

    models = mtsmlip.load(trained_dir())
    fast = models.models["fast"].config
    distances = wall_distances_A(fast)
    expected = shortest_distances_A(select_frames(data_file(), models.manifest, split="train"), fast["r_max"])
    assert set(distances) == {("H", "H"), ("H", "O"), ("O", "O")} and set(expected) <= set(distances)
    for pair, r in expected.items():
        assert distances[pair] == pytest.approx(r, rel=1e-6), pair
    assert_wall(models.total, ["H", "O"])


@pytest.mark.parametrize("change, message", [({"exponent": 1e9}, "exponent"), ({"exponent": float("nan")}, "exponent"),
                                             ({"value_eV": -1.0}, "value_eV"),
                                             ({"at_A": [[1.4, 0.9], [0.8, 2.3]]}, "at_A"),
                                             ({"at_A": [[1.4, 0.9], [0.9, 99.0]]}, "at_A")])
def test_a_damaged_or_hostile_wall_is_refused_before_it_is_built(change, message):
    from mtsmlip.errors import DataError
    from mtsmlip.models import check_model_config, data_wall

    config = tiny_model_config("fast", seed=0)
    config["pair_potential"] = {**data_wall(config["type_names"], SHORTEST_A, config["r_max"]), **change}
    with pytest.raises(DataError, match=f"pair_potential.{message}"):
        check_model_config(config, "fast.pt")
