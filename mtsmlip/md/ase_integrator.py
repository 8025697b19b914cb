"""Multiple-time-step MD for any two ASE calculators, as an ASE MolecularDynamics."""

from __future__ import annotations

import numpy as np
from ase import units
from ase.calculators.mixing import SumCalculator
from ase.md.md import MolecularDynamics

from ..errors import DataError
from ..forces.calculators import CalculatorForces
from .respa import initial_state, respa_step
from .settings import check_step_settings
from .thermostats import make_thermostat


class MultiTimeStep(MolecularDynamics):
    """r-RESPA with `fast` every inner step `timestep_fs` and `slow` every outer
    step ``n_inner·timestep_fs``; ``run(steps)`` counts outer steps.

    thermostat: a thermostat object (:mod:`mtsmlip.md.thermostats`: ``NVE()``,
    ``Langevin(temperature_K, friction_per_fs, rng)``, ``Bussi(temperature_K,
    tau_fs, rng)``) or None for NVE; the names "langevin"/"bussi" with
    `temperature_K`, `friction_per_fs`/`tau_fs` and `rng` build one (Bussi over
    the degrees of freedom the dynamics leaves free, as in the engine; a Bussi
    object passed in uses its own ``n_dof``, 3N by default). ``atoms.calc``
    becomes fast + slow (ASE's SumCalculator): loggers and observers read the
    energy and forces of the last step from the calculators' caches. The
    thermostat's accumulated work is ``self.state.work_eV``.
    """

    def __init__(self, atoms, fast, slow, timestep_fs, n_inner, thermostat=None, temperature_K=None,
                 friction_per_fs=None, tau_fs=None, rng=None, trajectory=None, logfile=None, loginterval=1):
        check_step_settings(timestep_fs, n_inner)
        if atoms.constraints:
            raise DataError("MultiTimeStep does not support constraints")
        self.n_inner = int(n_inner)
        self.inner_dt = timestep_fs * units.fs
        from .engine import degrees_of_freedom

        self.thermostat = thermostat if not isinstance(thermostat, (str, type(None))) else \
            make_thermostat(thermostat, temperature_K, friction_per_fs, tau_fs, rng,
                            degrees_of_freedom(atoms, thermostat))
        self.fast, self.slow = CalculatorForces(atoms, fast), CalculatorForces(atoms, slow)
        atoms.calc = SumCalculator([fast, slow])
        super().__init__(atoms, self.n_inner * self.inner_dt, trajectory, logfile, loginterval)
        self.state = None

    def current_state(self):
        """The RESPA state of the atoms; re-evaluated if they were moved outside
        (the thermostat work accumulated so far is kept)."""
        x, p = self.atoms.get_positions(), self.atoms.get_momenta()
        s = self.state
        if s is None or not (np.array_equal(s.positions, x) and np.array_equal(s.momenta, p)):
            s = initial_state(x, p, self.masses, self.fast, self.slow, 0.0 if s is None else s.work_eV)
        return s

    def step(self):
        self.state = respa_step(self.current_state(), self.fast, self.slow,
                                self.inner_dt, self.n_inner, self.thermostat)
        self.atoms.set_positions(self.state.positions, apply_constraint=False)
        self.atoms.set_momenta(self.state.momenta, apply_constraint=False)

    @property
    def work_eV(self) -> float:
        """Kinetic energy the thermostat has added so far (eV)."""
        return 0.0 if self.state is None else float(self.state.work_eV)

