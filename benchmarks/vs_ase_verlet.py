"""MTS against the peer a user would run instead: nequip's ASE calculator (the
shipped baseline model) with ASE's VelocityVerlet at δt (0.5 fs), side by side with
our engine's baseline (velocity Verlet) and r-RESPA, on the same structure (the
192-atom water box, or --structure FILE: its last frame), in alternating blocks
of equal simulated time. Prints ns/day and ratios.

    python benchmarks/vs_ase_verlet.py [--model water] [--structure FILE] [--n-inner 4[,6,...]] [--blocks 5]
        [--timestep-fs 0.5]

Each block simulates the same time in every run: 8·lcm(n) steps of δt. The
peer, our baseline and MTS's inner step all take --timestep-fs: give the
baseline's own largest stable step (benchmarks/baseline_step.py) for a system
without hydrogen, e.g. a metal, so that no speedup comes from a step the
baseline did not need.
"""

import argparse
import math
import time
import warnings

from ase import units
from ase.md.verlet import VelocityVerlet

from mtsmlip.forces import md_providers
import mtsmlip
from mtsmlip.data import read_structure
from mtsmlip.demo import water_box
from mtsmlip.md import Engine, RunSettings
from mtsmlip.md.engine import initialise_momenta


def ns_per_day(simulated_fs: float, wall_s: float) -> float:
    return simulated_fs * 1e-6 / wall_s * 86400.0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="water")
    p.add_argument("--n-inner", default="4", help="inner steps per outer step, comma-separated")
    p.add_argument("--blocks", type=int, default=5)
    p.add_argument("--structure", default=None, help="starting structure (default: a 64-molecule water box)")
    p.add_argument("--timestep-fs", type=float, default=0.5, help="δt of the peer, the baseline and MTS's inner step")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    models = mtsmlip.load(args.model)
    atoms = water_box(64, seed=1) if args.structure is None else read_structure(args.structure)
    initialise_momenta(atoms, 300.0, 0)
    n_values = [int(n) for n in args.n_inner.split(",")]
    inner_steps = 8 * math.lcm(*n_values)  # δt steps per block: a whole number of outer steps for every n
    dt_fs = args.timestep_fs
    block_fs = dt_fs * inner_steps
    ase_atoms = atoms.copy()
    ase_atoms.calc = models.models["baseline"].calculator()  # nequip's NequIPCalculator (with mtsmlip's input checks)
    runners = {
        "ASE VelocityVerlet + nequip calculator": (VelocityVerlet(ase_atoms, timestep=dt_fs * units.fs),
                                                   inner_steps),
        "mtsmlip engine, baseline (Verlet)": (Engine(atoms, *md_providers(models, atoms, baseline=True),
                                                     RunSettings(dt_fs, 1, baseline=True)), inner_steps),
    }
    for n in n_values:
        runners[f"mtsmlip engine, MTS n={n}"] = (Engine(atoms, *md_providers(models, atoms), RunSettings(dt_fs, n)),
                                                 inner_steps // n)
    wall = dict.fromkeys(runners, 0.0)
    for name, (runner, _) in runners.items():  # warm-up
        runner.run(1) if isinstance(runner, VelocityVerlet) else runner.run(1, progress=False)
    for _ in range(args.blocks):
        for name, (runner, steps) in runners.items():
            t0 = time.perf_counter()
            runner.run(steps) if isinstance(runner, VelocityVerlet) else runner.run(steps, progress=False)
            wall[name] += time.perf_counter() - t0
    simulated_fs = args.blocks * block_fs
    peer = ns_per_day(simulated_fs, wall["ASE VelocityVerlet + nequip calculator"])
    print(f"{len(atoms)} atoms, δt = {dt_fs:g} fs, {args.blocks} alternating blocks of {block_fs:g} fs each")
    ours = ns_per_day(simulated_fs, wall["mtsmlip engine, baseline (Verlet)"])
    print(f"{'run':<42}{'ns/day':>9}{'vs ASE peer':>13}{'vs our baseline':>17}")
    for name in runners:
        rate = ns_per_day(simulated_fs, wall[name])
        print(f"{name:<42}{rate:>9.3f}{rate / peer:>12.2f}x{rate / ours:>16.2f}x")


if __name__ == "__main__":
    main()
