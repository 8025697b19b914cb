"""Cost of the calls MTS makes, for one or more model directories side by side:
the fast force, the slow force *as RESPA pays it* (called at the positions the
fast force was just called at, so a distilled pair's correction teacher − fast
costs one teacher call), and the baseline (for a distilled pair: the teacher);
then the bound baseline / (fast + slow/n) per n. Round-robin medians after
warm-up, through the engine's force providers (what `md` and `compare` run).

    python benchmarks/pair_cost.py --models water,training/water/distill/run \\
        [--structure FILE] [--teacher SPEC] [--n-inner 2,4,6,8] [--repeats 20] [--threads N]

Without --structure: the first frame of the water data (192 atoms). --teacher
is passed to every directory distilled from an external teacher.
"""

from __future__ import annotations

import argparse
import torch

from model_cost import median_ms, water_box_192


def pair_calls(model_dir, atoms, teacher=None) -> dict:
    """{part: call} for one directory; each call moves the atoms a little."""
    import mtsmlip
    from mtsmlip.forces import md_providers

    models = mtsmlip.load(model_dir, teacher=teacher if _needs_teacher(model_dir) else None)
    fast, slow = md_providers(models, atoms)
    baseline, _ = md_providers(models, atoms, baseline=True)
    x = {"fast": torch.tensor(atoms.positions, dtype=torch.float64)}

    def fast_call():
        x["fast"] = x["fast"] + 1e-4
        fast(x["fast"])

    def baseline_call():
        baseline(x["fast"] + 2e-4)

    return {"fast": fast_call, "slow": lambda: slow(x["fast"]), "baseline": baseline_call}


def _needs_teacher(model_dir) -> bool:
    import json

    from mtsmlip.shipped import resolve_model_dir

    teacher = json.loads((resolve_model_dir(model_dir) / "manifest.json").read_text()).get("teacher")
    return bool(teacher) and teacher["kind"] != "mtsmlip-model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", required=True, help="comma-separated model directories (or shipped names)")
    parser.add_argument("--structure", default=None)
    parser.add_argument("--teacher", default=None)
    parser.add_argument("--n-inner", default="2,4,6,8")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from mtsmlip.data import read_structure

    atoms = read_structure(args.structure) if args.structure else water_box_192()
    dirs = args.models.split(",")
    calls = {(d, part): call for d in dirs for part, call in pair_calls(d, atoms, args.teacher).items()}
    ms = median_ms(calls, args.repeats)  # round-robin: each "slow" right after its "fast"
    ns = [int(n) for n in args.n_inner.split(",")]
    print(f"{len(atoms)} atoms, {torch.get_num_threads()} threads, median of {args.repeats} round-robin calls")
    print(f"{'model directory':<34}{'fast ms':>9}{'slow ms':>9}{'base ms':>9}  bound " + " / ".join(f"n={n}" for n in ns))
    for d in dirs:
        fast, slow, base = (ms[(d, p)] for p in ("fast", "slow", "baseline"))
        bounds = " / ".join(f"{base / (fast + slow / n):.2f}x" for n in ns)
        print(f"{d[-34:]:<34}{fast:>9.1f}{slow:>9.1f}{base:>9.1f}  {bounds}")


if __name__ == "__main__":
    main()
