"""Cost of one energy+forces call of the fast, slow and baseline models on a
192-atom water box: median of repeats after warm-up, and the ratio baseline/fast
(the most an MTS integrator can gain per inner step).

    python benchmarks/model_cost.py [--model DIR] [--repeats 20] [--device cpu]

Without --model, untrained models are built from models.FAST_PRESET and
models.SLOW_PRESET (cost does not depend on the weights). The box is the first
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


def calculators(model_dir=None, device="cpu") -> dict:
    if model_dir is not None:
        import mtsmlip

        models = mtsmlip.load(model_dir)
        return {name: models.calculator(name, device) for name in models.models}
    from mtsmlip.models import FAST_PRESET, SLOW_PRESET, LoadedModel, build_model, model_config

    out = {}
    for name, preset in (("fast", FAST_PRESET), ("slow", SLOW_PRESET), ("baseline", SLOW_PRESET)):
        cfg = model_config(preset, ["H", "O"], seed=0, avg_num_neighbors=30.0)
        out[name] = LoadedModel(build_model(cfg).eval(), cfg, {}).calculator(device)
    return out


def median_ms(calc, atoms, repeats, warmup=3) -> float:
    atoms = atoms.copy()
    atoms.calc = calc
    times = []
    for i in range(warmup + repeats):
        atoms.positions += 1e-4  # a new geometry each call: no cached results
        t0 = time.perf_counter()
        atoms.get_forces()
        if i >= warmup:
            times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory from `mtsmlip train`")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    atoms = water_box_192()
    costs = {name: median_ms(calc, atoms, args.repeats) for name, calc in calculators(args.model, args.device).items()}
    print(f"{len(atoms)}-atom water box, {args.device}, median of {args.repeats} energy+forces calls")
    print(f"{'model':<10} {'ms/call':>9}")
    for name, ms in costs.items():
        print(f"{name:<10} {ms:9.1f}")
    if "baseline" in costs:
        print(f"baseline/fast cost ratio: {costs['baseline'] / costs['fast']:.1f}")


if __name__ == "__main__":
    main()
