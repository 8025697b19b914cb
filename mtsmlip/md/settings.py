"""What one MD run integrates, as one value: the inner step, the number of inner
steps per outer step, the thermostat and whether it is the baseline. The outer
step and simulated time are computed here and nowhere else."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..errors import DataError
from ..limits import check_n_inner


def check_step_settings(timestep_fs, n_inner) -> None:
    """Clear errors for time steps that cannot run."""
    if not (isinstance(timestep_fs, (int, float)) and math.isfinite(timestep_fs) and timestep_fs > 0):
        raise DataError(f"timestep_fs must be a positive number (got {timestep_fs!r})")
    if not isinstance(n_inner, (int, float)) or int(n_inner) != n_inner or n_inner < 1:
        raise DataError(f"n_inner must be an integer >= 1 (got {n_inner!r})")
    check_n_inner(int(n_inner), "n_inner")


@dataclass(frozen=True)
class RunSettings:
    """What a run integrates; a restart must match it. `baseline`: velocity Verlet
    with the baseline model (RESPA with one force and n_inner = 1). Thermostat:
    None (NVE), "langevin" (friction_per_fs, and species_friction_per_fs:
    ((symbol, 1/fs), ...) for the species that get their own) or "bussi"
    (tau_fs). `hmr_amu`: mass moved onto each hydrogen from its bonded heavy atom."""

    timestep_fs: float
    n_inner: int
    thermostat: str | None = None
    temperature_K: float | None = None
    friction_per_fs: float | None = None
    baseline: bool = False
    tau_fs: float | None = None
    hmr_amu: float = 0.0  # hydrogen mass repartitioning (md/masses.py); changes dynamics only
    species_friction_per_fs: tuple = ()  # ((symbol, 1/fs), ...), sorted; Langevin only

    def check(self) -> None:
        check_step_settings(self.timestep_fs, self.n_inner)
        if self.baseline and self.n_inner != 1:
            raise DataError("the baseline runs velocity Verlet: n_inner must be 1")
        if self.species_friction_per_fs and self.thermostat != "langevin":
            raise DataError("--species-friction-per-fs is a Langevin friction; it needs --thermostat langevin "
                            f"(got {self.thermostat or 'NVE'})")

    def nve(self, n_inner: int | None = None) -> "RunSettings":
        """These settings without a thermostat (same steps, masses and model),
        at `n_inner` if given: the NVE continuation or probe of a run."""
        return replace(self, thermostat=None, temperature_K=None, friction_per_fs=None, tau_fs=None,
                       species_friction_per_fs=(), n_inner=self.n_inner if n_inner is None else n_inner)

    @property
    def outer_fs(self) -> float:
        """The outer step Δt = n_inner · δt (fs)."""
        return self.n_inner * self.timestep_fs

    @property
    def label(self) -> str:
        return "baseline" if self.baseline else f"mts_n{self.n_inner}"

    def simulated_ps(self, steps: int) -> float:
        return steps * self.outer_fs / 1000.0

    def steps_for(self, ps: float) -> int:
        """Outer steps that cover `ps` (at least one)."""
        return max(1, round(ps * 1000.0 / self.outer_fs))

    def ns_per_day(self, steps_per_s: float) -> float:
        return steps_per_s * self.outer_fs * 86400 * 1e-6
