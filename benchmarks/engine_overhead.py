"""Engine overhead: time per inner step spent outside the model calls, for the
ASE class (MultiTimeStep on two MLIPCalculators) and the full-speed path
(engine.Engine on torch tensors), on the same untrained default-preset pair
(FAST_PRESET inside, SLOW_PRESET outside, float32) on a 192-atom water box.

    python benchmarks/engine_overhead.py [--outer-steps 10] [--n-inner 4] [--repeats 3]

"Model time" is the time inside the nequip modules' forward (energy + autograd
forces); energies scaled by 0.02 (see timed_pair). Everything else (neighbour lists, data conversion, ASE bookkeeping,
the integrator) is overhead. Prints a table; reports the best of --repeats.
"""

from __future__ import annotations

import argparse
import sys
import warnings
import time
from pathlib import Path

import ase.io
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mtsmlip.md import MultiTimeStep  # noqa: E402
from mtsmlip.md.engine import Engine, RunSettings  # noqa: E402
from mtsmlip.forces import ModelForces  # noqa: E402
from mtsmlip.models import FAST_PRESET, SLOW_PRESET, LoadedModel, build_model, model_config  # noqa: E402

WATER = REPO.parent / "shared" / "data" / "water-cheng2019" / "water_1593.extxyz.gz"


class TimedModule(torch.nn.Module):
    """Wraps a model; accumulates seconds spent in its forward."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.seconds, self.calls = inner, 0.0, 0

    def forward(self, data):
        start = time.perf_counter()
        out = self.inner(data)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def water_box():
    if WATER.is_file():
        atoms = ase.io.read(WATER, index=0)
    else:  # 64 molecules on a lattice, same size
        from tests.physics import small_water_box

        atoms = small_water_box(n_side=4)
    atoms.set_momenta(np.zeros((len(atoms), 3)))  # untrained models hold no bonds: no thermal flight
    return atoms


def timed_pair():
    pair = {}
    for name, preset in (("fast", FAST_PRESET), ("slow", SLOW_PRESET)):
        # untrained weights give ~1 eV/Å forces with no bonds to hold H: scaled down so
        # the box does not collapse within the timed steps (cost is unchanged)
        cfg = model_config(preset, ["H", "O"], seed=0, avg_num_neighbors=20.0, per_type_energy_scales=0.02)
        pair[name] = LoadedModel(TimedModule(build_model(cfg).eval()), cfg, {})
    return pair


def model_seconds(pair):
    return sum(m.module.seconds for m in pair.values())


def time_ase_class(atoms, pair, n_inner, outer_steps):
    md = MultiTimeStep(atoms.copy(), pair["fast"].calculator(), pair["slow"].calculator(), 0.5, n_inner)
    md.run(1)  # warm-up (first evaluation, allocations)
    m0, t0 = model_seconds(pair), time.perf_counter()
    md.run(outer_steps)
    return time.perf_counter() - t0, model_seconds(pair) - m0


def time_full_speed(atoms, pair, n_inner, outer_steps):
    fast, slow = ModelForces(pair["fast"], atoms), ModelForces(pair["slow"], atoms)
    engine = Engine(atoms, fast, slow, RunSettings(0.5, n_inner))  # no observer but the safety check
    engine.run(1, progress=False)
    m0, t0 = model_seconds(pair), time.perf_counter()
    engine.run(outer_steps, progress=False)
    return time.perf_counter() - t0, model_seconds(pair) - m0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--outer-steps", type=int, default=10)
    p.add_argument("--n-inner", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    atoms, pair = water_box(), timed_pair()
    inner_steps = args.outer_steps * args.n_inner
    rows = {}
    for label, fn in (("ASE class", time_ase_class), ("full-speed", time_full_speed)):
        runs = [fn(atoms, pair, args.n_inner, args.outer_steps) for _ in range(args.repeats)]
        rows[label] = min(runs, key=lambda r: r[0] - r[1])
    print(f"{len(atoms)} atoms, n_inner={args.n_inner}, {args.outer_steps} outer steps, "
          f"torch threads={torch.get_num_threads()}; per inner step, ms (best of {args.repeats}):")
    print(f"{'path':<12}{'total':>10}{'in models':>12}{'overhead':>11}{'overhead %':>12}")
    for label, (total, model) in rows.items():
        per = 1e3 / inner_steps
        print(f"{label:<12}{total * per:>10.2f}{model * per:>12.2f}{(total - model) * per:>11.2f}"
              f"{100 * (total - model) / total:>11.1f}%")
    ratio = rows["ASE class"][0] / rows["full-speed"][0]
    print(f"full-speed MTS is {ratio:.2f}x faster than the ASE class (wall time, same models)")


if __name__ == "__main__":
    main()
