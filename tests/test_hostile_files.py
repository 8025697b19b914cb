"""A model folder, a training config and a restart are data, never code: each
exploit below plants a marker file or truncates a victim file if it runs, and
must instead end in a named error with the marker absent and the victim intact."""

import json
import shutil
import sys
import time

import pytest
import torch
import yaml

import mtsmlip
from mtsmlip.cli import main
from mtsmlip.errors import DataError
from mtsmlip.files import sha256_of
from mtsmlip.models import build_model, load_model, save_model
from tests.systems import tiny_model_config, write_tiny_pair
from tests.training_helpers import TINY_CONFIG, data_file


@pytest.fixture
def pair_dir(tmp_path):
    return write_tiny_pair(tmp_path / "pair")


def rewrite_model(directory, name, change):
    """Apply `change` to the payload of DIR/name.pt and record the new hash in the
    manifest, as an attacker who edits both would."""
    path = directory / f"{name}.pt"
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["model_files"][name].update(sha256=sha256_of(path), size_bytes=path.stat().st_size)
    (directory / "manifest.json").write_text(json.dumps(manifest))


def command_for(marker) -> str:
    return f"{sys.executable} -c \"open('{marker}', 'w')\""


@pytest.mark.parametrize("kind", ["mtsmlip-model", "ase-calculator", "nequip-model"])
def test_a_teacher_recorded_in_the_manifest_is_never_built(pair_dir, tmp_path, kind):
    marker = tmp_path / "marker"
    manifest = json.loads((pair_dir / "manifest.json").read_text())
    manifest["teacher"] = {"kind": kind, "spec": f'os:system:{json.dumps({"command": command_for(marker)})}'}
    (pair_dir / "manifest.json").write_text(json.dumps(manifest))
    (pair_dir / "baseline.pt").unlink()
    (pair_dir / "slow.pt").unlink()

    with pytest.raises(DataError) as caught:
        mtsmlip.load(pair_dir).slow
    assert "--teacher" in str(caught.value) or "baseline.pt" in str(caught.value)
    assert main(["eval", "--model", str(pair_dir), "--data", str(data_file())]) == 2
    assert not marker.exists()


def test_interpolation_in_a_model_config_is_refused_by_name(pair_dir, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    bomb = "${oc.decode:'{_target_: builtins.open, file: %s, mode: w}'}" % victim
    rewrite_model(pair_dir, "fast", lambda p: p["config"]["radial_chemical_embed"].update(num_bessels=bomb))

    with pytest.raises(DataError, match=r"fast\.pt, field 'config\.radial_chemical_embed\.num_bessels'.*interpolation"):
        mtsmlip.load(pair_dir)
    assert victim.read_text() == "precious\n"


@pytest.mark.parametrize("field, value", [("num_layers", 100000), ("l_max", 40), ("r_max", 500.0),
                                          ("num_scalar_features", 10**7), ("type_names", ["H"] * 500)])
def test_sizes_are_capped_before_a_model_is_built(pair_dir, field, value):
    rewrite_model(pair_dir, "fast", lambda p: p["config"].update({field: value}))
    t0 = time.perf_counter()
    with pytest.raises(DataError, match=rf"fast\.pt, field 'config\.{field}'"):
        mtsmlip.load(pair_dir)
    assert time.perf_counter() - t0 < 30


@pytest.mark.parametrize("hydra_key", ["_args_", "_partial_", "_recursive_"])
def test_hydra_keys_other_than_allowed_targets_are_refused(pair_dir, hydra_key):
    rewrite_model(pair_dir, "fast", lambda p: p["config"]["radial_chemical_embed"].update({hydra_key: [1]}))
    with pytest.raises(DataError, match=rf"'config\.radial_chemical_embed\.{hydra_key}'.*not allowed"):
        mtsmlip.load(pair_dir)


def test_a_changed_model_file_is_refused_before_it_is_read(pair_dir, tmp_path):
    """The manifest's hash is checked first: a file that differs is never unpickled."""
    marker = tmp_path / "unpickled"

    class Plant:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"format": "mtsmlip-model-1", "config": {}, "state_dict": {}, "plant": Plant()},
               pair_dir / "slow.pt")
    with pytest.raises(DataError, match="slow model that manifest.json lists: the content differs"):
        mtsmlip.load(pair_dir)
    assert not marker.exists()


def test_the_same_weights_give_the_same_file(tmp_path):
    """Model files are written deterministically (a resumed training that rewrites
    a model keeps every recorded hash)."""
    config = tiny_model_config("fast")
    model = build_model(config)
    save_model(tmp_path / "a.pt", model, config)
    save_model(tmp_path / "b.pt", model, config)
    assert sha256_of(tmp_path / "a.pt") == sha256_of(tmp_path / "b.pt")
    load_model(tmp_path / "b.pt")


def test_a_python_tag_in_a_config_file_is_a_named_error(tmp_path):
    marker = tmp_path / "marker"
    config = tmp_path / "evil.yaml"
    config.write_text(f"epochs: !!python/object/apply:os.system [\"{command_for(marker)}\"]\n")
    out = tmp_path / "run"
    assert main(["train", "--data", str(data_file()), "--config", str(config), "--out", str(out)]) == 2
    assert not marker.exists() and not out.exists()


def test_a_target_in_the_training_config_is_refused_before_anything_is_written(tmp_path, capsys):
    config = tmp_path / "evil.yaml"
    config.write_text(yaml.safe_dump({**TINY_CONFIG, "fast_model": {**TINY_CONFIG["fast_model"],
                                                                    "_target_": "os.system"}}))
    out = tmp_path / "run"
    assert main(["train", "--data", str(data_file()), "--config", str(config), "--out", str(out)]) == 2
    assert "'os.system' is not an allowed model builder" in capsys.readouterr().err
    assert not out.exists()


def test_interpolation_in_a_saved_training_config_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "train_config.yaml").write_text(yaml.safe_dump({**TINY_CONFIG, "seed": "${oc.env:HOME}"}))
    shutil.copy(data_file(), tmp_path / "data.extxyz")
    assert main(["train", "--data", str(tmp_path / "data.extxyz"), "--out", str(out), "--resume"]) == 2
    assert "field 'saved training config.seed': holds an interpolation" in capsys.readouterr().err


def test_repeated_frames_are_reported(tmp_path, capsys):
    """60 copies of one frame would train with train = validation = test and no word."""
    from mtsmlip.training import load_config
    from mtsmlip.training.pipeline import plan_training
    from tests.training_helpers import labelled_frames, write_frames

    frames = labelled_frames(2)
    path = write_frames(tmp_path / "repeated.extxyz", [frames[0]] * 20 + [frames[1]])
    cfg = load_config(None, train_frames=10, seed=0)
    cfg.update(val_frames=3, **{k: TINY_CONFIG[k] for k in ("fast_model", "slow_model", "baseline_model")})
    plan_training(path, cfg)
    err = capsys.readouterr().err
    assert "19 of 21 frames repeat an earlier one" in err and "held-out errors there are training errors" in err
    plan_training(write_frames(tmp_path / "distinct.extxyz", labelled_frames(14)), cfg)
    assert "repeat" not in capsys.readouterr().err


def test_integer_keys_of_a_schedule_are_plain_data(tmp_path):
    from mtsmlip.training import load_config

    config = tmp_path / "schedule.yaml"
    config.write_text("loss:\n  fast_force_weight_schedule: {0: 1.0, 5: 0.1}\n")
    assert load_config(config)["loss"]["fast_force_weight_schedule"] == {0: 1.0, 5: 0.1}


@pytest.mark.parametrize("trainer", [{"min_epochs": 50}, {"devices": 100000}, {"strategy": "my.module:Strategy"}])
def test_only_documented_trainer_options_reach_lightning(tmp_path, trainer):
    from mtsmlip.training import load_config

    config = tmp_path / "trainer.yaml"
    config.write_text(yaml.safe_dump({"trainer": trainer}))
    with pytest.raises(DataError, match=r"trainer.*(min_epochs|devices|strategy)"):
        load_config(config)


def test_an_external_teachers_pair_takes_no_baseline_file_and_no_unlisted_file(pair_dir):
    manifest = json.loads((pair_dir / "manifest.json").read_text())
    manifest["teacher"] = {"kind": "ase-calculator", "spec": "ase.calculators.emt:EMT"}
    (pair_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="baseline.pt: a pair distilled from an external teacher has no baseline.pt"):
        mtsmlip.load(pair_dir, teacher="ase.calculators.emt:EMT")
    del manifest["teacher"], manifest["model_files"]["baseline"]
    (pair_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="baseline.pt: not listed in manifest.json's model_files"):
        mtsmlip.load(pair_dir)


def test_a_checkpoint_cannot_name_files_outside_its_folder_for_lightning_to_delete(tmp_path):
    """Lightning restores these paths on resume and removes the 'old best' one
    recursively: an edited checkpoint must not make that a folder of the user's."""
    from mtsmlip.training.callbacks import ContainedCheckpoint

    home, victim = tmp_path / "checkpoints" / "stage1", tmp_path / "victim"
    home.mkdir(parents=True)
    victim.mkdir()
    callback = ContainedCheckpoint(dirpath=home, save_last=True, save_top_k=1, every_n_epochs=1)
    state = {**callback.state_dict(), "best_model_path": f"local://{victim}",
             "last_model_path": str(home / ".." / ".." / "victim"), "kth_best_model_path": str(home / "epoch=1.ckpt"),
             "best_k_models": {str(victim): 0.0, str(home / "epoch=1.ckpt"): 0.0}}
    callback.load_state_dict(state)
    assert callback.best_model_path == "" and callback.last_model_path == ""
    assert callback.kth_best_model_path == str(home / "epoch=1.ckpt")
    assert list(callback.best_k_models) == [str(home / "epoch=1.ckpt")]


def test_a_cell_too_narrow_to_search_is_refused_by_name(pair):
    from ase import Atoms

    from mtsmlip.forces import ModelForces

    atoms = Atoms("H", positions=[[0, 0, 0]], cell=[0.01, 0.01, 0.01], pbc=True)
    with pytest.raises(DataError, match="field 'cell'.*too narrow a cell to search"):
        ModelForces(pair.models["fast"], atoms)
