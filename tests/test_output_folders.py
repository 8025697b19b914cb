"""An output folder belongs to one run: a second run into it is refused by name,
a restart is validated before anything is trimmed, a previous run's files are
never appended to or overwritten, and Ctrl-C ends a run with a message and a
state it can resume from."""

import io
import json
import signal
import zipfile

import numpy as np
import pytest

from mtsmlip.cli import main
from mtsmlip.files import LOCK_FILE
from tests.test_kill import spawn, wait_until
from tests.test_md_cli import md, read_log


def md_argv(md_inputs, out, *extra):
    model, structure = md_inputs
    return ["md", "--model", str(model), "--structure", str(structure), "--timestep-fs", "0.25", "--n-inner", "2",
            "--temperature-K", "100", "--seed", "3", "--no-progress", "--traj-every", "2", "--out", str(out), *extra]


def wait_for_rows(proc, log, rows, timeout_s=300.0):
    wait_until(proc, lambda: log.is_file() and log.read_text().count("\n") >= rows + 1, timeout_s)


def frame_steps(out):
    return [int(line.split("step=")[1].split()[0]) for line in (out / "trajectory.extxyz").read_text().splitlines()
            if "step=" in line]


@pytest.fixture(scope="module")
def gentle_inputs(tmp_path_factory, md_inputs):
    """md_inputs with a gentle pair: the first run must still be running (not
    blown up, which frees the folder) when the second one tries the folder."""
    from tests.systems import write_tiny_pair

    return write_tiny_pair(tmp_path_factory.mktemp("gentle") / "pair", energy_scale=0.02), md_inputs[1]


def test_two_concurrent_md_runs_into_one_folder(gentle_inputs, tmp_path):
    md_inputs = gentle_inputs
    out = tmp_path / "shared"
    # 5 K: the first run must outlast the second's try; at 100 K a free H of the gentle
    # pair can reach its O within the safety limit in tens of fs, which ends the run
    slow = ("--steps", "100000", "--temperature-K", "5")
    first = spawn(md_argv(md_inputs, out, *slow))
    try:
        wait_for_rows(first, out / "md.log", 2)
        second = spawn(md_argv(md_inputs, out, *slow, "--resume"))
        assert second.wait(timeout=120) == 2
        err = second.stderr.read().decode()
        assert f"is in use by another run (process {first.pid}, mtsmlip md" in err and "Traceback" not in err
        assert first.poll() is None  # the first run goes on, untouched
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(timeout=120)
    steps = frame_steps(out)
    assert steps == sorted(set(steps))  # every step once


def test_ctrl_c_ends_md_with_a_message_and_it_resumes(gentle_inputs, tmp_path):
    # the gentle pair: the untrained one blows up within seconds, and on a loaded machine
    # that can come before the Ctrl-C (exit 3 instead of 130)
    md_inputs = gentle_inputs
    out = tmp_path / "interrupted"
    proc = spawn(md_argv(md_inputs, out, "--steps", "100000"))
    wait_for_rows(proc, out / "md.log", 3)
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(timeout=120)
    err = proc.stderr.read().decode()
    assert rc == 130, err[-3000:]
    assert "interrupted at step" in err and "continue with --resume" in err and "Traceback" not in err
    with np.load(out / "restart.npz") as z:
        step = int(json.loads(str(z["meta"]))["step"])
    assert md(md_inputs, out, "--traj-every", "2", "--steps", str(step + 4), "--resume") == 0
    assert read_log(out)[1][-1, 0] == step + 4


def tamper_restart(path, **changes):
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    meta.update(changes)
    arrays["meta"] = json.dumps(meta)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())


def outputs(out):
    return {p.name: p.read_bytes() for p in out.iterdir() if p.name not in ("restart.npz", LOCK_FILE)}


@pytest.mark.parametrize("step, message", [(-50, "field 'step': must be an integer >= 0 (got -50)"),
                                           (2, "the restart is at step 2 but 3 md.log rows"),
                                           (1.5, "field 'step': must be an integer >= 0 (got 1.5)")])
def test_a_tampered_restart_changes_nothing(md_inputs, tmp_path, capsys, step, message):
    out = tmp_path / "run"
    assert md(md_inputs, out, "--traj-every", "2", "--steps", "8") == 0
    before = outputs(out)
    tamper_restart(out / "restart.npz", step=step)
    assert md(md_inputs, out, "--traj-every", "2", "--steps", "12", "--resume") == 2
    assert message in capsys.readouterr().err
    assert outputs(out) == before


@pytest.mark.parametrize("thermostat, message", [
    ({"kind": "langevin", "rng": "garbage"}, "field 'thermostat.rng': not the state of the run's random generator"),
    ({"kind": "langevin", "rng": None, "device_rng": [1, 999]}, "field 'thermostat.device_rng': must be a list of bytes"),
    ({"kind": "langevin", "rng": None, "device_rng": "x"}, "field 'thermostat.device_rng': must be a list of bytes")])
def test_a_tampered_thermostat_state_is_refused_by_field(md_inputs, tmp_path, capsys, thermostat, message):
    out = tmp_path / "run"
    assert md(md_inputs, out, "--thermostat", "langevin", "--traj-every", "2", "--steps", "4") == 0
    before = outputs(out)
    with np.load(out / "restart.npz") as z:
        saved = json.loads(str(z["meta"]))["thermostat"]
    assert saved["device_rng"] is None  # a CPU run draws its noise from numpy alone
    rng = saved["rng"] if thermostat["rng"] is None else thermostat["rng"]
    tamper_restart(out / "restart.npz", thermostat={**thermostat, "rng": rng})
    assert md(md_inputs, out, "--thermostat", "langevin", "--traj-every", "2", "--steps", "8", "--resume") == 2
    err = capsys.readouterr().err
    assert "restart.npz, " + message in err, err
    assert outputs(out) == before


def test_a_run_without_its_restart_is_still_a_previous_run(md_inputs, tmp_path, capsys):
    out = tmp_path / "run"
    assert md(md_inputs, out, "--traj-every", "2", "--steps", "4") == 0
    (out / "restart.npz").unlink()
    log = (out / "md.log").read_text()
    assert md(md_inputs, out, "--traj-every", "2", "--steps", "4") == 2
    assert "holds a previous run (md.log, trajectory.extxyz)" in capsys.readouterr().err
    assert md(md_inputs, out, "--traj-every", "2", "--steps", "8", "--resume") == 2
    assert "no restart.npz to resume from" in capsys.readouterr().err
    assert (out / "md.log").read_text() == log


def test_a_refused_run_leaves_no_folder_and_a_finished_one_no_lock_in_the_way(md_inputs, tmp_path):
    assert md(md_inputs, tmp_path / "bad", "--steps", "2", "--resume") == 2
    assert not (tmp_path / "bad").exists()
    assert md(md_inputs, tmp_path / "ok", "--steps", "2") == 0
    assert md(md_inputs, tmp_path / "ok", "--steps", "4", "--resume") == 0


def test_export_does_not_overwrite_without_being_asked(md_inputs, tmp_path, capsys):
    model, _ = md_inputs
    target = tmp_path / "fast.nequip.zip"
    target.write_bytes(b"someone's earlier package")
    assert main(["export", "--model", str(model), "--part", "fast", "--to", str(target)]) == 2
    assert "the file exists; pass --overwrite" in capsys.readouterr().err
    assert target.read_bytes() == b"someone's earlier package"
    assert main(["export", "--model", str(model), "--part", "fast", "--to", str(target), "--overwrite"]) == 0
    assert zipfile.is_zipfile(target)


def test_a_lock_file_planted_as_a_link_is_refused_and_its_target_untouched(md_inputs, tmp_path, capsys):
    victim = tmp_path / "important.txt"
    victim.write_text("precious\n")
    out = tmp_path / "shared"
    out.mkdir()
    (out / LOCK_FILE).symlink_to(victim)
    assert md(md_inputs, out, "--steps", "2") == 2
    assert "a symbolic link there is refused" in capsys.readouterr().err
    assert victim.read_text() == "precious\n"


def test_train_resume_into_a_folder_that_is_no_training_run_is_refused(tmp_path, capsys):
    from tests.training_helpers import config_file, data_file

    out = tmp_path / "notes"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    argv = ["train", "--data", str(data_file()), "--config", str(config_file()), "--out", str(out), "--resume"]
    assert main(argv) == 2
    assert "no train_config.yaml: not a training run to continue" in capsys.readouterr().err
    assert [p.name for p in out.iterdir() if p.name != LOCK_FILE] == ["manifest.json"]


def test_compare_does_not_take_over_a_folder_that_is_no_comparison(md_inputs, tmp_path, capsys):
    model, structure = md_inputs
    out = tmp_path / "project"
    out.mkdir()
    (out / "report.md").write_text("my notes\n")
    argv = ["compare", "--model", str(model), "--structure", str(structure), "--ps", "0.01", "--out", str(out),
            "--no-progress", "--repeats", "1"]
    assert main(argv) == 2
    assert "holds report.md but no settings.json: not a comparison" in capsys.readouterr().err
    assert (out / "report.md").read_text() == "my notes\n"


def test_an_edited_probe_result_is_refused(tmp_path):
    from mtsmlip.errors import DataError
    from mtsmlip.probe import saved_result

    with pytest.raises(DataError, match="field 'n_inner'.*at most 1000"):
        saved_result(tmp_path / "n_inner_auto.json",
                     {"n_inner": 100000000, "timestep_fs": 0.5, "candidates": [],
                      "settings": {"candidates": [1, 2]}})
    with pytest.raises(DataError, match="not a probe result mtsmlip wrote"):
        saved_result(tmp_path / "n_inner_auto.json", {"n_inner": 4})
