"""A real SIGKILL of `train`, `md` and `compare` in a subprocess: nothing half-written
is ever taken for finished, and the resumed run ends where an uninterrupted one ends."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import mtsmlip
from mtsmlip.cli import main
from mtsmlip.errors import DataError
from tests.test_compare import setup as compare_setup  # noqa: F401 (fixture)
from tests.test_md_cli import final_state, md, read_log
from tests.training_helpers import config_file, data_file, trained_dir

REPO = Path(__file__).resolve().parents[1]


def spawn(argv) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "mtsmlip", *argv], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_until(proc: subprocess.Popen, ready, timeout_s=300.0) -> None:
    """Return as soon as `ready()` is true while `proc` runs; fail if it ends first or never gets there."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        if proc.poll() is not None:
            pytest.fail(f"finished (exit {proc.returncode}) too early: {proc.stderr.read()[-2000:]}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("never reached the point it was waited for")


def kill_when(proc: subprocess.Popen, ready, timeout_s=300.0) -> None:
    """SIGKILL `proc` as soon as `ready()` is true; fail if it ends first."""
    wait_until(proc, ready, timeout_s)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_md_killed_resumes_to_the_uninterrupted_state(md_inputs, tmp_path):
    model, structure = md_inputs
    out = tmp_path / "killed"
    argv = ["md", "--model", str(model), "--structure", str(structure), "--timestep-fs", "0.25", "--n-inner", "2",
            "--temperature-K", "100", "--seed", "3", "--no-progress", "--thermostat", "langevin",
            "--traj-every", "2", "--out", str(out), "--steps", "100000"]
    log = out / "md.log"
    kill_when(spawn(argv), lambda: log.is_file() and log.read_text().count("\n") >= 4)
    with np.load(out / "restart.npz") as z:
        step = int(json.loads(str(z["meta"]))["step"])
    total = step + 6
    common = ("--traj-every", "2", "--thermostat", "langevin", "--steps", str(total))
    assert md(md_inputs, out, "--resume", *common) == 0
    assert md(md_inputs, tmp_path / "full", *common) == 0
    for full, resumed in zip(final_state(tmp_path / "full"), final_state(out)):
        np.testing.assert_array_equal(full, resumed)
    steps = read_log(out)[1][:, 0]
    assert steps.tolist() == list(range(0, total + 1, 2))  # every row once, none lost


def test_train_killed_is_not_finished_and_resumes_to_the_same_models(tmp_path):
    out = tmp_path / "killed"
    argv = ["train", "--data", str(data_file()), "--config", str(config_file()), "--out", str(out)]
    stage1 = out / "checkpoints" / "stage1"
    kill_when(spawn(argv), lambda: any(stage1.glob("*.ckpt")) and not (stage1 / "done").exists())
    with pytest.raises(DataError, match="not a finished"):
        mtsmlip.load(out)
    assert main(argv + ["--resume"]) == 0
    resumed, reference = mtsmlip.load(out), mtsmlip.load(trained_dir())
    for name in ("fast", "slow", "baseline"):
        a, b = resumed.models[name].module.state_dict(), reference.models[name].module.state_dict()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-10, msg=f"{name} {key}")


def test_compare_killed_resumes_and_finishes(compare_setup, tmp_path):  # noqa: F811
    model, structure = compare_setup
    out = tmp_path / "killed"
    argv = ["compare", "--model", str(model), "--structure", str(structure), "--ps", "0.06",
            "--timestep-fs", "0.25", "--n-inner", "2,4", "--temperature-K", "50", "--equilibrate-ps", "0.002",
            "--nve-ps", "0.004", "--spectrum-ps", "0.004", "--block-fs", "2", "--no-progress", "--out", str(out), "--repeats", "1"]
    progress = out / "progress.json"

    def some_blocks_done():
        try:
            return sum(run["steps"] for run in json.loads(progress.read_text()).values()) >= 20
        except (FileNotFoundError, ValueError):
            return False

    kill_when(spawn(argv), some_blocks_done)
    assert not (out / "compare.json").exists()
    before = json.loads(progress.read_text())
    assert main(argv) == 0
    result = json.loads((out / "compare.json").read_text())
    assert [r["n_inner"] for r in result["runs"]] == [2, 4]
    after = json.loads(progress.read_text())
    assert all(after[label]["steps"] >= before[label]["steps"] for label in before)
    assert after["baseline"]["steps"] == round(0.06 * 1000 / 0.25)
