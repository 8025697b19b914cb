"""THE training loss of every stage, in one place::

    L = a·MSE((E_f+E_s)/N, E_ref/N) + b·MSE(F_f+F_s, F_ref) + λ·MSE(F_f, F_ref)
        + μ·E_v ‖(∂F_s/∂x)·v‖²          (v: Maxwell–Boltzmann velocities, Å/fs)

Energies and forces are those of the *sum* of the models a stage trains
(:func:`sum_of_models`); with one model the sum is that model, and λ = μ = 0
gives the conventional loss. nequip's MetricsManager normalises the weights to
sum to one, which rescales the loss but not its minimiser.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from nequip.data import AtomicDataDict, register_fields
from nequip.train import MeanSquaredError

FAST_FORCES, SLOW_FORCES, SLOW_FORCE_JVP = "fast_forces", "slow_forces", "slow_force_jvp"
FAST_FORCE_TERM = "fast_forces_mse"  # the λ term's name in the loss (what a λ schedule sets)

# per-atom outputs of the summed models (so nequip batches and metrics know them)
register_fields(node_fields=[FAST_FORCES, SLOW_FORCES, SLOW_FORCE_JVP])


@dataclass(frozen=True)
class LossWeights:
    """The weights of the loss's terms: `energy` (a, total energy per atom),
    `force` (b, total forces), `fast_force` (λ, the fast model's forces alone),
    `fast_force_schedule` ({epoch: λ} from that epoch on, or None), `slowness`
    (μ, with velocities drawn at `slowness_temperature_K`). A term of weight 0 is
    left out, except λ's when a schedule sets it."""

    energy: float
    force: float
    fast_force: float = 0.0
    fast_force_schedule: dict | None = None
    slowness: float = 0.0
    slowness_temperature_K: float = 300.0

    def metrics(self) -> dict:
        """This loss as nequip ``MetricsManager`` config."""
        return loss_metrics(self.energy, self.force, self.fast_force, self.slowness, self.fast_force_schedule)

    def coeffs(self) -> dict:
        """{term name: weight} as configured (not normalised)."""
        return {m["name"]: m["coeff"] for m in self.metrics()["metrics"] if "coeff" in m}


class ZeroTargetMSE(MeanSquaredError):
    """Mean square of the prediction field `field` (target 0). Used with
    MetricsManager's ``field: None``, so it receives whole data dicts."""

    def __init__(self, field: str = SLOW_FORCE_JVP, **kwargs):
        super().__init__(**kwargs)
        self.field = field

    def update(self, preds, target) -> None:
        values = preds[self.field]
        super().update(values, torch.zeros_like(values))

    def __str__(self) -> str:
        return "mean_square"


def loss_metrics(energy_weight, force_weight, fast_force_weight=0.0, slowness_weight=0.0,
                 fast_force_schedule=None) -> dict:
    """THE training loss (MetricsManager config); see module doc. The λ term is
    there when λ > 0 or a `fast_force_schedule` may make it so."""
    metrics = [
        _metric("energy_per_atom_mse", _per_atom_energy(), "MeanSquaredError", energy_weight),
        _metric("forces_mse", "forces", "MeanSquaredError", force_weight),
    ]
    if fast_force_weight > 0 or fast_force_schedule:
        metrics.append(_metric(FAST_FORCE_TERM, _fast_forces(), "MeanSquaredError", fast_force_weight))
    if slowness_weight > 0:
        metrics.append({"name": "slowness", "field": None, "coeff": float(slowness_weight),
                        "metric": {"_target_": "mtsmlip.training.ZeroTargetMSE"}})
    return {"_target_": "nequip.train.MetricsManager", "metrics": metrics}


def validation_metrics(with_fast: bool) -> dict:
    """Errors watched on the validation set (eV, eV/Å); weighted_sum = F RMSE."""
    metrics = [
        _metric("energy_per_atom_mae", _per_atom_energy(), "MeanAbsoluteError", None),
        _metric("forces_rmse", "forces", "RootMeanSquaredError", 1.0),
        _metric("forces_mae", "forces", "MeanAbsoluteError", None),
    ]
    if with_fast:
        metrics.append(_metric("fast_forces_rmse", _fast_forces(), "RootMeanSquaredError", None))
    return {"_target_": "nequip.train.MetricsManager", "metrics": metrics}


def _per_atom_energy() -> dict:
    return {"_target_": "nequip.data.PerAtomModifier", "field": "total_energy"}


def _fast_forces() -> dict:
    return {"_target_": "nequip.data.MappedFieldModifier", "pred_field": FAST_FORCES, "target_field": "forces"}


def _metric(name, field, metric_class, coeff) -> dict:
    entry = {"name": name, "field": field, "metric": {"_target_": f"nequip.train.{metric_class}"}}
    if coeff is not None:
        entry["coeff"] = float(coeff)
    return entry


def sum_of_models(models: torch.nn.ModuleDict, batch: dict, velocities=None) -> dict:
    """Energies and forces of all `models` summed (E = Σ E_m, F = Σ F_m), plus
    each model's forces as '<name>_forces'. With `velocities` (N, 3), also the
    slow force's rate of change along them, (∂F_slow/∂x)·v, as 'slow_force_jvp'."""
    K = AtomicDataDict
    batch = dict(batch)
    if velocities is not None:
        batch[K.POSITIONS_KEY] = batch[K.POSITIONS_KEY].detach().requires_grad_(True)
    outs = {name: model(dict(batch)) for name, model in models.items()}
    out = dict(next(iter(outs.values())))
    out[K.TOTAL_ENERGY_KEY] = sum(o[K.TOTAL_ENERGY_KEY] for o in outs.values())
    out[K.FORCE_KEY] = sum(o[K.FORCE_KEY] for o in outs.values())
    for name, o in outs.items():
        out[f"{name}_forces"] = o[K.FORCE_KEY]
    if velocities is not None:
        out[SLOW_FORCE_JVP] = _force_jvp(outs["slow"][K.FORCE_KEY], batch[K.POSITIONS_KEY], velocities)
    return out


def _force_jvp(forces, positions, velocities):
    """(∂F/∂x)·v by double backward: ∂/∂x (F·v) = (∂F/∂x)ᵀ v, and ∂F/∂x = −Hessian
    is symmetric. Kept in the graph so that it can be trained on."""
    (jvp,) = torch.autograd.grad((forces * velocities).sum(), positions, create_graph=True)
    return jvp


def maxwell_boltzmann_velocities_A_per_fs(masses_amu, temperature_K, generator):
    """Velocities (N, 3) in Å/fs drawn from Maxwell–Boltzmann at `temperature_K`."""
    from ase import units

    sigma = torch.sqrt(units.kB * temperature_K / masses_amu) * units.fs
    noise = torch.randn((len(masses_amu), 3), generator=generator, dtype=torch.float64)
    return (noise * sigma.double()[:, None]).to(masses_amu.dtype)
