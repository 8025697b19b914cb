"""Training stages as values, and the one function that runs any of them.

A :class:`Stage` holds all that makes one stage differ from another: which
models are fitted together (their energies and forces summed), from which saved
weights they start, which stay fixed, each one's learning-rate factor, the loss
weights and the number of epochs. :func:`run_stage` fits every Stage the same
way, so a new kind of stage (say, a fast model alone on another potential's
labels) is a new Stage value and a small function that builds it from the config.
A co-training run is :func:`stage1`, :func:`stage2` and :func:`baseline`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import lightning
import torch

from ..errors import DataError
from ..files import sha256_of
from ..models import check_finite_weights, load_model
from .callbacks import ContainedCheckpoint, EpochReport, LambdaSchedule, PlateauStop
from .config import TrainSettings
from .data import data_module
from .loss import LossWeights, validation_metrics
from .module import MultiScaleModule
from .statistics import residual_force_rms_eV_per_A


@dataclass(frozen=True)
class Stage:
    """One training stage: the `models` ({name: full model config}) fitted
    together for `epochs` epochs on the sum of their energies and forces with
    the `loss` weights; `init_from` ({name: saved model file}) gives starting
    weights, `frozen` names are not trained, `lr_factors` ({name: factor})
    scale the learning rate per model. `name` names the checkpoint folder
    DIR/checkpoints/<name>/ and the report lines."""

    name: str
    models: dict
    loss: LossWeights
    epochs: int
    init_from: dict = field(default_factory=dict)
    frozen: tuple = ()
    lr_factors: dict = field(default_factory=dict)

    @property
    def r_max_A(self) -> float:
        """The largest cutoff of the stage's models (that of its neighbour lists)."""
        return max(float(config["r_max"]) for config in self.models.values())


def stage1(plan: dict, cfg: dict) -> Stage:
    """Stage 1: the fast model alone on the reference energies and forces."""
    return Stage("stage1", {"fast": plan["fast"]}, _conventional_loss(cfg), epochs=plan_epochs(plan, cfg))


def distill_stage(plan: dict, cfg: dict) -> Stage:
    """`mtsmlip distill`: the fast model alone on a teacher's energies and forces
    (the stage-1 recipe, its own checkpoint folder)."""
    return dataclasses.replace(stage1(plan, cfg), name="distill")


def stage2(plan: dict, cfg: dict, out_dir, slow: dict | None = None, name: str = "stage2") -> Stage:
    """Stage 2, co-training: the fast model from stage 1 (fine-tuned at
    ``learning_rate·fast_lr_factor``, or frozen) and the slow model (`slow`, by
    default the plan's), so that their sum fits the reference while λ keeps the
    fast model good alone. The slow model starts with zero energy shifts and an
    energy scale equal to the RMS of the forces stage 1 leaves unexplained.
    `name` tells apart the stage 2 of each slow model a size search tries."""
    fast_file = done_dir(out_dir, "stage1") / "fast.pt"
    fast = load_model(fast_file)
    slow = copy.deepcopy(plan["slow"] if slow is None else slow)
    slow["per_type_energy_shifts"] = dict.fromkeys(plan["type_names"], 0.0)
    # to 6 significant digits: a float32 evaluation repeats only to rounding, and
    # the scale is part of the stage's identity (a finished stage is reused by it)
    scale = float(f"{residual_force_rms_eV_per_A(fast, plan['train_frames']):.6g}")
    slow["per_type_energy_scales"] = dict.fromkeys(plan["type_names"], scale)
    return Stage(name, {"fast": fast.config, "slow": slow}, _co_training_loss(cfg), epochs=plan_epochs(plan, cfg),
                 init_from={"fast": str(fast_file)}, frozen=() if cfg["fast_finetune"] else ("fast",),
                 lr_factors={"fast": float(cfg["fast_lr_factor"])})


def baseline(plan: dict, cfg: dict) -> Stage:
    """The baseline: the conventional model every claim is measured against
    (`baseline_model`, chosen apart from the slow model), trained alone like
    stage 1 for `baseline_epochs` (null: `epochs`)."""
    epochs = int(cfg.get("baseline_epochs") or plan_epochs(plan, cfg))
    return Stage("baseline", {"baseline": plan["baseline"]}, _conventional_loss(cfg), epochs=epochs)


def plan_epochs(plan: dict, cfg: dict) -> int:
    """Epochs of a stage: as the plan fitted them (``epochs: auto``), else the config's."""
    return int(plan["epochs"]) if "epochs" in plan else int(cfg["epochs"])


def stage_identity(stage: Stage, plan: dict, settings: TrainSettings) -> str:
    """SHA-256 of everything that decides what `stage` produces: its models'
    full configs (with the statistics fitted from the data), loss weights,
    epochs, the content of the files it starts from, frozen models, learning-rate
    factors, the shared settings (not the Trainer's devices), the data file's
    content and the split. Two stages with one identity train the same models,
    so a finished one can be reused by another run (``--reuse-stages-from``)."""
    record = {"stage": stage.name, "models": stage.models, "loss": dataclasses.asdict(stage.loss),
              "epochs": stage.epochs, "init_from": {n: sha256_of(f) for n, f in stage.init_from.items()},
              "frozen": sorted(stage.frozen), "lr_factors": stage.lr_factors,
              "settings": identity_settings(settings),
              "data_sha256": plan["data_fingerprint"]["sha256"], "split": plan["split"].as_dict()}
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def identity_settings(settings: TrainSettings) -> dict:
    """The shared settings that decide a stage's result: not the progress bar, the
    Trainer's devices or the time cap; the plateau stop only where it is set (so
    stages of runs from before it existed keep their identity)."""
    record = {k: v for k, v in dataclasses.asdict(settings).items()
              if k not in ("progress_bar", "trainer", "max_minutes_per_stage")}
    if record.get("plateau_epochs") is None:
        record.pop("plateau_epochs", None)
    return record


# The slow models a size search tries, smallest first (overrides of the slow
# model's config): the slim default, wider, then as deep as the baseline.
# Per slow architecture (config key slow_architecture).
SLOW_GROWTH = {
    "nequip": ({}, {"num_features": 32}, {"num_layers": 3, "num_features": 32}),
    "allegro": ({}, {"num_scalar_features": 64, "num_tensor_features": 16},
                {"num_layers": 3, "num_scalar_features": 64, "num_tensor_features": 16}),
}


def slow_stage_name(k: int, slow: dict) -> str:
    """'stage2' for the first slow model tried, 'stage2-3-3x32' (candidate, layers x features) for the others."""
    features = slow.get("num_features", slow.get("num_scalar_features"))
    return "stage2" if k == 0 else f"stage2-{k + 1}-{slow['num_layers']}x{features}"


def validation_force_rmse(result: dict) -> float:
    """The validation force RMSE (meV/Å) a stage ended with."""
    return float(result["final"]["val_force_rmse_meV_per_A"])


def _conventional_loss(cfg: dict) -> LossWeights:
    return LossWeights(energy=cfg["loss"]["energy_weight"], force=cfg["loss"]["force_weight"])


def _co_training_loss(cfg: dict) -> LossWeights:
    weights = cfg["loss"]
    return LossWeights(energy=weights["energy_weight"], force=weights["force_weight"],
                       fast_force=weights["fast_force_weight"],
                       fast_force_schedule=weights.get("fast_force_weight_schedule"),
                       slowness=weights["slowness_weight"], slowness_temperature_K=weights["slowness_temperature_K"])


def checkpoint_dir(out_dir, stage_name: str) -> Path:
    """DIR/checkpoints/<stage>/: the stage's Lightning checkpoints."""
    return Path(out_dir) / "checkpoints" / stage_name


def done_dir(out_dir, stage_name: str) -> Path:
    """DIR/checkpoints/<stage>/done/: a finished stage's models and result.json."""
    return checkpoint_dir(out_dir, stage_name) / "done"


# ------------------------------------------------------------------ the runner
def run_stage(stage: Stage, plan: dict, settings: TrainSettings, out_dir, resume: bool = False, callbacks=()):
    """Fit `stage` on the plan's split with Lightning, with a checkpoint every
    epoch in DIR/checkpoints/<name>/ (with `resume`, continued from there).
    Returns (the module with its EMA weights swapped in, the per-epoch history)."""
    datamodule = data_module(plan["path"], plan["split"], plan["type_names"], stage.r_max_A,
                             settings.batch_size, settings.seed)
    steps_per_epoch = math.ceil(len(plan["split"].train) / settings.batch_size)
    lightning.seed_everything(settings.seed, workers=True, verbose=False)
    module = MultiScaleModule(**module_kwargs(stage, settings, steps_per_epoch))
    ckpt_dir = checkpoint_dir(out_dir, stage.name)
    report = EpochReport(stage.name)
    trainer = lightning.Trainer(
        max_epochs=stage.epochs, callbacks=[*_stage_callbacks(stage, ckpt_dir, settings), report, *callbacks],
        inference_mode=False, logger=False, enable_progress_bar=settings.progress_bar,
        enable_model_summary=False, num_sanity_val_steps=0, deterministic=False, **settings.trainer,
    )
    module.world_size = trainer.world_size
    ckpt = resumable_checkpoint(ckpt_dir) if resume else None
    trainer.fit(module, datamodule=datamodule, ckpt_path=None if ckpt is None else str(ckpt), weights_only=True)
    module.evaluation_model  # swaps the EMA weights into module.model
    return module, report.history


def _stage_callbacks(stage: Stage, ckpt_dir: Path, settings: TrainSettings) -> list:
    from lightning.pytorch.callbacks import Timer

    # Lightning >= 2.5 writes last.ckpt only when a top-k checkpoint was written in
    # the same step, so keep the newest epoch checkpoint (monitor=None, top 1) too
    callbacks = [ContainedCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=1, every_n_epochs=1)]
    if settings.plateau_epochs is not None:
        callbacks.append(PlateauStop(stage.name, settings.plateau_epochs))
    if settings.max_minutes_per_stage is not None:  # checked after each epoch, so at least one finishes
        callbacks.append(Timer(duration={"minutes": settings.max_minutes_per_stage}, interval="epoch"))
    if stage.loss.fast_force_schedule:
        callbacks.append(LambdaSchedule(stage.loss.fast_force_schedule, stage.loss.coeffs()))
    return callbacks


def module_kwargs(stage: Stage, settings: TrainSettings, steps_per_epoch: int) -> dict:
    """Everything MultiScaleModule needs to fit `stage`, as plain (checkpointable)
    config. The builders' ``_target_`` is the package's path, which checkpoints hold."""
    lr, loss = settings.learning_rate, stage.loss
    return {
        "model": {"_target_": "mtsmlip.training.build_model_dict", "models": dict(stage.models),
                  "init_from": dict(stage.init_from), "frozen": list(stage.frozen)},
        "num_datasets": {"train": 1, "val": 1, "test": 0, "predict": 0},
        "optimizer": {"_target_": "torch.optim.Adam", "lr": lr,
                      "param_groups": {"_target_": "mtsmlip.training.param_groups", "lr": lr,
                                       "lr_factors": dict(stage.lr_factors)}},
        "lr_scheduler": _cosine_schedule(settings, stage.epochs * steps_per_epoch),
        "loss": loss.metrics(),
        "val_metrics": validation_metrics(with_fast="fast" in stage.models and len(stage.models) > 1),
        "ema_decay": settings.ema_decay,
        "slowness_temperature_K": loss.slowness_temperature_K if loss.slowness > 0 else None,
        "velocity_seed": settings.seed,
    }


def _cosine_schedule(settings: TrainSettings, total_steps: int) -> dict:
    # the cosine schedule steps with every optimiser step, not every epoch: Lightning
    # saves the end-of-epoch checkpoint before an epoch-interval scheduler steps, so a
    # resumed run would be one scheduler step behind an uninterrupted one
    return {"scheduler": {"_target_": "torch.optim.lr_scheduler.CosineAnnealingLR", "T_max": total_steps,
                          "eta_min": settings.learning_rate * settings.lr_min_factor},
            "interval": "step", "frequency": 1}


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


def check_stage_sound(stage_name: str, module, history, model_names) -> None:
    """Refuse to record a stage whose training diverged: a non-finite loss or
    validation error in any epoch, or non-finite weights. Nothing is written."""
    if not history:
        raise DataError(f"stage {stage_name}: no epoch finished; nothing to write")
    for row in history:
        bad = [k for k, v in row.items() if k != "epoch" and not (v is not None and math.isfinite(v))]
        if bad:
            raise DataError(f"stage {stage_name}, epoch {row['epoch']}: {bad[0]} is {row[bad[0]]} "
                            "(training diverged); no model written. Check the data for bad frames, "
                            "or lower learning_rate")
    for name in model_names:
        check_finite_weights(module.model[name], f"stage {stage_name}, {name} model")
