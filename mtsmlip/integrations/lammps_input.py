"""`mtsmlip lammps-input`: a LAMMPS run of a trained pair, ready to start.

The learned split maps onto LAMMPS's r-RESPA: `pair_style hybrid/overlay` with
one sub-style per model, and `run_style respa 2 n hybrid 1 2`, which puts the
fast model (sub-style 1) on the inner level and the slow one (sub-style 2) on
the outer level. LAMMPS's `timestep` is the outer step. The pair styles come
from nequip's `pair_nequip_allegro`, built as a plugin by `mtsmlip lammps-build`:
`allegro` for Allegro models (strictly local: any number of MPI ranks),
`nequip` for NequIP models (message passing: one rank).

A distilled pair (`mtsmlip distill`) has no slow model of its own: its slow
force is teacher - fast. It is written as `pair_style hybrid/scaled 1 FAST 1
TEACHER -1 FAST` with `run_style respa 2 n hybrid 1 2 2`: the fast model on the
inner level, the teacher and the fast model subtracted again on the outer
level (one more fast call per outer step than mtsmlip's engine makes, which
reuses the inner level's). The teacher must be a nequip model: a model
directory's baseline, or a nequip model file given again with --teacher
(compiled for pair_nequip, one rank). An ASE-calculator teacher cannot run in
LAMMPS and is refused.

Each part is compiled for its pair style with `nequip-compile` (AOTInductor,
`.nequip.pt2`) on this machine: a compiled model is tied to the CPU's
instruction set and the torch build. Compiled files are kept in a cache keyed by
the model file's hash, the pair style, torch, nequip and the CPU, and reused.

The output directory holds `structure.data` (positions, masses and the starting
velocities, drawn as `mtsmlip md` draws them), `in.mts` and `in.baseline` (the
conventional run: the baseline with velocity Verlet at the inner step), the
compiled models, `run.sh` and `lammps.json` (what was written and from what).

Thermostats under r-RESPA. LAMMPS applies `fix langevin`'s friction and noise
at the outermost level only, once per outer step: a kick every nδt, which
couples to motions near the outer step's period (resonance) and damps them
unevenly. `--thermostat bussi` writes `fix temp/csvr` instead (stochastic
velocity rescaling, Bussi et al. 2007), which rescales all velocities once per
outer step, acts on the kinetic energy as a whole and leaves the dynamics
between rescalings Hamiltonian: the choice for dynamical observables.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import shlex
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..files import atomic_write, atomic_write_json, sha256_of

# nequip builders -> the LAMMPS pair style (and nequip-compile --target) that runs them
PAIR_STYLES = {
    "allegro.model.AllegroModel": "allegro",
    "nequip.model.NequIPGNNModel": "nequip",
    "nequip.model.FullNequIPGNNModel": "nequip",
    "nequip.model.PresetNequIPGNNModel": "nequip",
}
MD_INPUTS = ("in.mts", "in.baseline", "run.sh", "structure.data", "lammps.json")
RUN_OUTPUTS = ("restart.mts.*", "restart.baseline.*", "trajectory.*.dump", "log.*.lammps")  # what run.sh leaves


def previous_run_files(out: Path) -> list[Path]:
    """Inputs and outputs of an earlier run in `out`: a new input must not resume
    from the old run's restart file or append to its trajectory."""
    found = [out / name for name in MD_INPUTS if (out / name).exists()]
    for pattern in RUN_OUTPUTS:
        found += sorted(out.glob(pattern))
    return found


@dataclass(frozen=True)
class LammpsRun:
    """What one LAMMPS input integrates. `steps`: outer steps (inner steps for the
    baseline input, which uses the inner time step: the same simulated time is
    `steps * n_inner` of them). `thermostat`: None (NVE), "langevin" or "bussi"."""

    n_inner: int
    timestep_fs: float
    steps: int
    temperature_K: float | None = None
    thermostat: str | None = None
    friction_per_fs: float = 0.01
    tau_fs: float = 100.0
    seed: int = 1
    stride: int = 10

    def check(self) -> None:
        if self.thermostat is not None and self.temperature_K is None:
            raise DataError(f"--thermostat {self.thermostat} needs --temperature-K")
        if self.thermostat not in (None, "langevin", "bussi"):
            raise DataError(f"--thermostat {self.thermostat}: use langevin or bussi (or leave it out for NVE)")
        if not 1 <= self.seed < 900_000_000:  # LAMMPS's random seeds are positive ints below 9e8
            raise DataError(f"--seed {self.seed}: LAMMPS needs a seed from 1 to 899999999")


def pair_style_of(model, where: str) -> str:
    target = model.config.get("_target_")
    if target not in PAIR_STYLES:
        raise DataError(f"{where}: model builder {target!r} has no LAMMPS pair style (have: {sorted(PAIR_STYLES)})")
    return PAIR_STYLES[target]


def cpu_signature() -> str:
    """What a compiled model is tied to on this machine: the CPU's model and flags."""
    text = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags")):
                text += line
                if line.startswith("flags"):
                    break
    except OSError:
        text += platform.processor()
    return text


def compile_key(model_sha: str, style: str, device: str) -> str:
    import allegro
    import nequip
    import torch

    from .._version import __version__

    text = json.dumps([model_sha, style, device, torch.__version__, nequip.__version__, allegro.__version__,
                       __version__, "aotinductor", cpu_signature()])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def compiled_cache_dir() -> Path:
    from .lammps_build import cache_root

    return cache_root() / "compiled"


@dataclass
class CompileJob:
    """One model to compile for one pair style: `package(dir)` writes its nequip
    package into a directory and returns its path; `sha` is the model file's
    SHA-256 (the cache is by content); `label` and `where` name it in messages."""

    package: object
    sha: str
    style: str
    device: str
    label: str
    where: str

    @functools.cached_property
    def cached(self) -> Path:
        return compiled_cache_dir() / f"{compile_key(self.sha, self.style, self.device)}.nequip.pt2"


def part_job(models, part: str, structure, device: str = "cpu") -> CompileJob:
    """The compile job of one part of `models` (a TrainedModels) for its pair style."""
    from .nequip_package import write_package

    model = models.models[part]
    model_file = models.directory / f"{part}.pt"

    def package(tmp: Path) -> Path:
        path = tmp / f"{part}.nequip.zip"
        write_package(model, path, f"{models.directory} ({part})", structure)
        return path

    return CompileJob(package, sha256_of(model_file), pair_style_of(model, str(model_file)), device, part,
                      str(model_file))


def teacher_job(spec: str, device: str = "cpu") -> CompileJob:
    """The compile job of a nequip model file given as a distilled pair's
    --teacher (.nequip.zip or .ckpt, which nequip-compile takes as they are),
    for pair_nequip, which runs any nequip model, Allegro included, on one MPI
    rank: the file does not say which it is without loading it."""
    return CompileJob(lambda tmp: Path(spec), sha256_of(spec), "nequip", device, "teacher", spec)


def compile_all(jobs: list[CompileJob], say=print) -> list[Path]:
    """The cached ``.nequip.pt2`` of each job, compiled with nequip-compile
    (AOTInductor) unless the cache has it. Packages are written one at a time
    (torch in this process); the compilers then run side by side, up to one per
    CPU core: a compile is mostly one core's work (the three parts of the water
    pair took 239 s one after another on 2 cores)."""
    pending = {}
    for job in jobs:
        if job.cached.is_file():
            say(f"mtsmlip lammps-input: {job.label}: reusing {job.cached} (same model file, torch, nequip and CPU)")
        elif job.cached in pending:
            say(f"mtsmlip lammps-input: {job.label}: the same file as {pending[job.cached].label}, compiled once")
        else:
            pending[job.cached] = job
    if not pending:
        return [job.cached for job in jobs]
    from .lammps_build import run_side_by_side

    nequip_compile = shutil.which("nequip-compile")
    if nequip_compile is None:
        raise DataError("nequip-compile is not on PATH (it comes with the nequip package)")
    root = compiled_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".compile-", dir=root) as tmp:
        prepared = []  # (cache path, job, package, compiled file)
        for k, (cached, job) in enumerate(pending.items()):
            work = Path(tmp) / str(k)
            work.mkdir()
            prepared.append((cached, job, job.package(work), work / f"{job.label}.nequip.pt2"))
        # the largest package first: the longest compile starts at once (the water baseline
        # alone takes about as long as the fast and slow models one after the other)
        prepared.sort(key=lambda item: -item[2].stat().st_size)
        say(f"mtsmlip lammps-input: compiling {', '.join(job.label for _, job, _, _ in prepared)} with "
            f"nequip-compile (AOTInductor; side by side, one per core; a minute or two each on a small CPU)")
        results = run_side_by_side([[nequip_compile, str(package), str(partial), "--mode", "aotinductor", "--device",
                                     job.device, "--target", f"pair_{job.style}"]
                                    for _, job, package, partial in prepared])
        failed = []
        for (cached, job, _, partial), (code, output, seconds) in zip(prepared, results):
            # keep every compile that worked, then say what failed
            if code != 0 or not partial.is_file():
                failed.append(f"{job.where}: nequip-compile failed (exit {code}):\n{output[-3000:]}")
                continue
            os.replace(partial, cached)
            say(f"mtsmlip lammps-input: {job.label}: compiled for pair_style {job.style} in {seconds:.0f} s -> "
                f"{cached}")
        if failed:
            raise DataError("\n".join(failed))
    return [job.cached for job in jobs]


def box_for(atoms, cutoff_A: float):
    """LAMMPS needs a box: a periodic structure keeps its cell (LAMMPS takes a
    triclinic cell in its own orientation: the structure is rotated into it); an
    isolated one is centred in a cube with 2 cutoffs of vacuum on each side, so no
    image is within reach."""
    from ..system import is_periodic

    atoms = atoms.copy()
    if any(atoms.pbc) and not all(atoms.pbc):
        raise DataError(f"the structure is periodic along some directions only (pbc = {list(map(bool, atoms.pbc))}); "
                        "mtsmlip's LAMMPS input writer takes fully periodic or isolated structures")
    if is_periodic(atoms):
        return atoms
    atoms.center(vacuum=2.0 * cutoff_A + 1.0)
    atoms.pbc = True
    return atoms


def check_masses_per_species(atoms) -> None:
    """LAMMPS's atomic style has one mass per type: masses that differ within a
    species (hydrogen mass repartitioning, isotopes) would be lost."""
    masses = atoms.get_masses()
    for symbol in sorted(set(atoms.get_chemical_symbols())):
        of = masses[np.array(atoms.get_chemical_symbols()) == symbol]
        if np.ptp(of) > 1e-9 * of.max():
            raise DataError(f"the structure's {symbol} atoms have different masses ({of.min():g} to {of.max():g} amu); "
                            "LAMMPS's atomic style has one mass per type: give each its own species or equal masses")


def write_data(path: Path, atoms, species: list[str]) -> None:
    """The LAMMPS data file (metal units) with masses and velocities."""
    import ase.io

    def write(tmp):
        ase.io.write(tmp, atoms, format="lammps-data", specorder=species, masses=True, velocities=True,
                     units="metal", atom_style="atomic")

    atomic_write(path, write)


def thermostat_lines(run: LammpsRun, outer: bool) -> list[str]:
    """Integrator fixes. `outer`: the r-RESPA input (the thermostat then acts once
    per outer step, see the module's docstring)."""
    lines = ["fix             integrate all nve"]
    if run.thermostat == "langevin":
        damp_ps = 1e-3 / run.friction_per_fs
        lines.append(f"fix             thermostat all langevin {run.temperature_K} {run.temperature_K} "
                     f"{damp_ps:.12g} $({run.seed}+step) zero yes tally yes"
                     + ("   # under respa: friction and noise once per outer step" if outer else ""))
    elif run.thermostat == "bussi":
        lines.append(f"fix             thermostat all temp/csvr {run.temperature_K} {run.temperature_K} "
                     f"{run.tau_fs * 1e-3:.12g} $({run.seed}+step)"
                     + ("   # Bussi: rescales once per outer step" if outer else ""))
    return lines


def sub_style_lines(sub_styles: list[tuple], names: str) -> list[str]:
    """pair_style and pair_coeff lines of a hybrid pair. `sub_styles`: (scale,
    model file, pair style) each; scales None: hybrid/overlay, else hybrid/scaled.
    A style used more than once is named with its index among its uses."""
    styles = [style for _, _, style in sub_styles]
    if all(scale is None for scale, _, _ in sub_styles):
        head = "hybrid/overlay " + " ".join(styles)
    else:
        head = "hybrid/scaled " + " ".join(f"{scale:g} {style}" for scale, _, style in sub_styles)
    lines = [f"pair_style      {head}"]
    for k, (_, file, style) in enumerate(sub_styles):
        index = f" {styles[:k + 1].count(style)}" if styles.count(style) > 1 else ""
        lines.append(f"pair_coeff      * * {style}{index} {file} {names}")
    return lines


def input_text(run: LammpsRun, plugin: Path, species: list[str], parts: dict, baseline: bool) -> str:
    """in.mts (baseline False) or in.baseline. `parts`: {part: (file name, pair style)}."""
    names = " ".join(species)
    restart = "restart.baseline.*" if baseline else "restart.mts.*"  # one file per restart step: a kill mid-write
    head = [f"# written by mtsmlip lammps-input ({'the conventional run: baseline, velocity Verlet' if baseline else f'MTS: r-RESPA, n = {run.n_inner}'})",
            f"log             log.{'baseline' if baseline else 'mts'}.lammps append   # a continued run adds to its log",
            "units           metal", "atom_style      atomic", "atom_modify     map yes", "newton          on",
            "boundary        p p p",
            f'plugin load     "{plugin}"',
            "# run.sh sets `start` to read the newest restart file when there is one: a stopped run continues",
            'variable        start index "read_data structure.data"',
            "${start}"]
    if baseline:
        file, style = parts["baseline"]
        forces = [f"pair_style      {style}", f"pair_coeff      * * {file} {names}", "run_style       verlet",
                  f"timestep        {run.timestep_fs * 1e-3:.12g}   # ps"]
        steps = run.steps * run.n_inner
        stride = run.stride * run.n_inner
    else:
        if "slow" in parts:  # co-trained: fast + slow
            forces = sub_style_lines([(None, *parts["fast"]), (None, *parts["slow"])], names)
            levels, comment = "1 2", "fast (sub-style 1) every inner step, slow (sub-style 2) every outer step"
        else:  # distilled: slow = teacher - fast, so the pair is fast + teacher - fast
            forces = sub_style_lines([(1.0, *parts["fast"]), (1.0, *parts["baseline"]), (-1.0, *parts["fast"])], names)
            levels, comment = "1 2 2", ("fast (sub-style 1) every inner step; the teacher (2) minus the fast model "
                                        "again (3), the distilled slow force, every outer step")
        forces += [f"# {comment}",
                   f"run_style       respa 2 {run.n_inner} hybrid {levels}",
                   f"timestep        {run.timestep_fs * run.n_inner * 1e-3:.12g}   # ps: the OUTER step, "
                   f"{run.n_inner} x {run.timestep_fs:g} fs"]
        steps = run.steps
        stride = run.stride
    out = ["thermo_style    custom step time temp pe ke etotal econserve press",
           "thermo_modify   norm no flush yes",
           f"thermo          {stride}",
           f"dump            trajectory all custom {stride} trajectory.{'baseline' if baseline else 'mts'}.dump "
           "id type x y z vx vy vz",
           "dump_modify     trajectory sort id append yes format float %.15g",
           f"restart         {stride * 10} {restart}",
           f"run             {steps} upto",
           f"write_restart   {restart}"]
    return "\n".join(head + forces + thermostat_lines(run, outer=not baseline) + out) + "\n"


def run_script(install, uses_nequip: dict) -> str:
    """run.sh: `./run.sh [mts|baseline] [ranks]`."""
    return f"""#!/bin/sh
# written by mtsmlip lammps-input. Usage: ./run.sh [mts|baseline] [MPI ranks] [threads per rank]
# (a stopped run continues from its last restart file when started again)
set -e
cd "$(dirname "$0")"
which=${{1:-mts}}
ranks=${{2:-1}}
threads=${{3:-1}}
case "$which" in
  mts) nequip={'yes' if uses_nequip['mts'] else 'no'} ;;
  baseline) nequip={'yes' if uses_nequip['baseline'] else 'no'} ;;
  *) echo "run.sh: first argument: mts or baseline (got $which)" >&2; exit 2 ;;
esac
if [ "$nequip" = yes ] && [ "$ranks" != 1 ]; then
  echo "run.sh: in.$which uses pair_style nequip (a message-passing NequIP model), which runs on one MPI rank only" >&2
  exit 2
fi
# torch's threads per rank (LAMMPS's OpenMP runtime and torch's are both loaded;
# ranks x threads should not exceed the cores)
export OMP_NUM_THREADS="$threads"
# the models were compiled for the CPU: keep the pair styles off any GPU
export CUDA_VISIBLE_DEVICES=
newest=$(ls restart.$which.* 2>/dev/null | sed "s/^restart\\.$which\\.//" | sort -n | tail -1)
if [ -n "$newest" ]; then
  echo "run.sh: continuing from restart.$which.$newest" >&2
  set -- -var start "read_restart restart.$which.$newest"
else
  set --
fi
exec {shlex.quote(str(install.mpiexec))} -np "$ranks" {shlex.quote(str(install.lmp))} -in "in.$which" -log none -nocite "$@"
"""


def write_run(models, atoms, out_dir, run: LammpsRun, plugin, device: str = "cpu", say=print) -> dict:
    """Write a LAMMPS run of `models` (a TrainedModels) from `atoms` into `out_dir`;
    the record written to lammps.json."""
    from ..md.engine import initialise_momenta
    from .lammps_build import find_plugin, lammps_install

    run.check()
    teacher = models.teacher
    if teacher is not None and teacher["kind"] == "ase-calculator":
        raise DataError(f"{models.directory}: distilled from the ASE calculator {teacher['spec']!r}; LAMMPS runs "
                        "nequip and Allegro models only (pair_nequip_allegro), so this pair's slow force "
                        "(teacher - fast) cannot run there: distil from a nequip model, or run it with mtsmlip md")
    external = teacher is not None and teacher["kind"] == "nequip-model"  # its file is compiled, not a model here
    if external and models.teacher_spec is None:
        raise DataError(f"{models.directory}: distilled from the nequip model {teacher['spec']!r}: give it again "
                        "with --teacher (mtsmlip never builds a teacher from what a file records)")
    written = ("fast", "slow", "baseline") if teacher is None else ("fast", "baseline")  # a distilled baseline: the teacher
    in_mts = written[:2]
    missing = [p for p in written if p not in models.models and not (p == "baseline" and external)]
    if missing:
        raise DataError(f"{models.directory}: no {', '.join(missing)} model")
    species = list(models.models["fast"].type_names)
    unknown = sorted(set(atoms.get_chemical_symbols()) - set(species))
    if unknown:
        raise DataError(f"the structure has species {unknown} that the models do not know (they know {species})")
    install = lammps_install()
    plugin = find_plugin(plugin)
    if any(c in str(plugin) for c in '"\n$'):
        raise DataError(f"{plugin}: LAMMPS cannot load a plugin from a path with quotes, $ or newlines; move it")
    cutoff_A = max(m.r_max for m in models.models.values())
    atoms = atoms.copy()
    initialise_momenta(atoms, run.temperature_K, run.seed)  # as `mtsmlip md` draws them (before the box: an
    atoms = box_for(atoms, cutoff_A)                        # isolated molecule's rotation is zeroed)
    check_masses_per_species(atoms)
    out_dir = Path(out_dir)
    (out_dir / "models").mkdir(parents=True, exist_ok=True)
    parts, record_parts = {}, {}
    jobs = [teacher_job(models.teacher_spec, device) if part == "baseline" and external
            else part_job(models, part, atoms, device) for part in written]
    for part, job, cached in zip(written, jobs, compile_all(jobs, say)):
        style, sha = job.style, job.sha
        local = out_dir / "models" / f"{part}.nequip.pt2"
        atomic_write(local, lambda tmp, src=cached: shutil.copyfile(src, tmp))
        parts[part] = (f"models/{part}.nequip.pt2", style)
        record_parts[part] = {"pair_style": style, "model_sha256": sha, "compiled": str(cached)}
    write_data(out_dir / "structure.data", atoms, species)
    for baseline, name in ((False, "in.mts"), (True, "in.baseline")):
        text = input_text(run, plugin, species, parts, baseline)
        atomic_write(out_dir / name, lambda tmp, t=text: Path(tmp).write_text(t))
    uses_nequip = {"mts": any(parts[p][1] == "nequip" for p in in_mts), "baseline": parts["baseline"][1] == "nequip"}
    script = run_script(install, uses_nequip)
    atomic_write(out_dir / "run.sh", lambda tmp: Path(tmp).write_text(script))
    os.chmod(out_dir / "run.sh", 0o755)
    record = {"model": str(models.directory), "distilled_from": teacher, "plugin": str(plugin),
              "lammps_version": install.version,
              "species_order": species, "run": asdict(run), "parts": record_parts,
              "atoms": len(atoms), "max_ranks": {k: (1 if v else None) for k, v in uses_nequip.items()}}
    atomic_write_json(out_dir / "lammps.json", record)
    return record


def run(args) -> int:
    from ..data import read_structure
    from ..models import TrainedModels

    out = Path(args.out)
    existing = previous_run_files(out)
    if existing and not args.overwrite:
        raise DataError(f"--out {out}: already holds a LAMMPS run ({', '.join(p.name for p in existing[:6])}); "
                        "pass --overwrite to replace it (its restart files, trajectories and logs are removed)")
    for path in existing:
        path.unlink()
    models = TrainedModels.load(args.model, teacher=args.teacher)
    atoms = read_structure(args.structure)
    lrun = LammpsRun(n_inner=args.n_inner, timestep_fs=args.timestep_fs, steps=args.steps,
                     temperature_K=args.temperature_K, thermostat=args.thermostat,
                     friction_per_fs=args.friction_per_fs, tau_fs=args.tau_fs, seed=args.seed, stride=args.stride)
    record = write_run(models, atoms, out, lrun, args.plugin)
    ranks = "any number of MPI ranks" if record["max_ranks"]["mts"] is None else "one MPI rank (pair_style nequip)"
    print(f"mtsmlip lammps-input: wrote {out}/in.mts (r-RESPA, n = {lrun.n_inner}, outer step "
          f"{lrun.n_inner * lrun.timestep_fs:g} fs, {lrun.steps} outer steps; {ranks}) and {out}/in.baseline "
          f"(velocity Verlet, {lrun.timestep_fs:g} fs). Run: {out}/run.sh mts [ranks]  |  {out}/run.sh baseline")
    return 0
