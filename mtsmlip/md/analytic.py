"""An analytic pair potential split in two smooth parts, for exactness tests and
demos: Lennard-Jones, smoothly truncated, split by a smooth switch into a
short-range part (the "fast" force) and a long-range remainder (the "slow" one).

    V(r) = 4ε[(σ/r)¹² − (σ/r)⁶] · C(r),   C: 1 → 0 on [r_cut_on, r_cut]
    V_fast = V · S,  V_slow = V · (1 − S),  S: 1 → 0 on [r_split_on, r_split_off]

Both switches are quintic smoothsteps (C², so MD conserves energy well).
"""

from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from vesin import NeighborList

PARTS = ("fast", "slow", "total")


def smooth_switch(r, r_on, r_off):
    """Quintic switch: 1 for r ≤ r_on, 0 for r ≥ r_off; returns (value, d/dr)."""
    t = np.clip((r - r_on) / (r_off - r_on), 0.0, 1.0)
    value = 1.0 - t**3 * (10.0 - 15.0 * t + 6.0 * t * t)
    slope = -30.0 * t * t * (1.0 - t) ** 2 / (r_off - r_on)
    return value, slope


def lennard_jones(r, sigma, epsilon):
    """4ε[(σ/r)¹² − (σ/r)⁶] and its r-derivative."""
    s6 = (sigma / r) ** 6
    return 4 * epsilon * (s6 * s6 - s6), 4 * epsilon * (-12 * s6 * s6 + 6 * s6) / r


def pair_energy(r, part, sigma, epsilon, r_split, r_cut):
    """Pair energy (eV) and dV/dr of one `part` for distances `r` (Å), shape (P,)."""
    v, dv = lennard_jones(r, sigma, epsilon)
    c, dc = smooth_switch(r, *r_cut)
    s, ds = smooth_switch(r, *r_split)
    if part == "slow":
        s, ds = 1.0 - s, -ds
    elif part == "total":
        s, ds = np.ones_like(r), np.zeros_like(r)
    return v * c * s, dv * c * s + v * dc * s + v * c * ds


class SplitLennardJones(Calculator):
    """ASE calculator for one part ("fast", "slow" or "total") of the split LJ.
    Defaults are argon (σ = 3.405 Å, ε = 10.3 meV)."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, part="total", sigma=3.405, epsilon=0.0103, r_split=(4.0, 5.5), r_cut=(7.0, 8.5)):
        if part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {part!r}")
        super().__init__()
        self.part, self.sigma, self.epsilon = part, sigma, epsilon
        self.r_split, self.r_cut = tuple(r_split), tuple(r_cut)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        periodic = bool(self.atoms.pbc.any())
        box = self.atoms.cell.array if periodic else np.zeros((3, 3))
        i, j, d_vec, d = NeighborList(cutoff=self.r_cut[1], full_list=False).compute(
            self.atoms.positions, box, periodic, quantities="ijDd")
        energy, de_dr = pair_energy(d, self.part, self.sigma, self.epsilon, self.r_split, self.r_cut)
        pair_forces = (de_dr / d)[:, None] * d_vec  # force on i; −that on j
        forces = np.zeros((len(self.atoms), 3))
        np.add.at(forces, i, pair_forces)
        np.add.at(forces, j, -pair_forces)
        self.results = {"energy": float(energy.sum()), "free_energy": float(energy.sum()), "forces": forces}
