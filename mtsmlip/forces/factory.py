"""The one place the force providers of a model directory are built, for every
user of them: `md`, `compare`, the stability probe, `serve` (i-PI) and the ASE
calculators of ``mtsmlip.load(dir)`` (so also the ASE class MultiTimeStep).

`models` is a loaded model directory (:class:`mtsmlip.models.TrainedModels`):
``.models`` {name: loaded model}, ``.teacher`` (the teacher record of a distilled
pair, or None) and ``.teacher_calculator(device)`` (the external teacher).

A co-trained pair: fast and slow models; baseline its own model. A pair
distilled from a teacher: the fast model, and as slow force the correction
teacher − fast; its baseline is the teacher (an mtsmlip model copied into the
directory, or an external ASE calculator the user names again).
"""

from __future__ import annotations

from ..errors import DataError
from .calculators import CalculatorTensorForces, ProviderCalculator
from .combinators import CorrectionForces, RememberLast, SumForces, zero_forces
from .model import DEFAULT_SKIN_A, ModelForces

PARTS = ("fast", "slow", "total", "baseline")
MODEL_FILE_OF = {"fast": "fast.pt", "slow": "slow.pt", "baseline": "baseline.pt"}


def one_model(models, name: str, atoms, skin_A: float | None = None, device="cpu"):
    """The provider of one model of the directory ("fast", "slow" or
    "baseline"; a distilled pair's external teacher as "baseline")."""
    skin_A = DEFAULT_SKIN_A if skin_A is None else skin_A
    if name in models.models:
        return ModelForces(models.models[name], atoms, skin_A, device)
    if name == "baseline" and models.teacher is not None:
        return CalculatorTensorForces(atoms, models.teacher_calculator(device), device)
    raise DataError(f"{models.directory}: no {MODEL_FILE_OF.get(name, name)} to run the {name} model with")


def md_providers(models, atoms, baseline: bool = False, skin_A: float | None = None, device="cpu"):
    """(fast, slow) providers of an MD run on `atoms`: the pair, or with
    `baseline` the baseline model and no slow force (velocity Verlet). Bad
    species or cells raise DataError here, before anything runs."""
    if baseline:
        return one_model(models, "baseline", atoms, skin_A, device), zero_forces
    fast = one_model(models, "fast", atoms, skin_A, device)
    if models.teacher is None:
        return fast, one_model(models, "slow", atoms, skin_A, device)
    fast = RememberLast(fast)
    return fast, CorrectionForces(one_model(models, "baseline", atoms, skin_A, device), fast)


def check_part(part: str) -> str:
    if part not in PARTS:
        raise DataError(f"part {part!r}: not a part of a pair (choose from {', '.join(PARTS)})")
    return part


def check_available(models, part: str) -> None:
    """DataError if the directory lacks a model the part needs (checked when a
    calculator is made, not at its first use)."""
    distilled = models.teacher is not None
    slow = {"fast", "baseline"} if distilled else {"slow"}
    needs = {"fast": {"fast"}, "slow": slow, "total": {"fast"} | slow, "baseline": {"baseline"}}[check_part(part)]
    have = set(models.models) | ({"baseline"} if distilled else set())
    if not needs <= have:
        raise DataError(f"{models.directory}: no '{part}' model (have {sorted(models.models)})")


def part_provider(models, part: str, atoms, skin_A: float | None = None, device="cpu"):
    """One provider of a part: "fast", "slow" (a distilled pair: teacher − fast),
    "total" (fast + slow) or "baseline" (a distilled pair: the teacher)."""
    if check_part(part) == "baseline":
        return md_providers(models, atoms, True, skin_A, device)[0]
    fast, slow = md_providers(models, atoms, False, skin_A, device)
    return {"fast": fast, "slow": slow, "total": SumForces(fast, slow)}[part]


def part_calculator(models, part: str, device="cpu", skin_A: float | None = None):
    """An ASE calculator of a part (see :func:`part_provider`). A distilled
    pair's external teacher is its own calculator, unchanged."""
    check_available(models, part)
    if part == "baseline" and models.teacher is not None and "baseline" not in models.models:
        return models.teacher_calculator(device)
    return ProviderCalculator(lambda atoms: part_provider(models, part, atoms, skin_A, device))
