"""What a force provider is: the one contract every part of mtsmlip that
computes forces meets (trained models, an external calculator, sums and
corrections of those), so the MD engine, compare, the probe, serve and the ASE
classes take any of them."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch


@runtime_checkable
class ForceProvider(Protocol):
    """positions (N, 3) in (a float64 torch tensor on `device`; the numpy
    adapters take arrays); ``(energy_eV, forces_eV_per_A)`` out, energy a 0-d
    tensor (or float), forces like the positions.

    cutoff_A: forces are exactly zero between atoms further apart than this
    (None: not known, e.g. an external calculator). device, dtype: where and in
    what the positions must be.

    Optional, read with :func:`min_distance_A_of`, :func:`virial_of` and
    :func:`neighbor_lists_of`: ``min_distance_A`` (the shortest edge of the last
    call, for the engine's safety check), ``virial_eV()`` (the virial (3, 3) eV
    of the last call) and ``neighbor_lists()`` (the skin neighbour lists it
    calls, which the engine checks lazily, once per batch of steps).
    """

    cutoff_A: float | None
    device: torch.device
    dtype: torch.dtype

    def __call__(self, positions): ...


def min_distance_A_of(provider):
    """The shortest interatomic distance the provider saw in its last call
    (0-d tensor or float, Å), or None where it cannot tell."""
    return getattr(provider, "min_distance_A", None)


def virial_of(provider) -> np.ndarray | None:
    """The virial (3, 3) eV of the provider's last call (i-PI's and ASE's
    convention, −stress·volume), or None for a provider that cannot tell (an
    external calculator)."""
    virial = getattr(provider, "virial_eV", None)
    return None if virial is None else virial()


def neighbor_lists_of(*providers) -> list:
    """The skin neighbour lists the providers use, each once."""
    found = {}
    for provider in providers:
        lists = getattr(provider, "neighbor_lists", None)
        for nl in (lists() if lists is not None else ()):
            found[id(nl)] = nl
    return list(found.values())
