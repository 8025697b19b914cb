"""A short-range wall as a nequip pair term, gated by the data.

Atoms pushed closer than anything in the training frames meet whatever the
network does there; a trained pair can have a hole, and MD finds it. This term
adds, for every pair of atoms i, j of species a, b within the model's cutoff,

    E_ij = ε · (σ_ab · r_ij)^−p · u(r_ij / r_max)

(u: nequip's polynomial cutoff envelope), with ε = 1 eV, p = 24 and σ_ab
solved so that E is 10⁻⁴ eV at the shortest a–b distance of the training
frames (:func:`mtsmlip.models.data_wall`), envelope included. Over the data it is negligible (10⁻⁴ eV at
the closest approach, 10⁻⁶ eV 20 % further out), so it costs no accuracy: the
network learns what remains. Below, it rises as r^−24: 0.5 eV at 0.7 of that
distance, 21 eV at 0.6, 1.7 keV at 0.5, steeper than any hole.

It is nequip's ``LennardJones(lj_style="repulsive")`` with per-type parameters
indexed so that each edge gets its own σ (in nequip 0.19.1 that module
broadcasts an (E,) parameter against (E, 1) lengths into an (E, E) energy with
per-type parameters). This module imports only torch and nequip, so nequip
packages (``mtsmlip export``) carry it.
"""

from __future__ import annotations

from typing import List

import torch
from nequip.data import AtomicDataDict
from nequip.nn import GraphModuleMixin
from nequip.nn.embedding.cutoffs import PolynomialCutoff
from nequip.nn.pair_potential import scatter, with_edge_vectors_


WALL_BOUNDS = {"exponent": (6.0, 48.0), "value_eV": (1e-8, 1.0)}  # refused outside these (hostile or broken files)


class DataGatedWall(GraphModuleMixin, torch.nn.Module):
    """ε·(σ_ab·r)^−p · u(r/r_max) per pair (half on each directed edge), summed onto
    atoms, with ε = 1 eV and σ_ab solved so that the whole term is `value_eV` at
    at_A[a][b] (the shortest a–b distance of the data), envelope included.
    at_A: symmetric (types × types) distances (Å); r_max: the model's cutoff (Å).
    Only the config sets the wall: its σ is not a saved weight."""

    exponent: float

    def __init__(self, type_names: List[str], at_A, r_max: float, value_eV: float = 1e-4, exponent: float = 24.0,
                 polynomial_cutoff_p: float = 6.0, per_atom_energy_field: str = AtomicDataDict.PER_ATOM_ENERGY_KEY,
                 irreps_in=None) -> None:
        super().__init__()
        self.per_atom_energy_field = per_atom_energy_field
        self._init_irreps(irreps_in=irreps_in, required_irreps_in=[AtomicDataDict.NORM_LENGTH_KEY],
                          irreps_out={self.per_atom_energy_field: "0e"})
        if self.per_atom_energy_field in self.irreps_in:
            self.irreps_out[self.per_atom_energy_field] = self.irreps_in[self.per_atom_energy_field]
        for name, value in (("exponent", exponent), ("value_eV", value_eV)):
            low, high = WALL_BOUNDS[name]
            if not (isinstance(value, (int, float)) and low <= float(value) <= high):
                raise ValueError(f"DataGatedWall: {name} must be a number from {low:g} to {high:g} (got {value!r})")
        r_max = float(r_max)
        at = torch.as_tensor(at_A, dtype=torch.float64)
        n = len(type_names)
        if at.shape != (n, n) or not torch.equal(at, at.T) or not bool(((at > 0) & (at < r_max)).all()):
            raise ValueError(f"DataGatedWall: at_A must be a symmetric {n} x {n} matrix of distances "
                             f"between 0 and r_max = {r_max:g} Å")
        self.cutoff = PolynomialCutoff(polynomial_cutoff_p)
        envelope = self.cutoff(at / r_max)
        sigma = (envelope / float(value_eV)) ** (1.0 / float(exponent)) / at
        self.register_buffer("sigma_per_A", sigma, persistent=False)  # float64: no overflow short of overlap
        self.exponent = float(exponent)
        self.model_dtype = torch.get_default_dtype()

    def forward(self, data: AtomicDataDict.Type) -> AtomicDataDict.Type:
        data = with_edge_vectors_(data, with_lengths=True)
        edge_index = data[AtomicDataDict.EDGE_INDEX_KEY]
        types = data[AtomicDataDict.ATOM_TYPE_KEY].view(-1)
        if self.per_atom_energy_field in data:
            num_nodes = data[self.per_atom_energy_field].size(0)
        else:
            num_nodes = AtomicDataDict.num_nodes(data)
        sigma = self.sigma_per_A[types[edge_index[0]], types[edge_index[1]]]  # (E,)
        r = data[AtomicDataDict.EDGE_LENGTH_KEY].view(-1).to(sigma.dtype)
        energy = 0.5 * (sigma * r) ** (-self.exponent)  # ε = 1 eV, half per directed edge
        envelope = self.cutoff(data[AtomicDataDict.NORM_LENGTH_KEY]).view(-1).to(sigma.dtype)
        edge_energy = (energy * envelope).to(self.model_dtype).unsqueeze(-1)
        atomic = scatter(edge_energy, edge_index[0], dim=0, dim_size=num_nodes)
        if self.per_atom_energy_field in data:
            atomic = atomic + data[self.per_atom_energy_field]
        data[self.per_atom_energy_field] = atomic
        return data
