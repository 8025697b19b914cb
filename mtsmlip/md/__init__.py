"""Multiple-time-step (r-RESPA) molecular dynamics: NVE, Langevin and Bussi NVT.

- :class:`MultiTimeStep`: an ASE ``MolecularDynamics`` for any two calculators.
- the full-speed path for trained pairs lives in :mod:`mtsmlip.md.engine`.
- the RESPA step itself: :func:`mtsmlip.md.respa.respa_step`.
"""

from .ase_integrator import MultiTimeStep
from .respa import MDState, respa_step

__all__ = ["MultiTimeStep", "MDState", "respa_step"]
