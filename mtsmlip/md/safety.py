"""The safety check of a run: a state with NaN or inf numbers, two atoms closer
than a limit, or a one-step jump of the effective conserved energy stops the
run, after whatever was asked to keep the last good state has kept it. The
engine evaluates it on the device for a batch of steps and reads it once per
batch. The same check (but the jump) refuses a starting state."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..data import MIN_DISTANCE_A, closest_pair
from ..forces.protocol import min_distance_A_of
from .respa import MDState, conserved_energy, conserved_energy_eV


# the arrays of a state that must hold only finite numbers (checked in this order)
STATE_ARRAYS = ("positions", "forces_fast", "forces_slow", "momenta")


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
    """The engine's check of every step. On the device, :meth:`flags` says for
    each step of a batch whether anything may be wrong (no host read); the
    engine reads that once per batch. Where a step is flagged, :meth:`first_problem`
    names it on the host, and :meth:`stop` calls ``keep(good_state, good_step)``
    for each callback in `keep_last_good` (e.g. writing last_good.extxyz and the
    restart), puts the engine back to that last good state and raises
    MDInstability naming the step and the problem."""

    def __init__(self, limits: SafetyLimits, template, providers=()):
        self.limits, self.template, self.providers = limits, template, tuple(providers)
        self.keep_last_good, self.good = [], None

    @property
    def jump_limit_eV(self) -> float:
        return self.limits.energy_jump_eV_per_atom * len(self.template)

    def start(self, state: MDState, step: int) -> None:
        self.good = (state, step)

    def shortest_now(self) -> list:
        """The shortest edge each provider saw in its last call (those that tell)."""
        return [d for d in map(min_distance_A_of, self.providers) if d is not None]

    def flags(self, previous: MDState, states: list, shortest: list) -> torch.Tensor:
        """(k,) device bools: step j of a batch may be unphysical (non-finite
        numbers, a provider's shortest edge under the limit, a jump of the
        conserved energy; NaN counts as a jump). shortest[j]: the providers'
        shortest edges after step j (empty: the host checks that step's distances)."""
        flagged, before = [], conserved_energy(previous)
        for s, seen in zip(states, shortest):
            now = conserved_energy(s)
            bad = ~((now - before).abs() <= self.jump_limit_eV)
            for name in STATE_ARRAYS:
                bad = bad | ~torch.isfinite(getattr(s, name)).all()
            for d in seen:
                bad = bad | (torch.as_tensor(d) < self.limits.min_distance_A)
            flagged.append(bad)
            before = now
        return torch.stack(flagged)

    def first_problem(self, previous: MDState, states: list, shortest: list, flags: list):
        """(index, sentence) of the first step of a batch with a problem, or None
        (a flag the host finds unfounded). Steps whose providers tell no distance
        are checked on the host here too."""
        for j, (s, seen) in enumerate(zip(states, shortest)):
            if flags[j] or not seen:
                problem = self.problem_with_state(s, seen) or self.energy_jump(previous, s)
                if problem is not None:
                    return j, problem
            previous = s
        return None

    def stop(self, engine, problem: str):
        """Keep and restore the last good state; raise MDInstability."""
        state, step = self.good
        for keep in self.keep_last_good:
            keep(state, step)
        bad_step = engine.step + 1
        engine.restore(state, step)
        raise MDInstability(f"step {bad_step}: {problem}; stopped. Last good state: step {step}")

    def problem_with_state(self, s: MDState, shortest=()):
        """What is unphysical about `s` on its own (non-finite numbers, atoms too
        close), as a sentence, or None. shortest: the providers' shortest edges at
        `s`, where known (else the host measures the distances)."""
        for name in STATE_ARRAYS:
            value = getattr(s, name)
            if torch.is_tensor(value) and not bool(torch.isfinite(value).all()):
                return f"NaN or inf in {name}"
        for name in ("energy_fast_eV", "energy_slow_eV", "work_eV"):
            if not math.isfinite(float(getattr(s, name))):
                return f"NaN or inf in {name}"
        return self.atoms_too_close(s, shortest)

    def atoms_too_close(self, s: MDState, shortest=()):
        if shortest and float(min(shortest, key=float)) >= self.limits.min_distance_A:
            return None  # a provider's shortest edge (within its r_max) is long enough: no pair is closer
        pair = closest_pair(s.positions.detach().cpu().numpy(), self.template.cell.array, self.template.pbc,
                            self.limits.min_distance_A)
        if pair is None:
            return None
        return f"atoms {pair[0]} and {pair[1]} are {pair[2]:.3f} Å apart (limit {self.limits.min_distance_A} Å)"

    def energy_jump(self, old: MDState, new: MDState):
        jump = abs(conserved_energy_eV(new) - conserved_energy_eV(old))
        if not math.isfinite(jump) or jump > self.jump_limit_eV:
            return (f"conserved energy jumped by {jump:.4g} eV in one step (limit "
                    f"{self.limits.energy_jump_eV_per_atom} eV/atom × {len(self.template)} atoms)")
        return None
