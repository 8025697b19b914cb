"""Compare MTS MD with conventional MD side by side: speed, observables, drift.

One equilibrated start (baseline model, Langevin); then the baseline (velocity
Verlet at δt with the baseline model) and r-RESPA at each n run under the same
thermostat, advanced in short alternating blocks so that a noisy machine slows
all of them alike. Each run then continues in NVE for its energy drift; a short
n = 1 segment of the pair samples fast and slow forces every δt for the
scale-separation analysis. OUT/ gets compare.json, report.md and PNG plots;
an interrupted compare resumes where it stopped (finished blocks are kept).

An MTS run that blows up (the safety check's MDInstability) fails its n, in
its production, its NVE segment or the --n-inner auto probe alike, and the
comparison goes on; a force-spectrum segment that blows up leaves the report
without spectra, saying why. Each failure is saved where the segment's result
would be (nve_unstable.json, force_series_unstable.json, n_inner_auto.json),
so a rerun re-analyses it. Only an unstable baseline (equilibration,
production or NVE) ends the comparison: there is nothing to compare against.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms, units

from .data import read_structure
from .errors import DataError
from . import forces
from .md.engine import Engine, initialise_momenta
from .md.masses import repartitioned_masses
from .md.outputs import restore, write_restart
from .md.safety import MDInstability
from .md.settings import RunSettings
from .progress import progress_bar
from .files import atomic_write, atomic_write_json, check_output_dir, fingerprint, output_lock, read_json, run_files_in
from .shipped import resolve_model_dir
from .system import check_kind

STATE_FILE = "progress.json"
NVE_UNSTABLE_FILE = "nve_unstable.json"  # in a run's folder, in nve.npz's place: why its NVE segment stopped
FORCES_UNSTABLE_FILE = "force_series_unstable.json"  # in force_series.npz's place
SYSTEM_KINDS = ("auto", "liquid", "crystal", "molecule")


@dataclass(frozen=True)
class CompareSettings:
    """What is compared and for how long. Times in ps/fs, temperature in K."""

    ps: float
    timestep_fs: float = 0.5
    n_inner: tuple = (2, 3, 4, 6)
    temperature_K: float = 300.0
    thermostat: str = "auto"  # resolved from the structure by for_structure: bussi, or langevin for molecules
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
    tau_fs: float | None = None
    device: str = "cpu"
    hmr_amu: float = 0.0
    system: str = "auto"
    species_friction_per_fs: tuple = ()  # ((symbol, 1/fs), ...): Langevin only
    probe_fs: float = 200.0  # --n-inner auto: each NVE segment of the probe

    def check(self) -> None:
        if self.ps <= 0 or self.timestep_fs <= 0:
            raise DataError(f"--ps and --timestep-fs must be positive (got {self.ps}, {self.timestep_fs})")
        numbers = [n for n in self.n_inner if n != "auto"]
        if not self.n_inner or any(not isinstance(n, int) for n in numbers) or (numbers and min(numbers) < 1):
            raise DataError(f"--n-inner needs integers >= 1 or 'auto' (got {list(self.n_inner)})")
        if min(self.equilibrate_ps, self.nve_ps, self.spectrum_ps) < 0:
            raise DataError("--equilibrate-ps, --nve-ps and --spectrum-ps must be >= 0")
        if self.system not in SYSTEM_KINDS:
            raise DataError(f"--system must be one of {SYSTEM_KINDS} (got {self.system!r})")
        if not self.equilibrate_friction_per_fs > 0:
            raise DataError(f"--equilibrate-friction-per-fs must be positive (got {self.equilibrate_friction_per_fs})")

    def for_structure(self, atoms: Atoms) -> "CompareSettings":
        """These settings with thermostat 'auto' resolved for `atoms`: Bussi for a
        periodic system; Langevin for an isolated molecule (under Bussi's global
        rescaling a 9-atom ethanol's hydrogens stayed at 172 K over 2 ps while the
        molecule averaged 249 K: its few modes share energy too slowly). A rate
        given for the other thermostat is an error."""
        from .arguments import check_rates
        from .system import is_periodic

        kind = self.thermostat
        if kind == "auto":
            kind = "bussi" if is_periodic(atoms) else "langevin"
        check_rates(kind, self.friction_per_fs, self.tau_fs, self.species_friction_per_fs)
        return replace(self, thermostat=kind)

    def with_auto(self, n_auto: int) -> "CompareSettings":
        """These settings with 'auto' in n_inner replaced by the probe's choice."""
        return replace(self, n_inner=tuple(sorted({n_auto if n == "auto" else n for n in self.n_inner})))

    def run(self, n_inner: int = 1, baseline: bool = False, thermostat="production") -> RunSettings:
        """The settings of one run: the production thermostat, another kind, or NVE (None)."""
        kind = self.thermostat if thermostat == "production" else thermostat
        rates = {"friction_per_fs": self.friction_per_fs, "species_friction_per_fs": self.species_friction_per_fs} \
            if kind == "langevin" else {"tau_fs": self.tau_fs}
        return RunSettings(self.timestep_fs, n_inner, kind, self.temperature_K if kind else None,
                           baseline=baseline, hmr_amu=self.hmr_amu, **(rates if kind else {}))

    @property
    def runs(self) -> list[RunSettings]:
        return [self.run(1, baseline=True)] + [self.run(n) for n in sorted(set(self.n_inner))]

    def block_steps(self, run: RunSettings) -> int:
        """Outer steps per interleaved block: the same simulated time for every run."""
        common_fs = math.lcm(*(r.n_inner for r in self.runs)) * self.timestep_fs
        block_fs = self.block_fs or common_fs * max(1, math.ceil(20.0 / common_fs))
        return max(1, round(block_fs / run.outer_fs))


# ---- samples along a run ----------------------------------------------------
@dataclass
class Samples:
    """Per-outer-step samples of one run, an engine observer (lists of arrays; saved as npz)."""

    step: list = field(default_factory=list)
    positions_A: list = field(default_factory=list)
    velocities_A_per_fs: list = field(default_factory=list)
    forces_fast: list = field(default_factory=list)
    forces_slow: list = field(default_factory=list)
    conserved_eV: list = field(default_factory=list)
    temperature_K: list = field(default_factory=list)
    potential_eV: list = field(default_factory=list)
    kinetic_eV: list = field(default_factory=list)

    def __call__(self, engine) -> None:
        s = engine.state
        self.step.append(engine.step)
        self.positions_A.append(s.positions.cpu().numpy().astype(np.float32))
        velocities = (s.momenta / s.masses).cpu().numpy() * units.fs
        self.velocities_A_per_fs.append(velocities.astype(np.float32))
        self.forces_fast.append(s.forces_fast.cpu().numpy().astype(np.float32))
        self.forces_slow.append(np.asarray(_numpy(s.forces_slow), dtype=np.float32))
        self.conserved_eV.append(engine.conserved_eV(s))
        self.temperature_K.append(engine.temperature_K(s))
        self.potential_eV.append(engine.potential_eV(s))
        self.kinetic_eV.append(engine.kinetic_eV(s))

    def arrays(self) -> dict:
        """{field: array}: the plain record the report reads (a field that
        samples saved by an older version lack is left out)."""
        return {name: np.asarray(getattr(self, name)) for name in self.__dataclass_fields__
                if len(getattr(self, name)) == len(self.step)}

    def save(self, path) -> None:
        arrays = self.arrays()
        atomic_write(path, lambda tmp: _savez(tmp, arrays))

    @classmethod
    def load(cls, path, up_to_step: int) -> "Samples":
        out = cls()
        if not Path(path).is_file():
            return out
        with np.load(path, allow_pickle=False) as z:
            keep = z["step"] <= up_to_step
            for name in cls.__dataclass_fields__:
                if name in z.files:
                    setattr(out, name, list(z[name][keep]))
        return out


def _numpy(x):
    return x.cpu().numpy() if hasattr(x, "cpu") else np.asarray(x)


def _savez(tmp, arrays) -> None:
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)


@dataclass(frozen=True)
class RunRecord:
    """What one run of the comparison produced, as plain data: its settings, the
    samples of its NVT production, its wall time, and its NVE continuation."""

    settings: RunSettings
    samples: dict
    wall_s: float
    nve_time_ps: np.ndarray
    nve_conserved_eV: np.ndarray
    nve_kinetic_eV: np.ndarray | None  # None for a trace saved before compare recorded it
    unstable: str | None = None  # why an MTS run stopped (its result: it fails), else None
    unstable_in: str = "production"  # the segment it stopped in: "production" or "nve"

    @property
    def simulated_ps(self) -> float:
        return self.settings.simulated_ps(int(self.samples["step"][-1]))


@dataclass(frozen=True)
class Records:
    """Everything the report needs: the structure, the compare settings, one
    RunRecord per run (baseline first) and the force series of the pair, or None
    ({"unstable": why} when the force-spectrum segment blew up)."""

    template: Atoms
    settings: CompareSettings
    runs: list
    forces: dict | None
    probe: dict | None = None  # what --n-inner auto measured and chose (mtsmlip.probe)


# ---- engines ----------------------------------------------------------------
def make_engine(models, atoms, run: RunSettings, cfg: CompareSettings, seed: int) -> Engine:
    """An Engine that writes nothing by itself: compare attaches its sampler and
    saves samples and restarts together at block ends."""
    fast, slow = forces.md_providers(models, atoms, run.baseline, skin_A=cfg.skin_A, device=cfg.device)
    return Engine(atoms, fast, slow, run, seed=seed, device=cfg.device)


def equilibrated_start(models, atoms, cfg: CompareSettings, out: Path, progress=True) -> Atoms:
    """Langevin with the baseline model for equilibrate_ps; cached in OUT/start.extxyz."""
    path = out / "start.extxyz"
    if path.is_file():
        return ase.io.read(path)
    initialise_momenta(atoms, cfg.temperature_K, cfg.seed)
    run = replace(cfg.run(1, baseline=True, thermostat="langevin"), friction_per_fs=cfg.equilibrate_friction_per_fs,
                  species_friction_per_fs=())
    if cfg.equilibrate_ps > 0:
        eq = make_engine(models, atoms, run, cfg, cfg.seed)
        _say(f"equilibrating {cfg.equilibrate_ps} ps with the baseline model "
             f"(Langevin, {cfg.temperature_K} K, friction {cfg.equilibrate_friction_per_fs}/fs)")
        try:
            eq.run(run.steps_for(cfg.equilibrate_ps), progress=progress)
        except MDInstability as exc:
            raise MDInstability(f"the equilibration with the baseline model stopped: {exc}; "
                                "nothing to compare against") from None
        atoms = eq.atoms()
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
        engine = make_engine(models, start, run, self.cfg, self.cfg.seed + 1 + i)
        done = self.progress.setdefault(run.label, {"steps": 0, "wall_s": 0.0})
        if done["steps"] > 0:
            restore(engine, run_dir / "restart.npz")
        up_to = done["steps"] if done.get("unstable") else engine.step
        self.samples[run.label] = Samples.load(run_dir / "samples.npz", up_to)
        engine.attach(self.samples[run.label])
        return engine

    def remaining(self, run: RunSettings) -> int:
        if self.unstable(run):
            return 0
        return run.steps_for(self.cfg.ps) - self.engines[run.label].step

    def unstable(self, run: RunSettings) -> str | None:
        """Why the run stopped early (the safety check's message), or None."""
        return self.progress[run.label].get("unstable")

    def run(self, bar) -> None:
        while any(self.remaining(r) > 0 for r in self.cfg.runs):
            for run in self.cfg.runs:
                steps = min(self.cfg.block_steps(run), self.remaining(run))
                if steps > 0:
                    self.advance(run, steps)
                    bar.update(min(run.simulated_ps(steps), bar.total - bar.n))  # no float overshoot

    def advance(self, run: RunSettings, steps: int) -> None:
        engine, run_dir = self.engines[run.label], self.out / "runs" / run.label
        clock = time.perf_counter()
        try:
            engine.run(steps, progress=False)
        except MDInstability as exc:
            if run.baseline:  # nothing to compare against
                raise MDInstability(f"the baseline run stopped: {exc}; nothing to compare against") from None
            # an MTS run that blows up is that n's result: record it, keep the others going
            _say(f"{run.label} stopped: {exc}; it fails, the other runs go on")
            self.progress[run.label]["unstable"] = str(exc)
        wall_s = time.perf_counter() - clock
        samples, done = self.samples[run.label], self.progress[run.label]
        samples.save(run_dir / "samples.npz")
        if self.unstable(run):  # no restart of a broken state: the samples end at the last good one
            done.update(steps=int(samples.step[-1]), wall_s=done["wall_s"] + wall_s)
        else:
            write_restart(engine, run_dir / "restart.npz")
            done.update(steps=engine.step, wall_s=done["wall_s"] + wall_s)
        atomic_write_json(self.out / STATE_FILE, self.progress)

    def record(self, run: RunSettings, nve: tuple) -> RunRecord:
        return RunRecord(run, self.samples[run.label].arrays(), self.progress[run.label]["wall_s"], *nve,
                         unstable=self.unstable(run))


# ---- NVE drift and the force spectra ----------------------------------------
def nve_trace(models, engine, cfg: CompareSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Continue `engine`'s final state in NVE for nve_ps; (time_ps, conserved_eV, kinetic_eV)."""
    run = engine.settings.nve()
    nve = make_engine(models, engine.atoms(), run, cfg, cfg.seed)
    samples = Samples()
    nve.attach(samples)
    nve.run(run.steps_for(cfg.nve_ps), progress=False)
    arrays = samples.arrays()
    return run.simulated_ps(1) * arrays["step"], arrays["conserved_eV"], arrays["kinetic_eV"]


def saved_arrays(path: Path, compute, what: str) -> dict:
    """The arrays in `path` if an earlier run of this comparison saved them, else
    ``compute()`` (said as `what`), saved atomically: everything after the MD is
    then a pure re-analysis of what was saved."""
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return {name: z[name] for name in z.files}
    _say(what)
    arrays = compute()
    atomic_write(path, lambda tmp: _savez(tmp, arrays))
    return arrays


def saved_nve_trace(models, engine, cfg: CompareSettings, run_dir: Path) -> tuple:
    """:func:`nve_trace`, saved in the run's folder (nve.npz) and reused; the
    kinetic energy is None in a trace saved before compare recorded it. A
    segment that blows up raises MDInstability, saved (nve_unstable.json in
    nve.npz's place) and raised again when reused."""
    failed = run_dir / NVE_UNSTABLE_FILE
    if failed.is_file() and not (run_dir / "nve.npz").is_file():
        raise MDInstability(read_json(failed, "NVE segment failure")["unstable"])
    try:
        arrays = saved_arrays(run_dir / "nve.npz", lambda: dict(zip(("time_ps", "conserved_eV", "kinetic_eV"),
                                                                     nve_trace(models, engine, cfg))),
                              f"NVE segment of {run_dir.name} for the energy drift and fluctuation")
    except MDInstability as exc:
        atomic_write_json(failed, {"unstable": str(exc)})
        raise
    return arrays["time_ps"], arrays["conserved_eV"], arrays.get("kinetic_eV")


def run_record(models, production: Production, run: RunSettings, cfg: CompareSettings, out: Path) -> RunRecord:
    """One run's record: its production and its NVE segment. An MTS run that
    blew up in either fails its n (``unstable``, and the segment in
    ``unstable_in``); a baseline that blows up in NVE ends the comparison."""
    no_trace = (np.zeros(0), np.zeros(0), None)
    if production.unstable(run):
        return production.record(run, no_trace)
    run_dir = out / "runs" / run.label
    fresh = not (run_dir / NVE_UNSTABLE_FILE).is_file()
    try:
        return production.record(run, saved_nve_trace(models, production.engines[run.label], cfg, run_dir))
    except MDInstability as exc:
        if run.baseline:
            raise MDInstability(f"the baseline's NVE segment stopped: {exc}; nothing to compare against") from None
        if fresh:
            _say(f"{run.label} stopped in its NVE segment: {exc}; it fails, the other runs go on")
        return replace(production.record(run, no_trace), unstable=str(exc), unstable_in="nve")


def saved_force_series(models, start: Atoms, cfg: CompareSettings, out: Path) -> dict | None:
    """:func:`force_series`, saved in OUT/force_series.npz and reused; None
    without a spectrum segment. A segment that blows up gives {"unstable": why},
    saved (force_series_unstable.json) and reused: the report then has no
    spectra and says why, and every run is judged as before."""
    if not cfg.spectrum_ps > 0:
        return None
    failed = out / FORCES_UNSTABLE_FILE
    if failed.is_file() and not (out / "force_series.npz").is_file():
        return {"unstable": read_json(failed, "force-spectrum segment failure")["unstable"]}
    try:
        return saved_arrays(out / "force_series.npz", lambda: force_series(models, start, cfg),
                            "force spectra (n = 1 segment of the pair)")
    except MDInstability as exc:
        _say(f"the force-spectrum segment (the pair at n = 1) stopped: {exc}; the report goes on without spectra")
        atomic_write_json(failed, {"unstable": str(exc)})
        return {"unstable": str(exc)}


def force_series(models, start: Atoms, cfg: CompareSettings) -> dict:
    """Fast and slow forces every δt along an n = 1 run of the pair (velocity
    Verlet on fast + slow), so spectra reach far above any outer Nyquist frequency."""
    run = cfg.run(1)
    engine = make_engine(models, start.copy(), run, cfg, cfg.seed)
    samples = Samples()
    engine.attach(samples)
    engine.run(run.steps_for(cfg.spectrum_ps), progress=False)
    return samples.arrays()


def _say(message: str) -> None:
    print(f"mtsmlip compare: {message}", file=sys.stderr, flush=True)


def compare(model_dir, structure_path, cfg: CompareSettings, out, progress_bar=True, teacher=None) -> dict:
    """Run the whole comparison; returns exactly what it wrote to OUT/compare.json."""
    return compare_with_records(model_dir, structure_path, cfg, out, progress_bar, teacher)[0]


def compare_with_records(model_dir, structure_path, cfg: CompareSettings, out, progress_bar=True,
                         teacher=None) -> tuple[dict, Records]:
    """:func:`compare`, also returning the Records its report was made from."""
    from .models import TrainedModels
    from .compare_report import analyse, write_report

    cfg.check()
    out = check_output_dir(out)
    models = TrainedModels.load(resolve_model_dir(model_dir), teacher=teacher)
    structure = read_structure(structure_path)
    check_kind(structure, structure_path)
    check_system_option(structure, cfg.system, structure_path)
    cfg = cfg.for_structure(structure)
    check_fits_in_memory(cfg, len(structure))
    with output_lock(out, "compare"):
        _check_same_settings(out, cfg, models, structure_path)
        start = equilibrated_start(models, structure, cfg, out, progress_bar)
        probe = saved_probe(models, start, cfg, out) if "auto" in cfg.n_inner else None
        if probe is not None:
            cfg = cfg.with_auto(probe.n_inner)
        production = run_production(models, start, cfg, out, progress_bar)
        runs = [run_record(models, production, r, cfg, out) for r in cfg.runs]
        forces = saved_force_series(models, start, cfg, out)
        template = Atoms(numbers=start.numbers, cell=start.cell, pbc=start.pbc)
        template.set_masses(repartitioned_masses(start, cfg.hmr_amu))  # the masses every run used
        records = Records(template, cfg, runs, forces, None if probe is None else probe.as_dict())
        write_report(analyse(records), records, out)
        return read_json(out / "compare.json", "comparison result"), records


SAMPLE_BYTES_PER_ATOM = 4 * 3 * 4  # positions, velocities, fast and slow forces: 3 float32 each (Samples)


def check_fits_in_memory(cfg: CompareSettings, n_atoms: int) -> None:
    """Every run keeps a sample per outer step in memory until the report: refuse
    a --ps that would not fit, before any work (mtsmlip.limits)."""
    from .limits import check_kept_samples

    auto = ("auto",) if "auto" in cfg.n_inner else ()
    runs = cfg.with_auto(1).runs if auto else cfg.runs
    samples = sum(run.steps_for(cfg.ps) + run.steps_for(cfg.nve_ps) + 2 for run in runs)
    samples += cfg.run(1).steps_for(cfg.spectrum_ps) + 1  # the force series of the n = 1 segment
    check_kept_samples(samples, n_atoms, SAMPLE_BYTES_PER_ATOM,
                       f"--ps {cfg.ps:g}, --nve-ps {cfg.nve_ps:g} and --spectrum-ps {cfg.spectrum_ps:g} with {len(runs)} runs")


def saved_probe(models, start: Atoms, cfg: CompareSettings, out: Path):
    """The probe's choice for --n-inner auto (:mod:`mtsmlip.probe`) from the
    equilibrated start, saved in OUT/n_inner_auto.json and reused on resume.
    A pair that blows up in the probe fails the probe at that n, n = 1 included
    (auto then adds n = 1, which the comparison judges): the comparison goes on."""
    from . import probe

    return probe.saved_probe(out / "n_inner_auto.json", lambda atoms, run: make_engine(models, atoms, run, cfg, cfg.seed),
                             start, cfg.run(1), probe.ProbeSettings(nve_fs=cfg.probe_fs), say=_say,
                             unstable_reference_fails=True)


def check_system_option(atoms: Atoms, system: str, path) -> None:
    """--system molecule needs an isolated structure; liquid and crystal a periodic one."""
    from .system import is_periodic

    periodic = is_periodic(atoms)
    if (system == "molecule" and periodic) or (system in ("liquid", "crystal") and not periodic):
        raise DataError(f"{path}, field 'pbc': --system {system} needs "
                        f"{'an isolated structure (pbc all False)' if system == 'molecule' else 'a periodic cell'}, "
                        f"but pbc={atoms.pbc.tolist()}")


def run_production(models, start, cfg: CompareSettings, out: Path, progress_bar: bool) -> Production:
    production = Production(models, start, cfg, out, _load_json(out / STATE_FILE))
    done_ps = sum(r.simulated_ps(production.engines[r.label].step) for r in cfg.runs)
    with progress_bar_for(cfg.ps * len(cfg.runs), done_ps, progress_bar) as bar:
        production.run(bar)
    return production


@contextlib.contextmanager
def progress_bar_for(total_ps: float, done_ps: float, enabled: bool):
    bar = progress_bar(total_ps, "simulated ps", enabled=enabled, initial=done_ps, fmt="{:.3f}",
                       bar_format="{l_bar}{bar}| {n:.3f}/{total:.3f} simulated ps [{elapsed}<{remaining}]")
    try:
        yield bar
    finally:
        bar.close()


def _load_json(path) -> dict:
    return read_json(path, "compare progress") if Path(path).is_file() else {}


ANALYSIS_ONLY = ("system",)  # CompareSettings fields that change the verdicts, not the runs


OWN_INPUTS = ("water_box.extxyz",)  # what `mtsmlip demo` puts in OUT before its comparison starts


def _check_same_settings(out: Path, cfg: CompareSettings, models, structure_path) -> None:
    """A resumed compare must be the same comparison (settings, model files by
    content, starting structure by content); refuse to mix two, naming what differs.
    A finished comparison may be judged again as another kind of system (--system)."""
    wanted = {"settings": asdict(cfg), "model": str(models.directory.resolve()),
              "model_sha256": models.model_hashes(), "structure": fingerprint(structure_path)}
    wanted = json.loads(json.dumps(wanted))  # as settings.json holds it (tuples become lists)
    path = out / "settings.json"
    if path.is_file():
        had = read_json(path, "comparison settings")
        defaults = json.loads(json.dumps(asdict(CompareSettings(ps=cfg.ps))))
        for key in set(wanted["settings"]) - set(had.get("settings", {})):  # added since that run
            if wanted["settings"][key] == defaults[key]:
                del wanted["settings"][key]
        for key in ANALYSIS_ONLY:  # they choose how the runs are judged, not what runs: free to change
            wanted["settings"].pop(key, None)
            had.get("settings", {}).pop(key, None)
        changed = sorted(k for k in wanted if k != "model" and had.get(k) != wanted[k])
        if changed:
            raise DataError(f"{path}: OUT holds a comparison with other {', '.join(changed)}; "
                            "use the same options and files, or another --out")
        return
    strays = [p.name for p in run_files_in(out) if p.name not in OWN_INPUTS]
    if strays:  # not a comparison of ours (no settings.json): its files are neither reused nor overwritten
        raise DataError(f"{out}: --out holds {', '.join(strays[:4])} but no settings.json: not a comparison "
                        "to continue; use an empty or new --out")
    atomic_write_json(path, wanted)


# ---- command line -------------------------------------------------------------
def settings_from_args(args) -> CompareSettings:
    from .arguments import check_thermostat_rates

    check_thermostat_rates(args)
    return CompareSettings(ps=args.ps, timestep_fs=args.timestep_fs, n_inner=tuple(args.n_inner),
                           temperature_K=args.temperature_K, thermostat=args.thermostat,
                           friction_per_fs=args.friction_per_fs, tau_fs=args.tau_fs,
                           equilibrate_ps=args.equilibrate_ps,
                           equilibrate_friction_per_fs=args.equilibrate_friction_per_fs, nve_ps=args.nve_ps,
                           spectrum_ps=args.spectrum_ps, block_fs=args.block_fs, seed=args.seed, device=args.device,
                           hmr_amu=args.hmr_amu, system=args.system,
                           species_friction_per_fs=args.species_friction_per_fs, probe_fs=args.probe_fs)


def run(args) -> int:
    from .compare_report import format_table

    return run_and_print(lambda: compare(args.model, args.structure, settings_from_args(args), args.out,
                                         progress_bar=not args.no_progress, teacher=args.teacher),
                         args, format_table)


def run_and_print(comparison, args, format_table) -> int:
    """Run `comparison()` and print its result (the table, or --json); exit 3 when
    the baseline was unstable (nothing to compare against)."""
    try:
        result = comparison()
    except MDInstability as exc:
        print(f"mtsmlip compare: unstable: {exc}", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_table(result))
        print(f"report: {Path(args.out) / 'report.md'}")
    return 0
