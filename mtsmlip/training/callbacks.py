"""Lightning callbacks of a stage: the λ schedule and the one-line epoch report."""

from __future__ import annotations

import os
import re
import time

import lightning
from lightning.pytorch.callbacks import ModelCheckpoint

from .loss import FAST_FORCE_TERM


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
            module.loss.set_coeffs({**self.base, FAST_FORCE_TERM: self.schedule[max(due)]})


URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def inside_folder(path, folder) -> bool:
    """Whether `path` is a plain local path inside `folder` (no URL scheme such as
    ``local://``, no way out through ``..`` or a symbolic link)."""
    if not isinstance(path, str) or not path or URL_SCHEME.match(path):
        return False
    home = os.path.realpath(folder)
    return os.path.commonpath([home, os.path.realpath(path)]) == home


class ContainedCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint that, on resume, takes back only the checkpoint
    paths that lie in its own folder. Lightning restores them from the checkpoint
    file and later removes the 'old best' with ``fs.rm(recursive=True)``, so a
    checkpoint edited to name another folder (or a run moved since) would have a
    resumed stage delete something outside it. Its state keeps Lightning's key,
    so checkpoints written by ModelCheckpoint resume as before."""

    @property
    def state_key(self) -> str:
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def load_state_dict(self, state_dict) -> None:
        home = self.dirpath
        clean = {k: (v if inside_folder(v, home) else "") if k.endswith("_path") else v
                 for k, v in state_dict.items()}
        clean["best_k_models"] = {p: v for p, v in (state_dict.get("best_k_models") or {}).items()
                                  if inside_folder(p, home)}
        super().load_state_dict(clean)


class PlateauStop(lightning.Callback):
    """Ends a stage once its validation loss (the force RMSE, nequip's
    ``weighted_sum``) has not improved by `min_improvement` (relative) on its best
    for `patience` epochs: a plateau, so more epochs would buy nothing. Its state is
    checkpointed, so a resumed stage stops where an uninterrupted one would."""

    MONITOR = "val0_epoch/weighted_sum"

    def __init__(self, stage: str, patience: int, min_improvement: float = 0.01):
        self.stage, self.patience, self.min_improvement = stage, int(patience), float(min_improvement)
        self.best, self.waited, self.stopped_at = None, 0, None

    def on_validation_end(self, trainer, module):
        if trainer.sanity_checking or self.MONITOR not in trainer.callback_metrics:
            return
        loss = float(trainer.callback_metrics[self.MONITOR])
        if self.best is None or loss < self.best * (1.0 - self.min_improvement):
            self.best, self.waited = loss, 0
            return
        self.waited += 1
        if self.waited >= self.patience:
            trainer.should_stop = True
            self.stopped_at = int(trainer.current_epoch) + 1
            if trainer.is_global_zero:
                print(f"[{self.stage}] validation loss on a plateau for {self.patience} epochs (best {self.best:.4g}): "
                      f"stage ends at epoch {self.stopped_at}", flush=True)

    def state_dict(self):
        return {"best": self.best, "waited": self.waited, "stopped_at": self.stopped_at}

    def load_state_dict(self, state):
        self.best, self.waited, self.stopped_at = state["best"], state["waited"], state.get("stopped_at")


# Seconds of training after which a stage says how long it will take (its first
# epoch line can be many minutes away: 8 min an epoch for 1000 water frames on 2 cores)
RATE_AFTER_S = 60.0


class EpochReport(lightning.Callback):
    """Prints one line per epoch with the current errors; keeps the history.
    After :data:`RATE_AFTER_S` of training, one line with the time a step takes
    and what that makes of an epoch and of the stage's epochs left."""

    def __init__(self, stage: str):
        self.stage, self.history, self.t0 = stage, [], time.time()
        self.steps, self.said_rate, self.rate_t0 = 0, False, self.t0

    def on_train_start(self, trainer, module):
        self.rate_t0 = time.time()  # after setup and any checkpoint restore

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.steps += 1
        elapsed_s = time.time() - self.rate_t0
        if self.said_rate or elapsed_s < RATE_AFTER_S or not trainer.is_global_zero:
            return
        self.said_rate = True
        per_epoch = trainer.num_training_batches
        left = per_epoch * (trainer.max_epochs - trainer.current_epoch) - (batch_idx + 1)
        print(rate_line(self.stage, elapsed_s / self.steps, per_epoch, left), flush=True)

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


def rate_line(stage: str, s_per_step: float, steps_per_epoch: int, steps_left: int) -> str:
    """What the stage's speed so far makes of an epoch and of the rest of the stage."""
    return (f"[{stage}] {s_per_step:.2f} s a step: about {s_per_step * steps_per_epoch / 60:.1f} min an epoch, "
            f"{s_per_step * steps_left / 60:.0f} min for the {steps_left} steps left in this stage "
            "(at most: a plateau of the validation loss ends it sooner; --max-minutes caps the run)")
