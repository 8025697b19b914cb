"""Does a multiple-time-step run reproduce the baseline? A tolerance and a verdict.

A run passes when every check that its :class:`Tolerance` enables holds:

* drift:      |drift of the run's conserved energy| ≤ drift_meV_per_atom_per_ps;
* fluctuation: the conserved energy's fluctuation in NVE, ΔE/ΔK
              (:func:`.dynamics.energy_fluctuation_ratio`) ≤ fluctuation_growth ×
              the baseline's, or fluctuation_floor, whichever is larger: the
              outer step may at most double the integration error of the
              conventional run, or reach a level that is still accurate (0.02:
              shipped water's at n = 4, where its 2 ps comparisons pass);
* structure:  ``rdf_differences(run, baseline)["overall"]`` (the worst pair's
              RMS Δg, see :mod:`.structure`) ≤ rdf_diff;
* dynamics:   for every species, |D_run − D_base| ≤ diffusion_sigma ·
              sqrt(σ_run² + σ_base²) with σ the standard errors of the estimates;
* temperature: for every species, |T_run − T_base| ≤ max(temperature_sigma ·
              sqrt(σ_run² + σ_base²), temperature_fraction · T_base): a species
              that runs hot (resonance heats the hydrogens first) fails;
* vibrations: for every species, ``vdos_difference(run, baseline)`` (half the
              L1 distance of the normalised VDOS) ≤ vdos_diff;
* distances, angles, dihedrals (molecules): the worst species pair's (centre
              species', central bond's) half-L1 distance between the
              distributions (:mod:`.geometry`; distances of bonded and 1-3
              pairs) ≤ distance_diff, angle_diff, dihedral_diff (dihedrals off
              by default: see CHECKS);
* energy (molecules): |⟨E_pot⟩_run − ⟨E_pot⟩_base| per atom ≤ max(energy_sigma
              · sqrt(σ_run² + σ_base²), energy_floor_meV_per_atom);
* vibration (crystals): for every species, the mean squared displacement about
              the sites ⟨u²⟩ differs by ≤ max(vibration_sigma · sqrt(σ_run² +
              σ_base²), vibration_fraction · ⟨u²⟩_base);
* lattice (crystals): the run's Lindemann ratio ≤ lindemann_max (not melted).

Which checks apply depends on the kind of system (:data:`CHECKS`,
:meth:`Tolerance.for_kind`): g(r) and diffusion for liquids, distributions and
the energy for isolated molecules, g(r), vibration and lattice for crystals;
drift, fluctuation, temperature and VDOS for all.

Two verdicts come from the same checks. **Sampling** (configurational: is the
distribution right?) is judged by the structure checks and the species
temperatures (:data:`SAMPLING_CHECKS`); a run for sampling alone may change
the dynamics (hydrogen mass repartitioning, strong friction). **Dynamics**
(time correlations as well) is judged by every check, adding drift, energy
fluctuation, VDOS (the VACF's spectrum) and diffusion.

Set a tolerance field to None to switch that check off. A metric the check
needs but that is missing (None) on either side fails the check, by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from .dynamics import DiffusionEstimate, TemperatureEstimate
from .geometry import LINDEMANN_MELTED, BlockMean, distributions_difference
from .spectra import vdos_difference
from .structure import RDF, rdf_differences


@dataclass(frozen=True)
class Tolerance:
    """Bounds for accepting a run against the baseline (None disables a check).

    Defaults are starting values, to calibrate per system: 1 meV/atom/ps is a
    loose NVE bound; 0.05 RMS in g(r) must sit clearly above the sampling-noise
    floor (the difference between two halves of the baseline run); 2 sigma is a
    ~95 % two-sided band for the diffusion difference; a species' mean
    temperature may differ by 3 sigma (block errors) or 1 % of the baseline's,
    whichever is larger (the 1 % keeps a long run's tiny error bars from failing
    differences no thermostat would notice); 0.1 of a species' VDOS may move
    (like rdf_diff, set it above the noise floor of the baseline's two halves).
    """

    drift_meV_per_atom_per_ps: float | None = 1.0  # the defaults are a liquid's checks: see for_kind
    fluctuation_growth: float | None = 2.0
    fluctuation_floor: float = 0.02
    rdf_diff: float | None = 0.05
    diffusion_sigma: float | None = 2.0
    temperature_sigma: float | None = 3.0
    temperature_fraction: float = 0.01
    vdos_diff: float | None = 0.1
    distance_diff: float | None = None
    angle_diff: float | None = None
    dihedral_diff: float | None = None
    energy_sigma: float | None = None
    energy_floor_meV_per_atom: float = 0.2
    vibration_sigma: float | None = None
    vibration_fraction: float = 0.05
    lindemann_max: float | None = None

    def for_kind(self, kind: str) -> "Tolerance":
        """This tolerance with exactly the checks of `kind` (:data:`CHECKS`) on:
        the others off, and those it switches on at their :data:`KIND_DEFAULTS`
        unless this tolerance already sets them."""
        import dataclasses

        if kind not in CHECKS:
            raise ValueError(f"kind of system must be one of {sorted(CHECKS)} (got {kind!r})")
        fields = {}
        for check, name in CHECK_FIELDS.items():
            on = check in CHECKS[kind] or (check in OPT_IN_CHECKS.get(kind, ()) and getattr(self, name) is not None)
            fields[name] = (getattr(self, name) if getattr(self, name) is not None else KIND_DEFAULTS[name]) if on else None
        return dataclasses.replace(self, **fields)

    @property
    def checks(self) -> list[str]:
        """The names of the checks this tolerance applies."""
        return [c for c, f in CHECK_FIELDS.items() if getattr(self, f) is not None]


CHECK_FIELDS = {"drift": "drift_meV_per_atom_per_ps", "fluctuation": "fluctuation_growth", "temperature": "temperature_sigma", "vdos": "vdos_diff",
                "rdf": "rdf_diff", "diffusion": "diffusion_sigma", "distances": "distance_diff",
                "angles": "angle_diff", "dihedrals": "dihedral_diff", "energy": "energy_sigma",
                "vibration": "vibration_sigma", "lattice": "lindemann_max"}
KIND_DEFAULTS = {"drift_meV_per_atom_per_ps": 1.0, "fluctuation_growth": 2.0, "temperature_sigma": 3.0, "vdos_diff": 0.1, "rdf_diff": 0.05,
                 "diffusion_sigma": 2.0, "distance_diff": 0.05, "angle_diff": 0.05, "dihedral_diff": 0.1,
                 "energy_sigma": 3.0, "vibration_sigma": 3.0, "lindemann_max": LINDEMANN_MELTED}
CHECKS = {"liquid": ("drift", "fluctuation", "temperature", "vdos", "rdf", "diffusion"),
          "crystal": ("drift", "fluctuation", "temperature", "vdos", "rdf", "vibration", "lattice"),
          "molecule": ("drift", "fluctuation", "temperature", "vdos", "distances", "angles", "energy")}
# The checks that judge configurational sampling; dynamics is judged by all.
SAMPLING_CHECKS = ("temperature", "rdf", "distances", "angles", "dihedrals", "energy", "vibration", "lattice")
# Dihedral distributions are computed and reported for molecules but not judged
# by default: a torsion crosses its barriers only a few times in a few ps
# (ethanol's methyl and hydroxyl rotors), so its distribution converges far
# more slowly than bond lengths and angles. On ethanol (2 ps per run) the two
# halves of the baseline already differed by 0.26 (half L1) and the MTS runs by
# 0.39 / 0.50 / 0.54 / 0.59 at n = 2 / 4 / 6 / 8: growing with n, so possibly
# the integrator, but a 2 ps run cannot tell; judged, they would stop at n = 2.
# Tolerance(dihedral_diff=...) judges them for longer runs.
OPT_IN_CHECKS = {"molecule": ("dihedrals",)}  # judged only when the tolerance sets their bound


@dataclass
class RunMetrics:
    """What the verdict needs from one run (any field may be None).

    rdf: as returned by :func:`mtsmlip.analysis.rdf`; diffusion: {symbol:
    DiffusionEstimate}, as from :func:`mtsmlip.analysis.diffusion_by_species`.
    """

    drift_meV_per_atom_per_ps: float | None = None
    fluctuation_ratio: float | None = None
    rdf: RDF | None = None
    diffusion: Mapping[str, DiffusionEstimate] | None = field(default=None)
    temperature: Mapping[str, TemperatureEstimate] | None = field(default=None)
    vdos: Mapping[str, tuple] | None = field(default=None)
    distances: Mapping | None = field(default=None)
    angles: Mapping | None = field(default=None)
    dihedrals: Mapping | None = field(default=None)
    potential_energy_meV_per_atom: BlockMean | None = None
    vibration: Mapping[str, BlockMean] | None = field(default=None)
    lindemann: float | None = None


def failed_checks(run: RunMetrics, baseline: RunMetrics, tolerance: Tolerance) -> dict[str, list[str]]:
    """{check: reasons} of every enabled check that fails, with the numbers."""
    found = {"drift": _drift_reasons(run, tolerance), "fluctuation": _fluctuation_reasons(run, baseline, tolerance),
             "rdf": _rdf_reasons(run, baseline, tolerance), "diffusion": _diffusion_reasons(run, baseline, tolerance),
             "temperature": _temperature_reasons(run, baseline, tolerance),
             "vdos": _vdos_reasons(run, baseline, tolerance)}
    for name, what, bound in (("distances", "distance distributions", tolerance.distance_diff),
                              ("angles", "bond-angle distributions", tolerance.angle_diff),
                              ("dihedrals", "dihedral distributions", tolerance.dihedral_diff)):
        found[name] = _distribution_reasons(name, what, getattr(run, name), getattr(baseline, name), bound)
    found.update(energy=_energy_reasons(run, baseline, tolerance),
                 vibration=_vibration_reasons(run, baseline, tolerance), lattice=_lattice_reasons(run, tolerance))
    return {check: reasons for check, reasons in found.items() if reasons}


def verdict(run: RunMetrics, baseline: RunMetrics, tolerance: Tolerance, purpose: str = "dynamics") -> tuple[bool, list[str]]:
    """(ok, reasons) for `purpose` "dynamics" (every enabled check) or
    "sampling" (:data:`SAMPLING_CHECKS` only): ok is True when they all pass;
    reasons names each failed check with the numbers (empty when ok)."""
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {PURPOSES} (got {purpose!r})")
    failed = failed_checks(run, baseline, tolerance)
    reasons = [r for check, rs in failed.items() if purpose == "dynamics" or check in SAMPLING_CHECKS for r in rs]
    return not reasons, reasons


PURPOSES = ("dynamics", "sampling")


def _drift_reasons(run, tol) -> list[str]:
    bound = tol.drift_meV_per_atom_per_ps
    if bound is None:
        return []
    if run.drift_meV_per_atom_per_ps is None:
        return ["drift: missing energy drift of the run"]
    drift = run.drift_meV_per_atom_per_ps
    return [] if abs(drift) <= bound else [f"drift: |{drift:.4g}| > {bound:.4g} meV/atom/ps"]


def _fluctuation_reasons(run, baseline, tol) -> list[str]:
    growth = tol.fluctuation_growth
    if growth is None:
        return []
    if run.fluctuation_ratio is None or baseline.fluctuation_ratio is None:
        return ["fluctuation: missing energy fluctuation of the run or the baseline"]
    ratio = run.fluctuation_ratio
    bound = max(growth * baseline.fluctuation_ratio, tol.fluctuation_floor)
    return [] if ratio <= bound else [f"fluctuation: conserved-energy ΔE/ΔK {ratio:.3g} > max({growth:g} × baseline's "
                                      f"{baseline.fluctuation_ratio:.3g}, {tol.fluctuation_floor:g})"]


def _rdf_reasons(run, baseline, tol) -> list[str]:
    if tol.rdf_diff is None:
        return []
    if run.rdf is None or baseline.rdf is None:
        return ["rdf: missing g(r) of the run or the baseline"]
    diffs = rdf_differences(run.rdf, baseline.rdf)
    worst = max((p for p in diffs if p != "overall"), key=diffs.get)
    if diffs["overall"] <= tol.rdf_diff:
        return []
    return [f"rdf: difference {diffs['overall']:.4g} > {tol.rdf_diff:.4g} (worst pair {'-'.join(worst)})"]


def _per_species(name: str, what: str, run_values, base_values, pair_reasons) -> list[str]:
    """Every species of the baseline checked by ``pair_reasons(symbol, run, base)``;
    a side without values, or a species missing in the run, fails by name."""
    if run_values is None or base_values is None:
        return [f"{name}: missing {what} of the run or the baseline"]
    reasons = [f"{name} {s}: missing in the run" for s in sorted(set(base_values) - set(run_values))]
    for symbol in sorted(set(base_values) & set(run_values)):
        reasons += pair_reasons(symbol, run_values[symbol], base_values[symbol])
    return reasons


def _diffusion_reasons(run, baseline, tol) -> list[str]:
    if tol.diffusion_sigma is None:
        return []

    def pair(symbol, d_run, d_base):
        diff = abs(d_run.D_A2_per_ps - d_base.D_A2_per_ps)
        allowed = tol.diffusion_sigma * np.hypot(d_run.stderr_A2_per_ps, d_base.stderr_A2_per_ps)
        return [] if diff <= allowed else [
            f"diffusion {symbol}: D {d_run.D_A2_per_ps:.4g} vs baseline {d_base.D_A2_per_ps:.4g} Å²/ps, "
            f"|difference| {diff:.3g} > {tol.diffusion_sigma:g} sigma = {allowed:.3g}"]

    return _per_species("diffusion", "D", run.diffusion, baseline.diffusion, pair)


def _temperature_reasons(run, baseline, tol) -> list[str]:
    if tol.temperature_sigma is None:
        return []

    def pair(symbol, t_run, t_base):
        diff = abs(t_run.mean_K - t_base.mean_K)
        allowed = max(tol.temperature_sigma * np.hypot(t_run.stderr_K, t_base.stderr_K),
                      tol.temperature_fraction * t_base.mean_K)
        return [] if diff <= allowed else [
            f"temperature {symbol}: {t_run.mean_K:.1f} K vs baseline {t_base.mean_K:.1f} K, "
            f"|difference| {diff:.1f} > {allowed:.1f} K"]

    return _per_species("temperature", "species temperatures", run.temperature, baseline.temperature, pair)


def _vdos_reasons(run, baseline, tol) -> list[str]:
    if tol.vdos_diff is None:
        return []

    def pair(symbol, g_run, g_base):
        diff = vdos_difference(g_run, g_base)
        return [] if diff <= tol.vdos_diff else [f"vdos {symbol}: difference {diff:.3g} > {tol.vdos_diff:.3g}"]

    return _per_species("vdos", "VDOS", run.vdos, baseline.vdos, pair)


def _distribution_reasons(name, what, run, base, bound) -> list[str]:
    if bound is None:
        return []
    if run is None or base is None:
        return [f"{name}: missing {what} of the run or the baseline"]
    if not base:  # e.g. no dihedral in a three-atom molecule: nothing to compare
        return []
    diffs = distributions_difference(run, base, name)
    worst = max((k for k in diffs if k != "overall"), key=diffs.get)
    label = "-".join(worst) if isinstance(worst, tuple) else str(worst)
    return [] if diffs["overall"] <= bound else [f"{name}: difference {diffs['overall']:.3g} > {bound:.3g} (worst {label})"]


def _energy_reasons(run, baseline, tol) -> list[str]:
    if tol.energy_sigma is None:
        return []
    e_run, e_base = run.potential_energy_meV_per_atom, baseline.potential_energy_meV_per_atom
    if e_run is None or e_base is None:
        return ["energy: missing potential energy of the run or the baseline"]
    diff = abs(e_run.mean - e_base.mean)
    allowed = max(tol.energy_sigma * np.hypot(e_run.stderr, e_base.stderr), tol.energy_floor_meV_per_atom)
    return [] if diff <= allowed else [f"energy: mean potential energy differs by {diff:.3g} > {allowed:.3g} meV/atom"]


def _vibration_reasons(run, baseline, tol) -> list[str]:
    if tol.vibration_sigma is None:
        return []

    def pair(symbol, u_run, u_base):
        diff = abs(u_run.mean - u_base.mean)
        allowed = max(tol.vibration_sigma * np.hypot(u_run.stderr, u_base.stderr), tol.vibration_fraction * u_base.mean)
        return [] if diff <= allowed else [
            f"vibration {symbol}: <u²> {u_run.mean:.4g} vs baseline {u_base.mean:.4g} Å², |difference| {diff:.3g} > {allowed:.3g}"]

    return _per_species("vibration", "vibration amplitudes", run.vibration, baseline.vibration, pair)


def _lattice_reasons(run, tol) -> list[str]:
    if tol.lindemann_max is None:
        return []
    if run.lindemann is None:
        return ["lattice: missing Lindemann ratio of the run"]
    return [] if run.lindemann <= tol.lindemann_max else [
        f"lattice: Lindemann ratio {run.lindemann:.3g} > {tol.lindemann_max:.3g} (the crystal melted)"]


def largest_n_within_tolerance(verdicts: Mapping[int, bool | tuple]) -> int | None:
    """Largest inner-step count n such that every tested n' ≤ n passed.

    verdicts: {n: ok} or {n: (ok, reasons)} as from :func:`verdict`. A pass
    above a failure does not count (it is more likely luck than safety).
    Returns None when the smallest n already fails (or nothing was tested).
    """
    best = None
    for n in sorted(verdicts):
        ok = verdicts[n][0] if isinstance(verdicts[n], tuple) else bool(verdicts[n])
        if not ok:
            break
        best = n
    return best
