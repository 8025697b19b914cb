"""`mtsmlip md`: outputs, bit-for-bit resume, clear errors before any step."""

import ase.io
import numpy as np
import pytest

from mtsmlip.cli import main
from tests.systems import small_water_box




def md(md_inputs, out, *extra):
    model, structure = md_inputs
    argv = ["md", "--model", str(model), "--structure", str(structure), "--timestep-fs", "0.25",
            "--n-inner", "2", "--temperature-K", "100", "--seed", "3", "--no-progress", "--out", str(out)]
    return main(argv + list(extra))


def final_state(out):
    with np.load(out / "restart.npz") as z:
        return z["positions"], z["momenta"]


def read_log(out):
    lines = (out / "md.log").read_text().splitlines()
    return lines[0][2:].split(), np.loadtxt(out / "md.log", ndmin=2)


@pytest.mark.parametrize("thermostat", ["langevin", "bussi"])
def test_resume_continues_bit_for_bit(md_inputs, tmp_path, thermostat):
    assert md(md_inputs, tmp_path / "a", "--steps", "8", "--traj-every", "2", "--thermostat", thermostat) == 0
    assert md(md_inputs, tmp_path / "b", "--steps", "4", "--traj-every", "2", "--thermostat", thermostat) == 0
    assert md(md_inputs, tmp_path / "b", "--steps", "8", "--traj-every", "2", "--thermostat", thermostat,
              "--resume") == 0  # --steps is the total of the resumed run
    for full, resumed in zip(final_state(tmp_path / "a"), final_state(tmp_path / "b")):
        np.testing.assert_array_equal(full, resumed)
    assert len(ase.io.read(tmp_path / "b" / "trajectory.extxyz", ":")) == 5  # steps 0, 2, 4, 6, 8


def test_outputs(md_inputs, tmp_path):
    assert md(md_inputs, tmp_path, "--steps", "6", "--traj-every", "3") == 0
    columns, rows = read_log(tmp_path)
    assert columns == ["step", "time_ps", "temperature_K", "potential_eV", "kinetic_eV", "conserved_eV",
                       "steps_per_s", "ns_per_day"]
    np.testing.assert_allclose(rows[:, 1], [0.0, 0.0015, 0.003])  # 3 outer steps of 2 × 0.25 fs
    assert 50 < rows[0, 2] < 200  # Maxwell–Boltzmann start near 100 K
    np.testing.assert_allclose(rows[:, 5], rows[:, 3] + rows[:, 4], atol=1e-8)  # NVE: no work
    assert np.all(rows[1:, 7] > 0)
    frames = ase.io.read(tmp_path / "trajectory.extxyz", ":")
    assert [f.info["step"] for f in frames] == [0, 3, 6]
    assert frames[-1].get_potential_energy() == pytest.approx(rows[-1, 3], abs=1e-8)


def test_same_seed_same_start_and_baseline_runs(md_inputs, tmp_path):
    assert md(md_inputs, tmp_path / "a", "--steps", "2") == 0
    assert md(md_inputs, tmp_path / "b", "--steps", "2") == 0
    assert read_log(tmp_path / "a")[1][0, 2] == read_log(tmp_path / "b")[1][0, 2]
    assert md(md_inputs, tmp_path / "c", "--steps", "4", "--traj-every", "2", "--baseline") == 0
    assert read_log(tmp_path / "c")[1][-1, 1] == pytest.approx(0.001)  # velocity Verlet at 0.25 fs


@pytest.mark.parametrize("extra, message", [(["--n-inner", "0"], "argument --n-inner: must be an integer >= 1"),
                                            (["--timestep-fs", "-1"], "argument --timestep-fs: must be a finite"),
                                            (["--resume"], "no restart.npz to resume from")])
def test_bad_settings_fail_clearly_before_any_step(md_inputs, tmp_path, capsys, extra, message):
    assert md(md_inputs, tmp_path / "out", "--steps", "2", *extra) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "md.log").exists()


def test_unknown_species_and_existing_output_are_refused(md_inputs, tmp_path, capsys):
    model, _ = md_inputs
    atoms = small_water_box()
    atoms[0].symbol = "N"
    ase.io.write(tmp_path / "bad.extxyz", atoms)
    code = main(["md", "--model", str(model), "--structure", str(tmp_path / "bad.extxyz"), "--steps", "1",
                 "--out", str(tmp_path / "o"), "--no-progress"])
    assert code == 2 and "['N'] unknown to the model" in capsys.readouterr().err
    assert md(md_inputs, tmp_path / "twice", "--steps", "1") == 0
    assert md(md_inputs, tmp_path / "twice", "--steps", "1") == 2
    assert "use --resume" in capsys.readouterr().err


def test_without_model_the_shipped_water_models_run(tmp_path):
    """No --model: the shipped water pair (64 waters built by the demo's box maker)."""
    from mtsmlip.demo import water_box

    ase.io.write(tmp_path / "box.extxyz", water_box(64, seed=2))
    argv = ["md", "--structure", str(tmp_path / "box.extxyz"), "--timestep-fs", "0.5", "--n-inner", "2",
            "--steps", "2", "--traj-every", "1", "--temperature-K", "300", "--no-progress",
            "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    columns, rows = read_log(tmp_path / "run")
    assert rows.shape[0] == 3 and np.isfinite(rows).all()
    # the freshly built box is far from equilibrium: ~1.3 eV flows from kinetic to potential energy in
    # these 2 fs; the integrator must keep the conserved energy to a small fraction of that exchange
    conserved, kinetic = (rows[:, columns.index(c)] for c in ("conserved_eV", "kinetic_eV"))
    assert abs(kinetic[-1] - kinetic[0]) > 0.5
    assert abs(conserved[-1] - conserved[0]) < 0.1 * abs(kinetic[-1] - kinetic[0])


def test_resume_after_a_stop_between_outputs_and_restart_repeats_no_rows(md_inputs, tmp_path):
    """Stopped after the step-6 log row and frame were written but before the
    restart (and mid-way through another frame): the resumed run drops them,
    writes each step once, and ends where an uninterrupted run ends."""
    import shutil

    common = ("--traj-every", "2", "--thermostat", "langevin")
    assert md(md_inputs, tmp_path / "full", "--steps", "8", *common) == 0
    out = tmp_path / "cut"
    assert md(md_inputs, out, "--steps", "4", *common) == 0
    shutil.copy(out / "restart.npz", tmp_path / "restart_at_4.npz")
    assert md(md_inputs, out, "--steps", "6", "--resume", *common) == 0
    shutil.copy(tmp_path / "restart_at_4.npz", out / "restart.npz")  # the step-6 restart never landed
    with open(out / "trajectory.extxyz", "a") as f:
        f.write("24\nProperties=species:S:1:pos:R:3 step=8\nO 0.0 0.0")  # a frame cut off mid-write
    assert md(md_inputs, out, "--steps", "8", "--resume", *common) == 0
    columns, rows = read_log(out)
    assert rows[:, 0].tolist() == [0, 2, 4, 6, 8]
    assert [f.info["step"] for f in ase.io.read(out / "trajectory.extxyz", ":")] == [0, 2, 4, 6, 8]
    for full, resumed in zip(final_state(tmp_path / "full"), final_state(out)):
        np.testing.assert_array_equal(full, resumed)
