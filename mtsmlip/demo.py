"""Show the point of mtsmlip in one command: the same water, several times faster.

Builds a box of water molecules at a given density itself (no dataset needed),
equilibrates it with the baseline model, runs ``compare`` (baseline velocity
Verlet against r-RESPA at several n) and prints the table and where the report is.
An MTS run that blows up fails its n in the table; a baseline that blows up
ends the demo with a message and exit code 3, as in ``compare``.
"""

from __future__ import annotations

import math
import sys

import ase.io
import numpy as np
from ase import Atoms, units
from ase.build import molecule
from scipy.spatial.transform import Rotation

from .files import atomic_write

WATER_MASS_AMU = 18.015
AMU_PER_G_CM3_TO_A3 = 1e24 / units.mol  # volume (Å³) of 1 amu at 1 g/cm³


def water_box(n_molecules: int = 64, density_g_cm3: float = 1.0, seed: int = 0) -> Atoms:
    """`n_molecules` randomly oriented rigid-geometry waters on a jittered cubic
    lattice in a periodic cube of the given density. Deterministic per seed.
    Returns Atoms ordered O, H, H per molecule."""
    per_side = math.ceil(round(n_molecules ** (1 / 3), 9))
    length_A = (n_molecules * WATER_MASS_AMU * AMU_PER_G_CM3_TO_A3 / density_g_cm3) ** (1 / 3)
    rng = np.random.default_rng(seed)
    sites = list(np.ndindex(per_side, per_side, per_side))
    chosen = rng.permutation(len(sites))[:n_molecules]
    spacing_A = length_A / per_side
    box = Atoms(cell=np.eye(3) * length_A, pbc=True)
    for k in sorted(chosen):
        box += _placed_water(np.array(sites[k]) * spacing_A + spacing_A / 2, rng)
    box.wrap()
    return box


def _placed_water(centre_A, rng) -> Atoms:
    w = molecule("H2O")
    w.positions -= w.get_center_of_mass()
    w.positions = w.positions @ Rotation.random(random_state=int(rng.integers(1 << 31))).as_matrix().T
    w.positions += centre_A + rng.uniform(-0.1, 0.1, 3)
    return w


def run(args) -> int:
    from .compare import CompareSettings, compare
    from .compare_report import format_table
    from .errors import DataError
    from .files import check_output_dir
    from .limits import check_atoms
    from .md.safety import MDInstability
    from .shipped import resolve_model_dir

    model_dir = resolve_model_dir(args.model)
    out = check_output_dir(args.out)
    check_atoms(3 * args.molecules)
    structure = out / "water_box.extxyz"
    box = water_box(args.molecules, 1.0, args.seed)
    if structure.is_file() and len(ase.io.read(structure)) != len(box):
        raise DataError(f"{structure}: a demo of {len(ase.io.read(structure)) // 3} molecules is in {out}; "
                        f"give --molecules {len(ase.io.read(structure)) // 3} to continue it, or another --out")
    if not structure.is_file():
        atomic_write(structure, lambda tmp: ase.io.write(tmp, box, format="extxyz"))
    cfg = CompareSettings(ps=args.ps, n_inner=tuple(args.n_inner), temperature_K=args.temperature_K,
                          equilibrate_ps=args.equilibrate_ps, seed=args.seed, system="liquid")
    print(f"mtsmlip demo: {args.molecules} water molecules at 1 g/cm³, models from {model_dir}")
    try:
        result = compare(model_dir, structure, cfg, out, progress_bar=not args.no_progress)
    except MDInstability as exc:  # the baseline blew up (an MTS run that does fails its n in the report)
        print(f"mtsmlip demo: unstable: {exc}", file=sys.stderr)
        return 3
    print(format_table(result))
    print(f"report: {out / 'report.md'}")
    return 0
