"""Path-integral MD of the water box in i-PI: the learned split with ring-polymer
contraction against conventional full-bead PIMD with the baseline.

Three runs of `mtsmlip ipi-input` + run.sh, one after the other (nothing else
should run beside them):
  - mts:      fast every 0.5 fs on all P beads, slow every n·0.5 fs on P' beads;
  - pair:     fast + slow every 0.5 fs on all P beads (n = 1, no contraction):
              the same potential as mts without MTS or contraction, which tells
              what the integrator and contraction change from what the model does;
  - baseline: the baseline model every 0.5 fs on all P beads (what users run).
With --diagnose, two more runs take the MTS run apart:
  - mts_all_beads: MTS at n without contraction (slow on all P beads);
  - contraction_n1: contraction without MTS (n = 1, slow on P' beads).
Both under PILE-L at 300 K for the same simulated time. Printed: ms per 0.5 fs
of simulated time (from the rows i-PI writes, start-up excluded), the speedup,
the centroid-virial quantum kinetic energy per H and per O atom (mean ± block
standard error, after --discard-ps), and the O–H and O–O RDF differences over
all beads, with the baseline's own half-against-half difference as the noise
floor. Saves pimd_rdf.png and pimd.json in --out. A finished run is not run
again (delete its folder to redo it).

    python benchmarks/ipi_pimd.py --out runs/pimd
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import ase.io
import numpy as np

from mtsmlip.analysis.geometry import block_mean
from mtsmlip.analysis.plots import plot_rdf
from mtsmlip.analysis.structure import rdf, rdf_differences
from mtsmlip.data import read_structure

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MTSMLIP_DATA", REPO.parent / "shared" / "data"))


def arguments():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="water")
    p.add_argument("--structure", default=str(DATA / "water-cheng2019" / "water_1593.extxyz.gz"))
    p.add_argument("--beads", type=int, default=8)
    p.add_argument("--contract-beads", type=int, default=2)
    p.add_argument("--n-inner", type=int, default=4)
    p.add_argument("--timestep-fs", type=float, default=0.5)
    p.add_argument("--ps", type=float, default=0.25, help="simulated ps per run")
    p.add_argument("--discard-ps", type=float, default=0.05, help="ring-polymer thermalisation, not averaged")
    p.add_argument("--sample-fs", type=float, default=4.0, help="simulated fs between output rows and frames")
    p.add_argument("--temperature-K", type=float, default=300.0)
    p.add_argument("--out", default="runs/pimd")
    p.add_argument("--diagnose", action="store_true", help="also MTS without contraction and contraction without MTS")
    return p.parse_args()


def run_ipi(name, args, extra, n_inner):
    """Write and run one i-PI run (unless it finished before); (folder, ms per 0.5 fs)."""
    out = Path(args.out) / name
    steps = round(args.ps * 1000 / (args.timestep_fs * n_inner))
    stride = max(1, round(args.sample_fs / (args.timestep_fs * n_inner)))
    timing = out / "timing.json"
    if timing.is_file():
        return out, json.loads(timing.read_text())["ms_per_inner_step"]
    subprocess.run(["mtsmlip", "ipi-input", "--model", args.model, "--structure", args.structure, "--out", str(out),
                    "--overwrite", "--beads", str(args.beads), "--timestep-fs", str(args.timestep_fs),
                    "--steps", str(steps), "--stride", str(stride), "--temperature-K", str(args.temperature_K),
                    "--thermostat", "langevin", *extra], check=True)
    rows_file = out / "simulation.out"
    rows_file.unlink(missing_ok=True)
    process = subprocess.Popen(["bash", str(out / "run.sh")])
    first, shown = None, 0
    while process.poll() is None:
        time.sleep(0.5)
        now = data_rows(rows_file)
        if first is None and now >= 1:
            first = (time.monotonic(), now)
        if now > shown:
            print(f"{name}: {now - 1}/{steps // stride} rows", file=sys.stderr, flush=True)
            shown = now
    if process.returncode != 0:
        sys.exit(f"{name}: run.sh failed (see {out})")
    rows = data_rows(rows_file) - first[1]
    ms = (time.monotonic() - first[0]) * 1000 / (rows * stride * n_inner)
    timing.write_text(json.dumps({"ms_per_inner_step": ms, "steps": steps, "stride": stride}))
    return out, ms


def data_rows(path) -> int:
    if not path.is_file():
        return 0
    return sum(1 for line in path.read_text().splitlines() if line.strip() and not line.startswith("#"))


def columns(path) -> dict:
    """{property as i-PI names it: 0-based column} from the header i-PI writes
    ("# column   7     --> kinetic_cv{electronvolt}(H) : ...")."""
    found = {}
    for line in path.read_text().splitlines():
        if line.startswith("# column"):
            number, name = line[len("# column"):].split("-->")
            found[name.split(" : ")[0].strip()] = int(number) - 1
    return found


def kinetic_per_atom(out, args, counts):
    """{species: BlockMean of the centroid-virial kinetic energy per atom (meV)} after the discard."""
    path = out / "simulation.out"
    rows, column = np.loadtxt(path, ndmin=2), columns(path)
    keep = rows[:, column["time{picosecond}"]] >= args.discard_ps
    return {s: block_mean(rows[keep, column[f"kinetic_cv{{electronvolt}}({s})"]] * 1000 / counts[s], n_blocks=5)
            for s in sorted(counts)}


def bead_frames(out, args):
    """Frames of every bead after the discard (wrapped into the cell)."""
    frames = []
    for bead in range(args.beads):
        trajectory = ase.io.read(out / f"simulation.pos_{bead}.extxyz", index=":")
        start = int(round(len(trajectory) * args.discard_ps / args.ps))
        for atoms in trajectory[start:]:
            atoms.pbc = True
            atoms.wrap()
            frames.append(atoms)
    return frames


def main():
    args = arguments()
    structure = read_structure(args.structure)
    counts = {s: structure.get_chemical_symbols().count(s) for s in set(structure.get_chemical_symbols())}
    runs = {
        "mts": run_ipi("mts", args, ["--n-inner", str(args.n_inner), "--contract-beads", str(args.contract_beads)],
                       args.n_inner),
        "pair": run_ipi("pair", args, ["--n-inner", "1"], 1),
        "baseline": run_ipi("baseline", args, ["--baseline", "--n-inner", "1"], 1),
    }
    if args.diagnose:
        runs["mts_all_beads"] = run_ipi("mts_all_beads", args, ["--n-inner", str(args.n_inner)], args.n_inner)
        runs["contraction_n1"] = run_ipi("contraction_n1", args, ["--n-inner", "1", "--contract-beads",
                                                                  str(args.contract_beads)], 1)
    kinetic = {name: kinetic_per_atom(out, args, counts) for name, (out, _ms) in runs.items()}
    frames = {name: bead_frames(out, args) for name, (out, _ms) in runs.items()}
    pairs = [("O", "H"), ("O", "O")]
    rdfs = {name: rdf(f, 6.0, 120, pairs) for name, f in frames.items()}
    half = len(frames["baseline"]) // 2
    noise = rdf_differences(rdf(frames["baseline"][:half], 6.0, 120, pairs),
                            rdf(frames["baseline"][half:], 6.0, 120, pairs))
    differences = {ref: rdf_differences(rdfs["mts"], rdfs[ref]) for ref in runs if ref != "mts"}
    plot_rdf(rdfs, Path(args.out) / "pimd_rdf.png")
    report(args, runs, kinetic, differences, noise)


def report(args, runs, kinetic, differences, noise):
    base_ms = runs["baseline"][1]
    print(f"\n{args.beads}-bead PIMD of {args.structure} at {args.temperature_K:g} K (PILE-L), {args.ps:g} ps per run, "
          f"averages after {args.discard_ps:g} ps")
    print("| run | Δt (fs) | beads (fast / slow) | ms per 0.5 fs | speedup | K_cv H (meV/atom) | K_cv O (meV/atom) |")
    print("|---|---|---|---|---|---|---|")
    rows = {}
    labels = {"mts": "MTS pair + contraction", "pair": "pair, n = 1", "baseline": "baseline",
              "mts_all_beads": "MTS pair, no contraction", "contraction_n1": "pair + contraction, n = 1"}
    for name, (_out, ms) in runs.items():
        dt = args.timestep_fs * (args.n_inner if name.startswith("mts") else 1)
        contracted = name in ("mts", "contraction_n1")
        beads = f"{args.beads} / {args.contract_beads}" if contracted else f"{args.beads}"
        k = kinetic[name]
        print(f"| {labels[name]} | {dt:g} | {beads} | {ms:.0f} | {base_ms / ms:.2f}x | "
              f"{k['H'].mean:.1f} ± {k['H'].stderr:.1f} | {k['O'].mean:.1f} ± {k['O'].stderr:.1f} |")
        rows[name] = {"outer_fs": dt, "ms_per_inner_step": ms, "speedup": base_ms / ms,
                      "kinetic_cv_meV_per_atom": {s: [v.mean, v.stderr] for s, v in k.items()}}
    for ref, diff in differences.items():
        print(f"RDF difference MTS vs {ref}: O–H {diff[('O', 'H')]:.3f}, O–O {diff[('O', 'O')]:.3f}")
    print(f"baseline, half vs half (noise): O–H {noise[('O', 'H')]:.3f}, O–O {noise[('O', 'O')]:.3f}")
    pair_names = {("O", "H"): "O-H", ("O", "O"): "O-O"}
    summary = {"runs": rows, "settings": vars(args),
               "rdf_difference_of_mts": {ref: {n: diff[p] for p, n in pair_names.items()}
                                         for ref, diff in differences.items()},
               "rdf_noise_floor": {n: noise[p] for p, n in pair_names.items()}}
    (Path(args.out) / "pimd.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
