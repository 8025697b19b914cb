"""The conventional baseline's own largest stable step, with and without
hydrogen mass repartitioning (HMR), so that a speedup from heavier hydrogens
is not counted as MTS's gain (issue #12).

    python benchmarks/baseline_step.py --structure START.extxyz [--model water] \
        [--hmr-amu 0,2] [--timesteps-fs 0.5,0.75,1,1.25,1.5] [--nve-fs 200]

For each mass setting and δt, velocity Verlet with the baseline model runs
--nve-fs of NVE from the same start (its momenta, or 300 K Maxwell–Boltzmann)
and reports Tuckerman's ΔE/ΔK (conserved-energy over kinetic-energy
fluctuation) and the drift. A δt is stable by the rule of `--n-inner auto`
and of compare's fluctuation check: ΔE/ΔK at most max(2 × that of natural
masses at the shortest δt, 0.02), and no blow-up. Prints a table and the
largest stable δt per mass setting.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import ase.io
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mtsmlip.forces import md_providers  # noqa: E402
from mtsmlip import analysis as an  # noqa: E402
from mtsmlip.md.engine import Engine, initialise_momenta  # noqa: E402
from mtsmlip.md.respa import kinetic_energy_eV  # noqa: E402
from mtsmlip.md.safety import MDInstability  # noqa: E402
from mtsmlip.md.settings import RunSettings  # noqa: E402
from mtsmlip.models import TrainedModels  # noqa: E402
from mtsmlip.probe import ProbeSettings  # noqa: E402
from mtsmlip.shipped import resolve_model_dir  # noqa: E402


def numbers(text, kind=float):
    return [kind(x) for x in text.split(",") if x.strip()]


def nve_fluctuation(models, atoms, timestep_fs, hmr_amu, nve_fs):
    run = RunSettings(timestep_fs, 1, baseline=True, hmr_amu=hmr_amu)
    fast, slow = md_providers(models, atoms, True)
    engine = Engine(atoms.copy(), fast, slow, run, seed=0)
    steps, conserved, kinetic = [], [], []

    def record(e):
        steps.append(e.step)
        conserved.append(e.conserved_eV(e.state))
        kinetic.append(kinetic_energy_eV(e.state.momenta, e.state.masses))

    engine.attach(record)
    engine.run(run.steps_for(nve_fs / 1000.0), progress=False)
    t_ps = np.asarray(steps) * timestep_fs / 1000.0
    return an.energy_fluctuation_ratio(t_ps, conserved, kinetic), an.drift_meV_per_atom_per_ps(t_ps, conserved,
                                                                                               len(atoms))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--structure", required=True)
    p.add_argument("--model", default="water")
    p.add_argument("--hmr-amu", type=lambda t: numbers(t), default="0,2")
    p.add_argument("--timesteps-fs", type=lambda t: numbers(t), default="0.5,0.75,1,1.25,1.5")
    p.add_argument("--nve-fs", type=float, default=200.0)
    args = p.parse_args()
    models = TrainedModels.load(resolve_model_dir(args.model))
    atoms = ase.io.read(args.structure)
    initialise_momenta(atoms, 300.0, 0)
    rule = ProbeSettings()
    rows, reference = [], None
    for amu in args.hmr_amu:
        for dt in sorted(args.timesteps_fs):
            try:
                ratio, drift = nve_fluctuation(models, atoms, dt, amu, args.nve_fs)
            except MDInstability as exc:
                rows.append((amu, dt, None, None, f"unstable: {exc}"))
                break
            if reference is None:
                reference = ratio  # natural masses (the first setting) at the shortest step
            bound = max(rule.fluctuation_growth * reference, rule.fluctuation_floor)
            rows.append((amu, dt, ratio, drift, "ok" if ratio <= bound else f"ΔE/ΔK > {bound:.3g}"))
            print(f"hmr {amu:g} amu, δt {dt:g} fs: ΔE/ΔK {ratio:.4f}, drift {drift:.3f}", file=sys.stderr, flush=True)
    print(f"{'HMR amu':>8}{'δt fs':>7}{'ΔE/ΔK':>9}{'drift':>9}  verdict")
    for amu, dt, ratio, drift, verdict in rows:
        r = "-" if ratio is None else f"{ratio:.4f}"
        d = "-" if drift is None else f"{drift:.3f}"
        print(f"{amu:>8g}{dt:>7g}{r:>9}{d:>9}  {verdict}")
    for amu in args.hmr_amu:
        stable = [dt for a, dt, _, _, verdict in rows if a == amu and verdict == "ok"]
        print(f"HMR {amu:g} amu: largest stable δt {max(stable) if stable else 'none'} fs "
              f"(stops at the first failure: {next((v for a, _, _, _, v in rows if a == amu and v != 'ok'), 'none')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
