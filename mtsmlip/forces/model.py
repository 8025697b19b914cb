"""The force provider of one trained model at full speed: positions stay torch tensors.

Each model gets a :class:`SkinNeighborList`: a vesin list at ``r_max + skin``,
rebuilt only when some atom moved more than half the skin since the last build.
Every call filters its candidate edges to the model's own ``r_max`` (nequip models
give exactly zero beyond r_max, so this changes no force, only the cost), computes
the edge vectors once and hands them to the model, which returns the energy and
the per-edge forces dE/d(edge vector); atomic forces are their scatter-sum.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
from vesin import NeighborList

from ..data import check_image_count, check_species_known
from ..errors import DataError

DEFAULT_SKIN_A = 1.0


def torch_device(name: str) -> torch.device:
    """The torch device `name` (e.g. "cpu", "cuda", "cuda:1"), or DataError if it
    is not a device name or not present on this machine."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise DataError(f"--device {name!r}: not a torch device name ({exc})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DataError(f"--device {name!r}: no CUDA device on this machine (use --device cpu)")
    if device.type not in ("cpu", "cuda"):
        raise DataError(f"--device {name!r}: only cpu and cuda devices are supported")
    return device


@contextlib.contextmanager
def deterministic(device):
    """Bit-for-bit repeatable model calls on the CPU. nequip's backward of
    ``x[edge_src]`` (index_put_ with accumulate) adds float32 values with racing
    atomics when torch has several threads, so the same positions gave forces
    differing by ~1e-6 eV/Å from call to call and same-seed runs diverged from
    step 1; torch's deterministic mode runs that add serially (no slower on 2
    cores). The global flag is restored afterwards. Not applied on CUDA, where
    deterministic mode needs CUBLAS_WORKSPACE_CONFIG set before start-up."""
    if torch.device(device).type != "cpu":
        yield
        return
    was, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=warn_only)


class SkinNeighborList:
    """Candidate edges within ``cutoff_A + skin_A`` of the positions at the last
    build, in a canonical order (sorted by i, j, shift), so that the filtered edges
    never depend on when the list was built (bit-for-bit restarts).

    cell (3, 3) Å, rows are cell vectors; pbc (3,) bool; positions (N, 3) tensors.
    """

    def __init__(self, cutoff_A: float, skin_A: float, cell, pbc):
        self.cutoff_A, self.skin_A = float(cutoff_A), float(skin_A)
        self.cell = torch.as_tensor(np.asarray(cell, dtype=float))
        self.pbc = np.asarray(pbc, dtype=bool)
        self.built_at = None
        self.n_builds = 0

    def needs_rebuild(self, positions: torch.Tensor) -> bool:
        """Some atom moved more than half the skin (the one host sync of a call).
        Never for non-finite positions: the engine's safety check stops those."""
        if self.built_at is None:
            return True
        moved2 = float((positions - self.built_at).square().sum(1).max())
        return math.isfinite(moved2) and moved2 > (0.5 * self.skin_A) ** 2

    def build(self, positions: torch.Tensor) -> None:
        x = positions.detach().cpu().numpy()
        box = self.cell.numpy() if self.pbc.any() else np.zeros((3, 3))
        nl = NeighborList(cutoff=self.cutoff_A + self.skin_A, full_list=True)
        i, j, shifts = nl.compute(x, box, self.pbc.tolist(), quantities="ijS")
        order = np.lexsort((shifts[:, 2], shifts[:, 1], shifts[:, 0], j, i))
        device = positions.device
        self.edge_index = torch.from_numpy(np.stack([i[order], j[order]]).astype(np.int64)).to(device)
        self.shift_vectors = (torch.from_numpy(shifts[order].astype(float)) @ self.cell).to(positions)
        self.built_at = positions.detach().clone()
        self.n_builds += 1

    def edges(self, positions: torch.Tensor, r_max_A: float):
        """Edges shorter than `r_max_A` now: edge_index (2, E), edge vectors
        x[j] − x[i] + shift (E, 3) Å."""
        if self.needs_rebuild(positions):
            self.build(positions)
        i, j = self.edge_index
        vectors = positions.index_select(0, j) - positions.index_select(0, i) + self.shift_vectors
        keep = torch.nonzero(vectors.square().sum(1) < r_max_A * r_max_A).squeeze(1)
        return self.edge_index.index_select(1, keep), vectors.index_select(0, keep)


class ModelForces:
    """Force provider (:class:`mtsmlip.forces.ForceProvider`) for one nequip model.

    positions (N, 3) float64 tensor in; (energy eV 0-d tensor, forces (N, 3)
    float64 tensor eV/Å) out. ``min_distance_A`` is the shortest edge of the last
    call (for the engine's safety check); :meth:`virial_eV` the virial of the last
    call (kept as references, computed only when asked).
    """

    def __init__(self, loaded, atoms, skin_A: float = DEFAULT_SKIN_A, device="cpu"):
        device = torch_device(device)
        where = f"structure {atoms.get_chemical_formula()}"
        check_species_known(atoms, loaded.type_names, where)
        check_image_count(atoms, loaded.r_max + skin_A, where)
        self.model, self.r_max = loaded.module.eval().to(device), loaded.r_max
        self.cutoff_A, self.device, self.dtype = float(loaded.r_max), device, torch.float64
        self.n_atoms = len(atoms)
        index = {name: k for k, name in enumerate(loaded.type_names)}
        types = [index[s] for s in atoms.get_chemical_symbols()]
        self.atom_types = torch.tensor(types, dtype=torch.int64, device=device)
        self.neighbors = SkinNeighborList(self.r_max, skin_A, atoms.cell.array, atoms.pbc)
        self.min_distance_A = None
        self.last_edges = None

    def __call__(self, positions: torch.Tensor):
        edge_index, vectors = self.neighbors.edges(positions, self.r_max)
        lengths2 = vectors.detach().square().sum(1)
        self.min_distance_A = lengths2.min().sqrt() if len(lengths2) else float("inf")
        with deterministic(positions.device):
            out = self.model(self.graph(positions, edge_index, vectors))
        forces = torch.zeros_like(positions)
        edge_forces = out["edge_forces"].to(positions.dtype)
        self.last_edges = (vectors, edge_forces)
        forces.index_add_(0, edge_index[0], edge_forces)
        forces.index_add_(0, edge_index[1], -edge_forces)
        return out["total_energy"].detach().reshape(()).to(positions.dtype), forces

    def virial_eV(self) -> np.ndarray:
        """Virial (3, 3) eV of the last call, −Σ_edges r ⊗ dE/dr (= −stress·volume,
        the convention of ASE and i-PI)."""
        vectors, edge_forces = self.last_edges
        return -(vectors.detach().T @ edge_forces.detach()).cpu().numpy()

    def graph(self, positions, edge_index, vectors) -> dict:
        return {
            "pos": positions.detach(),
            "atom_types": self.atom_types,
            "edge_index": edge_index,
            "edge_vectors": vectors.detach(),
        }
