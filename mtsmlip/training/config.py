"""The training config: defaults merged with the user's YAML and options, its
numbers checked, and the settings every stage of a run shares."""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import DataError
from ..files import read_yaml

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "train_default.yaml"
CONFIG_FILE = "train_config.yaml"
ARCHITECTURE_KEYS = ("fast_model", "slow_model", "baseline_model")

AUTO_KEYS = ("batch_size", "train_frames", "val_frames", "epochs")  # may be "auto": fitted to the data

# key -> (kind, smallest allowed value, whether the smallest is allowed itself)
CONFIG_NUMBERS = {
    "seed": (int, 0, True), "train_frames": (int, 1, True), "val_frames": (int, 1, True),
    "epochs": (int, 1, True), "steps": (int, 1, True), "min_epochs": (int, 1, True), "batch_size": (int, 1, True), "learning_rate": (float, 0.0, False),
    "lr_min_factor": (float, 0.0, True), "ema_decay": (float, 0.0, True), "fast_lr_factor": (float, 0.0, True),
    "loss.energy_weight": (float, 0.0, True), "loss.force_weight": (float, 0.0, True),
    "loss.fast_force_weight": (float, 0.0, True), "loss.slowness_weight": (float, 0.0, True),
    "loss.slowness_temperature_K": (float, 0.0, False),
    "stability_md_fs": (float, 0.0, True), "stability_temperature_K": (float, 0.0, False),
    "stability_atom_fs": (float, 0.0, False),
}


def load_config(path=None, **overrides) -> dict:
    """The default config, updated by the YAML at `path` (nested dicts merged),
    then by `overrides` whose value is not None (e.g. seed, epochs, train_frames)."""
    cfg = yaml.safe_load(DEFAULT_CONFIG.read_text())
    _merge_file_and_options(cfg, path, overrides)
    check_config(cfg, f"training config ({path if path is not None else 'defaults'} and options)")
    return cfg


def resume_config(out_dir, path=None, **overrides) -> dict | None:
    """The config saved in `out_dir` by an earlier run, updated like
    :func:`load_config`; None if the run never got that far."""
    saved = Path(out_dir) / CONFIG_FILE
    if not saved.is_file():
        return None
    cfg = saved_config(saved)
    _merge_file_and_options(cfg, path, overrides)
    check_config(cfg, str(saved))
    return cfg


# keys added since a run may have saved its config, with the values that keep such
# a run training as it did (a fixed number of epochs, no plateau stop, no time cap)
KEYS_OF_OLDER_RUNS = {"steps": 3000, "min_epochs": 1, "plateau_epochs": None, "max_minutes": None, "short_range_wall": None,
                      "stability_md_fs": 500.0, "stability_temperature_K": 300.0, "stability_atom_fs": 1e12,
                      "slow_search": False, "slow_search_rule": "rmse",
                      "slow_architecture": "nequip"}
SLOW_ARCHITECTURES = ("nequip", "allegro")
# how the size search judges a pair against the baseline: "lead", ahead in per-frame validation
# force MSE by at least one standard error; "rmse", validation force RMSE at most the baseline's
# (runs from before 2026-12-07, so that resuming one never trains or swaps its slow model)
SLOW_SEARCH_RULES = ("lead", "rmse")
SHORT_RANGE_WALLS = (None, "zbl", "data")


def saved_config(path) -> dict:
    """The training config a run saved (train_config.yaml), completed with
    :data:`KEYS_OF_OLDER_RUNS` where it predates them."""
    cfg = read_yaml(path, "saved training config")
    if not isinstance(cfg, dict):
        raise DataError(f"{path}: the saved training config is not a mapping")
    known = yaml.safe_load(DEFAULT_CONFIG.read_text())
    unknown = sorted(set(cfg) - set(known))
    if unknown:
        raise DataError(f"{path}: not a config mtsmlip saved (unknown keys {unknown})")
    return {**KEYS_OF_OLDER_RUNS, **cfg}


def _merge_file_and_options(cfg: dict, path, overrides: dict) -> None:
    if path is not None:
        path = Path(path)
        given = read_yaml(path, "config file") or {}
        if not isinstance(given, dict):
            raise DataError(f"{path}: the config file must hold a mapping of config keys")
        _merge(cfg, given, str(path))
    _merge(cfg, {k: v for k, v in overrides.items() if v is not None}, "command line")


def _merge(base: dict, update: dict, where: str) -> None:
    for key, value in update.items():
        if key not in base:
            raise DataError(f"{where}: unknown config key '{key}' (known: {sorted(base)})")
        if isinstance(base[key], dict) and isinstance(value, dict) and key not in ARCHITECTURE_KEYS:
            _merge(base[key], value, f"{where}: {key}")
        else:
            base[key] = copy.deepcopy(value)


def check_config(cfg: dict, where: str) -> None:
    """DataError naming the key of any number out of range (negative epochs would
    train forever, zero epochs would write untrained models marked complete)."""
    for key, (kind, minimum, inclusive) in CONFIG_NUMBERS.items():
        if key in AUTO_KEYS and cfg.get(key) == "auto":
            continue
        try:
            value = functools.reduce(lambda d, k: d[k], key.split("."), cfg)
        except (KeyError, TypeError):
            raise DataError(f"{where}: config key '{key}' is missing") from None
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ok = number and (kind is float or value == int(value)) and (value >= minimum if inclusive else value > minimum)
        if not ok:
            what = "an integer" if kind is int else "a number"
            raise DataError(f"{where}: config key '{key}' must be {what} {'>=' if inclusive else '>'} {minimum} "
                            f"(got {value!r})")
    if cfg["ema_decay"] >= 1.0:
        raise DataError(f"{where}: config key 'ema_decay' must be below 1 (got {cfg['ema_decay']!r})")
    for key in ("test_frames", "baseline_epochs", "plateau_epochs"):
        value = cfg.get(key)
        if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            raise DataError(f"{where}: config key '{key}' must be null or an integer >= 1 (got {value!r})")
    check_trainer_options(cfg.get("trainer"), where)
    search = cfg.get("slow_search", False)
    if not (isinstance(search, bool) or (isinstance(search, list) and search
                                         and all(isinstance(g, dict) for g in search))):
        raise DataError(f"{where}: config key 'slow_search' must be true, false or a list of slow_model overrides "
                        f"(got {search!r})")
    if cfg.get("slow_search_rule", "lead") not in SLOW_SEARCH_RULES:
        raise DataError(f"{where}: config key 'slow_search_rule' must be one of {list(SLOW_SEARCH_RULES)} "
                        f"(got {cfg.get('slow_search_rule')!r})")
    if cfg.get("slow_architecture") not in SLOW_ARCHITECTURES:
        raise DataError(f"{where}: config key 'slow_architecture' must be one of {list(SLOW_ARCHITECTURES)} "
                        f"(got {cfg.get('slow_architecture')!r})")
    if cfg.get("short_range_wall") not in SHORT_RANGE_WALLS:
        raise DataError(f"{where}: config key 'short_range_wall' must be one of {list(SHORT_RANGE_WALLS)} "
                        f"(got {cfg.get('short_range_wall')!r})")
    minutes = cfg.get("max_minutes")
    if minutes is not None and not (isinstance(minutes, (int, float)) and not isinstance(minutes, bool)
                                    and math.isfinite(minutes) and minutes > 0):
        raise DataError(f"{where}: config key 'max_minutes' must be null or a number > 0 (got {minutes!r})")


TRAINER_OPTIONS = {"accelerator": ("auto", "cpu", "gpu", "cuda", "mps"), "devices": 1024, "num_nodes": 1024,
                   "strategy": ("auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true", "fsdp"),
                   "precision": ("32", "64", "32-true", "64-true", "bf16-mixed", "16-mixed", 32, 64)}


def check_trainer_options(trainer, where: str) -> None:
    """DataError unless `trainer` (passed to lightning.Trainer) holds only the
    device options mtsmlip documents, each with a known value or a bounded count."""
    if not isinstance(trainer, dict):
        raise DataError(f"{where}: config key 'trainer' must be a mapping (got {trainer!r})")
    for key, value in trainer.items():
        allowed = TRAINER_OPTIONS.get(key)
        if allowed is None:
            raise DataError(f"{where}: config key 'trainer.{key}' is not one mtsmlip passes to Lightning "
                            f"(known: {sorted(TRAINER_OPTIONS)})")
        if isinstance(allowed, int):
            ok = value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= allowed)
            if key == "devices" and isinstance(value, list):
                ok = all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < allowed for v in value)
        else:
            ok = value in allowed
        if not ok:
            raise DataError(f"{where}: config key 'trainer.{key}' cannot be {value!r}")


@dataclass(frozen=True)
class TrainSettings:
    """What every stage of a run shares: the seed (initialisation, shuffling,
    slowness velocities), frames per optimiser step, Adam's learning rate
    (cosine-annealed over a stage to ``learning_rate·lr_min_factor``), the EMA
    decay of the weights, the options passed to ``lightning.Trainer``, the
    plateau that ends a stage (epochs without a 1 % better validation loss) and
    each stage's share of the run's wall-clock cap (minutes)."""

    seed: int
    batch_size: int
    learning_rate: float
    lr_min_factor: float
    ema_decay: float
    progress_bar: bool = False
    trainer: dict = field(default_factory=dict)
    plateau_epochs: int | None = None
    max_minutes_per_stage: float | None = None

    @classmethod
    def from_config(cls, cfg: dict, plan: dict | None = None) -> TrainSettings:
        """The settings of `cfg`, with a batch size of 'auto' as the training
        `plan` (:func:`mtsmlip.training.plan_training`) fitted it to the data."""
        if plan is None and cfg["batch_size"] == "auto":
            raise ValueError("batch_size 'auto' is fitted to the data: pass the training plan")
        minutes = cfg.get("max_minutes")
        stages = int((plan or {}).get("n_stages", 3 if cfg.get("baseline", True) else 2))
        return cls(seed=int(cfg["seed"]), batch_size=int(plan["batch_size"] if plan else cfg["batch_size"]),
                   learning_rate=float(cfg["learning_rate"]), lr_min_factor=float(cfg["lr_min_factor"]),
                   ema_decay=float(cfg["ema_decay"]), progress_bar=bool(cfg["progress_bar"]),
                   trainer=dict(cfg["trainer"]), plateau_epochs=cfg.get("plateau_epochs"),
                   max_minutes_per_stage=None if minutes is None else float(minutes) / stages)
