"""Observables from an MD trajectory, to judge whether multiple-time-step MD
reproduces conventional MD: g(r), MSD/diffusion, VACF/VDOS, a molecule's distance/angle/dihedral
distributions, a crystal's vibration about its sites, energy drift, the
force spectrum (scale separation), and a tolerance verdict. See docs/analysis.md.

Plot helpers live in :mod:`mtsmlip.analysis.plots` (imported on demand).
"""

from .dynamics import (DiffusionEstimate, TemperatureEstimate, diffusion_by_species, diffusion_groups,
                       diffusion_from_msd, drift_meV_per_atom_per_ps, energy_fluctuation_ratio, fit_lags_ps,
                       mobile_species, msd, remove_com_drift, species_diffusion,
                       species_temperatures, unwrap_positions, unwrapped_positions_A)
from .frames import cells_A, chemical_symbols, forces_eV_per_A, positions_A, velocities_A_per_fs
from .spectra import (THZ_TO_CM1, VDOS_SEGMENT_FS, autocorrelation, force_autocorrelation, force_spectrum,
                      nyquist_THz, power_above_frequency_fraction, power_spectrum, species_vdos, vacf, vdos,
                      vdos_difference)
from .structure import (partner_density_per_A3, rdf, rdf_difference, rdf_differences, running_coordination,
                        species_pairs)
from .geometry import (LINDEMANN_MELTED, BlockMean, angle_distributions, angle_triples, block_mean, bonded_pairs,
                       dihedral_distributions, dihedral_quads, distance_distributions, local_pairs, distribution_difference,
                       distributions_difference, lindemann_ratio, vibration_amplitudes)
from .observables import (hydrogen_bonds, mean_bond_lengths_A, reorientation_c2, reorientation_time_ps, rdf_first_peak, rdf_first_peaks,
                          species_vdos_centroids_cm1, vdos_centroid_cm1)
from .acceptance import SAMPLING_CHECKS, RunMetrics, Tolerance, failed_checks, largest_n_within_tolerance, verdict

__all__ = [
    "hydrogen_bonds", "mean_bond_lengths_A", "reorientation_c2", "reorientation_time_ps", "rdf_first_peak", "rdf_first_peaks",
    "species_vdos_centroids_cm1", "vdos_centroid_cm1",
    "BlockMean", "LINDEMANN_MELTED", "angle_distributions", "angle_triples", "block_mean", "bonded_pairs",
    "dihedral_distributions", "dihedral_quads", "distance_distributions", "distribution_difference",
    "distributions_difference", "lindemann_ratio", "local_pairs", "vibration_amplitudes",
    "DiffusionEstimate", "RunMetrics", "SAMPLING_CHECKS", "failed_checks", "THZ_TO_CM1", "Tolerance", "autocorrelation", "cells_A",
    "chemical_symbols", "diffusion_by_species", "diffusion_groups", "diffusion_from_msd", "fit_lags_ps",
    "drift_meV_per_atom_per_ps", "energy_fluctuation_ratio", "force_autocorrelation", "force_spectrum", "forces_eV_per_A",
    "largest_n_within_tolerance", "mobile_species", "msd", "nyquist_THz", "partner_density_per_A3", "positions_A",
    "power_above_frequency_fraction", "power_spectrum", "rdf", "rdf_difference", "rdf_differences",
    "remove_com_drift", "running_coordination", "species_diffusion", "species_pairs", "species_temperatures",
    "TemperatureEstimate", "VDOS_SEGMENT_FS", "species_vdos", "vdos_difference", "unwrap_positions",
    "unwrapped_positions_A", "vacf", "vdos", "velocities_A_per_fs", "verdict",
]
