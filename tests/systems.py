"""The systems the tests are built from, one builder each: tiny float64 model
pairs (a directory like `mtsmlip train` writes), the small water box, and argon."""

from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk, molecule
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
from scipy.spatial.transform import Rotation

from mtsmlip.models import FAST_PRESET, SLOW_ALLEGRO_PRESET, SLOW_PRESET, build_model, model_config, write_model_dir

TINY_R_MAX_A = {"fast": 3.0, "slow": 3.5}


def tiny_model_config(role: str, seed: int = 0, energy_scale=None) -> dict:
    """A tiny untrained float64 model: Allegro for roles "fast" and "slow_allegro", NequIP (1 layer,
    8 features) otherwise. A small `energy_scale` gives gentle forces (short
    comparison runs stay physical)."""
    preset = {"fast": FAST_PRESET, "slow_allegro": SLOW_ALLEGRO_PRESET}.get(role, SLOW_PRESET)
    overrides = {"r_max": TINY_R_MAX_A["fast" if role == "fast" else "slow"], "avg_num_neighbors": 10.0}
    if energy_scale is not None:
        overrides["per_type_energy_scales"] = energy_scale
    if "nequip" in preset["_target_"]:
        overrides.update(num_layers=1, num_features=8, radial_mlp_width=16)  # one layer: half the cost of two
    return model_config(preset, ["H", "O"], seed=seed, model_dtype="float64", **overrides)


def write_tiny_pair(directory, energy_scale=None, fast_wall=None) -> Path:
    """A model directory like `mtsmlip train` writes: tiny float64 fast/slow/baseline
    (`fast_wall`: a pair_potential config for the fast model, e.g. models.data_wall)."""
    configs = {name: tiny_model_config(name, seed, energy_scale)
               for seed, name in enumerate(("fast", "slow", "baseline"))}
    if fast_wall is not None:
        configs["fast"]["pair_potential"] = fast_wall
    models = {name: (build_model(cfg).eval(), cfg) for name, cfg in configs.items()}
    write_model_dir(directory, models, {"note": "tiny untrained pair for tests"})
    return Path(directory)


def small_water_box(n_side=2, spacing_A=3.1, seed=0, vacuum=False, momenta=False) -> Atoms:
    """n_side**3 randomly oriented, slightly distorted water molecules on a cubic
    lattice; periodic unless `vacuum`; with `momenta`, small random momenta.
    Deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    atoms = Atoms()
    for ijk in np.ndindex(n_side, n_side, n_side):
        w = molecule("H2O")
        w.positions = w.positions @ Rotation.random(random_state=int(rng.integers(1 << 30))).as_matrix().T
        w.positions += np.array(ijk) * spacing_A + rng.normal(0, 0.05, (3, 3))
        atoms += w
    if vacuum:
        atoms.center(vacuum=6.0)
        atoms.pbc = False
    else:
        atoms.cell = np.eye(3) * n_side * spacing_A
        atoms.pbc = True
    if momenta:
        rng = np.random.default_rng(seed)
        atoms.set_momenta(rng.normal(0, 0.05, (len(atoms), 3)) * np.sqrt(atoms.get_masses())[:, None])
    return atoms


def argon(repeat=2, temperature_K=80.0, seed=0, rattle_A=0.1) -> Atoms:
    """fcc argon (4·repeat³ atoms), rattled, Maxwell–Boltzmann momenta, no drift."""
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(repeat)
    atoms.rattle(rattle_A, seed=seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=np.random.default_rng(seed))
    Stationary(atoms)
    return atoms
