"""Replicas: independent copies of a molecule in one engine."""

import numpy as np
import pytest
import torch
from ase.build import molecule

from mtsmlip.errors import DataError
from mtsmlip.md.engine import degrees_of_freedom, initialise_momenta
from mtsmlip.md.replicas import replicate, split_replicas
from mtsmlip.forces import ModelForces
from mtsmlip.models import TrainedModels
from tests.systems import write_tiny_pair


def test_copies_are_apart_and_each_gets_the_forces_it_has_alone(tmp_path):
    models = TrainedModels.load(write_tiny_pair(tmp_path / "pair"))
    water = molecule("H2O")
    gap_A = models.largest_cutoff_A() + 1.5
    atoms = replicate(water, 5, gap_A, seed=1)
    copies = split_replicas(atoms)
    assert len(copies) == 5 and all(c.get_chemical_symbols() == water.get_chemical_symbols() for c in copies)
    for a in range(5):
        for b in range(a + 1, 5):
            gaps = np.linalg.norm(copies[a].positions[:, None] - copies[b].positions[None], axis=-1)
            assert gaps.min() >= gap_A
    loaded = models.models["fast"]
    together = ModelForces(loaded, atoms)(torch.tensor(atoms.positions, dtype=torch.float64))
    alone = [ModelForces(loaded, c)(torch.tensor(c.positions, dtype=torch.float64)) for c in copies]
    np.testing.assert_allclose(together[1].numpy(), np.concatenate([f.numpy() for _, f in alone]), atol=1e-5)
    assert float(together[0]) == pytest.approx(sum(float(e) for e, _ in alone), abs=1e-4)


def test_each_copy_keeps_its_own_momentum_and_the_count_of_degrees_of_freedom():
    atoms = replicate(molecule("CH3CH2OH"), 4, 5.0)
    initialise_momenta(atoms, 300.0, seed=0)
    for copy in split_replicas(atoms):
        assert np.allclose(copy.get_momenta().sum(0), 0, atol=1e-10)
        assert np.allclose(copy.get_angular_momentum(), 0, atol=1e-8)
    assert degrees_of_freedom(atoms, "bussi") == 3 * len(atoms) - 6 * 4
    assert degrees_of_freedom(atoms, "langevin") == 3 * len(atoms)


def test_replicas_refuse_periodic_structures_and_bad_counts():
    from ase.build import bulk

    with pytest.raises(DataError, match="isolated molecule"):
        replicate(bulk("Si"), 2, 5.0)
    with pytest.raises(DataError, match="at least 1 copy"):
        replicate(molecule("H2O"), 0, 5.0)
    with pytest.raises(DataError, match="do not split"):
        split_replicas(molecule("H2O"), 2)


def test_md_runs_replicas_of_a_molecule(tmp_path):
    import ase.io

    from mtsmlip.cli import main

    pair = write_tiny_pair(tmp_path / "pair", energy_scale=0.02)
    ase.io.write(tmp_path / "water.extxyz", molecule("H2O"))
    argv = ["md", "--model", str(pair), "--structure", str(tmp_path / "water.extxyz"), "--steps", "4",
            "--n-inner", "2", "--temperature-K", "300", "--thermostat", "langevin", "--traj-every", "2",
            "--no-progress", "--out", str(tmp_path / "md")]
    assert main(argv + ["--replicas", "3"]) == 0
    frames = ase.io.read(tmp_path / "md" / "trajectory.extxyz", ":")
    assert len(frames) == 3 and all(len(f) == 9 for f in frames)
    assert [len(c) for c in split_replicas(frames[-1], 3)] == [3, 3, 3]
