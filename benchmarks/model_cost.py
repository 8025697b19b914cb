"""Cost of one energy+forces call of the fast, slow and baseline models on
water boxes of 192 atoms and its 2x2x2 supercell (1536 atoms): median of repeats
after warm-up, the ratio baseline/fast, and the speedup MTS could reach per n
if only model calls cost time, baseline / (fast + slow/n), at each size.

    python benchmarks/model_cost.py [--model DIR|water] [--sizes 192,1536] [--repeats 20]
                                    [--threads N] [--device cpu] [--no-ase]

Times both ways a model is called, round-robin: through the MD engine's force
provider (what `md` and `compare` run) and through the ASE calculator. Without
--model, untrained models are built from models.FAST_PRESET, SLOW_PRESET and
BASELINE_PRESET (cost does not depend on the weights). The 192-atom box is the
first frame of the water data file if present, else 64 water molecules built
with ase; larger sizes repeat it (192·k³ atoms).
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
    from mtsmlip.models import BASELINE_PRESET, FAST_PRESET, SLOW_PRESET, LoadedModel, build_model, model_config

    out = {}
    for name, preset in (("fast", FAST_PRESET), ("slow", SLOW_PRESET), ("baseline", BASELINE_PRESET)):
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

    from mtsmlip.forces import ModelForces

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


def water_box(n_atoms: int):
    """The 192-atom box repeated k times along each axis (n_atoms = 192·k³)."""
    k = round((n_atoms / 192) ** (1 / 3))
    if 192 * k**3 != n_atoms:
        raise SystemExit(f"--sizes: {n_atoms} is not 192·k³ (192, 1536, 5184, ...)")
    return water_box_192().repeat(k)


def cost_table(models: dict, atoms, repeats: int, device: str, with_ase: bool) -> dict:
    """{(name, path): median ms} for every model, through the engine (and ASE)."""
    calls = {}
    for name, loaded in models.items():
        calls[(name, "engine")] = engine_call(loaded, atoms, device)
        if with_ase:
            calls[(name, "ase")] = ase_call(loaded, atoms, device)
    return median_ms(calls, repeats)


def print_costs(models: dict, ms: dict, n_atoms: int, with_ase: bool, n_values=(2, 4, 6, 8, 10)) -> None:
    print(f"{'model':<10} {'r_max Å':>8} {'MD engine':>10}" + (f" {'ASE calc':>10}" if with_ase else ""))
    for name, loaded in models.items():
        ase_ms = f" {ms[(name, 'ase')]:10.1f}" if with_ase else ""
        print(f"{name:<10} {loaded.r_max:8.1f} {ms[(name, 'engine')]:10.1f}{ase_ms}")
    if {"fast", "slow", "baseline"} <= set(models):
        fast, slow, base = (ms[(k, "engine")] for k in ("fast", "slow", "baseline"))
        print(f"baseline/fast {base / fast:.1f}, baseline/slow {base / slow:.2f} (MD engine, {n_atoms} atoms)")
        print("speedup bound per n (model calls only: baseline / (fast + slow/n)):")
        print("  " + "  ".join(f"n={n}: {base / (fast + slow / n):.2f}x" for n in n_values))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory from `mtsmlip train`, or 'water'")
    parser.add_argument("--sizes", default="192,1536", help="atoms per box, comma-separated (192·k³)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--no-ase", action="store_true", help="time only the MD engine's path")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    models = loaded_models(args.model)
    for n_atoms in (int(n) for n in args.sizes.split(",")):
        atoms = water_box(n_atoms)
        ms = cost_table(models, atoms, args.repeats, args.device, not args.no_ase)
        print(f"\n{len(atoms)}-atom water box, {args.device}, {torch.get_num_threads()} threads, "
              f"median of {args.repeats} energy+forces calls (ms)")
        print_costs(models, ms, len(atoms), not args.no_ase)


if __name__ == "__main__":
    main()
