"""The Lightning module a stage fits: nequip's EMA module over a ``ModuleDict``
of models whose energies and forces are summed, and its optimiser groups."""

from __future__ import annotations

import torch
from ase.data import atomic_masses, atomic_numbers
from nequip.data import AtomicDataDict
from nequip.train import EMALightningModule

from ..models import build_model, load_model
from .loss import maxwell_boltzmann_velocities_A_per_fs, sum_of_models


def build_model_dict(models: dict, init_from: dict | None = None, frozen=()) -> torch.nn.ModuleDict:
    """nequip model builder for several models: ``{name: model config}`` ->
    ``ModuleDict``; `init_from` maps names to saved model files whose weights to
    start from; `frozen` names get ``requires_grad=False``."""
    built = torch.nn.ModuleDict({name: build_model(cfg) for name, cfg in models.items()})
    for name, path in (init_from or {}).items():
        built[name].load_state_dict(load_model(path).module.state_dict())
    for name in frozen:
        built[name].requires_grad_(False)
    return built


def param_groups(model, lr: float, lr_factors: dict | None = None, fast_lr_factor: float | None = None):
    """Optimizer groups: each model's trainable parameters at
    ``lr·lr_factors[name]`` (factor 1 for names not given); frozen parameters
    are left out. `fast_lr_factor` is the fast model's factor as checkpoints
    written before `lr_factors` spell it."""
    factors = {**({} if fast_lr_factor is None else {"fast": fast_lr_factor}), **(lr_factors or {})}
    groups = []
    for name, sub in model.items():
        params = [p for p in sub.parameters() if p.requires_grad]
        if params:
            groups.append({"params": params, "lr": float(lr) * float(factors.get(name, 1.0))})
    return groups


class MultiScaleModule(EMALightningModule):
    """nequip's EMA Lightning module whose forward is the *sum* of several models.
    Subclassed only because NequIPLightningModule.forward calls one model ("multi-
    model subclasses will need to override this function"), and to draw the
    velocities of the slowness term (seeded by the step, so a resumed run agrees)."""

    def __init__(self, slowness_temperature_K=None, velocity_seed=0, **kwargs):
        super().__init__(**kwargs)
        self.slowness_temperature_K = slowness_temperature_K
        self.velocity_seed = int(velocity_seed)
        names = next(iter(self.model.values())).type_names
        self.register_buffer("masses_amu", torch.tensor([atomic_masses[atomic_numbers[t]] for t in names]))

    def forward(self, inputs):
        with torch.enable_grad():
            return sum_of_models(self.model, inputs, self._velocities(inputs))

    def _velocities(self, inputs):
        if not (self.training and self.slowness_temperature_K and "slow" in self.model):
            return None
        gen = torch.Generator().manual_seed(self.velocity_seed * 1_000_003 + int(self.global_step))
        masses = self.masses_amu[inputs[AtomicDataDict.ATOM_TYPE_KEY].view(-1)].cpu()
        v = maxwell_boltzmann_velocities_A_per_fs(masses, self.slowness_temperature_K, gen)
        pos = inputs[AtomicDataDict.POSITIONS_KEY]
        return v.to(pos.device, pos.dtype)
