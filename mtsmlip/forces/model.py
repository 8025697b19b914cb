"""The force provider of one trained model at full speed: positions stay torch tensors.

Each model gets a :class:`SkinNeighborList`: a vesin list at ``r_max + skin``,
rebuilt only when some atom moved more than half the skin since the last build.
On the CPU it is built by vesin from numpy arrays; on a GPU by vesin's torch
interface on the device, so positions never go to the host for it. Both give the
same edges in the same (canonical) order.
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

try:  # numba's loops for the CPU; without numba (e.g. a numpy it does not support yet), torch operations
    from . import cpu_kernels
except ImportError:  # pragma: no cover (numba is a dependency)
    cpu_kernels = None


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
    if torch.device(device).type != "cpu" or torch.are_deterministic_algorithms_enabled():
        yield  # (already on: the engine sets it once around its loop, not at every call)
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

    Eager (the default): every call checks whether some atom moved more than half
    the skin since the build (one host read) and rebuilds then. Lazy (set by the
    engine for a batch of steps): no read; ``stale`` (a device bool) records
    whether a call used a list some atom had outgrown, and ``moved2_A2`` the
    largest squared displacement since the build at the last call; the engine
    reads both once per batch and redoes a batch that used a stale list.

    filter_edges: hand the model only the edges shorter than its r_max (needs
    ``nonzero``, a host sync on a GPU); without, all candidates go in (nequip
    models give exactly zero beyond r_max: the same forces, more edges, no sync).

    builder: "auto" (vesin's torch interface on a CUDA device where the cell is
    at least twice the cutoff wide in every periodic direction, which its GPU
    code needs; numpy vesin otherwise), "numpy" or "torch".

    kernels: how each call turns the candidates into edges: "auto" (compiled
    loops, :mod:`mtsmlip.forces.cpu_kernels`, for positions on the CPU; torch
    operations on a GPU or where numba cannot be imported), "compiled" (CPU
    positions only) or "torch". Both give the same vectors and forces, bit for
    bit (see cpu_kernels for the one exception, at r_max to rounding).
    """

    BUILDERS = ("auto", "numpy", "torch")
    KERNELS = ("auto", "compiled", "torch")

    def __init__(self, cutoff_A: float, skin_A: float, cell, pbc, filter_edges: bool = True, builder: str = "auto",
                 kernels: str = "auto"):
        if builder not in self.BUILDERS:
            raise ValueError(f"neighbour list builder must be one of {self.BUILDERS} (got {builder!r})")
        if kernels not in self.KERNELS:
            raise ValueError(f"edge kernels must be one of {self.KERNELS} (got {kernels!r})")
        if kernels == "compiled" and cpu_kernels is None:
            raise ValueError("edge kernels 'compiled' need numba, which cannot be imported here")
        self.kernels = kernels
        self.cutoff_A, self.skin_A = float(cutoff_A), float(skin_A)
        self.cell = torch.as_tensor(np.asarray(cell, dtype=float))
        self.pbc = np.asarray(pbc, dtype=bool)
        self.filter_edges = bool(filter_edges)
        self.builder = builder
        self.built_at = self.host_arrays = None
        self.n_builds = 0
        self.lazy, self.stale, self.moved2_A2 = False, None, None

    @property
    def half_skin2_A2(self) -> float:
        return (0.5 * self.skin_A) ** 2

    def outgrown(self, moved2_A2: float) -> bool:
        """Some atom moved more than half the skin since the build. Never for
        non-finite positions: the engine's safety check stops those."""
        return math.isfinite(moved2_A2) and moved2_A2 > self.half_skin2_A2

    def largest_move2_A2(self, positions: torch.Tensor, compiled: bool = False):
        """The largest squared displacement since the build (Å²): a device 0-d
        tensor, or a float from the compiled loop."""
        if compiled:
            return cpu_kernels.largest_move2_A2(host_array(positions), self.host_arrays_of_build()[0])
        return (positions - self.built_at).square().sum(1).max()

    def begin_lazy(self) -> None:
        """Stop checking at every call; collect ``stale`` and ``moved2_A2`` instead."""
        self.lazy, self.stale, self.moved2_A2 = True, None, None

    def end_lazy(self) -> None:
        self.lazy = False

    def build(self, positions: torch.Tensor) -> None:
        on_device = self.builder == "torch" or (self.builder == "auto" and positions.device.type == "cuda"
                                                and self.wide_enough_for_device())
        edge_index, shifts = (self._build_torch if on_device else self._build_numpy)(positions.detach())
        self.edge_index = edge_index
        self.shift_vectors = (shifts.to(torch.float64) @ self.cell.to(shifts.device)).to(positions)
        self.built_at = positions.detach().clone()
        self.host_arrays = None  # made at the first compiled call (host_arrays_of_build)
        self.ones = torch.ones(3, dtype=positions.dtype, device=positions.device)
        self.n_builds += 1

    def host_arrays_of_build(self) -> tuple:
        """(positions at the build, edge_index, shift vectors) as the host arrays
        the compiled loops read at every call, made once per build."""
        if self.host_arrays is None:
            self.host_arrays = (host_array(self.built_at), np.ascontiguousarray(self.edge_index.numpy()),
                                host_array(self.shift_vectors))
        return self.host_arrays

    def wide_enough_for_device(self) -> bool:
        """Every periodic direction of the cell at least 2 (cutoff + skin) wide
        (perpendicular heights), or no periodic direction."""
        if not self.pbc.any():
            return True
        cell = self.cell.numpy()
        volume = abs(np.linalg.det(cell))
        heights = [volume / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3])) for k in range(3)]
        reach = 2 * (self.cutoff_A + self.skin_A)
        return all(h >= reach for h, periodic in zip(heights, self.pbc) if periodic)

    def _build_numpy(self, positions: torch.Tensor):
        """(edge_index (2, E) int64, integer shifts (E, 3)) on the positions' device, from numpy vesin."""
        box = self.cell.numpy() if self.pbc.any() else np.zeros((3, 3))
        nl = NeighborList(cutoff=self.cutoff_A + self.skin_A, full_list=True)
        i, j, shifts = nl.compute(positions.cpu().numpy(), box, self.pbc.tolist(), quantities="ijS")
        order = np.lexsort((shifts[:, 2], shifts[:, 1], shifts[:, 0], j, i))
        device = positions.device
        edge_index = torch.from_numpy(np.stack([i[order], j[order]]).astype(np.int64)).to(device)
        return edge_index, torch.from_numpy(shifts[order].astype(np.int64)).to(device)

    def _build_torch(self, positions: torch.Tensor):
        """The same as :meth:`_build_numpy`, built by vesin's torch interface on the
        positions' device and sorted there (one key per edge: i, j, then the shift)."""
        from vesin_torch import NeighborList as TorchNeighborList

        box = self.cell.to(positions) if self.pbc.any() else torch.zeros((3, 3), dtype=positions.dtype,
                                                                              device=positions.device)
        nl = TorchNeighborList(cutoff=self.cutoff_A + self.skin_A, full_list=True)
        i, j, shifts = nl.compute(positions, box, torch.as_tensor(self.pbc, device=positions.device),
                                  quantities="ijS")
        i, j, shifts = i.to(torch.int64), j.to(torch.int64), shifts.to(torch.int64)
        if shifts.numel():
            span = 2 * int(shifts.abs().max()) + 1  # one host read per build, not per step
            offset = shifts + span // 2
            key = ((i * len(positions) + j) * span + offset[:, 0]) * span + offset[:, 1]
            key = key * span + offset[:, 2]
            order = torch.argsort(key)
            i, j, shifts = i[order], j[order], shifts[order]
        return torch.stack([i, j]), shifts

    def compiled_for(self, positions: torch.Tensor) -> bool:
        """Whether calls at `positions` take the compiled loops (see ``kernels``)."""
        if self.kernels == "torch" or cpu_kernels is None:
            return False
        if positions.device.type != "cpu":
            if self.kernels == "compiled":
                raise ValueError(f"edge kernels 'compiled' run on the CPU only (positions on {positions.device})")
            return False
        return True

    def edges(self, positions: torch.Tensor, r_max_A: float):
        """Edges shorter than `r_max_A` now (all candidates without filter_edges):
        edge_index (2, E), edge vectors x[j] − x[i] + shift (E, 3) Å, and the
        shortest edge length (Å; inf without edges; a 0-d tensor on the device,
        a float from the compiled loops). ``stale`` and ``moved2_A2`` of a lazy
        list are device tensors too, or plain numbers from the compiled loops."""
        compiled = self.compiled_for(positions)
        if self.built_at is None:
            self.build(positions)
        else:
            moved2 = self.largest_move2_A2(positions.detach(), compiled)
            if self.lazy:  # no host read: recorded for the engine, which reads it once per batch
                outgrown = moved2 > self.half_skin2_A2
                self.stale = outgrown if self.stale is None else self.stale | outgrown
                self.moved2_A2 = moved2
            elif self.outgrown(float(moved2)):
                self.build(positions)
        return (self._within_compiled if compiled else self._within_torch)(positions, r_max_A)

    def _within_torch(self, positions: torch.Tensor, r_max_A: float):
        """The edges of :meth:`edges` by torch operations on the positions' device."""
        edge_index = self.edge_index
        i, j = edge_index
        vectors = positions.index_select(0, j) - positions.index_select(0, i) + self.shift_vectors
        lengths2 = vectors.detach().square() @ self.ones  # 10x faster than .sum(1) over rows of 3 on a CPU
        if self.filter_edges:
            keep = torch.nonzero(lengths2 < r_max_A * r_max_A).squeeze(1)
            edge_index, vectors, lengths2 = edge_index.index_select(1, keep), vectors.index_select(0, keep), \
                lengths2.index_select(0, keep)
        shortest = lengths2.min().sqrt() if lengths2.numel() else torch.full((), math.inf, dtype=positions.dtype,
                                                                                device=positions.device)
        return edge_index, vectors, shortest

    def _within_compiled(self, positions: torch.Tensor, r_max_A: float):
        """The edges of :meth:`edges` by the compiled loop on host arrays (the
        torch tensors returned share the arrays' memory)."""
        r_max2 = r_max_A * r_max_A if self.filter_edges else math.inf
        edge_index, vectors, shortest2 = cpu_kernels.edges_within(host_array(positions),
                                                                  *self.host_arrays_of_build()[1:], r_max2)
        return torch.from_numpy(edge_index), torch.from_numpy(vectors), math.sqrt(shortest2)


def default_edge_filter(device: torch.device) -> bool:
    """Whether :class:`ModelForces` filters edges to r_max by default on `device`:
    on the CPU only (on a GPU, the filter's nonzero makes every call wait)."""
    return device.type == "cpu"


def host_array(tensor: torch.Tensor) -> np.ndarray:
    """A CPU tensor's values as a C-contiguous float64 array (no copy when it is one)."""
    return np.ascontiguousarray(tensor.detach().numpy(), dtype=np.float64)


class ModelForces:
    """Force provider (:class:`mtsmlip.forces.ForceProvider`) for one nequip model.

    positions (N, 3) float64 tensor in; (energy eV 0-d tensor, forces (N, 3)
    float64 tensor eV/Å) out. ``min_distance_A`` is the shortest edge of the last
    call (for the engine's safety check); :meth:`virial_eV` the virial of the last
    call (kept as references, computed only when asked).

    filter_edges: hand the model only the edges shorter than its r_max (see
    :class:`SkinNeighborList`). None (the default): on the CPU, where the
    compiled loop filters in the same pass; not on a GPU, where the filter's
    ``nonzero`` would make every call wait for the device (the model then gets
    every candidate within r_max + skin: the same forces, more edges).
    """

    def __init__(self, loaded, atoms, skin_A: float = DEFAULT_SKIN_A, device="cpu", filter_edges: bool | None = None):
        device = torch_device(device)
        if filter_edges is None:
            filter_edges = default_edge_filter(device)
        where = f"structure {atoms.get_chemical_formula()}"
        check_species_known(atoms, loaded.type_names, where)
        check_image_count(atoms, loaded.r_max + skin_A, where)
        self.model, self.r_max = loaded.module.eval().to(device), loaded.r_max
        self.cutoff_A, self.device, self.dtype = float(loaded.r_max), device, torch.float64
        self.n_atoms = len(atoms)
        index = {name: k for k, name in enumerate(loaded.type_names)}
        types = [index[s] for s in atoms.get_chemical_symbols()]
        self.atom_types = torch.tensor(types, dtype=torch.int64, device=device)
        self.neighbors = SkinNeighborList(self.r_max, skin_A, atoms.cell.array, atoms.pbc, filter_edges)
        self.min_distance_A = None
        self.last_edges = None

    def __call__(self, positions: torch.Tensor):
        edge_index, vectors, self.min_distance_A = self.neighbors.edges(positions, self.r_max)
        with deterministic(positions.device):
            out = self.model(self.graph(positions, edge_index, vectors))
        edge_forces = out["edge_forces"].detach()
        self.last_edges = (vectors, edge_forces)
        return out["total_energy"].detach().reshape(()).to(positions.dtype), \
            self.atomic_forces(positions, edge_index, edge_forces)

    def atomic_forces(self, positions, edge_index, edge_forces) -> torch.Tensor:
        """(N, 3) float64: the scatter-sum of the edge forces, +f on each edge's
        first atom, −f on its second (compiled on the CPU, torch operations on a GPU)."""
        if self.neighbors.compiled_for(positions):
            return torch.from_numpy(cpu_kernels.atomic_forces(self.n_atoms, edge_index.numpy(), edge_forces.numpy()))
        forces = torch.zeros_like(positions)
        edge_forces = edge_forces.to(positions.dtype)
        forces.index_add_(0, edge_index[0], edge_forces)
        # a negated copy, not alpha=-1: index_add_ with alpha takes a slow path on the CPU
        # (295 against 50 µs for 4000 edges); the sums are bit for bit the same
        forces.index_add_(0, edge_index[1], edge_forces.neg())
        return forces

    def neighbor_lists(self) -> list:
        return [self.neighbors]

    def virial_eV(self) -> np.ndarray:
        """Virial (3, 3) eV of the last call, −Σ_edges r ⊗ dE/dr (= −stress·volume,
        the convention of ASE and i-PI)."""
        vectors, edge_forces = self.last_edges
        return -(vectors.detach().T @ edge_forces.detach().to(vectors.dtype)).cpu().numpy()

    def graph(self, positions, edge_index, vectors) -> dict:
        return {
            "pos": positions.detach(),
            "atom_types": self.atom_types,
            "edge_index": edge_index,
            "edge_vectors": vectors.detach(),
        }
