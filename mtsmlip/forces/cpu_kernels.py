"""The per-call edge work of a model on the CPU, each piece one compiled loop (numba).

On the CPU a torch operation on a few thousand edges costs more in dispatch and
in its intermediate arrays than in arithmetic: the dozen operations that turn a
candidate list into the edges within r_max took 0.33 ms per fast call on 192
atoms of water, the two scatter-sums of the edge forces 0.2 ms, together about
half of the engine's time per inner step. One pass over the edges does the same
in about 0.05 ms (9964 candidates, warm; with a branch on which candidates it
keeps, 0.11 ms: about half of them are kept, in no order a branch predictor can
learn), the scatter in 0.02 ms.

Each loop does the arithmetic of the torch operations it replaces in the same
order, so the edge vectors and the summed forces are bit for bit those of the
torch path (tests/test_engine_device.py). The squared lengths that decide which
edges are kept may differ in their last bit (torch's ``vectors² @ ones`` may use
a fused multiply-add): an edge within one rounding of r_max can be kept by one
path and not the other, where the model's smooth cutoff makes its contribution
vanish to rounding. A GPU keeps the torch path (:mod:`mtsmlip.forces.model`).
"""

from __future__ import annotations

import numba
import numpy as np


def compiled(function):
    """`function` compiled by numba at its first call, the machine code cached
    beside this file (or in numba's user-wide cache) for later processes; where
    neither can be written (a read-only installation), compiled anew in each
    process (about a second per loop)."""
    try:
        return numba.njit(cache=True, nogil=True)(function)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return numba.njit(nogil=True)(function)


@compiled
def largest_move2_A2(positions, built_at):
    """The largest squared displacement of an atom since the list's build (Å²);
    NaN if any position is NaN (so that a blown-up state is never called fine)."""
    largest = 0.0
    for a in range(positions.shape[0]):
        d0 = positions[a, 0] - built_at[a, 0]
        d1 = positions[a, 1] - built_at[a, 1]
        d2 = positions[a, 2] - built_at[a, 2]
        moved2 = d0 * d0 + d1 * d1 + d2 * d2
        if moved2 > largest or moved2 != moved2:
            largest = moved2
            if moved2 != moved2:
                break
    return largest


@compiled
def edges_within(positions, edge_index, shift_vectors, r_max2_A2):
    """The candidate edges shorter than sqrt(r_max2_A2) (every candidate for inf,
    NaN vectors included), in their order: (edge_index (2, E) int64, vectors
    x[j] − x[i] + shift (E, 3) Å, the shortest kept edge's squared length, Å²;
    inf without edges, NaN if a kept edge is NaN, as torch's ``min``).

    One pass with no branch on whether an edge is kept: every candidate is
    written at the next free row and the row count advances by 0 or 1. Which
    candidates a cutoff keeps follows no pattern a branch predictor can learn,
    and a mispredicted branch per candidate had made the loop twice as slow."""
    n_candidates = edge_index.shape[1]
    keep_all = r_max2_A2 == np.inf
    index = np.empty((2, n_candidates), np.int64)
    vectors = np.empty((n_candidates, 3))
    kept, shortest2 = 0, np.inf
    for e in range(n_candidates):
        i, j = edge_index[0, e], edge_index[1, e]
        v0 = positions[j, 0] - positions[i, 0] + shift_vectors[e, 0]
        v1 = positions[j, 1] - positions[i, 1] + shift_vectors[e, 1]
        v2 = positions[j, 2] - positions[i, 2] + shift_vectors[e, 2]
        index[0, kept], index[1, kept] = i, j
        vectors[kept, 0], vectors[kept, 1], vectors[kept, 2] = v0, v1, v2
        length2 = v0 * v0 + v1 * v1 + v2 * v2
        keep = keep_all or length2 < r_max2_A2
        # (rarely true first, so that this branch is predictable; NaN, once seen, stays)
        if (length2 < shortest2 or length2 != length2) and keep and shortest2 == shortest2:
            shortest2 = length2
        kept += keep
    out_index = np.empty((2, kept), np.int64)
    out_index[0, :] = index[0, :kept]
    out_index[1, :] = index[1, :kept]
    return out_index, vectors[:kept], shortest2


@compiled
def atomic_forces(n_atoms, edge_index, edge_forces):
    """Forces (n_atoms, 3) float64 eV/Å from per-edge forces dE/d(edge vector):
    +f on each edge's first atom, −f on its second, summed in edge order (first
    all the + terms, then all the − terms, as two ``index_add_`` calls do)."""
    forces = np.zeros((n_atoms, 3))
    for e in range(edge_index.shape[1]):
        i = edge_index[0, e]
        for c in range(3):
            forces[i, c] += np.float64(edge_forces[e, c])
    for e in range(edge_index.shape[1]):
        j = edge_index[1, e]
        for c in range(3):
            forces[j, c] += -np.float64(edge_forces[e, c])
    return forces
