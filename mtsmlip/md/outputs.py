"""What a run writes, as engine observers, and how a run resumes from it.

OUT/ gets ``md.log`` (a row per output interval), ``trajectory.extxyz``
(positions, momenta, energy, forces), ``restart.npz`` (everything needed to
continue bit-for-bit; plain arrays and JSON, no pickle) and, if the run is
stopped as unsafe, ``last_good.extxyz``. :class:`RunFiles` attaches the three
writers in that order, so a restart never points past what the log and the
trajectory hold, and a resumed run first drops what was written after it.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import MISSING, asdict, fields
from pathlib import Path

import ase.io
import numpy as np

from ..errors import DataError
from ..files import atomic_write, run_files_in
from .respa import MDState
from .settings import RunSettings
from .thermostats import portable_state

LOG_COLUMNS = ("step", "time_ps", "temperature_K", "potential_eV", "kinetic_eV", "conserved_eV",
               "steps_per_s", "ns_per_day")
RESTART_ARRAYS = ("numbers", "positions", "momenta", "forces_fast", "forces_slow")


class TrajectoryWriter:
    """Appends the current state as an extxyz frame."""

    def __init__(self, path):
        self.path = Path(path)

    def __call__(self, engine) -> None:
        with open(self.path, "a") as f:
            ase.io.write(f, engine.atoms(), format="extxyz")


class LogWriter:
    """Appends a row of LOG_COLUMNS; the rate is that since its previous row (or
    since :meth:`start`, e.g. a resumed run's first row). `notes` go under the
    column header as comment lines when the log is created."""

    def __init__(self, path):
        self.path, self.since, self.notes = Path(path), None, []

    def start(self, engine) -> None:
        self.since = (time.perf_counter(), engine.step)

    def __call__(self, engine) -> None:
        now = (time.perf_counter(), engine.step)
        since = self.since or now
        rate = (now[1] - since[1]) / max(now[0] - since[0], 1e-12)
        self.since, s = now, engine.state
        row = (engine.step, engine.time_ps(), engine.temperature_K(s), engine.potential_eV(s), engine.kinetic_eV(s),
               engine.conserved_eV(s), rate, engine.settings.ns_per_day(rate))
        with open(self.path, "a") as f:
            if f.tell() == 0:
                f.write("# " + " ".join(LOG_COLUMNS) + "\n" + "".join(f"# {line}\n" for line in self.notes))
            f.write(f"{row[0]:d} " + " ".join(f"{v:.10g}" for v in row[1:]) + "\n")


class RestartWriter:
    """Rewrites the restart file atomically."""

    def __init__(self, path):
        self.path = Path(path)

    def __call__(self, engine) -> None:
        write_restart(engine, self.path)


def write_restart(engine, path, state: MDState | None = None, step: int | None = None) -> None:
    s, step = (engine.state, engine.step) if state is None else (state, step)
    arrays = {name: getattr(s, name).cpu().numpy() for name in RESTART_ARRAYS[1:]}
    meta = {"format": "mtsmlip-restart-1", "step": step, "settings": asdict(engine.settings),
            "provenance": engine.provenance, "thermostat": portable_state(engine.thermostat.get_state()),
            "energy_fast_eV": float(s.energy_fast_eV), "energy_slow_eV": float(s.energy_slow_eV),
            "work_eV": float(s.work_eV)}

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, numbers=engine.template.numbers, meta=json.dumps(meta), **arrays)

    atomic_write(path, write)


def read_restart(path: Path) -> tuple[dict, dict]:
    """(meta, arrays) of a restart file: plain arrays and JSON only (no pickle);
    DataError naming the file for a missing, damaged or foreign one."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no restart file to resume from")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta, arrays = json.loads(str(z["meta"])), {k: z[k] for k in z.files if k != "meta"}
    except Exception as exc:  # zip, CRC, JSON and key errors of a truncated or bit-flipped file
        raise DataError(f"{path}: damaged restart file, cannot be read ({type(exc).__name__}: {exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != "mtsmlip-restart-1":
        raise DataError(f"{path}: not an mtsmlip restart file")
    check_restart_meta(meta, path)
    missing = [k for k in RESTART_ARRAYS if k not in arrays]
    if missing:
        raise DataError(f"{path}, field '{missing[0]}': missing from the restart file")
    return meta, arrays


def check_restart_meta(meta: dict, path) -> None:
    """DataError naming the field of a restart's metadata that is not what a run writes."""
    step = meta.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise DataError(f"{path}, field 'step': must be an integer >= 0 (got {step!r})")
    for field in ("settings", "thermostat"):
        if not isinstance(meta.get(field), dict):
            raise DataError(f"{path}, field '{field}': missing or not a mapping")
    for field in ("energy_fast_eV", "energy_slow_eV"):
        value = meta.get(field)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise DataError(f"{path}, field '{field}': must be a finite number (got {value!r})")


def restore(engine, path) -> None:
    """Continue `engine` from a restart written by a run of the same settings,
    models (provenance) and structure; the restored state is checked like a start."""
    meta, arrays = read_restart(path)
    check_restart_matches(engine, meta, arrays, path)
    t = engine.as_tensor
    work_eV = meta.get("work_eV", meta["thermostat"].get("work_eV", 0.0))  # older restarts kept it there
    state = MDState(t(arrays["positions"]), t(arrays["momenta"]), engine.state.masses, t(arrays["forces_fast"]),
                    t(arrays["forces_slow"]), meta["energy_fast_eV"], meta["energy_slow_eV"], work_eV)
    problem = engine.safety.problem_with_state(state)
    if problem is not None:
        raise DataError(f"{path}: restart state is unusable: {problem}")
    try:
        engine.thermostat.set_state({k: v for k, v in meta["thermostat"].items() if k != "work_eV"})
        engine.thermostat.check_device_state(state.momenta)
    except DataError as exc:
        raise DataError(f"{path}, {exc}") from None
    engine.restore(state, int(meta["step"]))


def check_restart_matches(engine, meta: dict, arrays: dict, path) -> None:
    now = json.loads(json.dumps(asdict(engine.settings)))  # as the restart holds it (tuples become lists)
    defaults = {f.name: f.default for f in fields(RunSettings) if f.default is not MISSING}
    had = json.loads(json.dumps({**defaults, **meta["settings"]}))  # a setting added since the restart was written has its default
    if had != now:
        raise DataError(f"{path}: written with settings {meta['settings']}, this run has {asdict(engine.settings)}")
    recorded = meta.get("provenance") or {}
    changed = sorted(k for k in recorded if k in engine.provenance and recorded[k] != engine.provenance[k])
    if changed:
        was = ", ".join(f"{k} ({recorded[k]!r})" if k == "seed" else k for k in changed)
        raise DataError(f"{path}, field 'provenance': the restart was written with another {was}; resume with "
                        "the same --model and --seed, or start a new --out")
    if not np.array_equal(arrays["numbers"], engine.template.numbers):
        raise DataError(f"{path}, field 'numbers': restart holds a different structure")


class RunFiles:
    """The files of one run in `out_dir`, written every `interval` steps and at
    the end of every ``run``; the last good state is kept if the run is stopped."""

    def __init__(self, out_dir, interval: int = 10):
        if int(interval) < 1:
            raise DataError(f"traj_every must be >= 1 (got {interval})")
        self.out_dir, self.interval = Path(out_dir), int(interval)
        self.restart_path = self.out_dir / "restart.npz"
        self.writers = (TrajectoryWriter(self.out_dir / "trajectory.extxyz"), LogWriter(self.out_dir / "md.log"),
                        RestartWriter(self.restart_path))

    def attach(self, engine) -> None:
        self.writers[1].start(engine)
        engine.attach(self.write, self.interval, final=True)
        engine.safety.keep_last_good.append(lambda state, step: self.save_last_good(engine, state, step))

    def write(self, engine) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for writer in self.writers:
            writer(engine)

    def save_last_good(self, engine, state: MDState, step: int) -> None:
        frame = engine.atoms(state, step)
        atomic_write(self.out_dir / "last_good.extxyz", lambda tmp: ase.io.write(tmp, frame, format="extxyz"))
        write_restart(engine, self.restart_path, state, step)

    def log_notes(self, lines) -> None:
        """Lines kept under the log's header (as '# ' comments) when it is created."""
        self.writers[1].notes = list(lines)

    def check_can_start(self, resume: bool) -> None:
        """A new run needs a folder without a previous run's files; a resumed one
        needs the previous run's restart."""
        previous = [p.name for p in run_files_in(self.out_dir)]
        if not resume and previous:
            raise DataError(f"{self.out_dir}: holds a previous run ({', '.join(previous[:4])}); use --resume to "
                            "continue it, or another --out")
        if resume and not self.restart_path.is_file():
            held = f"holds {', '.join(previous[:4])} but" if previous else "holds"
            raise DataError(f"{self.out_dir}: {held} no {self.restart_path.name} to resume from; the run cannot "
                            "be continued: start it again in another --out")

    def saved_step_note(self) -> str:
        """Where a stopped run can continue from, as a sentence."""
        if not self.restart_path.is_file():
            return f"nothing saved yet in {self.out_dir}"
        try:
            step = read_restart(self.restart_path)[0]["step"]
        except DataError:
            return f"{self.restart_path} cannot be read"
        return f"the last restart (step {step}) is in {self.restart_path}; continue with --resume"

    def resume(self, engine) -> None:
        """Continue from OUT/restart.npz; drop log rows and frames written after it
        (at most the one write a stop interrupted: more means the restart is not
        this folder's, and nothing is dropped)."""
        restore(engine, self.restart_path)
        check_written_after(self.out_dir, engine.step, self.restart_path)
        trim_outputs_to(self.out_dir, engine.step)


def check_written_after(out_dir: Path, step: int, restart_path) -> None:
    """DataError if more than one log row or trajectory frame lies past the
    restart's `step`: a run writes frame, row and restart together, so a stop
    leaves at most one of each after the restart it kept."""
    log, traj = out_dir / "md.log", out_dir / "trajectory.extxyz"
    rows = [s for line in (log.read_text().splitlines(keepends=True) if log.is_file() else ())
            if (s := _row_step(line)) is not None]
    frames = [s for _, s in _extxyz_frames(traj.read_text())] if traj.is_file() else []
    for name, steps in (("md.log rows", rows), ("trajectory frames", frames)):
        after = [s for s in steps if s > step]
        if len(after) > 1:
            raise DataError(f"{restart_path}, field 'step': the restart is at step {step} but {len(after)} {name} "
                            f"in {out_dir} come after it (up to step {max(after)}); a restart of this run would be "
                            "at most one write behind them. Nothing was changed")


def trim_outputs_to(out_dir: Path, step: int) -> None:
    """Drop log rows and trajectory frames written after the restart at `step`
    (a run stopped between writing them and writing the restart), and a frame
    cut off mid-write, so that a resumed run never repeats or corrupts rows."""
    def log_rows(text):
        return "".join(x for x in text.splitlines(keepends=True)
                       if x.startswith("#") or (row := _row_step(x)) is not None and row <= step)

    def frames(text):
        return "".join(frame for frame, frame_step in _extxyz_frames(text) if frame_step <= step)

    _rewrite_if_changed(out_dir / "md.log", log_rows)
    _rewrite_if_changed(out_dir / "trajectory.extxyz", frames)


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
        if n_atoms < 0:
            return
        frame = lines[i:i + n_atoms + 2]
        match = re.search(r"\bstep=(\d+)", frame[1]) if len(frame) > 1 else None
        if len(frame) < n_atoms + 2 or not frame[-1].endswith("\n") or match is None:
            return
        yield "".join(frame), int(match.group(1))
        i += n_atoms + 2
