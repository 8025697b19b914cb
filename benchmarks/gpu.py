"""One device, one run: ms per 0.5 fs step and ns/day of the baseline (velocity
Verlet), MTS at n = 2, 4, 8 and the peer a user would run instead (nequip's ASE
calculator with ASE's VelocityVerlet), on 192, 1536 and 12288 atoms of water
(the shipped pair on an embedded 64-molecule box and its 2x2x2 and 4x4x4
supercells) and on 64 replicas of ethanol (untrained default-preset models on
C/H/O: the cost, not the physics), with the speedups of MTS against both.
On a GPU also MTS at n = 4 with the models' edges filtered to r_max (fewer
edges, but the filter's nonzero waits for the device at every call; the default
there gives every candidate within r_max + skin). Then, with --profile, where
the time of one outer step goes (torch.profiler). On a GPU it also lists the
host synchronisations CUDA reports while a batch of steps is integrated
(torch.cuda.set_sync_debug_mode; the engine is built to have none).

    python benchmarks/gpu.py [--device cuda] [--sizes 1,8,64] [--replicas 64]
                             [--steps 32] [--profile]

--sizes: water boxes as multiples of the 192-atom box (cubes: 1, 8, 64).
--steps: timed 0.5 fs steps per run (a multiple of 8), after a warm-up of 8.
Built to finish in under 8 minutes on one H100/H200; on a CPU use small sizes
(e.g. --device cpu --sizes 1 --replicas 4 --steps 8).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from ase import units
from ase.build import molecule
from ase.md.verlet import VelocityVerlet

N_VALUES = (2, 4, 8)
STEP_FS = 0.5


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def ns_per_day(ms_per_step: float) -> float:
    return STEP_FS * 1e-6 / (ms_per_step * 1e-3) * 86400.0


def water(multiple: int):
    from mtsmlip.demo import water_box
    from mtsmlip.md.engine import initialise_momenta

    side = round(multiple ** (1 / 3))
    atoms = water_box(64, seed=0).repeat((side, side, side))
    initialise_momenta(atoms, 300.0, seed=0)
    return atoms


def ethanol_replicas(count: int):
    from mtsmlip.md.engine import initialise_momenta
    from mtsmlip.md.replicas import replicate

    atoms = replicate(molecule("CH3CH2OH"), count, gap_A=7.0, seed=0)
    initialise_momenta(atoms, 300.0, seed=0)
    return atoms


def untrained_models(type_names):
    """Default-preset fast, slow and baseline models (energies scaled down, so
    the short timed runs stay physical)."""
    from mtsmlip.models import BASELINE_PRESET, FAST_PRESET, SLOW_PRESET, LoadedModel, build_model, model_config

    out = {}
    for name, preset in (("fast", FAST_PRESET), ("slow", SLOW_PRESET), ("baseline", BASELINE_PRESET)):
        cfg = model_config(preset, type_names, seed=0, avg_num_neighbors=12.0, per_type_energy_scales=0.02)
        out[name] = LoadedModel(build_model(cfg).eval(), cfg, {})
    return out


def engine_ms(models, atoms, n_inner, steps, device, filter_edges=None) -> float:
    """ms per 0.5 fs step of the engine: MTS at n_inner, or the baseline (n_inner
    None). filter_edges: see ModelForces (None: its default for the device)."""
    from mtsmlip.forces import ModelForces, zero_forces
    from mtsmlip.md import Engine, RunSettings

    def provider(name):
        return ModelForces(models[name], atoms, device=device, filter_edges=filter_edges)

    if n_inner is None:
        fast, slow, settings = provider("baseline"), zero_forces, RunSettings(STEP_FS, 1, baseline=True)
    else:
        fast, slow = provider("fast"), provider("slow")
        settings = RunSettings(STEP_FS, n_inner)
    engine = Engine(atoms, fast, slow, settings, device=device)
    engine.run(max(1, 8 // settings.n_inner), progress=False)
    sync(device)
    start = time.perf_counter()
    engine.run(steps // settings.n_inner, progress=False)
    sync(device)
    return 1e3 * (time.perf_counter() - start) / steps


def ase_peer_ms(models, atoms, steps, device) -> float:
    """ms per 0.5 fs step of nequip's ASE calculator (the baseline model) with ASE's VelocityVerlet."""
    peer = atoms.copy()
    peer.calc = models["baseline"].calculator(device)
    dyn = VelocityVerlet(peer, timestep=STEP_FS * units.fs)
    dyn.run(2)
    sync(device)
    start = time.perf_counter()
    dyn.run(steps)
    sync(device)
    return 1e3 * (time.perf_counter() - start) / steps


def systems(args):
    import mtsmlip

    water_pair = mtsmlip.load("water").models
    for multiple in args.sizes:
        atoms = water(multiple)
        yield f"water {len(atoms)}", water_pair, atoms
    if args.replicas:
        atoms = ethanol_replicas(args.replicas)
        yield f"ethanol x{args.replicas} ({len(atoms)})", untrained_models(["C", "H", "O"]), atoms


def profile_outer_step(models, atoms, n_inner, device) -> None:
    from torch.profiler import ProfilerActivity, profile

    from mtsmlip.forces import ModelForces
    from mtsmlip.md import Engine, RunSettings

    fast, slow = ModelForces(models["fast"], atoms, device=device), ModelForces(models["slow"], atoms, device=device)
    engine = Engine(atoms, fast, slow, RunSettings(STEP_FS, n_inner), device=device)
    engine.run(2, progress=False)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.device(device).type == "cuda" else [])
    with profile(activities=activities) as prof:
        engine.run(1, progress=False)
        sync(device)
    key = "self_cuda_time_total" if torch.device(device).type == "cuda" else "self_cpu_time_total"
    print(f"\nOne outer step (n = {n_inner}) on {len(atoms)} atoms, by {key}:")
    print(prof.key_averages().table(sort_by=key, row_limit=15))


def host_syncs_in_a_batch(models, atoms, device, thermostat="langevin") -> list[str]:
    """The host synchronisations CUDA reports (torch.cuda.set_sync_debug_mode)
    while the engine integrates one batch of MTS n = 4 steps on `atoms`: the
    first line of each warning. On a CPU: nothing to check (None)."""
    if torch.device(device).type != "cuda":
        return None
    from mtsmlip.forces import ModelForces
    from mtsmlip.md import Engine, RunSettings
    from mtsmlip.md.engine import cuda_syncs_in_a_batch

    fast, slow = ModelForces(models["fast"], atoms, device=device), ModelForces(models["slow"], atoms, device=device)
    engine = Engine(atoms, fast, slow, RunSettings(STEP_FS, 4, thermostat, 300.0), device=device, seed=0)
    engine.run(2, progress=False)  # lists built, generators seeded
    return cuda_syncs_in_a_batch(engine, 4)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--sizes", default="1,8,64", help="water boxes as multiples of 192 atoms (cubes)")
    p.add_argument("--replicas", type=int, default=64, help="ethanol replicas (0: none)")
    p.add_argument("--steps", type=int, default=32, help="timed 0.5 fs steps per run (multiple of 8)")
    p.add_argument("--profile", action="store_true")
    args = p.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.steps % 8:
        p.error("--steps must be a multiple of 8")
    warnings.filterwarnings("ignore")
    name = torch.cuda.get_device_name() if torch.device(args.device).type == "cuda" else "CPU"
    print(f"device: {args.device} ({name}), torch {torch.__version__}; {args.steps} timed steps of {STEP_FS} fs each")
    header = f"{'system':<24}{'run':<26}{'ms/step':>10}{'ns/day':>10}{'vs baseline':>13}{'vs ASE peer':>13}"
    print(header)
    clock = time.perf_counter()
    last = None
    for label, models, atoms in systems(args):
        rows = {"baseline (Verlet)": engine_ms(models, atoms, None, args.steps, args.device)}
        for n in N_VALUES:
            rows[f"MTS n={n}"] = engine_ms(models, atoms, n, args.steps, args.device)
        if torch.device(args.device).type == "cuda":  # the other side of the default: fewer edges, a wait per call
            rows["MTS n=4, edges filtered"] = engine_ms(models, atoms, 4, args.steps, args.device, filter_edges=True)
        rows["ASE peer (nequip+VV)"] = ase_peer_ms(models, atoms, max(8, args.steps // 4), args.device)
        base, peer = rows["baseline (Verlet)"], rows["ASE peer (nequip+VV)"]
        for run, ms in rows.items():
            print(f"{label:<24}{run:<26}{ms:>10.2f}{ns_per_day(ms):>10.3f}{base / ms:>12.2f}x{peer / ms:>12.2f}x")
        last = (models, atoms)
    print(f"(all runs: {time.perf_counter() - clock:.0f} s)")
    if args.sizes:
        import mtsmlip

        syncs = host_syncs_in_a_batch(mtsmlip.load("water").models, water(args.sizes[0]), args.device)
        if syncs is not None:
            print(f"host synchronisations while a batch of 4 outer steps (n = 4, Langevin) is integrated: {len(syncs)}")
            for line in sorted(set(syncs)):
                print(f"  {syncs.count(line)} x {line}")
    if args.profile and last is not None:
        water_pair_atoms = water(8 if 8 in args.sizes else args.sizes[0]) if args.sizes else last[1]
        import mtsmlip

        profile_outer_step(mtsmlip.load("water").models if args.sizes else last[0], water_pair_atoms, 4, args.device)


if __name__ == "__main__":
    main()
