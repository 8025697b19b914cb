"""Upper bounds on the work a command may be asked for, checked before any work
starts: a typo such as ``--n-inner 100000000`` or ``--replicas 100000000`` would
otherwise run silently until it is killed or the machine runs out of memory."""

from __future__ import annotations

import os

from .errors import DataError

MAX_N_INNER = 1000  # inner steps per outer step: far past any resonance-free outer step
MAX_ATOMS = 1_000_000  # atoms in one engine (structure × replicas)
MEMORY_FRACTION = 0.5  # of the machine's memory that kept samples may fill


def check_n_inner(n_inner: int, option: str = "--n-inner") -> None:
    if n_inner > MAX_N_INNER:
        raise DataError(f"{option} {n_inner}: at most {MAX_N_INNER} inner steps per outer step (an outer step "
                        "this long is far past the slow force's resonance limit)")


def check_atoms(n_atoms: int, replicas: int = 1) -> None:
    """DataError if one engine would hold more than :data:`MAX_ATOMS` atoms."""
    total = n_atoms * replicas
    if total > MAX_ATOMS:
        copies = f" (--replicas {replicas} × {n_atoms} atoms)" if replicas > 1 else ""
        raise DataError(f"{total} atoms in one run{copies}: at most {MAX_ATOMS}")


def machine_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_kept_samples(n_samples: int, n_atoms: int, bytes_per_atom: int, what: str) -> None:
    """DataError if `n_samples` samples of `bytes_per_atom` per atom would fill
    more than :data:`MEMORY_FRACTION` of this machine's memory."""
    need = n_samples * n_atoms * bytes_per_atom
    have = machine_memory_bytes()
    if need > MEMORY_FRACTION * have:
        raise DataError(f"{what}: {n_samples} samples of {n_atoms} atoms would keep {need / 2**30:.1f} GiB in "
                        f"memory, more than {MEMORY_FRACTION:.0%} of this machine's {have / 2**30:.1f} GiB; "
                        "shorten the runs or sample less often")
