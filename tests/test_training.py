"""Co-training: a trained model dir obeys the physics, the stage-2 loss falls,
an interrupted run resumes to the same numbers, and bad input is named."""


import json
import types

import numpy as np
import pytest
import torch
import yaml

import mtsmlip
from mtsmlip import training
from mtsmlip.cli import main
from mtsmlip.data import DataError
from mtsmlip.models import FAST_PRESET, SLOW_PRESET, load_model, model_config
from tests.physics import (
    assert_forces_are_minus_energy_gradient,
    assert_invariant_and_equivariant,
    energy_forces,
)
from tests.systems import small_water_box
from tests.training_helpers import (
    TINY_CONFIG,
    config_file,
    data_file,
    labelled_frames,
    trained_dir,
    workspace,
    write_config,
    write_frames,
)


@pytest.fixture(scope="module")
def models():
    return mtsmlip.load(trained_dir())


@pytest.mark.parametrize("name", ["fast", "slow", "total", "baseline"])
def test_forces_are_minus_energy_gradient(models, name):
    assert_forces_are_minus_energy_gradient(models.calculator(name), small_water_box(seed=99))


@pytest.mark.parametrize("name", ["fast", "slow", "total"])
def test_rotation_translation_permutation_invariance(models, name):
    assert_invariant_and_equivariant(models.calculator(name), small_water_box(seed=98))


def test_total_is_fast_plus_slow_and_slow_is_smaller(models):
    atoms = small_water_box(seed=97)
    (ef, ff), (es, fs), (et, ft) = (energy_forces(models.calculator(n), atoms) for n in ("fast", "slow", "total"))
    assert et == pytest.approx(ef + es, abs=1e-9)
    np.testing.assert_allclose(ft, ff + fs, atol=1e-9)
    assert np.sqrt(np.mean(fs**2)) < np.sqrt(np.mean(ff**2))


def test_stage2_loss_decreases(models):
    history = models.manifest["stages"]["stage2"]["history"]
    assert len(history) == TINY_CONFIG["epochs"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_force_rmse_meV_per_A"] < history[0]["val_force_rmse_meV_per_A"]


def test_manifest_records_the_run(models):
    m = models.manifest
    assert m["complete"] is True
    assert m["cutoffs_A"] == {"fast": 2.5, "slow": 3.0, "baseline": 3.0}
    assert m["architectures"]["slow"] == m["architectures"]["baseline"] | {
        "per_type_energy_shifts": m["architectures"]["slow"]["per_type_energy_shifts"],
        "per_type_energy_scales": m["architectures"]["slow"]["per_type_energy_scales"],
    }
    split = m["split"]
    assert len(split["train"]) == 10 and len(split["val"]) == 3 and len(split["test"]) == 3
    assert len(set(split["train"]) | set(split["val"]) | set(split["test"])) == 16
    assert set(m["wall_time_s"]) == {"stage1", "stage2", "baseline"}
    assert m["parameters"]["slow"] == m["parameters"]["baseline"] > m["parameters"]["fast"]
    assert m["versions"]["nequip"] and m["versions"]["torch"]
    assert (trained_dir() / "checkpoints" / "stage2" / "last.ckpt").is_file()


def test_fast_model_starts_stage2_from_stage1():
    stage1 = load_model(trained_dir() / "checkpoints" / "stage1" / "done" / "fast.pt")
    fast = load_model(trained_dir() / "checkpoints" / "stage2" / "done" / "fast.pt")
    assert stage1.config == fast.config
    diffs = [(a - b).abs().max().item() for a, b in zip(stage1.module.state_dict().values(), fast.module.state_dict().values())
             if a.is_floating_point() and a.numel()]
    assert 0 < max(diffs) < 1.0  # fine-tuned (lower learning rate), not retrained


def test_energy_offset_traded_in_stage2_goes_back_to_the_fast_model(models):
    """The written pair differs from stage 2's only by a per-atom constant moved
    from slow to fast: the total energy and all forces are unchanged, and the fast
    model's mean energy error on the training frames is zero again."""
    done = trained_dir() / "checkpoints" / "stage2" / "done"
    stage2 = {n: load_model(done / f"{n}.pt").calculator() for n in ("fast", "slow")}
    frames = labelled_frames(16)
    train = [frames[i] for i in models.manifest["split"]["train"]]
    moved = models.manifest["fast_energy_offset_moved_eV"]
    assert set(moved) == {"H", "O"}
    for atoms in train[:3]:
        (e_fast, f_fast), (e_slow, f_slow) = (energy_forces(stage2[n], atoms) for n in ("fast", "slow"))
        e_total, f_total = energy_forces(models.total, atoms)
        assert e_total == pytest.approx(e_fast + e_slow, abs=1e-8)
        np.testing.assert_allclose(f_total, f_fast + f_slow, atol=1e-10)
        np.testing.assert_allclose(energy_forces(models.fast, atoms)[1], f_fast, atol=1e-10)
    error_per_atom = [(a.get_potential_energy() - energy_forces(models.fast, a)[0]) / len(a) for a in train]
    assert abs(np.mean(error_per_atom)) < 1e-8
    before = [(a.get_potential_energy() - energy_forces(stage2["fast"], a)[0]) / len(a) for a in train]
    assert abs(np.mean(before)) > 1e-6  # there was an offset to move


class Interrupt(Exception):
    pass


def _interrupt_stage2_at_epoch(epoch):
    import lightning

    class StopHere(lightning.Callback):
        def on_train_epoch_start(self, trainer, module):
            if "slow" in module.model and trainer.current_epoch == epoch:
                raise Interrupt()

    return StopHere()


def test_interrupted_run_resumes_to_the_same_numbers(tmp_path, capsys):
    reference = mtsmlip.load(trained_dir())
    out = tmp_path / "run"
    cfg = training.load_config(config_file())
    with pytest.raises(Interrupt):
        training.train(data_file(), out, cfg, callbacks=[_interrupt_stage2_at_epoch(1)])
    assert (out / "checkpoints" / "stage2" / "last.ckpt").is_file()  # epoch 0 of stage 2 was saved
    with pytest.raises(DataError, match="not a finished"):
        mtsmlip.load(out)
    with pytest.raises(DataError, match="--resume"):
        training.train(data_file(), out, cfg)
    capsys.readouterr()
    assert main(["train", "--data", str(data_file()), "--out", str(out), "--resume"]) == 0
    printed = capsys.readouterr().out
    assert "[stage2] epoch 2/2" in printed and "[stage2] epoch 1/2" not in printed  # continued, not restarted
    assert "[stage1]" not in printed  # the finished stage is reused
    resumed = mtsmlip.load(out)
    for name in ("fast", "slow", "baseline"):
        a, b = resumed.models[name].module.state_dict(), reference.models[name].module.state_dict()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-12, msg=f"{name} {key}")
    for stage, final in reference.manifest["final_losses"].items():
        assert resumed.manifest["final_losses"][stage] == pytest.approx(final, rel=1e-9)
    assert resumed.manifest["split"] == reference.manifest["split"]


def test_baseline_is_chosen_apart_from_the_slow_model_and_finished_stages_are_reused(tmp_path, capsys):
    """A run whose only change is the baseline's architecture copies stage 1 and
    stage 2 from an earlier run (same identity) and trains just the new baseline."""
    smaller = {"r_max": 3.0, "num_layers": 1, "num_features": 4, "radial_mlp_width": 8}
    config = write_config(tmp_path / "cfg.yaml", baseline_model=smaller)
    out = tmp_path / "run"
    capsys.readouterr()
    assert main(["train", "--data", str(data_file()), "--config", str(config), "--out", str(out),
                 "--reuse-stages-from", str(trained_dir())]) == 0
    captured = capsys.readouterr()
    assert "[stage1]" not in captured.out and "[stage2]" not in captured.out and "[baseline] epoch 2/2" in captured.out
    assert "stage1 reused from" in captured.err and "stage2 reused from" in captured.err
    for stage, name in (("stage1", "fast"), ("stage2", "fast"), ("stage2", "slow")):
        copied, original = (training.done_dir(d, stage) / f"{name}.pt" for d in (out, trained_dir()))
        assert copied.read_bytes() == original.read_bytes()
    manifest = mtsmlip.load(out).manifest
    assert manifest["architectures"]["baseline"]["num_features"] == 4
    assert manifest["architectures"]["slow"]["num_features"] == 8
    assert manifest["parameters"]["baseline"] < manifest["parameters"]["slow"]


def test_stage_identity_follows_what_the_stage_depends_on():
    def identities(**changes):
        cfg = training.load_config(write_config(workspace() / "identity.yaml", **changes))
        plan = training.plan_training(data_file(), cfg)
        settings = training.TrainSettings.from_config(cfg, plan)
        return {s.name: training.stage_identity(s, plan, settings)
                for s in (training.stage1(plan, cfg), training.baseline(plan, cfg))}

    reference = identities()
    assert identities() == reference  # repeatable
    other_slow = identities(slow_model={**TINY_CONFIG["slow_model"], "num_features": 4})
    assert other_slow == reference  # neither stage 1 nor the baseline involves the slow model
    for change in ({"epochs": 3}, {"seed": 1}, {"learning_rate": 0.02}, {"train_frames": 9},
                   {"fast_model": {**TINY_CONFIG["fast_model"], "r_max": 2.4}}):
        changed = identities(**change)
        assert changed["stage1"] != reference["stage1"], change
    assert identities(baseline_model={**TINY_CONFIG["baseline_model"], "num_layers": 1})["baseline"] != reference["baseline"]


def test_reuse_needs_a_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(data_file()), "--config", str(config_file()), "--out", str(out),
                 "--reuse-stages-from", str(tmp_path)]) == 2
    assert "--reuse-stages-from needs a training run directory" in capsys.readouterr().err
    assert not out.exists()


def test_frozen_fast_model_is_left_unchanged():
    built = training.build_model_dict({"fast": _tiny(FAST_PRESET, 2.5), "slow": _tiny(SLOW_PRESET, 3.0)}, frozen=["fast"])
    groups = training.param_groups(built, lr=0.01, fast_lr_factor=0.1)
    trained = {id(p) for g in groups for p in g["params"]}
    assert trained == {id(p) for p in built["slow"].parameters()}
    assert not any(p.requires_grad for p in built["fast"].parameters())


def test_fast_model_gets_the_lower_learning_rate():
    built = training.build_model_dict({"fast": _tiny(FAST_PRESET, 2.5), "slow": _tiny(SLOW_PRESET, 3.0)})
    groups = training.param_groups(built, lr=0.01, fast_lr_factor=0.1)
    lrs = {("fast" if any(p is q for q in built["fast"].parameters()) else "slow"): g["lr"]
           for g in groups for p in g["params"][:1]}
    assert lrs == pytest.approx({"fast": 0.001, "slow": 0.01})


def _tiny(preset, r_max):
    overrides = dict(TINY_CONFIG["fast_model"] if "allegro" in preset["_target_"] else TINY_CONFIG["slow_model"])
    overrides.update(r_max=r_max, avg_num_neighbors=5.0)
    return model_config(preset, ["H", "O"], seed=0, model_dtype="float64", **overrides)


def _batch(atoms, r_max):
    from nequip.data import AtomicDataDict, from_ase
    from nequip.data.transforms import ChemicalSpeciesToAtomTypeMapper, NeighborListTransform

    d = NeighborListTransform(r_max=r_max)(ChemicalSpeciesToAtomTypeMapper(model_type_names=["H", "O"])(from_ase(atoms)))
    return AtomicDataDict.batched_from_list([d])


def test_slowness_term_is_the_directional_derivative_of_the_slow_force():
    """(∂F_slow/∂x)·v from double backward equals a finite difference of F_slow along v."""
    models = training.build_model_dict({"slow": _tiny(SLOW_PRESET, 3.0)}).train()
    atoms = small_water_box(seed=5)
    v = torch.tensor(np.random.default_rng(0).normal(size=(len(atoms), 3)))
    jvp = training.sum_of_models(models, _batch(atoms, 3.0), velocities=v)["slow_force_jvp"].detach().numpy()
    h = 1e-5
    plus, minus = atoms.copy(), atoms.copy()
    plus.positions += h * v.numpy()
    minus.positions -= h * v.numpy()
    models.eval()
    f = [training.sum_of_models(models, _batch(a, 3.0))["forces"].detach().numpy() for a in (plus, minus)]
    np.testing.assert_allclose(jvp, (f[0] - f[1]) / (2 * h), rtol=1e-5, atol=1e-8)


def test_maxwell_boltzmann_velocities_have_the_right_temperature():
    from ase import units

    masses = torch.tensor([1.008] * 20000 + [15.999] * 20000, dtype=torch.float64)
    v = training.maxwell_boltzmann_velocities_A_per_fs(masses, 300.0, torch.Generator().manual_seed(0))
    kinetic_eV = 0.5 * (masses[:, None] * (v / units.fs) ** 2).sum()
    assert float(kinetic_eV / (1.5 * len(masses) * units.kB)) == pytest.approx(300.0, rel=0.02)


def test_loss_has_the_co_training_terms_with_their_weights():
    cfg = training.loss_metrics(1.0, 2.0, fast_force_weight=0.5, slowness_weight=0.25)
    terms = {m["name"]: m.get("coeff") for m in cfg["metrics"]}
    assert terms == {"energy_per_atom_mse": 1.0, "forces_mse": 2.0, "fast_forces_mse": 0.5, "slowness": 0.25}
    assert [m["name"] for m in training.loss_metrics(1.0, 1.0)["metrics"]] == ["energy_per_atom_mse", "forces_mse"]


# ------------------------------------------------------------- bad input
def _train_error(capsys, tmp_path, frames=None, data=None, **config):
    data = data or write_frames(tmp_path / "d.extxyz", frames)
    rc = main(["train", "--data", str(data), "--config", str(write_config(tmp_path / "c.yaml", **config)),
               "--out", str(tmp_path / "out")])
    assert rc == 2
    return capsys.readouterr().err


def test_train_missing_file(capsys, tmp_path):
    assert "nothere.xyz: file not found" in _train_error(capsys, tmp_path, data=tmp_path / "nothere.xyz")


def test_train_empty_file(capsys, tmp_path):
    (tmp_path / "empty.extxyz").write_text("")
    assert "holds no frames" in _train_error(capsys, tmp_path, data=tmp_path / "empty.extxyz")


@pytest.mark.parametrize("field", ["energy", "forces"])
def test_train_frame_without_label(capsys, tmp_path, field):
    frames = labelled_frames(4)
    results = dict(frames[2].calc.results)
    del results[field]
    frames[2].calc.results = results
    assert f"frame 2, field '{field}': missing" in _train_error(capsys, tmp_path, frames)


def test_train_nan_forces(capsys, tmp_path):
    frames = labelled_frames(4)
    frames[1].calc.results["forces"][3, 1] = np.nan
    assert "frame 1, field 'forces': NaN or inf at atom 3" in _train_error(capsys, tmp_path, frames)


def test_train_mixed_periodicity(capsys, tmp_path):
    frames = labelled_frames(3) + labelled_frames(1, seed0=7, vacuum=True)
    assert "frame 3, field 'pbc'" in _train_error(capsys, tmp_path, frames)


def test_a_cell_narrower_than_a_cutoff_is_planned_not_refused(tmp_path):
    """Small periodic cells are valid training data (every image within the
    cutoff is a neighbour): the plan counts the images among the neighbours."""
    from mtsmlip.training import load_config
    from mtsmlip.training.pipeline import plan_training

    cfg = load_config(write_config(tmp_path / "c.yaml", slow_model={**TINY_CONFIG["slow_model"], "r_max": 6.5}))
    plan = plan_training(write_frames(tmp_path / "d.extxyz", labelled_frames(16)), cfg)  # 6.2 Å boxes
    assert plan["slow"]["r_max"] == 6.5 and plan["slow"]["avg_num_neighbors"] > len(labelled_frames(1)[0]) - 1


def test_train_too_few_frames(capsys, tmp_path):
    assert "the data has 4" in _train_error(capsys, tmp_path, labelled_frames(4))


def test_train_unknown_config_key(tmp_path):
    (tmp_path / "c.yaml").write_text("epoch: 3\n")
    with pytest.raises(DataError, match="unknown config key 'epoch'"):
        training.load_config(tmp_path / "c.yaml")


def test_least_squares_energy_shifts_recover_per_type_energies():
    frames = labelled_frames(3) + [small_water_box(n_side=1, seed=3)]
    e_h, e_o = -13.6, -432.1
    for a in frames:
        a.info["energy"] = e_h * np.sum(a.numbers == 1) + e_o * np.sum(a.numbers == 8) + 1e-3
    frames[-1].numbers[0] = 1  # vary the composition so the fit is determined
    frames[-1].info["energy"] = e_h * np.sum(frames[-1].numbers == 1) + e_o * np.sum(frames[-1].numbers == 8)
    shifts = training.per_type_energy_shifts_eV(frames, ["H", "O"])
    assert shifts == pytest.approx([e_h, e_o], abs=1e-3)


def test_lambda_schedule_uses_the_latest_entry_so_a_resumed_run_agrees():
    from types import SimpleNamespace

    from hydra.utils import instantiate

    loss_cfg = training.loss_metrics(1.0, 1.0, fast_force_weight=0.5)
    loss = instantiate(loss_cfg)
    schedule = training.LambdaSchedule({0: 1.0, 2: 0.1}, {m["name"]: m["coeff"] for m in loss_cfg["metrics"]})
    module = SimpleNamespace(loss=loss)
    for epoch, lam in [(0, 1.0), (1, 1.0), (3, 0.1)]:  # epoch 3: as if resumed there
        schedule.on_train_epoch_start(SimpleNamespace(current_epoch=epoch), module)
        coeffs = {k: v.coeff for k, v in loss.entries.items()}
        assert coeffs["fast_forces_mse"] / coeffs["forces_mse"] == pytest.approx(lam)


def test_a_lambda_schedule_works_when_lambda_starts_at_zero(tmp_path):
    """λ = 0 with a schedule: the λ term is in the loss with weight 0 and the
    schedule sets it (a term left out of the loss would make the schedule a no-op)."""
    import lightning

    seen = {}

    class Watch(lightning.Callback):
        def on_train_epoch_start(self, trainer, module):
            if "slow" in module.model:
                seen[trainer.current_epoch] = {k: v.coeff for k, v in module.loss.entries.items()}
                if trainer.current_epoch == 1:
                    raise Interrupt()

    cfg = training.load_config(config_file(), baseline=False)
    cfg["loss"].update(fast_force_weight=0.0, fast_force_weight_schedule={1: 0.5})
    with pytest.raises(Interrupt):
        training.train(data_file(), tmp_path / "run", cfg, callbacks=[Watch()])
    assert seen[0]["fast_forces_mse"] == 0.0
    assert seen[1]["fast_forces_mse"] / seen[1]["forces_mse"] == pytest.approx(0.5)


def test_a_new_stage_is_just_a_stage_value(tmp_path):
    """The runner fits any Stage: here the fast model alone, from stage 1's
    weights, at half the learning rate, for one epoch."""
    cfg = training.load_config(config_file())
    plan = training.plan_training(data_file(), cfg)
    settings = training.TrainSettings.from_config(cfg, plan)
    start = trained_dir() / "checkpoints" / "stage1" / "done" / "fast.pt"
    stage = training.Stage("fast_alone", {"fast": load_model(start).config}, training.LossWeights(1.0, 1.0),
                           epochs=1, init_from={"fast": str(start)}, lr_factors={"fast": 0.5})
    module, history = training.run_stage(stage, plan, settings, tmp_path)
    assert list(module.model) == ["fast"] and [row["epoch"] for row in history] == [1]
    training.check_stage_sound(stage.name, module, history, stage.models)
    ckpt = torch.load(tmp_path / "checkpoints" / "fast_alone" / "last.ckpt", weights_only=True)
    assert ckpt["optimizer_states"][0]["param_groups"][0]["initial_lr"] == pytest.approx(0.5 * cfg["learning_rate"])


def test_targets_that_checkpoints_hold_resolve_through_the_package():
    """Checkpoints and data configs name mtsmlip's builders 'mtsmlip.training.<name>'."""
    from hydra.utils import get_object

    def targets(value):
        if isinstance(value, dict):
            return {value.get("_target_")} | set().union(*map(targets, value.values()))
        return set().union(*map(targets, value)) if isinstance(value, list) else set()

    ckpt = torch.load(trained_dir() / "checkpoints" / "stage2" / "last.ckpt", weights_only=True)
    written = {t for t in targets(ckpt["hyper_parameters"]) if t and t.startswith("mtsmlip")}
    # the fast model's data-gated wall (the default) is a model part of ours, by its module path
    assert written == {"mtsmlip.training.build_model_dict", "mtsmlip.training.param_groups", "mtsmlip.wall.DataGatedWall"}
    for name in ("build_model_dict", "param_groups", "FramesDataset", "EpochShuffleSampler", "ZeroTargetMSE"):
        assert get_object(f"mtsmlip.training.{name}") is getattr(training, name)
    from mtsmlip.wall import DataGatedWall
    assert get_object("mtsmlip.wall.DataGatedWall") is DataGatedWall


def test_slowness_term_enters_the_loss_and_trains_the_slow_model():
    configs = {"fast": _tiny(FAST_PRESET, 2.5), "slow": _tiny(SLOW_PRESET, 3.0)}
    settings = training.TrainSettings.from_config(training.load_config(config_file()))
    loss = training.LossWeights(1.0, 1.0, fast_force=0.1, slowness=1.0, slowness_temperature_K=300.0)
    stage = training.Stage("stage2", configs, loss, epochs=2)
    module = training.MultiScaleModule(**training.module_kwargs(stage, settings, steps_per_epoch=5)).train()
    batch = _batch(labelled_frames(1, seed0=3)[0], 3.0)
    out = module(batch)
    values = module.loss(out, batch)
    assert values["slowness"] > 0
    values["weighted_sum"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.model["slow"].parameters())
    again = module(batch)[training.SLOW_FORCE_JVP]  # same step, same velocities
    torch.testing.assert_close(again, out[training.SLOW_FORCE_JVP])


def _train_stage2_steps(slowness: float, steps: int = 30) -> torch.nn.ModuleDict:
    """A tiny stage 2 (fast and slow from the same seed) trained `steps` Adam
    steps on 4 labelled frames with slowness weight μ = `slowness`."""
    configs = {"fast": _tiny(FAST_PRESET, 2.5), "slow": _tiny(SLOW_PRESET, 3.0)}
    settings = training.TrainSettings.from_config(training.load_config(config_file()))
    loss = training.LossWeights(1.0, 1.0, fast_force=0.1, slowness=slowness, slowness_temperature_K=300.0)
    torch.manual_seed(0)
    module = training.MultiScaleModule(**training.module_kwargs(training.Stage("stage2", configs, loss, epochs=1),
                                                                settings, steps_per_epoch=steps)).train()
    batches = [_batch(a, 3.0) for a in labelled_frames(4, seed0=11)]
    optimizer = torch.optim.Adam(module.model.parameters(), lr=0.01)
    for step in range(steps):
        optimizer.zero_grad()
        batch = batches[step % len(batches)]
        module.loss(module(batch), batch)["weighted_sum"].backward()
        optimizer.step()
    return module.model


def test_slowness_weight_lowers_the_rate_of_change_of_the_slow_force():
    """μ > 0 trains the slow force to change less along thermal velocities: its
    JVP (∂F_slow/∂x)·v on held-out frames and fresh velocities falls against
    the same training with μ = 0 (same seed, data and steps)."""
    def mean_square_jvp(models):
        rng = np.random.default_rng(5)
        values = []
        for atoms in labelled_frames(3, seed0=40):
            masses = torch.tensor(atoms.get_masses())
            v = training.maxwell_boltzmann_velocities_A_per_fs(masses, 300.0, torch.Generator().manual_seed(
                int(rng.integers(1 << 30))))
            jvp = training.sum_of_models(models, _batch(atoms, 3.0), velocities=v)["slow_force_jvp"]
            values.append(float(jvp.detach().square().mean()))
        return float(np.mean(values))

    plain, slow = (mean_square_jvp(_train_stage2_steps(mu)) for mu in (0.0, 10.0))
    assert slow < 0.5 * plain


def test_test_split_last_holds_out_the_last_frames():
    cfg = training.load_config(config_file(), test_split="last", test_frames=3)
    split = training.plan_training(data_file(), cfg)["split"]
    assert split.test == [13, 14, 15] and max(split.train + split.val) < 13


def tiny_architectures():
    return {k: TINY_CONFIG[k] for k in ("fast_model", "slow_model", "baseline_model", "model_dtype", "batch_size")}


def test_twenty_frames_train_with_the_default_split_and_budget(tmp_path, capsys):
    """A 20-frame file trains with the default frame counts and budget (tiny
    architectures and a short step budget keep the test quick): 2 validation and
    2 test frames, 16 to train on, and epochs from the step budget."""
    data = write_frames(tmp_path / "twenty.extxyz", labelled_frames(20))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**tiny_architectures(), "steps": 24, "min_epochs": 1}))
    assert main(["train", "--data", str(data), "--config", str(config), "--out", str(tmp_path / "run"),
                 "--check-fs", "10"]) == 0  # a short stability check (the config's default is 500 fs)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    chosen = manifest["chosen"]
    assert {r["temperature_K"] for r in manifest["stability"]["runs"]} == {300.0, 450.0}
    assert all(r["fs"] <= 10.5 for r in manifest["stability"]["runs"])
    assert mtsmlip.load(tmp_path / "run").manifest["stability"] == manifest["stability"]  # hashes still hold
    assert (chosen["train_frames"], chosen["val_frames"], chosen["test_frames"]) == (16, 2, 2)
    assert chosen["epochs_per_stage"] == 3  # 24 steps of 8 batches of 2 frames
    assert chosen["why"]["epochs"] == "auto: about 24 optimiser steps (8 an epoch)"
    assert all(1 <= n <= 3 for n in chosen["epochs_run"].values())
    # a finished run is checked again with another check length; what trains may not change
    run = ["train", "--data", str(data), "--config", str(config), "--out", str(tmp_path / "run"), "--resume"]
    assert main(run + ["--check-fs", "5"]) == 0
    again = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert all(r["fs"] <= 5.5 for r in again["stability"]["runs"]) and again["chosen"] == chosen
    capsys.readouterr()
    assert main(run + ["--epochs", "7"]) == 2
    assert "--resume with a different config (keys ['epochs'])" in capsys.readouterr().err


def test_auto_epochs_reach_the_step_budget_and_see_every_frame_min_epochs_times(tmp_path):
    """epochs: auto gives `steps` optimiser steps, but never fewer than
    `min_epochs` passes over the training frames: 1000 water boxes at 1 frame per
    step get 8 epochs (8000 steps), not the 3 that 3000 steps would take, while
    800 aspirin frames at 2 per step (8 epochs for 3000 steps) and 800 ethanol
    frames at 4 per step (15) keep what the step budget gives."""
    from mtsmlip.training.config import load_config
    from mtsmlip.training.pipeline import MAX_AUTO_EPOCHS, stage_epochs

    cfg = load_config()
    assert (cfg["steps"], cfg["min_epochs"]) == (3000, 8)
    assert stage_epochs(cfg, n_train=1000, batch_size=1) == 8
    assert stage_epochs({**cfg, "min_epochs": 1}, n_train=1000, batch_size=1) == 3
    assert stage_epochs(cfg, n_train=800, batch_size=2) == 8
    assert stage_epochs(cfg, n_train=800, batch_size=4) == 15
    assert stage_epochs(cfg, n_train=2, batch_size=1) == MAX_AUTO_EPOCHS
    assert stage_epochs({**cfg, "epochs": 5}, n_train=1000, batch_size=1) == 5  # a set number is kept
    with pytest.raises(DataError, match="min_epochs"):
        load_config(min_epochs=0)
    # a run saved before min_epochs existed resumes with the epochs it started with
    from mtsmlip.training.config import saved_config

    older = tmp_path / "train_config.yaml"
    older.write_text(yaml.safe_dump({k: v for k, v in cfg.items() if k != "min_epochs"}))
    assert stage_epochs(saved_config(older), n_train=1000, batch_size=1) == 3


def test_a_plateau_ends_a_stage(tmp_path):
    """With a learning rate too small to move the weights the validation loss
    never improves: the stage stops `plateau_epochs` epochs after its first."""
    data = write_frames(tmp_path / "d.extxyz", labelled_frames(16))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**TINY_CONFIG, "epochs": 12, "plateau_epochs": 2, "learning_rate": 1e-12,
                                      "baseline": False}))
    assert main(["train", "--data", str(data), "--config", str(config), "--out", str(tmp_path / "run")]) == 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["chosen"]["epochs_run"] == {"stage1": 3, "stage2": 3}


def test_too_few_frames_for_an_automatic_split_are_named(tmp_path, capsys):
    data = write_frames(tmp_path / "d.extxyz", labelled_frames(8))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_architectures()))
    assert main(["train", "--data", str(data), "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    assert "train_frames auto needs at least 10 frames" in capsys.readouterr().err


def test_the_time_cap_ends_each_stage_after_an_epoch(tmp_path):
    data = write_frames(tmp_path / "d.extxyz", labelled_frames(16))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**TINY_CONFIG, "epochs": 6, "baseline": False}))
    assert main(["train", "--data", str(data), "--config", str(config), "--out", str(tmp_path / "run"),
                 "--max-minutes", "0.0001"]) == 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["chosen"]["epochs_run"] == {"stage1": 1, "stage2": 1}
    assert manifest["chosen"]["why"]["max_minutes"] == 0.0001


def test_the_size_search_keeps_the_first_slow_model_clearly_as_accurate_as_the_baseline(tmp_path, monkeypatch):
    """The rule of the search, on stage results with known per-frame validation
    errors: grow while the pair is not ahead of the baseline by at least one
    standard error of the paired per-frame differences (a pair ahead by less than
    the validation frames can tell grows too); keep the first that is, or else
    the most accurate; stop as soon as one is kept."""
    from mtsmlip.training.pipeline import sized_stage2

    base = 1e4 * np.linspace(0.5, 1.5, 100)  # (meV/Å)² per frame
    noisy = base * (1 + np.where(np.arange(100) % 2 == 0, -0.30, 0.26))  # ahead by ~2 %, by less than its noise
    per_frame = {"baseline": base}

    def finished(name, rmse, mse=None):
        if mse is not None:
            per_frame[name] = mse
        return {"stage": name, "final": {"val_force_rmse_meV_per_A": rmse}}

    plan = {"slow_candidates": [{"num_layers": 2, "num_features": f} for f in (16, 32, 64)]}
    stage_names = []

    def trained(candidates):
        def result_of(stage):
            stage_names.append(stage.name)
            return finished(stage.name, *candidates[len(stage_names) - 1])
        return result_of

    def frame_errors(result):
        return per_frame[result["stage"]]

    # the stage itself is not built here (it needs stage 1's files): only its name matters to the rule
    monkeypatch.setattr("mtsmlip.training.pipeline.stage2",
                        lambda plan, cfg, out_dir, slow, name: types.SimpleNamespace(name=name))
    assert noisy.mean() < base.mean()
    kept, record = sized_stage2(plan, {}, tmp_path, trained([(98.0, noisy), (90.0, 0.8 * base), (80.0, 0.7 * base)]),
                                finished("baseline", 100.0), frame_errors)
    assert kept["stage"] == "stage2-2-2x32" and stage_names == ["stage2", "stage2-2-2x32"]
    assert [c["kept"] for c in record["candidates"]] == [False, True]
    first, second = (c["against_baseline"] for c in record["candidates"])
    assert first["mse_relative"] < 0 and not first["ahead"] and second["ahead"]
    assert second["mse_relative"] == pytest.approx(-0.2)
    stage_names.clear()
    kept, record = sized_stage2(plan, {}, tmp_path, trained([(130.0, 1.3 * base), (110.0, 1.1 * base),
                                                             (120.0, 1.2 * base)]), finished("baseline", 100.0),
                                frame_errors)
    assert kept["stage"] == "stage2-2-2x32" and len(stage_names) == 3  # none was ahead: the most accurate
    assert record["why"].startswith("no candidate was clearly ahead")
    # runs from before the rule (slow_search_rule: rmse, which resuming one keeps): any lead in RMSE counts
    stage_names.clear()
    kept, record = sized_stage2(plan, {"slow_search_rule": "rmse"}, tmp_path,
                                trained([(98.0, noisy), (90.0, 0.8 * base)]), finished("baseline", 100.0),
                                lambda result: pytest.fail("the rmse rule needs no per-frame errors"))
    assert kept["stage"] == "stage2" and stage_names == ["stage2"] and "RMSE" in record["rule"]


def test_the_pair_is_judged_ahead_only_by_more_than_its_standard_error():
    from mtsmlip.training.pipeline import pair_against_baseline

    base = np.array([100.0, 200.0, 300.0, 400.0])
    assert pair_against_baseline(base - 10.0, base)["ahead"]  # always ahead: no spread, clearly
    mixed = pair_against_baseline(base + np.array([-60.0, 40.0, -60.0, 40.0]), base)  # ahead by 10 on average
    assert mixed["mse_relative"] == pytest.approx(-10.0 / 250.0) and not mixed["ahead"]
    assert pair_against_baseline([90.0], [100.0])["ahead"] and not pair_against_baseline([110.0], [100.0])["ahead"]
    assert not pair_against_baseline(base, base)["ahead"]  # a tie is not a lead
    with pytest.raises(ValueError, match="the same frames"):
        pair_against_baseline([1.0, 2.0], [1.0])


def test_a_size_search_runs_end_to_end_and_is_recorded(tmp_path):
    data = write_frames(tmp_path / "d.extxyz", labelled_frames(16))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**TINY_CONFIG, "slow_search": [{"num_features": 2, "num_layers": 1},
                                                                      {"num_features": 8}]}))
    assert main(["train", "--data", str(data), "--config", str(config), "--out", str(tmp_path / "run")]) == 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    search = manifest["slow_search"]
    kept = [c for c in search["candidates"] if c["kept"]]
    assert len(kept) == 1 and 1 <= len(search["candidates"]) <= 2
    first = search["candidates"][0]
    if len(search["candidates"]) == 1:  # the small one was already clearly ahead of the baseline
        assert first["against_baseline"]["ahead"]
    else:
        assert not first["against_baseline"]["ahead"]
    assert mtsmlip.load(tmp_path / "run").models["slow"].config["num_features"] == kept[0]["num_features"]


ALLEGRO_SLOW = {"r_max": 3.0, "num_layers": 1, "num_scalar_features": 8, "num_tensor_features": 4,
                "radial_chemical_embed_dim": 8, "scalar_embed_mlp_hidden_layers_width": 8,
                "allegro_mlp_hidden_layers_width": 8, "readout_mlp_hidden_layers_width": 8}


def test_an_allegro_slow_model_trains_and_the_pair_is_strictly_local(tmp_path):
    """--slow-architecture allegro: stage 2 co-trains an Allegro slow model (which
    LAMMPS's pair_allegro runs across MPI ranks); the pair loads and its forces are
    the negative gradient of its energy."""
    data = write_frames(tmp_path / "d.extxyz", labelled_frames(16))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**TINY_CONFIG, "slow_model": ALLEGRO_SLOW}))
    assert main(["train", "--data", str(data), "--config", str(config), "--out", str(tmp_path / "run"),
                 "--slow-architecture", "allegro"]) == 0
    models = mtsmlip.load(tmp_path / "run")
    assert models.models["slow"].config["_target_"] == "allegro.model.AllegroModel"
    assert models.models["baseline"].config["_target_"] == "nequip.model.NequIPGNNModel"
    assert yaml.safe_load((tmp_path / "run" / "train_config.yaml").read_text())["slow_architecture"] == "allegro"
    atoms = labelled_frames(1)[0].copy()
    atoms.calc = models.total
    forces = atoms.get_forces()
    step_A = 1e-4
    for i, k in ((0, 0), (3, 2)):
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[i, k] += step_A
        minus.positions[i, k] -= step_A
        plus.calc = minus.calc = models.total
        numeric = -(plus.get_potential_energy() - minus.get_potential_energy()) / (2 * step_A)
        assert forces[i, k] == pytest.approx(numeric, abs=1e-6)


def test_the_slow_architecture_picks_its_preset_and_its_growth(tmp_path):
    from mtsmlip.errors import DataError
    from mtsmlip.models import SLOW_ALLEGRO_PRESET, SLOW_PRESET
    from mtsmlip.training.config import load_config
    from mtsmlip.training.pipeline import slow_growth
    from mtsmlip.training.stages import SLOW_GROWTH

    nequip = load_config(None)
    allegro = load_config(None, slow_architecture="allegro")
    assert nequip["slow_architecture"] == "nequip" and slow_growth(nequip) == SLOW_GROWTH["nequip"]
    assert slow_growth(allegro) == SLOW_GROWTH["allegro"]
    for growth in SLOW_GROWTH["allegro"]:  # every step of the search is a valid Allegro model
        assert set(growth) <= set(SLOW_ALLEGRO_PRESET)
    assert SLOW_PRESET["_target_"].startswith("nequip") and SLOW_ALLEGRO_PRESET["_target_"].startswith("allegro")
    with pytest.raises(DataError, match="slow_architecture"):
        load_config(None, slow_architecture="mace")


def test_a_stage_says_how_long_it_will_take_after_its_first_minute(monkeypatch, capsys):
    """Long epochs (1000 water frames: minutes each) say early what the run will
    cost: once, after RATE_AFTER_S, from the time the steps so far took."""
    from mtsmlip.training import callbacks

    now = [1000.0]
    monkeypatch.setattr(callbacks.time, "time", lambda: now[0])
    report = callbacks.EpochReport("baseline")
    trainer = types.SimpleNamespace(num_training_batches=1000, max_epochs=8, current_epoch=1, is_global_zero=True)
    for step in range(200):  # 0.5 s a step
        now[0] += 0.5
        report.on_train_batch_end(trainer, None, None, None, step)
    lines = [line for line in capsys.readouterr().out.splitlines() if "s a step" in line]
    assert len(lines) == 1  # said once, when the first minute was over (step 120)
    assert lines[0].startswith("[baseline] 0.50 s a step: about 8.3 min an epoch")
    # 7 epochs from the second on, less the 120 steps done: 6880 steps of 0.5 s
    assert "57 min for the 6880 steps left" in lines[0]
