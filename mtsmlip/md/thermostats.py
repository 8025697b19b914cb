"""Thermostats as the two pieces RESPA calls: ``inner(p, m, dt)`` inside every
inner step (between the half drifts) and ``outer(p, m, dt)`` around every outer
step (each call covers half of it).

- :class:`NVE`: both pieces are the identity.
- :class:`Langevin`: the exact Ornstein–Uhlenbeck update of the momenta in the
  inner loop (BAOAB sub-steps; OpenMM's MTSLangevinIntegrator).
- :class:`Bussi`: stochastic velocity rescaling (Bussi, Donadio, Parrinello 2007)
  at the outer level.

Randomness comes from an injected ``numpy.random.Generator`` for numpy and torch
states alike, so the two paths draw the same numbers and the generator state is
one plain dict to save in a restart. ``work_eV`` accumulates the kinetic energy the
thermostat added; ``conserved − work_eV`` is the effective conserved energy.
"""

from __future__ import annotations

import math

import numpy as np
from ase import units

from ..errors import DataError
from .respa import kinetic_energy_eV

THERMOSTATS = (None, "langevin", "bussi")
DEFAULT_FRICTION_PER_FS = 0.01  # 1/(100 fs)


def standard_normal_like(p, rng: np.random.Generator):
    """Gaussian noise with the shape, type, dtype and device of `p`."""
    noise = rng.standard_normal(tuple(p.shape))
    if isinstance(p, np.ndarray):
        return noise
    import torch

    return torch.from_numpy(noise).to(dtype=p.dtype, device=p.device)


class NVE:
    kind = None
    work_eV = 0.0

    def inner(self, p, masses, dt):
        return p

    def outer(self, p, masses, dt):
        return p

    def get_state(self) -> dict:
        return {"kind": None}

    def set_state(self, state: dict) -> None:
        pass


class _Stochastic:
    """Shared pieces: target kT, friction, rng, accumulated work, save/restore."""

    def __init__(self, temperature_K: float, friction_per_fs: float, rng: np.random.Generator):
        self.kT_eV = units.kB * float(temperature_K)
        self.rate = float(friction_per_fs) / units.fs  # per ASE time unit
        self.rng = rng
        self.work_eV = 0.0

    def get_state(self) -> dict:
        return {"kind": self.kind, "work_eV": self.work_eV, "rng": self.rng.bit_generator.state}

    def set_state(self, state: dict) -> None:
        if state.get("kind") != self.kind:
            raise DataError(f"restart has thermostat {state.get('kind')!r}, run asks for {self.kind!r}")
        self.work_eV = float(state["work_eV"])
        self.rng.bit_generator.state = state["rng"]


class Langevin(_Stochastic):
    kind = "langevin"

    def inner(self, p, masses, dt):
        """O-step: p ← c1·p + sqrt((1−c1²)·m·kT)·ξ with c1 = exp(−γ·dt)."""
        c1 = math.exp(-self.rate * dt)
        sigma = (masses * (self.kT_eV * (1.0 - c1 * c1))) ** 0.5
        new = c1 * p + sigma * standard_normal_like(p, self.rng)
        self.work_eV += kinetic_energy_eV(new, masses) - kinetic_energy_eV(p, masses)
        return new

    def outer(self, p, masses, dt):
        return p


class Bussi(_Stochastic):
    kind = "bussi"

    def inner(self, p, masses, dt):
        return p

    def outer(self, p, masses, dt):
        """Rescale p so that K follows the canonical stochastic dynamics over dt."""
        kinetic = kinetic_energy_eV(p, masses)
        if kinetic == 0.0:
            return p
        alpha = self.scale_factor(kinetic, p.numel() if hasattr(p, "numel") else p.size, dt)
        self.work_eV += kinetic * (alpha * alpha - 1.0)
        return alpha * p

    def scale_factor(self, kinetic_eV: float, n_dof: int, dt) -> float:
        """Bussi's α (with the sign that keeps the update time-reversible), as in
        i-PI's ThermoSVR: α² = c + (1−c)(R₁² + Σ_{n_dof−1} R²)·kT/(2K) + 2R₁·sqrt(c(1−c)·kT/(2K))."""
        c = math.exp(-self.rate * dt)
        ratio = 0.5 * self.kT_eV / kinetic_eV
        r1 = self.rng.standard_normal()
        r_sum = 2.0 * self.rng.standard_gamma((n_dof - 1) / 2) if n_dof > 1 else 0.0
        alpha2 = c + (1 - c) * (r1 * r1 + r_sum) * ratio + 2 * r1 * math.sqrt(c * (1 - c) * ratio)
        alpha = math.sqrt(alpha2)
        return -alpha if r1 + math.sqrt(c / ((1 - c) * ratio)) < 0 else alpha


def make_thermostat(kind, temperature_K=None, friction_per_fs=None, rng=None):
    """NVE / Langevin / Bussi from user arguments; clear errors for bad ones.
    For Bussi the relaxation time is 1/friction_per_fs."""
    if kind not in THERMOSTATS:
        raise DataError(f"thermostat must be one of {THERMOSTATS}, got {kind!r}")
    if kind is None:
        return NVE()
    if temperature_K is None or not temperature_K > 0:
        raise DataError(f"thermostat {kind!r} needs a positive temperature_K (got {temperature_K})")
    friction = DEFAULT_FRICTION_PER_FS if friction_per_fs is None else friction_per_fs
    if not friction > 0:
        raise DataError(f"friction_per_fs must be positive (got {friction})")
    if rng is None:
        rng = np.random.default_rng()
    cls = Langevin if kind == "langevin" else Bussi
    return cls(temperature_K, friction, rng)
