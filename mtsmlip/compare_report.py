"""The numbers, verdicts, plots and report of ``mtsmlip compare``.

The checks follow the kind of system (``system_kind`` in compare.json, with
``checks_applied``): an isolated molecule is judged by the distributions of
its bonded and 1-3 distances and of its bond angles, and by its mean potential
energy (its dihedral distributions are reported, not judged: torsions cross
their barriers too rarely in a few ps; no g(r): it has no cell; no diffusion); a periodic system whose atoms diffuse in the baseline run is a
liquid (g(r), diffusion); one whose atoms do not is a crystal (g(r), the
vibration amplitude about the sites and the Lindemann ratio instead of
diffusion). Drift, species temperatures and VDOS are judged for all.

compare.json: ``baseline`` and ``runs`` (one entry per n) with ns/day, speedup,
RDF difference, NVE drift, diffusion ± its error over groups of atoms (fitted at the lags
``diffusion_fit_lags_ps``), mean temperature (and each
species' ± block error) and the verdict (a run that blew up: ``unstable``, why,
and ``unstable_in``, "production" or "nve"; it fails); ``largest_n_within_tolerance``;
``scale_separation`` (power of the slow and fast forces above each outer step's
Nyquist frequency, or ``unstable``: why its n = 1 segment blew up); ``tolerance``.
The scalar ``diffusion_A2_per_ps`` is that of the heaviest species (O in water,
a proxy for molecular diffusion); every species is under ``diffusion_by_species``.
Diffusion is judged only for the species that diffuse in the baseline run
(mean squared displacement over the run above 0.25 Å²; in a crystal none does,
and its MSD slope is vibration, not diffusion) and that left their neighbours'
shell within half the run (``diffusion_caged_species``, with their MSD there,
holds those that did not); ``diffusion_judged_species`` holds the judged ones
(before 2026-12-07 it held every species that diffuses).
"""

from __future__ import annotations

import math

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, atomic_numbers

from . import analysis as an
from .analysis.dynamics import FIT_FRACTION, MOBILE_MSD_A2
from .errors import DataError
from .files import atomic_write, atomic_write_json

MAX_RDF_FRAMES = 200
N_TIME_BLOCKS = 4  # time blocks of the block means (temperatures, energies, vibrations)
N_DIFFUSION_GROUPS = 8  # groups of atoms whose spread (× x, y, z) is the error bar of a diffusion coefficient
# water at 300 K (analysis.dynamics.FIT_FRACTION): a diffusion fit starting earlier is a short-time mobility
DIFFUSIVE_LAG_PS = 0.3
# An atom that moved 3 Å has left the shell of its nearest neighbours (2.5-3.5 Å apart in
# liquids): below that mean squared displacement within half the run, one run's D is not judged.
CAGE_MSD_A2 = 9.0
MIN_DIFFUSION_FRAMES = 20  # saved frames below which a run is too short for a diffusion coefficient


def ns_per_day(simulated_ps: float, wall_s: float) -> float:
    return simulated_ps * 1e-3 / max(wall_s, 1e-12) * 86400.0


def frames_of(samples: dict, template: Atoms, max_frames=None) -> list[Atoms]:
    """Atoms for (a thinned subset of) the sampled positions."""
    positions = samples["positions_A"]
    stride = max(1, len(positions) // max_frames) if max_frames else 1
    frames = []
    for x in positions[::stride]:
        atoms = template.copy()
        atoms.positions = x
        frames.append(atoms)
    return frames


def system_kind(choice: str, periodic: bool, diffusing: list) -> str:
    """The kind of system `--system` names, or for 'auto': 'molecule' (not
    periodic), 'liquid' (periodic, some species diffuses in the baseline run)
    or 'crystal' (periodic, none does)."""
    if choice != "auto":
        return choice
    if not periodic:
        return "molecule"
    return "liquid" if diffusing else "crystal"


def rdf_range_A(template: Atoms) -> float:
    """Up to half the narrowest cell width (at most 6 Å)."""
    from .data import perpendicular_widths_A

    return float(min(6.0, 0.5 * perpendicular_widths_A(template.cell.array).min() - 1e-6))


def diffusion(samples: dict, template: Atoms, interval_ps: float) -> dict | None:
    """{symbol: DiffusionEstimate} from the whole run's MSD (error bar: the spread
    over groups of atoms, :func:`mtsmlip.analysis.diffusion_groups`), or None when
    the run is too short (the verdict then fails the diffusion check by name)."""
    if len(samples["step"]) < MIN_DIFFUSION_FRAMES:
        return None
    return an.species_diffusion(positions_unwrapped(samples, template), template.get_chemical_symbols(),
                                template.get_masses(), interval_ps, N_DIFFUSION_GROUPS)


def heaviest_species(template: Atoms) -> str:
    return template.get_chemical_symbols()[int(np.argmax(template.get_masses()))]


def positions_unwrapped(samples: dict, template: Atoms) -> np.ndarray:
    """The sampled positions as continuous paths (a molecule's need no unwrapping)."""
    from .system import is_periodic

    x = samples["positions_A"].astype(float)
    return an.unwrap_positions(x, template.cell.array) if is_periodic(template) else x


def diffusing_species(baseline, template: Atoms) -> list[str]:
    """Species that diffuse in the baseline run (:func:`mtsmlip.analysis.mobile_species`):
    the only ones whose diffusion the verdict judges."""
    return an.mobile_species(positions_unwrapped(baseline.samples, template), template.get_chemical_symbols(),
                             template.get_masses())


def caged_species(baseline, template: Atoms, species) -> dict:
    """{symbol: {"msd_A2": MSD at half the run, "half_run_ps": that lag}} for those
    of `species` whose atoms moved less than :data:`CAGE_MSD_A2` on average within
    half the baseline run: few of them have left the shell of their nearest
    neighbours, so the run holds few independent stretches of diffusion, and its
    D varies from run to run far more than its error bar says (water in 2 ps:
    1.0-1.8 Å² within 1 ps, D 0.04-0.23 Å²/ps over six repeats)."""
    samples = baseline.samples
    if not species or len(samples["step"]) < MIN_DIFFUSION_FRAMES:
        return {}
    interval_ps = baseline.settings.simulated_ps(1)
    x = positions_unwrapped(samples, template)
    symbols = np.array(template.get_chemical_symbols())
    lag = (len(x) - 1) // 2
    found = {}
    for s in species:
        _, msd_A2 = an.msd(x, interval_ps, template.get_masses(), symbols == s, max_lag=lag)
        if msd_A2[-1] < CAGE_MSD_A2:
            found[s] = {"msd_A2": float(msd_A2[-1]), "half_run_ps": float(lag * interval_ps)}
    return found


def judged_only(metrics, species) -> "an.RunMetrics":
    """The baseline's metrics with diffusion kept for `species` only (the verdict
    judges each species of the baseline)."""
    import dataclasses

    kept = None if metrics.diffusion is None else {s: d for s, d in metrics.diffusion.items() if s in species}
    return dataclasses.replace(metrics, diffusion=kept)


@dataclass(frozen=True)
class Context:
    """What every run's metrics share: the structure, its kind, the ranges of
    its distributions and, for molecules, the bonded topology of the start."""

    template: Atoms
    kind: str
    diffusing: tuple = ()  # species that diffuse in the baseline run (periodic systems)
    rdf_r_A: float | None = None
    distance_r_A: float | None = None
    triples: np.ndarray | None = None
    quads: np.ndarray | None = None
    local: np.ndarray | None = None
    nearest_neighbour_A: float | None = None
    bonds: np.ndarray | None = None  # molecules: bonded pairs (mean bond lengths); liquids: X–H pairs (reorientation)
    vdos_band_THz: float | None = None  # VDOS centroids up to here: the lowest Nyquist frequency of the runs

    @classmethod
    def of(cls, records) -> "Context":
        from .system import is_periodic, largest_distance_A, profile

        template, periodic = records.template, is_periodic(records.template)
        band = an.nyquist_THz(max(r.settings.outer_fs for r in records.runs))
        first = template.copy()
        first.positions = records.runs[0].samples["positions_A"][0]
        diffusing = tuple(diffusing_species(records.runs[0], template)) if periodic else ()
        kind = system_kind(records.settings.system, periodic, diffusing)
        if kind == "molecule":
            pairs = an.bonded_pairs(first)
            # distances up to the molecule's largest, plus 2 Å of room for the run to stretch
            return cls(template, kind, distance_r_A=largest_distance_A(first.positions) + 2.0,
                       triples=an.angle_triples(pairs, len(first)), quads=an.dihedral_quads(pairs, len(first)),
                       local=an.local_pairs(pairs, len(first)), bonds=pairs, vdos_band_THz=band)
        nearest = profile([first]).bond_length_A if kind == "crystal" else None
        bonds = an.hydrogen_bonds(first) if kind == "liquid" else None
        return cls(template, kind, diffusing, rdf_r_A=rdf_range_A(template), nearest_neighbour_A=nearest,
                   bonds=bonds, vdos_band_THz=band)


def structure_metrics(positions_A, context: Context) -> dict:
    """The RunMetrics fields that describe structure for this kind of system,
    from positions (T, N, 3): g(r) (periodic) or the distributions (molecule)."""
    template, symbols = context.template, context.template.get_chemical_symbols()
    if context.kind == "molecule":
        x = np.asarray(positions_A, float)
        return {"distances": an.distance_distributions(x, symbols, context.distance_r_A, pairs=context.local),
                "angles": an.angle_distributions(x, context.triples, symbols) if len(context.triples) else {},
                "dihedrals": an.dihedral_distributions(x, context.quads, symbols) if len(context.quads) else {}}
    frames = frames_of({"positions_A": positions_A}, template, MAX_RDF_FRAMES)
    return {"rdf": an.rdf(frames, context.rdf_r_A, 120)}


def run_metrics(record, context: Context):
    """Every number of one run (a compare.RunRecord) for this kind of system,
    plus what the verdict needs; nothing that does not apply is computed."""
    samples, run, template = record.samples, record.settings, context.template
    symbols, masses = template.get_chemical_symbols(), template.get_masses()
    drift_value = an.drift_meV_per_atom_per_ps(record.nve_time_ps, record.nve_conserved_eV, len(template))
    fluctuation = None if record.nve_kinetic_eV is None else \
        an.energy_fluctuation_ratio(record.nve_time_ps, record.nve_conserved_eV, record.nve_kinetic_eV)
    temperatures = an.species_temperatures(samples["velocities_A_per_fs"][1:], symbols, masses, N_TIME_BLOCKS)
    vdos = an.species_vdos(samples["velocities_A_per_fs"][1:], run.outer_fs, symbols, masses)
    metrics = an.RunMetrics(drift_meV_per_atom_per_ps=drift_value, fluctuation_ratio=fluctuation,
                            temperature=temperatures, vdos=vdos,
                            **structure_metrics(samples["positions_A"], context))
    numbers = {
        **speed_numbers(record), "mean_temperature_K": float(np.mean(samples["temperature_K"][1:])),
        "drift_meV_per_atom_per_ps": drift_value, "energy_fluctuation_ratio": fluctuation,
        "temperature_by_species_K": {s: [e.mean_K, e.stderr_K] for s, e in temperatures.items()},
        "diffusion_A2_per_ps": None, "diffusion_err_A2_per_ps": None,
    }
    if context.kind == "liquid":
        d = diffusion(samples, template, run.simulated_ps(1))
        heavy = heaviest_species(template)
        metrics.diffusion = d
        numbers.update(diffusion_A2_per_ps=d[heavy].D_A2_per_ps if d else None,
                       diffusion_err_A2_per_ps=d[heavy].stderr_A2_per_ps if d else None, diffusion_species=heavy,
                       diffusion_by_species={s: [e.D_A2_per_ps, e.stderr_A2_per_ps] for s, e in (d or {}).items()},
                       diffusion_fit_lags_ps=list(an.fit_lags_ps(len(samples["step"]), run.simulated_ps(1)))
                       if d else None)
    elif context.kind == "crystal":
        x = positions_unwrapped(samples, template)
        metrics.vibration = an.vibration_amplitudes(x, symbols, masses, N_TIME_BLOCKS)
        metrics.lindemann = an.lindemann_ratio(x, context.nearest_neighbour_A, masses)
        numbers.update(vibration_A2_by_species={s: [e.mean, e.stderr] for s, e in metrics.vibration.items()},
                       lindemann_ratio=metrics.lindemann)
    else:
        energy = potential_energy(samples, len(template))
        metrics.potential_energy_meV_per_atom = energy
        numbers["potential_energy_meV_per_atom"] = None if energy is None else [energy.mean, energy.stderr]
    numbers["observables"] = scalar_observables(record, metrics, context)
    return numbers, metrics


def scalar_observables(record, metrics, context: Context) -> dict:
    """{observable: value} of one run: the scalars that independent repeats
    compare (:mod:`mtsmlip.analysis.repeats`; the name before the first space
    picks the tolerance). Every kind: each species' temperature and VDOS
    centroid, the NVE drift and ΔE/ΔK; liquids: the diffusing species'
    diffusion, the g(r) first peaks, the X–H reorientation time and C2 at 0.5 ps; crystals: the
    g(r) first peaks and each species' ⟨u²⟩; molecules: the mean bond length per
    species pair and the mean potential energy."""
    found = vibration_observables(metrics.temperature, metrics.vdos, context.vdos_band_THz)
    found.update(drift=metrics.drift_meV_per_atom_per_ps, fluctuation=metrics.fluctuation_ratio)
    for (a, b), (height, position) in an.rdf_first_peaks(metrics.rdf or {}).items():
        found[f"rdf_peak_height {a}-{b}"], found[f"rdf_peak_position {a}-{b}"] = height, position
    for s, d in (metrics.diffusion or {}).items():
        if s in context.diffusing:
            found[f"diffusion {s}"] = d.D_A2_per_ps
    for s, u in (metrics.vibration or {}).items():
        found[f"vibration {s}"] = u.mean
    symbols = context.template.get_chemical_symbols()
    if context.kind == "liquid" and context.bonds is not None and len(context.bonds):
        heavy = sorted({symbols[i] for i in context.bonds[:, 0]})
        positions, interval_ps = record.samples["positions_A"].astype(float), record.settings.outer_fs / 1000.0
        try:  # a run too short for the fit (< ~0.2 ps) has no reorientation time: missing, not an error
            found[f"reorientation {'/'.join(heavy)}-H"] = an.reorientation_time_ps(
                positions, context.bonds, interval_ps, cell_A=context.template.cell.array)
        except DataError:
            pass
        try:  # C2 at a fixed lag: resolvable in runs far shorter than the reorientation time (< 1 ps: missing)
            found[f"reorientation_c2 {'/'.join(heavy)}-H"] = an.reorientation_c2(
                positions, context.bonds, interval_ps, cell_A=context.template.cell.array)
        except DataError:
            pass
    if context.kind == "molecule":
        found.update(bond_observables(record.samples["positions_A"], context.bonds, symbols))
        if metrics.potential_energy_meV_per_atom is not None:
            found["potential_energy"] = metrics.potential_energy_meV_per_atom.mean
    return finite_or_none(found)


def finite_or_none(values: dict) -> dict:
    """{name: float}, with a missing or non-finite value as None (compare.json is plain JSON)."""
    return {k: (None if v is None or not np.isfinite(v) else float(v)) for k, v in values.items()}


def vibration_observables(temperatures: dict, vdos: dict, band_THz: float | None) -> dict:
    """Each species' mean temperature (K) and VDOS centroid (cm⁻¹, up to band_THz)."""
    found = {f"temperature {s}": e.mean_K for s, e in temperatures.items()}
    found.update({f"vdos_centroid {s}": c for s, c in an.species_vdos_centroids_cm1(vdos, band_THz).items()})
    return found


def bond_observables(positions_A, bonds, symbols) -> dict:
    """A molecule's mean bond length per bonded species pair (Å)."""
    return {f"bond_length {a}-{b}": r
            for (a, b), r in an.mean_bond_lengths_A(np.asarray(positions_A, float), bonds, symbols).items()}


def replica_observables(samples: dict, template: Atoms, bonds, outer_fs: float, band_THz: float) -> dict:
    """The observables of one copy of a molecule run as replicas (its slice of a
    run's samples; `template` and `bonds` of one copy): temperatures, VDOS
    centroids and bond lengths. The energy, drift and ΔE/ΔK belong to the whole
    replicated system and are not split per copy."""
    symbols, masses = template.get_chemical_symbols(), template.get_masses()
    velocities = samples["velocities_A_per_fs"][1:]
    found = vibration_observables(an.species_temperatures(velocities, symbols, masses, N_TIME_BLOCKS),
                                  an.species_vdos(velocities, outer_fs, symbols, masses), band_THz)
    found.update(bond_observables(samples["positions_A"], bonds, symbols))
    return finite_or_none(found)


def speed_numbers(record) -> dict:
    """n, outer step, simulated time, wall time and ns/day of one run."""
    run = record.settings
    return {"n_inner": run.n_inner, "outer_timestep_fs": run.outer_fs, "simulated_ps": record.simulated_ps,
            "wall_s": record.wall_s, "ns_per_day": ns_per_day(record.simulated_ps, record.wall_s)}


def unstable_numbers(record, base_numbers: dict) -> dict:
    """What is known of an MTS run that the safety check stopped, in its
    production or in its NVE segment (``unstable_in``): its speed in production
    and why it stopped; it fails."""
    segment = getattr(record, "unstable_in", "production")
    where = f"in its NVE segment (after {record.simulated_ps:.3f} ps NVT)" if segment == "nve" \
        else f"after {record.simulated_ps:.3f} ps"
    numbers = {**speed_numbers(record), "unstable": record.unstable, "unstable_in": segment,
               "within_tolerance": False, "sampling_ok": False, "reasons": [f"unstable {where}: {record.unstable}"]}
    numbers["speedup"] = numbers["ns_per_day"] / base_numbers["ns_per_day"]
    return numbers


def potential_energy(samples: dict, n_atoms: int):
    """Mean potential energy per atom (meV) ± block error; None for samples
    saved before compare recorded it (the energy check then fails by name)."""
    energy = samples.get("potential_eV")
    if energy is None or len(energy) < N_TIME_BLOCKS + 1:
        return None
    return an.block_mean(np.asarray(energy[1:], float) * 1000.0 / n_atoms, N_TIME_BLOCKS, "potential energy")


def structure_noise_floor(baseline, context: Context) -> dict:
    """{check: difference between the two halves of the baseline run}: what
    sampling noise alone gives, so each structure tolerance can sit above it."""
    x = baseline.samples["positions_A"]
    if context.kind != "molecule":
        x = x[:: max(1, len(x) // (2 * MAX_RDF_FRAMES))]
    half = len(x) // 2
    if half < 2:
        return {}
    a, b = structure_metrics(x[:half], context), structure_metrics(x[half:], context)
    if context.kind != "molecule":
        return {"rdf": float(an.rdf_differences(a["rdf"], b["rdf"])["overall"])}
    return {k: float(an.distributions_difference(a[k], b[k], k)["overall"]) for k in a if b[k]}


def vdos_noise_floor(baseline, template) -> float:
    """Largest per-species VDOS difference between the two halves of the baseline run."""
    v = baseline.samples["velocities_A_per_fs"][1:]
    half = len(v) // 2
    if half < 4:
        return 0.0
    symbols, masses = template.get_chemical_symbols(), template.get_masses()
    a, b = (an.species_vdos(part, baseline.settings.outer_fs, symbols, masses) for part in (v[:half], v[half:]))
    return max(an.vdos_difference(a[s], b[s]) for s in a)


def scale_separation(forces: dict | None, cfg) -> dict | None:
    """Power of the slow and the fast force above each n's outer Nyquist
    frequency; {"unstable": why} when the segment that samples them blew up."""
    if forces is not None and "unstable" in forces:
        return {"unstable": str(forces["unstable"])}
    if forces is None or len(forces["step"]) < 8:
        return None
    spectra = {name: an.force_spectrum(forces[name].astype(float), cfg.timestep_fs)
               for name in ("forces_fast", "forces_slow")}
    per_n = []
    for n in sorted(set(cfg.n_inner)):
        f_cut = an.nyquist_THz(cfg.run(n).outer_fs)
        per_n.append({"n_inner": n, "outer_nyquist_THz": f_cut,
                      "slow_power_above_nyquist": an.power_above_frequency_fraction(*spectra["forces_slow"], f_cut),
                      "fast_power_above_nyquist": an.power_above_frequency_fraction(*spectra["forces_fast"], f_cut)})
    rms = {name: float(np.sqrt(np.mean(forces[name].astype(float) ** 2))) for name in spectra}
    return {"fast_force_rms_eV_per_A": rms["forces_fast"], "slow_force_rms_eV_per_A": rms["forces_slow"],
            "per_n": per_n, "_spectra": spectra}


NOISE_FACTOR = 1.5  # each structure / VDOS tolerance sits at least this far above its noise floor
NOISE_FIELDS = {"rdf": "rdf_diff", "distances": "distance_diff", "angles": "angle_diff", "dihedrals": "dihedral_diff"}


def tolerance_for(kind: str, noise: dict, vdos_noise: float) -> "an.Tolerance":
    """The default tolerance of this kind of system, each structure and VDOS
    bound raised to NOISE_FACTOR × its noise floor where that is higher."""
    import dataclasses

    tolerance = an.Tolerance().for_kind(kind)
    raised = {field: max(getattr(tolerance, field), NOISE_FACTOR * noise[check])
              for check, field in NOISE_FIELDS.items() if check in noise and getattr(tolerance, field) is not None}
    return dataclasses.replace(tolerance, vdos_diff=max(tolerance.vdos_diff, NOISE_FACTOR * vdos_noise), **raised)


def structure_differences(m, base) -> dict:
    """The run's structure differences to the baseline, by check."""
    out = {}
    if m.rdf is not None:
        out["rdf"] = float(an.rdf_differences(m.rdf, base.rdf)["overall"])
    for check in ("distances", "angles", "dihedrals"):
        if getattr(base, check):
            out[check] = float(an.distributions_difference(getattr(m, check), getattr(base, check), check)["overall"])
    return out


# A baseline at δt whose conserved energy fluctuates this little (ΔE/ΔK in NVE, growing as
# δt² under velocity Verlet) could take a larger step itself: half the bound of compare's
# fluctuation check (0.02), so the estimate keeps a margin.
HEADROOM_FLUCTUATION = 0.01


def baseline_step_headroom(fluctuation, timestep_fs: float) -> dict | None:
    """Where the baseline's NVE ΔE/ΔK at δt is so small that it alone could run at
    twice δt or more: {energy_fluctuation_ratio, timestep_fs, baseline_step_fs}
    (the δt at which ΔE/ΔK ∝ δt² reaches HEADROOM_FLUCTUATION); else None. Speedups
    measured at the smaller δt then count a step the baseline did not need (a
    metal at 0.5 fs: ΔE/ΔK 0.0001, and its baseline is stable at 6 fs)."""
    if fluctuation is None or not math.isfinite(fluctuation) or fluctuation <= 0:
        return None
    step_fs = timestep_fs * math.sqrt(HEADROOM_FLUCTUATION / fluctuation)
    if step_fs < 2 * timestep_fs:
        return None
    return {"energy_fluctuation_ratio": fluctuation, "timestep_fs": timestep_fs, "baseline_step_fs": step_fs}


def headroom_text(headroom: dict) -> str:
    dt, step = headroom["timestep_fs"], headroom["baseline_step_fs"]
    return (f"note: the baseline conserves energy with room to spare at δt = {dt:g} fs (ΔE/ΔK "
            f"{headroom['energy_fluctuation_ratio']:.2g} in NVE, growing as δt²): on its own it would reach ΔE/ΔK "
            f"{HEADROOM_FLUCTUATION:g} near δt = {step:.1f} fs. These speedups are against the baseline at {dt:g} fs; "
            f"for the speedup over a baseline at its own step, compare again with --timestep-fs near {step:.1f}")


def analyse(records) -> dict:
    """compare.json's content (see module doc) from a compare.Records."""
    template, cfg = records.template, records.settings
    context = Context.of(records)
    metrics = {r.settings.label: run_metrics(r, context) for r in records.runs if not r.unstable}
    noise = structure_noise_floor(records.runs[0], context)
    vdos_noise = vdos_noise_floor(records.runs[0], template)
    tolerance = tolerance_for(context.kind, noise, vdos_noise)
    base_numbers, base_metrics = metrics["baseline"]
    diffusing = list(context.diffusing) if context.kind == "liquid" else []
    caged = caged_species(records.runs[0], template, diffusing)
    judged_species = [s for s in diffusing if s not in caged]
    judged = judged_only(base_metrics, judged_species)
    runs, verdicts, sampling = [], {}, {}
    for record in records.runs[1:]:
        if record.unstable:
            verdicts[record.settings.n_inner] = sampling[record.settings.n_inner] = False
            runs.append(unstable_numbers(record, base_numbers))
            continue
        numbers, m = metrics[record.settings.label]
        ok, reasons = an.verdict(m, judged, tolerance)
        verdicts[record.settings.n_inner] = ok
        sampling[record.settings.n_inner] = an.verdict(m, judged, tolerance, purpose="sampling")[0]
        differences = structure_differences(m, base_metrics)
        numbers.update(speedup=numbers["ns_per_day"] / base_numbers["ns_per_day"],
                       rdf_diff=differences.get("rdf"), structure_diff=differences,
                       vdos_diff_by_species={s: an.vdos_difference(m.vdos[s], base_metrics.vdos[s])
                                             for s in base_metrics.vdos},
                       within_tolerance=ok, sampling_ok=sampling[record.settings.n_inner], reasons=reasons)
        runs.append(numbers)
    return {"system_kind": context.kind, "checks_applied": tolerance.checks,
            "sampling_checks": [c for c in tolerance.checks if c in an.SAMPLING_CHECKS],
            "baseline": base_numbers, "runs": runs,
            "largest_n_within_tolerance": an.largest_n_within_tolerance(verdicts),
            "largest_n_for_sampling": an.largest_n_within_tolerance(sampling),
            "diffusion_judged_species": judged_species,
            "diffusion_caged_species": caged,
            "tolerance": {**{f: getattr(tolerance, f) for f in an.Tolerance.__dataclass_fields__},
                          "rdf_noise_floor": noise.get("rdf"), "structure_noise_floor": noise,
                          "vdos_noise_floor": vdos_noise},
            "scale_separation": scale_separation(records.forces, cfg),
            "baseline_step_headroom": baseline_step_headroom(base_numbers.get("energy_fluctuation_ratio"),
                                                             cfg.timestep_fs),
            "hmr_amu": cfg.hmr_amu, "species_friction_per_fs": dict(cfg.species_friction_per_fs),
            "n_inner_auto": getattr(records, "probe", None),
            "_rdf": {label: m.rdf for label, (_, m) in metrics.items() if m.rdf is not None},
            "_distances": {label: m.distances for label, (_, m) in metrics.items() if m.distances is not None},
            "_angles": {label: m.angles for label, (_, m) in metrics.items() if m.angles},
            "_energies": {r.settings.label: r.samples.get("potential_eV") for r in records.runs if not r.unstable}}


# ---- table, plots, report ---------------------------------------------------
def _kind_columns(kind: str) -> list[tuple]:
    """(header, width, value(row, mts)) of the columns that differ by kind of
    system: the structure difference and the kind's own dynamics number."""
    def structure(check):
        return lambda r, mts: "-" if not mts or mts["structure_diff"].get(check) is None \
            else f"{mts['structure_diff'][check]:.3f}"

    if kind == "molecule":
        def energy(r, mts):
            e = r.get("potential_energy_meV_per_atom")
            return "-" if e is None else f"{e[0]:.2f}±{e[1]:.2f}"
        return [("dist Δ", 8, structure("distances")), ("angle Δ", 8, structure("angles")),
                ("dihed Δ*", 9, structure("dihedrals")), ("E_pot meV/at", 18, energy)]
    if kind == "crystal":
        def vibration(r, mts):
            u = r["vibration_A2_by_species"]
            return " ".join(f"{s}:{v[0]:.4f}" for s, v in sorted(u.items()))
        return [("RDF Δ", 8, structure("rdf")), ("<u²> Å²", 18, vibration),
                ("Lind.", 7, lambda r, mts: f"{r['lindemann_ratio']:.3f}")]

    def diffusion(r, mts):
        return "too short" if r["diffusion_A2_per_ps"] is None else \
            f"{r['diffusion_A2_per_ps']:.3f}±{r['diffusion_err_A2_per_ps']:.3f}"
    return [("RDF Δ", 8, structure("rdf")), ("D Å²/ps", 16, diffusion)]


def format_table(result: dict) -> str:
    """The plain-text table printed by `mtsmlip compare` and `mtsmlip demo`."""
    kind = result.get("system_kind", "liquid")
    light = min(result["baseline"]["temperature_by_species_K"], key=lambda s: atomic_masses[atomic_numbers[s]])
    columns = _kind_columns(kind)
    head = f"{'run':<10}{'Δt fs':>7}{'ns/day':>9}{'speedup':>9}"
    head += "".join(f"{h:>{w}}" for h, w, _ in columns)
    head += f"{'VDOS Δ':>8}{'drift':>10}{'ΔE/ΔK':>8}{'T K':>7}{'T_' + light + ' K':>8}  verdict"
    lines = [f"{kind}: checks {', '.join(result.get('checks_applied', []))}", head, "-" * len(head)]
    rows = [("baseline", result["baseline"], None)] + [(f"n={r['n_inner']}", r, r) for r in result["runs"]]
    for label, r, mts in rows:
        if mts and mts.get("unstable"):
            lines.append(f"{label:<10}{r['outer_timestep_fs']:>7.2f}{r['ns_per_day']:>9.3f}{mts['speedup']:>8.2f}x  "
                         f"FAIL: {mts['reasons'][0]}")
            continue
        speed = f"{mts['speedup']:.2f}x" if mts else "1.00x"
        vdos = f"{max(mts['vdos_diff_by_species'].values()):.3f}" if mts else "-"
        verdict = _verdict_text(mts) if mts else "reference"
        fluctuation = r.get("energy_fluctuation_ratio")
        fluctuation = "-" if fluctuation is None else f"{fluctuation:.3f}"
        line = f"{label:<10}{r['outer_timestep_fs']:>7.2f}{r['ns_per_day']:>9.3f}{speed:>9}"
        line += "".join(f"{value(r, mts):>{w}}" for _, w, value in columns)
        line += (f"{vdos:>8}{r['drift_meV_per_atom_per_ps']:>10.3f}{fluctuation:>8}{r['mean_temperature_K']:>7.1f}"
                 f"{r['temperature_by_species_K'][light][0]:>8.1f}  {verdict}")
        lines.append(line)
    best = result["largest_n_within_tolerance"]
    judged = result.get("diffusion_judged_species")
    species = sorted(result["baseline"]["temperature_by_species_K"])
    if kind == "molecule" and "dihedrals" not in result.get("checks_applied", []):
        lines.append("* dihedral distributions are reported, not judged: torsions cross their barriers too rarely "
                     "in a few ps for a verdict (their difference between the baseline's two halves: "
                     f"{(result['tolerance'].get('structure_noise_floor') or {}).get('dihedrals', float('nan')):.3f})")
    caged = result.get("diffusion_caged_species") or {}
    still = [s for s in species if judged is not None and s not in judged and s not in caged]
    if kind == "liquid" and still:
        lines.append(f"diffusion not judged for {', '.join(still)}: "
                     f"they do not diffuse (mean squared displacement over the baseline run < "
                     f"{MOBILE_MSD_A2:g} Å²), so their MSD slope is vibration, not diffusion")
    if kind == "liquid" and caged:
        moved = ", ".join(f"{s} {v['msd_A2']:.2g} Å²" for s, v in sorted(caged.items()))
        half_ps = max(v["half_run_ps"] for v in caged.values())
        # the run whose half reaches CAGE_MSD_A2 for the slowest species if the MSD grew linearly from 0; a
        # caged MSD grows slower than that, so this is a lower bound (water: 6 ps from 0.5 ps runs, 10-18 from 2 ps)
        needed_ps = 2 * half_ps * CAGE_MSD_A2 / max(min(v["msd_A2"] for v in caged.values()), 1e-12)
        lines.append(f"diffusion reported, not judged, for {', '.join(sorted(caged))}: within half the run "
                     f"({half_ps:.3g} ps) the baseline's atoms moved {moved} on average, under the {CAGE_MSD_A2:g} Å² "
                     f"it takes to leave the shell of their nearest neighbours, so one run's D is far noisier than "
                     f"its error bar; runs of at least {needed_ps:.2g} ps, or --repeats, tell")
    fit = result["baseline"].get("diffusion_fit_lags_ps")
    if kind == "liquid" and fit and fit[0] < DIFFUSIVE_LAG_PS - 1e-9 and judged:
        lines.append(f"D is fitted at lags {fit[0]:.2g}-{fit[1]:.2g} ps ({FIT_FRACTION[0]:.0%}-{FIT_FRACTION[1]:.0%} "
                     f"of the run): in water at 300 K the MSD is not straight before {DIFFUSIVE_LAG_PS:g} ps "
                     f"(the ballistic start, the cage's rattling, librations), so this is a short-time mobility, "
                     f"compared alike between runs of one length, not a diffusion coefficient; runs of "
                     f"{DIFFUSIVE_LAG_PS / FIT_FRACTION[0]:g} ps or more fit past it")
    if result.get("baseline_step_headroom"):
        lines.append(headroom_text(result["baseline_step_headroom"]))
    for_sampling = result.get("largest_n_for_sampling")
    lines.append(f"largest n within tolerance: {best if best is not None else 'none'} (dynamics: every check); "
                 f"{for_sampling if for_sampling is not None else 'none'} for sampling "
                 f"({', '.join(result.get('sampling_checks', []))} only)")
    lines.append("(a larger n that passes after a failure is not counted; drift in meV/atom/ps; ΔE/ΔK = conserved-energy "
                 "over kinetic-energy fluctuation in NVE; structure Δ = worst pair's RMS g(r) difference (RDF) or half L1 "
                 "distance of the distributions; VDOS Δ = worst species' ½∫|Δg(ν)|dν)")
    return "\n".join(lines)


def _verdict_text(mts: dict) -> str:
    if mts["within_tolerance"]:
        return "ok"
    prefix = "sampling ok; FAIL: " if mts.get("sampling_ok") else "FAIL: "
    return prefix + "; ".join(mts["reasons"])


def write_plots(result, records, out: Path) -> list[str]:
    from .analysis import plots

    template, cfg, kind = records.template, records.settings, result["system_kind"]
    names, vdos, drift, msd = [], {}, {}, {}
    heavy = heaviest_species(template)
    select = np.array(template.get_chemical_symbols()) == heavy
    for record in (r for r in records.runs if not r.unstable):
        label, s, dt_fs = record.settings.label, record.samples, record.settings.outer_fs
        _, cm1, dos = an.vdos(s["velocities_A_per_fs"].astype(float), dt_fs, template.get_masses())
        vdos[label] = (cm1, dos)
        drift[label] = (record.nve_time_ps, record.nve_conserved_eV)
        if kind != "molecule":
            x = positions_unwrapped(s, template)
            msd[label] = an.msd(x, dt_fs / 1000.0, template.get_masses(), select, max_lag=len(x) // 2)
    if result["_rdf"]:
        plots.plot_rdf(result["_rdf"], out / "rdf.png")
        names.append("rdf.png")
    if msd:
        plots.plot_msd(msd, out / f"msd_{heavy}.png")
        names.append(f"msd_{heavy}.png")
    if result["_distances"]:
        plots.plot_panels(result["_distances"], out / "distances.png", "r (Å)", "p(r) (1/Å)")
        names.append("distances.png")
    if result["_angles"]:
        plots.plot_panels(result["_angles"], out / "angles.png", "bond angle (°)", "p (1/°)")
        names.append("angles.png")
    energies = {k: v for k, v in result["_energies"].items() if v is not None and kind == "molecule"}
    if energies:
        edges = np.histogram_bin_edges(np.concatenate(list(energies.values())), bins=40)
        hist = {k: (0.5 * (edges[1:] + edges[:-1]), np.histogram(v, bins=edges, density=True)[0])
                for k, v in energies.items()}
        plots.plot_panels({k: {"potential energy": h} for k, h in hist.items()}, out / "energy.png",
                          "E_pot (eV)", "p (1/eV)")
        names.append("energy.png")
    plots.plot_vdos(_trim_to_weight(vdos), out / "vdos.png")
    plots.plot_energy(drift, out / "nve_energy.png", per_atom_n=len(template))
    names += ["vdos.png", "nve_energy.png"]
    sep = result["scale_separation"]
    if sep and "_spectra" in sep:
        spectra = {"fast force": sep["_spectra"]["forces_fast"], "slow force": sep["_spectra"]["forces_slow"]}
        plots.plot_force_spectrum(spectra, out / "force_spectrum.png",
                                  nyquist_THz=an.nyquist_THz(cfg.run(max(cfg.n_inner)).outer_fs))
        names.append("force_spectrum.png")
    return names


def _trim_to_weight(curves: dict, fraction=1e-3, margin=1.3) -> dict:
    """Cut spectra {label: (x, y)} at `margin` × the highest x where any curve
    still exceeds `fraction` of its maximum (each run's Nyquist limit differs)."""
    top = max(x[y > fraction * y.max()].max() for x, y in curves.values())
    return {k: (x[x <= margin * top], y[x <= margin * top]) for k, (x, y) in curves.items()}


def write_report(result, records, out: Path) -> None:
    """compare.json, PNG plots and report.md (tables with the plots embedded)."""
    out, cfg = Path(out), records.settings
    pngs = write_plots(result, records, out)
    atomic_write_json(out / "compare.json", public(result))
    text = ["# mtsmlip compare", "",
            f"{cfg.ps} ps NVT ({cfg.thermostat}, {cfg.temperature_K} K) per run from one equilibrated start, "
            f"timed in alternating blocks; drift from {cfg.nve_ps} ps NVE per run. δt = {cfg.timestep_fs} fs."
            + (f" Hydrogen mass repartitioning: {cfg.hmr_amu} amu onto each H, in every run." if cfg.hmr_amu else ""),
            "", "```", format_table(result), "```", ""]
    text += _separation_lines(result["scale_separation"])
    if result.get("n_inner_auto"):
        from .probe import ProbeResult

        text += ["## --n-inner auto", "", "```", *ProbeResult.from_dict(result["n_inner_auto"]).lines(), "```", ""]
    text += [f"![{name}]({name})" for name in pngs]
    atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text("\n".join(text) + "\n"))


def _separation_lines(sep) -> list[str]:
    if not sep:
        return []
    if "unstable" in sep:
        return ["## Scale separation", "", f"Not measured: the n = 1 segment of the pair that samples the forces "
                f"blew up ({sep['unstable']}).", ""]
    lines = ["## Scale separation", "",
             f"RMS fast force {sep['fast_force_rms_eV_per_A']:.3f} eV/Å, slow force "
             f"{sep['slow_force_rms_eV_per_A']:.3f} eV/Å (n = 1 segment of the pair).", "",
             "| n | outer Nyquist (THz) | slow power above | fast power above |", "|---|---|---|---|"]
    for row in sep["per_n"]:
        lines.append(f"| {row['n_inner']} | {row['outer_nyquist_THz']:.1f} | "
                     f"{row['slow_power_above_nyquist']:.4f} | {row['fast_power_above_nyquist']:.4f} |")
    return lines + [""]


def public(result: dict) -> dict:
    """The result without the private (underscore) entries that hold arrays."""
    if isinstance(result, dict):
        return {k: public(v) for k, v in result.items() if not str(k).startswith("_")}
    if isinstance(result, list):
        return [public(v) for v in result]
    return result
