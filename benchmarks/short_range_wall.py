"""What the short-range wall (nequip's ZBL on the fast model) costs in accuracy,
and what it buys at short range: the same data, seed and default budget trained
with `short_range_wall: zbl` and `null`, side by side.

    python benchmarks/short_range_wall.py --data ethanol_train.extxyz.gz --out runs/wall [--max-minutes 20]
    python benchmarks/short_range_wall.py --data ethanol_train.extxyz.gz --existing data=runs/eth,none=runs/eth-nowall

Each run is an ordinary `mtsmlip train` (no baseline; resumed if interrupted)
in OUT/data, OUT/zbl and OUT/none; --existing evaluates finished runs instead. The table gives the held-out (test split) force and
energy MAE of the fast model and of the pair, the training wall time, and the
lowest energy of each species pair's dimer between 0.1 and 1.0 Å relative to
its energy at 1.0 Å (a hole is a large negative number).
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml


def train(data: Path, out: Path, wall, max_minutes) -> float:
    """Train (or resume) one run; its wall time in s (0 if it had finished)."""
    if (out / "manifest.json").is_file():
        return 0.0
    out.parent.mkdir(parents=True, exist_ok=True)
    config = out.parent / f"{out.name}.yaml"
    config.write_text(yaml.safe_dump({"short_range_wall": wall, "baseline": False}))
    argv = [sys.executable, "-m", "mtsmlip", "train", "--data", str(data), "--config", str(config), "--out", str(out)]
    if max_minutes:
        argv += ["--max-minutes", str(max_minutes)]
    if out.exists():
        argv.append("--resume")
    t0 = time.perf_counter()
    subprocess.run(argv, check=True)
    return time.perf_counter() - t0


def deepest_dimer_dip_eV(calc, a: str, b: str) -> float:
    from ase import Atoms

    energies = []
    for r in np.linspace(0.1, 1.0, 37):
        dimer = Atoms(a + b, positions=[[0, 0, 0], [0, 0, r]], cell=np.eye(3) * 20.0, pbc=False)
        dimer.calc = calc
        energies.append(dimer.get_potential_energy())
    return float(min(energies) - energies[-1])


def row(name: str, out: Path, data: Path, wall_s: float) -> dict:
    import mtsmlip
    from mtsmlip.evaluate import error_report, predict, select_frames

    models = mtsmlip.load(out)
    frames = select_frames(data, models.manifest, split="test")
    report = error_report(frames, predict(models, frames, data))
    species = models.models["fast"].type_names
    dips = {f"{a}-{b}": deepest_dimer_dip_eV(models.total, a, b)
            for a, b in itertools.combinations_with_replacement(species, 2)}
    wall_time = wall_s or sum(models.manifest["wall_time_s"].values())
    return {"wall": name, "fast": report["fast"], "pair": report["total"], "train_s": wall_time, "dips": dips}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-minutes", type=float, default=None, help="cap of each training run")
    parser.add_argument("--walls", default="data,zbl,none", help="comma-separated walls to train and compare")
    parser.add_argument("--existing", default="", metavar="NAME=DIR,...",
                        help="finished runs to evaluate instead of training (e.g. two default runs with and without the wall)")
    args = parser.parse_args(argv)
    rows = []
    existing = dict(item.split("=", 1) for item in args.existing.split(",") if item)
    for name, run_dir in existing.items():
        rows.append(row(name, Path(run_dir), args.data, 0.0))
    for name in (w for w in args.walls.split(",") if w and not existing):
        wall = None if name == "none" else name
        seconds = train(args.data, args.out / name, wall, args.max_minutes)
        rows.append(row(name, args.out / name, args.data, seconds))
    print(f"\nheld-out errors on {args.data.name} (test split), meV/Å and meV/atom; dimer dip: lowest energy "
          "between 0.1 and 1.0 Å minus that at 1.0 Å (eV)")
    print("| wall | fast F MAE | pair F MAE | pair E MAE | training (min) | deepest dimer dip (eV) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        dips = ", ".join(f"{k} {v:+.2f}" for k, v in r["dips"].items())
        print(f"| {r['wall']} | {r['fast']['force_mae_meV_per_A']:.1f} | {r['pair']['force_mae_meV_per_A']:.1f} | "
              f"{r['pair']['energy_mae_meV_per_atom']:.2f} | {r['train_s'] / 60:.1f} | {dips} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
