"""Multiple-time-step (r-RESPA) molecular dynamics: NVE, Langevin and Bussi NVT.

- :class:`MultiTimeStep`: an ASE ``MolecularDynamics`` for any two calculators.
- :class:`Engine` (with :func:`providers_for`, :class:`RunSettings`): the
  full-speed path for a trained pair, with log, trajectory, restart and safety stops.
- the RESPA step itself: :func:`respa_step` in :mod:`mtsmlip.md.respa`.
"""

from .ase_integrator import MultiTimeStep
from .engine import Engine, MDInstability, RunSettings, SafetyLimits, providers_for
from .respa import MDState, respa_step

__all__ = ["MultiTimeStep", "Engine", "MDInstability", "RunSettings", "SafetyLimits", "providers_for",
           "MDState", "respa_step"]
