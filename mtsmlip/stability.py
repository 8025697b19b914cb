"""The stability check at the end of `train` (and `distill`): is the pair fit to
run, before a user spends hours on it?

Short MD from validation frames, at T and 1.5·T: the pair at n = 1, the
baseline, and the pair at the n that the probe (:mod:`mtsmlip.probe`) recommends.
The thermostat is the one `compare` chooses by default: Bussi for a periodic
system, Langevin for an isolated molecule. (Langevin's friction hides holes that
Bussi finds: a default water pair that passed 500 fs Langevin runs blew up under
Bussi within 0.7 ps, 2026-12-06.)
Beside it, the held-out force error per species, pair against baseline. A pair
that blows up anywhere is never reported as fine: the summary says where, and
what to try. The result is kept in the model directory's manifest.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass

from ase import Atoms

from .errors import DataError
from . import forces
from .md.engine import Engine, initialise_momenta
from .md.safety import MDInstability
from .md.settings import RunSettings
from .system import is_periodic

TEMPERATURE_FACTORS = (1.0, 1.5)


@dataclass(frozen=True)
class StabilitySettings:
    """MD of `md_fs` per run at `timestep_fs`, from `frames` validation frames, at
    `temperature_K` and 1.5 times it; the probe's NVE segments last `probe_fs`.
    `thermostat` "auto" is compare's default: Bussi (`tau_fs`, None: the engine's
    default) for a periodic start, Langevin (`friction_per_fs`) for a molecule."""

    temperature_K: float = 300.0
    timestep_fs: float = 0.5
    md_fs: float = 500.0  # per run, at most
    atom_fs: float = 96_000.0  # atoms x fs a run explores: 500 fs of 192 atoms
    min_md_fs: float = 100.0
    frames: int = 2
    friction_per_fs: float = 0.01
    thermostat: str = "auto"  # or "langevin" / "bussi" for every start
    tau_fs: float | None = None
    probe_fs: float = 100.0
    seed: int = 0

    def md_fs_for(self, n_atoms: int) -> float:
        """How long each run from a start of `n_atoms` lasts: `md_fs` up to 192
        atoms, then shorter in proportion (not under `min_md_fs`). A hole is a
        local configuration the data never held, and a box of N atoms visits
        local configurations N times as fast as one molecule does, so atoms x fs
        is what finds it; a 1536-atom box would otherwise take hours on 2 cores.
        Not shorter for 192 atoms: a default water pair that passed 500 fs runs
        blew up under Bussi after 0.66 ps (2026-12-06)."""
        return min(self.md_fs, max(self.min_md_fs, self.atom_fs / n_atoms))

    def __post_init__(self):
        if self.thermostat not in ("auto", "langevin", "bussi"):
            raise DataError(f"stability check thermostat must be auto, langevin or bussi (got {self.thermostat!r})")

    def thermostat_for(self, atoms: Atoms) -> str:
        """The thermostat of the runs from `atoms`: compare's rule for "auto"."""
        if self.thermostat != "auto":
            return self.thermostat
        return "bussi" if is_periodic(atoms) else "langevin"

    def run(self, temperature_K: float, n_inner: int = 1, baseline: bool = False,
            thermostat: str | None = None) -> RunSettings:
        """One run's settings under `thermostat` (default: this check's own, which
        must then not be "auto": :meth:`thermostat_for` resolves that per start)."""
        thermostat = thermostat or self.thermostat
        if thermostat == "auto":
            raise ValueError("StabilitySettings.run needs the thermostat resolved for a start (thermostat_for)")
        rates = {"friction_per_fs": self.friction_per_fs} if thermostat == "langevin" else {"tau_fs": self.tau_fs}
        return RunSettings(self.timestep_fs, n_inner, thermostat, temperature_K, baseline=baseline, **rates)


def fresh_start(atoms: Atoms, temperature_K: float, seed: int) -> Atoms:
    """A copy of `atoms` (species, positions, cell) with Maxwell–Boltzmann momenta at `temperature_K`."""
    start = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    initialise_momenta(start, temperature_K, seed)
    return start


def engine_for(models, atoms: Atoms, run: RunSettings, seed: int) -> Engine:
    fast, slow = forces.md_providers(models, atoms, run.baseline)
    return Engine(atoms, fast, slow, run, seed=seed)


def md_segment(models, atoms: Atoms, run: RunSettings, md_fs: float, seed: int) -> dict:
    """MD of `md_fs` under `run` from `atoms` (fresh Maxwell–Boltzmann momenta):
    {"stable": bool, "fs": simulated fs, "problem": what stopped it, or None}."""
    engine = engine_for(models, fresh_start(atoms, run.temperature_K, seed), run, seed)
    try:
        engine.run(run.steps_for(md_fs / 1000.0), progress=False)
    except MDInstability as exc:
        return {"stable": False, "fs": engine.step * run.outer_fs, "problem": str(exc)}
    return {"stable": True, "fs": engine.step * run.outer_fs, "problem": None}


def recommended_n(models, atoms: Atoms, settings: StabilitySettings, say) -> tuple[int, list[str]]:
    """The probe's n from `atoms` at the check temperature, and its table."""
    from .probe import ProbeSettings, probe_n_inner

    start = fresh_start(atoms, settings.temperature_K, settings.seed)
    result = probe_n_inner(lambda a, run: engine_for(models, a, run, settings.seed), start,
                           settings.run(settings.temperature_K, thermostat=settings.thermostat_for(atoms)),
                           ProbeSettings(nve_fs=settings.probe_fs), say=lambda line: None,
                           unstable_reference_fails=True)
    return result.n_inner, result.lines()


def stability_check(models, frames, settings: StabilitySettings = StabilitySettings(), say=None) -> dict:
    """The check of the module doc on `models` (a TrainedModels) from the first
    `settings.frames` of `frames` (validation frames); a plain record for the manifest."""
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    starts = list(frames)[:settings.frames]
    if not starts:
        raise DataError("the stability check needs at least one validation frame")
    has_baseline = "baseline" in models.models or models.teacher is not None
    md_fs = [settings.md_fs_for(len(atoms)) for atoms in starts]
    thermostats = sorted({settings.thermostat_for(atoms) for atoms in starts})
    say(f"stability check: {' / '.join(t.capitalize() for t in thermostats)} MD, {settings.timestep_fs:g} fs steps, "
        f"{' / '.join(f'{t:g}' for t in sorted(set(md_fs)))} fs per run ({settings.atom_fs:g} atom-fs, at most "
        f"{settings.md_fs:g} fs), from "
        f"{len(starts)} validation frame(s) at {settings.temperature_K:g} K and "
        f"{settings.temperature_K * TEMPERATURE_FACTORS[-1]:g} K")
    n_auto, probe_lines = recommended_n(models, starts[0], settings, say)
    runs = []
    for k, atoms in enumerate(starts):
        thermostat = settings.thermostat_for(atoms)
        for factor in TEMPERATURE_FACTORS:
            temperature = settings.temperature_K * factor
            kinds = [("pair", 1, False)] + ([("pair", n_auto, False)] if n_auto > 1 else []) \
                + ([("baseline", 1, True)] if has_baseline else [])
            for name, n, baseline in kinds:
                result = md_segment(models, atoms, settings.run(temperature, n, baseline, thermostat), md_fs[k],
                                    settings.seed + k)
                runs.append({"model": name, "n_inner": n, "frame": k, "temperature_K": temperature,
                             "thermostat": thermostat, **result})
                say(f"  {name} n = {n}, frame {k}, {temperature:g} K: "
                    + ("stable" if result["stable"] else f"BLEW UP after {result['fs']:g} fs ({result['problem']})"))
    pair_failures = [r for r in runs if r["model"] == "pair" and not r["stable"]]
    record = {"settings": asdict(settings), "recommended_n_inner": n_auto, "probe": probe_lines, "runs": runs,
              "pair_stable": not pair_failures,
              "baseline_stable": all(r["stable"] for r in runs if r["model"] == "baseline") if has_baseline else None}
    for line in verdict_lines(record):
        say(line)
    return record


def verdict_lines(record: dict) -> list[str]:
    """What the check means, in words: fine, or what failed and what to try."""
    n = record["recommended_n_inner"]
    if record["pair_stable"]:
        return [f"stability check: the pair ran stably everywhere; the probe recommends n = {n}"]
    failed = [r for r in record["runs"] if r["model"] == "pair" and not r["stable"]]
    first = failed[0]
    lines = [f"stability check: FAILED: the pair blew up in {len(failed)} run(s), first at n = {first['n_inner']}, "
             f"{first['temperature_K']:g} K, after {first['fs']:g} fs ({first['problem']})"]
    if record["baseline_stable"] is False:
        lines.append("  the baseline blew up too: the data may not cover these temperatures; check the data or "
                     "lower the temperature of the check")
    elif all(r["n_inner"] > 1 for r in failed):
        lines.append("  only at n > 1: use a smaller --n-inner (n = 1 ran stably)")
    else:
        lines.append("  try: a longer training (--epochs, --max-minutes, config `steps`), more frames near the "
                     "configurations MD visits, or distilling from a stable potential (`mtsmlip distill`)")
    return lines


def accuracy_summary(models, frames, data_path) -> dict:
    """The pair's and the baseline's errors on `frames` (the validation frames):
    energy and force MAE, and the force MAE of each species (meV/Å)."""
    from .evaluate import error_report, predict

    predictions = predict(models, frames, data_path)
    if models.teacher is not None:  # distilled: the labels are the teacher's own, so its error is nil
        predictions.pop("baseline", None)
    report = error_report(frames, predictions)
    return {"frames": "validation", "n_frames": len(frames),
            "energy_mae_meV_per_atom": {name: report[key]["energy_mae_meV_per_atom"]
                                        for name, key in (("fast", "fast"), ("pair", "total"), ("baseline", "baseline"))
                                        if report[key] is not None},
            "force_mae_by_species_meV_per_A": {("pair" if n == "total" else n): v
                                               for n, v in report["force_mae_by_species_meV_per_A"].items()}}


def accuracy_lines(accuracy: dict) -> list[str]:
    """The summary in words: pair against baseline per species, and whether the
    pair is at least as accurate."""
    by = accuracy["force_mae_by_species_meV_per_A"]
    energy = accuracy["energy_mae_meV_per_atom"]
    if "baseline" not in by:
        return [f"accuracy on {accuracy['n_frames']} validation frames: force MAE by species (pair) "
                + ", ".join(f"{s} {v:.1f}" for s, v in by["pair"].items()) + f" meV/Å; energy MAE {energy['pair']:.2f} meV/atom"]
    worse = [s for s in by["pair"] if by["pair"][s] > by["baseline"][s]]
    lines = [f"accuracy on {accuracy['n_frames']} validation frames, pair / baseline: force MAE "
             + ", ".join(f"{s} {by['pair'][s]:.1f} / {by['baseline'][s]:.1f}" for s in by["pair"])
             + f" meV/Å; energy MAE {energy['pair']:.2f} / {energy['baseline']:.2f} meV/atom"]
    if worse:
        lines.append(f"  the pair is less accurate than the baseline on {', '.join(worse)}: a larger slow model "
                     "(config slow_model) or a longer training (`steps`, --max-minutes) may close it")
    return lines


def check_stability(out, frames_path, cfg: dict, say=None, teacher: str | None = None) -> dict | None:
    """The check on the model directory `out` just written, from the validation
    frames (its manifest's split) of `frames_path`, kept in its manifest under
    ``stability``; None when the config skips it (``stability_md_fs: 0``)."""
    from pathlib import Path

    from .data import frames_of
    from .files import atomic_write_json, read_json
    from .models import MANIFEST, TrainedModels

    if float(cfg.get("stability_md_fs", 0)) <= 0:
        return None
    models = TrainedModels.load(out, teacher=teacher)
    frames = frames_of(frames_path)
    settings = StabilitySettings(temperature_K=float(cfg["stability_temperature_K"]),
                                 md_fs=float(cfg["stability_md_fs"]), atom_fs=float(cfg["stability_atom_fs"]),
                                 seed=int(cfg["seed"]))
    validation = [frames[i] for i in models.manifest["split"]["val"]]
    record = stability_check(models, validation, settings, say)
    record["accuracy"] = accuracy_summary(models, validation, frames_path)
    for line in accuracy_lines(record["accuracy"]):
        (say or (lambda text: print(text, file=sys.stderr, flush=True)))(line)
    written = read_json(Path(out) / MANIFEST, "model manifest")
    atomic_write_json(Path(out) / MANIFEST, {**written, "stability": record})
    return record
