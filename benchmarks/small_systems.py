"""Where a small system's time goes, and replica throughput.

Part 1, per-call cost by system size: one energy+forces call of a model through
the MD engine's force provider (what `md` and `compare` run), split into the
neighbour-list step (skin list and filtering to r_max), the model itself
(forward + autograd forces) and the rest (graph dict, scatter of edge forces,
dtype casts), and one whole engine step (velocity Verlet with that model:
integrator, safety check, observers) beside it. Systems: ethanol (9 atoms) and
aspirin (21) from rMD17, the 192-atom water box and its 2×2×2 repeat (1536).

Part 2, replicas: K copies of aspirin in one engine (:func:`mtsmlip.md.replicas`
places them beyond every cutoff, so they do not interact), Langevin at 300 K;
ns/day per replica and in total, for K = 1, 8, 64.

    python benchmarks/small_systems.py --model DIR_FOR_MOLECULES [--water water] [--replicas 1,8,64]

Models: the fast and baseline models of DIR (a `mtsmlip train` run on aspirin,
or anything with C, H and O); the water rows use the shipped water models. Timings are medians of
round-robin repeats (this machine is shared; compare ratios, not absolutes).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import ase.io
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mtsmlip.forces import md_providers  # noqa: E402
from mtsmlip.md.engine import Engine, MDInstability, initialise_momenta  # noqa: E402
from mtsmlip.md.settings import RunSettings  # noqa: E402
from mtsmlip.forces import ModelForces, deterministic  # noqa: E402
from mtsmlip.models import TrainedModels  # noqa: E402
from mtsmlip.shipped import resolve_model_dir  # noqa: E402
from model_cost import median_ms  # noqa: E402  (benchmarks/model_cost.py: round-robin medians)


def data_dir() -> Path:
    import os

    return Path(os.environ.get("MTSMLIP_DATA", REPO.parent / "shared" / "data"))


def structures() -> dict:
    water = ase.io.read(data_dir() / "water-cheng2019" / "water_1593.extxyz.gz", -1)
    return {"ethanol": ase.io.read(data_dir() / "rmd17" / "ethanol_train.extxyz.gz", 0),
            "aspirin": ase.io.read(data_dir() / "rmd17" / "aspirin_train.extxyz.gz", 0),
            "water": water, "water×8": water.repeat(2)}


def parts_of_a_call(provider: ModelForces, x: torch.Tensor) -> dict:
    """Callables for the whole provider call and for its two big parts."""
    def whole():
        provider(x)

    def neighbours():
        provider.neighbors.edges(x, provider.r_max)

    edge_index, vectors, _ = provider.neighbors.edges(x, provider.r_max)
    graph = provider.graph(x, edge_index, vectors)

    def model():
        with deterministic(x.device):
            provider.model(dict(graph))

    return {"call": whole, "neighbours": neighbours, "model": model}


def engine_step(loaded, atoms) -> callable:
    atoms = atoms.copy()
    initialise_momenta(atoms, 300.0, 0)
    provider = ModelForces(loaded, atoms)
    engine = Engine(atoms, provider, _zero, RunSettings(0.5, 1, None, None, baseline=True))
    return lambda: engine.run(1, progress=False)


def _zero(positions):
    return torch.zeros((), dtype=positions.dtype), torch.zeros_like(positions)


def per_call_table(models: dict, repeats: int) -> None:
    print(f"\nPer-call cost through the MD engine's provider (ms, median of {repeats}, "
          f"{torch.get_num_threads()} threads)")
    print(f"{'system':<10}{'atoms':>6}{'model':>10}{'call':>8}{'nlist':>8}{'network':>9}{'other':>8}{'MD step':>9}"
          f"{'µs/atom':>9}")
    for (name, atoms), label in ((item, label) for item in structures().items() for label in ("fast", "baseline")):
        loaded = (models["water"] if name.startswith("water") else models["molecule"]).models[label]
        provider = ModelForces(loaded, atoms)
        x = torch.tensor(atoms.positions, dtype=torch.float64)
        calls = {**parts_of_a_call(provider, x), "step": engine_step(loaded, atoms)}
        ms = median_ms(calls, repeats, warmup=5)
        other = ms["call"] - ms["neighbours"] - ms["model"]
        print(f"{name:<10}{len(atoms):>6}{label:>10}{ms['call']:>8.2f}{ms['neighbours']:>8.2f}{ms['model']:>9.2f}"
              f"{other:>8.2f}{ms['step']:>9.2f}{1000 * ms['step'] / len(atoms):>9.1f}")


def replica_table(model_dir, molecule, counts, steps: int) -> None:
    from mtsmlip.md.replicas import replicate

    models = TrainedModels.load(model_dir)
    print(f"\nReplicas of {molecule.get_chemical_formula()} in one engine (fast + slow, RESPA n = 4, "
          f"δt = 0.5 fs, Langevin 300 K, {steps} outer steps)")
    print(f"{'replicas':>9}{'atoms':>7}{'ms/outer step':>15}{'ns/day per replica':>20}{'ns/day total':>14}")
    base = None
    for k in counts:
        atoms = replicate(molecule, k, models.largest_cutoff_A() + 2.0)
        initialise_momenta(atoms, 300.0, 0)
        settings = RunSettings(0.5, 4, "langevin", 300.0, friction_per_fs=0.01)
        fast, slow = md_providers(models, atoms, False)
        engine = Engine(atoms, fast, slow, settings, seed=0)
        engine.run(3, progress=False)
        t0 = time.perf_counter()
        try:
            engine.run(steps, progress=False)
        except MDInstability as exc:  # a model's hole, met by one copy's velocities: time what ran
            print(f"{k:>9}{len(atoms):>7}   stopped ({exc}); timing the {engine.step - 3} steps before")
        seconds = (time.perf_counter() - t0) / max(engine.step - 3, 1)
        per_replica = settings.ns_per_day(1.0 / seconds)
        base = base or per_replica
        print(f"{k:>9}{len(atoms):>7}{1000 * seconds:>15.1f}{per_replica:>20.3f}{per_replica * k:>14.2f}"
              f"   ({per_replica * k / base:.1f}x the throughput of one)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a `mtsmlip train` run on the molecules' species (C, H, O)")
    parser.add_argument("--water", default="water", help="models for the water rows (default: shipped)")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--replicas", default="1,8,64")
    parser.add_argument("--replica-steps", type=int, default=40)
    parser.add_argument("--skip-per-call", action="store_true")
    args = parser.parse_args(argv)
    molecule_models = TrainedModels.load(resolve_model_dir(args.model))
    water_models = TrainedModels.load(resolve_model_dir(args.water))
    models = {"molecule": molecule_models, "water": water_models}
    if not args.skip_per_call:
        per_call_table(models, args.repeats)
    replica_table(resolve_model_dir(args.model), structures()["aspirin"],
                  [int(k) for k in args.replicas.split(",")], args.replica_steps)


if __name__ == "__main__":
    main()
