"""Force providers for distilled pairs (`mtsmlip distill`): a teacher potential
kept unchanged and a fast model trained to mimic it.

MD with such a pair is r-RESPA with the fast model every inner step and the
*correction* ``F_teacher − F_fast`` every outer step (the DMTS scheme of Cattin
et al., arXiv:2510.06562), so the forces integrated in total are the teacher's.
In :func:`mtsmlip.md.respa.respa_step` the slow provider is always called at the
positions the fast one was just called at (the last inner step, or the start),
so :class:`CorrectionForces` reuses that fast evaluation instead of repeating it:
one outer step costs one teacher call plus n fast calls.
"""

from __future__ import annotations

import numpy as np
import torch

from .ase_integrator import CalculatorForces


class RememberLast:
    """A force provider that keeps its last call: (positions object, result)."""

    def __init__(self, provider):
        self.provider, self.last = provider, None

    def __call__(self, positions):
        result = self.provider(positions)
        self.last = (positions, result)
        return result

    @property
    def min_distance_A(self):
        return getattr(self.provider, "min_distance_A", None)

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

    def __call__(self, positions):
        e_teacher, f_teacher = self.teacher(positions)
        e_fast, f_fast = self.fast.result_at(positions)
        return e_teacher - e_fast, f_teacher - f_fast

    @property
    def min_distance_A(self):
        return getattr(self.teacher, "min_distance_A", None)


class CalculatorTensorForces:
    """Any ASE calculator as a full-speed force provider: torch positions (N, 3)
    in, (0-d energy tensor eV, forces (N, 3) eV/Å tensor) out, like
    :class:`mtsmlip.md.torch_forces.ModelForces` (the arrays go through the host)."""

    def __init__(self, atoms, calc):
        self.forces = CalculatorForces(atoms, calc)

    def __call__(self, positions: torch.Tensor):
        energy, forces = self.forces(positions.detach().cpu().numpy())
        as_tensor = dict(dtype=positions.dtype, device=positions.device)
        return (torch.tensor(float(energy), **as_tensor),
                torch.as_tensor(np.asarray(forces, dtype=float)).to(**as_tensor))
