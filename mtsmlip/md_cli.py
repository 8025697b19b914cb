"""`mtsmlip md`: multiple-time-step MD with a trained pair (or velocity Verlet with the baseline)."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from dataclasses import replace

import numpy as np

from .arguments import check_thermostat_rates
from .data import read_structure
from .errors import DataError
from . import forces
from .files import output_lock
from .limits import check_atoms
from .md.engine import Engine, MDInstability, initialise_momenta
from .md.outputs import RunFiles
from .md.settings import RunSettings


def build_engine(args, out=None):
    """(the engine of the run, the probe's result or None): with --n-inner
    auto, n comes from the probe (:func:`chosen_n_inner`, which needs `out`
    to keep its choice)."""
    from .models import TrainedModels

    models = TrainedModels.load(args.model, teacher=args.teacher)
    atoms = read_structure(args.structure)
    check_atoms(len(atoms), args.replicas)
    if args.replicas > 1:
        from .md.replicas import replicate

        # copies farther apart than any cutoff plus the skin never interact
        atoms = replicate(atoms, args.replicas, models.largest_cutoff_A() + args.skin_A + 1.0, seed=args.seed)
    settings = RunSettings(timestep_fs=args.timestep_fs, n_inner=1 if args.baseline or args.n_inner == "auto"
                           else args.n_inner, thermostat=args.thermostat, temperature_K=args.temperature_K,
                           friction_per_fs=args.friction_per_fs, tau_fs=args.tau_fs, baseline=args.baseline,
                           hmr_amu=args.hmr_amu, species_friction_per_fs=args.species_friction_per_fs)
    settings.check()
    initialise_momenta(atoms, args.temperature_K, args.seed)

    def engine(a, run: RunSettings) -> Engine:
        fast, slow = forces.md_providers(models, a, run.baseline, skin_A=args.skin_A, device=args.device)
        return Engine(a, fast, slow, run, seed=args.seed, device=args.device,
                      provenance={"model_sha256": models.model_hashes(), "seed": args.seed})

    probe = None
    if args.n_inner == "auto" and not args.baseline:
        probe = chosen_n_inner(engine, atoms, settings, out, args.resume, args.probe_fs)
        settings = replace(settings, n_inner=probe.n_inner)
    return engine(atoms, settings), probe


def chosen_n_inner(engine, atoms, settings: RunSettings, out, resume: bool, probe_fs: float):
    """--n-inner auto: the probe's n (:mod:`mtsmlip.probe`) from the starting
    state, said on stderr and kept in OUT/n_inner_auto.json (and, as comment
    lines under its header, in OUT/md.log); a resumed run keeps the n it chose."""
    from .probe import ProbeSettings, saved_probe

    path = out / "n_inner_auto.json"
    if not (resume and path.is_file()) and not np.any(atoms.get_momenta()):
        raise DataError("--n-inner auto probes the motion of the start: give --temperature-K (or a structure "
                        "with momenta); atoms at rest have no motion to measure")
    return saved_probe(path, engine, atoms, settings, ProbeSettings(nve_fs=probe_fs),
                       say=lambda line: print(f"mtsmlip md: {line}", file=sys.stderr), reuse=resume)


def run(args) -> int:
    check_thermostat_rates(args)
    with output_lock(args.out, "md") as out:
        files = RunFiles(out, args.traj_every)
        files.check_can_start(args.resume)
        engine, probe = build_engine(args, out)
        if probe is not None:
            files.log_notes(probe.lines())
        if args.resume:
            files.resume(engine)
            if engine.step > args.steps:
                raise DataError(f"--steps {args.steps}: the run in {out} is already at step {engine.step} "
                                "(--steps is the total of the whole run)")
        files.attach(engine)
        return run_to_end(engine, files, args)


@contextlib.contextmanager
def ctrl_c_between_batches(engine):
    """A first Ctrl-C ends the run after the batch in flight (so the interrupt never
    lands inside a model call, where torch or a provider could turn it into an
    error that looks like a blow-up); a second one ends it at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pressed = []

    def on_ctrl_c(signum, frame):
        if pressed:
            raise KeyboardInterrupt
        pressed.append(True)

    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    engine.stop_requested = lambda: bool(pressed)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_to_end(engine, files: RunFiles, args) -> int:
    """Run to --steps total; an instability or Ctrl-C ends with a message saying
    what was kept (the restart is at most --traj-every steps old)."""
    out = files.out_dir
    try:
        with ctrl_c_between_batches(engine):
            engine.run(args.steps - engine.step, progress=not args.no_progress)
    except MDInstability as exc:
        print(f"mtsmlip md: unstable: {exc}; saved to {out / 'last_good.extxyz'} and {files.restart_path}",
              file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"mtsmlip md: interrupted at step {engine.step}; {files.saved_step_note()}", file=sys.stderr)
        return 130
    print(f"mtsmlip md: {engine.step} steps ({engine.time_ps():.4f} ps) done; output in {out}")
    return 0
