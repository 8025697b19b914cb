"""Run multiple-time-step MD with a trained pair (or velocity Verlet with the baseline)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..data import read_structure
from ..errors import DataError
from ..files import check_output_dir
from .engine import Engine, MDInstability, RunSettings, initialise_momenta, providers_for


def build_engine(args) -> Engine:
    from .. import load

    models = load(args.model)
    atoms = read_structure(args.structure)
    settings = RunSettings(timestep_fs=args.timestep_fs, n_inner=1 if args.baseline else args.n_inner,
                           thermostat=args.thermostat, temperature_K=args.temperature_K,
                           friction_per_fs=args.friction_per_fs, baseline=args.baseline)
    settings.check()
    initialise_momenta(atoms, args.temperature_K, args.seed)
    fast, slow = providers_for(models, atoms, args.baseline, skin_A=args.skin_A)
    return Engine(atoms, fast, slow, settings, args.out, seed=args.seed, traj_every=args.traj_every,
                  provenance={"model_sha256": models.model_hashes()})


def run(args) -> int:
    out = check_output_dir(args.out)
    if not args.resume and (out / "restart.npz").exists():
        raise DataError(f"{out}: holds a previous run; use --resume to continue it or another --out")
    engine = build_engine(args)
    if args.resume:
        engine.resume()
        if engine.step > args.steps:
            raise DataError(f"--steps {args.steps}: the run in {out} is already at step {engine.step} "
                            "(--steps is the total of the whole run)")
    try:
        engine.run(args.steps - engine.step, progress=not args.no_progress)
    except MDInstability as exc:
        print(f"mtsmlip md: unstable: {exc}", file=sys.stderr)
        return 3
    print(f"mtsmlip md: {engine.step} steps ({engine.time_ps():.4f} ps) done; output in {out}")
    return 0
