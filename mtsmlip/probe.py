"""``--n-inner auto``: the largest inner-step count n a pair can take, from a
short probe of the system itself.

Impulse r-RESPA kicks with the slow force once per outer step Δt = n·δt. That
is safe while the slow force changes little over Δt; it fails by resonance
once Δt nears half the period of a motion the slow force still follows, and
in practice (nonlinear resonance) from about a third of it. The probe asks
two questions, in this order, of each candidate n (ascending) and keeps the
largest n below which every candidate passed:

1. **Spectrum** (one n = 1 segment of the pair in NVE, forces every δt): the
   fraction of the slow force's fluctuation power above 1/(3Δt), the frequency
   whose period is three outer steps, must be at most ``slow_power_max``.
2. **Energy** (an NVE segment at that n from the same start): the conserved
   energy's RMS fluctuation about its trend, relative to the kinetic energy's
   (Tuckerman's ratio ΔE/ΔK), may be at most ``fluctuation_growth`` times that
   of the n = 1 segment (the outer step may at most double the integration
   error the inner step already makes) or ``fluctuation_floor``, whichever is
   larger, and the segment must not blow up. The floor (0.02, shipped water's
   level at n = 4, where its 2 ps comparisons pass) keeps a start that is
   already very accurate at n = 1 (heavier hydrogens: 0.006) from being held
   to a stricter standard than natural-mass MD. This
   is what catches a slow force that is as fast as the fast one: its spectrum
   passes while Δt is short against its period, but each kick then carries the
   error of a longer step (split harmonic bonds, half the stiffness in each
   part: ΔE/ΔK grows 3× at n = 2, against 1.1× for a slow tether).

Calibration on the shipped water pair (192 atoms, δt = 0.5 fs, 200 fs per
segment): slow power above 1/(3Δt) 0.0004 at n = 4 and 0.0013 at n = 5;
ΔE/ΔK 0.015 / 0.011 / 0.014 / 0.020 / 0.031 / 0.046 / 0.127 at n = 1 / 2 / 3 /
4 / 5 / 6 / 8. Both checks put the limit at n = 4, where the 2 ps
comparisons found it.

A segment that blows up (the safety check's MDInstability) fails its n: the
probe keeps the n before it. At n = 1 there is none before it: `mtsmlip md`
refuses such a pair (no safe n), while `mtsmlip compare` records n = 1 as
failed and compares n = 1, where the failure shows in its own runs.

The first check is cheap and says why; the second measures what the first
predicts. The result (every candidate's numbers and the reason the next one
failed) is printed and kept in the run's log.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import analysis as an
from .errors import DataError
from .md.respa import kinetic_energy_eV
from .md.safety import MDInstability
from .md.settings import RunSettings

CANDIDATES = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16)


@dataclass(frozen=True)
class ProbeSettings:
    """How long the probe runs and what it accepts. Times in fs."""

    candidates: tuple = CANDIDATES
    nve_fs: float = 200.0          # each candidate's NVE segment (n = 1's also gives the force spectrum)
    periods_per_outer_step: float = 3.0  # the slow force's power is measured above 1/(this · Δt)
    slow_power_max: float = 1e-3
    fluctuation_growth: float = 2.0  # ΔE/ΔK at n over ΔE/ΔK at n = 1 ...
    fluctuation_floor: float = 0.02  # ... or up to this, whichever is larger

    def check(self) -> None:
        from .errors import DataError

        if not self.candidates or min(self.candidates) != 1:
            raise DataError(f"probe candidates must be integers >= 1, 1 among them: n = 1 is the reference "
                            f"(got {list(self.candidates)})")
        if self.nve_fs <= 0:
            raise DataError("the probe's NVE segments must be longer than 0 fs")


@dataclass
class Candidate:
    """What the probe measured for one n (None: not measured)."""

    n_inner: int
    outer_fs: float
    limit_THz: float
    slow_power_above: float | None  # None: the n = 1 segment that measures it blew up
    fluctuation_ratio: float | None = None
    drift_meV_per_atom_per_ps: float | None = None
    failed: str | None = None  # why this n is not safe


@dataclass
class ProbeResult:
    n_inner: int
    timestep_fs: float
    settings: ProbeSettings
    candidates: list = field(default_factory=list)

    def lines(self) -> list[str]:
        """The probe's table and its choice, as printed and logged."""
        s = self.settings
        out = [f"n-inner auto: δt = {self.timestep_fs} fs, {s.nve_fs:g} fs NVE per n; slow-force power above "
               f"1/({s.periods_per_outer_step:g}·Δt) (max {s.slow_power_max:g}, from n = 1) and conserved-energy "
               f"fluctuation ΔE/ΔK (max {s.fluctuation_growth:g} × n = 1's or {s.fluctuation_floor:g})",
               f"{'n':>4}{'Δt fs':>7}{'limit THz':>11}{'slow power':>12}{'ΔE/ΔK':>9}{'drift':>9}  verdict"]
        for c in self.candidates:
            ratio = "-" if c.fluctuation_ratio is None else f"{c.fluctuation_ratio:.4f}"
            drift = "-" if c.drift_meV_per_atom_per_ps is None else f"{c.drift_meV_per_atom_per_ps:.2f}"
            power = "-" if c.slow_power_above is None else f"{c.slow_power_above:.5f}"
            out.append(f"{c.n_inner:>4}{c.outer_fs:>7.2f}{c.limit_THz:>11.1f}{power:>12}"
                       f"{ratio:>9}{drift:>9}  {'ok' if c.failed is None else 'FAIL: ' + c.failed}")
        failed = next((c for c in self.candidates if c.failed), None)
        why = f" (n = {failed.n_inner}: {failed.failed})" if failed else " (every candidate passed)"
        if failed is not None and failed.n_inner == 1:
            out.append(f"n-inner auto: no n passed, not even n = 1{why}; kept n = 1, Δt = {self.timestep_fs:g} fs "
                       "(a shorter --timestep-fs?)")
        else:
            out.append(f"n-inner auto: chose n = {self.n_inner}, Δt = {self.n_inner * self.timestep_fs:g} fs{why}")
        return out

    def as_dict(self) -> dict:
        return {"n_inner": self.n_inner, "timestep_fs": self.timestep_fs, "settings": asdict(self.settings),
                "candidates": [asdict(c) for c in self.candidates]}

    @classmethod
    def from_dict(cls, d: dict) -> "ProbeResult":
        settings = ProbeSettings(**{**d["settings"], "candidates": tuple(d["settings"]["candidates"])})
        return cls(int(d["n_inner"]), float(d["timestep_fs"]), settings, [Candidate(**c) for c in d["candidates"]])


class _Trace:
    """Engine observer: conserved and kinetic energy, and the slow force."""

    def __init__(self, keep_forces: bool):
        self.step, self.conserved, self.kinetic, self.slow, self.keep_forces = [], [], [], [], keep_forces

    def __call__(self, engine) -> None:
        s = engine.state
        self.step.append(engine.step)
        self.conserved.append(engine.conserved_eV(s))
        self.kinetic.append(kinetic_energy_eV(s.momenta, s.masses))
        if self.keep_forces:
            f = s.forces_slow
            self.slow.append(np.asarray(f.cpu().numpy() if hasattr(f, "cpu") else f, dtype=float))


def _nve_segment(make_engine, atoms, run: RunSettings, fs: float, keep_forces=False) -> _Trace:
    engine = make_engine(atoms.copy(), run)
    trace = _Trace(keep_forces)
    engine.attach(trace)
    engine.run(run.steps_for(fs / 1000.0), progress=False)
    return trace


def reference_segment(make_engine, atoms, run: RunSettings, fs: float):
    """The pair at n = 1 (velocity Verlet on fast + slow) in NVE with `run`'s
    step and masses for `fs` from `atoms`: (trace, (freq_THz, power) of the
    slow force's fluctuations)."""
    try:
        return _reference(make_engine, atoms, run, fs)
    except MDInstability as exc:
        from .errors import DataError

        raise DataError(f"n-inner auto: the pair is unstable already at n = 1 (velocity Verlet at δt = "
                        f"{run.timestep_fs} fs): {exc}; there is no safe n to find "
                        "(a shorter --timestep-fs?)") from None


def _reference(make_engine, atoms, run: RunSettings, fs: float):
    """:func:`reference_segment`, MDInstability if it blows up."""
    trace = _nve_segment(make_engine, atoms, run.nve(1), fs, keep_forces=True)
    return trace, an.force_spectrum(np.array(trace.slow), run.timestep_fs)


def probe_n_inner(make_engine, atoms, run: RunSettings, settings: ProbeSettings = ProbeSettings(),
                  say=None, unstable_reference_fails: bool = False) -> ProbeResult:
    """The largest safe n for the pair that ``make_engine(atoms, RunSettings)``
    integrates, from `atoms` (with momenta: the state the run starts from), for
    a run with the step and masses of `run` (its thermostat and n are not used:
    the probe runs NVE). `say(line)` reports progress (default: stderr). A
    pair that blows up already at n = 1 is a DataError, or with
    `unstable_reference_fails` a result with n = 1 failed (and kept: no n is safe)."""
    settings.check()
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    timestep_fs, nve = run.timestep_fs, run.nve(1)
    say(f"n-inner auto: {settings.nve_fs:g} fs of the pair at n = 1 (NVE) for the force spectrum")
    result = ProbeResult(1, timestep_fs, settings)

    def limit_THz(n):  # 1/(k·Δt)
        return an.nyquist_THz(n * timestep_fs) * 2.0 / settings.periods_per_outer_step

    segment = _reference if unstable_reference_fails else reference_segment
    try:
        reference, (freq_THz, power) = segment(make_engine, atoms, nve, settings.nve_fs)
    except MDInstability as exc:  # only with unstable_reference_fails: reference_segment says DataError
        result.candidates.append(Candidate(1, timestep_fs, limit_THz(1), None, failed=f"unstable in NVE: {exc}"))
        for line in result.lines():
            say(line)
        return result
    for n in sorted(set(settings.candidates)):
        outer_fs = n * timestep_fs
        limit = limit_THz(n)
        c = Candidate(n, outer_fs, limit, an.power_above_frequency_fraction(freq_THz, power, limit))
        result.candidates.append(c)
        if c.slow_power_above > settings.slow_power_max:
            c.failed = (f"{c.slow_power_above:.2g} of the slow force's power lies above {limit:.0f} THz "
                        f"(periods shorter than {settings.periods_per_outer_step:g} outer steps)")
            break
        if n == 1:
            trace, segment = reference, nve
        else:
            segment = nve.nve(n)
            say(f"n-inner auto: {settings.nve_fs:g} fs NVE at n = {n}")
            try:
                trace = _nve_segment(make_engine, atoms, segment, settings.nve_fs)
            except MDInstability as exc:
                c.failed = f"unstable in NVE: {exc}"
                break
        time_ps = np.asarray(trace.step) * segment.outer_fs / 1000.0
        c.fluctuation_ratio = an.energy_fluctuation_ratio(time_ps, trace.conserved, trace.kinetic)
        c.drift_meV_per_atom_per_ps = an.drift_meV_per_atom_per_ps(time_ps, trace.conserved, len(atoms))
        reference = result.candidates[0].fluctuation_ratio
        bound = max(settings.fluctuation_growth * reference, settings.fluctuation_floor)
        if n > 1 and not c.fluctuation_ratio <= bound:
            c.failed = (f"conserved-energy fluctuation ΔE/ΔK {c.fluctuation_ratio:.3g} > max({settings.fluctuation_growth:g}"
                        f" × n = 1's {reference:.3g}, {settings.fluctuation_floor:g})")
            break
        result.n_inner = n
    for line in result.lines():
        say(line)
    return result


def saved_result(path, record: dict) -> ProbeResult:
    """The ProbeResult an earlier run saved at `path`, its fields checked: a
    damaged or edited file is a named error, and its n stays within the bounds
    of the command line (mtsmlip.limits)."""
    from .limits import check_n_inner

    try:
        result = ProbeResult.from_dict(record)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"{path}: not a probe result mtsmlip wrote ({type(exc).__name__}: {exc}); delete it to "
                        "probe again") from None
    if result.n_inner < 1:
        raise DataError(f"{path}, field 'n_inner': must be >= 1 (got {result.n_inner})")
    check_n_inner(result.n_inner, f"{path}, field 'n_inner':")
    return result


def saved_probe(path, make_engine, atoms, run: RunSettings, settings: ProbeSettings, say=None,
                reuse: bool = True, unstable_reference_fails: bool = False) -> ProbeResult:
    """:func:`probe_n_inner`, kept in `path` (JSON, written atomically); with
    `reuse`, a probe an earlier run saved there is read back instead."""
    from .files import atomic_write_json, read_json

    path = Path(path)
    if reuse and path.is_file():
        return saved_result(path, read_json(path, "n-inner probe"))
    result = probe_n_inner(make_engine, atoms, run, settings, say, unstable_reference_fails)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, result.as_dict())
    return result
