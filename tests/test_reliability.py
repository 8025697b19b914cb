"""Untrusted and broken input through the library: no foreign code runs, nothing
non-finite is written or marked complete, damaged files and changed inputs are
named, and help answers without importing torch."""

import shutil
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch

from mtsmlip.forces import md_providers
import mtsmlip
from mtsmlip import training
from mtsmlip.cli import SUBCOMMANDS, build_parser, main
from mtsmlip.errors import DataError
from mtsmlip.md import Engine, MDInstability, RunFiles, RunSettings
from mtsmlip.md.outputs import read_restart
from mtsmlip.models import MANIFEST, build_model, load_model, write_model_dir
from tests.test_bad_input import malicious_model
from tests.systems import tiny_model_config, write_tiny_pair
from tests.test_md_engine import engine_for, providers_for, water
from tests.training_helpers import labelled_frames, trained_dir, write_frames

REPO = Path(__file__).resolve().parents[1]


# ---- 1. nothing read from disk runs code ------------------------------------------
def test_a_model_file_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    evidence = tmp_path / "PWNED"
    malicious_model(tmp_path / "evil.pt", evidence)
    with pytest.raises(DataError, match="refused"):
        load_model(tmp_path / "evil.pt")
    assert not evidence.exists()
    torch.load(tmp_path / "evil.pt", weights_only=False)  # the file really does run code when unpickled
    assert evidence.exists()


def test_builders_outside_the_allow_list_are_refused(tmp_path):
    config = tiny_model_config("fast")
    config["radial_chemical_embed"] = {"_target_": "builtins.exec", "source": "print('hi')"}
    with pytest.raises(DataError, match="'builtins.exec' is not an allowed model part"):
        build_model(config)
    with pytest.raises(DataError, match="not an allowed model builder"):
        build_model({**config, "_target_": "nequip.model.ModelFromPackage"})


def test_a_restart_holding_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "restart.npz"
    np.savez(path, meta=np.array([{"format": "mtsmlip-restart-1"}], dtype=object))
    with pytest.raises(DataError, match="damaged restart file"):
        read_restart(path)


# ---- 2. nothing unsound is written or marked complete ---------------------------------
def test_a_diverged_stage_is_refused_and_writes_no_model():
    history = [{"epoch": 1, "train_loss": 0.5, "val_force_rmse_meV_per_A": 10.0},
               {"epoch": 2, "train_loss": float("nan"), "val_force_rmse_meV_per_A": float("nan")}]
    with pytest.raises(DataError, match="stage stage2, epoch 2: train_loss is nan"):
        training.check_stage_sound("stage2", None, history, {})


def test_a_model_directory_with_non_finite_weights_is_never_written(tmp_path):
    config = tiny_model_config("fast")
    module = build_model(config)
    with torch.no_grad():
        next(module.parameters()).fill_(float("nan"))
    with pytest.raises(DataError, match="weights hold NaN"):
        write_model_dir(tmp_path / "m", {"fast": (module, config), "slow": (module, config)}, {})
    assert not (tmp_path / "m" / MANIFEST).exists()


def test_a_model_file_with_non_finite_weights_does_not_load(tmp_path):
    from mtsmlip.models import save_model

    config = tiny_model_config("fast")
    module = build_model(config)
    with torch.no_grad():
        next(module.parameters())[0] = float("inf")
    save_model(tmp_path / "fast.pt", module, config)
    with pytest.raises(DataError, match="fast.pt, field '.*': weights hold NaN or inf"):
        load_model(tmp_path / "fast.pt")


# ---- 3. the start is checked, and a saved last good state is always finite -------------
def test_engine_refuses_overlapping_atoms_before_step_0_and_writes_nothing(pair, tmp_path):
    atoms = water()
    atoms.positions[4] = atoms.positions[3] + [0.2, 0.0, 0.0]
    with pytest.raises(DataError, match=r"starting structure .*: atoms 3 and 4 are 0\.200 Å apart"):
        engine_for(pair, atoms, tmp_path / "out", RunSettings(0.5, 2))
    assert not (tmp_path / "out").exists()


def test_a_run_that_turns_nan_saves_a_finite_last_good_state(pair, tmp_path):
    atoms = water()
    fast, slow = providers_for(pair, atoms, False)
    calls = {"n": 0}

    def slow_that_breaks(positions):
        calls["n"] += 1
        energy, forces = slow(positions)
        return (energy, forces * float("nan")) if calls["n"] > 4 else (energy, forces)

    engine = Engine(atoms, fast, slow_that_breaks, RunSettings(0.5, 2))
    RunFiles(tmp_path, 100).attach(engine)
    with pytest.raises(MDInstability, match="NaN or inf in forces_slow"):
        engine.run(10, progress=False)
    meta, arrays = read_restart(tmp_path / "restart.npz")
    assert meta["step"] == 3
    assert all(np.isfinite(arrays[k]).all() for k in ("positions", "momenta", "forces_fast", "forces_slow"))
    assert np.isfinite(ase.io.read(tmp_path / "last_good.extxyz").positions).all()


# ---- 4. resume checks what it resumes ----------------------------------------------------
def test_train_resume_with_another_data_file_is_refused_by_content(tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_dir(), run)
    manifest_before = (run / MANIFEST).read_text()
    other = write_frames(tmp_path / "other.extxyz", labelled_frames(16, seed0=50))
    assert main(["train", "--data", str(other), "--out", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "other.extxyz: not the --data file of the run" in err and "content differs" in err
    assert (run / MANIFEST).read_text() == manifest_before


def test_eval_split_checks_the_data_file_by_content(tmp_path):
    from mtsmlip.evaluate import select_frames

    manifest = mtsmlip.load(trained_dir()).manifest
    assert {"sha256", "size_bytes", "file"} <= set(manifest["data"])
    copy = tmp_path / "moved.extxyz"
    shutil.copy(manifest["data"]["file"], copy)  # the same content elsewhere is fine
    assert len(select_frames(copy, manifest, split="test")) == len(manifest["split"]["test"])


# ---- 5. damaged files: named, and training falls back to an intact checkpoint ------------
def test_a_damaged_last_checkpoint_falls_back_to_the_newest_epoch_checkpoint(tmp_path, capsys):
    stage = tmp_path / "stage1"
    shutil.copytree(Path(trained_dir()) / "checkpoints" / "stage1", stage)
    epoch_ckpts = sorted(stage.glob("epoch=*.ckpt"))
    assert epoch_ckpts and training.resumable_checkpoint(stage) == stage / "last.ckpt"
    (stage / "last.ckpt").write_bytes((stage / "last.ckpt").read_bytes()[:5000])
    assert training.resumable_checkpoint(stage) == epoch_ckpts[-1]
    assert "last.ckpt" in capsys.readouterr().err
    for ckpt in epoch_ckpts:
        ckpt.write_bytes(b"garbage")
    with pytest.raises(DataError, match="no readable checkpoint"):
        training.resumable_checkpoint(stage)


def test_a_bit_flip_in_the_weights_is_caught_by_the_manifest_hash(tmp_path):
    directory = write_tiny_pair(tmp_path / "pair")
    slow = directory / "slow.pt"
    payload = torch.load(slow, weights_only=True)
    key = next(k for k, v in payload["state_dict"].items() if v.is_floating_point() and v.numel() > 4)
    payload["state_dict"][key].view(-1)[0] += 1e-6  # a valid file, silently different
    torch.save(payload, slow)
    with pytest.raises(DataError, match="slow.pt: not the slow model that manifest.json lists: the content differs"):
        mtsmlip.load(directory)


# ---- 7. same seed, same run ----------------------------------------------------------------
def test_same_seed_gives_the_same_trajectory_bit_for_bit(pair, tmp_path):
    finals = []
    for name in ("a", "b"):
        atoms = water()
        fast, slow = providers_for(pair, atoms, False)
        engine = Engine(atoms, fast, slow, RunSettings(0.5, 2, "langevin", 300.0), seed=5)
        engine.run(6, progress=False)
        finals.append(engine.state.positions.numpy().copy())
    np.testing.assert_array_equal(*finals)


def test_the_shipped_models_give_the_same_forces_on_every_call():
    """Float32 NequIP on a 192-atom box: large enough for torch's threaded scatter."""
    from mtsmlip.demo import water_box

    atoms = water_box(64, seed=1)
    models = mtsmlip.load("water")
    slow = md_providers(models, atoms)[1]
    x = torch.as_tensor(atoms.positions)
    first = slow(x)[1]
    for _ in range(3):
        assert torch.equal(slow(x)[1], first)


# ---- 8. help is instant and complete --------------------------------------------------------
def test_help_imports_neither_torch_nor_ase():
    code = ("import sys\nfrom mtsmlip.cli import main\n"
            "for cmd in ([], ['train'], ['eval'], ['md'], ['compare'], ['demo']):\n"
            "    try:\n        main(cmd + ['--help'])\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in ('torch', 'ase', 'nequip', 'lightning') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_every_option_with_a_default_shows_it_in_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in SUBCOMMANDS:
        text = sub.choices[name].format_help()
        for action in sub.choices[name]._actions:
            if action.default not in (None, False) and action.dest != "help":
                assert f"(default: {action.default})" in " ".join(text.split()), (name, action.dest)
    md_help = " ".join(sub.choices["md"].format_help().split())
    assert "starts at 0 K" in md_help and "(fs)" in md_help and "(Å)" in md_help
