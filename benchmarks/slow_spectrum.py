"""What moves the slow force's spectrum: the fraction of each pair's slow-force
power above 1/(3Δt) (the resonance margin of `--n-inner auto`) at the outer
steps that matter, its rate of change along the motion, and the cost of a
longer outer step, side by side for several trained pairs (issue #12).

    python benchmarks/slow_spectrum.py --structure START.extxyz NAME=MODEL_DIR ... [--fs 200]

Each pair runs at n = 1 (velocity Verlet on fast + slow) in NVE for --fs from
the same start (its momenta), forces every δt = 0.5 fs. Printed per pair: RMS
slow force; RMS rate of change dF_slow/dt along the trajectory (finite
differences of the sampled forces); their ratio, a characteristic angular
frequency ω_slow (1/fs) and its period 2π/ω; and the slow power above
1/(3Δt) for n = 4, 5, 6, 8 (the probe accepts ≤ 1e-3).
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
from mtsmlip.md.settings import RunSettings  # noqa: E402
from mtsmlip.models import TrainedModels  # noqa: E402
from mtsmlip.probe import reference_segment  # noqa: E402
from mtsmlip.shipped import resolve_model_dir  # noqa: E402

TIMESTEP_FS = 0.5
N_VALUES = (4, 5, 6, 8)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--structure", required=True)
    p.add_argument("--fs", type=float, default=200.0)
    p.add_argument("pairs", nargs="+", metavar="NAME=MODEL_DIR")
    args = p.parse_args()
    atoms = ase.io.read(args.structure)
    initialise_momenta(atoms, 300.0, 0)
    rows = []
    for item in args.pairs:
        name, _, directory = item.partition("=")
        models = TrainedModels.load(resolve_model_dir(directory))

        def make(a, run, models=models):
            fast, slow = md_providers(models, a, run.baseline)
            return Engine(a, fast, slow, run, seed=0)

        trace, (freq_THz, power) = reference_segment(make, atoms, RunSettings(TIMESTEP_FS, 1), args.fs)
        slow = np.array(trace.slow)
        rate = np.diff(slow, axis=0) / TIMESTEP_FS  # eV/Å/fs
        rms, rms_rate = float(np.sqrt(np.mean(slow**2))), float(np.sqrt(np.mean(rate**2)))
        above = [an.power_above_frequency_fraction(freq_THz, power, an.nyquist_THz(n * TIMESTEP_FS) * 2 / 3)
                 for n in N_VALUES]
        rows.append((name, rms, rms_rate, above))
        print(f"{name}: done", file=sys.stderr, flush=True)
    head = f"{'pair':<22}{'F_slow RMS':>11}{'dF/dt RMS':>11}{'ω 1/fs':>8}{'2π/ω fs':>9}"
    head += "".join(f"{'P>1/3Δt n=' + str(n):>15}" for n in N_VALUES)
    print(head)
    for name, rms, rms_rate, above in rows:
        omega = rms_rate / rms
        print(f"{name:<22}{rms:>11.4f}{rms_rate:>11.4f}{omega:>8.3f}{2 * np.pi / omega:>9.1f}"
              + "".join(f"{a:>15.5f}" for a in above))
    print("(F in eV/Å, dF/dt in eV/Å/fs, along an n = 1 NVE segment of each pair from the same start)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
