"""Statistics of the training frames that models start from (per-type energy
shifts, energy scale, neighbour count), and the energy-offset balance of a
trained pair."""

from __future__ import annotations

import numpy as np
import torch
from ase.data import atomic_numbers

from ..models import model_config

SHIFTS_KEY = "per_type_energy_scale_shift.shifts"


def per_type_energy_shifts_eV(frames, type_names) -> list[float]:
    """Least-squares per-type energies E ≈ Σ_types n_t·e_t (minimum-norm solution
    when the composition never varies, as in liquid water)."""
    return [float(s) for s in per_type_least_squares(frames, [a.info["energy"] for a in frames], type_names)]


def per_type_least_squares(frames, values, type_names) -> np.ndarray:
    """Per-type e_t with values ≈ Σ_types n_t·e_t over `frames` (minimum norm)."""
    counts = np.array([[np.sum(a.numbers == atomic_numbers[t]) for t in type_names] for a in frames], float)
    solution, *_ = np.linalg.lstsq(counts, np.asarray(values, float), rcond=None)
    return solution


def force_rms_eV_per_A(forces_list) -> float:
    """RMS over all force components of a list of (N, 3) arrays."""
    flat = np.concatenate([np.asarray(f).ravel() for f in forces_list])
    return float(np.sqrt(np.mean(flat**2))) or 1.0


def avg_num_neighbors(frames, r_max_A, max_frames=20) -> float:
    """Mean number of neighbours within `r_max_A` (nequip's normalisation)."""
    from vesin import NeighborList

    counts = []
    for atoms in frames[:max_frames]:
        nl = NeighborList(cutoff=float(r_max_A), full_list=True)
        i, = nl.compute(atoms.positions, atoms.cell.array, bool(atoms.pbc.any()), quantities="i")
        counts.append(len(i) / len(atoms))
    return float(np.mean(counts))


def fitted_model_config(preset: dict, overrides: dict, seed: int, model_dtype: str, frames, type_names) -> dict:
    """Full model config: `preset` updated by the user's `overrides`, normalised
    by the training `frames` (per-type energy shifts by least squares, energy
    scale = force RMS, avg_num_neighbors at the model's cutoff)."""
    r_max_A = float(overrides.get("r_max", preset["r_max"]))
    stats = {
        "avg_num_neighbors": avg_num_neighbors(frames, r_max_A),
        "per_type_energy_shifts": dict(zip(type_names, per_type_energy_shifts_eV(frames, type_names))),
        "per_type_energy_scales": dict.fromkeys(type_names, force_rms_eV_per_A([a.arrays["forces"] for a in frames])),
    }
    return model_config(preset, type_names, seed, model_dtype, **{**stats, **overrides})


def reference_minus_model(model, frames) -> tuple[list, list]:
    """What `model` (a LoadedModel) leaves unexplained on labelled `frames`:
    (E_ref − E_model per frame in eV, F_ref − F_model per frame in eV/Å)."""
    calc = model.calculator()
    energies, forces = [], []
    for atoms in frames:
        a = atoms.copy()
        a.calc = calc
        energies.append(atoms.info["energy"] - a.get_potential_energy())
        forces.append(atoms.arrays["forces"] - a.get_forces())
    return energies, forces


def residual_force_rms_eV_per_A(model, frames, max_frames=50) -> float:
    """RMS of F_ref − F_model over (up to `max_frames` of) `frames`: the size of
    what a model added to `model` has to learn."""
    return force_rms_eV_per_A(reference_minus_model(model, frames[:max_frames])[1])


def balance_energy_offsets(fast, slow, frames, type_names, max_frames=200) -> dict:
    """Move the constant energy the pair has traded between its two models back
    into the fast one: stage 2 fits only the *total* energy, so the fine-tuned
    fast model can drift by a per-atom constant that the slow model cancels.
    Adds per-type δ (least squares of E_ref − E_fast over `frames`) to the fast
    model's energy shifts and subtracts it from the slow model's. Forces and the
    total energy are unchanged; the fast model's energy is again usable alone.
    Modifies both LoadedModels in place; returns {type: δ eV}."""
    residual_eV, _ = reference_minus_model(fast, frames[:max_frames])
    delta = per_type_least_squares(frames[:max_frames], residual_eV, type_names)
    for model, sign in ((fast, 1.0), (slow, -1.0)):
        _shift_energies(model, type_names, sign * delta)
    return {t: float(d) for t, d in zip(type_names, delta)}


def _shift_energies(model, type_names, delta_eV) -> None:
    """Add `delta_eV` (per type, in `type_names` order) to a LoadedModel's
    per-type energy shifts, in its weights and in its config."""
    state = model.module.state_dict()
    key = next(k for k in state if k.endswith(SHIFTS_KEY))
    order = [model.type_names.index(t) for t in type_names]
    shifts = state[key].clone()
    shifts[order, 0] += torch.as_tensor(delta_eV, dtype=shifts.dtype)
    state[key] = shifts
    model.module.load_state_dict(state)
    old = model.config["per_type_energy_shifts"]  # a {type: eV} dict in every stage config
    model.config["per_type_energy_shifts"] = {t: float(old[t] + d) for t, d in zip(type_names, delta_eV)}
