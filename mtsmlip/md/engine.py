"""The full-speed run loop: RESPA on torch tensors, observers attached to it.

The engine holds the state, runs the loop and offers the observables; what a run
writes (log, trajectory, restart: :mod:`mtsmlip.md.outputs`), what `compare`
samples, and the safety check (:mod:`mtsmlip.md.safety`, attached first, so that
nothing is written of a state it refuses) are observers: callables
``fn(engine)`` attached with ``engine.attach(fn, interval)``, as in ASE.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import torch
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator

from ..errors import DataError
from ..progress import progress_bar
from .masses import repartitioned_masses
from .replicas import REPLICAS_KEY
from .respa import MDState, conserved_energy_eV, initial_state, kinetic_energy_eV, respa_step
from ..forces.model import deterministic
from ..forces.protocol import min_distance_A_of, neighbor_lists_of
from .safety import MDInstability, SafetyCheck, SafetyLimits  # noqa: F401 (part of this room's API)
from .settings import RunSettings
from .thermostats import make_thermostat, per_atom_friction_per_fs


def degrees_of_freedom(atoms: Atoms, thermostat) -> int:
    """Degrees of freedom the kinetic energy is shared by: 3N less what the
    dynamics conserves. Langevin's random kicks thermalise all 3N; velocity
    Verlet, RESPA and Bussi's global rescaling conserve the total momentum
    (zero from :func:`initialise_momenta`: 3N − 3) and, for an isolated
    structure, also the angular momentum (zeroed too: 3N − 6; 3N − 5 for a
    linear molecule is not told apart). Counting 3N, Bussi ran a 9-atom
    molecule 29 % hot (27 / 21) while reporting the target temperature."""
    from ..system import is_periodic
    from .replicas import replica_count

    n = 3 * len(atoms)
    if thermostat == "langevin" or len(atoms) < 2:
        return n
    if is_periodic(atoms):
        return n - 3
    copies = replica_count(atoms)  # independent copies (md.replicas) each conserve their own
    return max(1, n - 6 * copies if len(atoms) // copies > 2 else n - 5 * copies)


def initialise_momenta(atoms: Atoms, temperature_K, seed) -> None:
    """Maxwell–Boltzmann momenta if the structure has none, with zero total
    momentum and, for an isolated structure, zero angular momentum."""
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation

    from ..system import is_periodic

    if atoms.has("momenta") and np.any(atoms.get_momenta()):
        return
    if temperature_K is not None and not (math.isfinite(temperature_K) and temperature_K >= 0):
        raise DataError(f"temperature_K must be a finite number >= 0 (got {temperature_K})")
    if temperature_K is None:
        atoms.set_momenta(np.zeros((len(atoms), 3)))
        return
    from .replicas import replica_count, zero_momentum_per_replica

    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=np.random.default_rng(seed))
    Stationary(atoms)
    if replica_count(atoms) > 1:
        zero_momentum_per_replica(atoms, replica_count(atoms))
    elif not is_periodic(atoms) and len(atoms) > 2:
        ZeroRotation(atoms)  # each zeroed momentum takes its ½kT with it: T stays right on 3N − 6


# Inner steps integrated between two reads of the device (the safety flags, the
# neighbour lists' staleness). Short enough that atoms rarely outgrow half a
# 1 Å skin within one batch (water's H moves ~0.03 Å/fs at 300 K: 0.25 Å in 8 fs).
BATCH_INNER_STEPS = 16
# After a batch that had to be done again, the next batches are half as long (down to one
# outer step); after this many batches in a row that did not, they double again, up to
# batch_inner_steps. From a hot start (a DFT frame that heats to 600 K in NVE), half the
# 16-step batches of water outgrew a 1 Å skin and were done twice.
CLEAN_BATCHES_TO_GROW = 8
# After a batch, a neighbour list is rebuilt ahead of time when its atoms have
# moved so far that the next batch, moving as far as this one did times this
# margin, could outgrow half its skin (a batch that does is done again).
REBUILD_MARGIN = 2.0


def float64_scalar(value) -> torch.Tensor:
    """A device 0-d tensor as float64, or a plain number (from the CPU's compiled
    edge loops) as a 0-d float64 tensor."""
    return value.to(torch.float64) if torch.is_tensor(value) else torch.tensor(float(value), dtype=torch.float64)


class Engine:
    """RESPA (or velocity Verlet, the baseline) on `atoms` with force providers
    (callables positions -> (energy_eV, forces) on torch tensors). `provenance`:
    plain data naming what is simulated (e.g. the models' hashes), kept in restarts."""

    def __init__(self, atoms, fast, slow, settings: RunSettings, seed=0, limits: SafetyLimits = SafetyLimits(),
                 device="cpu", provenance: dict | None = None):
        settings.check()
        self.template = Atoms(numbers=atoms.numbers, cell=atoms.cell, pbc=atoms.pbc)
        self.template.info.update({k: v for k, v in atoms.info.items() if k == REPLICAS_KEY})
        self.fast, self.slow, self.settings = fast, slow, settings
        self.inner_dt = settings.timestep_fs * units.fs
        self.n_dof = degrees_of_freedom(atoms, settings.thermostat)
        friction = settings.friction_per_fs
        if settings.species_friction_per_fs:
            friction = per_atom_friction_per_fs(atoms.get_chemical_symbols(), friction,
                                                settings.species_friction_per_fs)
        self.thermostat = make_thermostat(settings.thermostat, settings.temperature_K, friction,
                                          settings.tau_fs, np.random.default_rng(seed), self.n_dof)
        self.tensor = dict(dtype=torch.float64, device=device)
        self.provenance = dict(provenance or {})
        self.observers, self.step, self.observed_step = [], 0, None
        masses = repartitioned_masses(atoms, settings.hmr_amu)
        self.state = initial_state(self.as_tensor(atoms.positions), self.as_tensor(atoms.get_momenta()),
                                   self.as_tensor(masses[:, None]), fast, slow)
        self.safety = SafetyCheck(limits, self.template, (fast, slow))
        problem = self.safety.problem_with_state(self.state, self.safety.shortest_now())
        if problem is not None:
            raise DataError(f"starting structure {atoms.get_chemical_formula()}: {problem}; nothing was run")
        self.restore(self.state, 0)
        self.neighbor_lists = neighbor_lists_of(fast, slow)
        self.batch_inner_steps = BATCH_INNER_STEPS
        self.n_redone = 0
        self.shortened_batch, self.clean_batches = None, 0  # outer steps a batch is cut to after a redo
        # asked between batches: True ends the run there with KeyboardInterrupt (a Ctrl-C
        # deferred to a batch boundary never lands inside a model call; see md_cli)
        self.stop_requested = lambda: False

    def as_tensor(self, array) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array, dtype=float)).to(**self.tensor)

    def restore(self, state: MDState, step: int) -> None:
        """Continue from `state` at `step` (a resumed run: that step is not observed again)."""
        self.state, self.step, self.observed_step = state, int(step), (int(step) if step else None)
        self.safety.start(state, self.step)

    # ---- observers ---------------------------------------------------------
    def attach(self, fn, interval: int = 1, final: bool = False) -> None:
        """Call ``fn(self)`` at every step that is a multiple of `interval` (step 0
        included); with `final`, also after the last step of every ``run``.
        Observers run after each batch, step by step: ``self.state``, ``self.step``
        and the thermostat are those of the step; the providers' own last-call
        values (shortest edge, virial) are the batch's last call's."""
        if int(interval) < 1:
            raise DataError(f"observer interval must be >= 1 (got {interval})")
        self.observers.append((fn, int(interval), bool(final)))

    def call_observers(self, final: bool = False) -> None:
        on_interval = self.observed_step != self.step
        for fn, interval, wants_final in self.observers:
            if (on_interval and self.step % interval == 0) or (final and wants_final and self.step % interval):
                fn(self)
        self.observed_step = self.step

    # ---- the loop ----------------------------------------------------------
    def run(self, steps: int, progress: bool = True) -> MDState:
        """Advance `steps` outer steps (MDInstability if the state becomes unphysical).

        Steps are integrated in batches without reading anything back from the
        device; once per batch the safety flags and the neighbour lists are
        read. A batch that used an outgrown neighbour list is done again from its
        start with lists checked at every call (the same trajectory, bit for
        bit: the lists' edges do not depend on when they were built). Observers
        then see each step of the batch in order; a flagged step stops the run
        at the step before it, as if checked step by step."""
        bar = progress_bar(int(steps), "step", enabled=progress)
        self.call_observers()
        clock, since, left = time.perf_counter(), 0, int(steps)
        with deterministic(self.tensor["device"]):
            while left > 0:
                k = self.advance(min(self.outer_steps_per_batch(), left))
                left, since = left - k, since + k
                if self.stop_requested():
                    raise KeyboardInterrupt
                bar.update(k)
                if since >= 10:
                    bar.set_postfix(ns_per_day=f"{self.settings.ns_per_day(since / (time.perf_counter() - clock)):.3f}")
                    clock, since = time.perf_counter(), 0
        if steps:
            self.call_observers(final=True)
        bar.close()
        return self.state

    def outer_steps_per_batch(self) -> int:
        """Outer steps in the next batch: batch_inner_steps' worth, or fewer for a
        while after a batch outgrew a neighbour list (see CLEAN_BATCHES_TO_GROW)."""
        full = self.full_batch_outer_steps()
        return full if self.shortened_batch is None else min(full, self.shortened_batch)

    def full_batch_outer_steps(self) -> int:
        return max(1, self.batch_inner_steps // self.settings.n_inner)

    def adapt_batch_length(self, k: int, redone: bool) -> None:
        """Halve the batch after a redo of a k-step batch; double it back after
        CLEAN_BATCHES_TO_GROW batches without one (the trajectory does not
        depend on the batch length, only the work done twice does)."""
        if redone:
            self.shortened_batch, self.clean_batches = max(1, k // 2), 0
            return
        if self.shortened_batch is None:
            return
        self.clean_batches += 1
        if self.clean_batches >= CLEAN_BATCHES_TO_GROW:
            self.clean_batches = 0
            self.shortened_batch *= 2
            if self.shortened_batch >= self.full_batch_outer_steps():
                self.shortened_batch = None

    def integrate(self, k: int) -> tuple[list, list, list]:
        """k outer steps from the current state: the states, after each the
        providers' shortest edges (device tensors; nothing read back) and the
        thermostat's state (its random numbers), so that observers and restarts
        of step j see the thermostat as it was after step j."""
        states, shortest, thermostat, s = [], [], [], self.state
        for _ in range(k):
            try:
                s = respa_step(s, self.fast, self.slow, self.inner_dt, self.settings.n_inner, self.thermostat)
            except (RuntimeError, ValueError, ArithmeticError):
                if not states:
                    raise  # on the batch's own (checked) start: not a blow-up of this batch
                break  # a state already gone bad within the batch (NaN into a calculator, inf into
                # Bussi): the batch ends here and the check names the bad step before it
            states.append(s)
            shortest.append(self.safety.shortest_now())
            thermostat.append(self.thermostat.get_state())
        return states, shortest, thermostat

    def advance(self, k: int) -> int:
        """One batch of up to k outer steps (see :meth:`run`); the steps done."""
        start, rng = self.state, self.thermostat.get_state()
        for nl in self.neighbor_lists:
            nl.begin_lazy()
        try:
            states, shortest, thermostat = self.integrate(k)
        finally:
            for nl in self.neighbor_lists:
                nl.end_lazy()
        flags, stale, moved2 = self.read_batch(start, states, shortest)
        self.adapt_batch_length(k, redone=stale)
        if stale:  # a list was outgrown within the batch: again, checking every call, up to a
            # flagged step (not on into atoms flying apart after a blow-up)
            self.n_redone += 1
            self.thermostat.set_state(rng)
            for nl in self.neighbor_lists:
                nl.stale = nl.moved2_A2 = None  # eager calls rebuild as they go; nothing to read after
            again = flags.index(True) + 1 if any(flags) else len(states)
            states, shortest, thermostat = self.integrate(again)
            flags, _, moved2 = self.read_batch(start, states, shortest)
        problem = None
        if any(flags) or not all(shortest) or len(states) < k:
            # (a batch that broke off with no bad state goes on from its last state: the next
            # batch repeats the failing call on a checked state and raises its error)
            problem = self.safety.first_problem(start, states, shortest, flags)
        good = len(states) if problem is None else problem[0]
        if good == 0:
            self.thermostat.set_state(rng)
        for s, after in zip(states[:good], thermostat[:good]):
            self.state, self.step = s, self.step + 1
            self.thermostat.set_state(after)
            self.safety.start(s, self.step)
            self.call_observers()
        if problem is not None:
            self.thermostat.set_state(thermostat[problem[0]])  # as a step-by-step check left it: after the bad step
            self.safety.stop(self, problem[1])
        self.rebuild_ahead(start, moved2)
        return good

    def read_batch(self, start: MDState, states: list, shortest: list):
        """The one host read of a batch: per-step safety flags, whether a
        neighbour list was outgrown, and each list's largest move since its build
        and this batch's largest move (Å²)."""
        parts = [self.safety.flags(start, states, shortest).to(torch.float64)]
        lists = [nl for nl in self.neighbor_lists if nl.moved2_A2 is not None]
        if lists:
            batch_move2 = (states[-1].positions - start.positions).square().sum(1).max()
            parts.append(torch.stack([float64_scalar(nl.stale) for nl in lists] +
                                     [float64_scalar(nl.moved2_A2) for nl in lists] + [batch_move2]))
        values = torch.cat(parts).tolist()
        flags, rest = values[:len(states)], values[len(states):]
        stale = any(rest[:len(lists)])
        moved2 = {id(nl): (rest[len(lists) + m], rest[-1]) for m, nl in enumerate(lists)}
        return [bool(f) for f in flags], stale, moved2

    def rebuild_ahead(self, start: MDState, moved2: dict) -> None:
        """Rebuild, now, each list the next batch could outgrow (see REBUILD_MARGIN)."""
        for nl in self.neighbor_lists:
            if id(nl) not in moved2:
                continue
            since_build2, batch2 = moved2[id(nl)]
            reach = math.sqrt(since_build2) + REBUILD_MARGIN * math.sqrt(batch2)
            if math.isfinite(reach) and reach * reach > nl.half_skin2_A2:
                nl.build(self.state.positions)

    # ---- observables -------------------------------------------------------
    def potential_eV(self, s: MDState) -> float:
        return float(s.energy_fast_eV) + float(s.energy_slow_eV)

    def conserved_eV(self, s: MDState) -> float:
        """K + E_fast + E_slow − thermostat work (constant in exact dynamics)."""
        return conserved_energy_eV(s)

    def kinetic_eV(self, s: MDState) -> float:
        return kinetic_energy_eV(s.momenta, s.masses)

    def temperature_K(self, s: MDState) -> float:
        return 2 * self.kinetic_eV(s) / (self.n_dof * units.kB)

    def time_ps(self) -> float:
        return self.settings.simulated_ps(self.step)

    def atoms(self, s: MDState | None = None, step: int | None = None) -> Atoms:
        """The state (default: the current one) as ASE Atoms with momenta, the
        total energy and forces, and `step`/`time_ps` in info."""
        s, step = (self.state, self.step) if s is None else (s, step)
        atoms = self.template.copy()
        atoms.positions = s.positions.cpu().numpy()
        atoms.set_momenta(s.momenta.cpu().numpy())
        forces = (s.forces_fast + s.forces_slow).cpu().numpy()
        atoms.calc = SinglePointCalculator(atoms, energy=self.potential_eV(s), forces=forces)
        atoms.info.update(step=step, time_ps=self.settings.simulated_ps(step))
        return atoms


def cuda_syncs_in_a_batch(engine: Engine, outer_steps: int = 4) -> list[str]:
    """The host synchronisations CUDA reports (``torch.cuda.set_sync_debug_mode``)
    while `engine`, on a CUDA device, integrates one batch of `outer_steps` as
    :meth:`Engine.run` does (neighbour lists lazy): the first line of each
    report, none for a clean loop. Run the engine a step or two first, so that
    its lists are built and its generators seeded."""
    if torch.device(engine.tensor["device"]).type != "cuda":
        raise DataError(f"cuda_syncs_in_a_batch: the engine runs on {engine.tensor['device']}, not a CUDA device")
    for nl in engine.neighbor_lists:
        nl.begin_lazy()
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            engine.integrate(outer_steps)
        finally:
            torch.cuda.set_sync_debug_mode("default")
            for nl in engine.neighbor_lists:
                nl.end_lazy()
    return [str(w.message).splitlines()[0] for w in seen if "synchroniz" in str(w.message).lower()]
