"""Cost of one energy+forces call of the fast, slow and baseline models on a
192-atom water box: median of repeats after warm-up, the ratio baseline/fast, and
the speedup MTS could reach per n if only model calls cost time.

    python benchmarks/model_cost.py [--model DIR|water] [--repeats 20] [--threads N] [--device cpu]

Times both ways a model is called, round-robin: through the MD engine's force
provider (what `md` and `compare` run) and through the ASE calculator. Without
--model, untrained models are built from models.FAST_PRESET and models.SLOW_PRESET (cost does not depend on the weights). The box is the first
frame of the water data file if present, else 64 water molecules built with ase.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

WATER = Path(__file__).resolve().parents[2] / "shared" / "data" / "water-cheng2019" / "water_1593.extxyz.gz"


def water_box_192(seed=0):
    """192-atom liquid-density water box (Å)."""
    if WATER.is_file():
        from mtsmlip.data import read_frames

        return read_frames(WATER, index="0")[0]
    from ase import Atoms
    from ase.build import molecule
    from scipy.spatial.transform import Rotation

    rng, box = np.random.default_rng(seed), Atoms(cell=np.eye(3) * 12.42, pbc=True)
    for ijk in np.ndindex(4, 4, 4):
        w = molecule("H2O")
        w.positions = w.positions @ Rotation.random(random_state=int(rng.integers(1 << 30))).as_matrix().T
        box += Atoms(w.numbers, w.positions + (np.array(ijk) + 0.5) * 3.105)
    return box


def loaded_models(model_dir=None) -> dict:
    """{name: LoadedModel}: a trained model directory (or 'water'), else untrained presets."""
    if model_dir is not None:
        import mtsmlip

        return dict(mtsmlip.load(model_dir).models)
    from mtsmlip.models import FAST_PRESET, SLOW_PRESET, LoadedModel, build_model, model_config

    out = {}
    for name, preset in (("fast", FAST_PRESET), ("slow", SLOW_PRESET), ("baseline", SLOW_PRESET)):
        cfg = model_config(preset, ["H", "O"], seed=0, avg_num_neighbors=30.0)
        out[name] = LoadedModel(build_model(cfg).eval(), cfg, {})
    return out


def ase_call(loaded, atoms, device):
    """One energy+forces call through the ASE calculator (new geometry each call)."""
    atoms = atoms.copy()
    atoms.calc = loaded.calculator(device)

    def call():
        atoms.positions += 1e-4  # a new geometry each call: no cached results
        atoms.get_forces()

    return call


def engine_call(loaded, atoms, device):
    """One call through the MD engine's force provider (what `md`/`compare` run)."""
    import torch

    from mtsmlip.md.torch_forces import ModelForces

    provider = ModelForces(loaded, atoms, device=device)
    state = {"x": torch.tensor(atoms.positions, dtype=torch.float64, device=device)}

    def call():
        state["x"] = state["x"] + 1e-4
        provider(state["x"])

    return call


def median_ms(calls: dict, repeats: int, warmup: int = 3) -> dict:
    """Median wall time (ms) of each call, timed round-robin so that load changes
    on a shared machine hit every entry alike."""
    times = {key: [] for key in calls}
    for i in range(warmup + repeats):
        for key, call in calls.items():
            t0 = time.perf_counter()
            call()
            if i >= warmup:
                times[key].append(1000 * (time.perf_counter() - t0))
    return {key: statistics.median(t) for key, t in times.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory from `mtsmlip train`, or 'water'")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    atoms = water_box_192()
    models = loaded_models(args.model)
    calls = {}
    for name, loaded in models.items():
        calls[(name, "engine")] = engine_call(loaded, atoms, args.device)
        calls[(name, "ase")] = ase_call(loaded, atoms, args.device)
    ms = median_ms(calls, args.repeats)
    print(f"{len(atoms)}-atom water box, {args.device}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats} energy+forces calls (ms)")
    print(f"{'model':<10} {'r_max Å':>8} {'MD engine':>10} {'ASE calc':>10}")
    for name, loaded in models.items():
        print(f"{name:<10} {loaded.r_max:8.1f} {ms[(name, 'engine')]:10.1f} {ms[(name, 'ase')]:10.1f}")
    if {"fast", "slow", "baseline"} <= set(models):
        fast, slow, base = (ms[(k, "engine")] for k in ("fast", "slow", "baseline"))
        print(f"baseline/fast cost ratio (MD engine): {base / fast:.1f}")
        print("speedup bound per n (model calls only: baseline / (fast + slow/n)):")
        print("  " + "  ".join(f"n={n}: {base / (fast + slow / n):.2f}x" for n in (2, 4, 6, 8, 10)))


if __name__ == "__main__":
    main()
