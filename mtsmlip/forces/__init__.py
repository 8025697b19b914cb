"""Force providers: the one home of everything that turns positions into
energies and forces for MD (see :class:`ForceProvider`).

- :mod:`.model`: one trained model at full speed (:class:`ModelForces`, with its
  skin neighbour list);
- :mod:`.combinators`: nothing, a sum, a distilled pair's correction;
- :mod:`.calculators`: ASE calculators as providers and providers as ASE calculators;
- :mod:`.factory`: the providers and calculators of a model directory, built
  in one place for md, compare, the probe, serve and the ASE classes.
"""

from .calculators import CalculatorForces, CalculatorTensorForces, ProviderCalculator
from .combinators import CorrectionForces, RememberLast, SumForces, ZeroForces, zero_forces
from .factory import PARTS, md_providers, one_model, part_calculator, part_provider
from .model import DEFAULT_SKIN_A, ModelForces, SkinNeighborList, deterministic, torch_device
from .protocol import ForceProvider, min_distance_A_of, neighbor_lists_of, virial_of

__all__ = ["ForceProvider", "min_distance_A_of", "neighbor_lists_of", "virial_of", "ModelForces", "SkinNeighborList", "DEFAULT_SKIN_A",
           "deterministic", "torch_device", "ZeroForces", "zero_forces", "SumForces", "RememberLast",
           "CorrectionForces", "CalculatorForces", "CalculatorTensorForces", "ProviderCalculator", "PARTS",
           "md_providers", "one_model", "part_provider", "part_calculator"]
