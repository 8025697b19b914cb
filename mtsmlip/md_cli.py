"""`mtsmlip md`: multiple-time-step MD with a trained pair (or velocity Verlet with the baseline)."""

from __future__ import annotations

import sys

from .arguments import check_thermostat_rates
from .data import read_structure
from .errors import DataError
from .files import check_output_dir
from .md.engine import Engine, MDInstability, initialise_momenta
from .md.outputs import RunFiles
from .md.settings import RunSettings


def build_engine(args) -> Engine:
    from .models import TrainedModels

    models = TrainedModels.load(args.model, teacher=args.teacher)
    atoms = read_structure(args.structure)
    if args.replicas > 1:
        from .md.replicas import replicate

        # copies farther apart than any cutoff plus the skin never interact
        atoms = replicate(atoms, args.replicas, models.largest_cutoff_A() + args.skin_A + 1.0, seed=args.seed)
    settings = RunSettings(timestep_fs=args.timestep_fs, n_inner=1 if args.baseline else args.n_inner,
                           thermostat=args.thermostat, temperature_K=args.temperature_K,
                           friction_per_fs=args.friction_per_fs, tau_fs=args.tau_fs, baseline=args.baseline,
                           hmr_amu=args.hmr_amu)
    settings.check()
    initialise_momenta(atoms, args.temperature_K, args.seed)
    fast, slow = models.providers(atoms, args.baseline, skin_A=args.skin_A, device=args.device)
    return Engine(atoms, fast, slow, settings, seed=args.seed, device=args.device,
                  provenance={"model_sha256": models.model_hashes()})


def run(args) -> int:
    check_thermostat_rates(args)
    out = check_output_dir(args.out)
    files = RunFiles(out, args.traj_every)
    if not args.resume and files.restart_path.exists():
        raise DataError(f"{out}: holds a previous run; use --resume to continue it or another --out")
    engine = build_engine(args)
    if args.resume:
        files.resume(engine)
        if engine.step > args.steps:
            raise DataError(f"--steps {args.steps}: the run in {out} is already at step {engine.step} "
                            "(--steps is the total of the whole run)")
    files.attach(engine)
    try:
        engine.run(args.steps - engine.step, progress=not args.no_progress)
    except MDInstability as exc:
        print(f"mtsmlip md: unstable: {exc}; saved to {out / 'last_good.extxyz'} and {files.restart_path}",
              file=sys.stderr)
        return 3
    print(f"mtsmlip md: {engine.step} steps ({engine.time_ps():.4f} ps) done; output in {out}")
    return 0
