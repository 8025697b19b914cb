"""Engine overhead: time per inner step spent outside the model calls, for the
ASE class (MultiTimeStep on two calculators) and the full-speed path
(engine.Engine on torch tensors), on the same untrained default-preset pair
(FAST_PRESET inside, SLOW_PRESET outside, float32) on a 192-atom water box;
and the speedup of MTS at --n-inner over the baseline (BASELINE_PRESET,
velocity Verlet) on the full-speed path.

    python benchmarks/engine_overhead.py [--outer-steps 10] [--n-inner 4] [--repeats 3]
        [--before CHECKOUT] [--paths "ASE class,full-speed,baseline"]

--before CHECKOUT: the same measurement of the mtsmlip in CHECKOUT (e.g. a
``git worktree`` of an earlier revision), interleaved with this one's, printed
side by side: before and after in one run.

"Model time" is the time inside the nequip modules' forward (energy + autograd
forces); energies scaled by 0.02 (see timed_pair). Everything else (neighbour
lists, data conversion, ASE bookkeeping, the integrator, safety checks) is
overhead. Reports the best of --repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
WATER = Path(os.environ.get("MTSMLIP_DATA", REPO.parent / "shared" / "data")) / "water-cheng2019" / "water_1593.extxyz.gz"


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
    import ase.io

    if WATER.is_file():  # decompressed first: ase seeks in the file, which a gzip stream makes take minutes
        import gzip
        import io

        with gzip.open(WATER, "rt") as f:
            atoms = ase.io.read(io.StringIO(f.read()), index=0, format="extxyz")
    else:  # 64 molecules on a lattice, same size
        sys.path.insert(0, str(REPO))
        from tests.physics import small_water_box

        atoms = small_water_box(n_side=4)
    atoms.set_momenta(np.zeros((len(atoms), 3)))  # untrained models hold no bonds: no thermal flight
    return atoms


def timed_models():
    from mtsmlip.models import BASELINE_PRESET, FAST_PRESET, SLOW_PRESET, LoadedModel, build_model, model_config

    models = {}
    for name, preset in (("fast", FAST_PRESET), ("slow", SLOW_PRESET), ("baseline", BASELINE_PRESET)):
        # untrained weights give ~1 eV/Å forces with no bonds to hold H: scaled down so
        # the box does not collapse within the timed steps (cost is unchanged)
        cfg = model_config(preset, ["H", "O"], seed=0, avg_num_neighbors=20.0, per_type_energy_scales=0.02)
        cfg.pop("pair_potential", None)
        models[name] = LoadedModel(TimedModule(build_model(cfg).eval()), cfg, {})
    return models


def model_seconds(models):
    return sum(m.module.seconds for m in models.values())


def model_forces_class():
    try:
        from mtsmlip.forces import ModelForces
    except ImportError:  # revisions before mtsmlip.forces
        from mtsmlip.md.torch_forces import ModelForces
    return ModelForces


def time_ase_class(atoms, models, n_inner, outer_steps):
    from mtsmlip.md import MultiTimeStep

    md = MultiTimeStep(atoms.copy(), models["fast"].calculator(), models["slow"].calculator(), 0.5, n_inner)
    md.run(1)  # warm-up (first evaluation, allocations)
    m0, t0 = model_seconds(models), time.perf_counter()
    md.run(outer_steps)
    return time.perf_counter() - t0, model_seconds(models) - m0


def time_engine(atoms, models, n_inner, outer_steps, baseline=False):
    from mtsmlip.md.engine import Engine, RunSettings

    ModelForces = model_forces_class()
    if baseline:
        fast = ModelForces(models["baseline"], atoms)
        engine = Engine(atoms, fast, lambda x: (0.0, x * 0), RunSettings(0.5, 1, baseline=True))
    else:
        fast, slow = ModelForces(models["fast"], atoms), ModelForces(models["slow"], atoms)
        engine = Engine(atoms, fast, slow, RunSettings(0.5, n_inner))  # no observer but the safety check
    engine.run(1, progress=False)
    m0, t0 = model_seconds(models), time.perf_counter()
    engine.run(outer_steps, progress=False)
    return time.perf_counter() - t0, model_seconds(models) - m0


def measure(args) -> dict:
    """{path: (seconds, model seconds)} per inner step of one repeat, in ms."""
    atoms, models = water_box(), timed_models()
    inner = args.outer_steps * args.n_inner
    timers = {"ASE class": lambda: time_ase_class(atoms, models, args.n_inner, args.outer_steps),
              "full-speed": lambda: time_engine(atoms, models, args.n_inner, args.outer_steps),
              "baseline": lambda: time_engine(atoms, models, 1, inner, baseline=True)}
    rows = {k: timers[k]() for k in args.paths}
    return {k: (1e3 * t / inner, 1e3 * m / inner) for k, (t, m) in rows.items()}


def one_repeat(code: Path, args) -> dict:
    """A repeat in a fresh process running the mtsmlip in `code`."""
    argv = [sys.executable, __file__, "--json", "--outer-steps", str(args.outer_steps), "--n-inner", str(args.n_inner),
            "--paths", ",".join(args.paths)]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    env = {**os.environ, "PYTHONPATH": str(code)}
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def best(runs: list) -> dict:
    return {k: min((r[k] for r in runs), key=lambda tm: tm[0] - tm[1]) for k in runs[0]}


def print_table(label: str, rows: dict) -> None:
    print(f"{label}:")
    print(f"  {'path':<12}{'total':>10}{'in models':>12}{'overhead':>11}{'overhead %':>12}")
    for path in [p for p in ("ASE class", "full-speed") if p in rows]:
        total, model = rows[path]
        print(f"  {path:<12}{total:>10.2f}{model:>12.2f}{total - model:>11.2f}{100 * (total - model) / total:>11.1f}%")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--outer-steps", type=int, default=10)
    p.add_argument("--n-inner", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--before", type=Path, default=None, help="a checkout of an earlier mtsmlip to set beside this one")
    p.add_argument("--paths", default="ASE class,full-speed,baseline",
                   help="what to time, comma-separated (the ASE class and the baseline take the longest)")
    p.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.paths = [x.strip() for x in args.paths.split(",") if x.strip()]
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    if args.json:
        print(json.dumps(measure(args)))
        return
    codes = {"after (this checkout)": REPO}
    if args.before is not None:
        codes = {f"before ({args.before})": args.before.resolve(), **codes}
    runs = {label: [] for label in codes}
    for _ in range(args.repeats):  # interleaved, so both see the same machine
        for label, code in codes.items():
            runs[label].append(one_repeat(code, args))
    print(f"192 atoms, n_inner={args.n_inner}, {args.outer_steps} outer steps, torch threads="
          f"{args.threads or torch.get_num_threads()}; per inner step, ms (best of {args.repeats}):")
    speedups = {}
    for label, r in runs.items():
        print_table(label, best(r))
        if {"baseline", "full-speed"} <= set(args.paths):
            speedups[label] = min(x["baseline"][0] for x in r) / min(x["full-speed"][0] for x in r)
    if speedups:
        print(f"MTS n={args.n_inner} against the baseline (velocity Verlet, full-speed path, wall time per 0.5 fs):")
    for label, ratio in speedups.items():
        print(f"  {label:<40}{ratio:.2f}x")


if __name__ == "__main__":
    main()
