"""Small plot helpers (matplotlib, Agg): each takes {label: data} and a PNG path,
draws one overlay figure and writes it atomically (mtsmlip.models.atomic_write)."""

from __future__ import annotations

from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .structure import RDF  # noqa: E402


def _save(fig, path) -> None:
    from ..files import atomic_write

    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    finally:
        plt.close(fig)


def _overlay(curves: Mapping[str, tuple], xlabel, ylabel, title, logy=False):
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    for label, (x, y) in curves.items():
        ax.plot(x, y, label=label, lw=1.2)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if logy:
        ax.set_yscale("log")
    ax.legend(fontsize="small")
    return fig, ax


def plot_rdf(rdfs: Mapping[str, RDF], path) -> None:
    """One panel per species pair, one line per run. rdfs: {label: rdf(...) result}."""
    plot_panels(rdfs, path, "r (Å)", "g(r)", reference_y=1.0)


def plot_panels(distributions: Mapping[str, Mapping], path, xlabel: str, ylabel: str, reference_y=None) -> None:
    """One panel per key (a species pair, a centre species), one line per run.
    distributions: {label: {key: (x, y)}}, as from rdf or distance_distributions."""
    keys = sorted({k for d in distributions.values() for k in d}, key=str)
    if not keys:
        return
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.5), squeeze=False, layout="constrained")
    for ax, key in zip(axes[0], keys):
        for label, curves in distributions.items():
            if key in curves:
                ax.plot(*curves[key], label=label, lw=1.2)
        ax.set(xlabel=xlabel, ylabel=ylabel, title="-".join(key) if isinstance(key, tuple) else str(key))
        if reference_y is not None:
            ax.axhline(reference_y, color="grey", lw=0.5)
    axes[0][0].legend(fontsize="small")
    _save(fig, path)


def plot_msd(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path) -> None:
    """curves: {label: (lag_time_ps, msd_A2)}."""
    fig, _ = _overlay(curves, "lag time (ps)", "MSD (Å²)", "Mean-squared displacement")
    _save(fig, path)


def plot_vdos(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path) -> None:
    """curves: {label: (freq_cm1, dos)}."""
    fig, _ = _overlay(curves, "wavenumber (cm⁻¹)", "VDOS (a.u.)", "Vibrational density of states")
    _save(fig, path)


def plot_energy(traces: Mapping[str, tuple[np.ndarray, np.ndarray]], path, per_atom_n=None) -> None:
    """traces: {label: (time_ps, energy_eV)}; each trace is shown relative to its
    first value (per atom in meV if per_atom_n is given)."""
    scale, unit = (1000.0 / per_atom_n, "meV/atom") if per_atom_n else (1.0, "eV")
    shifted = {k: (t, (np.asarray(e) - e[0]) * scale) for k, (t, e) in traces.items()}
    fig, _ = _overlay(shifted, "time (ps)", f"E − E(0) ({unit})", "Conserved energy")
    _save(fig, path)


def plot_force_spectrum(spectra: Mapping[str, tuple[np.ndarray, np.ndarray]], path, nyquist_THz=None) -> None:
    """spectra: {label: (freq_THz, power)}, log power; a dashed line marks the
    outer step's Nyquist frequency if given."""
    fig, ax = _overlay(spectra, "frequency (THz)", "power ((eV/Å)²/THz)", "Force spectrum", logy=True)
    if nyquist_THz is not None:
        ax.axvline(nyquist_THz, ls="--", color="k", lw=1, label=f"outer Nyquist {nyquist_THz:.3g} THz")
        ax.legend(fontsize="small")
    _save(fig, path)


VERDICT_COLOURS = {"same": "tab:green", "cannot tell": "tab:orange", "different": "tab:red"}


def plot_differences(series: Mapping[str, list], path) -> None:
    """One panel per observable: its mean difference over the tolerance against
    n, with the confidence interval as an error bar; the grey band ±1 is 'the
    same'. series: {observable: [(n, mean, low, high, verdict), ...]} (all
    divided by the tolerance)."""
    names = list(series)
    columns = min(4, len(names))
    rows = -(-len(names) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.4 * rows), squeeze=False, layout="constrained")
    for ax, name in zip(axes.flat, names):
        ax.axhspan(-1, 1, color="0.9")
        ax.axhline(0, color="grey", lw=0.5)
        for n, mean, low, high, verdict in series[name]:
            ax.errorbar([n], [mean], yerr=[[mean - low], [high - mean]], fmt="o", ms=4, capsize=3,
                        color=VERDICT_COLOURS.get(verdict, "k"))
        ax.set_title(name, fontsize="small")
        ax.set_xticks(sorted({p[0] for p in series[name]}))
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("Δ / tolerance")
    for ax in axes[-1, :]:
        ax.set_xlabel("n (1: pair − baseline)")
    _save(fig, path)
