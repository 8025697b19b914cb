"""The slow-model sweep in one table: for each trained model directory, the slow
model's architecture and cost per call, the held-out accuracy of fast + slow
against the baseline's, the model-cost bound per n, and (if given) what
`mtsmlip compare` measured.

    python benchmarks/slow_sweep.py --data water_1593.extxyz.gz --models water DIR ... \
        [--compare DIR=compare.json ...] [--sizes 192,1536] [--repeats 20] [--threads N]

Accuracy is on each directory's own test split (the last 200 frames for the
water recipes). Costs are timed round-robin in one process through the MD
engine's force provider (what `md` and `compare` run), so every model sees the
same machine load; quote ratios, not milliseconds, from a shared machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from model_cost import engine_call, median_ms, water_box  # noqa: E402

N_VALUES = (2, 4, 6, 8)


def architecture(config: dict) -> str:
    """A short name of a model config, e.g. 'NequIP 2L 32f l=1 5.0 Å'."""
    kind = config["_target_"].rsplit(".", 1)[-1].replace("GNNModel", "").replace("Model", "")
    width = config.get("num_features", config.get("num_scalar_features"))
    return f"{kind} {config['num_layers']}L {width}f l={config['l_max']} {config['r_max']:.1f} Å"


def accuracy(models, data_path) -> dict:
    """Held-out errors of fast, fast + slow and the baseline on the test split."""
    from mtsmlip.evaluate import error_report, predict, select_frames

    frames = select_frames(data_path, models.manifest, split="test")
    return error_report(frames, predict(models, frames, data_path))


def compare_numbers(path) -> dict:
    from mtsmlip.files import read_json

    result = read_json(Path(path), "compare result")
    by_n = {r["n_inner"]: r for r in result["runs"]}
    best = result["largest_n_within_tolerance"]
    return {"largest_n": best, "speedup_at_best": by_n[best]["speedup"] if best in by_n else None,
            "ps": result["baseline"]["simulated_ps"]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the reference frames the models were trained on")
    parser.add_argument("--models", nargs="+", required=True, help="model directories (or 'water')")
    parser.add_argument("--compare", action="append", default=[], metavar="DIR=compare.json",
                        help="a compare result of one of the model directories (repeatable)")
    parser.add_argument("--sizes", default="192", help="atoms per box, comma-separated (192·k³)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    import torch

    import mtsmlip

    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = {name: mtsmlip.load(name) for name in args.models}
    compares = dict(item.split("=", 1) for item in args.compare)
    errors = {}
    for name, models in loaded.items():
        print(f"evaluating {name} on its test split ...", file=sys.stderr, flush=True)
        errors[name] = accuracy(models, args.data)
    first = next(iter(loaded.values()))
    for n_atoms in (int(n) for n in args.sizes.split(",")):
        atoms = water_box(n_atoms)
        calls = {("fast", None): engine_call(first.models["fast"], atoms, "cpu"),
                 ("baseline", None): engine_call(first.models["baseline"], atoms, "cpu")}
        calls.update({("slow", name): engine_call(m.models["slow"], atoms, "cpu") for name, m in loaded.items()})
        ms = median_ms(calls, args.repeats)
        fast_ms, base_ms = ms[("fast", None)], ms[("baseline", None)]
        print(f"\n{n_atoms} atoms, {torch.get_num_threads()} threads, median of {args.repeats} calls: "
              f"fast {fast_ms:.1f} ms, baseline {base_ms:.1f} ms ({architecture(first.models['baseline'].config)})")
        head = (f"{'model':<34}{'slow':<26}{'params':>8}{'slow ms':>9}{'F MAE pair':>11}{'baseline':>9}"
                f"{'E MAE pair':>11}{'baseline':>9}" + "".join(f"{'bound n=' + str(n):>11}" for n in N_VALUES)
                + f"{'largest n':>10}{'speedup':>9}")
        print(head)
        for name, models in loaded.items():
            e, slow_ms = errors[name], ms[("slow", name)]
            cmp = compare_numbers(compares[name]) if name in compares else None
            bound = "".join(f"{base_ms / (fast_ms + slow_ms / n):>10.2f}x" for n in N_VALUES)
            measured = (f"{cmp['largest_n']!s:>10}{cmp['speedup_at_best']:>8.2f}x" if cmp and cmp["speedup_at_best"]
                        else f"{'-':>10}{'-':>9}")
            print(f"{str(name)[-34:]:<34}{architecture(models.models['slow'].config):<26}"
                  f"{models.manifest['parameters']['slow']:>8}{slow_ms:>9.1f}"
                  f"{e['total']['force_mae_meV_per_A']:>11.1f}{e['baseline']['force_mae_meV_per_A']:>9.1f}"
                  f"{e['total']['energy_mae_meV_per_atom']:>11.2f}{e['baseline']['energy_mae_meV_per_atom']:>9.2f}"
                  f"{bound}{measured}")


if __name__ == "__main__":
    main()
