"""Evaluate a trained model directory: errors of fast, fast + slow and baseline.

Energies are compared per atom (meV/atom), forces per Cartesian component
(meV/Å). Also reported: the RMS of the fast and of the slow forces, which says
how much of the force the slow model carries.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import DataError
from .shipped import SHIPPED_DIR

ERROR_KEYS = ("energy_mae_meV_per_atom", "energy_rmse_meV_per_atom", "force_mae_meV_per_A", "force_rmse_meV_per_A")


def run(args) -> int:
    from .models import TrainedModels
    from .files import check_output_dir

    if args.out is not None:
        check_output_dir(args.out)
    models = TrainedModels.load(args.model, teacher=args.teacher)
    frames = select_frames(args.data, models.manifest, args.frames, args.split)
    predictions = predict(models, frames, args.data)
    report = error_report(frames, predictions)
    check_finite_report(report, args.data)
    plot = write_parity_plot(Path(args.out or plot_dir(models.directory)) / "parity.png", frames, predictions)
    print(json.dumps(report, indent=2) if args.json else format_report(report, plot))
    return 0


def plot_dir(model_dir: Path) -> Path:
    """Where plots go without --out: the model directory, except for models shipped
    inside the package (never written to), whose plots go to ./eval-NAME."""
    model_dir = Path(model_dir).resolve()
    return Path(f"eval-{model_dir.name}") if model_dir.parent == SHIPPED_DIR.resolve() else model_dir


# ----------------------------------------------------------------- frames
def parse_slice(text: str) -> slice:
    """'a:b:c' (any part may be empty) or a single index 'i' -> slice."""
    try:
        parts = [int(p) if p.strip() else None for p in text.split(":")]
    except ValueError:
        raise DataError(f"--frames '{text}': not a slice like '-200:' or '0:100:5'") from None
    if len(parts) == 1:
        i = parts[0]
        return slice(i, (i + 1) or None)
    if len(parts) > 3:
        raise DataError(f"--frames '{text}': not a slice like '-200:' or '0:100:5'")
    if len(parts) == 3 and parts[2] == 0:
        raise DataError(f"--frames '{text}': the step of a slice must not be zero")
    return slice(*parts)


def select_frames(data_path, manifest, frames_slice=None, split=None) -> list:
    """The labelled frames to evaluate: all, a slice, or a recorded split part."""
    from .data import frames_of
    from .files import check_same_content, fingerprint

    frames = frames_of(data_path)
    if split is not None:
        if "sha256" in manifest["data"]:
            check_same_content(manifest["data"], fingerprint(data_path), "the data file the model was trained on (--split needs the same data file; --frames takes any)")
        n_expected = manifest["data"]["n_frames"]
        if len(frames) != n_expected:
            raise DataError(f"{data_path}: {len(frames)} frames, but the model was trained on a file with "
                            f"{n_expected}; --split needs the same data file (use --frames)")
        return [frames[i] for i in manifest["split"][split]]
    chosen = frames[parse_slice(frames_slice)] if frames_slice else frames
    if not chosen:
        raise DataError(f"{data_path}: --frames {frames_slice} selects no frames")
    return chosen


# ------------------------------------------------------------ predictions
def predict(models, frames, data_path) -> dict:
    """{name: (energies_eV (n,), [forces_eV_per_A (N_i, 3)])} for fast, slow,
    total (= fast + slow) and, if trained, baseline. For a distilled pair the
    baseline is the teacher and slow is teacher − fast (each model called once)."""
    names = ("fast", "baseline") if models.teacher is not None else tuple(models.models)
    out = {name: _predict_one(models.calculator(name), frames, data_path) for name in names}
    if models.teacher is not None:
        out["slow"] = _combine(out["baseline"], out["fast"], -1.0)
    out["total"] = _combine(out["fast"], out["slow"], 1.0)
    return out


def _combine(a, b, weight_b: float):
    """a + weight_b·b for (energies, [forces]) predictions."""
    return a[0] + weight_b * b[0], [fa + weight_b * fb for fa, fb in zip(a[1], b[1])]


def _predict_one(calc, frames, data_path):
    energies, forces = [], []
    for i, atoms in enumerate(frames):
        a = atoms.copy()
        a.calc = calc
        try:
            energies.append(a.get_potential_energy())
        except DataError as exc:
            raise DataError(f"{data_path}, frame {i} of the selection: {exc}") from None
        forces.append(a.get_forces())
    return np.array(energies), forces


# ---------------------------------------------------------------- metrics
def energy_errors_meV_per_atom(pred_eV, frames) -> np.ndarray:
    """(pred − ref)/N per frame, meV/atom, shape (n_frames,)."""
    ref = np.array([a.info["energy"] for a in frames])
    n_atoms = np.array([len(a) for a in frames])
    return 1000.0 * (np.asarray(pred_eV) - ref) / n_atoms


def force_errors_meV_per_A(pred_forces, frames) -> np.ndarray:
    """All Cartesian components of pred − ref, meV/Å, shape (3·Σ N_i,)."""
    return 1000.0 * np.concatenate([(f - a.arrays["forces"]).ravel() for f, a in zip(pred_forces, frames)])


def mae_rmse(errors) -> tuple[float, float]:
    errors = np.asarray(errors, dtype=float)
    return float(np.mean(np.abs(errors))), float(np.sqrt(np.mean(errors**2)))


def rms_meV_per_A(forces) -> float:
    """RMS over all components of a list of (N, 3) force arrays in eV/Å, in meV/Å."""
    return 1000.0 * float(np.sqrt(np.mean(np.concatenate([np.ravel(f) for f in forces]) ** 2)))


def errors(prediction, frames) -> dict:
    """The four error numbers of one model (see ERROR_KEYS)."""
    e_mae, e_rmse = mae_rmse(energy_errors_meV_per_atom(prediction[0], frames))
    f_mae, f_rmse = mae_rmse(force_errors_meV_per_A(prediction[1], frames))
    return dict(zip(ERROR_KEYS, (e_mae, e_rmse, f_mae, f_rmse)))


def force_mae_by_species_meV_per_A(pred_forces, frames) -> dict:
    """{symbol: force MAE over that species' atoms' components}, meV/Å: where a
    model's error sits (e.g. on the hydrogens)."""
    symbols = np.concatenate([a.get_chemical_symbols() for a in frames])
    per_atom = 1000.0 * np.concatenate([np.abs(f - a.arrays["forces"]) for f, a in zip(pred_forces, frames)])
    return {s: float(per_atom[symbols == s].mean()) for s in sorted(set(symbols.tolist()))}


def error_report(frames, predictions) -> dict:
    """The `mtsmlip eval --json` document (baseline is null without a baseline)."""
    names = [n for n in ("fast", "total", "baseline") if n in predictions]
    return {
        "fast": errors(predictions["fast"], frames),
        "total": errors(predictions["total"], frames),
        "baseline": errors(predictions["baseline"], frames) if "baseline" in predictions else None,
        "force_mae_by_species_meV_per_A": {n: force_mae_by_species_meV_per_A(predictions[n][1], frames)
                                            for n in names},
        "fast_force_rms_meV_per_A": rms_meV_per_A(predictions["fast"][1]),
        "slow_force_rms_meV_per_A": rms_meV_per_A(predictions["slow"][1]),
        "n_frames": len(frames),
    }


def check_finite_report(report, data_path) -> None:
    """DataError rather than NaN metrics (a model that returns NaN on these frames)."""
    for name in ("fast", "total", "baseline"):
        values = (report[name] or {}).values()
        if not all(np.isfinite(v) for v in values):
            raise DataError(f"{data_path}: the {name} model gives NaN or inf energies or forces on these "
                            "frames; its errors cannot be reported")


def format_report(report, plot_path) -> str:
    lines = [f"{report['n_frames']} frames        E MAE   E RMSE  (meV/atom)    F MAE   F RMSE  (meV/Å)"]
    for name in ("fast", "total", "baseline"):
        r = report[name]
        if r is not None:
            lines.append(f"  {name:<9} {r['energy_mae_meV_per_atom']:9.2f} {r['energy_rmse_meV_per_atom']:8.2f}"
                         f"              {r['force_mae_meV_per_A']:8.1f} {r['force_rmse_meV_per_A']:8.1f}")
    for name, by_species in report["force_mae_by_species_meV_per_A"].items():
        lines.append(f"  F MAE by species, {name}: " + ", ".join(f"{s} {v:.1f}" for s, v in by_species.items()))
    lines.append(f"  force RMS: fast {report['fast_force_rms_meV_per_A']:.1f} meV/Å, "
                 f"slow {report['slow_force_rms_meV_per_A']:.1f} meV/Å")
    lines.append(f"  parity plot: {plot_path}")
    return "\n".join(lines)


# ------------------------------------------------------------------ plots
def write_parity_plot(path, frames, predictions) -> Path:
    """Predicted against reference energy per atom and force components for
    fast, total and baseline; written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .files import atomic_write

    fig, (ax_e, ax_f) = plt.subplots(1, 2, figsize=(10, 4.5))
    ref_e = np.array([a.info["energy"] / len(a) for a in frames])
    ref_f = np.concatenate([a.arrays["forces"].ravel() for a in frames])
    for name in ("baseline", "total", "fast"):
        if name in predictions:
            e, f = predictions[name]
            ax_e.scatter(ref_e, e / np.array([len(a) for a in frames]), s=6, label=name, alpha=0.6)
            ax_f.scatter(ref_f, np.concatenate([x.ravel() for x in f]), s=1, label=name, alpha=0.3)
    _finish_axes(ax_e, "energy (eV/atom)")
    _finish_axes(ax_f, "force component (eV/Å)")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
    return Path(path)


def _finish_axes(ax, label) -> None:
    lo, hi = ax.get_xlim()
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    ax.set_xlabel(f"reference {label}")
    ax.set_ylabel(f"predicted {label}")
    ax.legend(markerscale=3)
