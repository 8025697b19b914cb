"""``mtsmlip compare --repeats K``: the whole comparison from K decorrelated
starts, and a verdict with confidence intervals.

Repeat k (OUT/repeat-k) is a complete comparison of its own (:mod:`mtsmlip.compare`):
its own equilibrated start (seed + 1000·(k − 1): other momenta and other
Langevin noise during the equilibration), the baseline, the pair at n = 1
(always added: it separates the model's error from the integrator's) and MTS
at each n, run side by side. Repeat 1 runs the --n-inner auto probe and the
force spectra; the other repeats reuse the probe's n and skip the spectra.

Every scalar observable of every run (``observables`` in each repeat's
compare.json: species temperatures, diffusion, g(r) first peaks, VDOS
centroids, reorientation times, bond lengths, drift, ...) is then compared
over the repeats as paired differences (:mod:`mtsmlip.analysis.repeats`):

* the model's error: the pair at n = 1 against the baseline;
* the integrator's error: MTS at n against the pair at n = 1.

Each gets a mean difference, its 95 % confidence interval from the spread
across repeats, and a verdict against a physical tolerance: same, different,
or cannot tell (with the repeats that would settle it). The largest n is
judged on the integrator's error. OUT/compare.json, OUT/report.md and
OUT/differences.png hold the result; rerunning a finished comparison only
re-analyses what the repeats saved.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from .analysis import repeats as rp
from .compare import _say, compare, settings_from_args
from .data import read_structure
from .md.safety import MDInstability
from .system import is_periodic
from .errors import DataError
from .files import atomic_write, atomic_write_json, check_output_dir, output_lock, read_json, run_files_in

SEED_STRIDE = 1000  # repeat k uses seed + SEED_STRIDE·(k − 1): runs of one repeat use seed + 1 + i
DEFAULT_REPEATS = 4  # t(0.975, K−1)/√K, the CI's width in units of one run's spread: 9.0, 2.5, 1.6, 1.2 for K = 2..5


def repeat_dir(out: Path, k: int) -> Path:
    return Path(out) / f"repeat-{k}"


def repeat_settings(cfg, k: int, n_auto: int | None, kind: str | None = None):
    """The settings of repeat k (1-based): n = 1 added; from the second on, its
    own seed, the probe's n in place of 'auto', the kind of system repeat 1
    found in place of 'auto' (so that every repeat is judged by the same
    observables), and no force spectra."""
    n_inner = tuple(sorted({1, *cfg.n_inner}, key=lambda n: (n == "auto", n if n != "auto" else 0)))
    cfg = replace(cfg, n_inner=n_inner)
    if k == 1:
        return cfg
    cfg = replace(cfg, seed=cfg.seed + SEED_STRIDE * (k - 1), spectrum_ps=0.0)
    if cfg.system == "auto" and kind is not None:
        cfg = replace(cfg, system=kind)
    return cfg.with_auto(n_auto) if "auto" in cfg.n_inner else cfg


def compare_repeated(model_dir, structure_path, cfg, out, repeats: int, tolerance_overrides=None,
                     progress_bar=True, teacher=None) -> dict:
    """Run (or resume) every repeat, then aggregate; returns OUT/compare.json's content."""
    if not (isinstance(repeats, int) and repeats >= 2):
        raise DataError(f"--repeats: compare_repeated needs at least 2 repeats (got {repeats!r})")
    tolerances = rp.tolerances_with(tolerance_overrides)
    cfg.check()
    out = check_output_dir(out)
    structure = read_structure(structure_path)
    replicas = not is_periodic(structure)
    with output_lock(out, "compare"):
        fresh = _check_same_repeats(out, cfg, repeats, same_count=replicas)
        results, n_auto, kind = [], None, None
        try:
            if replicas:
                results = replica_results(model_dir, structure, cfg, out, repeats, progress_bar, teacher)
            for k in range(1, repeats + 1) if not replicas else ():
                _say(f"repeat {k} of {repeats}")
                done = run_repeat(lambda: compare(model_dir, structure_path, repeat_settings(cfg, k, n_auto, kind),
                                                  repeat_dir(out, k), progress_bar=progress_bar, teacher=teacher),
                                  out, k)
                if done is not None:
                    results.append({**done, "repeat": k})
                if k == 1 and results:  # repeat 1 sets the probe's n and the kind of system for all
                    probe = results[0].get("n_inner_auto")
                    n_auto, kind = int(probe["n_inner"]) if probe else None, results[0]["system_kind"]
        except DataError:  # bad input, refused before any run: leave OUT as it was
            if fresh and not any(repeat_dir(out, k).exists() for k in range(1, repeats + 1)) \
                    and not (out / "replicas").exists():
                (out / "repeats.json").unlink(missing_ok=True)
                (out / REPLICAS_FILE).unlink(missing_ok=True)
            raise
        left_out = [read_json(path, "failed repeat")["why"] for path in sorted(out.glob("repeat-*-unstable.json"))]
        if len(results) < 2:
            raise MDInstability(f"only {len(results)} of {repeats} repeats ran (" + "; ".join(left_out)
                                + "): too few for a confidence interval")
        result = aggregate(results, tolerances, left_out)
        write_report(result, out)
        return read_json(out / "compare.json", "comparison result")


def run_repeat(comparison, out: Path, k: int) -> dict | None:
    """One repeat's comparison, or None when its baseline blew up (the safety
    check's MDInstability) in a repeat after the first: it is left out, said, and
    saved (OUT/repeat-k-unstable.json) so a rerun does not replay it. The first
    repeat's baseline must hold (its probe chooses n for all)."""
    marker = out / f"repeat-{k}-unstable.json"
    if marker.is_file():
        return None
    try:
        return comparison()
    except MDInstability as exc:
        if k == 1:
            raise
        why = f"repeat {k}: {exc}"
        _say(f"{why}; it is left out, the other repeats go on")
        atomic_write_json(marker, {"why": why})
        return None


def _check_same_repeats(out: Path, cfg, repeats: int, same_count: bool = False) -> bool:
    """OUT holds repeats of this comparison (same settings; more repeats may be
    asked for, fewer are the first of them, unless `same_count`: replicas), or
    nothing yet; a single comparison (--repeats 1) in OUT is not continued as
    repeats. True when OUT was new."""
    wanted = json.loads(json.dumps({"settings": asdict(cfg)}))
    if same_count:
        wanted["replicas"] = repeats
    wanted["settings"].pop("system", None)  # how runs are judged, not what runs
    path = out / "repeats.json"
    if path.is_file():
        had = read_json(path, "comparison repeats")
        had.pop("repeats", None)
        defaults = json.loads(json.dumps(asdict(type(cfg)(ps=cfg.ps))))
        for key in set(wanted["settings"]) - set(had.get("settings", {})):  # added since that run, at its default
            if wanted["settings"][key] == defaults[key]:
                del wanted["settings"][key]
        if had != wanted:
            changed = sorted(k for k in set(had.get("settings", {})) | set(wanted["settings"])
                             if had.get("settings", {}).get(k) != wanted["settings"].get(k))
            raise DataError(f"{path}: OUT holds repeats of a comparison with other {', '.join(changed)}; "
                            "use the same options, or another --out")
        return False
    if run_files_in(out):
        raise DataError(f"{out}: --out holds {', '.join(p.name for p in run_files_in(out)[:4])} but no repeats.json: "
                        "not a comparison with repeats to continue (--repeats 1 writes a single comparison); "
                        "use an empty or new --out")
    atomic_write_json(path, wanted)
    return True


# ---- isolated molecules: the repeats as replicas in one engine --------------
REPLICAS_FILE = "replicas.extxyz"


def replica_results(model_dir, molecule, cfg, out: Path, count: int, progress_bar, teacher) -> list[dict]:
    """An isolated molecule's repeats as `count` randomly rotated copies beyond
    every cutoff in one comparison (OUT/replicas; one model call serves all
    copies, so K repeats cost little more than one): each copy's observables, in
    the shape of a repeat's compare.json. Langevin (the default for molecules)
    thermalises every atom, so the copies are independent."""
    import ase.io

    from .compare import compare_with_records
    from .md.replicas import replicate
    from .models import TrainedModels
    from .shipped import resolve_model_dir

    path = out / REPLICAS_FILE
    if not path.is_file():  # the same seed gives the same copies: a resumed run finds the same file
        models = TrainedModels.load(resolve_model_dir(model_dir), teacher=teacher)
        copies = replicate(molecule, count, models.largest_cutoff_A() + cfg.skin_A + 1.0, seed=cfg.seed)
        atomic_write(path, lambda tmp: ase.io.write(tmp, copies, format="extxyz"))
    _say(f"{count} repeats as {count} copies of the molecule in one comparison ({out / 'replicas'})")
    result, records = compare_with_records(model_dir, path, repeat_settings(cfg, 1, None), out / "replicas",
                                           progress_bar=progress_bar, teacher=teacher)
    return [replica_result(records, result, k, count) for k in range(count)]


def replica_result(records, result: dict, k: int, count: int) -> dict:
    """Copy k's part of a replicated comparison, as a repeat's compare.json holds it."""
    from .analysis import bonded_pairs, nyquist_THz
    from .compare_report import replica_observables

    size = len(records.template) // count
    part = slice(k * size, (k + 1) * size)
    template = records.template[part]
    first = template.copy()
    first.positions = records.runs[0].samples["positions_A"][0][part]
    bonds, band = bonded_pairs(first), nyquist_THz(max(r.settings.outer_fs for r in records.runs))
    by_n = {r["n_inner"]: r for r in result["runs"]}

    def observables(record):
        sliced = {name: record.samples[name][:, part] for name in ("positions_A", "velocities_A_per_fs")}
        return replica_observables(sliced, template, bonds, record.settings.outer_fs, band)

    runs = []
    for record in records.runs[1:]:
        n = record.settings.n_inner
        entry = {"n_inner": n, "speedup": by_n[n]["speedup"]}
        if record.unstable:
            entry.update(unstable=record.unstable, reasons=by_n[n]["reasons"], observables=None)
        else:
            entry["observables"] = observables(record)
        runs.append(entry)
    return {"system_kind": "molecule", "replica": k,
            "baseline": {"ns_per_day": result["baseline"]["ns_per_day"], "observables": observables(records.runs[0])},
            "runs": runs, "n_inner_auto": result.get("n_inner_auto")}


# ---- aggregation: pure, from the repeats' compare.json ----------------------
def _by_n(result: dict) -> dict:
    return {r["n_inner"]: r for r in result["runs"]}


def aggregate(results: list[dict], tolerances=rp.TOLERANCES, left_out=()) -> dict:
    """The comparison over K repeats (their compare.json contents, in order):
    the model's error (pair n = 1 against baseline), the integrator's error (MTS
    at n against the pair at n = 1), speedups with CIs, and the largest n."""
    if not results:
        raise DataError("aggregate: no repeats to aggregate")
    n_values = sorted(set.intersection(*(set(_by_n(r)) for r in results)))
    if 1 not in n_values:
        raise DataError("aggregate: every repeat needs a run at n = 1 (the pair with velocity Verlet)")
    baselines = [r["baseline"] for r in results]
    if any(b.get("observables") is None for b in baselines):
        raise DataError("aggregate: a repeat's compare.json has no observables (written by an older mtsmlip): "
                        "rerun that compare to re-analyse it")

    replicas = all("replica" in r for r in results)

    def once_for_replicas(whys: list, count: int) -> list:
        # copies run as replicas share one engine: one blow-up stops them all, and is one event
        if whys and replicas:
            return [f"all {count} copies (one engine): {whys[0].split(': ', 1)[1]}"]
        return whys

    def comparison(n, reference):
        runs = [_by_n(r)[n] for r in results]
        refs = baselines if reference == "baseline" else [_by_n(r)[reference] for r in results]
        unstable = once_for_replicas([f"repeat {k + 1}: {run['reasons'][0]}" for k, run in enumerate(runs)
                                      if run.get("unstable")], len(runs))
        # a reference (the pair at n = 1) that blew up is the model's failure, shown in its own column:
        # here those repeats drop out, and with fewer than 2 left the integrator's error cannot be told
        missing = once_for_replicas([f"repeat {k + 1}: the reference (pair at n = 1) blew up"
                                     for k, ref in enumerate(refs) if ref.get("unstable")], len(runs))
        found = [] if unstable else rp.differences(
            [None if ref.get("unstable") else run["observables"] for run, ref in zip(runs, refs)],
            [None if ref.get("unstable") else ref["observables"] for ref in refs], tolerances)
        return {"n_inner": n, "against": reference, "unstable": unstable, "reference_unstable": missing,
                "dynamics": rp.overall(found, bool(unstable)), "sampling": rp.overall(found, bool(unstable), "sampling"),
                "differences": [d.as_dict() for d in found],
                "speedup": _interval([run["speedup"] for run in runs if run.get("speedup") is not None])}

    model = comparison(1, "baseline")
    integrator = [comparison(n, 1) for n in n_values if n != 1]
    dynamics = {c["n_inner"]: c["dynamics"] for c in integrator}
    sampling = {c["n_inner"]: c["sampling"] for c in integrator}
    first = results[0]
    return {"repeats": len(results), "system_kind": first.get("system_kind"),
            "confidence": rp.CONFIDENCE,
            "tolerances": {k: {"value": b.value, "relative": b.relative, "unit": b.unit, "what": b.what}
                           for k, b in tolerances.items()},
            "model_error": model, "integrator_error": integrator,
            "largest_n": {"dynamics_same": rp.largest_n(dynamics, [rp.SAME]),
                          "dynamics_not_different": rp.largest_n(dynamics, [rp.SAME, rp.CANNOT_TELL]),
                          "sampling_same": rp.largest_n(sampling, [rp.SAME]),
                          "sampling_not_different": rp.largest_n(sampling, [rp.SAME, rp.CANNOT_TELL])},
            "baseline_ns_per_day": _interval([r["baseline"]["ns_per_day"] for r in results]),
            "n_inner_auto": first.get("n_inner_auto"),
            "baseline_step_headroom": _least_headroom([r.get("baseline_step_headroom") for r in results]),
            "per_repeat": [f"replicas (copy {r['replica'] + 1})" if "replica" in r else f"repeat-{r.get('repeat', k)}"
                           for k, r in enumerate(results, 1)],
            "left_out": list(left_out)}


def _least_headroom(found: list):
    """The repeats' baseline-step headroom (compare_report.baseline_step_headroom)
    with the smallest step, or None if any repeat has none."""
    if not found or any(h is None for h in found):
        return None
    return min(found, key=lambda h: h["baseline_step_fs"])


def _interval(values) -> dict | None:
    """Mean and CI of per-repeat values; copies run as replicas share one timing,
    which is one measurement (no interval)."""
    if not values:
        return None
    i = rp.mean_interval(values if len(set(values)) > 1 else values[:1])
    return rp.json_safe({"mean": i.mean, "low": i.low, "high": i.high, "repeats": i.repeats})


# ---- table, plot, report --------------------------------------------------------
def _cell(d: dict) -> str:
    diff = d["difference"]
    if diff["low"] is None:
        return f"{diff['mean']:+.3g} (1 run) {d['verdict']}"
    half = (diff["high"] - diff["low"]) / 2
    text = f"{diff['mean']:+.3g} ± {half:.2g} {_mark(d['verdict'])}"
    return text + (f" (~{d['repeats_to_settle']} repeats)" if d.get("repeats_to_settle") else "")


def _mark(verdict: str) -> str:
    return {rp.SAME: "same", rp.DIFFERENT: "DIFFERENT", rp.CANNOT_TELL: "cannot tell"}[verdict]


def format_table(result: dict) -> str:
    """Rows: observables; columns: the model's error (pair n = 1 − baseline) and
    the integrator's (MTS n − pair n = 1): mean difference ± CI half width, verdict."""
    columns = [result["model_error"]] + result["integrator_error"]
    heads = ["pair n=1 − baseline"] + [f"n={c['n_inner']} − pair n=1" for c in columns[1:]]
    names = []
    for c in columns:
        names += [d["observable"] for d in c["differences"] if d["observable"] not in names]
    tol = result["tolerances"]
    rows = [["observable (tolerance)"] + heads]
    for name in names:
        bound = tol[rp.kind_of(name)]
        unit = f" {bound['unit']}" if bound["unit"] and not bound["relative"] else ""
        label = f"{name}{unit} ({tolerance_text(bound, with_unit=False)})"
        cells = []
        for c in columns:
            found = next((d for d in c["differences"] if d["observable"] == name), None)
            cells.append(_cell(found) if found else ("unstable" if c["unstable"] else "-"))
        rows.append([label] + cells)
    rows.append(["speedup against the baseline"] + [_speed(c["speedup"]) for c in columns])
    rows.append(["verdict: dynamics / sampling"] + [f"{_mark(c['dynamics'])} / {_mark(c['sampling'])}" for c in columns])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    best = result["largest_n"]
    lines += ["", f"{result['repeats']} independent repeats; mean difference ± {100 * result['confidence']:g} % CI "
              "(Student t over the repeats); same: the CI lies within the tolerance; DIFFERENT: outside it; "
              "cannot tell: it straddles a bound (~K: repeats of this length that would settle it)."]
    for c in columns:
        for why in c["unstable"]:
            lines.append(f"n = {c['n_inner']} blew up: {why}")
        for why in c.get("reference_unstable", []):
            lines.append(f"n = {c['n_inner']}: {why}; that repeat is left out of its column")
    for why in result.get("left_out", []):
        lines.append(f"left out (its baseline blew up): {why}")
    if result.get("baseline_step_headroom"):
        from .compare_report import headroom_text

        lines.append(headroom_text(result["baseline_step_headroom"]))
    lines.append(f"the model's error (pair at n = 1 against the baseline): dynamics {_mark(result['model_error']['dynamics'])}, "
                 f"sampling {_mark(result['model_error']['sampling'])}")
    lines.append(f"largest n, judged on the integrator's error: dynamics {_n(best['dynamics_same'])} same "
                 f"({_n(best['dynamics_not_different'])} not shown different); sampling {_n(best['sampling_same'])} same "
                 f"({_n(best['sampling_not_different'])} not shown different)")
    return "\n".join(lines)


def tolerance_text(bound: dict, with_unit: bool = True) -> str:
    """'±1 %' for a relative tolerance, '±0.01 Å' (or '±0.01') for an absolute one."""
    if bound["relative"]:
        return f"±{100 * bound['value']:g} %"
    return f"±{bound['value']:g} {bound['unit']}".rstrip() if with_unit else f"±{bound['value']:g}"


def _n(n) -> str:
    return "none" if n is None else f"n = {n}"


def _speed(s) -> str:
    if not s:
        return "-"
    if s["low"] is None:
        return f"{s['mean']:.2f}x"
    return f"{s['mean']:.2f}x ± {(s['high'] - s['low']) / 2:.2f}"


def write_plot(result: dict, path: Path) -> bool:
    """differences.png: each observable's mean difference over its tolerance, with
    the CI as an error bar, against n (n = 1: the model's error); the band ±1 is
    'the same'. Colour: the verdict."""
    from .analysis.plots import plot_differences

    columns = [result["model_error"]] + result["integrator_error"]
    series = {}
    for c in columns:
        for d in c["differences"]:
            if d["difference"]["low"] is None or not d["allowed"]:
                continue
            scale = d["allowed"]
            series.setdefault(d["observable"], []).append(
                (c["n_inner"], d["difference"]["mean"] / scale, d["difference"]["low"] / scale,
                 d["difference"]["high"] / scale, d["verdict"]))
    if not series:
        return False
    plot_differences(series, path)
    return True


def write_report(result: dict, out: Path) -> None:
    out = Path(out)
    atomic_write_json(out / "compare.json", result)
    plotted = write_plot(result, out / "differences.png")
    text = ["# mtsmlip compare: repeats", "",
            f"{result['repeats']} independent repeats ("
            + ("copies of the molecule in one comparison, OUT/replicas, with its own report" if "replicas" in
               result["per_repeat"][0] else "OUT/repeat-k, each a full comparison with its own report") + "); "
            "each column compares paired runs from the same start. The model's error: the pair at n = 1 against the "
            "baseline. The integrator's error: MTS at n against the pair at n = 1.", "",
            "```", format_table(result), "```", "", "## Tolerances", "",
            "| observable | tolerance | what |", "|---|---|---|"]
    for name, b in result["tolerances"].items():
        text.append(f"| {name} | {tolerance_text(b)} | {b['what']} |")
    text += ["", "Override with `--tolerance NAME=VALUE,...` (the same unit or fraction).", ""]
    if plotted:
        text.append("![differences](differences.png)")
    atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text("\n".join(text) + "\n"))


def run(args) -> int:
    """`mtsmlip compare`: K repeats (--repeats, default 4), or one run per n (--repeats 1)."""
    from . import compare as single

    out = Path(args.out)
    if args.repeats > 1 and (out / "settings.json").is_file() and not (out / "repeats.json").is_file():
        print(f"mtsmlip compare: {out} holds a single comparison (one run per n, from before --repeats): "
              "continuing it as one; --repeats needs another --out", file=sys.stderr)
        args.repeats = 1
    if args.repeats == 1:
        if args.tolerance:
            raise DataError("--tolerance needs --repeats 2 or more (one run per n is judged against the "
                            "baseline's own noise)")
        return single.run(args)
    return single.run_and_print(
        lambda: compare_repeated(args.model, args.structure, settings_from_args(args), args.out, args.repeats,
                                 dict(args.tolerance), progress_bar=not args.no_progress, teacher=args.teacher),
        args, format_table)


