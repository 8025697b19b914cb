"""Run multiple-time-step MD with a trained pair (or velocity Verlet with the baseline)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..data import DataError, read_structure
from ..models import add_model_argument
from .engine import Engine, MDInstability, RunSettings, initialise_momenta, providers_for


def add_arguments(p) -> None:
    add_model_argument(p)
    p.add_argument("--structure", required=True, help="starting structure (any ase.io format; last frame)")
    p.add_argument("--timestep-fs", type=float, default=0.5, help="inner time step δt (fs)")
    p.add_argument("--n-inner", type=int, default=4, help="inner steps per outer step (Δt = n·δt)")
    p.add_argument("--steps", type=int, required=True, help="number of outer steps to run")
    p.add_argument("--temperature-K", type=float, default=None,
                   help="thermostat target; also initial Maxwell–Boltzmann velocities if the structure has none")
    p.add_argument("--thermostat", choices=["langevin", "bussi"], default=None, help="default: NVE")
    p.add_argument("--friction-per-fs", type=float, default=None,
                   help="Langevin friction, or 1/relaxation time for Bussi (default 0.01)")
    p.add_argument("--baseline", action="store_true",
                   help="velocity Verlet at --timestep-fs with the baseline model (n_inner is set to 1)")
    p.add_argument("--out", required=True, help="output directory (log, trajectory, restart)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/restart.npz")
    p.add_argument("--seed", type=int, default=0, help="seed for initial velocities and thermostat noise")
    p.add_argument("--traj-every", type=int, default=10, help="write frame, log row and restart every k steps")
    p.add_argument("--skin-A", type=float, default=1.0, help="neighbour-list skin (Å)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


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
    return Engine(atoms, fast, slow, settings, args.out, seed=args.seed, traj_every=args.traj_every)


def run(args) -> int:
    out = Path(args.out)
    if not args.resume and (out / "restart.npz").exists():
        raise DataError(f"{out}: holds a previous run; use --resume to continue it or another --out")
    engine = build_engine(args)
    if args.resume:
        engine.resume()
    try:
        engine.run(args.steps, progress=not args.no_progress)
    except MDInstability as exc:
        print(f"mtsmlip md: unstable: {exc}", file=sys.stderr)
        return 3
    print(f"mtsmlip md: {engine.step} steps ({engine.time_ps():.4f} ps) done; output in {out}")
    return 0
