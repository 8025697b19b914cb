"""nequip's own compile path against the eager model, one model call at a time:
ms per call (energy and edge forces, as the MD engine calls it), the first
call's compile time, and how far the compiled forces are from the eager ones.

    python benchmarks/model_compile.py [--device cpu|cuda] [--models fast,slow]
                                       [--sizes 1] [--calls 20] [--modes default]
                                       [--engine OUTER_STEPS --blocks 3]

The compiled model is what nequip's ``CompileGraphModel`` builds: the model
(forces included, by autograd) traced by ``make_fx`` into one graph, then
``torch.compile``-d. --modes: torch.compile modes to try ("default",
"reduce-overhead": CUDA graphs on a GPU, "max-autotune"); "static" after a
mode (e.g. "reduce-overhead:static") compiles for the one edge count of the
call (what a CUDA graph needs: the edge count is fixed between list rebuilds
when every candidate goes in), otherwise dynamic=True as nequip does.
The shipped water pair on the 192-atom box (--sizes: multiples of it, cubes).
--engine: the same compiled slow model inside the engine (MTS n = 4, NVE),
beside the eager one, in alternating blocks.
On this project's 2-core CPU the compiled graph was slower than eager, 0.53x
(fast) and 0.84x (slow) per call, 0.80x inside the engine
(docs/results/benchmarks.md); on a GPU this is the first look for a
CUDA-graph option.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

MODES = ("default", "reduce-overhead", "max-autotune")


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed_ms(call, calls: int, device) -> float:
    for _ in range(3):
        call()
    sync(device)
    start = time.perf_counter()
    for _ in range(calls):
        call()
    sync(device)
    return 1e3 * (time.perf_counter() - start) / calls


def model_input(loaded, atoms, device) -> tuple:
    """The graph the engine hands the model at the box's first positions."""
    from mtsmlip.forces import ModelForces

    provider = ModelForces(loaded, atoms, device=device)
    positions = torch.tensor(atoms.positions, dtype=torch.float64, device=device)
    edge_index, vectors, _ = provider.neighbors.edges(positions, provider.r_max)
    return provider.model, provider.graph(positions, edge_index, vectors)


class CompiledModel(torch.nn.Module):
    """A drop-in for a provider's model (dict in, dict out): nequip's trace of the
    model (a GraphModel) with its forces' backward, torch.compile-d, traced at the
    first call. The graph holds the backward already, so it runs under no_grad on
    detached inputs and weights (as nequip's own inference wrapper does): a graph
    that still expects a backward would keep CUDA-graph trees recording instead of
    replaying. dynamic: one graph for every edge count (else one per count)."""

    def __init__(self, model, mode: str = "default", dynamic: bool = True):
        super().__init__()
        self.eager, self.mode, self.dynamic, self.compiled = model, mode, dynamic, None

    def forward(self, data: dict) -> dict:
        from nequip.nn.compile import ListInputOutputStateDictWrapper
        from nequip.utils.fx import nequip_make_fx

        inner = self.eager.model
        if self.compiled is None:
            names = [n for n, _ in inner.named_parameters()] + [n for n, _ in inner.named_buffers()]
            self.tensors = [t.detach() for _, t in inner.named_parameters()] + \
                [t.detach() for _, t in inner.named_buffers()]
            self.keys = sorted(data)
            wrapped = ListInputOutputStateDictWrapper(inner, self.keys, ("edge_forces", "total_energy"), names)
            traced = nequip_make_fx(model=wrapped, data=data, fields=self.keys, extra_inputs=self.tensors)
            self.compiled = torch.compile(traced, mode=None if self.mode == "default" else self.mode,
                                          dynamic=self.dynamic)
        with torch.no_grad():
            forces, energy = self.compiled(*([data[k].detach() for k in self.keys] + self.tensors))
        return {"edge_forces": forces, "total_energy": energy}


def engine_rows(pair, atoms, device, outer_steps: int, blocks: int) -> None:
    """MTS n = 4 (NVE) with the slow model eager and compiled, in alternating
    blocks of `outer_steps` on one state each: ms per inner step, and how many
    graphs the compiler made (recompiles as the edge count changes)."""
    from torch._dynamo.utils import counters

    from mtsmlip.forces import ModelForces
    from mtsmlip.md import Engine, RunSettings

    engines = {}
    for label in ("slow eager", "slow compiled"):
        fast, slow = ModelForces(pair["fast"], atoms, device=device), ModelForces(pair["slow"], atoms, device=device)
        if label == "slow compiled":
            slow.model = CompiledModel(slow.model)
        engines[label] = Engine(atoms, fast, slow, RunSettings(0.5, 4), device=device)
        start = time.perf_counter()
        engines[label].run(2, progress=False)  # (the compile)
        print(f"engine, {label}: first 2 outer steps {time.perf_counter() - start:.0f} s", flush=True)
    seconds = {label: [] for label in engines}
    for _ in range(blocks):
        for label, engine in engines.items():
            sync(device)
            start = time.perf_counter()
            engine.run(outer_steps, progress=False)
            sync(device)
            seconds[label].append(time.perf_counter() - start)
    per_inner = {label: 1e3 * min(t) / (4 * outer_steps) for label, t in seconds.items()}
    for label, ms in per_inner.items():
        spread = 1e3 * max(seconds[label]) / (4 * outer_steps)
        print(f"engine, MTS n=4, {label:<14} {ms:8.2f} ms per inner step (best of {blocks} blocks of "
              f"{outer_steps} outer steps; worst {spread:.2f})")
    print(f"engine: compiled/eager {per_inner['slow eager'] / per_inner['slow compiled']:.2f}x; graphs compiled: "
          f"{dict(counters['stats']).get('unique_graphs', 'n/a')}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--models", default="fast,slow")
    p.add_argument("--sizes", default="1", help="water boxes as multiples of 192 atoms (cubes)")
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--modes", default=None, help="comma-separated; default: 'default' on a CPU, "
                   "'default,reduce-overhead:static' on a GPU")
    p.add_argument("--engine", type=int, default=0, metavar="OUTER_STEPS",
                   help="also run MTS n = 4 with the slow model eager and compiled, in alternating blocks "
                        "of this many outer steps (the first size)")
    p.add_argument("--blocks", type=int, default=3, help="blocks per engine run (with --engine)")
    args = p.parse_args(argv)
    device = args.device
    modes = (args.modes or ("default,reduce-overhead:static" if torch.device(device).type == "cuda" else "default"))
    modes = [m.strip() for m in modes.split(",") if m.strip()]
    for mode in modes:
        if mode.split(":")[0] not in MODES:
            p.error(f"--modes: {mode!r} is not one of {MODES} (optionally with ':static')")
    warnings.filterwarnings("ignore")
    import mtsmlip
    from gpu import water  # the same boxes as benchmarks/gpu.py

    pair = mtsmlip.load("water").models
    name = torch.cuda.get_device_name() if torch.device(device).type == "cuda" else "CPU"
    print(f"device: {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'model':<8}{'atoms':>7}{'edges':>8}  {'variant':<28}{'ms/call':>10}{'vs eager':>10}"
          f"{'compile s':>11}{'max|dF| eV/A':>14}")
    for size in [int(s) for s in args.sizes.split(",") if s]:
        atoms = water(size)
        for model_name in [m.strip() for m in args.models.split(",") if m.strip()]:
            model, data = model_input(pair[model_name], atoms, device)
            eager = {k: v.detach() for k, v in model(dict(data)).items()}
            eager_ms = timed_ms(lambda: model(dict(data)), args.calls, device)
            edges = data["edge_index"].shape[1]
            print(f"{model_name:<8}{len(atoms):>7}{edges:>8}  {'eager':<28}{eager_ms:>10.2f}{1.0:>9.2f}x"
                  f"{'':>11}{'':>14}", flush=True)
            for mode in modes:
                base, _, static = mode.partition(":")
                if static not in ("", "static"):
                    p.error(f"--modes: {mode!r}: only ':static' may follow a mode")
                start = time.perf_counter()
                compiled = CompiledModel(model, base, dynamic=not static)

                def call():
                    return compiled(data)
                forces = call()["edge_forces"].clone()  # (a CUDA graph's outputs are overwritten by its next replay)
                sync(device)
                compile_s = time.perf_counter() - start
                ms = timed_ms(call, args.calls, device)
                # eager again, after the compile: its worker processes can still load the CPU
                # while the first eager timing ran (a 41 against 24 ms eager slow model on this CPU)
                eager_ms = min(eager_ms, timed_ms(lambda: model(dict(data)), args.calls, device))
                diff = float((forces - eager["edge_forces"]).abs().max())
                label = f"{base} ({'static' if static else 'dynamic'})"
                print(f"{model_name:<8}{len(atoms):>7}{edges:>8}  {label:<28}{ms:>10.2f}{eager_ms / ms:>9.2f}x"
                      f"{compile_s:>11.0f}{diff:>14.1e}   (eager, best before and after: {eager_ms:.2f})", flush=True)
                torch._dynamo.reset()
    if args.engine:
        engine_rows(pair, water(int(args.sizes.split(",")[0])), device, args.engine, args.blocks)


if __name__ == "__main__":
    main()
