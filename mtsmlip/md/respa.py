"""r-RESPA (Tuckerman, Berne, Martyna 1992) in impulse form: one definition.

Outer step Δt = n·δt, with Δt/2 slow kicks around n inner velocity-Verlet steps
on the fast force (see DESIGN.md):

    p += Δt/2 · F_slow
    repeat n:  p += δt/2 · F_fast;  x += δt · p/m;  F_fast = F_fast(x);  p += δt/2 · F_fast
    F_slow = F_slow(x);  p += Δt/2 · F_slow

The inner drift is split in two halves around the thermostat's inner piece
(Langevin O-step: BAOAB sub-steps, as OpenMM's MTSLangevinIntegrator); the
thermostat's outer piece (Bussi rescaling) brackets the outer step. For NVE both
pieces are the identity and the step is exactly the scheme above.

Everything here is written with plain arithmetic, so the same code runs on numpy
arrays (the ASE class) and on torch tensors (the full-speed path). Units are ASE's:
Å, eV, amu, ASE time (``ase.units.fs``); momenta in amu·Å/ASE-time.

A *force provider* (:class:`mtsmlip.forces.ForceProvider`) is a callable
``provider(positions) -> (energy_eV, forces)`` with positions and forces of shape
(N, 3) (array or tensor, like the state).

A *thermostat* has ``inner(p, m, dt)`` and ``outer(p, m, dt)``, each returning the
new momenta and the kinetic energy it added; the step adds that to the state's
``work_eV``, so the conserved energy is a function of the state alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..forces.protocol import ForceProvider


@dataclass(frozen=True)
class MDState:
    """Phase-space point plus the forces and energies at `positions`.

    positions (N, 3) Å; momenta (N, 3); masses (N, 1) amu; forces_* (N, 3) eV/Å;
    energy_* eV (float or 0-d tensor); work_eV: kinetic energy the thermostat has
    added since the start (float or 0-d tensor). Never mutated: every step returns a
    new state, so the previous one stays valid (the last good frame).
    """

    positions: Any
    momenta: Any
    masses: Any
    forces_fast: Any
    forces_slow: Any
    energy_fast_eV: Any
    energy_slow_eV: Any
    work_eV: Any = 0.0


def initial_state(positions, momenta, masses, fast: ForceProvider, slow: ForceProvider, work_eV=0.0) -> MDState:
    """Evaluate both forces at `positions` (needed before the first step)."""
    e_fast, f_fast = fast(positions)
    e_slow, f_slow = slow(positions)
    return MDState(positions, momenta, masses, f_fast, f_slow, e_fast, e_slow, work_eV)


def kick(momenta, forces, dt):
    """p ← p + dt·F."""
    return momenta + dt * forces


def drift(positions, momenta, masses, dt):
    """x ← x + dt·p/m."""
    return positions + dt * (momenta / masses)


def kinetic_energy(momenta, masses):
    """Σ p²/2m in eV, as a 0-d array or tensor (no host sync on a GPU)."""
    return 0.5 * (momenta * momenta / masses).sum()


def kinetic_energy_eV(momenta, masses) -> float:
    return float(kinetic_energy(momenta, masses))


def conserved_energy(s: MDState):
    """K + E_fast + E_slow − thermostat work (eV): constant in exact dynamics; a
    0-d tensor on the state's device (no host read)."""
    return kinetic_energy(s.momenta, s.masses) + s.energy_fast_eV + s.energy_slow_eV - s.work_eV


def conserved_energy_eV(s: MDState) -> float:
    """:func:`conserved_energy` as a float (a host read)."""
    return float(conserved_energy(s))


def respa_step(s: MDState, fast: ForceProvider, slow: ForceProvider, dt, n_inner: int, thermostat) -> MDState:
    """One outer step Δt = n_inner·dt of impulse r-RESPA (module doc). `thermostat`
    has ``outer(p, m, dt)`` and ``inner(p, m, dt)`` (see thermostats.py)."""
    big_dt, m = n_inner * dt, s.masses
    p, work = thermostat.outer(s.momenta, m, big_dt / 2)
    p = kick(p, s.forces_slow, big_dt / 2)
    x, f_fast, e_fast = s.positions, s.forces_fast, s.energy_fast_eV
    for _ in range(n_inner):
        p = kick(p, f_fast, dt / 2)
        x = drift(x, p, m, dt / 2)
        p, heat = thermostat.inner(p, m, dt)
        x = drift(x, p, m, dt / 2)
        e_fast, f_fast = fast(x)
        p = kick(p, f_fast, dt / 2)
        work = work + heat
    e_slow, f_slow = slow(x)
    p = kick(p, f_slow, big_dt / 2)
    p, heat = thermostat.outer(p, m, big_dt / 2)
    return MDState(x, p, m, f_fast, f_slow, e_fast, e_slow, s.work_eV + work + heat)
