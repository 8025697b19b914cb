"""Thermostats as the two pieces RESPA calls: ``inner(p, m, dt)`` inside every
inner step (between the half drifts) and ``outer(p, m, dt)`` around every outer
step (each call covers half of it). Each returns ``(new momenta, work)``: the
kinetic energy it added (eV), which the step adds to the state's ``work_eV``.

- :class:`NVE`: both pieces are the identity.
- :class:`Langevin` (``friction_per_fs``, one rate or one per atom): the exact
  Ornstein–Uhlenbeck update of the momenta in the inner loop (BAOAB sub-steps;
  OpenMM's MTSLangevinIntegrator). A higher friction on the hydrogens damps the
  O–H stretch that an outer step near its period would excite (DMTS-NC's
  "extra friction on H"); the distribution sampled stays canonical.
- :class:`Bussi` (``tau_fs``, the relaxation time, as ASE's ``taut``): stochastic
  velocity rescaling (Bussi, Donadio, Parrinello 2007) at the outer level.

Randomness comes from an injected ``numpy.random.Generator`` for numpy and torch
states on the CPU alike, so the two paths draw the same numbers and the
generator state is one plain dict to save in a restart. On a GPU, Langevin's
noise (3N numbers every inner step) is drawn there, by a torch generator seeded
once from the numpy one: copying it from the host would make every inner step
wait. Its state goes into the same dict (``device_rng``). The inner piece's work
is a 0-d tensor (no host sync). Bussi's outer piece needs K: on the CPU as a
number (as it always has, so CPU trajectories keep every bit); on a GPU its
random numbers, which do not depend on K, are drawn on the host and α is
computed on the device, so no step waits for the GPU.

``on_device`` (both stochastic thermostats): None takes the device paths for
momenta on a GPU; True or False always or never (tests take them on the CPU).
"""

from __future__ import annotations

import math

import numpy as np
from ase import units

from ..errors import DataError
from .respa import kinetic_energy, kinetic_energy_eV

THERMOSTATS = (None, "langevin", "bussi")
DEFAULT_FRICTION_PER_FS = 0.01  # Langevin: 1/(100 fs)
DEFAULT_TAU_FS = 100.0          # Bussi relaxation time


def standard_normal_like(p, rng: np.random.Generator):
    """Gaussian noise with the shape, type, dtype and device of `p`."""
    noise = rng.standard_normal(tuple(p.shape))
    if isinstance(p, np.ndarray):
        return noise
    import torch

    return torch.from_numpy(noise).to(dtype=p.dtype, device=p.device)


class NVE:
    kind = None

    def inner(self, p, masses, dt):
        return p, 0.0

    def outer(self, p, masses, dt):
        return p, 0.0

    def get_state(self) -> dict:
        return {"kind": None}

    def set_state(self, state: dict) -> None:
        _check_kind(state, None)

    def check_device_state(self, p) -> None:
        """Nothing to check: NVE draws no random numbers."""


class _Stochastic:
    """Shared pieces: target kT, rng, the device's generator, save/restore of both.

    get_state's ``device_rng`` is the device generator's state as a CPU byte
    tensor (read without waiting for the device), or None before its first use;
    :func:`portable_state` turns it into a list for a restart file."""

    def __init__(self, temperature_K: float, rng: np.random.Generator | None):
        if temperature_K is None or not (math.isfinite(temperature_K) and temperature_K > 0):
            raise DataError(f"thermostat {self.kind!r} needs a positive temperature_K (got {temperature_K})")
        self.kT_eV = units.kB * float(temperature_K)
        self.rng = np.random.default_rng() if rng is None else rng
        self.on_device = None
        self.device_generator = None  # made at the first draw on the device, seeded from rng
        self.device_state_to_resume = None  # a restart's device_rng, for that first draw

    def _device_path(self, p) -> bool:
        if isinstance(p, np.ndarray):
            return False
        return p.device.type != "cpu" if self.on_device is None else bool(self.on_device)

    def check_device_state(self, p) -> None:
        """DataError now, not at the first draw, if a restart's device generator
        state does not fit a generator on the device of momenta `p` (one written on
        another kind of device); nothing to check without one or off the device path."""
        if self.device_state_to_resume is not None and self._device_path(p):
            self._resumed_generator(p.device)

    def _resumed_generator(self, device):
        """A generator on `device` holding the restart's device state, or DataError."""
        import torch

        generator = torch.Generator(device=device)
        try:
            generator.set_state(self.device_state_to_resume)
        except RuntimeError as exc:
            raise DataError(f"field 'thermostat.device_rng': not the state of a generator on {device} "
                            f"(written on another kind of device? {exc})") from None
        return generator

    def device_normal_like(self, p):
        """Gaussian noise like the tensor `p`, drawn on its device."""
        import torch

        if self.device_generator is None or self.device_generator.device != p.device:
            if self.device_state_to_resume is not None:  # (rng is already past the seed's draw)
                self.device_generator, self.device_state_to_resume = self._resumed_generator(p.device), None
            else:
                self.device_generator = torch.Generator(device=p.device)
                self.device_generator.manual_seed(int(self.rng.integers(2**63)))
        return torch.randn(p.shape, generator=self.device_generator, dtype=p.dtype, device=p.device)

    def get_state(self) -> dict:
        device = self.device_state_to_resume if self.device_generator is None else self.device_generator.get_state()
        return {"kind": self.kind, "rng": self.rng.bit_generator.state, "device_rng": device}

    def set_state(self, state: dict) -> None:
        """Restore a get_state (or a restart's copy of one: DataError naming the
        field that is not what a run writes)."""
        _check_kind(state, self.kind)
        try:
            self.rng.bit_generator.state = state["rng"]
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"field 'thermostat.rng': not the state of the run's random generator ({exc})") from None
        device = state.get("device_rng")
        self.device_state_to_resume = None
        if device is None:
            self.device_generator = None  # (a CPU run's state, or one from before the first draw)
            return
        import torch

        if not torch.is_tensor(device):
            if not (isinstance(device, list) and device and all(type(b) is int and 0 <= b < 256 for b in device)):
                raise DataError("field 'thermostat.device_rng': must be a list of bytes (integers 0-255), "
                                "a device generator's state")
        device = torch.as_tensor(device, dtype=torch.uint8).clone()
        if self.device_generator is None:  # a restart: applied at the first draw
            self.device_state_to_resume = device
        else:
            self.device_generator.set_state(device)


def portable_state(state: dict) -> dict:
    """A thermostat's get_state with tensors as lists (for JSON)."""
    return {k: v.tolist() if hasattr(v, "tolist") else v for k, v in state.items()}


def _check_kind(state: dict, kind) -> None:
    if state.get("kind") != kind:
        raise DataError(f"restart has thermostat {state.get('kind')!r}, run asks for {kind!r}")


def _positive(name: str, value: float) -> float:
    if value is None or not (math.isfinite(value) and value > 0):
        raise DataError(f"{name} must be a positive number (got {value})")
    return float(value)


class Langevin(_Stochastic):
    kind = "langevin"

    def __init__(self, temperature_K: float, friction_per_fs=DEFAULT_FRICTION_PER_FS, rng=None):
        """`friction_per_fs`: one friction for every atom, or an (N,) array of
        one per atom (:func:`per_atom_friction_per_fs`)."""
        super().__init__(temperature_K, rng)
        if np.ndim(friction_per_fs) == 0:
            self.rate = _positive("friction_per_fs", friction_per_fs) / units.fs  # per ASE time unit
        else:
            rates = np.asarray(friction_per_fs, dtype=float)
            if not (np.all(np.isfinite(rates)) and np.all(rates > 0)):
                raise DataError(f"friction_per_fs must be positive for every atom (got min {rates.min()})")
            self.rate = rates[:, None] / units.fs  # (N, 1), broadcast over x, y, z
        self._c1 = {}

    def damping(self, masses, dt):
        """c1 = exp(−γ·dt), a number or an (N, 1) array in the type of `masses`
        (computed once per dt and device)."""
        if np.ndim(self.rate) == 0:
            return math.exp(-self.rate * dt)
        key = (dt, getattr(masses, "device", None), getattr(masses, "dtype", None))
        if key not in self._c1:
            c1 = np.exp(-self.rate * dt)
            if not isinstance(masses, np.ndarray):
                import torch

                c1 = torch.as_tensor(c1, dtype=masses.dtype, device=masses.device)
            self._c1[key] = c1
        return self._c1[key]

    def inner(self, p, masses, dt):
        """O-step: p ← c1·p + sqrt((1−c1²)·m·kT)·ξ with c1 = exp(−γ·dt)."""
        c1 = self.damping(masses, dt)
        sigma = (masses * (self.kT_eV * (1.0 - c1 * c1))) ** 0.5
        noise = self.device_normal_like(p) if self._device_path(p) else standard_normal_like(p, self.rng)
        new = c1 * p + sigma * noise
        return new, kinetic_energy(new, masses) - kinetic_energy(p, masses)

    def outer(self, p, masses, dt):
        return p, 0.0


class Bussi(_Stochastic):
    kind = "bussi"

    def __init__(self, temperature_K: float, tau_fs: float = DEFAULT_TAU_FS, rng=None, n_dof: int | None = None):
        """`n_dof`: the degrees of freedom the kinetic energy is spread over
        (default 3N; :func:`mtsmlip.md.engine.degrees_of_freedom` for the
        momenta the dynamics conserves)."""
        super().__init__(temperature_K, rng)
        self.rate = 1.0 / (_positive("tau_fs", tau_fs) * units.fs)
        self.n_dof = n_dof

    def inner(self, p, masses, dt):
        return p, 0.0

    def outer(self, p, masses, dt):
        """Rescale p so that K follows the canonical stochastic dynamics over dt."""
        if self._device_path(p):
            return self.outer_on_device(p, masses, dt)
        kinetic = kinetic_energy_eV(p, masses)
        if kinetic == 0.0:
            return p, 0.0
        n_dof = self.n_dof or (p.numel() if hasattr(p, "numel") else p.size)
        alpha = self.scale_factor(kinetic, n_dof, dt)
        return alpha * p, kinetic * (alpha * alpha - 1.0)

    def random_numbers(self, n_dof: int) -> tuple[float, float]:
        """R₁ and Σ_{n_dof−1} R² of one rescaling, in the order :meth:`scale_factor` draws them."""
        r1 = self.rng.standard_normal()
        return r1, (2.0 * self.rng.standard_gamma((n_dof - 1) / 2) if n_dof > 1 else 0.0)

    def outer_on_device(self, p, masses, dt):
        """:meth:`outer` with K a 0-d tensor: the same α (to rounding), no host read.
        One difference: at K = 0 (nothing to rescale) it still draws its two
        numbers, where the host path draws none, so a run started from zero
        momenta follows another random stream on a GPU than on the CPU."""
        import torch

        kinetic = kinetic_energy(p, masses)
        r1, r_sum = self.random_numbers(self.n_dof or p.numel())
        c = math.exp(-self.rate * dt)
        ratio = 0.5 * self.kT_eV / torch.where(kinetic > 0, kinetic, torch.ones_like(kinetic))
        alpha2 = c + (1 - c) * (r1 * r1 + r_sum) * ratio + 2 * r1 * torch.sqrt(c * (1 - c) * ratio)
        flip = r1 + torch.sqrt(c / ((1 - c) * ratio)) < 0
        alpha = torch.sqrt(alpha2)
        alpha = torch.where(flip, -alpha, alpha)
        alpha = torch.where(kinetic > 0, alpha, torch.ones_like(alpha))  # nothing to rescale
        return alpha * p, kinetic * (alpha * alpha - 1.0)

    def scale_factor(self, kinetic_eV: float, n_dof: int, dt) -> float:
        """Bussi's α (with the sign that keeps the update time-reversible), as in
        i-PI's ThermoSVR: α² = c + (1−c)(R₁² + Σ_{n_dof−1} R²)·kT/(2K) + 2R₁·sqrt(c(1−c)·kT/(2K))."""
        c = math.exp(-self.rate * dt)
        ratio = 0.5 * self.kT_eV / kinetic_eV
        r1, r_sum = self.random_numbers(n_dof)
        alpha2 = c + (1 - c) * (r1 * r1 + r_sum) * ratio + 2 * r1 * math.sqrt(c * (1 - c) * ratio)
        alpha = math.sqrt(alpha2)
        return -alpha if r1 + math.sqrt(c / ((1 - c) * ratio)) < 0 else alpha


def per_atom_friction_per_fs(symbols, friction_per_fs=None, species_friction_per_fs=()) -> np.ndarray | float:
    """The Langevin friction of each atom: `species_friction_per_fs` ((symbol,
    1/fs) pairs) for the species it names, `friction_per_fs` (default
    DEFAULT_FRICTION_PER_FS) for the others; a plain number when no species is
    named. A named species the structure lacks is an error (a typo would
    otherwise silently change nothing)."""
    default = DEFAULT_FRICTION_PER_FS if friction_per_fs is None else friction_per_fs
    if not species_friction_per_fs:
        return default
    named = dict(species_friction_per_fs)
    missing = sorted(set(named) - set(symbols))
    if missing:
        raise DataError(f"--species-friction-per-fs names {', '.join(missing)}, which the structure does not "
                        f"contain (it has {', '.join(sorted(set(symbols)))})")
    return np.array([named.get(s, default) for s in symbols], dtype=float)


def make_thermostat(kind, temperature_K=None, friction_per_fs=None, tau_fs=None, rng=None, n_dof=None):
    """NVE / Langevin / Bussi from the names the command line uses; clear errors
    for bad ones, and for a parameter that belongs to the other thermostat.
    `friction_per_fs` may be one number per atom (Langevin only)."""
    if kind not in THERMOSTATS:
        raise DataError(f"thermostat must be one of {THERMOSTATS}, got {kind!r}")
    if kind == "langevin" and tau_fs is not None:
        raise DataError("tau_fs is the Bussi relaxation time; Langevin takes friction_per_fs")
    if kind != "langevin" and np.ndim(friction_per_fs) > 0:
        raise DataError("a friction per atom (--species-friction-per-fs) is for the Langevin thermostat only")
    if kind == "bussi" and friction_per_fs is not None:
        raise DataError("friction_per_fs is the Langevin friction; Bussi takes tau_fs (relaxation time)")
    if kind is None:
        return NVE()
    if kind == "langevin":
        return Langevin(temperature_K, DEFAULT_FRICTION_PER_FS if friction_per_fs is None else friction_per_fs, rng)
    return Bussi(temperature_K, DEFAULT_TAU_FS if tau_fs is None else tau_fs, rng, n_dof)
