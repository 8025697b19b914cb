"""Multiple-time-step MD for any two ASE calculators, as an ASE MolecularDynamics."""

from __future__ import annotations

import numpy as np
from ase import units
from ase.calculators.calculator import Calculator, all_changes
from ase.md.md import MolecularDynamics

from ..errors import DataError
from .respa import initial_state, respa_step
from .thermostats import make_thermostat


def check_step_settings(timestep_fs, n_inner) -> None:
    """Clear errors for time steps that cannot run."""
    if not (isinstance(timestep_fs, (int, float)) and np.isfinite(timestep_fs) and timestep_fs > 0):
        raise DataError(f"timestep_fs must be a positive number (got {timestep_fs!r})")
    if int(n_inner) != n_inner or n_inner < 1:
        raise DataError(f"n_inner must be an integer >= 1 (got {n_inner!r})")


class CalculatorForces:
    """Force provider (see respa.py) from an ASE calculator: numpy positions in,
    (energy eV, forces (N, 3) eV/Å) out, on a private copy of the atoms."""

    def __init__(self, atoms, calc):
        self.atoms = atoms.copy()
        self.atoms.constraints = []
        self.atoms.calc = calc

    def __call__(self, positions):
        self.atoms.positions = positions
        return self.atoms.get_potential_energy(), self.atoms.get_forces()


class _StepResults(Calculator):
    """What the integrator last computed (energy and forces of fast + slow), so
    that loggers and observers read them without evaluating any model again."""

    implemented_properties = ["energy", "forces", "free_energy"]

    def __init__(self, fast, slow):
        super().__init__()
        self.fast, self.slow = fast, slow

    def store(self, atoms, state) -> None:
        self.atoms = atoms.copy()
        energy = float(state.energy_fast_eV) + float(state.energy_slow_eV)
        forces = state.forces_fast + state.forces_slow
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)  # positions changed outside MD
        e_fast, f_fast = CalculatorForces(self.atoms, self.fast)(self.atoms.positions)
        e_slow, f_slow = CalculatorForces(self.atoms, self.slow)(self.atoms.positions)
        energy = e_fast + e_slow
        self.results = {"energy": energy, "free_energy": energy, "forces": f_fast + f_slow}


class MultiTimeStep(MolecularDynamics):
    """r-RESPA with `fast` every inner step `timestep_fs` and `slow` every outer
    step ``n_inner·timestep_fs``; ``run(steps)`` counts outer steps.

    thermostat: None (NVE), "langevin" (BAOAB sub-steps in the inner loop) or
    "bussi" (stochastic velocity rescaling at the outer level; relaxation time
    1/friction_per_fs). `rng` (numpy Generator) drives the thermostat noise.
    ``atoms.calc`` is replaced by the cached fast + slow results of each step.
    """

    def __init__(self, atoms, fast, slow, timestep_fs, n_inner, temperature_K=None, thermostat=None,
                 friction_per_fs=None, rng=None, trajectory=None, logfile=None, loginterval=1):
        check_step_settings(timestep_fs, n_inner)
        if atoms.constraints:
            raise DataError("MultiTimeStep does not support constraints")
        self.n_inner = int(n_inner)
        self.inner_dt = timestep_fs * units.fs
        self.thermostat = make_thermostat(thermostat, temperature_K, friction_per_fs, rng)
        self.fast, self.slow = CalculatorForces(atoms, fast), CalculatorForces(atoms, slow)
        atoms.calc = _StepResults(fast, slow)
        super().__init__(atoms, self.n_inner * self.inner_dt, trajectory, logfile, loginterval)
        self.state = None

    def current_state(self):
        """The RESPA state of the atoms; re-evaluated if they were moved outside."""
        x, p = self.atoms.get_positions(), self.atoms.get_momenta()
        s = self.state
        if s is None or not (np.array_equal(s.positions, x) and np.array_equal(s.momenta, p)):
            s = initial_state(x, p, self.masses, self.fast, self.slow)
        return s

    def step(self):
        self.state = respa_step(self.current_state(), self.fast, self.slow,
                                self.inner_dt, self.n_inner, self.thermostat)
        self.atoms.set_positions(self.state.positions, apply_constraint=False)
        self.atoms.set_momenta(self.state.momenta, apply_constraint=False)

    def _refresh_properties(self):
        """Loggers and observers read the energy and forces of the last step."""
        self.state = self.current_state()
        self.atoms.calc.store(self.atoms, self.state)
