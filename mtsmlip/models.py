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
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .data import check_image_count, check_species_known
from .errors import DataError
from .files import atomic_write, atomic_write_json, check_plain_config, check_same_content, fingerprint, read_json
from .shipped import DEFAULT_MODEL, SHIPPED_DIR, resolve_model_dir  # noqa: F401 (part of this room's API)
from .teacher import check_confirmed, external_calculator

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

# Stage 2: a larger cutoff than the fast model, but slim (NequIP, 2 layers, 16
# features, l=1, 5 Å): it only learns the smooth remainder the fast model leaves.
# On water this was the cheapest slow model of the sweep (training/water/sweep)
# whose pair is at least as accurate as the baseline (l=0 was not).
SLOW_PRESET = {
    "_target_": "nequip.model.NequIPGNNModel",
    "r_max": 5.0,
    "num_layers": 2,
    "l_max": 1,
    "num_features": 16,
    "radial_mlp_width": 64,
}

# The same role as an Allegro model (strictly local: in LAMMPS, pair_allegro runs
# it across MPI ranks; NequIP's message passing keeps pair_nequip on one rank).
# Two layers reach 2 x 5 Å of body order at one cutoff's communication.
SLOW_ALLEGRO_PRESET = {**FAST_PRESET, "r_max": 5.0, "num_layers": 2}
SLOW_PRESETS = {"nequip": SLOW_PRESET, "allegro": SLOW_ALLEGRO_PRESET}  # config key slow_architecture

# The baseline, chosen on its own: the conventional model a user would run
# instead (NequIP, 3 layers, 32 features, l=1, 5 Å). Every speed and accuracy
# claim is made against it.
BASELINE_PRESET = {**SLOW_PRESET, "num_layers": 3, "num_features": 32}


def zbl_wall(type_names) -> dict:
    """nequip's ZBL screened-nuclear repulsion (eV, Å) as a model's pair term: a
    physical wall that grows like Z_i Z_j / r as two atoms meet, so no trained
    model has a hole at distances the data never shows. The network learns what
    remains, so inside the data's range the wall costs no expressiveness."""
    return {"_target_": "nequip.nn.pair_potential.ZBL", "units": "metal", "chemical_species": list(type_names)}


# The data-gated wall (mtsmlip.wall): (σ_ab·r)^−24 eV per species pair, 0.1 meV at the
# shortest a–b distance of the training frames (so it costs no accuracy on the
# data: the network learns what remains), 0.5 eV at 0.7, 21 eV at 0.6 and 1.7 keV
# at half that distance.
WALL_TARGET = "mtsmlip.wall.DataGatedWall"
WALL_EXPONENT = 24.0
WALL_AT_DATA_EV = 1e-4
# species pairs the data never brings within the cutoff: the wall sits at this
# fraction of the sum of their covalent radii
WALL_UNSEEN_COVALENT_FRACTION = 0.8


def data_wall(type_names, shortest_A: dict, r_max_A: float) -> dict:
    """The data-gated short-range wall of a model over `type_names` with cutoff
    `r_max_A`, as its pair_potential config; shortest_A: {(a, b): shortest distance
    in the training frames (Å)} (:func:`mtsmlip.system.shortest_distances_A`)."""
    from ase.data import atomic_numbers, covalent_radii

    names = list(type_names)
    at = [[0.0] * len(names) for _ in names]
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            r_A = shortest_A.get(tuple(sorted((a, b))))
            if r_A is None:
                r_A = WALL_UNSEEN_COVALENT_FRACTION * (covalent_radii[atomic_numbers[a]] + covalent_radii[atomic_numbers[b]])
            at[i][j] = round(float(min(r_A, 0.99 * r_max_A)), 6)
    return {"_target_": WALL_TARGET, "at_A": at, "r_max": float(r_max_A), "value_eV": WALL_AT_DATA_EV,
            "exponent": WALL_EXPONENT}


def wall_distances_A(config: dict) -> dict | None:
    """{(a, b): distance (Å) where a model's data-gated wall is its value_eV (0.1 meV)},
    or None for a model without one."""
    wall = config.get("pair_potential") or {}
    if wall.get("_target_") != WALL_TARGET:
        return None
    names = config["type_names"]
    return {tuple(sorted((a, b))): wall["at_A"][i][j] for i, a in enumerate(names) for j, b in enumerate(names) if i <= j}


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


# The only builders a model config may name: instantiating a `_target_` runs
# that callable, so a file that names another (nequip's ModelFromPackage, which
# unpickles, or any function at all) is refused rather than run.
MODEL_BUILDERS = frozenset({
    "allegro.model.AllegroModel",
    "nequip.model.NequIPGNNModel",
    "nequip.model.FullNequIPGNNModel",
    "nequip.model.PresetNequIPGNNModel",
})
MODEL_PARTS = frozenset({
    "nequip.nn.pair_potential.ZBL",
    "mtsmlip.wall.DataGatedWall",
    "allegro.nn.TwoBodyBesselScalarEmbed",
    "allegro.nn.TwoBodySplineScalarEmbed",
    "allegro.nn.TwoBodySphericalHarmonicTensorEmbed",
    "allegro.nn.ProductTypeEmbedding",
})


# Upper bounds on a model config's sizes, checked before a model is built: a
# 40 kB file asking for 100 000 layers would otherwise take minutes and all memory.
# key -> largest allowed value; keys ending in one of SIZE_SUFFIXES share a bound.
SIZE_LIMITS = {"num_layers": 16, "l_max": 6, "r_max": 20.0, "type_names": 118}
SIZE_SUFFIXES = {"_depth": 16, "_features": 2048, "_width": 4096, "_dim": 4096, "num_bessels": 256}
LARGEST_PLAIN_INT = 10**6  # any other integer in a config (a seed may be larger: it sizes nothing)


def check_model_config(config: dict, where: str) -> None:
    """DataError unless `config` is plain data with an allow-listed builder and
    parts, no interpolation, and sizes within :data:`SIZE_LIMITS` (all before
    anything is built)."""
    check_plain_config(config, where)
    check_builders_allowed(config, where)
    check_model_sizes(config, where)
    check_wall(config, where)


def check_wall(config: dict, where: str) -> None:
    """DataError unless a data-gated wall's numbers are sound: distances a symmetric
    positive types × types matrix below the cutoff, exponent and value within
    :data:`mtsmlip.wall.WALL_BOUNDS` (a damaged file could otherwise turn it off,
    make it attractive or overflow)."""
    import math

    from .wall import WALL_BOUNDS

    wall = config.get("pair_potential")
    if not isinstance(wall, dict) or wall.get("_target_") != WALL_TARGET:
        return
    field = f"{where}, field 'pair_potential"
    for name, (low, high) in WALL_BOUNDS.items():
        value = wall.get(name)
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high):
            raise DataError(f"{field}.{name}': must be a number from {low:g} to {high:g} (got {value!r})")
    at, n, r_max = wall.get("at_A"), len(config.get("type_names", [])), wall.get("r_max")
    if not (isinstance(r_max, (int, float)) and 0 < r_max <= SIZE_LIMITS["r_max"]):
        raise DataError(f"{field}.r_max': must be a cutoff from 0 to {SIZE_LIMITS['r_max']:g} Å (got {r_max!r})")
    good = isinstance(at, list) and len(at) == n and all(isinstance(row, list) and len(row) == n for row in at)
    good = good and all(isinstance(v, (int, float)) and math.isfinite(v) and 0 < v < r_max for row in at for v in row)
    if not good or any(at[i][j] != at[j][i] for i in range(n) for j in range(n)):
        raise DataError(f"{field}.at_A': must be a symmetric {n} x {n} matrix of distances between 0 and "
                        f"r_max = {r_max} Å")


def check_builders_allowed(config: dict, where: str) -> None:
    """DataError unless the config's builder and every nested `_target_` are on
    the allow-lists above, and no other hydra key (``_args_``, ``_partial_``...) appears."""
    if not isinstance(config, dict) or config.get("_target_") not in MODEL_BUILDERS:
        target = config.get("_target_") if isinstance(config, dict) else config
        raise DataError(f"{where}, field 'config._target_': {target!r} is not an allowed model builder "
                        f"(allowed: {sorted(MODEL_BUILDERS)})")
    for key, value in walk_config(config):
        name = key.rsplit(".", 1)[-1]
        if name == "_target_" and key != "_target_" and value not in MODEL_PARTS:
            raise DataError(f"{where}, field 'config.{key}': {value!r} is not an allowed "
                            f"model part (allowed: {sorted(MODEL_PARTS)})")
        if name.startswith("_") and name.endswith("_") and name != "_target_":
            raise DataError(f"{where}, field 'config.{key}': hydra key {name!r} is not allowed in a model config")


def check_model_sizes(config: dict, where: str) -> None:
    """DataError naming the first size past its bound (:data:`SIZE_LIMITS`)."""
    names = config.get("type_names")
    if not isinstance(names, list) or not 1 <= len(names) <= SIZE_LIMITS["type_names"]:
        raise DataError(f"{where}, field 'config.type_names': must be a list of 1 to "
                        f"{SIZE_LIMITS['type_names']} species (got {_short(names)})")
    r_max = config.get("r_max")
    if not _is_number(r_max) or not 0 < r_max <= SIZE_LIMITS["r_max"]:
        raise DataError(f"{where}, field 'config.r_max': the cutoff must be a number in (0, "
                        f"{SIZE_LIMITS['r_max']}] Å (got {_short(r_max)})")
    for key, value in walk_config(config):
        name = key.rsplit(".", 1)[-1]
        if name.isdigit():  # an element of a list: bounded like the list it belongs to
            name = key.rsplit(".", 2)[-2]
        limit = SIZE_LIMITS.get(name) or next((v for s, v in SIZE_SUFFIXES.items() if name.endswith(s)), None)
        if name in ("r_max", "type_names") or not _is_number(value):
            continue
        if limit is None and isinstance(value, int) and "seed" not in name:
            limit = LARGEST_PLAIN_INT
        if limit is not None and abs(value) > limit:
            raise DataError(f"{where}, field 'config.{key}': {value!r} is larger than mtsmlip allows "
                            f"({limit}); a model this size would not fit in memory or time")


def walk_config(value, key=""):
    """(dotted key, value) of every entry below the top level of nested dicts and lists."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        sub = f"{key}.{k}" if key else str(k)
        yield sub, v
        yield from walk_config(v, sub)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def build_model(config: dict) -> torch.nn.Module:
    """Instantiate a nequip GraphModel from a model config (see module doc);
    only allow-listed builders (:data:`MODEL_BUILDERS`)."""
    from hydra.utils import instantiate

    check_model_config(config, "model config")
    ensure_global_state()
    return instantiate(copy.deepcopy(config), _recursive_=False, _convert_="all")


def model_r_max(config: dict) -> float:
    return float(config["r_max"])


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_model(path, model: torch.nn.Module, config: dict, metadata: dict | None = None) -> None:
    """Save config + weights (+ optional metadata) atomically to `path`."""
    from ._version import __version__

    payload = {
        "format": "mtsmlip-model-1",
        "mtsmlip_version": __version__,
        "config": copy.deepcopy(config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": metadata or {},
    }
    atomic_write(path, lambda tmp: save_deterministic(payload, tmp))


def save_deterministic(payload, path) -> None:
    """torch.save through an open file: torch names the archive's folder after a
    path it is given (a temporary file's random name), so the same weights would
    get a new SHA-256 each time; through a file object it is always 'archive'."""
    with open(path, "wb") as f:
        torch.save(payload, f)


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
    """Rebuild a model saved by :func:`save_model`. Never runs code from the file:
    tensors and plain data only (``weights_only``), allow-listed builders only;
    damaged files and non-finite weights are named errors."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: model file not found")
    payload = _read_payload(path)
    check_model_config(payload["config"], str(path))
    try:
        module = build_model(payload["config"])
    except DataError:
        raise
    except Exception as exc:  # a key the builder does not take, a value of the wrong kind
        first = str(exc).splitlines()[0][:300] if str(exc) else ""
        raise DataError(f"{path}, field 'config': the model cannot be built from it ({type(exc).__name__}: "
                        f"{first})") from None
    try:
        module.load_state_dict(payload["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise DataError(f"{path}, field 'state_dict': does not fit the model its config describes ({exc})") from None
    check_finite_weights(module, str(path))
    module.eval()
    return LoadedModel(module=module, config=payload["config"], metadata=payload.get("metadata") or {})


def _read_payload(path: Path) -> dict:
    import pickle

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        raise DataError(f"{path}: refused: it holds a pickled object ({found.group(1) if found else 'not plain data'}) "
                        "that could run code when loaded; model files hold only tensors and plain data") from None
    except Exception as exc:  # truncated or bit-flipped: zip, pickle and storage errors of many kinds
        first = str(exc).split(". ")[0]
        raise DataError(f"{path}: damaged model file, cannot be read ({type(exc).__name__}: {first})") from None
    if not isinstance(payload, dict) or payload.get("format") != "mtsmlip-model-1":
        raise DataError(f"{path}: not an mtsmlip model file (no format 'mtsmlip-model-1')")
    for field, kind in (("config", dict), ("state_dict", dict)):
        if not isinstance(payload.get(field), kind):
            raise DataError(f"{path}, field '{field}': missing or not a {kind.__name__}")
    return payload


def check_finite_weights(module: torch.nn.Module, where: str) -> None:
    """DataError naming the first parameter or buffer holding NaN or inf."""
    for name, tensor in module.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise DataError(f"{where}, field '{name}': weights hold NaN or inf (training diverged)")


def _nequip_calculator_class():
    from nequip.integrations.ase import NequIPCalculator

    return NequIPCalculator


class MLIPCalculator(_nequip_calculator_class()):
    """ASE calculator for one mtsmlip model: nequip's calculator plus clear errors
    for species the model never saw and periodic frames without a cell."""

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
        check_image_count(atoms, self.loaded.r_max, where)
        return super().atoms_to_data(atoms)


class TrainedModels:
    """A model directory from ``mtsmlip train`` or ``mtsmlip distill``, loaded
    and checked: ``.models[name]`` are the :class:`LoadedModel` objects, with
    their manifest and file hashes. Force providers and calculators of it are
    built by :mod:`mtsmlip.forces`; ``.fast``, ``.slow``, ``.total`` (fast + slow)
    and ``.baseline`` are those ASE calculators.
    """

    def __init__(self, directory, models: dict[str, LoadedModel], manifest: dict, hashes: dict | None = None,
                 teacher_spec: str | None = None):
        self.directory = Path(directory)
        self.teacher_spec = teacher_spec  # the external teacher as the user gave it (never read from a file)
        self.models = models
        self.manifest = manifest
        self.hashes = dict(hashes or {})
        self._teacher_calculators = {}  # device -> the external teacher, built once

    @classmethod
    def load(cls, directory, teacher: str | None = None) -> "TrainedModels":
        """Load a model directory. A pair distilled from an external teacher
        (``mtsmlip distill``) needs that teacher's spec again as `teacher`
        (building it runs code, which mtsmlip never does from a file's say-so)."""
        directory = resolve_model_dir(directory)
        manifest_path = directory / MANIFEST
        if not manifest_path.is_file():
            raise DataError(
                f"{directory}: no {MANIFEST}; not a finished `mtsmlip train` output "
                "(an interrupted run can be continued with `mtsmlip train --resume`)"
            )
        manifest = read_json(manifest_path, "model manifest")
        check_plain_config(manifest, str(manifest_path), "manifest")
        if manifest.get("complete") is not True:
            raise DataError(f"{manifest_path}: training did not finish (complete=false)")
        recorded = recorded_model_files(manifest, manifest_path)
        distilled = recorded_teacher(manifest, manifest_path)
        models, hashes = {}, {}
        for name, fname in MODEL_FILES.items():
            if (directory / fname).is_file():
                if name == "baseline" and distilled and distilled["kind"] != "mtsmlip-model":
                    raise DataError(f"{directory / fname}: a pair distilled from an external teacher has no "
                                    f"{fname} (its baseline is the --teacher); remove the file")
                now = fingerprint(directory / fname)  # before the file is read: a changed file is never unpickled
                if recorded is not None and name not in recorded:
                    raise DataError(f"{directory / fname}: not listed in {MANIFEST}'s model_files (an added file)")
                if recorded is not None:
                    check_same_content(recorded[name], now, f"the {name} model that {MANIFEST} lists")
                models[name] = load_model(directory / fname)
                hashes[name] = now["sha256"]
        for required in ("fast",) if distilled else ("fast", "slow"):
            if required not in models:
                raise DataError(f"{directory}: missing {MODEL_FILES[required]}")
        if distilled and distilled["kind"] == "mtsmlip-model" and "baseline" not in models:
            raise DataError(f"{directory}: missing {MODEL_FILES['baseline']} (the teacher's model, copied when the pair "
                            "was distilled); mtsmlip never builds a teacher from what a file records")
        if distilled and distilled["kind"] != "mtsmlip-model":
            check_confirmed(distilled, teacher, str(directory))
            hashes["teacher"] = distilled.get("sha256") or distilled["spec"]
        elif teacher is not None:
            raise DataError(f"{directory}: --teacher is only for pairs distilled from an external teacher; "
                            "this directory holds its own models")
        return cls(directory, models, manifest, hashes, teacher_spec=teacher)

    @property
    def teacher(self) -> dict | None:
        """The teacher record of a distilled pair (kind, spec, hash), else None."""
        return self.manifest.get("teacher")

    def largest_cutoff_A(self) -> float:
        """The largest cutoff of the models in this directory (Å)."""
        return max(m.r_max for m in self.models.values())

    def model_hashes(self) -> dict:
        """{name: SHA-256 of its file} (hashed once, when loaded): what a resumed
        run checks it runs the same models."""
        return dict(self.hashes)

    def teacher_calculator(self, device="cpu"):
        """The external teacher of a distilled pair as an ASE calculator, built once
        per device (SevenNet-0 takes seconds to load) from the spec the user gave."""
        if self.teacher is None or "baseline" in self.models:
            raise DataError(f"{self.directory}: no external teacher (this directory holds its own models)")
        if self.teacher_spec is None:
            raise DataError(f"{self.directory}: the teacher is built only from a spec the user gives "
                            "(--teacher, or teacher= in Python), never from what a file records")
        if device not in self._teacher_calculators:
            self._teacher_calculators[device] = external_calculator(self.teacher_spec, device)
        return self._teacher_calculators[device]

    def calculator(self, name: str, device="cpu"):
        """ASE calculator of "fast", "slow", "total" (fast + slow) or "baseline",
        built by :func:`mtsmlip.forces.part_calculator` (the providers MD runs).
        For a distilled pair, "baseline" is the teacher and "slow" is teacher − fast."""
        from .forces import part_calculator

        return part_calculator(self, name, device)

    fast, slow, total, baseline = (property(lambda self, n=n: self.calculator(n), doc=f"ASE calculator: {n}")
                                   for n in ("fast", "slow", "total", "baseline"))


def recorded_model_files(manifest: dict, where) -> dict | None:
    """The manifest's {name: fingerprint} of its model files, checked to be that;
    None for a manifest from before they were recorded."""
    record = manifest.get("model_files")
    if record is None:
        return None
    if not isinstance(record, dict) or not all(isinstance(v, dict) for v in record.values()):
        raise DataError(f"{where}, field 'model_files': not a mapping of model names to file fingerprints")
    return record


def recorded_teacher(manifest: dict, where) -> dict | None:
    """The teacher record of a distilled pair's manifest (kind, spec, hash), checked
    to be one mtsmlip knows; None for a co-trained pair. Only read, never built."""
    from .teacher import EXTERNAL_KINDS

    record = manifest.get("teacher")
    if record is None:
        return None
    kinds = ("mtsmlip-model", *EXTERNAL_KINDS)
    if not isinstance(record, dict) or record.get("kind") not in kinds or not isinstance(record.get("spec"), str):
        raise DataError(f"{where}, field 'teacher': not a teacher record (a kind among {list(kinds)} and a spec)")
    return record


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
        check_finite_weights(module, f"{name} model")
    files = {}
    for name, (module, config) in models.items():
        save_model(directory / MODEL_FILES[name], module, config)
        files[name] = {**fingerprint(directory / MODEL_FILES[name]), "file": MODEL_FILES[name]}
    atomic_write_json(stale, {**manifest, "model_files": files, "complete": True})
