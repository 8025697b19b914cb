"""Compare MTS MD with conventional MD side by side: speed, observables, drift.

One equilibrated start (baseline model, Langevin); then the baseline (velocity
Verlet at δt with the baseline model) and r-RESPA at each n run under the same
thermostat, advanced in short alternating blocks so that a noisy machine slows
all of them alike. Each run then continues in NVE for its energy drift; a short
n = 1 segment of the pair samples fast and slow forces every δt for the
scale-separation analysis. OUT/ gets compare.json, report.md and PNG plots;
an interrupted compare resumes where it stopped (finished blocks are kept).
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms, units

from .data import DataError, read_structure
from .files import atomic_write, atomic_write_json, check_output_dir, fingerprint, read_json
from .shipped import resolve_model_dir

STATE_FILE = "progress.json"


@dataclass(frozen=True)
class RunSpec:
    """One simulation of the comparison: the baseline, or the pair at n_inner."""

    n_inner: int
    baseline: bool = False

    @property
    def label(self) -> str:
        return "baseline" if self.baseline else f"mts_n{self.n_inner}"


@dataclass(frozen=True)
class CompareSettings:
    """What is compared and for how long. Times in ps/fs, temperature in K."""

    ps: float
    timestep_fs: float = 0.5
    n_inner: tuple = (2, 3, 4, 6)
    temperature_K: float = 300.0
    thermostat: str = "bussi"
    friction_per_fs: float | None = None
    equilibrate_ps: float = 0.2
    # Equilibration friction: strong (20 fs), because a start built from gas-phase
    # molecules releases heat as it relaxes, and production should begin at T.
    equilibrate_friction_per_fs: float = 0.05
    nve_ps: float = 0.2
    spectrum_ps: float = 0.1
    block_fs: float | None = None
    seed: int = 0
    skin_A: float = 1.0

    def check(self) -> None:
        if self.ps <= 0 or self.timestep_fs <= 0:
            raise DataError(f"--ps and --timestep-fs must be positive (got {self.ps}, {self.timestep_fs})")
        if not self.n_inner or min(self.n_inner) < 1:
            raise DataError(f"--n-inner needs integers >= 1 (got {list(self.n_inner)})")
        if min(self.equilibrate_ps, self.nve_ps, self.spectrum_ps) < 0:
            raise DataError("--equilibrate-ps, --nve-ps and --spectrum-ps must be >= 0")
        if not self.equilibrate_friction_per_fs > 0:
            raise DataError(f"--equilibrate-friction-per-fs must be positive (got {self.equilibrate_friction_per_fs})")

    @property
    def runs(self) -> list[RunSpec]:
        return [RunSpec(1, baseline=True)] + [RunSpec(n) for n in sorted(set(self.n_inner))]

    def outer_fs(self, run: RunSpec) -> float:
        return run.n_inner * self.timestep_fs

    def steps_for(self, run: RunSpec, ps: float) -> int:
        return max(1, round(ps * 1000.0 / self.outer_fs(run)))

    def block_steps(self, run: RunSpec) -> int:
        """Outer steps per interleaved block: the same simulated time for every run."""
        common_fs = math.lcm(*(r.n_inner for r in self.runs)) * self.timestep_fs
        block_fs = self.block_fs or common_fs * max(1, math.ceil(20.0 / common_fs))
        return max(1, round(block_fs / self.outer_fs(run)))


# ---- samples along a run ----------------------------------------------------
@dataclass
class Samples:
    """Per-outer-step samples of one run (lists of arrays; saved as npz)."""

    step: list = field(default_factory=list)
    positions_A: list = field(default_factory=list)
    velocities_A_per_fs: list = field(default_factory=list)
    forces_fast: list = field(default_factory=list)
    forces_slow: list = field(default_factory=list)
    conserved_eV: list = field(default_factory=list)
    temperature_K: list = field(default_factory=list)

    def add(self, engine) -> None:
        s = engine.state
        self.step.append(engine.step)
        self.positions_A.append(s.positions.cpu().numpy().astype(np.float32))
        velocities = (s.momenta / s.masses).cpu().numpy() * units.fs
        self.velocities_A_per_fs.append(velocities.astype(np.float32))
        self.forces_fast.append(s.forces_fast.cpu().numpy().astype(np.float32))
        self.forces_slow.append(np.asarray(_numpy(s.forces_slow), dtype=np.float32))
        self.conserved_eV.append(engine.conserved_eV(s))
        self.temperature_K.append(engine.temperature_K(s))

    def array(self, name) -> np.ndarray:
        return np.asarray(getattr(self, name))

    def save(self, path) -> None:
        arrays = {name: self.array(name) for name in self.__dataclass_fields__}
        atomic_write(path, lambda tmp: _savez(tmp, arrays))

    @classmethod
    def load(cls, path, up_to_step: int) -> "Samples":
        out = cls()
        if not Path(path).is_file():
            return out
        with np.load(path) as z:
            keep = z["step"] <= up_to_step
            for name in cls.__dataclass_fields__:
                setattr(out, name, list(z[name][keep]))
        return out


def _numpy(x):
    return x.cpu().numpy() if hasattr(x, "cpu") else np.asarray(x)


def _savez(tmp, arrays) -> None:
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)


# ---- engines ----------------------------------------------------------------
def make_engine(models, atoms, run: RunSpec, cfg: CompareSettings, out_dir, thermostat, seed, friction_per_fs=None):
    """An Engine that never writes on its own (compare saves samples and restarts
    together at block ends, so nothing is half-written after an interruption).
    `friction_per_fs` overrides cfg.friction_per_fs."""
    from .md.engine import Engine, RunSettings, providers_for

    friction_per_fs = cfg.friction_per_fs if friction_per_fs is None else friction_per_fs

    settings = RunSettings(timestep_fs=cfg.timestep_fs, n_inner=run.n_inner, thermostat=thermostat,
                           temperature_K=cfg.temperature_K if thermostat else None,
                           friction_per_fs=friction_per_fs if thermostat else None, baseline=run.baseline)
    fast, slow = providers_for(models, atoms, run.baseline, skin_A=cfg.skin_A)
    return Engine(atoms, fast, slow, settings, out_dir, seed=seed, traj_every=10**12)


def equilibrated_start(models, atoms, cfg: CompareSettings, out: Path, progress=True) -> Atoms:
    """Langevin with the baseline model for equilibrate_ps; cached in OUT/start.extxyz."""
    from .md.engine import initialise_momenta

    path = out / "start.extxyz"
    if path.is_file():
        return ase.io.read(path)
    initialise_momenta(atoms, cfg.temperature_K, cfg.seed)
    run = RunSpec(1, baseline=True)
    steps = cfg.steps_for(run, cfg.equilibrate_ps) if cfg.equilibrate_ps > 0 else 0
    if steps:
        eq = make_engine(models, atoms, run, cfg, out / "equilibration", "langevin", cfg.seed,
                         friction_per_fs=cfg.equilibrate_friction_per_fs)
        _say(f"equilibrating {cfg.equilibrate_ps} ps with the baseline model "
             f"(Langevin, {cfg.temperature_K} K, friction {cfg.equilibrate_friction_per_fs}/fs)")
        eq.run(steps, progress=progress)
        atoms = eq.frame(eq.state)
    atomic_write(path, lambda tmp: ase.io.write(tmp, atoms, format="extxyz"))
    return ase.io.read(path)


# ---- production: interleaved, timed, resumable ------------------------------
class Production:
    """The NVT runs of the comparison, advanced block by block, alternating."""

    def __init__(self, models, start: Atoms, cfg: CompareSettings, out: Path, progress: dict):
        self.cfg, self.out, self.progress = cfg, out, progress
        self.engines, self.samples = {}, {}
        for i, run in enumerate(cfg.runs):
            self.engines[run.label] = self._engine(models, start, run, i)

    def _engine(self, models, start, run, i):
        run_dir = self.out / "runs" / run.label
        engine = make_engine(models, start, run, self.cfg, run_dir, self.cfg.thermostat, self.cfg.seed + 1 + i)
        done = self.progress.setdefault(run.label, {"steps": 0, "wall_s": 0.0})
        if done["steps"] > 0:
            engine.resume()
        self.samples[run.label] = Samples.load(run_dir / "samples.npz", engine.step)
        if not self.samples[run.label].step:
            self.samples[run.label].add(engine)
        return engine

    def remaining(self, run: RunSpec) -> int:
        return self.cfg.steps_for(run, self.cfg.ps) - self.engines[run.label].step

    def run(self, bar) -> None:
        while any(self.remaining(r) > 0 for r in self.cfg.runs):
            for run in self.cfg.runs:
                steps = min(self.cfg.block_steps(run), self.remaining(run))
                if steps > 0:
                    self.advance(run, steps)
                    bar.update(min(steps * self.cfg.outer_fs(run) / 1000.0, bar.total - bar.n))  # no float overshoot

    def advance(self, run: RunSpec, steps: int) -> None:
        engine, samples = self.engines[run.label], self.samples[run.label]
        wall_s = 0.0
        for _ in range(steps):
            clock = time.perf_counter()
            engine.run(1, progress=False, write_last=False)
            wall_s += time.perf_counter() - clock
            samples.add(engine)
        samples.save(engine.out_dir / "samples.npz")
        engine.write_restart(engine.state)
        done = self.progress[run.label]
        done.update(steps=engine.step, wall_s=done["wall_s"] + wall_s)
        atomic_write_json(self.out / STATE_FILE, self.progress)


def ns_per_day(simulated_ps: float, wall_s: float) -> float:
    return simulated_ps * 1e-3 / max(wall_s, 1e-12) * 86400.0


# ---- NVE drift and the force spectra ----------------------------------------
def nve_trace(models, engine, run: RunSpec, cfg: CompareSettings) -> tuple[np.ndarray, np.ndarray]:
    """Continue `engine`'s final state in NVE for nve_ps; (time_ps, conserved_eV)."""
    atoms = engine.frame(engine.state)
    nve = make_engine(models, atoms, run, cfg, engine.out_dir / "nve", None, cfg.seed)
    samples = Samples()
    samples.add(nve)
    for _ in range(cfg.steps_for(run, cfg.nve_ps)):
        nve.run(1, progress=False, write_last=False)
        samples.add(nve)
    time_ps = samples.array("step") * cfg.outer_fs(run) / 1000.0
    return time_ps, samples.array("conserved_eV")


def force_series(models, start: Atoms, cfg: CompareSettings, out: Path) -> Samples:
    """Fast and slow forces every δt along an n = 1 run of the pair (velocity
    Verlet on fast + slow), so spectra reach far above any outer Nyquist frequency."""
    run = RunSpec(1)
    engine = make_engine(models, start.copy(), run, cfg, out / "runs" / "spectrum", cfg.thermostat, cfg.seed)
    samples = Samples()
    samples.add(engine)
    for _ in range(cfg.steps_for(run, cfg.spectrum_ps)):
        engine.run(1, progress=False, write_last=False)
        samples.add(engine)
    return samples


def _say(message: str) -> None:
    print(f"mtsmlip compare: {message}", file=sys.stderr, flush=True)


def compare(model_dir, structure_path, cfg: CompareSettings, out, progress_bar=True) -> dict:
    """Run the whole comparison; returns exactly what it wrote to OUT/compare.json."""
    from tqdm import tqdm

    from . import load
    from .compare_report import analyse, write_report

    cfg.check()
    out = check_output_dir(out)
    models = load(resolve_model_dir(model_dir))
    structure = read_structure(structure_path)
    out.mkdir(parents=True, exist_ok=True)
    _check_same_settings(out, cfg, models, structure_path)
    start = equilibrated_start(models, structure, cfg, out, progress_bar)
    state = _load_json(out / STATE_FILE)
    production = Production(models, start, cfg, out, state)
    total_ps = cfg.ps * len(cfg.runs)
    done_ps = sum(production.engines[r.label].step * cfg.outer_fs(r) / 1000 for r in cfg.runs)
    with tqdm(total=total_ps, initial=done_ps, unit="ps", disable=not progress_bar,
              bar_format="{l_bar}{bar}| {n:.3f}/{total:.3f} simulated ps [{elapsed}<{remaining}]") as bar:
        production.run(bar)
    _say("NVE segments for the energy drift")
    drift = {r.label: nve_trace(models, production.engines[r.label], r, cfg) for r in cfg.runs}
    _say("force spectra (n = 1 segment of the pair)")
    forces = force_series(models, start, cfg, out) if cfg.spectrum_ps > 0 else None
    write_report(analyse(production, drift, forces, cfg, start), production, drift, forces, cfg, out)
    return read_json(out / "compare.json", "comparison result")


def _load_json(path) -> dict:
    return read_json(path, "compare progress") if Path(path).is_file() else {}


def _check_same_settings(out: Path, cfg: CompareSettings, models, structure_path) -> None:
    """A resumed compare must be the same comparison (settings, model files by
    content, starting structure by content); refuse to mix two, naming what differs."""
    wanted = {"settings": asdict(cfg), "model": str(models.directory.resolve()),
              "model_sha256": models.model_hashes(), "structure": fingerprint(structure_path)}
    wanted["settings"]["n_inner"] = list(cfg.n_inner)
    path = out / "settings.json"
    if path.is_file():
        had = read_json(path, "comparison settings")
        changed = sorted(k for k in wanted if k != "model" and had.get(k) != wanted[k])
        if changed:
            raise DataError(f"{path}: OUT holds a comparison with other {', '.join(changed)}; "
                            "use the same options and files, or another --out")
        return
    atomic_write_json(path, wanted)


# ---- command line -------------------------------------------------------------
def settings_from_args(args) -> CompareSettings:
    return CompareSettings(ps=args.ps, timestep_fs=args.timestep_fs, n_inner=tuple(args.n_inner),
                           temperature_K=args.temperature_K, thermostat=args.thermostat,
                           friction_per_fs=args.friction_per_fs, equilibrate_ps=args.equilibrate_ps,
                           equilibrate_friction_per_fs=args.equilibrate_friction_per_fs, nve_ps=args.nve_ps,
                           spectrum_ps=args.spectrum_ps, block_fs=args.block_fs,
                           seed=args.seed)


def run(args) -> int:
    from .compare_report import format_table
    from .md.engine import MDInstability

    try:
        result = compare(args.model, args.structure, settings_from_args(args), args.out,
                         progress_bar=not args.no_progress)
    except MDInstability as exc:
        print(f"mtsmlip compare: unstable: {exc}", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_table(result))
        print(f"report: {Path(args.out) / 'report.md'}")
    return 0
