"""Tiny synthetic training problems shared by the training and evaluation tests:
8-molecule water boxes labelled by ASE's EMT, and tiny float64 models."""

import functools
import tempfile
from pathlib import Path

import ase.io
import yaml
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from tests.systems import small_water_box

TINY_CONFIG = {
    "train_frames": 10,
    "val_frames": 3,
    "epochs": 2,
    "batch_size": 2,
    "learning_rate": 0.01,
    "model_dtype": "float64",
    "fast_model": {"r_max": 2.5, "num_scalar_features": 8, "num_tensor_features": 4,
                   "radial_chemical_embed_dim": 8, "scalar_embed_mlp_hidden_layers_width": 8,
                   "allegro_mlp_hidden_layers_width": 8, "readout_mlp_hidden_layers_width": 8},
    "slow_model": {"r_max": 3.0, "num_layers": 2, "num_features": 8, "radial_mlp_width": 8},
    "baseline_model": {"r_max": 3.0, "num_layers": 2, "num_features": 8, "radial_mlp_width": 8},
    "stability_md_fs": 0,  # the stability check has tests of its own (tests/test_stability.py)
}


def labelled_frames(n_frames, seed0=0, **box_kwargs):
    frames = []
    for seed in range(seed0, seed0 + n_frames):
        atoms = small_water_box(seed=seed, **box_kwargs)
        atoms.calc = EMT()
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
        frames.append(atoms)
    return frames


def write_frames(path, frames):
    ase.io.write(path, frames, format="extxyz")
    return Path(path)


def write_config(path, **changes):
    Path(path).write_text(yaml.safe_dump({**TINY_CONFIG, **changes}))
    return Path(path)


@functools.lru_cache(maxsize=1)
def workspace() -> Path:
    return Path(tempfile.mkdtemp(prefix="mtsmlip-test-"))


@functools.lru_cache(maxsize=1)
def data_file() -> Path:
    return write_frames(workspace() / "emt_water.extxyz", labelled_frames(16))


@functools.lru_cache(maxsize=1)
def config_file() -> Path:
    return write_config(workspace() / "tiny.yaml")


@functools.lru_cache(maxsize=1)
def trained_dir() -> Path:
    """A finished `mtsmlip train` run on the tiny problem (trained once per session)."""
    from mtsmlip.cli import main

    out = workspace() / "trained"
    rc = main(["train", "--data", str(data_file()), "--config", str(config_file()), "--out", str(out)])
    assert rc == 0
    return out
