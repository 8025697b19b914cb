"""Force providers and ASE calculators, each as the other.

- :class:`CalculatorForces`: any ASE calculator as a provider on numpy arrays
  (what the ASE class :class:`mtsmlip.md.MultiTimeStep` integrates).
- :class:`CalculatorTensorForces`: the same on torch tensors, for the engine
  (an external teacher of a distilled pair).
- :class:`ProviderCalculator`: any provider as an ASE calculator (what
  ``mtsmlip.load(dir).fast`` / ``.slow`` / ``.total`` / ``.baseline`` are), so
  the ASE path evaluates exactly what the engine evaluates.
"""

from __future__ import annotations

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from .protocol import virial_of


class CalculatorForces:
    """An ASE calculator as a provider: numpy positions in, (energy eV, forces
    (N, 3) eV/Å) out, on a private copy of the atoms."""

    cutoff_A = None
    device, dtype = torch.device("cpu"), torch.float64

    def __init__(self, atoms, calc):
        self.atoms = atoms.copy()
        self.atoms.constraints = []
        self.atoms.calc = calc

    def __call__(self, positions):
        self.atoms.positions = positions
        return self.atoms.get_potential_energy(), self.atoms.get_forces()


class CalculatorTensorForces:
    """An ASE calculator as a provider on torch tensors: positions (N, 3) in,
    (0-d energy tensor eV, forces (N, 3) tensor eV/Å) out, like
    :class:`mtsmlip.forces.ModelForces` (the arrays go through the host)."""

    cutoff_A = None

    def __init__(self, atoms, calc, device="cpu"):
        self.forces = CalculatorForces(atoms, calc)
        self.device, self.dtype = torch.device(device), torch.float64

    def __call__(self, positions: torch.Tensor):
        energy, forces = self.forces(positions.detach().cpu().numpy())
        as_tensor = dict(dtype=positions.dtype, device=positions.device)
        return (torch.tensor(float(energy), **as_tensor),
                torch.as_tensor(np.asarray(forces, dtype=float)).to(**as_tensor))


class ProviderCalculator(Calculator):
    """An ASE calculator that evaluates a force provider: energy, forces and, for
    periodic structures where the provider has a virial, stress.

    build(atoms) -> provider makes the provider for a structure; it is rebuilt
    only when the species, cell or periodicity change (a provider is built for
    one structure: its types and neighbour list)."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, build, **kwargs):
        super().__init__(**kwargs)
        self.build, self.provider, self.built_for = build, None, None

    def provider_for(self, atoms):
        key = (atoms.numbers.tobytes(), atoms.cell.array.tobytes(), atoms.pbc.tobytes())
        if self.provider is None or key != self.built_for:
            self.provider, self.built_for = self.build(atoms), key
        return self.provider

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        provider = self.provider_for(self.atoms)
        positions = torch.as_tensor(np.asarray(self.atoms.positions, dtype=float)).to(provider.device)
        energy, forces = provider(positions)
        energy = float(energy)
        self.results = {"energy": energy, "free_energy": energy,
                        "forces": forces.detach().cpu().numpy() if torch.is_tensor(forces) else np.asarray(forces)}
        virial = virial_of(provider)
        if "stress" in properties:
            if virial is None or not self.atoms.pbc.all():
                from ase.calculators.calculator import PropertyNotImplementedError

                raise PropertyNotImplementedError("stress needs a fully periodic cell and a provider with a virial")
            stress = -np.asarray(virial) / self.atoms.get_volume()
            self.results["stress"] = stress.flat[[0, 4, 8, 5, 2, 1]]
