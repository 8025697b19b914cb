"""The safety check of a run, as an engine observer: a state with NaN or inf
numbers, two atoms closer than a limit, or a one-step jump of the effective
conserved energy stops the run, after whatever was asked to keep the last good
state has kept it. The same check (but the jump) refuses a starting state."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..data import MIN_DISTANCE_A, closest_pair
from ..forces.protocol import min_distance_A_of
from .respa import MDState, conserved_energy_eV


class MDInstability(RuntimeError):
    """The run was stopped because its state became unphysical."""


@dataclass(frozen=True)
class SafetyLimits:
    """Stop when atoms come closer than `min_distance_A`, or the effective
    conserved energy (K + U − thermostat work) changes by more than
    `energy_jump_eV_per_atom`·N in one step."""

    min_distance_A: float = MIN_DISTANCE_A
    energy_jump_eV_per_atom: float = 0.05


class SafetyCheck:
    """Engine observer (every step): raises MDInstability naming the step and
    the problem; before that, calls ``keep(good_state, good_step)`` for each
    callback in `keep_last_good` (e.g. writing last_good.extxyz and the restart)
    and puts the engine back to that last good state."""

    def __init__(self, limits: SafetyLimits, template, providers=()):
        self.limits, self.template, self.providers = limits, template, tuple(providers)
        self.keep_last_good, self.good = [], None

    def start(self, state: MDState, step: int) -> None:
        self.good = (state, step)

    def __call__(self, engine) -> None:
        problem = self.problem_with_state(engine.state) or self.energy_jump(self.good[0], engine.state)
        if problem is not None:
            state, step = self.good
            for keep in self.keep_last_good:
                keep(state, step)
            bad_step = engine.step
            engine.restore(state, step)
            raise MDInstability(f"step {bad_step}: {problem}; stopped. Last good state: step {step}")
        self.good = (engine.state, engine.step)

    def problem_with_state(self, s: MDState):
        """What is unphysical about `s` on its own (non-finite numbers, atoms too
        close), as a sentence, or None."""
        for name in ("positions", "forces_fast", "forces_slow", "momenta"):
            value = getattr(s, name)
            if torch.is_tensor(value) and not bool(torch.isfinite(value).all()):
                return f"NaN or inf in {name}"
        for name in ("energy_fast_eV", "energy_slow_eV", "work_eV"):
            if not math.isfinite(float(getattr(s, name))):
                return f"NaN or inf in {name}"
        return self.atoms_too_close(s)

    def atoms_too_close(self, s: MDState):
        seen = [d for d in map(min_distance_A_of, self.providers) if d is not None]
        if seen and float(min(seen)) >= self.limits.min_distance_A:
            return None  # a provider's shortest edge (within its r_max) is long enough: no pair is closer
        pair = closest_pair(s.positions.detach().cpu().numpy(), self.template.cell.array, self.template.pbc,
                            self.limits.min_distance_A)
        if pair is None:
            return None
        return f"atoms {pair[0]} and {pair[1]} are {pair[2]:.3f} Å apart (limit {self.limits.min_distance_A} Å)"

    def energy_jump(self, old: MDState, new: MDState):
        jump = abs(conserved_energy_eV(new) - conserved_energy_eV(old))
        limit = self.limits.energy_jump_eV_per_atom * len(self.template)
        if not math.isfinite(jump) or jump > limit:
            return (f"conserved energy jumped by {jump:.4g} eV in one step (limit "
                    f"{self.limits.energy_jump_eV_per_atom} eV/atom × {len(self.template)} atoms)")
        return None
