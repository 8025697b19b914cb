"""The physics checks of tests/physics.py applied to every force provider: the
fast, slow and baseline models, fast + slow, every provider the factory of
mtsmlip.forces builds (the parts of a pair, an external calculator, a distilled
pair's correction), and the analytic split Lennard-Jones."""

import numpy as np
import pytest
import torch
from ase import Atoms

from mtsmlip.md.analytic import SplitLennardJones
from mtsmlip.forces import CalculatorTensorForces, CorrectionForces, ModelForces, RememberLast, part_provider
from tests.physics import PhysicsChecks, energy_forces
from tests.systems import argon, small_water_box


def water_molecule(seed: int) -> Atoms:
    return small_water_box(n_side=1, seed=seed, vacuum=True)


class WaterSubject:
    """A provider for H/O: the periodic water box, one water molecule, an O–H dimer."""

    batch = None

    def structure(self, seed):
        return small_water_box(seed=seed)

    def molecule(self, seed):
        return water_molecule(seed)

    def dimer(self, distance_A):
        return Atoms("OH", positions=[[0, 0, 0], [distance_A, 0, 0]])


class CalculatorSubject(WaterSubject):
    def __init__(self, calc, r_max_A, loaded=()):
        self.calc, self.r_max_A, self.loaded = calc, r_max_A, tuple(loaded)
        if self.loaded:
            self.batch = self.batched

    def energy_forces(self, atoms):
        return energy_forces(self.calc, atoms)

    def batched(self, frames):
        """Energies and forces of `frames` as one nequip batch (summed over models)."""
        results = [model_batch(m, frames) for m in self.loaded]
        return sum(r[0] for r in results), [sum(r[1][k] for r in results) for k in range(len(frames))]


def model_batch(loaded, frames):
    from nequip.data import AtomicDataDict
    from nequip.data.ase import from_ase
    from nequip.data.transforms import ChemicalSpeciesToAtomTypeMapper, NeighborListTransform

    transforms = [ChemicalSpeciesToAtomTypeMapper(model_type_names=loaded.type_names),
                  NeighborListTransform(r_max=loaded.r_max)]
    data = []
    for atoms in frames:
        d = from_ase(atoms)
        for transform in transforms:
            d = transform(d)
        data.append(d)
    out = loaded.module(AtomicDataDict.batched_from_list(data))
    energies = out["total_energy"].detach().reshape(-1).numpy()
    forces = np.split(out["forces"].detach().numpy(), np.cumsum([len(a) for a in frames])[:-1])
    return energies, forces


class ProviderSubject(WaterSubject):
    """The engine's ModelForces (skin neighbour list, edge forces), one frame at a time."""

    def __init__(self, loaded):
        self.loaded, self.r_max_A = loaded, loaded.r_max

    def energy_forces(self, atoms):
        energy, forces = ModelForces(self.loaded, atoms, skin_A=1.0)(torch.tensor(atoms.positions))
        return float(energy), forces.numpy()


class TestModels(PhysicsChecks):
    @pytest.fixture(params=["fast", "slow", "baseline"])
    def subject(self, request, pair):
        loaded = pair.models[request.param]
        return CalculatorSubject(loaded.calculator(), loaded.r_max, [loaded])


class TestFastPlusSlow(PhysicsChecks):
    @pytest.fixture
    def subject(self, pair):
        fast, slow = pair.models["fast"], pair.models["slow"]
        return CalculatorSubject(pair.total, max(fast.r_max, slow.r_max), [fast, slow])


class TestEngineForceProvider(PhysicsChecks):
    @pytest.fixture(params=["fast", "slow"])
    def subject(self, request, pair):
        return ProviderSubject(pair.models[request.param])


class FactorySubject(WaterSubject):
    """A provider from mtsmlip.forces, rebuilt for each structure as the factory
    builds it (`make(atoms)`), called on torch positions as the engine calls it."""

    def __init__(self, make, r_max_A):
        self.make, self.r_max_A = make, r_max_A

    def energy_forces(self, atoms):
        energy, forces = self.make(atoms)(torch.tensor(atoms.positions, dtype=torch.float64))
        return float(energy), forces.numpy()


def emt_teacher(atoms):
    from ase.calculators.emt import EMT

    return CalculatorTensorForces(atoms, EMT())


def emt_correction(pair):
    """A distilled pair's slow force: the EMT teacher − the fast model."""
    return lambda atoms: CorrectionForces(emt_teacher(atoms), RememberLast(ModelForces(pair.models["fast"], atoms)))


class TestFactoryProviders(PhysicsChecks):
    @pytest.fixture(params=["fast", "slow", "total", "baseline", "external calculator", "distilled correction"])
    def subject(self, request, pair):
        part = request.param
        if part == "external calculator":
            return FactorySubject(emt_teacher, None)
        if part == "distilled correction":
            return FactorySubject(emt_correction(pair), None)
        r_max_A = max(m.r_max for n, m in pair.models.items() if n in ("fast", "slow")) if part == "total" else \
            pair.models[part].r_max
        return FactorySubject(lambda atoms: part_provider(pair, part, atoms), r_max_A)


class ArgonSubject:
    """One part of the analytic split Lennard-Jones, on argon."""

    batch = None

    def __init__(self, part):
        self.calc = SplitLennardJones(part)
        self.r_max_A = self.calc.r_split[1] if part == "fast" else self.calc.r_cut[1]

    def energy_forces(self, atoms):
        return energy_forces(self.calc, atoms)

    def structure(self, seed):
        return argon(seed=seed)

    def molecule(self, seed):
        rng = np.random.default_rng(seed)
        return Atoms("Ar3", positions=[[0, 0, 0], [3.8, 0, 0], [1.9, 3.3, 0]] + rng.normal(0, 0.1, (3, 3)))

    def dimer(self, distance_A):
        return Atoms("Ar2", positions=[[0, 0, 0], [distance_A, 0, 0]])


class TestAnalyticSplit(PhysicsChecks):
    @pytest.fixture(params=["fast", "slow", "total"])
    def subject(self, request):
        return ArgonSubject(request.param)
