"""MTS against the peer a user would run instead: nequip's ASE calculator (the
shipped baseline model) with ASE's VelocityVerlet at 0.5 fs, side by side with
our engine's baseline (velocity Verlet) and r-RESPA, on the same 192-atom water
box, in alternating blocks of equal simulated time. Prints ns/day and ratios.

    python benchmarks/vs_ase_verlet.py [--model water] [--n-inner 4] [--blocks 5]
"""

import argparse
import time
import warnings

from ase import units
from ase.md.verlet import VelocityVerlet

import mtsmlip
from mtsmlip.demo import water_box
from mtsmlip.md import Engine, RunSettings
from mtsmlip.md.engine import initialise_momenta


def ns_per_day(simulated_fs: float, wall_s: float) -> float:
    return simulated_fs * 1e-6 / wall_s * 86400.0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="water")
    p.add_argument("--n-inner", type=int, default=4)
    p.add_argument("--blocks", type=int, default=5)
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    models = mtsmlip.load(args.model)
    atoms = water_box(64, seed=1)
    initialise_momenta(atoms, 300.0, 0)
    block_fs = 4.0 * args.n_inner  # 8 outer steps of MTS, 8·n of the baseline
    ase_atoms = atoms.copy()
    ase_atoms.calc = models.baseline  # nequip's NequIPCalculator (with mtsmlip's input checks)
    runners = {
        "ASE VelocityVerlet + nequip calculator": (VelocityVerlet(ase_atoms, timestep=0.5 * units.fs),
                                                   8 * args.n_inner),
        "mtsmlip engine, baseline (Verlet)": (Engine(atoms, *models.providers(atoms, baseline=True),
                                                     RunSettings(0.5, 1, baseline=True)), 8 * args.n_inner),
        f"mtsmlip engine, MTS n={args.n_inner}": (Engine(atoms, *models.providers(atoms),
                                                         RunSettings(0.5, args.n_inner)), 8),
    }
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
    print(f"{len(atoms)} atoms, {args.blocks} alternating blocks of {block_fs:g} fs each")
    print(f"{'run':<42}{'ns/day':>9}{'vs ASE peer':>13}")
    for name in runners:
        rate = ns_per_day(simulated_fs, wall[name])
        print(f"{name:<42}{rate:>9.3f}{rate / peer:>12.2f}x")


if __name__ == "__main__":
    main()
