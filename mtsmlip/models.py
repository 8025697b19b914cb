"""Building, saving and loading the fast, slow and baseline models.

A model is described by a *model config*: the keyword arguments of a nequip-family
model builder with a hydra ``_target_`` (e.g. ``allegro.model.AllegroModel``), the
same dict a nequip training YAML holds under ``model:``. A saved model file holds
that config and the weights, so it can be rebuilt and loaded on its own.

Every model maps a nequip ``AtomicDataDict`` (positions, atom types, cell, edges)
to ``total_energy`` (eV) and ``forces`` (eV/Å, the autograd gradient).
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from ase.calculators.mixing import SumCalculator

from .data import DataError, check_cell_fits_cutoff, check_species_known

MODEL_FILES = {"fast": "fast.pt", "slow": "slow.pt", "baseline": "baseline.pt"}
MANIFEST = "manifest.json"

# Stage 1: small, cheap, short cutoff (Allegro l=1, one layer).
FAST_PRESET = {
    "_target_": "allegro.model.AllegroModel",
    "r_max": 4.0,
    "l_max": 1,
    "num_layers": 1,
    "num_scalar_features": 32,
    "num_tensor_features": 8,
    "radial_chemical_embed": {"_target_": "allegro.nn.TwoBodyBesselScalarEmbed", "num_bessels": 8},
    "radial_chemical_embed_dim": 32,
    "scalar_embed_mlp_hidden_layers_width": 32,
    "allegro_mlp_hidden_layers_width": 32,
    "readout_mlp_hidden_layers_width": 16,
}

# Stage 2 and baseline: larger cutoff, more capacity (NequIP, 2 layers, l=1;
# 2 rather than 3 layers so that it trains in minutes on a CPU).
SLOW_PRESET = {
    "_target_": "nequip.model.NequIPGNNModel",
    "r_max": 5.0,
    "num_layers": 2,
    "l_max": 1,
    "num_features": 32,
    "radial_mlp_width": 64,
}


def ensure_global_state() -> None:
    """nequip needs its global state (dtype, TF32 flags) set before building models."""
    from nequip.utils.global_state import global_state_initialized, set_global_state

    if not global_state_initialized():
        set_global_state()


def model_config(preset: dict, type_names, seed: int, model_dtype="float32", **overrides) -> dict:
    """A complete, buildable model config: `preset` with type names, seed, dtype
    and any overrides (e.g. per_type_energy_shifts, avg_num_neighbors)."""
    cfg = copy.deepcopy(preset)
    cfg.update(type_names=list(type_names), seed=int(seed), model_dtype=model_dtype)
    cfg.update(copy.deepcopy(overrides))
    return cfg


def build_model(config: dict) -> torch.nn.Module:
    """Instantiate a nequip GraphModel from a model config (see module doc)."""
    from hydra.utils import instantiate

    ensure_global_state()
    return instantiate(copy.deepcopy(config), _recursive_=False, _convert_="all")


def model_r_max(config: dict) -> float:
    return float(config["r_max"])


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def atomic_write(path, write_fn) -> None:
    """Write a file atomically: `write_fn(tmp_path)` then rename over `path`,
    so a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write_fn(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_json(path, obj) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=False)
            f.write("\n")

    atomic_write(path, write)


def save_model(path, model: torch.nn.Module, config: dict, metadata: dict | None = None) -> None:
    """Save config + weights (+ optional metadata) atomically to `path`."""
    from . import __version__

    payload = {
        "format": "mtsmlip-model-1",
        "mtsmlip_version": __version__,
        "config": copy.deepcopy(config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": metadata or {},
    }
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


@dataclass
class LoadedModel:
    """A model rebuilt from a file: the module (eval mode) and its config."""

    module: torch.nn.Module
    config: dict
    metadata: dict

    @property
    def r_max(self) -> float:
        return model_r_max(self.config)

    @property
    def type_names(self) -> list[str]:
        return list(self.config["type_names"])

    def calculator(self, device="cpu"):
        return MLIPCalculator(self, device=device)


def load_model(path) -> LoadedModel:
    """Rebuild a model saved by :func:`save_model`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(payload, dict) or payload.get("format") != "mtsmlip-model-1":
        raise DataError(f"{path}: not an mtsmlip model file")
    module = build_model(payload["config"])
    module.load_state_dict(payload["state_dict"])
    module.eval()
    return LoadedModel(module=module, config=payload["config"], metadata=payload["metadata"])


def _nequip_calculator_class():
    from nequip.integrations.ase import NequIPCalculator

    return NequIPCalculator


class MLIPCalculator(_nequip_calculator_class()):
    """ASE calculator for one mtsmlip model: nequip's calculator plus clear errors
    for species the model never saw and cells narrower than its cutoff."""

    def __init__(self, loaded: LoadedModel, device="cpu", **kwargs):
        from nequip.data.transforms import ChemicalSpeciesToAtomTypeMapper, NeighborListTransform

        self.loaded = loaded
        transforms = [
            ChemicalSpeciesToAtomTypeMapper(model_type_names=loaded.type_names),
            NeighborListTransform(r_max=loaded.r_max),
        ]
        super().__init__(model=loaded.module.eval(), device=device, transforms=transforms, **kwargs)

    def atoms_to_data(self, atoms):
        where = f"structure {atoms.get_chemical_formula()}"
        check_species_known(atoms, self.loaded.type_names, where)
        check_cell_fits_cutoff(atoms, self.loaded.r_max, where)
        return super().atoms_to_data(atoms)


class TrainedModels:
    """A model directory from ``mtsmlip train``: fast, slow and baseline models.

    ``.fast``, ``.slow``, ``.total`` (fast + slow) and ``.baseline`` are ASE
    calculators; ``.models[name]`` are the :class:`LoadedModel` objects.
    """

    def __init__(self, directory, models: dict[str, LoadedModel], manifest: dict):
        self.directory = Path(directory)
        self.models = models
        self.manifest = manifest

    @classmethod
    def load(cls, directory) -> "TrainedModels":
        directory = resolve_model_dir(directory)
        manifest_path = directory / MANIFEST
        if not manifest_path.is_file():
            raise DataError(
                f"{directory}: no {MANIFEST}; not a finished `mtsmlip train` output "
                "(an interrupted run can be continued with `mtsmlip train --resume`)"
            )
        manifest = json.loads(manifest_path.read_text())
        if not manifest.get("complete", False):
            raise DataError(f"{manifest_path}: training did not finish (complete=false)")
        models = {
            name: load_model(directory / fname)
            for name, fname in MODEL_FILES.items()
            if (directory / fname).is_file()
        }
        for required in ("fast", "slow"):
            if required not in models:
                raise DataError(f"{directory}: missing {MODEL_FILES[required]}")
        return cls(directory, models, manifest)

    def calculator(self, name: str, device="cpu"):
        if name == "total":
            return SumCalculator([self.calculator("fast", device), self.calculator("slow", device)])
        if name not in self.models:
            raise DataError(f"{self.directory}: no '{name}' model (have {sorted(self.models)})")
        return self.models[name].calculator(device)

    @property
    def fast(self):
        return self.calculator("fast")

    @property
    def slow(self):
        return self.calculator("slow")

    @property
    def total(self):
        return self.calculator("total")

    @property
    def baseline(self):
        return self.calculator("baseline")


def write_model_dir(directory, models: dict, manifest: dict) -> None:
    """Write a complete model directory: each ``models[name] = (module, config)``
    to its file, then ``manifest.json`` with ``complete: true`` *last*, so an
    interrupted write never looks like a finished one."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stale = directory / MANIFEST
    if stale.exists():
        stale.unlink()
    for name, (module, config) in models.items():
        save_model(directory / MODEL_FILES[name], module, config)
    atomic_write_json(stale, {**manifest, "complete": True})


SHIPPED_DIR = Path(__file__).parent / "shipped"


DEFAULT_MODEL = "water"


def add_model_argument(parser) -> None:
    """The --model option of every command: a directory from `mtsmlip train`, or
    the name of shipped models; the shipped water models when left out."""
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"model directory from `mtsmlip train`, or the name of shipped models "
                             f"(default: {DEFAULT_MODEL!r}, the shipped water models)")


def resolve_model_dir(name_or_path) -> Path:
    """A model directory from a path, or from the name of models shipped inside
    the package (e.g. ``water``, in ``mtsmlip/shipped/water``)."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    shipped = SHIPPED_DIR / str(name_or_path)
    if shipped.is_dir():
        return shipped
    names = sorted(p.name for p in SHIPPED_DIR.iterdir() if p.is_dir()) if SHIPPED_DIR.is_dir() else []
    raise DataError(f"{name_or_path}: no such model directory, and no shipped models of that name "
                    f"(shipped: {names or 'none'})")
