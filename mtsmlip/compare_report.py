"""The numbers, verdicts, plots and report of ``mtsmlip compare``.

compare.json: ``baseline`` and ``runs`` (one entry per n) with ns/day, speedup,
RDF difference, NVE drift, diffusion ± block error, mean temperature (and each
species' ± block error) and the verdict; ``largest_n_within_tolerance``; ``scale_separation`` (power of the slow
and fast forces above each outer step's Nyquist frequency); ``tolerance``.
The scalar ``diffusion_A2_per_ps`` is that of the heaviest species (O in water,
a proxy for molecular diffusion); every species is under ``diffusion_by_species``.
Diffusion is judged only for the species that diffuse in the baseline run
(``diffusion_judged_species``: mean squared displacement over the run above
1 Å²); in a crystal none does, and its MSD slope is vibration, not diffusion.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, atomic_numbers

from . import analysis as an
from .analysis.dynamics import MOBILE_MSD_A2
from .files import atomic_write, atomic_write_json

MAX_RDF_FRAMES = 200
N_DIFFUSION_BLOCKS = 4
MIN_FRAMES_PER_BLOCK = 5


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


def rdf_range_A(template: Atoms) -> float:
    """Up to half the narrowest cell width (at most 6 Å)."""
    from .data import perpendicular_widths_A

    return float(min(6.0, 0.5 * perpendicular_widths_A(template.cell.array).min() - 1e-6))


def diffusion(samples: dict, template: Atoms, interval_ps: float) -> dict | None:
    """{symbol: DiffusionEstimate} from block-averaged MSDs of the sampled run,
    or None when the run is too short for block averages (the verdict then fails
    the diffusion check by name)."""
    if len(samples["step"]) < N_DIFFUSION_BLOCKS * MIN_FRAMES_PER_BLOCK:
        return None
    positions = an.unwrap_positions(samples["positions_A"].astype(float), template.cell.array)
    return an.species_diffusion(positions, template.get_chemical_symbols(), template.get_masses(), interval_ps,
                                N_DIFFUSION_BLOCKS)


def heaviest_species(template: Atoms) -> str:
    return template.get_chemical_symbols()[int(np.argmax(template.get_masses()))]


def diffusing_species(baseline, template: Atoms) -> list[str]:
    """Species that diffuse in the baseline run (:func:`mtsmlip.analysis.mobile_species`):
    the only ones whose diffusion the verdict judges."""
    positions = an.unwrap_positions(baseline.samples["positions_A"].astype(float), template.cell.array)
    return an.mobile_species(positions, template.get_chemical_symbols(), template.get_masses())


def judged_only(metrics, species) -> "an.RunMetrics":
    """The baseline's metrics with diffusion kept for `species` only (the verdict
    judges each species of the baseline)."""
    import dataclasses

    kept = None if metrics.diffusion is None else {s: d for s, d in metrics.diffusion.items() if s in species}
    return dataclasses.replace(metrics, diffusion=kept)


def run_metrics(record, template: Atoms, rdf_r_A: float):
    """Every number of one run (a compare.RunRecord), plus what the verdict needs."""
    samples, run = record.samples, record.settings
    d = diffusion(samples, template, run.simulated_ps(1))
    rdf = an.rdf(frames_of(samples, template, MAX_RDF_FRAMES), rdf_r_A, 120)
    drift_value = an.drift_meV_per_atom_per_ps(record.nve_time_ps, record.nve_conserved_eV, len(template))
    heavy = heaviest_species(template)
    symbols, masses = template.get_chemical_symbols(), template.get_masses()
    temperatures = an.species_temperatures(samples["velocities_A_per_fs"][1:], symbols, masses, N_DIFFUSION_BLOCKS)
    vdos = an.species_vdos(samples["velocities_A_per_fs"][1:], run.outer_fs, symbols, masses)
    numbers = {
        "n_inner": run.n_inner, "outer_timestep_fs": run.outer_fs, "simulated_ps": record.simulated_ps,
        "wall_s": record.wall_s, "ns_per_day": ns_per_day(record.simulated_ps, record.wall_s),
        "mean_temperature_K": float(np.mean(samples["temperature_K"][1:])),
        "drift_meV_per_atom_per_ps": drift_value,
        "diffusion_A2_per_ps": d[heavy].D_A2_per_ps if d else None,
        "diffusion_err_A2_per_ps": d[heavy].stderr_A2_per_ps if d else None,
        "diffusion_species": heavy,
        "diffusion_by_species": {s: [e.D_A2_per_ps, e.stderr_A2_per_ps] for s, e in (d or {}).items()},
        "temperature_by_species_K": {s: [e.mean_K, e.stderr_K] for s, e in temperatures.items()},
    }
    return numbers, an.RunMetrics(drift_meV_per_atom_per_ps=drift_value, rdf=rdf, diffusion=d,
                                  temperature=temperatures, vdos=vdos)


def rdf_noise_floor(baseline, template, rdf_r_A) -> float:
    """RDF difference between the two halves of the baseline run: what sampling
    noise alone gives, so the tolerance can sit above it."""
    frames = frames_of(baseline.samples, template, 2 * MAX_RDF_FRAMES)
    half = len(frames) // 2
    if half < 2:
        return 0.0
    a, b = an.rdf(frames[:half], rdf_r_A, 120), an.rdf(frames[half:], rdf_r_A, 120)
    return float(an.rdf_differences(a, b)["overall"])


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
    """Power of the slow and the fast force above each n's outer Nyquist frequency."""
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


def analyse(records) -> dict:
    """compare.json's content (see module doc) from a compare.Records."""
    template, cfg = records.template, records.settings
    r_A = rdf_range_A(template)
    metrics = {r.settings.label: run_metrics(r, template, r_A) for r in records.runs}
    noise = rdf_noise_floor(records.runs[0], template, r_A)
    vdos_noise = vdos_noise_floor(records.runs[0], template)
    tolerance = an.Tolerance(rdf_diff=max(an.Tolerance().rdf_diff, 1.5 * noise),
                             vdos_diff=max(an.Tolerance().vdos_diff, 1.5 * vdos_noise))
    base_numbers, base_metrics = metrics["baseline"]
    diffusing = diffusing_species(records.runs[0], template)
    judged = judged_only(base_metrics, diffusing)
    runs, verdicts = [], {}
    for record in records.runs[1:]:
        numbers, m = metrics[record.settings.label]
        ok, reasons = an.verdict(m, judged, tolerance)
        verdicts[record.settings.n_inner] = ok
        numbers.update(speedup=numbers["ns_per_day"] / base_numbers["ns_per_day"],
                       rdf_diff=float(an.rdf_differences(m.rdf, base_metrics.rdf)["overall"]),
                       vdos_diff_by_species={s: an.vdos_difference(m.vdos[s], base_metrics.vdos[s])
                                             for s in base_metrics.vdos},
                       within_tolerance=ok, reasons=reasons)
        runs.append(numbers)
    return {"baseline": base_numbers, "runs": runs,
            "largest_n_within_tolerance": an.largest_n_within_tolerance(verdicts),
            "diffusion_judged_species": diffusing,
            "tolerance": {"drift_meV_per_atom_per_ps": tolerance.drift_meV_per_atom_per_ps,
                          "rdf_diff": tolerance.rdf_diff, "rdf_noise_floor": noise,
                          "diffusion_sigma": tolerance.diffusion_sigma,
                          "temperature_sigma": tolerance.temperature_sigma,
                          "temperature_fraction": tolerance.temperature_fraction,
                          "vdos_diff": tolerance.vdos_diff, "vdos_noise_floor": vdos_noise},
            "scale_separation": scale_separation(records.forces, cfg),
            "hmr_amu": cfg.hmr_amu,
            "_rdf": {label: m.rdf for label, (_, m) in metrics.items()}}


# ---- table, plots, report ---------------------------------------------------
def format_table(result: dict) -> str:
    """The plain-text table printed by `mtsmlip compare` and `mtsmlip demo`."""
    light = min(result["baseline"]["temperature_by_species_K"], key=lambda s: atomic_masses[atomic_numbers[s]])
    head = (f"{'run':<10}{'Δt fs':>7}{'ns/day':>9}{'speedup':>9}{'RDF Δ':>8}{'VDOS Δ':>8}{'drift':>10}"
            f"{'D Å²/ps':>16}{'T K':>7}{'T_' + light + ' K':>8}  verdict")
    lines = [head, "-" * len(head)]
    rows = [("baseline", result["baseline"], None)] + [(f"n={r['n_inner']}", r, r) for r in result["runs"]]
    for label, r, mts in rows:
        speed = f"{mts['speedup']:.2f}x" if mts else "1.00x"
        rdf = f"{mts['rdf_diff']:.3f}" if mts else "-"
        vdos = f"{max(mts['vdos_diff_by_species'].values()):.3f}" if mts else "-"
        verdict = ("ok" if mts["within_tolerance"] else "FAIL: " + "; ".join(mts["reasons"])) if mts else "reference"
        d = "too short" if r["diffusion_A2_per_ps"] is None else \
            f"{r['diffusion_A2_per_ps']:.3f}±{r['diffusion_err_A2_per_ps']:.3f}"
        lines.append(f"{label:<10}{r['outer_timestep_fs']:>7.2f}{r['ns_per_day']:>9.3f}{speed:>9}{rdf:>8}{vdos:>8}"
                     f"{r['drift_meV_per_atom_per_ps']:>10.3f}{d:>16}{r['mean_temperature_K']:>7.1f}"
                     f"{r['temperature_by_species_K'][light][0]:>8.1f}  {verdict}")
    best = result["largest_n_within_tolerance"]
    judged = result.get("diffusion_judged_species")
    species = sorted(result["baseline"]["temperature_by_species_K"])
    if judged is not None and set(judged) != set(species):
        lines.append(f"diffusion not judged for {', '.join(s for s in species if s not in judged)}: "
                     f"they do not diffuse (mean squared displacement over the baseline run < "
                     f"{MOBILE_MSD_A2:g} Å²), so their MSD slope is vibration, not diffusion")
    lines.append(f"largest n within tolerance: {best if best is not None else 'none'}"
                 "   (drift in meV/atom/ps; RDF Δ = worst-pair RMS g(r) difference to the baseline;"
                 " VDOS Δ = worst species' ½∫|Δg(ν)|dν)")
    return "\n".join(lines)


def write_plots(result, records, out: Path) -> list[str]:
    from .analysis import plots

    template, cfg = records.template, records.settings
    heavy = heaviest_species(template)
    select = np.array(template.get_chemical_symbols()) == heavy
    msd, vdos, drift = {}, {}, {}
    for record in records.runs:
        label, s, dt_fs = record.settings.label, record.samples, record.settings.outer_fs
        x = an.unwrap_positions(s["positions_A"].astype(float), template.cell.array)
        msd[label] = an.msd(x, dt_fs / 1000.0, template.get_masses(), select, max_lag=len(x) // 2)
        _, cm1, dos = an.vdos(s["velocities_A_per_fs"].astype(float), dt_fs, template.get_masses())
        vdos[label] = (cm1, dos)
        drift[label] = (record.nve_time_ps, record.nve_conserved_eV)
    plots.plot_rdf(result["_rdf"], out / "rdf.png")
    plots.plot_msd(msd, out / f"msd_{heavy}.png")
    plots.plot_vdos(_trim_to_weight(vdos), out / "vdos.png")
    plots.plot_energy(drift, out / "nve_energy.png", per_atom_n=len(template))
    names = ["rdf.png", f"msd_{heavy}.png", "vdos.png", "nve_energy.png"]
    sep = result["scale_separation"]
    if sep:
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
    text += [f"![{name}]({name})" for name in pngs]
    atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text("\n".join(text) + "\n"))


def _separation_lines(sep) -> list[str]:
    if not sep:
        return []
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
