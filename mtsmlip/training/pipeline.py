"""A whole training run: plan (data, split, statistics, model configs) before
anything is written, the output folder, its stages (finished ones reused on
resume), the energy-offset balance, and the model directory with its manifest."""

from __future__ import annotations

import functools
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from .. import data as data_mod
from ..data import frames_of
from ..errors import DataError
from ..files import (atomic_write, atomic_write_json, check_output_dir, check_same_content, fingerprint, output_lock,
                     read_json, run_files_in)
from ..system import fitted_defaults, profile
from ..models import BASELINE_PRESET, check_model_config, data_wall, zbl_wall, FAST_PRESET, SLOW_PRESET, SLOW_PRESETS, count_parameters, load_model, save_model, write_model_dir
from .config import CONFIG_FILE, TrainSettings, check_config, saved_config
from .data import check_frames_fit
from .stages import (SLOW_GROWTH, baseline, check_stage_sound, done_dir, run_stage, slow_stage_name, stage1, stage2,
                     stage_identity, validation_force_rmse)
from .statistics import balance_energy_offsets, fitted_model_config

DATA_RECORD = "train_data.json"


def train(data_path, out_dir, cfg: dict, resume: bool = False, callbacks=(), reuse_from=()) -> dict:
    """Run stage 1, stage 2 and (unless cfg['baseline'] is false) the baseline;
    write DIR/{fast,slow,baseline}.pt and manifest.json (last). With `resume`,
    finished stages are reused and an interrupted stage continues from its last
    checkpoint. A stage that a run in `reuse_from` (run directories) finished
    with the same identity (:func:`stage_identity`) is copied, not trained again.
    Returns the manifest."""
    out_dir = check_output_dir(out_dir)
    check_config(cfg, "training config")
    reuse_from = [_check_run_dir(d) for d in reuse_from]
    plan = plan_training(data_path, cfg)  # reads and checks everything before anything is written
    with output_lock(out_dir, "train"):
        cfg = _prepare_out_dir(out_dir, cfg, resume, plan["data_fingerprint"])
        settings = TrainSettings.from_config(cfg, plan)

        def result_of(stage):
            return stage_result(stage, plan, settings, out_dir, resume, callbacks, reuse_from)

        results = {"stage1": result_of(stage1(plan, cfg))}
        if cfg["baseline"]:
            results["baseline"] = result_of(baseline(plan, cfg))
        results["stage2"], search = sized_stage2(plan, cfg, out_dir, result_of, results.get("baseline"))
        models = written_models(results)
        moved = balance_energy_offsets(models["fast"], models["slow"], plan["train_frames"], plan["type_names"])
        manifest = {**build_manifest(plan, cfg, results), "slow_search": search,
                    "fast_energy_offset_moved_eV": moved}
        write_model_dir(out_dir, {k: (v.module, v.config) for k, v in models.items()}, manifest)
    return manifest


def slow_growth(cfg: dict) -> tuple:
    """The slow models stage 2 tries, as overrides of `slow_model`: `slow_search`
    true sizes the preset (:data:`SLOW_GROWTH`) unless `slow_model` names one; a
    list is tried as given; without a baseline there is nothing to size against."""
    search = cfg.get("slow_search", False)
    if not cfg["baseline"] or search is False or (search is True and cfg["slow_model"]):
        return ({},)
    return SLOW_GROWTH[cfg["slow_architecture"]] if search is True else tuple(search)


def sized_stage2(plan, cfg, out_dir, result_of, baseline_result, frame_errors=None) -> tuple[dict, dict]:
    """Stage 2 with each slow model of the plan's `slow_candidates` in turn, from
    the slim one up, until the pair is clearly at least as accurate as the
    baseline on the validation frames: its mean squared force error per frame is
    below the baseline's by at least one standard error of the paired per-frame
    differences (:func:`pair_against_baseline`), so that a pair ahead by less
    than the validation set can tell (ethanol: 4 % ± 6 %) is grown too. The first
    that is, or else the one with the lowest validation error, is kept. That is
    ``slow_search_rule: lead``; ``rmse`` (runs from before it, which a resumed run
    keeps) asks only for a validation force RMSE at most the baseline's.
    `frame_errors(result)`: per-frame force MSEs of a stage's models on the
    validation frames (default :func:`validation_force_mse`). Returns (the kept
    stage's result, the search's record: candidates, errors, choice, why)."""
    frame_errors = frame_errors or functools.partial(validation_force_mse, plan)
    by_lead = cfg.get("slow_search_rule", "lead") == "lead"
    target = None if baseline_result is None else validation_force_rmse(baseline_result)
    search = target is not None and len(plan["slow_candidates"]) > 1
    base = frame_errors(baseline_result) if search and by_lead else None
    tried = []
    for k, slow in enumerate(plan["slow_candidates"]):
        result = result_of(stage2(plan, cfg, out_dir, slow, slow_stage_name(k, slow)))
        if not search:
            judged = None
        elif by_lead:
            judged = pair_against_baseline(frame_errors(result), base)
        else:
            judged = {"ahead": validation_force_rmse(result) <= target}
        tried.append((result, slow, judged))
        if judged is None or judged["ahead"]:
            break
        if k + 1 < len(plan["slow_candidates"]):
            print(f"mtsmlip train: {_behind_text(judged, validation_force_rmse(result), target)}; "
                  "trying a larger slow model", file=sys.stderr)
    met = [r for r, _, judged in tried if judged is not None and judged["ahead"]]
    # none ahead: the lowest error, by the measure the rule judges
    error = ((lambda entry: entry[2]["mse_relative"]) if search and by_lead else
             (lambda entry: validation_force_rmse(entry[0])))
    kept = met[0] if met else min(tried, key=error)[0]
    record = {"baseline_val_force_rmse_meV_per_A": target,
              "rule": ("ahead of the baseline by at least one standard error of the per-frame validation force MSE"
                       if by_lead else "validation force RMSE at most the baseline's"),
              "candidates": [{"stage": r["stage"], "num_layers": slow["num_layers"],
                              "num_features": slow.get("num_features", slow.get("num_scalar_features")),
                              "architecture": "allegro" if "allegro" in slow.get("_target_", "") else "nequip",
                              "val_force_rmse_meV_per_A": validation_force_rmse(r),
                              **({"against_baseline": judged} if judged and "mse_relative" in judged else {}),
                              "kept": r is kept}
                             for r, slow, judged in tried],
              "why": ("no baseline to measure against" if target is None else
                      "a single slow model to try" if not search else
                      "the first slow model whose pair is clearly at least as accurate as the baseline" if met else
                      "no candidate was clearly ahead of the baseline: the most accurate is kept")}
    if len(plan["slow_candidates"]) > 1:
        print(f"mtsmlip train: slow model kept: {kept['stage']} ({record['why']})", file=sys.stderr)
    return kept, record


def _behind_text(judged: dict, rmse: float, target: float) -> str:
    if "mse_relative" in judged:
        return (f"the pair's validation force MSE is {100 * judged['mse_relative']:+.1f} % "
                f"± {100 * judged['standard_error_relative']:.1f} % from the baseline's: not clearly ahead")
    return f"the pair's validation force RMSE {rmse:.1f} meV/Å is above the baseline's {target:.1f}"


def pair_against_baseline(pair_mse, baseline_mse) -> dict:
    """The pair's per-frame force MSEs against the baseline's on the same frames:
    the mean paired difference and its standard error, both relative to the
    baseline's mean MSE, and whether the pair is ahead (strictly) by at least one
    standard error (with one frame there is no spread: ahead by any margin).
    The search's rule ``slow_search_rule: lead``."""
    pair_mse, baseline_mse = np.asarray(pair_mse, dtype=float), np.asarray(baseline_mse, dtype=float)
    if pair_mse.shape != baseline_mse.shape or not pair_mse.size:
        raise ValueError("pair_against_baseline: the same frames, at least one, for both")
    d = pair_mse - baseline_mse
    se = float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else 0.0
    scale = float(baseline_mse.mean())
    if not scale > 0:
        raise ValueError("pair_against_baseline: the baseline fits the validation frames exactly (zero force error)")
    return {"frames": int(d.size), "mse_relative": float(d.mean()) / scale, "standard_error_relative": se / scale,
            "ahead": bool(d.mean() < 0 and d.mean() + se <= 0)}


def validation_force_mse(plan, result) -> np.ndarray:
    """Each validation frame's mean squared force error, (meV/Å)², of the models a
    stage result holds, summed (stage 2: fast + slow; the baseline alone)."""
    frames = frames_of(plan["path"])
    models = result["models"]
    parts = [models[n] for n in ("fast", "slow") if n in models] or [models["baseline"]]
    return force_mse_per_frame([m.calculator() for m in parts], [frames[i] for i in plan["split"].val])


def force_mse_per_frame(calculators, frames) -> np.ndarray:
    """Each frame's mean squared force error, (meV/Å)², of the summed forces of
    `calculators` (a pair: its fast and slow parts), shape (n_frames,)."""
    out = []
    for atoms in frames:
        forces = 0.0
        for calc in calculators:
            a = atoms.copy()
            a.calc = calc
            forces = forces + a.get_forces()
        out.append(float(np.mean((1000.0 * (forces - atoms.arrays["forces"])) ** 2)))
    return np.array(out)


def short_range_wall(kind, type_names, train_frames, r_max_A: float) -> dict:
    """The fast model's pair_potential for `short_range_wall`: {} (none), nequip's
    ZBL, or the data-gated wall at each species pair's shortest distance in the
    training frames (:func:`mtsmlip.models.data_wall`)."""
    if kind == "zbl":
        return {"pair_potential": zbl_wall(type_names)}
    if kind == "data":
        from ..system import shortest_distances_A

        return {"pair_potential": data_wall(type_names, shortest_distances_A(train_frames, r_max_A), r_max_A)}
    return {}


def plan_training(data_path, cfg, split=None) -> dict:
    """Read and check the data, fix the split (unless a `split` is given: a
    :class:`mtsmlip.data.Split`), compute statistics, and build the model configs
    of all stages (everything decided before any training)."""
    path = os.path.abspath(os.fspath(data_path))
    frames = frames_of(path)
    seed = int(cfg["seed"])
    if split is None:
        split = config_split(len(frames), cfg)
    train_frames = [frames[i] for i in split.train]
    type_names = data_mod.species_of(frames)
    system = profile(train_frames)
    defaults = fitted_defaults(system)
    fit = functools.partial(fitted_model_config, model_dtype=cfg["model_dtype"], frames=train_frames,
                            type_names=type_names)
    fast_r_max_A = cfg["fast_model"].get("r_max", defaults["fast_r_max_A"])
    wall = short_range_wall(cfg.get("short_range_wall"), type_names, train_frames, fast_r_max_A)
    fast = fit(FAST_PRESET, {"r_max": defaults["fast_r_max_A"], **wall, **cfg["fast_model"]}, seed)
    # the slow model is sized by a search (sized_stage2) unless the config names it or there is no baseline
    growth = slow_growth(cfg)
    slow_preset = SLOW_PRESETS[cfg["slow_architecture"]]
    slow_candidates = [fit(slow_preset, {**cfg["slow_model"], **g}, seed + 1) for g in growth]
    slow = slow_candidates[0]
    # runs from before `baseline_model` existed trained the slow architecture as their baseline
    base = fit(BASELINE_PRESET, cfg["baseline_model"], seed + 1) if "baseline_model" in cfg else slow
    for name, model_cfg in (("fast_model", fast), *(("slow_model", c) for c in slow_candidates),
                            ("baseline_model", base)):
        check_model_config(model_cfg, f"training config, {name}")
        if not model_cfg["avg_num_neighbors"] > 0:
            raise DataError(f"{path}: no atom of the training frames has a neighbour within the {name}'s cutoff "
                            f"({model_cfg['r_max']} Å; single atoms or atoms far apart): there is no interaction "
                            "to learn")
    warn_duplicate_frames(frames, split, path)
    check_frames_fit(frames, path)
    batch_size = defaults["batch_size"] if cfg["batch_size"] == "auto" else int(cfg["batch_size"])
    return {"path": path, "n_frames": len(frames), "split": split, "type_names": type_names,
            "train_frames": train_frames, "fast": fast, "slow": slow, "slow_candidates": slow_candidates,
            "baseline": base,
            "data_fingerprint": fingerprint(path), "system": {**system.as_dict(), "fitted_defaults": defaults},
            "batch_size": batch_size, "epochs": stage_epochs(cfg, len(split.train), batch_size),
            # stages that may run, for each one's share of max_minutes: stage 1, each slow model, the baseline
            "n_stages": 1 + len(slow_candidates) + (1 if cfg["baseline"] else 0)}


def warn_duplicate_frames(frames, split, path) -> None:
    """Say on stderr when frames repeat (same species, positions and cell): a
    repeated frame in the validation or test set is not held out, and its errors
    are training errors."""
    first_seen, train = {}, set(split.train)
    repeats = []
    for i, atoms in enumerate(frames):
        key = (atoms.numbers.tobytes(), atoms.positions.round(8).tobytes(), atoms.cell.array.round(8).tobytes())
        if key in first_seen:
            repeats.append((first_seen[key], i))
        else:
            first_seen[key] = i
    leaked = [(a, b) for a, b in repeats if (a in train) != (b in train)]
    if repeats:
        print(f"mtsmlip train: warning: {path}: {len(repeats)} of {len(frames)} frames repeat an earlier one "
              f"(e.g. frame {repeats[0][1]} = frame {repeats[0][0]}); {len(leaked)} of them sit on both sides of "
              "the train / held-out split, so held-out errors there are training errors. Remove repeated frames "
              "for an honest validation", file=sys.stderr)


MIN_AUTO_FRAMES = 10  # fewer frames cannot be split into train, validation and test
MAX_AUTO_TRAIN_FRAMES = 1000
MAX_AUTO_EPOCHS = 200


def frame_counts(n_frames: int, cfg: dict) -> tuple[int, int]:
    """(train_frames, val_frames) of `cfg` for a file of `n_frames` frames; "auto"
    takes 10 % of the file for validation (2 to 100 frames), keeps as many again
    out as a test set, and trains on the rest (at most 1000 frames)."""
    held_out = int(cfg["test_frames"] or 0) if cfg.get("test_split", "random") == "last" else 0
    pool = n_frames - held_out
    auto = [k for k in ("train_frames", "val_frames") if cfg[k] == "auto"]
    if auto and pool < MIN_AUTO_FRAMES:
        raise DataError(f"{auto[0]} auto needs at least {MIN_AUTO_FRAMES} frames to split into train, validation "
                        f"and test (the data has {pool}{' once the test frames are held out' if held_out else ''})")
    share = min(100, max(2, round(0.1 * n_frames)))
    val = share if cfg["val_frames"] == "auto" else int(cfg["val_frames"])
    test = 0 if held_out else (share if cfg["test_frames"] is None else int(cfg["test_frames"]))
    train = min(MAX_AUTO_TRAIN_FRAMES, pool - val - test) if cfg["train_frames"] == "auto" else int(cfg["train_frames"])
    return train, val


def stage_epochs(cfg: dict, n_train: int, batch_size: int) -> int:
    """Epochs of each stage: `epochs`, or for "auto" as many as `steps` optimiser
    steps take, at least `min_epochs` (each training frame seen that often) and at
    most :data:`MAX_AUTO_EPOCHS`."""
    return epochs_and_rule(cfg, n_train, batch_size)[0]


def epochs_and_rule(cfg: dict, n_train: int, batch_size: int) -> tuple[int, str]:
    """:func:`stage_epochs` and, in words, the rule that set it: the config, the
    step budget, `min_epochs` or the cap."""
    if cfg["epochs"] != "auto":
        return int(cfg["epochs"]), "set in the config"
    steps_per_epoch = math.ceil(n_train / batch_size)
    by_steps = math.ceil(int(cfg["steps"]) / steps_per_epoch)
    wanted = max(int(cfg["min_epochs"]), by_steps)
    if wanted > MAX_AUTO_EPOCHS:
        return MAX_AUTO_EPOCHS, f"auto: at most {MAX_AUTO_EPOCHS} epochs"
    if wanted > by_steps:
        return wanted, (f"auto: min_epochs {cfg['min_epochs']} passes over the frames ({steps_per_epoch} optimiser "
                        f"steps each), more than the {cfg['steps']}-step budget's {by_steps}")
    return wanted, f"auto: about {cfg['steps']} optimiser steps ({steps_per_epoch} an epoch)"


def config_split(n_frames: int, cfg: dict):
    """The train/validation/test split of `n_frames` frames that `cfg` asks for
    (train_frames, val_frames, test_frames, test_split, seed)."""
    train, val = frame_counts(n_frames, cfg)
    return data_mod.make_split(n_frames, train, val, int(cfg["seed"]), cfg["test_frames"],
                               cfg.get("test_split", "random"))


# keys of what runs after the models are written (the stability check): a resumed run
# may change them, e.g. `train --resume --check-fs 500` checks a finished run again
AFTER_TRAINING_KEYS = ("stability_md_fs", "stability_temperature_K", "stability_atom_fs")


def _prepare_out_dir(out_dir: Path, cfg: dict, resume: bool, data_fingerprint: dict) -> dict:
    """Refuse to overwrite a run; on resume, continue with the saved config and
    only on the same data file (by content: a fingerprint is recorded at the start)."""
    saved, record = out_dir / CONFIG_FILE, out_dir / DATA_RECORD
    if resume and saved.is_file():
        old = saved_config(saved)
        changed = sorted(k for k in set(old) | set(cfg)
                         if old.get(k) != cfg.get(k) and k not in AFTER_TRAINING_KEYS)
        if changed:
            raise DataError(f"{saved}: --resume with a different config (keys {changed}); "
                            "resume with the same options or use a new --out")
        if record.is_file():
            check_same_content(read_json(record, "training data record"), data_fingerprint,
                               f"the --data file of the run in {out_dir}")
        else:  # a run from before fingerprints were recorded: record this one from now on
            atomic_write_json(record, data_fingerprint)
        return old
    if run_files_in(out_dir) and not resume:
        raise DataError(f"{out_dir}: output directory is not empty; use --resume to continue it or a new --out")
    others = [p.name for p in run_files_in(out_dir) if p.name != DATA_RECORD]
    if resume and others:  # files, but no saved config: not a training run this can continue
        raise DataError(f"{out_dir}: --resume, but this folder holds {', '.join(others[:4])} and no {CONFIG_FILE}: "
                        "not a training run to continue; use a new --out")
    atomic_write_json(record, data_fingerprint)
    atomic_write(saved, lambda tmp: Path(tmp).write_text(yaml.safe_dump(cfg, sort_keys=False)))
    return cfg


def stage_result(stage, plan, settings, out_dir, resume=False, callbacks=(), reuse_from=()) -> dict:
    """What `stage` produced: with `resume`, a finished stage is read back from
    DIR/checkpoints/<name>/done/; a stage finished with the same identity by a
    run in `reuse_from` is copied there; otherwise it is run, checked and saved
    there. {stage, identity, wall_time_s, history, final, model_names, parameters, models}."""
    done = done_dir(out_dir, stage.name)
    if resume and (done / "result.json").is_file():
        return read_stage_result(done)
    identity = stage_identity(stage, plan, settings)
    for run_dir in reuse_from:
        if _copy_finished_stage(done_dir(run_dir, stage.name), done, identity):
            print(f"mtsmlip train: {stage.name} reused from {run_dir} (same identity {identity[:12]})",
                  file=sys.stderr)
            return read_stage_result(done)
    t0 = time.time()
    module, history = run_stage(stage, plan, settings, out_dir, resume, callbacks)
    check_stage_sound(stage.name, module, history, stage.models)
    info = {"stage": stage.name, "identity": identity, "wall_time_s": time.time() - t0, "history": history,
            "final": history[-1] if history else None, "model_names": list(stage.models),
            "parameters": {n: count_parameters(module.model[n]) for n in stage.models}}
    for name, config in stage.models.items():
        save_model(done / f"{name}.pt", module.model[name], config, {"stage": stage.name})
    atomic_write_json(done / "result.json", info)
    return read_stage_result(done)


def _check_run_dir(run_dir) -> Path:
    run_dir = Path(run_dir)
    if not (run_dir / "checkpoints").is_dir():
        raise DataError(f"{run_dir}: --reuse-stages-from needs a training run directory (with checkpoints/)")
    return run_dir


def _copy_finished_stage(source: Path, done: Path, identity: str) -> bool:
    """Copy a finished stage's done/ folder from another run if its recorded
    identity is `identity` (whole, or not at all: copied beside, then renamed)."""
    result = source / "result.json"
    if not result.is_file() or read_json(result, "stage result").get("identity") != identity:
        return False
    done.parent.mkdir(parents=True, exist_ok=True)
    tmp = done.with_name(done.name + ".copying")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    os.replace(tmp, done)
    return True


def read_stage_result(done: Path) -> dict:
    """A finished stage's result.json, with its models loaded ('models': {name: LoadedModel})."""
    info = read_json(done / "result.json", "stage result")
    return {**info, "models": {n: load_model(done / f"{n}.pt") for n in info["model_names"]}}


def written_models(results: dict) -> dict:
    """The models a run writes (LoadedModels by name): the pair from stage 2
    and, if it was trained, the baseline."""
    models = {n: results["stage2"]["models"][n] for n in ("fast", "slow")}
    if "baseline" in results:
        models["baseline"] = results["baseline"]["models"]["baseline"]
    return models


def build_manifest(plan, cfg, results) -> dict:
    """What manifest.json records about the run (complete: true is added last)."""
    models = written_models(results)
    return {
        "format": "mtsmlip-model-dir-1",
        "versions": package_versions(),
        "data": {**plan["data_fingerprint"], "n_frames": plan["n_frames"], "type_names": plan["type_names"]},
        "system": plan["system"], "batch_size": plan["batch_size"],
        "split": plan["split"].as_dict(),
        "chosen": {**chosen_budget(plan, cfg, results), "short_range_wall": chosen_wall(models["fast"].config, cfg)},
        "config": cfg,
        "architectures": {n: m.config for n, m in models.items()},
        "cutoffs_A": {n: m.r_max for n, m in models.items()},
        "parameters": {n: count_parameters(m.module) for n, m in models.items()},
        "stages": {s: {k: r[k] for k in ("wall_time_s", "final", "history", "parameters")} for s, r in results.items()},
        "final_losses": {s: r["final"] for s, r in results.items()},
        "wall_time_s": {s: r["wall_time_s"] for s, r in results.items()},
    }


def chosen_wall(fast_config: dict, cfg: dict) -> dict:
    """The fast model's short-range wall: its kind and, for the data-gated one,
    where it is 0.1 meV per species pair (the training frames' shortest distances)."""
    from ..models import wall_distances_A

    distances = wall_distances_A(fast_config)
    return {"kind": cfg.get("short_range_wall"),
            "at_A": None if distances is None else {"-".join(k): round(v, 4) for k, v in distances.items()}}


def chosen_budget(plan: dict, cfg: dict, results: dict) -> dict:
    """What the run chose for the frame counts and the training budget, and why,
    and how many epochs each stage ran (a plateau or the time cap can end one early)."""
    split = plan["split"]
    return {
        "train_frames": len(split.train), "val_frames": len(split.val), "test_frames": len(split.test),
        "batch_size": plan["batch_size"], "epochs_per_stage": plan.get("epochs"),
        "epochs_run": {name: len(r["history"]) for name, r in results.items()},
        "why": {"frames": "auto: 10 % validation (2-100), as many held out, the rest (<= 1000) trained on"
                if "auto" in (cfg["train_frames"], cfg["val_frames"]) else "set in the config",
                "epochs": epochs_and_rule(cfg, len(split.train), plan["batch_size"])[1],
                "stop": f"a stage ends after {cfg['plateau_epochs']} epochs without a 1 % better validation loss"
                if cfg.get("plateau_epochs") else "every epoch runs",
                "max_minutes": cfg.get("max_minutes")},
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
