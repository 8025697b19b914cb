"""Multiple-time-step (r-RESPA) molecular dynamics: NVE, Langevin and Bussi NVT.

- :class:`MultiTimeStep`: an ASE ``MolecularDynamics`` for any two calculators.
- :class:`Engine` with :class:`RunSettings`: the full-speed loop on torch tensors;
  what a run writes (:class:`RunFiles`) and the safety check are observers.
- the RESPA step itself: :func:`respa_step` in :mod:`mtsmlip.md.respa`.
- thermostats as objects: :class:`NVE`, :class:`Langevin`, :class:`Bussi`.
"""

from .ase_integrator import MultiTimeStep
from .engine import Engine
from .outputs import RunFiles
from .respa import MDState, respa_step
from .safety import MDInstability, SafetyLimits
from .settings import RunSettings
from .thermostats import NVE, Bussi, Langevin

__all__ = ["MultiTimeStep", "Engine", "RunFiles", "MDInstability", "RunSettings", "SafetyLimits",
           "MDState", "respa_step", "NVE", "Langevin", "Bussi"]
