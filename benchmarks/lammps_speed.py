"""ns/day in LAMMPS (nequip's pair styles, the plugin of `mtsmlip lammps-build`):
the baseline with velocity Verlet against MTS (r-RESPA, hybrid/overlay) at
several n, on water boxes of several sizes and on 1 or more MPI ranks, with
mtsmlip's own engine beside it on the same machine in the same run. Prints a
table, and where LAMMPS spends an MTS step (its timing breakdown: Pair is the
models; Neigh, Comm, Modify and Other are LAMMPS's own work).

    python benchmarks/lammps_speed.py [--model water] [--atoms 192,1536,12288] [--n-inner 2,4,8]
        [--ranks 1,2] [--fs 40] [--plugin DIR]

Every run simulates the same time (--fs, NVE from 300 K velocities) after a
warm-up run of one outer step that is not timed (LAMMPS's own "Loop time").
A pair style that runs on one rank only (pair_nequip) is not run on more.
"""

import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

PERF = re.compile(r"Loop time of ([\d.eE+-]+) on (\d+) procs for (\d+) steps")
SECTION = re.compile(r"^(Pair|Neigh|Comm|Output|Modify|Other)\s*\|\s*([\d.eE+-]+)?\s*\|?\s*([\d.eE+-]+)", re.M)


def ns_per_day(simulated_fs: float, wall_s: float) -> float:
    return simulated_fs * 1e-6 / wall_s * 86400.0


def timed_input(text: str, steps: int) -> str:
    """The written input, without dumps and restarts, running a 1-step warm-up then `steps`."""
    keep = [line for line in text.splitlines()
            if not line.startswith(("dump", "restart", "write_restart", "run ", "variable        start", "${start}",
                                    "thermo "))]
    keep.insert(keep.index(next(l for l in keep if l.startswith("plugin"))) + 1, "read_data       structure.data")
    return "\n".join(keep + ["thermo          1000000", "run             1", f"run             {steps}"]) + "\n"


def run_lammps(install, run_dir: Path, text: str, name: str, ranks: int, threads: int) -> tuple[float, dict]:
    """(loop seconds of the timed run, {section: seconds}) from LAMMPS's own timers."""
    from mtsmlip.integrations.lammps_build import run_env

    (run_dir / name).write_text(text)
    cmd = [str(install.mpiexec), "-np", str(ranks), str(install.lmp), "-in", name, "-log", "none", "-nocite"]
    done = subprocess.run(cmd, cwd=run_dir, capture_output=True, text=True, env=run_env(install, threads))
    if done.returncode != 0:
        raise RuntimeError(f"LAMMPS failed on {name}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    loops = PERF.findall(done.stdout)
    last = done.stdout.rsplit("Loop time of", 1)[1]
    sections = {m.group(1): float(m.group(3)) for m in SECTION.finditer(last)}
    return float(loops[-1][0]), sections


def engine_seconds(models, atoms, n_inner: int, outer_steps: int, baseline: bool) -> float:
    from mtsmlip.forces import md_providers
    from mtsmlip.md import Engine, RunSettings

    atoms = atoms.copy()
    settings = RunSettings(0.5, n_inner, baseline=baseline)
    engine = Engine(atoms, *md_providers(models, atoms, baseline=baseline), settings)
    engine.run(1, progress=False)
    start = time.perf_counter()
    engine.run(outer_steps, progress=False)
    return time.perf_counter() - start


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="water")
    p.add_argument("--atoms", default="192,1536,12288", help="water box sizes (multiples of 3)")
    p.add_argument("--n-inner", default="2,4,8")
    p.add_argument("--ranks", default="1,2", help="MPI ranks x threads per rank, e.g. 1,2,1x2")
    p.add_argument("--fs", type=float, default=40.0, help="simulated time per run (fs)")
    p.add_argument("--plugin", default=None)
    p.add_argument("--no-engine", action="store_true", help="leave mtsmlip's own engine out")
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    import torch

    import mtsmlip
    from mtsmlip.demo import water_box
    from mtsmlip.integrations.lammps_build import find_plugin, lammps_install
    from mtsmlip.integrations.lammps_input import LammpsRun, write_run
    from mtsmlip.md.engine import initialise_momenta

    models = mtsmlip.load(args.model)
    install = lammps_install()
    plugin = find_plugin(args.plugin)
    n_values = [int(n) for n in args.n_inner.split(",")]
    layouts = [tuple(int(x) for x in (r.split("x") + ["1"])[:2]) for r in args.ranks.split(",")]  # (ranks, threads)
    inner_steps = round(args.fs / 0.5)
    inner_steps = math.lcm(*n_values) * math.ceil(inner_steps / math.lcm(*n_values))
    rows = []
    print(f"# LAMMPS {install.version}, torch {torch.__version__} ({torch.get_num_threads()} threads in mtsmlip's "
          f"engine), {inner_steps * 0.5:g} fs per run", flush=True)
    for n_atoms in [int(a) for a in args.atoms.split(",")]:
        atoms = water_box(n_atoms // 3, 1.0, seed=1)
        initialise_momenta(atoms, 300.0, 0)
        with tempfile.TemporaryDirectory(prefix="lammps-speed-") as tmp:
            run_dir = Path(tmp)
            record = write_run(models, atoms, run_dir, LammpsRun(n_inner=max(n_values), timestep_fs=0.5, steps=1),
                               plugin, say=lambda *a: print("  " + a[0], flush=True))
            base_text = (run_dir / "in.baseline").read_text()
            mts_text = (run_dir / "in.mts").read_text()
            cases = [("baseline", 1, timed_input(base_text, inner_steps), record["max_ranks"]["baseline"])]
            for n in n_values:
                text = mts_text.replace(f"respa 2 {max(n_values)} hybrid", f"respa 2 {n} hybrid")
                text = re.sub(r"timestep +[\d.eE+-]+", f"timestep        {n * 0.5e-3:g}", text)
                cases.append((f"MTS n={n}", n, timed_input(text, inner_steps // n), record["max_ranks"]["mts"]))
            for label, n, text, max_ranks in cases:
                for ranks, threads in layouts:
                    if max_ranks is not None and ranks > max_ranks:
                        continue
                    seconds, sections = run_lammps(install, run_dir, text, "in.timed", ranks, threads)
                    rows.append({"atoms": n_atoms, "run": label, "engine": f"LAMMPS, {ranks} rank(s) x {threads} thread(s)",
                                 "ns_day": ns_per_day(inner_steps * 0.5, seconds), "sections": sections})
                    print(f"  {n_atoms} atoms  {label:<9} LAMMPS {ranks}x{threads}: {rows[-1]['ns_day']:.3f} ns/day  "
                          + "  ".join(f"{k} {v / seconds:.0%}" for k, v in sections.items()), flush=True)
                if not args.no_engine:
                    seconds = engine_seconds(models, atoms, n, inner_steps // n, baseline=(label == "baseline"))
                    rows.append({"atoms": n_atoms, "run": label, "engine": "mtsmlip engine",
                                 "ns_day": ns_per_day(inner_steps * 0.5, seconds)})
                    print(f"  {n_atoms} atoms  {label:<9} mtsmlip engine: {rows[-1]['ns_day']:.3f} ns/day", flush=True)
    print("\n| atoms | run | engine | ns/day | × LAMMPS baseline (same ranks) |")
    print("|---|---|---|---|---|")
    for row in rows:
        base = next((r for r in rows if r["atoms"] == row["atoms"] and r["run"] == "baseline"
                     and r["engine"] == row["engine"]), None)
        ratio = f"{row['ns_day'] / base['ns_day']:.2f}×" if base else "–"
        print(f"| {row['atoms']} | {row['run']} | {row['engine']} | {row['ns_day']:.3f} | {ratio} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
