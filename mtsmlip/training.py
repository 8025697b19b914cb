"""Co-training of a fast and a slow potential, and the conventional baseline.

Three stages, each a Lightning ``Trainer.fit`` of nequip's ``EMALightningModule``
(through the small subclass :class:`MultiScaleModule`) on a ``NequIPDataModule``:

1. ``stage1``: the fast model alone on the reference energies and forces;
2. ``stage2``: fast (initialised from stage 1) + slow, so that their *sum* fits;
3. ``baseline``: the slow architecture alone, trained like stage 1.

The co-training loss is :func:`loss_metrics` (the one place it is defined)::

    L = a·MSE((E_f+E_s)/N, E_ref/N) + b·MSE(F_f+F_s, F_ref) + λ·MSE(F_f, F_ref)
        + μ·E_v ‖(∂F_s/∂x)·v‖²          (v: Maxwell–Boltzmann velocities, Å/fs)

Stage 1 and the baseline use the same function with λ = μ = 0 (one model, so the
"sum" is that model). nequip's MetricsManager normalises the coefficients to sum
to one, which rescales the loss but not its minimiser.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import sys
import time
from pathlib import Path

import lightning
import numpy as np
import torch
import yaml
from nequip.data import AtomicDataDict, register_fields
from nequip.data.ase import from_ase
from nequip.data.dataset import AtomicDataset
from nequip.train import EMALightningModule, MeanSquaredError

from . import data as data_mod
from .data import frames_of
from .errors import DataError
from .files import atomic_write, atomic_write_json, check_output_dir, check_same_content, fingerprint, read_json
from .models import (
    FAST_PRESET,
    SLOW_PRESET,
    build_model,
    count_parameters,
    load_model,
    model_config,
    save_model,
    write_model_dir,
)

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "train_default.yaml"
CONFIG_FILE = "train_config.yaml"
STAGES = ("stage1", "stage2", "baseline")
PRESETS = {"fast": FAST_PRESET, "slow": SLOW_PRESET}
FAST_FORCES, SLOW_FORCES, SLOW_FORCE_JVP = "fast_forces", "slow_forces", "slow_force_jvp"


# per-atom outputs of the summed models (so nequip batches and metrics know them)
register_fields(node_fields=[FAST_FORCES, SLOW_FORCES, SLOW_FORCE_JVP])


# ----------------------------------------------------------------- configuration
def load_config(path=None, **overrides) -> dict:
    """The default config, updated by the YAML at `path` (nested dicts merged),
    then by `overrides` whose value is not None (e.g. seed, epochs, train_frames)."""
    cfg = yaml.safe_load(DEFAULT_CONFIG.read_text())
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: config file not found")
        _merge(cfg, yaml.safe_load(path.read_text()) or {}, str(path))
    _merge(cfg, {k: v for k, v in overrides.items() if v is not None}, "command line")
    check_config(cfg, f"training config ({path if path is not None else 'defaults'} and options)")
    return cfg


# key -> (kind, smallest allowed value, whether the smallest is allowed itself)
CONFIG_NUMBERS = {
    "seed": (int, 0, True), "train_frames": (int, 1, True), "val_frames": (int, 1, True),
    "epochs": (int, 1, True), "batch_size": (int, 1, True), "learning_rate": (float, 0.0, False),
    "lr_min_factor": (float, 0.0, True), "ema_decay": (float, 0.0, True), "fast_lr_factor": (float, 0.0, True),
    "loss.energy_weight": (float, 0.0, True), "loss.force_weight": (float, 0.0, True),
    "loss.fast_force_weight": (float, 0.0, True), "loss.slowness_weight": (float, 0.0, True),
    "loss.slowness_temperature_K": (float, 0.0, False),
}


def check_config(cfg: dict, where: str) -> None:
    """DataError naming the key of any number out of range (negative epochs would
    train forever, zero epochs would write untrained models marked complete)."""
    for key, (kind, minimum, inclusive) in CONFIG_NUMBERS.items():
        value = functools.reduce(lambda d, k: d[k], key.split("."), cfg)
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ok = number and (kind is float or value == int(value)) and (value >= minimum if inclusive else value > minimum)
        if not ok:
            what = "an integer" if kind is int else "a number"
            raise DataError(f"{where}: config key '{key}' must be {what} {'>=' if inclusive else '>'} {minimum} "
                            f"(got {value!r})")
    if cfg["ema_decay"] >= 1.0:
        raise DataError(f"{where}: config key 'ema_decay' must be below 1 (got {cfg['ema_decay']!r})")
    for key in ("test_frames", "baseline_epochs"):
        value = cfg.get(key)
        if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            raise DataError(f"{where}: config key '{key}' must be null or an integer >= 1 (got {value!r})")


def resume_config(out_dir, path=None, **overrides) -> dict | None:
    """The config saved in `out_dir` by an earlier run, updated like
    :func:`load_config`; None if the run never got that far."""
    saved = Path(out_dir) / CONFIG_FILE
    if not saved.is_file():
        return None
    cfg = yaml.safe_load(saved.read_text())
    if path is not None:
        if not Path(path).is_file():
            raise DataError(f"{path}: config file not found")
        _merge(cfg, yaml.safe_load(Path(path).read_text()) or {}, str(path))
    _merge(cfg, {k: v for k, v in overrides.items() if v is not None}, "command line")
    check_config(cfg, str(saved))
    return cfg


def _merge(base: dict, update: dict, where: str) -> None:
    for key, value in update.items():
        if key not in base:
            raise DataError(f"{where}: unknown config key '{key}' (known: {sorted(base)})")
        if isinstance(base[key], dict) and isinstance(value, dict) and key not in ("fast_model", "slow_model"):
            _merge(base[key], value, f"{where}: {key}")
        else:
            base[key] = copy.deepcopy(value)


# ------------------------------------------------------------------------- data
class FramesDataset(AtomicDataset):
    """nequip dataset of the frames `indices` of `file_path`, held in memory."""

    def __init__(self, file_path: str, indices: list, transforms=()):
        super().__init__(transforms=list(transforms))
        frames = frames_of(file_path)
        self.data_list = [from_ase(frames[i]) for i in indices]

    def __len__(self) -> int:
        return len(self.data_list)

    def _get_data_list(self, indices):
        if isinstance(indices, slice):
            return self.data_list[indices]
        return [self.data_list[i] for i in indices]


def _dataset_config(file_path, indices, type_names, r_max_A) -> dict:
    return {
        "_target_": "mtsmlip.training.FramesDataset",
        "file_path": str(file_path),
        "indices": list(indices),
        "transforms": [
            {"_target_": "nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper", "model_type_names": list(type_names)},
            {"_target_": "nequip.data.transforms.NeighborListTransform", "r_max": float(r_max_A)},
        ],
    }


class EpochShuffleSampler(torch.utils.data.Sampler):
    """Random order of `n` frames that is a pure function of (seed, epoch), like
    DistributedSampler: Lightning calls ``set_epoch`` before every epoch, so a run
    resumed from an end-of-epoch checkpoint draws exactly the order an
    uninterrupted run draws, whatever generator state the loaders carry."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = int(n), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=generator).tolist())


def data_module(file_path, split, type_names, r_max_A, cfg):
    """A ``NequIPDataModule`` over the split; the training order depends only on (seed, epoch)."""
    from nequip.data.datamodule import NequIPDataModule

    loader = {"_target_": "torch.utils.data.DataLoader", "batch_size": int(cfg["batch_size"])}
    return NequIPDataModule(
        seed=int(cfg["seed"]),
        train_dataset=_dataset_config(file_path, split.train, type_names, r_max_A),
        val_dataset=_dataset_config(file_path, split.val, type_names, r_max_A),
        train_dataloader={**loader, "sampler": {"_target_": "mtsmlip.training.EpochShuffleSampler",
                                                 "n": len(split.train), "seed": int(cfg["seed"])}},
        val_dataloader=loader,
    )


def check_frames_fit(frames, r_max_A, path) -> None:
    """Every periodic cell must be wider than the largest model cutoff."""
    for i, atoms in enumerate(frames):
        data_mod.check_cell_fits_cutoff(atoms, r_max_A, f"{path}, frame {i}")


# ------------------------------------------------------------------- statistics
def per_type_energy_shifts_eV(frames, type_names) -> list[float]:
    """Least-squares per-type energies E ≈ Σ_types n_t·e_t (minimum-norm solution
    when the composition never varies, as in liquid water)."""
    return [float(s) for s in per_type_least_squares(frames, [a.info["energy"] for a in frames], type_names)]


def per_type_least_squares(frames, values, type_names) -> np.ndarray:
    """Per-type e_t with values ≈ Σ_types n_t·e_t over `frames` (minimum norm)."""
    counts = np.array([[np.sum(a.numbers == _z(t)) for t in type_names] for a in frames], float)
    solution, *_ = np.linalg.lstsq(counts, np.asarray(values, float), rcond=None)
    return solution


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


SHIFTS_KEY = "per_type_energy_scale_shift.shifts"


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
        state = model.module.state_dict()
        key = next(k for k in state if k.endswith(SHIFTS_KEY))
        order = [model.type_names.index(t) for t in type_names]
        shifts = state[key].clone()
        shifts[order, 0] += torch.as_tensor(sign * delta, dtype=shifts.dtype)
        state[key] = shifts
        model.module.load_state_dict(state)
        old = model.config["per_type_energy_shifts"]  # a {type: eV} dict in every stage config
        model.config["per_type_energy_shifts"] = {t: float(old[t] + sign * d) for t, d in zip(type_names, delta)}
    return {t: float(d) for t, d in zip(type_names, delta)}


def _z(symbol: str) -> int:
    from ase.data import atomic_numbers

    return atomic_numbers[symbol]


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


def stage_model_config(role, cfg, type_names, frames, seed, energy_shifts, force_scale) -> dict:
    """Full model config of the `role` ('fast' or 'slow') architecture with
    statistics from the training `frames`."""
    overrides = dict(cfg[f"{role}_model"])
    r_max_A = float(overrides.get("r_max", PRESETS[role]["r_max"]))
    stats = {
        "avg_num_neighbors": avg_num_neighbors(frames, r_max_A),
        "per_type_energy_shifts": dict(zip(type_names, energy_shifts)),
        "per_type_energy_scales": dict.fromkeys(type_names, float(force_scale)),
    }
    return model_config(PRESETS[role], type_names, seed, cfg["model_dtype"], **{**stats, **overrides})


# ------------------------------------------------------------------ the loss
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


def loss_metrics(energy_weight, force_weight, fast_force_weight=0.0, slowness_weight=0.0) -> dict:
    """THE training loss (MetricsManager config) of every stage; see module doc.
    'forces'/'total_energy' are the sum over the models being trained."""
    metrics = [
        _metric("energy_per_atom_mse", _per_atom_energy(), "MeanSquaredError", energy_weight),
        _metric("forces_mse", "forces", "MeanSquaredError", force_weight),
    ]
    if fast_force_weight > 0:
        fast_field = {"_target_": "nequip.data.MappedFieldModifier", "pred_field": FAST_FORCES, "target_field": "forces"}
        metrics.append(_metric("fast_forces_mse", fast_field, "MeanSquaredError", fast_force_weight))
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
        fast_field = {"_target_": "nequip.data.MappedFieldModifier", "pred_field": FAST_FORCES, "target_field": "forces"}
        metrics.append(_metric("fast_forces_rmse", fast_field, "RootMeanSquaredError", None))
    return {"_target_": "nequip.train.MetricsManager", "metrics": metrics}


def _per_atom_energy() -> dict:
    return {"_target_": "nequip.data.PerAtomModifier", "field": "total_energy"}


def _metric(name, field, metric_class, coeff) -> dict:
    entry = {"name": name, "field": field, "metric": {"_target_": f"nequip.train.{metric_class}"}}
    if coeff is not None:
        entry["coeff"] = float(coeff)
    return entry


# ------------------------------------------------------- models and the module
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


def param_groups(model, lr: float, fast_lr_factor: float = 1.0):
    """Optimizer groups: the fast model at `lr·fast_lr_factor`, the rest at `lr`;
    frozen parameters are left out."""
    groups = []
    for name, sub in model.items():
        params = [p for p in sub.parameters() if p.requires_grad]
        factor = fast_lr_factor if (name == "fast" and len(model) > 1) else 1.0
        if params:
            groups.append({"params": params, "lr": float(lr) * factor})
    return groups


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


class MultiScaleModule(EMALightningModule):
    """nequip's EMA Lightning module whose forward is the *sum* of several models.
    Subclassed only because NequIPLightningModule.forward calls one model ("multi-
    model subclasses will need to override this function"), and to draw the
    velocities of the slowness term (seeded by the step, so a resumed run agrees)."""

    def __init__(self, slowness_temperature_K=None, velocity_seed=0, **kwargs):
        super().__init__(**kwargs)
        from ase.data import atomic_masses

        self.slowness_temperature_K = slowness_temperature_K
        self.velocity_seed = int(velocity_seed)
        names = next(iter(self.model.values())).type_names
        self.register_buffer("masses_amu", torch.tensor([atomic_masses[_z(t)] for t in names]))

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


# ---------------------------------------------------------------- callbacks
class LambdaSchedule(lightning.Callback):
    """Sets the λ term's coefficient from ``{epoch: λ}`` (the latest entry at or
    before the current epoch, so a resumed run gets the same value), relative
    to the other terms' configured (unnormalised) weights `base_coeffs`."""

    def __init__(self, schedule: dict, base_coeffs: dict):
        self.schedule = {int(k): float(v) for k, v in schedule.items()}
        self.base = dict(base_coeffs)

    def on_train_epoch_start(self, trainer, module):
        due = [e for e in self.schedule if e <= trainer.current_epoch]
        if due:
            module.loss.set_coeffs({**self.base, "fast_forces_mse": self.schedule[max(due)]})


class EpochReport(lightning.Callback):
    """Prints one line per epoch with the current errors; keeps the history."""

    def __init__(self, stage: str):
        self.stage, self.history, self.t0 = stage, [], time.time()

    def on_validation_end(self, trainer, module):
        if trainer.sanity_checking:
            return
        m = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        # validation runs before the module's on_train_epoch_end logs the epoch loss
        m["train_loss_epoch/weighted_sum"] = float(module.loss.compute()["weighted_sum"])
        row = _epoch_row(trainer.current_epoch, m)
        if self.history and self.history[-1]["epoch"] == row["epoch"]:
            return
        self.history.append(row)
        if trainer.is_global_zero:
            print(_format_row(self.stage, trainer.max_epochs, row, time.time() - self.t0), flush=True)

    def state_dict(self):
        return {"history": self.history}

    def load_state_dict(self, state):
        self.history = list(state["history"])


def _epoch_row(epoch, m) -> dict:
    return {
        "epoch": int(epoch) + 1,
        "train_loss": m.get("train_loss_epoch/weighted_sum"),
        "val_energy_mae_meV_per_atom": 1000 * m.get("val0_epoch/energy_per_atom_mae", float("nan")),
        "val_force_rmse_meV_per_A": 1000 * m.get("val0_epoch/forces_rmse", float("nan")),
        "val_force_mae_meV_per_A": 1000 * m.get("val0_epoch/forces_mae", float("nan")),
        **({"val_fast_force_rmse_meV_per_A": 1000 * m["val0_epoch/fast_forces_rmse"]}
           if "val0_epoch/fast_forces_rmse" in m else {}),
    }


def _format_row(stage, max_epochs, row, elapsed_s) -> str:
    loss = row["train_loss"]
    text = (f"[{stage}] epoch {row['epoch']}/{max_epochs}  train loss "
            f"{loss if loss is None else f'{loss:.4g}'}  val E MAE {row['val_energy_mae_meV_per_atom']:.2f} meV/atom"
            f"  F RMSE {row['val_force_rmse_meV_per_A']:.1f} meV/Å")
    if "val_fast_force_rmse_meV_per_A" in row:
        text += f"  (fast alone {row['val_fast_force_rmse_meV_per_A']:.1f})"
    return text + f"  [{elapsed_s:.0f} s]"


# --------------------------------------------------------------- one stage
def _module_kwargs(models_cfg, cfg, loss_cfg, n_val_sets, init_from=None, frozen=(), fast_lr_factor=1.0):
    """Everything MultiScaleModule needs, as plain (checkpointable) config."""
    epochs, lr = int(cfg["epochs"]), float(cfg["learning_rate"])
    # the cosine schedule steps with every optimiser step, not every epoch: Lightning
    # saves the end-of-epoch checkpoint before an epoch-interval scheduler steps, so a
    # resumed run would be one scheduler step behind an uninterrupted one
    steps_per_epoch = math.ceil(int(cfg["train_frames"]) / int(cfg["batch_size"]))
    with_fast = "fast" in models_cfg and len(models_cfg) > 1
    return {
        "model": {"_target_": "mtsmlip.training.build_model_dict", "models": models_cfg,
                  "init_from": init_from or {}, "frozen": list(frozen)},
        "num_datasets": {"train": 1, "val": n_val_sets, "test": 0, "predict": 0},
        "optimizer": {"_target_": "torch.optim.Adam", "lr": lr,
                      "param_groups": {"_target_": "mtsmlip.training.param_groups", "lr": lr,
                                       "fast_lr_factor": float(fast_lr_factor)}},
        "lr_scheduler": {"scheduler": {"_target_": "torch.optim.lr_scheduler.CosineAnnealingLR",
                                       "T_max": epochs * steps_per_epoch,
                                       "eta_min": lr * float(cfg["lr_min_factor"])},
                         "interval": "step", "frequency": 1},
        "loss": loss_cfg,
        "val_metrics": validation_metrics(with_fast),
        "ema_decay": float(cfg["ema_decay"]),
    }


def run_stage(stage, module_kwargs, datamodule, cfg, out_dir, resume, callbacks=(), extra_module_args=None):
    """Fit one stage with Lightning (checkpoint every epoch in
    DIR/checkpoints/<stage>/); returns (module with EMA weights loaded, history)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    lightning.seed_everything(int(cfg["seed"]), workers=True, verbose=False)
    module = MultiScaleModule(**module_kwargs, **(extra_module_args or {}))
    ckpt_dir = Path(out_dir) / "checkpoints" / stage
    report = EpochReport(stage)
    # Lightning >= 2.5 writes last.ckpt only when a top-k checkpoint was written in
    # the same step, so keep the newest epoch checkpoint (monitor=None, top 1) too
    cbs = [ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=1, every_n_epochs=1), report]
    schedule = cfg["loss"].get("fast_force_weight_schedule")
    if schedule and stage == "stage2":
        weights = {m["name"]: m["coeff"] for m in module_kwargs["loss"]["metrics"] if "coeff" in m}
        cbs.append(LambdaSchedule(schedule, weights))
    trainer = lightning.Trainer(
        max_epochs=int(cfg["epochs"]), callbacks=cbs + list(callbacks), inference_mode=False,
        logger=False, enable_progress_bar=bool(cfg["progress_bar"]), enable_model_summary=False,
        num_sanity_val_steps=0, deterministic=False, **cfg["trainer"],
    )
    module.world_size = trainer.world_size
    ckpt = resumable_checkpoint(ckpt_dir) if resume else None
    trainer.fit(module, datamodule=datamodule, ckpt_path=None if ckpt is None else str(ckpt), weights_only=True)
    module.evaluation_model  # swaps the EMA weights into module.model
    return module, report.history


def resumable_checkpoint(ckpt_dir: Path):
    """The checkpoint to resume a stage from: last.ckpt, or, if it is damaged,
    the newest epoch checkpoint that reads (said on stderr); None for a fresh start.
    Read as tensors and plain data only (``weights_only``): a checkpoint never runs code."""
    candidates = [ckpt_dir / "last.ckpt"] + sorted(ckpt_dir.glob("epoch=*.ckpt"), key=os.path.getmtime, reverse=True)
    candidates = [c for c in candidates if c.is_file()]
    problems = []
    for path in candidates:
        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated, bit-flipped, or holding objects that could run code
            problems.append(f"{path.name}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            continue
        if problems:
            print(f"mtsmlip train: {'; '.join(problems)}; resuming from {path} instead", file=sys.stderr)
        return path
    if problems:
        raise DataError(f"{ckpt_dir}: no readable checkpoint to resume from ({'; '.join(problems)}); "
                        f"delete {ckpt_dir} to train this stage again from its start")
    return None


# --------------------------------------------------------------- the pipeline
def train(data_path, out_dir, cfg: dict, resume: bool = False, callbacks=()) -> dict:
    """Run stage 1, stage 2 and (unless cfg['baseline'] is false) the baseline;
    write DIR/{fast,slow,baseline}.pt and manifest.json (last). With `resume`,
    finished stages are reused and an interrupted stage continues from its last
    checkpoint. Returns the manifest."""
    out_dir = check_output_dir(out_dir)
    check_config(cfg, "training config")
    plan = plan_training(data_path, cfg)  # reads and checks everything before anything is written
    cfg = _prepare_out_dir(out_dir, cfg, resume, plan["data_fingerprint"])
    results = {}
    for stage in [s for s in STAGES if s != "baseline" or cfg["baseline"]]:
        results[stage] = _stage_result(stage, plan, cfg, out_dir, resume, callbacks)
    models = {"fast": results["stage2"]["models"]["fast"], "slow": results["stage2"]["models"]["slow"]}
    moved = balance_energy_offsets(models["fast"], models["slow"], plan["train_frames"], plan["type_names"])
    manifest = build_manifest(plan, cfg, results)
    manifest["fast_energy_offset_moved_eV"] = moved
    if "baseline" in results:
        models["baseline"] = results["baseline"]["models"]["baseline"]
    write_model_dir(out_dir, {k: (v.module, v.config) for k, v in models.items()}, manifest)
    return manifest


DATA_RECORD = "train_data.json"


def _prepare_out_dir(out_dir: Path, cfg: dict, resume: bool, data_fingerprint: dict) -> dict:
    """Refuse to overwrite a run; on resume, continue with the saved config and
    only on the same data file (by content: a fingerprint is recorded at the start)."""
    saved, record = out_dir / CONFIG_FILE, out_dir / DATA_RECORD
    if resume and saved.is_file():
        old = yaml.safe_load(saved.read_text())
        if old != cfg:
            changed = sorted(k for k in set(old) | set(cfg) if old.get(k) != cfg.get(k))
            raise DataError(f"{saved}: --resume with a different config (keys {changed}); "
                            "resume with the same options or use a new --out")
        if record.is_file():
            check_same_content(read_json(record, "training data record"), data_fingerprint["file"],
                               f"the --data file of the run in {out_dir}")
        else:  # a run from before fingerprints were recorded: record this one from now on
            atomic_write_json(record, data_fingerprint)
        return old
    if out_dir.exists() and any(out_dir.iterdir()) and not resume:
        raise DataError(f"{out_dir}: output directory is not empty; use --resume to continue it or a new --out")
    atomic_write_json(record, data_fingerprint)
    atomic_write(saved, lambda tmp: Path(tmp).write_text(yaml.safe_dump(cfg, sort_keys=False)))
    return cfg


def plan_training(data_path, cfg) -> dict:
    """Read and check the data, fix the split, compute statistics, and build the
    model configs of all stages (everything decided before any training)."""
    path = os.path.abspath(os.fspath(data_path))
    frames = frames_of(path)
    n_val = int(cfg["val_frames"])
    split = data_mod.make_split(len(frames), int(cfg["train_frames"]), n_val, int(cfg["seed"]), cfg["test_frames"],
                                cfg.get("test_split", "random"))
    train_frames = [frames[i] for i in split.train]
    type_names = data_mod.species_of(frames)
    shifts = per_type_energy_shifts_eV(train_frames, type_names)
    force_rms = force_rms_eV_per_A([a.arrays["forces"] for a in train_frames])
    seed = int(cfg["seed"])
    fast = stage_model_config("fast", cfg, type_names, train_frames, seed, shifts, force_rms)
    slow = stage_model_config("slow", cfg, type_names, train_frames, seed + 1, shifts, force_rms)
    check_frames_fit(frames, max(fast["r_max"], slow["r_max"]), path)
    return {"path": path, "n_frames": len(frames), "split": split, "type_names": type_names,
            "train_frames": train_frames, "fast": fast, "slow": slow, "force_rms": force_rms,
            "data_fingerprint": fingerprint(path)}


def _stage_result(stage, plan, cfg, out_dir, resume, callbacks) -> dict:
    """Reuse a finished stage's saved result on resume, else train it."""
    done_dir = Path(out_dir) / "checkpoints" / stage / "done"
    if resume and (done_dir / "result.json").is_file():
        info = json.loads((done_dir / "result.json").read_text())
        return {**info, "models": {n: load_model(done_dir / f"{n}.pt") for n in info["model_names"]}}
    t0 = time.time()
    module, history, configs = _train_stage(stage, plan, cfg, out_dir, resume, callbacks)
    check_stage_sound(stage, module, history, configs)
    info = {"stage": stage, "wall_time_s": time.time() - t0, "history": history,
            "final": history[-1] if history else None, "model_names": list(configs),
            "parameters": {n: count_parameters(module.model[n]) for n in configs}}
    for name, config in configs.items():
        save_model(done_dir / f"{name}.pt", module.model[name], config, {"stage": stage})
    atomic_write_json(done_dir / "result.json", info)
    return {**info, "models": {n: load_model(done_dir / f"{n}.pt") for n in configs}}


def check_stage_sound(stage, module, history, configs) -> None:
    """Refuse to record a stage whose training diverged: a non-finite loss or
    validation error in any epoch, or non-finite weights. Nothing is written."""
    from .models import check_finite_weights

    if not history:
        raise DataError(f"stage {stage}: no epoch finished; nothing to write")
    for row in history:
        bad = [k for k, v in row.items() if k != "epoch" and not (v is not None and math.isfinite(v))]
        if bad:
            raise DataError(f"stage {stage}, epoch {row['epoch']}: {bad[0]} is {row[bad[0]]} (training diverged); "
                            "no model written. Check the data for bad frames, or lower learning_rate")
    for name in configs:
        check_finite_weights(module.model[name], f"stage {stage}, {name} model")


def _train_stage(stage, plan, cfg, out_dir, resume, callbacks):
    lcfg = cfg["loss"]
    a, b = lcfg["energy_weight"], lcfg["force_weight"]
    if stage == "stage1":
        configs, kwargs = {"fast": plan["fast"]}, {}
        loss = loss_metrics(a, b)
    elif stage == "baseline":
        configs, kwargs = {"baseline": plan["slow"]}, {}
        loss = loss_metrics(a, b)
        cfg = {**cfg, "epochs": cfg.get("baseline_epochs") or cfg["epochs"]}
    else:
        configs, kwargs, loss = _stage2_setup(plan, cfg, out_dir)
    r_max_A = max(c["r_max"] for c in configs.values())
    dm = data_module(plan["path"], plan["split"], plan["type_names"], r_max_A, cfg)
    mk = _module_kwargs(configs, cfg, loss, 1, **kwargs)
    extra = {"slowness_temperature_K": lcfg["slowness_temperature_K"] if lcfg["slowness_weight"] > 0 else None,
             "velocity_seed": cfg["seed"]}
    module, history = run_stage(stage, mk, dm, cfg, out_dir, resume, callbacks, extra)
    return module, history, configs


def _stage2_setup(plan, cfg, out_dir):
    """Fast from stage 1 (fine-tuned at a lower learning rate, or frozen) plus a
    slow model with zero energy shifts and the stage-1 residual force scale."""
    lcfg = cfg["loss"]
    fast_file = Path(out_dir) / "checkpoints" / "stage1" / "done" / "fast.pt"
    fast_cfg = load_model(fast_file).config
    residual_rms = residual_force_rms_eV_per_A(load_model(fast_file), plan["train_frames"])
    slow_cfg = copy.deepcopy(plan["slow"])
    slow_cfg["per_type_energy_shifts"] = dict.fromkeys(plan["type_names"], 0.0)
    slow_cfg["per_type_energy_scales"] = dict.fromkeys(plan["type_names"], residual_rms)
    frozen = () if cfg["fast_finetune"] else ("fast",)
    kwargs = {"init_from": {"fast": str(fast_file)}, "frozen": frozen, "fast_lr_factor": cfg["fast_lr_factor"]}
    loss = loss_metrics(lcfg["energy_weight"], lcfg["force_weight"], lcfg["fast_force_weight"], lcfg["slowness_weight"])
    return {"fast": fast_cfg, "slow": slow_cfg}, kwargs, loss


def residual_force_rms_eV_per_A(fast, frames, max_frames=50) -> float:
    """RMS of F_ref − F_fast over (up to `max_frames` of) `frames`: the size of
    what the slow model has to learn."""
    return force_rms_eV_per_A(reference_minus_model(fast, frames[:max_frames])[1])


def build_manifest(plan, cfg, results) -> dict:
    """What manifest.json records about the run (complete: true is added last)."""
    r2 = results["stage2"]
    models = {"fast": r2["models"]["fast"], "slow": r2["models"]["slow"]}
    if "baseline" in results:
        models["baseline"] = results["baseline"]["models"]["baseline"]
    return {
        "format": "mtsmlip-model-dir-1",
        "versions": package_versions(),
        "data": {**plan["data_fingerprint"], "n_frames": plan["n_frames"], "type_names": plan["type_names"]},
        "split": plan["split"].as_dict(),
        "config": cfg,
        "architectures": {n: m.config for n, m in models.items()},
        "cutoffs_A": {n: m.r_max for n, m in models.items()},
        "parameters": {n: count_parameters(m.module) for n, m in models.items()},
        "stages": {s: {k: r[k] for k in ("wall_time_s", "final", "history", "parameters")} for s, r in results.items()},
        "final_losses": {s: r["final"] for s, r in results.items()},
        "wall_time_s": {s: r["wall_time_s"] for s, r in results.items()},
    }


def package_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("mtsmlip", "torch", "nequip", "nequip-allegro", "lightning", "ase", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out
