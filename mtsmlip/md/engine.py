"""The full-speed run loop for a trained pair: RESPA on torch tensors, with the
log, trajectory, atomic restart files and safety checks of a long run.

OUT/ gets ``md.log`` (one row per output interval), ``trajectory.extxyz``
(positions, momenta, energy, forces), ``restart.npz`` (everything needed to
continue bit-for-bit) and, if the run is stopped as unsafe, ``last_good.extxyz``.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import ase.io
import numpy as np
import torch
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator

from ..data import MIN_DISTANCE_A, closest_pair
from ..errors import DataError
from ..files import atomic_write
from .ase_integrator import check_step_settings
from .respa import MDState, initial_state, kinetic_energy_eV, respa_step, zero_forces
from .thermostats import make_thermostat
from .torch_forces import DEFAULT_SKIN_A, ModelForces

LOG_COLUMNS = ("step", "time_ps", "temperature_K", "potential_eV", "kinetic_eV", "conserved_eV",
               "steps_per_s", "ns_per_day")


class MDInstability(RuntimeError):
    """The run was stopped because its state became unphysical."""


@dataclass(frozen=True)
class RunSettings:
    """What a run integrates; a restart must match it. `baseline`: velocity Verlet
    with the baseline model (RESPA with one force and n_inner = 1)."""

    timestep_fs: float
    n_inner: int
    thermostat: str | None = None
    temperature_K: float | None = None
    friction_per_fs: float | None = None
    baseline: bool = False

    def check(self) -> None:
        check_step_settings(self.timestep_fs, self.n_inner)
        if self.baseline and self.n_inner != 1:
            raise DataError("the baseline runs velocity Verlet: n_inner must be 1")


@dataclass(frozen=True)
class SafetyLimits:
    """Stop when atoms come closer than `min_distance_A`, or the (effective)
    conserved energy changes by more than `energy_jump_eV_per_atom`·N in one step."""

    min_distance_A: float = MIN_DISTANCE_A
    energy_jump_eV_per_atom: float = 0.05


def providers_for(models, atoms, baseline: bool, skin_A=DEFAULT_SKIN_A, device="cpu"):
    """(fast, slow) force providers for a TrainedModels pair, or the baseline
    model with a zero slow force. Bad species or cells raise DataError here."""
    if baseline:
        if "baseline" not in models.models:
            raise DataError(f"{models.directory}: no baseline.pt to run --baseline with")
        return ModelForces(models.models["baseline"], atoms, skin_A, device), zero_forces
    fast = ModelForces(models.models["fast"], atoms, skin_A, device)
    return fast, ModelForces(models.models["slow"], atoms, skin_A, device)


def initialise_momenta(atoms: Atoms, temperature_K, seed) -> None:
    """Maxwell–Boltzmann momenta (zero total momentum) if the structure has none."""
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

    if atoms.has("momenta") and np.any(atoms.get_momenta()):
        return
    if temperature_K is not None and not (math.isfinite(temperature_K) and temperature_K >= 0):
        raise DataError(f"temperature_K must be a finite number >= 0 (got {temperature_K})")
    if temperature_K is None:
        atoms.set_momenta(np.zeros((len(atoms), 3)))
        return
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=np.random.default_rng(seed))
    Stationary(atoms)


class Engine:
    """Runs RESPA (or velocity Verlet, the baseline) on `atoms` with force
    providers on torch tensors, writing into `out_dir` every `traj_every` steps."""

    def __init__(self, atoms, fast, slow, settings: RunSettings, out_dir, seed=0, traj_every=10,
                 limits: SafetyLimits = SafetyLimits(), device="cpu", provenance: dict | None = None):
        """`provenance`: plain data naming what is simulated (e.g. the models' hashes);
        kept in the restart, and a resume with another refuses to continue."""
        settings.check()
        if int(traj_every) < 1:
            raise DataError(f"traj_every must be >= 1 (got {traj_every})")
        self.template = Atoms(numbers=atoms.numbers, cell=atoms.cell, pbc=atoms.pbc)
        self.fast, self.slow, self.settings, self.limits = fast, slow, settings, limits
        self.out_dir, self.traj_every = Path(out_dir), int(traj_every)
        self.inner_dt = settings.timestep_fs * units.fs
        self.thermostat = make_thermostat(settings.thermostat, settings.temperature_K,
                                          settings.friction_per_fs, np.random.default_rng(seed))
        self.tensor = dict(dtype=torch.float64, device=device)
        self.step = 0
        masses = self.as_tensor(atoms.get_masses()[:, None])
        self.provenance = dict(provenance or {})
        self.state = initial_state(self.as_tensor(atoms.positions), self.as_tensor(atoms.get_momenta()),
                                   masses, fast, slow)
        problem = self.problem_with_state(self.state)
        if problem is not None:
            raise DataError(f"starting structure {atoms.get_chemical_formula()}: {problem}; nothing was run")

    def as_tensor(self, array) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array, dtype=float)).to(**self.tensor)

    # ---- observables -------------------------------------------------------
    def potential_eV(self, s: MDState) -> float:
        return float(s.energy_fast_eV) + float(s.energy_slow_eV)

    def conserved_eV(self, s: MDState) -> float:
        """K + E_fast + E_slow − thermostat work (constant in exact dynamics)."""
        return kinetic_energy_eV(s.momenta, s.masses) + self.potential_eV(s) - self.thermostat.work_eV

    def temperature_K(self, s: MDState) -> float:
        return 2 * kinetic_energy_eV(s.momenta, s.masses) / (3 * len(self.template) * units.kB)

    def time_ps(self) -> float:
        return self.step * self.settings.n_inner * self.settings.timestep_fs / 1000.0

    # ---- the loop ----------------------------------------------------------
    def run(self, steps: int, progress: bool = True, write_last: bool = True) -> MDState:
        """Advance `steps` outer steps; MDInstability (after saving the last good
        frame) if the state becomes unphysical. With `write_last`, the final state
        is written (frame, log row, restart) even between output intervals, so a
        finished run always resumes from where it ended."""
        bar = _progress_bar(steps, progress)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.step == 0:
            self.write_outputs(0.0)
        clock, since, last = time.perf_counter(), 0, int(steps) - 1
        for k in range(int(steps)):
            old = self.state
            new = respa_step(old, self.fast, self.slow, self.inner_dt, self.settings.n_inner, self.thermostat)
            self.check_safe(old, new)
            self.state, self.step, since = new, self.step + 1, since + 1
            bar.update(1)
            if self.step % self.traj_every == 0 or (write_last and k == last):
                rate = since / max(time.perf_counter() - clock, 1e-12)
                self.write_outputs(rate)
                bar.set_postfix(ns_per_day=f"{self.ns_per_day(rate):.3f}")
                clock, since = time.perf_counter(), 0
        bar.close()
        return self.state

    def ns_per_day(self, steps_per_s: float) -> float:
        return steps_per_s * self.settings.n_inner * self.settings.timestep_fs * 86400 * 1e-6

    # ---- safety ------------------------------------------------------------
    def check_safe(self, old: MDState, new: MDState) -> None:
        problem = self.problem_with(old, new)
        if problem is not None:
            self.save_last_good(old)
            raise MDInstability(
                f"step {self.step + 1}: {problem}; stopped. Last good frame (step {self.step}) saved to "
                f"{self.out_dir / 'last_good.extxyz'} and {self.restart_path}")

    def problem_with_state(self, s: MDState):
        """What is unphysical about the state `s` on its own (non-finite numbers,
        atoms too close), as a sentence, or None. Checks the start as well as every step."""
        for name in ("positions", "forces_fast", "forces_slow", "momenta"):
            value = getattr(s, name)
            if torch.is_tensor(value) and not bool(torch.isfinite(value).all()):
                return f"NaN or inf in {name}"
        for name in ("energy_fast_eV", "energy_slow_eV"):
            if not math.isfinite(float(getattr(s, name))):
                return f"NaN or inf in {name}"
        close = [p.min_distance_A for p in (self.fast, self.slow) if getattr(p, "min_distance_A", None) is not None]
        if not close or float(min(close)) < self.limits.min_distance_A:  # providers without one: look
            pair = closest_pair(s.positions.detach().cpu().numpy(), self.template.cell.array,
                                self.template.pbc, self.limits.min_distance_A)
            if pair is not None:
                return (f"atoms {pair[0]} and {pair[1]} are {pair[2]:.3f} Å apart "
                        f"(limit {self.limits.min_distance_A} Å)")
        return None

    def problem_with(self, old: MDState, new: MDState):
        """A sentence describing what is unphysical about `new`, or None."""
        problem = self.problem_with_state(new)
        if problem is not None:
            return problem
        jump = abs(self.conserved_eV(new) - self.conserved_eV(old))
        if not math.isfinite(jump) or jump > self.limits.energy_jump_eV_per_atom * len(self.template):
            return (f"conserved energy jumped by {jump:.4g} eV in one step (limit "
                    f"{self.limits.energy_jump_eV_per_atom} eV/atom × {len(self.template)} atoms)")
        return None

    def save_last_good(self, good: MDState) -> None:
        frame = self.frame(good)
        atomic_write(self.out_dir / "last_good.extxyz", lambda tmp: ase.io.write(tmp, frame, format="extxyz"))
        self.write_restart(good)

    # ---- outputs -----------------------------------------------------------
    @property
    def restart_path(self) -> Path:
        return self.out_dir / "restart.npz"

    def frame(self, s: MDState) -> Atoms:
        atoms = self.template.copy()
        atoms.positions = s.positions.cpu().numpy()
        atoms.set_momenta(s.momenta.cpu().numpy())
        forces = (s.forces_fast + s.forces_slow).cpu().numpy()
        atoms.calc = SinglePointCalculator(atoms, energy=self.potential_eV(s), forces=forces)
        atoms.info.update(step=self.step, time_ps=self.time_ps())
        return atoms

    def write_outputs(self, steps_per_s: float) -> None:
        """Trajectory frame and log row, then the restart (so a restart never
        points past what the trajectory holds)."""
        with open(self.out_dir / "trajectory.extxyz", "a") as f:
            ase.io.write(f, self.frame(self.state), format="extxyz")
        self.append_log(steps_per_s)
        self.write_restart(self.state)

    def append_log(self, steps_per_s: float) -> None:
        path, s = self.out_dir / "md.log", self.state
        row = (self.step, self.time_ps(), self.temperature_K(s), self.potential_eV(s),
               kinetic_energy_eV(s.momenta, s.masses), self.conserved_eV(s), steps_per_s,
               self.ns_per_day(steps_per_s))
        with open(path, "a") as f:
            if f.tell() == 0:
                f.write("# " + " ".join(LOG_COLUMNS) + "\n")
            f.write(f"{row[0]:d} " + " ".join(f"{v:.10g}" for v in row[1:]) + "\n")

    def write_restart(self, s: MDState) -> None:
        arrays = {name: getattr(s, name).cpu().numpy() for name in
                  ("positions", "momenta", "forces_fast", "forces_slow")}
        meta = {"format": "mtsmlip-restart-1", "step": self.step, "settings": asdict(self.settings),
                "provenance": self.provenance,
                "thermostat": self.thermostat.get_state(),
                "energy_fast_eV": float(s.energy_fast_eV), "energy_slow_eV": float(s.energy_slow_eV)}

        def write(tmp):
            with open(tmp, "wb") as f:
                np.savez(f, numbers=self.template.numbers, meta=json.dumps(meta), **arrays)

        atomic_write(self.restart_path, write)

    def resume(self, path=None) -> None:
        """Continue from a restart file written by a run with the same settings."""
        path = Path(path or self.restart_path)
        meta, arrays = read_restart(path)
        if meta["settings"] != asdict(self.settings):
            raise DataError(f"{path}: written with settings {meta['settings']}, "
                            f"this run has {asdict(self.settings)}")
        recorded = meta.get("provenance") or {}
        changed = sorted(k for k in recorded if k in self.provenance and recorded[k] != self.provenance[k])
        if changed:
            raise DataError(f"{path}, field 'provenance': the restart was written with other {', '.join(changed)} "
                            f"(another --model?); resume with the same, or start a new --out")
        if not np.array_equal(arrays["numbers"], self.template.numbers):
            raise DataError(f"{path}, field 'numbers': restart holds a different structure")
        t = self.as_tensor
        state = MDState(t(arrays["positions"]), t(arrays["momenta"]), self.state.masses,
                        t(arrays["forces_fast"]), t(arrays["forces_slow"]),
                        meta["energy_fast_eV"], meta["energy_slow_eV"])
        problem = self.problem_with_state(state)
        if problem is not None:
            raise DataError(f"{path}: restart state is unusable: {problem}")
        self.state = state
        self.thermostat.set_state(meta["thermostat"])
        self.step = int(meta["step"])
        self.trim_outputs_to(self.step)

    def trim_outputs_to(self, step: int) -> None:
        """Drop log rows and trajectory frames written after the restart at `step`
        (a run stopped between writing them and writing the restart), and a frame
        cut off mid-write, so that a resumed run never repeats or corrupts rows."""
        def log_rows(text):
            return "".join(x for x in text.splitlines(keepends=True)
                           if x.startswith("#") or (row := _row_step(x)) is not None and row <= step)

        def frames(text):
            return "".join(frame for frame, frame_step in _extxyz_frames(text) if frame_step <= step)

        _rewrite_if_changed(self.out_dir / "md.log", log_rows)
        _rewrite_if_changed(self.out_dir / "trajectory.extxyz", frames)


RESTART_ARRAYS = ("numbers", "positions", "momenta", "forces_fast", "forces_slow")


def read_restart(path: Path) -> tuple[dict, dict]:
    """(meta, arrays) of a restart file: plain arrays and JSON only (no pickle);
    DataError naming the file for a missing, damaged or foreign one."""
    if not path.is_file():
        raise DataError(f"{path}: no restart file to resume from")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta, arrays = json.loads(str(z["meta"])), {k: z[k] for k in z.files if k != "meta"}
    except Exception as exc:  # zip, CRC, JSON and key errors of a truncated or bit-flipped file
        raise DataError(f"{path}: damaged restart file, cannot be read ({type(exc).__name__}: {exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != "mtsmlip-restart-1":
        raise DataError(f"{path}: not an mtsmlip restart file")
    missing = [k for k in RESTART_ARRAYS if k not in arrays]
    if missing:
        raise DataError(f"{path}, field '{missing[0]}': missing from the restart file")
    return meta, arrays


def _rewrite_if_changed(path: Path, keep) -> None:
    """Replace the text of `path` (if it exists) by keep(text), atomically, when that differs."""
    if path.is_file():
        text = path.read_text()
        kept = keep(text)
        if kept != text:
            atomic_write(path, lambda tmp: Path(tmp).write_text(kept))


def _row_step(line: str):
    """The step of a complete md.log row, or None for a partial/garbled one."""
    fields = line.split()
    if not line.endswith("\n") or len(fields) != len(LOG_COLUMNS):
        return None
    try:
        return int(fields[0])
    except ValueError:
        return None


def _extxyz_frames(text: str):
    """(frame text, step) for each complete frame of an extxyz file that the
    engine wrote (step from the comment line); stops at the first incomplete one."""
    lines, i = text.splitlines(keepends=True), 0
    while i < len(lines):
        try:
            n_atoms = int(lines[i])
        except ValueError:
            return
        frame = lines[i:i + n_atoms + 2]
        match = re.search(r"\bstep=(\d+)", frame[1]) if len(frame) > 1 else None
        if len(frame) < n_atoms + 2 or not frame[-1].endswith("\n") or match is None:
            return
        yield "".join(frame), int(match.group(1))
        i += n_atoms + 2


def _progress_bar(steps, enabled):
    from tqdm import tqdm

    return tqdm(total=int(steps), unit="step", disable=not enabled, dynamic_ncols=True)
