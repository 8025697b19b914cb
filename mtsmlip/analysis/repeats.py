"""Independent repeats: a mean difference with a confidence interval, and a
three-way verdict against a physical tolerance.

A comparison runs the reference and the run under test from K decorrelated
starts; repeat k of both starts from the same state, so the differences
d_k = run_k − reference_k are paired. For each scalar observable (a species'
temperature, diffusion coefficient, g(r) peak, ...):

    mean d̄ = Σ d_k / K,   CI = d̄ ± t_{K−1, 0.975} · s_d / √K

(Student t; s_d the sample standard deviation of the d_k), and the verdict:

* **same**: the whole CI lies within ± the tolerance;
* **different**: the whole CI lies outside it;
* **cannot tell**: the CI straddles a bound. The noise falls as 1/√(K · run
  length), so ``repeats_to_settle`` says how many repeats K' of this length
  would put the CI on one side (about as much sampling as runs K'/K times
  longer).

The tolerances (:data:`TOLERANCES`) are physical, stated once here in physical
units, and not derived from the noise: what a user would call "the same" for
each kind of observable. A user can override any of them by name.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Mapping, Sequence

import numpy as np

from ..errors import DataError

SAME, DIFFERENT, CANNOT_TELL = "same", "different", "cannot tell"
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Bound:
    """A tolerance on a difference: `value` in the observable's unit (absolute),
    or as a fraction of the reference's mean (relative)."""

    value: float
    relative: bool
    unit: str
    what: str

    def allowed(self, reference_mean: float) -> float:
        """The largest |difference| still called the same, in the observable's unit."""
        return self.value * abs(reference_mean) if self.relative else self.value


# The physical tolerances, by kind of observable (the name before the first space
# of an observable, e.g. "temperature H"). Sampling observables first.
TOLERANCES = {
    "temperature": Bound(0.01, True, "K", "a species' mean temperature (equipartition): within 1 % of the reference's"),
    "rdf_peak_height": Bound(0.03, True, "", "height of a species pair's first g(r) peak"),
    "rdf_peak_position": Bound(0.01, False, "Å", "position of a species pair's first g(r) peak"),
    "bond_length": Bound(0.002, False, "Å", "a molecule's mean bond length per species pair"),
    "potential_energy": Bound(0.5, False, "meV/atom", "mean potential energy per atom (molecules)"),
    "vibration": Bound(0.05, True, "Å²", "a crystal species' mean squared displacement about its sites ⟨u²⟩"),
    "diffusion": Bound(0.05, True, "Å²/ps", "a species' self-diffusion coefficient"),
    "reorientation": Bound(0.05, True, "ps", "P2 correlation time of the X–H bond vectors"),
    # C2(0.5 ps) = exp(-0.5 ps / τ) near 0.8 at water's τ ≈ 2.5 ps: ±0.01 is τ within about ±6 %
    "reorientation_c2": Bound(0.01, False, "", "P2 correlation of the X–H bond vectors at a lag of 0.5 ps"),
    "vdos_centroid": Bound(0.01, True, "cm⁻¹", "a species' mean vibrational frequency (VDOS centroid)"),
    "drift": Bound(0.5, False, "meV/atom/ps", "energy drift in NVE"),
    "fluctuation": Bound(0.02, False, "", "conserved-energy fluctuation ΔE/ΔK in NVE"),
}
SAMPLING_KINDS = ("temperature", "rdf_peak_height", "rdf_peak_position", "bond_length", "potential_energy",
                  "vibration")


def kind_of(observable: str) -> str:
    return observable.split(" ", 1)[0]


def tolerances_with(overrides: Mapping[str, float] | None) -> dict:
    """TOLERANCES with the named values replaced (same unit and sense); an unknown
    name or a value that is not a positive number is an error naming it."""
    out = dict(TOLERANCES)
    for name, value in (overrides or {}).items():
        if name not in TOLERANCES:
            raise DataError(f"--tolerance: unknown observable {name!r}; known: {', '.join(TOLERANCES)}")
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise DataError(f"--tolerance {name}: needs a positive number (got {value!r})")
        out[name] = replace(TOLERANCES[name], value=float(value))
    return out


@dataclass(frozen=True)
class Interval:
    """Mean of K values with its two-sided CONFIDENCE interval (Student t)."""

    mean: float
    half_width: float
    repeats: int

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width


def t_quantile(repeats: int, confidence: float = CONFIDENCE) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + confidence / 2, repeats - 1))


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """The mean of independent values and its confidence interval; one value
    gives an infinitely wide interval (one run cannot measure its own noise)."""
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or len(x) == 0 or not np.all(np.isfinite(x)):
        raise DataError(f"mean_interval, field 'values': need finite numbers (got {values!r})")
    if len(x) == 1:
        return Interval(float(x[0]), math.inf, 1)
    return Interval(float(x.mean()), t_quantile(len(x), confidence) * float(x.std(ddof=1)) / math.sqrt(len(x)), len(x))


def judge(interval: Interval, allowed: float) -> str:
    """same / different / cannot tell: where the CI lies against ±allowed."""
    if -allowed <= interval.low and interval.high <= allowed:
        return SAME
    if interval.low > allowed or interval.high < -allowed:
        return DIFFERENT
    return CANNOT_TELL


def repeats_to_settle(interval: Interval, allowed: float, spread: float | None = None) -> int | None:
    """About how many repeats of the same length would narrow the CI to one side
    of the bound the mean is on: the smallest K' with t(K'−1)·s/√K' below the
    margin |mean| − allowed (s, the repeats' spread, from the interval when not
    given); None when the verdict is settled, the mean sits on the bound, or
    more than 1000 repeats would be needed."""
    if judge(interval, allowed) != CANNOT_TELL or not math.isfinite(interval.half_width):
        return None
    margin = abs(abs(interval.mean) - allowed)
    if margin <= 1e-12 * max(1.0, allowed):
        return None
    if spread is None:
        spread = interval.half_width * math.sqrt(interval.repeats) / t_quantile(interval.repeats)
    for k in range(interval.repeats + 1, 1001):
        if t_quantile(k) * spread / math.sqrt(k) < margin:
            return k
    return None


@dataclass(frozen=True)
class Difference:
    """One observable of a run against its reference over the paired repeats."""

    observable: str
    unit: str
    reference_mean: float
    difference: Interval
    allowed: float
    verdict: str
    repeats_to_settle: int | None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["difference"] = {"mean": self.difference.mean, "low": self.difference.low, "high": self.difference.high,
                           "repeats": self.difference.repeats}
        return json_safe(d)


def json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def differences(runs: Sequence[Mapping[str, float] | None], references: Sequence[Mapping[str, float] | None],
                tolerances: Mapping[str, Bound] = TOLERANCES) -> list[Difference]:
    """Every observable of the run and its reference: the paired differences'
    interval and verdict against its tolerance. runs and references: one
    {observable: value} per repeat, in the same order (repeat k of both from the
    same start); None for a repeat that has none (it blew up). An observable is
    compared over the repeats where both sides have a finite value; with fewer
    than 2 its interval is infinitely wide (cannot tell), so an observable
    missing somewhere is never silently dropped."""
    if len(runs) != len(references) or not runs:
        raise DataError(f"differences: need the same number (>= 1) of run and reference repeats "
                        f"(got {len(runs)} and {len(references)})")
    names = set().union(*(set(r or {}) for r in runs), *(set(r or {}) for r in references))
    order = list(TOLERANCES)
    out = []
    for name in sorted(names, key=lambda n: (order.index(kind_of(n)) if kind_of(n) in order else 99, n)):
        bound = tolerances.get(kind_of(name))
        if bound is None:
            continue
        pairs = [(r[name], b[name]) for r, b in zip(runs, references)
                 if r and b and _finite(r.get(name)) and _finite(b.get(name))]
        if not pairs:
            continue
        deltas = [r - b for r, b in pairs]
        interval = mean_interval(deltas) if len(pairs) > 1 else Interval(float(deltas[0]), math.inf, 1)
        reference = float(np.mean([b for _, b in pairs]))
        allowed = bound.allowed(reference)
        spread = float(np.std(deltas, ddof=1)) if len(pairs) > 1 else None
        out.append(Difference(name, bound.unit, reference, interval, allowed, judge(interval, allowed),
                              repeats_to_settle(interval, allowed, spread)))
    return out


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def overall(found: Sequence[Difference], unstable: bool = False, purpose: str = "dynamics") -> str:
    """One verdict for a run: different if it blew up in any repeat or any
    observable is different; same if every observable is the same; else cannot
    tell. purpose "sampling" looks only at the SAMPLING_KINDS."""
    if unstable:
        return DIFFERENT
    verdicts = [d.verdict for d in found if purpose == "dynamics" or kind_of(d.observable) in SAMPLING_KINDS]
    if DIFFERENT in verdicts:
        return DIFFERENT
    if not verdicts or CANNOT_TELL in verdicts:
        return CANNOT_TELL
    return SAME


def largest_n(verdicts: Mapping[int, str], accept: Sequence[str]) -> int | None:
    """Largest n such that every tested n' ≤ n has a verdict in `accept`."""
    best = None
    for n in sorted(verdicts):
        if verdicts[n] not in accept:
            break
        best = n
    return best
