"""`mtsmlip export`: one model of a pair as a nequip packaged model (.nequip.zip).

mtsmlip's models are nequip-family models (Allegro, NequIP) with their builder
config and weights; a nequip package holds the same model with its code, so
nequip's own tools take it: ``NequIPCalculator._from_saved_model`` (ASE),
``nequip-compile`` (TorchScript / AOTInductor, then nequip's LAMMPS pair styles
and ML-IAP) and ``nequip-package info``.

This writes what ``nequip-package build`` writes from a training checkpoint
(nequip 0.19: the same torch.package layout, interned and externed modules,
example data, config text and metadata), built from our model file instead of
a Lightning checkpoint, which mtsmlip does not keep. As ``nequip-package
update`` does, the package is loaded back before it is kept, and its energy and
forces must match the model's own.

A package holds pickled code: loading one runs it. mtsmlip only writes them; it
never loads one it did not just write itself.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError

SUFFIX = ".nequip.zip"
OWN_MODEL_PARTS = ["mtsmlip.wall"]  # mtsmlip's own modules a model may hold (models.MODEL_PARTS)


def example_structure(type_names, spacing_A: float = 1.6):
    """A compact isolated cluster of 27 atoms (3 x 3 x 3) holding every species:
    what ``nequip-compile`` traces the model on. It must stay connected when
    nequip drops a few atoms to check that the trace does not depend on the
    atom and edge counts (a 4-atom cluster lost every edge that way)."""
    from ase import Atoms

    side = max(3, int(np.ceil(len(type_names) ** (1 / 3))))
    grid = np.array(list(np.ndindex(side, side, side)), dtype=float) * spacing_A
    symbols = [type_names[k % len(type_names)] for k in range(len(grid))]
    atoms = Atoms(symbols, positions=grid + np.random.default_rng(0).normal(0, 0.05, grid.shape))
    atoms.center(vacuum=5.0)
    atoms.pbc = False
    return atoms


def example_data(atoms, type_names, r_max_A: float) -> dict:
    """nequip's AtomicDataDict of `atoms` with edges, batched as a data loader gives it."""
    from nequip.data import AtomicDataDict, from_ase
    from nequip.data.transforms import ChemicalSpeciesToAtomTypeMapper, NeighborListTransform

    data = from_ase(atoms)
    for transform in (ChemicalSpeciesToAtomTypeMapper(model_type_names=list(type_names)),
                      NeighborListTransform(r_max=r_max_A)):
        data = transform(data)
    return AtomicDataDict.batched_from_list([data])


def packaged_models(loaded) -> dict:
    """{compile mode: ModuleDict(sole_model=model)} for every mode nequip packages
    (eager, and compile for torch >= 2.6), each rebuilt from the config and weights."""
    from nequip.model.utils import override_model_compile_mode
    from nequip.scripts._package_utils import _PACKAGING_MODES
    from nequip.train.lightning import _SOLE_MODEL_KEY

    from ..models import build_model

    models = {}
    for mode in _PACKAGING_MODES["nequip"]():
        with override_model_compile_mode(mode):
            module = build_model(loaded.config)
        module.load_state_dict(loaded.module.state_dict())
        models[mode] = torch.nn.ModuleDict({_SOLE_MODEL_KEY: module.eval()}).to("cpu")
    return models


def package_metadata(type_names, modes) -> str:
    """package_metadata.txt as ``nequip-package build`` writes it."""
    import yaml
    from nequip.scripts._package_utils import _EXTERNAL_MODULES
    from nequip.scripts.package import _CURRENT_NEQUIP_PACKAGE_VERSION
    from nequip.utils.versions import get_current_code_versions
    from nequip.utils.versions.version_utils import get_version_safe

    return yaml.dump({
        "versions": get_current_code_versions(verbose=False),
        "external_modules": {k: get_version_safe(k) for k in _EXTERNAL_MODULES},
        "package_version_id": _CURRENT_NEQUIP_PACKAGE_VERSION,
        "available_models": list(modes),
        "atom_types": dict(enumerate(type_names)),
    }, default_flow_style=False)


def config_text(loaded, source: str) -> str:
    """config.yaml of the package: the model's builder config (a nequip ``model:`` block)."""
    import yaml

    return f"# exported by mtsmlip from {source}\n" + yaml.safe_dump({"model": loaded.config}, sort_keys=False)


def write_package(loaded, path, source: str, structure=None) -> None:
    """Write `loaded` (a :class:`mtsmlip.models.LoadedModel`) as a nequip package
    at `path` (must end in .nequip.zip), atomically, after checking that nequip
    loads it back to the same energy and forces."""
    import os
    import uuid

    from nequip.scripts._package_utils import _EXTERNAL_MODULES, _INTERNAL_MODULES, _MOCK_MODULES

    path = Path(path)
    if not path.name.endswith(SUFFIX):
        raise DataError(f"--to {path}: a nequip package must end in {SUFFIX} (nequip's tools refuse others)")
    atoms = structure if structure is not None else example_structure(loaded.type_names)
    data = example_data(atoms, loaded.type_names, loaded.r_max)
    models = packaged_models(loaded)

    # written beside the target under a name nequip accepts, checked, then renamed over it
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        with _quiet_torch_package(), torch.package.PackageExporter(str(tmp)) as exporter:
            exporter.mock([f"{m}.**" for m in _MOCK_MODULES])
            exporter.extern([f"{m}.**" for m in _EXTERNAL_MODULES])
            exporter.intern([f"{m}.**" for m in _INTERNAL_MODULES])
            exporter.intern(OWN_MODEL_PARTS)  # our nequip modules travel with the model (they import only torch, nequip)
            exporter.save_pickle("model", "example_data.pkl", data, dependencies=True)
            exporter.save_text("model", "config.yaml", config_text(loaded, source))
            exporter.save_text("model", "package_metadata.txt", package_metadata(loaded.type_names, models))
            for mode, module in models.items():
                exporter.save_pickle("model", f"{mode}_model.pkl", module, dependencies=True)
        check_package_matches(tmp, loaded, atoms)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _quiet_torch_package():
    from nequip.model.saved_models.package import _suppress_package_importer_exporter_warnings

    with _suppress_package_importer_exporter_warnings():
        yield


def nequip_calculator(path, device="cpu"):
    """nequip's own ASE calculator on a package (runs the package's code)."""
    from nequip.integrations.ase import NequIPCalculator

    return NequIPCalculator._from_saved_model(str(path), device=device, chemical_species_to_atom_type_map=True)


def check_package_matches(path, loaded, atoms) -> None:
    """DataError unless nequip's calculator on the package at `path` gives the
    model's own energy and forces on `atoms` (to float32 or float64 precision)."""
    from ..models import MLIPCalculator

    theirs, ours = atoms.copy(), atoms.copy()
    theirs.calc, ours.calc = nequip_calculator(path), MLIPCalculator(loaded)
    tolerance = 1e-8 if loaded.config.get("model_dtype") == "float64" else 1e-4
    scale = max(1.0, float(np.abs(ours.get_forces()).max()))
    energy_error = abs(theirs.get_potential_energy() - ours.get_potential_energy())
    force_error = float(np.abs(theirs.get_forces() - ours.get_forces()).max())
    if energy_error > tolerance * max(1.0, abs(ours.get_potential_energy())) or force_error > tolerance * scale:
        raise DataError(f"{path}: the exported package does not reproduce the model (energy off by "
                        f"{energy_error:.3g} eV, forces by {force_error:.3g} eV/Å); not written")


def run(args) -> int:
    """`mtsmlip export`."""
    from ..data import read_structure
    from ..models import TrainedModels

    if Path(args.to).exists() and not args.overwrite:
        raise DataError(f"--to {args.to}: the file exists; pass --overwrite to replace it, or choose another name")
    models = TrainedModels.load(args.model, teacher=args.teacher)
    if args.part not in models.models:
        distilled = models.teacher is not None and args.part in ("slow", "baseline")
        why = ("in a distilled pair it is " + ("teacher − fast" if args.part == "slow" else "the teacher itself")
               + ", not a model of its own; export fast and use the teacher as it is") if distilled else \
            f"have {sorted(models.models)}"
        raise DataError(f"--part {args.part}: {models.directory} has no {args.part} model ({why})")
    structure = read_structure(args.structure) if args.structure else None
    write_package(models.models[args.part], args.to, f"{models.directory} ({args.part})", structure)
    print(f"mtsmlip export: {args.part} of {models.directory} -> {args.to} (nequip loads it back to the same "
          "energy and forces)")
    return 0
