"""Labelled frames of a crystalline solid for the end-to-end table: fcc copper,
108 atoms (3×3×3 cubic cells, a = 3.61 Å), labelled by ASE's EMT potential
(Jacobsen, Stoltze, Nørskov 1996; a well-kept classical many-body potential that
ships with ASE, so the data can be made offline). Langevin MD with EMT (ASE's
integrator, 2 fs, one frame every 10 steps) at 300 K and 600 K, 250 frames
each: positions, cell, EMT energy (eV) and forces (eV/Å) in extended XYZ.

Usage: python training/systems/copper_emt.py OUT.extxyz
"""

import sys

import ase.io
from ase.build import bulk
from ase.calculators.emt import EMT

from mtsmlip.files import atomic_write
from mtsmlip.teacher import teacher_md_frames


def main(path) -> None:
    crystal = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(3)
    frames = teacher_md_frames(EMT(), crystal, (300.0, 600.0), 250, timestep_fs=2.0, interval=10, seed=0,
                               where="EMT copper")
    atomic_write(path, lambda tmp: ase.io.write(tmp, frames, format="extxyz"))
    print(f"{path}: {len(frames)} frames of {len(crystal)} Cu atoms labelled by EMT")


if __name__ == "__main__":
    main(sys.argv[1])
