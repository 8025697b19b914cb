"""Force providers made of other providers: nothing, a sum, and the correction
of a distilled pair.

MD with a distilled pair (`mtsmlip distill`) is r-RESPA with the fast model
every inner step and the *correction* ``F_teacher − F_fast`` every outer step
(the DMTS scheme of Cattin et al., arXiv:2510.06562), so the forces integrated
in total are the teacher's. In :func:`mtsmlip.md.respa.respa_step` the slow
provider is always called at the positions the fast one was just called at (the
last inner step, or the start), so :class:`CorrectionForces` reuses that fast
evaluation instead of repeating it: one outer step costs one teacher call plus
n fast calls.
"""

from __future__ import annotations

import torch

from .protocol import min_distance_A_of, neighbor_lists_of


def largest_cutoff_A(*providers):
    """The largest cutoff of the parts (Å); None if some part's is not known
    (a plain callable counts as a provider with no known cutoff)."""
    cutoffs = [getattr(p, "cutoff_A", None) for p in providers]
    return None if None in cutoffs else max(cutoffs)


def placement_of(provider):
    """(device, dtype) of a part: a plain callable is taken as CPU float64."""
    return getattr(provider, "device", torch.device("cpu")), getattr(provider, "dtype", torch.float64)


class ZeroForces:
    """The force provider of nothing: velocity Verlet is RESPA with this as the
    slow force and n = 1. Works on arrays and tensors alike."""

    cutoff_A = 0.0
    device, dtype = torch.device("cpu"), torch.float64

    def __call__(self, positions):
        zero = torch.zeros((), dtype=positions.dtype, device=positions.device) if torch.is_tensor(positions) else 0.0
        return zero, positions * 0


zero_forces = ZeroForces()


class SumForces:
    """fast + slow as one provider (the pair's total). It has a virial only where
    both parts have one."""

    def __init__(self, fast, slow):
        self.fast, self.slow = fast, slow
        self.cutoff_A = largest_cutoff_A(fast, slow)
        self.device, self.dtype = placement_of(fast)
        if all(hasattr(p, "virial_eV") for p in (fast, slow)):
            self.virial_eV = lambda: fast.virial_eV() + slow.virial_eV()

    def __call__(self, positions):
        e_fast, f_fast = self.fast(positions)
        e_slow, f_slow = self.slow(positions)
        return e_fast + e_slow, f_fast + f_slow

    def neighbor_lists(self) -> list:
        return neighbor_lists_of(self.fast, self.slow)

    @property
    def min_distance_A(self):
        seen = [d for d in (min_distance_A_of(self.fast), min_distance_A_of(self.slow)) if d is not None]
        return min(seen, key=float) if len(seen) == 2 else None


class RememberLast:
    """A provider that keeps its last call: (positions object, result)."""

    def __init__(self, provider):
        self.provider, self.last = provider, None
        self.cutoff_A = largest_cutoff_A(provider)
        self.device, self.dtype = placement_of(provider)

    def __call__(self, positions):
        result = self.provider(positions)
        self.last = (positions, result)
        return result

    @property
    def min_distance_A(self):
        return min_distance_A_of(self.provider)

    def neighbor_lists(self) -> list:
        return neighbor_lists_of(self.provider)

    def result_at(self, positions):
        """The provider's result at `positions`: the remembered one if it was
        called with this very object (not re-evaluated), else a fresh call."""
        if self.last is not None and self.last[0] is positions:
            return self.last[1]
        return self.provider(positions)


class CorrectionForces:
    """The slow force of a distilled pair: teacher − fast (energy and forces), so
    that fast + correction is the teacher to float rounding. `fast` is the
    :class:`RememberLast` the integrator calls as its fast provider."""

    def __init__(self, teacher, fast: RememberLast):
        self.teacher, self.fast = teacher, fast
        self.cutoff_A = largest_cutoff_A(teacher, fast)
        self.device, self.dtype = placement_of(fast)

    def __call__(self, positions):
        e_teacher, f_teacher = self.teacher(positions)
        e_fast, f_fast = self.fast.result_at(positions)
        return e_teacher - e_fast, f_teacher - f_fast

    @property
    def min_distance_A(self):
        return min_distance_A_of(self.teacher)

    def neighbor_lists(self) -> list:
        return neighbor_lists_of(self.teacher, self.fast)
