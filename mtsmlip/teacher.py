"""Teachers: existing potentials that `mtsmlip distill` makes faster without
retraining them.

A teacher is named by a *spec* string, one of:

* a model directory from ``mtsmlip train`` (or a shipped name such as ``water``):
  its baseline is the teacher ("mtsmlip-model"; handled in :mod:`mtsmlip.distill`,
  which copies the model file, so the distilled directory needs nothing else);
* a nequip model file, packaged (``.nequip.zip``) or a training checkpoint
  (``.ckpt``), loaded with nequip's own ASE calculator ("nequip-model");
* any ASE calculator as ``module:factory[:kwargs-json]``, e.g.
  ``ase.calculators.emt:EMT`` or ``sevenn.calculator:SevenNetCalculator:{"model": "7net-0"}``
  ("ase-calculator").

The last two run code when they are built (an import, an unpickling), so they
are built only from a spec the user gives on the command line or in Python,
never from what a file says: a distilled directory records its teacher's spec,
and ``md``/``compare``/``eval`` ask for it again (``--teacher``) and check it.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.singlepoint import SinglePointCalculator

from .errors import DataError
from .files import sha256_of
from .progress import progress_bar
from .shipped import shipped_names

NEQUIP_SUFFIXES = (".nequip.zip", ".ckpt")
CALCULATOR_SPEC = re.compile(r"^(?P<module>[A-Za-z_][\w.]*):(?P<factory>[A-Za-z_]\w*)(?::(?P<kwargs>.*))?$", re.S)
EXTERNAL_KINDS = ("nequip-model", "ase-calculator")


def teacher_kind(spec: str) -> str:
    """"mtsmlip-model", "nequip-model" or "ase-calculator" (see module doc), or
    DataError saying what `spec` is not."""
    path = Path(spec)
    if path.is_dir() or (not path.exists() and spec in shipped_names()):
        return "mtsmlip-model"
    if path.is_file():
        if spec.endswith(NEQUIP_SUFFIXES):
            return "nequip-model"
        raise DataError(f"--teacher {spec}: a file, but not a nequip model ({', '.join(NEQUIP_SUFFIXES)}); "
                        "give a model directory from `mtsmlip train`, a nequip model, or module:factory")
    if CALCULATOR_SPEC.match(spec):
        return "ase-calculator"
    raise DataError(f"--teacher {spec}: no such file or model directory, no shipped models of that name, and not "
                    "an ASE calculator as module:factory[:kwargs-json] (e.g. ase.calculators.emt:EMT)")


def teacher_record(spec: str, kind: str, model_file=None) -> dict:
    """What a distilled directory records about its teacher: kind, spec and the
    content hash of its file, or the version of the package its calculator comes from."""
    record = {"kind": kind, "spec": spec}
    if kind == "mtsmlip-model":
        record["sha256"] = sha256_of(model_file)
    elif kind == "nequip-model":
        record["sha256"] = sha256_of(spec)
    else:
        package = CALCULATOR_SPEC.match(spec)["module"].split(".")[0]
        try:
            record["package"] = {package: version(package)}
        except PackageNotFoundError:
            record["package"] = {package: None}
    return record


def external_calculator(spec: str, device: str = "cpu"):
    """Build the ASE calculator of a nequip-model or ase-calculator spec (this runs
    the code the spec names: call it only with a spec the user gave)."""
    kind = teacher_kind(spec)
    if kind == "nequip-model":
        from nequip.integrations.ase import NequIPCalculator

        try:
            return NequIPCalculator._from_saved_model(spec, device=device)
        except Exception as exc:
            raise DataError(f"--teacher {spec}: nequip could not load this model ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if kind != "ase-calculator":
        raise DataError(f"--teacher {spec}: a {kind}, not an external calculator")
    return _calculator_from_factory(spec)


@contextlib.contextmanager
def torch_standard_dtype():
    """torch's standard default dtype (float32) inside: nequip sets float64
    process-wide once an mtsmlip model is built, and a foreign torch calculator
    (SevenNet) then meets float64 tensors it never expected."""
    import torch

    was = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(was)


class ForeignCalculator(Calculator):
    """A calculator from a module:factory spec, built and called with torch's
    standard default dtype; energy and forces only."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, factory, kwargs: dict):
        super().__init__()
        with torch_standard_dtype():
            self.inner = factory(**kwargs)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        copy = self.atoms.copy()
        copy.calc = self.inner
        with torch_standard_dtype():
            self.results = {"energy": float(copy.get_potential_energy()),
                            "forces": np.array(copy.get_forces(), dtype=float)}


def _calculator_from_factory(spec: str):
    found = CALCULATOR_SPEC.match(spec)
    kwargs = {}
    if found["kwargs"]:
        try:
            kwargs = json.loads(found["kwargs"])
        except ValueError as exc:
            raise DataError(f"--teacher {spec}: the keyword arguments after the second ':' are not JSON ({exc})") from None
        if not isinstance(kwargs, dict):
            raise DataError(f"--teacher {spec}: the keyword arguments must be a JSON object, like {{\"model\": \"7net-0\"}}")
    try:
        module = importlib.import_module(found["module"])
    except ImportError as exc:
        raise DataError(f"--teacher {spec}: cannot import {found['module']} ({exc}); is its package installed?") from None
    factory = getattr(module, found["factory"], None)
    if not callable(factory):
        raise DataError(f"--teacher {spec}: {found['module']} has no callable {found['factory']!r}")
    try:
        calc = ForeignCalculator(factory, kwargs)
    except Exception as exc:
        raise DataError(f"--teacher {spec}: building the calculator failed ({type(exc).__name__}: {exc})") from None
    if not (hasattr(calc.inner, "get_potential_energy") and hasattr(calc.inner, "get_forces")):
        raise DataError(f"--teacher {spec}: {found['factory']} returned {type(calc.inner).__name__}, "
                        "not an ASE calculator")
    return calc


def check_confirmed(recorded: dict, given: str | None, where: str) -> None:
    """An external teacher is built only from a spec the user gave (`given`),
    and only if it is the one the directory was distilled from."""
    if given is None:
        raise DataError(f"{where}: distilled from the teacher {recorded['spec']!r} ({recorded['kind']}), which "
                        "mtsmlip does not build from what a file says (building it runs code); pass "
                        f"--teacher {recorded['spec']!r} (Python: teacher=...) to run it")
    if given != recorded["spec"]:
        raise DataError(f"{where}: distilled from the teacher {recorded['spec']!r}, not --teacher {given!r}")
    if "sha256" in recorded and sha256_of(given) != recorded["sha256"]:
        raise DataError(f"{where}: the teacher file {given} has changed since it was distilled from (SHA-256 differs)")


# ------------------------------------------------------------------ labels
def labelled_by(calc, atoms: Atoms, where: str) -> Atoms:
    """A copy of `atoms` (positions, numbers, cell, pbc) with the teacher's energy
    and forces; DataError naming `where` if the teacher fails or returns NaN/inf."""
    out = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    out.calc = calc
    try:
        energy, forces = float(out.get_potential_energy()), np.array(out.get_forces(), dtype=float)
    except DataError as exc:
        raise DataError(f"{where}: the teacher cannot evaluate it: {exc}") from None
    except Exception as exc:  # a calculator's own complaint (e.g. EMT: "No EMT-potential for Si")
        raise DataError(f"{where} (species {sorted(set(atoms.get_chemical_symbols()))}): the teacher failed "
                        f"({type(exc).__name__}: {exc})") from None
    if not math.isfinite(energy):
        raise DataError(f"{where}, field 'energy': the teacher returned {energy}")
    if forces.shape != (len(atoms), 3) or not np.isfinite(forces).all():
        raise DataError(f"{where}, field 'forces': the teacher returned NaN/inf or shape {forces.shape}")
    out.calc = SinglePointCalculator(out, energy=energy, forces=forces)
    return out


def label_frames(calc, frames, where: str, progress: bool = True, names=None) -> list[Atoms]:
    """Every frame relabelled by the teacher (`where`: the source, `names`: how
    each frame is named in errors, default "frame i")."""
    names = names or [f"frame {i}" for i in range(len(frames))]
    bar = progress_bar(len(frames), "frame", enabled=progress, desc="teacher labels")
    labelled = []
    for atoms, name in zip(frames, names):
        labelled.append(labelled_by(calc, atoms, f"{where}, {name}"))
        bar.update(1)
    bar.close()
    return labelled


def first_of_each_species(frames) -> list[int]:
    """Index of the first frame that holds each species (in order of appearance)."""
    seen, first = set(), []
    for i, atoms in enumerate(frames):
        new = set(atoms.get_chemical_symbols()) - seen
        if new:
            seen |= new
            first.append(i)
    return first


def teacher_md_frames(calc, structure: Atoms, temperatures_K, frames_per_temperature: int, timestep_fs: float,
                      interval: int, seed: int, where: str, progress: bool = True) -> list[Atoms]:
    """Configurations MTS will visit: Langevin MD with the teacher (ASE's
    integrator, friction 0.01/fs, centre of mass fixed) from `structure` at each
    temperature (`frames_per_temperature`: one count for all, or one each), one frame
    every `interval` steps after `interval`·5 steps of settling; each frame
    carries the teacher's energy and forces."""
    from ase import units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

    counts = ([int(frames_per_temperature)] * len(temperatures_K) if np.ndim(frames_per_temperature) == 0
              else [int(c) for c in frames_per_temperature])
    out, rng = [], np.random.default_rng(seed)
    bar = progress_bar(sum(counts), "frame", enabled=progress, desc="teacher MD")
    for temperature, frames_here in zip(temperatures_K, counts):
        atoms = Atoms(numbers=structure.numbers, positions=structure.positions, cell=structure.cell,
                      pbc=structure.pbc)
        atoms.calc = calc
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
        Stationary(atoms)
        atoms.set_constraint(FixCom())
        md = Langevin(atoms, timestep_fs * units.fs, temperature_K=temperature, friction=0.01 / units.fs,
                      rng=rng, fixcm=False)
        md.run(5 * interval)
        for k in range(frames_here):
            md.run(interval)
            out.append(labelled_by(calc, atoms, f"{where}: teacher MD at {temperature} K, frame {k}"))
            bar.update(1)
    bar.close()
    return out
